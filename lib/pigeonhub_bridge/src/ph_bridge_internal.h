/*
 * ph_bridge_internal.h — state shared by the bridge core's files (not part of the public API).
 *
 *   ph_bridge.c        lifecycle, transport events, export calls and trap recovery, stats
 *   ph_imports.c       the host functions hub.wasm imports, and the one import table built from them
 *   ph_module_check.c  validation of module bytes before and after WASM3 parses them
 *   ph_swap.c          over-the-air module swap: replaying connections into a new module
 */
#ifndef PH_BRIDGE_INTERNAL_H
#define PH_BRIDGE_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>

#include "ph_bridge.h"
#include "pigeonhub_abi.h"
#include "wasm3.h"

/* Connection ids are (generation << PH_SLOT_BITS) | slot index. The generation changes every time a
 * slot is freed, so an id the module still holds after on_peer_disconnected never names a newer
 * connection. PH_GENERATION_MASK keeps ids non-negative i32 values. */
#ifndef PH_SLOT_BITS
#define PH_SLOT_BITS         10                          /* up to 1024 connections per bridge */
#endif
#define PH_MAX_SLOTS         (1u << PH_SLOT_BITS)
#define PH_SLOT_MASK         (PH_MAX_SLOTS - 1u)
#define PH_GENERATION_MASK   ((1u << (31 - PH_SLOT_BITS)) - 1u)

/* Longest request URL kept per connection (the module reads it with ws_get_request_url). A URL
 * carries a path and ?peerId=<40 hex>; longer ones are truncated, which the module sees as a
 * mismatching peer id. */
#ifndef PH_MAX_URL_BYTES
/* String literals with their length, never counted by hand. */
#define PH_LIT(lit)                   (lit), (sizeof(lit) - 1)
#define PH_EQUALS_LIT(p, n, lit)      ((n) == sizeof(lit) - 1 && memcmp((p), (lit), sizeof(lit) - 1) == 0)
#define PH_STARTS_WITH_LIT(p, n, lit) ((n) > sizeof(lit) - 1 && memcmp((p), (lit), sizeof(lit) - 1) == 0) /* and more follows */

#define PH_MAX_URL_BYTES     512
#endif
_Static_assert(PH_BRIDGE_MAX_BOOTSTRAP_URL + 64 <= PH_MAX_URL_BYTES,
               "a bootstrap URL plus ?peerId=<40 hex> must fit a request URL");

/* Longest log line the bridge formats itself. */
#ifndef PH_LOG_LINE_BYTES
#define PH_LOG_LINE_BYTES    200
#endif

/* Longest `announce` frame kept per connection for replay after a module swap (ph_swap.c). The
 * hub's own limits (networkName <= 64 bytes, data <= 256 bytes) keep real announces far below it;
 * a longer one is not kept, and that peer must announce again after a swap to be discovered. */
#ifndef PH_MAX_ANNOUNCE_BYTES
#define PH_MAX_ANNOUNCE_BYTES 1024
#endif

/* Longest networkName reported in /stats peers: the module's own limit (PH_NETWORK_MAX in
 * wasm/peers.h, bytes of raw JSON string content); the module refuses a longer announce. */
#define PH_STATS_NETWORK_MAX 64
/* Longest peerId reported in /stats peers (raw bytes; a valid one is 40 hex characters). */
#define PH_STATS_PEER_ID_MAX 48

/* RFC 6455: a close reason fits in a control frame with the 2-byte code: 123 bytes. */
#define PH_MAX_CLOSE_REASON  123

/* One enum entry per export, so the bridge indexes them instead of looking names up per call. */
#define PH_EXPORT_ENUM(name, sig, origin) PH_EXPORT_##name,
typedef enum { PH_ABI_EXPORTS(PH_EXPORT_ENUM) PH_EXPORT_COUNT } ph_export_id;
#undef PH_EXPORT_ENUM

typedef enum {
    PH_SLOT_FREE = 0,
    PH_SLOT_OPEN,       /* the module may send to it                                          */
    PH_SLOT_CLOSING,    /* close requested (by module or bridge); waiting for the transport   */
    PH_SLOT_GONE,       /* the transport reported it closed; on_peer_disconnected due or running */
} ph_slot_state;

