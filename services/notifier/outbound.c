/*
 * Outbound HTTP(S) POSTs for the push and SMS channels (outbound.h).
 *
 * The guard against server-side request forgery sits in the one place no
 * name trick can get around: libcurl's CURLOPT_OPENSOCKETFUNCTION, called
 * with the very sockaddr it is about to connect to, after resolution.
 * Refusing there (CURL_SOCKET_BAD) makes libcurl try the next address of
 * the name, if any, and fail the transfer when none is left; a transfer
 * that failed after a refusal and never opened a socket is NT_REFUSED.
 * Everything else a URL could smuggle in is closed by options: only http
 * and https (CURLOPT_PROTOCOLS_STR, also for redirects, which are not
 * followed anyway), no proxy from the environment, no signals, a timeout
 * for the whole attempt, a cap on the body read.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "outbound.h"
#include "util.h"

struct nt_outbound {
	CURL *h;
	bool trusted;
	int timeout_ms;
	nt_allow allow;
	/* Per request, reset by nt_outbound_post. */
	int opened, refused;
	char refusal[160];
	char body[NT_BODY_MAX];
	size_t body_len;
	char retry_after[64];
	char errbuf[CURL_ERROR_SIZE];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void
curl_init_once(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int
nt_curl_global(void)
{
	pthread_once(&curl_once, curl_init_once);
	return (curl_init_rc == CURLE_OK ? 0 : -1);
}

nt_result *
nt_result_set(nt_result *r, nt_outcome o, int status, const char *fmt, ...)
{
	va_list ap;

	r->outcome = o;
	r->status = status;
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
	return (r);
}

/* ---------------------------------------------------------------- guard */

/* a in host byte order. */
static const char *
v4_refusal(uint32_t a)
{
	uint32_t b0 = a >> 24, b1 = (a >> 16) & 0xff;

	if (a == 0)
		return ("unspecified");
	if (a == 0xffffffffu)
		return ("broadcast");
	if (b0 == 0)
		return ("reserved (this network)");
	if (b0 == 127)
		return ("loopback");
	if (b0 == 10 || (b0 == 172 && (b1 & 0xf0) == 16) ||
	    (b0 == 192 && b1 == 168))
		return ("private");
	if (b0 == 169 && b1 == 254)
		return ("link-local");
	if (b0 == 100 && (b1 & 0xc0) == 64)
		return ("shared address space (CGNAT)");
	if ((a & 0xffffff00u) == 0xc0000000u)
		return ("reserved (IETF protocol assignments)");
	if ((a & 0xffffff00u) == 0xc0000200u ||
	    (a & 0xffffff00u) == 0xc6336400u ||
	    (a & 0xffffff00u) == 0xcb007100u)
		return ("reserved (documentation)");
	if ((a & 0xfffe0000u) == 0xc6120000u)
		return ("reserved (benchmarking)");
	if ((b0 & 0xf0) == 224)
		return ("multicast");
	if ((b0 & 0xf0) == 240)
		return ("reserved");
	return (NULL);
}

static uint32_t
be32(const uint8_t *p)
{
	return ((uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 |
	        (uint32_t) p[2] << 8 | (uint32_t) p[3]);
}

static bool
all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return (false);
	return (true);
}

static const char *
v6_refusal(const uint8_t *b)
{
	static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
	const char *why;

	if (all_zero(b, 16))
		return ("unspecified");
	if (all_zero(b, 15) && b[15] == 1)
		return ("loopback");
	if (all_zero(b, 10) && b[10] == 0xff && b[11] == 0xff) {
		/* ::ffff:a.b.c.d reaches a.b.c.d over IPv4. */
		if ((why = v4_refusal(be32(b + 12))) != NULL)
			return (why);
		return (NULL);
	}
	if (all_zero(b, 12))
		return ("reserved (IPv4-compatible)");
	if (memcmp(b, nat64, 12) == 0)
		return (v4_refusal(be32(b + 12)));
	if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b)
		return ("reserved (local-use NAT64)");
	if (b[0] == 0x20 && b[1] == 0x02)
		return (v4_refusal(be32(b + 2)));
	if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x00 && b[3] == 0x00)
		return ("reserved (Teredo)");
	if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
		return ("reserved (documentation)");
	if (b[0] == 0x01 && all_zero(b + 1, 7))
		return ("reserved (discard)");
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
		return ("link-local");
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
		return ("site-local");
	if ((b[0] & 0xfe) == 0xfc)
		return ("private (unique local)");
	if (b[0] == 0xff)
		return ("multicast");
	return (NULL);
}

