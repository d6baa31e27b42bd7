/*
 * Rules rendered for the Rules RPC, the fallback limiter and the
 * over-limit cache.  Reading the rules file lives in common/rlrules_file.c
 * and matching in common/rlrules.c, both shared with the gateway.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimiter.h"
#include "util.h"

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		abort();
	return (p);
}

/* ---- rules as the Rules RPC renders them ---- */

/*
 * A limit into the reply's fields.  window_s stays for callers that only
 * read seconds; window_ms carries the exact window, which may be under a
 * second or not a whole number of seconds ("500ms", "1.5s").
 */
static void
limit_to_pb(const struct cm_rl_limit *l, int64_t *limit, int64_t *window_s,
            int64_t *window_ms, int64_t *burst)
{
	*limit = l->limit;
	*window_s = l->window_ms / 1000;
	*window_ms = l->window_ms;
	*burst = l->burst;
}

Ratelimiter__RulesResponse *
rl_rules_to_pb(const struct cm_rl_rules *rs, cm_arena *a)
{
	Ratelimiter__RulesResponse *resp;
	size_t i, j;

	resp = cm_arena_alloc(a, sizeof(*resp));
	ratelimiter__rules_response__init(resp);
	resp->source = cm_arena_strdup(a, rs->source);
	resp->loaded_at = rs->loaded_at;
	resp->version = rs->version;
	resp->n_rules = rs->n;
	resp->rules = cm_arena_alloc(a, (rs->n + 1) * sizeof(void *));
	for (i = 0; i < rs->n; i++) {
		const struct cm_rl_rule *r = &rs->v[i];
		Ratelimiter__Rule *o = cm_arena_alloc(a, sizeof(*o));

		ratelimiter__rule__init(o);
		o->name = cm_arena_strdup(a, r->name);
		o->method = cm_arena_strdup(a, r->method ? r->method : "*");
		o->path = cm_arena_strdup(a, r->path);
		o->key = cm_pbstr(cm_rl_keyby_name(r->key));
		o->algorithm = cm_pbstr(cm_rl_algo_name(r->algo));
		limit_to_pb(&r->lim, &o->limit, &o->window_s, &o->window_ms,
		            &o->burst);
		o->shadow = r->shadow;
		o->failure = cm_pbstr(r->fail_closed ? "closed" : "open");
		o->n_tiers = r->ntiers;
		o->tiers = cm_arena_alloc(a, (r->ntiers + 1) * sizeof(void *));
		for (j = 0; j < r->ntiers; j++) {
			Ratelimiter__Tier *t = cm_arena_alloc(a, sizeof(*t));

			ratelimiter__tier__init(t);
			t->name = cm_arena_strdup(a, r->tiers[j].name);
			limit_to_pb(&r->tiers[j].lim, &t->limit, &t->window_s,
			            &t->window_ms, &t->burst);
			t->unlimited = r->tiers[j].lim.unlimited;
			o->tiers[j] = t;
		}
		resp->rules[i] = o;
	}
	return (resp);
}

/* ---- bounded string-keyed tables (fallback limiter, over-limit cache) */

struct slot {
	char *key; /* NULL: empty */
	double a;  /* tokens / until */
	int64_t t; /* last refill */
};

struct table {
	pthread_mutex_t mu;
	struct slot *v;
	size_t cap, n, max;
};

static uint64_t
hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 1099511628211ULL;
	return (h);
}

static void
table_init(struct table *t, size_t max)
{
	pthread_mutex_init(&t->mu, NULL);
	t->max = max ? max : 1;
	t->cap = 16;
	while (t->cap < t->max * 2)
		t->cap *= 2;
	if ((t->v = calloc(t->cap, sizeof(*t->v))) == NULL)
		abort();
}

static void
table_clear(struct table *t)
{
	size_t i;

	for (i = 0; i < t->cap; i++) {
		free(t->v[i].key);
		t->v[i].key = NULL;
	}
	t->n = 0;
}

static void
table_fini(struct table *t)
{
	table_clear(t);
	free(t->v);
	pthread_mutex_destroy(&t->mu);
}

