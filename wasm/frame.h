/*
 * frame.h — a bounded text writer for outgoing frames, log lines and the stats JSON.
 *
 * Every append checks the remaining room; a writer that ran out remembers it (`overflow`) and the
 * caller drops the frame instead of sending a cut-off one.
 *
 * w_fmt() writes a whole frame or log line from one template: the literal text between directives
 * is copied as it is (no escaping: templates and arguments are JSON-safe by construction), and
 *   %s  NUL-terminated string          %S  (const char *p, uint32_t n) span
 *   %d  int64_t in decimal             %u  uint32_t in decimal
 *   %b  int: true/false                %c  one char (int)
 *   %8  a peer id shortened for logs: its first 8 characters and "…"
 *   %U  uint32_t: bootstrap hub URL number n (get_bootstrap_hub), as much as fits, every byte a
 *       JSON string or log line could not carry (not printable ASCII, '"', '\\') shown as '?'
 * One call per frame instead of one per piece keeps the module small (each call site in wasm costs
 * its arguments plus the call); arguments must have exactly these types (varargs are not checked).
 */
#ifndef PH_FRAME_H
#define PH_FRAME_H

#include <stdarg.h>
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
void w_int(ph_writer *w, int64_t v);                 /* %d */
#define LIT_LEN(lit) (sizeof(lit) - 1)
#define W_LIT(w, lit) w_raw((w), (lit), LIT_LEN(lit))   /* a string literal, no strlen */
/* n bytes at the writer's end for the caller to fill (PUT), or NULL when they do not fit (the
 * writer then remembers the overflow): one room check for many pieces. */
char *w_reserve(ph_writer *w, uint32_t n);
#define PUT(o, p, n) ((char *)memcpy((o), (p), (n)) + (n))
#define EQUALS_LIT(p, n, lit) ((n) == sizeof(lit) - 1 && memcmp((p), (lit), sizeof(lit) - 1) == 0)
void w_bootstrap_url(ph_writer *w, uint32_t index);   /* %U */
/* Replaces every byte a JSON string or log line could not carry as it is (not printable ASCII,
 * '"', '\\') with '?': for text the hub did not validate (URLs, the device id). */
void ph_printable(char *p, uint32_t n);
void w_fmt(ph_writer *w, const char *fmt, ...);
void w_vfmt(ph_writer *w, const char *fmt, va_list ap);
uint32_t ph_strlen(const char *s);

#endif /* PH_FRAME_H */
