/*
 * fuzz_upload_check.c — libFuzzer target: ph_upload_check, the checks POST /module makes before it
 * reads a body, on the board (main/http_endpoints.c) and on the PC hub alike.
 *
 * Input: byte 0 and 1 = the slot size (little-endian, in units of 16 bytes), then four fields
 * separated by 0x00: the configured token, the Authorization header, X-Module-SHA256 and
 * Content-Length; a field that is exactly "\x01" stands for an absent header (NULL). Each field is
 * handed over in a heap buffer of exactly its length + 1, so a read past it is an ASan report.
 *
 * Checks: the status is one of 0, 400, 403, 411, 413; the reason is NUL-terminated inside an
 * exactly-sized heap buffer and says something on every refusal; 0 only for a request that is
 * right in everything (a configured token sent as "Bearer <token>", 64 hex digits whose bytes are
 * the hash handed on, decimal digits whose value is the length handed on, 1 to the slot size); a
 * wrong token is always 403, whatever else is wrong.
 */
#include "fuzz_support.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ph_upload_check.h"

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_upload_check: check failed: " #cond ": " __VA_ARGS__);           \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The next field as an exactly-sized C string (NULL for "\x01"); advances *p. */
static char *field(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *start = *p;
    const uint8_t *stop = memchr(start, 0, (size_t)(end - start));
    if (stop == NULL) stop = end;
    *p = stop < end ? stop + 1 : end;
    size_t n = (size_t)(stop - start);
    if (n == 1 && start[0] == 1) return NULL;
    char *s = malloc(n + 1);
    memcpy(s, start, n);
    s[n] = '\0';
    return s;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    const uint8_t *p = data + 2, *end = data + size;
    ph_upload_request rq = { .token_hint = "hint", .slot_bytes = (size_t)(data[0] | data[1] << 8) * 16 };
    char *token = field(&p, end), *auth = field(&p, end), *sha_hex = field(&p, end),
         *length_text = field(&p, end);
    rq.token = token;
    rq.authorization = auth;
    rq.sha256_hex = sha_hex;
    rq.content_length = length_text;

    const size_t cap = 96 + (size_t)(data[0] & 0x3f);   /* short caps truncate the reasons */
    char *reason = malloc(cap);
    memset(reason, 'X', cap);
    size_t length = 12345;
    uint8_t sha[32];
    int status = ph_upload_check(&rq, &length, sha, reason, cap);

    CHECK(status == 0 || status == 400 || status == 403 || status == 411 || status == 413,
          "status %d", status);
    if (status != 0) {
        CHECK(memchr(reason, '\0', cap) != NULL, "reason not NUL-terminated");
        CHECK(reason[0] != '\0', "empty reason for %d", status);
    }
    bool token_right = token && token[0] && auth && strncmp(auth, "Bearer ", 7) == 0 &&
                       strcmp(auth + 7, token) == 0;
    if (!token_right) CHECK(status == 403, "a wrong or missing token got %d", status);
    if (status == 0) {
        CHECK(strlen(sha_hex) == 64, "hash of %zu characters accepted", strlen(sha_hex));
        for (int i = 0; i < 32; i++) {
            int hi = hexval(sha_hex[2 * i]), lo = hexval(sha_hex[2 * i + 1]);
            CHECK(hi >= 0 && lo >= 0 && sha[i] == (uint8_t)(hi << 4 | lo), "hash byte %d", i);
        }
        unsigned long long n = 0;
        for (const char *c = length_text; *c; c++) {
            CHECK(*c >= '0' && *c <= '9', "length '%s' accepted", length_text);
            if (n < (1ULL << 40)) n = n * 10 + (unsigned)(*c - '0');
        }
        CHECK(n >= 1 && n <= rq.slot_bytes && length == n, "length %zu for '%s' (slot %zu)", length,
              length_text, rq.slot_bytes);
    }
    free(reason);
    free(token);
    free(auth);
    free(sha_hex);
    free(length_text);
    return 0;
}
