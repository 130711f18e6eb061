/*
 * test_module_upload.c — the upload stream into a module slot (ph_module_upload.c) with the real
 * module store policy (ph_module_store.c), on a host whose two slots are NOR-flash-like buffers in
 * memory (erase = 0xFF) and whose SHA-256 engine is OpenSSL's: a whole upload, chunked, and every
 * refusal with the exact reason the board answers POST /module with, each leaving the slot erased
 * and unrecorded; the running slot untouched throughout.
 *
 *   ./test_module_upload      exit status 0 = all passed
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ph_module_store.h"
#include "ph_module_upload.h"

static int failures;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #cond);         \
            failures++;                                                               \
        }                                                                             \
    } while (0)

#define SLOT_SIZE 4096
#define UNIT 1024

typedef struct {
    uint8_t flash[PH_STORE_SLOTS][SLOT_SIZE];
    size_t size[PH_STORE_SLOTS];
    ph_store_state state;
    int fail_save;
    int fail_write;
    int erases, writes;
    int touched_running;
    ph_store *store;
} host;

static int mem_load(void *ctx, ph_store_state *state)
{
    *state = ((host *)ctx)->state;
    return 0;
}

static int mem_save(void *ctx, const ph_store_state *state)
{
    host *h = ctx;
    if (h->fail_save) return -1;
    h->state = *state;
    return 0;
}

static size_t slot_size(void *ctx, int slot)
{
    return ((host *)ctx)->size[slot];
}

static int erase(void *ctx, int slot, size_t len, char *err, size_t cap)
{
    host *h = ctx;
    (void)err;
    (void)cap;
    h->erases++;
    h->touched_running |= slot == h->store->running;
    memset(h->flash[slot], 0xFF, (len + UNIT - 1) / UNIT * UNIT);
    return 0;
}

static int write_flash(void *ctx, int slot, size_t offset, const void *data, size_t len, char *err,
                       size_t cap)
{
    host *h = ctx;
    h->writes++;
    h->touched_running |= slot == h->store->running;
    if (h->fail_write) {
        snprintf(err, cap, "writing to flash failed: ESP_ERR_FLASH_OP_FAIL");
        return -1;
    }
    memcpy(h->flash[slot] + offset, data, len);
    return 0;
}

static void *sha_start(void *ctx)
{
    (void)ctx;
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
    return sha;
}

static void sha_update(void *ctx, void *sha, const void *data, size_t len)
{
    (void)ctx;
    EVP_DigestUpdate(sha, data, len);
}

static void sha_end(void *ctx, void *sha, uint8_t *out)
{
    uint8_t ignored[EVP_MAX_MD_SIZE];
    (void)ctx;
    EVP_DigestFinal_ex(sha, out ? out : ignored, NULL);
    EVP_MD_CTX_free(sha);
}

static void sha256(const uint8_t *data, size_t len, uint8_t out[32])
{
    EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL);
}

static const ph_upload_ops OPS_TEMPLATE = {
    .slot_size = slot_size, .erase = erase, .write = write_flash,
    .sha_start = sha_start, .sha_update = sha_update, .sha_end = sha_end, .record_where = "NVS",
};

static uint8_t body[3000];
static uint8_t body_sha[32];

/* hubmod0 runs a recorded module; hubmod1 holds an old one, also recorded. */
static void host_init(host *h, ph_store *store, ph_upload_ops *ops)
{
    memset(h, 0, sizeof *h);
    h->size[0] = h->size[1] = SLOT_SIZE;
    h->store = store;
    for (int i = 0; i < PH_STORE_SLOTS; i++) {
        memset(h->flash[i], 0x40 + i, SLOT_SIZE);
        h->state.slot[i].len = 100;
        sha256(h->flash[i], 100, h->state.slot[i].sha256);
    }
    h->state.active = 0;
    h->state.previous = PH_STORE_BUILTIN;
    const ph_store_ops store_ops = { h, mem_load, mem_save, NULL, NULL };
    ph_store_init(store, &store_ops, "embedded", "reset", 60, 0);
    ph_store_note_boot(store, 0);
    *ops = OPS_TEMPLATE;
    ops->ctx = h;
}

/* What every test starts from: host_init's flash and store, an idle upload, an empty error. */
typedef struct {
    host h;
    ph_store store;
    ph_upload_ops ops;
    ph_upload up;
    char err[200];
} fixture;

static void fixture_init(fixture *f)
{
    memset(&f->up, 0, sizeof f->up);
    f->err[0] = '\0';
    host_init(&f->h, &f->store, &f->ops);
}

static int all_erased(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0xFF) return 0;
    return 1;
}

