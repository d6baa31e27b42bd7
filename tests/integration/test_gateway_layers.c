/*
 * What the gateway's layers offer the handlers to come (WebSocket,
 * uploads, HLS), black-box through the gateway-test binary and its
 * /_test/ handlers (services/gateway/handler/testing.c, never shipped):
 * a connection that switches protocol after 101, every request header by
 * name with a bound on their number, streamed request bodies with
 * back-pressure, responses in pieces (also under HEAD), each measured in
 * the gateway's resident memory while a gigabyte goes through.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

#define GIB         (1024ULL * 1024 * 1024)
#define RSS_GROW_KB (16 * 1024)

static struct {
	h_proc gw;
	h_proc caps; /* test_connection_caps' own, stopped at teardown too */
	int port;
	char url[64];
	const char *gw_bin;
} T;

static int
suite_setup(void **state)
{
	(void) state;
	if ((T.gw_bin = getenv("GATEWAY_TEST_BIN")) == NULL) {
		fprintf(stderr, "needs GATEWAY_TEST_BIN: run tests/run.sh\n");
		return (-1);
	}
	curl_global_init(CURL_GLOBAL_ALL);
	T.port = h_free_port();
	snprintf(T.url, sizeof(T.url), "http://127.0.0.1:%d", T.port);
	T.gw.name = "gateway-test";
	T.gw.bin = T.gw_bin;
	h_proc_env(&T.gw, "GATEWAY_LISTEN", "127.0.0.1:%d", T.port);
	h_proc_env(&T.gw, "GATEWAY_THREADS", "2");
	h_proc_env(&T.gw, "GATEWAY_RATELIMIT", "0");
	h_proc_env(&T.gw, "GATEWAY_CACHE_BYTES", "0");
	h_proc_env(&T.gw, "GATEWAY_ACCESS_LOG", "1");
	h_proc_env(&T.gw, "GATEWAY_WRITE_TIMEOUT_MS", "1500");
	/* Nothing listens there: these handlers call no service. */
	h_proc_env(&T.gw, "SHORTENER_ADDR", "tcp://127.0.0.1:%d",
	           h_free_port());
	h_proc_start(&T.gw);
	/* /healthz is 503 without a shortener: wait for the port. */
	for (int i = 0; i < 200; i++) {
		h_resp r;
		char u[128];

		snprintf(u, sizeof(u), "%s/_test/headers", T.url);
		h_http(&r, "GET", u, NULL, NULL, 0);
		if (r.status == 200) {
			h_resp_free(&r);
			return (0);
		}
		h_resp_free(&r);
		h_msleep(50);
	}
	fprintf(stderr, "gateway-test did not come up\n");
	return (-1);
}

static int
suite_teardown(void **state)
{
	(void) state;
	if (T.caps.pid > 0)
		h_proc_stop(&T.caps, 5000);
	h_proc_free(&T.caps);
	assert_int_equal(h_proc_stop(&T.gw, 10000), 0);
	h_proc_free(&T.gw);
	curl_global_cleanup();
	return (0);
}

/* ---- raw sockets ---- */

static int
tcp_connect(void)
{
	struct sockaddr_in sa = {0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) T.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	return (fd);
}

static void
send_all(int fd, const void *p, size_t len)
{
	const char *s = p;

	while (len > 0) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

		assert_true(n > 0);
		s += n;
		len -= (size_t) n;
	}
}

/*
 * Reads until buf holds want (a string) or timeout; returns the bytes
 * read (NUL-terminated in buf, which has cap bytes).
 */
static size_t
recv_until(int fd, char *buf, size_t cap, const char *want, int timeout_ms)
{
	size_t len = 0;
	int64_t end = cm_mono_ms() + timeout_ms;

	buf[0] = '\0';
	while (strstr(buf, want) == NULL && len + 1 < cap) {
		struct pollfd pfd = {fd, POLLIN, 0};
		int64_t left = end - cm_mono_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int) left) <= 0)
			break;
		if ((n = recv(fd, buf + len, cap - 1 - len, 0)) <= 0)
			break;
		len += (size_t) n;
		buf[len] = '\0';
	}
	return (len);
}

/* The gateway's resident set, in KiB. */
static long
gw_rss_kb(void)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int) T.gw.pid);
	if ((f = fopen(path, "r")) == NULL)
		return (-1);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return (kb);
}

/* ---- a connection that switches protocol ---- */

