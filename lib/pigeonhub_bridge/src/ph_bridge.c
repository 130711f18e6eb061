/*
 * ph_bridge.c — bridge lifecycle and transport events: runs hub.wasm in WASM3 for one transport.
 *
 * Every call into the module goes through ph_call(), which is where traps are caught: the trap is
 * logged and counted, the module's __stack_pointer is put back where it was before the call, and the
 * connection being served is closed 1011. The hub keeps serving everyone else. ph_call also gives
 * each call its budget (config.call_budget loop iterations and calls), so a module that never
 * returns traps instead of stopping the hub.
 *
 * Connection ids carry a slot index and a generation (ph_bridge_internal.h). Each slot has a
 * bounded outbox counter: bytes handed to ops->send minus bytes the transport reported written.
 * A connection whose counter would pass outbox_limit_bytes is closed 1013 (unless its outbox is
 * empty), so one slow reader can never make the hub hold an unbounded amount of data for it, nor
 * slow the others down.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ph_bridge_internal.h"
#include "ph_json_string.h"
#include "m3_env.h"   /* WASM3 0.5.0 internals: memory header, module globals */

#define PH_EXPORT_NAME(name, sig, origin) #name,
static const char *const ph_export_names[PH_EXPORT_COUNT] = { PH_ABI_EXPORTS(PH_EXPORT_NAME) };
#undef PH_EXPORT_NAME

static void ph_finish_pending_closes(ph_bridge *b);

void ph_log(ph_bridge *b, char level, const char *fmt, ...)
{
    if (!b->ops.log) return;
    char line[PH_LOG_LINE_BYTES];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = (int)sizeof line - 1;
    b->ops.log(b->ops.ctx, level, line, (size_t)n);
}

uint32_t ph_memory_size(const ph_bridge *b)
{
    uint32_t size = 0;
    if (b->inst.runtime && b->inst.runtime->memory.mallocated) m3_GetMemory(b->inst.runtime, &size, 0);
    return size;
}

uint8_t *ph_memory(const ph_bridge *b)
{
    return b->inst.runtime && b->inst.runtime->memory.mallocated ? m3_GetMemory(b->inst.runtime, NULL, 0) : NULL;
}

ph_slot *ph_slot_of(ph_bridge *b, int32_t conn)
{
    if (!b || conn < 0) return NULL;
    uint32_t index = (uint32_t)conn & PH_SLOT_MASK, generation = (uint32_t)conn >> PH_SLOT_BITS;
    if (index >= b->slot_count) return NULL;
    ph_slot *s = &b->slots[index];
    return s->state != PH_SLOT_FREE && s->generation == generation ? s : NULL;
}

/* Subtract up to len written bytes from the outbox of (slot, generation); any thread. */
static void ph_outbox_release(ph_slot *s, uint32_t generation, size_t len)
{
    uint64_t cur = atomic_load(&s->outbox), next;
    do {
        if ((uint32_t)(cur >> 32) != generation) return;   /* slot reused: not ours any more */
        uint32_t queued = (uint32_t)cur;
        next = cur - (len < queued ? (uint32_t)len : queued);
    } while (!atomic_compare_exchange_weak(&s->outbox, &cur, next));
}

/* ------------------------------------------------------------------------------------------------ */
/* Calls into the module                                                                            */

/* Call export `id`; `conn` names the connection being served (or -1), which is closed 1011 when the
 * call traps and close_on_trap is set. ret receives an i32 result when the export has one.
 * A call that spends its whole budget returns b->budget_trap (the trap with the budget's size). */
M3Result ph_call(ph_bridge *b, ph_export_id id, int32_t conn, bool close_on_trap, uint32_t argc,
                 const int32_t *args, int32_t *ret)
{
    const void *argp[4];
    for (uint32_t i = 0; i < argc && i < 4; i++) argp[i] = &args[i];
    IM3Function f = b->inst.fn[id];
    if (!f) return "no module loaded";   /* a swap that could not restore the old module either */
    int64_t saved_sp = b->inst.stack_pointer ? b->inst.stack_pointer->intValue : 0;

    b->depth++;
    /* Every call starts with the whole budget: what one frame or tick may cost does not depend
     * on the calls before it. */
    m3_SetCallBudget(b->inst.runtime, b->config.call_budget);
    M3Result r = m3_Call(f, argc, argp);
    uint32_t spent = b->config.call_budget - m3_GetCallBudgetLeft(b->inst.runtime);
    if (spent > b->budget_peak) b->budget_peak = spent;
    if (!r && ret) r = m3_GetResultsV(f, ret);
    b->depth--;

    if (r == m3Err_trapBudgetExhausted) r = b->budget_trap;
    if (r) {
        /* A trap unwinds the interpreter but not the module's shadow stack: without this, every
         * trap would leak the trapping functions' frames until the stack runs into the data. */
        if (b->inst.stack_pointer) b->inst.stack_pointer->intValue = saved_sp;
        b->traps++;
        if (conn >= 0)
            ph_log(b, 'E', "hub.wasm %s() trapped: %s (conn %d)", ph_export_names[id], r, (int)conn);
        else
            ph_log(b, 'E', "hub.wasm %s() trapped: %s", ph_export_names[id], r);
        if (close_on_trap && conn >= 0)
            ph_request_close(b, conn, PH_CLOSE_INTERNAL, PH_REASON_TRAP, sizeof PH_REASON_TRAP - 1);
    }
    if (b->depth == 0 && b->closes_pending) ph_finish_pending_closes(b);
    return r;
}

