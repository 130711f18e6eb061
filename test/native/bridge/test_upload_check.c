/*
 * test_upload_check.c — POST /module's checks before the body (ph_upload_check.c), as the board and
 * the PC hub both answer them: which status, which reason, in which order, for each way a request
 * can be wrong, and the length and hash handed on when it is right.
 *
 *   ./test_upload_check      exit status 0 = all passed
 */
#include <stdio.h>
#include <string.h>

#include "ph_upload_check.h"

static int failures;

#define SHA_HEX "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"

static ph_upload_request good(void)
{
    ph_upload_request rq = {
        .token = "secret-token", .token_hint = "set one", .authorization = "Bearer secret-token",
        .sha256_hex = SHA_HEX, .content_length = "16000", .slot_bytes = 65536,
    };
    return rq;
}

static void expect(const char *name, ph_upload_request rq, int status, const char *reason)
{
    size_t len = 0;
    uint8_t sha[32];
    char got[200] = "";
    int s = ph_upload_check(&rq, &len, sha, got, sizeof got);
    if (s != status || (reason && strcmp(got, reason) != 0)) {
        fprintf(stderr, "FAIL %s: %d '%s', expected %d '%s'\n", name, s, got, status,
                reason ? reason : "");
        failures++;
    }
}

int main(void)
{
    ph_upload_request rq = good();
    size_t len = 0;
    uint8_t sha[32] = { 0 };
    char reason[200];
    if (ph_upload_check(&rq, &len, sha, reason, sizeof reason) != 0 || len != 16000 ||
        sha[0] != 0x00 || sha[1] != 0x11 || sha[31] != 0xff) {
        fprintf(stderr, "FAIL a good request: length %zu, sha %02x..%02x\n", len, sha[0], sha[31]);
        failures++;
    }

    rq = good(); rq.token = NULL;
    expect("no token configured", rq, 403, "uploads are disabled until an upload token is set (set one)");
    rq = good(); rq.token = "";
    expect("empty token configured", rq, 403, NULL);
    rq = good(); rq.authorization = NULL;
    expect("no Authorization", rq, 403, "missing or oversized Authorization header (expected: Bearer <token>)");
    rq = good(); rq.authorization = "Bearer " "0123456789012345678901234567890123456789012345678901234567890123x";
    expect("Authorization one byte too long", rq, 403, "missing or oversized Authorization header (expected: Bearer <token>)");
    rq = good(); rq.authorization = "Bearer secret-tokem";
    expect("wrong token", rq, 403, "wrong upload token");
    rq = good(); rq.authorization = "Bearer secret-token2";
    expect("token with a suffix", rq, 403, "wrong upload token");
    rq = good(); rq.authorization = "Basic secret-token";
    expect("another scheme", rq, 403, "wrong upload token");
    rq = good(); rq.authorization = "Bearer ";
    expect("empty sent token", rq, 403, "wrong upload token");
    /* the token comes first: a request wrong in everything is a 403 */
    rq = good(); rq.authorization = NULL; rq.sha256_hex = NULL; rq.content_length = "x";
    expect("token checked first", rq, 403, NULL);

    rq = good(); rq.sha256_hex = NULL;
    expect("no hash", rq, 400, "X-Module-SHA256 header with the 64-hex SHA-256 of the body is required");
    rq = good(); rq.sha256_hex = SHA_HEX "0";
    expect("65 hex digits", rq, 400, NULL);
    rq = good(); rq.sha256_hex = "g0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    expect("not hex", rq, 400, NULL);

    rq = good(); rq.content_length = "1610\xc2\xb3";
    expect("a superscript digit", rq, 400, "Content-Length must be a decimal number of bytes, not '1610\xc2\xb3'");
    rq = good(); rq.content_length = "-5";
    expect("a sign", rq, 400, NULL);
    rq = good(); rq.content_length = "";
    expect("empty length", rq, 400, NULL);
    rq = good(); rq.content_length = NULL;
    expect("no length", rq, 411, "empty body: send the .wasm file with a Content-Length");
    rq = good(); rq.content_length = "0";
    expect("zero length", rq, 411, NULL);
    rq = good(); rq.content_length = "65537";
    expect("one byte over a slot", rq, 413, "module is 65537 bytes; a module slot holds 65536");
    rq = good(); rq.content_length = "99999999999999999999999999";
    expect("a length that overflows", rq, 413, NULL);
    rq = good(); rq.content_length = "65536";
    expect("exactly a slot", rq, 0, NULL);

    if (failures) {
        fprintf(stderr, "test_upload_check: %d failed\n", failures);
        return 1;
    }
    printf("test_upload_check: all passed\n");
    return 0;
}
