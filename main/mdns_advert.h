/*
 * mdns_advert.h — the hub on the LAN by name: mDNS host `pigeonhub-<4 hex of the hub id>.local`
 * (or CONFIG_PIGEONHUB_MDNS_HOSTNAME) and the DNS-SD service `_pigeonhub._tcp`, whose TXT record
 * carries the hub id, the ABI version, the port and the WebSocket path (docs/PROTOCOL.md §10.1).
 * `pigeonhub discover` lists it; `pigeonhub upload --host pigeonhub-ab12` finds it.
 */
#ifndef PH_MDNS_ADVERT_H
#define PH_MDNS_ADVERT_H

#include <stdint.h>
#include "esp_err.h"

/* Arrange for the advertisement to start once the network has an IPv4 address (the ESP-IDF mdns
 * component follows later address changes itself). hub_id: 40 hex characters, copied. */
esp_err_t mdns_advert_start(const char *hub_id, uint16_t port);

#endif /* PH_MDNS_ADVERT_H */