static M3Result ph_call0(ph_bridge *b, ph_export_id id, int32_t *ret)
{
    return ph_call(b, id, -1, false, 0, NULL, ret);
}

/* ------------------------------------------------------------------------------------------------ */
/* Connections                                                                                      */

void ph_request_close(ph_bridge *b, int32_t conn, uint16_t code, const char *reason, size_t len)
{
    ph_slot *s = ph_slot_of(b, conn);
    if (!s || s->state != PH_SLOT_OPEN) return;   /* already closing or gone: one close is enough */
    if (b->replaying) {
        ph_defer_close(b, conn, code, reason, len);   /* carried out after a successful swap */
        return;
    }
    s->state = PH_SLOT_CLOSING;
    if (len > PH_MAX_CLOSE_REASON) {
        len = PH_MAX_CLOSE_REASON;
        while (len > 0 && ((uint8_t)reason[len] & 0xC0) == 0x80) len--;   /* whole UTF-8 chars */
    }
    if (b->ops.close) b->ops.close(b->ops.ctx, conn, code, reason, len);
}

int32_t ph_queue_frame(ph_bridge *b, int32_t conn, const uint8_t *frame, uint32_t len)
{
    ph_slot *s = ph_slot_of(b, conn);
    if (!s || s->state != PH_SLOT_OPEN || !b->ops.send) return PH_SEND_NO_CONN;
    if (s->link && s->link_state != PH_LINK_UP) return PH_SEND_NO_CONN;   /* still dialing */
    if (b->replaying) {
        /* The client already got this frame's like from the old module (connected,
         * peer-discovered...): the new module only rebuilds its state. */
        b->suppressed++;
        return PH_SEND_OK;
    }

    uint32_t queued = (uint32_t)atomic_load(&s->outbox);
    uint32_t limit = b->config.outbox_limit_bytes;
    /* An empty outbox takes any frame: the largest frame the module may send must reach a reader
     * that keeps up whatever the limit, so a reader holds at most the limit plus one frame. */
    if (limit && queued > 0 && (uint64_t)queued + len > limit) {
        b->outbox_overflows++;
        ph_log(b, 'W', "conn %d is not reading: %u bytes unsent, limit %u; dropping a %u-byte frame "
               "and closing it %d", (int)conn, (unsigned)queued, (unsigned)limit, (unsigned)len,
               PH_CLOSE_TRY_LATER);
        ph_request_close(b, conn, PH_CLOSE_TRY_LATER, PH_REASON_OUTBOX_FULL,
                         sizeof PH_REASON_OUTBOX_FULL - 1);
        return PH_SEND_OUTBOX_FULL;
    }
    /* Counted before the hand-over: a transport may report the bytes sent from inside send(). */
    atomic_fetch_add(&s->outbox, len);
    if (b->ops.send(b->ops.ctx, conn, frame, len) < 0) {
        ph_outbox_release(s, s->generation, len);
        return PH_SEND_NO_CONN;
    }
    s->frames_out++;
    return PH_SEND_OK;
}

/* The transport has closed the slot's socket: tell the module (once), then free the slot. */
static void ph_finish_close(ph_bridge *b, uint32_t index)
{
    ph_slot *s = &b->slots[index];
    int32_t conn = ph_conn_id(s, index);
    s->state = PH_SLOT_GONE;   /* nothing is sent to it, a repeated on_close is ignored */
    s->closed_pending = false;
    if (s->seen) {
        s->seen = false;
        int32_t arg = conn;
        ph_call(b, PH_EXPORT_on_peer_disconnected, conn, false, 1, &arg, NULL);
    }
    ph_slot_release(b, s);
}

ph_slot *ph_slot_take(ph_bridge *b, bool link, const char *url, size_t url_len)
{
    uint32_t index = 0;
    while (index < b->slot_count && b->slots[index].state != PH_SLOT_FREE) index++;
    if (index == b->slot_count) return NULL;
    ph_slot *s = &b->slots[index];
    s->url = malloc(url_len + 1);
    if (!s->url) {
        ph_log(b, 'E', "out of memory for a connection's URL");
        return NULL;
    }
    if (url_len) memcpy(s->url, url, url_len);
    s->url[url_len] = '\0';
    s->url_len = (uint16_t)url_len;
    s->state = PH_SLOT_OPEN;
    s->seen = false;
    s->closed_pending = false;
    s->link = link;
    s->link_state = PH_LINK_DIALING;
    s->adopted = false;
    s->dial_pending = false;
    s->frames_in = s->frames_out = 0;
    s->opened_ms = b->ops.millis ? b->ops.millis(b->ops.ctx) : 0;
    b->open_count++;
    if (link) b->link_count++;
    else b->accepted_count++;
    return s;
}

