/* sha1.h — SHA-1 (FIPS 180-4), used only to derive the hub id from the device id (not for security). */
#ifndef PH_SHA1_H
#define PH_SHA1_H

#include <stdint.h>

#define PH_SHA1_MAX 119   /* longest message: it and its padding fit two blocks */

/* SHA-1 of data[0..len), len <= PH_SHA1_MAX. */
void ph_sha1(const uint8_t *data, uint32_t len, uint8_t out[20]);

#endif
