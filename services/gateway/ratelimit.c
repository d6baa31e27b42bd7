/*
 * The rate limit check: every API request and every redirect is checked
 * with ratelimiter.RateLimiter/Check before its handler runs (never
 * /healthz or /metrics).
 *
 * The call.  The request's descriptors (method, path, client address as
 * handler.c computed it, user, tier) go to the ratelimiter with a short
 * deadline (GATEWAY_RATELIMIT_TIMEOUT_MS, 20 ms).  Allowed: the handler
 * runs, and the response carries the RateLimit headers.  Refused: 429 with
 * Retry-After and the headers, the handler never runs.  The ratelimiter
 * could not decide a fail-closed rule: 503.  The ratelimiter itself is
 * unreachable or late: the failure policy of the rules last seen for the
 * route applies (fail-open unless one of them was fail-closed), counted
 * in gateway_ratelimit_failures_total.
 *
 * The local budget.  A round trip per request would cap the redirect path
 * at what one NNG round trip allows, far below what the redirect cache
 * serves.  So when the ratelimiter sees a request far from every limit it
 * grants a budget (remaining/16, for at most a second or until the
 * earliest reset): this loop admits that many requests of the same scope
 * itself and adds them to the cost of its next check for that scope.  A
 * scope is what decided the request: the caller's tier and the store key
 * of every rule it matched (rule and key value); the loop learns, per exact
 * request descriptor (method, path, address, user, tier), which scope it
 * falls in (an alias, kept until the rules' version changes), so the
 * thousand paths of a thousand short links, all under one rule keyed by
 * address, share one budget and one refresh.  When the entry's second is over
 * and budget is left, the request is still admitted and the check that renews
 * the entry (paying what was admitted) runs in the background, so a request far
 * from its limits never waits for the ratelimiter ("stale while revalidate").
 * Near a limit the budget is 0 and every request is asked about, so small
 * limits stay exact; far from it the overshoot is bounded by the budgets in
 * flight.  Hits admitted locally whose entry is evicted or never checked again
 * go uncounted: at most one budget per entry.  The budget table is per loop (no
 * locks): a 4-way set-associative array of GW_RL_SLOTS entries.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "ratelimiter.pb-c.h"
#include "status.h"
#include "util.h"

#include "gateway.h"

#define GW_RL_SLOTS   8192
#define GW_RL_KEYMAX  240
#define GW_RL_MAXLOOP 256
#define GRACE_MS      50

struct rl_entry {
	uint64_t h;
	int64_t expires; /* uv_now; 0: empty */
	int64_t budget;  /* local admissions left */
	int64_t owed;    /* admitted locally, not yet reported */
	int64_t limit, remaining, reset_at, window_s;
	bool refreshing; /* a background check is in flight */
	char rule[48];
	uint16_t klen;
	char key[GW_RL_KEYMAX];
};

struct rl_cache {
	struct rl_entry *v;
};

/*
 * What a request's descriptors (method, path, address, user, tier) were
 * last decided by: the scope, i.e. the tier and the keys of the rules they
 * matched.  Budgets are kept per scope, so the thousand paths of a
 * thousand short links, all matching one rule keyed by address, share one
 * budget and one background refresh.
 */
struct rl_alias {
	uint64_t h;
	int64_t expires; /* uv_now; 0: empty */
	uint64_t sh;
	uint16_t klen, sklen;
	char key[GW_RL_KEYMAX];
	char skey[GW_RL_KEYMAX];
};

/*
 * An alias stays valid while the rules in force are the ones it was learnt
 * under: every reply names the rules' version, and a loop that sees a new
 * one forgets its aliases.  The TTL only ages out descriptors not seen
 * for a while.
 */
#define ALIAS_TTL_MS 300000

static struct {
	bool enabled;
	int64_t timeout_ms;
	struct gw_upstream *up;
	struct rl_cache caches[GW_RL_MAXLOOP];
	struct rl_alias *aliases[GW_RL_MAXLOOP];
	uint64_t rules_version[GW_RL_MAXLOOP];
	atomic_bool *route_closed; /* per route: a fail-closed rule seen */
	cm_counter *allowed, *limited, *local, *fail_open, *fail_closed,
	    *unavailable;
} R;