const char *
nt_addr_refusal(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *) sa;
		return (v4_refusal(ntohl(s4->sin_addr.s_addr)));
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 =
		    (const struct sockaddr_in6 *) sa;
		return (v6_refusal(s6->sin6_addr.s6_addr));
	}
	return ("not an IP address");
}

const char *
nt_endpoint_refusal(const char *url, const char *allow)
{
	nt_allow al;
	char errbuf[160];
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *) &ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;
	const char *why = NULL;
	char *host = NULL, *port = NULL;
	CURLU *u;
	size_t hl;
	long p;

	if ((u = curl_url()) == NULL)
		return (NULL);
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
	        CURLUE_OK)
		goto out; /* a URL libcurl cannot read fails at send time */
	p = strtol(port, NULL, 10);
	memset(&ss, 0, sizeof(ss));
	hl = strlen(host);
	if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
		host[hl - 1] = '\0';
		if (strchr(host, '%') != NULL ||
		    inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
			goto out;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t) p);
	} else if (inet_aton(host, &s4->sin_addr) != 0) {
		/* inet_aton, as the resolver: "2130706433", "0x7f.1". */
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t) p);
	} else {
		goto out; /* a name */
	}
	if (nt_allow_parse(allow, &al, errbuf, sizeof(errbuf)) != 0)
		al.n = 0; /* a bad list stops the service at start-up */
	if (!nt_allow_match(&al, (struct sockaddr *) &ss))
		why = nt_addr_refusal((struct sockaddr *) &ss);
out:
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return (why);
}

/* "1.2.3.4:80" or "[::1]:80" of sa into buf. */
static void
addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *) sa;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 =
		    (const struct sockaddr_in6 *) sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		snprintf(buf, len, "(family %d)", sa->sa_family);
	}
}

static int
allow_entry(const char *s, size_t n, struct sockaddr_storage *out)
{
	char host[INET6_ADDRSTRLEN + 2], *end;
	const char *port, *colon;
	size_t hl;
	long p;

	if (n == 0 || n >= 80)
		return (-1);
	if (s[0] == '[') {
		const char *rb = memchr(s, ']', n);
		if (rb == NULL || rb + 1 >= s + n || rb[1] != ':')
			return (-1);
		hl = (size_t) (rb - s - 1);
		memcpy(host, s + 1, hl);
		port = rb + 2;
	} else {
		colon = NULL;
		for (const char *c = s; c < s + n; c++)
			if (*c == ':') {
				if (colon != NULL)
					return (-1); /* IPv6 needs brackets */
				colon = c;
			}
		if (colon == NULL)
			return (-1);
		hl = (size_t) (colon - s);
		memcpy(host, s, hl);
		port = colon + 1;
	}
	if (hl == 0 || hl >= sizeof(host))
		return (-1);
	host[hl] = '\0';
	{
		char pbuf[8];
		size_t pl = (size_t) (s + n - port);
		if (pl == 0 || pl >= sizeof(pbuf))
			return (-1);
		memcpy(pbuf, port, pl);
		pbuf[pl] = '\0';
		for (size_t i = 0; i < pl; i++)
			if (!isdigit((unsigned char) pbuf[i]))
				return (-1);
		p = strtol(pbuf, &end, 10);
		if (p < 1 || p > 65535)
			return (-1);
	}
	memset(out, 0, sizeof(*out));
	if (s[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) out;
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return (-1);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t) p);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *) out;
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return (-1);
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t) p);
	}
	return (0);
}

