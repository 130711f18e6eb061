/*
 * hub.c — the PeerPigeon hub protocol: exports, connection lifecycle and frame dispatch.
 *
 * Everything the hub knows lives in static memory sized at compile time (no allocator): the peer
 * table (peers.c), one input buffer the bridge writes frames into, one output buffer frames are
 * built in. Incoming text is validated completely (json.c) before any of it is looked at; what is
 * relayed is copied byte for byte from validated input. wasm/ABI.md describes the ABI, the protocol
 * decisions and the memory layout; /work/shared/protocol.md is the wire reference.
 */
#include "frame.h"
#include "json.h"
#include "peers.h"
#include "ph_port.h"
#include "sha1.h"

#ifndef PH_STACK_SIZE
#define PH_STACK_SIZE 4096          /* must equal the linker's -z stack-size (build.py passes both) */
#endif
/* Largest frame the hub builds from an input frame: its data (and networkName) + our envelope. The
 * envelope adds at most ~210 bytes to what the input had to contain anyway (a goodbye, 170) */
#define PH_OUT_SIZE (MAX_MESSAGE_SIZE + 256)
#define PH_TYPE_ECHO_MAX 64         /* bytes of an unknown type quoted back in the error frame     */
#define PH_DEVICE_ID_MAX 64
#define PH_HUB_ID_PREFIX "pigeonhub-hub-id:"
#define PH_MESH_NETWORK "pigeonhub-mesh"

static char g_in[MAX_MESSAGE_SIZE];
static char g_out[PH_OUT_SIZE];
static char g_hub_id[PH_PEER_ID_LEN + 1];
static char g_log[192];

static struct {
    uint8_t running;
    uint32_t last_now;             /* millis() at the previous reading, for uptime across wrap */
    uint64_t uptime_ms;
    uint32_t frames_in, frames_out;
    struct {
        uint32_t invalid_json, unknown_type, no_target, unknown_target, cross_network,
            send_failed, too_big, bad_announce, unknown_conn, hub_mesh;
    } drop;
} g;

/* connection-rejected is deliberately absent: relaying it breaks real 1.1.3 clients. Two fresh
 * peers both offer; the larger id rejects the other's offer, and a delivered rejection makes the
 * smaller one close the connection it is answering at that moment (1 of 6 WebRTC connections
 * completed with relaying, 6 of 6 without). Like the reference, it gets the `error` frame. */
static const char *const RELAY_TYPES[] = {
    "offer", "answer", "ice-candidate", "renegotiation-offer",
    "renegotiation-answer", "ice-restart-offer", "ice-restart-answer",
};

/* --- time, logging, sending ----------------------------------------------------------------- */

static uint32_t now_ms(void)
{
    uint32_t now = millis();
    g.uptime_ms += (uint32_t)(now - g.last_now);   /* unsigned difference survives the 2^32 wrap */
    g.last_now = now;
    return now;
}

/* One log line "L text" from a w_fmt template whose first character is the level letter. */
static void log_fmt(const char *fmt, ...)
{
    ph_writer w;
    va_list ap;
    w_init(&w, g_log, sizeof g_log);
    va_start(ap, fmt);
    w_vfmt(&w, fmt, ap);
    va_end(ap);
    log_message(g_log, (int32_t)w.len);
}

static void log_peer(char level, const ph_peer *p, const char *what)
{
    log_fmt("%c peer %8 %s", level, p->id, what);
}

static void count_send(int32_t rc)
{
    if (rc < 0) g.drop.send_failed++;
    else g.frames_out++;
}

static void send_out(const ph_peer *to, const ph_writer *w)
{
    if (w->overflow) {   /* cannot happen with PH_OUT_SIZE; never send half a frame if it does */
        g.drop.send_failed++;
        return;
    }
    count_send(ws_send_to_peer(to->conn, w->buf, (int32_t)w->len));
}