void
gw_ratelimit_init(void)
{
	R.enabled = cm_env_bool("GATEWAY_RATELIMIT", true);
	R.timeout_ms = cm_env_int("GATEWAY_RATELIMIT_TIMEOUT_MS", 20, 1, 60000);
	R.up = gw_upstream_find("ratelimiter");
	if (R.up == NULL)
		R.enabled = false;
	if ((R.route_closed =
	         calloc(gw_router.n + 1, sizeof(*R.route_closed))) == NULL)
		fatalx("gateway: out of memory");
	R.allowed = cm_counter_get("gateway_ratelimit_checks_total",
	                           "result=\"allowed\"",
	                           "Rate limit checks by outcome.");
	R.limited = cm_counter_get("gateway_ratelimit_checks_total",
	                           "result=\"limited\"",
	                           "Rate limit checks by outcome.");
	R.local =
	    cm_counter_get("gateway_ratelimit_checks_total", "result=\"local\"",
	                   "Rate limit checks by outcome.");
	R.unavailable = cm_counter_get("gateway_ratelimit_checks_total",
	                               "result=\"unavailable\"",
	                               "Rate limit checks by outcome.");
	R.fail_open = cm_counter_get(
	    "gateway_ratelimit_failures_total", "policy=\"open\"",
	    "Checks the ratelimiter did not answer in time, by the policy "
	    "applied.");
	R.fail_closed = cm_counter_get(
	    "gateway_ratelimit_failures_total", "policy=\"closed\"",
	    "Checks the ratelimiter did not answer in time, by the policy "
	    "applied.");
	log_info("event=ratelimit enabled=%d timeout_ms=%lld", R.enabled,
	         (long long) R.timeout_ms);
}

void
gw_ratelimit_fini(void)
{
	size_t i;

	for (i = 0; i < GW_RL_MAXLOOP; i++) {
		free(R.caches[i].v);
		R.caches[i].v = NULL;
		free(R.aliases[i]);
		R.aliases[i] = NULL;
	}
	free(R.route_closed);
	R.route_closed = NULL;
}

#define GW_RL_WAYS 4

/*
 * The entry for key (hash h) in l's table: the one holding key among the
 * GW_RL_WAYS slots from h, else (to be filled) an empty one, else the one
 * that expires first.  A set-associative table: a few colliding keys do
 * not evict each other on every request.
 */
static struct rl_entry *
slot_of(struct gw_loop *l, uint64_t h, const char *key, size_t klen)
{
	struct rl_cache *c = &R.caches[l->id % GW_RL_MAXLOOP];
	struct rl_entry *e, *victim = NULL;
	size_t i;

	if (c->v == NULL &&
	    (c->v = calloc(GW_RL_SLOTS + GW_RL_WAYS, sizeof(*c->v))) == NULL)
		fatalx("gateway: out of memory");
	for (i = 0; i < GW_RL_WAYS; i++) {
		e = &c->v[(h & (GW_RL_SLOTS - 1)) + i];
		if (e->h == h && e->klen == klen &&
		    memcmp(e->key, key, klen) == 0)
			return (e);
		if (victim == NULL || (victim->klen != 0 && e->klen == 0) ||
		    (e->klen != 0 && victim->klen != 0 &&
		     e->expires < victim->expires && !e->refreshing))
			victim = e;
	}
	return (victim);
}

static uint64_t
fnv(uint64_t h, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ (unsigned char) s[i]) * 1099511628211ULL;
	return (h);
}

/*
 * The alias slot for descriptor key (hash h) in l's table: the one holding
 * it, else an empty or the earliest-expiring one of its ways (to fill).
 */
