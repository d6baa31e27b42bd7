/*
 * JSON Web Tokens, HS256 only, verified with OpenSSL's HMAC and jansson.
 *
 * The order of the checks is the point of this file.  Nothing in a token
 * is believed before its signature is checked, and the signature is not
 * checked with anything the token chose: the header's alg must be exactly
 * "HS256" (so "none", "HS512", "RS256" and friends are refused before any
 * cryptography), the MAC is always HMAC-SHA256 with our key, and it is
 * compared in constant time.  Only then are the claims read: exp and nbf
 * against the clock (no leeway: issuer and gateway share a clock in this
 * system), and a sub of 1-64 characters of [A-Za-z0-9._@-], which becomes
 * the caller's user id.
 */
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "util.h"

#include "gwlib.h"

#define JWT_MAX_LEN 8192

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t
gw_b64url_encode(const void *in, size_t n, char *out)
{
	const uint8_t *p = in;
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v =
		    (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 | p[i + 2];

		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = b64url[(v >> 6) & 63];
		out[o++] = b64url[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t) p[i] << 16;

		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8;

		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = b64url[(v >> 6) & 63];
	}
	out[o] = '\0';
	return (o);
}

static int
b64url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return (c - 'A');
	if (c >= 'a' && c <= 'z')
		return (c - 'a' + 26);
	if (c >= '0' && c <= '9')
		return (c - '0' + 52);
	if (c == '-')
		return (62);
	if (c == '_')
		return (63);
	return (-1);
}

long
gw_b64url_decode(const char *in, size_t n, void *out, size_t outlen)
{
	uint8_t *o = out;
	uint32_t acc = 0;
	size_t i, bits = 0, len = 0;

	while (n > 0 && in[n - 1] == '=')
		n--;
	if (n % 4 == 1)
		return (-1);
	for (i = 0; i < n; i++) {
		int v = b64url_val((unsigned char) in[i]);

		if (v < 0)
			return (-1);
		acc = acc << 6 | (uint32_t) v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (len == outlen)
				return (-1);
			o[len++] = (uint8_t) (acc >> bits);
		}
	}
	/* The unused low bits of the last character must be zero. */
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		return (-1);
	return ((long) len);
}

const char *
gw_jwt_strerror(int err)
{
	switch (err) {
	case GW_JWT_OK:
		return ("ok");
	case GW_JWT_MALFORMED:
		return ("malformed token");
	case GW_JWT_BAD_ALG:
		return ("token algorithm not accepted");
	case GW_JWT_BAD_SIGNATURE:
		return ("bad token signature");
	case GW_JWT_EXPIRED:
		return ("token expired");
	case GW_JWT_NOT_YET_VALID:
		return ("token not yet valid");
	case GW_JWT_NO_SUBJECT:
		return ("token has no subject");
	case GW_JWT_BAD_SUBJECT:
		return ("token subject must be 1-64 of [A-Za-z0-9._@-]");
	default:
		return ("invalid token");
	}
}

/* Decodes one base64url part holding a JSON object; NULL if it is not. */
static json_t *
decode_part(const char *s, size_t n, cm_arena *a)
{
	char *buf = cm_arena_alloc(a, n + 1);
	long len;
	json_t *j;

	if ((len = gw_b64url_decode(s, n, buf, n)) <= 0)
		return (NULL);
	j = json_loadb(buf, (size_t) len, JSON_REJECT_DUPLICATES, NULL);
	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		return (NULL);
	}
	return (j);
}

/* A string claim copied into the arena, or NULL if absent or not a string. */
static const char *
claim_str(json_t *payload, const char *name, cm_arena *a)
{
	json_t *v = json_object_get(payload, name);

	if (!json_is_string(v))
		return (NULL);
	return (
	    cm_arena_strndup(a, json_string_value(v), json_string_length(v)));
}

bool
gw_user_valid(const char *s, size_t len)
{
	if (len == 0 || len > GW_USER_MAX)
		return (false);
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '@' || c == '-'))
			return (false);
	}
	return (true);
}

