/*
 * fuzz_upload_body.c — libFuzzer target: the upload stream into a module slot (ph_module_upload.c)
 * with the real module store policy (ph_module_store.c), over an in-memory flash that behaves like
 * NOR flash (erase sets 0xFF, a write may only land on erased bytes) and OpenSSL's SHA-256.
 *
 * Input: byte 0 = the running module (0: built-in, 1: hubmod0, 2: hubmod1, 3: built-in);
 * byte 1 = the two slots' sizes in 64-byte units (low nibble hubmod0, high nibble hubmod1; 0 = the
 * slot does not exist). Both existing slots start with a recorded module. Then operations, one byte
 * each (value mod 6) followed by its arguments:
 *   0 begin     2 bytes: declared length (little-endian, 11 bits)
 *   1 write     1 byte n, then n body bytes (fewer when the input ends)
 *   2 finish    1 byte: SHA-256 declared = that of the bytes written (0), 32 bytes from the input
 *               (1), that of the bytes written with one bit flipped (2)
 *   3 abort
 *   4 fault     1 byte: the next begin's erase fails (bit 0), the next write fails halfway
 *               (bit 1), the next state save fails (bit 2), the next SHA-256 context fails (bit 3)
 *   5 activate  the stored upload becomes the running module (what a successful swap does)
 *
 * Checks, after every operation: nothing is erased or written outside a slot, the running slot is
 * never erased or written and its bytes and record never change, writes are sequential, on erased
 * bytes and never beyond the declared length; every record matches the bytes it names (length and
 * SHA-256); a begin refused for its length or a missing slot changes nothing; an upload that failed
 * or was aborted leaves [0, declared length) erased and no record (unless a state save was made to
 * fail, when the record may stay, still matching its bytes); finish succeeds only when exactly the
 * declared bytes arrived and their SHA-256 is the declared one, and then the record and the slot's
 * bytes are exactly those bytes; every refusal has a NUL-terminated, non-empty reason.
 */
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ph_module_store.h"
#include "ph_module_upload.h"

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_upload_body: check failed: " #cond ": " __VA_ARGS__);            \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define UNIT 64            /* erase unit of the in-memory flash; slots are 0-15 units */
#define ERR_CAP 200

typedef struct {
    uint8_t *flash[PH_STORE_SLOTS];   /* exactly size[i] bytes on the heap: ASan sees overruns */
    size_t size[PH_STORE_SLOTS];
    ph_store_state state;
    ph_store *store;
    bool fail_erase, fail_write, fail_save, fail_sha;
    bool in_begin;
    bool save_failed;                 /* a save was made to fail since the upload began */
    size_t declared;                  /* what the upload in progress declared */
    uint8_t fed[16 * UNIT];           /* the bytes its writes were given, accepted ones */
    size_t fed_len;
} host;

static int mem_load(void *ctx, ph_store_state *state)
{
    *state = ((host *)ctx)->state;
    return 0;
}

static int mem_save(void *ctx, const ph_store_state *state)
{
    host *h = ctx;
    if (h->fail_save) {
        h->fail_save = false;
        h->save_failed = true;
        return -1;
    }
    h->state = *state;
    return 0;
}

static bool mem_exists(void *ctx, int slot)
{
    return ((host *)ctx)->size[slot] > 0;
}

static size_t op_slot_size(void *ctx, int slot)
{
    const host *h = ctx;
    CHECK(slot >= 0 && slot < PH_STORE_SLOTS, "slot %d", slot);
    return h->size[slot];
}

static int op_erase(void *ctx, int slot, size_t len, char *err, size_t cap)
{
    host *h = ctx;
    CHECK(slot >= 0 && slot < PH_STORE_SLOTS && h->size[slot] > 0, "erase of slot %d", slot);
    CHECK(slot != h->store->running, "erase of the running slot %d", slot);
    size_t n = (len + UNIT - 1) / UNIT * UNIT;
    CHECK(len > 0 && n <= h->size[slot], "erase of %zu bytes in a %zu-byte slot", len, h->size[slot]);
    if (h->in_begin && h->fail_erase) {
        h->fail_erase = false;
        memset(h->flash[slot], 0xFF, n / 2);   /* a failed erase may have done some of it */
        snprintf(err, cap, "erasing failed (injected)");
        return -1;
    }
    memset(h->flash[slot], 0xFF, n);
    return 0;
}