static struct rl_alias *
alias_of(struct gw_loop *l, uint64_t h, const char *key, size_t klen)
{
	struct rl_alias **t = &R.aliases[l->id % GW_RL_MAXLOOP];
	struct rl_alias *a, *victim = NULL;

	if (*t == NULL &&
	    (*t = calloc(GW_RL_SLOTS + GW_RL_WAYS, sizeof(**t))) == NULL)
		fatalx("gateway: out of memory");
	for (size_t i = 0; i < GW_RL_WAYS; i++) {
		a = &(*t)[(h & (GW_RL_SLOTS - 1)) + i];
		if (a->h == h && a->klen == klen &&
		    memcmp(a->key, key, klen) == 0)
			return (a);
		if (victim == NULL || a->expires < victim->expires)
			victim = a;
	}
	return (victim);
}

/* Forgets l's aliases when the rules in force have changed. */
static void
rules_seen(struct gw_loop *l, uint64_t version)
{
	unsigned i = l->id % GW_RL_MAXLOOP;

	if (R.rules_version[i] == version)
		return;
	R.rules_version[i] = version;
	if (R.aliases[i] != NULL)
		memset(R.aliases[i], 0,
		       (GW_RL_SLOTS + GW_RL_WAYS) * sizeof(*R.aliases[i]));
}

static bool
alias_hit(const struct rl_alias *a, uint64_t h, const char *key, size_t klen,
          int64_t now)
{
	return (a->h == h && a->klen == klen && now < a->expires &&
	        memcmp(a->key, key, klen) == 0);
}

/*
 * The scope of a decision: the tier and the store keys of every matched
 * rule (which name the rule and its key's value), in the service's rule
 * order.  Requests with the same scope are under exactly the same limits.
 * Returns the length, or 0 when it does not fit.
 */
static size_t
scope_key(const Ratelimiter__CheckResponse *resp, const char *tier, char *out,
          size_t outlen)
{
	int n = snprintf(out, outlen, "%s", tier != NULL ? tier : "");
	size_t len;

	if (n < 0 || (size_t) n >= outlen)
		return (0);
	len = (size_t) n;
	for (size_t i = 0; i < resp->n_results; i++) {
		n = snprintf(out + len, outlen - len, "\x1f%s",
		             resp->results[i]->key);
		if (n < 0 || (size_t) n >= outlen - len)
			return (0);
		len += (size_t) n;
	}
	return (len);
}

/* The descriptor key: method, path, address, user, tier, API key id. */
static size_t
desc_key(struct gw_req *rq, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%d\x1f%.*s\x1f%s\x1f%s\x1f%s\x1f%s",
	                 rq->method, (int) rq->plen, rq->path, rq->client_ip,
	                 rq->id.user ? rq->id.user : "",
	                 rq->id.tier ? rq->id.tier : "", rq->api_key);

	return (n < 0 || (size_t) n >= outlen ? 0 : (size_t) n);
}

static void
set_headers(struct gw_conn *c, const char *rule, int64_t limit,
            int64_t remaining, int64_t reset_s, int64_t window_s,
            int64_t retry_s)
{
	struct gw_req *rq = &c->req;

	if (remaining < 0)
		remaining = 0;
	if (reset_s < 0)
		reset_s = 0;
	/* RateLimit-Policy / RateLimit: draft-ietf-httpapi-ratelimit-headers
	 * (structured fields); RateLimit-Limit/-Remaining/-Reset: the older
	 * draft, as Envoy and Kong send them. */
	rq->rl_hdrs = cm_arena_printf(
	    &c->arena,
	    "RateLimit-Policy: \"%s\";q=%lld;w=%lld\r\n"
	    "RateLimit: \"%s\";r=%lld;t=%lld\r\n"
	    "RateLimit-Limit: %lld\r\n"
	    "RateLimit-Remaining: %lld\r\n"
	    "RateLimit-Reset: %lld\r\n"
	    "%s%s%s",
	    rule, (long long) limit, (long long) window_s, rule,
	    (long long) remaining, (long long) reset_s, (long long) limit,
	    (long long) remaining, (long long) reset_s,
	    retry_s > 0 ? "Retry-After: " : "",
	    retry_s > 0
	        ? cm_arena_printf(&c->arena, "%lld", (long long) retry_s)
	        : "",
	    retry_s > 0 ? "\r\n" : "");
}

