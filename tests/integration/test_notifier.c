/*
 * The notifier through the gateway, black-box: the real notifier and
 * gateway binaries, a private Redis, the run's PostgreSQL, HTTP, and a
 * small HTTP receiver of the test's own for push.  The in-app channel (the
 * inbox), and push, which reaches the receiver (allowed through
 * NOTIFIER_OUTBOUND_ALLOW).
 *
 * PostgreSQL is read directly only where the API must not show a thing:
 * the phone code of an SMS (which a real phone would receive) and the
 * outbox rows a crash leaves behind.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "harness.h"

#define SECRET    "integration-secret-integration-secret"
#define UNSUB_KEY "integration-unsubscribe-key-0123456789"
#define BASE      "http://notify.test"

static struct {
	h_redis redis;
	h_proc nt, gw;
	int nt_port, gw_port;
	char nt_addr[64], gw_url[64];
	const char *nt_bin, *gw_bin;
	char auth_admin[1024], auth_alice[1024], auth_bob[1024];
	char alice[64], bob[64];
	unsigned seq;
	/* the push receiver */
	int rx_fd, rx_port;
	pthread_t rx_thread;
	atomic_int rx_status, rx_count;
	pthread_mutex_t rx_mu;
	char rx_key[128];
	atomic_bool rx_stop;
} T;

static void
unique(char *out, size_t n, const char *prefix)
{
	snprintf(out, n, "%s-%d-%lx-%u", prefix, (int) getpid(),
	         (unsigned long) time(NULL) & 0xfffff, T.seq++);
}

/* ---- a tiny HTTP receiver: records requests, answers rx_status ---- */

static void *
rx_main(void *arg)
{
	(void) arg;
	while (!atomic_load(&T.rx_stop)) {
		char buf[16384];
		size_t len = 0;
		ssize_t k;
		int c = accept(T.rx_fd, NULL, NULL);
		char *hdr_end = NULL, *p;
		char resp[128];
		long clen = 0;

		if (c < 0)
			continue;
		while (len < sizeof(buf) - 1 &&
		       (k = read(c, buf + len, sizeof(buf) - 1 - len)) > 0) {
			len += (size_t) k;
			buf[len] = '\0';
			if (hdr_end == NULL &&
			    (hdr_end = strstr(buf, "\r\n\r\n")) != NULL) {
				if ((p = strcasestr(buf, "content-length:")) !=
				    NULL)
					clen = strtol(p + 15, NULL, 10);
			}
			if (hdr_end != NULL &&
			    (long) (len - (size_t) (hdr_end + 4 - buf)) >= clen)
				break;
		}
		if (hdr_end != NULL) {
			pthread_mutex_lock(&T.rx_mu);
			if ((p = strcasestr(buf, "idempotency-key:")) != NULL) {
				p += 16;
				while (*p == ' ')
					p++;
				snprintf(T.rx_key, sizeof(T.rx_key), "%.*s",
				         (int) strcspn(p, "\r\n"), p);
			}
			pthread_mutex_unlock(&T.rx_mu);
			atomic_fetch_add(&T.rx_count, 1);
		}
		snprintf(resp, sizeof(resp),
		         "HTTP/1.1 %d X\r\nContent-Length: 0\r\n"
		         "Connection: close\r\n\r\n",
		         atomic_load(&T.rx_status));
		(void) write(c, resp, strlen(resp));
		close(c);
	}
	return (NULL);
}

static void
rx_start(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	int one = 1;

	T.rx_fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(T.rx_fd >= 0);
	setsockopt(T.rx_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(T.rx_fd, (struct sockaddr *) &a, sizeof(a)), 0);
	assert_int_equal(listen(T.rx_fd, 64), 0);
	getsockname(T.rx_fd, (struct sockaddr *) &a, &al);
	T.rx_port = ntohs(a.sin_port);
	atomic_init(&T.rx_status, 200);
	pthread_mutex_init(&T.rx_mu, NULL);
	assert_int_equal(pthread_create(&T.rx_thread, NULL, rx_main, NULL), 0);
}

static void
rx_stop(void)
{
	atomic_store(&T.rx_stop, true);
	shutdown(T.rx_fd, SHUT_RDWR);
	close(T.rx_fd);
	pthread_join(T.rx_thread, NULL);
}

/* ---- processes ---- */

