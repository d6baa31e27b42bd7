/*
 * The rate limit check, a filter ahead of every handler but /healthz and
 * /metrics.
 *
 * The rules, locally.  Each loop holds a copy of the ratelimiter's rules
 * (its Rules RPC, rebuilt with common/rlrules, the very matcher the
 * ratelimiter uses) and polls them once a second
 * (GATEWAY_RATELIMIT_RULES_POLL_MS), and at once when a Check reply names
 * another rules version; a reload of the ratelimiter (SIGHUP) therefore
 * binds here within about a second.  Before the first reply a loop holds
 * the rules file the ratelimiter reads (RATELIMIT_RULES, read at start-up
 * with the ratelimiter's own reader, common/rlrules_file.c), so every
 * rule's failure policy is known from the first request on: with the
 * ratelimiter down when the gateway starts, a request of a "failure:
 * closed" rule is refused (503) and one of fail-open rules goes on.  The
 * file gives the version the ratelimiter gives for it (a hash of the
 * text), so the first reply replaces the file's rules only if the
 * ratelimiter holds others.  With the rules in hand a request's
 * scope is computed without a round trip: the caller's tier and the
 * counter key of every rule that applies (rule name and key value, e.g.
 * the address for a rule keyed by ip).  A request no rule matches goes on
 * at once, with no call and no headers; so does one whose scope has
 * budget (below).  The path the rules see is the path the router matches:
 * the raw path with one trailing slash removed, never percent-decoded.
 *
 * The call.  The request's descriptors (method, path, client address as
 * the core computed it, user, tier, API key id) go to the ratelimiter
 * with a short deadline (GATEWAY_RATELIMIT_TIMEOUT_MS, 20 ms).  Allowed:
 * the handler runs, and the response carries the RateLimit headers.
 * Refused: 429 with Retry-After and the headers.  The ratelimiter could
 * not decide a fail-closed rule: 503.  The ratelimiter unreachable or
 * late: the failure policy of the rules that apply (closed if one of them
 * is), counted in gateway_ratelimit_failures_total.
 *
 * The local budget.  When the ratelimiter sees a request far from every
 * limit it grants a budget (remaining/8, for at most 10 s): the gateway
 * admits that many requests of the scope itself (one budget for all its
 * loops: the table is shared) and adds them to the cost of its next check
 * for that scope.  That check runs in the background once a quarter of
 * the budget is left or its time is over (the request that triggers it
 * is admitted: "stale while revalidate"), so a request far from its
 * limits never waits for the ratelimiter.  The first request of a scope
 * the gateway does not know waits for a check, unless every rule of the
 * scope allows GENEROUS_MIN at once and fails open: then it is admitted
 * with the headers of a fresh counter and checked in the background.
 * Near a limit the budget is 0 and every request is asked about, so
 * small limits stay exact; far from it the overshoot is bounded by the
 * budgets in flight (one per scope per gateway).
 *
 * Denials, locally.  A refusal is remembered for its scope until the
 * ratelimiter's retry_ms (millisecond precision, not the rounded
 * Retry-After; as Envoy's local over-limit cache does): a client over its
 * limit is answered 429 with the same headers by the loop itself, and the
 * ratelimiter (and Redis) never hear of its flood, so counts stay exact
 * for everyone else.
 *
 * The table is the process's, shared by the loops: a 4-way
 * set-associative array under striped locks (a lock per set, taken once
 * per request that matches a rule).  Scope keys begin with the rules
 * version, so a reload starts every scope afresh.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "ratelimiter.pb-c.h"
#include "rlrules.h"
#include "status.h"
#include "util.h"

#include "internal.h"

#define RL_SETS   8192 /* of RL_WAYS entries, for the whole process */
#define RL_WAYS   4
#define RL_LOCKS  256
#define RL_KEYMAX 256
/* A scope whose every rule allows this many at once is "generous". */
#define GENEROUS_MIN 64
/* Background checks wait for no request: they may take longer. */
#define BACKGROUND_TIMEOUT_FACTOR 10

/*
 * A scope's state, shared by the loops: a client's connections land on
 * any of them, and one budget per scope per gateway (not per loop) halves
 * both the overshoot and the checks.  Guarded by its set's lock.
 */
struct rl_entry {
	uint64_t h;
	int64_t expires;      /* budget valid until (loop ms); 0: none */
	int64_t denied_until; /* refused until (loop ms) */
	int64_t budget;       /* local admissions left */
	int64_t granted;      /* the budget last granted */
	int64_t owed;         /* admitted locally, not yet reported */
	int64_t limit, remaining, reset_at, window_s;
	/* what the headers last said: never more within its reset */
	int64_t shown, shown_until;
	int64_t next_refresh; /* after a failed one (loop ms) */
	bool refreshing;      /* a background check is in flight */
	char rule[48];
	uint16_t klen;
	char key[RL_KEYMAX];
};

