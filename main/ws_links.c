/*
 * ws_links.c — outgoing hub links on esp_websocket_client (ws_links.h).
 *
 * API facts this relies on (esp_websocket_client 1.3+, the managed component for IDF v5; header
 * include/esp_websocket_client.h and esp_websocket_client.c of espressif/esp-protocols):
 *   - esp_websocket_client_close*, _stop and _destroy must not be called from the client's event
 *     handler: they run on the hublinks worker task here;
 *   - sends take the client's internal locks with the given timeout, from any task: they also run
 *     on the worker, so the hub task never waits for the network;
 *   - with disable_auto_reconnect a failed connect or a lost connection ends the client's task:
 *     WEBSOCKET_EVENT_DISCONNECTED (or _CLOSED after a close handshake), then
 *     WEBSOCKET_EVENT_FINISH exactly once. FINISH is the one "link gone" signal used here;
 *   - WEBSOCKET_EVENT_DATA carries each read chunk: op_code (1 text, 2 binary, 0 continuation,
 *     8 close, 9 ping, 10 pong), fin, payload_len (whole frame), payload_offset (of this chunk).
 */
#include "ws_links.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "esp_log.h"
#include "esp_timer.h"
#include "esp_transport_ws.h"
#include "esp_websocket_client.h"
#include "frame_cycles.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "freertos/task.h"
#include "network.h"
#include "pigeonhub_abi.h"
#include "sdkconfig.h"

static const char *TAG = "pigeonhub";

#define WS_LINKS_MAX (CONFIG_PIGEONHUB_MAX_HUB_LINKS > 0 ? CONFIG_PIGEONHUB_MAX_HUB_LINKS : 1)
#define WS_LINK_QUEUE_LEN 64
/* Frames waiting for the far hubs (all links). A link carries every local peer's traffic to its
 * far hub, so the bridge's per-connection outbox limit (sized for one peer) is not applied to it:
 * two browser-sized offers (4-8 KB each) sent at once would exceed it and the bridge would close
 * the whole link, forgetting every remote peer. Frames are reported sent once queued here;
 * one that does not fit is dropped (the module counts it), never the link. */
#define WS_LINK_QUEUE_BYTES (3 * CONFIG_PIGEONHUB_OUTBOX_LIMIT)
#define WS_LINK_DROP_LOG_US 5000000    /* at most one "dropped" line per 5 s */
#define WS_LINK_TASK_STACK 4096
#define WS_LINK_SEND_TIMEOUT_MS 2000   /* a far hub that does not read: frame dropped after this */
#define WS_LINK_CLOSE_TIMEOUT_MS 3000  /* close handshake; the client then drops the TCP link    */
#define WS_LINK_NETWORK_TIMEOUT_MS 10000
#define WS_LINK_INBOX_WAIT_MS 1000     /* back-pressure on the client task, as for httpd frames */
#define WS_LINK_ADDRESS_WAIT_MS 10000  /* a dial without an IPv4 address waits this long for one */
#define WS_LINK_ADDRESS_POLL_MS 100

typedef struct {
    _Atomic uint32_t session;   /* 0 = free; set by the hub task, cleared by the worker */
    int32_t conn;
    esp_websocket_client_handle_t client;   /* worker task only */
    atomic_bool connected;
    /* Reassembly of fragmented messages: the client's task only. */
    uint8_t *msg;
    size_t msg_len;
    bool msg_active;
    bool msg_dropped;
} ws_link;

typedef enum { CMD_OPEN, CMD_SEND, CMD_PING, CMD_CLOSE, CMD_DONE } cmd_type;

typedef struct {
    cmd_type type;
    ws_link *link;
    uint32_t session;
    uint16_t code;
    uint8_t *data;   /* heap: URL (NUL-terminated), frame or close reason */
    size_t len;
} ws_cmd;

static ws_link s_links[WS_LINKS_MAX];
static QueueHandle_t s_cmds;
static const hub_event_sink *s_sink;
static atomic_size_t s_frame_limit = MAX_MESSAGE_SIZE;
static atomic_size_t s_queued_bytes;   /* CMD_SEND bytes in s_cmds or being written */
static uint32_t s_drops;               /* hub task only: frames dropped since the last log line */
static int64_t s_drop_logged_us = -WS_LINK_DROP_LOG_US;   /* hub task only */
static uint32_t s_next_session;

/* ---- events from a client's task ----------------------------------------------------------- */

