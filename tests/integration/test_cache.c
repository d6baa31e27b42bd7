/*
 * Integration tests of the cache: a private Redis from the harness.
 *
 * Engine tests drive common/cache.c directly: two engine instances in this
 * one process (each with its own L1, Redis connections and invalidation
 * subscriber, exactly as two services would have), so that a test loader
 * can block and count.  Service tests run two real `cache` binaries and
 * speak RPC to each; the HTTP tests go through a real gateway.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>

#include "cache.h"
#include "cache.pb-c.h"
#include "harness.h"
#include "rpc/rpc.h"
#include "status.h"
#include "util.h"

#define SECRET "cache-test-secret"

static struct {
	h_redis redis;
	cm_cache *a, *b;
	const char *cache_bin, *gw_bin;
	h_proc c1, c2, gw;
	int c1_port, c2_port, gw_port;
	char c1_addr[64], c2_addr[64], gw_url[64];
	char auth_admin[600], auth_user[600];
	cm_rpc_client *r1, *r2;
	unsigned seq;
} T;

static void
key_name(char *out, size_t n, const char *p)
{
	snprintf(out, n, "%s-%d-%u", p, (int) getpid(), T.seq++);
}

static cm_cache *
engine_new(void)
{
	cm_cache_config cc;
	cm_cache *c;

	memset(&cc, 0, sizeof(cc));
	cc.redis_url = T.redis.url;
	cc.prefix = "etest";
	cc.l1_bytes = 8 << 20;
	cc.lease_ms = 3000;
	cc.lease_wait_ms = 3000;
	/* A loaded CI machine (and ASan) can stall a command past the
	 * default 200 ms; a timed-out lease attempt would load twice. */
	cc.redis_timeout_ms = 2000;
	assert_int_equal(cm_cache_new(&c, &cc), CM_OK);
	for (int i = 0; i < 200 && !cm_cache_subscribed(c); i++)
		h_msleep(10);
	assert_true(cm_cache_subscribed(c));
	return (c);
}

/*
 * Engines on a clock of the test's: the real one plus clock_skew, so that
 * a test can move past a value's expiry while L1 (whose clock is the
 * monotonic one) and Redis (which keeps a stale tail) still hold it.  No
 * subscriber: L1 is trusted and nothing else writes their prefix.
 */
static _Atomic int64_t clock_skew;

static int64_t
skewed_now(void *arg)
{
	(void) arg;
	return (cm_now_ms() + atomic_load(&clock_skew));
}

static cm_cache *
engine_clocked(size_t l1_bytes)
{
	cm_cache_config cc;
	cm_cache *c;

	memset(&cc, 0, sizeof(cc));
	cc.redis_url = T.redis.url;
	cc.prefix = "ctest";
	cc.l1_bytes = l1_bytes;
	cc.redis_timeout_ms = 2000;
	cc.no_subscribe = true;
	cc.now_ms = skewed_now;
	assert_int_equal(cm_cache_new(&c, &cc), CM_OK);
	return (c);
}

/* ---- the test loader ---- */

struct loader {
	atomic_int calls;
	int sleep_ms;
	int result; /* CM_OK, CM_NOT_FOUND, or an error */
	int64_t ttl_ms;
};

static int
test_load(void *arg, const char *ns, const void *key, size_t klen,
          cm_cache_value *out)
{
	struct loader *l = arg;

	(void) ns;
	atomic_fetch_add(&l->calls, 1);
	if (l->sleep_ms > 0)
		h_msleep(l->sleep_ms);
	if (l->result != CM_OK)
		return (l->result);
	out->data = malloc(klen + 3);
	memcpy(out->data, "v:", 2);
	memcpy((char *) out->data + 2, key, klen);
	out->len = klen + 2;
	out->ttl_ms = l->ttl_ms;
	return (CM_OK);
}

/* ---- engine ---- */

struct stampede {
	cm_cache *c;
	const char *key;
	struct loader *l;
	int rv;
	char val[64];
};

static void *
stampede_thread(void *arg)
{
	struct stampede *s = arg;
	cm_cache_value v = {0};

	s->rv = cm_cache_get_or_load(s->c, "stampede", s->key, strlen(s->key),
	                             test_load, s->l, &v, NULL);
	if (s->rv == CM_OK)
		snprintf(s->val, sizeof(s->val), "%.*s", (int) v.len,
		         (char *) v.data);
	free(v.data);
	return (NULL);
}

/* 100 concurrent misses over two instances: one load while the lease holds.
 */
static void
test_engine_stampede(void **state)
{
	struct loader l = {.sleep_ms = 300, .result = CM_OK, .ttl_ms = 60000};
	struct stampede s[100];
	pthread_t th[100];
	char key[64], want[80];

	(void) state;
	key_name(key, sizeof(key), "hot");
	for (int i = 0; i < 100; i++) {
		s[i] = (struct stampede){
		    .c = i % 2 ? T.a : T.b, .key = key, .l = &l};
		assert_int_equal(
		    pthread_create(&th[i], NULL, stampede_thread, &s[i]), 0);
	}
	for (int i = 0; i < 100; i++)
		pthread_join(th[i], NULL);
	snprintf(want, sizeof(want), "v:%s", key);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(s[i].rv, CM_OK);
		assert_string_equal(s[i].val, want);
	}
	assert_int_equal(atomic_load(&l.calls), 1);
}

