/*
 * tls_identity.h — the hub's TLS certificate and private key (PEM, in NVS): checked before they are
 * stored, loaded when the HTTP server starts. With both present the hub serves wss:// and https://.
 */
#ifndef PH_TLS_IDENTITY_H
#define PH_TLS_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include "esp_err.h"

#define TLS_PEM_MAX 4096        /* bytes of one PEM (certificate chain or key) the hub accepts */

typedef struct {
    char *cert;                 /* PEM, NUL-terminated (malloc'd)                             */
    size_t cert_len;            /* bytes including the NUL, as mbedtls and esp_https_server want */
    char *key;
    size_t key_len;
    char summary[96];           /* "CN=hub.local, expires 2027-12-08"                          */
} tls_identity;

/* Parse cert and key (PEM, NUL-terminated, lengths including the NUL), check that the key belongs
 * to the certificate, and describe it in `summary`. ESP_OK, or ESP_ERR_INVALID_ARG with the reason in
 * err. */
esp_err_t tls_identity_check(const char *cert, size_t cert_len, const char *key, size_t key_len,
                             char *summary, size_t summary_cap, char *err, size_t err_cap);

/* The identity stored in NVS, checked. ESP_ERR_NVS_NOT_FOUND: none (or only half) provisioned;
 * ESP_ERR_INVALID_ARG: stored but unusable (reason in err). tls_identity_free() after ESP_OK. */
esp_err_t tls_identity_load(tls_identity *id, char *err, size_t err_cap);
void tls_identity_free(tls_identity *id);

/* Check and store (both) or erase (cert and key NULL). */
esp_err_t tls_identity_store(const char *cert, size_t cert_len, const char *key, size_t key_len,
                             char *summary, size_t summary_cap, char *err, size_t err_cap);

#endif /* PH_TLS_IDENTITY_H */
