/*
 * Unit tests of the shortener's domain, driven through store_mem.c: URL and
 * alias validation, both code generators, collisions, expiry, ownership,
 * listing, deletion with invalidation, the read-through of redirects,
 * clicks and purge.  No servers; a fake clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base62.h"
#include "idperm.h"
#include "shortener.h"
#include "status.h"
#include "store.h"
#include "util.h"

#define BASE "http://localhost:8080"
#define T0   1700000000

static int64_t fake_now = T0;

static int64_t
fake_clock(void)
{
	return (fake_now);
}

struct fx {
	struct shortener_mem *mem;
	struct shortener *svc;
	struct shortener_io io;
	cm_arena a;
	char err[256];
};

static struct fx *
fx_new(enum shortener_code_mode mode, const char *base, bool cache)
{
	struct shortener_config c = {
	    .mode = mode,
	    .id_key = "test-key",
	    .public_base_url = base,
	    .now = fake_clock,
	};
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	fake_now = T0;
	f->mem = shortener_mem_new();
	assert_int_equal(shortener_new(&f->svc, &c, f->err, sizeof(f->err)),
	                 CM_OK);
	shortener_mem_store(f->mem, &f->io.store);
	if (cache)
		shortener_mem_cache(f->mem, &f->io.cache);
	cm_arena_init(&f->a);
	return (f);
}

static int
setup_seq(void **state)
{
	*state = fx_new(SHORTENER_CODE_SEQUENTIAL, BASE, true);
	return (0);
}

static int
setup_hash(void **state)
{
	*state = fx_new(SHORTENER_CODE_HASH, BASE, true);
	return (0);
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	cm_arena_fini(&f->a);
	shortener_free(f->svc);
	shortener_mem_free(f->mem);
	free(f);
	return (0);
}

/* Create with the given fields; returns the status, *out on success. */
static int
create(struct fx *f, const char *user, const char *url, const char *alias,
       int64_t expires_in, Shortener__Url **out)
{
	Shortener__CreateUrlRequest in = SHORTENER__CREATE_URL_REQUEST__INIT;
	Shortener__Url *u = NULL;
	int rv;

	in.long_url = cm_pbstr(url);
	in.custom_alias = cm_pbstr(alias != NULL ? alias : "");
	in.expires_in = expires_in;
	rv = shortener_create(f->svc, &f->io, user, &in, &f->a, &u, f->err,
	                      sizeof(f->err));
	if (out != NULL)
		*out = u;
	return (rv);
}

static int
resolve(struct fx *f, const char *code, Shortener__ResolveResponse **out)
{
	Shortener__ResolveRequest in = SHORTENER__RESOLVE_REQUEST__INIT;

	in.code = cm_pbstr(code);
	return (shortener_resolve(f->svc, &f->io, &in, &f->a, out, f->err,
	                          sizeof(f->err)));
}

static int
get(struct fx *f, const char *user, const char *code, Shortener__Url **out)
{
	Shortener__GetUrlRequest in = SHORTENER__GET_URL_REQUEST__INIT;

	Shortener__Url *u;

	in.code = cm_pbstr(code);
	return (shortener_get(f->svc, &f->io, user, &in, &f->a,
	                      out != NULL ? out : &u, f->err, sizeof(f->err)));
}

static int
del(struct fx *f, const char *user, const char *code)
{
	Shortener__DeleteUrlRequest in = SHORTENER__DELETE_URL_REQUEST__INIT;

	in.code = cm_pbstr(code);
	return (shortener_delete(f->svc, &f->io, user, &in, f->err,
	                         sizeof(f->err)));
}

static int
list(struct fx *f, const char *user, int limit, const char *cursor,
     Shortener__ListUrlsResponse **out)
{
	Shortener__ListUrlsRequest in = SHORTENER__LIST_URLS_REQUEST__INIT;

	in.limit = limit;
	in.cursor = cm_pbstr(cursor != NULL ? cursor : "");
	return (shortener_list(f->svc, &f->io, user, &in, &f->a, out, f->err,
	                       sizeof(f->err)));
}

static bool
is_base62(const char *s)
{
	for (; *s != '\0'; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= 'A' && *s <= 'Z')))
			return (false);
	return (true);
}

/* ---- validation ---- */

static void
test_url_valid(void **state)
{
	struct fx *f = *state;
	static const char *ok[] = {
	    "http://example.com",
	    "https://example.com/",
	    "https://example.com/a/b?q=1&r=%20x#frag",
	    "HTTPS://Example.COM:8443/path",
	    "http://example.com?query",
	    "http://example.com#top",
	    "http://sub.example.com./x",
	    "http://my_host-1.internal:1/",
	    "http://[::1]:8080/x",
	    "http://[2001:db8::1]/",
	    "http://127.0.0.1:65535/",
	    "http://localhost/",      /* port 80, not the base's 8080 */
	    "http://localhost:8081/", /* another port */
	    "https://example.com/~user/a+b,c;d=e!f*g'h(i)j$k@l:m",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int rv =
		    shortener_check_url(f->svc, ok[i], f->err, sizeof(f->err));

		if (rv != CM_OK)
			fail_msg("%s: %s", ok[i], f->err);
	}
}

