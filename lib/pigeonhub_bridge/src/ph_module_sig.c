/*
 * ph_module_sig.c — find and judge a module's signature section (ph_module_sig.h).
 */
#include "ph_module_sig.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define NAME_LEN (sizeof PH_SIG_SECTION_NAME - 1)

/* Unsigned LEB128 of at most 5 bytes and 32 bits; false when it runs past end or is longer. */
static bool leb_u32(const uint8_t **p, const uint8_t *end, uint32_t *out)
{
    uint32_t value = 0;
    for (unsigned shift = 0; shift < 35; shift += 7) {
        if (*p >= end) return false;
        uint8_t byte = *(*p)++;
        if (shift == 28 && (byte & 0x70)) return false;
        value |= (uint32_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return true;
        }
    }
    return false;
}

/* Is the custom section body [p, end) named pigeonhub.sig? Sets *payload past the name. */
static bool is_sig_section(const uint8_t *p, const uint8_t *end, const uint8_t **payload)
{
    uint32_t name_len;
    if (!leb_u32(&p, end, &name_len) || name_len != NAME_LEN || (size_t)(end - p) < NAME_LEN)
        return false;
    if (memcmp(p, PH_SIG_SECTION_NAME, NAME_LEN) != 0) return false;
    *payload = p + NAME_LEN;
    return true;
}

ph_sig_find_result ph_module_sig_find(const uint8_t *wasm, size_t len, ph_module_sig *out,
                                      char *reason, size_t reason_cap)
{
    static const uint8_t header[8] = { 0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00 };
    if (wasm == NULL || len < sizeof header || memcmp(wasm, header, sizeof header) != 0) {
        snprintf(reason, reason_cap, "not a WebAssembly 1.0 module (no \\0asm header, version 1)");
        return PH_SIG_MALFORMED;
    }
    const uint8_t *p = wasm + sizeof header, *end = wasm + len;
    const uint8_t *sig_at = NULL, *sig_payload = NULL, *sig_end = NULL;
    while (p < end) {
        const uint8_t *at = p;
        uint8_t id = *p++;
        uint32_t size;
        if (!leb_u32(&p, end, &size) || size > (size_t)(end - p)) {
            snprintf(reason, reason_cap,
                     "module is truncated: the section at offset %zu runs past the end of the %zu "
                     "bytes", (size_t)(at - wasm), len);
            return PH_SIG_MALFORMED;
        }
        if (sig_at != NULL) {
            snprintf(reason, reason_cap,
                     "the signature section at offset %zu is not the module's last section "
                     "(another starts at %zu): sign the finished module",
                     (size_t)(sig_at - wasm), (size_t)(at - wasm));
            return PH_SIG_MALFORMED;
        }
        const uint8_t *payload;
        if (id == 0 && is_sig_section(p, p + size, &payload)) {
            sig_at = at;
            sig_payload = payload;
            sig_end = p + size;
        }
        p += size;
    }
    if (sig_at == NULL) return PH_SIG_ABSENT;
    size_t payload_len = (size_t)(sig_end - sig_payload);
    if (payload_len != PH_SIG_PAYLOAD_BYTES) {
        snprintf(reason, reason_cap,
                 "the signature section holds %zu bytes after its name; format %d holds %d",
                 payload_len, PH_SIG_FORMAT, PH_SIG_PAYLOAD_BYTES);
        return PH_SIG_MALFORMED;
    }
    if (sig_payload[0] != PH_SIG_FORMAT) {
        snprintf(reason, reason_cap,
                 "the signature section is in format %u; this hub reads format %d (update it)",
                 sig_payload[0], PH_SIG_FORMAT);
        return PH_SIG_MALFORMED;
    }
    /* The size and name lengths written with more LEB128 bytes than needed: still one encoding
     * per signature, so the signed range always ends exactly 89 bytes before the module does. */
    if ((size_t)(end - sig_at) != PH_SIG_SECTION_BYTES) {
        snprintf(reason, reason_cap,
                 "the signature section is %zu bytes long; format %d's is %d (minimal LEB128 sizes)",
                 (size_t)(end - sig_at), PH_SIG_FORMAT, (int)PH_SIG_SECTION_BYTES);
        return PH_SIG_MALFORMED;
    }
    out->signed_len = (size_t)(sig_at - wasm);
    memcpy(out->key_id, sig_payload + 1, PH_SIG_KEY_ID_BYTES);
    memcpy(out->sig, sig_payload + 1 + PH_SIG_KEY_ID_BYTES, PH_SIG_BYTES);
    return PH_SIG_FOUND;
}