int
gw_jwt_verify(const char *tok, size_t len, const void *key, size_t keylen,
              int64_t now, cm_arena *a, struct gw_identity *id)
{
	const char *d1, *d2;
	json_t *hdr = NULL, *pl = NULL, *v;
	uint8_t mac[EVP_MAX_MD_SIZE], sig[SHA256_DIGEST_LENGTH + 1];
	unsigned int maclen = 0;
	long siglen;
	int rv = GW_JWT_MALFORMED;
	const char *sub;

	if (len == 0 || len > JWT_MAX_LEN)
		return (GW_JWT_MALFORMED);
	/* Compact JWS is base64url without padding: one spelling only. */
	if (memchr(tok, '=', len) != NULL)
		return (GW_JWT_MALFORMED);
	if ((d1 = memchr(tok, '.', len)) == NULL)
		return (GW_JWT_MALFORMED);
	d2 = memchr(d1 + 1, '.', len - (size_t) (d1 + 1 - tok));
	if (d2 == NULL ||
	    memchr(d2 + 1, '.', len - (size_t) (d2 + 1 - tok)) != NULL)
		return (GW_JWT_MALFORMED);

	/* 1. The header, and only its alg, before anything else. */
	if ((hdr = decode_part(tok, (size_t) (d1 - tok), a)) == NULL)
		goto out;
	v = json_object_get(hdr, "alg");
	if (!json_is_string(v) || strcmp(json_string_value(v), "HS256") != 0 ||
	    json_string_length(v) != 5) {
		rv = GW_JWT_BAD_ALG;
		goto out;
	}
	if (json_object_get(hdr, "crit") != NULL)
		goto out; /* extensions we do not understand */

	/* 2. The signature: HMAC-SHA256 over "header.payload". */
	siglen = gw_b64url_decode(d2 + 1, len - (size_t) (d2 + 1 - tok), sig,
	                          sizeof(sig));
	if (HMAC(EVP_sha256(), key, (int) keylen, (const unsigned char *) tok,
	         (size_t) (d2 - tok), mac, &maclen) == NULL ||
	    maclen != SHA256_DIGEST_LENGTH) {
		rv = GW_JWT_BAD_SIGNATURE;
		goto out;
	}
	if (siglen != SHA256_DIGEST_LENGTH ||
	    !cm_ct_equal(mac, sig, SHA256_DIGEST_LENGTH)) {
		rv = GW_JWT_BAD_SIGNATURE;
		goto out;
	}

	/* 3. The claims, now that they are ours. */
	if ((pl = decode_part(d1 + 1, (size_t) (d2 - d1 - 1), a)) == NULL)
		goto out;
	if ((v = json_object_get(pl, "exp")) != NULL) {
		if (!json_is_number(v))
			goto out;
		if ((double) now >= json_number_value(v)) {
			rv = GW_JWT_EXPIRED;
			goto out;
		}
	}
	if ((v = json_object_get(pl, "nbf")) != NULL) {
		if (!json_is_number(v))
			goto out;
		if ((double) now < json_number_value(v)) {
			rv = GW_JWT_NOT_YET_VALID;
			goto out;
		}
	}
	v = json_object_get(pl, "sub");
	if (!json_is_string(v) || json_string_length(v) == 0) {
		rv = GW_JWT_NO_SUBJECT;
		goto out;
	}
	/* User ids end up in paths and hash-tagged Redis keys. */
	if (!gw_user_valid(json_string_value(v), json_string_length(v))) {
		rv = GW_JWT_BAD_SUBJECT;
		goto out;
	}
	sub = claim_str(pl, "sub", a);
	id->user = sub;
	id->role = claim_str(pl, "role", a);
	id->tier = claim_str(pl, "tier", a);
	rv = GW_JWT_OK;
out:
	json_decref(hdr);
	json_decref(pl);
	return (rv);
}

