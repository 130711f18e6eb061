/*
 * ph_imports.c — the host functions hub.wasm imports from module "env" (pigeonhub_abi.h).
 *
 * Each function has WASM3's raw-function shape: arguments first (m3ApiGetArg / m3ApiGetArgMem),
 * then a bounds check of every pointer + length against the module's CURRENT memory size, then the
 * work, ending in one terminal macro. A bad pointer in a function with a result is reported through
 * that result (PH_SEND_BAD_ARGS / -1) so a hub keeps serving; in a void function it traps, which the
 * bridge reports and recovers from like any other trap.
 *
 * Nothing here calls back into the module: a close the module asks for is forwarded to the
 * transport, and the module learns of it through on_peer_disconnected after its export returns.
 */
#include <stdio.h>
#include <string.h>

#include "ph_bridge_internal.h"
#include "ph_json_string.h"
#include "m3_env.h"   /* WASM3 0.5.0 internals: which imports are left unlinked (ph_bind_imports) */

/* WASM3's raw-function signature hands every function _ctx and _mem; not all of them use both. */
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-parameter"
#endif

/* Every import of the ABI needs a host function: a missing one fails the build right here. */
#define PH_DECLARE_HOST(name, sig, origin) static m3ApiRawFunction(ph_host_##name);
PH_ABI_IMPORTS(PH_DECLARE_HOST)
#undef PH_DECLARE_HOST

#define PH_STR_(x) #x
#define PH_STR(x) PH_STR_(x)

#define PH_BRIDGE_OF(runtime) ((ph_bridge *)m3_GetUserData(runtime))

/* [ptr, ptr + len) lies inside linear memory, and ptr is not NULL unless len is 0. WASM3's
 * m3ApiCheckMem has the same rule but can only trap; this form lets a function return an error. */
#define ph_MemOk(ptr, len)                                                                          \
    ((len) == 0 ? (uint8_t *)(ptr) >= (uint8_t *)_mem &&                                            \
                      (uint64_t)((uint8_t *)(ptr) - (uint8_t *)_mem) <= m3_GetMemorySize(runtime)   \
                : !m3ApiIsNullPtr(ptr) &&                                                           \
                      (uint64_t)((uint8_t *)(ptr) - (uint8_t *)_mem) + (uint64_t)(len) <=           \
                          m3_GetMemorySize(runtime))

/* ------------------------------------------------------------------------------------------------ */

static m3ApiRawFunction(ph_host_ws_server_start)
{
    m3ApiReturnType (int32_t)
    m3ApiGetArg     (int32_t, port)
    ph_bridge *b = PH_BRIDGE_OF(runtime);

    /* A module swapped in over a running one: the transport is already listening for it. */
    if (b->replaying) m3ApiReturn(0);
    int32_t rc = b->ops.server_start ? b->ops.server_start(b->ops.ctx, port) : 0;
    m3ApiReturn(rc);
}

static m3ApiRawFunction(ph_host_ws_server_stop)
{
    ph_bridge *b = PH_BRIDGE_OF(runtime);

    if (b->ops.server_stop && !b->replaying) b->ops.server_stop(b->ops.ctx);
    m3ApiSuccess();
}

static m3ApiRawFunction(ph_host_ws_send_to_peer)
{
    m3ApiReturnType (int32_t)
    m3ApiGetArg     (int32_t, conn)
    m3ApiGetArgMem  (const uint8_t *, data)
    m3ApiGetArg     (int32_t, len)
    ph_bridge *b = PH_BRIDGE_OF(runtime);

    if (len < 0 || !ph_MemOk(data, (uint32_t)len)) m3ApiReturn(PH_SEND_BAD_ARGS);
    m3ApiReturn(ph_queue_frame(b, conn, data, (uint32_t)len));
}

static m3ApiRawFunction(ph_host_ws_broadcast)
{
    m3ApiReturnType (int32_t)
    m3ApiGetArgMem  (const uint8_t *, data)
    m3ApiGetArg     (int32_t, len)
    m3ApiGetArg     (int32_t, exclude)
    ph_bridge *b = PH_BRIDGE_OF(runtime);

    if (len < 0 || !ph_MemOk(data, (uint32_t)len)) m3ApiReturn(PH_SEND_BAD_ARGS);
    int32_t queued = 0;
    for (uint32_t i = 0; i < b->slot_count; i++) {
        ph_slot *s = &b->slots[i];
        int32_t conn = ph_conn_id(s, i);
        if (s->state != PH_SLOT_OPEN || !s->seen || conn == exclude) continue;
        if (ph_queue_frame(b, conn, data, (uint32_t)len) == PH_SEND_OK) queued++;
    }
    m3ApiReturn(queued);
}