size_t ph_module_sig_encode(const uint8_t key_id[PH_SIG_KEY_ID_BYTES], const uint8_t sig[PH_SIG_BYTES],
                            uint8_t out[PH_SIG_SECTION_BYTES])
{
    uint8_t *p = out;
    *p++ = 0;                                   /* custom section */
    *p++ = (uint8_t)(PH_SIG_SECTION_BYTES - 2); /* its size: one LEB128 byte (87 < 128) */
    *p++ = (uint8_t)NAME_LEN;
    memcpy(p, PH_SIG_SECTION_NAME, NAME_LEN);
    p += NAME_LEN;
    *p++ = PH_SIG_FORMAT;
    memcpy(p, key_id, PH_SIG_KEY_ID_BYTES);
    p += PH_SIG_KEY_ID_BYTES;
    memcpy(p, sig, PH_SIG_BYTES);
    return PH_SIG_SECTION_BYTES;
}

static void key_id_hex(const uint8_t id[PH_SIG_KEY_ID_BYTES], char out[2 * PH_SIG_KEY_ID_BYTES + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < PH_SIG_KEY_ID_BYTES; i++) {
        out[2 * i] = digits[id[i] >> 4];
        out[2 * i + 1] = digits[id[i] & 15];
    }
    out[2 * PH_SIG_KEY_ID_BYTES] = '\0';
}

ph_sig_check_result ph_module_sig_check(const uint8_t *wasm, size_t len,
                                        const uint8_t key_id[PH_SIG_KEY_ID_BYTES],
                                        ph_sig_verify_fn verify, void *ctx, char *reason,
                                        size_t reason_cap)
{
    ph_module_sig sig;
    char why[160] = "", got_id[2 * PH_SIG_KEY_ID_BYTES + 1], want_id[2 * PH_SIG_KEY_ID_BYTES + 1];
    switch (ph_module_sig_find(wasm, len, &sig, why, sizeof why)) {
    case PH_SIG_ABSENT:
        snprintf(reason, reason_cap,
                 "module is not signed; this hub runs only modules signed by its module key "
                 "(sign it with `pigeonhub build --sign KEY`)");
        return PH_SIG_UNSIGNED;
    case PH_SIG_MALFORMED:
        snprintf(reason, reason_cap, "module signature unreadable: %s", why);
        return PH_SIG_BAD_FORMAT;
    case PH_SIG_FOUND:
        break;
    }
    key_id_hex(key_id, want_id);
    if (memcmp(sig.key_id, key_id, PH_SIG_KEY_ID_BYTES) != 0) {
        key_id_hex(sig.key_id, got_id);
        snprintf(reason, reason_cap,
                 "module is signed by key %s; this hub's module key is %s", got_id, want_id);
        return PH_SIG_OTHER_KEY;
    }
    int valid = verify(ctx, wasm, sig.signed_len, sig.sig, why, sizeof why);
    if (valid < 0) {
        snprintf(reason, reason_cap, "module signature could not be checked: %s", why);
        return PH_SIG_ERROR;
    }
    if (valid == 0) {
        snprintf(reason, reason_cap,
                 "module signature does not match its %zu signed bytes (changed after signing, or "
                 "signed by another key with the same id %s)", sig.signed_len, want_id);
        return PH_SIG_MISMATCH;
    }
    return PH_SIG_OK;
}
