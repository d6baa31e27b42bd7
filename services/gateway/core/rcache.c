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
 * The loops (handler/redirect.c, handler/rpc.c) only call cm_cache_l1_lookup,
 * cm_cache_l1_fill and cm_cache_l1_drop, which never touch Redis.  A
 * lookup can use the L1 only once the engine knows the namespace's version
 * (a counter in Redis that is part of every key); the namespace is
 * tracked (cm_cache_track), so the engine fetches it at start-up and again,
 * on its subscriber thread, every time its subscription is re-established.
 * That and the subscription are the only Redis traffic of the gateway's
 * cache.
 */
#include <string.h>

#include "log.h"
#include "status.h"
#include "util.h"

#include "internal.h"

cm_cache *gw_rcache;

void
gw_rcache_start(void)
{
	cm_cache_config cc;
	int rv;

	if (gw_core_cfg.cache_bytes == 0)
		return;
	if (gw_core_cfg.redis_url[0] == '\0') {
		log_warnx("event=redirect_cache msg=\"off: REDIS_URL is empty, "
		          "so deletes could not reach it\"");
		return;
	}
	memset(&cc, 0, sizeof(cc));
	cc.redis_url = gw_core_cfg.redis_url;
	cc.prefix = GW_RCACHE_PREFIX;
	cc.l1_bytes = gw_core_cfg.cache_bytes;
	/* Each fill says how long (redirect.c); this is only the cap. */
	cc.l1_ttl_ms = gw_core_cfg.cache_ttl_ms > gw_core_cfg.negative_ttl_ms
	                   ? gw_core_cfg.cache_ttl_ms
	                   : gw_core_cfg.negative_ttl_ms;
	cc.negative_ttl_ms = gw_core_cfg.negative_ttl_ms;
	if ((rv = cm_cache_new(&gw_rcache, &cc)) != CM_OK) {
		log_warnx("event=redirect_cache code=%s msg=\"off: the cache "
		          "engine did not start\"",
		          cm_code_name(rv));
		gw_rcache = NULL;
		return;
	}
	/* With Redis down now, the engine fetches it once subscribed. */
	if ((rv = cm_cache_track(gw_rcache, GW_RCACHE_NS)) != CM_OK)
		log_info("event=redirect_cache code=%s msg=\"namespace version "
		         "not known yet: redirects bypass the cache until "
		         "Redis answers\"",
		         cm_code_name(rv));
}

void
gw_rcache_stop(void)
{
	cm_cache_free(gw_rcache);
	gw_rcache = NULL;
}

void
gw_rcache_drop(const char *code, size_t clen)
{
	if (gw_rcache != NULL)
		cm_cache_l1_drop(gw_rcache, GW_RCACHE_NS, code, clen);
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
	if (!cm_cache_l1_ready(gw_rcache, GW_RCACHE_NS)) {
		*detail = "namespace version not known yet: redirects bypass "
		          "the cache";
		return (false);
	}
	*detail = "subscribed to " GW_RCACHE_PREFIX ":inv";
	return (true);
}
