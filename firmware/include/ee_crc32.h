/*
 * eenn firmware runtime: CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320), the one of
 * zlib.crc32 and binascii.crc32, so the host checks a loaded input with one call.
 */
#ifndef EE_CRC32_H
#define EE_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: ee_crc32_update(0, a, n) == zlib.crc32(a); chaining works as zlib's. */
uint32_t ee_crc32_update(uint32_t crc, const void *data, size_t n);

#endif /* EE_CRC32_H */
