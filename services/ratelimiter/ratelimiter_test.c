/*
 * The rate limiter's domain: rule parsing (good and bad files, the shipped
 * default), rule matching on parsed files (keys, tiers, methods; the
 * matcher itself is tested in tests/unit/test_rlrules.c), the fallback
 * limiter, the over-limit cache, and the Rules reply round trip: a set
 * rebuilt from its reply matches like the parsed one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ratelimiter.h"
#include "status.h"
#include "util.h"

static struct cm_rl_rules *
parse_ok(const char *text)
{
	struct cm_rl_rules *rs = NULL;
	char err[256] = "";

	if (cm_rl_rules_parse(text, strlen(text), "test", &rs, err,
	                      sizeof(err)) != 0)
		fail_msg("parse: %s", err);
	return (rs);
}

static void
parse_bad(const char *text, const char *want)
{
	struct cm_rl_rules *rs = NULL;
	char err[256] = "";

	assert_int_equal(
	    cm_rl_rules_parse(text, strlen(text), "t", &rs, err, sizeof(err)),
	    CM_INVALID_ARGUMENT);
	assert_null(rs);
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void
test_parse(void **state)
{
	struct cm_rl_rules *rs;

	(void) state;
	rs = parse_ok("");
	assert_int_equal(rs->n, 0);
	cm_rl_rules_free(rs);
	rs = parse_ok("rules: []\n");
	assert_int_equal(rs->n, 0);
	cm_rl_rules_free(rs);
	rs = parse_ok("rules:\n"
	              "  - name: a\n"
	              "    method: post\n"
	              "    path: /x/*\n"
	              "    key: user\n"
	              "    algorithm: gcra\n"
	              "    limit: 5\n"
	              "    window: 1m\n"
	              "    burst: 2\n"
	              "    shadow: true\n"
	              "    failure: closed\n"
	              "    tiers:\n"
	              "      pro: {limit: 50}\n"
	              "      internal: unlimited\n");
	assert_int_equal(rs->n, 1);
	assert_string_equal(rs->v[0].method, "POST");
	assert_int_equal(rs->v[0].algo, CM_RL_GCRA);
	assert_int_equal(rs->v[0].key, CM_RL_KEY_USER);
	assert_int_equal(rs->v[0].lim.limit, 5);
	assert_int_equal(rs->v[0].lim.window_ms, 60000);
	assert_int_equal(rs->v[0].lim.burst, 2);
	assert_true(rs->v[0].shadow);
	assert_true(rs->v[0].fail_closed);
	assert_int_equal(rs->v[0].ntiers, 2);
	assert_int_equal(rs->v[0].tiers[0].lim.limit, 50);
	assert_int_equal(rs->v[0].tiers[0].lim.window_ms, 60000);
	assert_true(rs->v[0].tiers[1].lim.unlimited);
	cm_rl_rules_free(rs);
	/* JSON is YAML too. */
	rs = parse_ok("{\"rules\": [{\"name\": \"j\", \"limit\": 3, "
	              "\"window\": \"500ms\"}]}");
	assert_int_equal(rs->v[0].lim.window_ms, 500);
	assert_int_equal(rs->v[0].algo, CM_RL_SLIDING_WINDOW);
	cm_rl_rules_free(rs);

	parse_bad("rules: [", "t:");
	parse_bad("rules:\n  - name: a\n    limit: 5\n", "window");
	parse_bad("rules:\n  - name: a\n    limit: 5\n    window: 1x\n",
	          "window");
	parse_bad("rules:\n  - {name: a, limit: 1, window: 1, algorithm: x}",
	          "algorithm");
	parse_bad("rules:\n  - {name: a, limit: 1, window: 1, key: x}", "key");
	parse_bad("rules:\n  - {name: a, limit: 1, window: 1, colour: red}",
	          "colour");
	parse_bad("rules:\n  - {name: a, limit: 1, window: 1}\n"
	          "  - {name: a, limit: 1, window: 1}",
	          "twice");
	parse_bad("rules:\n  - {limit: 1, window: 1}", "name");
	parse_bad("limits: []", "limits");
}

static void
test_default_file(void **state)
{
	struct cm_rl_rules *rs;
	char err[256];

	(void) state;
	assert_int_equal(cm_rl_rules_load(RULES_FILE, &rs, err, sizeof(err)),
	                 0);
	assert_true(rs->n >= 5);
	cm_rl_rules_free(rs);
}