static struct {
	pthread_mutex_t mu[RL_LOCKS];
	struct rl_entry v[RL_SETS * RL_WAYS];
} E;

/* A loop's state: its copy of the rules and its hot counts. */
struct rl_loop {
	struct gw_loop *loop;
	struct cm_rl_rules *rules;
	uint64_t version; /* of rules */
	bool polling;
	int64_t next_poll; /* loop ms */
	/* added to the shared counters on the tick */
	uint64_t n_no_match, n_local, n_local_denied;
};

/* A request's state. */
struct rl_req {
	uint64_t h;
	size_t klen;
	char key[RL_KEYMAX]; /* rules version, tier, rule keys */
	char ip[64];         /* the client address as the rules count it */
	bool fail_closed;    /* a matched rule is (rules known) */
	/*
	 * Every rule that applies allows at least GENEROUS_MIN at once and
	 * fails open: the first request of an unknown scope is admitted
	 * without waiting, with headers from the tightest rule as a fresh
	 * counter would show them.
	 */
	bool generous;
	const char *g_rule;
	int64_t g_limit, g_remaining, g_window_s, g_reset_s;
	struct rl_loop *rl;
};

static struct {
	bool enabled;
	int64_t timeout_ms;
	int64_t poll_ms;
	unsigned v6_prefix;     /* IPv6 clients count per this prefix */
	const char *rules_path; /* the rules each loop starts with */
	struct gw_upstream *up;
	cm_counter *allowed, *limited, *local, *local_denied, *no_match,
	    *refresh, *fail_open, *fail_closed, *unavailable;
} R;

static enum gw_filter_verdict rl_on_request(struct gw_req *rq, void *fs);
static void rl_loop_init(struct gw_loop *l, void *ls);
static void rl_loop_tick(struct gw_loop *l, void *ls);
static void rl_loop_fini(struct gw_loop *l, void *ls);

static const struct gw_filter ratelimit_filter = {
    .name = "ratelimit",
    .req_size = sizeof(struct rl_req),
    .loop =
        {
            .size = sizeof(struct rl_loop),
            .init = rl_loop_init,
            .tick = rl_loop_tick,
            .fini = rl_loop_fini,
        },
    .on_request = rl_on_request,
};

static cm_counter *
check_counter(const char *result)
{
	char labels[64];

	snprintf(labels, sizeof(labels), "result=\"%s\"", result);
	return (cm_counter_get("gateway_ratelimit_checks_total", labels,
	                       "Rate limit checks by outcome."));
}

/*
 * The rules file a loop starts with (R.rules_path), read again by each
 * loop's init: a small file, read once per loop at start-up, so that each
 * loop owns its set as it owns the ratelimiter's later.  A file that
 * cannot be read or does not parse is fatal, as it is to the ratelimiter:
 * without it a "failure: closed" rule would fail open until the
 * ratelimiter first answers.  The caller frees the set.
 */
static struct cm_rl_rules *
rules_file_load(void)
{
	struct cm_rl_rules *rs;
	char err[512];

	if (cm_rl_rules_load(R.rules_path, &rs, err, sizeof(err)) != 0)
		fatalx("event=ratelimit_rules path=%s msg=\"%s\"", R.rules_path,
		       err);
	return (rs);
}

/* At registration: the file is read and logged once, before any loop. */
static void
rules_file_check(void)
{
	struct cm_rl_rules *rs = rules_file_load();
	size_t closed = 0;

	for (size_t i = 0; i < rs->n; i++)
		closed += rs->v[i].fail_closed;
	log_info("event=ratelimit_rules source=file path=%s version=%llu "
	         "rules=%zu fail_closed=%zu",
	         R.rules_path, (unsigned long long) rs->version, rs->n, closed);
	cm_rl_rules_free(rs);
}

