/*
 * ph_bridge.h — the bridge core: runs hub.wasm in WASM3 for one transport.
 *
 * Portable C11, no ESP-IDF or OS includes. The same code runs in the ESP32 firmware (src/) and in
 * the PC hub (Python extension src/pigeonhub/_bridge.c). Only the transport differs, and it plugs in
 * through ph_transport_ops.
 *
 * Threading: one owner thread (the firmware's hub task, the PC hub's asyncio loop) makes every
 * ph_bridge_* call, except ph_bridge_on_sent(), which any thread may call. Transport callbacks are
 * invoked on the owner thread, from inside ph_bridge_* calls.
 */
#ifndef PH_BRIDGE_H
#define PH_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ph_bridge ph_bridge;

/* What the bridge needs from a socket layer. All callbacks run on the owner thread. */
typedef struct ph_transport_ops {
    void *ctx;
    /* Queue one text frame. The transport must copy `frame` before returning (it points into the
     * module's memory) and call ph_bridge_on_sent(conn, len) once the bytes are written or dropped.
     * Returns 0, or <0 when the connection is already gone. */
    int (*send)(void *ctx, int32_t conn, const uint8_t *frame, size_t len);
    /* Start a WebSocket close handshake; the transport later reports ph_bridge_on_close(conn).
     * `reason` may point into the module's memory: copy it before returning. */
    void (*close)(void *ctx, int32_t conn, uint16_t code, const char *reason, size_t reason_len);
    /* Send a WebSocket ping; report the pong with ph_bridge_on_pong(). Returns 0 or <0. */
    int (*ping)(void *ctx, int32_t conn);
    /* One log line. level is 'E', 'W', 'I', 'D' or 'V'; msg is not NUL-terminated. */
    void (*log)(void *ctx, char level, const char *msg, size_t len);
    uint32_t (*millis)(void *ctx);           /* monotonic milliseconds                         */
    int64_t (*wall_clock_ms)(void *ctx);     /* Unix epoch ms, or uptime ms when unknown        */
    /* Write a NUL-terminated device id (e.g. a MAC address) into buf; it seeds the hub id. */
    void (*device_id)(void *ctx, char *buf, size_t cap);
    int (*server_start)(void *ctx, int port); /* may be NULL: transport already listening      */
    void (*server_stop)(void *ctx);           /* may be NULL                                   */
    /* ABI 2, outgoing hub links: start dialing `url` (a ws:// or wss:// URL, not NUL-terminated,
     * copy it) for the connection id `conn`, and return at once: 0 = dialing, <0 = cannot (the id
     * is then dropped, the module sees ws_connect fail). Later, on the owner thread and never from
     * inside this call, report exactly one of ph_bridge_on_link_open(conn) (handshake done; then
     * frames, pongs and the close as for accepted connections) or ph_bridge_on_close(conn) (refused,
     * DNS, timeout). send/close/ping then work on conn as on an accepted connection; close() on a
     * link still dialing must abort the dial and report ph_bridge_on_close. Single attempts only:
     * the module decides when to dial again. May be NULL: the transport has no outgoing links. */
    int (*connect)(void *ctx, int32_t conn, const char *url, size_t len);
} ph_transport_ops;

typedef struct ph_bridge_config {
    uint32_t max_connections;     /* bridge slots; beyond them: close 1008 before the module sees it */
    uint32_t outbox_limit_bytes;  /* unsent bytes per connection before it is closed 1013 (0: none)  */
    uint32_t memory_limit_bytes;  /* WASM3 runtime->memoryLimit (0: the module's own maximum)        */
    uint32_t wasm_stack_bytes;    /* WASM3 interpreter stack                                         */
    /* ABI 2, hub links. Slots for outgoing links are reserved on top of max_connections, so
     * clients can never starve them (and links never take a client's slot); 0 = no links. */
    uint32_t max_links;
    /* The bootstrap hub URLs the module reads with get_bootstrap_hub(); copied at create (the
     * caller's array may go away). Empty strings are kept: the module skips them. */
    const char *const *bootstrap_urls;
    uint32_t bootstrap_count;
    /* The work one call into the module may do: loop iterations plus function calls (WASM3's
     * call budget, lib/wasm3/patches/0006-call-budget.patch), set again before every call. A call
     * that needs more traps ("module exceeded its per-call budget"): init() fails (the module is
     * refused), any other export is treated like any trap (its connection is closed 1011).
     * 0: PH_BRIDGE_DEFAULT_CALL_BUDGET. */
    uint32_t call_budget;
} ph_bridge_config;

