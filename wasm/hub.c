/*
 * hub.c — the PeerPigeon hub protocol: exports, connection lifecycle and frame dispatch.
 *
 * Everything the hub knows lives in static memory sized at compile time (no allocator): the peer
 * table (peers.c), one input buffer the bridge writes frames into and relays are built in, one
 * small output buffer for the frames the hub composes (buffers.h). Incoming text is validated
 * completely (json.c) before any of it is looked at; what is relayed is validated input, byte for
 * byte. wasm/ABI.md describes the ABI, the protocol decisions and the memory layout;
 * docs/PROTOCOL.md is the wire reference.
 *
 * Hub mesh (ABI 2, docs/PROTOCOL.md §7): a *hub connection* is either an incoming hub (a
 * peer-table connection that announced as a hub) or an outgoing link this hub dialed (g_links, one
 * per configured bootstrap hub). Both teach us remote peers (g_remote, for late joiners and
 * routing) and carry cross-hub signaling; a short-lived hash ring (g_seen) keeps cycles of hubs
 * from looping or amplifying frames.
 */
#include "buffers.h"
#include "frame.h"
#include "json.h"
#include "mesh.h"
#include "peers.h"
#include "ph_port.h"
#include "sha1.h"

#ifndef PH_STACK_SIZE
#define PH_STACK_SIZE 3072          /* must equal the linker's -z stack-size (build.py passes both) */
#endif
#define PH_TYPE_ECHO_MAX 64         /* bytes of an unknown type quoted back in the error frame     */
#define PH_DEVICE_ID_MAX 64
#define PH_HUB_ID_PREFIX "pigeonhub-hub-id:"
#define PH_MESH_NETWORK "pigeonhub-mesh"
#define PH_SEEN_TTL 5000            /* ms a relayed frame's hash is remembered                      */
#define PH_BACKOFF_MIN 1000         /* ms: first re-dial delay, doubled per failure ...             */
#define PH_BACKOFF_MAX 60000        /* ... up to this, each +-25 % jitter                           */
#define PH_LINK_STABLE 30000        /* ms open after which a closed link starts over at 1 s         */
#define PH_URL_MAX 200              /* bytes of a bootstrap hub URL                                 */
#define HUB_SLOTS (MAX_PEERS + PH_MAX_HUB_LINKS)

static char g_hub_id[PH_PEER_ID_LEN + 1];
static char g_log[192];
/* Defined here rather than in peers.c: the tables most accessed come first in memory (see
 * buffers.c), so more of their addresses take 2-byte constants. */
ph_peer g_peers[MAX_PEERS];

/* An outgoing hub link; slot k dials bootstrap hub `index`. The URL is not stored: it is read
 * again with get_bootstrap_hub whenever it is needed (dial, log line, stats). */
enum { LINK_UNUSED = 0, LINK_BACKOFF, LINK_CONNECTING, LINK_OPEN, LINK_CLOSING };
/* A link's counters and their /stats keys, in one table. */
#define LINK_COUNTERS(X)                  \
    X(LINK_LEARNED, "peersLearned")       \
    X(LINK_RELAYED, "framesRelayed")      \
    X(LINK_RECONNECTS, "reconnects")      \
    X(LINK_WAIT, "nextRetryMs")
/* The hub's drop counters and their /stats keys ("dropped"), in one table. */
#define DROP_COUNTERS(X)                        \
    X(DROP_INVALID_JSON, "invalidJson")         \
    X(DROP_UNKNOWN_TYPE, "unknownType")         \
    X(DROP_NO_TARGET, "noTarget")               \
    X(DROP_UNKNOWN_TARGET, "unknownTarget")     \
    X(DROP_CROSS_NETWORK, "crossNetwork")       \
    X(DROP_SEND_FAILED, "sendFailed")           \
    X(DROP_TOO_BIG, "tooBig")                   \
    X(DROP_BAD_ANNOUNCE, "badAnnounce")         \
    X(DROP_UNKNOWN_CONN, "unknownConn")         \
    X(DROP_HUB_MESH, "hubMesh")                 \
    X(DROP_DEDUP, "dedup")
#define COUNTER_ENUM(id, key) id,
#define COUNTER_KEY(id, key) key "\0"   /* a w_fields key list */
enum { LINK_COUNTERS(COUNTER_ENUM) LINK_COUNTER_COUNT };
enum { DROP_COUNTERS(COUNTER_ENUM) DROP_COUNT };
typedef struct {
    int32_t conn;
    uint32_t due;                  /* millis() of the next dial (BACKOFF)                       */
    uint32_t delay;                /* ms, base of the next backoff                              */
    uint32_t since;                /* millis() it opened                                        */
    uint32_t last_activity, last_ping;
    uint32_t counters[LINK_COUNTER_COUNT];   /* stats (LINK_WAIT: set by get_stats)          */
    uint8_t state, opened, index;
} ph_link;
static ph_link g_links[PH_MAX_HUB_LINKS];

static struct {
    uint8_t running;
    uint8_t seen_next, remote_next;
    int32_t port;
    uint32_t rng;                  /* xorshift32 state: backoff jitter                         */
    uint32_t last_now;             /* millis() at the previous reading, for uptime across wrap */
    uint64_t uptime_ms;
    uint32_t frames_in, frames_out;
    uint32_t drop[DROP_COUNT];
} g;

/* The frame types the hub acts on, NUL-separated; the first RELAY_COUNT are relayed.
 * connection-rejected is deliberately absent: relaying it breaks real 1.1.3 clients. Two fresh
 * peers both offer; the larger id rejects the other's offer, and a delivered rejection makes the
 * smaller one close the connection it is answering at that moment (1 of 6 WebRTC connections
 * completed with relaying, 6 of 6 without). Like the reference, it gets the `error` frame. */
#define FRAME_TYPES(X)                                \
    X(T_OFFER, "offer")                               \
    X(T_ANSWER, "answer")                             \
    X(T_ICE_CANDIDATE, "ice-candidate")               \
    X(T_RENEGOTIATION_OFFER, "renegotiation-offer")   \
    X(T_RENEGOTIATION_ANSWER, "renegotiation-answer") \
    X(T_ICE_RESTART_OFFER, "ice-restart-offer")       \
    X(T_ICE_RESTART_ANSWER, "ice-restart-answer")     \
    X(T_ANNOUNCE, "announce")                         \
    X(T_PING, "ping")                                 \
    X(T_GOODBYE, "goodbye")                           \
    X(T_CLEANUP, "cleanup")                           \
    X(T_DISCOVERED, "peer-discovered")                \
    X(T_DISCONNECTED, "peer-disconnected")
