/*
 * ph_module_check.c — decide whether module bytes are a hub module this bridge can run.
 *
 * Two passes. ph_check_bytes() walks the raw binary before WASM3 sees it: WASM3 would report a
 * wrong file or a truncated download as a generic parse error, and would happily allocate whatever
 * linear memory the module asks for. The other checks run on WASM3's parsed module, after load.
 * Every refusal names what is wrong and, where there is one, the fix.
 */
#include <stdio.h>
#include <string.h>

#include "ph_bridge_internal.h"
#include "m3_env.h"   /* WASM3 0.5.0 internals: module globals (checked in ph_check_globals) */

ph_result ph_fail(char *err, size_t err_cap, ph_result result, const char *fmt, ...)
{
    if (err && err_cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_cap, fmt, ap);
        va_end(ap);
    }
    return result;
}

/* Unsigned LEB128, at most 32 bits. Returns false when it runs past end or overflows. */
static bool read_leb_u32(const uint8_t **p, const uint8_t *end, uint32_t *out)
{
    uint32_t value = 0;
    for (unsigned shift = 0; shift < 35; shift += 7) {
        if (*p >= end) return false;
        uint8_t byte = *(*p)++;
        if (shift == 28 && (byte & 0x70)) return false;   /* bits beyond 32 */
        value |= (uint32_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return true;
        }
    }
    return false;
}

static const char *section_name(uint8_t id)
{
    static const char *const names[] = { "custom", "type", "import", "function", "table", "memory",
                                         "global", "export", "start", "element", "code", "data",
                                         "datacount" };
    return id < sizeof names / sizeof names[0] ? names[id] : "unknown";
}

ph_result ph_check_bytes(const uint8_t *wasm, size_t len, ph_module_info *info, char *err,
                         size_t err_cap)
{
    static const uint8_t magic[4] = { 0x00, 0x61, 0x73, 0x6d };   /* "\0asm" */
    memset(info, 0, sizeof *info);

    if (!wasm || len < 4 || memcmp(wasm, magic, 4) != 0) {
        if (!wasm || len < 4)
            return ph_fail(err, err_cap, PH_ERR_NOT_WASM,
                           "not a WebAssembly module: only %zu bytes", wasm ? len : 0);
        return ph_fail(err, err_cap, PH_ERR_NOT_WASM,
                       "not a WebAssembly module: starts with %02x %02x %02x %02x, expected 00 61 73 6d "
                       "(\"\\0asm\")", wasm[0], wasm[1], wasm[2], wasm[3]);
    }
    if (len < 8)
        return ph_fail(err, err_cap, PH_ERR_NOT_WASM,
                       "not a WebAssembly module: only %zu bytes, the 8-byte header is cut short", len);
    uint32_t version = (uint32_t)wasm[4] | (uint32_t)wasm[5] << 8 | (uint32_t)wasm[6] << 16 |
                       (uint32_t)wasm[7] << 24;
    if (version != 1)
        return ph_fail(err, err_cap, PH_ERR_NOT_WASM,
                       "not a WebAssembly 1.0 module: binary version %u, expected 1", (unsigned)version);
    if (len > UINT32_MAX)
        return ph_fail(err, err_cap, PH_ERR_LOAD, "module is %zu bytes; WASM3 reads at most 4 GiB", len);

    const uint8_t *p = wasm + 8, *end = wasm + len;
    while (p < end) {
        size_t at = (size_t)(p - wasm);
        uint8_t id = *p++;
        uint32_t size;
        if (!read_leb_u32(&p, end, &size) || size > (size_t)(end - p))
            return ph_fail(err, err_cap, PH_ERR_LOAD,
                           "module is truncated: its %s section (id %u) at offset %zu runs past "
                           "the end of the %zu bytes", section_name(id), id, at, len);
        const uint8_t *body = p, *body_end = p + size;
        p = body_end;
        if (id != 5) continue;

        uint32_t count, flags;
        if (!read_leb_u32(&body, body_end, &count))
            return ph_fail(err, err_cap, PH_ERR_LOAD, "malformed memory section at offset %zu", at);
        if (count == 0) continue;
        if (count > 1)
            return ph_fail(err, err_cap, PH_ERR_MEMORY,
                           "module defines %u linear memories; WASM3 supports one", (unsigned)count);
        if (!read_leb_u32(&body, body_end, &flags) || !read_leb_u32(&body, body_end, &info->initial_pages))
            return ph_fail(err, err_cap, PH_ERR_LOAD, "malformed memory section at offset %zu", at);
        if (flags & ~1u)
            return ph_fail(err, err_cap, PH_ERR_MEMORY,
                           "module's memory has flags 0x%x (shared or 64-bit memory); only plain "
                           "32-bit memory is supported", (unsigned)flags);
        info->has_max = flags & 1u;
        if (info->has_max && !read_leb_u32(&body, body_end, &info->max_pages))
            return ph_fail(err, err_cap, PH_ERR_LOAD, "malformed memory section at offset %zu", at);
        info->has_memory = true;
    }
    return PH_OK;
}

