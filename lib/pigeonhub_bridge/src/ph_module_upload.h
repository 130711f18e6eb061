/*
 * ph_module_upload.h — an uploaded module's way into a slot: begin → write* → finish, or abort.
 *
 * The host streams the body of POST /module into the slot that is not running while it arrives
 * (a board has no RAM for a whole module). This file decides everything about that stream that
 * does not depend on the host: which slot (ph_store_free_slot, never the running one), whether the
 * declared length fits it, that no byte lands beyond the declared length, that finish succeeds only
 * when exactly that many bytes arrived and their SHA-256 is the one the client declared, what is
 * recorded then (ph_store_record_upload), and that every failure or abort leaves the slot erased
 * with no record. The host provides the slot's storage and a SHA-256 engine (ph_upload_ops): flash
 * partitions and mbedtls on the board.
 *
 * Any failure inside write or finish aborts the upload itself, so a host that forgets to call
 * ph_upload_abort still leaves nothing behind; ph_upload_abort is then a no-op.
 */
#ifndef PH_MODULE_UPLOAD_H
#define PH_MODULE_UPLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ph_module_store.h"

typedef struct ph_upload_ops {
    void *ctx;
    /* Bytes the slot holds; 0 when this host has no such slot. */
    size_t (*slot_size)(void *ctx, int slot);
    /* Erase at least [0, len) of the slot (the host rounds up to its erase unit, never beyond the
     * slot). 0, or <0 with the reason in err. */
    int (*erase)(void *ctx, int slot, size_t len, char *err, size_t err_cap);
    /* Write len bytes at offset (within what was erased). 0, or <0 with the reason in err. */
    int (*write)(void *ctx, int slot, size_t offset, const void *data, size_t len, char *err,
                 size_t err_cap);
    /* A SHA-256 context: NULL when none can be had (out of memory). */
    void *(*sha_start)(void *ctx);
    void (*sha_update)(void *ctx, void *sha, const void *data, size_t len);
    /* Ends and frees the context; out (32 bytes) may be NULL when the digest is not wanted. */
    void (*sha_end)(void *ctx, void *sha, uint8_t *out);
    /* Where ph_store_record_upload keeps the record, for its failure reason ("NVS"). */
    const char *record_where;
} ph_upload_ops;

typedef enum { PH_UPLOAD_IDLE, PH_UPLOAD_RECEIVING, PH_UPLOAD_STORED } ph_upload_stage;

/* Results (negative) of the functions below; the reason is always in err as well. */
typedef enum {
    PH_UPLOAD_OK = 0,
    PH_UPLOAD_NO_SLOT = -1,      /* the free slot does not exist on this host              */
    PH_UPLOAD_TOO_BIG = -2,      /* declared length 0 or more than the slot holds          */
    PH_UPLOAD_IO = -3,           /* the host's erase or write failed                       */
    PH_UPLOAD_NO_MEMORY = -4,    /* no SHA-256 context                                     */
    PH_UPLOAD_ORDER = -5,        /* write/finish without a begin, or after the end         */
    PH_UPLOAD_OVERRUN = -6,      /* more bytes than declared                               */
    PH_UPLOAD_SHORT = -7,        /* finish before the declared length arrived              */
    PH_UPLOAD_SHA_MISMATCH = -8,
    PH_UPLOAD_RECORD = -9,       /* the store could not save the record                    */
} ph_upload_result;

typedef struct {
    ph_store *store;
    const ph_upload_ops *ops;
    ph_upload_stage stage;
    int slot;
    size_t expected_len;
    size_t written;
    void *sha;
} ph_upload;

/* Pick the free slot, check `len` against it, forget the slot's old record, erase [0, len). */
ph_upload_result ph_upload_begin(ph_upload *up, ph_store *store, const ph_upload_ops *ops,
                                 size_t len, char *err, size_t err_cap);
/* The next len bytes of the body. */
ph_upload_result ph_upload_write(ph_upload *up, const void *data, size_t len, char *err,
                                 size_t err_cap);
/* The body has ended: exactly the declared length, with this SHA-256? Then record it. */
ph_upload_result ph_upload_finish(ph_upload *up, const uint8_t expected_sha256[32], char *err,
                                  size_t err_cap);
/* Give the upload up, also after a successful finish (the module was refused later): erase what was
 * written and forget the record. Never touches the slot the store runs. Safe to call twice. */
void ph_upload_abort(ph_upload *up);

/* 64 lowercase hex digits and a NUL. */
void ph_sha256_hex(const uint8_t sha256[32], char out[65]);

#endif /* PH_MODULE_UPLOAD_H */