void
gw_ratelimit_register(void)
{
	R.enabled = cm_env_bool("GATEWAY_RATELIMIT", true);
	R.timeout_ms = cm_env_int("GATEWAY_RATELIMIT_TIMEOUT_MS", 20, 1, 60000);
	R.poll_ms =
	    cm_env_int("GATEWAY_RATELIMIT_RULES_POLL_MS", 1000, 10, 60000);
	R.v6_prefix =
	    (unsigned) cm_env_int("GATEWAY_RATELIMIT_IPV6_PREFIX", 64, 1, 128);
	R.up = gw_upstream_find("ratelimiter");
	if (R.up == NULL)
		R.enabled = false;
	log_info("event=ratelimit enabled=%d timeout_ms=%lld", R.enabled,
	         (long long) R.timeout_ms);
	if (!R.enabled)
		return;
	R.rules_path = cm_rl_rules_path();
	rules_file_check();
	for (size_t i = 0; i < RL_LOCKS; i++)
		pthread_mutex_init(&E.mu[i], NULL);
	R.allowed = check_counter("allowed");
	R.limited = check_counter("limited");
	R.local = check_counter("local");
	R.local_denied = check_counter("local_denied");
	R.no_match = check_counter("no_match");
	R.refresh = check_counter("background");
	R.unavailable = check_counter("unavailable");
	R.fail_open = cm_counter_get(
	    "gateway_ratelimit_failures_total", "policy=\"open\"",
	    "Checks the ratelimiter did not answer in time, by the policy "
	    "applied.");
	R.fail_closed = cm_counter_get(
	    "gateway_ratelimit_failures_total", "policy=\"closed\"",
	    "Checks the ratelimiter did not answer in time, by the policy "
	    "applied.");
	gw_filter_register(&ratelimit_filter);
}

/* ---- the rules ---- */

static void rules_poll(struct rl_loop *rl);

static void
rules_reply(struct gw_loop *l, void *arg, int idx, const struct gw_reply *r)
{
	struct rl_loop *rl = arg;
	Ratelimiter__RulesResponse *resp = NULL;
	struct cm_rl_rules *rs;
	char err[256];

	(void) idx;
	rl->polling = false;
	if (l->state == GW_LOOP_CLOSING)
		return;
	if (r->status != CM_OK || (resp = ratelimiter__rules_response__unpack(
	                               NULL, r->len, r->payload)) == NULL) {
		/* Retried soon; the rules in hand stay meanwhile. */
		rl->next_poll = gw_loop_now(l) + 250;
		return;
	}
	rl->next_poll = gw_loop_now(l) + R.poll_ms;
	if (rl->rules == NULL || resp->version != rl->version) {
		if (cm_rl_rules_from_pb(resp, &rs, err, sizeof(err)) != 0) {
			log_warnx("event=ratelimit_rules loop=%u err=\"%s\"",
			          l->id, err);
		} else {
			log_info("event=ratelimit_rules source=ratelimiter "
			         "loop=%u version=%llu rules=%zu",
			         l->id, (unsigned long long) resp->version,
			         rs->n);
			cm_rl_rules_free(rl->rules);
			rl->rules = rs;
			rl->version = resp->version;
		}
	}
	ratelimiter__rules_response__free_unpacked(resp, NULL);
}

static void
rules_poll(struct rl_loop *rl)
{
	Ratelimiter__RulesRequest in = RATELIMITER__RULES_REQUEST__INIT;
	uint8_t buf[16];
	size_t len;
	cm_rpc_meta meta;

	if (rl->polling || rl->loop->state == GW_LOOP_CLOSING)
		return;
	len = ratelimiter__rules_request__pack(&in, buf);
	memset(&meta, 0, sizeof(meta));
	/* The Rules RPC is for operators; the gateway is one. */
	meta.meta[0].key = "claim.role";
	meta.meta[0].value = "admin";
	meta.nmeta = 1;
	rl->polling = true;
	gw_upstream_call(rl->loop, R.up, &meta, "ratelimiter.RateLimiter/Rules",
	                 buf, len, R.timeout_ms * 10, rules_reply, rl, 0);
}

static void
rl_loop_init(struct gw_loop *l, void *ls)
{
	struct rl_loop *rl = ls;

	rl->loop = l;
	rl->rules = rules_file_load();
	rl->version = rl->rules->version;
	rules_poll(rl);
}

/* The counts of the paths that never leave the loop, shared. */
static void
counts_flush(struct rl_loop *rl)
{
	cm_counter_add(R.no_match, rl->n_no_match);
	cm_counter_add(R.local, rl->n_local);
	cm_counter_add(R.local_denied, rl->n_local_denied);
	rl->n_no_match = rl->n_local = rl->n_local_denied = 0;
}

static void
rl_loop_tick(struct gw_loop *l, void *ls)
{
	struct rl_loop *rl = ls;

	counts_flush(rl);
	if (gw_loop_now(l) >= rl->next_poll)
		rules_poll(rl);
}

static void
rl_loop_fini(struct gw_loop *l, void *ls)
{
	struct rl_loop *rl = ls;

	(void) l;
	counts_flush(rl);
	cm_rl_rules_free(rl->rules);
}

/* A reply names the rules in force; another version: fetch them now. */
static void
rules_seen(struct rl_loop *rl, uint64_t version)
{
	if (rl->rules != NULL && version != rl->version)
		rules_poll(rl);
}

/* ---- the table ---- */

/* The lock of the set a scope hash falls in. */
static pthread_mutex_t *
set_lock(uint64_t h)
{
	return (&E.mu[(h % RL_SETS) % RL_LOCKS]);
}