/* Starts a frame in the output buffer: w_fmt(`fmt`, ...) */
static void frame_fmt(ph_writer *w, const char *fmt, ...)
{
    va_list ap;
    w_init(w, g_out, sizeof g_out);
    va_start(ap, fmt);
    w_vfmt(w, fmt, ap);
    va_end(ap);
}

/* The tail of every frame the hub itself addresses to `to`, then sends it. */
static void send_system(const ph_peer *to, ph_writer *w, int64_t ts)
{
    w_fmt(w, ",\"fromPeerId\":\"system\",\"targetPeerId\":\"%S\",\"timestamp\":%d}", to->id,
          (uint32_t)PH_PEER_ID_LEN, ts);
    send_out(to, w);
}

/* {"type":"error","error":"<a><b><c>","timestamp":T}; the parts are JSON-safe string content. */
static void send_error(const ph_peer *to, const char *a, const char *b, uint32_t b_len,
                       const char *c, int64_t ts)
{
    ph_writer w;
    frame_fmt(&w, "{\"type\":\"error\",\"error\":\"%s%S%s\",\"timestamp\":%d}", a, b, b_len, c, ts);
    send_out(to, &w);
}

/* peer-discovered about `about`, to `to`; networkName is about's network. */
static void send_discovered(const ph_peer *to, const ph_peer *about, int64_t ts)
{
    ph_writer w;
    frame_fmt(&w, "{\"type\":\"peer-discovered\",\"data\":{\"peerId\":\"%S\",\"isHub\":%b%S},"
                  "\"networkName\":\"%S\"",
              about->id, (uint32_t)PH_PEER_ID_LEN, (int)about->is_hub, about->extra,
              (uint32_t)about->extra_len, about->net, (uint32_t)about->net_len);
    send_system(to, &w, ts);
}

static void send_departed(const ph_peer *to, const ph_peer *gone, const char *reason, int64_t ts)
{
    ph_writer w;
    frame_fmt(&w, "{\"type\":\"peer-disconnected\",\"data\":{\"peerId\":\"%S\",\"isHub\":%b,"
                  "\"reason\":\"%s\",\"timestamp\":%d},\"networkName\":\"%S\"",
              gone->id, (uint32_t)PH_PEER_ID_LEN, (int)gone->is_hub, reason, ts, gone->net,
              (uint32_t)gone->net_len);
    send_system(to, &w, ts);
}

/* {"type":"<type>"[,"data":<data>] — relayed frames carry `data` byte for byte, or omit it. */
static void frame_relay(ph_writer *w, const char *type, const json_val *data)
{
    frame_fmt(w, "{\"type\":\"%s\"", type);
    if (data->kind != JV_NONE) w_fmt(w, ",\"data\":%S", data->p, data->n);
}

/* --- membership ------------------------------------------------------------------------------ */

static int is_mesh(const char *net, uint32_t n)
{
    return n == sizeof PH_MESH_NETWORK - 1 && memcmp(net, PH_MESH_NETWORK, n) == 0;
}

/* The one place a peer leaves its network: exactly one peer-disconnected per remaining member. */
static void leave_network(ph_peer *p, const char *reason, int64_t ts)
{
    if (!p->announced) return;
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        ph_peer *q = &g_peers[i];
        if (q != p && peer_in_network(q, p->net, p->net_len)) send_departed(q, p, reason, ts);
    }
    p->announced = 0;
}

static uint32_t network_count(void)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        const ph_peer *p = &g_peers[i];
        if (p->state != PEER_OPEN || !p->announced) continue;
        uint32_t j = 0;
        while (j < i && !peer_in_network(&g_peers[j], p->net, p->net_len)) j++;
        n += j == i;   /* first member of its network */
    }
    return n;
}

/* --- frame handlers ------------------------------------------------------------------------- */

/* networkName of a frame the way the reference reads it (`message.networkName || "global"`): missing,
 * null, false and "" mean "global". Returns 0 for other non-strings (no network can match them). */
