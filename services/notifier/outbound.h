/*
 * Outbound HTTP(S) for the channels: one libcurl easy handle per provider
 * (and so per worker thread, channel.h), reset before every request so that
 * nothing of one request's options leaks into the next while its
 * connection cache is kept.
 *
 * What a request to a user-registered URL (a push endpoint) may reach is
 * decided on the address libcurl actually connects to, in its
 * CURLOPT_OPENSOCKETFUNCTION: a name that resolves, or re-resolves, to a
 * loopback, private, link-local, unspecified, multicast or otherwise
 * internal address is refused there, after DNS, so DNS rebinding cannot
 * slip past a check made on the name.  "ip:port" pairs of the allow list
 * are exempt (the tests' receivers), compared exactly: an allowed
 * 127.0.0.1:8080 does not allow [::ffff:127.0.0.1]:8080 or [::1]:8080.
 * Trusted outbounds (the configured SMS provider) skip the address check;
 * every outbound speaks only http and https, follows no redirect (a 3xx is
 * an answer like any other) and ignores the proxy variables of the
 * environment.
 */
#ifndef NT_OUTBOUND_H
#define NT_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "channel.h"

/* Bytes of a response body kept (the rest aborts the transfer). */
#define NT_BODY_MAX 8192
/* Entries of an allow list. */
#define NT_ALLOW_MAX 32
/* Longest URL accepted. */
#define NT_URL_MAX 2048
/* Longest Retry-After honoured, in milliseconds (one day). */
#define NT_RETRY_AFTER_MAX_MS (86400LL * 1000)

/* A parsed allow list: exact (family, address, port) triples. */
typedef struct nt_allow {
	size_t n;
	struct sockaddr_storage addr[NT_ALLOW_MAX];
} nt_allow;

/*
 * Parses "ip:port,[v6]:port,..." (spaces around entries allowed; NULL or
 * "" is the empty list).  0, or -1 with the bad entry named in err.
 */
int nt_allow_parse(const char *s, nt_allow *out, char *err, size_t errlen);
/* true when sa (address and port) is exactly one of the list's entries. */
bool nt_allow_match(const nt_allow *a, const struct sockaddr *sa);

/*
 * Why an address may not be connected to, or NULL when it may: "loopback",
 * "private", "link-local", "unspecified", "multicast", "broadcast",
 * "shared address space (CGNAT)", "reserved", ... .  IPv6 forms that
 * embed an IPv4 address (mapped ::ffff:a.b.c.d, compatible ::a.b.c.d,
 * NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by the IPv4 address.
 * A family other than AF_INET and AF_INET6 is refused.  The port is not
 * looked at.
 */
const char *nt_addr_refusal(const struct sockaddr *sa);

/*
 * The delay a Retry-After value asks for, in milliseconds from now_ms:
 * delay-seconds or an HTTP-date (IMF-fixdate, RFC 850, asctime).  0 for
 * NULL, a malformed value or a date in the past; at most
 * NT_RETRY_AFTER_MAX_MS.
 */
int64_t nt_retry_after_ms(const char *value, int64_t now_ms);

/*
 * The outcome of an HTTP answer: 2xx NT_SENT; 404 and 410 NT_GONE when
 * gone_is_remove (a push endpoint), else NT_PERMANENT; 408, 429 and 5xx
 * NT_RETRY; anything else (3xx, other 4xx, nonsense) NT_PERMANENT.
 */
nt_outcome nt_http_outcome(int status, bool gone_is_remove);

typedef struct nt_outbound nt_outbound;

/*
 * A new outbound (one libcurl easy handle); *out is the caller's, freed
 * with nt_outbound_free.  trusted skips the address check (the allow list
 * of cfg is then unused).  0, or -1 with the reason in err.
 */
int nt_outbound_new(const nt_outbound_cfg *cfg, bool trusted, nt_outbound **out,
                    char *err, size_t errlen);
void nt_outbound_free(nt_outbound *o);

/*
 * POSTs body (len bytes) to url with the NULL-terminated "Name: value"
 * headers, within the configured timeout, and fills r: outcome (by
 * nt_http_outcome for an answer; NT_RETRY for a network error or timeout;
 * NT_REFUSED for a URL that is not http(s) or an address the guard
 * refused; NT_PERMANENT for a malformed URL), status, retry_after_ms (on
 * 429 and 503) and error.  The caller keeps everything it passed.
 */
void nt_outbound_post(nt_outbound *o, const char *url,
                      const char *const *headers, const char *body, size_t len,
                      bool gone_is_remove, nt_result *r);

/*
 * Whether url is an absolute http:// or https:// URL (scheme matched
 * without case) of at most NT_URL_MAX bytes with no control character or
 * space in it.
 */
bool nt_url_is_http(const char *url);

/*
 * curl_global_init, once per process (pthread_once); every file that makes
 * a libcurl handle calls it first.  0, or -1 when libcurl cannot start.
 */
int nt_curl_global(void);

/* Formats into r->error (truncating) and returns r. */
nt_result *nt_result_set(nt_result *r, nt_outcome o, int status,
                         const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