static int op_write(void *ctx, int slot, size_t offset, const void *data, size_t len, char *err,
                    size_t cap)
{
    host *h = ctx;
    CHECK(slot >= 0 && slot < PH_STORE_SLOTS && h->size[slot] > 0, "write to slot %d", slot);
    CHECK(slot != h->store->running, "write to the running slot %d", slot);
    CHECK(offset == h->fed_len, "write at %zu after %zu bytes", offset, h->fed_len);
    CHECK(len > 0 && offset + len <= h->declared, "write of %zu at %zu, %zu declared", len, offset,
          h->declared);
    CHECK(offset + len <= h->size[slot], "write beyond the slot");
    for (size_t i = 0; i < len; i++) CHECK(h->flash[slot][offset + i] == 0xFF, "write on unerased byte");
    if (h->fail_write) {
        h->fail_write = false;
        memcpy(h->flash[slot] + offset, data, len / 2);
        snprintf(err, cap, "writing to flash failed (injected)");
        return -1;
    }
    memcpy(h->flash[slot] + offset, data, len);
    return 0;
}

static void *op_sha_start(void *ctx)
{
    host *h = ctx;
    if (h->fail_sha) {
        h->fail_sha = false;
        return NULL;
    }
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
    return sha;
}

static void op_sha_update(void *ctx, void *sha, const void *data, size_t len)
{
    (void)ctx;
    EVP_DigestUpdate(sha, data, len);
}

static void op_sha_end(void *ctx, void *sha, uint8_t *out)
{
    uint8_t ignored[EVP_MAX_MD_SIZE];
    (void)ctx;
    EVP_DigestFinal_ex(sha, out ? out : ignored, NULL);
    EVP_MD_CTX_free(sha);
}

/* The SHA-256 of a whole buffer, to check against. */
static void sha256_of(const uint8_t *data, size_t len, uint8_t out[32])
{
    EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL);
}

static void check_reason(const char *err, int rc)
{
    CHECK(memchr(err, '\0', ERR_CAP) != NULL, "reason not NUL-terminated (%d)", rc);
    CHECK(err[0] != '\0', "empty reason for %d", rc);
}

static bool erased(const host *h, int slot, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (h->flash[slot][i] != 0xFF) return false;
    return true;
}

/* Every record names bytes that are there. */
static void check_records(const host *h)
{
    for (int i = 0; i < PH_STORE_SLOTS; i++) {
        const ph_store_record *rec = &h->state.slot[i];
        if (rec->len == 0) continue;
        CHECK(rec->len <= h->size[i], "record of %u bytes in a %zu-byte slot", rec->len, h->size[i]);
        uint8_t sha[32];
        sha256_of(h->flash[i], rec->len, sha);
        CHECK(memcmp(sha, rec->sha256, 32) == 0, "record of slot %d does not match its bytes", i);
    }
}