void ph_slot_release(ph_bridge *b, ph_slot *s)
{
    free(s->url);
    s->url = NULL;
    s->url_len = 0;
    free(s->announce);
    s->announce = NULL;
    s->announce_len = 0;
    s->seen = false;
    s->closed_pending = false;
    if (s->link) b->link_count--;
    else b->accepted_count--;
    s->link = false;
    s->adopted = s->dial_pending = false;
    s->generation = (s->generation + 1) & PH_GENERATION_MASK;
    atomic_store(&s->outbox, (uint64_t)s->generation << 32);
    s->state = PH_SLOT_FREE;
    b->open_count--;
}

static void ph_finish_pending_closes(ph_bridge *b)
{
    b->closes_pending = false;
    for (uint32_t i = 0; i < b->slot_count; i++)
        if (b->slots[i].closed_pending) ph_finish_close(b, i);
}

int32_t ph_bridge_on_open(ph_bridge *bridge, const char *url, size_t url_len)
{
    ph_bridge *b = bridge;
    if (!b) return PH_ERR_UNKNOWN_CONN;
    if (b->depth) {
        ph_log(b, 'E', "connection opened from inside a module call; refused (transport bug)");
        return PH_ERR_FULL;
    }
    /* The link slots on top of max_connections stay free for ws_connect. */
    if (b->accepted_count >= b->config.max_connections) {
        b->refused_full++;
        return PH_ERR_FULL;
    }
    if (url_len > PH_MAX_URL_BYTES) url_len = PH_MAX_URL_BYTES;
    ph_slot *s = ph_slot_take(b, false, url, url_len);
    if (!s) return PH_ERR_NO_MEMORY;
    s->seen = true;        /* from here on the module is owed exactly one on_peer_disconnected */

    int32_t conn = ph_conn_id(s, (uint32_t)(s - b->slots));
    ph_call(b, PH_EXPORT_on_peer_connected, conn, true, 1, &conn, NULL);
    return conn;
}

void ph_bridge_on_link_open(ph_bridge *bridge, int32_t conn)
{
    ph_bridge *b = bridge;
    ph_slot *s = ph_slot_of(b, conn);
    if (!s || !s->link || s->link_state != PH_LINK_DIALING || s->dial_pending) return;
    if (b->depth) {
        ph_log(b, 'E', "link %d reported open from inside a module call; ignored (transport bug)",
               (int)conn);
        return;
    }
    s->link_state = PH_LINK_UP;
    if (s->state != PH_SLOT_OPEN) return;   /* the module closed it meanwhile: close under way */
    b->links_opened++;
    ph_call(b, PH_EXPORT_on_link_open, conn, true, 1, &conn, NULL);
}

bool ph_bridge_accepts_frame(ph_bridge *bridge, int32_t conn, size_t len)
{
    ph_slot *s = ph_slot_of(bridge, conn);
    if (!s || s->state != PH_SLOT_OPEN) return false;
    if (s->link && s->link_state != PH_LINK_UP) return false;   /* no frames before the handshake */
    if (len > bridge->inst.input_size) {
        bridge->frames_too_big++;
        ph_log(bridge, 'W', "conn %d sent a %zu-byte frame, the module accepts at most %u: closing it %d",
               (int)conn, len, (unsigned)bridge->inst.input_size, PH_CLOSE_TOO_BIG);
        ph_request_close(bridge, conn, PH_CLOSE_TOO_BIG, PH_REASON_TOO_BIG,
                         sizeof PH_REASON_TOO_BIG - 1);
        return false;
    }
    return true;
}

void ph_bridge_on_frame(ph_bridge *bridge, int32_t conn, const uint8_t *data, size_t len)
{
    ph_bridge *b = bridge;
    if (!b) return;
    if (b->depth) {
        ph_log(b, 'E', "frame for conn %d delivered from inside a module call; dropped (transport bug)",
               (int)conn);
        return;
    }
    if (!ph_bridge_accepts_frame(b, conn, len)) return;
    ph_slot *s = ph_slot_of(b, conn);
    ph_track_announce(b, s, data, len);
    s->frames_in++;
    /* Copied, never pointed at: the module can only read its own linear memory. */
    if (len) memcpy(ph_memory(b) + b->inst.input_ptr, data, len);
    b->frames_in++;
    int32_t args[3] = { conn, (int32_t)b->inst.input_ptr, (int32_t)len };
    ph_call(b, PH_EXPORT_on_message, conn, true, 3, args, NULL);
}

void ph_bridge_on_pong(ph_bridge *bridge, int32_t conn)
{
    ph_slot *s = ph_slot_of(bridge, conn);
    if (!s || s->state != PH_SLOT_OPEN || bridge->depth) return;
    ph_call(bridge, PH_EXPORT_on_pong, conn, true, 1, &conn, NULL);
}