static void
test_upgrade_then_raw_bytes(void **state)
{
	const char req[] = "GET /_test/upgrade HTTP/1.1\r\nHost: x\r\n"
	                   "Connection: Upgrade\r\nUpgrade: echo\r\n\r\n"
	                   "early-bytes|";
	char buf[4096];
	int fd = tcp_connect();

	(void) state;
	/* Bytes right behind the request belong to the new protocol. */
	send_all(fd, req, sizeof(req) - 1);
	recv_until(fd, buf, sizeof(buf), "early-bytes|", 3000);
	assert_non_null(strstr(buf, "HTTP/1.1 101 Switching Protocols\r\n"));
	assert_non_null(strstr(buf, "Upgrade: echo\r\n"));
	assert_null(strstr(buf, "Content-Length"));
	assert_non_null(strstr(buf, "\r\n\r\nearly-bytes|"));
	/* Then anything at all, HTTP or not, comes back as it was. */
	send_all(fd, "GET / HTTP/1.1\r\n\r\n\x01\x02", 20);
	assert_int_equal(recv_until(fd, buf, sizeof(buf), "\x02", 3000), 20);
	assert_memory_equal(buf, "GET / HTTP/1.1\r\n\r\n\x01\x02", 20);
	close(fd);
}

/* ---- headers ---- */

/* A request with n header lines h0..h<n-1> plus "Connection: close". */
static void
header_lines(char *out, size_t cap, int n, const char *ask)
{
	size_t len = (size_t) snprintf(
	    out, cap, "GET /_test/headers?name=%s HTTP/1.1\r\n", ask);

	for (int i = 0; i < n; i++)
		len += (size_t) snprintf(out + len, cap - len, "h%d: v%d\r\n",
		                         i, i);
	snprintf(out + len, cap - len, "Connection: close\r\n\r\n");
}

static void
test_headers_by_name_and_bounded(void **state)
{
	char url[128], *v;
	const char *hdrs[] = {"X-Custom-Thing: first value ",
	                      "x-custom-thing: second", NULL};
	char req[8192], buf[8192];
	h_resp r;
	int fd;

	(void) state;
	/* Any header, case-insensitive, the first of several. */
	snprintf(url, sizeof(url), "%s/_test/headers?name=X-CUSTOM-THING",
	         T.url);
	h_http(&r, "GET", url, hdrs, NULL, 0);
	assert_int_equal(r.status, 200);
	v = h_json_str(&r, "value");
	assert_non_null(v);
	assert_string_equal(v, "first value");
	free(v);
	/* A header added by the handler. */
	v = h_resp_header(&r, "X-Test-Added");
	assert_non_null(v);
	assert_string_equal(v, "yes");
	free(v);
	h_resp_free(&r);

	/* 101 header lines (100 custom + Connection): 431. */
	fd = tcp_connect();
	header_lines(req, sizeof(req), 100, "h99");
	send_all(fd, req, strlen(req));
	recv_until(fd, buf, sizeof(buf), "\r\n\r\n", 3000);
	close(fd);
	assert_non_null(strstr(buf, "HTTP/1.1 431"));
	assert_non_null(strstr(buf, "X-Request-Id: "));

	/* Exactly 100 (the default bound) are fine. */
	fd = tcp_connect();
	header_lines(req, sizeof(req), 99, "h98");
	send_all(fd, req, strlen(req));
	recv_until(fd, buf, sizeof(buf), "}", 3000);
	close(fd);
	assert_non_null(strstr(buf, "HTTP/1.1 200"));
	assert_non_null(strstr(buf, "\"count\":100,\"value\":\"v98\""));
}

/* ---- a streamed body into a slow sink ---- */

struct sender {
	int fd;
	uint64_t size;
	uint32_t sum;
	int rv;
};

static void *
send_body(void *arg)
{
	struct sender *s = arg;
	static char piece[256 * 1024];
	uint64_t off = 0;

	for (size_t i = 0; i < sizeof(piece); i++)
		piece[i] = (char) (i * 7 + 3);
	while (off < s->size) {
		size_t n = s->size - off < sizeof(piece)
		               ? (size_t) (s->size - off)
		               : sizeof(piece);
		size_t done = 0;

		for (size_t i = 0; i < n; i++)
			s->sum += (unsigned char) piece[i];
		while (done < n) {
			ssize_t w =
			    send(s->fd, piece + done, n - done, MSG_NOSIGNAL);

			if (w <= 0) {
				s->rv = -1;
				return (NULL);
			}
			done += (size_t) w;
		}
		off += n;
	}
	return (NULL);
}

