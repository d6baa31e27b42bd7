/*
 * "cache": GET and PUT /api/v1/cache/{ns}/{key}, the cache's values as
 * HTTP resources (the service checks the admin role and the arguments).
 *
 * PUT stores the raw body with the request's Content-Type (none: the
 * service's default, application/octet-stream; one it refuses: 400), and
 * the query's ttl (seconds) and tags.  Tags come as repeated parameters, a
 * comma list or both (?tags=a,b&tags=c); the transcoder's cap on values
 * per parameter counts the tags after the split, and the service's own
 * cap (32) follows.  A tag cannot hold a comma, so the split loses
 * nothing.
 *
 * GET answers the stored bytes with the stored Content-Type, as they were
 * put; JSON ({"value": base64, "level", "content_type"}, the reply
 * message) only when the request's Accept names application/json.  Both
 * go through gw_respond_etag (ETag of the body and its type,
 * "Cache-Control: private, no-cache", 304 on If-None-Match) and carry
 * "Vary: Accept", since the body depends on it.  Raw bodies also carry
 * "X-Content-Type-Options: nosniff": the stored type is the operator's word,
 * and a browser must not guess another.
 */
#include <stdio.h>
#include <string.h>

#include "cache.pb-c.h"
#include "log.h"
#include "status.h"

#include "handlers.h"

#define CTYPE_DEFAULT "application/octet-stream"

/* A request's: whether the reply is to be JSON. */
struct cache_req {
	bool json;
};

/* Refuses a key over the service's bound without a call (413). */
static bool
key_too_long(struct gw_req *rq)
{
	size_t klen;

	if (!(gw_creq(rq)->route->def->flags & GW_RF_KEY_LIMIT) ||
	    gw_req_param(rq, "key", &klen) == NULL || klen <= GW_KEY_MAX)
		return (false);
	gw_respond_error(rq, 413, "RESOURCE_EXHAUSTED",
	                 "key longer than 512 bytes");
	return (true);
}

/* Sends msg to the route's RPC; cb gets the reply. */
static void
cache_call(struct gw_req *rq, const ProtobufCMessage *msg, gw_req_cb cb)
{
	const struct gw_croute *rt = gw_creq(rq)->route;
	uint8_t *payload;
	size_t len;

	payload = gw_transcode_pack(msg, rq->arena, &len);
	gw_req_call(rq, rt->up, rt->def->rpc, payload, len,
	            gw_core_cfg.rpc_timeout_ms, cb, NULL, 0);
}

/* ---- GET ---- */

static void
get_reply(struct gw_req *rq, void *arg, int idx, const struct gw_reply *r)
{
	const struct gw_croute *rt = gw_creq(rq)->route;
	const struct cache_req *st = gw_req_hstate(rq);
	const Cache__GetResponse *resp;
	const char *ctype;
	char *json;
	size_t jlen;

	(void) arg;
	(void) idx;
	if (r->status != CM_OK) {
		gw_respond_reply_error(rq, rt->up, r);
		return;
	}
	gw_resp_header(rq, "Vary", "Accept");
	if (st->json) {
		if (gw_transcode_reply(rt, r->payload, r->len, rq->arena, &json,
		                       &jlen) != 0)
			goto bad;
		gw_respond_etag(rq, 200, "application/json", json, jlen);
		return;
	}
	resp = (const Cache__GetResponse *) protobuf_c_message_unpack(
	    &cache__get_response__descriptor, &rq->arena->pb, r->len,
	    r->payload);
	if (resp == NULL)
		goto bad;
	/* The service checked it when it was set; a header must be safe. */
	ctype = resp->content_type;
	if (ctype == NULL || *ctype == '\0' ||
	    !gw_header_safe(ctype, strlen(ctype)))
		ctype = CTYPE_DEFAULT;
	gw_resp_header(rq, "X-Content-Type-Options", "nosniff");
	gw_respond_etag(rq, 200, ctype, resp->value.data, resp->value.len);
	return;
bad:
	log_warnx("event=bad_reply route=\"%s\"", rt->label);
	gw_respond_error(rq, 502, "INTERNAL", "malformed upstream reply");
}

static void
cache_get(struct gw_req *rq)
{
	const struct gw_creq *cr = gw_creq(rq);
	struct cache_req *st = gw_req_hstate(rq);
	ProtobufCMessage *msg;
	const char *accept;
	size_t alen;
	char err[256];

	if (key_too_long(rq))
		return;
	accept = gw_req_header_join(rq, "accept", &alen);
	st->json = accept != NULL && gw_accept_json(accept, alen);
	if (gw_transcode_message(cr->route, &cr->match, cr->query, cr->qlen,
	                         NULL, 0, rq->arena, &msg, err,
	                         sizeof(err)) != 0) {
		gw_respond_error(rq, 400, "INVALID_ARGUMENT", err);
		return;
	}
	cache_call(rq, msg, get_reply);
}

