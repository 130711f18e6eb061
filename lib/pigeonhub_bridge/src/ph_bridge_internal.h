/*
 * ph_bridge_internal.h — state shared by the bridge core's files (not part of the public API).
 *
 *   ph_bridge.c        lifecycle, transport events, export calls and trap recovery, stats
 *   ph_imports.c       the host functions hub.wasm imports, and the one link table built from them
 *   ph_module_check.c  validation of module bytes before and after WASM3 parses them
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
#define PH_MAX_URL_BYTES     512
#endif

/* Longest log line the bridge formats itself. */
#ifndef PH_LOG_LINE_BYTES
#define PH_LOG_LINE_BYTES    200
#endif

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
} ph_slot;

struct ph_bridge {
    ph_transport_ops ops;
    ph_bridge_config config;

    const uint8_t *wasm;       /* caller-owned, must outlive the bridge (WASM3 reads in place) */
    size_t wasm_len;

    IM3Environment env;
    IM3Runtime runtime;
    IM3Module module;          /* owned by runtime once loaded                               */
    IM3Function fn[PH_EXPORT_COUNT];
    /* lld's __stack_pointer (mutable i32 global 0), or NULL: restored after a trap, which leaves
     * it wherever the trapping function had moved it. Points into WASM3's module state. */
    IM3Global stack_pointer;

    uint32_t input_ptr;        /* module's input buffer, read once after init()              */
    uint32_t input_size;
    char hub_id[41];

    ph_slot *slots;
    uint32_t slot_count;
    uint32_t open_count;

    int depth;                 /* export calls in progress (0 or 1: nothing re-enters)       */
    bool closes_pending;       /* some slot has closed_pending set                            */

    /* Counters for stats (owner thread only). */
    uint64_t frames_in;
    uint32_t frames_too_big;
    uint32_t outbox_overflows;
    uint32_t traps;
    uint32_t refused_full;
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

/* ph_imports.c */
ph_result ph_link_imports(ph_bridge *b, char *err, size_t err_cap);
int32_t ph_queue_frame(ph_bridge *b, int32_t conn, const uint8_t *frame, uint32_t len);

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
ph_result ph_check_globals(ph_bridge *b, char *err, size_t err_cap);

/* snprintf into err (if any), returning result: keeps failure paths one line each. */
ph_result ph_fail(char *err, size_t err_cap, ph_result result, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#endif /* PH_BRIDGE_INTERNAL_H */
