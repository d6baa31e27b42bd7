/*
 * GET/HEAD /{code}: the redirect, the gateway's hot path.
 *
 * The cache.  The redirect cache is the L1 of the process's cache engine
 * (rcache.c), shared by the loops, in the shortener's namespace and value
 * format ("<expires_at> <long_url>"; an unknown code is the engine's
 * negative entry).  A hit answers without leaving the loop thread:
 * cm_cache_l1_lookup (no Redis; a shard lock and a copy of the value),
 * one response appended to the connection's output.  A miss asks the
 * shortener (Resolve) and fills the L1 with cm_cache_l1_fill and the
 * ticket the lookup gave, so a delete broadcast while the call was out is
 * never undone by it.  Live links stay GATEWAY_CACHE_TTL_MS, never past
 * their expiry; unknown and expired codes are remembered for
 * GATEWAY_NEGATIVE_TTL_MS (an expired link as its value, whose expires_at
 * is past: it is answered 410).
 *
 * Invalidation is the engine's: the shortener deletes a code with
 * cm_cache_delete, whose broadcast on the engine's channel drops it here.
 * While the engine's subscription is down it trusts no L1 entry, so every
 * redirect asks the shortener until the subscription is back (and the L1
 * cleared).  A DELETE proxied by this gateway drops the code from this L1
 * before it answers (handler.c), so it is gone here at once.
 *
 * Clicks.  Every redirect served counts one click in its loop's table
 * (no lock); a timer per loop sends the counts to the shortener
 * (RecordClicks) in batches.  A failed batch is merged back and retried
 * with the next flush; the table is bounded, and clicks for new codes
 * beyond its bound are dropped and counted.  When the gateway drains, the
 * last flush is awaited before the loop ends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "shortener.pb-c.h"
#include "status.h"
#include "util.h"

#include "gateway.h"

#define CLICK_BATCH      500
#define PERMANENT_MAXAGE 300

static struct gw_upstream *
shortener_upstream(void)
{
	static struct gw_upstream *up;

	if (up == NULL)
		up = gw_upstream_find("shortener");
	return (up);
}

/* Counts the click and sends the redirect. */
static void
redirect_send(struct gw_conn *c, const char *code, size_t clen, const char *url,
              size_t ulen, int64_t expires_at)
{
	struct gw_loop *l = c->loop;
	const char *cc = "private, no-store";
	char buf[48];

	if (gw_clicks_add(&l->clicks, code, clen, 1) != 0)
		l->clicks_dropped++;
	if (gw_cfg.redirect_status == 301) {
		int64_t maxage = PERMANENT_MAXAGE;

		if (expires_at > 0) {
			int64_t left = expires_at - cm_now_s();

			if (left < maxage)
				maxage = left > 0 ? left : 0;
		}
		snprintf(buf, sizeof(buf), "public, max-age=%lld",
		         (long long) maxage);
		cc = buf;
	}
	gw_respond_redirect(c, gw_cfg.redirect_status, url, ulen, cc);
}

static void
respond_gone(struct gw_conn *c)
{
	gw_respond_error(c, 410, "NOT_FOUND", "link expired", NULL);
}

static void
respond_unknown(struct gw_conn *c)
{
	gw_respond_error(c, 404, "NOT_FOUND", "no such link", NULL);
}

static bool
expired(int64_t expires_at)
{
	return (expires_at > 0 && cm_now_s() >= expires_at);
}

/*
 * Caches what the shortener said about code for ttl_ms: e, or "not
 * found" if e is NULL.  Only after a miss that gave a ticket; a value
 * too long to be found again is not cached.
 */
static void
cache_fill(struct gw_conn *c, const char *code, size_t clen,
           const struct gw_redir *e, int64_t ttl_ms)
{
	char buf[GW_REDIR_VALUE_MAX + 1];
	size_t n = 0;

	if (gw_rcache == NULL || ttl_ms <= 0 || !c->req.ticket.valid)
		return;
	if (e != NULL && (n = gw_redir_format(e, buf, sizeof(buf))) == 0)
		return;
	cm_cache_l1_fill(gw_rcache, GW_RCACHE_NS, code, clen,
	                 e != NULL ? buf : NULL, n, ttl_ms, &c->req.ticket);
}