void ph_bridge_on_close(ph_bridge *bridge, int32_t conn)
{
    ph_slot *s = ph_slot_of(bridge, conn);
    if (!s || s->state == PH_SLOT_GONE) return;
    s->state = PH_SLOT_GONE;
    if (bridge->depth) {
        /* Reported from inside a transport callback: the module hears of it once its current
         * call has returned, never re-entrantly. Until then nothing more is sent to it. */
        s->closed_pending = true;
        bridge->closes_pending = true;
        return;
    }
    ph_finish_close(bridge, (uint32_t)conn & PH_SLOT_MASK);
}

void ph_bridge_on_sent(ph_bridge *bridge, int32_t conn, size_t len)
{
    if (!bridge || conn < 0) return;
    uint32_t index = (uint32_t)conn & PH_SLOT_MASK;
    if (index >= bridge->slot_count) return;
    ph_outbox_release(&bridge->slots[index], (uint32_t)conn >> PH_SLOT_BITS, len);
}

void ph_bridge_tick(ph_bridge *bridge)
{
    if (!bridge || bridge->depth) return;
    ph_call0(bridge, PH_EXPORT_loop, NULL);
}

/* ------------------------------------------------------------------------------------------------ */
/* Lifecycle                                                                                        */

static ph_result ph_read_hub_id(ph_bridge *b, char *err, size_t err_cap)
{
    int32_t ptr = 0;
    M3Result r = ph_call0(b, PH_EXPORT_get_hub_id, &ptr);
    if (r) return ph_fail(err, err_cap, PH_ERR_INIT, "get_hub_id() trapped: %s", r);
    uint32_t size = ph_memory_size(b);
    if (ptr <= 0 || (uint64_t)(uint32_t)ptr + 41 > size)
        return ph_fail(err, err_cap, PH_ERR_INIT,
                       "get_hub_id() returned %d, outside the module's %u bytes of memory", (int)ptr,
                       (unsigned)size);
    const char *id = (const char *)ph_memory(b) + ptr;
    for (int i = 0; i < 40; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return ph_fail(err, err_cap, PH_ERR_INIT,
                           "get_hub_id() must point at 40 hex characters; character %d is 0x%02x", i,
                           (unsigned)(uint8_t)c);
    }
    if (id[40] != '\0')
        return ph_fail(err, err_cap, PH_ERR_INIT, "get_hub_id()'s 40 hex characters are not NUL-terminated");
    memcpy(b->inst.hub_id, id, 40);
    b->inst.hub_id[40] = '\0';
    return PH_OK;
}

static ph_result ph_read_input_buffer(ph_bridge *b, char *err, size_t err_cap)
{
    int32_t ptr = 0, size = 0;
    M3Result r = ph_call0(b, PH_EXPORT_get_input_buffer, &ptr);
    if (!r) r = ph_call0(b, PH_EXPORT_get_input_buffer_size, &size);
    if (r) return ph_fail(err, err_cap, PH_ERR_INIT, "get_input_buffer*() trapped: %s", r);
    uint32_t usable = ph_memory_size(b);
    if (ptr <= 0 || size <= 0 || (uint64_t)(uint32_t)ptr + (uint32_t)size > usable)
        return ph_fail(err, err_cap, PH_ERR_MEMORY,
                       "module's input buffer (address %d, %d bytes) does not lie inside its %u bytes "
                       "of usable linear memory", (int)ptr, (int)size, (unsigned)usable);
    b->inst.input_ptr = (uint32_t)ptr;
    b->inst.input_size = (uint32_t)size;
    return PH_OK;
}

/* Running out of heap is not the module's fault: it gets its own result, so an upload of a good
 * module is not reported as a bad one. */
static ph_result ph_load_result(M3Result r)
{
    return r == m3Err_mallocFailed || r == m3Err_mallocFailedCodePage ? PH_ERR_NO_MEMORY : PH_ERR_LOAD;
}

