/*
 * The redirect cache: one cache engine (common/cache.h) for the process,
 * used through its L1 only, in the shortener's namespace.
 *
 * Why the shortener's engine.  The shortener caches a code in namespace
 * GW_RCACHE_NS of an engine with prefix GW_RCACHE_PREFIX, and deletes it
 * with cm_cache_delete, which broadcasts the key on the engine's channel
 * "<prefix>:inv".  An engine made here with the same prefix subscribes to
 * that channel and drops its own L1 copy of every key broadcast, so the
 * gateway caches the same keys (code in that namespace, at the
 * namespace's version) with the same value ("<expires_at> <long_url>",
 * gwcore.h) and needs no subscription of its own.  While the engine's
 * subscription is down its L1 is neither trusted nor filled, and it is
 * cleared when the subscription is back: every redirect then asks the
 * shortener, as /healthz and /metrics show.
 *
 * The loops (redirect.c) only call cm_cache_l1_lookup and
 * cm_cache_l1_fill, which never touch Redis.  But a lookup can only use
 * the L1 once the engine knows the namespace's version (a counter in
 * Redis that is part of every key), and the engine learns it only in its
 * blocking calls; it also forgets every version each time its
 * subscription is re-established.  Until then every lookup is a miss
 * that cannot be filled.  So a keeper thread checks every KEEP_MS whether
 * the subscription is up but the version unknown, and if so asks the
 * engine for it (cm_cache_warm of the empty key, which no code can be:
 * it reads the version, then finds nothing).  That is the only Redis
 * traffic of the gateway's cache besides the engine's own subscriber.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "status.h"
#include "util.h"

#include "gateway.h"

#define KEEP_MS       50
#define WARN_AFTER_MS 1000

cm_cache *gw_rcache;

static struct {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool started, stop;
} K = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/*
 * Whether a lookup can use the L1: the subscription is up and the
 * namespace's version known.  A lookup of the empty key tells without
 * touching Redis: it misses with a ticket exactly then.
 */
static bool
rcache_ready(void)
{
	cm_cache_value v;
	cm_cache_ticket t;
	int rv;

	rv = cm_cache_l1_lookup(gw_rcache, GW_RCACHE_NS, "", 0, &v, &t);
	if (rv == CM_OK)
		free(v.data);
	return (rv != CM_UNAVAILABLE || t.valid);
}

/* Sleeps up to ms unless stopped; true if stopping. */
static bool
keeper_sleep(int ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long) ms * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
	}
	pthread_mutex_lock(&K.mu);
	if (!K.stop)
		pthread_cond_timedwait(&K.cv, &K.mu, &ts);
	stop = K.stop;
	pthread_mutex_unlock(&K.mu);
	return (stop);
}

/*
 * The keeper: fetches the namespace's version whenever the engine lacks
 * it while subscribed (see the top of the file).  The first try after
 * Redis came back often fails on a dead connection and the next one
 * works, so only a failure that lasts WARN_AFTER_MS is reported.
 */
static void *
keeper_main(void *arg)
{
	int64_t failing_since = 0;
	bool warned = false;
	int rv;

	(void) arg;
	do {
		if (!cm_cache_subscribed(gw_rcache) || rcache_ready())
			continue;
		rv = cm_cache_warm(gw_rcache, GW_RCACHE_NS, "", 0);
		if (rv == CM_OK || rv == CM_NOT_FOUND) {
			if (warned)
				log_info("event=redirect_cache_ready");
			failing_since = 0;
			warned = false;
			continue;
		}
		if (failing_since == 0)
			failing_since = cm_mono_ms();
		if (!warned && cm_mono_ms() - failing_since >= WARN_AFTER_MS) {
			log_warnx("event=redirect_cache_version code=%s "
			          "msg=\"cannot read the namespace version; "
			          "redirects bypass the cache\"",
			          cm_code_name(rv));
			warned = true;
		}
	} while (!keeper_sleep(KEEP_MS));
	return (NULL);
}

void
gw_rcache_start(void)
{
	cm_cache_config cc;
	int rv;

	if (gw_cfg.cache_bytes == 0)
		return;
	if (gw_cfg.redis_url[0] == '\0') {
		log_warnx("event=redirect_cache msg=\"off: REDIS_URL is empty, "
		          "so deletes could not reach it\"");
		return;
	}
	memset(&cc, 0, sizeof(cc));
	cc.redis_url = gw_cfg.redis_url;
	cc.prefix = GW_RCACHE_PREFIX;
	cc.l1_bytes = gw_cfg.cache_bytes;
	/* Each fill says how long (redirect.c); this is only the cap. */
	cc.l1_ttl_ms = gw_cfg.cache_ttl_ms > gw_cfg.negative_ttl_ms
	                   ? gw_cfg.cache_ttl_ms
	                   : gw_cfg.negative_ttl_ms;
	cc.negative_ttl_ms = gw_cfg.negative_ttl_ms;
	if ((rv = cm_cache_new(&gw_rcache, &cc)) != CM_OK) {
		log_warnx("event=redirect_cache code=%s msg=\"off: the cache "
		          "engine did not start\"",
		          cm_code_name(rv));
		gw_rcache = NULL;
		return;
	}
	if (pthread_create(&K.thread, NULL, keeper_main, NULL) != 0)
		fatal("event=thread_create");
	K.started = true;
}

void
gw_rcache_stop(void)
{
	if (K.started) {
		pthread_mutex_lock(&K.mu);
		K.stop = true;
		pthread_cond_signal(&K.cv);
		pthread_mutex_unlock(&K.mu);
		pthread_join(K.thread, NULL);
		K.started = false;
	}
	cm_cache_free(gw_rcache);
	gw_rcache = NULL;
}

bool
gw_rcache_holds(const char *code, size_t clen)
{
	cm_cache_value v;
	cm_cache_ticket t;

	if (gw_rcache == NULL ||
	    cm_cache_l1_lookup(gw_rcache, GW_RCACHE_NS, code, clen, &v, &t) !=
	        CM_OK)
		return (false);
	free(v.data);
	return (true);
}

void
gw_rcache_clear(void)
{
	if (gw_rcache != NULL)
		cm_cache_clear_l1(gw_rcache);
}

bool
gw_rcache_state(const char **detail)
{
	if (gw_rcache == NULL) {
		*detail = "off";
		return (true);
	}
	if (!cm_cache_subscribed(gw_rcache)) {
		*detail = "invalidation subscription down: redirects bypass "
		          "the cache";
		return (false);
	}
	if (!rcache_ready()) {
		*detail = "namespace version not known yet: redirects bypass "
		          "the cache";
		return (false);
	}
	*detail = "subscribed to " GW_RCACHE_PREFIX ":inv";
	return (true);
}