/* What a link slot is doing (ph_slot.link). An accepted connection is always "open". */
typedef enum {
    PH_LINK_DIALING = 0,   /* ws_connect returned its id; waiting for on_link_open or on_close  */
    PH_LINK_UP,            /* handshake done: frames flow                                      */
} ph_link_state;

typedef struct ph_slot {
    /* (generation << 32) | bytes handed to ops->send and not yet reported by on_sent. One word,
     * so on_sent (any thread) only ever subtracts from the connection it was meant for. */
    _Atomic uint64_t outbox;
    uint32_t generation;       /* owner thread's copy of the generation above               */
    uint8_t state;             /* ph_slot_state                                             */
    bool seen;                 /* on_peer_connected was called: on_peer_disconnected is owed */
    bool closed_pending;       /* transport reported the close during an export call         */
    uint16_t url_len;
    char *url;                 /* request URL (path + query), owned                         */
    uint16_t announce_len;
    uint8_t *announce;         /* last top-level "announce" frame, owned, for swap replay    */
    bool link;                 /* an outgoing hub link (ws_connect), not an accepted socket  */
    uint8_t link_state;        /* ph_link_state, links only                                  */
    bool adopted;              /* swap: the new module dialed this link's URL again          */
    bool dial_pending;         /* swap: dialed by the new module, ops->connect after commit  */
    uint32_t frames_in;        /* frames delivered to the module / queued by it (stats)      */
    uint32_t frames_out;
    uint32_t opened_ms;        /* ops->millis when the slot was taken (stats: connectedMs)    */
} ph_slot;

/* A close the new module asked for while connections were replayed into it (ph_swap.c):
 * carried out once the swap has succeeded. */
typedef struct ph_deferred_close {
    bool pending;
    uint16_t code;
    uint8_t reason_len;
    char reason[PH_MAX_CLOSE_REASON + 1];
} ph_deferred_close;

/* Everything that belongs to one loaded module: swapped as a whole by ph_bridge_swap. */
typedef struct ph_instance {
    const uint8_t *wasm;       /* caller-owned, must outlive its use (WASM3 reads in place)   */
    size_t wasm_len;
    IM3Environment env;
    IM3Runtime runtime;
    IM3Module module;          /* owned by runtime once loaded                               */
    IM3Function fn[PH_EXPORT_COUNT];
    IM3Global stack_pointer;
    uint32_t input_ptr;
    uint32_t input_size;
    char hub_id[41];
} ph_instance;

struct ph_bridge {
    ph_transport_ops ops;
    ph_bridge_config config;

    /* The loaded module: wasm bytes (caller-owned, must outlive the bridge: WASM3 reads them in
     * place), WASM3 environment/runtime/module, resolved exports, lld's __stack_pointer (restored
     * after a trap, which leaves it wherever the trapping function had moved it), the input
     * buffer (read once after init()) and the hub id. ph_bridge_swap exchanges it whole. */
    ph_instance inst;

    ph_slot *slots;
    uint32_t slot_count;       /* max_connections + max_links                                 */
    uint32_t open_count;       /* slots in use                                                */
    uint32_t accepted_count;   /* of those, accepted connections (at most max_connections)   */
    uint32_t link_count;       /* of those, hub links (at most max_links)                    */

    char **bootstrap;          /* copy of config.bootstrap_urls (config's pointer is cleared) */
    uint32_t bootstrap_count;

    int depth;                 /* export calls in progress (0 or 1: nothing re-enters)       */
    /* What ph_call reports for WASM3's m3Err_trapBudgetExhausted: the trap with the budget's
     * size (config.call_budget), written once at create. */
    char budget_trap[96];
    uint32_t budget_peak;      /* most of the call budget any call has spent (stats)         */
    bool closes_pending;       /* some slot has closed_pending set                            */

    bool started;              /* start_server() succeeded and stop_server() was not called   */
    int port;                  /* the port start_server() was given                           */
    /* Set while a new module is replayed into during ph_bridge_swap: its sends, pings, closes and
     * server start/stop never reach the transport (clients already saw them from the old one). */
    bool replaying;
    ph_deferred_close *deferred;   /* per slot, only while replaying                           */
    uint32_t suppressed;       /* frames the replayed module sent that were not passed on     */