ph_result ph_instantiate(ph_bridge *b, const uint8_t *wasm, size_t wasm_len, char *err, size_t err_cap)
{
    ph_result rc;
    ph_module_info info;
    IM3Module module = NULL;
    M3Result r;
    int32_t value = 0;

    if ((rc = ph_check_bytes(wasm, wasm_len, &info, err, err_cap)) != PH_OK) return rc;
    if ((rc = ph_check_memory(&info, b->config.memory_limit_bytes, err, err_cap)) != PH_OK) return rc;

    b->inst.wasm = wasm;
    b->inst.wasm_len = wasm_len;
    b->inst.env = m3_NewEnvironment();
    if (!b->inst.env) {
        rc = ph_fail(err, err_cap, PH_ERR_NO_MEMORY, "out of memory for the WASM3 environment");
        goto fail;
    }
    b->inst.runtime = m3_NewRuntime(b->inst.env, b->config.wasm_stack_bytes, b);
    if (!b->inst.runtime) {
        rc = ph_fail(err, err_cap, PH_ERR_NO_MEMORY, "out of memory for a WASM3 runtime with a %u-byte stack",
                     (unsigned)b->config.wasm_stack_bytes);
        goto fail_env;
    }
    /* The bridge reads WASM3's structs (m3_env.h), whose layout depends on WASM3's configuration:
     * a bridge compiled with other definitions than WASM3 would write outside the runtime. */
    if (b->inst.runtime->userdata != m3_GetUserData(b->inst.runtime)) {
        rc = ph_fail(err, err_cap, PH_ERR_LOAD, "WASM3 and the bridge were compiled with different "
                     "WASM3 configurations (M3Runtime layouts differ): build both with the same "
                     "definitions (lib/wasm3/CMakeLists.txt)");
        goto fail_runtime;
    }
    /* Linear memory actually allocated; accesses beyond it trap even inside a declared page. */
    b->inst.runtime->memoryLimit = b->config.memory_limit_bytes;

    r = m3_ParseModule(b->inst.env, &module, wasm, (uint32_t)wasm_len);
    if (r) {
        rc = ph_fail(err, err_cap, ph_load_result(r), "WASM3 cannot parse the module: %s", r);
        goto fail_runtime;   /* m3_ParseModule freed what it had built */
    }
    if (module->memoryImported) {
        rc = ph_fail(err, err_cap, PH_ERR_MEMORY, "module imports its linear memory; it must define its own");
        goto fail_module;
    }
    r = m3_LoadModule(b->inst.runtime, module);
    if (r && b->config.memory_limit_bytes && ph_load_result(r) != PH_ERR_NO_MEMORY &&
        (uint64_t)info.initial_pages * PH_WASM_PAGE_BYTES > b->config.memory_limit_bytes) {
        /* Most likely its data lies past the limit: say so rather than WASM3's generic words. */
        rc = ph_fail(err, err_cap, PH_ERR_MEMORY,
                     "module does not fit in the %u-byte memory limit (WASM3: %s)",
                     (unsigned)b->config.memory_limit_bytes, r);
        goto fail_module;
    }
    if (r) {
        rc = ph_fail(err, err_cap, ph_load_result(r), "WASM3 cannot load the module: %s", r);
        goto fail_module;
    }
    b->inst.module = module;   /* the runtime owns it from here */

    if ((rc = ph_bind_imports(b, err, err_cap)) != PH_OK) goto fail_runtime;
    r = m3_CompileModule(module);
    if (r) {
        rc = ph_fail(err, err_cap, ph_load_result(r), "WASM3 cannot compile the module: %s", r);
        goto fail_runtime;
    }
    if ((rc = ph_check_globals(b, err, err_cap)) != PH_OK) goto fail_runtime;
    /* The version first: a module of another ABI version also misses or mis-types exports
     * (an ABI 1 module has no on_link_open), and its version is the useful thing to report. */
    if ((rc = ph_check_abi_version(b, err, err_cap)) != PH_OK) goto fail_runtime;
    if ((rc = ph_check_exports(b, err, err_cap)) != PH_OK) goto fail_runtime;
    if ((r = ph_call0(b, PH_EXPORT_init, &value)) != m3Err_none) {
        rc = ph_fail(err, err_cap, r == m3Err_mallocFailed || r == m3Err_mallocFailedCodePage
                                       ? PH_ERR_NO_MEMORY : PH_ERR_INIT, "init() trapped: %s", r);
        goto fail_runtime;
    }
    if (value != 0) {
        rc = ph_fail(err, err_cap, PH_ERR_INIT, "init() returned %d (0 means success)", (int)value);
        goto fail_runtime;
    }
    if ((rc = ph_read_input_buffer(b, err, err_cap)) != PH_OK) goto fail_runtime;
    if ((rc = ph_read_hub_id(b, err, err_cap)) != PH_OK) goto fail_runtime;
    return PH_OK;

fail_module:
    m3_FreeModule(module);
fail_runtime:
    m3_FreeRuntime(b->inst.runtime);
fail_env:
    m3_FreeEnvironment(b->inst.env);
fail:
    memset(&b->inst, 0, sizeof b->inst);
    return rc;
}

void ph_instance_free(ph_instance *inst)
{
    if (inst->runtime) m3_FreeRuntime(inst->runtime);   /* frees the module it loaded */
    if (inst->env) m3_FreeEnvironment(inst->env);
    memset(inst, 0, sizeof *inst);
}

static void ph_free_bootstrap(ph_bridge *b)
{
    for (uint32_t i = 0; i < b->bootstrap_count; i++) free(b->bootstrap[i]);
    free(b->bootstrap);
    b->bootstrap = NULL;
    b->bootstrap_count = 0;
}