static void
test_url_invalid(void **state)
{
	struct fx *f = *state;
	static const char *bad[] = {
	    "",
	    "example.com",
	    "ftp://example.com/",
	    "javascript:alert(1)",
	    "http:/example.com",
	    "http://",
	    "http:///path",
	    "http://:80/",
	    "http://ex ample.com/",
	    "http://example.com/a b",
	    "http://example.com/\t",
	    "http://example.com/\x01",
	    "http://example.com/\x7f",
	    "http://example.com/caf\xc3\xa9",
	    "http://user:pass@example.com/",
	    "http://user@example.com/",
	    "http://example.com\\@evil.com/",
	    "http://example.com:/",
	    "http://example.com:0/",
	    "http://example.com:65536/",
	    "http://example.com:8a/",
	    "http://example.com:123456/",
	    "http://exa..mple.com/",
	    "http://.example.com/",
	    "http://exa%6dple.com/",
	    "http://example.com/%",
	    "http://example.com/%4",
	    "http://example.com/%zz",
	    "http://[::1/",
	    "http://[]/",
	    "http://[xyz]/",
	    "http://[::1]x/",
	    "http://example.com/<script>",
	    "http://localhost:8080/x",  /* the shortener itself */
	    "http://LOCALHOST:8080",    /* host compared case-insensitively */
	    "https://localhost:8080/x", /* scheme does not matter */
	    "http://localhost.:8080/",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rv =
		    shortener_check_url(f->svc, bad[i], f->err, sizeof(f->err));

		if (rv != CM_INVALID_ARGUMENT)
			fail_msg("accepted: \"%s\"", bad[i]);
		assert_non_null(strstr(f->err, "long_url"));
	}
}

static void
test_url_length(void **state)
{
	struct fx *f = *state;
	char url[SHORTENER_URL_MAX + 2];
	size_t n = strlen("http://example.com/");

	memcpy(url, "http://example.com/", n);
	memset(url + n, 'a', sizeof(url) - n);
	url[SHORTENER_URL_MAX] = '\0'; /* exactly 2048 bytes */
	assert_int_equal(
	    shortener_check_url(f->svc, url, f->err, sizeof(f->err)), CM_OK);
	url[SHORTENER_URL_MAX] = 'a';
	url[SHORTENER_URL_MAX + 1] = '\0'; /* 2049 */
	assert_int_equal(
	    shortener_check_url(f->svc, url, f->err, sizeof(f->err)),
	    CM_INVALID_ARGUMENT);
	assert_non_null(strstr(f->err, "2048"));
}

/* The base's effective port decides, whichever scheme the link uses. */
static void
test_url_self_https_base(void **state)
{
	struct fx *f =
	    fx_new(SHORTENER_CODE_SEQUENTIAL, "https://Sho.rt/", true);

	*state = f; /* for the teardown */
	assert_string_equal(shortener_base_url(f->svc), "https://Sho.rt");
	assert_int_equal(shortener_check_url(f->svc, "https://sho.rt/x", f->err,
	                                     sizeof(f->err)),
	                 CM_INVALID_ARGUMENT);
	assert_int_equal(shortener_check_url(f->svc, "http://sho.rt:443/x",
	                                     f->err, sizeof(f->err)),
	                 CM_INVALID_ARGUMENT);
	assert_int_equal(shortener_check_url(f->svc, "http://sho.rt/x", f->err,
	                                     sizeof(f->err)),
	                 CM_OK);
	assert_int_equal(shortener_check_url(f->svc, "https://a.sho.rt/x",
	                                     f->err, sizeof(f->err)),
	                 CM_OK);
}

static void
test_bad_config(void **state)
{
	struct shortener_config c = {.id_key = "k", .public_base_url = "x"};
	struct shortener *s = NULL;
	char err[256];

	(void) state;
	assert_int_equal(shortener_new(&s, &c, err, sizeof(err)),
	                 CM_INVALID_ARGUMENT);
	c.public_base_url = "http://ok.example";
	c.id_key = "";
	assert_int_equal(shortener_new(&s, &c, err, sizeof(err)),
	                 CM_INVALID_ARGUMENT);
	assert_null(s);
}

static void
test_alias(void **state)
{
	static const char *ok[] = {"abc",
	                           "my-link_1",
	                           "ABC",
	                           "a-b",
	                           "0123456789abcdefghijABCDEFGHIJ__",
	                           "apis",
	                           "wss",
	                           "v1x"};
	static const char *bad[] = {
	    "ab",     "a",           "0123456789abcdefghijABCDEFGHIJ__x",
	    "a.b",    "a b",         "a/b",
	    "ab%",    "caf\xc3\xa9", "api",
	    "API",    "Healthz",     "metrics",
	    "static", "ADMIN",       "hls",
	    "upload", "Uploads",     "v1",
	    "V1"};
	char err[256];

	(void) state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (shortener_check_alias(ok[i], err, sizeof(err)) != CM_OK)
			fail_msg("%s: %s", ok[i], err);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (shortener_check_alias(bad[i], err, sizeof(err)) !=
		    CM_INVALID_ARGUMENT)
			fail_msg("accepted: %s", bad[i]);
	assert_int_equal(shortener_check_alias("ws", err, sizeof(err)),
	                 CM_INVALID_ARGUMENT);
}

