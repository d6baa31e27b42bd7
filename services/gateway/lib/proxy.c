/*
 * Client addresses: who is calling, given the socket peer, the proxies we
 * trust (TRUSTED_PROXIES) and X-Forwarded-For.
 *
 * Each proxy appends the address it received the request from, so the
 * right end of X-Forwarded-For is the part our own proxies wrote and the
 * left end is whatever the client chose to send.  We therefore believe the
 * header only from a trusted peer, and walk it from the right: trusted
 * hops are skipped, and the first untrusted address is the client (nginx's
 * real_ip_recursive).  Addresses are kept as 16 bytes with IPv4 mapped
 * into IPv6, so one comparison serves both families.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gwlib.h"

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool
is_digits(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 5)
		return (false);
	for (i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return (false);
	return (true);
}

static int
parse_plain(const char *s, size_t len, uint8_t ip[16], bool *is_v4)
{
	char buf[64];

	if (len == 0 || len >= sizeof(buf))
		return (-1);
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, ip + 12) == 1) {
		memcpy(ip, v4mapped, 12);
		*is_v4 = true;
		return (0);
	}
	if (inet_pton(AF_INET6, buf, ip) == 1) {
		*is_v4 = memcmp(ip, v4mapped, 12) == 0;
		return (0);
	}
	return (-1);
}

int
gw_ip_parse(const char *s, size_t len, uint8_t ip[16])
{
	const char *c;
	bool v4;

	while (len > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		len--;
	}
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0)
		return (-1);
	if (s[0] == '[') {
		const char *e = memchr(s, ']', len);
		size_t rest;

		if (e == NULL)
			return (-1);
		rest = len - (size_t) (e + 1 - s);
		if (rest != 0 && (e[1] != ':' || !is_digits(e + 2, rest - 1)))
			return (-1);
		if (parse_plain(s + 1, (size_t) (e - s - 1), ip, &v4) != 0)
			return (-1);
		return (0);
	}
	c = memchr(s, ':', len);
	if (c != NULL &&
	    memchr(c + 1, ':', len - (size_t) (c + 1 - s)) == NULL) {
		/* exactly one colon: IPv4 with a port */
		if (!is_digits(c + 1, len - (size_t) (c + 1 - s)))
			return (-1);
		if (parse_plain(s, (size_t) (c - s), ip, &v4) != 0 || !v4)
			return (-1);
		return (0);
	}
	return (parse_plain(s, len, ip, &v4));
}

void
gw_ip_format(const uint8_t ip[16], char *out, size_t outlen)
{
	if (memcmp(ip, v4mapped, 12) == 0) {
		if (inet_ntop(AF_INET, ip + 12, out, (socklen_t) outlen) ==
		    NULL)
			snprintf(out, outlen, "-");
	} else if (inet_ntop(AF_INET6, ip, out, (socklen_t) outlen) == NULL) {
		snprintf(out, outlen, "-");
	}
}

bool
gw_ip_is_loopback(const uint8_t ip[16])
{
	static const uint8_t v6lo[16] = {0, 0, 0, 0, 0, 0, 0, 0,
	                                 0, 0, 0, 0, 0, 0, 0, 1};

	if (memcmp(ip, v4mapped, 12) == 0)
		return (ip[12] == 127);
	return (memcmp(ip, v6lo, 16) == 0);
}

static bool
cidr_has(const struct gw_cidr *c, const uint8_t ip[16])
{
	unsigned full = c->bits / 8, rem = c->bits % 8;

	if (memcmp(c->addr, ip, full) != 0)
		return (false);
	if (rem == 0)
		return (true);
	return (((c->addr[full] ^ ip[full]) & (uint8_t) (0xff << (8 - rem))) ==
	        0);
}

bool
gw_trust_has(const struct gw_trust *t, const uint8_t ip[16])
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (cidr_has(&t->v[i], ip))
			return (true);
	return (false);
}

int
gw_trust_parse(struct gw_trust *t, const char *spec, char *err, size_t errlen)
{
	const char *p = spec ? spec : "", *end = p + strlen(p);
	size_t cap = 0;

	t->v = NULL;
	t->n = 0;
	while (p < end) {
		const char *e = memchr(p, ',', (size_t) (end - p)), *slash;
		size_t len;
		struct gw_cidr c;
		bool v4;

		if (e == NULL)
			e = end;
		while (p < e && (*p == ' ' || *p == '\t'))
			p++;
		len = (size_t) (e - p);
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == 0) {
			p = e + 1;
			continue;
		}
		memset(&c, 0, sizeof(c));
		slash = memchr(p, '/', len);
		if (parse_plain(p, slash ? (size_t) (slash - p) : len, c.addr,
		                &v4) != 0)
			goto bad;
		c.bits = 128;
		if (slash != NULL) {
			size_t blen = len - (size_t) (slash + 1 - p);
			unsigned bits = 0, max = v4 ? 32 : 128;
			size_t i;

			if (blen == 0 || blen > 3)
				goto bad;
			for (i = 0; i < blen; i++) {
				if (slash[1 + i] < '0' || slash[1 + i] > '9')
					goto bad;
				bits =
				    bits * 10 + (unsigned) (slash[1 + i] - '0');
			}
			if (bits > max)
				goto bad;
			c.bits = v4 ? bits + 96 : bits;
		}
		if (t->n == cap) {
			struct gw_cidr *nv;

			cap = cap ? cap * 2 : 8;
			if ((nv = realloc(t->v, cap * sizeof(*nv))) == NULL)
				goto bad;
			t->v = nv;
		}
		t->v[t->n++] = c;
		p = e + 1;
		continue;
	bad:
		snprintf(err, errlen, "bad address or CIDR \"%.*s\"", (int) len,
		         p);
		gw_trust_fini(t);
		return (-1);
	}
	return (0);
}

void
gw_trust_fini(struct gw_trust *t)
{
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

void
gw_client_ip(const struct gw_trust *t, const uint8_t peer[16], const char *xff,
             size_t xlen, uint8_t out[16])
{
	uint8_t cur[16], ip[16];
	const char *end;

	memcpy(out, peer, 16);
	if (xff == NULL || xlen == 0 || t->n == 0 || !gw_trust_has(t, peer))
		return;
	memcpy(cur, peer, 16);
	end = xff + xlen;
	while (end > xff) {
		const char *s = end;

		while (s > xff && s[-1] != ',')
			s--;
		if (gw_ip_parse(s, (size_t) (end - s), ip) != 0)
			break; /* garbage: believe the hop that sent it */
		memcpy(cur, ip, 16);
		if (!gw_trust_has(t, ip))
			break;
		end = s > xff ? s - 1 : xff;
	}
	memcpy(out, cur, 16);
}
