/*
 * ph_swap.c — replace the running module over the air without dropping anyone.
 *
 * A hub module's state is rebuilt from what its clients told it: which connections are open (the
 * bridge knows) and what each announced (the bridge keeps the last `announce` frame per connection,
 * ph_track_announce). ph_bridge_swap loads the new module into a fresh WASM3 runtime, then replays
 * both into it while the bridge is "replaying": everything the new module sends, pings or closes is
 * kept from the transport, because the clients already got those frames (`connected`,
 * `peer-discovered`) from the old module. Only when every step worked does the new runtime replace
 * the old one; before that the old module is untouched and keeps serving.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ph_bridge_internal.h"
#include "ph_json_string.h"

/* ------------------------------------------------------------------------------------------------ */
/* The last announce of each connection                                                             */

typedef enum { PH_FRAME_OTHER, PH_FRAME_ANNOUNCE, PH_FRAME_GOODBYE } ph_frame_kind;

static bool is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const uint8_t *p, size_t i, size_t n)
{
    while (i < n && is_ws(p[i])) i++;
    return i;
}

/* p[i] is '"': the index just past the closing quote, or SIZE_MAX when the string never ends. */
static size_t skip_string(const uint8_t *p, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        if (p[i] == '\\') i++;
        else if (p[i] == '"') return i + 1;
    }
    return SIZE_MAX;
}

/* One JSON value starting at p[i]; nesting is counted, not recursed into, so no input can make
 * this use stack. Returns the index just past it, or SIZE_MAX. */
static size_t skip_value(const uint8_t *p, size_t i, size_t n)
{
    if (i >= n) return SIZE_MAX;
    if (p[i] == '"') return skip_string(p, i, n);
    if (p[i] == '{' || p[i] == '[') {
        size_t depth = 0;
        while (i < n) {
            uint8_t c = p[i];
            if (c == '"') {
                if ((i = skip_string(p, i, n)) == SIZE_MAX) return SIZE_MAX;
                continue;
            }
            if (c == '{' || c == '[') depth++;
            else if ((c == '}' || c == ']') && --depth == 0) return i + 1;
            i++;
        }
        return SIZE_MAX;
    }
    while (i < n && p[i] != ',' && p[i] != '}' && p[i] != ']' && !is_ws(p[i])) i++;
    return i;
}

/* The value of the object's first top-level member named `key` (compared byte for byte: a name
 * spelled with \u escapes does not match; {"data":{"type":...}} has no top-level "type"): its
 * index in p, or SIZE_MAX when there is none or the JSON is malformed before it. The first member
 * of that name wins, as in the hub's own JSON reader. */
static size_t top_level_member(const uint8_t *p, size_t n, const char *key, size_t key_len)
{
    size_t i = skip_ws(p, 0, n);
    if (i >= n || p[i] != '{') return SIZE_MAX;
    i++;
    for (;;) {
        i = skip_ws(p, i, n);
        if (i >= n || p[i] != '"') return SIZE_MAX;
        size_t name = i + 1, end = skip_string(p, i, n);
        if (end == SIZE_MAX) return SIZE_MAX;
        bool wanted = end - 1 - name == key_len && memcmp(p + name, key, key_len) == 0;
        i = skip_ws(p, end, n);
        if (i >= n || p[i] != ':') return SIZE_MAX;
        i = skip_ws(p, i + 1, n);
        if (wanted) return i < n ? i : SIZE_MAX;
        if ((i = skip_value(p, i, n)) == SIZE_MAX) return SIZE_MAX;
        i = skip_ws(p, i, n);
        if (i >= n || p[i] != ',') return SIZE_MAX;
        i++;
    }
}

/* The frame's top-level "type", compared byte for byte (a type spelled with \u escapes is
 * "other"). Malformed JSON is "other". */
static ph_frame_kind frame_kind(const uint8_t *p, size_t n)
{
    size_t v = top_level_member(p, n, PH_LIT("type"));
    if (v == SIZE_MAX || p[v] != '"') return PH_FRAME_OTHER;
    size_t vend = skip_string(p, v, n);
    if (vend == SIZE_MAX) return PH_FRAME_OTHER;
    size_t vlen = vend - 2 - v;
    if (PH_EQUALS_LIT(p + v + 1, vlen, "announce")) return PH_FRAME_ANNOUNCE;
    if (PH_EQUALS_LIT(p + v + 1, vlen, "goodbye")) return PH_FRAME_GOODBYE;
    return PH_FRAME_OTHER;
}