static int frame_network(const json_top *f, const char **net, uint32_t *len)
{
    const json_val *v = &f->networkName;
    if (v->kind == JV_STRING && json_str_n(v) > 0) {
        *net = json_str_p(v);
        *len = json_str_n(v);
        return 1;
    }
    *net = "global";
    *len = 6;
    return v->kind == JV_NONE || v->kind == JV_NULL || v->kind == JV_FALSE || v->kind == JV_STRING;
}

static int is_peer_id(const char *s, uint32_t n)
{
    if (n != PH_PEER_ID_LEN) return 0;
    for (uint32_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return 0;
    }
    return 1;
}

static void handle_announce(ph_peer *p, const json_top *frame, int64_t ts)
{
    const char *net;
    uint32_t net_len;
    if (!frame_network(frame, &net, &net_len)) {
        g.drop.bad_announce++;
        send_error(p, "announce networkName must be a string", "", 0, "", ts);
        return;
    }
    if (net_len > PH_NETWORK_MAX) {
        g.drop.bad_announce++;
        send_error(p, "announce networkName too long (max ", "64", 2, " bytes)", ts);
        return;
    }
    json_val data = frame->data;
    if (data.kind == JV_OBJECT && data.n > PH_ANNOUNCE_DATA_MAX) {
        g.drop.bad_announce++;
        send_error(p, "announce data too large (max ", "256", 3, " bytes)", ts);
        return;
    }

    /* Keep the members other than peerId/isHub (peerId is always the connection's id: no
     * spoofing; isHub is recomputed). Keys compare decoded, so "peer\u0049d" is caught too. */
    char extra[PH_ANNOUNCE_DATA_MAX];
    ph_writer x;
    w_init(&x, extra, sizeof extra);
    int hub = is_mesh(net, net_len);
    if (data.kind == JV_OBJECT) {
        json_iter it;
        json_val k, v;
        json_iter_init(&it, &data);
        while (json_iter_next(&it, &k, &v)) {
            if (json_str_equals(&k, "peerId")) continue;
            if (json_str_equals(&k, "isHub")) {
                hub |= v.kind == JV_TRUE;
                continue;
            }
            w_fmt(&x, ",%S:%S", k.p, k.n, v.p, v.n);
        }
    }

    int same = p->announced && p->net_len == net_len && memcmp(p->net, net, net_len) == 0;
    if (p->announced && !same) leave_network(p, "network change", ts);
    memcpy(p->net, net, net_len);
    p->net_len = (uint8_t)net_len;
    memcpy(p->extra, extra, x.len);
    p->extra_len = (uint16_t)x.len;
    p->is_hub = (uint8_t)hub;
    if (same) {
        /* Same network again: data updated, nobody is introduced twice (ABI.md). */
        log_peer('I', p, "re-announced");
        return;
    }
    p->announced = 1;

    uint32_t members = 0;
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        ph_peer *q = &g_peers[i];
        if (q != p && peer_in_network(q, net, net_len)) {
            send_discovered(q, p, ts);
            members++;
        }
    }
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        ph_peer *q = &g_peers[i];
        if (q != p && peer_in_network(q, net, net_len)) send_discovered(p, q, ts);
    }
    /* Hub links (protocol.md §6.7): a hub learns every client of every network, and hubs learn
     * of each new client, whatever network they announced in themselves. */
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        ph_peer *q = &g_peers[i];
        if (q == p || q->state != PEER_OPEN || !q->announced || peer_in_network(q, net, net_len)) {
            continue;
        }
        if (hub && !q->is_hub) send_discovered(p, q, ts);
        if (!hub && q->is_hub) send_discovered(q, p, ts);
    }

    log_fmt("I peer %8%s%S' (%u other peers there)", p->id,
            hub ? " announced as hub in '" : " announced in '", net, net_len, members);
}

