/*
 * json.h — a validating JSON scanner that never allocates and never copies.
 *
 * json_scan() checks a whole frame (RFC 8259 grammar, UTF-8 everywhere, the nesting limit
 * PH_JSON_MAX_DEPTH) before anything else looks at it, and in the same pass records spans of the
 * members the hub needs, which point into the text: relayed `data` values are copied byte for byte
 * from the input, so a frame the hub forwards is exactly as valid as the one it received. The
 * module walks the frame's own object; each key and each member value is checked by the host
 * (json_string_end, json_value_end), where checking costs a small fraction of interpreting it.
 */
#ifndef PH_JSON_H
#define PH_JSON_H

#include <stdint.h>

enum {
    PH_JSON_OK = 0,
    PH_JSON_SYNTAX = -1,      /* not JSON, truncated, trailing bytes                 */
    PH_JSON_UTF8 = -2,        /* invalid UTF-8 (would make recipients close 1007)    */
    PH_JSON_DEPTH = -3,       /* nesting deeper than PH_JSON_MAX_DEPTH               */
    PH_JSON_NOT_OBJECT = -4,  /* valid JSON, but the top level is not an object      */
};

typedef enum {
    JV_NONE = 0, JV_STRING, JV_NUMBER, JV_OBJECT, JV_ARRAY, JV_TRUE, JV_FALSE, JV_NULL
} json_kind;

/* A value in validated text: p/n is the raw token (strings include their quotes). */
typedef struct {
    const char *p;
    uint32_t n;
    json_kind kind;
} json_val;

/* What json_scan records about the members of the object it scans (the frame, or a `data` object
 * scanned again): the spans of the members the hub routes on, kind JV_NONE when absent, so nothing
 * rescans the text; and, when `each` is set, a call per member in order (key with its quotes). */
#define JSON_TOP_MEMBERS(X) \
    X(type) X(data) X(networkName) X(targetPeerId) X(fromPeerId) X(peerId) X(isHub)
typedef struct json_top json_top;
struct json_top {
#define JSON_TOP_MEMBER(name) json_val name;
    JSON_TOP_MEMBERS(JSON_TOP_MEMBER)
#undef JSON_TOP_MEMBER
    void (*each)(json_top *top, const json_val *key, const json_val *val);
    void *ctx;                 /* for `each` */
};

/* Validates the whole text (PH_JSON_*); when `top` is not NULL and the text is an object, also
 * records the spans of the members above (keys compared decoded, the last duplicate wins) and
 * calls top->each (if set; keep each/ctx, the rest is cleared). On an error `top` holds whatever
 * was seen so far and `each` may have been called for members before the error: use either only
 * on PH_JSON_OK (the hub calls `each` only on text validated before). */
int json_scan(const char *s, uint32_t n, json_top *top);

/* Raw string content without the quotes (escapes left as they are). */
static inline const char *json_str_p(const json_val *v) { return v->p + 1; }
static inline uint32_t json_str_n(const json_val *v) { return v->n - 2; }

/* 1 when the JSON string `v` decodes to the ASCII text `lit`. */
int json_str_equals(const json_val *v, const char *lit);
/* One entry of a json_str_lookup table: JSON_KEY("name") counts its length. */
typedef struct {
    const char *name;
    uint32_t len;
} json_key;
#define JSON_KEY(lit) { (lit), sizeof(lit) - 1 }
/* The index of the entry of table[0..count) that the JSON string `v` decodes to, or count when none
 * does; *name (if not NULL) is set to that entry's name ("" for none). An escape only lengthens a
 * raw string, so entries longer than v's raw text are skipped without comparing, and most are told
 * apart by length alone. */
uint32_t json_str_lookup(const json_val *v, const json_key *table, uint32_t count, const char **name);
/* Length of the longest prefix of raw string content (p, n) not longer than `max` that does not
 * cut an escape sequence or a UTF-8 character: safe to embed in another JSON string. */
uint32_t json_safe_prefix(const char *p, uint32_t n, uint32_t max);

#endif /* PH_JSON_H */