static m3ApiRawFunction(ph_host_log_message)
{
    m3ApiGetArgMem  (const char *, msg)
    m3ApiGetArg     (int32_t, len)
    ph_bridge *b = PH_BRIDGE_OF(runtime);

    if (len < 0 || !ph_MemOk(msg, (uint32_t)len)) m3ApiTrap(m3Err_trapOutOfBoundsMemoryAccess);
    /* "L text": the module picks the level with its first letter (pigeonhub_abi.h). */
    char level = 'I';
    if (len >= 2 && msg[1] == ' ' && msg[0] && strchr("EWIDV", msg[0])) {
        level = msg[0];
        msg += 2;
        len -= 2;
    }
    if (b->ops.log) b->ops.log(b->ops.ctx, level, msg, (size_t)len);
    m3ApiSuccess();
}

static m3ApiRawFunction(ph_host_get_device_id)
{
    m3ApiGetArgMem  (char *, buf)
    m3ApiGetArg     (int32_t, len)
    ph_bridge *b = PH_BRIDGE_OF(runtime);

    if (len <= 0 || !ph_MemOk(buf, (uint32_t)len)) m3ApiTrap(m3Err_trapOutOfBoundsMemoryAccess);
    char id[64] = "";
    if (b->ops.device_id) b->ops.device_id(b->ops.ctx, id, sizeof id);
    id[sizeof id - 1] = '\0';
    size_t n = strlen(id);
    if (n > (size_t)len - 1) n = (size_t)len - 1;
    memcpy(buf, id, n);
    buf[n] = '\0';
    m3ApiSuccess();
}

static m3ApiRawFunction(ph_host_millis)
{
    m3ApiReturnType (int32_t)
    ph_bridge *b = PH_BRIDGE_OF(runtime);

    m3ApiReturn((int32_t)(b->ops.millis ? b->ops.millis(b->ops.ctx) : 0u));
}

/* snprintf's contract: copies at most len - 1 bytes and a NUL, returns the full length, so
 * result >= len tells the module the URL was cut. */
static m3ApiRawFunction(ph_host_ws_get_request_url)
{
    m3ApiReturnType (int32_t)
    m3ApiGetArg     (int32_t, conn)
    m3ApiGetArgMem  (char *, buf)
    m3ApiGetArg     (int32_t, len)
    ph_bridge *b = PH_BRIDGE_OF(runtime);

    if (len < 0 || !ph_MemOk(buf, (uint32_t)len)) m3ApiReturn(-1);
    ph_slot *s = ph_slot_of(b, conn);
    if (!s) m3ApiReturn(-1);
    if (len > 0) {
        size_t n = s->url_len < (size_t)len - 1 ? s->url_len : (size_t)len - 1;
        memcpy(buf, s->url, n);
        buf[n] = '\0';
    }
    m3ApiReturn((int32_t)s->url_len);
}

static m3ApiRawFunction(ph_host_ws_close_peer)
{
    m3ApiGetArg     (int32_t, conn)
    m3ApiGetArg     (int32_t, code)
    m3ApiGetArgMem  (const char *, reason)
    m3ApiGetArg     (int32_t, len)
    ph_bridge *b = PH_BRIDGE_OF(runtime);

    if (len < 0 || !ph_MemOk(reason, (uint32_t)len)) m3ApiTrap(m3Err_trapOutOfBoundsMemoryAccess);
    /* Codes a server may send (RFC 6455 7.4): anything else would make the transport refuse the
     * close, leaving the connection open; send "internal error" instead and say why. */
    bool valid = (code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006) ||
                 (code >= 3000 && code <= 4999);
    if (!valid) {
        ph_log(b, 'W', "bridge: module closed conn %d with invalid code %d, sending %d",
               (int)conn, (int)code, PH_CLOSE_INTERNAL);
        code = PH_CLOSE_INTERNAL;
    }
    ph_request_close(b, conn, (uint16_t)code, reason, (size_t)len);
    m3ApiSuccess();
}

static m3ApiRawFunction(ph_host_ws_ping_peer)
{
    m3ApiReturnType (int32_t)
    m3ApiGetArg     (int32_t, conn)
    ph_bridge *b = PH_BRIDGE_OF(runtime);

    ph_slot *s = ph_slot_of(b, conn);
    if (!s || s->state != PH_SLOT_OPEN || !b->ops.ping) m3ApiReturn(-1);
    if (s->link && s->link_state != PH_LINK_UP) m3ApiReturn(-1);   /* still dialing */
    if (b->replaying) m3ApiReturn(0);   /* the old module's liveness checks carry over */
    m3ApiReturn(b->ops.ping(b->ops.ctx, conn) < 0 ? -1 : 0);
}

