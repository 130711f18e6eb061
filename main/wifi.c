/*
 * wifi.c — Wi-Fi station. Credentials: NVS (set with the serial console command
 * `wifi <ssid> <password>`) first, then CONFIG_PIGEONHUB_WIFI_SSID/PASSWORD.
 * Reconnects forever with a capped backoff: a hub should come back on its own after an AP reboot.
 */
#include "network.h"

#if CONFIG_PIGEONHUB_NETWORK_WIFI

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/timers.h"
#include "settings.h"

static const char *TAG = "pigeonhub";

#define WIFI_RETRY_MIN_MS 1000   /* first reconnect delay                       */
#define WIFI_RETRY_MAX_MS 30000  /* cap, so a long AP outage costs little power */

static bool s_have_credentials;
static volatile bool s_connected;
static char s_ip[16];
static uint32_t s_retry_ms = WIFI_RETRY_MIN_MS;
static TimerHandle_t s_retry_timer;

static void retry_timer_cb(TimerHandle_t timer)
{
    (void)timer;
    esp_err_t err = esp_wifi_connect();
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "esp_wifi_connect failed: %s", esp_err_to_name(err));
    }
}

static void on_wifi_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)base;
    if (id == WIFI_EVENT_STA_START) {
        if (s_have_credentials) {
            esp_wifi_connect();
        }
    } else if (id == WIFI_EVENT_STA_DISCONNECTED) {
        const wifi_event_sta_disconnected_t *ev = data;
        s_connected = false;
        s_ip[0] = '\0';
        if (!s_have_credentials) {
            return;
        }
        ESP_LOGW(TAG, "Wi-Fi disconnected (reason %u), retrying in %" PRIu32 " ms", ev->reason,
                 s_retry_ms);
        xTimerChangePeriod(s_retry_timer, pdMS_TO_TICKS(s_retry_ms), 0);
        xTimerStart(s_retry_timer, 0);
        s_retry_ms = s_retry_ms * 2 > WIFI_RETRY_MAX_MS ? WIFI_RETRY_MAX_MS : s_retry_ms * 2;
    }
}

static void on_ip_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)base;
    (void)id;
    const ip_event_got_ip_t *ev = data;
    snprintf(s_ip, sizeof(s_ip), IPSTR, IP2STR(&ev->ip_info.ip));
    s_retry_ms = WIFI_RETRY_MIN_MS;
    /* Tests and users harvest the address from this exact line. */
    ESP_LOGI(TAG, "IPv4 address: %s", s_ip);
    s_connected = true;
}

static esp_err_t apply_credentials(const char *ssid, const char *password)
{
    wifi_config_t cfg = { 0 };
    strlcpy((char *)cfg.sta.ssid, ssid, sizeof(cfg.sta.ssid));
    strlcpy((char *)cfg.sta.password, password, sizeof(cfg.sta.password));
    /* An open network needs the threshold lowered; otherwise accept WPA2 or better. */
    cfg.sta.threshold.authmode = password[0] ? WIFI_AUTH_WPA2_PSK : WIFI_AUTH_OPEN;
    esp_err_t err = esp_wifi_set_config(WIFI_IF_STA, &cfg);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_wifi_set_config failed: %s", esp_err_to_name(err));
        return err;
    }
    s_have_credentials = true;
    ESP_LOGI(TAG, "Wi-Fi: connecting to \"%s\"", ssid);
    return ESP_OK;
}

esp_err_t network_start(void)
{
    char ssid[33];
    char password[65];
    esp_err_t err;

    esp_netif_create_default_wifi_sta();
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    if ((err = esp_wifi_init(&init)) != ESP_OK) {
        ESP_LOGE(TAG, "esp_wifi_init failed: %s", esp_err_to_name(err));
        return err;
    }
    s_retry_timer = xTimerCreate("wifi_retry", pdMS_TO_TICKS(WIFI_RETRY_MIN_MS), pdFALSE, NULL,
                                 retry_timer_cb);
    if (s_retry_timer == NULL) {
        return ESP_ERR_NO_MEM;
    }
    ESP_ERROR_CHECK(esp_event_handler_instance_register(WIFI_EVENT, ESP_EVENT_ANY_ID, on_wifi_event,
                                                        NULL, NULL));
    ESP_ERROR_CHECK(esp_event_handler_instance_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_ip_event,
                                                        NULL, NULL));
    if ((err = esp_wifi_set_mode(WIFI_MODE_STA)) != ESP_OK) {
        ESP_LOGE(TAG, "esp_wifi_set_mode failed: %s", esp_err_to_name(err));
        return err;
    }
    /* Power save delays frames by up to a beacon interval; a hub relays signaling, keep it awake. */
    esp_wifi_set_ps(WIFI_PS_NONE);

    settings_get_str(SETTINGS_KEY_WIFI_PASS, CONFIG_PIGEONHUB_WIFI_PASSWORD, password,
                     sizeof(password));
    if (settings_get_str(SETTINGS_KEY_WIFI_SSID, CONFIG_PIGEONHUB_WIFI_SSID, ssid, sizeof(ssid))) {
        if ((err = apply_credentials(ssid, password)) != ESP_OK) {
            return err;
        }
    } else {
        ESP_LOGW(TAG, "Wi-Fi credentials not set: type `wifi <ssid> <password>` on the serial "
                      "console (115200 baud), or set CONFIG_PIGEONHUB_WIFI_SSID in menuconfig");
    }
    if ((err = esp_wifi_start()) != ESP_OK) {
        ESP_LOGE(TAG, "esp_wifi_start failed: %s", esp_err_to_name(err));
    }
    return err;
}

esp_err_t network_set_wifi_credentials(const char *ssid, const char *password)
{
    esp_err_t err;
    if (ssid[0] == '\0' || strlen(ssid) > 32 || strlen(password) > 63) {
        return ESP_ERR_INVALID_ARG;
    }
    if ((err = settings_set_str(SETTINGS_KEY_WIFI_SSID, ssid)) != ESP_OK ||
        (err = settings_set_str(SETTINGS_KEY_WIFI_PASS, password)) != ESP_OK) {
        return err;
    }
    /* Drop the current association first: set_config on a connected station does not reconnect. */
    bool had = s_have_credentials;
    s_have_credentials = false;
    if (had) {
        esp_wifi_disconnect();
    }
    if ((err = apply_credentials(ssid, password)) != ESP_OK) {
        return err;
    }
    s_retry_ms = WIFI_RETRY_MIN_MS;
    return esp_wifi_connect();
}

bool network_is_connected(void)
{
    return s_connected;
}

const char *network_ip_string(void)
{
    return s_ip;
}

#endif /* CONFIG_PIGEONHUB_NETWORK_WIFI */
