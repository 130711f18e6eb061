/*
 * ws_transport.c — the WebSocket side of esp_http_server, for the hub task.
 *
 * http_endpoints.c registers the one wildcard handler (any path, .is_websocket, control frames)
 * and hands it WebSocket requests: PeerPigeon clients connect on any path and put their peer id in
 * the query string, so the whole request URI (path + query) is handed to the bridge.
 */
#include "ws_transport.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "esp_heap_caps.h"
#include "esp_log.h"
#include "esp_timer.h"
#include "lwip/sockets.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "pigeonhub_abi.h"
#include "frame_cycles.h"
#include "ph_json_string.h"

static const char *TAG = "pigeonhub";

#define WS_CONTROL_MAX 125          /* RFC 6455 §5.5: control frame payload limit            */
#define WS_CLOSE_PROTOCOL 1002      /* RFC 6455 §7.4.1: protocol error                        */
#define WS_CLOSE_BAD_DATA 1007      /* RFC 6455 §7.4.1: data inconsistent with the type (UTF-8) */
#define WS_INBOX_WAIT_MS 2000       /* how long a sender is held back before it is dropped   */
#define WS_INBOX_POLL_MS 5          /* between inbox tries, this task writes the queued frames */
#define WS_DRAIN_MS 1000            /* a refused frame's payload is read away for this long...  */
#define WS_DRAIN_MAX (64 * 1024)    /* ...or up to this many bytes, before the socket is dropped */

/* Per-WebSocket state, the httpd session context (freed by httpd when the socket closes). */
typedef struct {
    uint32_t id;         /* never reused, so stale outgoing frames cannot reach a new socket */
    int fd;
    bool close_sent;     /* our close frame is out: send nothing more                          */
    uint8_t *partial;    /* fragmented message being reassembled                               */
    size_t partial_len;
    httpd_ws_type_t partial_type;
} ws_session;

typedef enum { OUT_TEXT, OUT_PING, OUT_CLOSE } out_kind;

typedef struct out_item {
    struct out_item *next;
    int fd;
    uint32_t session;
    int32_t conn;        /* bridge connection for ph_bridge_on_sent, -1 for none */
    out_kind kind;
    uint8_t cause;       /* frame_kind of the received frame the module was handling, or FRAME_KINDS */
    uint32_t queued_us;  /* frame_cycles_stamp_us() when queued */
    uint16_t code;       /* OUT_CLOSE */
    size_t len;
    uint8_t data[];
} out_item;

static httpd_handle_t s_server;
static const hub_event_sink *s_sink;
static atomic_bool s_accepting;
static bool s_tls; /* wss://: each connection also holds a TLS session (heap) */
static atomic_size_t s_frame_limit = MAX_MESSAGE_SIZE;
static atomic_uint s_next_session;

static SemaphoreHandle_t s_out_lock;
static out_item *s_out_head;
static out_item *s_out_tail;
static bool s_drain_queued; /* one httpd_queue_work() item at a time; under s_out_lock */
static atomic_size_t s_out_bytes; /* frame bytes queued for the httpd task, not yet written */
static atomic_size_t s_out_peak;  /* the most s_out_bytes has been since boot (/stats)       */
static bool s_drain_stale;  /* a kick found the item still pending; under s_out_lock    */

void ws_transport_set_accepting(bool accepting)
{
    atomic_store(&s_accepting, accepting);
}

void ws_transport_set_frame_limit(size_t limit)
{
    atomic_store(&s_frame_limit, limit);
}

/* ---- send side: hub task → FIFO → httpd task ---------------------------------------------- */

static esp_err_t send_frame(int fd, httpd_ws_type_t type, const uint8_t *data, size_t len)
{
    httpd_ws_frame_t frame = {
        .final = true,
        .fragmented = false,
        .type = type,
        .payload = (uint8_t *)data,
        .len = len,
    };
    return httpd_ws_send_frame_async(s_server, fd, &frame);
}