#define TYPE_KEY(id, name) JSON_KEY(name),
enum { FRAME_TYPES(COUNTER_ENUM) T_COUNT };
#define PH_TYPE_NAME_MAX 20          /* "renegotiation-answer": room for a relay's head (relay_frame) */
#define TYPE_NAME_FITS(id, name) _Static_assert(sizeof(name) - 1 <= PH_TYPE_NAME_MAX, name " is too long");
FRAME_TYPES(TYPE_NAME_FITS)
static const json_key TYPES[] = { FRAME_TYPES(TYPE_KEY) };   /* a json_str_lookup table */
#define RELAY_COUNT T_ANNOUNCE   /* the types before it are relayed */

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
    if (rc < 0) g.drop[DROP_SEND_FAILED]++;
    else g.frames_out++;
}

static void send_conn(int32_t conn, const ph_writer *w)
{
    if (w->overflow) {   /* cannot happen with PH_OUT_SIZE; never send half a frame if it does */
        g.drop[DROP_SEND_FAILED]++;
        return;
    }
    count_send(ws_send_to_peer(conn, w->buf, (int32_t)w->len));
}

static void send_out(const ph_peer *to, const ph_writer *w) { send_conn(to->conn, w); }

/* Starts a frame in the output buffer: w_fmt(`fmt`, ...) */
static void frame_fmt(ph_writer *w, const char *fmt, ...)
{
    va_list ap;
    w_init(w, g_out, sizeof g_out);
    va_start(ap, fmt);
    w_vfmt(w, fmt, ap);
    va_end(ap);
}

/* The tail of every frame the hub itself originates, then sends it: addressed to `to_id` (40
 * chars), or without targetPeerId (NULL: an outgoing link, whose far hub id we do not know). */
static void send_tail(int32_t conn, const char *to_id, ph_writer *w, int64_t ts)
{
    if (to_id) w_fmt(w, ",\"fromPeerId\":\"system\",\"targetPeerId\":\"%S\",\"timestamp\":%d}", to_id,
                     (uint32_t)PH_PEER_ID_LEN, ts);
    else w_fmt(w, ",\"fromPeerId\":\"system\",\"timestamp\":%d}", ts);
    send_conn(conn, w);
}

static void send_system(const ph_peer *to, ph_writer *w, int64_t ts) { send_tail(to->conn, to->id, w, ts); }

/* {"type":"error","error":"<a><b><c>","timestamp":T}; the parts are JSON-safe string content. */
static void send_error(const ph_peer *to, const char *a, const char *b, uint32_t b_len,
                       const char *c, int64_t ts)
{
    ph_writer w;
    frame_fmt(&w, "{\"type\":\"error\",\"error\":\"%s%S%s\",\"timestamp\":%d}", a, b, b_len, c, ts);
    send_out(to, &w);
}

/* peer-discovered (reason NULL) or peer-disconnected about peer `id` (40 chars) of network `net`,
 * to `conn` (see send_tail for to_id). The one builder of both frames, local or remote peer. */
static void tell(int32_t conn, const char *to_id, const char *id, int is_hub, const char *extra,
                 uint32_t extra_len, const char *net, uint32_t net_len, const char *reason, int64_t ts)
{
    ph_writer w;
    if (reason) extra_len = 0;   /* a departure names the peer only */
    frame_fmt(&w, "{\"type\":\"peer-%s\",\"data\":{\"peerId\":\"%S\",\"isHub\":%b%S",
              reason ? "disconnected" : "discovered", id, (uint32_t)PH_PEER_ID_LEN, is_hub, extra,
              extra_len);
    if (reason) w_fmt(&w, ",\"reason\":\"%s\",\"timestamp\":%d", reason, ts);
    w_fmt(&w, "},\"networkName\":\"%S\"", net, net_len);
    send_tail(conn, to_id, &w, ts);
}

/* About local peer `about` to `conn`. */
static void tell_peer(int32_t conn, const char *to_id, const ph_peer *about, const char *reason,
                      int64_t ts)
{
    tell(conn, to_id, about->id, about->is_hub, about->extra, about->extra_len, about->net,
         about->net_len, reason, ts);
}

static void send_discovered(const ph_peer *to, const ph_peer *about, int64_t ts)
{
    tell_peer(to->conn, to->id, about, 0, ts);
}

/* Relays: {"type":"<type>"[,"data":<data>]<tail>. `data` stays where it arrived, in g_in, and the
 * envelope is written around it: the head right before it, the tail right after it (data that came
 * first in its frame moves right to make room). The caller writes the tail first, in g_out: it
 * may quote parts of g_in that the envelope overwrites. */
#define FROM_KEY ",\"fromPeerId\":\""
#define TARGET_KEY "\",\"targetPeerId\":\""
#define NETWORK_KEY "\",\"networkName\":\""
#define TIMESTAMP_KEY "\",\"timestamp\":"
#define INT64_CHARS 20
#define RELAY_HEAD_MAX (LIT_LEN("{\"type\":\"\",\"data\":") + PH_TYPE_NAME_MAX)
/* handle_relay's tail, the longest (a goodbye's names no target) */
#define RELAY_TAIL_MAX (LIT_LEN(FROM_KEY) + PH_PEER_ID_LEN + LIT_LEN(TARGET_KEY) + PH_PEER_ID_LEN + \
                        LIT_LEN(NETWORK_KEY) + PH_NETWORK_MAX + LIT_LEN(TIMESTAMP_KEY) + INT64_CHARS + 1)
_Static_assert(RELAY_HEAD_MAX + RELAY_TAIL_MAX <= PH_RELAY_ROOM, "PH_RELAY_ROOM cannot hold a relay's envelope");

/* `w` holds the relay's tail, written in g_out (frame_fmt); it becomes the whole relay. */
static void relay_frame(ph_writer *w, const json_key *type, const json_val *data)
{
    uint32_t tail = w->len;   /* it cannot overflow g_out (RELAY_TAIL_MAX) */
    uint32_t data_key = data->kind != JV_NONE ? LIT_LEN(",\"data\":") : 0;
    uint32_t head = LIT_LEN("{\"type\":\"\"") + type->len + data_key;
    char *d = data_key ? (char *)data->p : g_in;   /* without data: 0 bytes moved to g_in + head */
    if ((uint32_t)(d - g_in) < head) d = memmove(g_in + head, d, data->n);
    w_init(w, d - head, sizeof g_in);   /* the asserts above guarantee the room */
    W_LIT(w, "{\"type\":\"");
    w_raw(w, type->name, type->len);
    w_raw(w, "\",\"data\":", 1 + data_key);   /* the closing quote, and the data key if any */
    w_reserve(w, data->n);                       /* the data, in place already (0 bytes if none) */
    w_raw(w, g_out, tail);
}