/* The caller's list may be temporary (a parsed Kconfig string, a Python list): keep a copy. */
static ph_result ph_copy_bootstrap(ph_bridge *b, char *err, size_t err_cap)
{
    const char *const *urls = b->config.bootstrap_urls;
    uint32_t n = urls ? b->config.bootstrap_count : 0;
    b->config.bootstrap_urls = NULL;   /* the caller's array: never read after create */
    b->config.bootstrap_count = 0;
    if (n == 0) return PH_OK;
    b->bootstrap = calloc(n, sizeof *b->bootstrap);
    if (!b->bootstrap) return ph_fail(err, err_cap, PH_ERR_NO_MEMORY, "out of memory for the bootstrap list");
    for (uint32_t i = 0; i < n; i++) {
        const char *url = urls[i];
        if (!url) {
            ph_free_bootstrap(b);
            return ph_fail(err, err_cap, PH_ERR_CONFIG, "bootstrap hub %u is NULL", (unsigned)i);
        }
        size_t len = strlen(url);
        if (len > PH_BRIDGE_MAX_BOOTSTRAP_URL) {
            ph_free_bootstrap(b);
            return ph_fail(err, err_cap, PH_ERR_CONFIG,
                           "bootstrap hub %u is %zu bytes long; at most %u are allowed", (unsigned)i,
                           len, PH_BRIDGE_MAX_BOOTSTRAP_URL);
        }
        b->bootstrap[i] = malloc(len + 1);
        if (!b->bootstrap[i]) {
            ph_free_bootstrap(b);
            return ph_fail(err, err_cap, PH_ERR_NO_MEMORY, "out of memory for the bootstrap list");
        }
        memcpy(b->bootstrap[i], url, len + 1);
        b->bootstrap_count = i + 1;
    }
    return PH_OK;
}

ph_bridge *ph_bridge_create(const uint8_t *wasm, size_t wasm_len, const ph_transport_ops *ops,
                            const ph_bridge_config *config, ph_result *result, char *err,
                            size_t err_cap)
{
    static const ph_bridge_config defaults = PH_BRIDGE_CONFIG_DEFAULT;
    ph_result rc;
    ph_module_info info;
    ph_bridge *b = NULL;
    if (err && err_cap) err[0] = '\0';

    /* Cheap checks first: no allocation for a file that is not a module at all. */
    if ((rc = ph_check_bytes(wasm, wasm_len, &info, err, err_cap)) != PH_OK) goto fail;
    if ((rc = ph_check_memory(&info, config ? config->memory_limit_bytes : 0, err, err_cap)) != PH_OK)
        goto fail;

    b = calloc(1, sizeof *b);
    if (!b) {
        rc = ph_fail(err, err_cap, PH_ERR_NO_MEMORY, "out of memory for the bridge");
        goto fail;
    }
    if (ops) b->ops = *ops;
    b->config = config ? *config : defaults;
    if (b->config.max_links > PH_BRIDGE_MAX_LINKS) b->config.max_links = PH_BRIDGE_MAX_LINKS;
    if (b->config.max_connections == 0) b->config.max_connections = defaults.max_connections;
    if (b->config.max_connections > PH_MAX_SLOTS - b->config.max_links)
        b->config.max_connections = PH_MAX_SLOTS - b->config.max_links;
    if (b->config.wasm_stack_bytes == 0) b->config.wasm_stack_bytes = defaults.wasm_stack_bytes;
    if (b->config.call_budget == 0) b->config.call_budget = defaults.call_budget;
    snprintf(b->budget_trap, sizeof b->budget_trap,
             "[trap] module exceeded its per-call budget of %u loop iterations/calls",
             (unsigned)b->config.call_budget);
    if ((rc = ph_copy_bootstrap(b, err, err_cap)) != PH_OK) goto fail_bridge;

    b->slot_count = b->config.max_connections + b->config.max_links;
    b->slots = calloc(b->slot_count, sizeof *b->slots);
    if (!b->slots) {
        rc = ph_fail(err, err_cap, PH_ERR_NO_MEMORY, "out of memory for %u connection slots",
                     (unsigned)b->slot_count);
        goto fail_bridge;
    }
    for (uint32_t i = 0; i < b->slot_count; i++) atomic_init(&b->slots[i].outbox, 0);

    if ((rc = ph_instantiate(b, wasm, wasm_len, err, err_cap)) != PH_OK) goto fail_slots;
    if (result) *result = PH_OK;
    return b;

fail_slots:
    free(b->slots);
fail_bridge:
    ph_free_bootstrap(b);
    free(b);
fail:
    if (result) *result = rc;
    return NULL;
}

void ph_bridge_destroy(ph_bridge *bridge)
{
    if (!bridge) return;
    for (uint32_t i = 0; i < bridge->slot_count; i++) {
        free(bridge->slots[i].url);
        free(bridge->slots[i].announce);
    }
    m3_FreeRuntime(bridge->inst.runtime);
    m3_FreeEnvironment(bridge->inst.env);
    free(bridge->slots);
    ph_free_bootstrap(bridge);
    free(bridge);
}

ph_result ph_bridge_check_module(const uint8_t *wasm, size_t wasm_len, char *err, size_t err_cap)
{
    /* A scratch bridge without a transport: init() runs, its imports see an empty device id. */
    static const ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    ph_result rc = PH_OK;
    ph_bridge *b = ph_bridge_create(wasm, wasm_len, NULL, &config, &rc, err, err_cap);
    ph_bridge_destroy(b);
    return rc;
}

int ph_bridge_start(ph_bridge *bridge, int port)
{
    if (!bridge || bridge->depth) return -1;
    int32_t arg = port, rc = -1;
    if (ph_call(bridge, PH_EXPORT_start_server, -1, false, 1, &arg, &rc)) return -1;
    /* Remembered so a swapped-in module is started on the same port (ph_bridge_swap). */
    bridge->started = rc == 0;
    bridge->port = port;
    return rc;
}