/* Single flight alone: a blocking loader, callers of one instance wait. */
static void
test_engine_single_flight(void **state)
{
	struct loader l = {.sleep_ms = 200, .result = CM_OK};
	struct stampede s[8];
	pthread_t th[8];
	cm_cache_stats st;
	char key[64];

	(void) state;
	key_name(key, sizeof(key), "sf");
	for (int i = 0; i < 8; i++) {
		s[i] = (struct stampede){.c = T.a, .key = key, .l = &l};
		pthread_create(&th[i], NULL, stampede_thread, &s[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(s[i].rv, CM_OK);
	}
	assert_int_equal(atomic_load(&l.calls), 1);
	cm_cache_get_stats(T.a, &st);
	assert_true(st.flight_joins > 0);
}

static bool
wait_l1_gone(cm_cache *c, const char *ns, const char *key, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (!cm_cache_l1_has(c, ns, key, strlen(key)))
			return (true);
		h_msleep(10);
	}
	return (false);
}

/*
 * Reads key through c until it sits in c's L1.  A write on the other
 * instance broadcasts an invalidation that may land after our read and
 * (rightly) drop the fill, so this retries for up to a second.
 */
static void
fill_l1(cm_cache *c, const char *ns, const char *key)
{
	for (int i = 0; i < 100; i++) {
		cm_cache_value v = {0};
		assert_int_equal(cm_cache_get_or_load(c, ns, key, strlen(key),
		                                      NULL, NULL, &v, NULL),
		                 CM_OK);
		free(v.data);
		if (cm_cache_l1_has(c, ns, key, strlen(key)))
			return;
		h_msleep(10);
	}
	fail_msg("%s never reached L1", key);
}

/* Set/delete on A reaches B's L1 within a second; tags; versions. */
static void
test_engine_invalidation(void **state)
{
	const char *t1[] = {"t1"};
	cm_cache_value v = {0};
	char k1[64], k2[64], k3[64];
	size_t n = 0;
	uint64_t ver = 0;

	(void) state;
	key_name(k1, sizeof(k1), "k1");
	key_name(k2, sizeof(k2), "k2");
	key_name(k3, sizeof(k3), "k3");
	assert_int_equal(cm_cache_set(T.a, "inv", k1, strlen(k1), "one", 3,
	                              NULL, 60000, t1, 1),
	                 CM_OK);
	assert_int_equal(cm_cache_set(T.a, "inv", k2, strlen(k2), "two", 3,
	                              NULL, 60000, NULL, 0),
	                 CM_OK);
	assert_int_equal(cm_cache_set(T.a, "inv", k3, strlen(k3), "three", 5,
	                              NULL, 60000, NULL, 0),
	                 CM_OK);
	fill_l1(T.b, "inv", k1);
	fill_l1(T.b, "inv", k2);
	fill_l1(T.b, "inv", k3);
	/* by key */
	assert_int_equal(cm_cache_delete(T.a, "inv", k2, strlen(k2), 0), CM_OK);
	assert_true(wait_l1_gone(T.b, "inv", k2, 1000));
	/* by tag */
	assert_int_equal(cm_cache_invalidate_tags(T.a, "inv", t1, 1, &n),
	                 CM_OK);
	assert_int_equal(n, 1);
	assert_true(wait_l1_gone(T.b, "inv", k1, 1000));
	assert_true(cm_cache_l1_has(T.b, "inv", k3, strlen(k3)));
	assert_int_equal(cm_cache_get_or_load(T.b, "inv", k1, strlen(k1), NULL,
	                                      NULL, &v, NULL),
	                 CM_NOT_FOUND);
	/* by version */
	assert_int_equal(cm_cache_bump_version(T.a, "inv", &ver), CM_OK);
	assert_true(ver >= 1);
	assert_true(wait_l1_gone(T.b, "inv", k3, 1000));
	assert_int_equal(cm_cache_get_or_load(T.b, "inv", k3, strlen(k3), NULL,
	                                      NULL, &v, NULL),
	                 CM_NOT_FOUND);
}

/* The loader fails after expiry: the stale value is served. */
static void
test_engine_stale_if_error(void **state)
{
	struct loader l = {.result = CM_OK, .ttl_ms = 150};
	cm_cache_value v = {0};
	char key[64];
	int level;

	(void) state;
	key_name(key, sizeof(key), "stale");
	assert_int_equal(cm_cache_get_or_load(T.a, "st", key, strlen(key),
	                                      test_load, &l, &v, &level),
	                 CM_OK);
	assert_int_equal(level, CM_CACHE_LOADER);
	free(v.data);
	h_msleep(300);
	l.result = CM_UNAVAILABLE;
	memset(&v, 0, sizeof(v));
	assert_int_equal(cm_cache_get_or_load(T.b, "st", key, strlen(key),
	                                      test_load, &l, &v, &level),
	                 CM_OK);
	assert_int_equal(level, CM_CACHE_STALE);
	assert_int_equal(v.len, strlen(key) + 2);
	free(v.data);
	assert_int_equal(atomic_load(&l.calls), 2);
}

/* Reads key without a loader: the return code, and level and value. */
static int
get_plain(cm_cache *c, const char *ns, const char *key, int *level, char *val,
          size_t vlen)
{
	cm_cache_value v = {0};
	int rv;

	*level = CM_CACHE_NONE;
	rv = cm_cache_get_or_load(c, ns, key, strlen(key), NULL, NULL, &v,
	                          level);
	if (val != NULL && vlen > 0)
		snprintf(val, vlen, "%.*s", rv == CM_OK ? (int) v.len : 0,
		         rv == CM_OK ? (char *) v.data : "");
	free(v.data);
	return (rv);
}

/*
 * An L1 hit never outlives the value's TTL, though the L1 entry does:
 * served just before it, "not found" from the millisecond it passes,
 * without a loader; with one, a failed load still serves the stale copy
 * and a good one replaces it.  The TTL a Set names is kept exactly (no
 * jitter takes from it).
 */
static void
test_engine_expiry_l1(void **state)
{
	struct loader bad = {.result = CM_UNAVAILABLE};
	struct loader good = {.result = CM_OK, .ttl_ms = 60000};
	cm_cache *f = engine_clocked(1 << 20);
	cm_cache_value v = {0};
	cm_cache_ticket t;
	char key[64], val[64];
	int level;

	(void) state;
	atomic_store(&clock_skew, 0);
	key_name(key, sizeof(key), "exp-l1");
	assert_int_equal(cm_cache_set(f, "exp", key, strlen(key), "val", 3,
	                              NULL, 60000, NULL, 0),
	                 CM_OK);
	assert_int_equal(get_plain(f, "exp", key, &level, val, sizeof(val)),
	                 CM_OK);
	assert_int_equal(level, CM_CACHE_L1);
	assert_string_equal(val, "val");
	atomic_store(&clock_skew, 60000 - 200);
	assert_int_equal(get_plain(f, "exp", key, &level, NULL, 0), CM_OK);
	assert_int_equal(level, CM_CACHE_L1);
	/* Its TTL is over: L1 (60 s of real time left) must not answer. */
	atomic_store(&clock_skew, 60000);
	assert_int_equal(get_plain(f, "exp", key, &level, NULL, 0),
	                 CM_NOT_FOUND);
	assert_int_equal(cm_cache_l1_lookup(f, "exp", key, strlen(key), &v, &t),
	                 CM_UNAVAILABLE);
	assert_null(v.data);
	assert_true(t.valid);
	assert_false(cm_cache_l1_has(f, "exp", key, strlen(key)));
	/* Stale-if-error is for a read with a loader, and only when it fails.
	 */
	assert_int_equal(cm_cache_get_or_load(f, "exp", key, strlen(key),
	                                      test_load, &bad, &v, &level),
	                 CM_OK);
	assert_int_equal(level, CM_CACHE_STALE);
	assert_memory_equal(v.data, "val", 3);
	free(v.data);
	assert_int_equal(atomic_load(&bad.calls), 1);
	assert_int_equal(get_plain(f, "exp", key, &level, NULL, 0),
	                 CM_NOT_FOUND);
	memset(&v, 0, sizeof(v));
	assert_int_equal(cm_cache_get_or_load(f, "exp", key, strlen(key),
	                                      test_load, &good, &v, &level),
	                 CM_OK);
	assert_int_equal(level, CM_CACHE_LOADER);
	assert_int_equal(v.len, strlen(key) + 2);
	free(v.data);
	assert_int_equal(get_plain(f, "exp", key, &level, NULL, 0), CM_OK);
	assert_int_equal(level, CM_CACHE_L1);
	atomic_store(&clock_skew, 0);
	cm_cache_free(f);
}

/*
 * The same through L2 (an engine without L1): Redis keeps the value
 * stale_ms past its TTL, and only a read with a failing loader gets it.
 */
static void
test_engine_expiry_l2(void **state)
{
	struct loader bad = {.result = CM_UNAVAILABLE};
	cm_cache *g = engine_clocked(0);
	cm_cache_value v = {0};
	cm_cache_stats st;
	char key[64], val[64];
	int level;

	(void) state;
	atomic_store(&clock_skew, 0);
	key_name(key, sizeof(key), "exp-l2");
	assert_int_equal(cm_cache_set(g, "exp", key, strlen(key), "val", 3,
	                              NULL, 1000, NULL, 0),
	                 CM_OK);
	assert_int_equal(get_plain(g, "exp", key, &level, val, sizeof(val)),
	                 CM_OK);
	assert_int_equal(level, CM_CACHE_L2);
	assert_string_equal(val, "val");
	atomic_store(&clock_skew, 1000 - 200);
	assert_int_equal(get_plain(g, "exp", key, &level, NULL, 0), CM_OK);
	assert_int_equal(level, CM_CACHE_L2);
	atomic_store(&clock_skew, 1000);
	assert_int_equal(get_plain(g, "exp", key, &level, NULL, 0),
	                 CM_NOT_FOUND);
	/* Still in Redis (the stale tail), as a warm finds: no. */
	assert_int_equal(cm_cache_warm(g, "exp", key, strlen(key)),
	                 CM_NOT_FOUND);
	assert_int_equal(cm_cache_get_or_load(g, "exp", key, strlen(key),
	                                      test_load, &bad, &v, &level),
	                 CM_OK);
	assert_int_equal(level, CM_CACHE_STALE);
	assert_int_equal(v.len, 3);
	assert_memory_equal(v.data, "val", 3);
	free(v.data);
	cm_cache_get_stats(g, &st);
	assert_int_equal(st.stale_served, 1);
	atomic_store(&clock_skew, 0);
	cm_cache_free(g);
}

/*
 * Metadata is kept with a value through L1 and L2 and the event-loop
 * lookup; a value without it reads with meta NULL; too long is refused.
 */
static void
test_engine_meta(void **state)
{
	cm_cache_value v = {0};
	cm_cache_ticket t;
	char key[64], plain[64], meta[CM_CACHE_META_MAX + 2];
	int level;

	(void) state;
	key_name(key, sizeof(key), "meta");
	key_name(plain, sizeof(plain), "plain");
	assert_int_equal(cm_cache_set(T.a, "meta", key, strlen(key), "<b/>", 4,
	                              "text/html", 60000, NULL, 0),
	                 CM_OK);
	assert_int_equal(cm_cache_set(T.a, "meta", plain, strlen(plain), "p", 1,
	                              NULL, 60000, NULL, 0),
	                 CM_OK);
	/* B reads L2, A its own copy (L1 or L2); then lookups. */
	for (int round = 0; round < 2; round++) {
		cm_cache *c = round == 0 ? T.b : T.a;

		memset(&v, 0, sizeof(v));
		assert_int_equal(cm_cache_get_or_load(c, "meta", key,
		                                      strlen(key), NULL, NULL,
		                                      &v, &level),
		                 CM_OK);
		assert_int_equal(v.len, 4);
		assert_memory_equal(v.data, "<b/>", 4);
		assert_non_null(v.meta);
		assert_int_equal(v.meta_len, 9);
		assert_string_equal(v.meta, "text/html");
		free(v.data);
		memset(&v, 0, sizeof(v));
		assert_int_equal(cm_cache_get_or_load(c, "meta", plain,
		                                      strlen(plain), NULL, NULL,
		                                      &v, &level),
		                 CM_OK);
		assert_null(v.meta);
		assert_int_equal(v.meta_len, 0);
		free(v.data);
	}
	fill_l1(T.b, "meta", key);
	memset(&v, 0, sizeof(v));
	assert_int_equal(
	    cm_cache_l1_lookup(T.b, "meta", key, strlen(key), &v, &t), CM_OK);
	assert_string_equal(v.meta, "text/html");
	assert_memory_equal(v.data, "<b/>", 4);
	free(v.data);
	memset(meta, 'm', sizeof(meta));
	meta[CM_CACHE_META_MAX + 1] = '\0';
	assert_int_equal(cm_cache_set(T.a, "meta", key, strlen(key), "x", 1,
	                              meta, 60000, NULL, 0),
	                 CM_INVALID_ARGUMENT);
	meta[CM_CACHE_META_MAX] = '\0';
	assert_int_equal(cm_cache_set(T.a, "meta", key, strlen(key), "x", 1,
	                              meta, 60000, NULL, 0),
	                 CM_OK);
	/* (B may hold the old value until the invalidation reaches it.) */
	memset(&v, 0, sizeof(v));
	assert_int_equal(cm_cache_get_or_load(T.a, "meta", key, strlen(key),
	                                      NULL, NULL, &v, &level),
	                 CM_OK);
	assert_int_equal(v.meta_len, CM_CACHE_META_MAX);
	assert_string_equal(v.meta, meta);
	free(v.data);
}

/* "Not found" is cached: the loader runs once. */
static void
test_engine_negative(void **state)
{
	struct loader l = {.result = CM_NOT_FOUND};
	cm_cache_value v = {0};
	char key[64];

	(void) state;
	key_name(key, sizeof(key), "neg");
	for (int i = 0; i < 3; i++)
		assert_int_equal(cm_cache_get_or_load(T.a, "neg", key,
		                                      strlen(key), test_load,
		                                      &l, &v, NULL),
		                 CM_NOT_FOUND);
	assert_int_equal(cm_cache_get_or_load(T.b, "neg", key, strlen(key),
	                                      test_load, &l, &v, NULL),
	                 CM_NOT_FOUND);
	assert_int_equal(atomic_load(&l.calls), 1);
}

/* A delete racing a load: the load's value is not left in L1. */
static void
test_engine_tombstone(void **state)
{
	struct loader l = {.result = CM_OK};
	cm_cache_value v = {0};
	char key[64];

	(void) state;
	key_name(key, sizeof(key), "tomb");
	assert_int_equal(cm_cache_delete(T.a, "tb", key, strlen(key), 5000),
	                 CM_OK);
	/* A fill after the delete's tombstone cannot resurrect the key. */
	assert_int_equal(cm_cache_get_or_load(T.b, "tb", key, strlen(key),
	                                      test_load, &l, &v, NULL),
	                 CM_NOT_FOUND);
	assert_int_equal(atomic_load(&l.calls), 0);
}

/*
 * Losing the invalidation connection clears L1 and forgets the namespace
 * versions; a tracked namespace's version is fetched again on
 * resubscription, so the event-loop API works without a blocking call,
 * while an untracked one waits for one.  cm_cache_l1_drop is local.
 */
static void
test_engine_l1_cleared_on_drop(void **state)
{
	redisContext *rc;
	redisReply *rep;
	cm_cache_stats before, after;
	cm_cache_value v = {0};
	char key[64], other[64];

	(void) state;
	key_name(key, sizeof(key), "drop");
	key_name(other, sizeof(other), "other");
	assert_int_equal(cm_cache_track(T.b, "drop"), CM_OK);
	assert_int_equal(cm_cache_track(T.b, "bad ns!"), CM_INVALID_ARGUMENT);
	assert_int_equal(cm_cache_set(T.a, "drop", key, strlen(key), "x", 1,
	                              NULL, 60000, NULL, 0),
	                 CM_OK);
	assert_int_equal(cm_cache_set(T.a, "untracked", other, strlen(other),
	                              "y", 1, NULL, 60000, NULL, 0),
	                 CM_OK);
	fill_l1(T.b, "drop", key);
	fill_l1(T.b, "untracked", other);
	/* A local drop: gone from B's L1, still in Redis and A's. */
	cm_cache_l1_drop(T.b, "drop", key, strlen(key));
	assert_false(cm_cache_l1_has(T.b, "drop", key, strlen(key)));
	assert_int_equal(cm_cache_get_or_load(T.a, "drop", key, strlen(key),
	                                      NULL, NULL, &v, NULL),
	                 CM_OK);
	free(v.data);
	fill_l1(T.b, "drop", key);
	cm_cache_get_stats(T.b, &before);
	rc = redisConnect("127.0.0.1", T.redis.port);
	assert_non_null(rc);
	rep = redisCommand(rc, "CLIENT KILL TYPE pubsub");
	assert_non_null(rep);
	freeReplyObject(rep);
	redisFree(rc);
	assert_true(wait_l1_gone(T.b, "drop", key, 3000));
	for (int i = 0; i < 300; i++) {
		cm_cache_get_stats(T.b, &after);
		if (after.l1_clears > before.l1_clears &&
		    cm_cache_subscribed(T.b))
			break;
		h_msleep(10);
	}
	assert_true(after.l1_clears > before.l1_clears);
	assert_true(cm_cache_subscribed(T.b));
	/* The tracked namespace is usable at once, the other is not. */
	assert_true(cm_cache_l1_ready(T.b, "drop"));
	assert_false(cm_cache_l1_ready(T.b, "untracked"));
	{
		/* ...which is what a lookup finds: a miss with a ticket. */
		cm_cache_value v2 = {0};
		cm_cache_ticket t;

		assert_int_equal(cm_cache_l1_lookup(T.b, "untracked", other,
		                                    strlen(other), &v2, &t),
		                 CM_UNAVAILABLE);
		assert_false(t.valid);
	}
}

/* The event-loop lookup finds values larger than its stack buffer. */
static void
test_engine_l1_lookup_large(void **state)
{
	size_t len = 64 * 1024;
	char *big = malloc(len), key[64];
	cm_cache_value v = {0};
	cm_cache_ticket t;

	(void) state;
	assert_non_null(big);
	for (size_t i = 0; i < len; i++)
		big[i] = (char) ('a' + i % 26);
	key_name(key, sizeof(key), "large");
	assert_int_equal(cm_cache_set(T.a, "large", key, strlen(key), big, len,
	                              NULL, 60000, NULL, 0),
	                 CM_OK);
	fill_l1(T.b, "large", key);
	assert_int_equal(
	    cm_cache_l1_lookup(T.b, "large", key, strlen(key), &v, &t), CM_OK);
	assert_int_equal(v.len, len);
	assert_memory_equal(v.data, big, len);
	assert_false(t.valid);
	free(v.data);
	free(big);
}

/* ---- the service ---- */

static void
cache_start(h_proc *p, const char *name, int port)
{
	char addr[64];

	memset(p, 0, sizeof(*p));
	p->name = name;
	p->bin = T.cache_bin;
	h_proc_env(p, "CACHE_LISTEN", "tcp://127.0.0.1:%d", port);
	h_proc_env(p, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(p, "CACHE_WORKERS", "4");
	h_proc_env(p, "CACHE_L1_MB", "16");
	h_proc_env(p, "CACHE_HOT_FLUSH_MS", "200");
	h_proc_start(p);
	snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", port);
	assert_true(h_wait_healthy(T.cache_bin, addr, 20000));
}

/* A call as a service of the stack makes it (metadata origin=service). */
static const cm_rpc_meta own = {
    .nmeta = 1, .meta = {{.key = "origin", .value = "service"}}};

static int
rpc_as(cm_rpc_client *c, const cm_rpc_meta *meta, const char *method,
       const ProtobufCMessage *in, const ProtobufCMessageDescriptor *od,
       ProtobufCMessage **out, cm_arena *a)
{
	return (cm_rpc_call(c, meta, method, in, od, out, cm_now_ms() + 3000, a,
	                    NULL, 0));
}

static int
rpc(cm_rpc_client *c, const char *method, const ProtobufCMessage *in,
    const ProtobufCMessageDescriptor *od, ProtobufCMessage **out, cm_arena *a)
{
	return (rpc_as(c, &own, method, in, od, out, a));
}

static int
svc_get(cm_rpc_client *c, const char *ns, const char *key, bool l1_only)
{
	Cache__GetRequest rq = CACHE__GET_REQUEST__INIT;
	ProtobufCMessage *out;
	cm_arena a;
	int rv;

	rq.ns = cm_pbstr(ns);
	rq.key = cm_pbstr(key);
	rq.l1_only = l1_only;
	cm_arena_init(&a);
	rv = rpc(c, "cache.Cache/Get", &rq.base,
	         &cache__get_response__descriptor, &out, &a);
	cm_arena_fini(&a);
	return (rv);
}

static void
svc_set(cm_rpc_client *c, const char *ns, const char *key, const char *val)
{
	Cache__SetRequest rq = CACHE__SET_REQUEST__INIT;
	ProtobufCMessage *out;
	cm_arena a;

	rq.ns = cm_pbstr(ns);
	rq.key = cm_pbstr(key);
	rq.value.data = (uint8_t *) (uintptr_t) val;
	rq.value.len = strlen(val);
	cm_arena_init(&a);
	assert_int_equal(rpc(c, "cache.Cache/Set", &rq.base,
	                     &cache__set_response__descriptor, &out, &a),
	                 CM_OK);
	cm_arena_fini(&a);
}

static bool
svc_wait_l1_gone(cm_rpc_client *c, const char *ns, const char *key, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (svc_get(c, ns, key, true) == CM_NOT_FOUND)
			return (true);
		h_msleep(10);
	}
	return (false);
}

/*
 * Nothing is a service's own call because a field is missing: a direct
 * call with no metadata, or with only a user and no role, is a client's
 * and needs the admin role; with the role it still may not write an
 * internal namespace.  Only origin=service may, and only it is told the
 * level a value was found at.
 */
static void
test_service_default_deny(void **state)
{
	Cache__SetRequest st = CACHE__SET_REQUEST__INIT;
	Cache__GetRequest gt = CACHE__GET_REQUEST__INIT;
	cm_rpc_meta user = {.user_id = "mallory"};
	cm_rpc_meta admin = {.user_id = "ops", .nmeta = 1};
	ProtobufCMessage *out;
	Cache__GetResponse *g;
	cm_arena a;

	(void) state;
	admin.meta[0].key = "claim.role";
	admin.meta[0].value = "admin";
	cm_arena_init(&a);
	st.ns = cm_pbstr("shortener");
	st.key = cm_pbstr("planted");
	st.value.data = (uint8_t *) "https://evil.example/";
	st.value.len = strlen("https://evil.example/");
	st.ttl = 60;
	assert_int_equal(rpc_as(T.r1, NULL, "cache.Cache/Set", &st.base,
	                        &cache__set_response__descriptor, &out, &a),
	                 CM_UNAUTHENTICATED);
	assert_int_equal(rpc_as(T.r1, &user, "cache.Cache/Set", &st.base,
	                        &cache__set_response__descriptor, &out, &a),
	                 CM_PERMISSION_DENIED);
	assert_int_equal(rpc_as(T.r1, &admin, "cache.Cache/Set", &st.base,
	                        &cache__set_response__descriptor, &out, &a),
	                 CM_PERMISSION_DENIED);
	gt.ns = cm_pbstr("shortener");
	gt.key = cm_pbstr("planted");
	assert_int_equal(rpc_as(T.r1, NULL, "cache.Cache/Get", &gt.base,
	                        &cache__get_response__descriptor, &out, &a),
	                 CM_UNAUTHENTICATED);
	/* Nothing was planted. */
	assert_int_equal(rpc(T.r1, "cache.Cache/Get", &gt.base,
	                     &cache__get_response__descriptor, &out, &a),
	                 CM_NOT_FOUND);
	/* A service's own call may, and learns the level. */
	assert_int_equal(rpc(T.r1, "cache.Cache/Set", &st.base,
	                     &cache__set_response__descriptor, &out, &a),
	                 CM_OK);
	assert_int_equal(rpc(T.r1, "cache.Cache/Get", &gt.base,
	                     &cache__get_response__descriptor, &out, &a),
	                 CM_OK);
	g = (Cache__GetResponse *) out;
	assert_true(g->level != NULL && *g->level != '\0');
	assert_int_equal(rpc_as(T.r1, &admin, "cache.Cache/Get", &gt.base,
	                        &cache__get_response__descriptor, &out, &a),
	                 CM_OK);
	g = (Cache__GetResponse *) out;
	assert_true(g->level == NULL || *g->level == '\0');
	cm_arena_fini(&a);
}

/* A delete on one service instance reaches the other's L1 within 1 s. */
static void
test_service_invalidation(void **state)
{
	Cache__DeleteRequest d = CACHE__DELETE_REQUEST__INIT;
	Cache__BumpVersionRequest b = CACHE__BUMP_VERSION_REQUEST__INIT;
	ProtobufCMessage *out;
	cm_arena a;
	char key[64];

	(void) state;
	key_name(key, sizeof(key), "svc");
	svc_set(T.r1, "svc", key, "hello");
	assert_int_equal(svc_get(T.r2, "svc", key, false), CM_OK);
	assert_int_equal(svc_get(T.r2, "svc", key, true), CM_OK);
	d.ns = "svc";
	d.key = key;
	cm_arena_init(&a);
	assert_int_equal(rpc(T.r1, "cache.Cache/Delete", &d.base,
	                     &cache__delete_response__descriptor, &out, &a),
	                 CM_OK);
	assert_true(svc_wait_l1_gone(T.r2, "svc", key, 1000));
	assert_int_equal(svc_get(T.r2, "svc", key, false), CM_NOT_FOUND);
	/* a version bump empties the namespace on the other instance too */
	svc_set(T.r1, "svc", key, "again");
	assert_int_equal(svc_get(T.r2, "svc", key, false), CM_OK);
	b.ns = "svc";
	assert_int_equal(rpc(T.r1, "cache.Cache/BumpVersion", &b.base,
	                     &cache__bump_version_response__descriptor, &out,
	                     &a),
	                 CM_OK);
	assert_true(svc_wait_l1_gone(T.r2, "svc", key, 1000));
	cm_arena_fini(&a);
}

/* A restarted instance warms its L1 from the hot keys. */
static void
test_service_restart_warms(void **state)
{
	Cache__StatsRequest s = CACHE__STATS_REQUEST__INIT;
	Cache__StatsResponse *st;
	cm_arena a;
	char key[64];

	(void) state;
	key_name(key, sizeof(key), "warm");
	svc_set(T.r1, "warm", key, "hot value");
	for (int i = 0; i < 20; i++)
		assert_int_equal(svc_get(T.r1, "warm", key, false), CM_OK);
	h_msleep(500); /* the hot-key flush */
	h_proc_stop(&T.c1, 5000);
	h_proc_free(&T.c1);
	cache_start(&T.c1, "cache-1", T.c1_port);
	for (int i = 0; i < 300 && cm_rpc_client_connected(T.r1) == 0; i++)
		h_msleep(10);
	assert_int_equal(svc_get(T.r1, "warm", key, true), CM_OK);
	cm_arena_init(&a);
	assert_int_equal(rpc(T.r1, "cache.Cache/Stats", &s.base,
	                     &cache__stats_response__descriptor,
	                     (ProtobufCMessage **) &st, &a),
	                 CM_OK);
	assert_true(st->warmed_at_start >= 1);
	cm_arena_fini(&a);
}

/* ---- HTTP through the gateway ---- */

/* One request; hdrs: NULL-terminated "Name: value" lines (may be NULL). */
static void
http_hdrs(h_resp *r, const char *method, const char *path,
          const char *const *hdrs, const char *body, size_t len)
{
	char url[4200];
	int n;

	n = snprintf(url, sizeof(url), "%s%.4096s", T.gw_url, path);
	assert_true(n > 0 && (size_t) n < sizeof(url));
	h_http(r, method, url, hdrs, body, len);
}

static void
http(h_resp *r, const char *method, const char *path, const char *auth,
     const char *extra, const char *body, size_t len)
{
	const char *hdrs[3] = {NULL, NULL, NULL};
	int n = 0;

	if (auth != NULL)
		hdrs[n++] = auth;
	if (extra != NULL)
		hdrs[n++] = extra;
	http_hdrs(r, method, path, hdrs, body, len);
}

/* The response's header name is exactly want. */
static void
header_is(const h_resp *r, const char *name, const char *want)
{
	char *v = h_resp_header(r, name);

	if (v == NULL)
		fail_msg("no %s header", name);
	if (strcmp(v, want) != 0) {
		fprintf(stderr, "%s: \"%s\", not \"%s\"\n", name, v, want);
		free(v);
		fail();
	}
	free(v);
}

/* A JSON error body with this code. */
static void
error_is(const h_resp *r, long status, const char *code)
{
	char *c = h_json_str(r, "error.code");

	if (r->status != status || c == NULL || strcmp(c, code) != 0) {
		fprintf(stderr, "got %ld %s, want %ld %s\n", r->status, r->body,
		        status, code);
		free(c);
		fail();
	}
	free(c);
}

/* PUT path with these headers (and the admin's token): the status. */
static long
put_value(const char *path, const char *ctype_hdr, const char *body, size_t len)
{
	const char *hdrs[3] = {T.auth_admin, ctype_hdr, NULL};
	h_resp r;
	long status;

	http_hdrs(&r, "PUT", path, hdrs, body, len);
	status = r.status;
	if (status != 204)
		fprintf(stderr, "PUT %s: %ld %s\n", path, status, r.body);
	h_resp_free(&r);
	return (status);
}

/*
 * The admin API: who may call it, a value back as it was put (raw bytes,
 * the content type given at PUT), its ETag and 304, JSON when asked, the
 * limits, tags, versions, stats.
 */
static void
test_http_admin_api(void **state)
{
	static const char bin[] = {'a', '\0', 'b', '\xff', '\n', 'c'};
	const char *json_hdrs[3] = {T.auth_admin, "Accept: application/json",
	                            NULL};
	h_resp r;
	char path[1200], key[64], bkey[64], inm[128], *etag, *jetag, *cc, *big,
	    *s;

	(void) state;
	key_name(key, sizeof(key), "http");
	snprintf(path, sizeof(path), "/api/v1/cache/ops/%s?ttl=60&tags=grp",
	         key);
	http(&r, "PUT", path, NULL, NULL, "hello", 5);
	error_is(&r, 401, "UNAUTHENTICATED");
	h_resp_free(&r);
	http(&r, "PUT", path, T.auth_user, NULL, "hello", 5);
	error_is(&r, 403, "PERMISSION_DENIED");
	h_resp_free(&r);
	assert_int_equal(put_value(path,
	                           "Content-Type: text/plain; charset=utf-8",
	                           "hello", 5),
	                 204);

	/* The raw bytes, with the content type they were put with. */
	snprintf(path, sizeof(path), "/api/v1/cache/ops/%s", key);
	http(&r, "GET", path, T.auth_admin, NULL, NULL, 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 5);
	assert_memory_equal(r.body, "hello", 5);
	header_is(&r, "content-type", "text/plain; charset=utf-8");
	header_is(&r, "cache-control", "private, no-cache");
	header_is(&r, "vary", "Accept");
	header_is(&r, "x-content-type-options", "nosniff");
	etag = h_resp_header(&r, "etag");
	assert_non_null(etag);
	h_resp_free(&r);
	snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
	http(&r, "GET", path, T.auth_admin, inm, NULL, 0);
	assert_int_equal(r.status, 304);
	assert_int_equal(r.body_len, 0);
	h_resp_free(&r);
	http(&r, "GET", path, T.auth_admin, "If-None-Match: \"other\"", NULL,
	     0);
	assert_int_equal(r.status, 200);
	assert_memory_equal(r.body, "hello", 5);
	h_resp_free(&r);
	http(&r, "HEAD", path, T.auth_admin, NULL, NULL, 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 0);
	header_is(&r, "content-type", "text/plain; charset=utf-8");
	header_is(&r, "etag", etag);
	h_resp_free(&r);
	/* The same bytes as another type: another ETag, no 304. */
	snprintf(path, sizeof(path), "/api/v1/cache/ops/%s?ttl=60&tags=grp",
	         key);
	assert_int_equal(
	    put_value(path, "Content-Type: text/markdown", "hello", 5), 204);
	snprintf(path, sizeof(path), "/api/v1/cache/ops/%s", key);
	http(&r, "GET", path, T.auth_admin, inm, NULL, 0);
	assert_int_equal(r.status, 200);
	header_is(&r, "content-type", "text/markdown");
	assert_memory_equal(r.body, "hello", 5);
	h_resp_free(&r);
	assert_int_equal(put_value(path,
	                           "Content-Type: text/plain; charset=utf-8",
	                           "hello", 5),
	                 204);
	http(&r, "GET", path, T.auth_admin, inm, NULL, 0);
	assert_int_equal(r.status, 304);
	h_resp_free(&r);
	/* Wildcards get the value as it is too. */
	http(&r, "GET", path, T.auth_admin, "Accept: */*", NULL, 0);
	assert_int_equal(r.status, 200);
	assert_memory_equal(r.body, "hello", 5);
	h_resp_free(&r);

	/* JSON when asked: the same shape as before, plus the content type,
	 * with an ETag of its own. */
	http_hdrs(&r, "GET", path, json_hdrs, NULL, 0);
	assert_int_equal(r.status, 200);
	header_is(&r, "content-type", "application/json");
	header_is(&r, "vary", "Accept");
	s = h_json_str(&r, "value");
	assert_non_null(s);
	assert_string_equal(s, "aGVsbG8="); /* base64 "hello" */
	free(s);
	s = h_json_str(&r, "content_type");
	assert_non_null(s);
	assert_string_equal(s, "text/plain; charset=utf-8");
	free(s);
	s = h_json_str(&r, "level");
	assert_non_null(s);
	assert_string_equal(s, ""); /* never varies through the gateway */
	free(s);
	jetag = h_resp_header(&r, "etag");
	assert_non_null(jetag);
	assert_string_not_equal(jetag, etag);
	cc = h_resp_header(&r, "cache-control");
	assert_non_null(cc);
	assert_non_null(strstr(cc, "no-cache"));
	h_resp_free(&r);
	{
		char jinm[128];
		const char *h[4] = {T.auth_admin, "Accept: application/json",
		                    jinm, NULL};

		snprintf(jinm, sizeof(jinm), "If-None-Match: %s", jetag);
		http_hdrs(&r, "GET", path, h, NULL, 0);
		assert_int_equal(r.status, 304);
		h_resp_free(&r);
	}
	free(etag);
	free(jetag);
	free(cc);

	/* No Content-Type: application/octet-stream; any bytes come back. */
	key_name(bkey, sizeof(bkey), "bin");
	snprintf(path, sizeof(path), "/api/v1/cache/ops/%s", bkey);
	assert_int_equal(put_value(path, "Content-Type:", bin, sizeof(bin)),
	                 204);
	http(&r, "GET", path, T.auth_admin, NULL, NULL, 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, sizeof(bin));
	assert_memory_equal(r.body, bin, sizeof(bin));
	header_is(&r, "content-type", "application/octet-stream");
	h_resp_free(&r);
	http_hdrs(&r, "GET", path, json_hdrs, NULL, 0);
	s = h_json_str(&r, "content_type");
	assert_non_null(s);
	assert_string_equal(s, "application/octet-stream");
	free(s);
	h_resp_free(&r);

	/* Content types are checked: 400 with a JSON error, nothing kept. */
	{
		static const char *const bad[] = {
		    "Content-Type: text",
		    "Content-Type: text/",
		    "Content-Type: /plain",
		    "Content-Type: text/plain; charset",
		    "Content-Type: text/plain, text/html",
		    "Content-Type: text/pl\xc3\xa9in",
		    "Content-Type: text/plain; a=\"unterminated",
		};
		char longct[300];

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			const char *h[3] = {T.auth_admin, bad[i], NULL};

			http_hdrs(&r, "PUT", path, h, "new", 3);
			error_is(&r, 400, "INVALID_ARGUMENT");
			h_resp_free(&r);
		}
		snprintf(longct, sizeof(longct), "Content-Type: text/%0*d", 200,
		         0);
		{
			const char *h[3] = {T.auth_admin, longct, NULL};

			http_hdrs(&r, "PUT", path, h, "new", 3);
			error_is(&r, 400, "INVALID_ARGUMENT");
			h_resp_free(&r);
		}
		{
			const char *h[4] = {T.auth_admin,
			                    "Content-Type: text/plain",
			                    "Content-Type: text/html", NULL};

			http_hdrs(&r, "PUT", path, h, "new", 3);
			error_is(&r, 400, "INVALID_ARGUMENT");
			h_resp_free(&r);
		}
		http(&r, "GET", path, T.auth_admin, NULL, NULL, 0);
		assert_int_equal(r.body_len, sizeof(bin));
		h_resp_free(&r);
	}

	/* internal namespaces are read-only here */
	http(&r, "PUT", "/api/v1/cache/shortener/abc", T.auth_admin, NULL, "x",
	     1);
	error_is(&r, 403, "PERMISSION_DENIED");
	h_resp_free(&r);
	/* limits */
	memset(path, 0, sizeof(path));
	strcpy(path, "/api/v1/cache/ops/");
	memset(path + strlen(path), 'k', 600);
	http(&r, "PUT", path, T.auth_admin, NULL, "x", 1);
	assert_int_equal(r.status, 413);
	h_resp_free(&r);
	http(&r, "GET", path, T.auth_admin, NULL, NULL, 0);
	assert_int_equal(r.status, 413);
	h_resp_free(&r);
	big = calloc(1, (1 << 20) + 10);
	memset(big, 'v', (1 << 20) + 9);
	http(&r, "PUT", "/api/v1/cache/ops/big", T.auth_admin, NULL, big,
	     (1 << 20) + 9);
	assert_int_equal(r.status, 413);
	h_resp_free(&r);
	free(big);
	http(&r, "GET", "/api/v1/cache/ops/no-such-key", T.auth_admin, NULL,
	     NULL, 0);
	error_is(&r, 404, "NOT_FOUND");
	h_resp_free(&r);
	http(&r, "PUT", "/api/v1/cache/ops/k?ttl=soon", T.auth_admin, NULL, "x",
	     1);
	error_is(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);

	/* tag invalidation, version bump, stats */
	http(&r, "POST", "/api/v1/cache/ops/invalidate", T.auth_admin,
	     "Content-Type: application/json", "{\"tags\":[\"grp\"]}", 16);
	assert_int_equal(r.status, 200);
	assert_int_equal(h_json_int(&r, "invalidated"), 1);
	h_resp_free(&r);
	snprintf(path, sizeof(path), "/api/v1/cache/ops/%s", key);
	http(&r, "GET", path, T.auth_admin, NULL, NULL, 0);
	error_is(&r, 404, "NOT_FOUND");
	h_resp_free(&r);
	http(&r, "POST", "/api/v1/cache/ops/bump", T.auth_admin, NULL, NULL, 0);
	assert_int_equal(r.status, 200);
	h_resp_free(&r);
	snprintf(path, sizeof(path), "/api/v1/cache/ops/%s", bkey);
	http(&r, "GET", path, T.auth_admin, NULL, NULL, 0);
	error_is(&r, 404, "NOT_FOUND");
	h_resp_free(&r);
	http(&r, "GET", "/api/v1/cache/stats", T.auth_user, NULL, NULL, 0);
	assert_int_equal(r.status, 403);
	h_resp_free(&r);
	http(&r, "GET", "/api/v1/cache/stats", T.auth_admin, NULL, NULL, 0);
	assert_int_equal(r.status, 200);
	h_resp_free(&r);
}

