/*
 * mdns_advert.c — mDNS host name and `_pigeonhub._tcp` service with ESP-IDF's mdns component
 * (espressif/mdns from esp-protocols, main/idf_component.yml).
 *
 * Started from the first "got IP" event, on the default event loop's task: mdns_init() enables
 * the interfaces that already have an address, and from then on the component's own handlers
 * follow the network (Wi-Fi reconnects, DHCP renewals). The names and TXT keys are the PC hub's
 * (src/pigeonhub/mdns.py); test/firmware/test_config_consistency.py keeps them in step.
 */
#include "mdns_advert.h"
#include "sdkconfig.h"

#if CONFIG_PIGEONHUB_MDNS

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "mdns.h"
#include "pigeonhub_abi.h"

static const char *TAG = "pigeonhub";

#define MDNS_SERVICE "_pigeonhub"
#define MDNS_PROTO "_tcp"
#define MDNS_NAME_PREFIX "pigeonhub-"
#define MDNS_WS_PATH "/"        /* the hub accepts WebSockets on any path; clients use "/"   */
#define MDNS_HUB_ID_LEN 40
#define MDNS_HOSTNAME_MAX 63    /* one DNS label                                             */

static char s_hub_id[MDNS_HUB_ID_LEN + 1];
static char s_hostname[MDNS_HOSTNAME_MAX + 1];
static uint16_t s_port;
static bool s_started;

/* A DNS label: letters, digits and inner hyphens, 1..63 characters. */
static bool valid_hostname(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > MDNS_HOSTNAME_MAX || name[0] == '-' || name[len - 1] == '-') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!isalnum((unsigned char)name[i]) && name[i] != '-') {
            return false;
        }
    }
    return true;
}

static esp_err_t advertise(void)
{
    char abi[12];
    char port[8];
    snprintf(abi, sizeof(abi), "%d", PH_ABI_VERSION);
    snprintf(port, sizeof(port), "%u", (unsigned)s_port);
    mdns_txt_item_t txt[] = {
        { "hubid", s_hub_id },
        { "abi", abi },
        { "port", port },
        { "path", MDNS_WS_PATH },
    };
    esp_err_t err = mdns_init();
    if (err != ESP_OK) {
        return err;
    }
    /* The instance name is the host name, so pigeonhub-ab12 names both (src/pigeonhub/mdns.py). */
    if ((err = mdns_hostname_set(s_hostname)) != ESP_OK ||
        (err = mdns_service_add(s_hostname, MDNS_SERVICE, MDNS_PROTO, s_port, txt,
                                sizeof(txt) / sizeof(txt[0]))) != ESP_OK) {
        goto cleanup;
    }
    return ESP_OK;

cleanup:
    mdns_free();
    return err;
}

/* Default event loop task: the first IPv4 address of the hub's interface. */
static void on_got_ip(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)base;
    (void)id;
    (void)data;
    if (s_started) {
        return;
    }
    s_started = true;
    esp_err_t err = advertise();
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "mDNS: not advertised (%s): find the hub by its IPv4 address",
                 esp_err_to_name(err));
        return;
    }
    /* Tests and users key on this line. */
    ESP_LOGI(TAG, "mDNS: %s.local, %s.%s on port %u", s_hostname, MDNS_SERVICE, MDNS_PROTO,
             (unsigned)s_port);
}

esp_err_t mdns_advert_start(const char *hub_id, uint16_t port)
{
    esp_err_t err;
    if (hub_id == NULL || strlen(hub_id) != MDNS_HUB_ID_LEN) {
        ESP_LOGW(TAG, "mDNS: not advertised: no hub module is running (no hub id)");
        return ESP_ERR_INVALID_STATE;
    }
    strlcpy(s_hub_id, hub_id, sizeof(s_hub_id));
    s_port = port;
    if (valid_hostname(CONFIG_PIGEONHUB_MDNS_HOSTNAME)) {
        strlcpy(s_hostname, CONFIG_PIGEONHUB_MDNS_HOSTNAME, sizeof(s_hostname));
    } else {
        if (CONFIG_PIGEONHUB_MDNS_HOSTNAME[0] != '\0') {
            ESP_LOGW(TAG, "mDNS: CONFIG_PIGEONHUB_MDNS_HOSTNAME \"%s\" is not a host name (letters, "
                          "digits and inner hyphens, at most %d): using the default",
                     CONFIG_PIGEONHUB_MDNS_HOSTNAME, MDNS_HOSTNAME_MAX);
        }
        snprintf(s_hostname, sizeof(s_hostname), MDNS_NAME_PREFIX "%.4s", s_hub_id);
    }
    /* Wi-Fi on boards, Ethernet under emulation: whichever interface gets an address first. */
    if ((err = esp_event_handler_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_got_ip, NULL)) != ESP_OK ||
        (err = esp_event_handler_register(IP_EVENT, IP_EVENT_ETH_GOT_IP, on_got_ip, NULL)) != ESP_OK) {
        ESP_LOGW(TAG, "mDNS: not advertised: %s", esp_err_to_name(err));
    }
    return err;
}

#endif /* CONFIG_PIGEONHUB_MDNS */