static void
test_match(void **state)
{
	struct cm_rl_rules *rs;
	struct cm_rl_match m[CM_RL_MAX_MATCH];
	struct cm_rl_request rq = {
	    .method = "POST", .path = "/api/v1/urls", .ip = "10.0.0.1"};
	size_t n;

	(void) state;
	rs = parse_ok("rules:\n"
	              "  - {name: all, limit: 100, window: 60}\n"
	              "  - {name: u, method: POST, path: /api/v1/urls, "
	              "key: user, limit: 5, window: 60,\n"
	              "     tiers: {pro: {limit: 50}, internal: unlimited}}\n"
	              "  - {name: a, method: POST, path: /api/v1/urls, "
	              "key: anon_ip, limit: 2, window: 60}\n"
	              "  - {name: g, path: /api/v1/urls/*, key: global, "
	              "limit: 9, window: 60}\n");
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_int_equal(n, 2);
	assert_string_equal(m[0].key, "rl:{all:ip:10.0.0.1}");
	assert_string_equal(m[1].key, "rl:{a:ip:10.0.0.1}");
	assert_int_equal(m[1].lim.burst, 2);

	rq.user = "alice";
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_int_equal(n, 2);
	assert_string_equal(m[1].key, "rl:{u:user:alice}");
	assert_int_equal(m[1].lim.limit, 5);
	rq.tier = "pro";
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_int_equal(m[1].lim.limit, 50);
	rq.tier = "internal";
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_int_equal(n, 1);

	rq.method = "GET";
	rq.path = "/api/v1/urls/abc";
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_int_equal(n, 2);
	assert_string_equal(m[1].key, "rl:{g:all:all}");
	rq.path = "/other";
	assert_int_equal(cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH), 1);
	cm_rl_rules_free(rs);
}

static void
test_fallback(void **state)
{
	struct cm_rl_rules *rs;
	struct rl_fallback *f = rl_fallback_new(16);
	struct cm_rl_match m[CM_RL_MAX_MATCH];
	struct rl_verdict v[CM_RL_MAX_MATCH];
	struct cm_rl_request rq = {
	    .method = "GET", .path = "/", .ip = "1.1.1.1"};
	size_t n;
	int i, ok = 0;

	(void) state;
	rs = parse_ok("rules:\n"
	              "  - {name: big, limit: 10, window: 10}\n"
	              "  - {name: small, limit: 3, window: 3}\n");
	n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
	assert_int_equal(n, 2);
	for (i = 0; i < 10; i++)
		ok += rl_fallback_check(f, m, n, 1, 1000, v);
	assert_int_equal(ok, 3);
	assert_false(v[1].allowed);
	assert_true(v[1].retry_ms > 0 && v[1].retry_ms <= 1001);
	/* Refused requests spent nothing from the other rule. */
	assert_int_equal(v[0].remaining, 7);
	/* One token back a second later (3 per 3 s). */
	assert_true(rl_fallback_check(f, m, n, 1, 2001, v));
	assert_false(rl_fallback_check(f, m, n, 1, 2001, v));
	/* A full table is cleared, not grown. */
	for (i = 0; i < 100; i++) {
		char ip[32];

		snprintf(ip, sizeof(ip), "2.2.2.%d", i);
		rq.ip = ip;
		n = cm_rl_match(rs, &rq, m, CM_RL_MAX_MATCH);
		assert_true(rl_fallback_check(f, m, n, 1, 3000, v));
	}
	rl_fallback_free(f);
	cm_rl_rules_free(rs);
}

static void
test_hot(void **state)
{
	struct rl_hot *h = rl_hot_new(4);

	(void) state;
	assert_int_equal(rl_hot_get(h, "k", 100), 0);
	rl_hot_put(h, "k", 600);
	assert_int_equal(rl_hot_get(h, "k", 100), 500);
	assert_int_equal(rl_hot_get(h, "k", 600), 0);
	rl_hot_free(h);
}

/* ---- the Rules reply round trip ---- */

/*
 * rs as a gateway sees it: rendered as the Rules handler renders it,
 * packed and unpacked as the RPC carries it, then rebuilt.
 */
