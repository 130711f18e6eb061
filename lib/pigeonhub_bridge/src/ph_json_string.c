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
 * LOWEST flagged byte is exact: the scanner jumps straight to it. */
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

static bool is_special(uint8_t c)
{
    return c == '"' || c == '\\' || c < 0x20 || c >= 0x80;
}

/* Where in the word at p the first special byte is; m = special_bytes() of that word, not 0. */
static uint32_t first_special(const uint8_t *p, ph_word m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* The first byte in memory is the lowest: its flag is exact. Shifts rather than
     * __builtin_ctz, a library call on cores without a count instruction (the ESP32-C3). */
    (void)p;
    uint32_t k = 0;
    for (; !(m & 0x80); m >>= 8) k++;
    return k;
#else
    /* Big-endian: the first byte in memory is the highest, whose flag may be a carry's. */
    (void)m;
    uint32_t k = 0;
    while (!is_special(p[k])) k++;
    return k;
#endif
}

/* Is s + i at a word boundary? The words are loaded aligned: the ESP32's cores cannot load a
 * word from anywhere else, so a load from an unknown address compiles to four byte loads. */
static bool word_aligned(const uint8_t *s, size_t i)
{
    return ((uintptr_t)(s + i) & (sizeof(ph_word) - 1)) == 0;
}

static ph_word aligned_word(const uint8_t *p)
{
    ph_word x;
    memcpy(&x, __builtin_assume_aligned(p, sizeof x), sizeof x);
    return x;
}

/* The index of the first special byte in s[i..n), or n: bytes up to a word boundary, then two
 * words per step (one test for both), then the tail. */
static uint32_t plain_end(const uint8_t *s, uint32_t n, uint32_t i)
{
    while (i < n && !word_aligned(s, i) && !is_special(s[i])) i++;
    if (word_aligned(s, i)) {
        while (n - i >= 2 * sizeof(ph_word)) {
            ph_word mx = special_bytes(aligned_word(s + i));
            ph_word my = special_bytes(aligned_word(s + i + sizeof(ph_word)));
            if (mx | my) {
                return i + (mx ? first_special(s + i, mx)
                               : (uint32_t)sizeof(ph_word) + first_special(s + i + sizeof(ph_word), my));
            }
            i += 2 * sizeof(ph_word);
        }
    }
    while (i < n && !is_special(s[i])) i++;
    return i;
}

int32_t ph_json_string_end(const uint8_t *s, uint32_t n)
{
    if (n == 0 || s[0] != '"') return PH_JSON_STRING_SYNTAX;
    uint32_t i = 1;
    for (;;) {
        i = plain_end(s, n, i);
        if (i >= n) return PH_JSON_STRING_SYNTAX;   /* truncated: no closing quote */
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
            continue;
        }
        if (c < 0x20) return PH_JSON_STRING_SYNTAX;
        uint32_t len = utf8_len(s + i, n - i);
        if (!len) return PH_JSON_STRING_UTF8;
        i += len;
    }
}

bool ph_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (word_aligned(s, i) && n - i >= sizeof(ph_word) && !(aligned_word(s + i) & WORD_HIGH)) {
            i += sizeof(ph_word);   /* all ASCII */
            continue;
        }
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t len = utf8_len(s + i, n - i > UINT32_MAX ? UINT32_MAX : (uint32_t)(n - i));
        if (!len) return false;
        i += len;
    }
    return true;
}

#if PH_JSON_MAX_DEPTH - 1 > 32
#error "PH_JSON_MAX_DEPTH - 1 levels must fit ph_json_value_end's 32-bit container stack"
#endif

static uint32_t skip_ws(const uint8_t *s, uint32_t n, uint32_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

static uint32_t digits_end(const uint8_t *s, uint32_t n, uint32_t i)
{
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    return i;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? from s[i]: the index after it, or 0 when there is
 * no number there (no value ends at 0). Any length: the hub never converts numbers. */
static uint32_t number_end(const uint8_t *s, uint32_t n, uint32_t i)
{
    if (i < n && s[i] == '-') i++;
    uint32_t j = digits_end(s, n, i);
    if (j == i || (s[i] == '0' && j > i + 1)) return 0;   /* no digit, or a leading 0 */
    if (j < n && s[j] == '.') {
        i = j + 1;
        j = digits_end(s, n, i);
        if (j == i) return 0;
    }
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        i = j + 1;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        j = digits_end(s, n, i);
        if (j == i) return 0;
    }
    return j;
}

static uint32_t literal_end(const uint8_t *s, uint32_t n, uint32_t i, const char *lit, uint32_t len)
{
    return n - i >= len && memcmp(s + i, lit, len) == 0 ? i + len : 0;
}

/* Three positions in the grammar, as labels: `value` (a value starts at i), `after` (a value ended
 * at i) and `key` (an object member starts at i). The containers open are a bit stack (`objects`,
 * bit d: level d is an object), so hostile nesting costs no C stack. */
int32_t ph_json_value_end(const uint8_t *s, uint32_t n)
{
    uint32_t i = 0, depth = 0, objects = 0;
    int32_t r;
    uint8_t c;

value:
    if (i >= n) return PH_JSON_STRING_SYNTAX;
    c = s[i];
    if (c == '{' || c == '[') {
        if (depth >= PH_JSON_MAX_DEPTH - 1) return PH_JSON_VALUE_DEPTH;
        objects = c == '{' ? objects | 1u << depth : objects & ~(1u << depth);
        depth++;
        i = skip_ws(s, n, i + 1);
        if (i < n && s[i] == c + 2) {   /* '{' + 2 == '}', '[' + 2 == ']': empty */
            i++;
            depth--;
            goto after;
        }
        if (c == '{') goto key;
        goto value;
    }
    if (c == '"') {
        r = ph_json_string_end(s + i, n - i);
        if (r < 0) return r;
        i += (uint32_t)r;
    } else {
        if (c == 't') i = literal_end(s, n, i, "true", 4);
        else if (c == 'f') i = literal_end(s, n, i, "false", 5);
        else if (c == 'n') i = literal_end(s, n, i, "null", 4);
        else i = number_end(s, n, i);
        if (i == 0) return PH_JSON_STRING_SYNTAX;
    }

after:
    if (depth == 0) return (int32_t)i;
    i = skip_ws(s, n, i);
    if (i >= n) return PH_JSON_STRING_SYNTAX;
    c = s[i++];
    bool in_object = (objects >> (depth - 1)) & 1u;
    if (c == ',') {
        i = skip_ws(s, n, i);
        if (in_object) goto key;
        goto value;
    }
    if (c != (in_object ? '}' : ']')) return PH_JSON_STRING_SYNTAX;
    depth--;
    goto after;

key:
    if (i >= n || s[i] != '"') return PH_JSON_STRING_SYNTAX;
    r = ph_json_string_end(s + i, n - i);
    if (r < 0) return r;
    i = skip_ws(s, n, i + (uint32_t)r);
    if (i >= n || s[i] != ':') return PH_JSON_STRING_SYNTAX;
    i = skip_ws(s, n, i + 1);
    goto value;
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
