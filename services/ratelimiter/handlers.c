/*
 * Check, Rules and Status.
 *
 * Check decides a request in this order: the rules it matches (none: allowed,
 * and the caller may decide identical requests itself for a second); the
 * over-limit cache (a key refused until T is refused again without asking
 * Redis until T); the store, in one script; when the store cannot answer,
 * each rule's failure policy: fail-closed rules make the answer
 * "unavailable" (503 at the gateway), otherwise the in-process fallback
 * limiter decides.  A store error is never reported as over limit.
 *
 * The reply names the binding rule: when refused, the refusing rule that
 * asks the longest wait; when allowed, the rule with the fewest remaining.
 * It also grants the caller a local budget: when every rule has plenty
 * left (at least 64), the caller may admit remaining/8 identical requests
 * without asking, for at most 10 s, and pays for them with the cost of
 * its next check.  (Remaining never shrinks but by hits, whatever the
 * algorithm, so the budget stays safe for its second; the second bounds
 * how stale the caller's headers and its view of reloaded rules get.)  With
 * several callers this can overshoot a limit by the budgets in flight, so
 * budgets are granted only far from the limit, never near it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "log.h"
#include "metrics.h"
#include "ratelimiter.pb-c.h"
#include "status.h"
#include "util.h"

#define BUDGET_MIN_REMAINING 64
/* A gateway keeps one budget per scope for all its loops. */
#define BUDGET_DIVISOR 8
/*
 * How long a gateway may spend a budget before it asks again.  The
 * budget is a count (remaining / BUDGET_DIVISOR), so the overshoot it
 * allows does not grow with this; a longer time only lets a scope that
 * is far from its limits be asked about less often (gateways renew a
 * budget early, when a quarter of it is left).
 */
#define BUDGET_TTL_MS   10000
#define NO_RULES_BUDGET (1LL << 30)

static struct {
	cm_counter *allowed, *denied, *unavailable, *shadow_denied;
	cm_counter *store_errors, *fallback, *hot_hits;
} M;

static _Atomic int64_t last_store_warn;

void
rl_service_init(struct rl_service *s, struct cm_rl_rules *rules)
{
	pthread_mutex_init(&s->mu, NULL);
	s->rules = rules;
	s->fallback = rl_fallback_new(100000);
	s->hot = rl_hot_new(100000);
	M.allowed = cm_counter_get("ratelimiter_checks_total",
	                           "result=\"allowed\"", "Checks by outcome.");
	M.denied = cm_counter_get("ratelimiter_checks_total",
	                          "result=\"denied\"", "Checks by outcome.");
	M.unavailable =
	    cm_counter_get("ratelimiter_checks_total", "result=\"unavailable\"",
	                   "Checks by outcome.");
	M.shadow_denied = cm_counter_get(
	    "ratelimiter_shadow_denied_total", "",
	    "Hits a shadow rule would have refused (counted, not refused).");
	M.store_errors =
	    cm_counter_get("ratelimiter_store_errors_total", "",
	                   "Checks the store (Redis) could not decide.");
	M.fallback = cm_counter_get(
	    "ratelimiter_fallback_total", "",
	    "Checks decided by the in-process fallback limiter.");
	M.hot_hits =
	    cm_counter_get("ratelimiter_overlimit_cache_hits_total", "",
	                   "Checks refused from the local over-limit cache.");
}

void
rl_service_fini(struct rl_service *s)
{
	cm_rl_rules_free(s->rules);
	rl_fallback_free(s->fallback);
	rl_hot_free(s->hot);
	pthread_mutex_destroy(&s->mu);
}

static struct cm_rl_rules *
rules_get(struct rl_service *s)
{
	struct cm_rl_rules *r;

	pthread_mutex_lock(&s->mu);
	r = s->rules;
	r->refs++;
	pthread_mutex_unlock(&s->mu);
	return (r);
}

static void
rules_put(struct rl_service *s, struct cm_rl_rules *r)
{
	bool last;

	pthread_mutex_lock(&s->mu);
	last = --r->refs == 0;
	pthread_mutex_unlock(&s->mu);
	if (last)
		cm_rl_rules_free(r);
}

void
rl_service_swap(struct rl_service *s, struct cm_rl_rules *rules)
{
	struct cm_rl_rules *old;

	pthread_mutex_lock(&s->mu);
	old = s->rules;
	s->rules = rules;
	pthread_mutex_unlock(&s->mu);
	rules_put(s, old);
}

static bool
is_admin(cm_rpc_ctx *ctx)
{
	const char *role = cm_rpc_ctx_meta(ctx, "claim.role");

	return (role != NULL && strcmp(role, "admin") == 0);
}