static void handle_relay(ph_peer *p, const char *type, const json_top *frame, int64_t ts)
{
    json_val target = frame->targetPeerId;
    if (target.kind != JV_STRING || json_str_n(&target) == 0) {
        g.drop.no_target++;
        return;
    }
    const char *net;
    uint32_t net_len;
    if (!frame_network(frame, &net, &net_len)) {
        g.drop.cross_network++;
        return;
    }
    int from_hub = p->announced && p->is_hub;
    const char *from = p->id;
    if (from_hub) {
        /* A hub relays for peers on other hubs: it names the original sender. */
        json_val f = frame->fromPeerId;
        if (f.kind == JV_STRING && is_peer_id(json_str_p(&f), json_str_n(&f))) from = json_str_p(&f);
    }
    const char *tid = json_str_p(&target);
    uint32_t tid_len = json_str_n(&target);
    ph_peer *t = peer_by_id(tid, tid_len);
    if (t) {
        const char *tnet;
        uint32_t tnet_len;
        peer_network(t, &tnet, &tnet_len);
        if (tnet_len != net_len || memcmp(tnet, net, net_len) != 0) {
            g.drop.cross_network++;
            return;
        }
        /* Hubs must not build the npm 1.1.x WebRTC hub mesh through us (protocol.md §6.4). */
        if (from_hub && t->is_hub && is_mesh(net, net_len)) {
            g.drop.hub_mesh++;
            return;
        }
    } else if (from_hub || is_mesh(net, net_len) || !is_peer_id(tid, tid_len)) {
        g.drop.unknown_target++;   /* never hub -> hub onwards: no loops without a TTL field */
        return;
    }

    ph_writer w;
    frame_relay(&w, type, &frame->data);
    w_fmt(&w, ",\"fromPeerId\":\"%S\",\"targetPeerId\":\"%S\",\"networkName\":\"%S\",\"timestamp\":%d}",
          from, (uint32_t)PH_PEER_ID_LEN, tid, tid_len, net, net_len, ts);
    if (t) {
        send_out(t, &w);
        return;
    }
    /* Unknown here: hand it to the attached hubs, which may hold the target. */
    uint32_t hubs = 0;
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        ph_peer *h = &g_peers[i];
        if (h != p && h->state == PEER_OPEN && h->announced && h->is_hub) {
            send_out(h, &w);
            hubs++;
        }
    }
    if (!hubs) g.drop.unknown_target++;
}

static void handle_goodbye(ph_peer *p, const json_top *frame, int64_t ts)
{
    if (!p->announced) {
        log_peer('D', p, "said goodbye outside any network");
        return;
    }
    ph_writer w;
    frame_relay(&w, "goodbye", &frame->data);
    w_fmt(&w, ",\"fromPeerId\":\"%S\",\"networkName\":\"%S\",\"timestamp\":%d}", p->id,
          (uint32_t)PH_PEER_ID_LEN, p->net, (uint32_t)p->net_len, ts);

    uint32_t members = 0, others = 0;
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        ph_peer *q = &g_peers[i];
        if (q == p || q->state != PEER_OPEN) continue;
        others++;
        members += peer_in_network(q, p->net, p->net_len);
    }
    if (members && members == others && !w.overflow) {
        /* Identical bytes for every other connection: one broadcast instead of N sends. */
        int32_t n = ws_broadcast(w.buf, (int32_t)w.len, p->conn);
        if (n < 0) g.drop.send_failed++;
        else g.frames_out += (uint32_t)n;
    } else {
        for (uint32_t i = 0; i < MAX_PEERS; i++) {
            ph_peer *q = &g_peers[i];
            if (q != p && peer_in_network(q, p->net, p->net_len)) send_out(q, &w);
        }
    }
    leave_network(p, "goodbye", ts);
    log_peer('I', p, "said goodbye");
}