/* The board's defaults, and the PC hub's: the PC twin runs with exactly these (pigeonhub._bridge
 * exposes them as DEFAULTS), and the firmware's Kconfig defaults are the same numbers
 * (test/firmware/test_config_consistency.py checks it: Kconfig cannot include this header).
 * max_connections: MAX_PEERS + incoming hub links + spare sockets, Kconfig's defaults (20 + 2 + 2):
 * room for the module to refuse a few more itself.
 * outbox_limit_bytes: a slow consumer is closed 1013 before it holds much of a board's heap.
 * memory_limit_bytes: hub.wasm uses stack + data + bss = 32.4 KiB of its 64 KiB page (wasm/ABI.md;
 * `pigeonhub build` fails a module that does not fit it), so WASM3 allocates only that, with
 * 3.6 KiB to spare for a module update.
 * wasm_stack_bytes: the deepest call chain needs 1.5 KiB of WASM3 stack (1 KiB traps; JSON nesting
 * does not deepen it: the module's parser is iterative), tested in test/module/test_wasm3_stack.py.
 * max_links: PigeonHub's default bootstrap list has two hubs.
 * call_budget: far above what any call of hub.wasm needs, yet a runaway loop ends within about
 * a second on an ESP32 (the measurements and the projection: docs/RELIABILITY.md, "Call budget"). */
#define PH_BRIDGE_DEFAULT_MAX_CONNECTIONS 24u
#define PH_BRIDGE_DEFAULT_OUTBOX_LIMIT    (12u * 1024u)
#define PH_BRIDGE_DEFAULT_MEMORY_LIMIT    (36u * 1024u)
#define PH_BRIDGE_DEFAULT_WASM_STACK      (4u * 1024u)
#define PH_BRIDGE_DEFAULT_MAX_LINKS       2u
#define PH_BRIDGE_DEFAULT_CALL_BUDGET     (2u * 1000u * 1000u)
#define PH_BRIDGE_MAX_LINKS               16u   /* upper bound of max_links */
/* Longest bootstrap hub URL: the module dials it with ?peerId=<40 hex> appended. */
#define PH_BRIDGE_MAX_BOOTSTRAP_URL       448u
#define PH_BRIDGE_CONFIG_DEFAULT { .max_connections = PH_BRIDGE_DEFAULT_MAX_CONNECTIONS, \
                                   .outbox_limit_bytes = PH_BRIDGE_DEFAULT_OUTBOX_LIMIT, \
                                   .memory_limit_bytes = PH_BRIDGE_DEFAULT_MEMORY_LIMIT, \
                                   .wasm_stack_bytes = PH_BRIDGE_DEFAULT_WASM_STACK, \
                                   .max_links = PH_BRIDGE_DEFAULT_MAX_LINKS, \
                                   .call_budget = PH_BRIDGE_DEFAULT_CALL_BUDGET }

/* Results (negative) of the functions below. */
typedef enum {
    PH_OK = 0,
    PH_ERR_NOT_WASM = -1,       /* bytes do not start with the WebAssembly magic/version          */
    PH_ERR_ABI_VERSION = -2,    /* abi_version() differs from PH_ABI_VERSION                      */
    PH_ERR_MISSING_EXPORT = -3, /* a required export is missing or has the wrong signature        */
    PH_ERR_MEMORY = -4,         /* the module asks for more linear memory than allowed            */
    PH_ERR_LOAD = -5,           /* WASM3 refused to parse/load/link it (message says why)         */
    PH_ERR_INIT = -6,           /* init() failed or trapped                                       */
    PH_ERR_NO_MEMORY = -7,      /* host allocation failed                                         */
    PH_ERR_FULL = -8,           /* no free connection slot                                        */
    PH_ERR_UNKNOWN_CONN = -9,
    PH_ERR_CONFIG = -10,        /* a bootstrap URL list entry is NULL or too long                 */
} ph_result;

