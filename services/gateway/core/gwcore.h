/*
 * core: a request's life in the gateway, between the network layer below
 * (net/) and the handlers above (handler/).  It is the application that
 * net/ calls (struct gw_app): it checks a request's head (request id,
 * client address, route, token, API key), runs the filters (the rate
 * limit), hands the request to its route's handler, and writes the access
 * log and the metrics when it ends.  It also holds what handlers share:
 * upstream calls (one path for handlers and filters alike), the redirect
 * cache, the metrics.
 *
 * Handlers and filters are registered, not called by name: each declares
 * its per-request state (allocated zeroed from the request's arena) and
 * may keep per-loop state with hooks (struct gw_loop_hooks); route rows
 * name their handler, bound at start-up (gw_core_bind_routes).
 *
 * Everything here runs on a loop's thread unless said otherwise.
 */
#ifndef GW_CORE_H
#define GW_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "lib/gwlib.h"
#include "metrics.h"
#include "net/gwnet.h"
#include "rpc/rpc.h"

/* The services handlers share, each with its own contract. */
#include "rcache.h"
#include "upstream.h"

/* ---- configuration (main.c fills it before gw_core_start) ---- */

struct gw_core_config {
	int64_t rpc_timeout_ms;
	bool access_log;
	size_t cache_bytes;
	int64_t cache_ttl_ms;
	int64_t negative_ttl_ms;
	const char *jwt_secret;
	size_t jwt_secret_len;
	const char *metrics_token; /* "" = loopback only */
	struct gw_trust trust;
	const char *redis_url;
};

extern struct gw_core_config gw_core_cfg;
extern struct gw_router gw_router;

/* ---- per-loop state of a handler or filter ---- */

/*
 * size bytes of zeroed memory per loop, and hooks, any of which may be
 * NULL: init (main thread, before the loop runs), tick (every
 * GW_TICK_MS), drained (the gateway drains and no connection is left:
 * true when there is nothing left to finish; force: the deadline has
 * passed), close (the loop ends: close own uv handles), fini (main
 * thread, after the loop has ended: free).
 */
struct gw_loop_hooks {
	size_t size;
	void (*init)(struct gw_loop *l, void *ls);
	void (*tick)(struct gw_loop *l, void *ls);
	bool (*drained)(struct gw_loop *l, void *ls, bool force);
	void (*close)(struct gw_loop *l, void *ls);
	void (*fini)(struct gw_loop *l, void *ls);
};

/* ---- handlers ---- */

/* The body arrives in pieces (on_body); else as the route says. */
#define GW_HF_STREAM 0x1
/* Filters (the rate limit) do not apply: /healthz, /metrics. */
#define GW_HF_UNFILTERED 0x2

struct gw_handler {
	const char *name; /* what route rows name */
	unsigned flags;   /* GW_HF_* */
	size_t req_size;  /* per-request state: gw_req_hstate */
	struct gw_loop_hooks loop;
	/* Start-up: whether a route suits this handler (0, or -1 + err). */
	int (*check_route)(const struct gw_croute *r, char *err, size_t errlen);
	/*
	 * GW_HF_STREAM: the filters have passed; the handler may answer (a
	 * refusal) before any body is read.  Then on_body gets the pieces
	 * (GW_BODY_PAUSE to stop until gw_req_resume), and on_request runs
	 * at the end of the message.
	 */
	void (*on_start)(struct gw_req *rq);
	enum gw_body_ret (*on_body)(struct gw_req *rq, const char *p,
	                            size_t len);
	/* The whole request is in (with the buffered body, if any). */
	void (*on_request)(struct gw_req *rq);
};

/* Before gw_core_bind_routes; a second handler of one name is fatal. */
void gw_handler_register(const struct gw_handler *h);
/* Binds every route to its handler and upstream; fatal if one is
 * unknown or refuses its route. */
void gw_core_bind_routes(void);

/* ---- filters ---- */

/*
 * What a filter's on_request says.  After GW_FILTER_WAIT the filter later
 * either calls gw_filter_continue (go on) or answers the request itself
 * (gw_respond*, which ends it); exactly one of the two.
 */
enum gw_filter_verdict {
	GW_FILTER_GO = 0, /* the next filter, then the handler */
	GW_FILTER_WAIT,   /* the request is paused until then */
	GW_FILTER_DONE,   /* the filter has answered the request */
};

struct gw_filter {
	const char *name;
	size_t req_size; /* per-request state, passed to on_request */
	struct gw_loop_hooks loop;
	enum gw_filter_verdict (*on_request)(struct gw_req *rq, void *fs);
};

/* Filters run in registration order; before the loops start. */
void gw_filter_register(const struct gw_filter *f);
/* Ends a filter's GW_FILTER_WAIT: the next filter, then the handler. */
void gw_filter_continue(struct gw_req *rq);

/* ---- a request, as the core sees it ---- */

struct gw_creq {
	const struct gw_croute *route;
	const struct gw_handler *handler;
	struct gw_match match;
	const char *path, *query; /* raw, from the target */
	size_t plen, qlen;
	struct gw_identity id;
	char api_key[33]; /* X-API-Key's id for the rate limiter; "" none */
	char rid[130];
	uint8_t client[16];
	const char *client_ip;
	void *hstate;
	unsigned next_filter;
	bool filtering; /* a filter is waiting */
};

static inline struct gw_creq *
gw_creq(const struct gw_req *rq)
{
	return ((struct gw_creq *) rq->app);
}

static inline void *
gw_req_hstate(const struct gw_req *rq)
{
	return (gw_creq(rq)->hstate);
}

/* A matched path parameter's value, or NULL. */
const char *gw_req_param(const struct gw_req *rq, const char *name,
                         size_t *len);
/*
 * A successful answer to a GET that clients may keep and revalidate
 * (request.c): a strong ETag (64-bit FNV-1a of ctype and the body) and
 * "Cache-Control: private, no-cache"; 304 with no body when the request's
 * If-None-Match lists the tag (or "*"), else gw_respond's response.
 */
void gw_respond_etag(struct gw_req *rq, int status, const char *ctype,
                     const void *body, size_t len);
/* A handler's (or filter's) per-loop state. */
void *gw_handler_loop(struct gw_loop *l, const struct gw_handler *h);
void *gw_filter_loop(struct gw_loop *l, const struct gw_filter *f);

/* ---- metrics (metrics.c) ---- */

void gw_metrics_cache(struct gw_loop *l, bool hit);
void gw_metrics_clicks(uint64_t flushed, uint64_t dropped);
/* Adds the loop's local counts to the shared counters. */
void gw_metrics_loop_flush(struct gw_loop *l);
/* The whole Prometheus text (malloc'd; NULL on OOM). */
char *gw_metrics_render(void);

/* ---- the core's life (main.c) ---- */

/*
 * Compiles the route table (gw_routes, plus test rows in a test build),
 * opens the upstreams, binds routes to handlers, starts the redirect
 * cache and the access log, and installs the core into net/.  Handlers
 * and filters are registered before.
 */
void gw_core_start(const struct gw_route *routes, size_t nroutes);
/* After the loops have ended (gw_loops_stop) and before they are freed. */
void gw_core_stop_upstreams(void);
/* After the loops are freed. */
void gw_core_stop(void);
/* The table of hooks net/ calls. */
extern const struct gw_app gw_core_app;

/* ---- filters of the core ---- */

/* The rate limit check (ratelimit.c); reads its GATEWAY_RATELIMIT_*. */
void gw_ratelimit_register(void);

#endif /* GW_CORE_H */
