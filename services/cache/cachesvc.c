/*
 * The cache service's RPC handlers: thin wrappers over the engine
 * (common/cache.h) plus the rules of the operator API.
 *
 * Who may do what.  A call acts for a client unless it says it is a
 * service's own: metadata "origin" = "service", which the gateway never
 * sends (it builds the metadata of the calls it makes for a request itself:
 * the client's address, the JWT's claims).  A client's call needs the
 * admin role ("claim.role" = "admin", from the caller's JWT), and may not
 * write (Set, Delete, InvalidateTags, BumpVersion) a namespace that
 * services use internally (CACHE_INTERNAL_NAMESPACES, "shortener" by
 * default).  Nothing is a service's own because a field is missing.  The
 * metadata itself is believed because of who can send it: over tls+tcp://
 * only holders of the stack's certificates, over plain tcp:// only what
 * reaches the loopback listener.
 *
 * Limits: keys at most CACHESVC_KEY_MAX bytes (OUT_OF_RANGE; the gateway
 * answers 413 before calling), values at most CACHESVC_VALUE_MAX
 * (RESOURCE_EXHAUSTED; the gateway's body limit answers 413 first).
 *
 * Content types.  A Set's content type, checked by
 * cachesvc_content_type_ok (INVALID_ARGUMENT), is kept with the value as
 * the engine's metadata; reads give it back, and a value without one
 * (set without it, or before the service kept it) reads as
 * CACHESVC_CTYPE_DEFAULT.
 *
 * Expiry.  Reads pass no loader to the engine, so a value is found until
 * its TTL has passed and never after: the stale tail the engine keeps in
 * Redis is for read-through callers, of which this service has none.
 */
#include <stdlib.h>
#include <string.h>

#include "cache.pb-c.h"
#include "cachesvc.h"
#include "status.h"
#include "util.h"

static struct cachesvc *
svc(cm_rpc_ctx *ctx)
{
	return (ctx->service_arg);
}

static bool
internal_ns(struct cachesvc *s, const char *ns)
{
	const char *p = s->internal_ns;
	size_t n = strlen(ns);

	while (p != NULL && *p != '\0') {
		const char *e = strchr(p, ',');
		size_t len = e != NULL ? (size_t) (e - p) : strlen(p);

		if (len == n && strncmp(p, ns, n) == 0)
			return (true);
		p = e != NULL ? e + 1 : NULL;
	}
	return (false);
}

/* The content type a read reports: the stored one, or the default. */
static char *
content_type(cm_rpc_ctx *ctx, const cm_cache_value *v)
{
	if (v->meta == NULL || v->meta_len == 0)
		return (cm_pbstr(CACHESVC_CTYPE_DEFAULT));
	return (cm_arena_strndup(ctx->arena, v->meta, v->meta_len));
}

/* Whether the call is a service's own, not one made for a client. */
static bool
own_call(const cm_rpc_ctx *ctx)
{
	const char *o = cm_rpc_ctx_meta(ctx, "origin");

	return (o != NULL && strcmp(o, "service") == 0);
}

/* Admission and argument checks shared by every keyed method. */
static int
check(cm_rpc_ctx *ctx, const char *ns, const char *key, bool write)
{
	const char *role;

	if (!own_call(ctx)) {
		if (ctx->user_id == NULL || *ctx->user_id == '\0')
			return (cm_rpc_error(ctx, CM_UNAUTHENTICATED,
			                     "a token is required"));
		role = cm_rpc_ctx_meta(ctx, "claim.role");
		if (role == NULL || strcmp(role, "admin") != 0)
			return (cm_rpc_error(ctx, CM_PERMISSION_DENIED,
			                     "the admin role is required"));
		if (write && ns != NULL && internal_ns(svc(ctx), ns))
			return (cm_rpc_error(ctx, CM_PERMISSION_DENIED,
			                     "namespace %s is internal", ns));
	}
	if (ns != NULL && !cm_cache_ns_ok(ns))
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "namespace: 1-64 of [A-Za-z0-9_.-]"));
	if (key != NULL && *key == '\0')
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT, "empty key"));
	if (key != NULL && strlen(key) > CACHESVC_KEY_MAX)
		return (cm_rpc_error(ctx, CM_OUT_OF_RANGE,
		                     "key longer than %d bytes",
		                     CACHESVC_KEY_MAX));
	return (CM_OK);
}

