/*
 * settings.c — NVS-backed strings (Wi-Fi credentials, upload token, bootstrap hubs) with Kconfig
 * fallbacks.
 */
#include "settings.h"

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