size_t ph_announce_network(const ph_slot *s, const uint8_t **token)
{
    static const char global[] = "\"global\"";
    if (!s->announce) return 0;
    size_t v = top_level_member(s->announce, s->announce_len, PH_LIT("networkName"));
    if (v == SIZE_MAX) {
        *token = (const uint8_t *)global;
        return sizeof global - 1;
    }
    int32_t len = ph_json_string_end(s->announce + v, (uint32_t)(s->announce_len - v));
    if (len < 2 || len - 2 > PH_STATS_NETWORK_MAX) return 0;
    *token = s->announce + v;
    return (size_t)len;
}

static void forget_announce(ph_slot *s)
{
    free(s->announce);
    s->announce = NULL;
    s->announce_len = 0;
}

void ph_track_announce(ph_bridge *b, ph_slot *s, const uint8_t *data, size_t len)
{
    if (!s) return;
    ph_frame_kind kind = frame_kind(data, len);
    if (kind == PH_FRAME_GOODBYE) {
        forget_announce(s);   /* the hub forgets the peer's network too: nothing to replay */
        return;
    }
    if (kind != PH_FRAME_ANNOUNCE) return;
    if (len > PH_MAX_ANNOUNCE_BYTES) {
        forget_announce(s);
        ph_log(b, 'D', "conn %d: %zu-byte announce is longer than %d; not kept for module swaps",
               (int)ph_conn_id(s, (uint32_t)(s - b->slots)), len, PH_MAX_ANNOUNCE_BYTES);
        return;
    }
    uint8_t *copy = realloc(s->announce, len ? len : 1);
    if (!copy) {
        forget_announce(s);
        ph_log(b, 'W', "out of memory keeping an announce for module swaps");
        return;
    }
    memcpy(copy, data, len);
    s->announce = copy;
    s->announce_len = (uint16_t)len;
}

/* ------------------------------------------------------------------------------------------------ */
/* The swap                                                                                         */

void ph_defer_close(ph_bridge *b, int32_t conn, uint16_t code, const char *reason, size_t len)
{
    uint32_t index = (uint32_t)conn & PH_SLOT_MASK;
    if (!b->deferred || index >= b->slot_count || b->deferred[index].pending) return;
    ph_deferred_close *d = &b->deferred[index];
    if (len > PH_MAX_CLOSE_REASON) len = PH_MAX_CLOSE_REASON;   /* ph_request_close trims to chars */
    d->pending = true;
    d->code = code;
    d->reason_len = (uint8_t)len;
    memcpy(d->reason, reason, len);   /* the module's memory: copied now */
    d->reason[len] = '\0';
}

/* Undo a failed swap: drop the new runtime, put the old module back exactly as it was. */
static ph_result swap_fail(ph_bridge *b, const ph_instance *old, ph_result rc)
{
    ph_instance_free(&b->inst);
    b->inst = *old;
    b->replaying = false;
    /* Links the new module asked for were never dialed, and the old module never knew them. */
    for (uint32_t i = 0; i < b->slot_count; i++) {
        ph_slot *s = &b->slots[i];
        if (s->state != PH_SLOT_FREE && s->dial_pending) ph_slot_release(b, s);
        else s->adopted = false;
    }
    free(b->deferred);
    b->deferred = NULL;
    b->swap_failures++;
    return rc;
}

/* Load `wasm` into a new runtime beside `old`, replay every connection into it and commit; on
 * failure b->inst becomes `old` again. `old` may be an empty instance (see ph_bridge_swap). */
