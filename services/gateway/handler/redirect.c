/*
 * "redirect": GET/HEAD /{code}, the gateway's hot path.
 *
 * The cache.  The redirect cache is the L1 of the process's cache engine
 * (core/rcache.c), shared by the loops, in the shortener's namespace and value
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
 * before it answers (rpc.c), so it is gone here at once.
 *
 * Clicks.  Every redirect served counts one click in its loop's table
 * (this handler's per-loop state: no lock); a timer per loop sends the
 * counts to the shortener (RecordClicks) in batches.  A failed batch is merged
 * back and retried with the next flush; the table is bounded, and clicks for
 * new codes beyond its bound are dropped and counted.  When the gateway drains,
 * the last flush is awaited before the loop ends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "shortener.pb-c.h"
#include "status.h"
#include "util.h"

#include "handlers.h"

#define CLICK_BATCH      500
#define PERMANENT_MAXAGE 300

static struct {
	int status; /* 302 or 301 */
	int64_t flush_ms;
	size_t max_codes;
	struct gw_upstream *up;
} C;

/* A loop's clicks. */
struct redirect_loop {
	struct gw_loop *loop;
	uv_timer_t flush;
	struct gw_clicks clicks;
	cm_arena flush_arena;
	Shortener__RecordClicksRequest *batches; /* in flush_arena */
	int flush_inflight;                      /* batches awaiting reply */
	int64_t flush_last;                      /* loop ms of the last one */
	uint64_t dropped;
};

/* A request's: the ticket of a cache miss, for the fill. */
struct redirect_req {
	cm_cache_ticket ticket;
};

static const struct gw_handler redirect_handler;

static struct redirect_loop *
redirect_loop(struct gw_loop *l)
{
	return (gw_handler_loop(l, &redirect_handler));
}

