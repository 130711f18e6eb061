/*
 * network.h — the hub's network interface: Wi-Fi station (wifi.c) or, under emulation, the
 * OpenCores Ethernet MAC (ethernet.c); Kconfig PIGEONHUB_NETWORK picks one.
 *
 * Both log the address as "IPv4 address: a.b.c.d" (tests and users harvest it from that line).
 */
#ifndef PH_NETWORK_H
#define PH_NETWORK_H

#include <stdbool.h>
#include "esp_err.h"
#include "sdkconfig.h"

esp_err_t network_start(void);
bool network_is_connected(void);
const char *network_ip_string(void);
/* Wi-Fi only: store credentials in NVS and reconnect. ESP_ERR_NOT_SUPPORTED on Ethernet. */
esp_err_t network_set_wifi_credentials(const char *ssid, const char *password);

#endif /* PH_NETWORK_H */
