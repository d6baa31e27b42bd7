/*
 * Stores that stop answering without closing: every process of the run's
 * PostgreSQL, then the private Redis, is stopped with SIGSTOP (their
 * sockets stay open, the kernel still accepts connections, nothing
 * answers), and the real binaries behind the gateway must answer every
 * request within its deadline, keep /healthz fast and say what is wrong,
 * and recover by themselves once the store is resumed with SIGCONT.
 *
 * Resuming is guaranteed: before stopping anything the test forks a guard
 * process (in a session of its own) that resumes the stopped tree when
 * the test says so or when the test process dies in any way, SIGKILL
 * included (it reads a pipe whose only writer is the test).  The tests'
 * teardowns and an atexit handler resume as well, and tests/run.sh
 * resumes the stores before every ctest run and before stopping them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "harness.h"

#define SECRET "stall-secret"
#define BASE   "http://short.test"
/* The gateway's upstream deadline here: what every request must beat. */
#define RPC_TIMEOUT_MS 1500
/* What a reply may take beyond the deadline: the gateway's own timer,
 * the loopback, curl. */
#define SLACK_MS 400
/* "Well under a second". */
#define HEALTHZ_MAX_MS 700
#define RECOVER_MS     5000
#define CONCURRENT     8

static struct {
	h_redis redis;
	h_proc shortener, ratelimiter, cache, gw;
	char sh_addr[64], rl_addr[64], cache_addr[64], gw_url[64];
	const char *sh_bin, *rl_bin, *cache_bin, *gw_bin;
	unsigned seq;
} T;

/* ---- stopping and resuming a process tree ---- */

/* Parent pid and state of pid from /proc/pid/stat; false if gone. */
static bool
proc_stat(pid_t pid, pid_t *ppid, char *state)
{
	char path[64], buf[1024], *p;
	FILE *f;
	size_t n;
	int pp;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
	if ((f = fopen(path, "r")) == NULL)
		return (false);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* "pid (comm) S ppid ...": comm may hold spaces and parentheses. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %c %d", state, &pp) != 2)
		return (false);
	*ppid = (pid_t) pp;
	return (true);
}

/* The children of parent, at most max of them, into out; their number. */
static size_t
proc_children(pid_t parent, pid_t *out, size_t max)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	size_t n = 0;
	pid_t ppid;
	char st;

	if (d == NULL)
		return (0);
	while ((e = readdir(d)) != NULL && n < max) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);

		if (*end != '\0' || pid <= 0)
			continue;
		if (proc_stat((pid_t) pid, &ppid, &st) && ppid == parent)
			out[n++] = (pid_t) pid;
	}
	closedir(d);
	return (n);
}

/*
 * Signals root, then each of its children.  Stopping goes root first, so
 * that a stopped postmaster cannot fork a backend we would miss; resuming
 * the same way is harmless.
 */
static size_t
signal_tree(pid_t root, int sig)
{
	pid_t kids[512];
	size_t n;

	kill(root, sig);
	n = proc_children(root, kids, CM_ARRAY_LEN(kids));
	for (size_t i = 0; i < n; i++)
		kill(kids[i], sig);
	return (n + 1);
}

/*
 * Waits (bounded) until root and all its children are stopped (state T),
 * or, with !stopped, until none of them is.
 */
static bool
tree_stopped(pid_t root, bool stopped, int timeout_ms)
{
	int64_t until = cm_mono_ms() + timeout_ms;
	pid_t kids[512], ppid;
	char st;

	for (;;) {
		size_t n = proc_children(root, kids, CM_ARRAY_LEN(kids));
		bool all =
		    proc_stat(root, &ppid, &st) && (st == 'T') == stopped;

		for (size_t i = 0; i < n && all; i++)
			all = !proc_stat(kids[i], &ppid, &st) ||
			      (st == 'T') == stopped;
		if (all)
			return (true);
		if (cm_mono_ms() > until)
			return (false);
		h_msleep(10);
	}
}

/* The guard: see the top of the file. */
static struct {
	pid_t root;  /* the stopped tree; 0: nothing stopped */
	pid_t child; /* the guard process */
	int wfd;     /* its pipe; closing it (or dying) resumes */
} G = {.wfd = -1};