static void
respond_limited(struct gw_conn *c, const char *rule, int64_t retry_s)
{
	struct gw_buf *s = &c->loop->scratch;
	char msg[160];

	snprintf(msg, sizeof(msg), "rate limit exceeded (%s); retry in %lld s",
	         rule, (long long) retry_s);
	s->len = 0;
	gw_buf_puts(s, "{\"error\":{\"code\":\"RESOURCE_EXHAUSTED\","
	               "\"message\":");
	gw_json_quote(s, msg, strlen(msg));
	gw_buf_printf(s, ",\"retry_after\":%lld}}", (long long) retry_s);
	gw_respond(c, 429, "application/json", NULL, s->p, s->len);
}

static void
entry_fill(struct rl_entry *e, const Ratelimiter__CheckResponse *resp,
           int64_t now)
{
	e->expires = now + resp->local_ttl_ms;
	e->budget = resp->local_budget;
	e->limit = resp->matched ? resp->limit : 0;
	e->remaining = resp->remaining;
	e->reset_at = now + resp->reset_s * 1000;
	e->window_s = resp->window_s;
	e->refreshing = false;
	snprintf(e->rule, sizeof(e->rule), "%s",
	         resp->matched ? resp->rule : "");
}

/* A background refresh: the loop, the budget's scope, the caller's tier. */
struct refresh {
	struct gw_loop *loop;
	uint64_t h;
	size_t klen;
	char key[GW_RL_KEYMAX];
	char tier[64];
	cm_arena arena;
};

/*
 * A background refresh came back (on the loop).  Allowed with a budget: the
 * entry goes on.  Refused or no budget: the entry is dropped, so the next
 * request waits for a check of its own.  Failed: retried by a later
 * request after a short pause.
 */
static void
refresh_done(void *arg, uint64_t tag, int idx, const struct gw_reply *r)
{
	struct refresh *rf = arg;
	struct rl_entry *e = slot_of(rf->loop, rf->h, rf->key, rf->klen);
	int64_t now = (int64_t) uv_now(&rf->loop->loop);
	Ratelimiter__CheckResponse *resp = NULL;

	(void) tag;
	(void) idx;
	if (r->status == CM_OK)
		resp = ratelimiter__check_response__unpack(&rf->arena.pb,
		                                           r->len, r->payload);
	if (resp != NULL)
		rules_seen(rf->loop, resp->rules_version);
	if (e->h == rf->h && e->klen == rf->klen &&
	    memcmp(e->key, rf->key, rf->klen) == 0) {
		char sk[GW_RL_KEYMAX];
		size_t sklen = resp != NULL
		                   ? scope_key(resp, rf->tier, sk, sizeof(sk))
		                   : 0;

		if (resp == NULL) {
			e->refreshing = false;
			e->expires = now + 100;
		} else if (resp->allowed && resp->local_budget > 0 &&
		           sklen == rf->klen &&
		           memcmp(sk, rf->key, sklen) == 0) {
			/* Same rules as before (no reload moved them). */
			entry_fill(e, resp, now);
		} else {
			e->expires = 0;
			e->budget = 0;
			e->refreshing = false;
		}
	}
	cm_arena_fini(&rf->arena);
	free(rf);
}

