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

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    /* Peer ids are 40 bytes: while eight at a time are equal, one i64 compare each (an interpreter
     * pays per instruction); the first difference is then found byte by byte. */
    for (; n >= 8; n -= 8, x += 8, y += 8) {
        uint64_t p, q;
        __builtin_memcpy(&p, x, 8);
        __builtin_memcpy(&q, y, 8);
        if (p != q) break;
    }
    for (; n; n--, x++, y++) {
        if (*x != *y) return *x - *y;
    }
    return 0;
}