/* Counts the click and sends the redirect. */
static void
redirect_send(struct gw_req *rq, const char *code, size_t clen, const char *url,
              size_t ulen, int64_t expires_at)
{
	struct redirect_loop *rl = redirect_loop(rq->loop);
	const char *cc = "private, no-store";
	char buf[48];

	if (gw_clicks_add(&rl->clicks, code, clen, 1) != 0)
		rl->dropped++;
	if (C.status == 301) {
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
	gw_respond_redirect(rq, C.status, url, ulen, cc);
}

static void
respond_gone(struct gw_req *rq)
{
	gw_respond_error(rq, 410, "NOT_FOUND", "link expired");
}

static void
respond_unknown(struct gw_req *rq)
{
	gw_respond_error(rq, 404, "NOT_FOUND", "no such link");
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
cache_fill(struct gw_req *rq, const char *code, size_t clen,
           const struct gw_redir *e, int64_t ttl_ms)
{
	struct redirect_req *rr = gw_req_hstate(rq);
	char buf[GW_REDIR_VALUE_MAX + 1];
	size_t n = 0;

	if (gw_rcache == NULL || ttl_ms <= 0 || !rr->ticket.valid)
		return;
	if (e != NULL && (n = gw_redir_format(e, buf, sizeof(buf))) == 0)
		return;
	cm_cache_l1_fill(gw_rcache, GW_RCACHE_NS, code, clen,
	                 e != NULL ? buf : NULL, n, ttl_ms, &rr->ticket);
}

static void
resolve_reply(struct gw_req *rq, void *arg, int idx, const struct gw_reply *r)
{
	Shortener__ResolveResponse *resp;
	struct gw_redir e;
	const char *code;
	size_t clen, ulen;
	bool usable;
	int64_t now_s, ttl;

	(void) arg;
	(void) idx;
	code = gw_req_param(rq, "code", &clen);
	if (r->status == CM_NOT_FOUND) {
		cache_fill(rq, code, clen, NULL, gw_core_cfg.negative_ttl_ms);
		respond_unknown(rq);
		return;
	}
	if (r->status != CM_OK) {
		gw_respond_reply_error(rq, gw_creq(rq)->route->up, r);
		return;
	}
	resp = shortener__resolve_response__unpack(&rq->arena->pb, r->len,
	                                           r->payload);
	if (resp == NULL) {
		gw_respond_error(rq, 502, "INTERNAL",
		                 "malformed upstream reply");
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
		cache_fill(rq, code, clen, &e, gw_core_cfg.negative_ttl_ms);
		respond_gone(rq);
		return;
	}
	if (!usable) {
		log_warnx("event=bad_long_url code=%.*s", (int) clen, code);
		gw_respond_error(rq, 502, "INTERNAL",
		                 "unusable redirect target");
		return;
	}
	e.expires_at = resp->expires_at > 0 ? resp->expires_at : 0;
	e.url = resp->long_url;
	e.url_len = ulen;
	ttl = gw_redir_ttl_ms(cm_now_ms(), resp->expires_at,
	                      gw_core_cfg.cache_ttl_ms);
	cache_fill(rq, code, clen, &e, ttl);
	redirect_send(rq, code, clen, resp->long_url, ulen, resp->expires_at);
}

/*
 * Answers from the redirect cache if it can.  On a miss returns false,
 * with the request's ticket set if the engine can take a fill.
 */
static bool
redirect_cached(struct gw_req *rq, const char *code, size_t clen)
{
	struct redirect_req *rr = gw_req_hstate(rq);
	cm_cache_value v;
	struct gw_redir e;
	bool gone;
	int rv;

	rv = cm_cache_l1_lookup(gw_rcache, GW_RCACHE_NS, code, clen, &v,
	                        &rr->ticket);
	if (rv == CM_NOT_FOUND) {
		gw_metrics_cache(rq->loop, true);
		respond_unknown(rq);
		return (true);
	}
	if (rv == CM_OK) {
		if (gw_redir_parse(v.data, v.len, &e) == 0 &&
		    ((gone = expired(e.expires_at)) || e.url_len > 0)) {
			gw_metrics_cache(rq->loop, true);
			if (gone)
				respond_gone(rq);
			else
				redirect_send(rq, code, clen, e.url, e.url_len,
				              e.expires_at);
			free(v.data);
			return (true);
		}
		log_debug("event=bad_cached_value code=%.*s", (int) clen, code);
		free(v.data);
	}
	gw_metrics_cache(rq->loop, false);
	return (false);
}

static void
redirect_request(struct gw_req *rq)
{
	const struct gw_croute *rt = gw_creq(rq)->route;
	Shortener__ResolveRequest req = SHORTENER__RESOLVE_REQUEST__INIT;
	const char *code;
	size_t clen, len;
	uint8_t *payload;

	code = gw_req_param(rq, "code", &clen);
	if (code == NULL || !gw_code_valid(code, clen)) {
		respond_unknown(rq);
		return;
	}
	if (gw_rcache != NULL && redirect_cached(rq, code, clen))
		return;
	req.code = cm_pbstr(code);
	len = shortener__resolve_request__get_packed_size(&req);
	payload = cm_arena_alloc(rq->arena, len ? len : 1);
	shortener__resolve_request__pack(&req, payload);
	gw_req_call(rq, rt->up, rt->def->rpc, payload, len,
	            gw_core_cfg.rpc_timeout_ms, resolve_reply, NULL, 0);
}

/* ---- click flushing ---- */

static void
flush_done(struct gw_loop *l, void *arg, int idx, const struct gw_reply *r)
{
	struct redirect_loop *rl = arg;
	Shortener__RecordClicksRequest *req = &rl->batches[idx];
	uint64_t sum = 0, lost = 0;
	size_t i;

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

			if (gw_clicks_add(&rl->clicks, cc->code,
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
	if (--rl->flush_inflight == 0) {
		rl->batches = NULL;
		cm_arena_reset(&rl->flush_arena);
		gw_loop_check_drained(l);
	}
}

static void
clicks_flush(struct redirect_loop *rl, bool final)
{
	struct gw_loop *l = rl->loop;
	Shortener__RecordClicksRequest *b;
	size_t n = rl->clicks.n, nb, i, it = 0;
	const char *code;
	size_t clen;
	int64_t count;
	cm_rpc_meta meta;

	if (rl->dropped > 0) {
		gw_metrics_clicks(0, rl->dropped);
		rl->dropped = 0;
	}
	if (rl->flush_inflight > 0 || n == 0 || C.up == NULL)
		return;
	rl->flush_last = gw_loop_now(l);
	nb = (n + CLICK_BATCH - 1) / CLICK_BATCH;
	b = cm_arena_alloc(&rl->flush_arena, nb * sizeof(*b));
	for (i = 0; i < nb; i++) {
		size_t cnt = i + 1 < nb ? CLICK_BATCH : n - i * CLICK_BATCH;

		shortener__record_clicks_request__init(&b[i]);
		b[i].clicks = cm_arena_alloc(&rl->flush_arena,
		                             cnt * sizeof(*b[i].clicks));
	}
	i = 0;
	while (gw_clicks_next(&rl->clicks, &it, &code, &clen, &count)) {
		Shortener__RecordClicksRequest *req = &b[i / CLICK_BATCH];
		Shortener__ClickCount *cc =
		    cm_arena_alloc(&rl->flush_arena, sizeof(*cc));

		shortener__click_count__init(cc);
		cc->code = cm_arena_strndup(&rl->flush_arena, code, clen);
		cc->count = count;
		req->clicks[req->n_clicks++] = cc;
		i++;
	}
	gw_clicks_clear(&rl->clicks);
	rl->batches = b;
	rl->flush_inflight = (int) nb;
	memset(&meta, 0, sizeof(meta));
	for (i = 0; i < nb; i++) {
		size_t len =
		    shortener__record_clicks_request__get_packed_size(&b[i]);
		uint8_t *payload =
		    cm_arena_alloc(&rl->flush_arena, len ? len : 1);

		shortener__record_clicks_request__pack(&b[i], payload);
		gw_upstream_call(
		    l, C.up, &meta, "shortener.Shortener/RecordClicks", payload,
		    len, gw_core_cfg.rpc_timeout_ms, flush_done, rl, (int) i);
	}
	if (final)
		log_info("event=clicks_final_flush loop=%u codes=%zu", l->id,
		         n);
}

static void
on_flush(uv_timer_t *t)
{
	struct redirect_loop *rl = t->data;

	clicks_flush(rl, rl->loop->state != GW_LOOP_RUNNING);
}

/* ---- per-loop state ---- */

static void
redirect_loop_init(struct gw_loop *l, void *ls)
{
	struct redirect_loop *rl = ls;

	rl->loop = l;
	gw_clicks_init(&rl->clicks, C.max_codes);
	cm_arena_init(&rl->flush_arena);
	uv_timer_init(&l->uv, &rl->flush);
	rl->flush.data = rl;
	uv_timer_start(&rl->flush, on_flush, (uint64_t) C.flush_ms,
	               (uint64_t) C.flush_ms);
}

/* Draining: the last clicks go out, and their replies are awaited. */
static bool
redirect_drained(struct gw_loop *l, void *ls, bool force)
{
	struct redirect_loop *rl = ls;

	if (force)
		return (true);
	if (rl->flush_inflight > 0)
		return (false);
	if (rl->clicks.n == 0)
		return (true);
	/* A failed flush is retried here, on the loop's ticks. */
	if (gw_loop_now(l) - rl->flush_last >= 100)
		clicks_flush(rl, true);
	return (false);
}

static void
redirect_loop_close(struct gw_loop *l, void *ls)
{
	struct redirect_loop *rl = ls;

	uv_close((uv_handle_t *) &rl->flush, NULL);
	if (rl->clicks.n > 0) {
		size_t it = 0, len;
		const char *code;
		int64_t n, lost = 0;

		while (gw_clicks_next(&rl->clicks, &it, &code, &len, &n))
			lost += n;
		log_warnx("event=clicks_lost loop=%u codes=%zu clicks=%lld",
		          l->id, rl->clicks.n, (long long) lost);
	}
}

static void
redirect_loop_fini(struct gw_loop *l, void *ls)
{
	struct redirect_loop *rl = ls;

	(void) l;
	gw_clicks_fini(&rl->clicks);
	cm_arena_fini(&rl->flush_arena);
}

static int
redirect_check_route(const struct gw_croute *r, char *err, size_t errlen)
{
	if (r->in == NULL || r->up == NULL ||
	    strcmp(r->upstream_name, "shortener") != 0) {
		snprintf(err, errlen, "needs the shortener's Resolve rpc");
		return (-1);
	}
	for (size_t i = 0; i < r->nsegs; i++)
		if (r->segs[i].param && r->segs[i].len == 4 &&
		    memcmp(r->segs[i].s, "code", 4) == 0)
			return (0);
	snprintf(err, errlen, "needs a {code} parameter");
	return (-1);
}

static const struct gw_handler redirect_handler = {
    .name = "redirect",
    .req_size = sizeof(struct redirect_req),
    .loop =
        {
            .size = sizeof(struct redirect_loop),
            .init = redirect_loop_init,
            .drained = redirect_drained,
            .close = redirect_loop_close,
            .fini = redirect_loop_fini,
        },
    .check_route = redirect_check_route,
    .on_request = redirect_request,
};

void
gw_redirect_register(void)
{
	C.status = (int) cm_env_int("REDIRECT_STATUS", 302, 301, 302);
	C.flush_ms = cm_env_int("GATEWAY_CLICK_FLUSH_MS", 1000, 10, 3600000);
	C.max_codes = (size_t) cm_env_int("GATEWAY_CLICK_MAX_CODES", 100000, 1,
	                                  100000000);
	C.up = gw_upstream_find("shortener");
	gw_handler_register(&redirect_handler);
}