/* The reply arrived (or the call failed); runs on the loop. */
static void
check_reply(struct gw_conn *c, const struct gw_reply *r, uint64_t h,
            const char *key, size_t klen)
{
	struct gw_req *rq = &c->req;
	unsigned ridx = rq->route ? rq->route->idx : 0;
	Ratelimiter__CheckResponse *resp;
	int64_t now = (int64_t) uv_now(&c->loop->loop);
	struct rl_entry *e;

	if (r->status != CM_OK ||
	    (resp = ratelimiter__check_response__unpack(&c->arena.pb, r->len,
	                                                r->payload)) == NULL) {
		if (atomic_load_explicit(&R.route_closed[ridx],
		                         memory_order_relaxed)) {
			cm_counter_add(R.fail_closed, 1);
			gw_respond_error(c, 503, "UNAVAILABLE",
			                 "rate limiter unavailable", NULL);
			return;
		}
		cm_counter_add(R.fail_open, 1);
		rq->rl_done = true;
		gw_request_dispatch(c);
		return;
	}
	atomic_store_explicit(&R.route_closed[ridx], resp->fail_closed,
	                      memory_order_relaxed);
	rules_seen(c->loop, resp->rules_version);
	if (resp->unavailable) {
		cm_counter_add(R.unavailable, 1);
		gw_respond_error(c, 503, "UNAVAILABLE",
		                 "rate limit store unavailable", NULL);
		return;
	}
	if (resp->matched)
		set_headers(c, resp->rule, resp->limit, resp->remaining,
		            resp->reset_s, resp->window_s,
		            resp->allowed ? 0 : resp->retry_after_s);
	if (!resp->allowed) {
		cm_counter_add(R.limited, 1);
		respond_limited(c, resp->rule, resp->retry_after_s);
		return;
	}
	cm_counter_add(R.allowed, 1);
	if (resp->local_budget > 0 && resp->local_ttl_ms > 0 && klen > 0) {
		char sk[GW_RL_KEYMAX];
		size_t sklen = scope_key(resp, rq->id.tier, sk, sizeof(sk));
		uint64_t sh = fnv(1469598103934665603ULL, sk, sklen);
		struct rl_alias *a;

		if (sklen > 0) {
			a = alias_of(c->loop, h, key, klen);
			a->h = h;
			a->klen = (uint16_t) klen;
			memcpy(a->key, key, klen);
			a->sh = sh;
			a->sklen = (uint16_t) sklen;
			memcpy(a->skey, sk, sklen);
			a->expires = now + ALIAS_TTL_MS;
			e = slot_of(c->loop, sh, sk, sklen);
			if (e->h != sh || e->klen != sklen ||
			    memcmp(e->key, sk, sklen) != 0) {
				/* Another scope's slot: taken over. */
				e->owed = 0;
				e->h = sh;
				e->klen = (uint16_t) sklen;
				memcpy(e->key, sk, sklen);
				entry_fill(e, resp, now);
			} else if (!e->refreshing) {
				/* Keep what was admitted locally meanwhile
				 * under this scope (owed), refill budget. */
				entry_fill(e, resp, now);
			}
		}
	}
	rq->rl_done = true;
	gw_request_dispatch(c);
}

struct check_call {
	uint64_t h;
	size_t klen;
	char key[GW_RL_KEYMAX];
};

/* Completion on the loop (as handler.c's conn_call_done does it). */
static void
check_done(void *arg, uint64_t tag, int idx, const struct gw_reply *r)
{
	struct gw_conn *c = arg;
	struct check_call *cc;

	(void) idx;
	c->refs--;
	if (c->closed) {
		gw_conn_unref_closed(c);
		gw_loop_maybe_finish(c->loop);
		return;
	}
	if (c->closing || tag != c->seq || !c->busy)
		return;
	c->req.pending--;
	cc = c->req.rl_state;
	check_reply(c, r, cc->h, cc->key, cc->klen);
	if (!c->busy)
		gw_conn_resume(c);
}

static uint8_t *
pack_check(struct gw_req *rq, cm_arena *a, int64_t cost, size_t *len)
{
	Ratelimiter__CheckRequest in = RATELIMITER__CHECK_REQUEST__INIT;
	uint8_t *payload;

	in.method = cm_pbstr(http_method_str((enum http_method) rq->method));
	if (rq->head)
		in.method = cm_pbstr("GET");
	in.path = cm_arena_strndup(a, rq->path, rq->plen);
	in.ip = cm_pbstr(rq->client_ip);
	in.user = cm_pbstr(rq->id.user ? rq->id.user : "");
	in.tier = cm_pbstr(rq->id.tier ? rq->id.tier : "");
	in.api_key = rq->api_key;
	in.cost = (uint32_t) (cost > UINT32_MAX ? UINT32_MAX : cost);
	*len = ratelimiter__check_request__get_packed_size(&in);
	payload = cm_arena_alloc(a, *len ? *len : 1);
	ratelimiter__check_request__pack(&in, payload);
	return (payload);
}

