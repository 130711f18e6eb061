/*
 * ph_upload_check.c — POST /module's checks before the body (ph_upload_check.h).
 */
#include "ph_upload_check.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ph_module_store.h"

/* Equal strings, in time that depends only on the sent token's length: how long a wrong guess
 * takes says nothing about how much of it was right. */
static bool token_equal(const char *got, const char *want)
{
    size_t lg = strlen(got), lw = strlen(want);
    unsigned diff = (unsigned)(lg ^ lw);
    for (size_t i = 0; i < lg; i++) diff |= (unsigned)(got[i] ^ want[i % lw]);
    return diff == 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool parse_sha256(const char *hex, uint8_t out[32])
{
    if (hex == NULL || strlen(hex) != 64) return false;
    for (int i = 0; i < 32; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

/* Decimal digits only (a sign, spaces or another script's digits are refused); saturates. */
static bool parse_length(const char *text, unsigned long long *value)
{
    if (*text == '\0') return false;
    unsigned long long v = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v > (~0ULL - 9) / 10 ? ~0ULL : v * 10 + (unsigned)(*p - '0');
    }
    *value = v;
    return true;
}

int ph_upload_check(const ph_upload_request *rq, size_t *length, uint8_t sha256[32], char *reason,
                    size_t reason_cap)
{
    static const char scheme[] = "Bearer ";
    if (rq->token == NULL || rq->token[0] == '\0') {
        snprintf(reason, reason_cap, "uploads are disabled until an upload token is set (%s)",
                 rq->token_hint);
        return 403;
    }
    if (rq->authorization == NULL ||
        strlen(rq->authorization) > sizeof scheme - 1 + PH_UPLOAD_TOKEN_MAX) {
        snprintf(reason, reason_cap,
                 "missing or oversized Authorization header (expected: Bearer <token>)");
        return 403;
    }
    if (strncmp(rq->authorization, scheme, sizeof scheme - 1) != 0 ||
        !token_equal(rq->authorization + sizeof scheme - 1, rq->token)) {
        snprintf(reason, reason_cap, "wrong upload token");
        return 403;
    }
    if (!parse_sha256(rq->sha256_hex, sha256)) {
        snprintf(reason, reason_cap,
                 "X-Module-SHA256 header with the 64-hex SHA-256 of the body is required");
        return 400;
    }
    unsigned long long n = 0;
    if (rq->content_length != NULL && !parse_length(rq->content_length, &n)) {
        snprintf(reason, reason_cap, "Content-Length must be a decimal number of bytes, not '%.20s'",
                 rq->content_length);
        return 400;
    }
    if (n == 0) {
        snprintf(reason, reason_cap, "empty body: send the .wasm file with a Content-Length");
        return 411;
    }
    if (n > rq->slot_bytes) {
        snprintf(reason, reason_cap, "module is %llu bytes; a module slot holds %u", n,
                 (unsigned)rq->slot_bytes);
        return 413;
    }
    *length = (size_t)n;
    return 0;
}
