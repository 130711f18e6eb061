/*
 * pigeonhub_abi.h — the contract between hub.wasm and every bridge that runs it.
 *
 * One header, included by the module (freestanding C compiled to wasm32) and by the bridge core
 * (lib/pigeonhub_bridge, host C with WASM3). wasm/ABI.md explains each entry in prose.
 *
 * Conventions
 *   - All imports live in wasm module "env". Signatures use WASM3's notation:
 *     i = i32, I = i64, * = i32 pointer into linear memory (bounds-checked by the bridge), v = void.
 *   - Connection ids ("peer_id" in the original design) are opaque non-negative i32 values chosen
 *     by the bridge. An id is never reused while the module may still hold it.
 *   - Every connection the bridge reports with on_peer_connected gets exactly one
 *     on_peer_disconnected later, also when the module itself asked to close it.
 *   - Outgoing hub links (ABI 2): ws_connect returns a connection id at once; the bridge calls
 *     on_link_open when the handshake completed, on_message for its frames, and
 *     on_peer_disconnected exactly once when it closes or could not be opened. Sends, pings and
 *     closes work on links as on accepted connections; ws_get_request_url returns the dialed URL.
 *   - The bridge never calls into the module re-entrantly: events caused by an import call
 *     (e.g. a close requested by ws_close_peer) are delivered after the current export returns.
 */
#ifndef PIGEONHUB_ABI_H
#define PIGEONHUB_ABI_H

/* Bumped on any incompatible change to the tables below. A bridge refuses a module whose
 * abi_version() differs from the one it was built with. */
