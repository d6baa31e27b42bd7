/* Base62 ("0-9A-Za-z") encoding of unsigned 64-bit integers. */
#ifndef CM_BASE62_H
#define CM_BASE62_H

#include <stddef.h>
#include <stdint.h>

/*
 * Writes v in base62, left-padded with '0' to at least minlen characters,
 * NUL-terminated, into out (outlen bytes).  Returns the length written, or
 * -1 if out is too small.
 */
int cm_base62_encode(uint64_t v, size_t minlen, char *out, size_t outlen);
/* Parses a base62 string; 0 on success, -1 on bad characters or overflow. */
int cm_base62_decode(const char *s, size_t len, uint64_t *out);

#endif
