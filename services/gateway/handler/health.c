/*
 * "health": GET /healthz, Health.Check on every upstream concurrently,
 * answered when the last reply (or failure) is in: 200 if every upstream
 * that the gateway needs is SERVING, else 503, with each service's state
 * and dependencies, and the redirect cache's.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "health.pb-c.h"
#include "status.h"

#include "handlers.h"

struct health_result {
	int status;
	const char *message;
	Health__HealthCheckResponse *resp;
};

struct health_req {
	struct health_result *res; /* one per upstream */
	size_t pending;
};

static const char *
serving_name(int s)
{
	switch (s) {
	case HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING:
		return ("SERVING");
	case HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING:
		return ("NOT_SERVING");
	default:
		return ("UNKNOWN");
	}
}

/* Every upstream has answered (or failed): the /healthz response. */
static void
health_answer(struct gw_req *rq, const struct health_result *res)
{
	json_t *top, *services;
	bool all = true, cache_ok;
	const char *cache_detail;
	size_t i, n;
	char *text;

	services = json_object();
	for (i = 0; i < gw_nupstreams; i++) {
		json_t *svc = json_object(), *deps;
		Health__HealthCheckResponse *hr = res[i].resp;

		if (res[i].status != CM_OK || hr == NULL) {
			json_object_set_new(svc, "status",
			                    json_string("UNREACHABLE"));
			json_object_set_new(
			    svc, "error",
			    json_string(res[i].status != CM_OK
			                    ? res[i].message
			                    : "malformed reply"));
			if (!gw_upstreams[i].soft)
				all = false;
		} else {
			if (hr->status !=
			    HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING)
				all = false;
			json_object_set_new(
			    svc, "status",
			    json_string(serving_name(hr->status)));
			deps = json_object();
			for (n = 0; n < hr->n_dependencies; n++) {
				Health__Dependency *d = hr->dependencies[n];

				json_object_set_new(
				    deps, d->name,
				    json_pack("{s:b, s:s}", "ok", d->ok,
				              "detail",
				              d->detail ? d->detail : ""));
			}
			json_object_set_new(svc, "dependencies", deps);
		}
		json_object_set_new(services, gw_upstreams[i].name, svc);
	}
	/* The redirect cache degrades to asking the shortener: shown, but
	 * never a reason for NOT_SERVING. */
	cache_ok = gw_rcache_state(&cache_detail);
	top =
	    json_pack("{s:s, s:o, s:{s:b, s:s}}", "status",
	              all ? "SERVING" : "NOT_SERVING", "services", services,
	              "redirect_cache", "ok", cache_ok, "detail", cache_detail);
	text = top ? json_dumps(top, JSON_COMPACT) : NULL;
	json_decref(top);
	if (text == NULL) {
		gw_respond_error(rq, 500, "INTERNAL", "out of memory");
		return;
	}
	gw_respond(rq, all ? 200 : 503, "application/json", text, strlen(text));
	free(text);
}

static void
health_reply(struct gw_req *rq, void *arg, int idx, const struct gw_reply *r)
{
	struct health_req *hs = arg;
	struct health_result *res = &hs->res[idx];

	res->status = r->status;
	res->message = cm_arena_strdup(rq->arena, r->message);
	if (r->status == CM_OK)
		res->resp = health__health_check_response__unpack(
		    &rq->arena->pb, r->len, r->payload);
	if (--hs->pending == 0)
		health_answer(rq, hs->res);
}

static void
health_request(struct gw_req *rq)
{
	Health__HealthCheckRequest hreq = HEALTH__HEALTH_CHECK_REQUEST__INIT;
	struct health_req *hs = gw_req_hstate(rq);
	size_t i, len;
	uint8_t *payload;

	len = health__health_check_request__get_packed_size(&hreq);
	payload = cm_arena_alloc(rq->arena, len ? len : 1);
	health__health_check_request__pack(&hreq, payload);
	hs->res =
	    cm_arena_alloc(rq->arena, (gw_nupstreams + 1) * sizeof(*hs->res));
	memset(hs->res, 0, (gw_nupstreams + 1) * sizeof(*hs->res));
	if (gw_nupstreams == 0) {
		health_answer(rq, hs->res);
		return;
	}
	hs->pending = gw_nupstreams;
	for (i = 0; i < gw_nupstreams; i++)
		gw_req_call(rq, &gw_upstreams[i], "health.Health/Check",
		            payload, len, gw_core_cfg.rpc_timeout_ms,
		            health_reply, hs, (int) i);
}

static const struct gw_handler health_handler = {
    .name = "health",
    .flags = GW_HF_UNFILTERED,
    .req_size = sizeof(struct health_req),
    .on_request = health_request,
};

void
gw_health_register(void)
{
	gw_handler_register(&health_handler);
}