static void
resolve_reply(struct gw_conn *c, int idx, const struct gw_reply *r)
{
	struct gw_req *rq = &c->req;
	Shortener__ResolveResponse *resp;
	struct gw_redir e;
	const char *code;
	size_t clen, ulen;
	bool usable;
	int64_t now_s, ttl;

	(void) idx;
	code = gw_match_param(&rq->match, "code", &clen);
	if (r->status == CM_NOT_FOUND) {
		cache_fill(c, code, clen, NULL, gw_cfg.negative_ttl_ms);
		respond_unknown(c);
		return;
	}
	if (r->status != CM_OK) {
		gw_error_from_reply(c, rq->route->up, r);
		return;
	}
	resp = shortener__resolve_response__unpack(&c->arena.pb, r->len,
	                                           r->payload);
	if (resp == NULL) {
		gw_respond_error(c, 502, "INTERNAL", "malformed upstream reply",
		                 NULL);
		return;
	}
	ulen = resp->long_url ? strlen(resp->long_url) : 0;
	usable = ulen > 0 && ulen <= GW_REDIR_URL_MAX &&
	         gw_header_safe(resp->long_url, ulen);
	if (resp->expired) {
		/*
		 * Cached as the link, with an expires_at this gateway's clock
		 * also finds past, so that a hit says 410 as the shortener did.
		 */
		now_s = cm_now_s();
		e.expires_at = resp->expires_at > 0 && resp->expires_at < now_s
		                   ? resp->expires_at
		                   : now_s;
		e.url = usable ? resp->long_url : "";
		e.url_len = usable ? ulen : 0;
		cache_fill(c, code, clen, &e, gw_cfg.negative_ttl_ms);
		respond_gone(c);
		return;
	}
	if (!usable) {
		log_warnx("event=bad_long_url code=%.*s", (int) clen, code);
		gw_respond_error(c, 502, "INTERNAL", "unusable redirect target",
		                 NULL);
		return;
	}
	e.expires_at = resp->expires_at > 0 ? resp->expires_at : 0;
	e.url = resp->long_url;
	e.url_len = ulen;
	ttl =
	    gw_redir_ttl_ms(cm_now_ms(), resp->expires_at, gw_cfg.cache_ttl_ms);
	cache_fill(c, code, clen, &e, ttl);
	redirect_send(c, code, clen, resp->long_url, ulen, resp->expires_at);
}

/*
 * Answers from the redirect cache if it can.  On a miss returns false,
 * with rq->ticket set if the engine can take a fill for this code.
 */
static bool
redirect_cached(struct gw_conn *c, const char *code, size_t clen)
{
	cm_cache_value v;
	struct gw_redir e;
	bool gone;
	int rv;

	rv = cm_cache_l1_lookup(gw_rcache, GW_RCACHE_NS, code, clen, &v,
	                        &c->req.ticket);
	if (rv == CM_NOT_FOUND) {
		gw_metrics_cache(c->loop, true);
		respond_unknown(c);
		return (true);
	}
	if (rv == CM_OK) {
		if (gw_redir_parse(v.data, v.len, &e) == 0 &&
		    ((gone = expired(e.expires_at)) || e.url_len > 0)) {
			gw_metrics_cache(c->loop, true);
			if (gone)
				respond_gone(c);
			else
				redirect_send(c, code, clen, e.url, e.url_len,
				              e.expires_at);
			free(v.data);
			return (true);
		}
		log_debug("event=bad_cached_value code=%.*s", (int) clen, code);
		free(v.data);
	}
	gw_metrics_cache(c->loop, false);
	return (false);
}

void
gw_redirect_handle(struct gw_conn *c)
{
	struct gw_req *rq = &c->req;
	Shortener__ResolveRequest req = SHORTENER__RESOLVE_REQUEST__INIT;
	const char *code;
	size_t clen, len;
	uint8_t *payload;

	code = gw_match_param(&rq->match, "code", &clen);
	if (code == NULL || !gw_code_valid(code, clen)) {
		respond_unknown(c);
		return;
	}
	if (gw_rcache != NULL && redirect_cached(c, code, clen))
		return;
	req.code = cm_pbstr(code);
	len = shortener__resolve_request__get_packed_size(&req);
	payload = cm_arena_alloc(&c->arena, len ? len : 1);
	shortener__resolve_request__pack(&req, payload);
	gw_request_call(c, rq->route->up, rq->route->def->rpc, payload, len, 0,
	                resolve_reply);
}

