/*
 * libc.c — the memory functions a -nostdlib wasm32 build needs.
 *
 * clang lowers struct copies and zero-initialisation to calls of these, and there is no C library to
 * provide them. The default build enables WebAssembly bulk memory (-mbulk-memory: WASM3 >= 0.5.0 and
 * every current engine run it), where memcpy/memmove/memset are one `memory.copy`/`memory.fill`
 * each: the engine moves the bytes natively instead of interpreting a loop per byte, which is what
 * relaying a multi-KiB `data` span costs. ph_port.h routes the hub's own calls to the builtins, so
 * these functions only serve what the compiler emits itself. An MVP build (-mcpu=mvp without bulk
 * memory, e.g. for an engine without it) gets plain byte loops.
 * The native build links the host C library instead (this file is not compiled there), so the
 * sanitizers check the real thing.
 */
#include "ph_port.h"

#undef memcpy
#undef memmove
#undef memset
#undef memcmp

#ifdef __wasm_bulk_memory__
void *memcpy(void *dst, const void *src, size_t n)
{
    __builtin_memmove(dst, src, n);   /* memory.copy (memmove semantics) */
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    __builtin_memmove(dst, src, n);
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    __builtin_memset(dst, c, n);      /* memory.fill */
    return dst;
}
#else
void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else {
        while (n--) d[n] = s[n];   /* overlapping forward: copy from the end */
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}
#endif

static int bytes_cmp(const unsigned char *x, const unsigned char *y, size_t n)
{
    for (; n; n--, x++, y++) {
        if (*x != *y) return *x - *y;
    }
    return 0;
}

static uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    return v;
}

static uint32_t load32(const unsigned char *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

/* The hub compares keys, types, networks and 40-byte peer ids, nearly always for equality, and an
 * interpreter pays per instruction: eight bytes per step, then the last eight (or, below eight,
 * the first and the last four) as one overlapping window, so equal text never takes the byte loop;
 * only a window that differs is searched byte by byte for the sign. */
int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    if (n >= 8) {
        size_t k = 0;
        for (; k + 8 <= n; k += 8) {
            if (load64(x + k) != load64(y + k)) return bytes_cmp(x + k, y + k, 8);
        }
        if (k == n || load64(x + n - 8) == load64(y + n - 8)) return 0;
        return bytes_cmp(x + k, y + k, n - k);
    }
    if (n >= 4 && load32(x) == load32(y) && load32(x + n - 4) == load32(y + n - 4)) return 0;
    return bytes_cmp(x, y, n);
}