static void
test_streamed_body_bounded_memory(void **state)
{
	struct sender s = {.size = GIB};
	char head[256], buf[4096], expect[128];
	long rss0, rss, peak = 0;
	pthread_t th;
	int fd;

	(void) state;
	rss0 = gw_rss_kb();
	assert_true(rss0 > 0);
	fd = tcp_connect();
	s.fd = fd;
	snprintf(head, sizeof(head),
	         "POST /_test/sink?delay_ms=1 HTTP/1.1\r\nHost: x\r\n"
	         "Content-Length: %llu\r\nConnection: close\r\n\r\n",
	         (unsigned long long) s.size);
	send_all(fd, head, strlen(head));
	assert_int_equal(pthread_create(&th, NULL, send_body, &s), 0);
	for (;;) {
		struct pollfd pfd = {fd, POLLIN, 0};

		if ((rss = gw_rss_kb()) > peak)
			peak = rss;
		if (poll(&pfd, 1, 100) > 0)
			break;
	}
	pthread_join(th, NULL);
	assert_int_equal(s.rv, 0);
	recv_until(fd, buf, sizeof(buf), "}", 10000);
	close(fd);
	fprintf(stderr,
	        "streamed 1 GiB: gateway RSS %ld KiB before, peak %ld "
	        "KiB (+%ld)\n",
	        rss0, peak, peak - rss0);
	snprintf(expect, sizeof(expect), "{\"bytes\":%llu,\"sum\":%u}",
	         (unsigned long long) s.size, s.sum);
	if (strstr(buf, expect) == NULL)
		fail_msg("sink answered:\n%s\nexpected %s", buf, expect);
	assert_true(peak - rss0 < RSS_GROW_KB);
}

/* A body over the route's bound is refused before a byte is read. */
static void
test_streamed_body_over_bound(void **state)
{
	char buf[4096];
	const char req[] = "POST /_test/sink HTTP/1.1\r\nHost: x\r\n"
	                   "Content-Length: 3000000000\r\n"
	                   "Expect: 100-continue\r\n\r\n";
	int fd = tcp_connect();

	(void) state;
	send_all(fd, req, sizeof(req) - 1);
	recv_until(fd, buf, sizeof(buf), "}}", 3000);
	close(fd);
	assert_non_null(strstr(buf, "HTTP/1.1 413"));
	assert_null(strstr(buf, "100 Continue"));
}

/* ---- a response in pieces, read slowly ---- */

static void
test_piecewise_response_bounded_memory(void **state)
{
	char req[256];
	static char buf[256 * 1024];
	uint64_t body = 0, clen = 0;
	size_t hl = 0, len = 0;
	long rss0, rss, peak = 0;
	bool bad = false;
	int fd, rounds = 0;
	char *p;

	(void) state;
	rss0 = gw_rss_kb();
	fd = tcp_connect();
	snprintf(req, sizeof(req),
	         "GET /_test/blob?size=%llu HTTP/1.1\r\nHost: x\r\n\r\n",
	         (unsigned long long) GIB);
	send_all(fd, req, strlen(req));
	len = recv_until(fd, buf, sizeof(buf), "\r\n\r\n", 3000);
	assert_non_null(p = strstr(buf, "\r\n\r\n"));
	hl = (size_t) (p + 4 - buf);
	assert_non_null(strstr(buf, "HTTP/1.1 200"));
	assert_non_null(p = strstr(buf, "Content-Length: "));
	clen = strtoull(p + 16, NULL, 10);
	assert_true(clen == GIB);
	for (size_t i = hl; i < len; i++, body++)
		if (buf[i] != (char) ('a' + body % 26))
			bad = true;
	while (body < clen) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++, body++)
			if (buf[i] != (char) ('a' + body % 26))
				bad = true;
		/* Slowly: a pause every 16 reads, RSS looked at. */
		if (++rounds % 16 == 0) {
			h_msleep(2);
			if ((rss = gw_rss_kb()) > peak)
				peak = rss;
		}
	}
	close(fd);
	fprintf(stderr,
	        "1 GiB response: gateway RSS %ld KiB before, peak %ld "
	        "KiB (+%ld)\n",
	        rss0, peak, peak - rss0);
	assert_true(body == clen);
	assert_false(bad);
	assert_true(peak - rss0 < RSS_GROW_KB);
}

