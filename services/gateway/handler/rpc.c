/*
 * "rpc": the transcoded routes.  The request (JSON or raw body, query
 * string, path parameters) becomes the route's RPC input message
 * (lib/transcode.c), the call goes to the route's upstream, and the reply
 * becomes JSON, or the HTTP error its status maps to.
 *
 * The browser and CDN levels of caching: every successful JSON reply to a
 * GET (or HEAD) carries a strong ETag (64-bit FNV-1a of the body and its
 * content type) and
 * "Cache-Control: private, no-cache", which makes clients revalidate; a
 * request whose If-None-Match lists the tag (or "*") gets 304 with no
 * body (gw_respond_etag).
 *
 * A DELETE of a link (a GW_RF_DROP_CODE route) drops the code from this
 * gateway's redirect cache before the answer goes out: the shortener's
 * broadcast on the cache engine's channel reaches every gateway, but on a
 * path of its own that may lag behind the reply, and the client that
 * deleted a link must not be redirected by the gateway it asked.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "status.h"

#include "handlers.h"

static void
rpc_reply(struct gw_req *rq, void *arg, int idx, const struct gw_reply *r)
{
	const struct gw_croute *rt = gw_creq(rq)->route;
	int status = rt->def->status ? rt->def->status : 200;
	char *json = NULL;
	size_t jlen = 0, clen;
	const char *code;

	(void) arg;
	(void) idx;
	if (r->status != CM_OK) {
		gw_respond_reply_error(rq, rt->up, r);
		return;
	}
	if (status != 204 && gw_transcode_reply(rt, r->payload, r->len,
	                                        rq->arena, &json, &jlen) != 0) {
		log_warnx("event=bad_reply route=\"%s\"", rt->label);
		gw_respond_error(rq, 502, "INTERNAL",
		                 "malformed upstream reply");
		return;
	}
	if ((rt->def->flags & GW_RF_DROP_CODE) &&
	    (code = gw_req_param(rq, "code", &clen)) != NULL)
		gw_rcache_drop(code, clen);
	if (status == 204)
		gw_respond(rq, 204, NULL, NULL, 0);
	else if (rq->method == HTTP_GET || rq->method == HTTP_HEAD)
		gw_respond_etag(rq, status, "application/json", json, jlen);
	else
		gw_respond(rq, status, "application/json", json, jlen);
}

static void
rpc_request(struct gw_req *rq)
{
	const struct gw_creq *cr = gw_creq(rq);
	const struct gw_croute *rt = cr->route;
	uint8_t *payload;
	size_t len, klen;
	char err[256];

	if ((rt->def->flags & GW_RF_KEY_LIMIT) &&
	    gw_req_param(rq, "key", &klen) != NULL && klen > GW_KEY_MAX) {
		gw_respond_error(rq, 413, "RESOURCE_EXHAUSTED",
		                 "key longer than 512 bytes");
		return;
	}
	if (gw_transcode_request(rt, &cr->match, cr->query, cr->qlen,
	                         rq->body.p, rq->body.len, rq->arena, &payload,
	                         &len, err, sizeof(err)) != 0) {
		gw_respond_error(rq, 400, "INVALID_ARGUMENT", err);
		return;
	}
	gw_req_call(rq, rt->up, rt->def->rpc, payload, len,
	            gw_core_cfg.rpc_timeout_ms, rpc_reply, NULL, 0);
}

static int
rpc_check_route(const struct gw_croute *r, char *err, size_t errlen)
{
	if (r->in == NULL) {
		snprintf(err, errlen, "an rpc route names no rpc");
		return (-1);
	}
	return (0);
}

static const struct gw_handler rpc_handler = {
    .name = "rpc",
    .check_route = rpc_check_route,
    .on_request = rpc_request,
};

void
gw_rpc_register(void)
{
	gw_handler_register(&rpc_handler);
}
