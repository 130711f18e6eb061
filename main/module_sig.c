/*
 * module_sig.c — the module key and the signature check (module_sig.h), with mbedtls: the key is
 * parsed from its text each time a module is checked (uploads and boots are rare; nothing stays
 * allocated between them), the signature is ECDSA P-256 over SHA-256 of the signed bytes.
 */
#include "module_sig.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "esp_heap_caps.h"
#include "esp_log.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "mbedtls/base64.h"
#include "mbedtls/ecdsa.h"
#include "mbedtls/pk.h"
#include "mbedtls/sha256.h"
#include "ph_module_sig.h"
#include "settings.h"

static const char *TAG = "pigeonhub";

#define KEY_TEXT_MAX 320   /* a P-256 key's PEM is 178 characters, its base64 DER 124 */
#define KEY_DER_MAX 160    /* SubjectPublicKeyInfo of a P-256 key: 91 bytes */

typedef struct {
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    uint8_t id[PH_SIG_KEY_ID_BYTES];
} module_key;

/* The base64 inside text: a PEM's body (between its BEGIN and END lines) or the whole text;
 * whitespace and literal "\n" (a PEM pasted into one Kconfig line) are skipped. */
static size_t key_base64(const char *text, char *out, size_t cap)
{
    const char *begin = strstr(text, "-----BEGIN PUBLIC KEY-----");
    const char *p = begin ? begin + strlen("-----BEGIN PUBLIC KEY-----") : text;
    size_t n = 0;
    for (; *p && strncmp(p, "-----", 5) != 0 && n + 1 < cap; p++) {
        if (p[0] == '\\' && p[1] == 'n') {
            p++;
        } else if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return n;
}

static void key_free(module_key *key)
{
    mbedtls_ecp_group_free(&key->grp);
    mbedtls_ecp_point_free(&key->q);
}

/* text -> key (call key_free after, also on failure). ESP_OK, or the reason in err. The text's
 * buffers are on the heap: the console's task has 4 KiB of stack, and mbedtls' parse needs some. */
static esp_err_t key_parse(const char *text, module_key *key, char *err, size_t cap)
{
    struct {
        char b64[KEY_TEXT_MAX];
        uint8_t der[KEY_DER_MAX];
        uint8_t point[65];
    } *scratch = NULL;
    size_t der_len = 0, point_len = 0;
    mbedtls_pk_context pk;
    mbedtls_mpi d;
    esp_err_t result = ESP_ERR_INVALID_ARG;

    mbedtls_ecp_group_init(&key->grp);
    mbedtls_ecp_point_init(&key->q);
    mbedtls_pk_init(&pk);
    mbedtls_mpi_init(&d);
    if ((scratch = malloc(sizeof(*scratch))) == NULL) {
        snprintf(err, cap, "out of memory reading the key");
        result = ESP_ERR_NO_MEM;
        goto cleanup;
    }
    size_t n = key_base64(text, scratch->b64, sizeof(scratch->b64));
    if (n == 0 || mbedtls_base64_decode(scratch->der, sizeof(scratch->der), &der_len,
                                        (const uint8_t *)scratch->b64, n) != 0) {
        snprintf(err, cap, "not base64 (expected the one line `pigeonhub keygen` prints, or a PEM)");
        goto cleanup;
    }
    if (mbedtls_pk_parse_public_key(&pk, scratch->der, der_len) != 0 || mbedtls_pk_ec(pk) == NULL ||
        mbedtls_ecp_keypair_get_group_id(mbedtls_pk_ec(pk)) != MBEDTLS_ECP_DP_SECP256R1) {
        snprintf(err, cap, "not an ECDSA P-256 public key (`pigeonhub keygen` makes one)");
        goto cleanup;
    }
    if (mbedtls_ecp_export(mbedtls_pk_ec(pk), &key->grp, &d, &key->q) != 0 ||
        mbedtls_ecp_point_write_binary(&key->grp, &key->q, MBEDTLS_ECP_PF_UNCOMPRESSED, &point_len,
                                       scratch->point, sizeof(scratch->point)) != 0) {
        snprintf(err, cap, "out of memory reading the key");
        result = ESP_ERR_NO_MEM;
        goto cleanup;
    }
    uint8_t digest[32];
    mbedtls_sha256(scratch->point, point_len, digest, 0);
    memcpy(key->id, digest, sizeof(key->id));
    result = ESP_OK;
cleanup:
    free(scratch);
    mbedtls_mpi_free(&d);
    mbedtls_pk_free(&pk);
    return result;
}

/* The key's text and where it came from; false when no key is set. NVS wins over Kconfig; `modkey
 * none` empties NVS's, which hands over to Kconfig's again. */
static bool key_text(char *text, size_t cap, const char **source)
{
    if (settings_get_str(SETTINGS_KEY_MODULE_KEY, NULL, text, cap)) {
        *source = "NVS mod_key";
        return true;
    }
    *source = "CONFIG_PIGEONHUB_MODULE_PUBKEY";
    strlcpy(text, CONFIG_PIGEONHUB_MODULE_PUBKEY, cap);
    return text[0] != '\0';
}

static void id_hex(const uint8_t id[PH_SIG_KEY_ID_BYTES], char out[17])
{
    for (int i = 0; i < PH_SIG_KEY_ID_BYTES; i++) {
        snprintf(out + 2 * i, 3, "%02x", id[i]);
    }
}

esp_err_t module_sig_parse_key(const char *text, char key_id_hex[17], char *err, size_t cap)
{
    module_key key;
    esp_err_t e = key_parse(text, &key, err, cap);
    if (e == ESP_OK) {
        id_hex(key.id, key_id_hex);
    }
    key_free(&key);
    return e;
}

/* ph_sig_verify_fn with mbedtls. */
static int verify(void *ctx, const uint8_t *data, size_t len, const uint8_t sig[PH_SIG_BYTES],
                  char *err, size_t err_cap)
{
    module_key *key = ctx;
    uint8_t hash[32];
    mbedtls_mpi r, s;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    mbedtls_sha256(data, len, hash, 0);
    int rc = mbedtls_mpi_read_binary(&r, sig, 32);
    if (rc == 0) rc = mbedtls_mpi_read_binary(&s, sig + 32, 32);
    if (rc == 0) rc = mbedtls_ecdsa_verify(&key->grp, hash, sizeof(hash), &key->q, &r, &s);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    if (rc == 0) return 1;
    if (rc == MBEDTLS_ERR_ECP_VERIFY_FAILED || rc == MBEDTLS_ERR_ECP_INVALID_KEY) return 0;
    snprintf(err, err_cap, "mbedtls error -0x%04x", (unsigned)-rc);
    return -1;
}

int module_sig_check(const uint8_t *wasm, size_t len, char *reason, size_t cap)
{
    char text[KEY_TEXT_MAX], err[96];
    const char *source;
    if (!key_text(text, sizeof(text), &source)) {
        return 0;   /* no key: every module runs, a signature section is skipped by WASM3 */
    }
    module_key key;
    int refused = 1;
    /* The figures of docs/SIGNED_MODULES.md: time and heap at the verify's peak. */
    int64_t t0 = esp_timer_get_time();
    size_t free_before = heap_caps_get_free_size(MALLOC_CAP_DEFAULT);
    unsigned stack_before = (unsigned)uxTaskGetStackHighWaterMark(NULL);
    bool monitoring = heap_caps_monitor_local_minimum_free_size_start() == ESP_OK;
    if (key_parse(text, &key, err, sizeof(err)) != ESP_OK) {
        /* A key is set but unreadable: nothing runs that it did not sign, so nothing new runs. */
        snprintf(reason, cap, "the module key (%s) cannot be used: %s; set it again with the "
                              "console's `modkey`", source, err);
    } else {
        ph_sig_check_result rc = ph_module_sig_check(wasm, len, key.id, verify, &key, reason, cap);
        refused = rc != PH_SIG_OK;
    }
    key_free(&key);
    size_t low = monitoring ? heap_caps_get_minimum_free_size(MALLOC_CAP_DEFAULT) : free_before;
    if (monitoring) {
        heap_caps_monitor_local_minimum_free_size_stop();
    }
    if (!refused) {
        char hex[17];
        id_hex(key.id, hex);
        ESP_LOGI(TAG, "module signature of key %s verified: %u bytes in %lld ms, %u bytes of heap "
                      "at its peak, stack high-water %u -> %u bytes free", hex, (unsigned)len,
                 (long long)(esp_timer_get_time() - t0) / 1000,
                 (unsigned)(free_before > low ? free_before - low : 0), stack_before,
                 (unsigned)uxTaskGetStackHighWaterMark(NULL));
    }
    return refused;
}

void module_sig_log_key(void)
{
    char text[KEY_TEXT_MAX], err[96], hex[17];
    const char *source;
    if (!key_text(text, sizeof(text), &source)) {
        return;
    }
    if (module_sig_parse_key(text, hex, err, sizeof(err)) == ESP_OK) {
        ESP_LOGI(TAG, "module key %s (%s): only modules signed by it run", hex, source);
    } else {
        ESP_LOGE(TAG, "module key (%s) cannot be used: %s; no uploaded module will run", source, err);
    }
}
