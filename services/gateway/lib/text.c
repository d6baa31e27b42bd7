/*
 * Small pure helpers of the gateway: buffers, validation of request ids and
 * codes, status texts, JSON error bodies, request-target splitting and
 * percent-decoding, and the redirect cache's value format.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#include "gwlib.h"

void
gw_buf_reserve(struct gw_buf *b, size_t extra)
{
	size_t need, cap;
	char *p;

	need = b->len + extra;
	if (need <= b->cap)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL)
		fatalx("gateway: out of memory (%zu bytes)", cap);
	b->p = p;
	b->cap = cap;
}

void
gw_buf_append(struct gw_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	gw_buf_reserve(b, n);
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

void
gw_buf_puts(struct gw_buf *b, const char *s)
{
	gw_buf_append(b, s, strlen(s));
}

void
gw_buf_printf(struct gw_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	gw_buf_reserve(b, 128);
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t) n >= b->cap - b->len) {
		gw_buf_reserve(b, (size_t) n + 1);
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t) n;
}

void
gw_buf_putu(struct gw_buf *b, uint64_t v)
{
	char tmp[24];
	char *p = tmp + sizeof(tmp);

	do {
		*--p = (char) ('0' + v % 10);
		v /= 10;
	} while (v != 0);
	gw_buf_append(b, p, (size_t) (tmp + sizeof(tmp) - p));
}

void
gw_buf_free(struct gw_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

void
gw_str_append(struct gw_str *s, cm_arena *a, const char *p, size_t n)
{
	if (s->len + n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		char *np;

		while (cap < s->len + n + 1)
			cap *= 2;
		np = cm_arena_alloc(a, cap);
		if (s->len)
			memcpy(np, s->p, s->len);
		s->p = np;
		s->cap = cap;
	}
	memcpy(s->p + s->len, p, n);
	s->len += n;
	s->p[s->len] = '\0';
}

static bool
is_alnum(unsigned char c)
{
	return ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	        (c >= 'A' && c <= 'Z'));
}

bool
gw_rid_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 128)
		return (false);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char) s[i];

		if (!is_alnum(c) && c != '.' && c != '_' && c != '-')
			return (false);
	}
	return (true);
}

bool
gw_code_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 64)
		return (false);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char) s[i];

		if (!is_alnum(c) && c != '_' && c != '-')
			return (false);
	}
	return (true);
}

bool
gw_header_safe(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == 0x7f)
			return (false);
	}
	return (true);
}

bool
gw_strcaseeq(const char *s, size_t len, const char *lit)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char a = (unsigned char) s[i];
		unsigned char b = (unsigned char) lit[i];

		if (b == '\0')
			return (false);
		if (a >= 'A' && a <= 'Z')
			a = (unsigned char) (a + 32);
		if (b >= 'A' && b <= 'Z')
			b = (unsigned char) (b + 32);
		if (a != b)
			return (false);
	}
	return (lit[len] == '\0');
}

const char *
gw_trim(const char *s, size_t *len)
{
	while (*len > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		(*len)--;
	}
	while (*len > 0 && (s[*len - 1] == ' ' || s[*len - 1] == '\t'))
		(*len)--;
	return (s);
}

/*
 * Whether the parameters of a media range, p[0..len) from its first ';',
 * give it weight 0 ("q=0", "q=0.", "q=0.000").
 */
static bool
q_zero(const char *p, size_t len)
{
	const char *end = p + len, *semi, *v;
	size_t vlen;

	while (p < end) {
		p++; /* the ';' */
		semi = memchr(p, ';', (size_t) (end - p));
		vlen = (size_t) ((semi != NULL ? semi : end) - p);
		v = gw_trim(p, &vlen);
		p = semi != NULL ? semi : end;
		if (vlen < 2 || (v[0] != 'q' && v[0] != 'Q') || v[1] != '=')
			continue;
		if (vlen == 2 || v[2] != '0')
			return (false);
		for (size_t j = 3; j < vlen; j++)
			if (!(j == 3 && v[j] == '.') && v[j] != '0')
				return (false);
		return (true);
	}
	return (false);
}