static void
test_create_rejects(void **state)
{
	struct fx *f = *state;

	assert_int_equal(create(f, "", "notaurl", NULL, 0, NULL),
	                 CM_INVALID_ARGUMENT);
	assert_int_equal(create(f, "", "http://e.com/", "no", 0, NULL),
	                 CM_INVALID_ARGUMENT);
	assert_non_null(strstr(f->err, "custom_alias"));
	assert_int_equal(create(f, "", "http://e.com/", "healthz", 0, NULL),
	                 CM_INVALID_ARGUMENT);
	assert_non_null(strstr(f->err, "reserved"));
	assert_int_equal(create(f, "", "http://e.com/", NULL, -1, NULL),
	                 CM_INVALID_ARGUMENT);
	assert_non_null(strstr(f->err, "expires_in"));
	assert_int_equal(create(f, "", "http://e.com/", NULL,
	                        SHORTENER_EXPIRES_MAX + 1, NULL),
	                 CM_INVALID_ARGUMENT);
	assert_int_equal(
	    create(f, "", "http://e.com/", NULL, SHORTENER_EXPIRES_MAX, NULL),
	    CM_OK);
}

/* ---- code generation ---- */

static void
test_sequential(void **state)
{
	struct fx *f = *state;
	Shortener__Url *u1, *u2;
	char want[SHORTENER_CODE_LEN + 1], url[64];

	assert_int_equal(create(f, "", "https://example.com/a", NULL, 0, &u1),
	                 CM_OK);
	assert_int_equal(strlen(u1->code), SHORTENER_CODE_LEN);
	assert_true(is_base62(u1->code));
	shortener_seq_code(f->svc, 1, want); /* the mem store leases from 1 */
	assert_string_equal(u1->code, want);
	snprintf(url, sizeof(url), BASE "/%s", u1->code);
	assert_string_equal(u1->short_url, url);
	assert_string_equal(u1->long_url, "https://example.com/a");
	assert_int_equal(u1->created_at, T0);
	assert_int_equal(u1->expires_at, 0);

	/* The same URL again is a new link in sequential mode. */
	assert_int_equal(create(f, "", "https://example.com/a", NULL, 0, &u2),
	                 CM_OK);
	shortener_seq_code(f->svc, 2, want);
	assert_string_equal(u2->code, want);
	assert_string_not_equal(u1->code, u2->code);
}

/* Codes of consecutive ids are distinct and do not share a long prefix. */
static void
test_sequential_permutation(void **state)
{
	struct fx *f = *state;
	enum { N = 2000 };
	char(*codes)[SHORTENER_CODE_LEN + 1] = calloc(N, sizeof(*codes));
	size_t same_prefix = 0;

	assert_non_null(codes);
	for (uint64_t i = 0; i < N; i++) {
		shortener_seq_code(f->svc, i + 1, codes[i]);
		assert_int_equal(strlen(codes[i]), SHORTENER_CODE_LEN);
		if (i > 0 && strncmp(codes[i], codes[i - 1], 4) == 0)
			same_prefix++;
	}
	for (size_t i = 0; i < N; i++)
		for (size_t j = i + 1; j < N; j++)
			if (strcmp(codes[i], codes[j]) == 0)
				fail_msg("ids %zu and %zu share %s", i + 1,
				         j + 1, codes[i]);
	assert_true(same_prefix < N / 100);
	/* The largest id fits in 7 characters. */
	shortener_seq_code(f->svc, (UINT64_C(1) << SHORTENER_ID_BITS) - 1,
	                   codes[0]);
	assert_int_equal(strlen(codes[0]), SHORTENER_CODE_LEN);
	free(codes);
}

/* Ids come in leased blocks; a new block is leased when one runs out. */
static void
test_id_leasing(void **state)
{
	struct fx *f = *state;
	Shortener__Url *u;
	char want[SHORTENER_CODE_LEN + 1];

	shortener_mem_set_lease(f->mem, 2);
	for (int i = 1; i <= 5; i++) {
		assert_int_equal(create(f, "", "http://e.com/", NULL, 0, &u),
		                 CM_OK);
		shortener_seq_code(f->svc, (uint64_t) i, want);
		assert_string_equal(u->code, want);
	}
	/* The store is down: no id can be leased once the block is out. */
	shortener_mem_set_down(f->mem, true, false);
	assert_int_equal(create(f, "", "http://e.com/", NULL, 0, NULL),
	                 CM_UNAVAILABLE);
}

