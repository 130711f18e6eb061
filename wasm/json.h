/*
 * json.h — a validating JSON scanner that never allocates and never copies.
 *
 * json_validate() checks a whole frame (RFC 8259 grammar, UTF-8 everywhere, a nesting limit) before
 * anything else looks at it. The lookup functions then walk the validated text and hand out spans
 * that point into it: relayed `data` values are copied byte for byte from the input, so a frame the
 * hub forwards is exactly as valid as the one it received.
 */
#ifndef PH_JSON_H
#define PH_JSON_H

#include <stdint.h>

#ifndef PH_JSON_MAX_DEPTH
#define PH_JSON_MAX_DEPTH 32   /* nested objects/arrays; real frames use 3 */
#endif

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

/* Iterator over the members of a validated object. */
typedef struct {
    const char *p;
    const char *end;
} json_iter;

/* The top-level members the hub routes on, captured by the validating pass so nothing rescans the
 * frame; kind JV_NONE when absent. */
typedef struct {
    json_val type, data, networkName, targetPeerId, fromPeerId;
} json_top;

/* Validates the whole text (PH_JSON_*); when `top` is not NULL and the text is an object, also
 * records the spans of the members above (keys compared decoded, the last duplicate wins). On an
 * error `top` holds whatever was seen so far: do not use it. */
int json_scan(const char *s, uint32_t n, json_top *top);
static inline int json_validate(const char *s, uint32_t n) { return json_scan(s, n, 0); }

/* `obj` must be a JV_OBJECT value (or a whole validated frame). */
void json_iter_init(json_iter *it, const json_val *obj);
/* Next member: 1 and key/val set, or 0 at the end. */
int json_iter_next(json_iter *it, json_val *key, json_val *val);
/* The LAST member named `key` (JSON.parse keeps the last duplicate); kind JV_NONE if absent.
 * Keys are compared after decoding escapes, as JSON.parse would. */
json_val json_get(const json_val *obj, const char *key);

/* Raw string content without the quotes (escapes left as they are). */
static inline const char *json_str_p(const json_val *v) { return v->p + 1; }
static inline uint32_t json_str_n(const json_val *v) { return v->n - 2; }

/* 1 when the JSON string `v` decodes to the ASCII text `lit`. */
int json_str_equals(const json_val *v, const char *lit);
/* Length of the longest prefix of raw string content (p, n) not longer than `max` that does not
 * cut an escape sequence or a UTF-8 character: safe to embed in another JSON string. */
uint32_t json_safe_prefix(const char *p, uint32_t n, uint32_t max);

#endif /* PH_JSON_H */