/* Create a bridge and load `wasm` (which must stay valid as long as the bridge: WASM3 reads it in
 * place). Validates the module, links PH_ABI_IMPORTS, calls init(). On failure returns NULL and
 * writes a specific, human-readable reason into err (e.g. "module has no export 'on_message'"). */
ph_bridge *ph_bridge_create(const uint8_t *wasm, size_t wasm_len, const ph_transport_ops *ops,
                            const ph_bridge_config *config, ph_result *result, char *err,
                            size_t err_cap);
void ph_bridge_destroy(ph_bridge *bridge);

/* Validate module bytes without keeping them: the checks of ph_bridge_create (a scratch runtime,
 * init() included), used before a module is accepted over the air. */
ph_result ph_bridge_check_module(const uint8_t *wasm, size_t wasm_len, char *err, size_t err_cap);

/*
 * Replace the running module with `wasm` in place (over-the-air update), keeping the ph_bridge
 * object, its connection ids, outboxes and ph_bridge_on_sent() accounting. Owner thread only,
 * never from inside a transport callback.
 *   1. `wasm` is validated and instantiated in a new WASM3 runtime with the checks of
 *      ph_bridge_create (init() included);
 *   2. if the old module was started (ph_bridge_start returned 0, no ph_bridge_stop since), the new
 *      one's start_server(port) is called with the same port; its ws_server_start answers 0
 *      without calling ops->server_start (the transport is listening already);
 *   3. every open connection is replayed: on_peer_connected(conn), then the connection's last frame
 *      whose top-level "type" is "announce" (kept by the bridge, up to 1 KiB; a later "goodbye"
 *      forgets it). While replaying, the new module's sends, broadcasts and pings are dropped and
 *      counted (clients already got `connected` / `peer-discovered` from the old module), so the
 *      transport sees nothing. A close the new module asks for during replay (it refuses the id,
 *      or allows fewer peers) is carried out once the swap has succeeded, with the new module's
 *      code and reason; the new module then gets on_peer_disconnected for it as usual.
 *   4. the old runtime is destroyed. Connections already closing are not replayed and owe the new
 *      module no on_peer_disconnected.
 * Hub links (ABI 2): the new module's start_server dials its bootstrap hubs again; a ws_connect
 * for a URL an existing link has is answered with that link's id (no second dial), and an open
 * one is then reported with on_link_open (sends muted: the module believes it announced; the
 * far hub keeps the old module's announce, which is right as the hub id is unchanged). URLs
 * with no existing link are dialed once the swap has succeeded; old links the new module did
 * not ask for are closed 1001 "Module replaced". Remote peers the old module learned over links
 * are not replayed: clients already know them, relaying falls back to every hub connection.
 * On any failure (bad bytes, ABI version, missing export, init() or start_server() failing, a trap
 * while replaying) it returns the specific error with the reason in err, and the old module keeps
 * running exactly as before: nothing was sent, closed or freed.
 * When the heap cannot hold the new runtime beside the old one (PH_ERR_NO_MEMORY), the old runtime
 * is freed first and the swap tried again; if that fails too, the old module is loaded again from
 * its bytes and every connection replayed into it (its own state starts over; clients see
 * nothing), and the new module's error is returned.
 *
 * Ownership: WASM3 reads module bytes in place, so `wasm` must stay valid and unchanged until the
 * bridge is destroyed or swapped again (the firmware keeps the flash slot mapped; the Python
 * extension keeps a reference to the bytes object). After a successful swap the OLD bytes are no
 * longer read and may be released; after a failed one the NEW bytes may be released.
 */
ph_result ph_bridge_swap(ph_bridge *bridge, const uint8_t *wasm, size_t wasm_len, char *err,
                         size_t err_cap);
/* Connections replayed by the last successful ph_bridge_swap (also in stats: lastSwapReplayed). */
uint32_t ph_bridge_last_swap_replayed(const ph_bridge *bridge);

int ph_bridge_start(ph_bridge *bridge, int port);  /* start_server(port) */
void ph_bridge_stop(ph_bridge *bridge);            /* stop_server()      */