/* A generated code taken by an alias is skipped: the next id is used. */
static void
test_sequential_collision(void **state)
{
	struct fx *f = *state;
	Shortener__Url *u;
	char c2[SHORTENER_CODE_LEN + 1], c3[SHORTENER_CODE_LEN + 1];

	shortener_seq_code(f->svc, 2, c2);
	shortener_seq_code(f->svc, 3, c3);
	/* The alias row takes id 1; the next create gets id 2 = c2. */
	assert_int_equal(create(f, "", "http://e.com/x", c2, 0, NULL), CM_OK);
	assert_int_equal(create(f, "", "http://e.com/y", NULL, 0, &u), CM_OK);
	assert_string_equal(u->code, c3);
	assert_string_equal(u->long_url, "http://e.com/y");
}

/*
 * SHORTENER_ID_KEY changed: a process with another key (another
 * permutation) over the same store still finds every stored code, and a
 * new id whose code under the new key is an old link's code (generated
 * under the old key) is skipped for the next id; the old link stays as it
 * was.  The keys are fixed, so the colliding id is too: the old process
 * is made to lease up to it, so that the new one's first id is it.
 */
static void
test_key_change(void **state)
{
	struct fx *f = *state;
	struct shortener_config c = {
	    .mode = SHORTENER_CODE_SEQUENTIAL,
	    .id_key = "another-key",
	    .public_base_url = BASE,
	    .now = fake_clock,
	};
	struct shortener *old_svc = f->svc, *new_svc;
	Shortener__ResolveResponse *r;
	Shortener__Url *u;
	char old[SHORTENER_CODE_LEN + 1], want[SHORTENER_CODE_LEN + 1];
	cm_idperm perm;
	uint64_t v, j;

	shortener_mem_set_lease(f->mem, 1);
	assert_int_equal(create(f, "", "http://e.com/old", NULL, 0, &u), CM_OK);
	assert_int_equal(strlen(u->code), SHORTENER_CODE_LEN);
	memcpy(old, u->code, sizeof(old));
	/* The id that gets the old code under the new key. */
	assert_int_equal(cm_base62_decode(old, strlen(old), &v), 0);
	assert_int_equal(cm_idperm_init(&perm, c.id_key, SHORTENER_ID_BITS), 0);
	j = cm_idperm_decrypt(&perm, v);
	assert_true(j > 2);
	/* The old process's next block is [2, j). */
	shortener_mem_set_lease(f->mem, j - 2);
	assert_int_equal(create(f, "", "http://e.com/old2", NULL, 0, NULL),
	                 CM_OK);
	shortener_mem_set_lease(f->mem, 1000);

	assert_int_equal(shortener_new(&new_svc, &c, f->err, sizeof(f->err)),
	                 CM_OK);
	f->svc = new_svc;
	shortener_seq_code(new_svc, j, want);
	assert_string_equal(want, old); /* the collision is real */
	assert_int_equal(create(f, "", "http://e.com/new", NULL, 0, &u), CM_OK);
	shortener_seq_code(new_svc, j + 1, want);
	assert_string_equal(u->code, want);
	assert_int_equal(resolve(f, old, &r), CM_OK);
	assert_string_equal(r->long_url, "http://e.com/old");
	assert_int_equal(resolve(f, u->code, &r), CM_OK);
	assert_string_equal(r->long_url, "http://e.com/new");
	f->svc = old_svc;
	shortener_free(new_svc);
}

static void
test_hash(void **state)
{
	struct fx *f = *state;
	Shortener__Url *u1, *u2, *u3, *u4;
	char want[SHORTENER_CODE_LEN + 1];
	const char *url = "https://example.com/some/page";

	assert_int_equal(create(f, "", url, NULL, 0, &u1), CM_OK);
	shortener_hash_code(url, NULL, 0, want);
	assert_string_equal(u1->code, want);
	assert_int_equal(strlen(u1->code), SHORTENER_CODE_LEN);
	assert_true(is_base62(u1->code));

	/* The same URL, anonymous and without expiry: the same link. */
	fake_now += 10;
	assert_int_equal(create(f, "", url, NULL, 0, &u2), CM_OK);
	assert_string_equal(u2->code, u1->code);
	assert_int_equal(u2->created_at, T0);

	/* Another owner gets a link of their own. */
	assert_int_equal(create(f, "alice", url, NULL, 0, &u3), CM_OK);
	shortener_hash_code(url, "alice", 0, want);
	assert_string_equal(u3->code, want);
	assert_string_not_equal(u3->code, u1->code);

	/* With an expiry, a link is never shared: the next salt is used. */
	assert_int_equal(create(f, "", url, NULL, 60, &u4), CM_OK);
	shortener_hash_code(url, NULL, 1, want);
	assert_string_equal(u4->code, want);
	assert_int_equal(u4->expires_at, fake_now + 60);

	/* Different URLs, different codes. */
	shortener_hash_code("https://example.com/other", NULL, 0, want);
	assert_string_not_equal(want, u1->code);
}