ph_result ph_check_memory(const ph_module_info *info, uint32_t memory_limit, char *err,
                          size_t err_cap)
{
    (void)memory_limit;   /* data segments and the stack are checked against it after load */
    const unsigned max_pages = PH_MODULE_MAX_PAGES, max_bytes = PH_MODULE_MAX_PAGES * PH_WASM_PAGE_BYTES;

    if (!info->has_memory)
        return ph_fail(err, err_cap, PH_ERR_MEMORY,
                       "module defines no linear memory of its own (the hub ABI needs one for the "
                       "input buffer; imported memory is not supported)");
    if (info->initial_pages > max_pages)
        return ph_fail(err, err_cap, PH_ERR_MEMORY,
                       "module asks for %u pages (%u KiB) of initial linear memory; at most %u pages "
                       "(%u bytes) are allowed (link with -Wl,--initial-memory=65536)",
                       (unsigned)info->initial_pages, (unsigned)info->initial_pages * 64u, max_pages,
                       max_bytes);
    if (!info->has_max)
        return ph_fail(err, err_cap, PH_ERR_MEMORY,
                       "module declares no maximum linear memory, so it could grow without bound; "
                       "link with -Wl,--max-memory=%u", max_bytes);
    if (info->max_pages > max_pages)
        return ph_fail(err, err_cap, PH_ERR_MEMORY,
                       "module may grow its linear memory to %u pages (%u KiB); at most %u pages "
                       "(%u bytes) are allowed (link with -Wl,--max-memory=%u)",
                       (unsigned)info->max_pages, (unsigned)info->max_pages * 64u, max_pages, max_bytes,
                       max_bytes);
    return PH_OK;
}

/* WASM3 signature notation of a function's actual type, e.g. "v(iii)". */
static void describe_signature(IM3Function f, char *buf, size_t cap)
{
    static const char letters[] = { 'v', 'i', 'I', 'f', 'F' };
    size_t n = 0;
    uint32_t rets = m3_GetRetCount(f), args = m3_GetArgCount(f);
    M3ValueType t = rets ? m3_GetRetType(f, 0) : c_m3Type_none;
    buf[n++] = rets > 1 ? '?' : (t < sizeof letters ? letters[t] : '?');
    buf[n++] = '(';
    for (uint32_t i = 0; i < args && n + 2 < cap; i++) {
        t = m3_GetArgType(f, i);
        buf[n++] = t < sizeof letters ? letters[t] : '?';
    }
    buf[n++] = ')';
    buf[n] = '\0';
}

/* Does the actual signature match the ABI's? '*' (a pointer) is an i32 at this level. */
static bool signature_matches(const char *actual, const char *expected)
{
    for (; *actual && *expected; actual++, expected++) {
        char e = *expected == '*' ? 'i' : *expected;
        if (*actual != e) return false;
    }
    return *actual == *expected;
}