int
nt_allow_parse(const char *s, nt_allow *out, char *err, size_t errlen)
{
	nt_allow a = {0};

	while (s != NULL && *s != '\0') {
		const char *e = strchr(s, ',');
		const char *b = s, *t = e != NULL ? e : s + strlen(s);
		while (b < t && isspace((unsigned char) *b))
			b++;
		while (t > b && isspace((unsigned char) t[-1]))
			t--;
		if (t > b) {
			if (a.n == NT_ALLOW_MAX) {
				snprintf(err, errlen,
				         "more than %d allow entries",
				         NT_ALLOW_MAX);
				return (-1);
			}
			if (allow_entry(b, (size_t) (t - b), &a.addr[a.n]) !=
			    0) {
				snprintf(err, errlen,
				         "bad allow entry \"%.*s\" (want "
				         "ip:port or [ipv6]:port)",
				         (int) (t - b > 80 ? 80 : t - b), b);
				return (-1);
			}
			a.n++;
		}
		s = e != NULL ? e + 1 : NULL;
	}
	*out = a;
	return (0);
}

bool
nt_allow_match(const nt_allow *a, const struct sockaddr *sa)
{
	for (size_t i = 0; i < a->n; i++) {
		const struct sockaddr *e =
		    (const struct sockaddr *) &a->addr[i];
		if (e->sa_family != sa->sa_family)
			continue;
		if (sa->sa_family == AF_INET) {
			const struct sockaddr_in *x =
			    (const struct sockaddr_in *) e;
			const struct sockaddr_in *y =
			    (const struct sockaddr_in *) sa;
			if (x->sin_port == y->sin_port &&
			    x->sin_addr.s_addr == y->sin_addr.s_addr)
				return (true);
		} else if (sa->sa_family == AF_INET6) {
			const struct sockaddr_in6 *x =
			    (const struct sockaddr_in6 *) e;
			const struct sockaddr_in6 *y =
			    (const struct sockaddr_in6 *) sa;
			if (x->sin6_port == y->sin6_port &&
			    memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0)
				return (true);
		}
	}
	return (false);
}

/*
 * libcurl's socket opener: the check on the address it connects to.  A
 * refusal is remembered for nt_outbound_post's verdict and the socket is
 * never made.
 */
static curl_socket_t
open_socket_cb(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
	nt_outbound *o = ud;
	const struct sockaddr *sa = &a->addr;
	const char *why = NULL;
	char where[80];
	curl_socket_t fd;

	if (purpose != CURLSOCKTYPE_IPCXN)
		why = "not an outgoing connection";
	else if (!o->trusted && !nt_allow_match(&o->allow, sa))
		why = nt_addr_refusal(sa);
	if (why != NULL) {
		addr_format(sa, where, sizeof(where));
		o->refused++;
		snprintf(o->refusal, sizeof(o->refusal),
		         "address %s refused: %s", where, why);
		return (CURL_SOCKET_BAD);
	}
	fd = socket(a->family, a->socktype, a->protocol);
	if (fd != CURL_SOCKET_BAD)
		o->opened++;
	return (fd);
}

/* ---------------------------------------------------------- Retry-After */

static int
month_of(const char *m)
{
	static const char *const names[12] = {"Jan", "Feb", "Mar", "Apr",
	                                      "May", "Jun", "Jul", "Aug",
	                                      "Sep", "Oct", "Nov", "Dec"};

	for (int i = 0; i < 12; i++)
		if (strcmp(m, names[i]) == 0)
			return (i);
	return (-1);
}

/* An HTTP-date (RFC 9110 5.6.7) as Unix seconds, or -1. */
static int64_t
http_date(const char *v)
{
	char wd[16], mon[4], zone[4], tail[2];
	int d, y, hh, mm, ss, n;
	struct tm tm = {0};
	time_t t;

	/* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
	n = sscanf(v, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d %3s %1s", wd,
	           &d, mon, &y, &hh, &mm, &ss, zone, tail);
	if (n != 8 || strcmp(zone, "GMT") != 0) {
		/* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
		n = sscanf(v,
		           "%15[A-Za-z], %2d-%3[A-Za-z]-%2d %2d:%2d:%2d %3s "
		           "%1s",
		           wd, &d, mon, &y, &hh, &mm, &ss, zone, tail);
		if (n == 8 && strcmp(zone, "GMT") == 0) {
			/* RFC 9110: a year more than 50 years ahead is the
			 * past century's; simply: 70-99 are 19xx. */
			y += y >= 70 ? 1900 : 2000;
		} else {
			/* asctime: Sun Nov  6 08:49:37 1994 */
			n = sscanf(v,
			           "%3[A-Za-z] %3[A-Za-z] %2d %2d:%2d:%2d "
			           "%4d %1s",
			           wd, mon, &d, &hh, &mm, &ss, &y, tail);
			if (n != 7)
				return (-1);
		}
	}
	if ((tm.tm_mon = month_of(mon)) < 0 || d < 1 || d > 31 || y < 1970 ||
	    y > 9999 || hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 ||
	    ss > 60)
		return (-1);
	tm.tm_mday = d;
	tm.tm_year = y - 1900;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	if ((t = timegm(&tm)) == (time_t) -1)
		return (-1);
	return ((int64_t) t);
}

