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

char *w_reserve(ph_writer *w, uint32_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = 1;
        return 0;
    }
    w->len += n;
    return w->buf + w->len - n;
}

__attribute__((noinline)) void w_raw(ph_writer *w, const char *s, uint32_t n)
{
    char *o = w_reserve(w, n);
    if (o) memcpy(o, s, n);   /* one memory.copy with bulk memory */
}

void w_str(ph_writer *w, const char *cstr) { w_raw(w, cstr, ph_strlen(cstr)); }

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

void w_int(ph_writer *w, int64_t v)
{
    if (v < 0) W_LIT(w, "-");
    w_u64(w, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);   /* INT64_MIN has no positive */
}

void ph_printable(char *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') p[i] = '?';
    }
}

void w_bootstrap_url(ph_writer *w, uint32_t index)
{
    uint32_t room = w->cap - w->len;
    if (w->overflow || room < 2) return;
    char *at = w->buf + w->len;
    int32_t n = get_bootstrap_hub((int32_t)index, at, (int32_t)room);
    uint32_t m = n < 0 ? 0 : (uint32_t)n < room ? (uint32_t)n : room - 1;
    ph_printable(at, m);
    w->len += m;
}

/* The end of the literal run at fmt: its NUL or its next '%'. Templates are mostly literal text
 * and an interpreter pays per instruction, so on wasm32 eight bytes are tested per step: the
 * lowest byte flagged by the zero-byte test is exact (borrows only travel up from a zero byte).
 * Reading up to seven bytes past a template's NUL is harmless in linear memory (the templates sit
 * in the data segment, far from its end); natively the plain loop keeps the sanitizers happy. */
static const char *literal_end(const char *fmt)
{
#ifdef __wasm__
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    for (;;) {
        uint64_t x, p;
        memcpy(&x, fmt, 8);
        p = x ^ (ones * '%');
        uint64_t m = (((x - ones) & ~x) | ((p - ones) & ~p)) & high;
        if (m) return fmt + (__builtin_ctzll(m) >> 3);
        fmt += 8;
    }
#else
    while (*fmt && *fmt != '%') fmt++;
    return fmt;
#endif
}

void w_vfmt(ph_writer *w, const char *fmt, va_list ap)
{
    for (;;) {
        const char *lit = fmt;
        fmt = literal_end(fmt);
        w_raw(w, lit, (uint32_t)(fmt - lit));
        if (!*fmt) return;
        char d = fmt[1];
        fmt += 2;
        if (d == 's') {
            w_str(w, va_arg(ap, const char *));
        } else if (d == 'S') {
            const char *p = va_arg(ap, const char *);
            w_raw(w, p, va_arg(ap, uint32_t));
        } else if (d == 'd') {
            w_int(w, va_arg(ap, int64_t));
        } else if (d == 'u') {
            w_u64(w, va_arg(ap, uint32_t));
        } else if (d == 'b') {
            w_str(w, va_arg(ap, int) ? "true" : "false");
        } else if (d == 'c') {
            char c = (char)va_arg(ap, int);
            w_raw(w, &c, 1);
        } else if (d == 'U') {
            w_bootstrap_url(w, va_arg(ap, uint32_t));
        } else { /* '8': peer ids are logged as 8 digits, enough to tell peers apart */
            w_raw(w, va_arg(ap, const char *), 8);
            W_LIT(w, "\xE2\x80\xA6");   /* U+2026 "…" */
        }
    }
}

void w_fmt(ph_writer *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    w_vfmt(w, fmt, ap);
    va_end(ap);
}
