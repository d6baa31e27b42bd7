/*
 * libFuzzer: what the gateway parses from a client before any service sees
 * it: bearer tokens (JWT verification), request targets, percent-encoding,
 * query strings, X-Forwarded-For.  The first input byte picks the parser.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gwlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *) data + 1;
	size_t n;
	cm_arena a;

	if (size < 1)
		return (0);
	n = size - 1;
	cm_arena_init(&a);
	switch (data[0] % 4) {
	case 0: {
		struct gw_identity id;
		gw_jwt_verify(s, n, "fuzz-secret", 11, 1700000000, &a, &id);
		break;
	}
	case 1: {
		const char *path, *query, *k, *v;
		size_t plen, qlen, klen, vlen;
		char *out;
		size_t olen;
		if (gw_split_target(s, n, &path, &plen, &query, &qlen) != 0)
			break;
		gw_pct_decode(path, plen, false, &a, &out, &olen);
		if (query == NULL)
			break;
		const char *cur = query, *end = query + qlen;
		while (gw_query_next(&cur, end, &k, &klen, &v, &vlen)) {
			gw_pct_decode(k, klen, true, &a, &out, &olen);
			gw_pct_decode(v, vlen, true, &a, &out, &olen);
		}
		break;
	}
	case 2: {
		struct gw_trust t;
		char err[128];
		uint8_t peer[16] = {0}, out[16];
		peer[10] = peer[11] = 0xff;
		peer[12] = 127;
		peer[15] = 1;
		if (gw_trust_parse(&t, "127.0.0.1,10.0.0.0/8,::1", err,
		                   sizeof(err)) == 0) {
			gw_client_ip(&t, peer, s, n, out);
			gw_trust_fini(&t);
		}
		break;
	}
	case 3: {
		const char *tok;
		size_t toklen;
		uint8_t ip[16];
		char buf[1024];
		gw_bearer(s, n, &tok, &toklen);
		if (n < 64) {
			memcpy(buf, s, n);
			buf[n] = '\0';
			gw_ip_parse(buf, n, ip);
		}
		break;
	}
	}
	cm_arena_fini(&a);
	return (0);
}
