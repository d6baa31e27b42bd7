/*
 * A keyed permutation of [0, 2^bits): a balanced Feistel network.
 *
 * The value is split into two halves of bits/2 bits each, L (high) and R
 * (low).  Each of the four rounds computes
 *
 *	L, R = R, L ^ F(R, k[i])
 *
 * and decryption runs the rounds backwards.  A Feistel network is a
 * bijection whatever F is, so distinct ids always give distinct outputs and
 * both halves stay below 2^(bits/2): no value outside the domain is ever
 * produced.  With four rounds of a pseudo-random F it is a strong
 * pseudo-random permutation (Luby-Rackoff), which is far more than hiding
 * the order of sequential ids needs.  This is obfuscation, not encryption:
 * the domain is small and nothing here is constant-time.
 *
 * F is the splitmix64 finalizer (a full-avalanche 64-bit mixer) of the half
 * XOR the round key, truncated to the half width.
 *
 * Round keys: SHA-256 (OpenSSL libcrypto) over the label "cm_idperm" and its
 * NUL, followed by the key bytes; the 32-byte digest read as four
 * little-endian 64-bit words gives k[0..3].  The key can therefore be any
 * string, and the round keys are independent-looking even for similar keys.
 * bits is not part of the derivation: the same key at another width is a
 * different permutation anyway, since the halves differ.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "idperm.h"

static const char idperm_label[] = "cm_idperm"; /* hashed with its NUL */

static uint64_t
idperm_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return (x);
}

/*
 * Fills p from key (NUL-terminated, any length, may be empty).  Returns 0,
 * or -1 if bits is odd or outside 8..62, key is NULL or hashing fails; p
 * is written only on success.
 */
int
cm_idperm_init(cm_idperm *p, const char *key, unsigned bits)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx;
	cm_idperm tmp;
	int ok;
	size_t i, j;

	if (p == NULL || key == NULL || bits < 8 || bits > 62 ||
	    (bits & 1) != 0)
		return (-1);
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return (-1);
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, idperm_label, sizeof(idperm_label)) == 1 &&
	     EVP_DigestUpdate(ctx, key, strlen(key)) == 1 &&
	     EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return (-1);

	memset(&tmp, 0, sizeof(tmp));
	for (i = 0; i < 4; i++)
		for (j = 0; j < 8; j++)
			tmp.keys[i] |= (uint64_t) md[i * 8 + j] << (8 * j);
	tmp.bits = bits;
	*p = tmp;
	return (0);
}

/*
 * Only the low p->bits bits of v are used: callers must check that their
 * input lies in [0, 2^bits) (a decoded short code above the domain would
 * otherwise alias a valid one).  The result always lies in the domain.
 */
uint64_t
cm_idperm_encrypt(const cm_idperm *p, uint64_t v)
{
	unsigned half = p->bits / 2;
	uint64_t mask = (1ULL << half) - 1;
	uint64_t l = (v >> half) & mask, r = v & mask, t;
	int i;

	for (i = 0; i < 4; i++) {
		t = l ^ (idperm_mix(r ^ p->keys[i]) & mask);
		l = r;
		r = t;
	}
	return ((l << half) | r);
}

/* The inverse of cm_idperm_encrypt, with the same contract on v. */
uint64_t
cm_idperm_decrypt(const cm_idperm *p, uint64_t v)
{
	unsigned half = p->bits / 2;
	uint64_t mask = (1ULL << half) - 1;
	uint64_t l = (v >> half) & mask, r = v & mask, t;
	int i;

	for (i = 3; i >= 0; i--) {
		t = r ^ (idperm_mix(l ^ p->keys[i]) & mask);
		r = l;
		l = t;
	}
	return ((l << half) | r);
}