#define PH_ABI_VERSION 3  /* 2: outgoing hub links (ws_connect, get_bootstrap_hub, on_link_open)
                           * 3: json_string_end (the module's hottest loop, done by the host);
                           *    json_value_end came later: a bridge without it refuses a module
                           *    that imports it by that name, and runs every module that does not */

/*
 * Imports: the functions a bridge must provide.
 *   X(name, wasm3 signature, origin)   origin: "original" = the seed design, "ext" = our extension
 */
#define PH_ABI_IMPORTS(X)                                                                        \
    /* name                 signature   origin       what it does                                */ \
    X(ws_server_start,      "i(i)",     "original") /* (port) -> 0 ok, <0 error                  */ \
    X(ws_server_stop,       "v()",      "original") /* stop accepting; open connections stay     */ \
    X(ws_send_to_peer,      "i(i*i)",   "original") /* (conn, data, len) -> 0, <0 see PH_SEND_*  */ \
    X(ws_broadcast,         "i(*ii)",   "original") /* (data, len, exclude_conn) -> frames queued */ \
    X(log_message,          "v(*i)",    "original") /* (msg, len) "L text", L = E/W/I/D level    */ \
    X(get_device_id,        "v(*i)",    "original") /* (buf, len) NUL-terminated device id       */ \
    X(millis,               "i()",      "original") /* monotonic ms since boot (wraps at 2^32)   */ \
    X(ws_get_request_url,   "i(i*i)",   "ext")      /* (conn, buf, len) -> full URL length or -1 */ \
    X(ws_close_peer,        "v(ii*i)",  "ext")      /* (conn, code, reason, len) WebSocket close */ \
    X(ws_ping_peer,         "i(i)",     "ext")      /* (conn) send a WebSocket ping -> 0 / <0    */ \
    X(wall_clock_ms,        "I()",      "ext")      /* ms since Unix epoch; uptime if unknown    */ \
    X(ws_connect,           "i(*i)",    "ext")      /* (url, len) dial a hub link -> conn or <0  */ \
    X(get_bootstrap_hub,    "i(i*i)",   "ext")      /* (index, buf, len) -> URL length, -1 = end */ \
    X(json_string_end,      "i(*i)",    "ext")      /* (text, len) -> JSON string token length   */ \
    X(json_value_end,       "i(*i)",    "ext")      /* (text, len) -> JSON value token length    */

/*
 * Exports: the functions a module must provide (all are required).
 */
#define PH_ABI_EXPORTS(X)                                                                        \
    /* name                 signature   origin       what it does                                */ \
    X(init,                 "i()",      "original") /* once after instantiation -> 0 ok          */ \
    X(start_server,         "i(i)",     "original") /* (port) calls ws_server_start              */ \
    X(stop_server,          "v()",      "original") /* closes all connections 1001, stops        */ \
    X(on_peer_connected,    "v(i)",     "original") /* (conn) a WebSocket was accepted           */ \
    X(on_peer_disconnected, "v(i)",     "original") /* (conn) it is gone (exactly once)          */ \
    X(on_message,           "v(iii)",   "original") /* (conn, ptr, len) frame in input buffer    */ \
    X(loop,                 "v()",      "original") /* periodic maintenance, call every <=1 s    */ \
    X(is_running,           "i()",      "original") /* 1 between start_server and stop_server   */ \
    X(get_peer_count,       "i()",      "original") /* client connections with a valid peer id   */ \
    X(get_stats,            "v(ii)",    "original") /* (buf, size) NUL-terminated JSON           */ \
    X(get_hub_id,           "i()",      "original") /* -> ptr to 40 hex chars + NUL              */ \
    X(abi_version,          "i()",      "ext")      /* -> PH_ABI_VERSION                         */ \
    X(get_input_buffer,     "i()",      "ext")      /* -> ptr where the bridge writes a frame    */ \
    X(get_input_buffer_size,"i()",      "ext")      /* -> its size = largest accepted frame      */ \
    X(on_pong,              "v(i)",     "ext")      /* (conn) a WebSocket pong arrived           */ \
    X(on_link_open,         "v(i)",     "ext")      /* (conn) a link from ws_connect is open     */

/* Results of ws_send_to_peer. */
#define PH_SEND_OK            0
#define PH_SEND_NO_CONN      (-1) /* unknown or already closing connection: frame dropped      */
#define PH_SEND_OUTBOX_FULL  (-2) /* slow consumer: frame dropped, bridge closes it with 1013  */
#define PH_SEND_BAD_ARGS     (-3) /* pointer/length outside linear memory                       */

/* Results of json_string_end and json_value_end. json_string_end: text[0] is a string's opening
 * quote; the result is the length of the token through its closing quote. json_value_end: text[0]
 * is the first byte of any JSON value (a member's value inside a frame's object); the result is the
 * length of the value, nested containers included, with no whitespace after it. Or one of these: */
#define PH_JSON_STRING_SYNTAX    (-1) /* truncated, raw control character, bad escape, grammar  */
#define PH_JSON_STRING_UTF8      (-2) /* not shortest-form UTF-8, a surrogate, above U+10FFFF   */
#define PH_JSON_STRING_BAD_ARGS  (-3) /* pointer/length outside linear memory                   */
#define PH_JSON_VALUE_DEPTH      (-4) /* containers nested deeper than PH_JSON_MAX_DEPTH        */

/* Containers nested in one frame, the frame's own object counted: a value that json_value_end
 * checks lies inside that object, so it may nest PH_JSON_MAX_DEPTH - 1 deep. Real frames use 3. */
#define PH_JSON_MAX_DEPTH        32

/* WebSocket close codes and reasons clients see. Reasons are at most 123 bytes (RFC 6455). */
#define PH_CLOSE_NORMAL          1000
#define PH_CLOSE_GOING_AWAY      1001 /* "Server shutting down", "Peer timeout"               */
#define PH_CLOSE_POLICY          1008 /* bad/duplicate id, hub full                           */
#define PH_CLOSE_TOO_BIG         1009 /* frame larger than get_input_buffer_size()            */
#define PH_CLOSE_INTERNAL        1011 /* the module trapped while handling this connection    */
#define PH_CLOSE_TRY_LATER       1013 /* outbox overflow (slow consumer)                      */

#define PH_REASON_INVALID_ID     "Invalid peerId format"
#define PH_REASON_DUPLICATE_ID   "Peer already connected"
#define PH_REASON_FULL           "Maximum connections reached"
#define PH_REASON_TOO_BIG        "Message too big"
#define PH_REASON_SHUTDOWN       "Server shutting down"
#define PH_REASON_TIMEOUT        "Peer timeout"
#define PH_REASON_TRAP           "Hub module error"
#define PH_REASON_OUTBOX_FULL    "Outbox full (slow consumer)"

/* Build-time protocol parameters of the original design (override with -D). */
#ifndef MAX_PEERS
#define MAX_PEERS 20             /* client connections with a valid peer id                   */
#endif
#ifndef HEARTBEAT_INTERVAL
#define HEARTBEAT_INTERVAL 30000 /* ms: a connection silent this long is sent a WebSocket ping */
#endif
#ifndef PEER_TIMEOUT
#define PEER_TIMEOUT 60000       /* ms: a connection silent this long is closed (1001)        */
#endif
#ifndef PH_MAX_HUB_LINKS
#define PH_MAX_HUB_LINKS 2       /* outgoing hub links (bootstrap hubs dialed); bridges reserve  */
#endif                           /* as many connection slots for them (Kconfig default 2)      */
#ifndef MAX_MESSAGE_SIZE
#define MAX_MESSAGE_SIZE 16384   /* bytes: input buffer; larger frames are closed with 1009   */
#endif

/* Memory the module may use: the bridge refuses modules that ask for more. */
#define PH_WASM_PAGE_BYTES       65536
#define PH_MODULE_MAX_PAGES      2 /* original design: --max-memory=131072                    */

#endif /* PIGEONHUB_ABI_H */