static void
notifier_start(const char *fault)
{
	h_proc *p = &T.nt;

	memset(p, 0, sizeof(*p));
	p->name = "notifier";
	p->bin = T.nt_bin;
	h_proc_env(p, "NOTIFIER_LISTEN", "%s", T.nt_addr);
	h_proc_env(p, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(p, "DATABASE_URL", "%s", getenv("DATABASE_URL"));
	h_proc_env(p, "PUBLIC_BASE_URL", "%s", BASE);
	h_proc_env(p, "BACKENDS_DEV_MODE", "1");
	h_proc_env(p, "NOTIFIER_UNSUBSCRIBE_KEY", "%s", UNSUB_KEY);
	h_proc_env(p, "NOTIFIER_WORKERS", "8");
	h_proc_env(p, "NOTIFIER_DELIVERY_WORKERS", "4");
	h_proc_env(p, "NOTIFIER_VISIBILITY_MS", "2000");
	h_proc_env(p, "NOTIFIER_RETRY_BASE_MS", "200");
	h_proc_env(p, "NOTIFIER_DIGEST_WINDOW_S", "2");
	h_proc_env(p, "NOTIFIER_THROTTLE_MAX", "0");
	h_proc_env(p, "NOTIFIER_OUTBOUND_ALLOW", "127.0.0.1:%d", T.rx_port);
	h_proc_env(p, "NOTIFIER_SEND_TIMEOUT_MS", "2000");
	if (fault != NULL)
		h_proc_env(p, "NOTIFIER_FAULT", "%s", fault);
	h_proc_start(p);
	if (fault == NULL)
		assert_true(h_wait_healthy(T.nt_bin, T.nt_addr, 20000));
}

/* Waits until the gateway's /healthz shows the notifier SERVING (after a
 * restart its client reconnects with backoff). */
static void
wait_gateway_notifier(void)
{
	char url[128];

	snprintf(url, sizeof(url), "%s/healthz", T.gw_url);
	for (int64_t end = cm_mono_ms() + 20000; cm_mono_ms() < end;
	     h_msleep(100)) {
		h_resp r;
		bool ok;

		h_http(&r, "GET", url, NULL, NULL, 0);
		ok = r.body != NULL &&
		     strstr(r.body, "\"notifier\":{\"status\":\"SERVING\"") !=
		         NULL;
		h_resp_free(&r);
		if (ok)
			return;
	}
	fail_msg("the gateway does not see the notifier");
}

/* Waits until the outbox is empty (everything relayed). */
static void wait_outbox_empty(void);

static void
gateway_start(void)
{
	h_proc *p = &T.gw;

	memset(p, 0, sizeof(*p));
	p->name = "gateway";
	p->bin = T.gw_bin;
	h_proc_env(p, "GATEWAY_LISTEN", "127.0.0.1:%d", T.gw_port);
	h_proc_env(p, "GATEWAY_THREADS", "2");
	h_proc_env(p, "NOTIFIER_ADDR", "%s", T.nt_addr);
	h_proc_env(p, "SHORTENER_ADDR", "tcp://127.0.0.1:%d", h_free_port());
	h_proc_env(p, "RATELIMITER_ADDR", "tcp://127.0.0.1:%d", h_free_port());
	h_proc_env(p, "CACHE_ADDR", "tcp://127.0.0.1:%d", h_free_port());
	h_proc_env(p, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(p, "PUBLIC_BASE_URL", "%s", BASE);
	h_proc_env(p, "AUTH_JWT_SECRET", "%s", SECRET);
	h_proc_env(p, "GATEWAY_RATELIMIT", "0");
	h_proc_start(p);
}

/* ---- HTTP ---- */

static void api(h_resp *r, const char *method, const char *auth,
                const char *body, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void
api(h_resp *r, const char *method, const char *auth, const char *body,
    const char *fmt, ...)
{
	char path[1024], url[1200];
	const char *hdrs[] = {"Content-Type: application/json", auth, NULL};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	snprintf(url, sizeof(url), "%s%s", T.gw_url, path);
	h_http(r, method, url, hdrs, body, body != NULL ? strlen(body) : 0);
}

static void
expect(const h_resp *r, long status)
{
	if (r->status != status)
		fprintf(stderr, "expected %ld, got %ld: %s\n", status,
		        r->status, r->body != NULL ? r->body : "");
	assert_int_equal(r->status, status);
}

static void
expect_error(const h_resp *r, long status, const char *code)
{
	char *c;

	expect(r, status);
	c = h_json_str(r, "error.code");
	assert_non_null(c);
	assert_string_equal(c, code);
	free(c);
}

static json_t *
body_json(const h_resp *r)
{
	json_t *j = json_loads(r->body != NULL ? r->body : "", 0, NULL);

	assert_non_null(j);
	return (j);
}

/* POST /api/v1/notifications as admin; 202 and the id (malloc'd). */
static char *
send_ok(const char *json, char *status_out, size_t slen)
{
	h_resp r;
	char *id, *st;

	api(&r, "POST", T.auth_admin, json, "/api/v1/notifications");
	expect(&r, 202);
	id = h_json_str(&r, "id");
	st = h_json_str(&r, "status");
	assert_non_null(id);
	assert_non_null(st);
	if (status_out != NULL)
		snprintf(status_out, slen, "%s", st);
	free(st);
	h_resp_free(&r);
	return (id);
}

/* The user's inbox items with this title (up to 100 newest). */
static int
inbox_count(const char *auth, const char *title)
{
	h_resp r;
	json_t *j, *items, *it;
	size_t i;
	int n = 0;

	api(&r, "GET", auth, NULL, "/api/v1/me/notifications?limit=100");
	expect(&r, 200);
	j = body_json(&r);
	items = json_object_get(j, "notifications");
	json_array_foreach(items, i, it)
	{
		const char *t = json_string_value(json_object_get(it, "title"));

		if (title == NULL || (t != NULL && strstr(t, title) == t))
			n++;
	}
	json_decref(j);
	h_resp_free(&r);
	return (n);
}

static bool
wait_inbox(const char *auth, const char *title, int want, int timeout_ms)
{
	int64_t end = cm_mono_ms() + timeout_ms;

	while (cm_mono_ms() < end) {
		if (inbox_count(auth, title) >= want)
			return (true);
		h_msleep(100);
	}
	return (false);
}

/* The status of channel ch of notification id (admin view), malloc'd. */
static char *
channel_field(const char *id, const char *ch, const char *field)
{
	h_resp r;
	json_t *j, *chans, *c;
	size_t i;
	char *out = NULL;

	api(&r, "GET", T.auth_admin, NULL, "/api/v1/notifications/%s", id);
	expect(&r, 200);
	j = body_json(&r);
	chans = json_object_get(j, "channels");
	json_array_foreach(chans, i, c)
	{
		if (strcmp(json_string_value(json_object_get(c, "channel")),
		           ch) != 0)
			continue;
		json_t *v = json_object_get(c, field);

		if (json_is_string(v))
			out = strdup(json_string_value(v));
		else if (json_is_integer(v))
			out = json_dumps(v, JSON_ENCODE_ANY);
	}
	json_decref(j);
	h_resp_free(&r);
	assert_non_null(out);
	return (out);
}

/* Waits until channel ch of id has a status other than queued/failed. */
static char *
wait_final(const char *id, const char *ch, int timeout_ms)
{
	int64_t end = cm_mono_ms() + timeout_ms;
	char *s = NULL;

	while (cm_mono_ms() < end) {
		free(s);
		s = channel_field(id, ch, "status");
		if (strcmp(s, "queued") != 0 && strcmp(s, "failed") != 0)
			return (s);
		h_msleep(100);
	}
	return (s);
}

static PGresult *
sql(const char *q, const char *p1)
{
	static PGconn *c;
	const char *params[1] = {p1};
	PGresult *res;

	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		if (c != NULL)
			PQfinish(c);
		c = PQconnectdb(getenv("DATABASE_URL"));
		assert_int_equal(PQstatus(c), CONNECTION_OK);
	}
	res = PQexecParams(c, q, p1 != NULL ? 1 : 0, NULL,
	                   p1 != NULL ? params : NULL, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	return (res);
}

static void
wait_outbox_empty(void)
{
	for (int64_t end = cm_mono_ms() + 20000; cm_mono_ms() < end;
	     h_msleep(100)) {
		PGresult *res =
		    sql("SELECT count(*) FROM notifier.outbox", NULL);
		bool empty = strcmp(PQgetvalue(res, 0, 0), "0") == 0;

		PQclear(res);
		if (empty)
			return;
	}
	fail_msg("the outbox stays full");
}

static void
make_auth(char *out, size_t n, const char *sub, const char *role)
{
	char payload[256], *tok;

	snprintf(payload, sizeof(payload), "{\"sub\":\"%s\",%s\"exp\":%ld}",
	         sub, role != NULL ? role : "", (long) time(NULL) + 3600);
	tok = h_jwt(SECRET, "HS256", payload);
	snprintf(out, n, "Authorization: Bearer %s", tok);
	free(tok);
}

static int
suite_setup(void **state)
{
	char admin[64], url[128];
	int64_t end;

	(void) state;
	T.nt_bin = getenv("NOTIFIER_BIN");
	T.gw_bin = getenv("GATEWAY_BIN");
	if (getenv("DATABASE_URL") == NULL || T.nt_bin == NULL ||
	    T.gw_bin == NULL) {
		fprintf(stderr, "integration tests need DATABASE_URL, "
		                "NOTIFIER_BIN and GATEWAY_BIN: run "
		                "tests/run.sh\n");
		return (-1);
	}
	curl_global_init(CURL_GLOBAL_ALL);
	rx_start();
	h_redis_start(&T.redis);
	T.nt_port = h_free_port();
	T.gw_port = h_free_port();
	snprintf(T.nt_addr, sizeof(T.nt_addr), "tcp://127.0.0.1:%d", T.nt_port);
	snprintf(T.gw_url, sizeof(T.gw_url), "http://127.0.0.1:%d", T.gw_port);
	notifier_start(NULL);
	gateway_start();
	wait_gateway_notifier();
	/* The gateway answers /healthz (503 while its shortener, which this
	 * test does not start, is missing). */
	snprintf(url, sizeof(url), "%s/healthz", T.gw_url);
	for (end = cm_mono_ms() + 20000; cm_mono_ms() < end; h_msleep(100)) {
		h_resp r;

		h_http(&r, "GET", url, NULL, NULL, 0);
		long st = r.status;

		h_resp_free(&r);
		if (st == 200 || st == 503)
			break;
	}
	unique(admin, sizeof(admin), "ops");
	unique(T.alice, sizeof(T.alice), "alice");
	unique(T.bob, sizeof(T.bob), "bob");
	make_auth(T.auth_admin, sizeof(T.auth_admin), admin,
	          "\"role\":\"admin\",");
	make_auth(T.auth_alice, sizeof(T.auth_alice), T.alice, NULL);
	make_auth(T.auth_bob, sizeof(T.auth_bob), T.bob, NULL);
	return (0);
}

static int
suite_teardown(void **state)
{
	(void) state;
	h_proc_stop(&T.gw, 5000);
	h_proc_stop(&T.nt, 10000);
	h_redis_stop(&T.redis);
	h_proc_free(&T.gw);
	h_proc_free(&T.nt);
	rx_stop();
	curl_global_cleanup();
	return (0);
}

/* ---- tests ---- */

/*
 * The core path: an accepted Send reaches the user's inbox with its data,
 * and the admin view shows the channel sent; the gateway's /healthz lists
 * the notifier and /metrics its upstream.
 */
static void
test_send_to_inbox(void **state)
{
	char body[1024], title[64], st[32], *id, *s;
	h_resp r;
	json_t *j, *it;

	(void) state;
	unique(title, sizeof(title), "hello");
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.hello\",\"title\":\"%s\","
	         "\"body\":\"b\",\"data\":{\"post\":\"42\"},"
	         "\"channels\":[\"inapp\"],\"priority\":\"high\"}",
	         T.alice, title);
	id = send_ok(body, st, sizeof(st));
	assert_string_equal(st, "queued");
	assert_true(wait_inbox(T.auth_alice, title, 1, 10000));

	api(&r, "GET", T.auth_alice, NULL, "/api/v1/me/notifications?limit=1");
	expect(&r, 200);
	j = body_json(&r);
	it = json_array_get(json_object_get(j, "notifications"), 0);
	assert_string_equal(json_string_value(json_object_get(it, "id")), id);
	assert_string_equal(json_string_value(json_object_get(it, "title")),
	                    title);
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(it, "data"), "post")),
	                    "42");
	assert_false(json_is_true(json_object_get(it, "read")));
	assert_true(json_integer_value(json_object_get(j, "unread_count")) >=
	            1);
	json_decref(j);
	h_resp_free(&r);

	api(&r, "GET", T.auth_admin, NULL, "/api/v1/notifications/%s", id);
	expect(&r, 200);
	s = h_json_str(&r, "priority");
	assert_string_equal(s, "high");
	free(s);
	s = h_json_str(&r, "user");
	assert_string_equal(s, T.alice);
	free(s);
	h_resp_free(&r);
	s = channel_field(id, "inapp", "status");
	assert_string_equal(s, "sent");
	free(s);
	s = channel_field(id, "inapp", "attempts");
	assert_string_equal(s, "1");
	free(s);
	/* Every attempt is in the delivery log. */
	{
		PGresult *res =
		    sql("SELECT count(*) FROM notifier.delivery_log "
		        "WHERE notification_id = $1::bigint "
		        "AND status = 'sent'",
		        id);

		assert_string_equal(PQgetvalue(res, 0, 0), "1");
		PQclear(res);
	}
	free(id);

	api(&r, "GET", NULL, NULL, "/healthz");
	j = body_json(&r);
	assert_string_equal(
	    json_string_value(json_object_get(
	        json_object_get(json_object_get(j, "services"), "notifier"),
	        "status")),
	    "SERVING");
	json_decref(j);
	h_resp_free(&r);
	assert_true(h_metric(T.gw_url, "gateway_upstream_duration_seconds_"
	                               "count{upstream=\"notifier\"}") > 0);
}

