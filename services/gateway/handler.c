/*
 * What happens to a request once it has been parsed: the checks made as
 * soon as its headers are in (request id, client address, route, token,
 * Expect, body size), the dispatch to its handler once it is complete, and
 * the two generic handlers: transcoded RPC routes and /healthz.
 *
 * Deciding at headers-complete time means a request that will be refused
 * (404, 405, 401, 413, 417) is refused before its body is read: with
 * "Expect: 100-continue" the client never sends it, otherwise the body is
 * read and discarded so the connection stays usable.
 *
 * A DELETE of a link (a GW_RF_DROP_CODE route) drops the code from this
 * gateway's redirect cache before the answer goes out: the shortener's
 * broadcast on the cache engine's channel reaches every gateway, but on a
 * path of its own that may lag behind the reply, and the client that
 * deleted a link must not be redirected by the gateway it asked.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "health.pb-c.h"
#include "log.h"
#include "status.h"
#include "util.h"

#include "gateway.h"

#define DEADLINE_GRACE_MS 2000

static void
early(struct gw_req *rq, int status, const char *msg, const char *extra)
{
	rq->early_status = status;
	rq->early_msg = msg;
	rq->early_extra = extra;
}

static const char *
trim(const char *s, size_t *len)
{
	while (*len > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		(*len)--;
	}
	while (*len > 0 && (s[*len - 1] == ' ' || s[*len - 1] == '\t'))
		(*len)--;
	return (s);
}

void
gw_request_rid(struct gw_conn *c)
{
	static const char hex[] = "0123456789abcdef";
	struct gw_loop *l = c->loop;
	struct gw_req *rq = &c->req;
	uint64_t v = ++l->rid_seq;
	size_t n, i;
	const char *in = rq->rid_in.p;
	size_t inlen = rq->rid_in.len;

	if (inlen > 0) {
		in = trim(in, &inlen);
		if (gw_rid_valid(in, inlen)) {
			memcpy(rq->rid, in, inlen);
			rq->rid[inlen] = '\0';
			return;
		}
	}
	/* <12 hex per loop, random>-<16 hex counter>: unique, no syscall. */
	n = strlen(l->rid_prefix);
	memcpy(rq->rid, l->rid_prefix, n);
	rq->rid[n++] = '-';
	for (i = 0; i < 16; i++)
		rq->rid[n + i] = hex[(v >> (60 - 4 * i)) & 15];
	rq->rid[n + 16] = '\0';
}

