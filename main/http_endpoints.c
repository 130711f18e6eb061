/*
 * http_endpoints.c — the hub's HTTP server: every URI handler in one table, registered in one
 * place (http_server_start), and the plain HTTP ones: GET /health, GET /stats, POST /module.
 * GET / from a browser is the status page (status_page.c). WebSocket requests on the same
 * wildcard GET handler go to ws_transport.c. With a TLS certificate and key provisioned
 * (tls_identity.c) the same server runs under esp_https_server: wss:// and https:// on the same port.
 *
 * POST /module
 *   headers: Authorization: Bearer <token>   (CONFIG_PIGEONHUB_UPLOAD_TOKEN or console `token`)
 *            X-Module-SHA256: <64 hex>       (SHA-256 of the body)
 *            Content-Length: <bytes>         (at most one module slot)
 *   body:    the .wasm file
 *   The module is written to the slot that is not running, hashed while streaming, checked by the
 *   bridge core on the hub task (first its signature when a module key is set: module_sig.c) and
 *   only then swapped in. Every refusal answers a JSON body {"error": "<specific reason>"} and
 *   leaves the running module untouched. One request at a time (the one httpd task), a body has
 *   CONFIG_PIGEONHUB_UPLOAD_DEADLINE_S to arrive whole.
 */
#include "http_endpoints.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "esp_heap_caps.h" /* MALLOC_CAP_* in HTTPD_DEFAULT_CONFIG */
#include "esp_https_server.h"
#include "esp_log.h"
#include "esp_timer.h"
#include "hub_task.h"
#include "module_store.h"
#include "ph_bridge.h"
#include "ph_json_string.h"
#include "ph_upload_check.h"
#include "settings.h"
#include "status_page.h"
#include "tls_identity.h"
#include "ws_transport.h"

static const char *TAG = "pigeonhub";

#define JSON_BUF 4096          /* /health and upload bodies, /stats without its peer list */
/* /stats: the figures, and the peer list, which the bridge bounds per accepted connection. */
#define STATS_BUF (JSON_BUF + 3 + WS_MAX_OPEN_SOCKETS * PH_BRIDGE_PEER_STATS_BYTES)
#define UPLOAD_RECV_RETRIES 3  /* httpd_req_recv timeouts tolerated per chunk          */
/* An ECDSA handshake runs mbedtls on the httpd task: esp_https_server's own default stack. */
#define TLS_HTTPD_STACK 10240

static esp_err_t send_json(httpd_req_t *req, const char *status, const char *body)
{
    httpd_resp_set_status(req, status);
    httpd_resp_set_type(req, "application/json");
    httpd_resp_set_hdr(req, "Access-Control-Allow-Origin", "*");
    return httpd_resp_sendstr(req, body);
}

/* {"error":"<reason>"} with the reason JSON-escaped. */
static esp_err_t send_error(httpd_req_t *req, const char *status, const char *reason)
{
    static const char head[] = "{\"error\":\"", tail[] = "\"}";
    char body[320];
    size_t n = sizeof(head) - 1;
    memcpy(body, head, n);
    n += ph_json_escape(body + n, sizeof(body) - n - sizeof(tail), reason, strlen(reason));
    memcpy(body + n, tail, sizeof(tail));
    ESP_LOGW(TAG, "%s %s: %s", req->uri, status, reason);
    return send_json(req, status, body);
}

/* The reference answers /health only on that exact request URI: with a query it is the banner. */
static bool path_is(const char *uri, const char *path)
{
    return strcmp(uri, path) == 0;
}

static esp_err_t handle_get(httpd_req_t *req)
{
    char *buf;
    int status;
    if (status_page_wanted(req)) {
        return status_page_send(req);
    }
    if (!path_is(req->uri, "/health") && !path_is(req->uri, "/stats")) {
        /* Same answer as the reference server for any other path. */
        httpd_resp_set_type(req, "text/plain");
        return httpd_resp_sendstr(req, "PeerPigeon WebSocket Signaling Server");
    }
    bool health = path_is(req->uri, "/health");
    size_t cap = health ? JSON_BUF : STATS_BUF;
    if ((buf = malloc(cap)) == NULL) {
        return send_error(req, "503 Service Unavailable", "out of memory");
    }
    status = health ? hub_health_json(buf, cap) : hub_stats_json(buf, cap);
    esp_err_t err = status == 200 ? send_json(req, "200 OK", buf)
                                  : send_error(req, "503 Service Unavailable", buf);
    free(buf);
    return err;
}

