/*
 * ws_links.h — outgoing hub links (ABI 2 ws_connect) with ESP-IDF's esp_websocket_client
 * (managed component espressif/esp_websocket_client, see main/idf_component.yml).
 *
 * Threads: the hub task calls ws_links_open/send/ping/close (never blocking on the network);
 * every call that touches an esp_websocket_client handle runs on one "hublinks" worker task,
 * in order, so a handle is never used after it was destroyed. Each client's own task (created by
 * esp_websocket_client_start) delivers its events, which are posted to the hub task queue as
 * HUB_EV_LINK_OPEN / HUB_EV_FRAME / HUB_EV_PONG / HUB_EV_TOO_BIG / HUB_EV_CLOSE with the
 * link's session id (bit 31 set: never equal to an httpd session id).
 * One attempt per ws_links_open: auto-reconnect is disabled, the module re-dials with backoff.
 */
#ifndef PH_WS_LINKS_H
#define PH_WS_LINKS_H

#include <stddef.h>
#include <stdint.h>
#include "esp_err.h"
#include "hub_events.h"

#define WS_LINK_SESSION_BIT 0x80000000u

/* What the links receive goes to `sink` (kept); sink->sent reports a frame queued for a link. */
esp_err_t ws_links_start(const hub_event_sink *sink);
/* Largest message (after reassembly) delivered to the hub; larger ones close the link 1009. */
void ws_links_set_frame_limit(size_t limit);

/* Hub task. Start dialing url (copied) for bridge connection conn; returns the session id, or
 * 0 when it cannot (no memory, bad URL): nothing will be reported for it then. */
uint32_t ws_links_open(int32_t conn, const char *url, size_t len);
/* Queue a text frame (copied): 0, with on_sent reported at once (the link's own byte budget, not the
 * bridge's per-connection outbox, bounds what waits for the far hub), or -1 when that budget is
 * full, out of memory or the link is gone (no on_sent; the module counts the frame dropped). */
int ws_links_send(uint32_t session, int32_t conn, const uint8_t *data, size_t len);
int ws_links_ping(uint32_t session);
/* Close handshake with code/reason (copied), or abort a link still dialing. HUB_EV_CLOSE follows. */
void ws_links_close(uint32_t session, uint16_t code, const char *reason, size_t len);

#endif /* PH_WS_LINKS_H */