static struct cm_rl_rules *
through_rpc(const struct cm_rl_rules *rs)
{
	Ratelimiter__RulesResponse *resp, *got;
	struct cm_rl_rules *back = NULL;
	cm_arena a;
	uint8_t *buf;
	size_t len;
	char err[256] = "";

	cm_arena_init(&a);
	resp = rl_rules_to_pb(rs, &a);
	len = protobuf_c_message_get_packed_size(&resp->base);
	buf = cm_arena_alloc(&a, len + 1);
	assert_int_equal(protobuf_c_message_pack(&resp->base, buf), len);
	got = ratelimiter__rules_response__unpack(NULL, len, buf);
	assert_non_null(got);
	if (cm_rl_rules_from_pb(got, &back, err, sizeof(err)) != 0)
		fail_msg("from_pb: %s", err);
	ratelimiter__rules_response__free_unpacked(got, NULL);
	cm_arena_fini(&a);
	return (back);
}

static void
same_limit(const struct cm_rl_limit *a, const struct cm_rl_limit *b)
{
	assert_int_equal(a->unlimited, b->unlimited);
	if (a->unlimited)
		return; /* the other fields mean nothing then */
	assert_int_equal(a->limit, b->limit);
	assert_int_equal(a->window_ms, b->window_ms);
	assert_int_equal(a->burst, b->burst);
}

/* The two sets hold the same rules, field by field. */
static void
same_rules(const struct cm_rl_rules *a, const struct cm_rl_rules *b)
{
	size_t i, j;

	assert_int_equal(a->n, b->n);
	assert_int_equal(a->version, b->version);
	assert_int_equal(a->loaded_at, b->loaded_at);
	assert_string_equal(a->source, b->source);
	for (i = 0; i < a->n; i++) {
		const struct cm_rl_rule *x = &a->v[i], *y = &b->v[i];

		assert_string_equal(x->name, y->name);
		if (x->method == NULL)
			assert_null(y->method);
		else
			assert_string_equal(x->method, y->method);
		assert_string_equal(x->path, y->path);
		assert_int_equal(x->key, y->key);
		assert_int_equal(x->algo, y->algo);
		assert_int_equal(x->shadow, y->shadow);
		assert_int_equal(x->fail_closed, y->fail_closed);
		same_limit(&x->lim, &y->lim);
		assert_int_equal(x->ntiers, y->ntiers);
		for (j = 0; j < x->ntiers; j++) {
			assert_string_equal(x->tiers[j].name, y->tiers[j].name);
			same_limit(&x->tiers[j].lim, &y->tiers[j].lim);
		}
	}
}

/*
 * Matches every combination of a set of requests against both sets and
 * checks that they decide alike: the same rules, in the same order, with
 * the same limits and keys.  Returns the number of matches seen.
 */
static size_t
same_matches(const struct cm_rl_rules *a, const struct cm_rl_rules *b)
{
	static const char *const methods[] = {"GET", "POST", "DELETE", "get",
	                                      NULL};
	static const char *const paths[] = {
	    "/",
	    "/abc",
	    "/abc/def",
	    "/api/v1/urls",
	    "/api/v1/urls/x1",
	    "/api/v1/urls/x1/stats",
	    "/api/v1/search",
	    "/api/v1/search?q=a",
	    "/api/v1/videos",
	    "/api/v1/videos/v/seg-1.ts",
	    "/static/logo.png",
	    "/static/img/logo.png",
	    "/fast",
	    NULL,
	};
	static const char *const users[] = {NULL, "", "alice"};
	static const char *const tiers[] = {NULL, "pro", "internal", "free"};
	static const char *const keys[] = {NULL, "9f86d081884c7d65"};
	static const char *const ips[] = {"10.0.0.1", "2001:db8::1", NULL};
	struct cm_rl_match ma[CM_RL_MAX_MATCH], mb[CM_RL_MAX_MATCH];
	size_t combos = CM_ARRAY_LEN(methods) * CM_ARRAY_LEN(paths) *
	                CM_ARRAY_LEN(users) * CM_ARRAY_LEN(tiers) *
	                CM_ARRAY_LEN(keys) * CM_ARRAY_LEN(ips);
	size_t c, x, n, i, total = 0;

	for (c = 0; c < combos; c++) {
		struct cm_rl_request rq;

		/* c as a mixed-radix number, one digit per field. */
		x = c;
		rq.method = methods[x % CM_ARRAY_LEN(methods)];
		x /= CM_ARRAY_LEN(methods);
		rq.path = paths[x % CM_ARRAY_LEN(paths)];
		x /= CM_ARRAY_LEN(paths);
		rq.user = users[x % CM_ARRAY_LEN(users)];
		x /= CM_ARRAY_LEN(users);
		rq.tier = tiers[x % CM_ARRAY_LEN(tiers)];
		x /= CM_ARRAY_LEN(tiers);
		rq.api_key = keys[x % CM_ARRAY_LEN(keys)];
		x /= CM_ARRAY_LEN(keys);
		rq.ip = ips[x % CM_ARRAY_LEN(ips)];

		n = cm_rl_match(a, &rq, ma, CM_RL_MAX_MATCH);
		assert_int_equal(cm_rl_match(b, &rq, mb, CM_RL_MAX_MATCH), n);
		for (i = 0; i < n; i++) {
			const struct cm_rl_rule *ra = ma[i].rule,
			                        *rb = mb[i].rule;

			assert_string_equal(ra->name, rb->name);
			assert_string_equal(ma[i].key, mb[i].key);
			same_limit(&ma[i].lim, &mb[i].lim);
			assert_int_equal(ra->shadow, rb->shadow);
			assert_int_equal(ra->fail_closed, rb->fail_closed);
			assert_int_equal(ra->algo, rb->algo);
		}
		total += n;
	}
	return (total);
}