static void deliver(out_item *it)
{
    ws_session *s = httpd_sess_get_ctx(s_server, it->fd);
    bool alive = s != NULL && s->id == it->session && !s->close_sent;
    esp_err_t err = ESP_OK;

    if (alive) {
        if (it->kind == OUT_TEXT) {
            err = send_frame(it->fd, HTTPD_WS_TYPE_TEXT, it->data, it->len);
            frame_cycles_add_since_us(it->cause, STAGE_TRANSPORT_OUT, it->queued_us);
        } else if (it->kind == OUT_PING) {
            err = send_frame(it->fd, HTTPD_WS_TYPE_PING, NULL, 0);
        } else {
            uint8_t body[2 + WS_CONTROL_MAX];
            size_t n = it->len > WS_CONTROL_MAX - 2 ? WS_CONTROL_MAX - 2 : it->len;
            body[0] = (uint8_t)(it->code >> 8);
            body[1] = (uint8_t)(it->code & 0xff);
            memcpy(body + 2, it->data, n);
            send_frame(it->fd, HTTPD_WS_TYPE_CLOSE, body, n + 2);
            s->close_sent = true;
            /* The client's close reply may never come: end the session from our side. */
            httpd_sess_trigger_close(s_server, it->fd);
        }
        if (err != ESP_OK) {
            ESP_LOGW(TAG, "send on fd %d failed: %s; closing it", it->fd, esp_err_to_name(err));
            s->close_sent = true;
            httpd_sess_trigger_close(s_server, it->fd);
        }
    }
    if (it->kind == OUT_TEXT && it->conn >= 0 && s_sink) {
        s_sink->sent(it->conn, it->len); /* written or dropped: either way it leaves the outbox */
    }
}

static void drain_work(void *arg)
{
    (void)arg;
    xSemaphoreTake(s_out_lock, portMAX_DELAY);
    out_item *it = s_out_head;
    s_out_head = s_out_tail = NULL;
    s_drain_queued = false;
    s_drain_stale = false;
    xSemaphoreGive(s_out_lock);
    while (it) {
        out_item *next = it->next;
        deliver(it);
        atomic_fetch_sub(&s_out_bytes, it->len);
        free(it);
        it = next;
    }
}

static void request_drain(void)
{
    if (httpd_queue_work(s_server, drain_work, NULL) != ESP_OK) {
        /* The frames stay queued; ws_transport_kick() retries on the next tick. */
        xSemaphoreTake(s_out_lock, portMAX_DELAY);
        s_drain_queued = false;
        xSemaphoreGive(s_out_lock);
        ESP_LOGW(TAG, "httpd_queue_work failed; retrying on the next tick");
    }
}

/* Queued only: ws_transport_flush() hands the FIFO to the httpd task once the module call that
 * sent it returned (httpd_queue_work() costs a datagram on httpd's control socket). */
static int enqueue(out_item *it)
{
    size_t now = atomic_fetch_add(&s_out_bytes, it->len) + it->len;
    size_t peak = atomic_load(&s_out_peak);
    while (now > peak && !atomic_compare_exchange_weak(&s_out_peak, &peak, now)) {
    }
    xSemaphoreTake(s_out_lock, portMAX_DELAY);
    if (s_out_tail) {
        s_out_tail->next = it;
    } else {
        s_out_head = it;
    }
    s_out_tail = it;
    xSemaphoreGive(s_out_lock);
    return 0;
}

void ws_transport_flush(void)
{
    bool kick;
    if (s_out_lock == NULL) {
        return; /* not attached to a server yet: nothing can be queued */
    }
    xSemaphoreTake(s_out_lock, portMAX_DELAY);
    kick = s_out_head != NULL && !s_drain_queued;
    s_drain_queued = s_drain_queued || kick;
    xSemaphoreGive(s_out_lock);
    if (kick) {
        request_drain();
    }
}

static out_item *new_item(int fd, uint32_t session, int32_t conn, out_kind kind, const void *data,
                          size_t len)
{
    out_item *it = malloc(sizeof(*it) + len);
    if (it == NULL) {
        ESP_LOGE(TAG, "out of memory queueing %u bytes for fd %d", (unsigned)len, fd);
        return NULL;
    }
    it->next = NULL;
    it->fd = fd;
    it->session = session;
    it->conn = conn;
    it->kind = kind;
    it->cause = frame_cycles_current();
    it->queued_us = frame_cycles_stamp_us();
    it->code = 0;
    it->len = len;
    if (len) {
        memcpy(it->data, data, len);
    }
    return it;
}

int ws_transport_send(int fd, uint32_t session, int32_t conn, const uint8_t *data, size_t len)
{
    out_item *it = new_item(fd, session, conn, OUT_TEXT, data, len);
    return it ? enqueue(it) : -1;
}

int ws_transport_ping(int fd, uint32_t session)
{
    out_item *it = new_item(fd, session, -1, OUT_PING, NULL, 0);
    return it ? enqueue(it) : -1;
}

