/*
 * The rate-limit rule matcher, shared by the rate limiter and the gateway.
 *
 * A rule applies to a request when its method (if any) equals the
 * request's, its path glob matches the request path, the request has what
 * the rule is keyed by, and the caller's tier is not unlimited under it.
 * The counter key names the rule and the key value inside a Redis Cluster
 * hash tag, so that every counter of a rule lives in one slot.  Whatever a
 * set was built from (the YAML file in the rate limiter, the Rules reply
 * in the gateway), cm_rl_match is the only code that decides this.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlrules.h"
#include "status.h"

const char *
cm_rl_algo_name(enum cm_rl_algo a)
{
	switch (a) {
	case CM_RL_TOKEN_BUCKET:
		return ("token_bucket");
	case CM_RL_FIXED_WINDOW:
		return ("fixed_window");
	case CM_RL_SLIDING_LOG:
		return ("sliding_log");
	case CM_RL_SLIDING_WINDOW:
		return ("sliding_window");
	case CM_RL_GCRA:
		return ("gcra");
	}
	return ("?");
}

const char *
cm_rl_keyby_name(enum cm_rl_keyby k)
{
	switch (k) {
	case CM_RL_KEY_IP:
		return ("ip");
	case CM_RL_KEY_USER:
		return ("user");
	case CM_RL_KEY_ANON_IP:
		return ("anon_ip");
	case CM_RL_KEY_USER_OR_IP:
		return ("user_or_ip");
	case CM_RL_KEY_API_KEY:
		return ("api_key");
	case CM_RL_KEY_GLOBAL:
		return ("global");
	}
	return ("?");
}

int
cm_rl_algo_parse(const char *name, enum cm_rl_algo *out)
{
	int i;

	for (i = CM_RL_TOKEN_BUCKET; name != NULL && i <= CM_RL_GCRA; i++)
		if (strcmp(name, cm_rl_algo_name((enum cm_rl_algo) i)) == 0) {
			*out = (enum cm_rl_algo) i;
			return (0);
		}
	return (-1);
}

int
cm_rl_keyby_parse(const char *name, enum cm_rl_keyby *out)
{
	int i;

	for (i = CM_RL_KEY_IP; name != NULL && i <= CM_RL_KEY_GLOBAL; i++)
		if (strcmp(name, cm_rl_keyby_name((enum cm_rl_keyby) i)) == 0) {
			*out = (enum cm_rl_keyby) i;
			return (0);
		}
	return (-1);
}

bool
cm_rl_name_valid(const char *s)
{
	return (s != NULL && *s != '\0' && strlen(s) <= 64 &&
	        strpbrk(s, "{}: ") == NULL);
}

void
cm_rl_rules_free(struct cm_rl_rules *rs)
{
	size_t i, j;

	if (rs == NULL)
		return;
	for (i = 0; i < rs->n; i++) {
		struct cm_rl_rule *r = &rs->v[i];

		free(r->name);
		free(r->method);
		free(r->path);
		for (j = 0; j < r->ntiers; j++)
			free(r->tiers[j].name);
		free(r->tiers);
	}
	free(rs->v);
	free(rs->source);
	free(rs);
}

/* ---- from a Rules reply ---- */

static int pb_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
pb_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return (CM_INVALID_ARGUMENT);
}

static char *
xstrdup(const char *s)
{
	char *p = strdup(s != NULL ? s : "");

	if (p == NULL)
		abort();
	return (p);
}

/*
 * A limit from the reply's fields.  The window comes from window_ms when
 * set, else from window_s (a limiter that predates window_ms).  Unlimited
 * tiers keep what was sent unchecked: cm_rl_match skips them.
 */
