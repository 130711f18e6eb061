/*
 * tls_identity.c — the TLS certificate and key in NVS (settings.h SETTINGS_KEY_TLS_*): checked with
 * mbedtls before they are stored and again when loaded, so a bad pair is refused with its reason on
 * the console instead of failing every handshake later.
 */
#include "tls_identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "esp_random.h"
#include "nvs.h" /* ESP_ERR_NVS_NOT_FOUND */
#include "mbedtls/error.h"
#include "mbedtls/oid.h"
#include "mbedtls/pk.h"
#include "mbedtls/x509_crt.h"
#include "settings.h"

static int random_bytes(void *ctx, unsigned char *buf, size_t len)
{
    (void)ctx;
    esp_fill_random(buf, len);
    return 0;
}

static void describe(const mbedtls_x509_crt *crt, char *summary, size_t cap)
{
    char cn[64] = "(no CN)";
    for (const mbedtls_x509_name *name = &crt->subject; name != NULL; name = name->next) {
        if (name->oid.p != NULL && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &name->oid) == 0) {
            size_t n = name->val.len < sizeof(cn) - 1 ? name->val.len : sizeof(cn) - 1;
            memcpy(cn, name->val.p, n);
            cn[n] = '\0';
            break;
        }
    }
    const mbedtls_x509_time *t = &crt->valid_to;
    snprintf(summary, cap, "CN=%s, expires %04d-%02d-%02d", cn, t->year, t->mon, t->day);
}

esp_err_t tls_identity_check(const char *cert, size_t cert_len, const char *key, size_t key_len,
                             char *summary, size_t summary_cap, char *err, size_t err_cap)
{
    mbedtls_x509_crt crt;
    mbedtls_pk_context pk;
    char why[96];
    esp_err_t result = ESP_ERR_INVALID_ARG;
    int rc;
    mbedtls_x509_crt_init(&crt);
    mbedtls_pk_init(&pk);
    if (cert_len > TLS_PEM_MAX + 1 || key_len > TLS_PEM_MAX + 1) {
        snprintf(err, err_cap, "certificate and key must each be at most %d bytes of PEM",
                 TLS_PEM_MAX);
        goto cleanup;
    }
    if ((rc = mbedtls_x509_crt_parse(&crt, (const unsigned char *)cert, cert_len)) != 0) {
        mbedtls_strerror(rc, why, sizeof(why));
        snprintf(err, err_cap, "the certificate is not a PEM X.509 certificate (%s)", why);
        goto cleanup;
    }
    if ((rc = mbedtls_pk_parse_key(&pk, (const unsigned char *)key, key_len, NULL, 0, random_bytes,
                                   NULL)) != 0) {
        mbedtls_strerror(rc, why, sizeof(why));
        snprintf(err, err_cap, "the key is not an unencrypted PEM private key (%s)", why);
        goto cleanup;
    }
    if (mbedtls_pk_check_pair(&crt.pk, &pk, random_bytes, NULL) != 0) {
        snprintf(err, err_cap, "the key does not belong to the certificate (a different pair?)");
        goto cleanup;
    }
    describe(&crt, summary, summary_cap);
    result = ESP_OK;
cleanup:
    mbedtls_pk_free(&pk);
    mbedtls_x509_crt_free(&crt);
    return result;
}

void tls_identity_free(tls_identity *id)
{
    free(id->cert);
    free(id->key);
    memset(id, 0, sizeof(*id));
}

esp_err_t tls_identity_load(tls_identity *id, char *err, size_t err_cap)
{
    memset(id, 0, sizeof(*id));
    esp_err_t e = settings_get_blob(SETTINGS_KEY_TLS_CERT, &id->cert, &id->cert_len);
    if (e == ESP_OK) {
        e = settings_get_blob(SETTINGS_KEY_TLS_KEY, &id->key, &id->key_len);
    }
    if (e != ESP_OK) {
        snprintf(err, err_cap, "%s", e == ESP_ERR_NVS_NOT_FOUND ? "not provisioned"
                                                                : esp_err_to_name(e));
        tls_identity_free(id);
        return e == ESP_ERR_NVS_NOT_FOUND ? e : ESP_ERR_INVALID_ARG;
    }
    id->cert_len++; /* the NUL settings_get_blob added: mbedtls reads PEM with it */
    id->key_len++;
    e = tls_identity_check(id->cert, id->cert_len, id->key, id->key_len, id->summary,
                           sizeof(id->summary), err, err_cap);
    if (e != ESP_OK) {
        tls_identity_free(id);
    }
    return e;
}

esp_err_t tls_identity_store(const char *cert, size_t cert_len, const char *key, size_t key_len,
                             char *summary, size_t summary_cap, char *err, size_t err_cap)
{
    static const char *const keys[] = { SETTINGS_KEY_TLS_CERT, SETTINGS_KEY_TLS_KEY };
    const void *values[] = { cert, key };
    size_t lens[] = { cert_len ? cert_len - 1 : 0, key_len ? key_len - 1 : 0 };   /* without NUL */
    if (cert != NULL || key != NULL) {
        esp_err_t e = tls_identity_check(cert, cert_len, key, key_len, summary, summary_cap, err,
                                         err_cap);
        if (e != ESP_OK) {
            return e;
        }
    }
    esp_err_t e = settings_set_blobs(keys, values, lens, 2);
    if (e != ESP_OK) {
        snprintf(err, err_cap, "storing in NVS failed: %s", esp_err_to_name(e));
    }
    return e;
}