static bool
slot_holds(const struct rl_entry *e, uint64_t h, const char *key, size_t klen)
{
	return (e->h == h && e->klen == klen && memcmp(e->key, key, klen) == 0);
}

static int64_t
entry_ends(const struct rl_entry *e)
{
	int64_t t = e->expires > e->denied_until ? e->expires : e->denied_until;

	return (t > e->shown_until ? t : e->shown_until);
}

/*
 * The entry for key (hash h), its set's lock held: the one holding key,
 * else (to be filled) an empty one, else the one whose state ends first
 * and that no check is renewing.
 */
static struct rl_entry *
slot_of(uint64_t h, const char *key, size_t klen)
{
	struct rl_entry *set = &E.v[(h % RL_SETS) * RL_WAYS], *victim = NULL;

	for (size_t i = 0; i < RL_WAYS; i++) {
		struct rl_entry *e = &set[i];

		if (slot_holds(e, h, key, klen))
			return (e);
		if (victim == NULL || (victim->klen != 0 && e->klen == 0) ||
		    (e->klen != 0 && victim->klen != 0 && !e->refreshing &&
		     entry_ends(e) < entry_ends(victim)))
			victim = e;
	}
	return (victim);
}

/* Takes e over for the scope key. */
static void
slot_claim(struct rl_entry *e, uint64_t h, const char *key, size_t klen)
{
	memset(e, 0, sizeof(*e));
	e->h = h;
	e->klen = (uint16_t) klen;
	memcpy(e->key, key, klen);
}

/* ---- a request's scope ---- */

/* The path as the router matched it: one trailing slash removed. */
static size_t
rl_path(const struct gw_creq *cr)
{
	size_t n = cr->plen;

	if (n > 1 && cr->path[n - 1] == '/')
		n--;
	return (n);
}

/*
 * The client address as limits count it: an IPv4 address as it is; an
 * IPv6 address per its /R.v6_prefix network ("2001:db8:1:2::/64"), since
 * one subscriber commonly holds a whole /64 and would otherwise get a
 * budget per address.
 */
static void
limit_ip(const struct gw_creq *cr, char *out, size_t outlen)
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0,    0,
	                                     0, 0, 0, 0, 0xff, 0xff};
	uint8_t net[16];
	char text[48];

	if (memcmp(cr->client, v4mapped, 12) == 0 || R.v6_prefix >= 128) {
		snprintf(out, outlen, "%s", cr->client_ip);
		return;
	}
	memcpy(net, cr->client, 16);
	for (unsigned bit = R.v6_prefix; bit < 128; bit++)
		net[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
	gw_ip_format(net, text, sizeof(text));
	snprintf(out, outlen, "%s/%u", text, R.v6_prefix);
}

/* The client address as limits count it (limit_ip), computed once. */
static const char *
req_ip(const struct gw_req *rq, struct rl_req *rr)
{
	if (rr->ip[0] == '\0')
		limit_ip(gw_creq(rq), rr->ip, sizeof(rr->ip));
	return (rr->ip);
}

/* How many requests a limit lets through at once. */
static int64_t
capacity(const struct cm_rl_rule *r, const struct cm_rl_limit *l)
{
	if ((r->algo == CM_RL_TOKEN_BUCKET || r->algo == CM_RL_GCRA) &&
	    l->burst > 0)
		return (l->burst);
	return (l->limit);
}

/*
 * Whether the scope is generous (see struct rl_req), and the headers a
 * fresh counter of its tightest enforced rule would give after one hit:
 * an upper bound of what the ratelimiter will say, so headers shown
 * later for the scope never exceed them.
 */
static void
scope_guess(struct rl_req *rr, const struct cm_rl_match *m, size_t n)
{
	int64_t best = -1;

	rr->generous = true;
	for (size_t i = 0; i < n; i++) {
		int64_t cap;

		if (m[i].rule->shadow)
			continue;
		cap = capacity(m[i].rule, &m[i].lim);
		/* A fail-closed rule wants a decision, not a guess. */
		if (cap < GENEROUS_MIN || m[i].rule->fail_closed)
			rr->generous = false;
		if (best < 0 || cap < best) {
			best = cap;
			rr->g_rule = m[i].rule->name;
			rr->g_limit = m[i].lim.limit;
			rr->g_remaining = cap - 1;
			rr->g_window_s = m[i].lim.window_ms / 1000;
			rr->g_reset_s = (m[i].lim.window_ms + 999) / 1000;
		}
	}
	if (best < 0)
		rr->generous = false; /* only shadow rules: ask */
}

/*
 * Matches the request against the loop's rules: the number of rules that
 * apply, and their scope key in rr (tier + every rule's counter key);
 * klen 0 when it does not fit (the request is then always asked about).
 */