static int
pb_limit(int64_t limit, int64_t window_s, int64_t window_ms, int64_t burst,
         bool unlimited, struct cm_rl_limit *out, const char *what, char *err,
         size_t errlen)
{
	if (window_ms <= 0 && window_s > 0 && window_s <= INT64_MAX / 1000)
		window_ms = window_s * 1000;
	out->limit = limit;
	out->window_ms = window_ms;
	out->burst = burst;
	out->unlimited = unlimited;
	if (unlimited)
		return (0);
	if (limit < 0 || window_ms <= 0 || burst < 0)
		return (pb_fail(err, errlen,
		                "%s: needs limit >= 0, a window > 0 and "
		                "burst >= 0",
		                what));
	return (0);
}

/* One rule of the reply into r (zeroed by the caller; freed with the set). */
static int
pb_rule(const Ratelimiter__Rule *o, size_t idx, struct cm_rl_rule *r, char *err,
        size_t errlen)
{
	char what[96], twhat[192];
	size_t i;

	if (o == NULL || !cm_rl_name_valid(o->name))
		return (pb_fail(err, errlen,
		                "rule %zu: name is required (1-64 characters, "
		                "no braces, colons or spaces)",
		                idx + 1));
	r->name = xstrdup(o->name);
	snprintf(what, sizeof(what), "rule \"%s\"", r->name);
	if (o->method != NULL && o->method[0] != '\0' &&
	    strcmp(o->method, "*") != 0) {
		r->method = xstrdup(o->method);
		for (i = 0; r->method[i] != '\0'; i++)
			r->method[i] =
			    (char) toupper((unsigned char) r->method[i]);
	}
	if (o->path == NULL || o->path[0] != '/')
		return (
		    pb_fail(err, errlen, "%s: path must start with /", what));
	r->path = xstrdup(o->path);
	if (cm_rl_keyby_parse(o->key, &r->key) != 0)
		return (pb_fail(err, errlen, "%s: unknown key \"%s\"", what,
		                o->key ? o->key : ""));
	if (cm_rl_algo_parse(o->algorithm, &r->algo) != 0)
		return (pb_fail(err, errlen, "%s: unknown algorithm \"%s\"",
		                what, o->algorithm ? o->algorithm : ""));
	if (pb_limit(o->limit, o->window_s, o->window_ms, o->burst, false,
	             &r->lim, what, err, errlen) != 0)
		return (CM_INVALID_ARGUMENT);
	r->shadow = o->shadow;
	if (o->failure != NULL && strcmp(o->failure, "closed") == 0)
		r->fail_closed = true;
	else if (o->failure == NULL || strcmp(o->failure, "open") != 0)
		return (
		    pb_fail(err, errlen,
		            "%s: failure must be open or closed, not \"%s\"",
		            what, o->failure ? o->failure : ""));
	if (o->n_tiers == 0)
		return (0);
	if ((r->tiers = calloc(o->n_tiers, sizeof(*r->tiers))) == NULL)
		abort();
	for (i = 0; i < o->n_tiers; i++) {
		const Ratelimiter__Tier *t = o->tiers[i];
		struct cm_rl_tier *rt = &r->tiers[r->ntiers++];

		if (t == NULL)
			return (pb_fail(err, errlen, "%s: tier %zu is empty",
			                what, i + 1));
		rt->name = xstrdup(t->name);
		snprintf(twhat, sizeof(twhat), "%s tier \"%s\"", what,
		         rt->name);
		if (pb_limit(t->limit, t->window_s, t->window_ms, t->burst,
		             t->unlimited, &rt->lim, twhat, err, errlen) != 0)
			return (CM_INVALID_ARGUMENT);
	}
	return (0);
}

int
cm_rl_rules_from_pb(const Ratelimiter__RulesResponse *resp,
                    struct cm_rl_rules **out, char *err, size_t errlen)
{
	struct cm_rl_rules *rs;
	size_t i, j;
	int rv;