    /* Counters for stats (owner thread only). */
    uint64_t frames_in;
    uint32_t frames_too_big;
    uint32_t outbox_overflows;
    uint32_t traps;
    uint32_t refused_full;
    uint32_t links_refused;    /* ws_connect calls answered <0                               */
    uint32_t links_opened;     /* on_link_open delivered                                     */
    uint32_t swaps;            /* successful module swaps                                    */
    uint32_t swap_failures;
    uint32_t last_swap_replayed;   /* connections replayed by the last successful swap       */
    uint32_t last_swap_announces;  /* of those, with an announce replayed                    */
};

static inline int32_t ph_conn_id(const ph_slot *s, uint32_t index)
{
    return (int32_t)((s->generation << PH_SLOT_BITS) | index);
}

/* ph_bridge.c */
void ph_log(ph_bridge *b, char level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
ph_slot *ph_slot_of(ph_bridge *b, int32_t conn);      /* NULL unless conn names a live slot */
void ph_request_close(ph_bridge *b, int32_t conn, uint16_t code, const char *reason, size_t len);
uint32_t ph_memory_size(const ph_bridge *b);
uint8_t *ph_memory(const ph_bridge *b);
/* Call an export (traps are caught, logged, counted; close_on_trap closes `conn` 1011). */
M3Result ph_call(ph_bridge *b, ph_export_id id, int32_t conn, bool close_on_trap, uint32_t argc,
                 const int32_t *args, int32_t *ret);
/* Parse, load, link, check and init() `wasm` into b's module fields (which must be empty). On
 * failure everything it built is freed, the fields are empty again and err says why. */
ph_result ph_instantiate(ph_bridge *b, const uint8_t *wasm, size_t wasm_len, char *err, size_t err_cap);
void ph_instance_free(ph_instance *inst);

/* ph_swap.c */
/* Remember (or forget) the connection's last announce; called for every accepted frame. */
void ph_track_announce(ph_bridge *b, ph_slot *s, const uint8_t *data, size_t len);
/* The connection's network as its last kept announce names it, for /stats: the networkName
 * member's JSON string token (quotes and escapes included) in *token, its length returned; the
 * token "global" when the announce has no networkName (the module's default); 0 when there is no
 * announce or its networkName is not a JSON string of at most PH_STATS_NETWORK_MAX bytes. */
size_t ph_announce_network(const ph_slot *s, const uint8_t **token);
/* Muted close during replay: recorded in b->deferred instead of reaching the transport. */
void ph_defer_close(ph_bridge *b, int32_t conn, uint16_t code, const char *reason, size_t len);

/* Take a free slot for a new connection (accepted or link); NULL when none. The slot is OPEN
 * and counted; url is copied (already limited to PH_MAX_URL_BYTES by the caller). */
ph_slot *ph_slot_take(ph_bridge *b, bool link, const char *url, size_t url_len);
/* Give back a slot the module never learned about (no on_peer_disconnected owed). */
void ph_slot_release(ph_bridge *b, ph_slot *s);

/* ph_imports.c */
ph_result ph_bind_imports(ph_bridge *b, char *err, size_t err_cap);
int32_t ph_queue_frame(ph_bridge *b, int32_t conn, const uint8_t *frame, uint32_t len);
/* Ask the transport to dial slot s (a link); on failure the slot is released, returns <0. */
int32_t ph_dial(ph_bridge *b, ph_slot *s);

/* ph_module_check.c */
typedef struct ph_module_info {
    bool has_memory;           /* a memory section defines linear memory                     */
    uint32_t initial_pages;
    uint32_t max_pages;
    bool has_max;
} ph_module_info;

ph_result ph_check_bytes(const uint8_t *wasm, size_t len, ph_module_info *info, char *err,
                         size_t err_cap);
ph_result ph_check_memory(const ph_module_info *info, uint32_t memory_limit, char *err,
                          size_t err_cap);
ph_result ph_check_exports(ph_bridge *b, char *err, size_t err_cap);
/* Call abi_version() (when the module has it with the right signature) and refuse any other
 * version than PH_ABI_VERSION, saying which side is older. */
ph_result ph_check_abi_version(ph_bridge *b, char *err, size_t err_cap);
ph_result ph_check_globals(ph_bridge *b, char *err, size_t err_cap);

/* snprintf into err (if any), returning result: keeps failure paths one line each. */
ph_result ph_fail(char *err, size_t err_cap, ph_result result, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#endif /* PH_BRIDGE_INTERNAL_H */