/* Verifies the bearer token, if the route reads one. */
static void
request_auth(struct gw_conn *c)
{
	struct gw_req *rq = &c->req;
	enum gw_auth mode = rq->route->def->auth;
	const char *tok;
	size_t toklen;
	int err;

	if (mode == GW_AUTH_NONE)
		return;
	if (rq->nauth > 1) {
		early(rq, 400, "more than one Authorization header", NULL);
		return;
	}
	if (rq->auth.len == 0) {
		if (mode == GW_AUTH_REQUIRED)
			early(rq, 401, "authentication required",
			      "WWW-Authenticate: Bearer\r\n");
		return;
	}
	if (gw_bearer(rq->auth.p, rq->auth.len, &tok, &toklen) != 0) {
		early(rq, 401, "expected a Bearer token",
		      "WWW-Authenticate: Bearer\r\n");
		return;
	}
	err =
	    gw_jwt_verify(tok, toklen, gw_cfg.jwt_secret, gw_cfg.jwt_secret_len,
	                  cm_now_s(), &c->arena, &rq->id);
	if (err != GW_JWT_OK) {
		memset(&rq->id, 0, sizeof(rq->id));
		early(rq, 401, gw_jwt_strerror(err),
		      "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
	}
}

int
gw_request_head(struct gw_conn *c)
{
	struct gw_req *rq = &c->req;
	http_parser *p = &c->parser;
	const char *method = http_method_str((enum http_method) p->method);
	uint64_t clen = p->content_length;
	bool chunked = (p->flags & F_CHUNKED) != 0;
	bool has_body;
	enum gw_match_result mr;

	rq->method = p->method;
	rq->have_method = true;
	rq->head = p->method == HTTP_HEAD;
	rq->http10 = p->http_major == 1 && p->http_minor == 0;
	rq->keepalive = http_should_keep_alive(p) && !p->upgrade;
	gw_request_rid(c);

	/* Who is calling: the peer, or X-Forwarded-For from a trusted one. */
	memcpy(rq->client, c->peer, 16);
	rq->client_ip = c->peer_str;
	if (rq->xff.len > 0 && gw_cfg.trust.n > 0) {
		gw_client_ip(&gw_cfg.trust, c->peer, rq->xff.p, rq->xff.len,
		             rq->client);
		if (memcmp(rq->client, c->peer, 16) != 0) {
			char *s = cm_arena_alloc(&c->arena, 48);

			gw_ip_format(rq->client, s, 48);
			rq->client_ip = s;
		}
	}

	/* Route. */
	if (rq->url.len == 0 ||
	    gw_split_target(rq->url.p, rq->url.len, &rq->path, &rq->plen,
	                    &rq->query, &rq->qlen) != 0) {
		early(rq, 400, "malformed request target", NULL);
	} else {
		mr = gw_router_match(&gw_router, method, rq->path, rq->plen,
		                     &c->arena, &rq->match);
		switch (mr) {
		case GW_MATCH_OK:
			rq->route = rq->match.route;
			request_auth(c);
			break;
		case GW_MATCH_BAD_METHOD:
			early(rq, 405, "method not allowed",
			      cm_arena_printf(&c->arena, "Allow: %s\r\n",
			                      rq->match.allow));
			break;
		case GW_MATCH_BAD_PATH:
			early(rq, 400, "malformed path", NULL);
			break;
		default:
			early(rq, 404, "not found", NULL);
			break;
		}
	}

	/* X-API-Key: only its id travels (to the rate limiter). */
	if (rq->apikey.len > 0) {
		size_t kl = rq->apikey.len;
		const char *k = trim(rq->apikey.p, &kl);

		if (!gw_api_key_id(k, kl, rq->api_key) && rq->early_status == 0)
			early(rq, 400, "malformed X-API-Key", NULL);
	}

	/* Expect: only 100-continue exists. */
	if (rq->expect.len > 0) {
		size_t el = rq->expect.len;
		const char *e = trim(rq->expect.p, &el);

		if (!gw_strcaseeq(e, el, "100-continue")) {
			early(rq, 417, "unsupported expectation", NULL);
			return (-1);
		}
		rq->has_expect = !rq->http10;
	}

	has_body = chunked || (clen != ULLONG_MAX && clen > 0);
	if (clen != ULLONG_MAX && clen > gw_cfg.max_body_bytes) {
		early(rq, 413, "request body too large", NULL);
		return (-1);
	}
	if (rq->early_status != 0) {
		/* Refused: do not invite a body we would throw away. */
		if (has_body && rq->has_expect)
			return (-1);
		rq->discard_body = true;
		return (0);
	}
	if (rq->route->def->body == GW_BODY_NONE) {
		rq->discard_body = true;
	} else if (!chunked && clen != ULLONG_MAX && clen > 0) {
		rq->body.p = cm_arena_alloc(&c->arena, (size_t) clen + 1);
		rq->body.cap = (size_t) clen + 1;
	}
	if (has_body && rq->has_expect)
		gw_respond_continue(c);
	return (0);
}

void
gw_request_meta(struct gw_conn *c, cm_rpc_meta *meta)
{
	struct gw_req *rq = &c->req;
	size_t n = 0;

	memset(meta, 0, sizeof(*meta));
	meta->request_id = rq->rid;
	meta->user_id = rq->id.user;
	meta->meta[n].key = "client_ip";
	meta->meta[n++].value = rq->client_ip;
	if (rq->id.role != NULL) {
		meta->meta[n].key = "claim.role";
		meta->meta[n++].value = rq->id.role;
	}
	if (rq->id.tier != NULL) {
		meta->meta[n].key = "claim.tier";
		meta->meta[n++].value = rq->id.tier;
	}
	meta->nmeta = n;
}

/* Completion of a call made for a request; runs on the loop. */
static void
conn_call_done(void *arg, uint64_t tag, int idx, const struct gw_reply *r)
{
	struct gw_conn *c = arg;

	c->refs--;
	if (c->closed) {
		gw_conn_unref_closed(c);
		gw_loop_maybe_finish(c->loop);
		return;
	}
	if (c->closing || tag != c->seq || !c->busy)
		return; /* answered meanwhile (timeout) */
	c->req.pending--;
	c->req.on_reply(c, idx, r);
	if (!c->busy)
		gw_conn_resume(c);
}

void
gw_request_call(struct gw_conn *c, struct gw_upstream *u, const char *method,
                const uint8_t *payload, size_t len, int idx, gw_reply_cb cb)
{
	struct gw_req *rq = &c->req;
	cm_rpc_meta meta;

	gw_request_meta(c, &meta);
	rq->on_reply = cb;
	rq->pending++;
	rq->deadline = (int64_t) uv_now(&c->loop->loop) +
	               gw_cfg.rpc_timeout_ms + DEADLINE_GRACE_MS;
	c->busy = true;
	c->refs++;
	gw_upstream_call(c->loop, u, &meta, method, payload, len,
	                 gw_cfg.rpc_timeout_ms, conn_call_done, c, c->seq, idx);
}

void
gw_error_from_reply(struct gw_conn *c, const struct gw_upstream *u,
                    const struct gw_reply *r)
{
	int status = cm_code_http(r->status);
	const char *msg = r->message;

	switch (r->status) {
	case CM_INTERNAL:
	case CM_UNKNOWN:
	case CM_DATA_LOSS:
		/* Server-side details stay in the server's log. */
		msg = "internal error";
		break;
	case CM_UNAVAILABLE:
	case CM_DEADLINE_EXCEEDED:
		msg = cm_arena_printf(&c->arena, "%s: %s", u->name,
		                      r->message[0] ? r->message
		                                    : cm_code_name(r->status));
		break;
	default:
		if (msg[0] == '\0')
			msg = cm_code_name(r->status);
	}
	gw_respond_error(c, status, cm_code_name(r->status), msg, NULL);
}

/* ---- transcoded RPC routes ---- */

/*
 * The browser and CDN levels of caching: a strong ETag (64-bit FNV-1a of
 * the body) and a Cache-Control that makes clients revalidate; a request
 * whose If-None-Match lists the tag (or "*") gets 304 with no body.
 */
static bool
etag_listed(const char *inm, size_t len, const char *tag)
{
	size_t tl = strlen(tag);

	for (size_t i = 0; i < len; i++) {
		if (inm[i] == '*')
			return (true);
		if (i + tl <= len && memcmp(inm + i, tag, tl) == 0)
			return (true);
	}
	return (false);
}

static void
etag_respond(struct gw_conn *c, int status, const char *body, size_t len)
{
	struct gw_req *rq = &c->req;
	uint64_t h = 14695981039346656037ULL;
	char tag[24];
	const char *extra;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char) body[i]) * 1099511628211ULL;
	snprintf(tag, sizeof(tag), "\"%016llx\"", (unsigned long long) h);
	extra = cm_arena_printf(&c->arena,
	                        "ETag: %s\r\nCache-Control: private, "
	                        "max-age=0, must-revalidate\r\n",
	                        tag);
	if (rq->inm.len > 0 && etag_listed(rq->inm.p, rq->inm.len, tag)) {
		gw_respond(c, 304, NULL, extra, NULL, 0);
		return;
	}
	gw_respond(c, status, "application/json", extra, body, len);
}