/* A hub forwards a peer it knows: pass it to our clients of that network (protocol.md §6.2). */
static void handle_hub_discovered(ph_peer *p, const json_top *frame, int64_t ts)
{
    if (!p->announced || !p->is_hub) {
        log_peer('D', p, "sent peer-discovered but is not a hub: ignored");
        return;
    }
    const char *net;
    uint32_t net_len;
    json_val data = frame->data;
    json_val pid = data.kind == JV_OBJECT ? json_get(&data, "peerId") : data;
    if (!frame_network(frame, &net, &net_len) || pid.kind != JV_STRING) {
        g.drop.invalid_json++;
        return;
    }
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        ph_peer *q = &g_peers[i];
        if (q->is_hub || !peer_in_network(q, net, net_len)) continue;
        if (json_str_n(&pid) == PH_PEER_ID_LEN && memcmp(json_str_p(&pid), q->id, PH_PEER_ID_LEN) == 0) {
            continue;   /* never introduce a peer to itself */
        }
        ph_writer w;
        frame_fmt(&w, "{\"type\":\"peer-discovered\",\"data\":%S,\"networkName\":\"%S\"", data.p,
                  data.n, net, net_len);
        send_system(q, &w, ts);
    }
}

/* --- exports -------------------------------------------------------------------------------- */

#ifdef __wasm__
#define STACK_PAINT 0xA5
#define STACK_FLOOR 16u   /* keep address 0 (the null pointer) untouched */

/* The stack grows down from PH_STACK_SIZE towards 0 (--stack-first). Paint what init() does not
 * use; get_stats() reports how deep any call has reached since (first overwritten byte). */
static void stack_paint(void)
{
    volatile char here;
    uintptr_t top = (uintptr_t)&here - 64;
    for (uintptr_t a = STACK_FLOOR; a < top; a++) *(volatile char *)a = (char)STACK_PAINT;
}

static uint32_t stack_high_water(void)
{
    uintptr_t a = STACK_FLOOR;
    while (a < PH_STACK_SIZE && *(volatile unsigned char *)a == STACK_PAINT) a++;
    return (uint32_t)(PH_STACK_SIZE - a);
}
extern char __data_end[];
extern char __heap_base[];
#endif

int32_t init(void)
{
    memset(&g, 0, sizeof g);
    memset(g_peers, 0, sizeof g_peers);
#ifdef __wasm__
    stack_paint();
#endif
    /* Hub id = hex(SHA-1("pigeonhub-hub-id:" + device id)): stable per device, see ABI.md. */
    char dev[PH_DEVICE_ID_MAX + 1];
    uint8_t msg[sizeof PH_HUB_ID_PREFIX - 1 + PH_DEVICE_ID_MAX];
    uint8_t digest[20];
    memset(dev, 0, sizeof dev);
    get_device_id(dev, PH_DEVICE_ID_MAX);
    dev[PH_DEVICE_ID_MAX] = '\0';
    uint32_t dev_len = ph_strlen(dev);
    memcpy(msg, PH_HUB_ID_PREFIX, sizeof PH_HUB_ID_PREFIX - 1);
    memcpy(msg + sizeof PH_HUB_ID_PREFIX - 1, dev, dev_len);
    ph_sha1(msg, (uint32_t)(sizeof PH_HUB_ID_PREFIX - 1 + dev_len), digest);
    for (int i = 0; i < 20; i++) {
        g_hub_id[2 * i] = "0123456789abcdef"[digest[i] >> 4];
        g_hub_id[2 * i + 1] = "0123456789abcdef"[digest[i] & 15];
    }
    g_hub_id[PH_PEER_ID_LEN] = '\0';
    g.last_now = millis();

    log_fmt("I hub %8 ready: abi %u, max %u peers, frames up to %u bytes", g_hub_id,
            (uint32_t)PH_ABI_VERSION, (uint32_t)MAX_PEERS, (uint32_t)MAX_MESSAGE_SIZE);
    return 0;
}

int32_t start_server(int32_t port)
{
    int32_t rc = ws_server_start(port);
    log_fmt(rc == 0 ? "I listening on port %d" : "E ws_server_start failed for port %d",
            (int64_t)port);
    if (rc == 0) g.running = 1;
    return rc;
}

void stop_server(void)
{
    /* Everyone is being closed: departures are silent (no N^2 peer-disconnected burst). */
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        ph_peer *p = &g_peers[i];
        if (p->state != PEER_OPEN) continue;
        ws_close_peer(p->conn, PH_CLOSE_GOING_AWAY, PH_REASON_SHUTDOWN, sizeof PH_REASON_SHUTDOWN - 1);
        p->announced = 0;
        p->state = PEER_CLOSING;
    }
    g.running = 0;
    ws_server_stop();
    log_message("I server stopped", 16);
}