static void
test_auth_errors(void **state)
{
	const char *ok = "{\"user\":\"x\",\"type\":\"t\",\"title\":\"t\","
	                 "\"channels\":[\"inapp\"]}";
	h_resp r;

	(void) state;
	api(&r, "POST", NULL, ok, "/api/v1/notifications");
	expect_error(&r, 401, "UNAUTHENTICATED");
	h_resp_free(&r);
	api(&r, "POST", T.auth_alice, ok, "/api/v1/notifications");
	expect_error(&r, 403, "PERMISSION_DENIED");
	h_resp_free(&r);
	api(&r, "POST", T.auth_admin, "{\"user\":", "/api/v1/notifications");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	api(&r, "POST", T.auth_admin,
	    "{\"user\":\"x\",\"type\":\"t\",\"title\":\"t\",\"channels\":"
	    "[\"fax\"]}",
	    "/api/v1/notifications");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	api(&r, "POST", T.auth_admin,
	    "{\"user\":\"x\",\"type\":\"t\",\"title\":\"t\",\"channels\":"
	    "[\"inapp\"],\"priority\":\"urgent\"}",
	    "/api/v1/notifications");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	api(&r, "POST", T.auth_admin,
	    "{\"user\":\"x\",\"type\":\"t\",\"title\":\"t\",\"bogus\":1}",
	    "/api/v1/notifications");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	api(&r, "GET", T.auth_alice, NULL, "/api/v1/notifications/1000");
	expect_error(&r, 403, "PERMISSION_DENIED");
	h_resp_free(&r);
	api(&r, "GET", T.auth_admin, NULL, "/api/v1/notifications/999999999");
	expect_error(&r, 404, "NOT_FOUND");
	h_resp_free(&r);
	api(&r, "GET", T.auth_admin, NULL, "/api/v1/notifications/abc");
	expect_error(&r, 404, "NOT_FOUND");
	h_resp_free(&r);
	api(&r, "GET", T.auth_alice, NULL, "/api/v1/notifications/dead");
	expect_error(&r, 403, "PERMISSION_DENIED");
	h_resp_free(&r);
	api(&r, "GET", NULL, NULL, "/api/v1/me/notifications");
	expect_error(&r, 401, "UNAUTHENTICATED");
	h_resp_free(&r);
	api(&r, "PUT", T.auth_alice, "not json",
	    "/api/v1/me/notification-preferences");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
}