static void
refresh_start(struct gw_conn *c, struct rl_entry *e, struct gw_req *rq)
{
	struct refresh *rf = calloc(1, sizeof(*rf));
	cm_rpc_meta meta;
	uint8_t *payload;
	size_t len;

	if (rf == NULL)
		fatalx("gateway: out of memory");
	rf->loop = c->loop;
	rf->h = e->h;
	rf->klen = e->klen;
	memcpy(rf->key, e->key, e->klen);
	snprintf(rf->tier, sizeof(rf->tier), "%s",
	         rq->id.tier != NULL ? rq->id.tier : "");
	cm_arena_init(&rf->arena);
	payload = pack_check(rq, &rf->arena, e->owed + 1, &len);
	gw_request_meta(c, &meta);
	e->refreshing = true;
	gw_upstream_call(c->loop, R.up, &meta, "ratelimiter.RateLimiter/Check",
	                 payload, len, R.timeout_ms, refresh_done, rf, 0, 0);
}

bool
gw_ratelimit_check(struct gw_conn *c)
{
	struct gw_req *rq = &c->req;
	struct check_call *cc;
	struct rl_entry *e;
	cm_rpc_meta meta;
	int64_t now, cost = 1;
	uint8_t *payload;
	size_t len;

	if (!R.enabled || rq->rl_done || rq->route == NULL)
		return (true);
	switch (rq->route->def->handler) {
	case GW_H_HEALTH:
	case GW_H_METRICS:
		return (true);
	default:
		break;
	}
	now = (int64_t) uv_now(&c->loop->loop);
	cc = cm_arena_alloc(&c->arena, sizeof(*cc));
	cc->klen = desc_key(rq, cc->key, sizeof(cc->key));
	cc->h = fnv(1469598103934665603ULL, cc->key, cc->klen);
	if (cc->klen > 0) {
		struct rl_alias *a =
		    alias_of(c->loop, cc->h, cc->key, cc->klen);

		e = NULL;
		if (alias_hit(a, cc->h, cc->key, cc->klen, now)) {
			e = slot_of(c->loop, a->sh, a->skey, a->sklen);
			if (e->h != a->sh || e->klen != a->sklen ||
			    memcmp(e->key, a->skey, a->sklen) != 0)
				e = NULL;
		}
		if (e != NULL) {
			if (e->budget > 0 &&
			    (now < e->expires || e->refreshing)) {
				e->budget--;
				e->owed++;
				if (e->limit > 0)
					set_headers(c, e->rule, e->limit,
					            e->remaining - e->owed,
					            (e->reset_at - now + 999) /
					                1000,
					            e->window_s, 0);
				cm_counter_add(R.local, 1);
				rq->rl_done = true;
				return (true);
			}
			if (e->budget > 0) {
				/* Expired with budget left: admit, and
				 * refresh in the background, paying what was
				 * admitted meanwhile. */
				refresh_start(c, e, rq);
				e->budget--;
				e->owed = 0;
				cm_counter_add(R.local, 1);
				rq->rl_done = true;
				return (true);
			}
			/* Pay for what was admitted locally. */
			cost += e->owed;
			e->owed = 0;
			e->expires = 0;
		}
	}

	if (cm_rpc_client_connected(R.up->client) == 0) {
		/* No ratelimiter connected: a call could only fail, so the
		 * failure policy applies now, without a round trip. */
		unsigned ridx = rq->route->idx;

		if (atomic_load_explicit(&R.route_closed[ridx],
		                         memory_order_relaxed)) {
			cm_counter_add(R.fail_closed, 1);
			gw_respond_error(c, 503, "UNAVAILABLE",
			                 "rate limiter unavailable", NULL);
			return (false);
		}
		cm_counter_add(R.fail_open, 1);
		rq->rl_done = true;
		return (true);
	}
	payload = pack_check(rq, &c->arena, cost, &len);
	gw_request_meta(c, &meta);
	rq->rl_state = cc;
	rq->pending++;
	rq->deadline = now + R.timeout_ms + GRACE_MS;
	c->busy = true;
	c->refs++;
	gw_upstream_call(c->loop, R.up, &meta, "ratelimiter.RateLimiter/Check",
	                 payload, len, R.timeout_ms, check_done, c, c->seq, 0);
	return (false);
}
