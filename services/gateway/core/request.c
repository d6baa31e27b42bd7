/*
 * A request's life in the core: the checks made as soon as its headers are
 * in (request id, client address, route, token, API key), the filters,
 * the handler, and the accounting when it ends.
 *
 * Deciding at headers-complete time means a request that will be refused
 * (404, 405, 401, 400, 429) is refused before its body is read: with
 * "Expect: 100-continue" the client never sends it, otherwise net/ reads
 * and discards it so the connection stays usable.
 *
 * Filters run at headers-complete time too, in registration order; a
 * filter that must wait (an RPC) pauses the request, so no body byte is
 * taken and no "100 Continue" sent before every filter has said go.  Then
 * the handler: a streaming one is started at once and gets the body in
 * pieces; the others get the whole request when the message is complete.
 *
 * Upstream calls made for a request (gw_req_call, upstream.c) hold a
 * reference to it; their reply reaches the handler or filter only while
 * the request is still the connection's current, unanswered one.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "status.h"
#include "util.h"

#include "internal.h"

#define DEADLINE_GRACE_MS 2000

void
gw_request_loop_init(struct gw_loop *l)
{
	static const char hex[] = "0123456789abcdef";
	struct gw_core_loop *cl = gw_core_loop(l);
	uint8_t rnd[6];
	size_t i;

	if (cm_random(rnd, sizeof(rnd)) != 0)
		memset(rnd, (int) l->id, sizeof(rnd));
	for (i = 0; i < sizeof(rnd); i++) {
		cl->rid_prefix[2 * i] = hex[rnd[i] >> 4];
		cl->rid_prefix[2 * i + 1] = hex[rnd[i] & 15];
	}
	cl->rid_prefix[2 * sizeof(rnd)] = '\0';
}

/* The request id: the client's X-Request-Id if sane, else a new one. */
static void
request_rid(struct gw_req *rq, char rid[130])
{
	static const char hex[] = "0123456789abcdef";
	struct gw_core_loop *cl = gw_core_loop(rq->loop);
	uint64_t v = ++cl->rid_seq;
	size_t n, i, inlen;
	const char *in = gw_req_header(rq, "x-request-id", &inlen);

	if (in != NULL) {
		in = gw_trim(in, &inlen);
		if (gw_rid_valid(in, inlen)) {
			memcpy(rid, in, inlen);
			rid[inlen] = '\0';
			return;
		}
	}
	/* <12 hex per loop, random>-<16 hex counter>: unique, no syscall. */
	n = strlen(cl->rid_prefix);
	memcpy(rid, cl->rid_prefix, n);
	rid[n++] = '-';
	for (i = 0; i < 16; i++)
		rid[n + i] = hex[(v >> (60 - 4 * i)) & 15];
	rid[n + 16] = '\0';
}

/* Answers an early refusal; extra is a header line or NULL. */
static void
refuse(struct gw_req *rq, int status, const char *msg, const char *name,
       const char *value)
{
	if (name != NULL)
		gw_resp_header(rq, name, value);
	gw_respond_error(rq, status, gw_http_code_name(status), msg);
}

/* Verifies the bearer token, if the route reads one; false: refused. */
static bool
request_auth(struct gw_req *rq, struct gw_creq *cr)
{
	enum gw_auth mode = cr->route->def->auth;
	const char *auth, *tok;
	size_t alen, toklen;
	int err;

	if (mode == GW_AUTH_NONE)
		return (true);
	if (gw_req_header_count(rq, "authorization") > 1) {
		refuse(rq, 400, "more than one Authorization header", NULL,
		       NULL);
		return (false);
	}
	if ((auth = gw_req_header(rq, "authorization", &alen)) == NULL ||
	    alen == 0) {
		if (mode != GW_AUTH_REQUIRED)
			return (true);
		refuse(rq, 401, "authentication required", "WWW-Authenticate",
		       "Bearer");
		return (false);
	}
	if (gw_bearer(auth, alen, &tok, &toklen) != 0) {
		refuse(rq, 401, "expected a Bearer token", "WWW-Authenticate",
		       "Bearer");
		return (false);
	}
	err = gw_jwt_verify(tok, toklen, gw_core_cfg.jwt_secret,
	                    gw_core_cfg.jwt_secret_len, cm_now_s(), rq->arena,
	                    &cr->id);
	if (err != GW_JWT_OK) {
		memset(&cr->id, 0, sizeof(cr->id));
		refuse(rq, 401, gw_jwt_strerror(err), "WWW-Authenticate",
		       "Bearer error=\"invalid_token\"");
		return (false);
	}
	return (true);
}