static ph_result swap_to(ph_bridge *b, ph_instance old, const uint8_t *wasm, size_t wasm_len,
                         char *err, size_t err_cap)
{
    ph_result rc;
    M3Result r;
    memset(&b->inst, 0, sizeof b->inst);
    b->deferred = calloc(b->slot_count, sizeof *b->deferred);
    if (!b->deferred) {
        b->inst = old;
        b->swap_failures++;
        return ph_fail(err, err_cap, PH_ERR_NO_MEMORY, "out of memory for a module swap");
    }
    b->replaying = true;
    uint32_t suppressed_before = b->suppressed;

    /* 1. The checks and init() of ph_bridge_create, in a runtime of its own. */
    if ((rc = ph_instantiate(b, wasm, wasm_len, err, err_cap)) != PH_OK) return swap_fail(b, &old, rc);

    /* 2. Started like the old one. The transport keeps listening (ws_server_start answers 0). */
    if (b->started) {
        int32_t port = b->port, started = -1;
        if ((r = ph_call(b, PH_EXPORT_start_server, -1, false, 1, &port, &started)) != m3Err_none)
            return swap_fail(b, &old, ph_fail(err, err_cap, PH_ERR_INIT,
                                              "new module's start_server(%d) trapped: %s", (int)port, r));
        if (started != 0)
            return swap_fail(b, &old, ph_fail(err, err_cap, PH_ERR_INIT,
                                              "new module's start_server(%d) returned %d", (int)port,
                                              (int)started));
    }

    /* 3. Every open connection and its last announce, in slot order. A trap here means the new
     * module cannot take over these peers: the swap fails and the old module keeps them. */
    uint32_t replayed = 0, announces = 0;
    for (uint32_t i = 0; i < b->slot_count; i++) {
        ph_slot *s = &b->slots[i];
        if (s->state != PH_SLOT_OPEN || !s->seen || s->link) continue;
        int32_t conn = ph_conn_id(s, i);
        if ((r = ph_call(b, PH_EXPORT_on_peer_connected, conn, false, 1, &conn, NULL)) != m3Err_none)
            return swap_fail(b, &old, ph_fail(err, err_cap, PH_ERR_INIT,
                                              "new module's on_peer_connected trapped while replaying "
                                              "conn %d: %s", (int)conn, r));
        replayed++;
        if (!s->announce || b->deferred[i].pending) continue;   /* refused: nothing to announce */
        if (s->announce_len > b->inst.input_size) {
            ph_log(b, 'W', "conn %d: its %u-byte announce exceeds the new module's %u-byte input "
                   "buffer; not replayed", (int)conn, (unsigned)s->announce_len,
                   (unsigned)b->inst.input_size);
            continue;
        }
        memcpy(ph_memory(b) + b->inst.input_ptr, s->announce, s->announce_len);
        int32_t args[3] = { conn, (int32_t)b->inst.input_ptr, (int32_t)s->announce_len };
        if ((r = ph_call(b, PH_EXPORT_on_message, conn, false, 3, args, NULL)) != m3Err_none)
            return swap_fail(b, &old, ph_fail(err, err_cap, PH_ERR_INIT,
                                              "new module's on_message trapped while replaying conn "
                                              "%d's announce: %s", (int)conn, r));
        announces++;
    }
    /* Hub links the new module dialed again from start_server (adopted in ws_connect): the open
     * ones are reported open. Its announce and peer list go nowhere (suppressed), so the module
     * believes it announced: the far hub indeed keeps the old module's announce (same hub id)
     * and the peer-discovered it was sent. Links still dialing report open later as usual. */
    uint32_t links = 0;
    for (uint32_t i = 0; i < b->slot_count; i++) {
        ph_slot *s = &b->slots[i];
        if (s->state != PH_SLOT_OPEN || !s->link || !s->adopted || s->dial_pending ||
            s->link_state != PH_LINK_UP)
            continue;
        int32_t conn = ph_conn_id(s, i);
        if ((r = ph_call(b, PH_EXPORT_on_link_open, conn, false, 1, &conn, NULL)) != m3Err_none)
            return swap_fail(b, &old, ph_fail(err, err_cap, PH_ERR_INIT,
                                              "new module's on_link_open trapped while replaying "
                                              "hub link %d: %s", (int)conn, r));
        links++;
    }

    /* 4. Commit: the new runtime serves from here; the old one (and its bytes) are released. */
    b->replaying = false;
    ph_instance_free(&old);
    b->swaps++;
    b->last_swap_replayed = replayed;
    b->last_swap_announces = announces;
    ph_deferred_close *deferred = b->deferred;
    b->deferred = NULL;
    for (uint32_t i = 0; i < b->slot_count; i++) {
        ph_slot *s = &b->slots[i];
        /* Connections already closing were never shown to the new module: it owes them nothing,
         * and the old module that knew them is gone. */
        if (s->state != PH_SLOT_OPEN) s->seen = false;
        /* Links of the old module the new one did not dial again: nobody owns them any more. */
        if (s->state == PH_SLOT_OPEN && s->link && !s->adopted) {
            s->seen = false;
            ph_log(b, 'I', "bridge: hub link %.*s is not used by the new module: closing it",
                   (int)s->url_len, s->url);
            ph_request_close(b, ph_conn_id(s, i), PH_CLOSE_GOING_AWAY, PH_LIT("Module replaced"));
        }
        s->adopted = false;
    }
    for (uint32_t i = 0; i < b->slot_count; i++) {
        if (!deferred[i].pending) continue;
        ph_slot *s = &b->slots[i];
        int32_t conn = ph_conn_id(s, i);
        if (s->dial_pending) {   /* never dialed: nothing for the transport to close */
            s->state = PH_SLOT_CLOSING;
            continue;
        }
        /* The new module refused a connection the old one had accepted (e.g. it allows fewer
         * peers): the client gets the new module's close, and the new module its
         * on_peer_disconnected once the transport reports the close, as for any close. */
        ph_log(b, 'W', "new module closed conn %d while it was replayed: %u %s", (int)conn,
               (unsigned)deferred[i].code, deferred[i].reason);
        ph_request_close(b, conn, deferred[i].code, deferred[i].reason, deferred[i].reason_len);
    }
    /* Links the new module dialed that had no old counterpart: dialed now. One it asked to
     * close before that, or one the transport cannot dial, is over: on_peer_disconnected. */
    for (uint32_t i = 0; i < b->slot_count; i++) {
        ph_slot *s = &b->slots[i];
        if (s->state == PH_SLOT_FREE || !s->dial_pending) continue;
        s->dial_pending = false;
        int32_t conn = ph_conn_id(s, i);
        if (s->state != PH_SLOT_OPEN || ph_dial(b, s) < 0) ph_bridge_on_close(b, conn);
    }
    free(deferred);
    ph_log(b, 'I', "bridge: module swapped in place: %u connections replayed (%u announces), "
           "%u hub links, %u frames kept from clients", (unsigned)replayed, (unsigned)announces,
           (unsigned)links, (unsigned)(b->suppressed - suppressed_before));
    return PH_OK;
}

