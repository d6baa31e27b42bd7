/*
 * What the files of core/ share among themselves; handlers see gwcore.h
 * only.
 */
#ifndef GW_CORE_INTERNAL_H
#define GW_CORE_INTERNAL_H

#include "gwcore.h"

/* Handlers and filters together: every set of per-loop hooks. */
#define GW_MAX_MODULES 32

/* The core's per-loop state (loop->app). */
struct gw_core_loop {
	size_t calls; /* upstream calls in flight */
	char rid_prefix[16];
	uint64_t rid_seq;
	/* access log (alog.c) */
	struct gw_buf alog;
	int64_t alog_s;
	char alog_ts[32];
	/* metrics (metrics.c): counted here, added up on the tick */
	cm_counter **req_counters; /* (nroutes + 1) x 500 status slots */
	uint64_t *req_local;
	uint64_t cache_hits, cache_misses;
	/* handlers' and filters' own, by module index */
	void *mstate[GW_MAX_MODULES];
};

static inline struct gw_core_loop *
gw_core_loop(struct gw_loop *l)
{
	return ((struct gw_core_loop *) l->app);
}

/* core.c: the module index of a handler's or filter's hooks. */
size_t gw_module_index(const struct gw_loop_hooks *hooks);
extern const struct gw_filter *gw_filters[GW_MAX_MODULES];
extern size_t gw_nfilters;

/* request.c: the net/ hooks for requests. */
void gw_request_head(struct gw_req *rq);
void gw_request_complete(struct gw_req *rq);
enum gw_body_ret gw_request_body(struct gw_req *rq, const char *p, size_t len);
void gw_request_timeout(struct gw_req *rq);
void gw_request_end(struct gw_req *rq);
void gw_request_head_lines(struct gw_req *rq, struct gw_buf *out);
void gw_request_loop_init(struct gw_loop *l);
/* Raises rq->deadline to cover a call of timeout_ms made now. */
void gw_req_deadline_cover(struct gw_req *rq, int64_t timeout_ms);

/* alog.c */
void gw_alog_start(void);
void gw_alog_stop(void);
/* One line for rq, which took dur microseconds. */
void gw_alog_request(struct gw_req *rq, int64_t dur);
/* Hands the loop's buffered lines to the writer. */
void gw_alog_flush(struct gw_loop *l);

/* metrics.c */
void gw_metrics_init(void);
void gw_metrics_fini(void);
void gw_metrics_loop_init(struct gw_loop *l);
void gw_metrics_loop_fini(struct gw_loop *l);
void gw_metrics_request(struct gw_loop *l, const struct gw_croute *r,
                        int status, int64_t dur_us);
void gw_metrics_upstream_error(const struct gw_upstream *u, int code);

/* rcache.c */
void gw_rcache_start(void);
void gw_rcache_stop(void);

#endif
