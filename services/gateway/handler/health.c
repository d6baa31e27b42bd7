/*
 * "health": GET /healthz.  200 if every upstream the gateway needs is
 * SERVING, else 503, with each service's state and dependencies, and the
 * redirect cache's.
 *
 * It costs the services at most one Health.Check each a second, however
 * often it is asked: the services' answers are kept for the whole gateway
 * (an aggregate under a mutex) and asked for again only when a request
 * finds them a second old; that request waits for the answers, the others
 * are answered from the aggregate at once.  What changes fast is read live
 * on every request: an upstream the gateway has no connection to is
 * UNREACHABLE now (a stopped service shows within milliseconds, not at the
 * next refresh).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "health.pb-c.h"
#include "status.h"
#include "util.h"

#include "handlers.h"

#define REFRESH_MS 1000
#define MAX_UPS    16

struct health_result {
	int status;
	const char *message;
	Health__HealthCheckResponse *resp;
};

struct health_req {
	struct health_result *res; /* one per upstream */
	size_t pending;
	bool refresher; /* its answers go into the aggregate */
};

/* The services' last answers, for every loop. */
static struct {
	pthread_mutex_t mu;
	bool have;
	int64_t at;         /* cm_mono_ms of those answers */
	int64_t refreshing; /* cm_mono_ms a refresh began; 0: none */
	json_t *svc[MAX_UPS];
	bool up[MAX_UPS]; /* SERVING */
} H = {.mu = PTHREAD_MUTEX_INITIALIZER};

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

/* One service's JSON from its answer; *up: whether it is SERVING. */
static json_t *
service_json(const struct health_result *res, bool *up)
{
	json_t *svc = json_object(), *deps;
	Health__HealthCheckResponse *hr = res->resp;

	if (res->status != CM_OK || hr == NULL) {
		json_object_set_new(svc, "status", json_string("UNREACHABLE"));
		json_object_set_new(svc, "error",
		                    json_string(res->status != CM_OK
		                                    ? res->message
		                                    : "malformed reply"));
		*up = false;
		return (svc);
	}
	*up = hr->status ==
	      HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	json_object_set_new(svc, "status",
	                    json_string(serving_name(hr->status)));
	deps = json_object();
	for (size_t n = 0; n < hr->n_dependencies; n++) {
		Health__Dependency *d = hr->dependencies[n];

		json_object_set_new(deps, d->name,
		                    json_pack("{s:b, s:s}", "ok", d->ok,
		                              "detail",
		                              d->detail ? d->detail : ""));
	}
	json_object_set_new(svc, "dependencies", deps);
	return (svc);
}

static bool
unreachable(json_t *svc)
{
	const char *st = json_string_value(json_object_get(svc, "status"));

	return (st == NULL || strcmp(st, "UNREACHABLE") == 0);
}

/*
 * Answers from svc[] / up[] (owned by the caller), each upstream's
 * connection state read now: one with no server connected is UNREACHABLE
 * whatever its last answer said.
 */
