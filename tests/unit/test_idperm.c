/* Unit tests of common/idperm.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "idperm.h"

static uint64_t
xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (*s);
}

static void
test_init_arguments(void **state)
{
	cm_idperm p;
	unsigned bits;

	(void) state;
	memset(&p, 0xa5, sizeof(p));
	assert_int_equal(cm_idperm_init(&p, "k", 7), -1);
	assert_int_equal(cm_idperm_init(&p, "k", 6), -1);
	assert_int_equal(cm_idperm_init(&p, "k", 9), -1);
	assert_int_equal(cm_idperm_init(&p, "k", 63), -1);
	assert_int_equal(cm_idperm_init(&p, "k", 64), -1);
	assert_int_equal(cm_idperm_init(&p, NULL, 32), -1);
	assert_int_equal(p.bits, 0xa5a5a5a5u); /* untouched on error */
	for (bits = 8; bits <= 62; bits += 2) {
		assert_int_equal(cm_idperm_init(&p, "k", bits), 0);
		assert_int_equal(p.bits, bits);
	}
	assert_int_equal(cm_idperm_init(&p, "", 8), 0);
}

/*
 * The round keys and the network are pinned: short codes already handed
 * out must keep resolving, so any change here breaks existing links.  The
 * vectors come from an independent Python model of the documented scheme.
 */
static void
test_known_vectors(void **state)
{
	cm_idperm p;

	(void) state;
	assert_int_equal(cm_idperm_init(&p, "secret", 32), 0);
	assert_true(p.keys[0] == 0x95d4070b33166359ULL);
	assert_true(p.keys[3] == 0xdf0a97d8de4f1347ULL);
	assert_true(cm_idperm_encrypt(&p, 0) == 282230903ULL);
	assert_true(cm_idperm_encrypt(&p, 1) == 4002000499ULL);
	assert_true(cm_idperm_encrypt(&p, 2) == 4082448316ULL);
	assert_int_equal(cm_idperm_init(&p, "secret", 40), 0);
	assert_true(cm_idperm_encrypt(&p, 123456789) == 127113041688ULL);
	assert_int_equal(cm_idperm_init(&p, "secret", 62), 0);
	assert_true(cm_idperm_encrypt(&p, (1ULL << 62) - 1) ==
	            3924982587400208557ULL);
}

/* Exhaustive: every value of a 16-bit domain is hit exactly once. */
static void
test_bijective_exhaustive(void **state)
{
	static const unsigned widths[] = {8, 10, 16};
	unsigned char *seen;
	cm_idperm p;
	uint64_t v, e, n;
	size_t w;

	(void) state;
	for (w = 0; w < sizeof(widths) / sizeof(widths[0]); w++) {
		n = 1ULL << widths[w];
		assert_int_equal(cm_idperm_init(&p, "bijection", widths[w]), 0);
		seen = calloc(n, 1);
		assert_non_null(seen);
		for (v = 0; v < n; v++) {
			e = cm_idperm_encrypt(&p, v);
			assert_true(e < n);
			assert_int_equal(seen[e], 0);
			seen[e] = 1;
			assert_true(cm_idperm_decrypt(&p, e) == v);
		}
		free(seen);
	}
}

/* Random samples at every width: in the domain and inverted exactly. */
static void
test_inverse_all_widths(void **state)
{
	cm_idperm p;
	uint64_t s = 88172645463325252ULL, v, e, mask;
	unsigned bits;
	int i;

	(void) state;
	for (bits = 8; bits <= 62; bits += 2) {
		assert_int_equal(cm_idperm_init(&p, "widths", bits), 0);
		mask = (1ULL << bits) - 1;
		for (i = 0; i < 2000; i++) {
			v = xorshift(&s) & mask;
			e = cm_idperm_encrypt(&p, v);
			assert_true(e <= mask);
			assert_true(cm_idperm_decrypt(&p, e) == v);
			assert_true(cm_idperm_encrypt(
			                &p, cm_idperm_decrypt(&p, v)) == v);
		}
		assert_true(cm_idperm_encrypt(&p, mask) <= mask);
		assert_true(cm_idperm_decrypt(&p, mask) <= mask);
	}
}

/* Bits above the domain are ignored, never carried into the output. */
static void
test_out_of_domain_input(void **state)
{
	cm_idperm p;

	(void) state;
	assert_int_equal(cm_idperm_init(&p, "k", 16), 0);
	assert_true(cm_idperm_encrypt(&p, UINT64_MAX) < (1u << 16));
	assert_true(cm_idperm_encrypt(&p, (1ULL << 16) + 5) ==
	            cm_idperm_encrypt(&p, 5));
	assert_true(cm_idperm_decrypt(&p, UINT64_MAX) < (1u << 16));
}

/*
 * Consecutive ids must give unrelated outputs: on average about half of
 * the bits differ, and few ids map to themselves.
 */
static void
test_mixing(void **state)
{
	cm_idperm p;
	uint64_t a, b, total = 0, fixed = 0, v, diff;
	int bitsdiff;

	(void) state;
	assert_int_equal(cm_idperm_init(&p, "mixing", 32), 0);
	for (v = 0; v < 4096; v++) {
		a = cm_idperm_encrypt(&p, v);
		b = cm_idperm_encrypt(&p, v + 1);
		for (bitsdiff = 0, diff = a ^ b; diff != 0; diff &= diff - 1)
			bitsdiff++;
		total += (uint64_t) bitsdiff;
		if (a == v)
			fixed++;
	}
	/* mean Hamming distance within 14..18 of 32 bits */
	assert_true(total > 14 * 4096 && total < 18 * 4096);
	assert_true(fixed < 4);
}

static void
test_keys_differ(void **state)
{
	cm_idperm p1, p2, p3;
	uint64_t v;
	int same = 0;

	(void) state;
	assert_int_equal(cm_idperm_init(&p1, "key-one", 40), 0);
	assert_int_equal(cm_idperm_init(&p2, "key-two", 40), 0);
	assert_int_equal(cm_idperm_init(&p3, "key-one", 40), 0);
	assert_memory_equal(p1.keys, p3.keys, sizeof(p1.keys));
	for (v = 0; v < 1000; v++) {
		assert_true(cm_idperm_encrypt(&p1, v) ==
		            cm_idperm_encrypt(&p3, v));
		if (cm_idperm_encrypt(&p1, v) == cm_idperm_encrypt(&p2, v))
			same++;
	}
	assert_true(same < 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init_arguments),
	    cmocka_unit_test(test_known_vectors),
	    cmocka_unit_test(test_bijective_exhaustive),
	    cmocka_unit_test(test_inverse_all_widths),
	    cmocka_unit_test(test_out_of_domain_input),
	    cmocka_unit_test(test_mixing),
	    cmocka_unit_test(test_keys_differ),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