ph_result ph_check_exports(ph_bridge *b, char *err, size_t err_cap)
{
#define PH_EXPORT_ROW(name, sig, origin) { #name, sig },
    static const struct { const char *name, *signature; } exports[PH_EXPORT_COUNT] = {
        PH_ABI_EXPORTS(PH_EXPORT_ROW)
    };
#undef PH_EXPORT_ROW

    for (int i = 0; i < PH_EXPORT_COUNT; i++) {
        M3Result r = m3_FindFunction(&b->inst.fn[i], b->inst.runtime, exports[i].name);
        if (r == m3Err_functionLookupFailed)
            return ph_fail(err, err_cap, PH_ERR_MISSING_EXPORT,
                           "module has no export '%s' (ABI v%d needs it, signature %s)",
                           exports[i].name, PH_ABI_VERSION, exports[i].signature);
        if (r)
            return ph_fail(err, err_cap, PH_ERR_LOAD, "WASM3 cannot prepare export '%s': %s",
                           exports[i].name, r);
        char actual[24];
        describe_signature(b->inst.fn[i], actual, sizeof actual);
        if (!signature_matches(actual, exports[i].signature))
            return ph_fail(err, err_cap, PH_ERR_MISSING_EXPORT,
                           "module export '%s' has signature %s, ABI v%d needs %s", exports[i].name,
                           actual, PH_ABI_VERSION, exports[i].signature);
    }
    return PH_OK;
}

ph_result ph_check_abi_version(ph_bridge *b, char *err, size_t err_cap)
{
    IM3Function f = NULL;
    M3Result r = m3_FindFunction(&f, b->inst.runtime, "abi_version");
    if (r) return PH_OK;   /* missing: ph_check_exports names it */
    char actual[24];
    describe_signature(f, actual, sizeof actual);
    if (strcmp(actual, "i()") != 0) return PH_OK;   /* mis-typed: ph_check_exports says how */
    b->inst.fn[PH_EXPORT_abi_version] = f;
    int32_t version = 0;
    if ((r = ph_call(b, PH_EXPORT_abi_version, -1, false, 0, NULL, &version)) != m3Err_none)
        return ph_fail(err, err_cap, PH_ERR_ABI_VERSION, "abi_version() trapped: %s", r);
    if (version == PH_ABI_VERSION) return PH_OK;
    if (version < PH_ABI_VERSION)
        return ph_fail(err, err_cap, PH_ERR_ABI_VERSION,
                       "module implements hub ABI version %d, this bridge implements version %d: "
                       "the module is older; rebuild it from this release's wasm/ with "
                       "`pigeonhub build`", (int)version, PH_ABI_VERSION);
    return ph_fail(err, err_cap, PH_ERR_ABI_VERSION,
                   "module implements hub ABI version %d, this bridge implements version %d: the "
                   "module is newer; update the firmware / pigeonhub to run it", (int)version,
                   PH_ABI_VERSION);
}

ph_result ph_check_globals(ph_bridge *b, char *err, size_t err_cap)
{
    IM3Module m = b->inst.module;
    for (uint32_t i = 0; i < m->numGlobals; i++) {
        M3Global *g = &m->globals[i];
        if (g->imported)
            return ph_fail(err, err_cap, PH_ERR_LOAD,
                           "module imports global '%s.%s', which the bridge does not provide",
                           g->import.moduleUtf8 ? g->import.moduleUtf8 : "?",
                           g->import.fieldUtf8 ? g->import.fieldUtf8 : "?");
    }
    /* wasm-ld always makes __stack_pointer global 0 (mutable i32) when the module has a stack.
     * A module without one (hand-written) has nothing a trap can leave dangling. */
    b->inst.stack_pointer = NULL;
    if (m->numGlobals > 0 && m->globals[0].type == c_m3Type_i32 && m->globals[0].isMutable) {
        b->inst.stack_pointer = &m->globals[0];
        uint32_t top = (uint32_t)m->globals[0].intValue, usable = ph_memory_size(b);
        if (top > usable)
            return ph_fail(err, err_cap, PH_ERR_MEMORY,
                           "module's stack starts at %u (__stack_pointer) but only %u bytes of linear "
                           "memory are usable (memory limit); link with a smaller -z stack-size or "
                           "raise the limit", (unsigned)top, (unsigned)usable);
    }
    return PH_OK;
}
