/*
 * fuzz_module.c — libFuzzer target: frames fed to the natively built hub module (wasm/ sources) through
 * on_message, with every import stubbed to check the pointers and lengths it receives.
 *
 * Input: records separated by the two bytes FF FE (never valid UTF-8, so no real frame needs them).
 * The first byte of a record picks what to do with the rest:
 *   b % 8 < 4   deliver the rest as a frame from connection b % 4 (0..2 clients, 3 = the hub link)
 *   b % 8 == 4  advance the clock by (b >> 3) * 4 s and run loop() (heartbeats, timeouts, re-dials)
 *   b % 8 == 5  on_pong for connection (b >> 3) % 4
 *   b % 8 == 6  disconnect connection (b >> 3) % 4, then connect it again (same peer id)
 *   b % 8 == 7  a new connection whose request URL is the rest of the record (then it closes)
 * Every input starts from init() + start_server(): three clients connected, one hub link open.
 *
 * Checks (abort = a crash libFuzzer reports): every (pointer, length) an import receives is readable
 * for its whole length (copied byte for byte under AddressSanitizer), buffers the module hands out
 * for writing are writable for the length it claims, frames are valid JSON, close codes/reasons are
 * the ABI's, logs carry a level prefix, and sends only go to connections the host has open.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffers.h"
#include "json.h"
#include "ph_json_string.h"
#include "ph_port.h"

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_module: " __VA_ARGS__);                                              \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) FAIL("check failed: " #cond ": " __VA_ARGS__);                                \
    } while (0)

#define MAX_CONN 64
#define LINK_CONN 60
static const char *const ID_URL[3] = {
    "/?peerId=f335b63e0123456789abcdef0123456789abccf8",
    "/?peerId=49702745aaaaaaaaaaaaaaaaaaaaaaaaaaaaaf04",
    "/x/y?a=1&peerId=883f96a5ccccccccccccccccccccccccccccc44d",
};
static const char *h_url[MAX_CONN];
static char h_extra_url[1024];
static int h_open[MAX_CONN], h_closing[MAX_CONN], h_link[MAX_CONN];
static uint32_t h_now;
static char h_copy[MAX_MESSAGE_SIZE + 1024];

/* Read every byte of [p, p + len): AddressSanitizer reports any byte outside a live object. */
static void touch_read(const void *p, int32_t len, int32_t max, const char *what)
{
    CHECK(p != NULL, "%s: NULL pointer", what);
    CHECK(len >= 0 && len <= max, "%s: length %d (max %d)", what, (int)len, (int)max);
    memcpy(h_copy, p, (size_t)len);
}

/* The module lends a buffer for the host to fill: it must be writable for all of len. */
static void touch_write(void *p, int32_t len, int32_t max, const char *what)
{
    CHECK(p != NULL, "%s: NULL pointer", what);
    CHECK(len > 0 && len <= max, "%s: length %d (max %d)", what, (int)len, (int)max);
    memset(p, 0xA5, (size_t)len);
}

static void check_frame(const char *data, int32_t len)
{
    touch_read(data, len, MAX_MESSAGE_SIZE + PH_RELAY_ROOM, "frame");
    CHECK(len > 0, "empty frame");
    int rc = json_scan(data, (uint32_t)len, 0);
    CHECK(rc == PH_JSON_OK, "module sent invalid JSON (%d): %.*s", rc, len > 300 ? 300 : (int)len, data);
}

static int live(int32_t conn) { return conn >= 0 && conn < MAX_CONN && h_open[conn] && !h_closing[conn]; }

int32_t ws_server_start(int32_t port) { return port > 0 ? 0 : -1; }
void ws_server_stop(void) {}

int32_t ws_send_to_peer(int32_t conn, const char *data, int32_t len)
{
    check_frame(data, len);
    CHECK(conn >= 0 && conn < MAX_CONN && h_open[conn], "send to a connection never opened: %d", (int)conn);
    return live(conn) ? PH_SEND_OK : PH_SEND_NO_CONN;
}

int32_t ws_broadcast(const char *data, int32_t len, int32_t exclude)
{
    check_frame(data, len);
    int32_t n = 0;
    for (int c = 0; c < MAX_CONN; c++) n += c != exclude && live(c);
    return n;
}

void log_message(const char *msg, int32_t len)
{
    touch_read(msg, len, 255, "log");
    CHECK(len >= 2, "log length %d", (int)len);
    CHECK(strchr("EWIDV", msg[0]) && msg[0] && msg[1] == ' ', "log level prefix: %.*s", (int)len, msg);
}

void get_device_id(char *buf, int32_t len)
{
    touch_write(buf, len, 4096, "get_device_id");
    snprintf(buf, (size_t)len, "%s", "24:0a:c4:12:34:56");
}

uint32_t millis(void) { return h_now; }
int64_t wall_clock_ms(void) { return 1795721113692LL + h_now; }

int32_t ws_get_request_url(int32_t conn, char *buf, int32_t len)
{
    touch_write(buf, len, MAX_MESSAGE_SIZE, "ws_get_request_url");
    if (conn < 0 || conn >= MAX_CONN || !h_url[conn]) return -1;
    return (int32_t)snprintf(buf, (size_t)len, "%s", h_url[conn]);   /* the bridge's contract */
}

void ws_close_peer(int32_t conn, int32_t code, const char *reason, int32_t len)
{
    touch_read(reason, len, 123, "close reason");
    CHECK(code == PH_CLOSE_GOING_AWAY || code == PH_CLOSE_POLICY, "close code %d", (int)code);
    CHECK(len > 0 && memchr(reason, 0, (size_t)len) == NULL, "close reason");
    CHECK(conn >= 0 && conn < MAX_CONN && h_open[conn], "close of a connection never opened: %d", (int)conn);
    h_closing[conn] = 1;
}