static void
guard_start(pid_t root)
{
	int fds[2];
	pid_t pid;

	/* Close-on-exec: the binaries the harness execs must not hold it. */
	if (pipe2(fds, O_CLOEXEC) != 0)
		fail_msg("pipe2: %s", strerror(errno));
	if ((pid = fork()) < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		char c;

		(void) setsid(); /* outlives a kill of our process group */
		close(fds[1]);
		while (read(fds[0], &c, 1) < 0 && errno == EINTR)
			;
		signal_tree(root, SIGCONT);
		_exit(0);
	}
	close(fds[0]);
	G.root = root;
	G.child = pid;
	G.wfd = fds[1];
}

/* Resumes the stopped tree (if any) and ends the guard. */
static void
resume_all(void)
{
	if (G.root == 0)
		return;
	signal_tree(G.root, SIGCONT);
	close(G.wfd);
	waitpid(G.child, NULL, 0);
	G.root = 0;
	G.child = 0;
	G.wfd = -1;
}

static int
teardown_resume(void **state)
{
	(void) state;
	resume_all();
	return (0);
}

/* Stops root's tree with its guard in place; asserts it is stopped. */
static void
stop_tree(pid_t root, const char *what)
{
	size_t n;

	guard_start(root);
	/* Again until every process is stopped: a child forked just before
	 * its parent stopped is not in the first list. */
	for (int i = 0;; i++) {
		n = signal_tree(root, SIGSTOP);
		if (tree_stopped(root, true, 100))
			break;
		if (i == 40)
			fail_msg("%s (pid %d) did not stop", what, (int) root);
	}
	fprintf(stderr, "stopped %s: %zu processes\n", what, n);
}