/* Sends a transcoded route's success response (json is NULL for 204). */
static void
proxy_answer(struct gw_conn *c, int status, const char *json, size_t jlen)
{
	if (status == 204) {
		gw_respond(c, 204, NULL, NULL, NULL, 0);
		return;
	}
	if (c->req.route->def->flags & GW_RF_ETAG) {
		etag_respond(c, status, json, jlen);
		return;
	}
	gw_respond(c, status, "application/json", NULL, json, jlen);
}

static void
proxy_reply(struct gw_conn *c, int idx, const struct gw_reply *r)
{
	struct gw_req *rq = &c->req;
	const struct gw_croute *rt = rq->route;
	int status = rt->def->status ? rt->def->status : 200;
	char *json = NULL;
	size_t jlen = 0, clen;
	const char *code;

	(void) idx;
	if (r->status != CM_OK) {
		gw_error_from_reply(c, rt->up, r);
		return;
	}
	if (status != 204 && gw_transcode_reply(rt, r->payload, r->len,
	                                        &c->arena, &json, &jlen) != 0) {
		log_warnx("event=bad_reply route=\"%s\"", rt->label);
		gw_respond_error(c, 502, "INTERNAL", "malformed upstream reply",
		                 NULL);
		return;
	}
	if ((rt->def->flags & GW_RF_DROP_CODE) &&
	    (code = gw_match_param(&rq->match, "code", &clen)) != NULL)
		gw_rcache_drop(code, clen);
	proxy_answer(c, status, json, jlen);
}

static void
proxy_handle(struct gw_conn *c)
{
	struct gw_req *rq = &c->req;
	const struct gw_croute *rt = rq->route;
	uint8_t *payload;
	size_t len;
	char err[256];
	size_t klen;

	if ((rt->def->flags & GW_RF_KEY_LIMIT) &&
	    gw_match_param(&rq->match, "key", &klen) != NULL &&
	    klen > GW_KEY_MAX) {
		gw_respond_error(c, 413, "RESOURCE_EXHAUSTED",
		                 "key longer than 512 bytes", NULL);
		return;
	}
	if (gw_transcode_request(rt, &rq->match, rq->query, rq->qlen,
	                         rq->body.p, rq->body.len, &c->arena, &payload,
	                         &len, err, sizeof(err)) != 0) {
		gw_respond_error(c, 400, "INVALID_ARGUMENT", err, NULL);
		return;
	}
	gw_request_call(c, rt->up, rt->def->rpc, payload, len, 0, proxy_reply);
}

