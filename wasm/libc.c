/*
 * libc.c — the four memory functions a -nostdlib wasm32 build needs.
 *
 * clang lowers struct copies and zero-initialisation to calls of these, and there is no C library to
 * provide them. Byte loops keep the module small; the frames they move are a few KiB at most.
 * The native build links the host C library instead (this file is not compiled there), so the
 * sanitizers check the real thing.
 */
#include "ph_port.h"

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

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++) {
        if (*x != *y) return *x - *y;
    }
    return 0;
}
