/*
 * The gateway's metrics; GET /metrics is a handler (handler/metrics.c)
 * that serves gw_metrics_render.
 *
 * Series: gateway_http_requests_total{route,status},
 * gateway_http_request_duration_seconds{route} (histogram),
 * gateway_upstream_errors_total{upstream,code},
 * gateway_upstream_duration_seconds{upstream} (upstream.c),
 * gateway_redirect_cache_{hits,misses}_total, gateway_clicks_{flushed,
 * dropped}_total, plus, read from the cache engine at render time, the
 * redirect cache's size (entries, bytes, evictions), whether its
 * invalidation subscription is up (while it is down every redirect is a
 * miss), the invalidations it received and the times it was cleared.
 *
 * Request and cache counters are counted per loop in plain integers and
 * added to the shared atomic counters by the loop's sweep timer, so the
 * redirect path does not bounce counter cache lines between cores; a
 * scrape may lag by up to a sweep (250 ms).  Latency histograms are
 * observed directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#include "internal.h"

#define NSLOTS 500 /* statuses 100..599 */

static cm_histogram **route_hist; /* gw_router.n + 1 ("unmatched") */
static cm_counter *cache_hits, *cache_misses;
static cm_counter *clicks_flushed, *clicks_dropped;

static const char *
route_label(size_t idx)
{
	return (idx < gw_router.n ? gw_router.routes[idx].label : "unmatched");
}

void
gw_metrics_init(void)
{
	size_t i;

	if ((route_hist = calloc(gw_router.n + 1, sizeof(*route_hist))) == NULL)
		fatalx("gateway: out of memory for metrics");
	for (i = 0; i <= gw_router.n; i++) {
		char labels[192];

		snprintf(labels, sizeof(labels), "route=\"%s\"",
		         route_label(i));
		route_hist[i] = cm_histogram_get(
		    "gateway_http_request_duration_seconds", labels,
		    "Time from the first byte of a request to its response.");
	}
	cache_hits =
	    cm_counter_get("gateway_redirect_cache_hits_total", "",
	                   "Redirects answered from the gateway's cache.");
	cache_misses =
	    cm_counter_get("gateway_redirect_cache_misses_total", "",
	                   "Redirects that had to ask the shortener.");
	clicks_flushed = cm_counter_get("gateway_clicks_flushed_total", "",
	                                "Clicks reported to the shortener.");
	clicks_dropped = cm_counter_get(
	    "gateway_clicks_dropped_total", "",
	    "Clicks lost (counter table full or rejected by the shortener).");
}

void
gw_metrics_fini(void)
{
	free(route_hist);
	route_hist = NULL;
}

void
gw_metrics_loop_init(struct gw_loop *lp)
{
	struct gw_core_loop *l = gw_core_loop(lp);
	size_t n = (gw_router.n + 1) * NSLOTS;

	l->req_counters = calloc(n, sizeof(*l->req_counters));
	l->req_local = calloc(n, sizeof(*l->req_local));
	if (l->req_counters == NULL || l->req_local == NULL)
		fatalx("gateway: out of memory for metrics");
}

void
gw_metrics_loop_flush(struct gw_loop *lp)
{
	struct gw_core_loop *l = gw_core_loop(lp);
	size_t i, n = (gw_router.n + 1) * NSLOTS;

	for (i = 0; i < n; i++) {
		char labels[224];

		if (l->req_local[i] == 0)
			continue;
		if (l->req_counters[i] == NULL) {
			snprintf(labels, sizeof(labels),
			         "route=\"%s\",status=\"%zu\"",
			         route_label(i / NSLOTS), 100 + i % NSLOTS);
			l->req_counters[i] = cm_counter_get(
			    "gateway_http_requests_total", labels,
			    "HTTP requests answered, by route and status.");
		}
		cm_counter_add(l->req_counters[i], l->req_local[i]);
		l->req_local[i] = 0;
	}
	if (l->cache_hits) {
		cm_counter_add(cache_hits, l->cache_hits);
		l->cache_hits = 0;
	}
	if (l->cache_misses) {
		cm_counter_add(cache_misses, l->cache_misses);
		l->cache_misses = 0;
	}
}

