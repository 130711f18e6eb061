/*
 * test_json_string.c — ph_json_string_end (the json_string_end import) and ph_utf8_valid against
 * a byte-at-a-time reference written from RFC 8259 and RFC 3629, on fixed cases and on random
 * strings at every alignment. Built twice by the Makefile: natively (8-byte words, sanitizers) and with -m32
 * (4-byte words, the ESP32's), since the scanner reads a register's width at a time.
 *
 *   ./test_json_string [ITERATIONS]     exit status 0 = all passed
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ph_json_string.h"

static int failures;

/* The obvious implementation: what the word-at-a-time scanner must agree with. */
static int32_t reference(const uint8_t *s, uint32_t n)
{
    if (n == 0 || s[0] != '"') return PH_JSON_STRING_SYNTAX;
    uint32_t i = 1;
    while (i < n) {
        uint8_t c = s[i];
        if (c == '"') return (int32_t)i + 1;
        if (c < 0x20) return PH_JSON_STRING_SYNTAX;
        if (c == '\\') {
            if (i + 1 >= n) return PH_JSON_STRING_SYNTAX;
            uint8_t e = s[i + 1];
            if (e == 'u') {
                if (i + 5 >= n) return PH_JSON_STRING_SYNTAX;
                for (uint32_t k = 2; k < 6; k++) {
                    if (!strchr("0123456789abcdefABCDEF", s[i + k]) || s[i + k] == 0)
                        return PH_JSON_STRING_SYNTAX;
                }
                i += 6;
            } else if (e && strchr("\"\\/bfnrt", e)) {
                i += 2;
            } else {
                return PH_JSON_STRING_SYNTAX;
            }
            continue;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        /* RFC 3629 §4: the well-formed byte sequences */
        uint32_t len;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c == 0xE0) len = 3, lo = 0xA0;
        else if (c >= 0xE1 && c <= 0xEC) len = 3;
        else if (c == 0xED) len = 3, hi = 0x9F;
        else if (c >= 0xEE && c <= 0xEF) len = 3;
        else if (c == 0xF0) len = 4, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) len = 4;
        else if (c == 0xF4) len = 4, hi = 0x8F;
        else return PH_JSON_STRING_UTF8;
        if (n - i < len) return PH_JSON_STRING_UTF8;
        if (s[i + 1] < lo || s[i + 1] > hi) return PH_JSON_STRING_UTF8;
        for (uint32_t k = 2; k < len; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return PH_JSON_STRING_UTF8;
        }
        i += len;
    }
    return PH_JSON_STRING_SYNTAX;   /* no closing quote */
}

/* Both implementations on s[0..n), copied to every offset of an 8-aligned buffer so the word
 * loads of the scanner meet each alignment, with guard bytes after it that must not matter. */
static void check(const char *what, const uint8_t *s, uint32_t n, int32_t expected)
{
    static uint8_t buf[4096 + 16];
    if (n > 4096) abort();
    int32_t ref = reference(s, n);
    if (expected != 999 && ref != expected) {
        printf("FAIL reference(%s) = %d, expected %d\n", what, (int)ref, (int)expected);
        failures++;
    }
    for (uint32_t off = 0; off < 8; off++) {
        memcpy(buf + off, s, n);
        memset(buf + off + n, '"', 8);   /* a quote right after the end must not be seen */
        int32_t got = ph_json_string_end(buf + off, n);
        if (got != ref) {
            printf("FAIL %s (length %u, offset %u): scanner %d, reference %d\n", what, (unsigned)n,
                   (unsigned)off, (int)got, (int)ref);
            failures++;
            return;
        }
    }
}

#define CASE(text, expected) check(#text, (const uint8_t *)(text), sizeof(text) - 1, expected)

static void fixed_cases(void)
{
    CASE("\"\"", 2);
    CASE("\"abc\" tail", 5);
    CASE("\"a\\\"b\"", 6);
    CASE("\"\\\\\"", 4);
    CASE("\"\\/\\b\\f\\n\\r\\t\"", 14);
    CASE("\"\\u00e9\\uD83D\\ude00\"", 20);          /* lone surrogates are legal JSON */
    CASE("\"\\u00g9\"", PH_JSON_STRING_SYNTAX);
    CASE("\"\\u00e\"", PH_JSON_STRING_SYNTAX);
    CASE("\"\\x\"", PH_JSON_STRING_SYNTAX);
    CASE("\"\\", PH_JSON_STRING_SYNTAX);
    CASE("\"unterminated", PH_JSON_STRING_SYNTAX);
    CASE("\"a long unterminated string crossing several words", PH_JSON_STRING_SYNTAX);
    CASE("x\"", PH_JSON_STRING_SYNTAX);
    CASE("", PH_JSON_STRING_SYNTAX);
    CASE("\"tab\there\"", PH_JSON_STRING_SYNTAX);
    CASE("\"nul\0here\"", PH_JSON_STRING_SYNTAX);
    CASE("\"del\x7f ok\"", 9);
    CASE("\"\xc2\x80\xdf\xbf\"", 6);
    CASE("\"\xc0\xaf\"", PH_JSON_STRING_UTF8);      /* overlong */
    CASE("\"\xc1\xbf\"", PH_JSON_STRING_UTF8);
    CASE("\"\xe0\xa0\x80\"", 5);
    CASE("\"\xe0\x9f\xbf\"", PH_JSON_STRING_UTF8);  /* overlong */
    CASE("\"\xed\x9f\xbf\"", 5);
    CASE("\"\xed\xa0\x80\"", PH_JSON_STRING_UTF8);  /* a UTF-16 surrogate */
    CASE("\"\xef\xbf\xbf\"", 5);
    CASE("\"\xf0\x90\x80\x80\"", 6);
    CASE("\"\xf0\x8f\xbf\xbf\"", PH_JSON_STRING_UTF8);
    CASE("\"\xf4\x8f\xbf\xbf\"", 6);
    CASE("\"\xf4\x90\x80\x80\"", PH_JSON_STRING_UTF8);  /* above U+10FFFF */
    CASE("\"\xf5\x80\x80\x80\"", PH_JSON_STRING_UTF8);
    CASE("\"\x80\"", PH_JSON_STRING_UTF8);          /* a lone continuation byte */
    CASE("\"\xe2\x82\"", PH_JSON_STRING_UTF8);      /* cut short by the quote */
    CASE("\"\xe2\x82", PH_JSON_STRING_UTF8);        /* cut short by the end */
    CASE("\"v=0\\r\\no=- 1 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\n\"", 44);
}