static Ratelimiter__RuleResult *
rule_result(cm_rpc_ctx *ctx, const struct cm_rl_match *m,
            const struct rl_verdict *v)
{
	Ratelimiter__RuleResult *r =
	    cm_rpc_new_msg(ctx, &ratelimiter__rule_result__descriptor);

	r->rule = cm_arena_strdup(ctx->arena, m->rule->name);
	r->allowed = v->allowed;
	r->limit = m->lim.limit;
	r->remaining = v->remaining;
	r->reset_ms = v->reset_ms;
	r->retry_ms = v->retry_ms;
	r->window_s = m->lim.window_ms / 1000;
	r->shadow = m->rule->shadow;
	r->key = cm_arena_strdup(ctx->arena, m->key);
	return (r);
}

static void
store_warn(const char *what)
{
	int64_t now = cm_mono_ms(), last = last_store_warn;

	if (now - last < 1000)
		return;
	last_store_warn = now;
	log_warnx("event=store_unavailable store=redis msg=\"%s\"", what);
}

static int64_t
ceil_s(int64_t ms)
{
	return (ms <= 0 ? 0 : (ms + 999) / 1000);
}

static int
h_check(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Ratelimiter__CheckRequest *rq =
	    (const Ratelimiter__CheckRequest *) in;
	struct rl_service *svc = ctx->service_arg;
	struct rl_worker *w = ctx->worker;
	Ratelimiter__CheckResponse *resp;
	struct cm_rl_match m[CM_RL_MAX_MATCH];
	struct rl_verdict v[CM_RL_MAX_MATCH];
	struct cm_rl_request req = {
	    .method = rq->method,
	    .path = rq->path,
	    .ip = rq->ip,
	    .user = rq->user,
	    .tier = rq->tier,
	    .api_key = rq->api_key,
	};
	struct cm_rl_rules *rules;
	int64_t cost = rq->cost > 0 ? rq->cost : 1, now = cm_mono_ms();
	int64_t budget = NO_RULES_BUDGET, ttl = BUDGET_TTL_MS, left;
	bool all = true, from_store = false;
	size_t n, i;
	int bind = -1;

	resp = cm_rpc_new_msg(ctx, &ratelimiter__check_response__descriptor);
	rules = rules_get(svc);
	resp->rules_version = rules->version;
	n = cm_rl_match(rules, &req, m, CM_RL_MAX_MATCH);
	resp->matched = n > 0;
	resp->allowed = true;
	for (i = 0; i < n; i++)
		if (m[i].rule->fail_closed)
			resp->fail_closed = true;

	/* Keys known to be over limit: refused without asking Redis. */
	for (i = 0; i < n; i++) {
		if (m[i].rule->shadow ||
		    (left = rl_hot_get(svc->hot, m[i].key, now)) == 0)
			continue;
		memset(v, 0, sizeof(v[0]) * n);
		v[i].retry_ms = v[i].reset_ms = left;
		all = false;
		resp->degraded = true;
		cm_counter_add(M.hot_hits, 1);
		break;
	}
	if (all && n > 0) {
		if (w->store.ops->check(w->store.impl, m, n, cost, false, v,
		                        &all) == 0) {
			from_store = true;
		} else {
			cm_counter_add(M.store_errors, 1);
			store_warn("check failed; applying failure policies");
			resp->degraded = true;
			if (resp->fail_closed) {
				resp->allowed = false;
				resp->unavailable = true;
				cm_counter_add(M.unavailable, 1);
				rules_put(svc, rules);
				*out = &resp->base;
				return (CM_OK);
			}
			all = rl_fallback_check(svc->fallback, m, n, cost, now,
			                        v);
			cm_counter_add(M.fallback, 1);
		}
	}

	resp->allowed = all;
	resp->n_results = n;
	resp->results =
	    n ? cm_arena_alloc(ctx->arena, n * sizeof(void *)) : NULL;
	for (i = 0; i < n; i++) {
		resp->results[i] = rule_result(ctx, &m[i], &v[i]);
		if (m[i].rule->shadow) {
			if (!v[i].allowed) {
				cm_counter_add(M.shadow_denied, 1);
				log_info("event=shadow_denied rule=%s key=%s",
				         m[i].rule->name, m[i].key);
			}
		} else if (!all) {
			if (!v[i].allowed &&
			    (bind < 0 || v[i].retry_ms > v[bind].retry_ms))
				bind = (int) i;
		} else if (bind < 0 || v[i].remaining < v[bind].remaining) {
			bind = (int) i;
		}
		if (from_store && !v[i].allowed && !m[i].rule->shadow &&
		    cost == 1 && v[i].retry_ms > 0)
			rl_hot_put(svc->hot, m[i].key, now + v[i].retry_ms);
		if (v[i].remaining >= BUDGET_MIN_REMAINING) {
			if (v[i].remaining / BUDGET_DIVISOR < budget)
				budget = v[i].remaining / BUDGET_DIVISOR;
		} else {
			budget = 0;
		}
	}
	if (bind < 0 && n > 0)
		bind = 0; /* only shadow rules matched */
	if (bind >= 0) {
		resp->rule = cm_arena_strdup(ctx->arena, m[bind].rule->name);
		resp->limit = m[bind].lim.limit;
		resp->remaining = v[bind].remaining;
		resp->reset_s = ceil_s(v[bind].reset_ms);
		resp->window_s = m[bind].lim.window_ms / 1000;
		if (!all) {
			resp->retry_ms =
			    v[bind].retry_ms > 0 ? v[bind].retry_ms : 1;
			resp->retry_after_s = ceil_s(resp->retry_ms);
		}
	}
	if (all && budget > 0) {
		resp->local_budget = budget;
		resp->local_ttl_ms = ttl;
	}
	cm_counter_add(all ? M.allowed : M.denied, 1);
	rules_put(svc, rules);
	*out = &resp->base;
	return (CM_OK);
}