/* The first `peerId` query parameter (URLSearchParams.get semantics), any path. NULL if absent. */
static const char *url_peer_id(const char *url, uint32_t n, uint32_t *len)
{
    uint32_t i = 0;
    while (i < n && url[i] != '?') i++;
    while (i < n) {
        uint32_t s = ++i;   /* skip '?' or '&' */
        while (i < n && url[i] != '&') i++;
        uint32_t eq = s;
        while (eq < i && url[eq] != '=') eq++;
        if (eq - s == 6 && memcmp(url + s, "peerId", 6) == 0) {
            uint32_t v = eq < i ? eq + 1 : i;
            *len = i - v;
            return url + v;
        }
    }
    return 0;
}

static void refuse(int32_t conn, const char *reason, uint32_t reason_len, const char *why)
{
    ws_close_peer(conn, PH_CLOSE_POLICY, reason, (int32_t)reason_len);
    log_fmt("W connection %d refused: %s", (int64_t)conn, why);
}

#define REFUSE(conn, reason, why) refuse(conn, reason, sizeof reason - 1, why)

/* "I peer 0123abcd… connected (3/20)": slots in use, including those being closed. */
static void log_slots(const ph_peer *p, const char *what)
{
    log_fmt("I peer %8%s%u/%u)", p->id, what, (uint32_t)(MAX_PEERS - peer_count(PEER_FREE)),
            (uint32_t)MAX_PEERS);
}

void on_peer_connected(int32_t conn)
{
    uint32_t now = now_ms();
    if (peer_by_conn(conn)) {
        log_message("E on_peer_connected: connection id already in use", 49);
        return;
    }
    /* The URL goes into the input buffer: no frame is in flight during this call. The import
     * has snprintf's contract (at most size-1 bytes + NUL, returns the full length), so a result
     * >= the size means the URL was cut: refused rather than parsed half. */
    int32_t n = ws_get_request_url(conn, g_in, MAX_MESSAGE_SIZE);
    uint32_t id_len = 0;
    const char *id = (n > 0 && n < MAX_MESSAGE_SIZE) ? url_peer_id(g_in, (uint32_t)n, &id_len) : 0;
    if (!id || !is_peer_id(id, id_len)) {
        REFUSE(conn, PH_REASON_INVALID_ID, "invalid peerId");
        return;
    }
    if (peer_by_id(id, id_len)) {
        REFUSE(conn, PH_REASON_DUPLICATE_ID, "peerId already connected");
        return;
    }
    ph_peer *p = peer_alloc(conn);
    if (!p) {
        REFUSE(conn, PH_REASON_FULL, "hub full");
        return;
    }
    memcpy(p->id, id, PH_PEER_ID_LEN);
    p->last_activity = now;

    ph_writer w;
    frame_fmt(&w, "{\"type\":\"connected\",\"data\":{\"peerId\":\"%S\"},\"fromPeerId\":\"system\","
                  "\"timestamp\":%d}", p->id, (uint32_t)PH_PEER_ID_LEN, wall_clock_ms());
    send_out(p, &w);
    log_slots(p, " connected (");
}

void on_peer_disconnected(int32_t conn)
{
    ph_peer *p = peer_by_conn(conn);
    if (!p) return;   /* a connection refused in on_peer_connected: nothing was kept */
    now_ms();
    if (p->state == PEER_OPEN) leave_network(p, "Connection closed", wall_clock_ms());
    p->state = PEER_FREE;
    log_slots(p, " disconnected (");
}