static int running_slot_intact(const host *h)
{
    for (size_t i = 0; i < SLOT_SIZE; i++)
        if (h->flash[0][i] != 0x40) return 0;
    return !h->touched_running && h->state.slot[0].len == 100;
}

static void test_whole_upload_in_chunks_is_recorded(void)
{
    fixture f;
    fixture_init(&f);
    CHECK(ph_upload_begin(&f.up, &f.store, &f.ops, sizeof body, f.err, sizeof f.err) ==
          PH_UPLOAD_OK);
    CHECK(f.up.slot == 1 && f.h.state.slot[1].len == 0);   /* the old record goes first */
    CHECK(all_erased(f.h.flash[1], 3 * UNIT));             /* rounded up to the erase unit */
    CHECK(f.h.flash[1][3 * UNIT] == 0x41);                 /* ...and not beyond */
    for (size_t at = 0; at < sizeof body; at += 700) {
        size_t n = sizeof body - at < 700 ? sizeof body - at : 700;
        CHECK(ph_upload_write(&f.up, body + at, n, f.err, sizeof f.err) == PH_UPLOAD_OK);
    }
    CHECK(ph_upload_finish(&f.up, body_sha, f.err, sizeof f.err) == PH_UPLOAD_OK);
    CHECK(f.h.state.slot[1].len == sizeof body &&
          memcmp(f.h.state.slot[1].sha256, body_sha, 32) == 0);
    CHECK(memcmp(f.h.flash[1], body, sizeof body) == 0);
    CHECK(f.up.stage == PH_UPLOAD_STORED);
    CHECK(running_slot_intact(&f.h));
    /* The swap succeeded: the module runs from that slot now, and a late abort leaves it alone. */
    CHECK(ph_store_activate(&f.store, 1) == 0);
    ph_upload_abort(&f.up);
    CHECK(f.h.state.slot[1].len == sizeof body && memcmp(f.h.flash[1], body, sizeof body) == 0);
}

static void test_refused_module_is_erased_and_forgotten(void)
{
    fixture f;
    fixture_init(&f);
    ph_upload_begin(&f.up, &f.store, &f.ops, sizeof body, f.err, sizeof f.err);
    ph_upload_write(&f.up, body, sizeof body, f.err, sizeof f.err);
    CHECK(ph_upload_finish(&f.up, body_sha, f.err, sizeof f.err) == PH_UPLOAD_OK);
    ph_upload_abort(&f.up);   /* the module check refused it (422) */
    CHECK(f.h.state.slot[1].len == 0 && all_erased(f.h.flash[1], sizeof body));
    CHECK(f.up.stage == PH_UPLOAD_IDLE);
    ph_upload_abort(&f.up);   /* twice: nothing more happens */
    CHECK(running_slot_intact(&f.h));
}

static void test_sha_mismatch_names_both_hashes(void)
{
    fixture f;
    char want[200], got_hex[65], bad_hex[65];
    uint8_t bad[32];
    fixture_init(&f);
    memcpy(bad, body_sha, 32);
    bad[31] ^= 1;
    ph_upload_begin(&f.up, &f.store, &f.ops, sizeof body, f.err, sizeof f.err);
    ph_upload_write(&f.up, body, sizeof body, f.err, sizeof f.err);
    CHECK(ph_upload_finish(&f.up, bad, f.err, sizeof f.err) == PH_UPLOAD_SHA_MISMATCH);
    ph_sha256_hex(body_sha, got_hex);
    ph_sha256_hex(bad, bad_hex);
    snprintf(want, sizeof want, "SHA-256 mismatch: received %s, X-Module-SHA256 says %s", got_hex,
             bad_hex);
    CHECK(strcmp(f.err, want) == 0);
    CHECK(f.h.state.slot[1].len == 0 && all_erased(f.h.flash[1], sizeof body));
    CHECK(f.up.stage == PH_UPLOAD_IDLE);
    CHECK(running_slot_intact(&f.h));
}

static void test_short_and_long_bodies_are_refused(void)
{
    fixture f;
    fixture_init(&f);
    ph_upload_begin(&f.up, &f.store, &f.ops, 1000, f.err, sizeof f.err);
    ph_upload_write(&f.up, body, 600, f.err, sizeof f.err);
    CHECK(ph_upload_finish(&f.up, body_sha, f.err, sizeof f.err) == PH_UPLOAD_SHORT);
    CHECK(strcmp(f.err, "body ended after 600 of 1000 bytes") == 0);
    CHECK(all_erased(f.h.flash[1], 1000) && f.h.state.slot[1].len == 0);

    ph_upload_begin(&f.up, &f.store, &f.ops, 1000, f.err, sizeof f.err);
    CHECK(ph_upload_write(&f.up, body, 999, f.err, sizeof f.err) == PH_UPLOAD_OK);
    int writes = f.h.writes;
    CHECK(ph_upload_write(&f.up, body + 999, 2, f.err, sizeof f.err) == PH_UPLOAD_OVERRUN);
    CHECK(strcmp(f.err, "body is longer than the 1000 bytes declared") == 0);
    CHECK(f.h.writes == writes);                       /* not one byte beyond the declared length */
    CHECK(all_erased(f.h.flash[1], 1000) && f.h.state.slot[1].len == 0);
    CHECK(ph_upload_write(&f.up, body, 1, f.err, sizeof f.err) == PH_UPLOAD_ORDER);
    CHECK(strcmp(f.err, "no upload in progress") == 0);
    CHECK(ph_upload_finish(&f.up, body_sha, f.err, sizeof f.err) == PH_UPLOAD_ORDER);
    CHECK(running_slot_intact(&f.h));
}