/* ---- PUT ---- */

/*
 * Splits comma lists among the tags bound from the query (in place: the
 * pieces are arena copies).  Over GW_QUERY_REPEAT_MAX tags in all: -1 and
 * the reason in err.  Empty pieces stay, for the service to refuse.
 */
static int
split_tags(Cache__SetRequest *set, cm_arena *a, char *err, size_t errlen)
{
	size_t n = 0, m = 0;
	char **tags, *p, *comma;

	for (size_t i = 0; i < set->n_tags; i++) {
		n++;
		for (p = set->tags[i]; (p = strchr(p, ',')) != NULL; p++)
			if (++n > GW_QUERY_REPEAT_MAX)
				break;
		if (n > GW_QUERY_REPEAT_MAX) {
			snprintf(err, errlen,
			         "more than %d values for query parameter "
			         "\"tags\"",
			         GW_QUERY_REPEAT_MAX);
			return (-1);
		}
	}
	if (n == set->n_tags)
		return (0);
	tags = cm_arena_alloc(a, n * sizeof(*tags));
	for (size_t i = 0; i < set->n_tags; i++) {
		for (p = set->tags[i]; (comma = strchr(p, ',')) != NULL;
		     p = comma + 1)
			tags[m++] =
			    cm_arena_strndup(a, p, (size_t) (comma - p));
		tags[m++] = p;
	}
	set->tags = tags;
	set->n_tags = m;
	return (0);
}

static void
put_reply(struct gw_req *rq, void *arg, int idx, const struct gw_reply *r)
{
	(void) arg;
	(void) idx;
	if (r->status != CM_OK) {
		gw_respond_reply_error(rq, gw_creq(rq)->route->up, r);
		return;
	}
	gw_respond(rq, 204, NULL, NULL, 0);
}

static void
cache_put(struct gw_req *rq)
{
	const struct gw_creq *cr = gw_creq(rq);
	ProtobufCMessage *msg;
	Cache__SetRequest *set;
	const char *ctype;
	size_t clen = 0;
	char err[256];

	if (key_too_long(rq))
		return;
	if (gw_req_header_count(rq, "content-type") > 1) {
		gw_respond_error(rq, 400, "INVALID_ARGUMENT",
		                 "more than one Content-Type");
		return;
	}
	if (gw_transcode_message(cr->route, &cr->match, cr->query, cr->qlen,
	                         rq->body.p, rq->body.len, rq->arena, &msg, err,
	                         sizeof(err)) != 0 ||
	    split_tags((Cache__SetRequest *) msg, rq->arena, err,
	               sizeof(err)) != 0) {
		gw_respond_error(rq, 400, "INVALID_ARGUMENT", err);
		return;
	}
	set = (Cache__SetRequest *) msg;
	/* The header, never a query parameter, says what the body is. */
	if ((ctype = gw_req_header(rq, "content-type", &clen)) != NULL)
		ctype = gw_trim(ctype, &clen);
	set->content_type = ctype != NULL
	                        ? cm_arena_strndup(rq->arena, ctype, clen)
	                        : cm_arena_strdup(rq->arena, "");
	cache_call(rq, msg, put_reply);
}

static void
cache_request(struct gw_req *rq)
{
	if (rq->method == HTTP_PUT)
		cache_put(rq);
	else
		cache_get(rq);
}

static int
cache_check_route(const struct gw_croute *r, char *err, size_t errlen)
{
	bool get = strcmp(r->def->method, "GET") == 0;
	bool put = strcmp(r->def->method, "PUT") == 0;

	if ((get && r->in == &cache__get_request__descriptor &&
	     r->out == &cache__get_response__descriptor) ||
	    (put && r->in == &cache__set_request__descriptor &&
	     r->def->body == GW_BODY_RAW))
		return (0);
	snprintf(err, errlen,
	         "a cache route is GET to cache.Cache/Get or PUT to "
	         "cache.Cache/Set with a raw body");
	return (-1);
}

static const struct gw_handler cache_handler = {
    .name = "cache",
    .req_size = sizeof(struct cache_req),
    .check_route = cache_check_route,
    .on_request = cache_request,
};

void
gw_cache_register(void)
{
	gw_handler_register(&cache_handler);
}