void on_message(int32_t conn, const char *ptr, int32_t len)
{
    g.frames_in++;
    /* The bridge refuses frames over MAX_MESSAGE_SIZE (1009) before they get here; this check
     * keeps a buggy or hostile bridge from making the hub read outside its own buffer. */
    uintptr_t off = (uintptr_t)ptr - (uintptr_t)g_in;
    if (len < 0 || len > MAX_MESSAGE_SIZE || (uintptr_t)ptr < (uintptr_t)g_in ||
        off > (uintptr_t)(MAX_MESSAGE_SIZE - len)) {
        g.drop.too_big++;
        log_message("W on_message: frame outside the input buffer, dropped", 53);
        return;
    }
    ph_peer *p = peer_by_conn(conn);
    if (!p || p->state != PEER_OPEN) {
        g.drop.unknown_conn++;
        return;
    }
    p->last_activity = now_ms();
    p->pinged = 0;

    /* One validating pass that also records the top-level members the handlers need. */
    json_top frame;
    int rc = json_scan(ptr, (uint32_t)len, &frame);
    json_val type = frame.type;
    if (rc != PH_JSON_OK || type.kind != JV_STRING) {
        g.drop.invalid_json++;
        log_peer('D', p, rc == PH_JSON_UTF8    ? "sent invalid UTF-8: ignored"
                         : rc == PH_JSON_DEPTH ? "sent JSON nested too deep: ignored"
                         : rc == PH_JSON_NOT_OBJECT ? "sent JSON that is not an object: ignored"
                         : rc != PH_JSON_OK    ? "sent invalid JSON: ignored"
                                               : "sent a frame without a string type: ignored");
        return;
    }
    int64_t ts = wall_clock_ms();

    for (uint32_t i = 0; i < sizeof RELAY_TYPES / sizeof RELAY_TYPES[0]; i++) {
        if (json_str_equals(&type, RELAY_TYPES[i])) {
            handle_relay(p, RELAY_TYPES[i], &frame, ts);
            return;
        }
    }
    if (json_str_equals(&type, "announce")) {
        handle_announce(p, &frame, ts);
    } else if (json_str_equals(&type, "ping")) {
        ph_writer w;
        frame_fmt(&w, "{\"type\":\"pong\",\"data\":{\"timestamp\":%d}", ts);
        send_system(p, &w, ts);
    } else if (json_str_equals(&type, "goodbye")) {
        handle_goodbye(p, &frame, ts);
    } else if (json_str_equals(&type, "cleanup")) {
        log_peer('I', p, "requested cleanup");
    } else if (json_str_equals(&type, "peer-discovered")) {
        handle_hub_discovered(p, &frame, ts);
    } else if (json_str_equals(&type, "peer-disconnected") && p->announced && p->is_hub) {
        log_peer('D', p, "(hub) reported a peer-disconnected");   /* nothing cached to purge */
#ifdef PH_TEST_HOOKS
    } else if (json_str_equals(&type, "__test_trap")) {
        __builtin_trap();   /* bridge tests: prove the hub survives a trap */
#endif
    } else {
        g.drop.unknown_type++;
        uint32_t n = json_safe_prefix(json_str_p(&type), json_str_n(&type), PH_TYPE_ECHO_MAX);
        send_error(p, "Signaling server does not route '", json_str_p(&type), n,
                   "' messages. Use WebRTC data channels for peer-to-peer communication.", ts);
    }
}

void on_pong(int32_t conn)
{
    ph_peer *p = peer_by_conn(conn);
    if (!p || p->state != PEER_OPEN) return;
    p->last_activity = now_ms();
    p->pinged = 0;
}

void loop(void)
{
    uint32_t now = now_ms();
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        ph_peer *p = &g_peers[i];
        if (p->state != PEER_OPEN) continue;
        uint32_t silent = now - p->last_activity;   /* wrap-safe */
        if (silent >= PEER_TIMEOUT) {
            log_peer('W', p, "timed out");
            ws_close_peer(p->conn, PH_CLOSE_GOING_AWAY, PH_REASON_TIMEOUT, sizeof PH_REASON_TIMEOUT - 1);
            leave_network(p, PH_REASON_TIMEOUT, wall_clock_ms());
            p->state = PEER_CLOSING;
        } else if (silent >= HEARTBEAT_INTERVAL &&
                   (!p->pinged || (uint32_t)(now - p->last_ping) >= HEARTBEAT_INTERVAL)) {
            if (ws_ping_peer(p->conn) < 0) g.drop.send_failed++;
            p->pinged = 1;
            p->last_ping = now;
        }
    }
}