static void post(hub_event_type type, uint32_t session, uint8_t *data, size_t len)
{
    hub_event ev = { .type = type, .session = session, .fd = -1, .data = data, .len = len,
                     .posted_us = frame_cycles_stamp_us(),
                     .kind = type == HUB_EV_FRAME ? frame_kind_of(data, len) : FRAME_KINDS };
    if (!s_sink->post(&ev, portMAX_DELAY)) {   /* cannot fail with portMAX_DELAY; keep it honest */
        free(data);
    }
}

static void deliver_chunk(ws_link *l, uint32_t session, const esp_websocket_event_data_t *d)
{
    bool first = d->payload_offset == 0;
    if (first && (d->op_code == WS_TRANSPORT_OPCODES_TEXT || d->op_code == WS_TRANSPORT_OPCODES_BINARY)) {
        free(l->msg);
        l->msg = NULL;
        l->msg_len = 0;
        l->msg_active = true;
        l->msg_dropped = false;
    }
    if (!l->msg_active) {
        return;   /* a continuation without a start: nothing to attach it to */
    }
    size_t limit = atomic_load(&s_frame_limit);
    if (!l->msg_dropped && d->data_len > 0) {
        if (l->msg_len + (size_t)d->data_len > limit) {
            l->msg_dropped = true;   /* the hub closes it 1009 through the bridge */
            post(HUB_EV_TOO_BIG, session, NULL, l->msg_len + (size_t)d->data_len);
            free(l->msg);
            l->msg = NULL;
        } else {
            uint8_t *grown = realloc(l->msg, l->msg_len + (size_t)d->data_len);
            if (grown == NULL) {
                ESP_LOGW(TAG, "hub link: out of memory for a %d-byte frame; dropped", d->payload_len);
                l->msg_dropped = true;
                free(l->msg);
                l->msg = NULL;
            } else {
                memcpy(grown + l->msg_len, d->data_ptr, (size_t)d->data_len);
                l->msg = grown;
                l->msg_len += (size_t)d->data_len;
            }
        }
    }
    bool frame_done = d->payload_offset + d->data_len >= d->payload_len;
    if (!frame_done || !d->fin) {
        return;
    }
    l->msg_active = false;
    if (l->msg_dropped) {
        return;
    }
    uint8_t *msg = l->msg ? l->msg : malloc(1);   /* an empty message is still a frame */
    size_t len = l->msg_len;
    l->msg = NULL;
    l->msg_len = 0;
    if (msg == NULL || !s_sink->reserve(len, pdMS_TO_TICKS(WS_LINK_INBOX_WAIT_MS))) {
        ESP_LOGW(TAG, "hub link: hub task inbox full; a %u-byte frame dropped", (unsigned)len);
        free(msg);
        return;
    }
    post(HUB_EV_FRAME, session, msg, len);
}

static void on_client_event(void *arg, esp_event_base_t base, int32_t id, void *event_data)
{
    ws_link *l = arg;
    const esp_websocket_event_data_t *d = event_data;
    uint32_t session = atomic_load(&l->session);
    (void)base;
    switch (id) {
    case WEBSOCKET_EVENT_CONNECTED:
        atomic_store(&l->connected, true);
        post(HUB_EV_LINK_OPEN, session, NULL, 0);
        break;
    case WEBSOCKET_EVENT_DATA:
        if (d->op_code == WS_TRANSPORT_OPCODES_PONG) {
            post(HUB_EV_PONG, session, NULL, 0);
        } else if (d->op_code == WS_TRANSPORT_OPCODES_TEXT || d->op_code == WS_TRANSPORT_OPCODES_BINARY ||
                   d->op_code == WS_TRANSPORT_OPCODES_CONT) {
            deliver_chunk(l, session, d);
        }
        break;
    case WEBSOCKET_EVENT_ERROR:
        ESP_LOGD(TAG, "hub link %" PRIu32 ": error type %d, handshake status %d, errno %d", session,
                 (int)d->error_handle.error_type, d->error_handle.esp_ws_handshake_status_code,
                 d->error_handle.esp_transport_sock_errno);
        break;
    case WEBSOCKET_EVENT_FINISH: {
        /* The client's task is ending: the worker destroys the handle, then tells the hub. */
        atomic_store(&l->connected, false);
        free(l->msg);
        l->msg = NULL;
        l->msg_active = false;
        ws_cmd cmd = { .type = CMD_DONE, .link = l, .session = session };
        xQueueSend(s_cmds, &cmd, portMAX_DELAY);
        break;
    }
    default:
        break;
    }
}