/* ---- /healthz: Health.Check on every upstream, concurrently ---- */

struct health_result {
	int status;
	const char *message;
	Health__HealthCheckResponse *resp;
};

static const char *
serving_name(int s)
{
	switch (s) {
	case HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING:
		return ("SERVING");
	case HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING:
		return ("NOT_SERVING");
	default:
		return ("UNKNOWN");
	}
}

static void health_answer(struct gw_conn *c);

static void
health_reply(struct gw_conn *c, int idx, const struct gw_reply *r)
{
	struct gw_req *rq = &c->req;
	struct health_result *res = rq->hstate;

	res[idx].status = r->status;
	res[idx].message = cm_arena_strdup(&c->arena, r->message);
	if (r->status == CM_OK)
		res[idx].resp = health__health_check_response__unpack(
		    &c->arena.pb, r->len, r->payload);
	if (rq->pending == 0)
		health_answer(c);
}

/* Every upstream has answered (or failed): the /healthz response. */
static void
health_answer(struct gw_conn *c)
{
	struct health_result *res = c->req.hstate;
	json_t *top, *services;
	bool all = true, cache_ok;
	const char *cache_detail;
	size_t i, n;
	char *text;

	services = json_object();
	for (i = 0; i < gw_nupstreams; i++) {
		json_t *svc = json_object(), *deps;
		Health__HealthCheckResponse *hr = res[i].resp;

		if (res[i].status != CM_OK || hr == NULL) {
			json_object_set_new(svc, "status",
			                    json_string("UNREACHABLE"));
			json_object_set_new(
			    svc, "error",
			    json_string(res[i].status != CM_OK
			                    ? res[i].message
			                    : "malformed reply"));
			if (!gw_upstreams[i].soft)
				all = false;
		} else {
			if (hr->status !=
			    HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING)
				all = false;
			json_object_set_new(
			    svc, "status",
			    json_string(serving_name(hr->status)));
			deps = json_object();
			for (n = 0; n < hr->n_dependencies; n++) {
				Health__Dependency *d = hr->dependencies[n];

				json_object_set_new(
				    deps, d->name,
				    json_pack("{s:b, s:s}", "ok", d->ok,
				              "detail",
				              d->detail ? d->detail : ""));
			}
			json_object_set_new(svc, "dependencies", deps);
		}
		json_object_set_new(services, gw_upstreams[i].name, svc);
	}
	/* The redirect cache degrades to asking the shortener: shown, but
	 * never a reason for NOT_SERVING. */
	cache_ok = gw_rcache_state(&cache_detail);
	top =
	    json_pack("{s:s, s:o, s:{s:b, s:s}}", "status",
	              all ? "SERVING" : "NOT_SERVING", "services", services,
	              "redirect_cache", "ok", cache_ok, "detail", cache_detail);
	text = top ? json_dumps(top, JSON_COMPACT) : NULL;
	json_decref(top);
	if (text == NULL) {
		gw_respond_error(c, 500, "INTERNAL", "out of memory", NULL);
		return;
	}
	gw_respond(c, all ? 200 : 503, "application/json", NULL, text,
	           strlen(text));
	free(text);
}

static void
health_handle(struct gw_conn *c)
{
	Health__HealthCheckRequest hreq = HEALTH__HEALTH_CHECK_REQUEST__INIT;
	size_t i, len;
	uint8_t *payload;

	len = health__health_check_request__get_packed_size(&hreq);
	payload = cm_arena_alloc(&c->arena, len ? len : 1);
	health__health_check_request__pack(&hreq, payload);
	c->req.hstate = cm_arena_alloc(
	    &c->arena, gw_nupstreams * sizeof(struct health_result));
	if (gw_nupstreams == 0) {
		health_answer(c);
		return;
	}
	for (i = 0; i < gw_nupstreams; i++)
		gw_request_call(c, &gw_upstreams[i], "health.Health/Check",
		                payload, len, (int) i, health_reply);
}

void
gw_request_dispatch(struct gw_conn *c)
{
	struct gw_req *rq = &c->req;

	if (rq->early_status != 0) {
		gw_respond_error(c, rq->early_status,
		                 gw_http_code_name(rq->early_status),
		                 rq->early_msg, rq->early_extra);
		return;
	}
	if (!gw_ratelimit_check(c))
		return;
	switch (rq->route->def->handler) {
	case GW_H_REDIRECT:
		gw_redirect_handle(c);
		break;
	case GW_H_HEALTH:
		health_handle(c);
		break;
	case GW_H_METRICS:
		gw_metrics_handle(c);
		break;
	case GW_H_RPC:
	default:
		proxy_handle(c);
		break;
	}
}
