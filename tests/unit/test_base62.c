/* Unit tests of common/base62.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base62.h"

static void
test_encode_known(void **state)
{
	char buf[32];

	(void) state;
	assert_int_equal(cm_base62_encode(0, 0, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "0");
	assert_int_equal(cm_base62_encode(61, 0, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "z");
	assert_int_equal(cm_base62_encode(62, 0, buf, sizeof(buf)), 2);
	assert_string_equal(buf, "10");
	assert_int_equal(cm_base62_encode(10, 0, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "A");
	assert_int_equal(cm_base62_encode(36, 0, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "a");
	assert_int_equal(cm_base62_encode(UINT64_MAX, 0, buf, sizeof(buf)), 11);
	assert_string_equal(buf, "LygHa16AHYF");
}

static void
test_encode_padding(void **state)
{
	char buf[32];

	(void) state;
	assert_int_equal(cm_base62_encode(62, 7, buf, sizeof(buf)), 7);
	assert_string_equal(buf, "0000010");
	/* minlen shorter than the number changes nothing */
	assert_int_equal(cm_base62_encode(3843, 1, buf, sizeof(buf)), 2);
	assert_string_equal(buf, "zz");
	assert_int_equal(cm_base62_encode(0, 20, buf, sizeof(buf)), 20);
	assert_int_equal(strspn(buf, "0"), 20);
}

static void
test_encode_small_buffer(void **state)
{
	char buf[8];

	(void) state;
	memset(buf, 'x', sizeof(buf));
	/* "zz" needs three bytes with the NUL */
	assert_int_equal(cm_base62_encode(3843, 0, buf, 2), -1);
	assert_int_equal(buf[0], 'x');
	assert_int_equal(cm_base62_encode(3843, 0, buf, 3), 2);
	assert_string_equal(buf, "zz");
	assert_int_equal(cm_base62_encode(1, 8, buf, sizeof(buf)), -1);
	assert_int_equal(cm_base62_encode(1, 0, buf, 0), -1);
}

static void
test_decode(void **state)
{
	uint64_t v = 0;

	(void) state;
	assert_int_equal(cm_base62_decode("10", 2, &v), 0);
	assert_true(v == 62);
	assert_int_equal(cm_base62_decode("0000010", 7, &v), 0);
	assert_true(v == 62);
	assert_int_equal(cm_base62_decode("LygHa16AHYF", 11, &v), 0);
	assert_true(v == UINT64_MAX);
	/* only len bytes are read */
	assert_int_equal(cm_base62_decode("zz!", 2, &v), 0);
	assert_true(v == 3843);
}

static void
test_decode_errors(void **state)
{
	uint64_t v = 42;

	(void) state;
	assert_int_equal(cm_base62_decode("", 0, &v), -1);
	assert_int_equal(cm_base62_decode("ab-c", 4, &v), -1);
	assert_int_equal(cm_base62_decode("ab c", 4, &v), -1);
	assert_int_equal(cm_base62_decode("a\0b", 3, &v), -1);
	/* UINT64_MAX + 1 and far beyond */
	assert_int_equal(cm_base62_decode("LygHa16AHYG", 11, &v), -1);
	assert_int_equal(cm_base62_decode("zzzzzzzzzzzz", 12, &v), -1);
	assert_true(v == 42);
}

static void
test_round_trip(void **state)
{
	uint64_t v, back, x = 0x9e3779b97f4a7c15ULL;
	char buf[32];
	int i, n;

	(void) state;
	for (i = 0; i < 10000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v = x >> (i % 64);
		n = cm_base62_encode(v, (size_t) (i % 12), buf, sizeof(buf));
		assert_true(n > 0);
		assert_int_equal(strlen(buf), (size_t) n);
		assert_int_equal(cm_base62_decode(buf, (size_t) n, &back), 0);
		assert_true(back == v);
	}
}

/* Codes of equal length sort like their numbers (digits in ASCII order). */
static void
test_order(void **state)
{
	char a[16], b[16];
	uint64_t v;

	(void) state;
	for (v = 0; v < 5000; v += 7) {
		assert_true(cm_base62_encode(v, 6, a, sizeof(a)) == 6);
		assert_true(cm_base62_encode(v + 1, 6, b, sizeof(b)) == 6);
		assert_true(strcmp(a, b) < 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_encode_known),
	    cmocka_unit_test(test_encode_padding),
	    cmocka_unit_test(test_encode_small_buffer),
	    cmocka_unit_test(test_decode),
	    cmocka_unit_test(test_decode_errors),
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_order),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