/* A WebSocket was accepted with this request URL (path + query). Returns the connection id (>=0),
 * or PH_ERR_FULL (any result < 0), in which case the transport closes it with 1008 PH_REASON_FULL.
 * The module greets the connection from inside this call (on_peer_connected), so ops->send and
 * ops->close may be called for the new id before ph_bridge_on_open returns it. */
int32_t ph_bridge_on_open(ph_bridge *bridge, const char *url, size_t url_len);
/* ABI 2: the hub link `conn` (from ops->connect) completed its WebSocket handshake: the module's
 * on_link_open(conn) runs (it sends the hub announce from inside this call). Ignored for ids that
 * are not links still dialing. Frames, pongs and the close follow through the functions below. */
void ph_bridge_on_link_open(ph_bridge *bridge, int32_t conn);
/* Before reading a frame's payload: false when it is larger than the module accepts. The bridge
 * has then asked the transport to close the connection with 1009. */
bool ph_bridge_accepts_frame(ph_bridge *bridge, int32_t conn, size_t len);
/* A complete text or binary frame. Oversized frames are refused as ph_bridge_accepts_frame does. */
void ph_bridge_on_frame(ph_bridge *bridge, int32_t conn, const uint8_t *data, size_t len);
void ph_bridge_on_pong(ph_bridge *bridge, int32_t conn);
/* The socket is closed (by either side), or a link could not be opened. The slot is freed; the
 * module gets on_peer_disconnected(conn) exactly once. */
void ph_bridge_on_close(ph_bridge *bridge, int32_t conn);
/* Call at least once a second: runs the module's loop() (heartbeat and timeouts). */
void ph_bridge_tick(ph_bridge *bridge);
/* Any thread: `len` bytes handed to ops->send for conn were written or dropped. */
void ph_bridge_on_sent(ph_bridge *bridge, int32_t conn, size_t len);

/* Combined JSON: {"module":<get_stats()>,"bridge":{...}} NUL-terminated; returns its length or <0.
 * "bridge" has "links":[{"conn","url","state":"connecting|open|closing","framesIn","framesOut"}].
 * ph_bridge_stats_capacity() is a buffer size that always fits (it grows with max_links). */
int ph_bridge_stats_json(ph_bridge *bridge, char *buf, size_t cap);
size_t ph_bridge_stats_capacity(const ph_bridge *bridge);
/* /stats "peers" (docs/PROTOCOL.md §10): one entry per accepted connection the module took and
 * that is still open, from what the bridge keeps of it, NUL-terminated:
 *   [{"conn":<id>,"peerId":"<its URL's peerId>","network":<name>,"connectedMs":<ms>,
 *     "framesIn":<n>,"framesOut":<n>}, ...]
 * network: the networkName of the connection's last announce; "global" when that announce names
 * none (the module's default); null before any announce, after a goodbye, or when the announce
 * was too long to keep or its networkName is not a JSON string of at most 64 bytes. Incoming hubs
 * are listed too (network "pigeonhub-mesh"); outgoing links are in the stats' "links". Returns the
 * length, or <0 when cap is too small: ph_bridge_peers_capacity() always fits, at most
 * PH_BRIDGE_PEER_STATS_BYTES per connection (max_connections of them) plus 3. */
#define PH_BRIDGE_PEER_STATS_BYTES 288u
int ph_bridge_peers_json(const ph_bridge *bridge, char *buf, size_t cap);
size_t ph_bridge_peers_capacity(const ph_bridge *bridge);
const char *ph_bridge_hub_id(const ph_bridge *bridge);   /* 40 hex chars */
int ph_bridge_peer_count(ph_bridge *bridge);
uint32_t ph_bridge_connection_count(const ph_bridge *bridge);   /* accepted connections          */
uint32_t ph_bridge_link_count(const ph_bridge *bridge);         /* hub links (dialing or open)    */
/* Traps caught in module calls since the bridge was created (also in stats: traps); a host takes
 * the difference across a swap to count the new module's. */
uint32_t ph_bridge_trap_count(const ph_bridge *bridge);
/* Largest frame the module accepts (its get_input_buffer_size(), read once after init()). */
uint32_t ph_bridge_input_buffer_size(const ph_bridge *bridge);

#ifdef __cplusplus
}
#endif
#endif /* PH_BRIDGE_H */