static void test_begin_refusals_change_nothing(void)
{
    fixture f;
    fixture_init(&f);
    CHECK(ph_upload_begin(&f.up, &f.store, &f.ops, SLOT_SIZE + 1, f.err, sizeof f.err) ==
          PH_UPLOAD_TOO_BIG);
    CHECK(strcmp(f.err, "module is 4097 bytes; a slot holds 1 to 4096") == 0);
    CHECK(ph_upload_begin(&f.up, &f.store, &f.ops, 0, f.err, sizeof f.err) == PH_UPLOAD_TOO_BIG);
    CHECK(f.h.erases == 0 && f.h.state.slot[1].len == 100);   /* the old module in hubmod1 stays */
    f.h.size[1] = 0;
    CHECK(ph_upload_begin(&f.up, &f.store, &f.ops, 10, f.err, sizeof f.err) == PH_UPLOAD_NO_SLOT);
    CHECK(strcmp(f.err, "no free module slot (partition hubmod1 missing)") == 0);
    CHECK(f.h.erases == 0);
    /* The state cannot be saved: the old record cannot be forgotten, so nothing is erased. */
    f.h.size[1] = SLOT_SIZE;
    f.h.fail_save = 1;
    CHECK(ph_upload_begin(&f.up, &f.store, &f.ops, 10, f.err, sizeof f.err) == PH_UPLOAD_RECORD);
    CHECK(strcmp(f.err, "forgetting the old module of hubmod1 in NVS failed") == 0);
    CHECK(f.h.erases == 0 && f.h.state.slot[1].len == 100);
    CHECK(f.up.stage == PH_UPLOAD_IDLE);
    CHECK(running_slot_intact(&f.h));
}

static void test_flash_write_failure_erases_what_was_written(void)
{
    fixture f;
    fixture_init(&f);
    ph_upload_begin(&f.up, &f.store, &f.ops, sizeof body, f.err, sizeof f.err);
    ph_upload_write(&f.up, body, 1500, f.err, sizeof f.err);
    f.h.fail_write = 1;
    CHECK(ph_upload_write(&f.up, body + 1500, 100, f.err, sizeof f.err) == PH_UPLOAD_IO);
    CHECK(strcmp(f.err, "writing to flash failed: ESP_ERR_FLASH_OP_FAIL") == 0);
    CHECK(f.up.stage == PH_UPLOAD_IDLE && all_erased(f.h.flash[1], sizeof body));
    CHECK(f.h.state.slot[1].len == 0);
    CHECK(running_slot_intact(&f.h));
}

static void test_record_failure_leaves_no_module(void)
{
    fixture f;
    fixture_init(&f);
    ph_upload_begin(&f.up, &f.store, &f.ops, sizeof body, f.err, sizeof f.err);
    ph_upload_write(&f.up, body, sizeof body, f.err, sizeof f.err);
    f.h.fail_save = 1;
    CHECK(ph_upload_finish(&f.up, body_sha, f.err, sizeof f.err) == PH_UPLOAD_RECORD);
    CHECK(strcmp(f.err, "recording the module in NVS failed") == 0);
    /* No record was written, so the bytes are erased even though the state cannot be saved. */
    CHECK(f.h.state.slot[1].len == 0 && all_erased(f.h.flash[1], sizeof body));
    CHECK(running_slot_intact(&f.h));
}

int main(void)
{
    for (size_t i = 0; i < sizeof body; i++) body[i] = (uint8_t)(i * 7 + 3);
    sha256(body, sizeof body, body_sha);
    test_whole_upload_in_chunks_is_recorded();
    test_refused_module_is_erased_and_forgotten();
    test_sha_mismatch_names_both_hashes();
    test_short_and_long_bodies_are_refused();
    test_begin_refusals_change_nothing();
    test_flash_write_failure_erases_what_was_written();
    test_record_failure_leaves_no_module();
    printf("module upload: %d failed\n", failures);
    return failures != 0;
}