static size_t
scope_of(struct gw_req *rq, struct rl_loop *rl, struct rl_req *rr)
{
	const struct gw_creq *cr = gw_creq(rq);
	struct cm_rl_match m[CM_RL_MAX_MATCH];
	struct cm_rl_request in;
	size_t n, len;
	int w;

	in.method = rq->head ? "GET" : gw_req_method(rq);
	in.path = cm_arena_strndup(rq->arena, cr->path, rl_path(cr));
	in.ip = req_ip(rq, rr);
	in.user = cr->id.user;
	in.tier = cr->id.tier;
	in.api_key = cr->api_key;
	n = cm_rl_match(rl->rules, &in, m, CM_RL_MAX_MATCH);
	rr->klen = 0;
	if (n == 0)
		return (0);
	/* The rules version first: a reload starts every scope afresh. */
	w = snprintf(rr->key, sizeof(rr->key), "%llx\x1f%s",
	             (unsigned long long) rl->version,
	             cr->id.tier != NULL ? cr->id.tier : "");
	len = w < 0 || (size_t) w >= sizeof(rr->key) ? sizeof(rr->key)
	                                             : (size_t) w;
	for (size_t i = 0; i < n; i++) {
		if (m[i].rule->fail_closed)
			rr->fail_closed = true;
		if (len >= sizeof(rr->key))
			continue;
		w = snprintf(rr->key + len, sizeof(rr->key) - len, "\x1f%s",
		             m[i].key);
		len = w < 0 || (size_t) w >= sizeof(rr->key) - len
		          ? sizeof(rr->key)
		          : len + (size_t) w;
	}
	if (len < sizeof(rr->key)) {
		rr->klen = len;
		rr->h = gw_fnv1a(GW_FNV_INIT, rr->key, len);
	}
	scope_guess(rr, m, n);
	return (n);
}

/* ---- answers ---- */

static void
set_headers(struct gw_req *rq, const char *rule, int64_t limit,
            int64_t remaining, int64_t reset_s, int64_t window_s,
            int64_t retry_s)
{
	char retry[48] = "";
	char *lines;

	if (remaining < 0)
		remaining = 0;
	if (reset_s < 0)
		reset_s = 0;
	if (retry_s > 0)
		snprintf(retry, sizeof(retry), "Retry-After: %lld\r\n",
		         (long long) retry_s);
	/* RateLimit-Policy / RateLimit: draft-ietf-httpapi-ratelimit-headers
	 * (structured fields); RateLimit-Limit/-Remaining/-Reset: the older
	 * draft, as Envoy and Kong send them. */
	lines = cm_arena_printf(
	    rq->arena,
	    "RateLimit-Policy: \"%s\";q=%lld;w=%lld\r\n"
	    "RateLimit: \"%s\";r=%lld;t=%lld\r\n"
	    "RateLimit-Limit: %lld\r\n"
	    "RateLimit-Remaining: %lld\r\n"
	    "RateLimit-Reset: %lld\r\n%s",
	    rule, (long long) limit, (long long) window_s, rule,
	    (long long) remaining, (long long) reset_s, (long long) limit,
	    (long long) remaining, (long long) reset_s, retry);
	gw_resp_lines(rq, lines, strlen(lines));
}

/*
 * set_headers for a request of e's scope, its lock held: Remaining is
 * never shown higher than before for the scope until that answer's reset
 * has passed.  A continuous algorithm refills, a refresh may bring a
 * higher figure; a client must not see its quota grow within the window
 * it was told.
 */
static void
scope_headers(struct gw_req *rq, struct rl_entry *e, const char *rule,
              int64_t limit, int64_t remaining, int64_t reset_s,
              int64_t window_s, int64_t retry_s, int64_t now)
{
	if (remaining < 0)
		remaining = 0;
	if (reset_s < 0)
		reset_s = 0;
	if (now < e->shown_until && remaining > e->shown)
		remaining = e->shown;
	e->shown = remaining;
	if (now + reset_s * 1000 > e->shown_until)
		e->shown_until = now + reset_s * 1000;
	set_headers(rq, rule, limit, remaining, reset_s, window_s, retry_s);
}

static void
respond_limited(struct gw_req *rq, const char *rule, int64_t retry_s)
{
	struct gw_buf *s = &rq->loop->scratch;
	char msg[160];

	snprintf(msg, sizeof(msg), "rate limit exceeded (%s); retry in %lld s",
	         rule, (long long) retry_s);
	s->len = 0;
	gw_buf_puts(s, "{\"error\":{\"code\":\"RESOURCE_EXHAUSTED\","
	               "\"message\":");
	gw_json_quote(s, msg, strlen(msg));
	gw_buf_printf(s, ",\"retry_after\":%lld}}", (long long) retry_s);
	gw_respond(rq, 429, "application/json", s->p, s->len);
}

