/*
 * ph_json_string.h — JSON on the host: the json_string_end and json_value_end imports
 * (pigeonhub_abi.h), and the one escaper the bridge and the firmware write JSON strings with.
 *
 * A relayed offer is 4.5 KB, nearly all of it one JSON string (the SDP), and the module must
 * validate every byte of it before forwarding. In WASM3 that scan was two thirds of the module's
 * work per offer; done natively it is a few percent. Likewise every member value of a frame (a
 * candidate's `data` object is most of its tokens): the module walks only the frame's own object,
 * its keys and what it does with them. Plain C with no WASM3 or bridge types, so the
 * module's native test build and the Python extension use this same function.
 */
#ifndef PH_JSON_STRING_H
#define PH_JSON_STRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pigeonhub_abi.h"   /* PH_JSON_STRING_* */

/* s[0] must be the opening '"' of a JSON string and s[0..n) the text available from there.
 * Returns the length of the string token including both quotes, or PH_JSON_STRING_SYNTAX
 * (no opening quote, truncated, a raw control character, a bad escape) or PH_JSON_STRING_UTF8
 * (not shortest-form UTF-8, a surrogate, above U+10FFFF). RFC 8259 exactly: any \uXXXX escape is
 * accepted, lone surrogates included, as JSON.parse does. */
int32_t ph_json_string_end(const uint8_t *s, uint32_t n);

/* s[0] must be the first byte of a JSON value and s[0..n) the text available from there. Returns
 * the length of the value (RFC 8259 grammar; strings as ph_json_string_end checks them; objects
 * and arrays nested at most PH_JSON_MAX_DEPTH - 1 deep, since the value sits inside a frame's
 * object), or PH_JSON_STRING_SYNTAX, PH_JSON_STRING_UTF8 or PH_JSON_VALUE_DEPTH. Whitespace
 * before the value is an error; what follows it is not looked at. */
int32_t ph_json_value_end(const uint8_t *s, uint32_t n);

/* 1 when s[0..n) is UTF-8 as RFC 3629 defines it (shortest form, no surrogates, nothing above
 * U+10FFFF), which RFC 6455 requires of a text message; ASCII runs are checked a word at a time. */
bool ph_utf8_valid(const uint8_t *s, size_t n);

/* s[0..len) as the inside of a JSON string, into out[0..cap) (no NUL): '"' and '\\' escaped,
 * control bytes written as '?' (these strings are reasons and URLs, shown to people). Stops
 * before a character that does not fit, so the output never ends inside an escape; at most
 * 2 * len bytes. Returns the bytes written. */
size_t ph_json_escape(char *out, size_t cap, const char *s, size_t len);

#endif /* PH_JSON_STRING_H */
