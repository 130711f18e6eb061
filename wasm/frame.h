/*
 * frame.h — a bounded text writer for outgoing frames, log lines and the stats JSON.
 *
 * Every append checks the remaining room; a writer that ran out remembers it (`overflow`) and the
 * caller drops the frame instead of sending a cut-off one.
 */
#ifndef PH_FRAME_H
#define PH_FRAME_H

#include <stdint.h>

typedef struct {
    char *buf;
    uint32_t cap;
    uint32_t len;
    uint8_t overflow;
} ph_writer;

void w_init(ph_writer *w, char *buf, uint32_t cap);
void w_raw(ph_writer *w, const char *s, uint32_t n);
void w_str(ph_writer *w, const char *cstr);          /* a NUL-terminated literal, unescaped */
void w_ch(ph_writer *w, char c);
void w_u32(ph_writer *w, uint32_t v);
void w_i64(ph_writer *w, int64_t v);
void w_bool(ph_writer *w, int v);
uint32_t ph_strlen(const char *s);

#endif /* PH_FRAME_H */
