/*
 * ph_module_upload.c — the upload stream into a module slot (ph_module_upload.h).
 */
#include "ph_module_upload.h"

#include <stdio.h>
#include <string.h>

void ph_sha256_hex(const uint8_t sha256[32], char out[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[sha256[i] >> 4];
        out[2 * i + 1] = digits[sha256[i] & 15];
    }
    out[64] = '\0';
}

static const char *where(const ph_upload_ops *ops)
{
    return ops->record_where ? ops->record_where : "the module store";
}

static void end_sha(ph_upload *up, uint8_t *out)
{
    if (up->sha != NULL) {
        up->ops->sha_end(up->ops->ctx, up->sha, out);
        up->sha = NULL;
    }
}

void ph_upload_abort(ph_upload *up)
{
    if (up->stage == PH_UPLOAD_IDLE) return;
    end_sha(up, NULL);
    up->stage = PH_UPLOAD_IDLE;
    /* A refused module that was swapped in after all (the host's answer came too late) is the
     * running one now: WASM3 reads it in place, so it stays as it is. */
    if (up->slot == up->store->running) return;
    /* The record goes first: a record must never point at erased bytes. When it cannot be
     * forgotten, the bytes it points at stay as they are. */
    bool forgotten = ph_store_mark_bad(up->store, up->slot) == 0 ||
                     ph_store_recorded_len(up->store, up->slot) == 0;
    if (forgotten && up->written > 0) {
        char ignored[96];
        /* Begin erased the rest; a failure here leaves bytes no record points at. */
        up->ops->erase(up->ops->ctx, up->slot, up->written, ignored, sizeof ignored);
    }
    up->written = 0;
}

ph_upload_result ph_upload_begin(ph_upload *up, ph_store *store, const ph_upload_ops *ops,
                                 size_t len, char *err, size_t err_cap)
{
    if (up->stage != PH_UPLOAD_IDLE) ph_upload_abort(up);
    memset(up, 0, sizeof *up);
    up->store = store;
    up->ops = ops;
    up->slot = ph_store_free_slot(store);
    size_t size = ops->slot_size(ops->ctx, up->slot);
    if (size == 0) {
        snprintf(err, err_cap, "no free module slot (partition %s missing)",
                 ph_store_slot_name(store, up->slot));
        return PH_UPLOAD_NO_SLOT;
    }
    if (len == 0 || len > size) {
        snprintf(err, err_cap, "module is %zu bytes; a slot holds 1 to %zu", len, size);
        return PH_UPLOAD_TOO_BIG;
    }
    /* The slot's old module is about to disappear: stop every reference to it first. */
    if (ph_store_mark_bad(store, up->slot) != 0) {
        snprintf(err, err_cap, "forgetting the old module of %s in %s failed",
                 ph_store_slot_name(store, up->slot), where(ops));
        return PH_UPLOAD_RECORD;
    }
    if (ops->erase(ops->ctx, up->slot, len, err, err_cap) < 0) return PH_UPLOAD_IO;
    up->sha = ops->sha_start(ops->ctx);
    if (up->sha == NULL) {
        snprintf(err, err_cap, "out of memory");
        return PH_UPLOAD_NO_MEMORY;
    }
    up->expected_len = len;
    up->stage = PH_UPLOAD_RECEIVING;
    return PH_UPLOAD_OK;
}

ph_upload_result ph_upload_write(ph_upload *up, const void *data, size_t len, char *err,
                                 size_t err_cap)
{
    if (up->stage != PH_UPLOAD_RECEIVING) {
        snprintf(err, err_cap, "no upload in progress");
        return PH_UPLOAD_ORDER;
    }
    if (len > up->expected_len - up->written) {
        snprintf(err, err_cap, "body is longer than the %zu bytes declared", up->expected_len);
        ph_upload_abort(up);
        return PH_UPLOAD_OVERRUN;
    }
    if (len == 0) return PH_UPLOAD_OK;
    if (up->ops->write(up->ops->ctx, up->slot, up->written, data, len, err, err_cap) < 0) {
        up->written += len;   /* some of it may be in flash: abort erases it too */
        ph_upload_abort(up);
        return PH_UPLOAD_IO;
    }
    up->ops->sha_update(up->ops->ctx, up->sha, data, len);
    up->written += len;
    return PH_UPLOAD_OK;
}

ph_upload_result ph_upload_finish(ph_upload *up, const uint8_t expected_sha256[32], char *err,
                                  size_t err_cap)
{
    uint8_t got[32];
    char got_hex[65], want_hex[65];

    if (up->stage != PH_UPLOAD_RECEIVING) {
        snprintf(err, err_cap, "no upload in progress");
        return PH_UPLOAD_ORDER;
    }
    if (up->written != up->expected_len) {
        snprintf(err, err_cap, "body ended after %zu of %zu bytes", up->written, up->expected_len);
        ph_upload_abort(up);
        return PH_UPLOAD_SHORT;
    }
    end_sha(up, got);
    if (memcmp(got, expected_sha256, sizeof got) != 0) {
        ph_sha256_hex(got, got_hex);
        ph_sha256_hex(expected_sha256, want_hex);
        snprintf(err, err_cap, "SHA-256 mismatch: received %s, X-Module-SHA256 says %s", got_hex,
                 want_hex);
        ph_upload_abort(up);
        return PH_UPLOAD_SHA_MISMATCH;
    }
    if (ph_store_record_upload(up->store, up->slot, (uint32_t)up->written, got) != 0) {
        snprintf(err, err_cap, "recording the module in %s failed", where(up->ops));
        ph_upload_abort(up);
        return PH_UPLOAD_RECORD;
    }
    up->stage = PH_UPLOAD_STORED;
    return PH_UPLOAD_OK;
}
