/*
 * settings.h — values a user sets without reflashing (NVS), falling back to Kconfig defaults.
 */
#ifndef PH_SETTINGS_H
#define PH_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include "esp_err.h"

#define SETTINGS_NAMESPACE "pigeonhub"   /* NVS namespace for all firmware settings      */
#define SETTINGS_KEY_WIFI_SSID "wifi_ssid"
#define SETTINGS_KEY_WIFI_PASS "wifi_pass"
#define SETTINGS_KEY_UPLOAD_TOKEN "upload_token"
#define SETTINGS_KEY_BOOTSTRAP "bootstrap"   /* comma-separated hub URLs (console `bootstrap`) */
/* TLS identity (console `tls`, `pigeonhub provision`): PEM blobs; both present = wss:// and https:// */
#define SETTINGS_KEY_TLS_CERT "tls_cert"
#define SETTINGS_KEY_TLS_KEY "tls_key"
#define SETTINGS_KEY_MODULE_KEY "mod_key"    /* public key modules must be signed by (console `modkey`) */
/* The module store's bookkeeping (main/module_store.c says what each holds); N = the slot number. */
#define SETTINGS_KEY_MODULE_ACTIVE "mod_active"
#define SETTINGS_KEY_MODULE_PREVIOUS "mod_prev"
#define SETTINGS_KEY_MODULE_TRIAL "mod_trial"
#define SETTINGS_KEY_MODULE_LEN_PREFIX "mod_len" /* mod_lenN */
#define SETTINGS_KEY_MODULE_SHA_PREFIX "mod_sha" /* mod_shaN */

/* Copy the NVS value of key into buf, or fallback (a Kconfig string) when the key is absent.
 * Returns true when the result is non-empty. */
bool settings_get_str(const char *key, const char *fallback, char *buf, size_t cap);
esp_err_t settings_set_str(const char *key, const char *value);

/* A blob, NUL-terminated in a malloc'd buffer (free() it): *out NULL and ESP_ERR_NVS_NOT_FOUND when
 * absent. *len is the blob's length without the added NUL. */
esp_err_t settings_get_blob(const char *key, char **out, size_t *len);
/* Store the blobs keys[i] = values[i] (lengths lens[i]) in one commit; a NULL value erases the key. */
esp_err_t settings_set_blobs(const char *const *keys, const void *const *values, const size_t *lens,
                             size_t count);

#endif /* PH_SETTINGS_H */