/* The same key within 24 h: the same id, nothing sent again. */
static void
test_idempotency(void **state)
{
	char body[1024], title[64], key[64], st[32], *id1, *id2, *id3;

	(void) state;
	unique(title, sizeof(title), "idem");
	unique(key, sizeof(key), "video:1:ready");
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.ready\",\"title\":\"%s\","
	         "\"channels\":[\"inapp\"],\"idempotency_key\":\"%s\"}",
	         T.alice, title, key);
	id1 = send_ok(body, st, sizeof(st));
	assert_string_equal(st, "queued");
	id2 = send_ok(body, st, sizeof(st));
	assert_string_equal(st, "duplicate");
	assert_string_equal(id1, id2);
	/* Another user's key space is their own. */
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.ready\",\"title\":\"%s\","
	         "\"channels\":[\"inapp\"],\"idempotency_key\":\"%s\"}",
	         T.bob, title, key);
	id3 = send_ok(body, st, sizeof(st));
	assert_string_not_equal(id1, id3);
	assert_true(wait_inbox(T.auth_alice, title, 1, 10000));
	assert_true(wait_inbox(T.auth_bob, title, 1, 10000));
	h_msleep(500);
	assert_int_equal(inbox_count(T.auth_alice, title), 1);
	free(id1);
	free(id2);
	free(id3);
}

static void
test_preferences_off(void **state)
{
	char user[64], auth[1024], body[1024], t1[64], t2[64], *id1, *id2, *s;
	h_resp r;
	json_t *j, *p;

	(void) state;
	unique(user, sizeof(user), "pref");
	make_auth(auth, sizeof(auth), user, NULL);
	api(&r, "PUT", auth,
	    "{\"preferences\":[{\"type\":\"test.like\",\"channel\":\"inapp\","
	    "\"enabled\":false}]}",
	    "/api/v1/me/notification-preferences");
	expect(&r, 200);
	h_resp_free(&r);
	api(&r, "GET", auth, NULL, "/api/v1/me/notification-preferences");
	expect(&r, 200);
	j = body_json(&r);
	p = json_array_get(json_object_get(j, "preferences"), 0);
	assert_string_equal(json_string_value(json_object_get(p, "type")),
	                    "test.like");
	assert_string_equal(json_string_value(json_object_get(p, "channel")),
	                    "inapp");
	assert_true(json_is_false(json_object_get(p, "enabled")));
	json_decref(j);
	h_resp_free(&r);
	/* A bad channel in preferences. */
	api(&r, "PUT", auth,
	    "{\"preferences\":[{\"type\":\"test.like\",\"channel\":\"fax\","
	    "\"enabled\":false}]}",
	    "/api/v1/me/notification-preferences");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);

	unique(t1, sizeof(t1), "off");
	unique(t2, sizeof(t2), "on");
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.like\",\"title\":\"%s\","
	         "\"channels\":[\"inapp\"]}",
	         user, t1);
	id1 = send_ok(body, NULL, 0);
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.comment\",\"title\":\"%s\","
	         "\"channels\":[\"inapp\"]}",
	         user, t2);
	id2 = send_ok(body, NULL, 0);
	s = wait_final(id1, "inapp", 10000);
	assert_string_equal(s, "skipped");
	free(s);
	s = channel_field(id1, "inapp", "last_error");
	assert_string_equal(s, "turned off by the user");
	free(s);
	assert_true(wait_inbox(auth, t2, 1, 10000));
	assert_int_equal(inbox_count(auth, t1), 0);
	free(id1);
	free(id2);
}

/*
 * Quiet hours around the present minute (UTC): a normal message waits in
 * the due-time set until they end, a high one goes through; an unknown
 * time zone is refused.
 */