void ws_transport_close(int fd, uint32_t session, uint16_t code, const char *reason, size_t len)
{
    out_item *it = new_item(fd, session, -1, OUT_CLOSE, reason, len);
    if (it == NULL) {
        /* Without memory for a close frame, at least end the session. */
        httpd_sess_trigger_close(s_server, fd);
        return;
    }
    it->code = code;
    enqueue(it);
}

size_t ws_transport_out_peak(void)
{
    return atomic_load(&s_out_peak);
}

bool ws_transport_wait_writable(TickType_t wait)
{
    TickType_t start = xTaskGetTickCount();
    while (atomic_load(&s_out_bytes) > WS_OUT_HIGH_WATER) {
        if (xTaskGetTickCount() - start >= wait) {
            return false;
        }
        vTaskDelay(1);
    }
    return true;
}

void ws_transport_kick(void)
{
    bool kick;
    bool lost = false;
    if (s_out_lock == NULL) {
        return; /* not attached to a server yet: nothing can be queued */
    }
    xSemaphoreTake(s_out_lock, portMAX_DELAY);
    kick = s_out_head != NULL && !s_drain_queued;
    if (kick) {
        s_drain_queued = true;
    } else if (s_out_head != NULL) {
        /* httpd's control socket is a UDP socket with a small lwIP receive mailbox: when a
         * burst of httpd_sess_trigger_close() items fills it, lwIP drops the datagram of our work
         * item and httpd_queue_work() still returns ESP_OK. Pending for a whole tick: ask again
         * (a second item finds the FIFO empty and does nothing). */
        lost = s_drain_stale;
        s_drain_stale = !lost;
    }
    xSemaphoreGive(s_out_lock);
    if (kick || lost) {
        if (lost) {
            ESP_LOGW(TAG, "outgoing frames waited a whole tick for the httpd task: queueing the "
                          "send work again");
        }
        request_drain();
    }
}

/* ---- receive side: httpd task → hub task ----------------------------------------------------- */

static void session_free(void *ctx)
{
    ws_session *s = ctx;
    /* httpd calls this exactly once per session when the socket is gone, whoever closed it. */
    hub_event ev = { .type = HUB_EV_CLOSE, .session = s->id, .fd = s->fd };
    s_sink->post(&ev, portMAX_DELAY);
    free(s->partial);
    free(s);
}

static esp_err_t on_handshake(httpd_req_t *req, int fd)
{
    ws_session *s = calloc(1, sizeof(*s));
    size_t url_len = strnlen(req->uri, sizeof(req->uri));
    uint8_t *url = malloc(url_len + 1);
    if (s == NULL || url == NULL) {
        free(s);
        free(url);
        return ESP_ERR_NO_MEM; /* httpd closes the socket */
    }
    memcpy(url, req->uri, url_len);
    url[url_len] = '\0';
    do {
        s->id = atomic_fetch_add(&s_next_session, 1) + 1;
    } while (s->id == 0);
    s->fd = fd;
    req->sess_ctx = s;
    req->free_ctx = session_free;

    if (!atomic_load(&s_accepting)) {
        free(url);
        ws_transport_close(fd, s->id, PH_CLOSE_GOING_AWAY, PH_REASON_SHUTDOWN,
                           strlen(PH_REASON_SHUTDOWN));
        return ESP_OK;
    }
    /* A TLS session stays on the heap as long as its peer (docs/PERFORMANCE.md: wss:// figures);
     * below the floor a further one would starve lwIP and the Ethernet/Wi-Fi driver of buffers. */
    size_t free_heap = heap_caps_get_free_size(MALLOC_CAP_8BIT);
    if (s_tls && free_heap < CONFIG_PIGEONHUB_TLS_MIN_FREE_HEAP) {
        free(url);
        ESP_LOGW(TAG, "wss connection refused (1008): %u bytes of heap free, below the %d kept "
                      "free (CONFIG_PIGEONHUB_TLS_MIN_FREE_HEAP)",
                 (unsigned)free_heap, CONFIG_PIGEONHUB_TLS_MIN_FREE_HEAP);
        ws_transport_close(fd, s->id, PH_CLOSE_POLICY, PH_REASON_FULL, strlen(PH_REASON_FULL));
        return ESP_OK;
    }
    hub_event ev = { .type = HUB_EV_OPEN, .session = s->id, .fd = fd, .data = url, .len = url_len };
    s_sink->post(&ev, portMAX_DELAY); /* must precede every frame of this session */
    return ESP_OK;
}