int32_t is_running(void) { return g.running; }

int32_t get_peer_count(void) { return (int32_t)peer_count(PEER_OPEN); }

/* Writes "k1":v1,"k2":v2,... from a NUL-separated key list; table-driven to keep the code small. */
static void w_fields(ph_writer *w, const char *keys, const uint32_t *vals, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        w_fmt(w, &",\"%s\":%u"[i == 0], keys, vals[i]);
        keys += ph_strlen(keys) + 1;
    }
}

static const char STAT_KEYS[] =
    "abiVersion\0peers\0announced\0hubs\0networks\0connections\0maxPeers\0framesIn\0framesOut";
static const char DROP_KEYS[] =
    "invalidJson\0unknownType\0noTarget\0unknownTarget\0crossNetwork\0sendFailed\0tooBig\0"
    "badAnnounce\0unknownConn\0hubMesh";
static const char MEM_KEYS[] =
    "pages\0bytes\0dataEnd\0heapBase\0stackSize\0stackHighWater\0inputBuffer\0outputBuffer\0peerTable";

void get_stats(char *buf, int32_t size)
{
    if (!buf || size <= 0) return;
    uint32_t announced = 0, hubs = 0;
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        const ph_peer *p = &g_peers[i];
        announced += p->state == PEER_OPEN && p->announced;
        hubs += p->state == PEER_OPEN && p->announced && p->is_hub;
    }
    now_ms();
    uint32_t stats[] = {PH_ABI_VERSION, peer_count(PEER_OPEN), announced, hubs, network_count(),
                        MAX_PEERS - peer_count(PEER_FREE), MAX_PEERS, g.frames_in, g.frames_out};
    uint32_t drops[] = {g.drop.invalid_json, g.drop.unknown_type, g.drop.no_target,
                        g.drop.unknown_target, g.drop.cross_network, g.drop.send_failed,
                        g.drop.too_big, g.drop.bad_announce, g.drop.unknown_conn, g.drop.hub_mesh};
#ifdef __wasm__
    uint32_t pages = (uint32_t)__builtin_wasm_memory_size(0);
    uint32_t mem[] = {pages, pages * PH_WASM_PAGE_BYTES, (uintptr_t)__data_end,
                      (uintptr_t)__heap_base, PH_STACK_SIZE, stack_high_water(),
                      sizeof g_in, sizeof g_out, sizeof g_peers};
#else
    uint32_t mem[] = {0, 0, 0, 0, 0, 0, sizeof g_in, sizeof g_out, sizeof g_peers};
#endif
    ph_writer w;
    w_init(&w, buf, (uint32_t)size - 1);   /* room for the NUL */
    w_fmt(&w, "{\"running\":%b,\"hubId\":\"%S\",", (int)g.running, g_hub_id,
          (uint32_t)PH_PEER_ID_LEN);
    w_fields(&w, STAT_KEYS, stats, sizeof stats / sizeof stats[0]);
    w_str(&w, ",\"dropped\":{");
    w_fields(&w, DROP_KEYS, drops, sizeof drops / sizeof drops[0]);
    w_fmt(&w, "},\"uptimeMs\":%d,\"memory\":{", (int64_t)g.uptime_ms);
    w_fields(&w, MEM_KEYS, mem, sizeof mem / sizeof mem[0]);
    w_str(&w, "}}");
    if (w.overflow) w.len = 0;   /* never a cut-off document: an empty string says "too small" */
    buf[w.len] = '\0';
}

const char *get_hub_id(void) { return g_hub_id; }

int32_t abi_version(void) { return PH_ABI_VERSION; }

char *get_input_buffer(void) { return g_in; }

int32_t get_input_buffer_size(void) { return MAX_MESSAGE_SIZE; }