static void
test_quiet_hours(void **state)
{
	char user[64], auth[1024], body[1024], t1[64], t2[64], member[64];
	char *id1, *id2, *s, *reply;
	time_t now = time(NULL);
	struct tm tm;
	int start, end;
	int64_t end_ms, score;
	h_resp r;

	(void) state;
	unique(user, sizeof(user), "quiet");
	make_auth(auth, sizeof(auth), user, NULL);
	api(&r, "PUT", auth,
	    "{\"quiet_hours\":{\"start\":\"22:00\",\"end\":\"07:00\","
	    "\"time_zone\":\"Mars/Olympus_Mons\"}}",
	    "/api/v1/me/notification-preferences");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	api(&r, "PUT", auth,
	    "{\"quiet_hours\":{\"start\":\"25:00\",\"end\":\"07:00\","
	    "\"time_zone\":\"UTC\"}}",
	    "/api/v1/me/notification-preferences");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);

	gmtime_r(&now, &tm);
	start = (tm.tm_hour * 60 + tm.tm_min + 1440 - 60) % 1440;
	end = (tm.tm_hour * 60 + tm.tm_min + 60) % 1440;
	snprintf(
	    body, sizeof(body),
	    "{\"quiet_hours\":{\"start\":\"%02d:%02d\",\"end\":\"%02d:%02d\","
	    "\"time_zone\":\"UTC\"}}",
	    start / 60, start % 60, end / 60, end % 60);
	api(&r, "PUT", auth, body, "/api/v1/me/notification-preferences");
	expect(&r, 200);
	s = h_json_str(&r, "quiet_hours.time_zone");
	assert_string_equal(s, "UTC");
	free(s);
	h_resp_free(&r);
	/* When they end: the next UTC minute boundary an hour from now. */
	end_ms = ((int64_t) now - tm.tm_sec + 3600) * 1000;

	unique(t1, sizeof(t1), "night");
	unique(t2, sizeof(t2), "alarm");
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"t.q\",\"title\":\"%s\","
	         "\"channels\":[\"inapp\"]}",
	         user, t1);
	id1 = send_ok(body, NULL, 0);
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"t.q\",\"title\":\"%s\","
	         "\"channels\":[\"inapp\"],\"priority\":\"high\"}",
	         user, t2);
	id2 = send_ok(body, NULL, 0);
	assert_true(wait_inbox(auth, t2, 1, 10000));
	h_msleep(1000);
	assert_int_equal(inbox_count(auth, t1), 0);
	s = channel_field(id1, "inapp", "status");
	assert_string_equal(s, "queued");
	free(s);
	snprintf(member, sizeof(member), "ZSCORE notifier:{q}:due 2:%s", id1);
	reply = h_redis_cmd(&T.redis, member);
	score =
	    strtoll(strchr(reply, '\n') != NULL ? strchr(reply, '\n') + 1 : "0",
	            NULL, 10);
	free(reply);
	if (score < end_ms - 61000 || score > end_ms + 61000)
		fprintf(stderr, "due %lld, quiet hours end %lld\n",
		        (long long) score, (long long) end_ms);
	assert_true(score >= end_ms - 61000 && score <= end_ms + 61000);
	free(id1);
	free(id2);
}

static void
test_send_at(void **state)
{
	char body[1024], title[64], st[32], *id;

	(void) state;
	unique(title, sizeof(title), "later");
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"t.later\",\"title\":\"%s\","
	         "\"channels\":[\"inapp\"],\"send_at\":%ld}",
	         T.alice, title, (long) time(NULL) + 3);
	id = send_ok(body, st, sizeof(st));
	assert_string_equal(st, "scheduled");
	h_msleep(1000);
	assert_int_equal(inbox_count(T.auth_alice, title), 0);
	assert_true(wait_inbox(T.auth_alice, title, 1, 10000));
	free(id);
}

/* limit/cursor/next_cursor over the inbox, newest first, no overlap. */
static void
test_paging(void **state)
{
	char user[64], auth[1024], body[1024], title[64], cursor[64] = "";
	char seen[8][32];
	size_t nseen = 0;
	h_resp r;

	(void) state;
	unique(user, sizeof(user), "pager");
	make_auth(auth, sizeof(auth), user, NULL);
	unique(title, sizeof(title), "page");
	for (int i = 0; i < 5; i++) {
		snprintf(body, sizeof(body),
		         "{\"user\":\"%s\",\"type\":\"t.page\",\"title\":"
		         "\"%s-%d\",\"channels\":[\"inapp\"]}",
		         user, title, i);
		free(send_ok(body, NULL, 0));
	}
	assert_true(wait_inbox(auth, title, 5, 10000));
	for (int page = 0; page < 3; page++) {
		json_t *j, *items, *it;
		size_t i;
		const char *next;

		api(&r, "GET", auth, NULL,
		    "/api/v1/me/notifications?limit=2%s%s",
		    cursor[0] ? "&cursor=" : "", cursor);
		expect(&r, 200);
		j = body_json(&r);
		items = json_object_get(j, "notifications");
		assert_int_equal(json_array_size(items), page < 2 ? 2 : 1);
		json_array_foreach(items, i, it)
		{
			const char *id =
			    json_string_value(json_object_get(it, "id"));

			for (size_t k = 0; k < nseen; k++)
				assert_string_not_equal(seen[k], id);
			if (nseen > 0)
				assert_true(strtoll(id, NULL, 10) <
				            strtoll(seen[nseen - 1], NULL, 10));
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", id);
		}
		next = json_string_value(json_object_get(j, "next_cursor"));
		assert_non_null(next);
		if (page < 2)
			assert_true(next[0] != '\0');
		else
			assert_string_equal(next, "");
		snprintf(cursor, sizeof(cursor), "%s", next);
		json_decref(j);
		h_resp_free(&r);
	}
	api(&r, "GET", auth, NULL, "/api/v1/me/notifications?limit=-1");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	api(&r, "GET", auth, NULL, "/api/v1/me/notifications?cursor=%%21%%21");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	api(&r, "GET", auth, NULL, "/api/v1/me/notifications?limit=1000");
	expect(&r, 200);
	h_resp_free(&r);
}

/* Read one (another user's id: 404), then all. */
static void
test_read(void **state)
{
	char user[64], auth[1024], body[1024], title[64], *id;
	h_resp r;

	(void) state;
	unique(user, sizeof(user), "reader");
	make_auth(auth, sizeof(auth), user, NULL);
	unique(title, sizeof(title), "read");
	for (int i = 0; i < 3; i++) {
		snprintf(body, sizeof(body),
		         "{\"user\":\"%s\",\"type\":\"t.read\",\"title\":"
		         "\"%s\",\"channels\":[\"inapp\"]}",
		         user, title);
		id = send_ok(body, NULL, 0);
		if (i < 2)
			free(id);
	}
	assert_true(wait_inbox(auth, title, 3, 10000));
	api(&r, "POST", T.auth_bob, NULL, "/api/v1/me/notifications/%s/read",
	    id);
	expect_error(&r, 404, "NOT_FOUND");
	h_resp_free(&r);
	api(&r, "POST", auth, NULL, "/api/v1/me/notifications/%s/read", id);
	expect(&r, 204);
	h_resp_free(&r);
	api(&r, "GET", auth, NULL, "/api/v1/me/notifications");
	assert_int_equal(h_json_int(&r, "unread_count"), 2);
	h_resp_free(&r);
	api(&r, "POST", auth, NULL, "/api/v1/me/notifications/read-all");
	expect(&r, 200);
	assert_int_equal(h_json_int(&r, "updated"), 2);
	h_resp_free(&r);
	api(&r, "GET", auth, NULL, "/api/v1/me/notifications");
	assert_int_equal(h_json_int(&r, "unread_count"), 0);
	h_resp_free(&r);
	free(id);
}