static int
h_get(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Cache__GetRequest *rq = (const Cache__GetRequest *) in;
	Cache__GetResponse *r;
	cm_cache_value v;
	cm_cache_ticket t;
	int rv, level = CM_CACHE_L1;

	if ((rv = check(ctx, rq->ns, rq->key, false)) != CM_OK)
		return (rv);
	memset(&v, 0, sizeof(v));
	if (rq->l1_only)
		rv = cm_cache_l1_lookup(svc(ctx)->cache, rq->ns, rq->key,
		                        strlen(rq->key), &v, &t);
	else
		rv = cm_cache_get_or_load(svc(ctx)->cache, rq->ns, rq->key,
		                          strlen(rq->key), NULL, NULL, &v,
		                          &level);
	if (rv == CM_UNAVAILABLE && rq->l1_only)
		rv = CM_NOT_FOUND;
	if (rv == CM_NOT_FOUND)
		return (cm_rpc_error(ctx, rv, "no such key"));
	if (rv != CM_OK)
		return (cm_rpc_error(ctx, rv, "cache unavailable"));
	cachesvc_hot_record(svc(ctx)->hot, rq->ns, rq->key);
	r = cm_rpc_new_msg(ctx, &cache__get_response__descriptor);
	r->value.data = cm_arena_alloc(ctx->arena, v.len + 1);
	memcpy(r->value.data, v.data, v.len);
	r->value.len = v.len;
	r->content_type = content_type(ctx, &v);
	/* Where it was found is for internal callers: through the gateway
	 * the reply must not vary with it, or its ETag would. */
	if (own_call(ctx))
		r->level = cm_pbstr(cm_cache_level_name(level));
	free(v.data);
	*out = &r->base;
	return (CM_OK);
}

static int
h_mget(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Cache__MGetRequest *rq = (const Cache__MGetRequest *) in;
	Cache__MGetResponse *r;
	int rv;

	if ((rv = check(ctx, rq->ns, NULL, false)) != CM_OK)
		return (rv);
	if (rq->n_keys > 1000)
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "at most 1000 keys"));
	r = cm_rpc_new_msg(ctx, &cache__mget_response__descriptor);
	r->entries =
	    cm_arena_alloc(ctx->arena, (rq->n_keys + 1) * sizeof(*r->entries));
	for (size_t i = 0; i < rq->n_keys; i++) {
		Cache__MGetEntry *e =
		    cm_rpc_new_msg(ctx, &cache__mget_entry__descriptor);
		cm_cache_value v;

		if ((rv = check(ctx, NULL, rq->keys[i], false)) != CM_OK)
			return (rv);
		memset(&v, 0, sizeof(v));
		e->key = rq->keys[i];
		if (cm_cache_get_or_load(svc(ctx)->cache, rq->ns, rq->keys[i],
		                         strlen(rq->keys[i]), NULL, NULL, &v,
		                         NULL) == CM_OK) {
			e->found = true;
			e->value.data = cm_arena_alloc(ctx->arena, v.len + 1);
			memcpy(e->value.data, v.data, v.len);
			e->value.len = v.len;
			e->content_type = content_type(ctx, &v);
			cachesvc_hot_record(svc(ctx)->hot, rq->ns, rq->keys[i]);
		}
		free(v.data);
		r->entries[r->n_entries++] = e;
	}
	*out = &r->base;
	return (CM_OK);
}

static int
h_set(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Cache__SetRequest *rq = (const Cache__SetRequest *) in;
	const char *ctype;
	int rv;

	if ((rv = check(ctx, rq->ns, rq->key, true)) != CM_OK)
		return (rv);
	if (rq->value.len > CACHESVC_VALUE_MAX)
		return (cm_rpc_error(ctx, CM_RESOURCE_EXHAUSTED,
		                     "value larger than %d bytes",
		                     CACHESVC_VALUE_MAX));
	if (rq->ttl < 0 || rq->ttl > 30LL * 86400)
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "ttl: 0 to 2592000 seconds"));
	if (rq->n_tags > CACHESVC_TAGS_MAX)
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "at most %d tags", CACHESVC_TAGS_MAX));
	for (size_t i = 0; i < rq->n_tags; i++)
		if (!cm_cache_ns_ok(rq->tags[i]))
			return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
			                     "tag: 1-64 of [A-Za-z0-9_.-]"));
	ctype = rq->content_type != NULL ? rq->content_type : "";
	if (*ctype != '\0' && !cachesvc_content_type_ok(ctype, strlen(ctype)))
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "content type: a media type "
		                     "(type/subtype[; name=value]...) of at "
		                     "most %d bytes",
		                     CACHESVC_CTYPE_MAX));
	/* Seconds to ms here; the engine keeps expiries in ms. */
	rv = cm_cache_set(
	    svc(ctx)->cache, rq->ns, rq->key, strlen(rq->key), rq->value.data,
	    rq->value.len, *ctype != '\0' ? ctype : NULL,
	    (rq->ttl > 0 ? rq->ttl : svc(ctx)->default_ttl_s) * 1000,
	    (const char *const *) rq->tags, rq->n_tags);
	if (rv != CM_OK)
		return (cm_rpc_error(ctx, rv, "cache unavailable"));
	*out = cm_rpc_new_msg(ctx, &cache__set_response__descriptor);
	return (CM_OK);
}

static int
h_delete(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Cache__DeleteRequest *rq = (const Cache__DeleteRequest *) in;
	int rv;

	if ((rv = check(ctx, rq->ns, rq->key, true)) != CM_OK)
		return (rv);
	rv = cm_cache_delete(svc(ctx)->cache, rq->ns, rq->key, strlen(rq->key),
	                     0);
	if (rv != CM_OK)
		return (cm_rpc_error(ctx, rv, "cache unavailable"));
	*out = cm_rpc_new_msg(ctx, &cache__delete_response__descriptor);
	return (CM_OK);
}

