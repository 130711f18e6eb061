/*
 * fuzz_bridge.c — libFuzzer target: a sequence of transport events driven into the bridge core
 * (lib/pigeonhub_bridge) running the real hub.wasm on WASM3 0.5.0.
 *
 * Modules: $HUB_WASM (default: the --test-hooks build the Makefile passes as FUZZ_HUB_WASM) and
 * $HUB_WASM2 (default FUZZ_HUB_WASM2, the plain build): "swap" alternates between the two.
 *
 * Input: byte 0 = flags (bit 0: the transport reports bytes written from inside send(); bit 1:
 * small outbox limit 512 bytes instead of 4 KiB), then events, each one opcode byte + operands:
 *   op % 9 == 0  open: next byte k; k < 6 -> one of six valid peer URLs, else a URL of (k - 6) % 64
 *                bytes taken from the input
 *   op % 9 == 1  frame: conn selector, 2-byte length (little endian, high byte % 0x48), that many
 *                bytes; high byte 0xFF: only ph_bridge_accepts_frame for input size + 1 + low byte
 *   op % 9 == 2  close (transport reports it): conn selector
 *   op % 9 == 3  pong: conn selector
 *   op % 9 == 4  tick: clock += next byte * 1000 ms, then ph_bridge_tick
 *   op % 9 == 5  link open: every link still dialing
 *   op % 9 == 6  swap to the other module
 *   op % 9 == 7  bytes written: conn selector (all its unsent bytes reported by ph_bridge_on_sent)
 *   op % 9 == 8  closes done: the transport reports on_close for every close the bridge asked for
 * A conn selector byte indexes the host's table of connections it knows (including dead ids, and
 * one id never handed out), so stale and foreign ids are exercised too.
 *
 * FUZZ_VERBOSE=1 prints the log lines (to see what an input does).
 *
 * Invariants checked after every event (abort = a crash libFuzzer reports):
 *   - ph_bridge_connection_count == accepted opens - closes reported; link_count likewise;
 *   - every close the bridge asks for (ops->close) comes once per connection, and never for an id
 *     the transport reported closed; no send or ping for such an id either;
 *   - unsent bytes per connection (counted by this transport) never exceed outbox_limit_bytes;
 *   - no slot stays in use that the transport does not have open (traps included): the bridge's
 *     slots in use == the transport's live connections, and every closed id is free;
 *   - the /stats peer list fits ph_bridge_peers_capacity and lists no more than the open peers;
 *   - at the end, after every connection closed: no slot in use, no connection, no link.
 */
#include "fuzz_support.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ph_bridge.h"
#include "ph_bridge_internal.h"

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_bridge: " __VA_ARGS__);                                              \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) FAIL("invariant violated: " #cond ": " __VA_ARGS__);                          \
    } while (0)

#ifndef FUZZ_HUB_WASM
#define FUZZ_HUB_WASM "hub-test.wasm"
#endif
#ifndef FUZZ_HUB_WASM2
#define FUZZ_HUB_WASM2 "hub.wasm"
#endif

typedef struct {
    uint8_t *data;
    size_t len;
} blob;
static blob g_mod[2];
static int g_verbose;   /* FUZZ_VERBOSE=1: print the bridge's and the module's log lines */

