/*
 * The rate-limit rule matcher (common/rlrules.c): globs, what each key kind
 * matches and which key it builds, tiers, methods, and building a set from
 * a Rules reply (cm_rl_rules_from_pb), including the replies it refuses.
 * The sets are built the way the gateway builds them, from protobuf
 * messages; services/ratelimiter/ratelimiter_test.c checks that a set
 * parsed from YAML and one rebuilt from its reply match alike.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rlrules.h"
#include "status.h"
#include "util.h"

/* A rule message with the defaults the rate limiter would send. */
static Ratelimiter__Rule
rule(const char *name, const char *method, const char *path, const char *key,
     int64_t limit)
{
	Ratelimiter__Rule r = RATELIMITER__RULE__INIT;

	r.name = cm_pbstr(name);
	r.method = cm_pbstr(method);
	r.path = cm_pbstr(path);
	r.key = cm_pbstr(key);
	r.algorithm = cm_pbstr("sliding_window");
	r.limit = limit;
	r.window_s = 60;
	r.window_ms = 60000;
	r.failure = cm_pbstr("open");
	return (r);
}

/* The set from n rule messages; fails the test if it is refused. */
static struct cm_rl_rules *
build(Ratelimiter__Rule *v, size_t n)
{
	Ratelimiter__RulesResponse resp = RATELIMITER__RULES_RESPONSE__INIT;
	Ratelimiter__Rule *p[16];
	struct cm_rl_rules *rs = NULL;
	char err[256] = "";
	size_t i;

	assert_true(n <= 16);
	for (i = 0; i < n; i++)
		p[i] = &v[i];
	resp.source = cm_pbstr("test");
	resp.loaded_at = 1700000000;
	resp.version = 42;
	resp.n_rules = n;
	resp.rules = p;
	if (cm_rl_rules_from_pb(&resp, &rs, err, sizeof(err)) != 0)
		fail_msg("from_pb: %s", err);
	assert_non_null(rs);
	return (rs);
}