/* ---- click flushing ---- */

struct flush_batch {
	Shortener__RecordClicksRequest req;
};

static void
flush_done(void *arg, uint64_t tag, int idx, const struct gw_reply *r)
{
	struct gw_loop *l = arg;
	struct flush_batch *b = l->flush_batches;
	Shortener__RecordClicksRequest *req = &b[idx].req;
	uint64_t sum = 0, lost = 0;
	size_t i;

	(void) tag;
	for (i = 0; i < req->n_clicks; i++)
		sum += (uint64_t) req->clicks[i]->count;
	if (r->status == CM_OK) {
		gw_metrics_clicks(sum, 0);
	} else if (r->status == CM_INVALID_ARGUMENT ||
	           r->status == CM_UNIMPLEMENTED) {
		/* Would fail again: drop, loudly. */
		log_warnx("event=clicks_rejected loop=%u codes=%zu clicks=%llu "
		          "code=%s msg=\"%s\"",
		          l->id, req->n_clicks, (unsigned long long) sum,
		          cm_code_name(r->status), r->message);
		gw_metrics_clicks(0, sum);
	} else {
		for (i = 0; i < req->n_clicks; i++) {
			Shortener__ClickCount *cc = req->clicks[i];

			if (gw_clicks_add(&l->clicks, cc->code,
			                  strlen(cc->code), cc->count) != 0)
				lost += (uint64_t) cc->count;
		}
		log_warnx("event=clicks_retry loop=%u codes=%zu code=%s "
		          "msg=\"%s\"",
		          l->id, req->n_clicks, cm_code_name(r->status),
		          r->message);
		if (lost > 0)
			gw_metrics_clicks(0, lost);
	}
	if (--l->flush_inflight == 0) {
		l->flush_batches = NULL;
		cm_arena_reset(&l->flush_arena);
		if (l->draining)
			gw_loop_maybe_finish(l);
	}
}

void
gw_clicks_flush(struct gw_loop *l, bool final)
{
	struct gw_upstream *up = shortener_upstream();
	struct flush_batch *b;
	size_t n = l->clicks.n, nb, i, it = 0;
	const char *code;
	size_t clen;
	int64_t count;
	cm_rpc_meta meta;

	if (l->clicks_dropped > 0) {
		gw_metrics_clicks(0, l->clicks_dropped);
		l->clicks_dropped = 0;
	}
	if (l->flush_inflight > 0 || n == 0 || up == NULL)
		return;
	l->flush_last = (int64_t) uv_now(&l->loop);
	nb = (n + CLICK_BATCH - 1) / CLICK_BATCH;
	b = cm_arena_alloc(&l->flush_arena, nb * sizeof(*b));
	for (i = 0; i < nb; i++) {
		size_t cnt = i + 1 < nb ? CLICK_BATCH : n - i * CLICK_BATCH;

		shortener__record_clicks_request__init(&b[i].req);
		b[i].req.clicks = cm_arena_alloc(
		    &l->flush_arena, cnt * sizeof(*b[i].req.clicks));
	}
	i = 0;
	while (gw_clicks_next(&l->clicks, &it, &code, &clen, &count)) {
		Shortener__RecordClicksRequest *req = &b[i / CLICK_BATCH].req;
		Shortener__ClickCount *cc =
		    cm_arena_alloc(&l->flush_arena, sizeof(*cc));

		shortener__click_count__init(cc);
		cc->code = cm_arena_strndup(&l->flush_arena, code, clen);
		cc->count = count;
		req->clicks[req->n_clicks++] = cc;
		i++;
	}
	gw_clicks_clear(&l->clicks);
	l->flush_batches = b;
	l->flush_inflight = (int) nb;
	memset(&meta, 0, sizeof(meta));
	for (i = 0; i < nb; i++) {
		size_t len = shortener__record_clicks_request__get_packed_size(
		    &b[i].req);
		uint8_t *payload =
		    cm_arena_alloc(&l->flush_arena, len ? len : 1);

		shortener__record_clicks_request__pack(&b[i].req, payload);
		gw_upstream_call(
		    l, up, &meta, "shortener.Shortener/RecordClicks", payload,
		    len, gw_cfg.rpc_timeout_ms, flush_done, l, 0, (int) i);
	}
	if (final)
		log_info("event=clicks_final_flush loop=%u codes=%zu", l->id,
		         n);
}
