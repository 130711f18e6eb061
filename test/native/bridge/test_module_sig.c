/*
 * test_module_sig.c — the signature section's parser and the decision a hub with a module key makes
 * (ph_module_sig.c): where the signed range ends, and the exact reason for each way a module can be
 * unsigned, misplaced, cut short, oversized or signed by another key. The ECDSA verify is the hosts'
 * (mbedtls, `cryptography`); here a stand-in answers what each case needs.
 *
 *   ./test_module_sig      exit status 0 = all passed
 */
#include <stdio.h>
#include <string.h>

#include "ph_module_sig.h"

static int failures;

#define FAIL(...) do { fprintf(stderr, "FAIL " __VA_ARGS__); fputc('\n', stderr); failures++; } while (0)

/* A minimal module: the header, a type section, and a custom section "name" (4 bytes of payload). */
static const uint8_t MODULE[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00,             /* type: one func () -> () */
    0x00, 0x09, 0x04, 'n', 'a', 'm', 'e', 1, 2, 3, 4, /* custom "name" */
};

static const uint8_t KEY_ID[PH_SIG_KEY_ID_BYTES] = { 1, 2, 3, 4, 5, 6, 7, 8 };
static uint8_t buf[256];

/* MODULE followed by its signature section; returns the length. */
static size_t signed_module(void)
{
    uint8_t sig[PH_SIG_BYTES];
    for (int i = 0; i < PH_SIG_BYTES; i++) sig[i] = (uint8_t)(0xa0 + i);
    memcpy(buf, MODULE, sizeof MODULE);
    return sizeof MODULE + ph_module_sig_encode(KEY_ID, sig, buf + sizeof MODULE);
}

static void expect_find(const char *name, const uint8_t *wasm, size_t len, int result,
                        const char *reason)
{
    ph_module_sig sig;
    char got[200] = "";
    int r = ph_module_sig_find(wasm, len, &sig, got, sizeof got);
    if (r != result || (reason && strcmp(got, reason) != 0))
        FAIL("%s: %d '%s', expected %d '%s'", name, r, got, result, reason ? reason : "");
}

static struct { int answer; size_t len; int calls; } verify_stub;

static int stub_verify(void *ctx, const uint8_t *data, size_t len, const uint8_t sig[PH_SIG_BYTES],
                       char *err, size_t err_cap)
{
    (void)ctx; (void)data; (void)sig;
    verify_stub.calls++;
    verify_stub.len = len;
    if (verify_stub.answer < 0) snprintf(err, err_cap, "out of memory");
    return verify_stub.answer;
}

static void expect_check(const char *name, const uint8_t *wasm, size_t len, int answer, int result,
                         const char *reason)
{
    char got[300] = "";
    verify_stub.answer = answer;
    int r = ph_module_sig_check(wasm, len, KEY_ID, stub_verify, NULL, got, sizeof got);
    if (r != result || (reason && strcmp(got, reason) != 0))
        FAIL("%s: %d '%s', expected %d '%s'", name, r, got, result, reason ? reason : "");
}