/* The run's postmaster, from $TEST_PG_DATA/postmaster.pid. */
static pid_t
postmaster_pid(void)
{
	const char *data = getenv("TEST_PG_DATA");
	char path[512];
	FILE *f;
	int pid = 0;

	if (data == NULL)
		fail_msg("TEST_PG_DATA is not set: run tests/run.sh (the "
		         "test stops the PostgreSQL whose data directory it "
		         "names)");
	snprintf(path, sizeof(path), "%s/postmaster.pid", data);
	if ((f = fopen(path, "r")) == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	if (fscanf(f, "%d", &pid) != 1 || pid <= 0)
		pid = 0;
	fclose(f);
	assert_true(pid > 0);
	return ((pid_t) pid);
}

/* ---- HTTP ---- */

/* A name no earlier run can have used. */
static void
unique(char *out, size_t n, const char *prefix)
{
	snprintf(out, n, "%s%lx%x", prefix,
	         (unsigned long) time(NULL) & 0xfffff, T.seq++);
}

static void
create(h_resp *r, const char *long_url)
{
	char url[128], body[512];
	const char *hdrs[] = {"Content-Type: application/json", NULL};

	snprintf(url, sizeof(url), "%s/api/v1/urls", T.gw_url);
	snprintf(body, sizeof(body), "{\"long_url\":\"%s\"}", long_url);
	h_http(r, "POST", url, hdrs, body, strlen(body));
}

static char *
create_ok(const char *long_url)
{
	h_resp r;
	char *code;

	create(&r, long_url);
	if (r.status != 201)
		fprintf(stderr, "create: %ld %s\n", r.status, r.body);
	assert_int_equal(r.status, 201);
	code = h_json_str(&r, "code");
	assert_non_null(code);
	h_resp_free(&r);
	return (code);
}

static void
follow(h_resp *r, const char *code)
{
	char url[256];

	snprintf(url, sizeof(url), "%s/%s", T.gw_url, code);
	h_http(r, "GET", url, NULL, NULL, 0);
}

/* A request that met a stopped store: an error, within the deadline. */
static void
assert_bounded_error(long status, const char *body, double took,
                     const char *what)
{
	fprintf(stderr, "%s: %ld after %.0f ms\n", what, status, took);
	if (status != 503 && status != 504)
		fprintf(stderr, "  body: %s\n", body);
	assert_true(status == 503 || status == 504);
	assert_true(took < RPC_TIMEOUT_MS + SLACK_MS);
}

/* ... and that error is the shortener's UNAVAILABLE. */
static void
assert_shortener_unavailable(const h_resp *r, double took, const char *what)
{
	char *code = h_json_str(r, "error.code");

	assert_bounded_error(r->status, r->body, took, what);
	assert_int_equal(r->status, 503);
	assert_non_null(code);
	assert_string_equal(code, "UNAVAILABLE");
	free(code);
	assert_true(took < RPC_TIMEOUT_MS);
}

/* ---- /healthz ---- */

struct healthz {
	long status;
	double ms;
	json_t *root; /* the body; NULL if not JSON */
};

static void
healthz(struct healthz *h)
{
	char url[128];
	int64_t t0 = cm_mono_ms();
	h_resp r;

	snprintf(url, sizeof(url), "%s/healthz", T.gw_url);
	h_http(&r, "GET", url, NULL, NULL, 0);
	h->ms = (double) (cm_mono_ms() - t0);
	h->status = r.status;
	h->root = json_loadb(r.body, r.body_len, 0, NULL);
	h_resp_free(&r);
}

/* services.<svc>.status, or "" */
static const char *
hz_status(const struct healthz *h, const char *svc)
{
	json_t *s = json_object_get(json_object_get(h->root, "services"), svc);
	const char *v = json_string_value(json_object_get(s, "status"));

	return (v != NULL ? v : "");
}

/* services.<svc>.dependencies.<dep>.ok: 1, 0, or -1 when absent. */
static int
hz_dep_ok(const struct healthz *h, const char *svc, const char *dep)
{
	json_t *s = json_object_get(json_object_get(h->root, "services"), svc);
	json_t *d = json_object_get(json_object_get(s, "dependencies"), dep);
	json_t *ok = json_object_get(d, "ok");

	return (json_is_boolean(ok) ? json_is_true(ok) : -1);
}

static const char *
hz_dep_detail(const struct healthz *h, const char *svc, const char *dep)
{
	json_t *s = json_object_get(json_object_get(h->root, "services"), svc);
	json_t *d = json_object_get(json_object_get(s, "dependencies"), dep);
	const char *v = json_string_value(json_object_get(d, "detail"));

	return (v != NULL ? v : "");
}

/*
 * Asks /healthz until pred holds, for at most within_ms; every answer
 * must come in under HEALTHZ_MAX_MS.  Returns whether pred held; the
 * slowest answer goes to *slowest.
 */
static bool
healthz_until(bool (*pred)(const struct healthz *), int within_ms,
              double *slowest)
{
	int64_t until = cm_mono_ms() + within_ms;
	struct healthz h;
	bool ok;

	*slowest = 0;
	for (;;) {
		healthz(&h);
		if (h.ms > *slowest)
			*slowest = h.ms;
		if (h.ms >= HEALTHZ_MAX_MS) {
			char *s = h.root ? json_dumps(h.root, 0) : NULL;

			fprintf(stderr, "slow /healthz: %.0f ms: %s\n", h.ms,
			        s ? s : "");
			free(s);
			json_decref(h.root);
			fail_msg("/healthz took %.0f ms", h.ms);
		}
		ok = h.root != NULL && pred(&h);
		if (ok || cm_mono_ms() > until) {
			if (!ok) {
				char *s = h.root ? json_dumps(h.root, 0) : NULL;

				fprintf(stderr, "last /healthz: %ld %s\n",
				        h.status, s ? s : "");
				free(s);
			}
			json_decref(h.root);
			return (ok);
		}
		json_decref(h.root);
		h_msleep(50);
	}
}

static bool
pg_shown_down(const struct healthz *h)
{
	return (h->status == 503 &&
	        strcmp(hz_status(h, "shortener"), "NOT_SERVING") == 0 &&
	        hz_dep_ok(h, "shortener", "postgres") == 0);
}

static bool
all_up(const struct healthz *h)
{
	return (h->status == 200 &&
	        strcmp(hz_status(h, "shortener"), "SERVING") == 0 &&
	        hz_dep_ok(h, "shortener", "postgres") == 1 &&
	        hz_dep_ok(h, "shortener", "redis") == 1 &&
	        strcmp(hz_status(h, "ratelimiter"), "SERVING") == 0 &&
	        hz_dep_ok(h, "ratelimiter", "redis") == 1 &&
	        strcmp(hz_status(h, "cache"), "SERVING") == 0 &&
	        hz_dep_ok(h, "cache", "redis") == 1);
}

/*
 * Redis stopped: the shortener and the ratelimiter go on without it (they
 * stay SERVING and show the dependency failed), the cache service cannot
 * (NOT_SERVING, so /healthz is 503).
 */
static bool
redis_shown_down(const struct healthz *h)
{
	return (h->status == 503 &&
	        strcmp(hz_status(h, "shortener"), "SERVING") == 0 &&
	        hz_dep_ok(h, "shortener", "redis") == 0 &&
	        strcmp(hz_status(h, "ratelimiter"), "SERVING") == 0 &&
	        hz_dep_ok(h, "ratelimiter", "redis") == 0 &&
	        strcmp(hz_status(h, "cache"), "NOT_SERVING") == 0);
}

/* ---- concurrent requests ---- */

struct call {
	pthread_t thread;
	bool create; /* else a redirect of code */
	const char *code;
	long status;
	double ms;
};

static void *
call_main(void *arg)
{
	struct call *c = arg;
	int64_t t0 = cm_mono_ms();
	char long_url[128];
	h_resp r;

	if (c->create) {
		snprintf(long_url, sizeof(long_url), "https://e.com/stalled/%p",
		         (void *) c);
		create(&r, long_url);
	} else {
		follow(&r, c->code);
	}
	c->ms = (double) (cm_mono_ms() - t0);
	c->status = r.status;
	h_resp_free(&r);
	return (NULL);
}

/* ---- processes ---- */

static void
shortener_start(void)
{
	h_proc *p = &T.shortener;

	memset(p, 0, sizeof(*p));
	p->name = "shortener";
	p->bin = T.sh_bin;
	h_proc_env(p, "SHORTENER_LISTEN", "%s", T.sh_addr);
	h_proc_env(p, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(p, "DATABASE_URL", "%s", getenv("DATABASE_URL"));
	h_proc_env(p, "PUBLIC_BASE_URL", "%s", BASE);
	h_proc_env(p, "SHORTENER_WORKERS", "8");
	h_proc_start(p);
	assert_true(h_wait_healthy(T.sh_bin, T.sh_addr, 20000));
}

static int
suite_setup(void **state)
{
	const char *rules = getenv("SHIPPED_RULES");
	h_proc *p;

	(void) state;
	T.sh_bin = getenv("SHORTENER_BIN");
	T.rl_bin = getenv("RATELIMITER_BIN");
	T.cache_bin = getenv("CACHE_BIN");
	T.gw_bin = getenv("GATEWAY_BIN");
	if (getenv("DATABASE_URL") == NULL || getenv("TEST_PG_DATA") == NULL ||
	    T.sh_bin == NULL || T.rl_bin == NULL || T.cache_bin == NULL ||
	    T.gw_bin == NULL || rules == NULL) {
		fprintf(stderr, "this test needs DATABASE_URL, TEST_PG_DATA "
		                "and the binaries: run tests/run.sh\n");
		return (-1);
	}
	atexit(resume_all);
	curl_global_init(CURL_GLOBAL_ALL);
	h_redis_start(&T.redis);
	snprintf(T.sh_addr, sizeof(T.sh_addr), "tcp://127.0.0.1:%d",
	         h_free_port());
	snprintf(T.rl_addr, sizeof(T.rl_addr), "tcp://127.0.0.1:%d",
	         h_free_port());
	snprintf(T.cache_addr, sizeof(T.cache_addr), "tcp://127.0.0.1:%d",
	         h_free_port());
	snprintf(T.gw_url, sizeof(T.gw_url), "http://127.0.0.1:%d",
	         h_free_port());
	shortener_start();

	p = &T.ratelimiter;
	p->name = "ratelimiter";
	p->bin = T.rl_bin;
	h_proc_env(p, "RATELIMITER_LISTEN", "%s", T.rl_addr);
	h_proc_env(p, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(p, "RATELIMIT_RULES", "%s", rules);
	h_proc_env(p, "RATELIMITER_WORKERS", "4");
	h_proc_start(p);
	assert_true(h_wait_healthy(T.rl_bin, T.rl_addr, 20000));

	p = &T.cache;
	p->name = "cache";
	p->bin = T.cache_bin;
	h_proc_env(p, "CACHE_LISTEN", "%s", T.cache_addr);
	h_proc_env(p, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(p, "CACHE_L1_MB", "16");
	h_proc_start(p);
	assert_true(h_wait_healthy(T.cache_bin, T.cache_addr, 20000));

	p = &T.gw;
	p->name = "gateway";
	p->bin = T.gw_bin;
	h_proc_env(p, "GATEWAY_LISTEN", "%s", T.gw_url + strlen("http://"));
	h_proc_env(p, "GATEWAY_THREADS", "2");
	h_proc_env(p, "GATEWAY_RPC_TIMEOUT_MS", "%d", RPC_TIMEOUT_MS);
	h_proc_env(p, "SHORTENER_ADDR", "%s", T.sh_addr);
	h_proc_env(p, "RATELIMITER_ADDR", "%s", T.rl_addr);
	h_proc_env(p, "CACHE_ADDR", "%s", T.cache_addr);
	h_proc_env(p, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(p, "PUBLIC_BASE_URL", "%s", BASE);
	h_proc_env(p, "AUTH_JWT_SECRET", "%s", SECRET);
	/* The rate limit path has tests of its own (test_ratelimiter);
	 * here the ratelimiter is one more service whose health shows. */
	h_proc_env(p, "GATEWAY_RATELIMIT", "0");
	h_proc_start(p);
	assert_true(h_wait_healthy(T.gw_bin, T.gw_url, 20000));
	return (0);
}

static int
suite_teardown(void **state)
{
	(void) state;
	resume_all();
	h_proc_stop(&T.gw, 5000);
	h_proc_stop(&T.cache, 5000);
	h_proc_stop(&T.ratelimiter, 5000);
	h_proc_stop(&T.shortener, 5000);
	h_redis_stop(&T.redis);
	h_proc_free(&T.gw);
	h_proc_free(&T.cache);
	h_proc_free(&T.ratelimiter);
	h_proc_free(&T.shortener);
	curl_global_cleanup();
	return (0);
}

/* ---- the tests ---- */

/* The shortener's connections say whose they are (application_name). */
static void
test_application_name(void **state)
{
	PGconn *c = PQconnectdb(getenv("DATABASE_URL"));
	PGresult *res;
	long n;

	(void) state;
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	res = PQexec(c, "SELECT count(*) FROM pg_stat_activity "
	                "WHERE application_name = 'shortener'");
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	fprintf(stderr, "connections named shortener: %ld\n", n);
	/* The 8 workers and the batcher connect at start (maintenance and
	 * health checks on first use). */
	assert_true(n >= 9);
	PQclear(res);
	PQfinish(c);
}

/* Creates and redirects work again within RECOVER_MS; returns the ms. */
static double
wait_recovered(const char *what)
{
	int64_t t0 = cm_mono_ms(), until = t0 + RECOVER_MS;
	char long_url[128], *code, *loc;
	double slowest;
	h_resp r;

	unique(long_url, sizeof(long_url), "https://e.com/back/");
	for (;;) {
		create(&r, long_url);
		if (r.status == 201 || cm_mono_ms() > until)
			break;
		h_resp_free(&r);
		h_msleep(50);
	}
	if (r.status != 201)
		fprintf(stderr, "%s: create still %ld %s\n", what, r.status,
		        r.body);
	assert_int_equal(r.status, 201);
	code = h_json_str(&r, "code");
	h_resp_free(&r);
	assert_non_null(code);
	follow(&r, code);
	assert_int_equal(r.status, 302);
	loc = h_resp_header(&r, "Location");
	assert_string_equal(loc, long_url);
	free(loc);
	h_resp_free(&r);
	free(code);
	fprintf(stderr, "%s: create and redirect work %lld ms after resuming\n",
	        what, (long long) (cm_mono_ms() - t0));
	/* And every service says so. */
	assert_true(healthz_until(all_up, RECOVER_MS, &slowest));
	fprintf(stderr,
	        "%s: /healthz all up %lld ms after resuming "
	        "(slowest answer %.0f ms)\n",
	        what, (long long) (cm_mono_ms() - t0), slowest);
	return ((double) (cm_mono_ms() - t0));
}

/*
 * A lock wait is not a stalled server.  A create whose alias another
 * transaction has inserted but not committed waits on that transaction;
 * the connection's lock_timeout (1 s) ends the wait with an SQL error
 * before the deadline, so the create gets 503 UNAVAILABLE while its
 * connection stays and the breaker stays closed: the next create
 * succeeds at once and the shortener stays SERVING.
 */
static void
test_lock_wait_is_not_a_stall(void **state)
{
	PGconn *c = PQconnectdb(getenv("DATABASE_URL"));
	char alias[32], body[256], url[128];
	const char *hdrs[] = {"Content-Type: application/json", NULL};
	const char *params[1] = {alias};
	struct healthz hz;
	PGresult *res;
	int64_t t0;
	double took;
	char *code;
	h_resp r;

	(void) state;
	unique(alias, sizeof(alias), "held");
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	res = PQexec(c, "BEGIN");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	res =
	    PQexecParams(c,
	                 "INSERT INTO shortener.urls (code, id, long_url, "
	                 "created_at) VALUES ($1, 0, 'https://e.com/held', 0)",
	                 1, NULL, params, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);

	snprintf(url, sizeof(url), "%s/api/v1/urls", T.gw_url);
	snprintf(body, sizeof(body),
	         "{\"long_url\":\"https://e.com/waits\",\"custom_alias\":"
	         "\"%s\"}",
	         alias);
	t0 = cm_mono_ms();
	h_http(&r, "POST", url, hdrs, body, strlen(body));
	took = (double) (cm_mono_ms() - t0);
	assert_shortener_unavailable(&r, took, "create waiting on a lock");
	h_resp_free(&r);
	assert_true(took >= 900); /* it did wait for lock_timeout */

	/* Nothing tripped: the next create goes through at once. */
	t0 = cm_mono_ms();
	code = create_ok("https://e.com/after-lock");
	took = (double) (cm_mono_ms() - t0);
	fprintf(stderr, "next create: 201 after %.0f ms\n", took);
	assert_true(took < 500);
	free(code);
	healthz(&hz);
	assert_int_equal(hz.status, 200);
	assert_int_equal(hz_dep_ok(&hz, "shortener", "postgres"), 1);
	json_decref(hz.root);

	/* Once the holder gives up, the alias is free. */
	res = PQexec(c, "ROLLBACK");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	PQfinish(c);
	h_http(&r, "POST", url, hdrs, body, strlen(body));
	assert_int_equal(r.status, 201);
	h_resp_free(&r);
}

/*
 * Every PostgreSQL process stopped: creates (which wait for the insert
 * batcher) and redirects of a code no cache holds answer 503/504 within
 * the deadline, alone and many at once; /healthz stays fast and shows the
 * shortener NOT_SERVING with postgres failed; the shortener's own health
 * probe answers NOT_SERVING; after SIGCONT it all works again.
 */
static void
test_postgres_stopped(void **state)
{
	char *cold = create_ok("https://e.com/cold");
	char *warm = create_ok("https://e.com/warm");
	struct call calls[2 * CONCURRENT];
	double slowest, took;
	int64_t t0;
	h_resp r;
	int rv;

	(void) state;
	follow(&r, warm); /* cached from now on: served without postgres */
	assert_int_equal(r.status, 302);
	h_resp_free(&r);
	stop_tree(postmaster_pid(), "postgresql");

	/*
	 * One at a time, each meeting the stopped server itself (the pause
	 * outlasts the breaker's first backoff, 100 ms): the shortener
	 * answers UNAVAILABLE before the deadline, so the 503 is its own,
	 * not the gateway giving up on it (504).
	 */
	t0 = cm_mono_ms();
	create(&r, "https://e.com/during");
	assert_shortener_unavailable(&r, (double) (cm_mono_ms() - t0),
	                             "create");
	h_resp_free(&r);
	h_msleep(300);
	t0 = cm_mono_ms();
	follow(&r, cold);
	assert_shortener_unavailable(&r, (double) (cm_mono_ms() - t0),
	                             "redirect");
	h_resp_free(&r);

	/*
	 * Many at once, more than the shortener has workers, once the
	 * breaker has let its backoff (at most 2 s) pass: one of them probes
	 * the stopped server, the rest fail fast or wait for the probe's
	 * batch; each one is answered in time.  (A request that found every
	 * worker busy may get the gateway's 504.)
	 */
	h_msleep(2100);
	memset(calls, 0, sizeof(calls));
	for (int i = 0; i < 2 * CONCURRENT; i++) {
		calls[i].create = i % 2 == 0;
		calls[i].code = cold;
		assert_int_equal(pthread_create(&calls[i].thread, NULL,
		                                call_main, &calls[i]),
		                 0);
	}
	for (int i = 0; i < 2 * CONCURRENT; i++)
		pthread_join(calls[i].thread, NULL);
	for (int i = 0; i < 2 * CONCURRENT; i++) {
		char what[64];

		snprintf(what, sizeof(what), "concurrent %s %d",
		         calls[i].create ? "create" : "redirect", i);
		assert_bounded_error(calls[i].status, "", calls[i].ms, what);
	}

	/* A code in the gateway's cache is still served. */
	follow(&r, warm);
	assert_int_equal(r.status, 302);
	h_resp_free(&r);

	/* /healthz: fast every time, and shows what is wrong. */
	assert_true(healthz_until(pg_shown_down, 3000, &slowest));
	fprintf(stderr,
	        "/healthz shows postgres down; slowest answer %.0f "
	        "ms\n",
	        slowest);
	{
		struct healthz h;

		healthz(&h);
		fprintf(stderr, "postgres detail: \"%s\"\n",
		        hz_dep_detail(&h, "shortener", "postgres"));
		assert_true(h.ms < HEALTHZ_MAX_MS);
		json_decref(h.root);
	}
	/* The shortener's own probe: NOT_SERVING (4), fast. */
	t0 = cm_mono_ms();
	rv = h_health(T.sh_bin, T.sh_addr, 1000);
	took = (double) (cm_mono_ms() - t0);
	fprintf(stderr, "shortener health: %d after %.0f ms\n", rv, took);
	assert_int_equal(rv, 4);
	assert_true(took < 1000);

	resume_all();
	assert_true(tree_stopped(postmaster_pid(), false, 2000));
	took = wait_recovered("postgres");
	assert_true(took < RECOVER_MS);
	/* The link that could not be served is there. */
	follow(&r, cold);
	assert_int_equal(r.status, 302);
	h_resp_free(&r);
	free(cold);
	free(warm);
}

/*
 * Redis stopped: redirects of a code no cache holds and creates still
 * work, from PostgreSQL, in bounded time; /healthz stays fast and shows
 * Redis failed in every service (the cache service NOT_SERVING); after
 * SIGCONT everything is up again.
 */
static void
test_redis_stopped(void **state)
{
	char *cold = create_ok("https://e.com/r-cold");
	char *code, *loc;
	double slowest, took;
	int64_t t0;
	h_resp r;

	(void) state;
	stop_tree(T.redis.proc.pid, "redis");

	t0 = cm_mono_ms();
	follow(&r, cold);
	took = (double) (cm_mono_ms() - t0);
	fprintf(stderr, "redirect without redis: %ld after %.0f ms\n", r.status,
	        took);
	assert_int_equal(r.status, 302);
	loc = h_resp_header(&r, "Location");
	assert_string_equal(loc, "https://e.com/r-cold");
	free(loc);
	h_resp_free(&r);
	assert_true(took < RPC_TIMEOUT_MS);

	t0 = cm_mono_ms();
	code = create_ok("https://e.com/r-during");
	took = (double) (cm_mono_ms() - t0);
	fprintf(stderr, "create without redis: 201 after %.0f ms\n", took);
	assert_true(took < RPC_TIMEOUT_MS);
	t0 = cm_mono_ms();
	follow(&r, code);
	took = (double) (cm_mono_ms() - t0);
	assert_int_equal(r.status, 302);
	h_resp_free(&r);
	assert_true(took < RPC_TIMEOUT_MS);
	free(code);

	assert_true(healthz_until(redis_shown_down, 3000, &slowest));
	fprintf(stderr, "/healthz shows redis down; slowest answer %.0f ms\n",
	        slowest);

	resume_all();
	assert_true(tree_stopped(T.redis.proc.pid, false, 2000));
	took = wait_recovered("redis");
	assert_true(took < RECOVER_MS);
	free(cold);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_application_name),
	    cmocka_unit_test(test_lock_wait_is_not_a_stall),
	    cmocka_unit_test_teardown(test_postgres_stopped, teardown_resume),
	    cmocka_unit_test_teardown(test_redis_stopped, teardown_resume),
	};

	return (cmocka_run_group_tests(tests, suite_setup, suite_teardown));
}
