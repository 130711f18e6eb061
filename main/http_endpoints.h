/*
 * http_endpoints.h — the hub's HTTP server: plain HTTP (GET /health, GET /stats, POST /module)
 * and the WebSocket handler (ws_transport.h), all registered in one place.
 */
#ifndef PH_HTTP_ENDPOINTS_H
#define PH_HTTP_ENDPOINTS_H

#include <stdint.h>
#include "esp_err.h"
#include "esp_http_server.h"
#include "hub_events.h"

#define HTTP_UPLOAD_CHUNK 2048 /* bytes per httpd_req_recv() while writing a module to flash */

/* Start the server on `port`; WebSocket events go to `sink` (kept). */
esp_err_t http_server_start(uint16_t port, const hub_event_sink *sink);

#endif /* PH_HTTP_ENDPOINTS_H */
