/*
 * The rate limiter's domain: rule parsing (good and bad files, the shipped
 * default), glob matching, rule matching (keys, tiers, methods), the
 * fallback limiter and the over-limit cache.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ratelimiter.h"

static struct rl_rules *
parse_ok(const char *text)
{
	struct rl_rules *rs = NULL;
	char err[256] = "";

	if (rl_rules_parse(text, strlen(text), "test", &rs, err, sizeof(err)) !=
	    0)
		fail_msg("parse: %s", err);
	return (rs);
}

static void
parse_bad(const char *text, const char *want)
{
	struct rl_rules *rs = NULL;
	char err[256] = "";

	assert_int_equal(
	    rl_rules_parse(text, strlen(text), "t", &rs, err, sizeof(err)), -1);
	assert_null(rs);
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void
test_parse(void **state)
{
	struct rl_rules *rs;

	(void) state;
	rs = parse_ok("");
	assert_int_equal(rs->n, 0);
	rl_rules_free(rs);
	rs = parse_ok("rules: []\n");
	assert_int_equal(rs->n, 0);
	rl_rules_free(rs);
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
	assert_int_equal(rs->v[0].algo, RL_GCRA);
	assert_int_equal(rs->v[0].key, RL_KEY_USER);
	assert_int_equal(rs->v[0].lim.limit, 5);
	assert_int_equal(rs->v[0].lim.window_ms, 60000);
	assert_int_equal(rs->v[0].lim.burst, 2);
	assert_true(rs->v[0].shadow);
	assert_true(rs->v[0].fail_closed);
	assert_int_equal(rs->v[0].ntiers, 2);
	assert_int_equal(rs->v[0].tiers[0].lim.limit, 50);
	assert_int_equal(rs->v[0].tiers[0].lim.window_ms, 60000);
	assert_true(rs->v[0].tiers[1].lim.unlimited);
	rl_rules_free(rs);
	/* JSON is YAML too. */
	rs = parse_ok("{\"rules\": [{\"name\": \"j\", \"limit\": 3, "
	              "\"window\": \"500ms\"}]}");
	assert_int_equal(rs->v[0].lim.window_ms, 500);
	assert_int_equal(rs->v[0].algo, RL_SLIDING_WINDOW);
	rl_rules_free(rs);

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
	struct rl_rules *rs;
	char err[256];

	(void) state;
	assert_int_equal(rl_rules_load(RULES_FILE, &rs, err, sizeof(err)), 0);
	assert_true(rs->n >= 5);
	rl_rules_free(rs);
}

static void
test_glob(void **state)
{
	(void) state;
	assert_true(rl_glob("/**", "/"));
	assert_true(rl_glob("/**", "/a/b/c"));
	assert_true(rl_glob("/a/*", "/a/b"));
	assert_false(rl_glob("/a/*", "/a/b/c"));
	assert_true(rl_glob("/a/*/c", "/a/xyz/c"));
	assert_true(rl_glob("/a/**/d", "/a/b/c/d"));
	assert_true(rl_glob("/api/v1/search**", "/api/v1/search?"));
	assert_true(rl_glob("/x*", "/xyz"));
	assert_false(rl_glob("/x*", "/y"));
	assert_false(rl_glob("/a", "/ab"));
	assert_true(rl_glob("/*", "/abc"));
	assert_false(rl_glob("/*", "/abc/d"));
}

static void
test_match(void **state)
{
	struct rl_rules *rs;
	struct rl_match m[RL_MAX_MATCH];
	struct rl_request rq = {
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
	n = rl_match(rs, &rq, m, RL_MAX_MATCH);
	assert_int_equal(n, 2);
	assert_string_equal(m[0].key, "rl:{all:ip:10.0.0.1}");
	assert_string_equal(m[1].key, "rl:{a:ip:10.0.0.1}");
	assert_int_equal(m[1].lim.burst, 2);

	rq.user = "alice";
	n = rl_match(rs, &rq, m, RL_MAX_MATCH);
	assert_int_equal(n, 2);
	assert_string_equal(m[1].key, "rl:{u:user:alice}");
	assert_int_equal(m[1].lim.limit, 5);
	rq.tier = "pro";
	n = rl_match(rs, &rq, m, RL_MAX_MATCH);
	assert_int_equal(m[1].lim.limit, 50);
	rq.tier = "internal";
	n = rl_match(rs, &rq, m, RL_MAX_MATCH);
	assert_int_equal(n, 1);

	rq.method = "GET";
	rq.path = "/api/v1/urls/abc";
	n = rl_match(rs, &rq, m, RL_MAX_MATCH);
	assert_int_equal(n, 2);
	assert_string_equal(m[1].key, "rl:{g:all:all}");
	rq.path = "/other";
	assert_int_equal(rl_match(rs, &rq, m, RL_MAX_MATCH), 1);
	rl_rules_free(rs);
}

static void
test_fallback(void **state)
{
	struct rl_rules *rs;
	struct rl_fallback *f = rl_fallback_new(16);
	struct rl_match m[RL_MAX_MATCH];
	struct rl_verdict v[RL_MAX_MATCH];
	struct rl_request rq = {.method = "GET", .path = "/", .ip = "1.1.1.1"};
	size_t n;
	int i, ok = 0;

	(void) state;
	rs = parse_ok("rules:\n"
	              "  - {name: big, limit: 10, window: 10}\n"
	              "  - {name: small, limit: 3, window: 3}\n");
	n = rl_match(rs, &rq, m, RL_MAX_MATCH);
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
		n = rl_match(rs, &rq, m, RL_MAX_MATCH);
		assert_true(rl_fallback_check(f, m, n, 1, 3000, v));
	}
	rl_fallback_free(f);
	rl_rules_free(rs);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_default_file),
	    cmocka_unit_test(test_glob),
	    cmocka_unit_test(test_match),
	    cmocka_unit_test(test_fallback),
	    cmocka_unit_test(test_hot),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