static void
test_piecewise_head_and_chunked(void **state)
{
	char url[128], *cl, *te;
	h_resp r;

	(void) state;
	/* HEAD: the head of the 1 GiB response, no body. */
	snprintf(url, sizeof(url), "%s/_test/blob?size=%llu", T.url,
	         (unsigned long long) GIB);
	h_http(&r, "HEAD", url, NULL, NULL, 0);
	assert_int_equal(r.status, 200);
	cl = h_resp_header(&r, "Content-Length");
	assert_non_null(cl);
	assert_string_equal(cl, "1073741824");
	assert_int_equal(r.body_len, 0);
	free(cl);
	h_resp_free(&r);

	/* Chunked: curl reassembles it; every byte checked. */
	snprintf(url, sizeof(url), "%s/_test/blob?size=3000001&chunked=1",
	         T.url);
	h_http(&r, "GET", url, NULL, NULL, 0);
	assert_int_equal(r.status, 200);
	te = h_resp_header(&r, "Transfer-Encoding");
	assert_non_null(te);
	assert_string_equal(te, "chunked");
	free(te);
	assert_int_equal(r.body_len, 3000001);
	for (size_t i = 0; i < r.body_len; i++)
		if (r.body[i] != (char) ('a' + i % 26))
			fail_msg("byte %zu is %d", i, r.body[i]);
	h_resp_free(&r);

	/* And the connection is reusable after a response in pieces. */
	{
		char req[512], buf[8192];
		int fd = tcp_connect();
		size_t n = (size_t) snprintf(
		    req, sizeof(req),
		    "GET /_test/blob?size=100000 HTTP/1.1\r\nHost: x\r\n\r\n"
		    "GET /_test/headers?name=host HTTP/1.1\r\nHost: "
		    "second\r\nConnection: close\r\n\r\n");

		send_all(fd, req, n);
		static char all[200000];
		size_t len = 0;

		for (;;) {
			ssize_t k = recv(fd, buf, sizeof(buf), 0);

			if (k <= 0 || len + (size_t) k >= sizeof(all))
				break;
			memcpy(all + len, buf, (size_t) k);
			len += (size_t) k;
		}
		all[len] = '\0';
		close(fd);
		assert_non_null(strstr(all, "\"value\":\"second\""));
	}
}

/*
 * A client that stops reading: once its output makes no progress for
 * GATEWAY_WRITE_TIMEOUT_MS (1.5 s here), the connection is closed, though
 * it keeps sending (inbound bytes do not count as progress).
 */
static void
test_stalled_reader_closed(void **state)
{
	const char req[] = "GET /_test/blob?size=1073741824 HTTP/1.1\r\n"
	                   "Host: x\r\n\r\n";
	static char buf[256 * 1024];
	uint64_t got = 0;
	int fd = tcp_connect();
	int rcv = 4096;

	(void) state;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	send_all(fd, req, sizeof(req) - 1);
	for (int i = 0; i < 30; i++) {
		/* Still talking, never reading. */
		if (send(fd, "X", 1, MSG_NOSIGNAL) < 0)
			break;
		h_msleep(100);
	}
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n <= 0)
			break;
		got += (uint64_t) n;
	}
	close(fd);
	fprintf(stderr, "stalled reader: %llu bytes before the close\n",
	        (unsigned long long) got);
	assert_true(got < 64ULL * 1024 * 1024);
}

/* ---- what the edge refuses ---- */

/* Sends req on a new connection; the answer until the peer closes. */
static char *
exchange(const char *req, size_t len)
{
	char *out;
	size_t n;

	out = h_raw(T.port, req, len, 3000, &n);
	return (out);
}