static blob read_file(const char *path)
{
    blob b = {0, 0};
    FILE *f = fopen(path, "rb");
    if (!f) FAIL("cannot open module %s (set HUB_WASM / HUB_WASM2)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.data = malloc((size_t)n);
    if (!b.data || fread(b.data, 1, (size_t)n, f) != (size_t)n) FAIL("cannot read %s", path);
    b.len = (size_t)n;
    fclose(f);
    return b;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *a = getenv("HUB_WASM"), *b = getenv("HUB_WASM2"), *v = getenv("FUZZ_VERBOSE");
    g_verbose = v && *v == '1';
    g_mod[0] = read_file(a && *a ? a : FUZZ_HUB_WASM);
    g_mod[1] = read_file(b && *b ? b : FUZZ_HUB_WASM2);
    return 0;
}

/* --- the transport ------------------------------------------------------------------------------ */

#define HOST_MAX 128
typedef struct {
    int32_t id;
    uint8_t link;           /* a link from ops->connect                      */
    uint8_t alive;          /* open in the transport: no on_close reported   */
    uint8_t dialing;        /* link: waiting for on_link_open                */
    uint8_t close_asked;    /* ops->close was called for it                  */
    uint32_t unsent;        /* bytes handed to send, not yet reported        */
} host_conn;

static struct {
    ph_bridge *b;
    host_conn c[HOST_MAX];
    int n;
    uint32_t now;
    uint32_t limit;
    int sent_inline;
    int opening;            /* inside ph_bridge_on_open: a new id may show up in send/close */
    int32_t opened;         /* the id that showed up, or -1                                  */
    uint32_t opens, closes, links, link_closes;
} H;

static host_conn *find(int32_t id)
{
    for (int i = H.n - 1; i >= 0; i--)
        if (H.c[i].id == id) return &H.c[i];
    return NULL;
}

static host_conn *add(int32_t id, int link)
{
    if (H.n == HOST_MAX) FAIL("host table full");
    CHECK(!find(id) || !find(id)->alive, "id %d handed out while still open", (int)id);
    host_conn *c = &H.c[H.n++];
    memset(c, 0, sizeof *c);
    c->id = id;
    c->link = (uint8_t)link;
    c->alive = 1;
    c->dialing = (uint8_t)link;
    return c;
}

/* The module greets a new connection from inside ph_bridge_on_open, before its id is returned. */
static host_conn *find_or_opening(int32_t conn)
{
    host_conn *c = find(conn);
    if ((!c || !c->alive) && H.opening && H.opened < 0) {
        c = add(conn, 0);
        H.opened = conn;
    }
    return c;
}


static int t_send(void *ctx, int32_t conn, const uint8_t *frame, size_t len)
{
    (void)ctx;
    host_conn *c = find_or_opening(conn);
    CHECK(c && c->alive, "send to conn %d the transport does not have open", (int)conn);
    CHECK(!c->dialing, "send to link %d before its handshake", (int)conn);
    CHECK(len > 0 && len <= 64 * 1024, "send length %zu", len);
    touch(frame, len);   /* readable for all of len */
    c->unsent += (uint32_t)len;
    CHECK(!H.limit || c->unsent <= H.limit, "conn %d: %u unsent bytes, limit %u", (int)conn,
          (unsigned)c->unsent, (unsigned)H.limit);
    if (H.sent_inline) {
        ph_bridge_on_sent(H.b, conn, len);   /* allowed from any thread, also from inside send */
        c->unsent -= (uint32_t)len;
    }
    return 0;
}

static void t_close(void *ctx, int32_t conn, uint16_t code, const char *reason, size_t len)
{
    (void)ctx;
    host_conn *c = find_or_opening(conn);
    CHECK(c && c->alive, "close of conn %d the transport does not have open", (int)conn);
    CHECK(!c->close_asked, "conn %d: close asked twice", (int)conn);
    CHECK(code >= 1000 && code <= 4999, "close code %u", (unsigned)code);
    CHECK(len <= PH_MAX_CLOSE_REASON, "close reason of %zu bytes", len);
    touch(reason, len);   /* readable for all of len */
    c->close_asked = 1;
}

static int t_ping(void *ctx, int32_t conn)
{
    (void)ctx;
    host_conn *c = find(conn);
    CHECK(c && c->alive, "ping to conn %d the transport does not have open", (int)conn);
    return 0;
}

static void t_log(void *ctx, char level, const char *msg, size_t len)
{
    (void)ctx;
    CHECK(level && strchr("EWIDV", level), "log level %d", level);
    touch(msg, len);   /* readable for all of len */
    if (g_verbose) fprintf(stderr, "%c %.*s\n", level, (int)len, msg);
}

static uint32_t t_millis(void *ctx) { (void)ctx; return H.now; }
static int64_t t_wall(void *ctx) { (void)ctx; return 1795721113692LL + H.now; }
static void t_device_id(void *ctx, char *buf, size_t cap) { (void)ctx; snprintf(buf, cap, "24:0a:c4:12:34:56"); }
static int t_server_start(void *ctx, int port) { (void)ctx; return port > 0 ? 0 : -1; }

static int t_connect(void *ctx, int32_t conn, const char *url, size_t len)
{
    (void)ctx;
    CHECK(len > 0 && len < 1024, "dial URL length %zu", len);
    touch(url, len);   /* readable for all of len */
    add(conn, 1);
    H.links++;
    return 0;
}

static const ph_transport_ops OPS = {
    .send = t_send, .close = t_close, .ping = t_ping, .log = t_log, .millis = t_millis,
    .wall_clock_ms = t_wall, .device_id = t_device_id, .server_start = t_server_start,
    .connect = t_connect,
};

/* --- invariants --------------------------------------------------------------------------------- */

static void check_invariants(void)
{
    ph_bridge *b = H.b;
    uint32_t live_accepted = 0, live_links = 0;
    for (int i = 0; i < H.n; i++) {
        host_conn *c = &H.c[i];
        if (c->alive) {
            if (c->link) live_links++;
            else live_accepted++;
            CHECK(ph_slot_of(b, c->id) != NULL, "conn %d is open in the transport but has no slot", (int)c->id);
        } else {
            CHECK(ph_slot_of(b, c->id) == NULL, "conn %d was closed but its slot is still in use", (int)c->id);
        }
    }
    CHECK(ph_bridge_connection_count(b) == H.opens - H.closes, "connections %u, opens %u - closes %u",
          (unsigned)ph_bridge_connection_count(b), (unsigned)H.opens, (unsigned)H.closes);
    CHECK(ph_bridge_connection_count(b) == live_accepted, "connections %u, transport has %u",
          (unsigned)ph_bridge_connection_count(b), (unsigned)live_accepted);
    CHECK(ph_bridge_link_count(b) == H.links - H.link_closes && ph_bridge_link_count(b) == live_links,
          "links %u, transport has %u", (unsigned)ph_bridge_link_count(b), (unsigned)live_links);
    CHECK(b->open_count == live_accepted + live_links, "slots in use %u, transport has %u open",
          (unsigned)b->open_count, (unsigned)(live_accepted + live_links));
    uint32_t in_use = 0;
    for (uint32_t i = 0; i < b->slot_count; i++) {
        ph_slot *s = &b->slots[i];
        if (s->state == PH_SLOT_FREE) continue;
        in_use++;
        CHECK(s->state != PH_SLOT_GONE && !s->closed_pending, "slot %u left GONE/pending between events", (unsigned)i);
        uint32_t queued = (uint32_t)atomic_load(&s->outbox);
        CHECK(!H.limit || queued <= H.limit, "slot %u outbox %u > limit %u", (unsigned)i, (unsigned)queued,
              (unsigned)H.limit);
    }
    CHECK(in_use == b->open_count, "slots in use %u, open_count %u", (unsigned)in_use, (unsigned)b->open_count);
    CHECK(b->depth == 0 && !b->replaying, "bridge left inside a call");
    /* /stats peers: fits its capacity whatever the announces held, one entry per open peer at most. */
    static char peers[PH_BRIDGE_DEFAULT_MAX_CONNECTIONS * PH_BRIDGE_PEER_STATS_BYTES + 3];
    CHECK(ph_bridge_peers_capacity(b) <= sizeof peers, "peers capacity %zu", ph_bridge_peers_capacity(b));
    int n = ph_bridge_peers_json(b, peers, ph_bridge_peers_capacity(b));
    CHECK(n >= 2 && (size_t)n == strlen(peers) && peers[0] == '[' && peers[n - 1] == ']', "peers JSON: %s", peers);
    uint32_t listed = 0;
    for (const char *p = peers; (p = strstr(p, "{\"conn\":")) != NULL; p++) listed++;
    CHECK(listed <= live_accepted, "%u peers listed, %u accepted connections", (unsigned)listed,
          (unsigned)live_accepted);
}

/* --- events ------------------------------------------------------------------------------------- */

static const char *const URLS[6] = {
    "/?peerId=f335b63e0123456789abcdef0123456789abccf8",
    "/?peerId=49702745aaaaaaaaaaaaaaaaaaaaaaaaaaaaaf04",
    "?peerId=8781bee0bbbbbbbbbbbbbbbbbbbbbbbbbbbbb3ef",
    "/x/y?a=1&peerId=883f96a5ccccccccccccccccccccccccccccc44d",
    "/?peerId=dd8dda08dddddddddddddddddddddddddddddf51",
    "/?peerId=f335b63e0123456789abcdef0123456789abccf8",   /* duplicate of the first */
};

typedef struct {
    const uint8_t *p, *end;
} reader;

static int rd(reader *r) { return r->p < r->end ? *r->p++ : -1; }

static int32_t pick(reader *r)
{
    int k = rd(r);
    if (k < 0 || H.n == 0) return 12345;          /* an id never handed out */
    if (k == 255) return (int32_t)0x7fffffff;
    return H.c[k % H.n].id;
}

static void report_close(host_conn *c)
{
    if (!c || !c->alive) return;
    c->alive = 0;
    if (c->link) H.link_closes++;
    else H.closes++;
    ph_bridge_on_close(H.b, c->id);
}

static int g_which;

static void event(reader *r, int op)
{
    ph_bridge *b = H.b;
    switch (op % 9) {
    case 0: {
        int k = rd(r);
        if (k < 0) return;
        const char *url;
        size_t len;
        char buf[64];
        if (k < 6) {
            url = URLS[k];
            len = strlen(url);
        } else {
            len = (size_t)(k - 6) % 64;
            if ((size_t)(r->end - r->p) < len) len = (size_t)(r->end - r->p);
            memcpy(buf, r->p, len);
            r->p += len;
            url = buf;
        }
        /* The connection is in the transport's table before on_open returns: the module greets
         * it (send) from inside the call. Ids are known only on return, so allow it up front. */
        H.opening = 1;
        H.opened = -1;
        int32_t conn = ph_bridge_on_open(b, url, len);
        H.opening = 0;
        CHECK(H.opened < 0 || H.opened == conn, "on_open returned %d, the module used id %d",
              (int)conn, (int)H.opened);
        if (conn >= 0) {
            if (H.opened < 0) add(conn, 0);
            H.opens++;
        }
        break;
    }
    case 1: {
        int32_t conn = pick(r);
        int lo = rd(r), hi = rd(r);
        if (hi == 0xFF) {   /* the transport asks before reading an oversized payload: 1009 */
            CHECK(!ph_bridge_accepts_frame(b, conn, (size_t)ph_bridge_input_buffer_size(b) + 1 + (size_t)lo),
                  "an oversized frame was accepted");
            break;
        }
        size_t len = (size_t)(lo < 0 ? 0 : lo) | (size_t)(hi < 0 ? 0 : hi % 0x48) << 8;
        if ((size_t)(r->end - r->p) < len) len = (size_t)(r->end - r->p);
        /* Copied: a frame buffer of exactly len bytes, so an over-read is an ASan report. */
        uint8_t *frame = malloc(len ? len : 1);
        if (len) memcpy(frame, r->p, len);
        r->p += len;
        ph_bridge_on_frame(b, conn, frame, len);
        free(frame);
        break;
    }
    case 2: report_close(find(pick(r))); break;
    case 3: ph_bridge_on_pong(b, pick(r)); break;
    case 4: {
        int k = rd(r);
        H.now += (uint32_t)(k < 0 ? 1 : k) * 1000u;
        ph_bridge_tick(b);
        break;
    }
    case 5:
        for (int i = 0; i < H.n; i++)
            if (H.c[i].link && H.c[i].alive && H.c[i].dialing) {
                H.c[i].dialing = 0;
                ph_bridge_on_link_open(b, H.c[i].id);
            }
        break;
    case 6: {
        char err[256];
        int next = !g_which;
        ph_result rc = ph_bridge_swap(b, g_mod[next].data, g_mod[next].len, err, sizeof err);
        CHECK(rc == PH_OK, "swap failed: %d %s", (int)rc, err);
        g_which = next;
        break;
    }
    case 7: {
        host_conn *c = find(pick(r));
        if (c && c->unsent) {
            ph_bridge_on_sent(b, c->id, c->unsent);
            c->unsent = 0;
        }
        break;
    }
    case 8:
        for (int i = 0; i < H.n; i++)
            if (H.c[i].alive && H.c[i].close_asked) report_close(&H.c[i]);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    memset(&H, 0, sizeof H);
    reader r = {data, data + size};
    int flags = rd(&r);
    if (flags < 0) flags = 0;
    H.sent_inline = flags & 1;
    H.limit = (flags & 2) ? 512 : 4096;
    H.now = 1000;
    g_which = 0;

    static const char *const boot[] = {"ws://hub.example:8080/x?y=1"};
    ph_bridge_config cfg = PH_BRIDGE_CONFIG_DEFAULT;
    cfg.max_connections = 4;
    cfg.outbox_limit_bytes = H.limit;
    cfg.max_links = 1;
    cfg.bootstrap_urls = boot;
    cfg.bootstrap_count = 1;
    ph_result rc = PH_OK;
    char err[256];
    H.b = ph_bridge_create(g_mod[0].data, g_mod[0].len, &OPS, &cfg, &rc, err, sizeof err);
    if (!H.b) FAIL("ph_bridge_create: %d %s", (int)rc, err);
    CHECK(ph_bridge_start(H.b, 3000) == 0, "start");
    check_invariants();

    int events = 0;
    for (int op; (op = rd(&r)) >= 0 && events < 256; events++) {
        event(&r, op);
        check_invariants();
    }

    /* Every connection goes away: nothing may stay in use. */
    for (int i = 0; i < H.n; i++) report_close(&H.c[i]);
    check_invariants();
    CHECK(H.b->open_count == 0 && ph_bridge_connection_count(H.b) == 0 && ph_bridge_link_count(H.b) == 0,
          "slots still in use after every close");
    ph_bridge_destroy(H.b);
    H.b = NULL;
    return 0;
}