int64_t
nt_retry_after_ms(const char *v, int64_t now_ms)
{
	const char *p;
	int64_t ms, t;

	if (v == NULL)
		return (0);
	while (*v == ' ' || *v == '\t')
		v++;
	if (isdigit((unsigned char) *v)) {
		int64_t s = 0;
		for (p = v; isdigit((unsigned char) *p); p++)
			if (s <= NT_RETRY_AFTER_MAX_MS / 1000)
				s = s * 10 + (*p - '0');
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '\0')
			return (0);
		ms = s * 1000;
		return (ms > NT_RETRY_AFTER_MAX_MS ? NT_RETRY_AFTER_MAX_MS
		                                   : ms);
	}
	if ((t = http_date(v)) < 0)
		return (0);
	ms = t * 1000 - now_ms;
	if (ms <= 0)
		return (0);
	return (ms > NT_RETRY_AFTER_MAX_MS ? NT_RETRY_AFTER_MAX_MS : ms);
}

nt_outcome
nt_http_outcome(int status, bool gone_is_remove)
{
	if (status >= 200 && status <= 299)
		return (NT_SENT);
	if (status == 404 || status == 410)
		return (gone_is_remove ? NT_GONE : NT_PERMANENT);
	if (status == 408 || status == 429 || (status >= 500 && status <= 599))
		return (NT_RETRY);
	return (NT_PERMANENT);
}

/* ------------------------------------------------------------- requests */

bool
nt_url_is_http(const char *url)
{
	size_t n = 0;

	if (url == NULL)
		return (false);
	for (const char *p = url; *p != '\0'; p++, n++)
		if ((unsigned char) *p <= 0x20 || *p == 0x7f || n >= NT_URL_MAX)
			return (false);
	return (strncasecmp(url, "http://", 7) == 0 ||
	        strncasecmp(url, "https://", 8) == 0);
}