static int
h_rules(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	struct rl_service *svc = ctx->service_arg;
	Ratelimiter__RulesResponse *resp;
	struct cm_rl_rules *rs;

	(void) in;
	if (!is_admin(ctx))
		return (cm_rpc_error(ctx, CM_PERMISSION_DENIED,
		                     "the admin role is required"));
	rs = rules_get(svc);
	resp = rl_rules_to_pb(rs, ctx->arena);
	rules_put(svc, rs);
	*out = &resp->base;
	return (CM_OK);
}

/* Which key kinds a rule's keying can produce. */
static bool
rule_has_kind(const struct cm_rl_rule *r, const char *kind)
{
	switch (r->key) {
	case CM_RL_KEY_IP:
	case CM_RL_KEY_ANON_IP:
		return (strcmp(kind, "ip") == 0);
	case CM_RL_KEY_USER:
		return (strcmp(kind, "user") == 0);
	case CM_RL_KEY_USER_OR_IP:
		return (strcmp(kind, "ip") == 0 || strcmp(kind, "user") == 0);
	case CM_RL_KEY_API_KEY:
		return (strcmp(kind, "apikey") == 0);
	case CM_RL_KEY_GLOBAL:
		return (strcmp(kind, "all") == 0);
	}
	return (false);
}

/*
 * Status of "<kind>:<value>" (ip:1.2.3.4, user:alice, apikey:K, or "all"
 * for global rules) under every rule keyed by that kind, peeked (nothing
 * spent), at each rule's default limit.
 */
static int
h_status(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Ratelimiter__StatusRequest *rq =
	    (const Ratelimiter__StatusRequest *) in;
	struct rl_service *svc = ctx->service_arg;
	struct rl_worker *w = ctx->worker;
	Ratelimiter__StatusResponse *resp;
	struct cm_rl_match m[CM_RL_MAX_MATCH];
	struct rl_verdict v[CM_RL_MAX_MATCH];
	struct cm_rl_rules *rs;
	char kind[16];
	const char *value, *colon;
	size_t i, n = 0;
	bool all;

	if (!is_admin(ctx))
		return (cm_rpc_error(ctx, CM_PERMISSION_DENIED,
		                     "the admin role is required"));
	if (strcmp(rq->key, "all") == 0) {
		strcpy(kind, "all");
		value = "all";
	} else if ((colon = strchr(rq->key, ':')) == NULL ||
	           (size_t) (colon - rq->key) >= sizeof(kind) ||
	           colon[1] == '\0') {
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "key must be ip:ADDR, user:ID, "
		                     "apikey:KEY or all"));
	} else {
		memcpy(kind, rq->key, (size_t) (colon - rq->key));
		kind[colon - rq->key] = '\0';
		value = colon + 1;
	}
	rs = rules_get(svc);
	for (i = 0; i < rs->n && n < CM_RL_MAX_MATCH; i++) {
		const struct cm_rl_rule *r = &rs->v[i];

		if (rq->rule[0] != '\0' && strcmp(rq->rule, r->name) != 0)
			continue;
		if (!rule_has_kind(r, kind))
			continue;
		m[n].rule = r;
		m[n].lim = r->lim;
		if (m[n].lim.burst <= 0)
			m[n].lim.burst = m[n].lim.limit;
		cm_rl_key(m[n].key, sizeof(m[n].key), r, kind, value);
		n++;
	}
	if (n > 0 &&
	    w->store.ops->check(w->store.impl, m, n, 0, true, v, &all) != 0) {
		rules_put(svc, rs);
		return (cm_rpc_error(ctx, CM_UNAVAILABLE,
		                     "the rate limit store is unavailable"));
	}
	resp = cm_rpc_new_msg(ctx, &ratelimiter__status_response__descriptor);
	resp->n_results = n;
	resp->results = cm_arena_alloc(ctx->arena, (n + 1) * sizeof(void *));
	for (i = 0; i < n; i++)
		resp->results[i] = rule_result(ctx, &m[i], &v[i]);
	rules_put(svc, rs);
	*out = &resp->base;
	return (CM_OK);
}

static const cm_rpc_handler handlers[] = {h_check, h_rules, h_status};

const cm_rpc_service ratelimiter_rpc_service = {
    .desc = &ratelimiter__rate_limiter__descriptor,
    .handlers = handlers,
};