/* Invalidates tag in namespace tags: how many keys it dropped. */
static long long
invalidate(const char *tag)
{
	char body[128];
	h_resp r;
	long long n;
	int len;

	len = snprintf(body, sizeof(body), "{\"tags\":[\"%s\"]}", tag);
	http(&r, "POST", "/api/v1/cache/tags/invalidate", T.auth_admin,
	     "Content-Type: application/json", body, (size_t) len);
	assert_int_equal(r.status, 200);
	n = h_json_int(&r, "invalidated");
	h_resp_free(&r);
	return (n);
}

static long
get_status(const char *path)
{
	h_resp r;
	long status;

	http(&r, "GET", path, T.auth_admin, NULL, NULL, 0);
	status = r.status;
	h_resp_free(&r);
	return (status);
}

/*
 * tags: repeated parameters and comma lists alike, and both at once; the
 * caps hold after the split (the service's 32 tags, the gateway's 100
 * values per parameter); an empty piece is a bad tag.
 */
static void
test_http_tags(void **state)
{
	char path[4096], k1[64], k2[64], p1[256], p2[256];
	h_resp r;
	size_t n;

	(void) state;
	key_name(k1, sizeof(k1), "tag1");
	key_name(k2, sizeof(k2), "tag2");
	snprintf(p1, sizeof(p1), "/api/v1/cache/tags/%s", k1);
	snprintf(p2, sizeof(p2), "/api/v1/cache/tags/%s", k2);
	/* Every tag of a comma list, of repeated parameters, of both. */
	for (const char *t = "ab"; *t != '\0'; t++) {
		char tag[2] = {*t, '\0'};

		snprintf(path, sizeof(path), "%s?tags=a,b", p1);
		assert_int_equal(put_value(path, NULL, "1", 1), 204);
		assert_int_equal(put_value(p2, NULL, "2", 1), 204);
		assert_true(invalidate(tag) >= 1);
		assert_int_equal(get_status(p1), 404);
		assert_int_equal(get_status(p2), 200);
	}
	for (const char *t = "bcde"; *t != '\0'; t++) {
		char tag[2] = {*t, '\0'};

		snprintf(path, sizeof(path), "%s?tags=c&tags=d,e&tags=b", p2);
		assert_int_equal(put_value(path, NULL, "2", 1), 204);
		assert_int_equal(put_value(p1, NULL, "1", 1), 204);
		assert_true(invalidate(tag) >= 1);
		assert_int_equal(get_status(p2), 404);
		assert_int_equal(get_status(p1), 200);
	}

	/* 32 tags in one comma list are fine, 33 are not */
	n = (size_t) snprintf(path, sizeof(path), "%s?tags=t0", p1);
	for (int i = 1; i < 32; i++)
		n += (size_t) snprintf(path + n, sizeof(path) - n, ",t%d", i);
	assert_int_equal(put_value(path, NULL, "1", 1), 204);
	snprintf(path + n, sizeof(path) - n, "&tags=t32");
	http(&r, "PUT", path, T.auth_admin, NULL, "1", 1);
	error_is(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	/* over the gateway's cap on values, counted after the split */
	n = (size_t) snprintf(path, sizeof(path), "%s?tags=t0", p1);
	for (int i = 1; i < 101; i++)
		n += (size_t) snprintf(path + n, sizeof(path) - n, ",t%d", i);
	http(&r, "PUT", path, T.auth_admin, NULL, "1", 1);
	error_is(&r, 400, "INVALID_ARGUMENT");
	assert_non_null(strstr(r.body, "more than 100 values"));
	h_resp_free(&r);
	/* empty pieces, bad tags */
	snprintf(path, sizeof(path), "%s?tags=a,,b", p1);
	http(&r, "PUT", path, T.auth_admin, NULL, "1", 1);
	error_is(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	snprintf(path, sizeof(path), "%s?tags=a,", p1);
	http(&r, "PUT", path, T.auth_admin, NULL, "1", 1);
	error_is(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
	snprintf(path, sizeof(path), "%s?tags=a%%20b", p1);
	http(&r, "PUT", path, T.auth_admin, NULL, "1", 1);
	error_is(&r, 400, "INVALID_ARGUMENT");
	h_resp_free(&r);
}

/*
 * ttl=1 through the real binaries: served before the second is over,
 * gone once it is (the engine checks the expiry to the millisecond), on
 * the instance that took the PUT (through the gateway) and on the other
 * one (RPC, from Redis), although Redis still holds the value.
 */
static void
test_http_ttl_precision(void **state)
{
	char path[256], key[64], l2key[128], cmd[256], *rep;
	int64_t before, after;
	h_resp r;

	(void) state;
	key_name(key, sizeof(key), "ttl");
	snprintf(path, sizeof(path), "/api/v1/cache/ttl/%s?ttl=1", key);
	before = cm_mono_ms();
	assert_int_equal(put_value(path, "Content-Type: text/plain", "x", 1),
	                 204);
	after = cm_mono_ms();
	/* A slower PUT would leave no room to tell 0.9 s from 1.1 s. */
	assert_true(after - before < 400);
	snprintf(path, sizeof(path), "/api/v1/cache/ttl/%s", key);
	h_msleep((int) (before + 900 - cm_mono_ms()));
	http(&r, "GET", path, T.auth_admin, NULL, NULL, 0);
	assert_int_equal(r.status, 200);
	assert_memory_equal(r.body, "x", 1);
	h_resp_free(&r);
	assert_int_equal(svc_get(T.r2, "ttl", key, false), CM_OK);
	h_msleep((int) (after + 1100 - cm_mono_ms()));
	http(&r, "GET", path, T.auth_admin, NULL, NULL, 0);
	error_is(&r, 404, "NOT_FOUND");
	h_resp_free(&r);
	assert_int_equal(svc_get(T.r2, "ttl", key, false), CM_NOT_FOUND);
	assert_int_equal(svc_get(T.r1, "ttl", key, false), CM_NOT_FOUND);
	/* ...while Redis keeps it for stale-if-error (CACHE_STALE_S). */
	snprintf(l2key, sizeof(l2key), "cache:{ttl}:0:%s", key);
	snprintf(cmd, sizeof(cmd), "EXISTS %s", l2key);
	rep = h_redis_cmd(&T.redis, cmd);
	assert_non_null(strstr(rep, ":1\r\n"));
	free(rep);
}

/*
 * A value stored before content types were kept (the engine's 'V'
 * format, written into Redis as the old service wrote it) reads as
 * application/octet-stream, raw and as JSON.
 */
static void
test_http_old_value(void **state)
{
	const char *json_hdrs[3] = {T.auth_admin, "Accept: application/json",
	                            NULL};
	unsigned char val[13 + 3];
	int64_t soft = cm_now_ms() + 60000;
	uint32_t delta = 0;
	char path[256], key[64], l2key[128], *s;
	redisContext *rc;
	redisReply *rep;
	h_resp r;

	(void) state;
	key_name(key, sizeof(key), "old");
	val[0] = 'V';
	memcpy(val + 1, &soft, 8);
	memcpy(val + 9, &delta, 4);
	memcpy(val + 13, "old", 3);
	snprintf(l2key, sizeof(l2key), "cache:{legacy}:0:%s", key);
	rc = redisConnect("127.0.0.1", T.redis.port);
	assert_non_null(rc);
	rep = redisCommand(rc, "SET %s %b PX 60000", l2key, val, sizeof(val));
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	redisFree(rc);
	snprintf(path, sizeof(path), "/api/v1/cache/legacy/%s", key);
	http(&r, "GET", path, T.auth_admin, NULL, NULL, 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 3);
	assert_memory_equal(r.body, "old", 3);
	header_is(&r, "content-type", "application/octet-stream");
	h_resp_free(&r);
	http_hdrs(&r, "GET", path, json_hdrs, NULL, 0);
	assert_int_equal(r.status, 200);
	s = h_json_str(&r, "content_type");
	assert_non_null(s);
	assert_string_equal(s, "application/octet-stream");
	free(s);
	s = h_json_str(&r, "value");
	assert_non_null(s);
	assert_string_equal(s, "b2xk"); /* base64 "old" */
	free(s);
	h_resp_free(&r);
}

static int
suite_setup(void **state)
{
	char payload[256], *tok;

	(void) state;
	T.cache_bin = getenv("CACHE_BIN");
	T.gw_bin = getenv("GATEWAY_BIN");
	if (T.cache_bin == NULL || T.gw_bin == NULL) {
		fprintf(stderr, "need CACHE_BIN and GATEWAY_BIN\n");
		return (-1);
	}
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_ALL);
	h_redis_start(&T.redis);
	T.a = engine_new();
	T.b = engine_new();
	T.c1_port = h_free_port();
	T.c2_port = h_free_port();
	T.gw_port = h_free_port();
	snprintf(T.c1_addr, sizeof(T.c1_addr), "tcp://127.0.0.1:%d", T.c1_port);
	snprintf(T.c2_addr, sizeof(T.c2_addr), "tcp://127.0.0.1:%d", T.c2_port);
	snprintf(T.gw_url, sizeof(T.gw_url), "http://127.0.0.1:%d", T.gw_port);
	cache_start(&T.c1, "cache-1", T.c1_port);
	cache_start(&T.c2, "cache-2", T.c2_port);
	if (cm_rpc_client_open(&T.r1, T.c1_addr) != 0 ||
	    cm_rpc_client_open(&T.r2, T.c2_addr) != 0)
		return (-1);
	for (int i = 0; i < 300 && (cm_rpc_client_connected(T.r1) == 0 ||
	                            cm_rpc_client_connected(T.r2) == 0);
	     i++)
		h_msleep(10);

	memset(&T.gw, 0, sizeof(T.gw));
	T.gw.name = "gateway";
	T.gw.bin = T.gw_bin;
	h_proc_env(&T.gw, "GATEWAY_LISTEN", "127.0.0.1:%d", T.gw_port);
	h_proc_env(&T.gw, "GATEWAY_THREADS", "1");
	h_proc_env(&T.gw, "CACHE_ADDR", "%s", T.c1_addr);
	h_proc_env(&T.gw, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(&T.gw, "AUTH_JWT_SECRET", "%s", SECRET);
	h_proc_start(&T.gw);
	/* No shortener here, so /healthz says 503: wait for any answer. */
	for (int i = 0; i < 200; i++) {
		h_resp r;

		http(&r, "GET", "/api/v1/cache/stats", NULL, NULL, NULL, 0);
		i = r.status != 0 ? 1000 : i;
		h_resp_free(&r);
		if (i == 1000)
			break;
		h_msleep(50);
	}

	snprintf(payload, sizeof(payload),
	         "{\"sub\":\"ops\",\"role\":\"admin\",\"exp\":%ld}",
	         (long) time(NULL) + 3600);
	tok = h_jwt(SECRET, "HS256", payload);
	snprintf(T.auth_admin, sizeof(T.auth_admin), "Authorization: Bearer %s",
	         tok);
	free(tok);
	snprintf(payload, sizeof(payload), "{\"sub\":\"eve\",\"exp\":%ld}",
	         (long) time(NULL) + 3600);
	tok = h_jwt(SECRET, "HS256", payload);
	snprintf(T.auth_user, sizeof(T.auth_user), "Authorization: Bearer %s",
	         tok);
	free(tok);
	return (0);
}

static int
suite_teardown(void **state)
{
	(void) state;
	cm_rpc_client_close(T.r1);
	cm_rpc_client_close(T.r2);
	h_proc_stop(&T.gw, 5000);
	h_proc_stop(&T.c1, 5000);
	h_proc_stop(&T.c2, 5000);
	h_proc_free(&T.gw);
	h_proc_free(&T.c1);
	h_proc_free(&T.c2);
	cm_cache_free(T.a);
	cm_cache_free(T.b);
	h_redis_stop(&T.redis);
	curl_global_cleanup();
	return (0);
}

/*
 * A plain tcp:// listener on an address other than loopback is refused at
 * start-up (the service exits at once, saying why), unless the operator
 * says the network is private (RPC_ALLOW_PLAIN_REMOTE=1, as compose does).
 */
static void
test_plain_remote_listener_refused(void **state)
{
	h_proc p;
	int port = h_free_port(), status = -1;
	char addr[64];

	(void) state;
	for (int allow = 0; allow <= 1; allow++) {
		memset(&p, 0, sizeof(p));
		p.name = allow ? "cache-allowed" : "cache-refused";
		p.bin = T.cache_bin;
		h_proc_env(&p, "CACHE_LISTEN", "tcp://0.0.0.0:%d", port);
		h_proc_env(&p, "REDIS_URL", "%s", T.redis.url);
		if (allow)
			h_proc_env(&p, "RPC_ALLOW_PLAIN_REMOTE", "1");
		h_proc_start(&p);
		if (!allow) {
			for (int i = 0; i < 100; i++) {
				if (waitpid(p.pid, &status, WNOHANG) == p.pid)
					break;
				h_msleep(50);
			}
			assert_true(WIFEXITED(status) &&
			            WEXITSTATUS(status) != 0);
			p.pid = 0;
		} else {
			snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d",
			         port);
			assert_true(h_wait_healthy(T.cache_bin, addr, 20000));
			assert_int_equal(h_proc_stop(&p, 5000), 0);
		}
		h_proc_free(&p);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_engine_stampede),
	    cmocka_unit_test(test_engine_single_flight),
	    cmocka_unit_test(test_engine_invalidation),
	    cmocka_unit_test(test_engine_stale_if_error),
	    cmocka_unit_test(test_engine_expiry_l1),
	    cmocka_unit_test(test_engine_expiry_l2),
	    cmocka_unit_test(test_engine_meta),
	    cmocka_unit_test(test_engine_negative),
	    cmocka_unit_test(test_engine_tombstone),
	    cmocka_unit_test(test_engine_l1_cleared_on_drop),
	    cmocka_unit_test(test_engine_l1_lookup_large),
	    cmocka_unit_test(test_service_default_deny),
	    cmocka_unit_test(test_service_invalidation),
	    cmocka_unit_test(test_http_admin_api),
	    cmocka_unit_test(test_http_tags),
	    cmocka_unit_test(test_http_ttl_precision),
	    cmocka_unit_test(test_http_old_value),
	    cmocka_unit_test(test_service_restart_warms),
	    cmocka_unit_test(test_plain_remote_listener_refused),
	};

	return (cmocka_run_group_tests(tests, suite_setup, suite_teardown));
}