void ph_bridge_stop(ph_bridge *bridge)
{
    if (!bridge || bridge->depth) return;
    bridge->started = false;
    ph_call0(bridge, PH_EXPORT_stop_server, NULL);
}

/* ------------------------------------------------------------------------------------------------ */
/* Queries                                                                                          */

/* Per link in the stats: the URL (escaped: at most twice its length) and the fixed members. */
#define PH_LINK_STATS_BYTES (2 * PH_MAX_URL_BYTES + 128)

size_t ph_bridge_stats_capacity(const ph_bridge *bridge)
{
    if (!bridge) return 0;
    return (size_t)bridge->inst.input_size + 2048 + (size_t)bridge->config.max_links * PH_LINK_STATS_BYTES;
}

int ph_bridge_stats_json(ph_bridge *bridge, char *buf, size_t cap)
{
    ph_bridge *b = bridge;
    if (!b || !buf || cap == 0) return -1;

    const char *module_json = "null";
    size_t module_len = 4;
    int32_t args[2] = { (int32_t)b->inst.input_ptr, (int32_t)b->inst.input_size };
    if (!b->depth && !ph_call(b, PH_EXPORT_get_stats, -1, false, 2, args, NULL)) {
        const char *js = (const char *)ph_memory(b) + b->inst.input_ptr;
        const char *nul = memchr(js, '\0', b->inst.input_size);
        size_t n = nul ? (size_t)(nul - js) : 0;
        if (n >= 2 && js[0] == '{' && js[n - 1] == '}') {
            module_json = js;
            module_len = n;
        } else {
            ph_log(b, 'W', "get_stats() did not write a NUL-terminated JSON object");
        }
    }

    uint64_t outbox_bytes = 0;
    for (uint32_t i = 0; i < b->slot_count; i++)
        if (b->slots[i].state != PH_SLOT_FREE) outbox_bytes += (uint32_t)atomic_load(&b->slots[i].outbox);

    /* The bridge's figures: /stats key and value in one table. */
#define PH_BRIDGE_FIGURES(X)                                     \
    X("connections", b->accepted_count)                          \
    X("maxConnections", b->config.max_connections)               \
    X("framesIn", b->frames_in)                                  \
    X("framesTooBig", b->frames_too_big)                         \
    X("outboxOverflows", b->outbox_overflows)                    \
    X("traps", b->traps)                                         \
    X("refusedFull", b->refused_full)                            \
    X("outboxBytes", outbox_bytes)                               \
    X("outboxLimit", b->config.outbox_limit_bytes)               \
    X("moduleBytes", b->inst.wasm_len)                           \
    X("linearMemoryBytes", ph_memory_size(b))                    \
    X("wasmStackBytes", b->config.wasm_stack_bytes)              \
    X("inputBufferBytes", b->inst.input_size)                    \
    X("abiVersion", PH_ABI_VERSION)                              \
    X("swaps", b->swaps)                                         \
    X("swapFailures", b->swap_failures)                          \
    X("lastSwapReplayed", b->last_swap_replayed)                 \
    X("lastSwapAnnounces", b->last_swap_announces)               \
    X("swapSuppressedFrames", b->suppressed)                     \
    X("maxLinks", b->config.max_links)                           \
    X("bootstrapHubs", b->bootstrap_count)                       \
    X("linksOpened", b->links_opened)                            \
    X("linksRefused", b->links_refused)                          \
    X("callBudget", b->config.call_budget)                       \
    X("callBudgetPeak", b->budget_peak)
#define PH_FIGURE_KEY(key, value) key,
#define PH_FIGURE_VALUE(key, value) (unsigned long long)(value),
    static const char *const keys[] = { PH_BRIDGE_FIGURES(PH_FIGURE_KEY) };
    const unsigned long long values[] = { PH_BRIDGE_FIGURES(PH_FIGURE_VALUE) };
    int n = snprintf(buf, cap, "{\"module\":%.*s,\"bridge\":{", (int)module_len, module_json);
    for (size_t i = 0; n >= 0 && (size_t)n < cap && i < sizeof keys / sizeof keys[0]; i++)
        n += snprintf(buf + n, cap - (size_t)n, "\"%s\":%llu,", keys[i], values[i]);
    if (n >= 0 && (size_t)n < cap) n += snprintf(buf + n, cap - (size_t)n, "\"links\":[");
    if (n < 0 || (size_t)n >= cap) return -1;
    size_t used = (size_t)n;
    bool first = true;
    for (uint32_t i = 0; i < b->slot_count; i++) {
        const ph_slot *s = &b->slots[i];
        if (s->state == PH_SLOT_FREE || !s->link) continue;
        const char *state = s->state != PH_SLOT_OPEN ? "closing"
                            : s->link_state == PH_LINK_UP ? "open" : "connecting";
        if (cap - used < 2 * (size_t)s->url_len + 128) return -1;   /* escaped URL + members */
        used += (size_t)snprintf(buf + used, cap - used, "%s{\"conn\":%d,\"url\":\"", first ? "" : ",",
                                 (int)ph_conn_id(s, i));
        used += ph_json_escape(buf + used, cap - used, s->url, s->url_len);
        used += (size_t)snprintf(buf + used, cap - used,
                                 "\",\"state\":\"%s\",\"framesIn\":%u,\"framesOut\":%u}", state,
                                 (unsigned)s->frames_in, (unsigned)s->frames_out);
        first = false;
    }
    if (cap - used < 4) return -1;
    memcpy(buf + used, "]}}", 4);
    return (int)(used + 3);
}

