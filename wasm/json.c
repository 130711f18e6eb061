/*
 * json.c — see json.h. Validation is iterative (a bit stack records object/array per level), so
 * hostile nesting costs no C stack; lookups rely on validation having happened and stay simple.
 */
#include "json.h"

#include <stddef.h>
#include "frame.h"
#include "ph_port.h"

#if PH_JSON_MAX_DEPTH > 32
#error "PH_JSON_MAX_DEPTH must fit the 32-bit container stack"
#endif

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

static uint32_t skip_ws_loop(const char *s, uint32_t n, uint32_t i)
{
    while (i < n && is_ws(s[i])) i++;
    return i;
}

/* Frames rarely hold whitespace between tokens: one byte compare inline, the loop only if needed. */
static inline uint32_t skip_ws(const char *s, uint32_t n, uint32_t i)
{
    return i < n && (unsigned char)s[i] <= ' ' ? skip_ws_loop(s, n, i) : i;
}

/* s[i] is the opening quote. Returns the index after the closing quote, or a PH_JSON_* error.
 * The bytes of a string are checked by the host (json_string_end): an offer's SDP is nearly the
 * whole frame, and an interpreter scanning it costs more than everything else the hub does. */
static int64_t scan_string(const char *s, uint32_t n, uint32_t i)
{
    int32_t len = json_string_end(s + i, (int32_t)(n - i));
    if (len == PH_JSON_STRING_UTF8) return PH_JSON_UTF8;
    if (len < 2 || (uint32_t)len > n - i) return PH_JSON_SYNTAX;   /* also a host's nonsense */
    return (int64_t)i + len;
}

static uint32_t digits(const char *s, uint32_t n, uint32_t i)
{
    while (i < n && is_digit(s[i])) i++;
    return i;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? ; any length (the hub never converts numbers). */
static int64_t scan_number(const char *s, uint32_t n, uint32_t i)
{
    if (i < n && s[i] == '-') i++;
    uint32_t j = digits(s, n, i);
    if (j == i || (s[i] == '0' && j > i + 1)) return PH_JSON_SYNTAX;   /* none, or a leading 0 */
    if (j < n && s[j] == '.') {
        i = j + 1;
        j = digits(s, n, i);
        if (j == i) return PH_JSON_SYNTAX;
    }
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        i = j + 1;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        j = digits(s, n, i);
        if (j == i) return PH_JSON_SYNTAX;
    }
    return j;
}

static int64_t scan_literal(const char *s, uint32_t n, uint32_t i, const char *lit)
{
    while (*lit) {
        if (i >= n || s[i] != *lit) return PH_JSON_SYNTAX;
        i++;
        lit++;
    }
    return i;
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

/* The json_top member a top-level key (the JSON string token) names, or NULL. */
static json_val *top_member(json_top *top, const json_val *key)
{
    uint32_t i = json_str_lookup(key, TOP_KEYS, TOP_COUNT, 0);
    return i < TOP_COUNT ? (json_val *)((char *)top + TOP_OFFSETS[i]) : 0;
}

/* Three positions in the grammar, as labels: `value` (a value starts at i), `after` (a value ended
 * at i) and `key` (an object member starts at i). Whitespace is skipped before each; the
 * containers open above are a bit stack (`objects`, bit d: level d is an object). */
int json_scan(const char *s, uint32_t n, json_top *top)
{
    uint32_t i = skip_ws(s, n, 0);
    /* The grammar is checked for any top-level value so the log can tell "valid JSON, but not an
     * object" from garbage; members are recorded only for an object. */
    int object = i < n && s[i] == '{';
    int record = top && object;
    json_val key = {0, 0, JV_NONE};   /* key of the top-level member being scanned */
    json_val *field = 0;              /* its json_top member (NULL: none) */
    uint32_t field_at = 0;            /* where its value starts */
    uint32_t objects = 0, depth = 0;
    int64_t r;
    char c;
    if (top) memset(top, 0, offsetof(json_top, each));

value:
    if (i >= n) return PH_JSON_SYNTAX;   /* truncated */
    c = s[i];
    if (c == '{' || c == '[') {
        if (depth >= PH_JSON_MAX_DEPTH) return PH_JSON_DEPTH;
        if (c == '{') objects |= 1u << depth;
        else objects &= ~(1u << depth);
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
    if (c == '"') r = scan_string(s, n, i);
    else if (c == 't') r = scan_literal(s, n, i, "true");
    else if (c == 'f') r = scan_literal(s, n, i, "false");
    else if (c == 'n') r = scan_literal(s, n, i, "null");
    else r = scan_number(s, n, i);
    if (r < 0) return (int)r;
    i = (uint32_t)r;

after:
    if (depth == 1 && key.kind) {
        /* A top-level member's value just ended: record its span (a later duplicate key
         * overwrites it, as JSON.parse keeps the last). */
        json_val v = {s + field_at, i - field_at, kind_of(s[field_at])};
        if (field) *field = v;
        if (top->each) top->each(top, &key, &v);
        key.kind = JV_NONE;
    }
    i = skip_ws(s, n, i);
    if (depth == 0) {
        if (i != n) return PH_JSON_SYNTAX;
        return object ? PH_JSON_OK : PH_JSON_NOT_OBJECT;
    }
    if (i >= n) return PH_JSON_SYNTAX;
    c = s[i++];
    int in_object = (objects >> (depth - 1)) & 1u;
    if (c == ',') {
        i = skip_ws(s, n, i);
        if (in_object) goto key;
        goto value;
    }
    if (c != (in_object ? '}' : ']')) return PH_JSON_SYNTAX;
    depth--;
    goto after;

key:
    if (i >= n || s[i] != '"') return PH_JSON_SYNTAX;
    r = scan_string(s, n, i);
    if (r < 0) return (int)r;
    if (record && depth == 1) {
        key.p = s + i;
        key.n = (uint32_t)r - i;
        key.kind = JV_STRING;
        field = top_member(top, &key);
    }
    i = skip_ws(s, n, (uint32_t)r);
    if (i >= n || s[i] != ':') return PH_JSON_SYNTAX;
    i = skip_ws(s, n, i + 1);
    if (depth == 1) field_at = i;
    goto value;
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

uint32_t json_str_lookup(const json_val *v, const json_key *table, uint32_t count, const char **name)
{
    uint32_t i = 0, n = json_str_n(v);
    while (i < count && !(n >= table[i].len && json_str_equals(v, table[i].name))) i++;
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