static int
h_invalidate_tags(cm_rpc_ctx *ctx, const ProtobufCMessage *in,
                  ProtobufCMessage **out)
{
	const Cache__InvalidateTagsRequest *rq =
	    (const Cache__InvalidateTagsRequest *) in;
	Cache__InvalidateTagsResponse *r;
	size_t n = 0;
	int rv;

	if ((rv = check(ctx, rq->ns, NULL, true)) != CM_OK)
		return (rv);
	if (rq->n_tags == 0 || rq->n_tags > CACHESVC_TAGS_MAX)
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT, "1 to %d tags",
		                     CACHESVC_TAGS_MAX));
	for (size_t i = 0; i < rq->n_tags; i++)
		if (!cm_cache_ns_ok(rq->tags[i]))
			return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
			                     "tag: 1-64 of [A-Za-z0-9_.-]"));
	rv = cm_cache_invalidate_tags(svc(ctx)->cache, rq->ns,
	                              (const char *const *) rq->tags,
	                              rq->n_tags, &n);
	if (rv != CM_OK)
		return (cm_rpc_error(ctx, rv, "cache unavailable"));
	r = cm_rpc_new_msg(ctx, &cache__invalidate_tags_response__descriptor);
	r->invalidated = (int64_t) n;
	*out = &r->base;
	return (CM_OK);
}

static int
h_bump(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Cache__BumpVersionRequest *rq =
	    (const Cache__BumpVersionRequest *) in;
	Cache__BumpVersionResponse *r;
	uint64_t v = 0;
	int rv;

	if ((rv = check(ctx, rq->ns, NULL, true)) != CM_OK)
		return (rv);
	if ((rv = cm_cache_bump_version(svc(ctx)->cache, rq->ns, &v)) != CM_OK)
		return (cm_rpc_error(ctx, rv, "cache unavailable"));
	r = cm_rpc_new_msg(ctx, &cache__bump_version_response__descriptor);
	r->version = (int64_t) v;
	*out = &r->base;
	return (CM_OK);
}

static int
h_warm(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Cache__WarmRequest *rq = (const Cache__WarmRequest *) in;
	Cache__WarmResponse *r;
	int rv;

	if ((rv = check(ctx, NULL, NULL, false)) != CM_OK)
		return (rv);
	r = cm_rpc_new_msg(ctx, &cache__warm_response__descriptor);
	if (rq->n_keys > 0) {
		if (!cm_cache_ns_ok(rq->ns))
			return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
			                     "namespace required"));
		for (size_t i = 0; i < rq->n_keys; i++)
			if (cm_cache_warm(svc(ctx)->cache, rq->ns, rq->keys[i],
			                  strlen(rq->keys[i])) == CM_OK)
				r->warmed++;
	} else {
		r->warmed = cachesvc_hot_warm(
		    svc(ctx)->hot, svc(ctx)->cache, rq->ns,
		    rq->limit > 0 ? (size_t) rq->limit : 1000);
	}
	*out = &r->base;
	return (CM_OK);
}

static int
h_stats(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	Cache__StatsResponse *r;
	cm_cache_stats st;
	int rv;

	(void) in;
	if ((rv = check(ctx, NULL, NULL, false)) != CM_OK)
		return (rv);
	cm_cache_get_stats(svc(ctx)->cache, &st);
	r = cm_rpc_new_msg(ctx, &cache__stats_response__descriptor);
	r->l1_hits = (int64_t) st.l1_hits;
	r->l1_misses = (int64_t) st.l1_misses;
	r->l2_hits = (int64_t) st.l2_hits;
	r->l2_misses = (int64_t) st.l2_misses;
	r->negative_hits = (int64_t) st.negative_hits;
	r->loads = (int64_t) st.loads;
	r->load_errors = (int64_t) st.load_errors;
	r->stale_served = (int64_t) st.stale_served;
	r->lease_waits = (int64_t) st.lease_waits;
	r->flight_joins = (int64_t) st.flight_joins;
	r->early_refreshes = (int64_t) st.early_refreshes;
	r->invalidations = (int64_t) st.invalidations;
	r->l1_clears = (int64_t) st.l1_clears;
	r->l1_evictions = (int64_t) st.l1_evictions;
	r->l1_rejected = (int64_t) st.l1_rejected;
	r->l1_entries = (int64_t) st.l1_entries;
	r->l1_bytes = (int64_t) st.l1_bytes;
	r->gets = (int64_t) st.gets;
	r->get_avg_us =
	    st.gets > 0 ? (double) st.get_us_total / (double) st.gets : 0;
	r->warmed_at_start = svc(ctx)->warmed_at_start;
	*out = &r->base;
	return (CM_OK);
}

/* In the order of the methods in proto/cache.proto. */
static const cm_rpc_handler handlers[] = {
    h_get, h_mget, h_set, h_delete, h_invalidate_tags, h_bump, h_warm, h_stats,
};

const cm_rpc_service cachesvc_rpc_service = {
    .desc = &cache__cache__descriptor,
    .handlers = handlers,
};
