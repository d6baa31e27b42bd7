/*
 * GET/HEAD /{code}: the redirect, the gateway's hot path.
 *
 * The cache.  One in-process cache (cm_l1, sharded, bounded in bytes)
 * shared by the loops maps a code to its entry (gwcore.h: kind,
 * expires_at, time cached, long URL).  A hit answers without leaving the
 * loop thread: one shard lock, one copy into a stack buffer, one response
 * appended to the connection's output.  A miss asks the shortener
 * (Resolve) and fills the cache with cm_l1_set_if and the epoch read
 * before the call, so a delete that raced the call is never undone by it.
 * Live links stay GATEWAY_CACHE_TTL_MS, never past their expiry; unknown
 * and expired codes are remembered for GATEWAY_NEGATIVE_TTL_MS.
 *
 * Invalidation.  The shortener publishes every deleted code on
 * "shortener:invalidate"; the subscription (common/invalidate) drops it
 * here, and clears everything whenever the subscription is re-established
 * (messages may have been lost meanwhile).  While it is down, an entry is
 * trusted for one second only, so a delete elsewhere still shows within a
 * second.  A DELETE proxied by this gateway drops the code itself before
 * answering (handler.c), so it is gone here at once.
 *
 * Clicks.  Every redirect served counts one click in its loop's table
 * (no lock); a timer per loop sends the counts to the shortener
 * (RecordClicks) in batches.  A failed batch is merged back and retried
 * with the next flush; the table is bounded, and clicks for new codes
 * beyond its bound are dropped and counted.  When the gateway drains, the
 * last flush is awaited before the loop ends.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "shortener.pb-c.h"
#include "status.h"
#include "util.h"

#include "gateway.h"

#define CLICK_BATCH      500
#define UNSUBSCRIBED_MS  1000
#define PERMANENT_MAXAGE 300

cm_invalidator *gw_invalidator;
atomic_bool gw_inval_ok;

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

static void
cache_fill(const char *code, size_t clen, int kind, int64_t expires_at,
           const char *url, size_t ulen, int64_t ttl_ms, uint64_t epoch)
{
	char buf[GW_REDIR_MAX];
	struct gw_redir e = {
	    .kind = kind,
	    .expires_at = expires_at,
	    .filled_ms = cm_now_ms(),
	    .url = url,
	    .url_len = ulen,
	};
	size_t n;

	if (gw_cache == NULL || ttl_ms <= 0)
		return;
	if ((n = gw_redir_encode(&e, buf, sizeof(buf))) == 0)
		return;
	cm_l1_set_if(gw_cache, code, clen, buf, n, ttl_ms, epoch);
}

static void
resolve_reply(struct gw_conn *c, int idx, const struct gw_reply *r)
{
	struct gw_req *rq = &c->req;
	Shortener__ResolveResponse *resp;
	const char *code;
	size_t clen, ulen;
	int64_t ttl;

	(void) idx;
	code = gw_match_param(&rq->match, "code", &clen);
	if (r->status == CM_NOT_FOUND) {
		cache_fill(code, clen, GW_REDIR_NOT_FOUND, 0, NULL, 0,
		           gw_cfg.negative_ttl_ms, rq->epoch);
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
	if (resp->expired) {
		cache_fill(code, clen, GW_REDIR_EXPIRED, resp->expires_at, NULL,
		           0, gw_cfg.negative_ttl_ms, rq->epoch);
		respond_gone(c);
		return;
	}
	ulen = resp->long_url ? strlen(resp->long_url) : 0;
	if (ulen == 0 || ulen > GW_REDIR_MAX - GW_REDIR_HDR ||
	    !gw_header_safe(resp->long_url, ulen)) {
		log_warnx("event=bad_long_url code=%.*s", (int) clen, code);
		gw_respond_error(c, 502, "INTERNAL", "unusable redirect target",
		                 NULL);
		return;
	}
	ttl =
	    gw_redir_ttl_ms(cm_now_ms(), resp->expires_at, gw_cfg.cache_ttl_ms);
	cache_fill(code, clen, GW_REDIR_URL, resp->expires_at, resp->long_url,
	           ulen, ttl, rq->epoch);
	redirect_send(c, code, clen, resp->long_url, ulen, resp->expires_at);
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
	if (gw_cache != NULL) {
		char buf[GW_REDIR_MAX];
		struct gw_redir e;
		long n;

		n = cm_l1_get(gw_cache, code, clen, buf, sizeof(buf));
		if (n >= 0 && (size_t) n <= sizeof(buf) &&
		    gw_redir_decode(buf, (size_t) n, &e) == 0 &&
		    (atomic_load_explicit(&gw_inval_ok, memory_order_relaxed) ||
		     cm_now_ms() - e.filled_ms < UNSUBSCRIBED_MS)) {
			gw_metrics_cache(c->loop, true);
			if (e.kind == GW_REDIR_NOT_FOUND)
				respond_unknown(c);
			else if (e.kind == GW_REDIR_EXPIRED ||
			         (e.expires_at > 0 &&
			          cm_now_s() >= e.expires_at))
				respond_gone(c);
			else
				redirect_send(c, code, clen, e.url, e.url_len,
				              e.expires_at);
			return;
		}
		gw_metrics_cache(c->loop, false);
		rq->epoch = cm_l1_epoch(gw_cache, code, clen);
	}
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

/* ---- invalidation (called on the subscriber's thread) ---- */

void
gw_inval_on_key(void *arg, const char *key, size_t len)
{
	(void) arg;
	if (gw_cache != NULL)
		cm_l1_del(gw_cache, key, len);
}

void
gw_inval_on_reset(void *arg)
{
	(void) arg;
	if (gw_cache != NULL)
		cm_l1_clear(gw_cache);
	atomic_store(&gw_inval_ok, true);
}

/* Loop 0's sweep notices a lost subscription (on_reset reports regains). */
void
gw_inval_poll(void)
{
	bool ok =
	    gw_invalidator != NULL && cm_invalidator_subscribed(gw_invalidator);

	atomic_store(&gw_inval_ok, ok);
}