static esp_err_t recv_payload(httpd_req_t *req, httpd_ws_frame_t *f, uint8_t *buf)
{
    f->payload = buf;
    return f->len ? httpd_ws_recv_frame(req, f, f->len) : ESP_OK;
}

static esp_err_t on_control(httpd_req_t *req, ws_session *s, httpd_ws_frame_t *f)
{
    uint8_t buf[WS_CONTROL_MAX];
    if (f->len > WS_CONTROL_MAX) {
        ESP_LOGW(TAG, "fd %d: control frame of %u bytes violates RFC 6455; closing", s->fd,
                 (unsigned)f->len);
        return ESP_FAIL;
    }
    esp_err_t err = recv_payload(req, f, buf);
    if (err != ESP_OK) {
        return err;
    }
    if (f->type == HTTPD_WS_TYPE_PING) {
        httpd_ws_frame_t pong = { .final = true, .type = HTTPD_WS_TYPE_PONG, .payload = buf,
                                  .len = f->len };
        return httpd_ws_send_frame(req, &pong);
    }
    if (f->type == HTTPD_WS_TYPE_PONG) {
        hub_event ev = { .type = HUB_EV_PONG, .session = s->id, .fd = s->fd };
        s_sink->post(&ev, portMAX_DELAY);
        return ESP_OK;
    }
    /* CLOSE: httpd already marked the session; it closes the socket after this handler. */
    if (!s->close_sent) {
        httpd_ws_frame_t reply = { .final = true, .type = HTTPD_WS_TYPE_CLOSE, .payload = buf,
                                   .len = f->len >= 2 ? 2 : 0 }; /* echo the status code */
        s->close_sent = true;
        httpd_ws_send_frame(req, &reply);
    }
    return ESP_OK;
}

/* Read and discard what is left of the offending frame (bounded in bytes and time): lwIP answers a
 * close with unread data by a reset, and a reset makes the client's stack drop the close frame. */
static void drain_unread(int fd, size_t unread)
{
    uint8_t scratch[256];
    int64_t deadline = esp_timer_get_time() + WS_DRAIN_MS * 1000LL;
    unread = unread > WS_DRAIN_MAX ? WS_DRAIN_MAX : unread;
    while (unread > 0 && esp_timer_get_time() < deadline) {
        struct timeval tv = { .tv_sec = 0, .tv_usec = 50 * 1000 };
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(fd, &fds);
        if (select(fd + 1, &fds, NULL, NULL, &tv) <= 0) {
            continue;
        }
        int n = recv(fd, scratch, unread < sizeof(scratch) ? unread : sizeof(scratch), MSG_DONTWAIT);
        if (n <= 0) {
            break;
        }
        unread -= (size_t)n;
    }
}

/* Fail the connection (RFC 6455 §7.1.7): a close frame the client can read, then drop the socket.
 * `unread`: payload bytes of the current frame still in the socket. */
static esp_err_t fail_connection(httpd_req_t *req, ws_session *s, uint16_t code, const char *reason,
                                 size_t unread)
{
    uint8_t body[2 + WS_CONTROL_MAX];
    size_t n = strnlen(reason, WS_CONTROL_MAX - 2);
    body[0] = (uint8_t)(code >> 8);
    body[1] = (uint8_t)(code & 0xff);
    memcpy(body + 2, reason, n);
    httpd_ws_frame_t close = { .final = true, .type = HTTPD_WS_TYPE_CLOSE, .payload = body,
                               .len = n + 2 };
    if (!s->close_sent) {
        httpd_ws_send_frame(req, &close);
        s->close_sent = true;
    }
    drain_unread(httpd_req_to_sockfd(req), unread);
    return ESP_FAIL;
}

static esp_err_t refuse_too_big(httpd_req_t *req, ws_session *s, size_t total, size_t unread)
{
    /* Let the bridge account for it on its own thread; the payload is never read. */
    hub_event ev = { .type = HUB_EV_TOO_BIG, .session = s->id, .fd = s->fd, .len = total };
    s_sink->post(&ev, portMAX_DELAY);
    return fail_connection(req, s, PH_CLOSE_TOO_BIG, PH_REASON_TOO_BIG, unread);
}

/* Room in the hub's inbox for a frame. The hub task, for its part, waits until this task has
 * written what it queued: so while this task waits it writes the queued frames itself, or each
 * would wait for the other and the hub would go on queueing after its wait times out. */