int main(void)
{
    /* The section's layout is the documented one (docs/SIGNED_MODULES.md). */
    size_t n = signed_module();
    const uint8_t *s = buf + sizeof MODULE;
    if (n != sizeof MODULE + 89 || PH_SIG_SECTION_BYTES != 89 || s[0] != 0 || s[1] != 87 ||
        s[2] != 13 || memcmp(s + 3, "pigeonhub.sig", 13) != 0 || s[16] != 1 ||
        memcmp(s + 17, KEY_ID, 8) != 0 || s[25] != 0xa0 || s[88] != 0xa0 + 63)
        FAIL("encoded section layout");

    /* Found: the signed range is everything before the section. */
    ph_module_sig sig;
    char reason[200];
    if (ph_module_sig_find(buf, n, &sig, reason, sizeof reason) != PH_SIG_FOUND ||
        sig.signed_len != sizeof MODULE || memcmp(sig.key_id, KEY_ID, 8) != 0 || sig.sig[0] != 0xa0)
        FAIL("signed module: signed_len %zu", sig.signed_len);

    expect_find("unsigned module", MODULE, sizeof MODULE, PH_SIG_ABSENT, NULL);
    expect_find("header only", MODULE, 8, PH_SIG_ABSENT, NULL);
    expect_find("NULL", NULL, 0, PH_SIG_MALFORMED,
                "not a WebAssembly 1.0 module (no \\0asm header, version 1)");
    expect_find("not wasm", (const uint8_t *)"hello, world", 12, PH_SIG_MALFORMED,
                "not a WebAssembly 1.0 module (no \\0asm header, version 1)");
    expect_find("cut in the signature", buf, n - 1, PH_SIG_MALFORMED,
                "module is truncated: the section at offset 25 runs past the end of the 113 bytes");
    expect_find("cut in a section size", MODULE, 9, PH_SIG_MALFORMED,
                "module is truncated: the section at offset 8 runs past the end of the 9 bytes");

    /* A section after the signature: the signature would not cover it. */
    size_t m = signed_module();
    memcpy(buf + m, MODULE + 14, sizeof MODULE - 14);
    expect_find("section after the signature", buf, m + sizeof MODULE - 14, PH_SIG_MALFORMED,
                "the signature section at offset 25 is not the module's last section (another "
                "starts at 114): sign the finished module");
    /* Two signatures: the first is not last. */
    memcpy(buf + m, buf + sizeof MODULE, 89);
    expect_find("signed twice", buf, m + 89, PH_SIG_MALFORMED, NULL);

    /* Wrong payload size, wrong format. */
    n = signed_module();
    buf[sizeof MODULE + 1] = 86;
    expect_find("payload one byte short", buf, n - 1, PH_SIG_MALFORMED,
                "the signature section holds 72 bytes after its name; format 1 holds 73");
    n = signed_module();
    buf[sizeof MODULE + 16] = 2;
    expect_find("format 2", buf, n, PH_SIG_MALFORMED,
                "the signature section is in format 2; this hub reads format 1 (update it)");

    /* The same section with its size in two LEB128 bytes (87 = d7 00): one encoding only. */
    n = signed_module();
    memmove(buf + sizeof MODULE + 3, buf + sizeof MODULE + 2, 87);
    buf[sizeof MODULE + 1] = 0xd7;
    buf[sizeof MODULE + 2] = 0x00;
    expect_find("overlong section size", buf, n + 1, PH_SIG_MALFORMED,
                "the signature section is 90 bytes long; format 1's is 89 (minimal LEB128 sizes)");

    /* LEB128: at most 5 bytes and 32 bits; an overlong size is malformed, not read on. */
    static const uint8_t overlong[] = { 0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
                                        0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 };
    expect_find("6-byte LEB128 size", overlong, sizeof overlong, PH_SIG_MALFORMED, NULL);
    static const uint8_t too_big[] = { 0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
                                       0x00, 0xff, 0xff, 0xff, 0xff, 0x0f };
    expect_find("4 GiB section size", too_big, sizeof too_big, PH_SIG_MALFORMED, NULL);
    /* A custom section with a name longer than its body is just not the signature. */
    static const uint8_t bad_name[] = { 0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
                                        0x00, 0x02, 0x0d, 'p' };
    expect_find("name past its section", bad_name, sizeof bad_name, PH_SIG_ABSENT, NULL);

    /* Every prefix of a signed module: never a read past it (ASan), never FOUND but for the whole. */
    n = signed_module();
    for (size_t cut = 0; cut < n; cut++) {
        if (ph_module_sig_find(buf, cut, &sig, reason, sizeof reason) == PH_SIG_FOUND)
            FAIL("prefix of %zu bytes found a signature", cut);
    }

    /* The decision, with each reason. */
    n = signed_module();
    verify_stub.calls = 0;
    expect_check("signed by this key", buf, n, 1, PH_SIG_OK, NULL);
    if (verify_stub.calls != 1 || verify_stub.len != sizeof MODULE)
        FAIL("verify saw %d calls, %zu bytes", verify_stub.calls, verify_stub.len);
    expect_check("unsigned", MODULE, sizeof MODULE, 1, PH_SIG_UNSIGNED,
                 "module is not signed; this hub runs only modules signed by its module key "
                 "(sign it with `pigeonhub build --sign KEY`)");
    expect_check("tampered", buf, n, 0, PH_SIG_MISMATCH,
                 "module signature does not match its 25 signed bytes (changed after signing, or "
                 "signed by another key with the same id 0102030405060708)");
    expect_check("verify out of memory", buf, n, -1, PH_SIG_ERROR,
                 "module signature could not be checked: out of memory");
    buf[sizeof MODULE + 17] = 0xff;
    verify_stub.calls = 0;
    expect_check("another key", buf, n, 1, PH_SIG_OTHER_KEY,
                 "module is signed by key ff02030405060708; this hub's module key is 0102030405060708");
    if (verify_stub.calls != 0) FAIL("another key's signature was verified");
    expect_check("truncated", buf, n - 5, 1, PH_SIG_BAD_FORMAT,
                 "module signature unreadable: module is truncated: the section at offset 25 runs "
                 "past the end of the 109 bytes");

    printf("test_module_sig: %s\n", failures ? "FAILED" : "all passed");
    return failures != 0;
}