/* A quote, a backslash or a bad byte at every position of a string longer than two words. */
static void every_position(void)
{
    uint8_t s[64];
    static const uint8_t specials[] = { '"', '\\', 0x01, 0x80, 0xC3, 0xFF };
    for (uint32_t len = 1; len < 40; len++) {
        for (uint32_t pos = 1; pos < len; pos++) {
            for (size_t k = 0; k < sizeof specials; k++) {
                s[0] = '"';
                memset(s + 1, 'a', len - 1);
                s[pos] = specials[k];
                s[len] = '"';
                check("special byte at a position", s, len + 1, 999);
            }
        }
    }
}

static void random_strings(unsigned long iterations)
{
    static const uint8_t alphabet[] = { 'a', 'z', ' ', '"', '\\', 'u', 'n', 'r', '0', 'F', 'g',
                                        0x1f, 0x7f, 0x80, 0xBF, 0xC2, 0xDF, 0xE0, 0xA0, 0xED,
                                        0x9F, 0xF0, 0x90, 0xF4, 0x8F, 0xFF };
    uint8_t s[96];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (unsigned long it = 0; it < iterations; it++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t n = 1 + (uint32_t)(x % (sizeof s - 1));
        s[0] = '"';
        for (uint32_t i = 1; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* mostly plain letters, as real frames are, so strings get long */
            s[i] = (x & 7) ? (uint8_t)('a' + (x >> 8) % 26) : alphabet[(x >> 8) % sizeof alphabet];
        }
        check("random string", s, n, 999);
        if (failures > 20) return;
    }
}

/* ph_utf8_valid (the board's check of text messages) against the reference: random bytes with
 * the JSON specials mapped to a letter are valid UTF-8 exactly when, quoted, they are a string. */
static void utf8_texts(unsigned long iterations)
{
    static const uint8_t alphabet[] = { 'a', 0x7f, 0x80, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xA0, 0xED,
                                        0x9F, 0xEF, 0xF0, 0x90, 0xF4, 0x8F, 0xF5, 0xFF };
    static uint8_t text[128], quoted[130];
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (unsigned long it = 0; it < iterations && failures <= 20; it++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t n = (uint32_t)(x % sizeof text);
        for (uint32_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            text[i] = (x & 3) ? (uint8_t)('a' + (x >> 8) % 26) : alphabet[(x >> 8) % sizeof alphabet];
        }
        quoted[0] = '"';
        memcpy(quoted + 1, text, n);
        quoted[n + 1] = '"';
        int expected = reference(quoted, n + 2) == (int32_t)n + 2;
        if (ph_utf8_valid(text, n) != expected) {
            printf("FAIL ph_utf8_valid of %u bytes = %d, expected %d\n", (unsigned)n, !expected,
                   expected);
            failures++;
        }
    }
}

/* ph_json_escape: whatever the input and the room, the output quoted is one valid JSON string. */
static void escapes(void)
{
    char out[64], quoted[66];
    size_t n = ph_json_escape(out, sizeof out, "a\"b\\c\n", 6);
    if (n != 8 || memcmp(out, "a\\\"b\\\\c?", 8) != 0) {
        printf("FAIL escape: %.*s\n", (int)n, out);
        failures++;
    }
    static const char alphabet[] = { 'a', '"', '\\', '\n', 0x1f, ' ', 'u' };
    uint64_t x = 0xD1B54A32D192ED03ull;
    for (int it = 0; it < 20000 && failures <= 20; it++) {
        char in[24];
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t len = (size_t)(x % sizeof in), cap = (size_t)((x >> 8) % sizeof out);
        for (size_t i = 0; i < len; i++) in[i] = alphabet[(x >> (i % 50)) % sizeof alphabet];
        n = ph_json_escape(out, cap, in, len);
        quoted[0] = '"';
        memcpy(quoted + 1, out, n);
        quoted[n + 1] = '"';
        if (n > cap || ph_json_string_end((const uint8_t *)quoted, (uint32_t)n + 2) != (int32_t)n + 2) {
            printf("FAIL escape of %zu bytes into %zu: %.*s\n", len, cap, (int)n, out);
            failures++;
        }
    }
}

int main(int argc, char **argv)
{
    unsigned long iterations = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    fixed_cases();
    every_position();
    random_strings(iterations);
    utf8_texts(iterations);
    escapes();
    printf("json_string_end tests (%u-byte words): %s, %lu random strings\n",
           (unsigned)sizeof(size_t), failures ? "FAILED" : "passed", iterations);
    return failures != 0;
}