static bool reserve_inbox(size_t len)
{
    int64_t deadline = esp_timer_get_time() + WS_INBOX_WAIT_MS * 1000LL;
    while (!s_sink->reserve(len, pdMS_TO_TICKS(WS_INBOX_POLL_MS))) {
        drain_work(NULL);
        if (esp_timer_get_time() >= deadline) {
            return false;
        }
    }
    return true;
}

static esp_err_t on_data(httpd_req_t *req, ws_session *s, httpd_ws_frame_t *f, cycle_mark start)
{
    size_t limit = atomic_load(&s_frame_limit);
    size_t total = s->partial_len + f->len;
    if (total > limit) {
        return refuse_too_big(req, s, total, f->len);
    }
    uint8_t *buf = realloc(s->partial, total ? total : 1);
    if (buf == NULL) {
        return ESP_ERR_NO_MEM;
    }
    s->partial = buf;
    f->payload = buf + s->partial_len;
    if (f->len && httpd_ws_recv_frame(req, f, f->len) != ESP_OK) {
        return ESP_FAIL;
    }
    if (f->type != HTTPD_WS_TYPE_CONTINUE) {
        s->partial_type = f->type;
    }
    s->partial_len = total;
    if (!f->final) {
        return ESP_OK; /* more fragments follow */
    }
    if (s->close_sent) {
        return ESP_OK; /* closing: the module must not see more input */
    }
    /* RFC 6455 §8.1: a text message must be UTF-8 (the bridge core's check). */
    if (s->partial_type == HTTPD_WS_TYPE_TEXT && !ph_utf8_valid(buf, total)) {
        ESP_LOGW(TAG, "fd %d: text message is not UTF-8; closing %d", s->fd, WS_CLOSE_BAD_DATA);
        return fail_connection(req, s, WS_CLOSE_BAD_DATA, "Invalid UTF-8", 0);
    }
    frame_kind kind = frame_kind_of(buf, total);
    frame_cycles_add_since(kind, STAGE_TRANSPORT_IN, start);   /* the waits below are not work */
    if (!reserve_inbox(total)) {
        ESP_LOGW(TAG, "fd %d: hub inbox full for %d ms; dropping the connection", s->fd,
                 WS_INBOX_WAIT_MS);
        return ESP_FAIL;
    }
    hub_event ev = { .type = HUB_EV_FRAME, .session = s->id, .fd = s->fd, .data = buf,
                     .len = total, .posted_us = frame_cycles_stamp_us(), .kind = kind };
    s->partial = NULL;
    s->partial_len = 0;
    s_sink->post(&ev, portMAX_DELAY);
    return ESP_OK;
}

esp_err_t ws_transport_handle(httpd_req_t *req)
{
    cycle_mark start = frame_cycles_mark();
    int fd = httpd_req_to_sockfd(req);
    if (req->method == HTTP_GET) {
        return on_handshake(req, fd);
    }
    ws_session *s = req->sess_ctx;
    if (s == NULL) {
        return ESP_FAIL;
    }
    httpd_ws_frame_t f = { 0 };
    esp_err_t err = httpd_ws_recv_frame(req, &f, 0); /* header only: type, FIN, length */
    if (err == ESP_ERR_INVALID_STATE) {
        /* httpd refuses an unmasked client frame (it logs "not properly masked") */
        return fail_connection(req, s, WS_CLOSE_PROTOCOL, "Protocol error", f.len);
    }
    if (err != ESP_OK) {
        return err;
    }
    switch (f.type) {
    case HTTPD_WS_TYPE_PING:
    case HTTPD_WS_TYPE_PONG:
    case HTTPD_WS_TYPE_CLOSE:
        return on_control(req, s, &f);
    case HTTPD_WS_TYPE_TEXT:
    case HTTPD_WS_TYPE_BINARY: /* the reference server parses binary JSON frames too */
    case HTTPD_WS_TYPE_CONTINUE:
        return on_data(req, s, &f, start);
    default:
        ESP_LOGW(TAG, "fd %d: unknown opcode 0x%x; closing %d", fd, f.type, WS_CLOSE_PROTOCOL);
        return fail_connection(req, s, WS_CLOSE_PROTOCOL, "Protocol error", f.len);
    }
}

esp_err_t ws_transport_attach(httpd_handle_t server, const hub_event_sink *sink, bool tls)
{
    s_sink = sink;
    s_tls = tls;
    s_out_lock = xSemaphoreCreateMutex();
    if (s_out_lock == NULL) {
        return ESP_ERR_NO_MEM;
    }
    s_server = server;
    return ESP_OK;
}
