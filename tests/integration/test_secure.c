/*
 * The stack's security at start-up and between services, through the real
 * binaries:
 *   - the whole stack (shortener, ratelimiter, cache, notifier, gateway)
 *     over mutual TLS (tls+tcp://, certificates by deploy/certs.sh): a link
 *     is created and redirected, the limiter answers, the cache serves, a
 *     notification is accepted and reaches the inbox, every health probe
 *     passes over TLS;
 *   - whoever holds no certificate of the stack's CA, or expects another
 *     service, is served nothing;
 *   - outside development mode a missing, shipped or short secret stops a
 *     service at start-up, saying why; a good one (also from a *_FILE) runs.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

#define SECRET "secure-test-secret-0123456789abcdef"

static struct {
	h_redis redis;
	h_proc sh, rl, cache, nt, gw;
	const char *sh_bin, *rl_bin, *cache_bin, *nt_bin, *gw_bin, *src;
	char dir[64], tls[128], other[128];
	char sh_addr[48], rl_addr[48], cache_addr[48], nt_addr[48], gw_url[48];
	char auth_admin[1024];
} T;

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert_int_equal(system(cmd), 0);
}

static void
proc_init(h_proc *p, const char *name, const char *bin)
{
	memset(p, 0, sizeof(*p));
	p->name = name;
	p->bin = bin;
}

static void
http(h_resp *r, const char *method, const char *path, const char *auth,
     const char *body)
{
	const char *hdrs[3] = {auth, NULL, NULL};
	char url[1024];

	if (body != NULL)
		hdrs[auth != NULL ? 1 : 0] = "Content-Type: application/json";
	snprintf(url, sizeof(url), "%s%s", T.gw_url, path);
	h_http(r, method, url, hdrs, body, body != NULL ? strlen(body) : 0);
}

static int
suite_setup(void **state)
{
	char payload[256], *tok;
	int port;

	(void) state;
	T.sh_bin = getenv("SHORTENER_BIN");
	T.rl_bin = getenv("RATELIMITER_BIN");
	T.cache_bin = getenv("CACHE_BIN");
	T.nt_bin = getenv("NOTIFIER_BIN");
	T.gw_bin = getenv("GATEWAY_BIN");
	T.src = getenv("SOURCE_DIR");
	if (getenv("DATABASE_URL") == NULL || T.sh_bin == NULL ||
	    T.rl_bin == NULL || T.cache_bin == NULL || T.nt_bin == NULL ||
	    T.gw_bin == NULL || T.src == NULL) {
		fprintf(stderr, "run tests/run.sh: binaries, SOURCE_DIR and "
		                "DATABASE_URL are needed\n");
		return (-1);
	}
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_ALL);
	h_redis_start(&T.redis);
	snprintf(T.dir, sizeof(T.dir), "/tmp/test-secure.XXXXXX");
	if (mkdtemp(T.dir) == NULL)
		return (-1);
	snprintf(T.tls, sizeof(T.tls), "%s/tls", T.dir);
	snprintf(T.other, sizeof(T.other), "%s/other", T.dir);
	sh("%s/deploy/certs.sh %s gateway shortener ratelimiter cache notifier",
	   T.src, T.tls);
	sh("%s/deploy/certs.sh %s gateway shortener ratelimiter cache notifier",
	   T.src, T.other);
	/* Every process here, the probes included, has the stack's. */
	setenv("RPC_TLS_DIR", T.tls, 1);

	port = h_free_port();
	snprintf(T.sh_addr, sizeof(T.sh_addr), "tls+tcp://127.0.0.1:%d", port);
	proc_init(&T.sh, "secure-shortener", T.sh_bin);
	h_proc_env(&T.sh, "SHORTENER_LISTEN", "%s", T.sh_addr);
	h_proc_env(&T.sh, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(&T.sh, "SHORTENER_WORKERS", "4");
	h_proc_start(&T.sh);

	port = h_free_port();
	snprintf(T.rl_addr, sizeof(T.rl_addr), "tls+tcp://127.0.0.1:%d", port);
	proc_init(&T.rl, "secure-ratelimiter", T.rl_bin);
	h_proc_env(&T.rl, "RATELIMITER_LISTEN", "%s", T.rl_addr);
	h_proc_env(&T.rl, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(&T.rl, "RATELIMIT_RULES", "%s/deploy/ratelimit-rules.yaml",
	           T.src);
	h_proc_start(&T.rl);

	port = h_free_port();
	snprintf(T.cache_addr, sizeof(T.cache_addr), "tls+tcp://127.0.0.1:%d",
	         port);
	proc_init(&T.cache, "secure-cache", T.cache_bin);
	h_proc_env(&T.cache, "CACHE_LISTEN", "%s", T.cache_addr);
	h_proc_env(&T.cache, "REDIS_URL", "%s", T.redis.url);
	h_proc_start(&T.cache);

	port = h_free_port();
	snprintf(T.nt_addr, sizeof(T.nt_addr), "tls+tcp://127.0.0.1:%d", port);
	proc_init(&T.nt, "secure-notifier", T.nt_bin);
	h_proc_env(&T.nt, "NOTIFIER_LISTEN", "%s", T.nt_addr);
	h_proc_env(&T.nt, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(&T.nt, "NOTIFIER_WORKERS", "4");
	h_proc_env(&T.nt, "NOTIFIER_DELIVERY_WORKERS", "2");
	h_proc_start(&T.nt);

	assert_true(h_wait_healthy(T.sh_bin, T.sh_addr, 20000));
	assert_true(h_wait_healthy(T.rl_bin, T.rl_addr, 20000));
	assert_true(h_wait_healthy(T.cache_bin, T.cache_addr, 20000));
	assert_true(h_wait_healthy(T.nt_bin, T.nt_addr, 20000));

	port = h_free_port();
	snprintf(T.gw_url, sizeof(T.gw_url), "http://127.0.0.1:%d", port);
	proc_init(&T.gw, "secure-gateway", T.gw_bin);
	h_proc_env(&T.gw, "GATEWAY_LISTEN", "127.0.0.1:%d", port);
	h_proc_env(&T.gw, "GATEWAY_THREADS", "1");
	h_proc_env(&T.gw, "SHORTENER_ADDR", "%s", T.sh_addr);
	h_proc_env(&T.gw, "RATELIMITER_ADDR", "%s", T.rl_addr);
	h_proc_env(&T.gw, "CACHE_ADDR", "%s", T.cache_addr);
	h_proc_env(&T.gw, "NOTIFIER_ADDR", "%s", T.nt_addr);
	h_proc_env(&T.gw, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(&T.gw, "AUTH_JWT_SECRET", "%s", SECRET);
	h_proc_env(&T.gw, "BACKENDS_DEV_MODE", "0");
	h_proc_env(&T.gw, "GATEWAY_ACCESS_LOG", "0");
	h_proc_start(&T.gw);
	assert_true(h_wait_healthy(T.gw_bin, T.gw_url, 20000));

	snprintf(payload, sizeof(payload),
	         "{\"sub\":\"ops\",\"role\":\"admin\",\"exp\":%ld}",
	         (long) time(NULL) + 3600);
	tok = h_jwt(SECRET, "HS256", payload);
	snprintf(T.auth_admin, sizeof(T.auth_admin), "Authorization: Bearer %s",
	         tok);
	free(tok);
	return (0);
}

static int
suite_teardown(void **state)
{
	char cmd[256];

	(void) state;
	h_proc_stop(&T.gw, 5000);
	h_proc_stop(&T.cache, 5000);
	h_proc_stop(&T.nt, 10000);
	h_proc_stop(&T.rl, 5000);
	h_proc_stop(&T.sh, 5000);
	h_proc_free(&T.gw);
	h_proc_free(&T.cache);
	h_proc_free(&T.nt);
	h_proc_free(&T.rl);
	h_proc_free(&T.sh);
	h_redis_stop(&T.redis);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", T.dir);
	curl_global_cleanup();
	return (system(cmd) == 0 ? 0 : -1);
}

/* Every call the gateway makes goes over mutual TLS, and works. */
static void
test_stack_over_tls(void **state)
{
	h_resp r;
	char path[256], *code, *loc, *limit;

	(void) state;
	/* The gateway dials its upstreams when it starts and is healthy
	 * (200) once those it needs answer; a TLS handshake with one it can
	 * do without (the notifier, the cache) may still be under way on a
	 * loaded machine or under ASan.  Every one connects within 10 s. */
	for (int64_t end = cm_mono_ms() + 10000;; h_msleep(100)) {
		http(&r, "GET", "/healthz", NULL, NULL);
		assert_int_equal(r.status, 200);
		if (strstr(r.body, "UNREACHABLE") == NULL)
			break;
		if (cm_mono_ms() >= end)
			fail_msg("an upstream stays unreachable: %s", r.body);
		h_resp_free(&r);
	}
	h_resp_free(&r);

	/* Anonymous create: a rule of the shipped file applies, so the
	 * ratelimiter is asked (its headers come back). */
	http(&r, "POST", "/api/v1/urls", NULL,
	     "{\"long_url\":\"https://example.com/over-tls\"}");
	if (r.status != 201)
		fprintf(stderr, "create: %ld %s\n", r.status, r.body);
	assert_int_equal(r.status, 201);
	limit = h_resp_header(&r, "ratelimit-policy");
	assert_non_null(limit);
	free(limit);
	code = h_json_str(&r, "code");
	assert_non_null(code);
	h_resp_free(&r);
	snprintf(path, sizeof(path), "/%s", code);
	http(&r, "GET", path, NULL, NULL);
	assert_int_equal(r.status, 302);
	loc = h_resp_header(&r, "location");
	assert_non_null(loc);
	assert_string_equal(loc, "https://example.com/over-tls");
	free(loc);
	h_resp_free(&r);
	free(code);

	/* The cache service, as an operator uses it. */
	http(&r, "PUT", "/api/v1/cache/ops/tls-key?ttl=60", T.auth_admin,
	     "hello");
	assert_int_equal(r.status, 204);
	h_resp_free(&r);
	http(&r, "GET", "/api/v1/cache/ops/tls-key", T.auth_admin, NULL);
	assert_int_equal(r.status, 200);
	h_resp_free(&r);
	http(&r, "GET", "/api/v1/cache/stats", T.auth_admin, NULL);
	assert_int_equal(r.status, 200);
	h_resp_free(&r);

	/* The notifier: an operator's Send, delivered to the inbox. */
	http(&r, "POST", "/api/v1/notifications", T.auth_admin,
	     "{\"user\":\"ops\",\"type\":\"tls.test\",\"title\":"
	     "\"over tls\",\"channels\":[\"inapp\"]}");
	if (r.status != 202)
		fprintf(stderr, "send: %ld %s\n", r.status, r.body);
	assert_int_equal(r.status, 202);
	h_resp_free(&r);
	for (int i = 0;; i++) {
		bool found;

		http(&r, "GET", "/api/v1/me/notifications", T.auth_admin, NULL);
		assert_int_equal(r.status, 200);
		found = strstr(r.body, "over tls") != NULL;
		h_resp_free(&r);
		if (found)
			break;
		assert_true(i < 100);
		h_msleep(100);
	}

	/* The probes, as compose's healthchecks run them. */
	assert_int_equal(h_health(T.sh_bin, T.sh_addr, 5000), 0);
	assert_int_equal(h_health(T.rl_bin, T.rl_addr, 5000), 0);
	assert_int_equal(h_health(T.cache_bin, T.cache_addr, 5000), 0);
	assert_int_equal(h_health(T.nt_bin, T.nt_addr, 5000), 0);
}

/* Nothing is served to a client without the stack's certificate, or to
 * one that expects another service. */
static void
test_tls_refusals(void **state)
{
	char plain[128];

	(void) state;
	/* No certificates: the probe cannot even open a TLS client. */
	unsetenv("RPC_TLS_DIR");
	assert_int_equal(h_health(T.sh_bin, T.sh_addr, 1000), 1);
	/* Plain TCP to a TLS port: no connection. */
	snprintf(plain, sizeof(plain), "tcp://%.40s",
	         T.sh_addr + strlen("tls+tcp://"));
	assert_int_equal(h_health(T.sh_bin, plain, 1000), 2);
	/* Another CA's certificates. */
	setenv("RPC_TLS_DIR", T.other, 1);
	assert_int_equal(h_health(T.sh_bin, T.sh_addr, 1000), 2);
	/* The right CA, but the cache's probe expects the cache and finds
	 * the shortener. */
	setenv("RPC_TLS_DIR", T.tls, 1);
	assert_int_equal(h_health(T.cache_bin, T.sh_addr, 1000), 2);
	assert_int_equal(h_health(T.sh_bin, T.sh_addr, 5000), 0);
}

/* Starts p and expects it to exit non-zero within 5 s, its log naming
 * var; or (expect_run) to be healthy at addr. */
static void
start_expect(h_proc *p, bool expect_run, const char *addr, const char *var)
{
	int status = -1;
	char cmd[512];

	h_proc_env(p, "BACKENDS_DEV_MODE", "0");
	h_proc_start(p);
	if (expect_run) {
		assert_true(h_wait_healthy(p->bin, addr, 20000));
		assert_int_equal(h_proc_stop(p, 5000), 0);
		h_proc_free(p);
		return;
	}
	for (int i = 0; i < 100; i++) {
		if (waitpid(p->pid, &status, WNOHANG) == p->pid)
			break;
		h_msleep(50);
	}
	if (!(WIFEXITED(status) && WEXITSTATUS(status) != 0)) {
		h_proc_kill(p);
		fail_msg("%s ran without a usable %s", p->name, var);
	}
	p->pid = 0;
	snprintf(cmd, sizeof(cmd), "grep -q 'var=%s.*at least 32 bytes' %s",
	         var, p->log);
	if (system(cmd) != 0)
		fail_msg("%s: no clear refusal in %s", p->name, p->log);
	h_proc_free(p);
}

static void
test_secrets_refused(void **state)
{
	static const char *const weak[] = {
	    "",                                /* unset */
	    "dev-secret-change-me",            /* the gateway's old default */
	    "local-dev-secret-change-me",      /* compose's old default */
	    "0123456789abcdef0123456789abcde", /* 31 bytes */
	};
	h_proc p;
	char name[64], file[256], addr[64];
	int port;
	FILE *f;

	(void) state;
	for (size_t i = 0; i < sizeof(weak) / sizeof(weak[0]); i++) {
		snprintf(name, sizeof(name), "gw-weak-%zu", i);
		proc_init(&p, name, T.gw_bin);
		h_proc_env(&p, "GATEWAY_LISTEN", "127.0.0.1:%d", h_free_port());
		h_proc_env(&p, "AUTH_JWT_SECRET", "%s", weak[i]);
		start_expect(&p, false, NULL, "AUTH_JWT_SECRET");

		snprintf(name, sizeof(name), "sh-weak-%zu", i);
		proc_init(&p, name, T.sh_bin);
		h_proc_env(&p, "SHORTENER_LISTEN", "tcp://127.0.0.1:%d",
		           h_free_port());
		h_proc_env(&p, "REDIS_URL", "%s", T.redis.url);
		h_proc_env(&p, "SHORTENER_ID_KEY", "%s", weak[i]);
		start_expect(&p, false, NULL, "SHORTENER_ID_KEY");

		snprintf(name, sizeof(name), "nt-weak-%zu", i);
		proc_init(&p, name, T.nt_bin);
		h_proc_env(&p, "NOTIFIER_LISTEN", "tcp://127.0.0.1:%d",
		           h_free_port());
		h_proc_env(&p, "REDIS_URL", "%s", T.redis.url);
		h_proc_env(&p, "NOTIFIER_UNSUBSCRIBE_KEY", "%s", weak[i]);
		start_expect(&p, false, NULL, "NOTIFIER_UNSUBSCRIBE_KEY");
	}

	/* Good secrets, one from a file (as compose passes them). */
	snprintf(file, sizeof(file), "%s/jwt_secret", T.dir);
	assert_non_null(f = fopen(file, "w"));
	fprintf(f, "%s\n", SECRET);
	fclose(f);
	port = h_free_port();
	snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", port);
	proc_init(&p, "gw-good", T.gw_bin);
	h_proc_env(&p, "GATEWAY_LISTEN", "127.0.0.1:%d", port);
	h_proc_env(&p, "AUTH_JWT_SECRET", "%s", "");
	h_proc_env(&p, "AUTH_JWT_SECRET_FILE", "%s", file);
	h_proc_env(&p, "SHORTENER_ADDR", "%s", T.sh_addr);
	start_expect(&p, true, addr, NULL);

	port = h_free_port();
	snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", port);
	proc_init(&p, "sh-good", T.sh_bin);
	h_proc_env(&p, "SHORTENER_LISTEN", "%s", addr);
	h_proc_env(&p, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(&p, "SHORTENER_ID_KEY", "%s", SECRET);
	start_expect(&p, true, addr, NULL);

	port = h_free_port();
	snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", port);
	proc_init(&p, "nt-good", T.nt_bin);
	h_proc_env(&p, "NOTIFIER_LISTEN", "%s", addr);
	h_proc_env(&p, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(&p, "NOTIFIER_UNSUBSCRIBE_KEY", "%s", SECRET);
	start_expect(&p, true, addr, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stack_over_tls),
	    cmocka_unit_test(test_tls_refusals),
	    cmocka_unit_test(test_secrets_refused),
	};

	return (cmocka_run_group_tests(tests, suite_setup, suite_teardown));
}
