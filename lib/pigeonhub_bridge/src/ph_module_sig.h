/*
 * ph_module_sig.h — a module's signature: where it is, what range it covers, and the reasons a
 * hub with a module key refuses a module, in one place for the board (main/module_sig.c, mbedtls)
 * and the PC hub (src/pigeonhub/hub/signing.py, `cryptography`). The crypto stays in the hosts.
 *
 * A signed module ends with one WebAssembly custom section (docs/SIGNED_MODULES.md):
 *
 *     00 57 0d "pigeonhub.sig" 01 <key id: 8 bytes> <r||s: 64 bytes>
 *
 * id 0 (custom), size 87, name, format 1, the first 8 bytes of SHA-256 of the signing key's public
 * point (uncompressed, 65 bytes), and an ECDSA P-256 signature (SHA-256) of every module byte before
 * the section. WASM3 skips custom sections, so a signed module runs unchanged on a hub without a key.
 *
 * The parser walks the module's section headers only: LEB128 sizes of at most 5 bytes, every length
 * checked against what is left. It never reads outside [wasm, wasm + len).
 */
#ifndef PH_MODULE_SIG_H
#define PH_MODULE_SIG_H

#include <stddef.h>
#include <stdint.h>

#define PH_SIG_SECTION_NAME "pigeonhub.sig"
#define PH_SIG_FORMAT 1
#define PH_SIG_KEY_ID_BYTES 8
#define PH_SIG_BYTES 64                                            /* r || s, 32 bytes each */
#define PH_SIG_PAYLOAD_BYTES (1 + PH_SIG_KEY_ID_BYTES + PH_SIG_BYTES)   /* 73 */
#define PH_SIG_SECTION_BYTES (2 + 1 + (sizeof PH_SIG_SECTION_NAME - 1) + PH_SIG_PAYLOAD_BYTES) /* 89 */

typedef struct {
    size_t signed_len;                  /* bytes [0, signed_len) are signed: the section starts there */
    uint8_t key_id[PH_SIG_KEY_ID_BYTES];
    uint8_t sig[PH_SIG_BYTES];
} ph_module_sig;

typedef enum {
    PH_SIG_FOUND = 1,
    PH_SIG_ABSENT = 0,       /* a well-formed module without a signature section */
    PH_SIG_MALFORMED = -1,   /* reason says what: not WebAssembly, truncated, misplaced, wrong size */
} ph_sig_find_result;

/* Find the signature section of wasm[0, len). */
ph_sig_find_result ph_module_sig_find(const uint8_t *wasm, size_t len, ph_module_sig *out,
                                      char *reason, size_t reason_cap);

/* The 89-byte section that signs a module with this key id and signature (appended after the
 * module's last byte). Returns PH_SIG_SECTION_BYTES. */
size_t ph_module_sig_encode(const uint8_t key_id[PH_SIG_KEY_ID_BYTES], const uint8_t sig[PH_SIG_BYTES],
                            uint8_t out[PH_SIG_SECTION_BYTES]);

/* The host's ECDSA P-256 verify of sig (r||s) over SHA-256 of data[0, len): 1 valid, 0 invalid,
 * <0 it could not verify (out of memory; reason in err). */
typedef int (*ph_sig_verify_fn)(void *ctx, const uint8_t *data, size_t len,
                                const uint8_t sig[PH_SIG_BYTES], char *err, size_t err_cap);

typedef enum {
    PH_SIG_OK = 0,
    PH_SIG_UNSIGNED = -1,     /* no signature section                             */
    PH_SIG_BAD_FORMAT = -2,   /* a signature section that cannot be read          */
    PH_SIG_OTHER_KEY = -3,    /* signed, by another key                           */
    PH_SIG_MISMATCH = -4,     /* signed by this key's id, but not these bytes     */
    PH_SIG_ERROR = -5,        /* the host could not verify (out of memory)        */
} ph_sig_check_result;

/* A hub with a module key (key_id: its first 8 bytes of SHA-256 of the public point) decides
 * whether it runs wasm: PH_SIG_OK, or why not in reason (the words both hosts answer with). */
ph_sig_check_result ph_module_sig_check(const uint8_t *wasm, size_t len,
                                        const uint8_t key_id[PH_SIG_KEY_ID_BYTES],
                                        ph_sig_verify_fn verify, void *ctx, char *reason,
                                        size_t reason_cap);

#endif /* PH_MODULE_SIG_H */
