/*
 * The shared redirect cache in Redis: the only file that speaks hiredis.
 *
 * Keys are "shortener:url:{CODE}" (the code is the hash tag, so a Redis
 * Cluster keeps everything about one code on one node).  A value is
 * "<expires_at> <long_url>" (expires_at in Unix seconds, 0 = never; a URL
 * holds no space) or the tombstone "-" that a delete leaves behind.  Fills
 * use SET ... NX, so they never overwrite a tombstone: a resolve that read
 * the database just before a delete cannot put the link back.
 *
 * Invalidation is DEL (or SET tombstone), then PUBLISH of the code on
 * SHORTENER_INVALIDATE_CHANNEL (cm_invalidate_publish).
 *
 * One instance per thread (a cm_redis is not thread-safe).  Every command
 * is bounded by the timeout given at open; when Redis is down, calls fail
 * at once (cm_redis backs off) and the domain goes on without the cache.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "invalidate.h"
#include "log.h"
#include "redis.h"
#include "shortener.h"
#include "status.h"
#include "store.h"

#define KEY_FMT "shortener:url:{%s}"

struct redis_cache {
	cm_redis *r;
};

static int
redis_get(void *impl, const char *code, cm_arena *a,
          struct shortener_cached *out)
{
	struct redis_cache *c = impl;
	redisReply *rep;
	char *sp, *end;
	int64_t exp;
	int rv = CM_UNAVAILABLE;

	if ((rep = cm_redis_cmd(c->r, "GET " KEY_FMT, code)) == NULL)
		return (CM_UNAVAILABLE);
	if (rep->type == REDIS_REPLY_STRING) {
		if (rep->len == 1 && rep->str[0] == '-') {
			rv = CM_NOT_FOUND;
		} else if ((sp = memchr(rep->str, ' ', rep->len)) != NULL) {
			exp = strtoll(rep->str, &end, 10);
			if (end == sp && exp >= 0) {
				out->expires_at = exp;
				out->long_url = cm_arena_strndup(
				    a, sp + 1,
				    rep->len - (size_t) (sp + 1 - rep->str));
				rv = CM_OK;
			}
		}
	}
	freeReplyObject(rep);
	return (rv);
}

static void
redis_fill(void *impl, const char *code, const struct shortener_cached *v,
           int ttl_s)
{
	struct redis_cache *c = impl;
	redisReply *rep;
	char val[24 + SHORTENER_URL_MAX];
	int n;

	if (ttl_s <= 0)
		return;
	n = snprintf(val, sizeof(val), "%" PRId64 " %s", v->expires_at,
	             v->long_url);
	if (n < 0 || (size_t) n >= sizeof(val))
		return;
	rep = cm_redis_cmd(c->r, "SET " KEY_FMT " %b EX %d NX", code, val,
	                   (size_t) n, ttl_s);
	if (rep != NULL)
		freeReplyObject(rep);
}

static int
redis_invalidate(void *impl, const char *code, int tomb_ttl_s)
{
	struct redis_cache *c = impl;
	redisReply *rep;
	bool ok;

	if (tomb_ttl_s > 0)
		rep = cm_redis_cmd(c->r, "SET " KEY_FMT " - EX %d", code,
		                   tomb_ttl_s);
	else
		rep = cm_redis_cmd(c->r, "DEL " KEY_FMT, code);
	if (rep == NULL)
		return (CM_UNAVAILABLE);
	ok = rep->type != REDIS_REPLY_ERROR;
	freeReplyObject(rep);
	if (!ok || cm_invalidate_publish(c->r, SHORTENER_INVALIDATE_CHANNEL,
	                                 code) != 0)
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
    .name = "redis",
    .get = redis_get,
    .fill = redis_fill,
    .invalidate = redis_invalidate,
    .ping = redis_ping,
};

void
shortener_redis_open(struct shortener_cache *out, const char *url,
                     int timeout_ms)
{
	struct redis_cache *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		fatal("event=redis_open");
	c->r = cm_redis_new(url, timeout_ms);
	out->ops = &redis_ops;
	out->impl = c;
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
