/*
 * Upstreams: the services behind the gateway, and asynchronous calls to
 * them that complete on the calling event loop.  One path serves every
 * caller: handlers and filters calling for a request (gw_req_call), and a
 * loop's own work (gw_upstream_call: click flushes, rate-limit refreshes).
 *
 * cm_rpc_call_async reports on an NNG (or timer) thread, where a
 * connection must never be touched: libuv handles belong to their loop's
 * thread.  So the completion only copies the outcome (status, message,
 * payload) into the call record and posts the record to its loop
 * (gw_loop_post: the loop's mutex, once per completed call, never on a
 * path that answers from memory).  The loop runs the caller's callback.
 * A call made for a request holds a reference to it (gw_req_hold), and
 * its callback runs only if gw_req_release finds the request still
 * waiting; otherwise the reply is dropped.
 *
 * When a loop has shut down, late completions free their record and are
 * dropped: nothing waits for them any more.
 *
 * Declaring an upstream is one line in gw_upstreams: its name (what routes
 * and /healthz call it), the environment variable with its address(es)
 * and a default.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "status.h"
#include "util.h"

#include "internal.h"

struct gw_upstream gw_upstreams[] = {
    {.name = "shortener",
     .addr_env = "SHORTENER_ADDR",
     .addr_default = "tcp://127.0.0.1:7001"},
    {.name = "ratelimiter",
     .addr_env = "RATELIMITER_ADDR",
     .addr_default = "tcp://127.0.0.1:7002",
     .soft = true},
    {.name = "cache",
     .addr_env = "CACHE_ADDR",
     .addr_default = "tcp://127.0.0.1:7003",
     .soft = true},
    {.name = "notifier",
     .addr_env = "NOTIFIER_ADDR",
     .addr_default = "tcp://127.0.0.1:7004",
     .soft = true},
};
const size_t gw_nupstreams = sizeof(gw_upstreams) / sizeof(gw_upstreams[0]);

/* One call in flight, and then its outcome on the way back. */
struct gw_call {
	struct gw_task task; /* first: the record is the task */
	struct gw_loop *loop;
	struct gw_upstream *up;
	int idx;
	int64_t start_us;
	/* the caller: a loop's own, or a request's */
	gw_call_cb cb;
	gw_req_cb rcb;
	void *arg;
	struct gw_req_ref ref;
	/* filled on the NNG thread */
	int status;
	char *message;    /* in mem, or a static string */
	uint8_t *payload; /* in mem */
	size_t len;
	char *mem;
};

void
gw_upstreams_open(void)
{
	size_t i;

	for (i = 0; i < gw_nupstreams; i++) {
		struct gw_upstream *u = &gw_upstreams[i];
		const char *addr = cm_env_str(u->addr_env, u->addr_default);
		char labels[128];
		int rv;

		if ((rv = cm_rpc_client_open_peer(&u->client, addr, u->name)) !=
		    0)
			fatalx("event=upstream_open upstream=%s addr=%s rv=%d",
			       u->name, addr, rv);
		snprintf(labels, sizeof(labels), "upstream=\"%s\"", u->name);
		u->latency = cm_histogram_get(
		    "gateway_upstream_duration_seconds", labels,
		    "Upstream RPC latency seen by the gateway.");
		log_info("event=upstream name=%s addr=%s", u->name, addr);
	}
}

void
gw_upstreams_close(void)
{
	size_t i;

	for (i = 0; i < gw_nupstreams; i++) {
		if (gw_upstreams[i].client != NULL)
			cm_rpc_client_close(gw_upstreams[i].client);
		gw_upstreams[i].client = NULL;
	}
}

struct gw_upstream *
gw_upstream_find(const char *name)
{
	size_t i;

	for (i = 0; i < gw_nupstreams; i++)
		if (strcmp(gw_upstreams[i].name, name) == 0)
			return (&gw_upstreams[i]);
	return (NULL);
}

/* On the loop: the caller's callback, then the record is freed. */
static void
call_deliver(struct gw_loop *l, struct gw_task *t)
{
	struct gw_call *call = (struct gw_call *) t;
	struct gw_reply r = {
	    .status = call->status,
	    .message = call->message,
	    .payload = call->payload,
	    .len = call->len,
	};

	gw_core_loop(l)->calls--;
	cm_histogram_observe_us(call->up->latency,
	                        cm_mono_us() - call->start_us);
	if (cm_code_http(call->status) >= 500)
		gw_metrics_upstream_error(call->up, call->status);
	if (call->rcb != NULL) {
		struct gw_req *rq = gw_req_release(&call->ref);

		if (rq != NULL && l->state != GW_LOOP_CLOSING)
			call->rcb(rq, call->arg, call->idx, &r);
	} else if (call->cb != NULL) {
		call->cb(l, call->arg, call->idx, &r);
	}
	free(call->mem);
	free(call);
}

/* NNG thread: keep the outcome and hand the record to the loop. */
static void
call_done(void *arg, const cm_rpc_result *res)
{
	struct gw_call *call = arg;
	const char *msg = res->message ? res->message : "";
	size_t mlen = strlen(msg);

	call->status = res->status;
	call->len = 0;
	if ((call->mem = malloc(mlen + 1 + res->len)) == NULL) {
		call->status = CM_INTERNAL;
		call->message = (char *) "out of memory";
	} else {
		memcpy(call->mem, msg, mlen + 1);
		call->message = call->mem;
		if (res->len > 0) {
			call->payload = (uint8_t *) call->mem + mlen + 1;
			memcpy(call->payload, res->payload, res->len);
			call->len = res->len;
		}
	}
	call->task.run = call_deliver;
	if (gw_loop_post(call->loop, &call->task) != 0) {
		free(call->mem);
		free(call);
	}
}

static struct gw_call *
call_new(struct gw_loop *l, struct gw_upstream *u, int idx)
{
	struct gw_call *call;

	if ((call = calloc(1, sizeof(*call))) == NULL)
		fatalx("gateway: out of memory for an upstream call");
	call->loop = l;
	call->up = u;
	call->idx = idx;
	call->start_us = cm_mono_us();
	gw_core_loop(l)->calls++;
	return (call);
}

void
gw_upstream_call(struct gw_loop *l, struct gw_upstream *u,
                 const cm_rpc_meta *meta, const char *method,
                 const uint8_t *payload, size_t len, int64_t timeout_ms,
                 gw_call_cb cb, void *arg, int idx)
{
	struct gw_call *call = call_new(l, u, idx);

	call->cb = cb;
	call->arg = arg;
	cm_rpc_call_async(u->client, meta, method, payload, len,
	                  cm_now_ms() + timeout_ms, call_done, call);
}

void
gw_req_call(struct gw_req *rq, struct gw_upstream *u, const char *method,
            const uint8_t *payload, size_t len, int64_t timeout_ms,
            gw_req_cb cb, void *arg, int idx)
{
	struct gw_call *call = call_new(rq->loop, u, idx);
	cm_rpc_meta meta;

	call->rcb = cb;
	call->arg = arg;
	gw_req_hold(rq, &call->ref);
	gw_req_deadline_cover(rq, timeout_ms);
	gw_req_meta(rq, &meta);
	cm_rpc_call_async(u->client, &meta, method, payload, len,
	                  cm_now_ms() + timeout_ms, call_done, call);
}