/* A set with the one rule r must be refused with want in the reason. */
static void
refused(Ratelimiter__Rule r, const char *want)
{
	Ratelimiter__RulesResponse resp = RATELIMITER__RULES_RESPONSE__INIT;
	Ratelimiter__Rule *p[1] = {&r};
	struct cm_rl_rules *rs = NULL;
	char err[256] = "";

	resp.n_rules = 1;
	resp.rules = p;
	assert_int_equal(cm_rl_rules_from_pb(&resp, &rs, err, sizeof(err)),
	                 CM_INVALID_ARGUMENT);
	assert_null(rs);
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void
test_glob(void **state)
{
	(void) state;
	assert_true(cm_rl_glob("/**", "/"));
	assert_true(cm_rl_glob("/**", "/a/b/c"));
	assert_true(cm_rl_glob("/a/*", "/a/b"));
	assert_true(cm_rl_glob("/a/*", "/a/"));
	assert_false(cm_rl_glob("/a/*", "/a/b/c"));
	assert_false(cm_rl_glob("/a/*", "/a"));
	assert_true(cm_rl_glob("/a/*/c", "/a/xyz/c"));
	assert_false(cm_rl_glob("/a/*/c", "/a/x/y/c"));
	assert_true(cm_rl_glob("/a/**/d", "/a/b/c/d"));
	assert_true(cm_rl_glob("/a/**", "/a/"));
	assert_false(cm_rl_glob("/a/**", "/a"));
	assert_true(cm_rl_glob("/api/v1/search**", "/api/v1/search?"));
	assert_true(cm_rl_glob("/api/v1/search**", "/api/v1/search"));
	assert_true(cm_rl_glob("/x*", "/xyz"));
	assert_true(cm_rl_glob("/x*", "/x"));
	assert_false(cm_rl_glob("/x*", "/y"));
	assert_true(cm_rl_glob("/*.png", "/logo.png"));
	assert_false(cm_rl_glob("/*.png", "/img/logo.png"));
	assert_true(cm_rl_glob("/**.png", "/img/logo.png"));
	assert_false(cm_rl_glob("/a", "/ab"));
	assert_false(cm_rl_glob("/ab", "/a"));
	assert_true(cm_rl_glob("/a", "/a"));
	assert_true(cm_rl_glob("/*", "/abc"));
	assert_true(cm_rl_glob("/*", "/"));
	assert_false(cm_rl_glob("/*", "/abc/d"));
	assert_false(cm_rl_glob("/", ""));
}

/* Which rule names matched, comma-separated, into out. */
static const char *
names(const struct cm_rl_match *m, size_t n, char *out, size_t outlen)
{
	size_t i, len = 0;

	out[0] = '\0';
	for (i = 0; i < n && len < outlen; i++)
		len += (size_t) snprintf(out + len, outlen - len, "%s%s",
		                         i ? "," : "", m[i].rule->name);
	return (out);
}

static void
test_key_kinds(void **state)
{
	Ratelimiter__Rule v[] = {
	    rule("ip", "*", "/**", "ip", 10),
	    rule("user", "*", "/**", "user", 11),
	    rule("anon", "*", "/**", "anon_ip", 12),
	    rule("uoi", "*", "/**", "user_or_ip", 13),
	    rule("ak", "*", "/**", "api_key", 14),
	    rule("glob", "*", "/**", "global", 15),
	};
	struct cm_rl_rules *rs = build(v, CM_ARRAY_LEN(v));
	struct cm_rl_match m[CM_RL_MAX_MATCH];
	struct cm_rl_request rq = {
	    .method = "GET", .path = "/x", .ip = "10.0.0.1"};
	char buf[128];
	size_t n;

	(void) state;
	/* Anonymous, no API key: user and api_key rules skip. */
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_string_equal(names(m, n, buf, sizeof(buf)), "ip,anon,uoi,glob");
	assert_string_equal(m[0].key, "rl:{ip:ip:10.0.0.1}");
	assert_string_equal(m[1].key, "rl:{anon:ip:10.0.0.1}");
	assert_string_equal(m[2].key, "rl:{uoi:ip:10.0.0.1}");
	assert_string_equal(m[3].key, "rl:{glob:all:all}");

	/* A token holder: anon_ip skips, user_or_ip keys by user. */
	rq.user = "alice";
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_string_equal(names(m, n, buf, sizeof(buf)), "ip,user,uoi,glob");
	assert_string_equal(m[1].key, "rl:{user:user:alice}");
	assert_string_equal(m[2].key, "rl:{uoi:user:alice}");

	/* "" is anonymous, like NULL. */
	rq.user = "";
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_string_equal(names(m, n, buf, sizeof(buf)), "ip,anon,uoi,glob");

	/* An API key: the api_key rule applies, keyed by it. */
	rq.api_key = "k123";
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_string_equal(names(m, n, buf, sizeof(buf)),
	                    "ip,anon,uoi,ak,glob");
	assert_string_equal(m[3].key, "rl:{ak:apikey:k123}");

	/* No IP: "unknown", one shared bucket. */
	rq.ip = NULL;
	rq.api_key = NULL;
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_string_equal(m[0].key, "rl:{ip:ip:unknown}");
	rq.ip = "";
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_string_equal(m[0].key, "rl:{ip:ip:unknown}");

	/* max bounds the output; no set matches nothing. */
	assert_int_equal(cm_rl_match(rs, &rq, m, 2), 2);
	assert_int_equal(cm_rl_match(NULL, &rq, m, CM_RL_MAX_MATCH), 0);
	cm_rl_rules_free(rs);
}

static void
test_tiers(void **state)
{
	Ratelimiter__Tier pro = RATELIMITER__TIER__INIT;
	Ratelimiter__Tier internal = RATELIMITER__TIER__INIT;
	Ratelimiter__Tier *tiers[] = {&pro, &internal};
	Ratelimiter__Rule v[] = {
	    rule("t", "*", "/**", "user", 5),
	    rule("b", "*", "/**", "ip", 7),
	};
	struct cm_rl_rules *rs;
	struct cm_rl_match m[CM_RL_MAX_MATCH];
	struct cm_rl_request rq = {
	    .method = "GET", .path = "/", .ip = "1.2.3.4", .user = "bob"};
	size_t n;

	(void) state;
	pro.name = cm_pbstr("pro");
	pro.limit = 50;
	pro.window_s = 60;
	pro.window_ms = 60000;
	pro.burst = 80;
	internal.name = cm_pbstr("internal");
	internal.unlimited = true;
	v[0].tiers = tiers;
	v[0].n_tiers = 2;
	v[1].burst = 3;
	rs = build(v, CM_ARRAY_LEN(v));

	/* No tier: the rule's limit; burst 0 means the limit. */
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_int_equal(n, 2);
	assert_int_equal(m[0].lim.limit, 5);
	assert_int_equal(m[0].lim.burst, 5);
	assert_int_equal(m[0].lim.window_ms, 60000);
	assert_int_equal(m[1].lim.burst, 3);
	rq.tier = "pro";
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_int_equal(n, 2);
	assert_int_equal(m[0].lim.limit, 50);
	assert_int_equal(m[0].lim.burst, 80);
	/* A tier the rule does not list: the rule's limit. */
	rq.tier = "gold";
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_int_equal(n, 2);
	assert_int_equal(m[0].lim.limit, 5);
	/* Unlimited: the rule does not apply, the other one does. */
	rq.tier = "internal";
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_int_equal(n, 1);
	assert_string_equal(m[0].rule->name, "b");
	cm_rl_rules_free(rs);
}

static void
test_methods_paths(void **state)
{
	Ratelimiter__Rule v[] = {
	    rule("post", "post", "/api/v1/urls", "ip", 1),
	    rule("any", "*", "/api/v1/urls/*", "ip", 1),
	    rule("empty", "", "/s/**", "ip", 1),
	};
	struct cm_rl_rules *rs = build(v, CM_ARRAY_LEN(v));
	struct cm_rl_match m[CM_RL_MAX_MATCH];
	struct cm_rl_request rq = {.method = "POST", .path = "/api/v1/urls"};

	(void) state;
	assert_string_equal(rs->v[0].method, "POST");
	assert_null(rs->v[1].method);
	assert_null(rs->v[2].method);
	assert_string_equal(rs->source, "test");
	assert_int_equal(rs->loaded_at, 1700000000);
	assert_int_equal(rs->version, 42);
	assert_int_equal(rs->refs, 1);
	assert_int_equal(cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH), 1);
	assert_string_equal(m[0].rule->name, "post");
	rq.method = "GET";
	assert_int_equal(cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH), 0);
	rq.path = "/api/v1/urls/abc";
	assert_int_equal(cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH), 1);
	assert_string_equal(m[0].rule->name, "any");
	rq.method = NULL;
	rq.path = "/s/a/b";
	assert_int_equal(cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH), 1);
	/* A method rule never matches a request without a method. */
	rq.path = "/api/v1/urls";
	assert_int_equal(cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH), 0);
	/* No path is "/". */
	rq.path = NULL;
	assert_int_equal(cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH), 0);
	cm_rl_rules_free(rs);
}