static void
health_respond(struct gw_req *rq, json_t **svc, const bool *up)
{
	json_t *top, *services = json_object();
	bool all = true, cache_ok;
	const char *cache_detail;
	char *text;

	for (size_t i = 0; i < gw_nupstreams; i++) {
		json_t *s = svc[i];
		bool ok = up[i];

		if (s == NULL ||
		    cm_rpc_client_connected(gw_upstreams[i].client) == 0) {
			const char *why =
			    s == NULL ? "out of memory" : "no server connected";

			json_decref(s);
			s = json_pack("{s:s, s:s}", "status", "UNREACHABLE",
			              "error", why);
			ok = false;
		}
		/* A soft upstream out of reach is shown; one that answers
		 * NOT_SERVING counts. */
		if (!ok && (!gw_upstreams[i].soft || !unreachable(s)))
			all = false;
		json_object_set_new(services, gw_upstreams[i].name, s);
		svc[i] = NULL;
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

/* Every upstream has answered (or failed). */
static void
health_answer(struct gw_req *rq, struct health_req *hs)
{
	json_t *svc[MAX_UPS];
	bool up[MAX_UPS];

	for (size_t i = 0; i < gw_nupstreams; i++)
		svc[i] = service_json(&hs->res[i], &up[i]);
	if (hs->refresher) {
		pthread_mutex_lock(&H.mu);
		for (size_t i = 0; i < gw_nupstreams; i++) {
			json_decref(H.svc[i]);
			H.svc[i] = json_deep_copy(svc[i]);
			H.up[i] = up[i];
		}
		H.have = true;
		H.at = cm_mono_ms();
		H.refreshing = 0;
		pthread_mutex_unlock(&H.mu);
	}
	health_respond(rq, svc, up);
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
		health_answer(rq, hs);
}

static void
health_request(struct gw_req *rq)
{
	Health__HealthCheckRequest hreq = HEALTH__HEALTH_CHECK_REQUEST__INIT;
	struct health_req *hs = gw_req_hstate(rq);
	json_t *svc[MAX_UPS];
	bool up[MAX_UPS], cached = false;
	int64_t now = cm_mono_ms();
	size_t i, len;
	uint8_t *payload;

	pthread_mutex_lock(&H.mu);
	/* A refresh that never came back (its client left) expires. */
	if (H.refreshing != 0 &&
	    now - H.refreshing > 2 * gw_core_cfg.rpc_timeout_ms)
		H.refreshing = 0;
	if (!H.have || (now - H.at >= REFRESH_MS && H.refreshing == 0)) {
		hs->refresher = H.refreshing == 0;
		if (hs->refresher)
			H.refreshing = now;
	} else {
		cached = true;
		for (i = 0; i < gw_nupstreams; i++) {
			svc[i] = json_deep_copy(H.svc[i]);
			up[i] = H.up[i];
		}
	}
	pthread_mutex_unlock(&H.mu);
	if (cached) {
		health_respond(rq, svc, up);
		return;
	}
	len = health__health_check_request__get_packed_size(&hreq);
	payload = cm_arena_alloc(rq->arena, len ? len : 1);
	health__health_check_request__pack(&hreq, payload);
	hs->res =
	    cm_arena_alloc(rq->arena, (gw_nupstreams + 1) * sizeof(*hs->res));
	memset(hs->res, 0, (gw_nupstreams + 1) * sizeof(*hs->res));
	if (gw_nupstreams == 0) {
		health_answer(rq, hs);
		return;
	}
	hs->pending = gw_nupstreams;
	for (i = 0; i < gw_nupstreams; i++)
		gw_req_call(rq, &gw_upstreams[i], "health.Health/Check",
		            payload, len, gw_core_cfg.rpc_timeout_ms,
		            health_reply, hs, (int) i);
}

static void
health_loop_fini(struct gw_loop *l, void *ls)
{
	(void) ls;
	if (l->id != 0)
		return;
	/* The first loop's fini, once all have ended, frees the aggregate. */
	pthread_mutex_lock(&H.mu);
	for (size_t i = 0; i < MAX_UPS; i++) {
		json_decref(H.svc[i]);
		H.svc[i] = NULL;
	}
	H.have = false;
	pthread_mutex_unlock(&H.mu);
}

static int
health_check_route(const struct gw_croute *r, char *err, size_t errlen)
{
	(void) r;
	if (gw_nupstreams > MAX_UPS) {
		snprintf(err, errlen, "more than %d upstreams", MAX_UPS);
		return (-1);
	}
	return (0);
}

static const struct gw_handler health_handler = {
    .name = "health",
    .flags = GW_HF_UNFILTERED,
    .req_size = sizeof(struct health_req),
    .loop = {.fini = health_loop_fini},
    .check_route = health_check_route,
    .on_request = health_request,
};

void
gw_health_register(void)
{
	gw_handler_register(&health_handler);
}