/* Who is calling: the peer, or X-Forwarded-For from a trusted one. */
static void
request_client(struct gw_req *rq, struct gw_creq *cr)
{
	const char *xff;
	size_t xlen;

	memcpy(cr->client, rq->conn->peer, 16);
	cr->client_ip = rq->conn->peer_str;
	if (gw_core_cfg.trust.n == 0 ||
	    (xff = gw_req_header_join(rq, "x-forwarded-for", &xlen)) == NULL)
		return;
	gw_client_ip(&gw_core_cfg.trust, rq->conn->peer, xff, xlen, cr->client);
	if (memcmp(cr->client, rq->conn->peer, 16) != 0) {
		char *s = cm_arena_alloc(rq->arena, 48);

		gw_ip_format(cr->client, s, 48);
		cr->client_ip = s;
	}
}

/* Routes the request; false: refused. */
static bool
request_route(struct gw_req *rq, struct gw_creq *cr)
{
	enum gw_match_result mr;

	if (rq->tlen == 0 ||
	    gw_split_target(rq->target, rq->tlen, &cr->path, &cr->plen,
	                    &cr->query, &cr->qlen) != 0) {
		refuse(rq, 400, "malformed request target", NULL, NULL);
		return (false);
	}
	mr = gw_router_match(&gw_router, gw_req_method(rq), cr->path, cr->plen,
	                     rq->arena, &cr->match);
	switch (mr) {
	case GW_MATCH_OK:
		cr->route = cr->match.route;
		cr->handler = cr->route->handler;
		return (true);
	case GW_MATCH_BAD_METHOD:
		refuse(rq, 405, "method not allowed", "Allow", cr->match.allow);
		return (false);
	case GW_MATCH_BAD_PATH:
		refuse(rq, 400, "malformed path", NULL, NULL);
		return (false);
	default:
		refuse(rq, 404, "not found", NULL, NULL);
		return (false);
	}
}

/* The filters have passed: the handler takes over. */
static void
request_start(struct gw_req *rq, struct gw_creq *cr)
{
	if (cr->handler->flags & GW_HF_STREAM)
		cr->handler->on_start(rq);
}

/*
 * Runs the filters from the next one on.  Returns true when all have said
 * go; false when one waits (the request is paused) or has answered.
 */
static bool
run_filters(struct gw_req *rq, struct gw_creq *cr)
{
	while (cr->next_filter < gw_nfilters) {
		const struct gw_filter *f = gw_filters[cr->next_filter++];
		void *fs = f->req_size > 0
		               ? cm_arena_alloc(rq->arena, f->req_size)
		               : NULL;

		if (fs != NULL)
			memset(fs, 0, f->req_size);
		switch (f->on_request(rq, fs)) {
		case GW_FILTER_GO:
			continue;
		case GW_FILTER_WAIT:
			cr->filtering = true;
			gw_req_pause(rq);
			return (false);
		case GW_FILTER_DONE:
		default:
			return (false);
		}
	}
	return (true);
}

void
gw_filter_continue(struct gw_req *rq)
{
	struct gw_creq *cr = gw_creq(rq);

	cr->filtering = false;
	if (!run_filters(rq, cr))
		return;
	request_start(rq, cr);
	if (!rq->finished)
		gw_req_resume(rq);
}

void
gw_request_head(struct gw_req *rq)
{
	struct gw_creq *cr = cm_arena_alloc(rq->arena, sizeof(*cr));
	const char *key;
	size_t klen;

	memset(cr, 0, sizeof(*cr));
	rq->app = cr;
	request_rid(rq, cr->rid);
	request_client(rq, cr);
	if (!request_route(rq, cr) || !request_auth(rq, cr))
		return;
	/* X-API-Key: only its id travels (to the rate limiter). */
	if ((key = gw_req_header(rq, "x-api-key", &klen)) != NULL &&
	    !gw_api_key_id(key, klen, cr->api_key)) {
		refuse(rq, 400, "malformed X-API-Key", NULL, NULL);
		return;
	}
	if (cr->handler->req_size > 0) {
		cr->hstate = cm_arena_alloc(rq->arena, cr->handler->req_size);
		memset(cr->hstate, 0, cr->handler->req_size);
	}
	if (cr->handler->flags & GW_HF_STREAM)
		rq->body_mode = GW_BODY_STREAM;
	else if (cr->route->def->body != GW_BODY_NONE)
		rq->body_mode = GW_BODY_BUFFER;
	else
		rq->body_mode = GW_BODY_DISCARD;
	if (cr->route->def->max_body > 0)
		rq->max_body = cr->route->def->max_body;
	if ((cr->handler->flags & GW_HF_UNFILTERED) == 0 &&
	    !run_filters(rq, cr))
		return;
	request_start(rq, cr);
}

