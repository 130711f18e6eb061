/*
 * ethernet.c — the OpenCores Ethernet MAC that Espressif's QEMU emulates, with DHCP.
 * Selected by Kconfig PIGEONHUB_NETWORK_ETHERNET (sdkconfig.emulator); boards use wifi.c.
 */
#include "network.h"

#if CONFIG_PIGEONHUB_NETWORK_ETHERNET

#include <stdint.h>
#include <stdio.h>
#include "esp_eth.h"
#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"

static const char *TAG = "pigeonhub";

#define ETH_AUTONEGO_TIMEOUT_MS 100 /* QEMU's PHY answers at once */

static volatile bool s_connected;
static char s_ip[16];

static void on_got_ip(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)base;
    (void)id;
    const ip_event_got_ip_t *ev = data;
    snprintf(s_ip, sizeof(s_ip), IPSTR, IP2STR(&ev->ip_info.ip));
    ESP_LOGI(TAG, "IPv4 address: %s", s_ip);
    s_connected = true;
}

/* QEMU's OpenCores MAC forgets its interrupt state on a reset without lowering its interrupt line.
 * A reset that lands between a frame's arrival and its interrupt handler leaves the line high
 * with nothing pending, and once the driver enables the interrupt, CPU 0 runs the handler
 * forever: the board stops after "Calling app_main()" at this and every later reset. One frame
 * sent in loopback (so nothing leaves the board) with its transmit interrupt unmasked, then
 * acknowledged, moves the line up and down again, which leaves it low. The registers are the
 * emulator's (hw/net/opencores_eth.c) at the addresses ESP-IDF's openeth driver uses. */
#if CONFIG_IDF_TARGET_ESP32
#define OPENETH_BASE 0x3ff69000u
#else
#define OPENETH_BASE 0x600cd000u
#endif
#define OPENETH_REG(offset) (*(volatile uint32_t *)(OPENETH_BASE + (offset)))
#define OPENETH_MODER OPENETH_REG(0x00)
#define OPENETH_INT_SOURCE OPENETH_REG(0x04)
#define OPENETH_INT_MASK OPENETH_REG(0x08)
#define OPENETH_TX_DESC0_FLAGS OPENETH_REG(0x400)
#define OPENETH_TX_DESC0_BUFFER OPENETH_REG(0x404)
#define MODER_DEFAULT 0xa000u /* what the driver's sanity check expects to find */
#define MODER_RESET (1u << 11)
#define MODER_LOOPBACK (1u << 7)
#define MODER_TX_ENABLE (1u << 1)
#define INT_TX_DONE (1u << 0)
#define TX_READY (1u << 15)
#define TX_IRQ (1u << 14)
#define TX_WRAP (1u << 13)
#define LOOPBACK_FRAME_LEN 64u

static void openeth_lower_stale_interrupt(void)
{
    static uint8_t frame[LOOPBACK_FRAME_LEN];

    OPENETH_MODER = MODER_DEFAULT | MODER_RESET;
    OPENETH_MODER = MODER_DEFAULT;
    OPENETH_INT_MASK = INT_TX_DONE;
    OPENETH_TX_DESC0_BUFFER = (uint32_t)(uintptr_t)frame;
    OPENETH_TX_DESC0_FLAGS = (LOOPBACK_FRAME_LEN << 16) | TX_READY | TX_IRQ | TX_WRAP;
    OPENETH_MODER = MODER_DEFAULT | MODER_LOOPBACK | MODER_TX_ENABLE; /* sends it: line up */
    OPENETH_INT_SOURCE = INT_TX_DONE;                                 /* acknowledged: down */
    OPENETH_INT_MASK = 0;
    OPENETH_MODER = MODER_DEFAULT | MODER_RESET;
    OPENETH_MODER = MODER_DEFAULT;
}

esp_err_t network_start(void)
{
    openeth_lower_stale_interrupt(); /* before the driver allocates the interrupt */
    esp_netif_config_t netif_cfg = ESP_NETIF_DEFAULT_ETH();
    esp_netif_t *netif = esp_netif_new(&netif_cfg);
    eth_mac_config_t mac_config = ETH_MAC_DEFAULT_CONFIG();
    eth_phy_config_t phy_config = ETH_PHY_DEFAULT_CONFIG();
    phy_config.autonego_timeout_ms = ETH_AUTONEGO_TIMEOUT_MS;
    esp_eth_mac_t *mac = esp_eth_mac_new_openeth(&mac_config);
    esp_eth_phy_t *phy = esp_eth_phy_new_dp83848(&phy_config);
    esp_eth_config_t config = ETH_DEFAULT_CONFIG(mac, phy);
    esp_eth_handle_t eth = NULL;
    esp_err_t err;

    if (netif == NULL || mac == NULL || phy == NULL) {
        ESP_LOGE(TAG, "Ethernet: out of memory creating the interface");
        return ESP_ERR_NO_MEM;
    }
    if ((err = esp_eth_driver_install(&config, &eth)) != ESP_OK ||
        (err = esp_netif_attach(netif, esp_eth_new_netif_glue(eth))) != ESP_OK ||
        (err = esp_event_handler_register(IP_EVENT, IP_EVENT_ETH_GOT_IP, on_got_ip, NULL)) != ESP_OK ||
        (err = esp_eth_start(eth)) != ESP_OK) {
        ESP_LOGE(TAG, "Ethernet: start failed: %s", esp_err_to_name(err));
        return err;
    }
    ESP_LOGI(TAG, "Ethernet (OpenCores MAC) started, waiting for DHCP");
    return ESP_OK;
}

bool network_is_connected(void)
{
    return s_connected;
}

const char *network_ip_string(void)
{
    return s_ip;
}

esp_err_t network_set_wifi_credentials(const char *ssid, const char *password)
{
    (void)ssid;
    (void)password;
    return ESP_ERR_NOT_SUPPORTED;
}

#endif /* CONFIG_PIGEONHUB_NETWORK_ETHERNET */
