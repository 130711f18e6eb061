/*
 * ws_transport.h — esp_http_server WebSocket layer under the hub task.
 *
 * Receive side (httpd task): frames are copied into heap buffers and posted to the hub task.
 * Send side (hub task): frames are copied into one outgoing FIFO; after each event the hub task
 * hands it over (ws_transport_flush), and a single httpd_queue_work() item drains it on the httpd
 * task with httpd_ws_send_frame_async(), so frames never interleave, the httpd control socket never
 * holds more than one pending work message, and a module call pays for none.
 */
#ifndef PH_WS_TRANSPORT_H
#define PH_WS_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "esp_err.h"
#include "esp_http_server.h"
#include "freertos/FreeRTOS.h"
#include "hub_events.h"
#include "sdkconfig.h"

/* Sockets the HTTP server may hold open: every peer, every incoming hub link, plus spare ones so
 * /health, an upload or a refused connection still gets an answer when the hub is full.
 * httpd_start() needs CONFIG_LWIP_MAX_SOCKETS >= this + 3 (its own internal sockets). */
#define WS_MAX_OPEN_SOCKETS                                                                        \
    (CONFIG_PIGEONHUB_MAX_PEERS + CONFIG_PIGEONHUB_MAX_HUB_LINKS + CONFIG_PIGEONHUB_SPARE_SOCKETS)
#define WS_HTTPD_INTERNAL_SOCKETS 3

#if CONFIG_LWIP_MAX_SOCKETS < WS_MAX_OPEN_SOCKETS + WS_HTTPD_INTERNAL_SOCKETS
#error "CONFIG_LWIP_MAX_SOCKETS is too small for the hub: raise it in sdkconfig.defaults (ESP-IDF >= 5.4 allows up to 253)"
#endif

/* The server this transport serves on (started by http_server_start) and where what arrives goes
 * (both kept); sink->sent is called on the httpd task once a frame handed to ws_transport_send()
 * was written or dropped. */
esp_err_t ws_transport_attach(httpd_handle_t server, const hub_event_sink *sink, bool tls);
/* The WebSocket requests of the wildcard handler: the handshake GET and every frame after it. */
esp_err_t ws_transport_handle(httpd_req_t *req);
/* New WebSocket connections are refused with 1001 while not accepting (module stopped). */
void ws_transport_set_accepting(bool accepting);
/* Largest data frame (after reassembly) delivered to the hub; larger ones are closed with 1009. */
void ws_transport_set_frame_limit(size_t limit);

/* Hub task: queue a text frame / a ping / a close (code + reason) for session `session` on `fd`.
 * Data is copied. send returns 0, or -1 when out of memory (nothing queued, no on_sent). They
 * leave at the next ws_transport_flush(). */
int ws_transport_send(int fd, uint32_t session, int32_t conn, const uint8_t *data, size_t len);
int ws_transport_ping(int fd, uint32_t session);
void ws_transport_close(int fd, uint32_t session, uint16_t code, const char *reason, size_t len);
/* Hub task, before it takes the next event: wait (at most `wait`) until the frames queued for
 * the httpd task are under WS_OUT_HIGH_WATER bytes. What the hub has written but the sockets
 * have not taken is heap; without this a burst (the 20th peer's announce, an offer storm) holds
 * tens of KB at once. Returns false when it gave up waiting. */
#define WS_OUT_HIGH_WATER 8192
bool ws_transport_wait_writable(TickType_t wait);
/* The most bytes ever queued for the httpd task at once (a high-water mark for /stats). */
size_t ws_transport_out_peak(void);
/* Hub task, after each event it handled: the frames queued since go to the httpd task. */
void ws_transport_flush(void);
/* Hub task, every tick: flush, and retry a drain request that httpd_queue_work() refused or lost. */
void ws_transport_kick(void);

#endif /* PH_WS_TRANSPORT_H */