/* A failed or aborted upload: [0, declared) erased, no record (a failed save may keep one). */
static void check_left_nothing(const host *h, int slot, size_t declared)
{
    if (h->save_failed) return;   /* check_records still holds */
    CHECK(h->state.slot[slot].len == 0, "record left in slot %d", slot);
    CHECK(erased(h, slot, declared), "slot %d not erased after a failed upload", slot);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    static const ph_upload_ops ops_template = {
        .slot_size = op_slot_size, .erase = op_erase, .write = op_write,
        .sha_start = op_sha_start, .sha_update = op_sha_update, .sha_end = op_sha_end,
        .record_where = "memory",
    };
    host *h = calloc(1, sizeof *h);
    ph_store store;
    ph_upload_ops ops = ops_template;
    ops.ctx = h;
    h->store = &store;
    h->state.active = h->state.previous = PH_STORE_BUILTIN;
    for (int i = 0; i < PH_STORE_SLOTS; i++) {
        h->size[i] = (size_t)((data[1] >> (4 * i)) & 15) * UNIT;
        h->flash[i] = malloc(h->size[i] ? h->size[i] : 1);
        memset(h->flash[i], 0xFF, h->size[i]);
        if (h->size[i] == 0) continue;
        /* a module already there */
        size_t len = h->size[i] < 40 ? h->size[i] : 40;
        for (size_t j = 0; j < len; j++) h->flash[i][j] = (uint8_t)(i * 31 + j);
        h->state.slot[i].len = (uint32_t)len;
        sha256_of(h->flash[i], len, h->state.slot[i].sha256);
    }
    const ph_store_ops store_ops = { h, mem_load, mem_save, mem_exists, NULL };
    ph_store_init(&store, &store_ops, "embedded", "reset", 60, 0);
    int running = (data[0] & 3) == 1 ? 0 : (data[0] & 3) == 2 ? 1 : PH_STORE_BUILTIN;
    if (running >= 0 && h->size[running] == 0) running = PH_STORE_BUILTIN;
    if (running >= 0) {
        h->state.active = (int8_t)running;
        store.running = running;
    }

    uint8_t *snapshot = malloc(16 * UNIT);
    ph_store_record snap_rec;
    memset(&snap_rec, 0, sizeof snap_rec);
#define SNAPSHOT()                                                                                 \
    do {                                                                                           \
        if (store.running >= 0) {                                                                  \
            memcpy(snapshot, h->flash[store.running], h->size[store.running]);                     \
            snap_rec = h->state.slot[store.running];                                               \
        }                                                                                          \
    } while (0)
    SNAPSHOT();

    ph_upload up = { 0 };
    char err[ERR_CAP];
    const uint8_t *p = data + 2, *end = data + size;
    while (p < end) {
        uint8_t op = *p++ % 6;
        memset(err, 'X', sizeof err);
        int target = up.stage != PH_UPLOAD_IDLE ? up.slot : -1;
        size_t declared = h->declared;
        ph_upload_stage stage = up.stage;
        switch (op) {
        case 0: {   /* begin */
            size_t len = 0;
            if (p < end) len = *p++;
            if (p < end) len |= (size_t)(*p++ & 7) << 8;
            int free_slot = ph_store_free_slot(&store);
            ph_store_record before_rec = h->state.slot[free_slot];
            uint8_t *before = malloc(h->size[free_slot] + 1);
            memcpy(before, h->flash[free_slot], h->size[free_slot]);
            if (stage != PH_UPLOAD_IDLE) h->declared = declared;   /* begin aborts the old one */
            h->save_failed = h->fail_save;
            h->in_begin = true;
            bool prior_upload_cleaned = stage == PH_UPLOAD_IDLE || target == store.running;
            ph_upload_result rc = ph_upload_begin(&up, &store, &ops, len, err, sizeof err);
            h->in_begin = false;
            if (!prior_upload_cleaned && target != free_slot) check_left_nothing(h, target, declared);
            h->fed_len = 0;
            h->declared = rc == PH_UPLOAD_OK ? len : 0;
            CHECK(up.slot == free_slot && free_slot != store.running, "upload into slot %d", up.slot);
            if (rc == PH_UPLOAD_OK) {
                CHECK(len > 0 && len <= h->size[free_slot], "begin of %zu accepted", len);
                CHECK(h->state.slot[free_slot].len == 0, "old record kept");
                CHECK(erased(h, free_slot, len), "slot not erased at begin");
                CHECK(up.stage == PH_UPLOAD_RECEIVING, "stage %d", up.stage);
            } else {
                check_reason(err, rc);
                CHECK(up.stage == PH_UPLOAD_IDLE, "stage %d after a refused begin", up.stage);
                if (rc == PH_UPLOAD_NO_SLOT || rc == PH_UPLOAD_TOO_BIG) {
                    CHECK(rc == PH_UPLOAD_NO_SLOT ? h->size[free_slot] == 0
                                                  : (len == 0 || len > h->size[free_slot]),
                          "begin of %zu refused (%d), slot %zu", len, rc, h->size[free_slot]);
                    if (prior_upload_cleaned || target != free_slot) {
                        CHECK(memcmp(&before_rec, &h->state.slot[free_slot], sizeof before_rec) == 0,
                              "a refused begin changed the record");
                        CHECK(memcmp(before, h->flash[free_slot], h->size[free_slot]) == 0,
                              "a refused begin changed the slot");
                    }
                } else {
                    CHECK(rc == PH_UPLOAD_IO || rc == PH_UPLOAD_NO_MEMORY || rc == PH_UPLOAD_RECORD,
                          "begin: %d", rc);
                    if (!h->save_failed) CHECK(h->state.slot[free_slot].len == 0, "record kept");
                }
            }
            free(before);
            break;
        }
        case 1: {   /* write */
            size_t n = p < end ? *p++ : 0;
            if (n > (size_t)(end - p)) n = (size_t)(end - p);
            uint8_t *chunk = malloc(n + 1);   /* exactly sized: an over-read is an ASan report */
            memcpy(chunk, p, n);
            p += n;
            ph_upload_result rc = ph_upload_write(&up, chunk, n, err, sizeof err);
            if (rc == PH_UPLOAD_OK) {
                CHECK(stage == PH_UPLOAD_RECEIVING && h->fed_len + n <= declared, "write accepted");
                memcpy(h->fed + h->fed_len, chunk, n);
                h->fed_len += n;
                CHECK(up.written == h->fed_len, "written %zu, fed %zu", up.written, h->fed_len);
                CHECK(memcmp(h->flash[up.slot], h->fed, h->fed_len) == 0, "flash differs from body");
            } else {
                check_reason(err, rc);
                if (rc == PH_UPLOAD_ORDER) {
                    CHECK(stage != PH_UPLOAD_RECEIVING, "write refused while receiving");
                } else {
                    CHECK(rc == PH_UPLOAD_IO || (rc == PH_UPLOAD_OVERRUN && h->fed_len + n > declared),
                          "write: %d", rc);
                    CHECK(up.stage == PH_UPLOAD_IDLE, "upload goes on after a failed write");
                    check_left_nothing(h, target, declared);
                }
            }
            free(chunk);
            break;
        }
        case 2: {   /* finish */
            uint8_t fed_sha[32], declared_sha[32];
            sha256_of(h->fed, h->fed_len, fed_sha);
            uint8_t mode = p < end ? *p++ : 0;
            memcpy(declared_sha, fed_sha, 32);
            if (mode % 3 == 1) {
                for (int i = 0; i < 32; i++) declared_sha[i] = p < end ? *p++ : 0;
            } else if (mode % 3 == 2) {
                declared_sha[(mode >> 2) & 31] ^= 1;
            }
            ph_upload_result rc = ph_upload_finish(&up, declared_sha, err, sizeof err);
            if (rc == PH_UPLOAD_OK) {
                CHECK(stage == PH_UPLOAD_RECEIVING && h->fed_len == declared, "finish after %zu of %zu",
                      h->fed_len, declared);
                CHECK(memcmp(fed_sha, declared_sha, 32) == 0, "finish with the wrong SHA-256");
                const ph_store_record *rec = &h->state.slot[up.slot];
                CHECK(rec->len == declared && memcmp(rec->sha256, fed_sha, 32) == 0, "record differs");
                CHECK(memcmp(h->flash[up.slot], h->fed, declared) == 0, "slot differs from the body");
                CHECK(up.stage == PH_UPLOAD_STORED, "stage %d", up.stage);
            } else {
                check_reason(err, rc);
                if (rc == PH_UPLOAD_ORDER) {
                    CHECK(stage != PH_UPLOAD_RECEIVING, "finish refused while receiving");
                } else {
                    CHECK((rc == PH_UPLOAD_SHORT && h->fed_len != declared) ||
                          (rc == PH_UPLOAD_SHA_MISMATCH && memcmp(fed_sha, declared_sha, 32) != 0) ||
                          rc == PH_UPLOAD_RECORD, "finish: %d", rc);
                    if (rc == PH_UPLOAD_SHA_MISMATCH)
                        CHECK(strstr(err, "SHA-256 mismatch: received ") == err, "reason '%s'", err);
                    CHECK(up.stage == PH_UPLOAD_IDLE, "upload goes on after a failed finish");
                    check_left_nothing(h, target, declared);
                }
            }
            break;
        }
        case 3:     /* abort */
            ph_upload_abort(&up);
            CHECK(up.stage == PH_UPLOAD_IDLE, "stage %d after abort", up.stage);
            if (stage != PH_UPLOAD_IDLE && target != store.running) check_left_nothing(h, target, declared);
            break;
        case 4: {   /* fault */
            uint8_t f = p < end ? *p++ : 0;
            h->fail_erase = f & 1;
            h->fail_write = f & 2;
            h->fail_save = f & 4;
            h->fail_sha = f & 8;
            if (h->fail_save) h->save_failed = true;   /* whatever the save will be */
            break;
        }
        case 5:     /* activate: the swap to the stored module succeeded */
            if (up.stage == PH_UPLOAD_STORED && ph_store_activate(&store, up.slot) == 0) {
                CHECK(store.running == up.slot, "running %d", store.running);
                SNAPSHOT();
            }
            break;
        }
        check_records(h);
        if (store.running >= 0) {
            CHECK(memcmp(snapshot, h->flash[store.running], h->size[store.running]) == 0,
                  "the running slot's bytes changed");
            CHECK(memcmp(&snap_rec, &h->state.slot[store.running], sizeof snap_rec) == 0,
                      "the running slot's record changed");
        }
    }
    ph_upload_abort(&up);   /* frees the SHA-256 context: LeakSanitizer checks it is freed */
    check_records(h);
    for (int i = 0; i < PH_STORE_SLOTS; i++) free(h->flash[i]);
    free(snapshot);
    free(h);
    return 0;
}