/* --- membership ------------------------------------------------------------------------------ */

static int is_mesh(const char *net, uint32_t n)
{
    return EQUALS_LIT(net, n, PH_MESH_NETWORK);
}

/* --- hub connections: incoming hubs and outgoing links ----------------------------------------- */

/* Hub slot i < HUB_SLOTS names a peer-table entry (i < MAX_PEERS) or a link; returns its
 * connection when that is a hub connection now (an announced incoming hub, an open link), else -1. */
static int32_t hub_conn(uint32_t i)
{
    if (i < MAX_PEERS) {
        const ph_peer *p = &g_peers[i];
        return p->state == PEER_OPEN && p->announced && p->is_hub ? p->conn : -1;
    }
    const ph_link *l = &g_links[i - MAX_PEERS];
    return l->state == LINK_OPEN ? l->conn : -1;
}

static ph_link *link_by_conn(int32_t conn)
{
    for (uint32_t k = 0; k < PH_MAX_HUB_LINKS; k++) {
        ph_link *l = &g_links[k];
        if (l->state >= LINK_CONNECTING && l->conn == conn) return l;
    }
    return 0;
}

/* "L hub link <url><rest>": fmt starts with the level letter; the rest follows the URL. */
static void log_link(const ph_link *l, const char *fmt, ...)
{
    ph_writer w;
    va_list ap;
    w_init(&w, g_log, sizeof g_log);
    w_fmt(&w, "%c hub link %U", fmt[0], (uint32_t)l->index);
    va_start(ap, fmt);
    w_vfmt(&w, fmt + 1, ap);
    va_end(ap);
    log_message(g_log, (int32_t)w.len);
}

/* FNV-1a: network names in the remote cache, and the dedup keys. */
#define FNV_BASIS 2166136261u
static uint32_t fnv(uint32_t h, const char *p, uint32_t n)
{
    while (n--) h = (h ^ (unsigned char)*p++) * 16777619u;
    return h;
}

static ph_remote *remote_find(const char *id)
{
    for (uint32_t k = 0; k < PH_REMOTE_MAX; k++) {
        ph_remote *r = &g_remote[k];
        if (r->id[0] && memcmp(r->id, id, PH_PEER_ID_LEN) == 0) return r;
    }
    return 0;
}

/* Remembers remote peer `id` of network hash `net` behind hub connection `via` (a free slot, else
 * the oldest entry). 1 when it is news for our clients: unknown before, or in another network. */
static int remote_learn(const char *id, uint32_t net, int32_t via)
{
    ph_remote *r = remote_find(id), *slot = r;
    for (uint32_t k = 0; !slot && k < PH_REMOTE_MAX; k++) {
        if (!g_remote[k].id[0]) slot = &g_remote[k];
    }
    if (!slot) {   /* full: evict in learning order, the oldest first */
        slot = &g_remote[g.remote_next];
        g.remote_next = (uint8_t)((g.remote_next + 1) % PH_REMOTE_MAX);
    }
    int news = !r || r->net != net;
    memcpy(slot->id, id, PH_PEER_ID_LEN);
    slot->net = net;
    slot->via = via;
    return news;
}

/* About remote peer `id` of network hash `net` to each local non-hub peer of that network, in its
 * own words: peer-discovered (reason NULL) or peer-disconnected, data {peerId, isHub:false}. */
static void tell_locals(const char *id, uint32_t net, const char *reason, int64_t ts)
{
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        const ph_peer *q = &g_peers[i];
        if (q->state == PEER_OPEN && q->announced && !q->is_hub &&
            fnv(FNV_BASIS, q->net, q->net_len) == net && memcmp(q->id, id, PH_PEER_ID_LEN) != 0) {
            tell(q->conn, q->id, id, 0, "", 0, q->net, q->net_len, reason, ts);
        }
    }
}

static void remote_forget(ph_remote *r, const char *reason, int64_t ts)
{
    tell_locals(r->id, r->net, reason, ts);
    r->id[0] = 0;
}

/* A hub connection is gone: so are the peers we knew only through it. */
static void remote_purge(int32_t via, int64_t ts)
{
    for (uint32_t k = 0; k < PH_REMOTE_MAX; k++) {
        if (g_remote[k].id[0] && g_remote[k].via == via) remote_forget(&g_remote[k], "Hub connection lost", ts);
    }
}

/* Local peer p arrived in its network (reason NULL) or left it: one frame to every hub connection
 * not in that network (members heard it already). Incoming hubs get it addressed to their id,
 * links without targetPeerId. Never a raw client announce/goodbye (docs/PROTOCOL.md §7.3). */
static void tell_hubs(const ph_peer *p, const char *reason, int64_t ts)
{
    for (uint32_t i = 0; i < HUB_SLOTS; i++) {
        int32_t c = hub_conn(i);
        if (c < 0) continue;
        const ph_peer *q = i < MAX_PEERS ? &g_peers[i] : 0;
        if (q && (q == p || peer_in_network(q, p->net, p->net_len))) continue;
        tell_peer(c, q ? q->id : 0, p, reason, ts);
    }
}

/* Introduces every local announced non-hub peer (but those of network `skip`, who were told
 * otherwise) to hub connection `conn`: a new incoming hub (to_id its id) or a link (to_id NULL). */
static void tell_clients(int32_t conn, const char *to_id, const char *skip, uint32_t skip_len,
                         int64_t ts)
{
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        const ph_peer *q = &g_peers[i];
        if (q->state == PEER_OPEN && q->announced && !q->is_hub && !peer_in_network(q, skip, skip_len)) {
            tell_peer(conn, to_id, q, 0, ts);
        }
    }
}

/* The one place a peer leaves its network: exactly one peer-disconnected per remaining member and
 * per hub connection; a hub leaving takes the remote peers learned through it along. */
static void leave_network(ph_peer *p, const char *reason, int64_t ts)
{
    if (!p->announced) return;
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        ph_peer *q = &g_peers[i];
        if (q != p && peer_in_network(q, p->net, p->net_len)) tell_peer(q->conn, q->id, p, reason, ts);
    }
    if (p->is_hub) remote_purge(p->conn, ts);
    else tell_hubs(p, reason, ts);
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

/* json_top.each of an announce's data: copies every member but peerId/isHub into the writer. */
static void keep_extra(json_top *d, const json_val *k, const json_val *v)
{
    if (!json_str_equals(k, "peerId") && !json_str_equals(k, "isHub")) {
        w_fmt(d->ctx, ",%S:%S", k->p, k->n, v->p, v->n);
    }
}