bool
gw_accept_json(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t start = i, elen, rlen;
		bool quoted = false;
		const char *e, *semi;

		/* One element: up to a comma outside a quoted string. */
		while (i < len && (s[i] != ',' || quoted)) {
			if (s[i] == '"')
				quoted = !quoted;
			i++;
		}
		e = s + start;
		elen = i - start;
		if (i < len)
			i++;
		semi = memchr(e, ';', elen);
		rlen = semi != NULL ? (size_t) (semi - e) : elen;
		e = gw_trim(e, &rlen);
		if (!gw_strcaseeq(e, rlen, "application/json"))
			continue;
		if (semi == NULL ||
		    !q_zero(semi, (size_t) (s + start + elen - semi)))
			return (true);
	}
	return (false);
}

uint64_t
gw_fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ULL;
	return (h);
}

const char *
gw_http_reason(int status)
{
	switch (status) {
	case 100:
		return ("Continue");
	case 101:
		return ("Switching Protocols");
	case 200:
		return ("OK");
	case 201:
		return ("Created");
	case 202:
		return ("Accepted");
	case 204:
		return ("No Content");
	case 301:
		return ("Moved Permanently");
	case 302:
		return ("Found");
	case 304:
		return ("Not Modified");
	case 307:
		return ("Temporary Redirect");
	case 308:
		return ("Permanent Redirect");
	case 400:
		return ("Bad Request");
	case 401:
		return ("Unauthorized");
	case 403:
		return ("Forbidden");
	case 404:
		return ("Not Found");
	case 405:
		return ("Method Not Allowed");
	case 408:
		return ("Request Timeout");
	case 409:
		return ("Conflict");
	case 410:
		return ("Gone");
	case 411:
		return ("Length Required");
	case 412:
		return ("Precondition Failed");
	case 413:
		return ("Content Too Large");
	case 414:
		return ("URI Too Long");
	case 415:
		return ("Unsupported Media Type");
	case 417:
		return ("Expectation Failed");
	case 429:
		return ("Too Many Requests");
	case 431:
		return ("Request Header Fields Too Large");
	case 499:
		return ("Client Closed Request");
	case 500:
		return ("Internal Server Error");
	case 501:
		return ("Not Implemented");
	case 502:
		return ("Bad Gateway");
	case 503:
		return ("Service Unavailable");
	case 504:
		return ("Gateway Timeout");
	case 505:
		return ("HTTP Version Not Supported");
	default:
		return ("Unknown");
	}
}

/*
 * Errors the gateway produces itself still carry a code from the gRPC set,
 * as grpc-gateway's do, so that clients handle one vocabulary.
 */
const char *
gw_http_code_name(int status)
{
	switch (status) {
	case 400:
	case 414:
		return ("INVALID_ARGUMENT");
	case 401:
		return ("UNAUTHENTICATED");
	case 403:
		return ("PERMISSION_DENIED");
	case 404:
	case 410:
		return ("NOT_FOUND");
	case 405:
	case 501:
	case 505:
		return ("UNIMPLEMENTED");
	case 408:
	case 504:
		return ("DEADLINE_EXCEEDED");
	case 409:
		return ("ALREADY_EXISTS");
	case 411:
	case 412:
	case 417:
		return ("FAILED_PRECONDITION");
	case 413:
	case 429:
	case 431:
		return ("RESOURCE_EXHAUSTED");
	case 502:
	case 503:
		return ("UNAVAILABLE");
	default:
		return ("INTERNAL");
	}
}

void
gw_json_quote(struct gw_buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, run = 0;

	gw_buf_reserve(b, len + 2);
	b->p[b->len++] = '"';
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char) s[i];
		char esc[6];

		if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
			continue;
		gw_buf_append(b, s + run, i - run);
		run = i + 1;
		esc[0] = '\\';
		switch (c) {
		case '"':
			esc[1] = '"';
			gw_buf_append(b, esc, 2);
			break;
		case '\\':
			esc[1] = '\\';
			gw_buf_append(b, esc, 2);
			break;
		case '\n':
			esc[1] = 'n';
			gw_buf_append(b, esc, 2);
			break;
		case '\r':
			esc[1] = 'r';
			gw_buf_append(b, esc, 2);
			break;
		case '\t':
			esc[1] = 't';
			gw_buf_append(b, esc, 2);
			break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			gw_buf_append(b, esc, 6);
		}
	}
	gw_buf_append(b, s + run, len - run);
	gw_buf_append(b, "\"", 1);
}

void
gw_error_json(struct gw_buf *b, const char *code, const char *msg)
{
	gw_buf_puts(b, "{\"error\":{\"code\":");
	gw_json_quote(b, code, strlen(code));
	gw_buf_puts(b, ",\"message\":");
	gw_json_quote(b, msg, strlen(msg));
	gw_buf_puts(b, "}}");
}

