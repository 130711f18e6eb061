/*
 * fuzz_check_module.c — libFuzzer target: ph_bridge_check_module (the check an uploaded module goes
 * through before it is accepted over the air) with arbitrary bytes: truncated sections, huge LEB128
 * counts, wrong ABI version, missing exports, memory over the limit, init() that traps.
 *
 * Checks: the input is read only within its length (libFuzzer's buffer is exactly `size` bytes);
 * the result is one of ph_result's values; the reason is NUL-terminated inside the error buffer
 * (a heap buffer of exactly its capacity, so a write past it is an ASan report) and says something
 * on failure; and a module the check accepts is also accepted by ph_bridge_create, and runs its
 * start_server / one frame / loop without the bridge crashing. The same bytes go through the
 * signature section's parser (ph_module_sig_find, which a hub with a module key runs before any
 * other check): read within their length, a reason on refusal, and a signature found only as the
 * module's last 89 bytes.
 */
#include "fuzz_support.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ph_bridge.h"
#include "ph_module_sig.h"

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_check_module: check failed: " #cond ": " __VA_ARGS__);           \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)


static int t_send(void *ctx, int32_t conn, const uint8_t *frame, size_t len)
{
    (void)ctx;
    (void)conn;
    touch(frame, len);   /* readable for all of len */
    return 0;
}
static uint32_t t_millis(void *ctx) { (void)ctx; return 1000; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The bytes must stay valid while a bridge uses them (WASM3 reads in place): libFuzzer's
     * buffer does, until this function returns. */
    const size_t cap = 160;
    char *err = malloc(cap);
    memset(err, 'X', cap);
    ph_result rc = ph_bridge_check_module(data, size, err, cap);
    CHECK(rc <= PH_OK && rc >= PH_ERR_CONFIG, "result %d", (int)rc);
    CHECK(memchr(err, 0, cap) != NULL, "reason not NUL-terminated (result %d)", (int)rc);
    if (rc != PH_OK) CHECK(err[0] != '\0', "failure %d without a reason", (int)rc);

    ph_module_sig sig;
    memset(err, 'X', cap);
    err[0] = '\0';
    ph_sig_find_result found = ph_module_sig_find(data, size, &sig, err, cap);
    CHECK(found >= PH_SIG_MALFORMED && found <= PH_SIG_FOUND, "signature result %d", (int)found);
    CHECK(memchr(err, 0, cap) != NULL, "signature reason not NUL-terminated");
    if (found == PH_SIG_MALFORMED) CHECK(err[0] != '\0', "malformed signature without a reason");
    if (found == PH_SIG_FOUND)
        CHECK(sig.signed_len + PH_SIG_SECTION_BYTES == size, "signed %zu of %zu bytes",
              sig.signed_len, size);

    if (rc == PH_OK) {
        ph_transport_ops ops = {.send = t_send, .millis = t_millis};
        ph_bridge_config cfg = PH_BRIDGE_CONFIG_DEFAULT;
        ph_result rc2 = PH_OK;
        ph_bridge *b = ph_bridge_create(data, size, &ops, &cfg, &rc2, err, cap);
        CHECK(b != NULL && rc2 == PH_OK, "check_module accepted what ph_bridge_create refuses: %d %s",
              (int)rc2, err);
        ph_bridge_start(b, 3000);
        int32_t conn = ph_bridge_on_open(b, "/?peerId=f335b63e0123456789abcdef0123456789abccf8", 49);
        static const char ping[] = "{\"type\":\"ping\"}";
        if (conn >= 0) ph_bridge_on_frame(b, conn, (const uint8_t *)ping, sizeof ping - 1);
        ph_bridge_tick(b);
        if (conn >= 0) ph_bridge_on_close(b, conn);
        CHECK(ph_bridge_connection_count(b) == 0, "connection left open");
        ph_bridge_destroy(b);
    }
    free(err);
    return 0;
}
