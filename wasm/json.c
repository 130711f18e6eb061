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
static int is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static uint32_t skip_ws(const char *s, uint32_t n, uint32_t i)
{
    while (i < n && is_ws(s[i])) i++;
    return i;
}

/* Length of the UTF-8 sequence at s[i] (1..4), or 0 when it is not a valid, shortest-form,
 * non-surrogate code point up to U+10FFFF. */
static uint32_t utf8_len(const unsigned char *s, uint32_t n, uint32_t i)
{
    unsigned char c = s[i];
    uint32_t len;
    unsigned char lo = 0x80, hi = 0xBF;   /* allowed range of the first continuation byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) { len = 3; lo = 0xA0; }
    else if (c == 0xED) { len = 3; hi = 0x9F; }          /* no UTF-16 surrogates */
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) { len = 4; hi = 0x8F; }          /* nothing above U+10FFFF */
    else return 0;
    if (n - i < len) return 0;
    if (s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (uint32_t k = 2; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80) return 0;
    }
    return len;
}

/* Word-at-a-time scanning of string bodies: a frame is mostly the body of one string (an SDP), and
 * an interpreter pays per executed instruction, so eight bytes are classified with one i64 load and
 * a dozen ALU ops instead of a dozen ops per byte. The result has bit 7 of byte k set when byte k is
 * '"', '\\', a control character (< 0x20) or >= 0x80. Additions carry into the next byte only out
 * of a byte >= 0x80, which is itself flagged, so the LOWEST flagged byte is always exact (higher
 * ones may be false): the scanner jumps there and handles that one byte exactly. */
#define SWAR_ONES 0x0101010101010101ull
#define SWAR_HIGH 0x8080808080808080ull

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "json.c's word-at-a-time scanner assumes little-endian loads (wasm32 always is)"
#endif

static uint64_t special_bytes(uint64_t x)
{
    uint64_t ok = (x + SWAR_ONES * 0x60)                          /* bit 7: byte >= 0x20 */
                  & ((x ^ SWAR_ONES * '"') + SWAR_ONES * 0x7F)     /* bit 7: byte != '"'  */
                  & ((x ^ SWAR_ONES * '\\') + SWAR_ONES * 0x7F);   /* bit 7: byte != '\\' */
    return (~ok | x) & SWAR_HIGH;
}

/* Bit k set: "\<0x60 + k>" is a valid escape (\b \f \n \r \t); '"', '\\' and '/' are tested apart. */
#define ESCAPE_LETTERS (1u << ('b' - 0x60) | 1u << ('f' - 0x60) | 1u << ('n' - 0x60) | \
                        1u << ('r' - 0x60) | 1u << ('t' - 0x60))

