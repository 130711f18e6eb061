/*
 * sha1.c — one-shot SHA-1 over a short message (at most PH_SHA1_MAX bytes: the hub id needs 81).
 *
 * Why SHA-1: the hub id is 40 hex digits (160 bits), exactly a SHA-1 digest, and every language's
 * standard library can recompute it (ABI.md gives the formula), so tools and tests can predict a
 * board's hub id from its MAC address. Collision resistance is irrelevant here.
 */
#include "sha1.h"
#include "ph_port.h"

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void block(uint32_t h[5], const uint8_t *b)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 |
               b[4 * i + 3];
    }
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) { f = (bb & c) | (~bb & d); k = 0x5A827999u; }
        else if (i < 40) { f = bb ^ c ^ d; k = 0x6ED9EBA1u; }
        else if (i < 60) { f = (bb & c) | (bb & d) | (c & d); k = 0x8F1BBCDCu; }
        else { f = bb ^ c ^ d; k = 0xCA62C1D6u; }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(bb, 30);
        bb = a;
        a = t;
    }
    h[0] += a;
    h[1] += bb;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void ph_sha1(const uint8_t *data, uint32_t len, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    uint8_t m[128];   /* the message and its padding: one or two blocks (len <= PH_SHA1_MAX) */
    memset(m, 0, sizeof m);
    memcpy(m, data, len);
    m[len] = 0x80;
    uint32_t n = len < 56 ? 64 : 128;
    m[n - 2] = (uint8_t)(len >> 5);   /* the length in bits, big-endian (< 2^16 bits) */
    m[n - 1] = (uint8_t)(len << 3);
    for (uint32_t i = 0; i < n; i += 64) block(h, m + i);
    for (int i = 0; i < 20; i++) out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
}
