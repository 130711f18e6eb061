/*
 * wifi.h — station mode with credentials from NVS (console `wifi`) or Kconfig.
 */
#ifndef PH_WIFI_H
#define PH_WIFI_H

#include <stdbool.h>
#include "esp_err.h"

/* Start the station. Without credentials it logs how to set them and stays idle. */
esp_err_t wifi_start(void);
/* Store new credentials in NVS and (re)connect with them. password may be "" (open network). */
esp_err_t wifi_set_credentials(const char *ssid, const char *password);
bool wifi_is_connected(void);
/* The station's IPv4 address as text, or "" while not connected. */
const char *wifi_ip_string(void);

#endif /* PH_WIFI_H */