/* The ratelimiter cannot be asked: the failure policy decides. */
static enum gw_filter_verdict
fail_policy(struct gw_req *rq, const struct rl_req *rr)
{
	if (rr->fail_closed) {
		cm_counter_add(R.fail_closed, 1);
		gw_respond_error(rq, 503, "UNAVAILABLE",
		                 "rate limiter unavailable");
		return (GW_FILTER_DONE);
	}
	cm_counter_add(R.fail_open, 1);
	return (GW_FILTER_GO);
}

static void
entry_fill(struct rl_entry *e, const Ratelimiter__CheckResponse *resp,
           int64_t now)
{
	e->expires = now + resp->local_ttl_ms;
	e->budget = resp->local_budget;
	e->granted = resp->local_budget;
	e->limit = resp->matched ? resp->limit : 0;
	e->remaining = resp->remaining;
	e->reset_at = now + resp->reset_s * 1000;
	e->window_s = resp->window_s;
	e->refreshing = false;
	e->denied_until = 0;
	snprintf(e->rule, sizeof(e->rule), "%s",
	         resp->matched ? resp->rule : "");
}

/* Remembers a refusal until the ratelimiter's retry time. */
static void
entry_deny(struct rl_entry *e, const Ratelimiter__CheckResponse *resp,
           int64_t now)
{
	int64_t retry =
	    resp->retry_ms > 0 ? resp->retry_ms : resp->retry_after_s * 1000;

	entry_fill(e, resp, now);
	e->expires = 0;
	e->budget = 0;
	e->owed = 0;
	e->remaining = 0;
	e->denied_until = now + retry;
}

static uint8_t *
pack_check(struct gw_req *rq, struct rl_req *rr, cm_arena *a, int64_t cost,
           size_t *len)
{
	const struct gw_creq *cr = gw_creq(rq);
	Ratelimiter__CheckRequest in = RATELIMITER__CHECK_REQUEST__INIT;
	uint8_t *payload;

	in.method = cm_pbstr(rq->head ? "GET" : gw_req_method(rq));
	in.path = cm_arena_strndup(a, cr->path, rl_path(cr));
	in.ip = cm_pbstr(req_ip(rq, rr));
	in.user = cm_pbstr(cr->id.user ? cr->id.user : "");
	in.tier = cm_pbstr(cr->id.tier ? cr->id.tier : "");
	in.api_key = cm_pbstr(cr->api_key);
	in.cost = (uint32_t) (cost > UINT32_MAX ? UINT32_MAX : cost);
	*len = ratelimiter__check_request__get_packed_size(&in);
	payload = cm_arena_alloc(a, *len ? *len : 1);
	ratelimiter__check_request__pack(&in, payload);
	return (payload);
}

/* ---- background refreshes ---- */

struct refresh {
	struct rl_loop *rl;
	uint64_t h;
	size_t klen;
	char key[RL_KEYMAX];
	uint8_t *payload;
	size_t len;
	cm_rpc_meta meta;
};

/*
 * A background refresh came back.  Allowed with a budget: the entry goes
 * on.  Refused: remembered as such.  No budget: the entry is dropped, so
 * the next request waits for a check of its own.  Failed: retried by a
 * later request after a short pause.
 */
static void
refresh_done(struct gw_loop *l, void *arg, int idx, const struct gw_reply *r)
{
	struct refresh *rf = arg;
	struct rl_loop *rl = rf->rl;
	pthread_mutex_t *mu = set_lock(rf->h);
	struct rl_entry *e;
	int64_t now = gw_loop_now(l);
	Ratelimiter__CheckResponse *resp = NULL;

	(void) idx;
	if (r->status == CM_OK)
		resp = ratelimiter__check_response__unpack(NULL, r->len,
		                                           r->payload);
	if (resp != NULL && l->state != GW_LOOP_CLOSING)
		rules_seen(rl, resp->rules_version);
	pthread_mutex_lock(mu);
	e = slot_of(rf->h, rf->key, rf->klen);
	if (slot_holds(e, rf->h, rf->key, rf->klen)) {
		e->refreshing = false;
		if (resp == NULL) {
			e->next_refresh = now + 100;
		} else if (resp->unavailable) {
			e->expires = 0;
			e->budget = 0;
		} else if (!resp->allowed) {
			entry_deny(e, resp, now);
		} else if (resp->local_budget > 0) {
			entry_fill(e, resp, now);
		} else {
			e->expires = 0;
			e->budget = 0;
		}
	}
	pthread_mutex_unlock(mu);
	if (resp != NULL)
		ratelimiter__check_response__free_unpacked(resp, NULL);
	free(rf->payload);
	free(rf);
}