static void
test_from_pb(void **state)
{
	Ratelimiter__Rule r = rule("a", "*", "/**", "ip", 1);
	Ratelimiter__Tier t = RATELIMITER__TIER__INIT;
	Ratelimiter__Tier *tp[] = {&t};
	Ratelimiter__Rule twice[] = {
	    rule("a", "*", "/**", "ip", 1),
	    rule("a", "*", "/x", "ip", 1),
	};
	Ratelimiter__RulesResponse resp = RATELIMITER__RULES_RESPONSE__INIT;
	Ratelimiter__Rule *p[2] = {&twice[0], &twice[1]};
	struct cm_rl_rules *rs = NULL;
	enum cm_rl_keyby k;
	enum cm_rl_algo a;
	char err[256];
	int i;

	(void) state;
	/* Every name round-trips through its parser. */
	for (i = CM_RL_KEY_IP; i <= CM_RL_KEY_GLOBAL; i++) {
		assert_int_equal(
		    cm_rl_keyby_parse(cm_rl_keyby_name((enum cm_rl_keyby) i),
		                      &k),
		    0);
		assert_int_equal(k, i);
	}
	for (i = CM_RL_TOKEN_BUCKET; i <= CM_RL_GCRA; i++) {
		assert_int_equal(
		    cm_rl_algo_parse(cm_rl_algo_name((enum cm_rl_algo) i), &a),
		    0);
		assert_int_equal(a, i);
	}
	assert_int_equal(cm_rl_keyby_parse("apikey", &k), -1);
	assert_int_equal(cm_rl_algo_parse(NULL, &a), -1);

	/* An empty reply is an empty set. */
	assert_int_equal(cm_rl_rules_from_pb(&resp, &rs, err, sizeof(err)), 0);
	assert_int_equal(rs->n, 0);
	assert_string_equal(rs->source, "");
	cm_rl_rules_free(rs);

	/* window_s alone (an older limiter) still gives the window. */
	r.window_ms = 0;
	r.window_s = 5;
	rs = build(&r, 1);
	assert_int_equal(rs->v[0].lim.window_ms, 5000);
	assert_int_equal(rs->v[0].algo, CM_RL_SLIDING_WINDOW);
	assert_false(rs->v[0].fail_closed);
	cm_rl_rules_free(rs);
	/* window_ms wins: sub-second windows survive. */
	r.window_ms = 500;
	r.window_s = 0;
	r.failure = cm_pbstr("closed");
	r.algorithm = cm_pbstr("gcra");
	r.shadow = true;
	rs = build(&r, 1);
	assert_int_equal(rs->v[0].lim.window_ms, 500);
	assert_int_equal(rs->v[0].algo, CM_RL_GCRA);
	assert_true(rs->v[0].fail_closed);
	assert_true(rs->v[0].shadow);
	cm_rl_rules_free(rs);

	r = rule("a", "*", "/**", "apikey", 1);
	refused(r, "unknown key \"apikey\"");
	r = rule("a", "*", "/**", "", 1);
	refused(r, "unknown key");
	r = rule("a", "*", "/**", "ip", 1);
	r.algorithm = cm_pbstr("leaky_bucket");
	refused(r, "unknown algorithm \"leaky_bucket\"");
	r = rule("a", "*", "/**", "ip", 1);
	r.failure = cm_pbstr("");
	refused(r, "failure");
	r = rule("a", "*", "x", "ip", 1);
	refused(r, "path");
	r = rule("a:b", "*", "/**", "ip", 1);
	refused(r, "name");
	r = rule("", "*", "/**", "ip", 1);
	refused(r, "name");
	r = rule("a", "*", "/**", "ip", -1);
	refused(r, "limit");
	r = rule("a", "*", "/**", "ip", 1);
	r.window_ms = 0;
	r.window_s = 0;
	refused(r, "window");
	r = rule("a", "*", "/**", "ip", 1);
	r.burst = -2;
	refused(r, "burst");
	/* A tier is checked like a rule unless unlimited. */
	r = rule("a", "*", "/**", "ip", 1);
	t.name = cm_pbstr("pro");
	r.tiers = tp;
	r.n_tiers = 1;
	refused(r, "tier \"pro\"");
	t.unlimited = true;
	rs = build(&r, 1);
	assert_true(rs->v[0].tiers[0].lim.unlimited);
	cm_rl_rules_free(rs);

	resp.n_rules = 2;
	resp.rules = p;
	rs = NULL;
	assert_int_equal(cm_rl_rules_from_pb(&resp, &rs, err, sizeof(err)),
	                 CM_INVALID_ARGUMENT);
	assert_null(rs);
	assert_non_null(strstr(err, "twice"));
	assert_int_equal(cm_rl_rules_from_pb(NULL, &rs, err, sizeof(err)),
	                 CM_INVALID_ARGUMENT);
}

