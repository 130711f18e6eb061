/* ph_json_string.c — see ph_json_string.h. */
#include "ph_json_string.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* Length of the UTF-8 sequence at s[0] (2..4) when it is a valid, shortest-form, non-surrogate
 * code point up to U+10FFFF, else 0. s[0] >= 0x80; n bytes are available. */
static uint32_t utf8_len(const uint8_t *s, uint32_t n)
{
    uint8_t c = s[0];
    uint32_t len;
    uint8_t lo = 0x80, hi = 0xBF;   /* allowed range of the first continuation byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) { len = 3; lo = 0xA0; }
    else if (c == 0xED) { len = 3; hi = 0x9F; }          /* no UTF-16 surrogates */
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) { len = 4; hi = 0x8F; }          /* nothing above U+10FFFF */
    else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (uint32_t k = 2; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
    }
    return len;
}

static int is_hex(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Word-at-a-time: a register's worth of bytes (8 on a PC, 4 on an ESP32) is classified at once.
 * The result has bit 7 of byte k set when byte k is '"', '\\', a control character or >= 0x80.
 * Additions carry into the next byte only out of a byte >= 0x80, which is flagged itself, so the
 * LOWEST flagged byte is exact; the scanner stops at the first word with any flag and goes on
 * byte by byte from there. */
typedef size_t ph_word;
#define WORD_ONES ((ph_word)-1 / 0xFF)
#define WORD_HIGH (WORD_ONES * 0x80)

static ph_word special_bytes(ph_word x)
{
    ph_word ok = (x + WORD_ONES * 0x60)                          /* bit 7: byte >= 0x20 */
                 & ((x ^ WORD_ONES * '"') + WORD_ONES * 0x7F)     /* bit 7: byte != '"'  */
                 & ((x ^ WORD_ONES * '\\') + WORD_ONES * 0x7F);   /* bit 7: byte != '\\' */
    return (~ok | x) & WORD_HIGH;
}

int32_t ph_json_string_end(const uint8_t *s, uint32_t n)
{
    if (n == 0 || s[0] != '"') return PH_JSON_STRING_SYNTAX;
    uint32_t i = 1;
    for (;;) {
        /* Plain bytes a word at a time. The byte order does not matter: a flagged word is
         * handed to the byte loop below from its first byte. */
        while (n - i >= sizeof(ph_word)) {
            ph_word x;
            memcpy(&x, s + i, sizeof x);   /* an unaligned load */
            if (special_bytes(x)) break;
            i += sizeof x;
        }
        if (i >= n) return PH_JSON_STRING_SYNTAX;   /* truncated: no closing quote */
        /* Byte by byte until the special byte of that word (or the tail) is handled. */
        uint32_t stop = n - i >= sizeof(ph_word) ? i + (uint32_t)sizeof(ph_word) : n;
        while (i < stop) {
            uint8_t c = s[i];
            if (c == '"') return (int32_t)i + 1;
            if (c == '\\') {
                if (n - i < 2) return PH_JSON_STRING_SYNTAX;
                uint8_t e = s[i + 1];
                if (e == 'u') {
                    if (n - i < 6 || !is_hex(s[i + 2]) || !is_hex(s[i + 3]) || !is_hex(s[i + 4]) ||
                        !is_hex(s[i + 5]))
                        return PH_JSON_STRING_SYNTAX;
                    i += 6;
                } else if (e == 'n' || e == 'r' || e == '"' || e == '\\' || e == '/' || e == 't' ||
                           e == 'b' || e == 'f') {
                    i += 2;
                } else {
                    return PH_JSON_STRING_SYNTAX;
                }
                break;   /* the escape may end past this word: back to whole words */
            }
            if (c < 0x20) return PH_JSON_STRING_SYNTAX;
            if (c < 0x80) {
                i++;
                continue;
            }
            uint32_t len = utf8_len(s + i, n - i);
            if (!len) return PH_JSON_STRING_UTF8;
            i += len;
            break;
        }
    }
}

size_t ph_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool escaped = c == '"' || c == '\\';
        if (n + 1 + escaped > cap) break;
        if (escaped) out[n++] = '\\';
        out[n++] = (unsigned char)c < 0x20 ? '?' : c;
    }
    return n;
}