/*
 * Prepares a background check for e's scope, its lock held: it pays what
 * was admitted locally (owed) and marks e as being renewed.  Sent with
 * refresh_send once the lock is released.
 */
static struct refresh *
refresh_prepare(struct gw_req *rq, struct rl_req *rr, struct rl_loop *rl,
                struct rl_entry *e)
{
	struct refresh *rf = calloc(1, sizeof(*rf));
	uint8_t *p;

	if (rf == NULL)
		fatalx("gateway: out of memory");
	rf->rl = rl;
	rf->h = e->h;
	rf->klen = e->klen;
	memcpy(rf->key, e->key, e->klen);
	p = pack_check(rq, rr, rq->arena, e->owed, &rf->len);
	if ((rf->payload = malloc(rf->len ? rf->len : 1)) == NULL)
		fatalx("gateway: out of memory");
	memcpy(rf->payload, p, rf->len);
	e->refreshing = true;
	e->owed = 0;
	return (rf);
}

static void
refresh_send(struct gw_req *rq, struct refresh *rf)
{
	cm_rpc_meta meta;

	if (rf == NULL)
		return;
	cm_counter_add(R.refresh, 1);
	gw_req_meta(rq, &meta);
	gw_upstream_call(rf->rl->loop, R.up, &meta,
	                 "ratelimiter.RateLimiter/Check", rf->payload, rf->len,
	                 R.timeout_ms * BACKGROUND_TIMEOUT_FACTOR, refresh_done,
	                 rf, 0);
}

/* ---- the check ---- */

/* The reply arrived (or the call failed). */
static void
check_reply(struct gw_req *rq, void *arg, int idx, const struct gw_reply *r)
{
	struct rl_req *rr = arg;
	struct rl_loop *rl = rr->rl;
	Ratelimiter__CheckResponse *resp;
	int64_t now = gw_loop_now(rq->loop);
	struct rl_entry *e = NULL;
	pthread_mutex_t *mu = NULL;

	(void) idx;
	if (r->status != CM_OK ||
	    (resp = ratelimiter__check_response__unpack(&rq->arena->pb, r->len,
	                                                r->payload)) == NULL) {
		if (fail_policy(rq, rr) == GW_FILTER_GO)
			gw_filter_continue(rq);
		return;
	}
	rr->fail_closed = resp->fail_closed;
	rules_seen(rl, resp->rules_version);
	if (resp->unavailable) {
		cm_counter_add(R.unavailable, 1);
		gw_respond_error(rq, 503, "UNAVAILABLE",
		                 "rate limit store unavailable");
		return;
	}
	if (rr->klen > 0 && rl->rules != NULL) {
		mu = set_lock(rr->h);
		pthread_mutex_lock(mu);
		e = slot_of(rr->h, rr->key, rr->klen);
		if (!slot_holds(e, rr->h, rr->key, rr->klen))
			slot_claim(e, rr->h, rr->key, rr->klen);
	}
	if (resp->matched && e != NULL)
		scope_headers(rq, e, resp->rule, resp->limit, resp->remaining,
		              resp->reset_s, resp->window_s,
		              resp->allowed ? 0 : resp->retry_after_s, now);
	else if (resp->matched)
		set_headers(rq, resp->rule, resp->limit, resp->remaining,
		            resp->reset_s, resp->window_s,
		            resp->allowed ? 0 : resp->retry_after_s);
	if (!resp->allowed) {
		if (e != NULL)
			entry_deny(e, resp, now);
		if (mu != NULL)
			pthread_mutex_unlock(mu);
		cm_counter_add(R.limited, 1);
		respond_limited(rq, resp->rule, resp->retry_after_s);
		return;
	}
	if (e != NULL && !e->refreshing && resp->local_budget > 0 &&
	    resp->local_ttl_ms > 0)
		entry_fill(e, resp, now);
	if (mu != NULL)
		pthread_mutex_unlock(mu);
	cm_counter_add(R.allowed, 1);
	gw_filter_continue(rq);
}

/*
 * Admits rq locally from e's budget (its lock held), with the
 * ratelimiter's last figures for the scope (it counts what was admitted
 * here when it is next asked).  Returns the background check to send
 * once the lock is released, if a quarter of the budget is left or its
 * time is over, so that a scope far from its limits never waits.
 */
static struct refresh *
admit_local(struct gw_req *rq, struct rl_req *rr, struct rl_loop *rl,
            struct rl_entry *e, int64_t now)
{
	e->budget--;
	e->owed++;
	if (e->limit > 0)
		scope_headers(rq, e, e->rule, e->limit, e->remaining,
		              (e->reset_at - now + 999) / 1000, e->window_s, 0,
		              now);
	rl->n_local++;
	if (!e->refreshing && now >= e->next_refresh &&
	    (now >= e->expires || e->budget * 4 <= e->granted))
		return (refresh_prepare(rq, rr, rl, e));
	return (NULL);
}