	if (resp == NULL)
		return (pb_fail(err, errlen, "no Rules reply"));
	if ((rs = calloc(1, sizeof(*rs))) == NULL)
		abort();
	rs->source = xstrdup(resp->source);
	rs->loaded_at = resp->loaded_at;
	rs->version = resp->version;
	rs->refs = 1;
	if (resp->n_rules > 0 &&
	    (rs->v = calloc(resp->n_rules, sizeof(*rs->v))) == NULL)
		abort();
	for (i = 0; i < resp->n_rules; i++) {
		rs->n = i + 1;
		if ((rv = pb_rule(resp->rules[i], i, &rs->v[i], err, errlen)) !=
		    0) {
			cm_rl_rules_free(rs);
			return (rv);
		}
		for (j = 0; j < i; j++)
			if (strcmp(rs->v[j].name, rs->v[i].name) == 0) {
				rv = pb_fail(err, errlen,
				             "rule name \"%s\" is used twice",
				             rs->v[i].name);
				cm_rl_rules_free(rs);
				return (rv);
			}
	}
	*out = rs;
	return (0);
}

/* ---- matching ---- */

bool
cm_rl_glob(const char *p, const char *s)
{
	for (; *p != '\0'; p++, s++) {
		if (p[0] == '*' && p[1] == '*') {
			p += 2;
			if (*p == '\0')
				return (true);
			for (; *s != '\0'; s++)
				if (cm_rl_glob(p, s))
					return (true);
			return (cm_rl_glob(p, s));
		}
		if (*p == '*') {
			p++;
			for (;; s++) {
				if (cm_rl_glob(p, s))
					return (true);
				if (*s == '\0' || *s == '/')
					return (false);
			}
		}
		if (*s == '\0' || *p != *s)
			return (false);
	}
	return (*s == '\0');
}

void
cm_rl_key(char *out, size_t outlen, const struct cm_rl_rule *r,
          const char *kind, const char *value)
{
	/* The hash tag keeps a rule's key in one Redis Cluster slot. */
	snprintf(out, outlen, "rl:{%s:%s:%s}", r->name, kind, value);
}

static bool
nonempty(const char *s)
{
	return (s != NULL && *s != '\0');
}

size_t
cm_rl_match(const struct cm_rl_rules *rs, const struct cm_rl_request *rq,
            struct cm_rl_match *out, size_t max)
{
	const char *ip = nonempty(rq->ip) ? rq->ip : "unknown";
	size_t i, j, n = 0;

	for (i = 0; rs != NULL && i < rs->n && n < max; i++) {
		const struct cm_rl_rule *r = &rs->v[i];
		struct cm_rl_match *m = &out[n];
		const char *kind, *value;

		if (r->method != NULL &&
		    (rq->method == NULL || strcmp(r->method, rq->method) != 0))
			continue;
		if (!cm_rl_glob(r->path, rq->path ? rq->path : "/"))
			continue;
		switch (r->key) {
		case CM_RL_KEY_USER:
			if (!nonempty(rq->user))
				continue;
			kind = "user", value = rq->user;
			break;
		case CM_RL_KEY_ANON_IP:
			if (nonempty(rq->user))
				continue;
			kind = "ip", value = ip;
			break;
		case CM_RL_KEY_USER_OR_IP:
			if (nonempty(rq->user))
				kind = "user", value = rq->user;
			else
				kind = "ip", value = ip;
			break;
		case CM_RL_KEY_API_KEY:
			if (!nonempty(rq->api_key))
				continue;
			kind = "apikey", value = rq->api_key;
			break;
		case CM_RL_KEY_GLOBAL:
			kind = "all", value = "all";
			break;
		case CM_RL_KEY_IP:
		default:
			kind = "ip", value = ip;
			break;
		}
		m->rule = r;
		m->lim = r->lim;
		for (j = 0; nonempty(rq->tier) && j < r->ntiers; j++)
			if (strcmp(r->tiers[j].name, rq->tier) == 0) {
				m->lim = r->tiers[j].lim;
				break;
			}
		if (m->lim.unlimited)
			continue;
		if (m->lim.burst <= 0)
			m->lim.burst = m->lim.limit;
		cm_rl_key(m->key, sizeof(m->key), r, kind, value);
		n++;
	}
	return (n);
}