static void handle_announce(ph_peer *p, const json_top *frame, int64_t ts)
{
    const char *net;
    uint32_t net_len;
    json_val data = frame->data;
    const char *bad = !frame_network(frame, &net, &net_len) ? "announce networkName must be a string"
                      : net_len > PH_NETWORK_MAX ? "announce networkName too long (max 64 bytes)"
                      : data.kind == JV_OBJECT && data.n > PH_ANNOUNCE_DATA_MAX
                          ? "announce data too large (max 256 bytes)" : 0;
    if (bad) {   /* nothing changes */
        g.drop[DROP_BAD_ANNOUNCE]++;
        send_error(p, bad, "", 0, "", ts);
        return;
    }

    /* Keep the members other than peerId/isHub (peerId is always the connection's id: no
     * spoofing; isHub is recomputed). Keys compare decoded, so "peer\u0049d" is caught too. */
    char extra[PH_ANNOUNCE_DATA_MAX];
    ph_writer x;
    w_init(&x, extra, sizeof extra);
    json_top d;
    d.each = keep_extra;
    d.ctx = &x;
    if (data.kind != JV_OBJECT) data.n = 0;   /* anything else counts as {} */
    json_scan(data.p, data.n, &d);
    int hub = is_mesh(net, net_len) || d.isHub.kind == JV_TRUE;

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

    /* Each member and the newcomer learn of each other (every connection sees its frames in
     * the reference's order). */
    uint32_t members = 0;
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        ph_peer *q = &g_peers[i];
        if (q != p && peer_in_network(q, net, net_len)) {
            send_discovered(q, p, ts);
            send_discovered(p, q, ts);
            members++;
        }
    }
    /* Hub connections (docs/PROTOCOL.md §7.4): a new hub learns every client of every network,
     * and hubs learn of each new client, whatever network they announced in themselves. A new
     * client also learns the remote peers of its network (late joiner). */
    if (hub) {
        tell_clients(p->conn, p->id, net, net_len, ts);
    } else {
        tell_hubs(p, 0, ts);
        uint32_t h = fnv(FNV_BASIS, net, net_len);
        for (uint32_t k = 0; k < PH_REMOTE_MAX; k++) {
            const ph_remote *r = &g_remote[k];
            if (r->id[0] && r->net == h && memcmp(r->id, p->id, PH_PEER_ID_LEN) != 0) {
                tell(p->conn, p->id, r->id, 0, "", 0, net, net_len, 0, ts);
            }
        }
    }

    log_fmt("I peer %8%s%S' (%u other peers there)", p->id,
            hub ? " announced as hub in '" : " announced in '", net, net_len, members);
}

/* 1 when the same signaling frame (type, sender, target, data) crossed this hub in the last
 * PH_SEEN_TTL ms (counted in dropped.dedup); otherwise remembers it. A cycle of hubs thus delivers
 * and forwards each frame once: the protocol has no TTL or hop field (docs/PROTOCOL.md §7.5). */
static int seen_before(const json_key *type, const char *from, const char *tid, uint32_t tid_len,
                       const json_val *data)
{
    /* `type` points into TYPES, one address per type: hashing the pointer is hashing the type
     * (the ring is this hub's own). */
    uint32_t h = fnv(FNV_BASIS, (const char *)&type, sizeof type);
    h = fnv(fnv(fnv(h, from, PH_PEER_ID_LEN), tid, tid_len), data->p, data->n) | 1;
    for (uint32_t k = 0; k < PH_SEEN_SLOTS; k++) {
        if (g_seen[k].hash == h && g.last_now - g_seen[k].at < PH_SEEN_TTL) {
            g.drop[DROP_DEDUP]++;
            return 1;
        }
    }
    g_seen[g.seen_next].hash = h;
    g_seen[g.seen_next].at = g.last_now;
    g.seen_next = (uint8_t)((g.seen_next + 1) % PH_SEEN_SLOTS);
    return 0;
}

/* Signaling from connection `src`: a client (p), an incoming hub (p, from_hub) or a link (p NULL,
 * from_hub). Hubs relay for peers elsewhere, so their frames keep the fromPeerId they carry. */
static void handle_relay(int32_t src, const ph_peer *p, int from_hub, const json_key *type,
                         const json_top *frame, int64_t ts)
{
    json_val target = frame->targetPeerId;
    const char *net;
    uint32_t net_len;
    const char *from = p ? p->id : 0;
    json_val f = frame->fromPeerId;
    if (from_hub && f.kind == JV_STRING && is_peer_id(json_str_p(&f), json_str_n(&f))) from = json_str_p(&f);
    uint32_t *drop = &g.drop[DROP_NO_TARGET];
    if (target.kind != JV_STRING || json_str_n(&target) == 0) goto dropped;
    drop = &g.drop[DROP_CROSS_NETWORK];
    /* No network here or at a hub running this module is longer than an announce allows. */
    if (!frame_network(frame, &net, &net_len) || net_len > PH_NETWORK_MAX) goto dropped;
    /* Hubs relay signaling among hubs in pigeonhub-mesh to build the npm 1.1.x WebRTC hub mesh,
     * which cannot include us; never through us either (docs/PROTOCOL.md §7.7). */
    drop = &g.drop[DROP_HUB_MESH];
    if (from_hub && is_mesh(net, net_len)) goto dropped;
    drop = &g.drop[DROP_INVALID_JSON];
    if (!from) goto dropped;   /* a link frame naming no sender: nobody could answer it */

    const char *tid = json_str_p(&target);
    uint32_t tid_len = json_str_n(&target);
    ph_peer *t = peer_by_id(tid, tid_len);
    ph_link *l = link_by_conn(src);
    if (t) {
        const char *tnet;
        uint32_t tnet_len;
        peer_network(t, &tnet, &tnet_len);
        drop = &g.drop[DROP_CROSS_NETWORK];
        if (tnet_len != net_len || memcmp(tnet, net, net_len) != 0) goto dropped;
    } else {
        drop = &g.drop[DROP_UNKNOWN_TARGET];
        if (is_mesh(net, net_len) || !is_peer_id(tid, tid_len)) goto dropped;
    }
    if ((from_hub || !t) && seen_before(type, from, tid, tid_len, &frame->data)) return;
    /* Looked up now: the relay is built over the frame (relay_frame), tid included. */
    const ph_remote *r = t ? 0 : remote_find(tid);

    ph_writer w;
    frame_fmt(&w, FROM_KEY);
    /* One room check, then copies the engine runs natively: a w_raw per piece is a call each. */
    char *o = w_reserve(&w, PH_PEER_ID_LEN + LIT_LEN(TARGET_KEY) + tid_len + LIT_LEN(NETWORK_KEY) +
                                net_len + LIT_LEN(TIMESTAMP_KEY));
    if (o) {
        o = PUT(o, from, PH_PEER_ID_LEN);
        o = PUT(o, TARGET_KEY, LIT_LEN(TARGET_KEY));
        o = PUT(o, tid, tid_len);
        o = PUT(o, NETWORK_KEY, LIT_LEN(NETWORK_KEY));
        o = PUT(o, net, net_len);
        memcpy(o, TIMESTAMP_KEY, LIT_LEN(TIMESTAMP_KEY));
    }
    w_int(&w, ts);
    W_LIT(&w, "}");
    relay_frame(&w, type, &frame->data);
    uint32_t sent = 0;
    if (t) {
        send_out(t, &w);
        sent = 1;
    } else {
        /* Not here: to the hub connection the target was learned from, else to every hub
         * connection; never back to where it came from. */
        for (uint32_t i = 0; i < HUB_SLOTS; i++) {
            int32_t c = hub_conn(i);
            if (c < 0 || c == src || (r && c != r->via)) continue;
            send_conn(c, &w);
            sent++;
            if (i >= MAX_PEERS) g_links[i - MAX_PEERS].counters[LINK_RELAYED]++;
        }
    }
    if (sent) {
        if (l) l->counters[LINK_RELAYED]++;
        return;
    }
dropped:
    (*drop)++;
}

