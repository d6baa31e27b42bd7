/*
 * Upstreams, a service of the core: the services behind the gateway and
 * the one path by which handlers, filters and loops call them
 * (upstream.c).  Included through gwcore.h.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "net/gwnet.h"
#include "rpc/rpc.h"

struct gw_upstream {
	const char *name;         /* "shortener": routes, /healthz, labels */
	const char *addr_env;     /* "SHORTENER_ADDR" */
	const char *addr_default; /* "tcp://127.0.0.1:7001" */
	cm_rpc_client *client;
	cm_histogram *latency;
	/* The gateway serves without it (the rate limiter fails open):
	 * /healthz shows it but stays 200 when it is down. */
	bool soft;
};

extern struct gw_upstream gw_upstreams[];
extern const size_t gw_nupstreams;

/* The outcome of an upstream call, as seen on the loop thread. */
struct gw_reply {
	int status;          /* enum cm_code */
	const char *message; /* never NULL */
	const uint8_t *payload;
	size_t len;
};

void gw_upstreams_open(void);
void gw_upstreams_close(void);
struct gw_upstream *gw_upstream_find(const char *name);

/*
 * A call of the loop's own (no request): cb runs exactly once, later, on
 * l's thread, unless the loop has ended by then.  meta, payload and
 * method are copied before this returns.  timeout_ms is relative.
 */
typedef void (*gw_call_cb)(struct gw_loop *l, void *arg, int idx,
                           const struct gw_reply *r);
void gw_upstream_call(struct gw_loop *l, struct gw_upstream *u,
                      const cm_rpc_meta *meta, const char *method,
                      const uint8_t *payload, size_t len, int64_t timeout_ms,
                      gw_call_cb cb, void *arg, int idx);

/*
 * A call made for a request, with the request's metadata (request id,
 * user, role, tier, client address).  cb runs later on the loop's thread
 * only if the request is still waiting for an answer then (not answered
 * meanwhile, by a timeout say, and its client still there); otherwise the
 * reply is dropped.  The request's deadline is raised to cover the call.
 */
typedef void (*gw_req_cb)(struct gw_req *rq, void *arg, int idx,
                          const struct gw_reply *r);
void gw_req_call(struct gw_req *rq, struct gw_upstream *u, const char *method,
                 const uint8_t *payload, size_t len, int64_t timeout_ms,
                 gw_req_cb cb, void *arg, int idx);
/* Fills meta for an RPC made for rq (strings point into rq). */
void gw_req_meta(const struct gw_req *rq, cm_rpc_meta *meta);
/* Answers rq with the HTTP error that r's status maps to. */
void gw_respond_reply_error(struct gw_req *rq, const struct gw_upstream *u,
                            const struct gw_reply *r);

#endif