static m3ApiRawFunction(ph_host_wall_clock_ms)
{
    m3ApiReturnType (int64_t)
    ph_bridge *b = PH_BRIDGE_OF(runtime);

    m3ApiReturn(b->ops.wall_clock_ms ? b->ops.wall_clock_ms(b->ops.ctx) : 0);
}

/* Results of ws_connect below zero (pigeonhub_abi.h only promises "<0"; the log says which). */
#define PH_CONNECT_BAD_URL   (-1)   /* empty, too long, not ws:// or wss://                      */
#define PH_CONNECT_NO_SLOT   (-2)   /* max_links links dialing or open already                  */
#define PH_CONNECT_BAD_ARGS  (-3)   /* pointer/length outside linear memory                     */
#define PH_CONNECT_FAILED    (-4)   /* the transport has no outgoing links or could not dial     */

int32_t ph_dial(ph_bridge *b, ph_slot *s)
{
    int32_t conn = ph_conn_id(s, (uint32_t)(s - b->slots));
    if (b->ops.connect && b->ops.connect(b->ops.ctx, conn, s->url, s->url_len) >= 0) return conn;
    ph_log(b, 'W', "bridge: transport could not dial %.*s", (int)s->url_len, s->url);
    return PH_CONNECT_FAILED;
}

/* (url, len) -> a connection id for a new outgoing hub link, or < 0. The id is returned at once;
 * the transport reports the handshake later (ph_bridge_on_link_open) or the failure
 * (ph_bridge_on_close -> on_peer_disconnected). */
static m3ApiRawFunction(ph_host_ws_connect)
{
    m3ApiReturnType (int32_t)
    m3ApiGetArgMem  (const char *, url)
    m3ApiGetArg     (int32_t, len)
    ph_bridge *b = PH_BRIDGE_OF(runtime);

    if (len < 0 || !ph_MemOk(url, (uint32_t)len)) {
        b->links_refused++;
        m3ApiReturn(PH_CONNECT_BAD_ARGS);
    }
    bool scheme = PH_STARTS_WITH_LIT(url, (size_t)len, "ws://") ||
                  PH_STARTS_WITH_LIT(url, (size_t)len, "wss://");
    if (!scheme || len > PH_MAX_URL_BYTES) {
        b->links_refused++;
        ph_log(b, 'W', "bridge: ws_connect refused: %s (%d bytes: %.*s)",
               scheme ? "URL longer than " PH_STR(PH_MAX_URL_BYTES) " bytes" : "not a ws:// or wss:// URL",
               (int)len, len > 80 ? 80 : (int)len, url);
        m3ApiReturn(PH_CONNECT_BAD_URL);
    }
    if (!b->ops.connect) {
        b->links_refused++;
        /* Once per bridge: the module re-dials with backoff and would repeat this forever. */
        ph_log(b, b->links_refused == 1 ? 'W' : 'D',
               "bridge: this transport has no outgoing links; ws_connect %.*s refused", (int)len, url);
        m3ApiReturn(PH_CONNECT_FAILED);
    }
    if (b->replaying) {
        /* A swapped-in module dials its bootstrap hubs from start_server: a link the old module
         * has to the same URL is handed over instead of dialed twice (the far hub keeps the old
         * module's announce, which is right: the hub id is the same). */
        for (uint32_t i = 0; i < b->slot_count; i++) {
            ph_slot *s = &b->slots[i];
            if (s->state == PH_SLOT_OPEN && s->link && s->seen && !s->adopted && !s->dial_pending &&
                s->url_len == (uint32_t)len && memcmp(s->url, url, (size_t)len) == 0) {
                s->adopted = true;
                m3ApiReturn(ph_conn_id(s, i));
            }
        }
    }
    ph_slot *s = b->link_count < b->config.max_links ? ph_slot_take(b, true, url, (size_t)len) : NULL;
    if (!s) {
        b->links_refused++;
        ph_log(b, 'W', "bridge: ws_connect %.*s refused: all %u hub link slots are in use", (int)len,
               url, (unsigned)b->config.max_links);
        m3ApiReturn(PH_CONNECT_NO_SLOT);
    }
    s->seen = true;   /* the module holds the id: on_peer_disconnected is owed from here */
    if (b->replaying) {
        s->adopted = true;
        s->dial_pending = true;   /* dialed once the swap has succeeded (ph_swap.c) */
        m3ApiReturn(ph_conn_id(s, (uint32_t)(s - b->slots)));
    }
    int32_t conn = ph_dial(b, s);
    if (conn < 0) {
        b->links_refused++;
        ph_slot_release(b, s);   /* the module gets < 0: it never held the id */
    }
    m3ApiReturn(conn);
}