void
gw_metrics_loop_fini(struct gw_loop *lp)
{
	struct gw_core_loop *l = gw_core_loop(lp);

	if (l->req_local != NULL)
		gw_metrics_loop_flush(lp);
	free(l->req_counters);
	free(l->req_local);
	l->req_counters = NULL;
	l->req_local = NULL;
}

void
gw_metrics_request(struct gw_loop *lp, const struct gw_croute *r, int status,
                   int64_t dur_us)
{
	struct gw_core_loop *l = gw_core_loop(lp);
	size_t idx = r != NULL ? r->idx : gw_router.n;
	size_t slot = status >= 100 && status < 100 + NSLOTS
	                  ? (size_t) (status - 100)
	                  : 500 - 100;

	l->req_local[idx * NSLOTS + slot]++;
	cm_histogram_observe_us(route_hist[idx], dur_us);
}

void
gw_metrics_cache(struct gw_loop *lp, bool hit)
{
	struct gw_core_loop *l = gw_core_loop(lp);

	if (hit)
		l->cache_hits++;
	else
		l->cache_misses++;
}

void
gw_metrics_clicks(uint64_t flushed, uint64_t dropped)
{
	if (flushed)
		cm_counter_add(clicks_flushed, flushed);
	if (dropped)
		cm_counter_add(clicks_dropped, dropped);
}

void
gw_metrics_upstream_error(const struct gw_upstream *u, int code)
{
	char labels[128];

	snprintf(labels, sizeof(labels), "upstream=\"%s\",code=\"%s\"", u->name,
	         cm_code_name(code));
	cm_counter_add(cm_counter_get("gateway_upstream_errors_total", labels,
	                              "Failed upstream calls, by status."),
	               1);
}

char *
gw_metrics_render(void)
{
	struct gw_buf s = {0};
	cm_cache_stats st;
	char *text;

	if ((text = cm_metrics_render()) == NULL)
		return (NULL);
	gw_buf_puts(&s, text);
	free(text);
	if (gw_rcache != NULL) {
		cm_cache_get_stats(gw_rcache, &st);
		gw_buf_printf(
		    &s,
		    "# HELP gateway_redirect_cache_entries Entries in the "
		    "redirect cache.\n"
		    "# TYPE gateway_redirect_cache_entries gauge\n"
		    "gateway_redirect_cache_entries %llu\n"
		    "# HELP gateway_redirect_cache_bytes Bytes held by the "
		    "redirect cache.\n"
		    "# TYPE gateway_redirect_cache_bytes gauge\n"
		    "gateway_redirect_cache_bytes %llu\n"
		    "# HELP gateway_redirect_cache_evictions_total Entries "
		    "evicted "
		    "for space.\n"
		    "# TYPE gateway_redirect_cache_evictions_total counter\n"
		    "gateway_redirect_cache_evictions_total %llu\n"
		    "# HELP gateway_redirect_cache_subscribed 1 while the "
		    "cache's invalidation subscription is up (else it is "
		    "bypassed).\n"
		    "# TYPE gateway_redirect_cache_subscribed gauge\n"
		    "gateway_redirect_cache_subscribed %d\n"
		    "# HELP gateway_redirect_cache_invalidations_total "
		    "Invalidation messages received.\n"
		    "# TYPE gateway_redirect_cache_invalidations_total "
		    "counter\n"
		    "gateway_redirect_cache_invalidations_total %llu\n"
		    "# HELP gateway_redirect_cache_clears_total Times the "
		    "cache was emptied (subscription re-established).\n"
		    "# TYPE gateway_redirect_cache_clears_total counter\n"
		    "gateway_redirect_cache_clears_total %llu\n",
		    (unsigned long long) st.l1_entries,
		    (unsigned long long) st.l1_bytes,
		    (unsigned long long) st.l1_evictions,
		    cm_cache_subscribed(gw_rcache) ? 1 : 0,
		    (unsigned long long) st.invalidations,
		    (unsigned long long) st.l1_clears);
	}
	gw_buf_append(&s, "", 1);
	return (s.p);
}