/* base64url of a JSON value's compact text, malloc'd. */
static char *
encode_json_part(json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT);
	char *out;
	size_t n;

	if (text == NULL)
		return (NULL);
	n = strlen(text);
	if ((out = malloc(4 * (n / 3 + 1) + 1)) != NULL)
		gw_b64url_encode(text, n, out);
	free(text);
	return (out);
}

char *
gw_jwt_sign(const char *sub, int64_t now, int64_t ttl, const char *const *keys,
            const char *const *values, size_t nclaims, const void *key,
            size_t keylen)
{
	static const char *reserved[] = {"sub", "iat", "exp", "nbf"};
	json_t *hdr, *pl;
	char *h = NULL, *p = NULL, *tok = NULL;
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t i, j, hl, pln;

	if (sub == NULL || !gw_user_valid(sub, strlen(sub)))
		return (NULL);
	for (i = 0; i < nclaims; i++)
		for (j = 0; j < sizeof(reserved) / sizeof(reserved[0]); j++)
			if (strcmp(keys[i], reserved[j]) == 0)
				return (NULL);
	hdr = json_pack("{s:s, s:s}", "alg", "HS256", "typ", "JWT");
	pl = json_pack("{s:s, s:I}", "sub", sub, "iat", (json_int_t) now);
	if (hdr == NULL || pl == NULL)
		goto out;
	if (ttl > 0)
		json_object_set_new(pl, "exp", json_integer(now + ttl));
	for (i = 0; i < nclaims; i++)
		json_object_set_new(pl, keys[i], json_string(values[i]));
	if ((h = encode_json_part(hdr)) == NULL ||
	    (p = encode_json_part(pl)) == NULL)
		goto out;
	hl = strlen(h);
	pln = strlen(p);
	if ((tok = malloc(hl + pln + 2 + 44 + 1)) == NULL)
		goto out;
	memcpy(tok, h, hl);
	tok[hl] = '.';
	memcpy(tok + hl + 1, p, pln);
	if (HMAC(EVP_sha256(), key, (int) keylen, (unsigned char *) tok,
	         hl + 1 + pln, mac, &maclen) == NULL) {
		free(tok);
		tok = NULL;
		goto out;
	}
	tok[hl + 1 + pln] = '.';
	gw_b64url_encode(mac, maclen, tok + hl + 2 + pln);
out:
	free(h);
	free(p);
	json_decref(hdr);
	json_decref(pl);
	return (tok);
}

int
gw_bearer(const char *hdr, size_t len, const char **tok, size_t *toklen)
{
	size_t i = 6;

	if (len < 8 || !gw_strcaseeq(hdr, 6, "bearer") ||
	    (hdr[6] != ' ' && hdr[6] != '\t'))
		return (-1);
	while (i < len && (hdr[i] == ' ' || hdr[i] == '\t'))
		i++;
	while (len > i && (hdr[len - 1] == ' ' || hdr[len - 1] == '\t'))
		len--;
	if (i == len || memchr(hdr + i, ' ', len - i) != NULL)
		return (-1);
	*tok = hdr + i;
	*toklen = len - i;
	return (0);
}

bool
gw_secret_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	uint8_t da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];

	/* Digests first, so that neither time nor length leaks. */
	SHA256((const unsigned char *) a, alen, da);
	SHA256((const unsigned char *) b, blen, db);
	return (cm_ct_equal(da, db, sizeof(da)) != 0);
}

bool
gw_api_key_id(const char *key, size_t len, char out[33])
{
	static const char hex[] = "0123456789abcdef";
	static const char domain[] = "backends rate limit api key\n";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx;
	bool ok;

	if (len == 0 || len > GW_API_KEY_MAX)
		return (false);
	for (size_t i = 0; i < len; i++)
		if (key[i] < 0x21 || key[i] > 0x7e)
			return (false);
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return (false);
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, domain, sizeof(domain) - 1) == 1 &&
	     EVP_DigestUpdate(ctx, key, len) == 1 &&
	     EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen >= 16;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return (false);
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[32] = '\0';
	return (true);
}