/* ---- the worker: every esp_websocket_client call on a handle --------------------------------- */

static void finish(ws_link *l, uint32_t session)
{
    if (l->client != NULL) {
        esp_websocket_client_destroy(l->client);   /* waits for the client's task to end */
        l->client = NULL;
    }
    atomic_store(&l->connected, false);
    atomic_store(&l->session, 0);
    post(HUB_EV_CLOSE, session, NULL, 0);
}

static void do_open(ws_link *l, uint32_t session, const char *url)
{
    /* The module dials its bootstrap hubs as it starts, which is before DHCP (or Wi-Fi) has given
     * the board an address: without one the dial fails at once ("Host is unreachable", logged by
     * esp-tls from the client's task) and the link waits out a backoff. Wait for the address. */
    for (int waited = 0; !network_is_connected() && waited < WS_LINK_ADDRESS_WAIT_MS;
         waited += WS_LINK_ADDRESS_POLL_MS) {
        vTaskDelay(pdMS_TO_TICKS(WS_LINK_ADDRESS_POLL_MS));
    }
    esp_websocket_client_config_t cfg = {
        .uri = url,
        .disable_auto_reconnect = true,   /* one attempt: the module owns the retry policy */
        .network_timeout_ms = WS_LINK_NETWORK_TIMEOUT_MS,
        .user_agent = "PigeonHub-WASM",
    };
    l->client = esp_websocket_client_init(&cfg);   /* copies the URI */
    if (l->client == NULL) {
        ESP_LOGW(TAG, "hub link %s: esp_websocket_client_init failed (URL or memory)", url);
        finish(l, session);
        return;
    }
    esp_err_t err = esp_websocket_register_events(l->client, WEBSOCKET_EVENT_ANY, on_client_event, l);
    if (err == ESP_OK) {
        err = esp_websocket_client_start(l->client);
    }
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "hub link %s: cannot start (%s)", url, esp_err_to_name(err));
        finish(l, session);   /* never started: no FINISH will come */
    }
}

static void worker(void *arg)
{
    (void)arg;
    for (;;) {
        ws_cmd cmd;
        if (xQueueReceive(s_cmds, &cmd, portMAX_DELAY) != pdTRUE) {
            continue;
        }
        ws_link *l = cmd.link;
        bool live = atomic_load(&l->session) == cmd.session && l->client != NULL;
        switch (cmd.type) {
        case CMD_OPEN:
            do_open(l, cmd.session, (const char *)cmd.data);
            break;
        case CMD_SEND:
            if (live && atomic_load(&l->connected) &&
                esp_websocket_client_send_text(l->client, (const char *)cmd.data, (int)cmd.len,
                                               pdMS_TO_TICKS(WS_LINK_SEND_TIMEOUT_MS)) < 0) {
                ESP_LOGW(TAG, "hub link %" PRIu32 ": a %u-byte frame could not be sent", cmd.session,
                         (unsigned)cmd.len);
            }
            atomic_fetch_sub(&s_queued_bytes, cmd.len);   /* written or dropped */
            break;
        case CMD_PING:
            if (live && atomic_load(&l->connected)) {
                esp_websocket_client_send_with_opcode(l->client, WS_TRANSPORT_OPCODES_PING, NULL, 0,
                                                      pdMS_TO_TICKS(WS_LINK_SEND_TIMEOUT_MS));
            }
            break;
        case CMD_CLOSE:
            if (!live) {
                break;
            }
            if (atomic_load(&l->connected)) {
                esp_websocket_client_close_with_code(l->client, cmd.code, (const char *)cmd.data,
                                                     (int)cmd.len, pdMS_TO_TICKS(WS_LINK_CLOSE_TIMEOUT_MS));
            } else {
                esp_websocket_client_stop(l->client);   /* still dialing: give the attempt up */
            }
            break;   /* FINISH follows from the client's task: CMD_DONE */
        case CMD_DONE:
            if (atomic_load(&l->session) == cmd.session) {
                finish(l, cmd.session);
            }
            break;
        }
        free(cmd.data);
    }
}

/* ---- hub task API ------------------------------------------------------------------------------- */