/* s[i] is the opening quote. Returns the index after the closing quote, or a PH_JSON_* error. */
static int64_t scan_string(const char *s, uint32_t n, uint32_t i)
{
    const unsigned char *u = (const unsigned char *)s;
    i++;
    for (;;) {
        for (;;) {   /* plain bytes, eight at a time */
            if (n - i < 8) {   /* i <= n always holds here: the tail byte by byte */
                if (i >= n) return PH_JSON_SYNTAX;   /* truncated */
                break;
            }
            uint64_t x;
            memcpy(&x, s + i, 8);   /* one unaligned i64.load */
            uint64_t m = special_bytes(x);
            if (m) {
                i += (uint32_t)__builtin_ctzll(m) >> 3;
                break;
            }
            i += 8;
        }
        unsigned char c = u[i];
        if (c == '\\') {   /* first: SDP bodies hold an escaped CR LF per line */
            if (n - i < 2) return PH_JSON_SYNTAX;
            unsigned char e = u[i + 1];
            if (e >= 0x60 ? e < 0x80 && (ESCAPE_LETTERS >> (e - 0x60)) & 1
                          : e == '"' || e == '\\' || e == '/') {
                i += 2;
                continue;
            }
            if (e != 'u' || n - i < 6) return PH_JSON_SYNTAX;
            for (uint32_t k = 2; k < 6; k++) {
                if (!is_hex(s[i + k])) return PH_JSON_SYNTAX;
            }
            /* Lone surrogates and \u0000 are legal JSON (JSON.parse accepts them) and stay
             * escaped ASCII when relayed, so they are allowed. */
            i += 6;
        } else if (c == '"') {
            return (int64_t)i + 1;
        } else if (c < 0x20) {
            return PH_JSON_SYNTAX;
        } else if (c < 0x80) {
            i++;   /* the byte-by-byte tail */
        } else {
            uint32_t len = utf8_len(u, n, i);
            if (!len) return PH_JSON_UTF8;
            i += len;
        }
    }
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

enum { ST_VALUE, ST_VALUE_OR_CLOSE, ST_KEY, ST_KEY_OR_CLOSE, ST_AFTER };

/* json_top's members in order, NUL-separated. */
static const char TOP_KEYS[] = "type\0data\0networkName\0targetPeerId\0fromPeerId\0peerId\0isHub\0";

/* The json_top member a top-level key (the JSON string token) names, or NULL. Keys compare
 * decoded, as JSON.parse does ("t\u0079pe" is type). */
static json_val *top_member(json_top *top, const json_val *key)
{
    json_val *m = &top->type;
    for (const char *k = TOP_KEYS; *k; k += ph_strlen(k) + 1, m++) {
        if (json_str_equals(key, k)) return m;
    }
    return 0;
}

int json_scan(const char *s, uint32_t n, json_top *top)
{
    uint32_t i = skip_ws(s, n, 0);
    json_val *field = 0;    /* json_top member whose value is being scanned (NULL: none) */
    json_val key = {0, 0, JV_NONE};   /* key of the top-level member being scanned */
    uint32_t field_at = 0;
    /* The grammar is checked for any top-level value so the log can tell "valid JSON, but not an
     * object" from garbage. */
    int object = i < n && s[i] == '{';
    uint32_t objects = 0;   /* bit d set: level d is an object (else an array) */
    uint32_t depth = 0;
    int state = ST_VALUE;
    if (top) memset(top, 0, offsetof(json_top, each));
    for (;;) {
        if (key.kind && state == ST_AFTER && depth == 1) {
            /* A top-level member's value just ended: record its span (a later duplicate key
             * overwrites it, as JSON.parse keeps the last). */
            json_val v = {s + field_at, i - field_at, kind_of(s[field_at])};
            if (field) *field = v;
            if (top->each) top->each(top, &key, &v);
            key.kind = JV_NONE;
        }
        if (state == ST_AFTER && depth == 0) {
            if (skip_ws(s, n, i) != n) return PH_JSON_SYNTAX;
            return object ? PH_JSON_OK : PH_JSON_NOT_OBJECT;
        }
        i = skip_ws(s, n, i);
        if (i >= n) return PH_JSON_SYNTAX;   /* truncated */
        char c = s[i];
        int64_t r;
        switch (state) {
        case ST_VALUE_OR_CLOSE:
            if (c == ']') {
                depth--;
                i++;
                state = ST_AFTER;
                break;
            }
            /* fall through */
        case ST_VALUE:
            if (c == '{' || c == '[') {
                if (depth >= PH_JSON_MAX_DEPTH) return PH_JSON_DEPTH;
                if (c == '{') objects |= 1u << depth;
                else objects &= ~(1u << depth);
                depth++;
                i++;
                state = c == '{' ? ST_KEY_OR_CLOSE : ST_VALUE_OR_CLOSE;
                break;
            }
            if (c == '"') r = scan_string(s, n, i);
            else if (c == 't') r = scan_literal(s, n, i, "true");
            else if (c == 'f') r = scan_literal(s, n, i, "false");
            else if (c == 'n') r = scan_literal(s, n, i, "null");
            else r = scan_number(s, n, i);
            if (r < 0) return (int)r;
            i = (uint32_t)r;
            state = ST_AFTER;
            break;
        case ST_KEY_OR_CLOSE:
            if (c == '}') {
                depth--;
                i++;
                state = ST_AFTER;
                break;
            }
            /* fall through */
        case ST_KEY:
            if (c != '"') return PH_JSON_SYNTAX;
            r = scan_string(s, n, i);
            if (r < 0) return (int)r;
            if (top && depth == 1 && object) {
                key.p = s + i;
                key.n = (uint32_t)r - i;
                key.kind = JV_STRING;
                field = top_member(top, &key);
                field_at = skip_ws(s, n, skip_ws(s, n, (uint32_t)r) + 1);   /* after the ':' */
            }
            i = skip_ws(s, n, (uint32_t)r);
            if (i >= n || s[i] != ':') return PH_JSON_SYNTAX;
            i++;
            state = ST_VALUE;
            break;
        default: { /* ST_AFTER inside a container */
            int in_object = (objects >> (depth - 1)) & 1u;
            if (c == ',') {
                i++;
                state = in_object ? ST_KEY : ST_VALUE;
            } else if (c == (in_object ? '}' : ']')) {
                depth--;
                i++;
            } else {
                return PH_JSON_SYNTAX;
            }
            break;
        }
        }
    }
}

/* --- lookups on validated text --------------------------------------------------------------- */

typedef struct {
    const char *key;
    json_val found;
} json_get_ctx;

static void get_member(json_top *top, const json_val *key, const json_val *val)
{
    json_get_ctx *c = top->ctx;
    if (json_str_equals(key, c->key)) c->found = *val;
}

json_val json_get(const json_val *obj, const char *key)
{
    json_get_ctx c = {key, {0, 0, JV_NONE}};
    json_top top;
    top.each = get_member;
    top.ctx = &c;
    if (obj->kind == JV_OBJECT) json_scan(obj->p, obj->n, &top);
    return c.found;
}

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
