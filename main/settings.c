/*
 * settings.c — NVS-backed strings (Wi-Fi credentials, upload token, bootstrap hubs) with Kconfig
 * fallbacks, and blobs (the TLS certificate and key).
 */
#include "settings.h"

#include <stdlib.h>
#include <string.h>
#include "esp_log.h"
#include "nvs.h"

static const char *TAG = "settings";

bool settings_get_str(const char *key, const char *fallback, char *buf, size_t cap)
{
    nvs_handle_t nvs;
    size_t len = cap;
    if (cap == 0) {
        return false;
    }
    buf[0] = '\0';
    if (nvs_open(SETTINGS_NAMESPACE, NVS_READONLY, &nvs) == ESP_OK) {
        esp_err_t err = nvs_get_str(nvs, key, buf, &len);
        nvs_close(nvs);
        if (err == ESP_OK) {
            return buf[0] != '\0';
        }
        if (err != ESP_ERR_NVS_NOT_FOUND) {
            /* e.g. ESP_ERR_NVS_INVALID_LENGTH: a stored value longer than cap */
            ESP_LOGW(TAG, "nvs_get_str(%s) failed: %s; using the build-time value", key,
                     esp_err_to_name(err));
        }
    }
    strlcpy(buf, fallback ? fallback : "", cap);
    return buf[0] != '\0';
}

esp_err_t settings_set_str(const char *key, const char *value)
{
    nvs_handle_t nvs;
    esp_err_t err = nvs_open(SETTINGS_NAMESPACE, NVS_READWRITE, &nvs);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "nvs_open failed: %s", esp_err_to_name(err));
        return err;
    }
    err = nvs_set_str(nvs, key, value);
    if (err == ESP_OK) {
        err = nvs_commit(nvs);
    }
    nvs_close(nvs);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "storing %s failed: %s", key, esp_err_to_name(err));
    }
    return err;
}

esp_err_t settings_get_blob(const char *key, char **out, size_t *len)
{
    nvs_handle_t nvs;
    size_t n = 0;
    *out = NULL;
    *len = 0;
    esp_err_t err = nvs_open(SETTINGS_NAMESPACE, NVS_READONLY, &nvs);
    if (err != ESP_OK) {
        return err == ESP_ERR_NVS_NOT_FOUND ? ESP_ERR_NVS_NOT_FOUND : err;
    }
    err = nvs_get_blob(nvs, key, NULL, &n);
    char *buf = err == ESP_OK ? malloc(n + 1) : NULL;
    if (err == ESP_OK && buf == NULL) {
        err = ESP_ERR_NO_MEM;
    }
    if (err == ESP_OK) {
        err = nvs_get_blob(nvs, key, buf, &n);
    }
    nvs_close(nvs);
    if (err != ESP_OK) {
        free(buf);
        if (err != ESP_ERR_NVS_NOT_FOUND) {
            ESP_LOGW(TAG, "nvs_get_blob(%s) failed: %s", key, esp_err_to_name(err));
        }
        return err;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return ESP_OK;
}

esp_err_t settings_set_blobs(const char *const *keys, const void *const *values, const size_t *lens,
                             size_t count)
{
    nvs_handle_t nvs;
    esp_err_t err = nvs_open(SETTINGS_NAMESPACE, NVS_READWRITE, &nvs);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "nvs_open failed: %s", esp_err_to_name(err));
        return err;
    }
    for (size_t i = 0; err == ESP_OK && i < count; i++) {
        if (values[i] != NULL) {
            err = nvs_set_blob(nvs, keys[i], values[i], lens[i]);
        } else if ((err = nvs_erase_key(nvs, keys[i])) == ESP_ERR_NVS_NOT_FOUND) {
            err = ESP_OK;
        }
    }
    if (err == ESP_OK) {
        err = nvs_commit(nvs);
    }
    nvs_close(nvs);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "storing %s failed: %s", count ? keys[0] : "", esp_err_to_name(err));
    }
    return err;
}
