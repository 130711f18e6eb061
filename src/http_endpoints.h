/*
 * http_endpoints.h — plain HTTP on the hub port: GET /health, GET /stats, POST /module.
 */
#ifndef PH_HTTP_ENDPOINTS_H
#define PH_HTTP_ENDPOINTS_H

#include "esp_err.h"
#include "esp_http_server.h"

#define HTTP_UPLOAD_CHUNK 2048 /* bytes per httpd_req_recv() while writing a module to flash */

esp_err_t http_endpoints_register(httpd_handle_t server);
/* A GET that is not a WebSocket handshake (called by the wildcard WebSocket handler). */
esp_err_t http_endpoints_handle_get(httpd_req_t *req);

#endif /* PH_HTTP_ENDPOINTS_H */