esp_err_t ws_links_start(const hub_event_sink *sink)
{
    s_sink = sink;
    s_cmds = xQueueCreate(WS_LINK_QUEUE_LEN, sizeof(ws_cmd));
    if (s_cmds == NULL) {
        return ESP_ERR_NO_MEM;
    }
    if (xTaskCreate(worker, "hublinks", WS_LINK_TASK_STACK, NULL, CONFIG_PIGEONHUB_HUB_TASK_PRIORITY,
                    NULL) != pdPASS) {
        return ESP_ERR_NO_MEM;
    }
    return ESP_OK;
}

void ws_links_set_frame_limit(size_t limit)
{
    atomic_store(&s_frame_limit, limit);
}

static ws_link *find(uint32_t session)
{
    for (int i = 0; i < WS_LINKS_MAX; i++) {
        if (session != 0 && atomic_load(&s_links[i].session) == session) {
            return &s_links[i];
        }
    }
    return NULL;
}

static bool enqueue(cmd_type type, ws_link *l, uint32_t session, uint16_t code, const void *data,
                    size_t len, bool nul)
{
    ws_cmd cmd = { .type = type, .link = l, .session = session, .code = code, .len = len };
    if (data != NULL || nul) {
        cmd.data = malloc(len + (nul ? 1 : 0) + (len == 0));
        if (cmd.data == NULL) {
            return false;
        }
        if (len) {
            memcpy(cmd.data, data, len);
        }
        if (nul) {
            cmd.data[len] = '\0';
        }
    }
    if (xQueueSend(s_cmds, &cmd, 0) != pdTRUE) {   /* the hub task never waits for the worker */
        free(cmd.data);
        return false;
    }
    return true;
}

uint32_t ws_links_open(int32_t conn, const char *url, size_t len)
{
    if (s_cmds == NULL) {
        return 0;
    }
    ws_link *l = NULL;
    for (int i = 0; i < WS_LINKS_MAX && l == NULL; i++) {
        if (atomic_load(&s_links[i].session) == 0) {
            l = &s_links[i];
        }
    }
    if (l == NULL) {
        ESP_LOGW(TAG, "hub link: all %d link slots busy (CONFIG_PIGEONHUB_MAX_HUB_LINKS)", WS_LINKS_MAX);
        return 0;
    }
    uint32_t session;
    do {
        session = WS_LINK_SESSION_BIT | (++s_next_session & ~WS_LINK_SESSION_BIT);
    } while (find(session) != NULL);
    l->conn = conn;
    atomic_store(&l->connected, false);
    atomic_store(&l->session, session);
    if (!enqueue(CMD_OPEN, l, session, 0, url, len, true)) {
        atomic_store(&l->session, 0);
        return 0;
    }
    return session;
}

int ws_links_send(uint32_t session, int32_t conn, const uint8_t *data, size_t len)
{
    ws_link *l = find(session);
    if (l == NULL) {
        return -1;
    }
    size_t queued = atomic_fetch_add(&s_queued_bytes, len);
    if (queued + len > WS_LINK_QUEUE_BYTES || !enqueue(CMD_SEND, l, session, 0, data, len, false)) {
        atomic_fetch_sub(&s_queued_bytes, len);
        s_drops++;
        int64_t now = esp_timer_get_time();
        if (now - s_drop_logged_us >= WS_LINK_DROP_LOG_US) {
            ESP_LOGW(TAG, "hub link %" PRIu32 ": %u bytes wait for the far hub (limit %d): dropping "
                          "frames (%" PRIu32 " since the last such line)", session, (unsigned)queued,
                     WS_LINK_QUEUE_BYTES, s_drops);
            s_drop_logged_us = now;
            s_drops = 0;
        }
        return -1;
    }
    if (s_sink) {
        s_sink->sent(conn, len);   /* queued: the bridge's outbox for this link stays empty */
    }
    return 0;
}

int ws_links_ping(uint32_t session)
{
    ws_link *l = find(session);
    return l != NULL && enqueue(CMD_PING, l, session, 0, NULL, 0, false) ? 0 : -1;
}

void ws_links_close(uint32_t session, uint16_t code, const char *reason, size_t len)
{
    ws_link *l = find(session);
    if (l != NULL && !enqueue(CMD_CLOSE, l, session, code, reason, len, true)) {
        ESP_LOGW(TAG, "hub link %" PRIu32 ": close not queued (worker busy); the module's timeout "
                      "will retry", session);
    }
}
