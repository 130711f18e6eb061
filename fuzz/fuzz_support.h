/* fuzz_support.h — what the fuzz targets share. */
#ifndef PH_FUZZ_SUPPORT_H
#define PH_FUZZ_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

static volatile uint8_t g_sink;

/* Read every byte of [p, p + n): AddressSanitizer reports any outside a live object. */
static inline void touch(const void *p, size_t n)
{
    const uint8_t *q = p;
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++) x ^= q[i];
    g_sink = x;
}

#endif /* PH_FUZZ_SUPPORT_H */