/* The key's slot, created (zeroed) if absent and create; NULL if not. */
static struct slot *
table_get(struct table *t, const char *key, bool create, bool *fresh)
{
	size_t i = (size_t) hash(key) & (t->cap - 1);

	*fresh = false;
	for (;; i = (i + 1) & (t->cap - 1)) {
		if (t->v[i].key == NULL)
			break;
		if (strcmp(t->v[i].key, key) == 0)
			return (&t->v[i]);
	}
	if (!create)
		return (NULL);
	if (t->n >= t->max) {
		/* Full: forget everything; rough limits stay rough. */
		table_clear(t);
		i = (size_t) hash(key) & (t->cap - 1);
	}
	t->v[i].key = xstrdup(key);
	t->v[i].a = 0;
	t->v[i].t = 0;
	t->n++;
	*fresh = true;
	return (&t->v[i]);
}

struct rl_fallback {
	struct table t;
};

struct rl_fallback *
rl_fallback_new(size_t max_keys)
{
	struct rl_fallback *f = calloc(1, sizeof(*f));

	if (f == NULL)
		abort();
	table_init(&f->t, max_keys);
	return (f);
}

void
rl_fallback_free(struct rl_fallback *f)
{
	if (f == NULL)
		return;
	table_fini(&f->t);
	free(f);
}

bool
rl_fallback_check(struct rl_fallback *f, const struct cm_rl_match *m, size_t n,
                  int64_t cost, int64_t now_ms, struct rl_verdict *v)
{
	struct slot *s[CM_RL_MAX_MATCH];
	double tokens[CM_RL_MAX_MATCH];
	bool all = true, fresh;
	size_t i;

	if (n > CM_RL_MAX_MATCH)
		n = CM_RL_MAX_MATCH;
	pthread_mutex_lock(&f->t.mu);
	for (i = 0; i < n; i++) {
		double cap = (double) m[i].lim.burst;
		double rate = (double) m[i].lim.limit /
		              (double) m[i].lim.window_ms; /* per ms */

		s[i] = table_get(&f->t, m[i].key, true, &fresh);
		if (fresh) {
			s[i]->a = cap;
			s[i]->t = now_ms;
		}
		tokens[i] = s[i]->a + (double) (now_ms - s[i]->t) * rate;
		if (tokens[i] > cap)
			tokens[i] = cap;
		v[i].allowed = tokens[i] >= (double) cost;
		if (!v[i].allowed && !m[i].rule->shadow)
			all = false;
		v[i].retry_ms =
		    v[i].allowed || rate <= 0
		        ? 0
		        : (int64_t) (((double) cost - tokens[i]) / rate) + 1;
		v[i].reset_ms =
		    rate > 0 ? (int64_t) ((cap - tokens[i] +
		                           (v[i].allowed ? (double) cost : 0)) /
		                          rate)
		             : 0;
	}
	for (i = 0; i < n; i++) {
		/* Table may have been cleared by a later insert: re-find. */
		s[i] = table_get(&f->t, m[i].key, true, &fresh);
		s[i]->t = now_ms;
		s[i]->a = tokens[i] - (all && v[i].allowed ? (double) cost : 0);
		v[i].remaining = (int64_t) s[i]->a;
	}
	pthread_mutex_unlock(&f->t.mu);
	return (all);
}

struct rl_hot {
	struct table t;
};

struct rl_hot *
rl_hot_new(size_t max_keys)
{
	struct rl_hot *h = calloc(1, sizeof(*h));

	if (h == NULL)
		abort();
	table_init(&h->t, max_keys);
	return (h);
}

void
rl_hot_free(struct rl_hot *h)
{
	if (h == NULL)
		return;
	table_fini(&h->t);
	free(h);
}

void
rl_hot_put(struct rl_hot *h, const char *key, int64_t until_ms)
{
	struct slot *s;
	bool fresh;

	pthread_mutex_lock(&h->t.mu);
	s = table_get(&h->t, key, true, &fresh);
	s->t = until_ms;
	pthread_mutex_unlock(&h->t.mu);
}

int64_t
rl_hot_get(struct rl_hot *h, const char *key, int64_t now_ms)
{
	struct slot *s;
	int64_t left = 0;
	bool fresh;

	pthread_mutex_lock(&h->t.mu);
	s = table_get(&h->t, key, false, &fresh);
	if (s != NULL && s->t > now_ms)
		left = s->t - now_ms;
	pthread_mutex_unlock(&h->t.mu);
	return (left);
}