/* A hash code held by another link: the next salt, then give up. */
static void
test_hash_collision(void **state)
{
	struct fx *f = *state;
	Shortener__Url *u;
	char c[SHORTENER_HASH_ATTEMPTS][SHORTENER_CODE_LEN + 1];
	const char *url = "https://example.com/collide";

	for (unsigned i = 0; i < SHORTENER_HASH_ATTEMPTS; i++)
		shortener_hash_code(url, NULL, i, c[i]);
	assert_int_equal(create(f, "", "http://other.example/", c[0], 0, NULL),
	                 CM_OK);
	assert_int_equal(create(f, "", url, NULL, 0, &u), CM_OK);
	assert_string_equal(u->code, c[1]);
	assert_string_equal(u->long_url, url);

	/* Every salt taken by other links: INTERNAL, bounded. */
	url = "https://example.com/unlucky";
	for (unsigned i = 0; i < SHORTENER_HASH_ATTEMPTS; i++) {
		shortener_hash_code(url, NULL, i, c[i]);
		assert_int_equal(
		    create(f, "", "http://other.example/", c[i], 0, NULL),
		    CM_OK);
	}
	assert_int_equal(create(f, "", url, NULL, 0, NULL), CM_INTERNAL);
}

/* ---- aliases ---- */

static void
test_alias_taken(void **state)
{
	struct fx *f = *state;
	Shortener__Url *u;

	assert_int_equal(create(f, "bob", "http://e.com/", "my-Link", 0, &u),
	                 CM_OK);
	assert_string_equal(u->code, "my-Link");
	assert_string_equal(u->short_url, BASE "/my-Link");
	assert_int_equal(
	    create(f, "alice", "http://f.com/", "my-Link", 0, NULL),
	    CM_ALREADY_EXISTS);
	assert_non_null(strstr(f->err, "taken"));
	/* Codes are case-sensitive. */
	assert_int_equal(
	    create(f, "alice", "http://f.com/", "my-link", 0, NULL), CM_OK);
}

struct race {
	struct fx *f;
	pthread_barrier_t *barrier;
	int rv;
};

static void *
race_main(void *arg)
{
	struct race *r = arg;
	Shortener__CreateUrlRequest in = SHORTENER__CREATE_URL_REQUEST__INIT;
	Shortener__Url *u;
	cm_arena a;
	char err[256];

	in.long_url = cm_pbstr("http://race.example/");
	in.custom_alias = cm_pbstr("contested");
	cm_arena_init(&a);
	pthread_barrier_wait(r->barrier);
	r->rv = shortener_create(r->f->svc, &r->f->io, "", &in, &a, &u, err,
	                         sizeof(err));
	cm_arena_fini(&a);
	return (NULL);
}