static esp_err_t options_handler(httpd_req_t *req)
{
    httpd_resp_set_hdr(req, "Access-Control-Allow-Origin", "*");
    httpd_resp_set_hdr(req, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    httpd_resp_set_hdr(req, "Access-Control-Allow-Headers",
                       "Content-Type, Authorization, X-Module-SHA256");
    return httpd_resp_send(req, NULL, 0);
}

static esp_err_t receive_body(httpd_req_t *req, ph_upload *up, char *err, size_t cap)
{
    static uint8_t chunk[HTTP_UPLOAD_CHUNK]; /* the httpd task handles one request at a time */
    size_t remaining = req->content_len;
    int timeouts = 0;
    /* The one httpd task serves every socket: an upload that trickles in (a byte before each
     * receive timeout) would otherwise hold the hub's HTTP side indefinitely. */
    int64_t deadline = esp_timer_get_time() + CONFIG_PIGEONHUB_UPLOAD_DEADLINE_S * 1000000LL;
    while (remaining > 0) {
        if (esp_timer_get_time() > deadline) {
            snprintf(err, cap, "upload cut off: %u of %u bytes arrived in %d s",
                     (unsigned)(req->content_len - remaining), (unsigned)req->content_len,
                     CONFIG_PIGEONHUB_UPLOAD_DEADLINE_S);
            return ESP_FAIL;
        }
        int n = httpd_req_recv(req, (char *)chunk, remaining < sizeof(chunk) ? remaining
                                                                             : sizeof(chunk));
        if (n == HTTPD_SOCK_ERR_TIMEOUT && ++timeouts <= UPLOAD_RECV_RETRIES) {
            continue;
        }
        if (n <= 0) {
            snprintf(err, cap, "body ended after %u of %u bytes",
                     (unsigned)(req->content_len - remaining), (unsigned)req->content_len);
            return ESP_FAIL;
        }
        esp_err_t e = module_store_upload_write(up, chunk, (size_t)n, err, cap);
        if (e != ESP_OK) {
            return e;
        }
        remaining -= (size_t)n;
        timeouts = 0;
    }
    return ESP_OK;
}

static esp_err_t module_upload_handler(httpd_req_t *req)
{
    char token[PH_UPLOAD_TOKEN_MAX + 1];
    char authorization[PH_UPLOAD_TOKEN_MAX + 8 + 1];   /* "Bearer " + token: longer is refused */
    char sha_hex[72];
    char length[24];
    uint8_t sha[32];
    char err[200];
    ph_upload up = { 0 };

    ph_upload_request rq = {
        .token_hint = "console: token <secret>, or CONFIG_PIGEONHUB_UPLOAD_TOKEN",
        .slot_bytes = module_store_slot_size(),
    };
    if (settings_get_str(SETTINGS_KEY_UPLOAD_TOKEN, CONFIG_PIGEONHUB_UPLOAD_TOKEN, token,
                         sizeof(token))) {
        rq.token = token;
    }
    if (httpd_req_get_hdr_value_str(req, "Authorization", authorization, sizeof(authorization)) ==
        ESP_OK) {
        rq.authorization = authorization;
    }
    if (httpd_req_get_hdr_value_str(req, "X-Module-SHA256", sha_hex, sizeof(sha_hex)) == ESP_OK) {
        rq.sha256_hex = sha_hex;
    }
    snprintf(length, sizeof(length), "%u", (unsigned)req->content_len);   /* httpd parsed it */
    rq.content_length = length;
    size_t module_len = 0;
    switch (ph_upload_check(&rq, &module_len, sha, err, sizeof(err))) {
    case 0:
        break;
    case 403:
        return send_error(req, "403 Forbidden", err);
    case 411:
        return send_error(req, "411 Length Required", err);
    case 413:
        send_error(req, "413 Payload Too Large", err);
        return ESP_FAIL; /* do not read the oversized body: close the connection */
    default:
        return send_error(req, "400 Bad Request", err);
    }
    if (module_store_upload_begin(&up, module_len, err, sizeof(err)) != ESP_OK) {
        return send_error(req, "507 Insufficient Storage", err);
    }
    if (receive_body(req, &up, err, sizeof(err)) != ESP_OK) {
        module_store_upload_abort(&up);
        send_error(req, "400 Bad Request", err);
        return ESP_FAIL;
    }
    if (module_store_upload_finish(&up, sha, err, sizeof(err)) != ESP_OK) {
        module_store_upload_abort(&up);
        return send_error(req, "400 Bad Request", err);
    }
    ESP_LOGI(TAG, "module upload: %u bytes written to slot %d, checking it", (unsigned)up.written,
             up.slot);
    char *body = malloc(JSON_BUF);
    if (body == NULL) {
        module_store_upload_abort(&up);
        return send_error(req, "503 Service Unavailable", "out of memory");
    }
    int status = hub_swap_to_slot(up.slot, body, JSON_BUF);
    esp_err_t e;
    if (status == 200) {
        e = send_json(req, "200 OK", body);
    } else if (status == 422 || status == 500) {
        /* Rejected or not swappable: the bytes must not linger in the slot. */
        module_store_upload_abort(&up);
        e = send_error(req, status == 422 ? "422 Unprocessable Entity" : "500 Internal Server Error",
                       body);
    } else {
        /* The hub task did not answer: it may still switch to this slot, so keep the bytes. */
        e = send_error(req, "503 Service Unavailable", body);
    }
    free(body);
    return e;
}

/* Any GET: a WebSocket handshake or frame goes to the transport, a plain request is answered here
 * (one wildcard handler, as PeerPigeon clients connect on any path). */
static esp_err_t get_or_websocket(httpd_req_t *req)
{
    if (req->method == HTTP_GET &&
        httpd_ws_get_fd_info(req->handle, httpd_req_to_sockfd(req)) != HTTPD_WS_CLIENT_WEBSOCKET) {
        return handle_get(req); /* plain GET /health, /stats, ... */
    }
    return ws_transport_handle(req);
}

static const httpd_uri_t HANDLERS[] = {
    { .uri = "/module", .method = HTTP_POST, .handler = module_upload_handler },
    { .uri = "/*", .method = HTTP_OPTIONS, .handler = options_handler },
    { .uri = "/*", .method = HTTP_GET, .handler = get_or_websocket, .is_websocket = true,
      .handle_ws_control_frames = true /* pongs must reach the module (on_pong) */ },
};

/* httpd_start, or httpd_ssl_start when a TLS identity is provisioned (*tls set then). */
static esp_err_t start_server(httpd_config_t *config, httpd_handle_t *server, bool *tls)
{
    tls_identity id;
    char why[160];
    *tls = false;
    esp_err_t err = tls_identity_load(&id, why, sizeof(why));
    if (err == ESP_ERR_INVALID_ARG) {
        ESP_LOGW(TAG, "stored TLS certificate unusable (%s): serving plain ws://; console `tls` to "
                      "replace it", why);
    }
    if (err != ESP_OK) {
        return httpd_start(server, config);
    }
    httpd_ssl_config_t ssl = HTTPD_SSL_CONFIG_DEFAULT();
    ssl.httpd = *config;
    if (ssl.httpd.stack_size < TLS_HTTPD_STACK) {
        ssl.httpd.stack_size = TLS_HTTPD_STACK;
    }
    ssl.port_secure = config->server_port;
    ssl.transport_mode = HTTPD_SSL_TRANSPORT_SECURE;
    ssl.servercert = (const uint8_t *)id.cert;   /* esp_https_server keeps its own copies */
    ssl.servercert_len = id.cert_len;
    ssl.prvtkey_pem = (const uint8_t *)id.key;
    ssl.prvtkey_len = id.key_len;
    err = httpd_ssl_start(server, &ssl);
    if (err == ESP_OK) {
        *tls = true;
        ESP_LOGI(TAG, "HTTPS server on port %u (TLS, certificate %s)", config->server_port,
                 id.summary);
    }
    tls_identity_free(&id);
    return err;
}

esp_err_t http_server_start(uint16_t port, const hub_event_sink *sink)
{
    httpd_config_t config = HTTPD_DEFAULT_CONFIG();
    config.server_port = port;
    config.ctrl_port = ESP_HTTPD_DEF_CTRL_PORT;
    config.max_open_sockets = WS_MAX_OPEN_SOCKETS;
    config.max_uri_handlers = sizeof(HANDLERS) / sizeof(HANDLERS[0]);
    config.stack_size = CONFIG_PIGEONHUB_HTTPD_STACK;
    config.uri_match_fn = httpd_uri_match_wildcard;
    /* Idle WebSockets are the module's business (heartbeat ping, PEER_TIMEOUT), not LRU purging. */
    config.lru_purge_enable = false;

    httpd_handle_t server = NULL;
    bool tls = false;
    esp_err_t err = start_server(&config, &server, &tls);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "%s on port %u failed: %s", tls ? "httpd_ssl_start" : "httpd_start", port,
                 esp_err_to_name(err));
        return err;
    }
    err = ws_transport_attach(server, sink, tls);
    for (size_t i = 0; err == ESP_OK && i < sizeof(HANDLERS) / sizeof(HANDLERS[0]); i++) {
        err = httpd_register_uri_handler(server, &HANDLERS[i]);
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "starting the HTTP server failed: %s", esp_err_to_name(err));
        if (tls) {
            httpd_ssl_stop(server);
        } else {
            httpd_stop(server);
        }
        return err;
    }
    ESP_LOGI(TAG, "HTTP server on port %u (%d sockets: %d peers, %d hub links, %d spare)", port,
             WS_MAX_OPEN_SOCKETS, CONFIG_PIGEONHUB_MAX_PEERS, CONFIG_PIGEONHUB_MAX_HUB_LINKS,
             CONFIG_PIGEONHUB_SPARE_SOCKETS);
    return ESP_OK;
}
