/*
 * Unit tests of the cache service's pure part: which content types a Set
 * may store (they go back out as a Content-Type header).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "cachesvc.h"

static bool
ok(const char *s)
{
	return (cachesvc_content_type_ok(s, strlen(s)));
}

static void
test_content_type_good(void **state)
{
	static const char *const good[] = {
	    "application/octet-stream",
	    "text/plain",
	    "TEXT/HTML",
	    "text/plain; charset=utf-8",
	    "text/plain;charset=utf-8",
	    "text/plain ; charset=utf-8",
	    "text/plain;\tcharset=utf-8;format=flowed",
	    "multipart/form-data; boundary=\"a b;c=d\"",
	    "text/plain; x=\"quoted \\\"pair\\\"\"",
	    "application/vnd.api+json",
	    "application/x-www-form-urlencoded",
	    "image/svg+xml",
	    "text/plain;",
	    "text/plain;;a=b",
	    "a/b",
	};

	(void) state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!ok(good[i]))
			fail_msg("refused: %s", good[i]);
}

static void
test_content_type_bad(void **state)
{
	static const char *const bad[] = {
	    "",
	    "text",
	    "text/",
	    "/plain",
	    "text/plain/x",
	    "text /plain",
	    "text/ plain",
	    " text/plain",
	    "text/plain ",
	    "text/plain; ",
	    "text/plain; charset",
	    "text/plain; charset=",
	    "text/plain; =utf-8",
	    "text/plain; charset=utf 8",
	    "text/plain; charset=\"unterminated",
	    "text/plain; x=\"bad\\",
	    "text/plain x",
	    "text/plain\r\nX-Injected: 1",
	    "text/plain\n",
	    "text/pl\x01in",
	    "text/pl\xc3\xa9in",
	    "text/plain; x=\"\x7f\"",
	    "text(plain)/x",
	    "text/plain, text/html",
	    "text/plain; a=b c=d",
	};

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ok(bad[i]))
			fail_msg("accepted: \"%s\"", bad[i]);
}

/* The length bound counts bytes; the length is the caller's. */
static void
test_content_type_length(void **state)
{
	char buf[CACHESVC_CTYPE_MAX + 2];

	(void) state;
	memset(buf, 'x', sizeof(buf));
	memcpy(buf, "text/", 5);
	assert_true(cachesvc_content_type_ok(buf, CACHESVC_CTYPE_MAX));
	assert_false(cachesvc_content_type_ok(buf, CACHESVC_CTYPE_MAX + 1));
	/* Only len bytes are read: a prefix of a longer string. */
	assert_true(cachesvc_content_type_ok("text/plainXXX", 10));
	assert_false(cachesvc_content_type_ok("text/plain", 4));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_content_type_good),
	    cmocka_unit_test(test_content_type_bad),
	    cmocka_unit_test(test_content_type_length),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