enum gw_body_ret
gw_request_body(struct gw_req *rq, const char *p, size_t len)
{
	return (gw_creq(rq)->handler->on_body(rq, p, len));
}

void
gw_request_complete(struct gw_req *rq)
{
	struct gw_creq *cr = gw_creq(rq);

	if (cr == NULL || cr->handler == NULL || cr->filtering)
		return;
	cr->handler->on_request(rq);
}

void
gw_request_timeout(struct gw_req *rq)
{
	gw_respond_error(rq, 504, "DEADLINE_EXCEEDED",
	                 "upstream did not answer");
}

void
gw_request_end(struct gw_req *rq)
{
	struct gw_creq *cr = gw_creq(rq);
	int64_t dur = cm_mono_us() - rq->start_us;

	gw_metrics_request(rq->loop, cr != NULL ? cr->route : NULL, rq->status,
	                   dur);
	if (gw_core_cfg.access_log)
		gw_alog_request(rq, dur);
}

void
gw_request_head_lines(struct gw_req *rq, struct gw_buf *out)
{
	struct gw_creq *cr = gw_creq(rq);
	char rid[130];

	gw_buf_append(out, "X-Request-Id: ", 14);
	if (cr != NULL) {
		gw_buf_puts(out, cr->rid);
	} else {
		/* Refused before the core saw it (a malformed request). */
		request_rid(rq, rid);
		gw_buf_puts(out, rid);
	}
	gw_buf_append(out, "\r\n", 2);
}

const char *
gw_req_param(const struct gw_req *rq, const char *name, size_t *len)
{
	return (gw_match_param(&gw_creq(rq)->match, name, len));
}

/* Whether an If-None-Match value lists tag (or is "*"). */
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

void
gw_respond_etag(struct gw_req *rq, int status, const char *ctype,
                const void *body, size_t len)
{
	char tag[24];
	const char *inm;
	size_t ilen;
	uint64_t h = GW_FNV_INIT;

	/* The type too: the same bytes as another type are another
	 * representation, and a 304 would keep the old type. */
	if (ctype != NULL)
		h = gw_fnv1a(h, ctype, strlen(ctype) + 1);
	h = gw_fnv1a(h, body, len);
	snprintf(tag, sizeof(tag), "\"%016llx\"", (unsigned long long) h);
	gw_resp_header(rq, "ETag", tag);
	gw_resp_header(rq, "Cache-Control", "private, no-cache");
	if ((inm = gw_req_header_join(rq, "if-none-match", &ilen)) != NULL &&
	    etag_listed(inm, ilen, tag)) {
		gw_respond(rq, 304, NULL, NULL, 0);
		return;
	}
	gw_respond(rq, status, ctype, body, len);
}

void
gw_req_meta(const struct gw_req *rq, cm_rpc_meta *meta)
{
	const struct gw_creq *cr = gw_creq(rq);
	size_t n = 0;

	memset(meta, 0, sizeof(*meta));
	meta->request_id = cr->rid;
	meta->user_id = cr->id.user;
	meta->meta[n].key = "client_ip";
	meta->meta[n++].value = cr->client_ip;
	if (cr->id.role != NULL) {
		meta->meta[n].key = "claim.role";
		meta->meta[n++].value = cr->id.role;
	}
	if (cr->id.tier != NULL) {
		meta->meta[n].key = "claim.tier";
		meta->meta[n++].value = cr->id.tier;
	}
	meta->nmeta = n;
}

void
gw_respond_reply_error(struct gw_req *rq, const struct gw_upstream *u,
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
		msg = cm_arena_printf(rq->arena, "%s: %s", u->name,
		                      r->message[0] ? r->message
		                                    : cm_code_name(r->status));
		break;
	default:
		if (msg[0] == '\0')
			msg = cm_code_name(r->status);
	}
	gw_respond_error(rq, status, cm_code_name(r->status), msg);
}

/* The request's deadline covers a call of timeout_ms made now. */
void
gw_req_deadline_cover(struct gw_req *rq, int64_t timeout_ms)
{
	int64_t d = gw_loop_now(rq->loop) + timeout_ms + DEADLINE_GRACE_MS;

	if (d > rq->deadline)
		rq->deadline = d;
}