/*
 * The file every process reads: RATELIMIT_RULES when set, else the image's
 * installed file if readable, else the source tree's, which the build
 * names and which parses (the rules the gateway starts with).
 */
static void
test_rules_path(void **state)
{
	struct cm_rl_rules *rs = NULL;
	const char *p;
	char err[256] = "";

	(void) state;
	assert_int_equal(setenv("RATELIMIT_RULES", "/some/rules.yaml", 1), 0);
	assert_string_equal(cm_rl_rules_path(), "/some/rules.yaml");
	assert_int_equal(unsetenv("RATELIMIT_RULES"), 0);
	p = cm_rl_rules_path();
	if (strcmp(p, CM_RL_RULES_INSTALLED) != 0)
		assert_string_equal(p, CM_RL_RULES_SOURCE);
	assert_int_equal(
	    cm_rl_rules_load(CM_RL_RULES_SOURCE, &rs, err, sizeof(err)), 0);
	assert_true(rs->n > 0);
	cm_rl_rules_free(rs);
	assert_int_equal(
	    cm_rl_rules_load("/nonexistent/rules.yaml", &rs, err, sizeof(err)),
	    CM_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "/nonexistent/rules.yaml"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_glob),
	    cmocka_unit_test(test_key_kinds),
	    cmocka_unit_test(test_tiers),
	    cmocka_unit_test(test_methods_paths),
	    cmocka_unit_test(test_from_pb),
	    cmocka_unit_test(test_rules_path),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