int32_t ws_ping_peer(int32_t conn)
{
    CHECK(conn >= 0 && conn < MAX_CONN && h_open[conn], "ping to a connection never opened: %d", (int)conn);
    return live(conn) ? 0 : -1;
}

static const char *const BOOTSTRAP = "ws://hub.example:8080/x?y=1";

int32_t ws_connect(const char *url, int32_t len)
{
    touch_read(url, len, 1023, "ws_connect url");
    CHECK(len > 0, "dial URL length %d", (int)len);
    if (h_open[LINK_CONN]) return -1;   /* one link at a time in this host */
    h_open[LINK_CONN] = 1;
    h_closing[LINK_CONN] = 0;
    h_link[LINK_CONN] = 1;
    h_url[LINK_CONN] = BOOTSTRAP;
    return LINK_CONN;
}

int32_t get_bootstrap_hub(int32_t index, char *buf, int32_t len)
{
    touch_write(buf, len, 4096, "get_bootstrap_hub");
    if (index != 0) return -1;
    return (int32_t)snprintf(buf, (size_t)len, "%s", BOOTSTRAP);
}

int32_t json_string_end(const char *text, int32_t len)
{
    touch_read(text, len, MAX_MESSAGE_SIZE + PH_RELAY_ROOM, "json_string_end");
    return ph_json_string_end((const uint8_t *)text, (uint32_t)len);
}

int32_t json_value_end(const char *text, int32_t len)
{
    touch_read(text, len, MAX_MESSAGE_SIZE + PH_RELAY_ROOM, "json_value_end");
    return ph_json_value_end((const uint8_t *)text, (uint32_t)len);
}

/* --- driving the module ----------------------------------------------------------------------- */

static void connect(int conn, const char *url)
{
    h_url[conn] = url;
    h_open[conn] = 1;
    h_closing[conn] = 0;
    on_peer_connected(conn);
}

static void disconnect(int conn)
{
    if (!h_open[conn]) return;
    h_open[conn] = 0;
    h_closing[conn] = 0;
    h_link[conn] = 0;
    on_peer_disconnected(conn);
}

static int conn_of(unsigned k) { return k % 4 == 3 ? LINK_CONN : (int)(k % 4); }

/* The frame goes at the END of the input buffer: one byte read past len is an ASan report. */
static void deliver(int conn, const uint8_t *data, size_t len)
{
    char *in = get_input_buffer();
    size_t cap = (size_t)get_input_buffer_size();
    if (len > cap) len = cap;   /* the bridge closes 1009 instead */
    memcpy(in + cap - len, data, len);
    on_message(conn, in + cap - len, (int32_t)len);
}

static void step(const uint8_t *rec, size_t n)
{
    if (n == 0) return;
    uint8_t b = rec[0];
    int conn = conn_of(b >> 3);
    switch (b % 8) {
    case 4:
        h_now += (uint32_t)(b >> 3) * 4000u;
        loop();
        if (h_open[LINK_CONN] && !h_closing[LINK_CONN] && h_link[LINK_CONN] == 1) {
            h_link[LINK_CONN] = 2;
            on_link_open(LINK_CONN);
        }
        break;
    case 5: on_pong(conn); break;
    case 6:
        disconnect(conn);
        if (conn != LINK_CONN) connect(conn, ID_URL[conn]);
        break;
    case 7: {
        size_t len = n - 1 < sizeof h_extra_url - 1 ? n - 1 : sizeof h_extra_url - 1;
        memcpy(h_extra_url, rec + 1, len);
        h_extra_url[len] = '\0';
        connect(10, h_extra_url);
        if (h_open[10] && !h_closing[10]) deliver(10, (const uint8_t *)"{\"type\":\"ping\"}", 15);
        disconnect(10);
        break;
    }
    default: deliver(conn_of(b), rec + 1, n - 1); break;
    }
    /* The host carries out the closes the module asked for, as a bridge would. */
    for (int c = 0; c < MAX_CONN; c++)
        if (h_closing[c]) disconnect(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    memset(h_open, 0, sizeof h_open);
    memset(h_closing, 0, sizeof h_closing);
    memset(h_link, 0, sizeof h_link);
    memset(h_url, 0, sizeof h_url);
    h_now = 1000;
    CHECK(init() == 0, "init");
    CHECK(start_server(3000) == 0 && is_running() == 1, "start_server");
    for (int c = 0; c < 3; c++) connect(c, ID_URL[c]);
    if (h_open[LINK_CONN]) {
        h_link[LINK_CONN] = 2;
        on_link_open(LINK_CONN);
    }

    const uint8_t *p = data, *end = data + size;
    while (p <= end) {
        const uint8_t *q = p;
        while (q + 1 < end && !(q[0] == 0xFF && q[1] == 0xFE)) q++;
        if (q + 1 >= end) q = end;
        step(p, (size_t)(q - p));
        p = q + 2;
    }

    char stats[2048];
    get_stats(stats, (int32_t)sizeof stats);
    size_t n = strnlen(stats, sizeof stats);
    CHECK(n < sizeof stats, "get_stats: not NUL-terminated");
    CHECK(json_scan(stats, (uint32_t)n, 0) == PH_JSON_OK, "get_stats: invalid JSON: %s", stats);
    CHECK(get_peer_count() >= 0 && get_peer_count() <= MAX_PEERS, "peer count %d", (int)get_peer_count());
    stop_server();
    for (int c = 0; c < MAX_CONN; c++) disconnect(c);
    return 0;
}