static void
test_versions_and_framing(void **state)
{
	static const struct {
		const char *req, *want;
	} cases[] = {
	    {"GET /_test/headers HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/1.1 505 "},
	    {"GET /_test/headers HTTP/2.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505 "},
	    {"GET /_test/headers\r\n\r\n", "HTTP/1.1 400 "},
	    /* Bare LF: in the request line, in a header, at the end. */
	    {"GET /_test/headers HTTP/1.1\nHost: x\r\n\r\n", "HTTP/1.1 400 "},
	    {"GET /_test/headers HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
	     "HTTP/1.1 400 "},
	    {"GET /_test/headers HTTP/1.1\r\nHost: x\r\n\n", "HTTP/1.1 400 "},
	    /* Chunked bodies, malformed framing or not: 411. */
	    {"POST /_test/sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
	     "chunked\r\n\r\n3\r\nabcXX0\r\n\r\n",
	     "HTTP/1.1 411 "},
	    {"POST /_test/sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
	     "chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	     "HTTP/1.1 411 "},
	    /* What is fine stays fine. */
	    {"GET /_test/headers HTTP/1.0\r\nHost: x\r\n\r\n", "HTTP/1.1 200 "},
	    {"POST /_test/sink?delay_ms=0 HTTP/1.1\r\nHost: x\r\n"
	     "Content-Length: 3\r\nConnection: close\r\n\r\nab\n",
	     "{\"bytes\":3,"},
	};

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = exchange(cases[i].req, strlen(cases[i].req));

		if (strstr(out, cases[i].want) == NULL)
			fail_msg("case %zu: want \"%s\", got:\n%s", i,
			         cases[i].want, out);
		/* One answer, and the connection closed after a refusal. */
		if (strncmp(cases[i].want, "HTTP/1.1 4", 10) == 0 ||
		    strncmp(cases[i].want, "HTTP/1.1 5", 10) == 0) {
			assert_non_null(strstr(out, "Connection: close"));
			assert_null(strstr(strstr(out, cases[i].want) + 1,
			                   "HTTP/1.1 "));
		}
		free(out);
	}
}

/* 300 sockets that only send a head promising 1 MiB hold no megabytes. */
static void
test_heads_promising_bodies(void **state)
{
	static const char head[] = "POST /api/v1/urls HTTP/1.1\r\nHost: x\r\n"
	                           "Content-Type: application/json\r\n"
	                           "Content-Length: 1048576\r\n\r\n{";
	int fds[300];
	long rss0 = gw_rss_kb(), rss;

	(void) state;
	for (int i = 0; i < 300; i++) {
		fds[i] = tcp_connect();
		send_all(fds[i], head, sizeof(head) - 1);
	}
	h_msleep(500);
	rss = gw_rss_kb();
	for (int i = 0; i < 300; i++)
		close(fds[i]);
	fprintf(stderr, "300 heads of 1 MiB bodies: RSS %ld -> %ld KiB\n", rss0,
	        rss);
	assert_true(rss - rss0 < 32 * 1024);
}

/*
 * Starts T.caps, a gateway-test of a test's own on port, with the extra
 * environment already in T.caps (h_proc_env), and waits until it serves.
 */
static void
extra_gateway(const char *name, int port)
{
	h_proc *gw = &T.caps;
	char url[128];
	int code = 0;

	gw->name = name;
	gw->bin = T.gw_bin;
	h_proc_env(gw, "GATEWAY_LISTEN", "127.0.0.1:%d", port);
	h_proc_env(gw, "GATEWAY_THREADS", "2");
	h_proc_env(gw, "GATEWAY_RATELIMIT", "0");
	h_proc_env(gw, "GATEWAY_CACHE_BYTES", "0");
	h_proc_env(gw, "SHORTENER_ADDR", "tcp://127.0.0.1:%d", h_free_port());
	h_proc_start(gw);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/_test/headers", port);
	for (int i = 0; i < 100 && code != 200; i++) {
		h_resp r;

		h_http(&r, "GET", url, NULL, NULL, 0);
		code = (int) r.status;
		h_resp_free(&r);
		if (code != 200)
			h_msleep(50);
	}
	assert_int_equal(code, 200);
	h_msleep(100); /* the probes' connections are closed */
}

/* Caps per client address and per process: a 503 and a close. */
static int
tcp_connect_from(const char *src, int port)
{
	struct sockaddr_in sa = {0}, from = {0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	from.sin_family = AF_INET;
	inet_pton(AF_INET, src, &from.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *) &from, sizeof(from)), 0);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
	return (fd);
}

/* A request on fd: its status line's code, 0 if none came. */
static int
ask(int fd)
{
	static const char req[] =
	    "GET /_test/headers HTTP/1.1\r\nHost: x\r\n\r\n";
	char buf[4096];

	if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) < 0)
		return (0);
	recv_until(fd, buf, sizeof(buf), "\r\n\r\n", 3000);
	return (strncmp(buf, "HTTP/1.1 ", 9) == 0 ? atoi(buf + 9) : 0);
}