static void
test_devices(void **state)
{
	char user[64], auth[1024], body[256], *id;
	h_resp r;

	(void) state;
	unique(user, sizeof(user), "dev");
	make_auth(auth, sizeof(auth), user, NULL);
	api(&r, "POST", auth, "{\"endpoint\":\"ftp://x\"}",
	    "/api/v1/me/devices");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	snprintf(body, sizeof(body),
	         "{\"endpoint\":\"https://ntfy.example/%s\",\"platform\":"
	         "\"ntfy\"}",
	         user);
	api(&r, "POST", auth, body, "/api/v1/me/devices");
	expect(&r, 201);
	id = h_json_str(&r, "id");
	assert_non_null(id);
	h_resp_free(&r);
	api(&r, "GET", auth, NULL, "/api/v1/me/devices");
	expect(&r, 200);
	assert_non_null(strstr(r.body, id));
	h_resp_free(&r);
	api(&r, "DELETE", T.auth_bob, NULL, "/api/v1/me/devices/%s", id);
	expect_error(&r, 404, "NOT_FOUND");
	h_resp_free(&r);
	api(&r, "DELETE", auth, NULL, "/api/v1/me/devices/%s", id);
	expect(&r, 204);
	h_resp_free(&r);
	api(&r, "GET", auth, NULL, "/api/v1/me/devices");
	assert_null(strstr(r.body, id));
	h_resp_free(&r);
	free(id);
}

/* A new phone number waits for the code the SMS carried. */
static void
test_contact(void **state)
{
	char user[64], auth[1024], body[256], code[8], wrong[8], *s;
	PGresult *res;
	h_resp r;
	const char *b;

	(void) state;
	unique(user, sizeof(user), "phone");
	make_auth(auth, sizeof(auth), user, NULL);
	api(&r, "PUT", auth, "{\"email\":\"a@b\\r\\nBcc: x\"}",
	    "/api/v1/me/contact");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	api(&r, "PUT", auth, "{\"phone\":\"0151\"}", "/api/v1/me/contact");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	api(&r, "PUT", auth,
	    "{\"email\":\"p@example.com\",\"phone\":\"+4915112345678\"}",
	    "/api/v1/me/contact");
	expect(&r, 200);
	s = h_json_str(&r, "pending_phone");
	assert_string_equal(s, "+4915112345678");
	free(s);
	s = h_json_str(&r, "phone");
	assert_string_equal(s, "");
	free(s);
	h_resp_free(&r);
	/* Another number at once: one code a minute. */
	api(&r, "PUT", auth, "{\"phone\":\"+4915199999999\"}",
	    "/api/v1/me/contact");
	expect_error(&r, 429, "RESOURCE_EXHAUSTED");
	h_resp_free(&r);

	res = sql("SELECT body FROM notifier.notifications WHERE user_id = $1 "
	          "AND type = 'contact.confirm' ORDER BY id DESC LIMIT 1",
	          user);
	assert_int_equal(PQntuples(res), 1);
	b = strpbrk(PQgetvalue(res, 0, 0), "0123456789");
	assert_non_null(b);
	snprintf(code, sizeof(code), "%.6s", b);
	PQclear(res);
	snprintf(wrong, sizeof(wrong), "%06d", (atoi(code) + 1) % 1000000);
	snprintf(body, sizeof(body), "{\"code\":\"%s\"}", wrong);
	api(&r, "POST", auth, body, "/api/v1/me/contact/confirm");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
	api(&r, "POST", auth, body, "/api/v1/me/contact/confirm");
	expect(&r, 200);
	s = h_json_str(&r, "phone");
	assert_string_equal(s, "+4915112345678");
	free(s);
	s = h_json_str(&r, "pending_phone");
	assert_string_equal(s, "");
	free(s);
	h_resp_free(&r);
	api(&r, "POST", auth, body, "/api/v1/me/contact/confirm");
	expect_error(&r, 400, "FAILED_PRECONDITION");
	h_resp_free(&r);
}

static void
b64url(const unsigned char *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
	                        "tuvwxyz0123456789-_";
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned) in[i] << 16;

		if (i + 1 < n)
			v |= (unsigned) in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = a[(v >> 18) & 63];
		out[o++] = a[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = a[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = a[v & 63];
	}
	out[o] = '\0';
}

/* POST /u/{token}: no login; the type's email is off afterwards. */
static void
test_unsubscribe(void **state)
{
	char user[64], auth[1024], msg[256], tok[512], *s;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	size_t ul, tl;
	h_resp r;

	(void) state;
	unique(user, sizeof(user), "unsub");
	make_auth(auth, sizeof(auth), user, NULL);
	ul = strlen(user);
	tl = strlen("video.ready");
	memcpy(msg, user, ul + 1);
	memcpy(msg + ul + 1, "video.ready", tl);
	HMAC(EVP_sha256(), UNSUB_KEY, (int) strlen(UNSUB_KEY),
	     (unsigned char *) msg, ul + 1 + tl, md, &mdlen);
	b64url((unsigned char *) user, ul, tok);
	strcat(tok, ".");
	b64url((const unsigned char *) "video.ready", tl, tok + strlen(tok));
	strcat(tok, ".");
	b64url(md, 16, tok + strlen(tok));

	api(&r, "POST", NULL, "List-Unsubscribe=One-Click", "/u/%sx", tok);
	expect_error(&r, 404, "NOT_FOUND");
	h_resp_free(&r);
	api(&r, "POST", NULL, "List-Unsubscribe=One-Click", "/u/%s", tok);
	expect(&r, 200);
	s = h_json_str(&r, "type");
	assert_string_equal(s, "video.ready");
	free(s);
	h_resp_free(&r);
	api(&r, "GET", auth, NULL, "/api/v1/me/notification-preferences");
	expect(&r, 200);
	assert_non_null(strstr(r.body, "\"type\":\"video.ready\","
	                               "\"channel\":\"email\","
	                               "\"enabled\":false"));
	h_resp_free(&r);
}