int
nt_outbound_new(const nt_outbound_cfg *cfg, bool trusted, nt_outbound **out,
                char *err, size_t errlen)
{
	nt_outbound *o;

	if (nt_curl_global() != 0) {
		snprintf(err, errlen, "libcurl failed to initialise");
		return (-1);
	}
	if ((o = calloc(1, sizeof(*o))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	o->trusted = trusted;
	o->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000;
	if (!trusted &&
	    nt_allow_parse(cfg->allow, &o->allow, err, errlen) != 0) {
		free(o);
		return (-1);
	}
	if ((o->h = curl_easy_init()) == NULL) {
		snprintf(err, errlen, "curl_easy_init failed");
		free(o);
		return (-1);
	}
	*out = o;
	return (0);
}

void
nt_outbound_free(nt_outbound *o)
{
	if (o == NULL)
		return;
	curl_easy_cleanup(o->h);
	free(o);
}

static size_t
body_cb(char *buf, size_t size, size_t n, void *ud)
{
	nt_outbound *o = ud;
	size_t len = size * n;

	if (len > sizeof(o->body) - o->body_len)
		return (0); /* over the cap: abort (CURLE_WRITE_ERROR) */
	memcpy(o->body + o->body_len, buf, len);
	o->body_len += len;
	return (len);
}

static size_t
header_cb(char *buf, size_t size, size_t n, void *ud)
{
	nt_outbound *o = ud;
	size_t len = size * n, i, j;

	if (len >= 5 && strncasecmp(buf, "HTTP/", 5) == 0) {
		o->retry_after[0] = '\0'; /* a new response (after a 1xx) */
	} else if (len > 12 && strncasecmp(buf, "Retry-After:", 12) == 0) {
		for (i = 12; i < len && (buf[i] == ' ' || buf[i] == '\t'); i++)
			;
		for (j = len;
		     j > i && (buf[j - 1] == '\r' || buf[j - 1] == '\n' ||
		               buf[j - 1] == ' ' || buf[j - 1] == '\t');
		     j--)
			;
		if (j - i < sizeof(o->retry_after)) {
			memcpy(o->retry_after, buf + i, j - i);
			o->retry_after[j - i] = '\0';
		}
	}
	return (len);
}

/* The start of the response body, printable, for an error message. */
static void
body_snippet(const nt_outbound *o, char *buf, size_t len)
{
	size_t k = 0;

	for (size_t i = 0; i < o->body_len && k + 1 < len && i < 120; i++) {
		unsigned char c = (unsigned char) o->body[i];
		buf[k++] = c < 0x20 || c == 0x7f ? ' ' : (char) c;
	}
	buf[k] = '\0';
}

void
nt_outbound_post(nt_outbound *o, const char *url, const char *const *headers,
                 const char *body, size_t len, bool gone_is_remove,
                 nt_result *r)
{
	struct curl_slist *hl = NULL, *t;
	CURL *h = o->h;
	CURLcode rc;
	long status = 0;
	char snip[128];

	memset(r, 0, sizeof(*r));
	if (!nt_url_is_http(url)) {
		nt_result_set(r, NT_REFUSED, 0,
		              "URL refused: only http:// and https:// URLs "
		              "without spaces or control characters, at most "
		              "%d bytes",
		              NT_URL_MAX);
		return;
	}
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
		if ((t = curl_slist_append(hl, headers[i])) == NULL)
			goto oom;
		hl = t;
	}
	/* No "Expect: 100-continue" round trip. */
	if ((t = curl_slist_append(hl, "Expect:")) == NULL)
		goto oom;
	hl = t;

	o->opened = o->refused = 0;
	o->refusal[0] = '\0';
	o->body_len = 0;
	o->retry_after[0] = '\0';
	o->errbuf[0] = '\0';

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, 0L);
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) o->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) o->timeout_ms);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "backends-notifier/" CM_VERSION);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE,
	                 (curl_off_t) NT_BODY_MAX);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, o);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, o);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, o->errbuf);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, o);

	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	/* The easy handle keeps no pointer into hl past this point. */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hl);

	if (rc != CURLE_OK && o->refused > 0 && o->opened == 0) {
		nt_result_set(r, NT_REFUSED, 0, "%s", o->refusal);
		return;
	}
	if (rc == CURLE_UNSUPPORTED_PROTOCOL) {
		nt_result_set(r, NT_REFUSED, 0, "URL refused: %s",
		              o->errbuf[0] ? o->errbuf
		                           : curl_easy_strerror(rc));
		return;
	}
	if (rc == CURLE_URL_MALFORMAT) {
		nt_result_set(r, NT_PERMANENT, 0, "bad URL: %s",
		              o->errbuf[0] ? o->errbuf
		                           : curl_easy_strerror(rc));
		return;
	}
	/* An answer counts when it was read whole, or up to the cap. */
	if (status >= 100 && (rc == CURLE_OK || rc == CURLE_WRITE_ERROR ||
	                      rc == CURLE_FILESIZE_EXCEEDED)) {
		r->outcome = nt_http_outcome((int) status, gone_is_remove);
		r->status = (int) status;
		if (status == 429 || status == 503)
			r->retry_after_ms =
			    nt_retry_after_ms(o->retry_after, cm_now_ms());
		if (r->outcome != NT_SENT) {
			body_snippet(o, snip, sizeof(snip));
			snprintf(r->error, sizeof(r->error), "HTTP %ld%s%s%s",
			         status,
			         status >= 300 && status <= 399
			             ? " (redirects are not followed)"
			             : "",
			         snip[0] ? ": " : "", snip);
		}
		return;
	}
	nt_result_set(r, NT_RETRY, 0, "network: %s",
	              o->errbuf[0] ? o->errbuf : curl_easy_strerror(rc));
	return;
oom:
	curl_slist_free_all(hl);
	nt_result_set(r, NT_RETRY, 0, "out of memory");
}