static void
test_connection_caps(void **state)
{
	h_proc *gw = &T.caps;
	int port = h_free_port(), fds[8], n = 0, fd;
	char buf[4096];

	(void) state;
	h_proc_env(gw, "GATEWAY_MAX_CONNS", "6");
	h_proc_env(gw, "GATEWAY_MAX_CONNS_PER_ADDR", "3");
	h_proc_env(gw, "TRUSTED_PROXIES", "127.0.0.9");
	extra_gateway("gateway-caps", port);
	/* Three from one address are served, the fourth refused. */
	for (int i = 0; i < 3; i++) {
		fds[n] = tcp_connect_from("127.0.0.2", port);
		assert_int_equal(ask(fds[n]), 200);
		n++;
	}
	fd = tcp_connect_from("127.0.0.2", port);
	recv_until(fd, buf, sizeof(buf), "}}", 3000);
	assert_non_null(strstr(buf, "HTTP/1.1 503 "));
	assert_non_null(strstr(buf, "Connection: close"));
	assert_int_equal(recv(fd, buf, sizeof(buf), 0), 0); /* closed */
	close(fd);
	/* A trusted proxy has no per-address cap, but the process has. */
	for (int i = 0; i < 3; i++) {
		fds[n] = tcp_connect_from("127.0.0.9", port);
		assert_int_equal(ask(fds[n]), 200);
		n++;
	}
	fd = tcp_connect_from("127.0.0.3", port);
	assert_int_equal(ask(fd), 503);
	close(fd);
	/* Freed slots are free again. */
	close(fds[0]);
	h_msleep(100);
	fd = tcp_connect_from("127.0.0.2", port);
	assert_int_equal(ask(fd), 200);
	close(fd);
	for (int i = 1; i < n; i++)
		close(fds[i]);
	assert_int_equal(h_proc_stop(gw, 10000), 0);
}

/*
 * Buffered bodies in flight are bounded for the whole gateway: with a
 * 100 kB budget, a second upload that would pass it gets 503 (and the
 * first goes on); once the first is over there is room again.
 */
static void
test_body_budget(void **state)
{
	h_proc *gw = &T.caps;
	int port = h_free_port(), a, b;
	char head[256], buf[4096];
	static char body[80000];

	(void) state;
	h_proc_free(gw); /* test_connection_caps' */
	memset(gw, 0, sizeof(*gw));
	h_proc_env(gw, "GATEWAY_BODY_BUDGET_BYTES", "100000");
	extra_gateway("gateway-budget", port);
	memset(body, ' ', sizeof(body));
	snprintf(head, sizeof(head),
	         "POST /api/v1/urls HTTP/1.1\r\nHost: x\r\n"
	         "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	         "\r\n",
	         sizeof(body));
	a = tcp_connect_from("127.0.0.1", port);
	send_all(a, head, strlen(head));
	send_all(a, body, 70000);
	h_msleep(200);
	b = tcp_connect_from("127.0.0.1", port);
	send_all(b, head, strlen(head));
	send(b, body, 40000, MSG_NOSIGNAL);
	recv_until(b, buf, sizeof(buf), "}}", 3000);
	close(b);
	assert_non_null(strstr(buf, "HTTP/1.1 503 "));
	assert_non_null(strstr(buf, "bodies in flight"));
	/* The first completes (its answer is the shortener's absence). */
	send_all(a, body, sizeof(body) - 70000);
	recv_until(a, buf, sizeof(buf), "}}", 5000);
	close(a);
	assert_non_null(strstr(buf, "HTTP/1.1 "));
	assert_null(strstr(buf, "bodies in flight"));
	/* And its bytes are given back. */
	h_msleep(100);
	b = tcp_connect_from("127.0.0.1", port);
	send_all(b, head, strlen(head));
	send_all(b, body, sizeof(body));
	recv_until(b, buf, sizeof(buf), "}}", 5000);
	close(b);
	assert_null(strstr(buf, "bodies in flight"));
	assert_int_equal(h_proc_stop(gw, 10000), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_upgrade_then_raw_bytes),
	    cmocka_unit_test(test_headers_by_name_and_bounded),
	    cmocka_unit_test(test_streamed_body_over_bound),
	    cmocka_unit_test(test_streamed_body_bounded_memory),
	    cmocka_unit_test(test_piecewise_head_and_chunked),
	    cmocka_unit_test(test_piecewise_response_bounded_memory),
	    cmocka_unit_test(test_stalled_reader_closed),
	    cmocka_unit_test(test_versions_and_framing),
	    cmocka_unit_test(test_heads_promising_bodies),
	    cmocka_unit_test(test_connection_caps),
	    cmocka_unit_test(test_body_budget),
	};

	return (cmocka_run_group_tests(tests, suite_setup, suite_teardown));
}