/* (index, buf, len) -> the index-th bootstrap hub URL, snprintf's contract (at most len - 1
 * bytes and a NUL; the full length is returned), -1 past the end, -3 for a bad pointer. */
static m3ApiRawFunction(ph_host_get_bootstrap_hub)
{
    m3ApiReturnType (int32_t)
    m3ApiGetArg     (int32_t, index)
    m3ApiGetArgMem  (char *, buf)
    m3ApiGetArg     (int32_t, len)
    ph_bridge *b = PH_BRIDGE_OF(runtime);

    if (len < 0 || !ph_MemOk(buf, (uint32_t)len)) m3ApiReturn(PH_CONNECT_BAD_ARGS);
    if (index < 0 || (uint32_t)index >= b->bootstrap_count) m3ApiReturn(-1);
    const char *url = b->bootstrap[index];
    size_t full = strlen(url);
    if (len > 0) {
        size_t n = full < (size_t)len - 1 ? full : (size_t)len - 1;
        memcpy(buf, url, n);
        buf[n] = '\0';
    }
    m3ApiReturn((int32_t)full);
}

/* (text, len) -> length of the JSON string token at text (its opening quote) through the closing
 * quote, or PH_JSON_STRING_*: the module's string validation, run natively (ph_json_string.h). */
static m3ApiRawFunction(ph_host_json_string_end)
{
    m3ApiReturnType (int32_t)
    m3ApiGetArgMem  (const uint8_t *, text)
    m3ApiGetArg     (int32_t, len)

    if (len < 0 || !ph_MemOk(text, (uint32_t)len)) m3ApiReturn(PH_JSON_STRING_BAD_ARGS);
    m3ApiReturn(ph_json_string_end(text, (uint32_t)len));
}

/* (text, len) -> length of the JSON value starting at text, or PH_JSON_STRING_* / PH_JSON_VALUE_DEPTH:
 * the module's validation of a frame's member values, run natively (ph_json_string.h). */
static m3ApiRawFunction(ph_host_json_value_end)
{
    m3ApiReturnType (int32_t)
    m3ApiGetArgMem  (const uint8_t *, text)
    m3ApiGetArg     (int32_t, len)

    if (len < 0 || !ph_MemOk(text, (uint32_t)len)) m3ApiReturn(PH_JSON_STRING_BAD_ARGS);
    m3ApiReturn(ph_json_value_end(text, (uint32_t)len));
}

/* ------------------------------------------------------------------------------------------------ */

/* The import table: the ABI's import list, one row per function, bound with m3_LinkRawFunction. */
#define PH_LINK_ROW(name, sig, origin) { #name, sig, ph_host_##name },
static const struct ph_import {
    const char *name;
    const char *signature;
    M3RawCall function;
} ph_imports[] = {
    PH_ABI_IMPORTS(PH_LINK_ROW)
};
#undef PH_LINK_ROW

ph_result ph_bind_imports(ph_bridge *b, char *err, size_t err_cap)
{
    for (size_t i = 0; i < sizeof ph_imports / sizeof ph_imports[0]; i++) {
        const struct ph_import *imp = &ph_imports[i];
        M3Result r = m3_LinkRawFunction(b->inst.module, "env", imp->name, imp->signature, imp->function);
        if (r == m3Err_functionLookupFailed) continue;   /* the module does not use this one */
        if (r)
            return ph_fail(err, err_cap, PH_ERR_LOAD,
                           "module import env.%s does not match the bridge's (signature %s): %s",
                           imp->name, imp->signature, r);
    }
    /* WASM3 only notices an unlinked import when a function calling it is compiled, possibly in
     * the middle of serving: refuse the module now instead. */
    IM3Module m = b->inst.module;
    for (uint32_t i = 0; i < m->numFunctions; i++) {
        IM3Function f = &m->functions[i];
        if ((f->import.moduleUtf8 || f->import.fieldUtf8) && !f->compiled)
            return ph_fail(err, err_cap, PH_ERR_LOAD,
                           "module imports %s.%s, which this bridge does not provide (ABI v%d)",
                           f->import.moduleUtf8 ? f->import.moduleUtf8 : "?",
                           f->import.fieldUtf8 ? f->import.fieldUtf8 : "?", PH_ABI_VERSION);
    }
    return PH_OK;
}