ph_result ph_bridge_swap(ph_bridge *bridge, const uint8_t *wasm, size_t wasm_len, char *err,
                         size_t err_cap)
{
    ph_bridge *b = bridge;
    if (err && err_cap) err[0] = '\0';
    if (!b) return ph_fail(err, err_cap, PH_ERR_UNKNOWN_CONN, "no bridge to swap a module into");
    if (b->depth || b->replaying)
        return ph_fail(err, err_cap, PH_ERR_INIT,
                       "module swap requested from inside a module call; refused (transport bug)");

    ph_result rc = swap_to(b, b->inst, wasm, wasm_len, err, err_cap);
    if (rc != PH_ERR_NO_MEMORY) return rc;

    /* No heap for two runtimes at once (a board without PSRAM holds one module and little more):
     * the running one is unloaded first. Its bytes stay valid (flash, or the caller's buffer), so
     * if the new module fails too, the old one is loaded again and every connection replayed into
     * it, as into a new module: clients see nothing either way. */
    const uint8_t *old_wasm = b->inst.wasm;
    size_t old_len = b->inst.wasm_len;
    ph_log(b, 'W', "bridge: no room for two modules (%s); unloading the running one for the swap", err);
    ph_instance_free(&b->inst);
    ph_instance none;
    memset(&none, 0, sizeof none);
    b->swap_failures--;   /* counted again below only if the swap fails after all */
    rc = swap_to(b, none, wasm, wasm_len, err, err_cap);
    if (rc == PH_OK) return PH_OK;
    char why[160];
    if (swap_to(b, none, old_wasm, old_len, why, sizeof why) == PH_OK) {
        b->swaps--;   /* the module running is the one that ran before */
        ph_log(b, 'W', "bridge: the previous module was loaded again");
    } else {
        ph_log(b, 'E', "bridge: the previous module could not be loaded again (%s): no module runs "
               "until one is uploaded", why);
    }
    return rc;
}

uint32_t ph_bridge_last_swap_replayed(const ph_bridge *bridge)
{
    return bridge ? bridge->last_swap_replayed : 0;
}
