/*
 * The redirect cache: the multi-level cache engine (common/cache.h) in
 * namespace SHORTENER_CACHE_NS, and the gateways' invalidation channel.
 * The only file of the shortener that speaks hiredis.
 *
 * resolve is the engine's read-through get: L1 (in process, W-TinyLFU),
 * L2 (Redis), then the loader the domain passes (PostgreSQL), with
 * single-flight per instance, a lease across instances, stale-if-error
 * and negative caching.  A value is "<expires_at> <long_url>" (expires_at
 * in Unix seconds, 0 = never; a URL holds no space).  Opened without
 * read_through (SHORTENER_CACHE=off, a baseline for benchmarks), resolve
 * calls the loader every time; deletes still go through the engine.
 *
 * invalidate is the engine's delete, which leaves a tombstone for
 * tomb_ttl_s (loader fills never overwrite one, so a resolve that read the
 * database just before a delete cannot put the link back) and drops every
 * instance's L1 copy through the engine's channel -- the gateways' redirect
 * caches included: they are L1s of engines with the same prefix, in the
 * same namespace, with the same value format.
 *
 * One instance per thread (the cm_redis for pings is not thread-safe);
 * the engine is shared.  When Redis is down the engine goes
 * straight to the loader, and invalidations fail with CM_UNAVAILABLE (the
 * domain retries them).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "log.h"
#include "redis.h"
#include "shortener.h"
#include "status.h"
#include "store.h"

/* Health: what is known is fresh for a second. */
#define HEALTH_MAX_AGE_MS 1000

struct redis_cache {
	cm_cache *engine;
	cm_redis *r;
};

/* Adapts the domain's loader to the engine's. */
struct load_arg {
	shortener_load_fn load;
	void *arg;
	cm_arena *a;
};

static int
engine_loader(void *arg, const char *ns, const void *key, size_t klen,
              cm_cache_value *out)
{
	struct load_arg *la = arg;
	struct shortener_cached c;
	char code[SHORTENER_ALIAS_MAX + 1];
	int ttl_s = 0, rv, n;
	char *v;

	(void) ns;
	if (klen >= sizeof(code))
		return (CM_NOT_FOUND);
	memcpy(code, key, klen);
	code[klen] = '\0';
	if ((rv = la->load(la->arg, code, la->a, &c, &ttl_s)) != CM_OK)
		return (rv);
	n = snprintf(NULL, 0, "%" PRId64 " %s", c.expires_at, c.long_url);
	if (n < 0 || (v = malloc((size_t) n + 1)) == NULL)
		return (CM_INTERNAL);
	snprintf(v, (size_t) n + 1, "%" PRId64 " %s", c.expires_at, c.long_url);
	out->data = v;
	out->len = (size_t) n;
	out->ttl_ms = (int64_t) (ttl_s > 0 ? ttl_s : 1) * 1000;
	return (CM_OK);
}

static int
redis_resolve(void *impl, const char *code, shortener_load_fn load, void *arg,
              cm_arena *a, struct shortener_cached *out)
{
	struct redis_cache *c = impl;
	struct load_arg la = {.load = load, .arg = arg, .a = a};
	cm_cache_value v;
	char *sp, *end;
	int64_t exp;
	int rv;

	memset(&v, 0, sizeof(v));
	rv = cm_cache_get_or_load(c->engine, SHORTENER_CACHE_NS, code,
	                          strlen(code), engine_loader, &la, &v, NULL);
	if (rv != CM_OK)
		return (rv);
	rv = CM_INTERNAL;
	if ((sp = memchr(v.data, ' ', v.len)) != NULL) {
		exp = strtoll(v.data, &end, 10);
		if (end == sp && exp >= 0) {
			out->expires_at = exp;
			out->long_url = cm_arena_strndup(
			    a, sp + 1,
			    v.len - (size_t) (sp + 1 - (char *) v.data));
			rv = CM_OK;
		}
	}
	if (rv != CM_OK)
		log_warnx("event=bad_cached_value code=%s", code);
	free(v.data);
	return (rv);
}

/* SHORTENER_CACHE=off: every resolve loads. */
static int
direct_resolve(void *impl, const char *code, shortener_load_fn load, void *arg,
               cm_arena *a, struct shortener_cached *out)
{
	int ttl_s;

	(void) impl;
	return (load(arg, code, a, out, &ttl_s));
}

static int
redis_invalidate(void *impl, const char *code, int tomb_ttl_s)
{
	struct redis_cache *c = impl;

	if (cm_cache_delete(c->engine, SHORTENER_CACHE_NS, code, strlen(code),
	                    (int64_t) tomb_ttl_s * 1000) != CM_OK)
		return (CM_UNAVAILABLE);
	return (CM_OK);
}

static bool
redis_ping(void *impl)
{
	struct redis_cache *c = impl;

	return (cm_redis_ping(c->r));
}

static const struct shortener_cache_ops redis_ops = {
    .name = "engine",
    .resolve = redis_resolve,
    .invalidate = redis_invalidate,
    .ping = redis_ping,
};

static const struct shortener_cache_ops direct_ops = {
    .name = "off",
    .resolve = direct_resolve,
    .invalidate = redis_invalidate,
    .ping = redis_ping,
};

void
shortener_redis_open(struct shortener_cache *out, cm_cache *engine,
                     const char *url, int timeout_ms, bool read_through)
{
	struct redis_cache *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		fatal("event=redis_open");
	c->engine = engine;
	c->r = cm_redis_new(url, timeout_ms);
	out->ops = read_through ? &redis_ops : &direct_ops;
	out->impl = c;
}

bool
shortener_redis_health(struct shortener_cache *out, bool probe)
{
	struct redis_cache *c = out->impl;
	int64_t age;

	if (probe)
		return (cm_redis_check(c->r, HEALTH_MAX_AGE_MS));
	return (cm_redis_state(c->r, &age));
}

void
shortener_redis_close(struct shortener_cache *out)
{
	struct redis_cache *c = out->impl;

	if (c == NULL)
		return;
	cm_redis_free(c->r);
	free(c);
	out->impl = NULL;
}
