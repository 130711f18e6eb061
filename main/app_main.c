/*
 * app_main.c — PigeonHub-WASM firmware entry: NVS, network stack, Wi-Fi, the hub task (which
 * starts the HTTP/WebSocket server and loads hub.wasm), mDNS, the serial console.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "console.h"
#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_netif_sntp.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "freertos/semphr.h"
#include "http_endpoints.h"
#include "hub_task.h"
#include "mdns_advert.h"
#include "module_store.h"
#include "nvs_flash.h"
#include "network.h"

static const char *TAG = "pigeonhub";


static esp_err_t nvs_init(void)
{
    esp_err_t err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        /* A truncated or newer-format NVS partition: start over rather than refuse to boot. */
        ESP_LOGW(TAG, "NVS partition unusable (%s): erasing it", esp_err_to_name(err));
        ESP_ERROR_CHECK(nvs_flash_erase());
        err = nvs_flash_init();
    }
    return err;
}

#if CONFIG_LIBC_PICOLIBC
/* Picolibc's stdio (ESP-IDF's CONFIG_LIBC_PICOLIBC, used by the esp32-qemu kit) takes no lock on
 * stdout, so two tasks logging at once mix their characters mid-line ("I (114I78) pigeonhub: IPv4 (
 * address") and the lines tests and users look for are lost. Each ESP_LOGx line is one vprintf call
 * (log v1): a mutex around it keeps lines whole, as newlib's stdout lock does. */
static SemaphoreHandle_t s_log_lock;

static int locked_vprintf(const char *fmt, va_list args)
{
    bool locked = !xPortInIsrContext() && xTaskGetSchedulerState() == taskSCHEDULER_RUNNING &&
                  xSemaphoreTake(s_log_lock, pdMS_TO_TICKS(100)) == pdTRUE;
    int n = vprintf(fmt, args);
    if (locked) {
        xSemaphoreGive(s_log_lock);
    }
    return n;
}
#endif

void app_main(void)
{
#if CONFIG_LIBC_PICOLIBC
    if ((s_log_lock = xSemaphoreCreateMutex()) != NULL) {
        esp_log_set_vprintf(locked_vprintf);
    }
#endif
    ESP_ERROR_CHECK(nvs_init());
    ESP_ERROR_CHECK(esp_netif_init());
    ESP_ERROR_CHECK(esp_event_loop_create_default());

    if (module_store_init() != ESP_OK) {
        ESP_LOGW(TAG, "no module slots: only the embedded module can run, uploads are refused");
    }
#if CONFIG_PIGEONHUB_CONSOLE
    /* Before the network and the hub: creating the REPL probes the terminal, which held the
     * emulated board still for seconds (no peer may be connecting then), and its task prints its
     * banner with printf, outside the log lock (picolibc above), which cut the IPv4 address line
     * when the two came together. */
    console_start();
#endif
    /* Returns once the boot module is loaded: its heap is measured with nothing else allocating. */
    ESP_ERROR_CHECK(hub_task_start());
#if CONFIG_PIGEONHUB_MDNS
    /* Before the network: it starts on the first address, which cannot come earlier. */
    mdns_advert_start(hub_task_hub_id(), CONFIG_PIGEONHUB_PORT);
#endif
    ESP_ERROR_CHECK(network_start());
    if (strlen(CONFIG_PIGEONHUB_SNTP_SERVER) > 0) {
        esp_sntp_config_t sntp = ESP_NETIF_SNTP_DEFAULT_CONFIG(CONFIG_PIGEONHUB_SNTP_SERVER);
        esp_netif_sntp_init(&sntp); /* syncs in the background once Wi-Fi has an address */
    }
    if (http_server_start(CONFIG_PIGEONHUB_PORT, hub_task_sink()) != ESP_OK) {
        ESP_LOGE(TAG, "the hub is unreachable: its HTTP/WebSocket server did not start");
    }
}
