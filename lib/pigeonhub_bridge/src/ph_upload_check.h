/*
 * ph_upload_check.h — what POST /module checks before it reads a body, in one place for the
 * board (main/http_endpoints.c) and the PC hub (src/pigeonhub/hub/ota.py): the upload token, the
 * module's SHA-256 header, its length. The answers are the same on both, word for word.
 */
#ifndef PH_UPLOAD_CHECK_H
#define PH_UPLOAD_CHECK_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *token;           /* the configured upload token; NULL or "": uploads are disabled */
    const char *token_hint;      /* how to set one on this host, for the 403 reason              */
    const char *authorization;   /* Authorization header; NULL: absent or longer than the host reads */
    const char *sha256_hex;      /* X-Module-SHA256 header; NULL: absent                          */
    const char *content_length;  /* Content-Length header as sent; NULL: absent                   */
    size_t slot_bytes;           /* the largest module a slot holds                               */
} ph_upload_request;

/* 0 when the upload may go on (*length and sha256 are then filled), else the HTTP status to answer
 * (403, 400, 411 or 413) with its reason in reason[]. Checked in this order: token, hash, length.
 * The token is compared in constant time. */
int ph_upload_check(const ph_upload_request *rq, size_t *length, uint8_t sha256[32], char *reason,
                    size_t reason_cap);

#endif /* PH_UPLOAD_CHECK_H */