int
gw_split_target(const char *t, size_t len, const char **path, size_t *plen,
                const char **query, size_t *qlen)
{
	const char *end = t + len, *p = t, *q;

	if (len == 0)
		return (-1);
	if (*p != '/') {
		/* absolute-form: scheme "://" authority path */
		const char *s = memchr(t, ':', len);

		if (s == NULL || end - s < 3 || s[1] != '/' || s[2] != '/')
			return (-1);
		p = s + 3;
		while (p < end && *p != '/' && *p != '?' && *p != '#')
			p++;
		if (p == end || *p != '/') {
			/* "http://host" and "http://host?q" mean "/" */
			static const char root[] = "/";

			*path = root;
			*plen = 1;
			*query = NULL;
			*qlen = 0;
			if (p < end && *p == '?') {
				q = p + 1;
				while (p < end && *p != '#')
					p++;
				*query = q;
				*qlen = (size_t) (p - q);
			}
			return (0);
		}
	}
	q = p;
	while (q < end && *q != '?' && *q != '#')
		q++;
	*path = p;
	*plen = (size_t) (q - p);
	*query = NULL;
	*qlen = 0;
	if (q < end && *q == '?') {
		const char *e = ++q;

		while (e < end && *e != '#')
			e++;
		*query = q;
		*qlen = (size_t) (e - q);
	}
	return (0);
}

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

int
gw_pct_decode(const char *s, size_t len, bool plus_space, cm_arena *a,
              char **out, size_t *outlen)
{
	char *d = cm_arena_alloc(a, len + 1);
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char) s[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= len)
				return (-1);
			hi = hexval((unsigned char) s[i + 1]);
			lo = hexval((unsigned char) s[i + 2]);
			if (hi < 0 || lo < 0)
				return (-1);
			c = (unsigned char) (hi << 4 | lo);
			i += 2;
		} else if (c == '+' && plus_space) {
			c = ' ';
		}
		if (c == '\0')
			return (-1);
		d[n++] = (char) c;
	}
	d[n] = '\0';
	*out = d;
	*outlen = n;
	return (0);
}

bool
gw_query_next(const char **cur, const char *end, const char **k, size_t *klen,
              const char **v, size_t *vlen)
{
	const char *p = *cur;

	while (p < end) {
		const char *amp = memchr(p, '&', (size_t) (end - p));
		const char *e = amp ? amp : end;
		const char *eq;

		if (e == p) {
			p = e + 1;
			continue;
		}
		eq = memchr(p, '=', (size_t) (e - p));
		*k = p;
		if (eq != NULL) {
			*klen = (size_t) (eq - p);
			*v = eq + 1;
			*vlen = (size_t) (e - eq - 1);
		} else {
			*klen = (size_t) (e - p);
			*v = e;
			*vlen = 0;
		}
		*cur = amp ? amp + 1 : end;
		return (true);
	}
	*cur = end;
	return (false);
}

size_t
gw_redir_format(const struct gw_redir *e, char *buf, size_t buflen)
{
	int n;

	if (e->expires_at < 0 || e->url_len > INT32_MAX)
		return (0);
	n = snprintf(buf, buflen, "%lld %.*s", (long long) e->expires_at,
	             (int) e->url_len, e->url != NULL ? e->url : "");
	if (n < 0 || (size_t) n >= buflen)
		return (0);
	return ((size_t) n);
}

int
gw_redir_parse(const void *buf, size_t len, struct gw_redir *e)
{
	const char *p = buf, *end = p + len;
	int64_t v = 0;
	size_t digits = 0;

	for (; p < end && *p >= '0' && *p <= '9'; p++, digits++) {
		if (v > (INT64_MAX - (*p - '0')) / 10)
			return (-1);
		v = v * 10 + (*p - '0');
	}
	if (digits == 0 || p == end || *p != ' ')
		return (-1);
	p++;
	e->expires_at = v;
	e->url = p;
	e->url_len = (size_t) (end - p);
	return (0);
}

int64_t
gw_redir_ttl_ms(int64_t now_ms, int64_t expires_at, int64_t max_ms)
{
	int64_t left;

	if (expires_at <= 0)
		return (max_ms);
	if (expires_at > INT64_MAX / 1000)
		return (max_ms);
	left = expires_at * 1000 - now_ms;
	return (left < max_ms ? left : max_ms);
}