/* Of concurrent creates of one alias, exactly one wins. */
static void
test_alias_race(void **state)
{
	struct fx *f = *state;
	enum { N = 8 };
	pthread_t t[N];
	struct race r[N];
	pthread_barrier_t b;
	int won = 0, lost = 0;

	pthread_barrier_init(&b, NULL, N);
	for (int i = 0; i < N; i++) {
		r[i] = (struct race){.f = f, .barrier = &b};
		assert_int_equal(pthread_create(&t[i], NULL, race_main, &r[i]),
		                 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		won += r[i].rv == CM_OK;
		lost += r[i].rv == CM_ALREADY_EXISTS;
	}
	pthread_barrier_destroy(&b);
	assert_int_equal(won, 1);
	assert_int_equal(lost, N - 1);
}

/* ---- expiry ---- */

static void
test_expiry(void **state)
{
	struct fx *f = *state;
	Shortener__Url *u;
	Shortener__ResolveResponse *r;

	assert_int_equal(create(f, "", "http://e.com/soon", NULL, 60, &u),
	                 CM_OK);
	assert_int_equal(u->expires_at, T0 + 60);
	assert_int_equal(resolve(f, u->code, &r), CM_OK);
	assert_false(r->expired);
	assert_string_equal(r->long_url, "http://e.com/soon");
	assert_int_equal(r->expires_at, T0 + 60);

	/* Even from the caches, an expired link is reported expired. */
	fake_now = T0 + 60;
	assert_int_equal(resolve(f, u->code, &r), CM_OK);
	assert_true(r->expired);
	assert_string_equal(r->long_url, "http://e.com/soon");

	/* Get still shows it (until the purge). */
	assert_int_equal(get(f, "", u->code, &u), CM_OK);
}

static void
test_purge(void **state)
{
	struct fx *f = *state;
	Shortener__Url *keep, *old, *recent;
	size_t n;

	assert_int_equal(create(f, "", "http://e.com/k", NULL, 0, &keep),
	                 CM_OK);
	assert_int_equal(create(f, "", "http://e.com/o", NULL, 10, &old),
	                 CM_OK);
	fake_now += 1000;
	assert_int_equal(create(f, "", "http://e.com/r", NULL, 10, &recent),
	                 CM_OK);
	fake_now += 500; /* old expired 1490 s ago, recent 490 s ago */
	assert_int_equal(shortener_purge(f->svc, &f->io, 1000, 100, &n), CM_OK);
	assert_int_equal(n, 1);
	assert_int_equal(get(f, "", old->code, NULL), CM_NOT_FOUND);
	assert_int_equal(get(f, "", recent->code, NULL), CM_OK);
	assert_int_equal(get(f, "", keep->code, NULL), CM_OK);
	assert_int_equal(shortener_purge(f->svc, &f->io, 0, 100, &n), CM_OK);
	assert_int_equal(n, 1);
	assert_int_equal(get(f, "", keep->code, NULL), CM_OK);
}

/* ---- ownership ---- */

static void
test_get_ownership(void **state)
{
	struct fx *f = *state;
	Shortener__Url *pub, *mine, *u;

	assert_int_equal(create(f, "", "http://e.com/p", NULL, 0, &pub), CM_OK);
	assert_int_equal(create(f, "alice", "http://e.com/a", NULL, 0, &mine),
	                 CM_OK);
	assert_int_equal(get(f, "", pub->code, &u), CM_OK);
	assert_int_equal(get(f, "bob", pub->code, &u), CM_OK);
	assert_int_equal(get(f, "alice", mine->code, &u), CM_OK);
	assert_string_equal(u->long_url, "http://e.com/a");
	assert_int_equal(u->clicks, 0);
	assert_int_equal(get(f, "", mine->code, &u), CM_UNAUTHENTICATED);
	assert_int_equal(get(f, NULL, mine->code, &u), CM_UNAUTHENTICATED);
	assert_int_equal(get(f, "bob", mine->code, &u), CM_PERMISSION_DENIED);
	assert_int_equal(get(f, "alice", "nope123", &u), CM_NOT_FOUND);
	assert_int_equal(get(f, "alice", "bad/code", &u), CM_NOT_FOUND);
	assert_int_equal(get(f, "alice", "", &u), CM_NOT_FOUND);
}

static void
test_list(void **state)
{
	struct fx *f = *state;
	Shortener__ListUrlsResponse *r;
	Shortener__Url *u[25];
	char cursor[64];

	for (int i = 0; i < 25; i++) {
		/* Two links per second: ties are broken by id. */
		fake_now = T0 + i / 2;
		assert_int_equal(
		    create(f, "alice", "http://e.com/", NULL, 0, &u[i]), CM_OK);
		assert_int_equal(
		    create(f, "bob", "http://e.com/", NULL, 0, NULL), CM_OK);
	}
	assert_int_equal(list(f, "", 0, NULL, &r), CM_UNAUTHENTICATED);
	assert_int_equal(list(f, "alice", -1, NULL, &r), CM_INVALID_ARGUMENT);

	assert_int_equal(list(f, "alice", 0, NULL, &r), CM_OK);
	assert_int_equal(r->n_urls, SHORTENER_LIST_DEFAULT);
	for (int i = 0; i < 20; i++)
		assert_string_equal(r->urls[i]->code, u[24 - i]->code);
	assert_string_not_equal(r->next_cursor, "");
	snprintf(cursor, sizeof(cursor), "%s", r->next_cursor);

	assert_int_equal(list(f, "alice", 0, cursor, &r), CM_OK);
	assert_int_equal(r->n_urls, 5);
	for (int i = 0; i < 5; i++)
		assert_string_equal(r->urls[i]->code, u[4 - i]->code);
	assert_string_equal(r->next_cursor, "");

	/* Exactly a page: no next page. */
	assert_int_equal(list(f, "alice", 25, NULL, &r), CM_OK);
	assert_int_equal(r->n_urls, 25);
	assert_string_equal(r->next_cursor, "");

	/* Above the maximum: clamped. */
	assert_int_equal(list(f, "alice", 100000, NULL, &r), CM_OK);
	assert_int_equal(r->n_urls, 25);

	assert_int_equal(list(f, "carol", 10, NULL, &r), CM_OK);
	assert_int_equal(r->n_urls, 0);
	assert_string_equal(r->next_cursor, "");

	assert_int_equal(list(f, "alice", 10, "garbage", &r),
	                 CM_INVALID_ARGUMENT);
	assert_int_equal(list(f, "alice", 10, "a.!", &r), CM_INVALID_ARGUMENT);
	assert_int_equal(list(f, "alice", 10, ".1", &r), CM_INVALID_ARGUMENT);
	assert_int_equal(list(f, "alice", 10, "zzzzzzzzzzzzzz.1", &r),
	                 CM_INVALID_ARGUMENT);
}

/* ---- delete and the caches ---- */

static void
test_delete(void **state)
{
	struct fx *f = *state;
	Shortener__Url *mine, *pub;
	Shortener__ResolveResponse *r;
	struct shortener_mem_stats st;

	assert_int_equal(create(f, "alice", "http://e.com/a", NULL, 0, &mine),
	                 CM_OK);
	assert_int_equal(create(f, "", "http://e.com/p", NULL, 0, &pub), CM_OK);
	/* Warm every tier. */
	assert_int_equal(resolve(f, mine->code, &r), CM_OK);
	assert_int_equal(resolve(f, mine->code, &r), CM_OK);

	assert_int_equal(del(f, "", mine->code), CM_UNAUTHENTICATED);
	assert_int_equal(del(f, "bob", mine->code), CM_PERMISSION_DENIED);
	assert_int_equal(del(f, "bob", pub->code), CM_PERMISSION_DENIED);
	assert_int_equal(del(f, "alice", "nosuch1"), CM_NOT_FOUND);
	assert_int_equal(del(f, "alice", mine->code), CM_OK);
	shortener_mem_get_stats(f->mem, &st);
	assert_int_equal(st.invalidations, 1);

	assert_int_equal(get(f, "alice", mine->code, NULL), CM_NOT_FOUND);
	assert_int_equal(resolve(f, mine->code, &r), CM_NOT_FOUND);
	assert_int_equal(del(f, "alice", mine->code), CM_NOT_FOUND);
}

/* A delete while the cache is down is invalidated later. */
static void
test_delete_cache_down(void **state)
{
	struct fx *f = *state;
	Shortener__Url *mine;
	Shortener__ResolveResponse *r;
	struct shortener_mem_stats st;

	assert_int_equal(create(f, "alice", "http://e.com/a", NULL, 0, &mine),
	                 CM_OK);
	assert_int_equal(resolve(f, mine->code, &r), CM_OK); /* cached */
	shortener_mem_set_down(f->mem, false, true);
	assert_int_equal(del(f, "alice", mine->code), CM_OK);
	assert_int_equal(shortener_pending_invalidations(f->svc), 1);
	shortener_retry_invalidations(f->svc, &f->io); /* still down */
	assert_int_equal(shortener_pending_invalidations(f->svc), 1);
	shortener_mem_set_down(f->mem, false, false);
	shortener_retry_invalidations(f->svc, &f->io);
	assert_int_equal(shortener_pending_invalidations(f->svc), 0);
	shortener_mem_get_stats(f->mem, &st);
	assert_int_equal(st.invalidations, 1);
	/* The tombstone answers without the store. */
	shortener_mem_set_down(f->mem, true, false);
	assert_int_equal(resolve(f, mine->code, &r), CM_NOT_FOUND);
}

static void
test_resolve_read_through(void **state)
{
	struct fx *f = *state;
	struct fx *g;
	Shortener__Url *u;
	Shortener__ResolveResponse *r;
	struct shortener_mem_stats st;

	assert_int_equal(create(f, "", "http://e.com/t", NULL, 0, &u), CM_OK);
	/* A miss: the store answers and the cache is filled. */
	assert_int_equal(resolve(f, u->code, &r), CM_OK);
	assert_string_equal(r->long_url, "http://e.com/t");
	assert_false(r->expired);
	assert_int_equal(r->expires_at, 0);
	shortener_mem_get_stats(f->mem, &st);
	assert_int_equal(st.store_gets, 1);
	assert_int_equal(st.cache_gets, 1);
	assert_int_equal(st.cache_fills, 1);
	/* A hit: the store is not asked. */
	assert_int_equal(resolve(f, u->code, &r), CM_OK);
	assert_string_equal(r->long_url, "http://e.com/t");
	shortener_mem_get_stats(f->mem, &st);
	assert_int_equal(st.store_gets, 1);
	assert_int_equal(st.cache_gets, 2);

	/* An instance without a cache reads the store every time. */
	g = fx_new(SHORTENER_CODE_SEQUENTIAL, BASE, false);
	shortener_mem_free(g->mem);
	g->mem = f->mem;
	shortener_mem_store(g->mem, &g->io.store);
	assert_int_equal(resolve(g, u->code, &r), CM_OK);
	assert_int_equal(resolve(g, u->code, &r), CM_OK);
	assert_string_equal(r->long_url, "http://e.com/t");
	shortener_mem_get_stats(f->mem, &st);
	assert_int_equal(st.store_gets, 3);
	assert_int_equal(st.cache_gets, 2);
	g->mem = shortener_mem_new();
	teardown((void **) &g);

	/* The cache down: served from the store, nothing filled. */
	shortener_mem_set_down(f->mem, false, true);
	assert_int_equal(resolve(f, u->code, &r), CM_OK);
	assert_string_equal(r->long_url, "http://e.com/t");
	shortener_mem_get_stats(f->mem, &st);
	assert_int_equal(st.store_gets, 4);
	assert_int_equal(st.cache_fills, 1);
	/* Both down: unavailable, not a wrong answer. */
	shortener_mem_set_down(f->mem, true, true);
	assert_int_equal(resolve(f, u->code, &r), CM_UNAVAILABLE);
	shortener_mem_set_down(f->mem, false, false);
}

/* Unknown codes are not found, and never cached as links; creating the
 * alias afterwards makes it resolve.  Codes that cannot exist never reach
 * the cache or the store. */
static void
test_resolve_unknown(void **state)
{
	struct fx *f = *state;
	Shortener__ResolveResponse *r;
	struct shortener_mem_stats st;

	assert_int_equal(resolve(f, "later", &r), CM_NOT_FOUND);
	shortener_mem_get_stats(f->mem, &st);
	assert_int_equal(st.store_gets, 1);
	assert_int_equal(st.cache_fills, 0);
	assert_int_equal(create(f, "", "http://e.com/l", "later", 0, NULL),
	                 CM_OK);
	assert_int_equal(resolve(f, "later", &r), CM_OK);
	assert_string_equal(r->long_url, "http://e.com/l");
	shortener_mem_get_stats(f->mem, &st);
	assert_int_equal(resolve(f, "not a code", &r), CM_NOT_FOUND);
	assert_int_equal(resolve(f, "", &r), CM_NOT_FOUND);
	assert_int_equal(resolve(f, "../etc", &r), CM_NOT_FOUND);
	{
		struct shortener_mem_stats after;
		shortener_mem_get_stats(f->mem, &after);
		assert_int_equal(after.store_gets, st.store_gets);
		assert_int_equal(after.cache_gets, st.cache_gets);
	}
}

/* ---- clicks ---- */

static void
test_clicks(void **state)
{
	struct fx *f = *state;
	Shortener__Url *u;
	Shortener__RecordClicksRequest in =
	    SHORTENER__RECORD_CLICKS_REQUEST__INIT;
	Shortener__ClickCount c[7];
	Shortener__ClickCount *cp[7];
	static const struct {
		const char *code;
		int64_t count;
	} entries[] = {
	    {NULL, 3},      /* the link, filled in below */
	    {NULL, 4},      /* the same link again: both count */
	    {"nosuch1", 5}, /* unknown: ignored */
	    {NULL, 0},      /* not positive: skipped */
	    {NULL, -7},     /* negative: skipped */
	    {NULL, SHORTENER_CLICKS_MAX + 1}, /* absurd: skipped */
	    {"bad code", 1},                  /* malformed: skipped */
	};

	assert_int_equal(create(f, "", "http://e.com/c", NULL, 0, &u), CM_OK);
	for (size_t i = 0; i < 7; i++) {
		shortener__click_count__init(&c[i]);
		c[i].code = entries[i].code != NULL ? cm_pbstr(entries[i].code)
		                                    : u->code;
		c[i].count = entries[i].count;
		cp[i] = &c[i];
	}
	in.n_clicks = 7;
	in.clicks = cp;
	assert_int_equal(shortener_record_clicks(f->svc, &f->io, &in, f->err,
	                                         sizeof(f->err)),
	                 CM_OK);
	assert_int_equal(get(f, "", u->code, &u), CM_OK);
	assert_int_equal(u->clicks, 7);

	shortener_mem_set_down(f->mem, true, false);
	assert_int_equal(shortener_record_clicks(f->svc, &f->io, &in, f->err,
	                                         sizeof(f->err)),
	                 CM_UNAVAILABLE);
	shortener_mem_set_down(f->mem, false, false);

	in.n_clicks = SHORTENER_CLICKS_BATCH + 1;
	assert_int_equal(shortener_record_clicks(f->svc, &f->io, &in, f->err,
	                                         sizeof(f->err)),
	                 CM_INVALID_ARGUMENT);
	in.n_clicks = 0;
	assert_int_equal(shortener_record_clicks(f->svc, &f->io, &in, f->err,
	                                         sizeof(f->err)),
	                 CM_OK);
}

static void
test_store_down(void **state)
{
	struct fx *f = *state;

	assert_int_equal(create(f, "", "http://e.com/", NULL, 0, NULL), CM_OK);
	shortener_mem_set_down(f->mem, true, false);
	assert_int_equal(create(f, "", "http://e.com/", NULL, 0, NULL),
	                 CM_UNAVAILABLE);
	assert_int_equal(get(f, "", "abcdefg", NULL), CM_UNAVAILABLE);
	assert_int_equal(del(f, "alice", "abcdefg"), CM_UNAVAILABLE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_url_valid, setup_seq,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_url_invalid, setup_seq,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_url_length, setup_seq,
	                                    teardown),
	    cmocka_unit_test_teardown(test_url_self_https_base, teardown),
	    cmocka_unit_test(test_bad_config),
	    cmocka_unit_test(test_alias),
	    cmocka_unit_test_setup_teardown(test_create_rejects, setup_seq,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_sequential, setup_seq,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_sequential_permutation,
	                                    setup_seq, teardown),
	    cmocka_unit_test_setup_teardown(test_id_leasing, setup_seq,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_sequential_collision,
	                                    setup_seq, teardown),
	    cmocka_unit_test_setup_teardown(test_key_change, setup_seq,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_hash, setup_hash, teardown),
	    cmocka_unit_test_setup_teardown(test_hash_collision, setup_hash,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_alias_taken, setup_seq,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_alias_race, setup_seq,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_expiry, setup_seq, teardown),
	    cmocka_unit_test_setup_teardown(test_purge, setup_seq, teardown),
	    cmocka_unit_test_setup_teardown(test_get_ownership, setup_seq,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_list, setup_seq, teardown),
	    cmocka_unit_test_setup_teardown(test_delete, setup_seq, teardown),
	    cmocka_unit_test_setup_teardown(test_delete_cache_down, setup_seq,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_read_through,
	                                    setup_seq, teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_unknown, setup_seq,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_clicks, setup_seq, teardown),
	    cmocka_unit_test_setup_teardown(test_store_down, setup_seq,
	                                    teardown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