/* Low priority, one type and group, within the window: one digest. */
static void
test_digest(void **state)
{
	char user[64], auth[1024], body[1024], title[64], group[64];

	(void) state;
	unique(user, sizeof(user), "digest");
	make_auth(auth, sizeof(auth), user, NULL);
	unique(title, sizeof(title), "liked");
	unique(group, sizeof(group), "post");
	for (int i = 0; i < 3; i++) {
		snprintf(body, sizeof(body),
		         "{\"user\":\"%s\",\"type\":\"test.like\",\"title\":"
		         "\"%s\",\"channels\":[\"inapp\"],\"priority\":\"low\","
		         "\"group\":\"%s\"}",
		         user, title, group);
		free(send_ok(body, NULL, 0));
	}
	assert_true(wait_inbox(auth, title, 1, 15000));
	h_msleep(1500);
	assert_int_equal(inbox_count(auth, title), 1);
	{
		h_resp r;

		api(&r, "GET", auth, NULL, "/api/v1/me/notifications");
		assert_non_null(strstr(r.body, "(+2 more)"));
		h_resp_free(&r);
	}
}

/*
 * Templates (deploy/templates): a type with one renders the message from
 * the Send's vars (the inbox shows the rendered title and body); one of its
 * variables missing refuses the Send with 400, and nothing is queued.
 */
static void
test_templates(void **state)
{
	char user[64], auth[1024], body[1024], want[128];
	h_resp r;
	char *id;

	(void) state;
	unique(user, sizeof(user), "tmpl");
	make_auth(auth, sizeof(auth), user, NULL);
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"video.ready\","
	         "\"channels\":[\"inapp\"]}",
	         user);
	api(&r, "POST", T.auth_admin, body, "/api/v1/notifications");
	expect_error(&r, 400, "INVALID_ARGUMENT");
	assert_non_null(strstr(r.body, "video_title"));
	h_resp_free(&r);
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"video.ready\","
	         "\"channels\":[\"inapp\"],"
	         "\"vars\":{\"video_title\":\"Cats <3 & dogs\"}}",
	         user);
	id = send_ok(body, NULL, 0);
	snprintf(want, sizeof(want), "Your video is ready: Cats <3 & dogs");
	assert_true(wait_inbox(auth, want, 1, 10000));
	api(&r, "GET", auth, NULL, "/api/v1/me/notifications?limit=10");
	expect(&r, 200);
	assert_non_null(strstr(r.body, "has been processed and is ready"));
	h_resp_free(&r);
	assert_int_equal(inbox_count(auth, NULL), 1);
	free(id);
}

/*
 * A channel that cannot deliver goes dead (push, after 3 attempts against
 * a receiver answering 500), is listed under dead letters, and a replay
 * queues only it again: inapp is not delivered twice, and the replayed
 * push reaches the receiver with the notification's id as
 * Idempotency-Key.
 */
static void
test_dead_letter_replay(void **state)
{
	char user[64], auth[1024], body[1024], title[64], *id, *s;
	h_resp r;
	int before;

	(void) state;
	unique(user, sizeof(user), "dead");
	make_auth(auth, sizeof(auth), user, NULL);
	snprintf(body, sizeof(body),
	         "{\"endpoint\":\"http://127.0.0.1:%d/push/%s\"}", T.rx_port,
	         user);
	api(&r, "POST", auth, body, "/api/v1/me/devices");
	expect(&r, 201);
	h_resp_free(&r);
	atomic_store(&T.rx_status, 500);
	before = atomic_load(&T.rx_count);
	unique(title, sizeof(title), "deadpush");
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.ready\",\"title\":\"%s\","
	         "\"channels\":[\"push\",\"inapp\"],\"priority\":\"high\"}",
	         user, title);
	id = send_ok(body, NULL, 0);
	s = wait_final(id, "push", 20000);
	assert_string_equal(s, "dead");
	free(s);
	s = channel_field(id, "push", "attempts");
	assert_string_equal(s, "3");
	free(s);
	assert_int_equal(atomic_load(&T.rx_count) - before, 3);
	s = channel_field(id, "inapp", "status");
	assert_string_equal(s, "sent");
	free(s);
	assert_int_equal(inbox_count(auth, title), 1);

	api(&r, "GET", T.auth_admin, NULL,
	    "/api/v1/notifications/dead?limit=100");
	expect(&r, 200);
	assert_non_null(strstr(r.body, id));
	h_resp_free(&r);
	api(&r, "POST", T.auth_alice, NULL,
	    "/api/v1/notifications/dead/%s/replay", id);
	expect_error(&r, 403, "PERMISSION_DENIED");
	h_resp_free(&r);

	atomic_store(&T.rx_status, 200);
	api(&r, "POST", T.auth_admin, NULL,
	    "/api/v1/notifications/dead/%s/replay", id);
	expect(&r, 200);
	assert_int_equal(h_json_int(&r, "requeued"), 1);
	h_resp_free(&r);
	s = channel_field(id, "inapp", "attempts");
	assert_string_equal(s, "1");
	free(s);
	s = wait_final(id, "push", 20000);
	assert_string_equal(s, "sent");
	free(s);
	pthread_mutex_lock(&T.rx_mu);
	assert_string_equal(T.rx_key, id);
	pthread_mutex_unlock(&T.rx_mu);
	s = channel_field(id, "inapp", "attempts");
	assert_string_equal(s, "1");
	free(s);
	assert_int_equal(inbox_count(auth, title), 1);
	/* Nothing dead left: a second replay is refused. */
	api(&r, "POST", T.auth_admin, NULL,
	    "/api/v1/notifications/dead/%s/replay", id);
	expect_error(&r, 400, "FAILED_PRECONDITION");
	h_resp_free(&r);
	api(&r, "POST", T.auth_admin, NULL,
	    "/api/v1/notifications/dead/999999999/replay");
	expect_error(&r, 404, "NOT_FOUND");
	h_resp_free(&r);
	free(id);
}

