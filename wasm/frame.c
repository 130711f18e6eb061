/* frame.c — see frame.h. */
#include "frame.h"
#include "ph_port.h"

uint32_t ph_strlen(const char *s)
{
    uint32_t n = 0;
    while (s[n]) n++;
    return n;
}

void w_init(ph_writer *w, char *buf, uint32_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = 0;
}

void w_raw(ph_writer *w, const char *s, uint32_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = 1;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

void w_str(ph_writer *w, const char *cstr) { w_raw(w, cstr, ph_strlen(cstr)); }

void w_ch(ph_writer *w, char c) { w_raw(w, &c, 1); }

static void w_u64(ph_writer *w, uint64_t v)
{
    char tmp[20];
    uint32_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    w_raw(w, tmp + i, sizeof tmp - i);
}

void w_u32(ph_writer *w, uint32_t v) { w_u64(w, v); }

void w_i64(ph_writer *w, int64_t v)
{
    if (v < 0) {
        w_ch(w, '-');
        w_u64(w, (uint64_t)0 - (uint64_t)v);   /* INT64_MIN has no positive int64 */
    } else {
        w_u64(w, (uint64_t)v);
    }
}

void w_bool(ph_writer *w, int v) { w_str(w, v ? "true" : "false"); }
