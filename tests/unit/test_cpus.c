/* The CPU list of <NAME>_CPUS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cli.h"

static int
has(const cpu_set_t *s, int c)
{
	return (CPU_ISSET(c, s));
}

static void
test_lists(void **state)
{
	cpu_set_t s;

	(void) state;
	assert_int_equal(cm_cli_parse_cpus("0", &s, 7), 0);
	assert_int_equal(CPU_COUNT(&s), 1);
	assert_true(has(&s, 0));
	assert_false(has(&s, 1));

	assert_int_equal(cm_cli_parse_cpus("1-3,6", &s, 7), 0);
	assert_int_equal(CPU_COUNT(&s), 4);
	assert_true(has(&s, 1) && has(&s, 2) && has(&s, 3) && has(&s, 6));
	assert_false(has(&s, 0) || has(&s, 4) || has(&s, 5) || has(&s, 7));

	/* Overlaps count once. */
	assert_int_equal(cm_cli_parse_cpus("0-2,1,2-3", &s, 7), 0);
	assert_int_equal(CPU_COUNT(&s), 4);
}

static void
test_bad_lists(void **state)
{
	static const char *bad[] = {
	    "",     "a",   "1-",   "-1",
	    "3-1",  "1,",  ",1",   "1 ",
	    " 1",   "1;2", "8",    "0-8",
	    "1--2", "0x1", "1,,2", "99999999999999999999"};
	cpu_set_t s;

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (cm_cli_parse_cpus(bad[i], &s, 7) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lists),
	    cmocka_unit_test(test_bad_lists),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