/*
 * The outbox: the service dies after the commit and before the stream
 * write (fault switch); the row is in the outbox, and after a restart the
 * message is delivered.
 */
static void
test_outbox_fault(void **state)
{
	char body[1024], title[64], *id;
	PGresult *res;
	int status = 0;
	int64_t end;

	(void) state;
	wait_outbox_empty();
	h_proc_stop(&T.nt, 10000);
	h_proc_free(&T.nt);
	notifier_start("exit_before_relay");
	assert_true(h_wait_healthy(T.nt_bin, T.nt_addr, 20000));
	wait_gateway_notifier();
	unique(title, sizeof(title), "outbox");
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"t.outbox\",\"title\":\"%s\","
	         "\"channels\":[\"inapp\"]}",
	         T.alice, title);
	id = send_ok(body, NULL, 0);
	for (end = cm_mono_ms() + 10000; cm_mono_ms() < end; h_msleep(50))
		if (waitpid(T.nt.pid, &status, WNOHANG) == T.nt.pid)
			break;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 17);
	T.nt.pid = 0;
	res = sql("SELECT count(*) FROM notifier.outbox "
	          "WHERE notification_id = $1::bigint",
	          id);
	assert_string_equal(PQgetvalue(res, 0, 0), "1");
	PQclear(res);
	res = sql("SELECT count(*) FROM notifier.inbox WHERE id = $1::bigint",
	          id);
	assert_string_equal(PQgetvalue(res, 0, 0), "0");
	PQclear(res);
	h_proc_free(&T.nt);
	notifier_start(NULL);
	wait_gateway_notifier();
	assert_true(wait_inbox(T.auth_alice, title, 1, 15000));
	res = sql("SELECT count(*) FROM notifier.outbox "
	          "WHERE notification_id = $1::bigint",
	          id);
	assert_string_equal(PQgetvalue(res, 0, 0), "0");
	PQclear(res);
	free(id);
}

struct sender {
	pthread_t t;
	char user[64];
	char title[64];
	int from, n;
	int accepted[64];
	atomic_int naccepted;
	atomic_bool *stop;
};

static void *
sender_main(void *arg)
{
	struct sender *s = arg;
	char body[1024], url[128];
	const char *hdrs[] = {"Content-Type: application/json", T.auth_admin,
	                      NULL};

	snprintf(url, sizeof(url), "%s/api/v1/notifications", T.gw_url);
	for (int i = 0; i < s->n && !atomic_load(s->stop); i++) {
		h_resp r;

		snprintf(body, sizeof(body),
		         "{\"user\":\"%s\",\"type\":\"t.kill\",\"title\":"
		         "\"%s-%03d\",\"channels\":[\"inapp\"]}",
		         s->user, s->title, s->from + i);
		h_http(&r, "POST", url, hdrs, body, strlen(body));
		if (r.status == 202)
			s->accepted[atomic_fetch_add(&s->naccepted, 1)] =
			    s->from + i;
		h_resp_free(&r);
	}
	return (NULL);
}

/*
 * kill -9 while senders are being answered: every Send answered 202 is
 * delivered after the restart (committed before the answer; the outbox
 * and the stream's pending entries survive the process).
 */
static void
test_kill9(void **state)
{
	struct sender s[4];
	atomic_bool stop = false;
	char user[64], auth[1024], title[64], want[96];
	int total = 0;
	h_resp r;

	(void) state;
	unique(user, sizeof(user), "kill");
	make_auth(auth, sizeof(auth), user, NULL);
	unique(title, sizeof(title), "k");
	for (int i = 0; i < 4; i++) {
		memset(&s[i], 0, sizeof(s[i]));
		snprintf(s[i].user, sizeof(s[i].user), "%s", user);
		snprintf(s[i].title, sizeof(s[i].title), "%s", title);
		s[i].from = i * 20;
		s[i].n = 20;
		s[i].stop = &stop;
		assert_int_equal(
		    pthread_create(&s[i].t, NULL, sender_main, &s[i]), 0);
	}
	/* Kill once some have been answered. */
	for (int64_t end = cm_mono_ms() + 10000; cm_mono_ms() < end;
	     h_msleep(5)) {
		int n = 0;

		for (int i = 0; i < 4; i++)
			n += atomic_load(&s[i].naccepted);
		if (n >= 20)
			break;
	}
	h_proc_kill(&T.nt);
	atomic_store(&stop, true);
	for (int i = 0; i < 4; i++) {
		pthread_join(s[i].t, NULL);
		total += atomic_load(&s[i].naccepted);
	}
	assert_true(total >= 20);
	h_proc_free(&T.nt);
	notifier_start(NULL);
	wait_gateway_notifier();
	/* Every accepted one arrives (some answered by a dying process may
	 * arrive too); messages the killed workers held are taken over after
	 * the visibility timeout. */
	for (int64_t end = cm_mono_ms() + 30000;; h_msleep(200)) {
		int missing = 0;

		api(&r, "GET", auth, NULL,
		    "/api/v1/me/notifications?limit=100");
		expect(&r, 200);
		for (int i = 0; i < 4; i++)
			for (int k = 0; k < atomic_load(&s[i].naccepted); k++) {
				snprintf(want, sizeof(want), "\"%s-%03d\"",
				         title, s[i].accepted[k]);
				if (strstr(r.body, want) == NULL) {
					if (cm_mono_ms() >= end)
						fprintf(stderr, "missing %s\n",
						        want);
					missing++;
				}
			}
		h_resp_free(&r);
		if (missing == 0)
			break;
		assert_true(cm_mono_ms() < end);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_send_to_inbox),
	    cmocka_unit_test(test_auth_errors),
	    cmocka_unit_test(test_idempotency),
	    cmocka_unit_test(test_preferences_off),
	    cmocka_unit_test(test_quiet_hours),
	    cmocka_unit_test(test_send_at),
	    cmocka_unit_test(test_paging),
	    cmocka_unit_test(test_read),
	    cmocka_unit_test(test_devices),
	    cmocka_unit_test(test_contact),
	    cmocka_unit_test(test_unsubscribe),
	    cmocka_unit_test(test_digest),
	    cmocka_unit_test(test_templates),
	    cmocka_unit_test(test_dead_letter_replay),
	    cmocka_unit_test(test_outbox_fault),
	    cmocka_unit_test(test_kill9),
	};

	return (cmocka_run_group_tests(tests, suite_setup, suite_teardown));
}