/* The first `peerId` query parameter of a request URL (URLSearchParams.get semantics, as the
 * module reads it); NULL when there is none. */
static const char *url_peer_id(const char *url, size_t n, size_t *len)
{
    const char *query = memchr(url, '?', n);
    if (!query) return NULL;
    for (size_t i = (size_t)(query - url); i < n;) {
        size_t start = ++i;   /* past '?' or '&' */
        while (i < n && url[i] != '&') i++;
        size_t eq = start;
        while (eq < i && url[eq] != '=') eq++;
        if (PH_EQUALS_LIT(url + start, eq - start, "peerId")) {
            size_t value = eq < i ? eq + 1 : i;
            *len = i - value;
            return url + value;
        }
    }
    return NULL;
}

/* The longest entry ph_bridge_peers_json writes: every number at its widest, the id escaped
 * (at most twice its bytes), the network token with its quotes. */
_Static_assert(PH_BRIDGE_PEER_STATS_BYTES >=
                   sizeof(",{\"conn\":2147483647,\"peerId\":\"") - 1 + 2 * PH_STATS_PEER_ID_MAX +
                   sizeof("\",\"network\":") - 1 + PH_STATS_NETWORK_MAX + 2 +
                   sizeof(",\"connectedMs\":4294967295,\"framesIn\":4294967295,\"framesOut\":4294967295}") - 1,
               "PH_BRIDGE_PEER_STATS_BYTES is smaller than the longest /stats peer entry");

size_t ph_bridge_peers_capacity(const ph_bridge *bridge)
{
    return bridge ? 3 + (size_t)bridge->config.max_connections * PH_BRIDGE_PEER_STATS_BYTES : 0;
}

int ph_bridge_peers_json(const ph_bridge *bridge, char *buf, size_t cap)
{
    const ph_bridge *b = bridge;
    if (!b || !buf || cap < 3) return -1;
    uint32_t now = b->ops.millis ? b->ops.millis(b->ops.ctx) : 0;
    size_t used = 0;
    buf[used++] = '[';
    for (uint32_t i = 0; i < b->slot_count; i++) {
        const ph_slot *s = &b->slots[i];
        /* Accepted connections the module took (refused ones are already closing). */
        if (s->state != PH_SLOT_OPEN || s->link || !s->seen) continue;
        if (cap - used < PH_BRIDGE_PEER_STATS_BYTES + 3) return -1;
        size_t id_len = 0;
        const char *id = url_peer_id(s->url, s->url_len, &id_len);
        if (id_len > PH_STATS_PEER_ID_MAX) id_len = PH_STATS_PEER_ID_MAX;
        used += (size_t)snprintf(buf + used, cap - used, "%s{\"conn\":%d,\"peerId\":\"",
                                 used > 1 ? "," : "", (int)ph_conn_id(s, i));
        used += ph_json_escape(buf + used, cap - used, id ? id : "", id_len);
        const uint8_t *network = NULL;
        size_t network_len = ph_announce_network(s, &network);
        used += (size_t)snprintf(buf + used, cap - used, "\",\"network\":%.*s",
                                 network_len ? (int)network_len : 4,
                                 network_len ? (const char *)network : "null");
        used += (size_t)snprintf(buf + used, cap - used,
                                 ",\"connectedMs\":%u,\"framesIn\":%u,\"framesOut\":%u}",
                                 (unsigned)(now - s->opened_ms), (unsigned)s->frames_in,
                                 (unsigned)s->frames_out);
    }
    memcpy(buf + used, "]", 2);
    return (int)(used + 1);
}

const char *ph_bridge_hub_id(const ph_bridge *bridge)
{
    return bridge ? bridge->inst.hub_id : "";
}

int ph_bridge_peer_count(ph_bridge *bridge)
{
    int32_t count = -1;
    if (!bridge || bridge->depth || ph_call0(bridge, PH_EXPORT_get_peer_count, &count)) return -1;
    return count;
}

uint32_t ph_bridge_connection_count(const ph_bridge *bridge)
{
    return bridge ? bridge->accepted_count : 0;
}

uint32_t ph_bridge_link_count(const ph_bridge *bridge)
{
    return bridge ? bridge->link_count : 0;
}

uint32_t ph_bridge_trap_count(const ph_bridge *b)
{
    return b ? b->traps : 0;
}

uint32_t ph_bridge_input_buffer_size(const ph_bridge *bridge)
{
    return bridge ? bridge->inst.input_size : 0;
}