static void handle_goodbye(ph_peer *p, const json_top *frame, int64_t ts)
{
    if (!p->announced) return;   /* in no network: nobody to tell */
    ph_writer w;
    frame_fmt(&w, FROM_KEY "%S" NETWORK_KEY "%S" TIMESTAMP_KEY "%d}", p->id, (uint32_t)PH_PEER_ID_LEN, p->net,
              (uint32_t)p->net_len, ts);
    relay_frame(&w, &TYPES[T_GOODBYE], &frame->data);

    /* ws_broadcast also reaches links (from when the bridge has them open, which may be before
     * on_link_open arrives): any link forbids it, a raw goodbye must never cross one. */
    uint32_t members = 0, others = 0;
    for (uint32_t k = 0; k < PH_MAX_HUB_LINKS; k++) others += g_links[k].state >= LINK_CONNECTING;
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        ph_peer *q = &g_peers[i];
        if (q == p || q->state != PEER_OPEN) continue;
        others++;
        members += peer_in_network(q, p->net, p->net_len);
    }
    if (members && members == others && !w.overflow) {
        /* Identical bytes for every other connection: one broadcast instead of N sends. */
        int32_t n = ws_broadcast(w.buf, (int32_t)w.len, p->conn);
        if (n < 0) g.drop[DROP_SEND_FAILED]++;
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

/* A hub connection tells us about a peer (docs/PROTOCOL.md §7.4): a non-hub peer is remembered
 * and introduced to our clients of that network exactly as a late joiner later learns it
 * ({peerId, isHub:false}, targetPeerId = the recipient); clients read only data.peerId. */
static void hub_discovered(int32_t src, ph_link *l, const json_top *frame, int64_t ts)
{
    const char *net;
    uint32_t net_len;
    json_val data = frame->data;
    json_top d = {0};
    if (data.kind == JV_OBJECT) json_scan(data.p, data.n, &d);
    json_val pid = d.peerId;
    if (!frame_network(frame, &net, &net_len) || net_len > PH_NETWORK_MAX ||
        pid.kind != JV_STRING || !is_peer_id(json_str_p(&pid), json_str_n(&pid))) {
        g.drop[DROP_INVALID_JSON]++;
        return;
    }
    const char *id = json_str_p(&pid);
    if (d.isHub.kind == JV_TRUE || is_mesh(net, net_len) ||
        memcmp(id, g_hub_id, PH_PEER_ID_LEN) == 0 || peer_by_id(id, PH_PEER_ID_LEN)) {
        return;   /* hubs are not our clients' peers; a client of ours is no remote peer */
    }
    uint32_t h = fnv(FNV_BASIS, net, net_len);
    if (!remote_learn(id, h, src)) return;   /* told before */
    if (l) {
        l->counters[LINK_LEARNED]++;
        log_fmt("I learned peer %8 (%S) via %U", id, net, net_len, (uint32_t)l->index);
    } else {
        log_fmt("I learned peer %8 (%S) via hub %8", id, net, net_len, peer_by_conn(src)->id);
    }
    tell_locals(id, h, 0, ts);
}

/* A hub connection reports a peer gone (with or without networkName): forget it if we learned it
 * there, and tell our clients of its network once. Never an `error` back. */
static void hub_departed(int32_t src, const json_top *frame, int64_t ts)
{
    json_val data = frame->data;
    json_top d = {0};
    if (data.kind == JV_OBJECT) json_scan(data.p, data.n, &d);
    json_val pid = d.peerId;
    if (pid.kind != JV_STRING || json_str_n(&pid) != PH_PEER_ID_LEN) return;
    ph_remote *r = remote_find(json_str_p(&pid));
    if (r && r->via == src) remote_forget(r, "Peer disconnected", ts);
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

/* The device id, NUL-terminated, at most PH_DEVICE_ID_MAX bytes; returns its length. */
static uint32_t device_id(char dev[PH_DEVICE_ID_MAX + 1])
{
    memset(dev, 0, PH_DEVICE_ID_MAX + 1);
    get_device_id(dev, PH_DEVICE_ID_MAX);
    dev[PH_DEVICE_ID_MAX] = '\0';
    return ph_strlen(dev);
}

int32_t init(void)
{
    memset(&g, 0, sizeof g);
    memset(g_peers, 0, sizeof g_peers);
    memset(g_links, 0, sizeof g_links);
    memset(g_remote, 0, sizeof g_remote);
    memset(g_seen, 0, sizeof g_seen);
#ifdef __wasm__
    stack_paint();
#endif
    /* Hub id = hex(SHA-1("pigeonhub-hub-id:" + device id)): stable per device, see ABI.md. */
    char dev[PH_DEVICE_ID_MAX + 1];
    uint8_t msg[sizeof PH_HUB_ID_PREFIX - 1 + PH_DEVICE_ID_MAX];
    uint8_t digest[20];
    _Static_assert(sizeof msg <= PH_SHA1_MAX, "the hub id message must fit ph_sha1");
    uint32_t dev_len = device_id(dev);
    memcpy(msg, PH_HUB_ID_PREFIX, sizeof PH_HUB_ID_PREFIX - 1);
    memcpy(msg + sizeof PH_HUB_ID_PREFIX - 1, dev, dev_len);
    ph_sha1(msg, (uint32_t)(sizeof PH_HUB_ID_PREFIX - 1 + dev_len), digest);
    for (int i = 0; i < 20; i++) {
        g_hub_id[2 * i] = "0123456789abcdef"[digest[i] >> 4];
        g_hub_id[2 * i + 1] = "0123456789abcdef"[digest[i] & 15];
    }
    g_hub_id[PH_PEER_ID_LEN] = '\0';
    g.last_now = millis();
    memcpy(&g.rng, digest, sizeof g.rng);   /* jitter differs per hub ... */

    log_fmt("I hub %8 ready: abi %u, %u peers, frames <= %u bytes", g_hub_id,
            (uint32_t)PH_ABI_VERSION, (uint32_t)MAX_PEERS, (uint32_t)MAX_MESSAGE_SIZE);
    return 0;
}

/* --- outgoing hub links ------------------------------------------------------------------------- */

/* Schedules the next dial of l: the current delay +-25 % (so hubs restarted together do not dial
 * in step), then doubles the delay up to PH_BACKOFF_MAX. */
static void link_backoff(ph_link *l, uint32_t now, const char *why)
{
    uint32_t d = l->delay, j = d / 4;
    g.rng ^= g.rng << 13;
    g.rng ^= g.rng >> 17;
    g.rng ^= g.rng << 5;
    uint32_t wait = d - j + g.rng % (2 * j + 1);
    l->due = now + wait;
    l->delay = d >= PH_BACKOFF_MAX / 2 ? PH_BACKOFF_MAX : 2 * d;
    l->state = LINK_BACKOFF;
    log_link(l, "W %s, retry in %u.%u s", why, wait / 1000, wait / 100 % 10);
}

/* Dials bootstrap hub l->index as `<url>?peerId=<hub id>` ('&' when the URL has a query already). */
static void link_dial(ph_link *l, uint32_t now)
{
    /* The URL is built in g_out: dials happen in start_server and loop, never while a frame is.
     * Its bytes are the bridge's to judge (ws_connect < 0); one over PH_URL_MAX bytes fails
     * like a refused dial (logged, shown in stats, retried with backoff). */
    int32_t n = get_bootstrap_hub(l->index, g_out, PH_URL_MAX + 1);
    if (n <= 0) {   /* no such entry, or an empty one: no link */
        l->state = LINK_UNUSED;
        return;
    }
    uint32_t len = (uint32_t)n > PH_URL_MAX ? 0 : (uint32_t)n, query = 0;
    for (uint32_t i = 0; i < len; i++) query |= g_out[i] == '?';
    ph_writer w;
    w_init(&w, g_out, sizeof g_out);
    w.len = len;
    w_fmt(&w, "%cpeerId=%s", query ? '&' : '?', g_hub_id);   /* "?&peerId" parses as well */
    l->conn = len ? ws_connect(g_out, (int32_t)w.len) : -1;
    l->opened = 0;
    l->last_activity = now;
    l->state = LINK_CONNECTING;
    if (l->conn < 0) link_backoff(l, now, "dial failed");
}

void on_link_open(int32_t conn)
{
    uint32_t now = now_ms();
    ph_link *l = link_by_conn(conn);
    if (!l || l->state != LINK_CONNECTING) return;   /* e.g. closed by stop_server meanwhile */
    l->state = LINK_OPEN;
    l->opened = 1;
    l->since = l->last_activity = l->last_ping = now;
    log_link(l, "I open");
    /* Our hub announce exactly as a PigeonHub hub sends it (docs/PROTOCOL.md §7.2), then our
     * clients. */
    char host[PH_DEVICE_ID_MAX + 1];
    uint32_t host_len = device_id(host);
    ph_printable(host, host_len);
    int64_t ts = wall_clock_ms();
    ph_writer w;
    frame_fmt(&w, "{\"type\":\"announce\",\"networkName\":\"" PH_MESH_NETWORK "\",\"data\":{\"isHub\":"
                  "true,\"port\":%d,\"host\":\"%S\",\"capabilities\":[\"signaling\",\"relay\"],"
                  "\"timestamp\":%d}}", (int64_t)g.port, host, host_len, ts);
    send_conn(conn, &w);
    tell_clients(conn, 0, "", 0, ts);
}

/* The link's socket is gone (closed, refused, timed out): forget what it taught us, and dial again
 * later unless the server stopped. A link that was up for PH_LINK_STABLE starts over at 1 s. */
static void link_closed(ph_link *l, uint32_t now)
{
    if (l->opened) remote_purge(l->conn, wall_clock_ms());
    if (l->opened && now - l->since >= PH_LINK_STABLE) l->delay = PH_BACKOFF_MIN;
    if (!g.running) {
        l->state = LINK_UNUSED;
        return;
    }
    link_backoff(l, now, l->opened ? "closed" : "failed");
    l->opened = 0;
}

int32_t start_server(int32_t port)
{
    uint32_t now = now_ms();
    int32_t rc = ws_server_start(port);
    log_fmt(rc == 0 ? "I listening on port %d" : "E ws_server_start failed for port %d",
            (int64_t)port);
    if (rc != 0) return rc;
    g.running = 1;
    g.port = port;
    g.rng ^= now * 2654435761u;   /* ... and per start */
    if (!g.rng) g.rng = 1;        /* xorshift never leaves 0 */
    /* Link k dials bootstrap hub entry k (missing/empty entries: no link). A link still closing
     * from a previous run is re-dialed when its close arrives. */
    for (uint32_t k = 0; k < PH_MAX_HUB_LINKS; k++) {
        ph_link *l = &g_links[k];
        if (l->state != LINK_UNUSED) continue;
        memset(l, 0, sizeof *l);
        l->index = (uint8_t)k;
        l->delay = PH_BACKOFF_MIN;
        link_dial(l, now);
    }
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
    for (uint32_t k = 0; k < PH_MAX_HUB_LINKS; k++) {
        ph_link *l = &g_links[k];
        if (l->state == LINK_CONNECTING || l->state == LINK_OPEN) {
            ws_close_peer(l->conn, PH_CLOSE_GOING_AWAY, PH_REASON_SHUTDOWN,
                          sizeof PH_REASON_SHUTDOWN - 1);
            l->state = LINK_CLOSING;
            l->opened = 0;
        } else if (l->state == LINK_BACKOFF) {
            l->state = LINK_UNUSED;
        }
    }
    memset(g_remote, 0, sizeof g_remote);
    g.running = 0;
    ws_server_stop();
    LOG_LIT("I server stopped");
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
        if (EQUALS_LIT(url + s, eq - s, "peerId")) {
            uint32_t v = eq < i ? eq + 1 : i;
            *len = i - v;
            return url + v;
        }
    }
    return 0;
}

/* Closes 1008 with `reason` and logs it: "W connection 7 refused: Invalid peerId format". */
static void refuse(int32_t conn, const char *reason, uint32_t reason_len)
{
    ws_close_peer(conn, PH_CLOSE_POLICY, reason, (int32_t)reason_len);
    log_fmt("W connection %d refused: %S", (int64_t)conn, reason, reason_len);
}

#define REFUSE(conn, reason) refuse(conn, reason, sizeof reason - 1)

/* "I peer 0123abcd… connected (3/20)": slots in use, including those being closed. */
static void log_slots(const ph_peer *p, const char *what)
{
    log_fmt("I peer %8%s%u/%u)", p->id, what, (uint32_t)(MAX_PEERS - peer_count(PEER_FREE)),
            (uint32_t)MAX_PEERS);
}

void on_peer_connected(int32_t conn)
{
    uint32_t now = now_ms();
    if (peer_by_conn(conn)) return;   /* the bridge reported it twice: keep the first */
    /* The URL goes into the input buffer: no frame is in flight during this call. The import
     * has snprintf's contract (at most size-1 bytes + NUL, returns the full length), so a result
     * >= the size means the URL was cut: refused rather than parsed half. */
    int32_t n = ws_get_request_url(conn, g_in, MAX_MESSAGE_SIZE);
    uint32_t id_len = 0;
    const char *id = (n > 0 && n < MAX_MESSAGE_SIZE) ? url_peer_id(g_in, (uint32_t)n, &id_len) : 0;
    if (!id || !is_peer_id(id, id_len)) {
        REFUSE(conn, PH_REASON_INVALID_ID);
        return;
    }
    if (peer_by_id(id, id_len)) {
        REFUSE(conn, PH_REASON_DUPLICATE_ID);
        return;
    }
    ph_peer *p = peer_alloc(conn);
    if (!p) {
        REFUSE(conn, PH_REASON_FULL);
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
    ph_link *l = link_by_conn(conn);
    if (l) {
        link_closed(l, now_ms());
        return;
    }
    ph_peer *p = peer_by_conn(conn);
    if (!p) return;   /* a connection refused in on_peer_connected: nothing was kept */
    now_ms();
    if (p->state == PEER_OPEN) leave_network(p, "Connection closed", wall_clock_ms());
    p->state = PEER_FREE;
    log_slots(p, " disconnected (");
}

/* How much of an unknown frame type a log line or error frame repeats. */
static uint32_t type_echo(const json_val *type)
{
    return json_safe_prefix(json_str_p(type), json_str_n(type), PH_TYPE_ECHO_MAX);
}

void on_message(int32_t conn, const char *ptr, int32_t len)
{
    g.frames_in++;
    /* The bridge refuses frames over MAX_MESSAGE_SIZE (1009) before they get here; this check
     * keeps a buggy or hostile bridge from making the hub read outside its own buffer. */
    uintptr_t off = (uintptr_t)ptr - (uintptr_t)g_in;
    if (len < 0 || len > MAX_MESSAGE_SIZE || (uintptr_t)ptr < (uintptr_t)g_in ||
        off > (uintptr_t)(MAX_MESSAGE_SIZE - len)) {
        g.drop[DROP_TOO_BIG]++;
        LOG_LIT("W frame outside the input buffer");
        return;
    }
    ph_link *l = link_by_conn(conn);
    ph_peer *p = l ? 0 : peer_by_conn(conn);
    if (l ? l->state != LINK_OPEN : !p || p->state != PEER_OPEN) {
        g.drop[DROP_UNKNOWN_CONN]++;
        return;
    }
    uint32_t now = now_ms();
    if (l) {
        l->last_activity = now;   /* any frame, a pong to our ping included */
    } else {
        p->last_activity = now;
        p->pinged = 0;
    }

    /* One validating pass that also records the top-level members the handlers need. */
    json_top frame;
    frame.each = 0;
    int rc = json_scan(ptr, (uint32_t)len, &frame);
    json_val type = frame.type;
    if (rc != PH_JSON_OK || type.kind != JV_STRING) {
        g.drop[DROP_INVALID_JSON]++;
        /* counted only: a log line per garbage frame would let a client flood the log */
        return;
    }
    int64_t ts = wall_clock_ms();
    int hub = l || (p->announced && p->is_hub);

    /* One pass over the known types: kind is the index of the type in TYPES. */
    uint32_t kind = json_str_lookup(&type, TYPES, T_COUNT, 0);
    if (kind < RELAY_COUNT) {
        handle_relay(conn, p, hub, &TYPES[kind], &frame, ts);
    } else if (hub && kind == T_DISCOVERED) {
        hub_discovered(conn, l, &frame, ts);
    } else if (hub && kind == T_DISCONNECTED) {
        hub_departed(conn, &frame, ts);
    } else if (l) {
        /* connected, pong, error, ...: the far hub talking to us as to a client. Never answered:
         * an error frame back would start an error ping-pong between two hubs. */
        log_link(l, "D sent '%S': ignored", json_str_p(&type), type_echo(&type));
    } else if (kind == T_ANNOUNCE) {
        handle_announce(p, &frame, ts);
    } else if (kind == T_PING) {
        ph_writer w;
        frame_fmt(&w, "{\"type\":\"pong\",\"data\":{\"timestamp\":%d}", ts);
        send_system(p, &w, ts);
    } else if (kind == T_GOODBYE) {
        handle_goodbye(p, &frame, ts);
    } else if (kind == T_CLEANUP) {
        log_peer('I', p, "requested cleanup");
    } else if (kind == T_DISCOVERED) {
        /* only hubs tell of peers (docs/PROTOCOL.md §7.1): ignored, as by the reference */
#ifdef PH_TEST_HOOKS
    } else if (json_str_equals(&type, "__test_trap")) {
        __builtin_trap();   /* bridge tests: prove the hub survives a trap */
#endif
    } else {
        g.drop[DROP_UNKNOWN_TYPE]++;
        send_error(p, "Signaling server does not route '", json_str_p(&type), type_echo(&type),
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
    int64_t ts = wall_clock_ms();
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        ph_peer *p = &g_peers[i];
        if (p->state != PEER_OPEN) continue;
        uint32_t silent = now - p->last_activity;   /* wrap-safe */
        if (silent >= PEER_TIMEOUT) {
            log_peer('W', p, "timed out");
            ws_close_peer(p->conn, PH_CLOSE_GOING_AWAY, PH_REASON_TIMEOUT, sizeof PH_REASON_TIMEOUT - 1);
            leave_network(p, PH_REASON_TIMEOUT, ts);
            p->state = PEER_CLOSING;
        } else if (silent >= HEARTBEAT_INTERVAL &&
                   (!p->pinged || (uint32_t)(now - p->last_ping) >= HEARTBEAT_INTERVAL)) {
            if (ws_ping_peer(p->conn) < 0) g.drop[DROP_SEND_FAILED]++;
            p->pinged = 1;
            p->last_ping = now;
        }
    }
    for (uint32_t k = 0; k < PH_MAX_HUB_LINKS; k++) {
        ph_link *l = &g_links[k];
        if (l->state == LINK_BACKOFF) {
            if (g.running && (int32_t)(now - l->due) >= 0) {
                l->counters[LINK_RECONNECTS]++;
                link_dial(l, now);
            }
        } else if (l->state == LINK_CONNECTING || l->state == LINK_OPEN) {
            if (now - l->last_activity >= PEER_TIMEOUT) {
                /* Dead (or never answering): closed, re-dialed with backoff on its close. */
                log_link(l, "W timed out");
                ws_close_peer(l->conn, PH_CLOSE_GOING_AWAY, PH_REASON_TIMEOUT,
                              sizeof PH_REASON_TIMEOUT - 1);
                if (l->opened) remote_purge(l->conn, ts);
                l->state = LINK_CLOSING;
            } else if (l->state == LINK_OPEN && now - l->last_ping >= HEARTBEAT_INTERVAL) {
                /* An application ping: PigeonHub hubs send no keepalive, and proxies drop idle
                 * sockets; its pong keeps the link active (docs/PROTOCOL.md §8). */
                ph_writer w;
                frame_fmt(&w, "{\"type\":\"ping\",\"data\":{\"timestamp\":%d}}", ts);
                send_conn(l->conn, &w);
                l->last_ping = now;
            }
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

/* get_stats' top-level figures and its "memory" ones: key and value in one table each, expanded
 * inside get_stats (the values name its locals). */
#define HUB_FIGURES(X)                                  \
    X("abiVersion", PH_ABI_VERSION)                     \
    X("peers", peer_count(PEER_OPEN))                   \
    X("announced", announced)                           \
    X("hubs", hubs)                                     \
    X("networks", network_count())                      \
    X("connections", MAX_PEERS - peer_count(PEER_FREE)) \
    X("maxPeers", MAX_PEERS)                            \
    X("framesIn", g.frames_in)                          \
    X("framesOut", g.frames_out)                        \
    X("remotePeers", remote)
#define MEMORY_FIGURES(X)                   \
    X("pages", pages)                       \
    X("bytes", pages * PH_WASM_PAGE_BYTES)  \
    X("dataEnd", data_end)                  \
    X("heapBase", heap_base)                \
    X("stackSize", stack_size)              \
    X("stackHighWater", stack_used)         \
    X("inputBuffer", MAX_MESSAGE_SIZE)
#define FIGURE_KEY(key, value) key "\0"
#define FIGURE_VALUE(key, value) (uint32_t)(value),
static const char STAT_KEYS[] = HUB_FIGURES(FIGURE_KEY);
static const char DROP_KEYS[] = DROP_COUNTERS(COUNTER_KEY);
static const char MEM_KEYS[] = MEMORY_FIGURES(FIGURE_KEY);
static const char LINK_KEYS[] = LINK_COUNTERS(COUNTER_KEY);
static const char *const LINK_STATES[] = {"", "backoff", "connecting", "open", "closing"};

void get_stats(char *buf, int32_t size)
{
    if (!buf || size <= 0) return;
    uint32_t announced = 0, hubs = 0, remote = 0;
    for (uint32_t i = 0; i < MAX_PEERS || i < PH_REMOTE_MAX; i++) {
        if (i < PH_REMOTE_MAX) remote += g_remote[i].id[0] != 0;
        if (i >= MAX_PEERS) continue;
        const ph_peer *p = &g_peers[i];
        announced += peer_in_network(p, p->net, p->net_len);
        hubs += hub_conn(i) >= 0;
    }
    now_ms();
    uint32_t now = g.last_now;
    uint32_t stats[] = {HUB_FIGURES(FIGURE_VALUE)};
#ifdef __wasm__
    uint32_t pages = (uint32_t)__builtin_wasm_memory_size(0);
    uint32_t data_end = (uintptr_t)__data_end, heap_base = (uintptr_t)__heap_base;
    uint32_t stack_size = PH_STACK_SIZE, stack_used = stack_high_water();
#else
    uint32_t pages = 0, data_end = 0, heap_base = 0, stack_size = 0, stack_used = 0;   /* no linear memory */
#endif
    uint32_t mem[] = {MEMORY_FIGURES(FIGURE_VALUE)};
    ph_writer w;
    w_init(&w, buf, (uint32_t)size - 1);   /* room for the NUL */
    w_fmt(&w, "{\"running\":%b,\"hubId\":\"%S\",", (int)g.running, g_hub_id,
          (uint32_t)PH_PEER_ID_LEN);
    w_fields(&w, STAT_KEYS, stats, sizeof stats / sizeof stats[0]);
    w_str(&w, ",\"dropped\":{");
    w_fields(&w, DROP_KEYS, g.drop, DROP_COUNT);
    w_str(&w, "},\"links\":[");
    const char *sep = "";
    for (uint32_t k = 0; k < PH_MAX_HUB_LINKS; k++) {
        ph_link *l = &g_links[k];
        if (l->state == LINK_UNUSED) continue;
        l->counters[LINK_WAIT] = l->state == LINK_BACKOFF && (int32_t)(l->due - now) > 0 ? l->due - now : 0;
        w_fmt(&w, "%s{\"url\":\"%U\",\"state\":\"%s\",", sep, (uint32_t)l->index, LINK_STATES[l->state]);
        w_fields(&w, LINK_KEYS, l->counters, LINK_COUNTER_COUNT);
        w_str(&w, "}");
        sep = ",";
    }
    w_fmt(&w, "],\"uptimeMs\":%d,\"memory\":{", (int64_t)g.uptime_ms);
    w_fields(&w, MEM_KEYS, mem, sizeof mem / sizeof mem[0]);
    w_str(&w, "}}");
    if (w.overflow) w.len = 0;   /* never a cut-off document: an empty string says "too small" */
    buf[w.len] = '\0';
}

const char *get_hub_id(void) { return g_hub_id; }

int32_t abi_version(void) { return PH_ABI_VERSION; }

char *get_input_buffer(void) { return g_in; }

int32_t get_input_buffer_size(void) { return MAX_MESSAGE_SIZE; }
