/*
 * A keyed permutation of integers in [0, 2^bits) (a Feistel network of four
 * rounds with a keyed mixing function).  Sequential ids pass through it
 * before base62 encoding, so that consecutive links get unrelated codes and
 * the code space cannot be walked by counting.  It is a bijection: distinct
 * ids always give distinct codes, and cm_idperm_decrypt inverts it.
 */
#ifndef CM_IDPERM_H
#define CM_IDPERM_H

#include <stdint.h>

typedef struct cm_idperm {
	uint64_t keys[4];
	unsigned bits; /* even, 8..62 */
} cm_idperm;

/* Derives round keys from key (any length).  bits must be even, 8..62. */
int cm_idperm_init(cm_idperm *p, const char *key, unsigned bits);
uint64_t cm_idperm_encrypt(const cm_idperm *p, uint64_t v);
uint64_t cm_idperm_decrypt(const cm_idperm *p, uint64_t v);

#endif