/*
 * The first request of a generous scope the gateway does not know (its
 * lock held): in at once, with the headers a fresh counter gives, and the
 * scope checked in the background (paying for it).  Requests of the scope
 * arriving while that check is out are admitted the same way and paid
 * with the next one.
 */
static struct refresh *
admit_unknown(struct gw_req *rq, struct rl_loop *rl, struct rl_req *rr,
              struct rl_entry *e, int64_t now)
{
	bool fresh = !slot_holds(e, rr->h, rr->key, rr->klen);

	if (fresh) {
		slot_claim(e, rr->h, rr->key, rr->klen);
		snprintf(e->rule, sizeof(e->rule), "%s", rr->g_rule);
		e->limit = rr->g_limit;
		e->remaining = rr->g_remaining;
		e->window_s = rr->g_window_s;
		e->reset_at = now + rr->g_reset_s * 1000;
	}
	e->owed++;
	scope_headers(rq, e, e->rule, e->limit, e->remaining,
	              (e->reset_at - now + 999) / 1000, e->window_s, 0, now);
	rl->n_local++;
	return (fresh ? refresh_prepare(rq, rr, rl, e) : NULL);
}

/*
 * What the table decides for rq (its lock held): answered 429, admitted
 * (with *rf a check to send), or to be asked about (cost set).
 */
enum local_verdict { LOCAL_DENIED, LOCAL_ADMITTED, LOCAL_ASK };

static enum local_verdict
decide_local(struct gw_req *rq, struct rl_loop *rl, struct rl_req *rr,
             int64_t now, struct refresh **rf, int64_t *cost, char *rule,
             int64_t *retry_s)
{
	struct rl_entry *slot = slot_of(rr->h, rr->key, rr->klen);
	struct rl_entry *e =
	    slot_holds(slot, rr->h, rr->key, rr->klen) ? slot : NULL;

	if (e != NULL && now < e->denied_until) {
		*retry_s = (e->denied_until - now + 999) / 1000;
		scope_headers(rq, e, e->rule, e->limit, 0,
		              (e->reset_at - now + 999) / 1000, e->window_s,
		              *retry_s, now);
		snprintf(rule, 48, "%s", e->rule);
		rl->n_local_denied++;
		return (LOCAL_DENIED);
	}
	if (e != NULL && e->budget > 0) {
		*rf = admit_local(rq, rr, rl, e, now);
		return (LOCAL_ADMITTED);
	}
	if (rr->generous &&
	    (e == NULL || (e->refreshing && e->denied_until == 0))) {
		*rf = admit_unknown(rq, rl, rr, slot, now);
		return (LOCAL_ADMITTED);
	}
	if (e != NULL) {
		/* Pay for what was admitted locally. */
		*cost += e->owed;
		e->owed = 0;
		e->expires = 0;
	}
	return (LOCAL_ASK);
}

static enum gw_filter_verdict
rl_on_request(struct gw_req *rq, void *fs)
{
	struct rl_req *rr = fs;
	struct rl_loop *rl = gw_filter_loop(rq->loop, &ratelimit_filter);
	int64_t now, cost = 1;
	uint8_t *payload;
	size_t len;

	rr->rl = rl;
	now = gw_loop_now(rq->loop);
	if (rl->rules != NULL) {
		if (scope_of(rq, rl, rr) == 0) {
			rl->n_no_match++;
			return (GW_FILTER_GO);
		}
	}
	if (rl->rules != NULL && rr->klen > 0) {
		pthread_mutex_t *mu = set_lock(rr->h);
		struct refresh *rf = NULL;
		enum local_verdict v;
		char rule[48];
		int64_t retry_s = 0;

		pthread_mutex_lock(mu);
		v = decide_local(rq, rl, rr, now, &rf, &cost, rule, &retry_s);
		pthread_mutex_unlock(mu);
		refresh_send(rq, rf);
		if (v == LOCAL_DENIED) {
			respond_limited(rq, rule, retry_s);
			return (GW_FILTER_DONE);
		}
		if (v == LOCAL_ADMITTED)
			return (GW_FILTER_GO);
	}
	if (cm_rpc_client_connected(R.up->client) == 0) {
		/* No ratelimiter connected: a call could only fail, so the
		 * failure policy applies now, without a round trip. */
		return (fail_policy(rq, rr));
	}
	payload = pack_check(rq, rr, rq->arena, cost, &len);
	gw_req_call(rq, R.up, "ratelimiter.RateLimiter/Check", payload, len,
	            R.timeout_ms, check_reply, rr, 0);
	return (GW_FILTER_WAIT);
}