/*
 * A set parsed from YAML and the same set rebuilt from its Rules reply
 * (what the gateway will hold) match every request alike.
 */
static void
test_rules_round_trip(void **state)
{
	struct cm_rl_rules *rs, *back;
	char err[256];

	(void) state;
	rs = parse_ok(
	    "rules:\n"
	    "  - {name: all, limit: 100, window: 60}\n"
	    "  - {name: fast, path: /fast, limit: 3, window: 500ms,\n"
	    "     algorithm: token_bucket, burst: 5, failure: closed}\n"
	    "  - {name: odd, method: '*', path: '/static/**.png',\n"
	    "     key: global, limit: 7, window: 1.5s,\n"
	    "     algorithm: fixed_window}\n"
	    "  - {name: u, method: post, path: /api/v1/urls, key: user,\n"
	    "     limit: 5, window: 1m, algorithm: gcra, burst: 2,\n"
	    "     tiers: {pro: {limit: 50, burst: 9}, internal: unlimited,\n"
	    "             free: {unlimited: true}}}\n"
	    "  - {name: a, method: POST, path: /api/v1/urls, key: anon_ip,\n"
	    "     limit: 2, window: 2h, shadow: true}\n"
	    "  - {name: r, method: GET, path: '/api/v1/urls/*',\n"
	    "     key: user_or_ip, limit: 300, window: 1m,\n"
	    "     algorithm: sliding_log,\n"
	    "     tiers: {pro: {window: 10s}}}\n"
	    "  - {name: k, path: '/api/v1/search**', key: api_key,\n"
	    "     limit: 10, window: 1d, failure: open}\n"
	    "  - {name: v, method: DELETE, path: '/api/v1/**', key: user,\n"
	    "     limit: 0, window: 30}\n");
	back = through_rpc(rs);
	same_rules(rs, back);
	assert_true(same_matches(rs, back) > 1000);
	/* Sub-second and fractional windows survive (window_ms). */
	assert_int_equal(back->v[1].lim.window_ms, 500);
	assert_int_equal(back->v[2].lim.window_ms, 1500);
	assert_null(back->v[2].method);
	cm_rl_rules_free(back);
	cm_rl_rules_free(rs);

	/* The shipped default rules. */
	assert_int_equal(cm_rl_rules_load(RULES_FILE, &rs, err, sizeof(err)),
	                 0);
	back = through_rpc(rs);
	same_rules(rs, back);
	assert_true(same_matches(rs, back) > 1000);
	cm_rl_rules_free(back);
	cm_rl_rules_free(rs);

	/* No rules at all. */
	rs = parse_ok("");
	back = through_rpc(rs);
	same_rules(rs, back);
	assert_int_equal(same_matches(rs, back), 0);
	cm_rl_rules_free(back);
	cm_rl_rules_free(rs);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_default_file),
	    cmocka_unit_test(test_match),
	    cmocka_unit_test(test_fallback),
	    cmocka_unit_test(test_hot),
	    cmocka_unit_test(test_rules_round_trip),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
