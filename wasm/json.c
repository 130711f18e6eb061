/*
 * json.c — see json.h. The frame's object is walked here; every key and member value is validated
 * by the host in one call each, nested containers included, so hostile nesting costs no stack.
 */
#include "json.h"

#include <stddef.h>
#include "frame.h"
#include "ph_port.h"

static __attribute__((noinline)) uint32_t skip_ws_loop(const char *s, uint32_t n, uint32_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

/* Frames rarely hold whitespace between tokens: one byte compare inline, the loop only if needed. */
static inline __attribute__((always_inline)) uint32_t skip_ws(const char *s, uint32_t n, uint32_t i)
{
    return i < n && (unsigned char)s[i] <= ' ' ? skip_ws_loop(s, n, i) : i;
}

/* The host's answer for the token at s[i] (json_string_end or json_value_end): the index after
 * it, or a PH_JSON_* error. A length the text cannot hold is a host's nonsense: a syntax error. */
static int64_t token_end(uint32_t n, uint32_t i, int32_t len)
{
    if (len == PH_JSON_STRING_UTF8) return PH_JSON_UTF8;
    if (len == PH_JSON_VALUE_DEPTH) return PH_JSON_DEPTH;
    if (len < 1 || (uint32_t)len > n - i) return PH_JSON_SYNTAX;
    return (int64_t)i + len;
}

static int64_t value_end(const char *s, uint32_t n, uint32_t i)
{
    return i < n ? token_end(n, i, json_value_end(s + i, (int32_t)(n - i))) : PH_JSON_SYNTAX;
}

static json_kind kind_of(char c)
{
    switch (c) {
    case '"': return JV_STRING;
    case '{': return JV_OBJECT;
    case '[': return JV_ARRAY;
    case 't': return JV_TRUE;
    case 'f': return JV_FALSE;
    case 'n': return JV_NULL;
    default: return JV_NUMBER;
    }
}

/* json_top's members: their keys (a json_str_lookup table) and where each is, in one order. */
#define TOP_KEY(name) JSON_KEY(#name),
#define TOP_OFFSET(name) offsetof(json_top, name),
static const json_key TOP_KEYS[] = { JSON_TOP_MEMBERS(TOP_KEY) };
static const uint8_t TOP_OFFSETS[] = { JSON_TOP_MEMBERS(TOP_OFFSET) };
#define TOP_COUNT (uint32_t)(sizeof TOP_OFFSETS / sizeof TOP_OFFSETS[0])

int json_scan(const char *s, uint32_t n, json_top *top)
{
    uint32_t i = skip_ws(s, n, 0);
    int64_t r;
    if (top) memset(top, 0, offsetof(json_top, each));
    if (i >= n) return PH_JSON_SYNTAX;
    if (s[i] != '{') {
        /* Checked all the same, so the log can tell "valid JSON, but not an object" from garbage. */
        r = value_end(s, n, i);
        if (r < 0) return (int)r;
        return skip_ws(s, n, (uint32_t)r) == n ? PH_JSON_NOT_OBJECT : PH_JSON_SYNTAX;
    }
    i = skip_ws(s, n, i + 1);
    if (i < n && s[i] == '}') {
        i++;
        goto end;
    }
    for (;;) {
        if (i >= n || s[i] != '"') return PH_JSON_SYNTAX;
        r = token_end(n, i, json_string_end(s + i, (int32_t)(n - i)));
        if (r < 0) return (int)r;
        json_val key = {s + i, (uint32_t)r - i, JV_STRING};
        i = skip_ws(s, n, (uint32_t)r);
        if (i >= n || s[i] != ':') return PH_JSON_SYNTAX;
        i = skip_ws(s, n, i + 1);
        r = value_end(s, n, i);
        if (r < 0) return (int)r;
        if (top) {
            /* A later duplicate key overwrites the span, as JSON.parse keeps the last. */
            json_val v = {s + i, (uint32_t)r - i, kind_of(s[i])};
            uint32_t k = json_str_lookup(&key, TOP_KEYS, TOP_COUNT, 0);
            if (k < TOP_COUNT) *(json_val *)((char *)top + TOP_OFFSETS[k]) = v;
            if (top->each) top->each(top, &key, &v);
        }
        i = skip_ws(s, n, (uint32_t)r);
        if (i >= n) return PH_JSON_SYNTAX;
        if (s[i++] == '}') break;
        if (s[i - 1] != ',') return PH_JSON_SYNTAX;
        i = skip_ws(s, n, i);
    }
end:
    return skip_ws(s, n, i) == n ? PH_JSON_OK : PH_JSON_SYNTAX;
}

/* --- lookups on validated text --------------------------------------------------------------- */

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return c - 'A' + 10;
}

int json_str_equals(const json_val *v, const char *lit)
{
    if (v->kind != JV_STRING) return 0;
    const char *p = json_str_p(v), *end = p + json_str_n(v);
    /* Keys and types rarely hold escapes: equal bytes are equal characters (`lit` has no '\\'),
     * and the first difference is a mismatch unless it is an escape, decoded below. */
    while (p < end && *p == *lit) {
        p++;
        lit++;
    }
    while (p < end) {
        uint32_t ch;
        if (*p == '\\') {
            char e = p[1];
            p += 2;
            switch (e) {
            case 'u':
                ch = (uint32_t)(hex_val(p[0]) << 12 | hex_val(p[1]) << 8 | hex_val(p[2]) << 4 |
                                hex_val(p[3]));
                p += 4;
                break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 't': ch = '\t'; break;
            default: ch = (unsigned char)e; break;   /* \" \\ \/ */
            }
        } else {
            ch = (unsigned char)*p++;
        }
        /* `lit` is ASCII: a decoded code point 0 or >= 0x80 never matches. */
        if (ch == 0 || ch != (unsigned char)*lit) return 0;
        lit++;
    }
    return *lit == '\0';
}

static int has_escape(const char *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (p[i] == '\\') return 1;
    }
    return 0;
}

uint32_t json_str_lookup(const json_val *v, const json_key *table, uint32_t count, const char **name)
{
    const char *p = json_str_p(v);
    uint32_t i, n = json_str_n(v);
    /* Keys and types are spelled without escapes: first the raw bytes against the entries of the
     * same length, and only a string holding an escape is decoded against the shorter ones. */
    for (i = 0; i < count; i++) {
        if (table[i].len == n && table[i].name[0] == p[0] && memcmp(p, table[i].name, n) == 0) goto found;
    }
    if (has_escape(p, n)) {
        for (i = 0; i < count; i++) {
            if (n > table[i].len && json_str_equals(v, table[i].name)) goto found;
        }
    }
found:
    if (name) *name = i < count ? table[i].name : "";
    return i;
}

uint32_t json_safe_prefix(const char *p, uint32_t n, uint32_t max)
{
    uint32_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)p[i];
        uint32_t step = 1;
        if (c == '\\') step = (i + 1 < n && p[i + 1] == 'u') ? 6 : 2;
        else if (c >= 0xF0) step = 4;
        else if (c >= 0xE0) step = 3;
        else if (c >= 0xC0) step = 2;
        if (i + step > max || i + step > n) break;
        i += step;
    }
    return i;
}
