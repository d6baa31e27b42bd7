/*
 * The in-process cache (common/l1cache.c): TTL, the byte bound, epochs,
 * and the W-TinyLFU policy's scan resistance against plain LRU.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "l1cache.h"

static void
msleep(int ms)
{
	struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void
test_ttl(void **state)
{
	cm_l1 *c = cm_l1_new(1 << 20, 1);
	char buf[16];

	(void) state;
	cm_l1_set(c, "k", 1, "v", 1, 50);
	cm_l1_set(c, "forever", 7, "v", 1, 0);
	assert_int_equal(cm_l1_get(c, "k", 1, buf, sizeof(buf)), 1);
	msleep(80);
	assert_int_equal(cm_l1_get(c, "k", 1, buf, sizeof(buf)), -1);
	assert_int_equal(cm_l1_get(c, "forever", 7, buf, sizeof(buf)), 1);
	cm_l1_free(c);
}

static void
test_epoch(void **state)
{
	cm_l1 *c = cm_l1_new(1 << 20, 4);
	uint64_t e;
	char buf[16];

	(void) state;
	e = cm_l1_epoch(c, "k", 1);
	cm_l1_del(c, "k", 1); /* an invalidation races the load */
	cm_l1_set_if(c, "k", 1, "stale", 5, 0, e);
	assert_int_equal(cm_l1_get(c, "k", 1, buf, sizeof(buf)), -1);
	e = cm_l1_epoch(c, "k", 1);
	cm_l1_set_if(c, "k", 1, "fresh", 5, 0, e);
	assert_int_equal(cm_l1_get(c, "k", 1, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "fresh", 5);
	cm_l1_free(c);
}

static void
test_byte_bound(void **state)
{
	cm_l1 *c = cm_l1_new(64 << 10, 2);
	cm_l1_stats st;
	char key[32], val[200];

	(void) state;
	memset(val, 'x', sizeof(val));
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "key-%d", i);
		cm_l1_set(c, key, strlen(key), val, sizeof(val), 0);
	}
	cm_l1_get_stats(c, &st);
	assert_true(st.bytes <= 64 << 10);
	assert_true(st.entries > 100);
	assert_true(st.evictions > 0);
	cm_l1_clear(c);
	cm_l1_get_stats(c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.bytes, 0);
	cm_l1_free(c);
}

/* Hot keys used often, then a long scan of keys used once: how many hot
 * keys survive? */
static int
hot_survivors(enum cm_l1_policy p)
{
	cm_l1 *c = cm_l1_new_policy(40 << 10, 1, p);
	char key[32], val[100], buf[128];
	int alive = 0;

	memset(val, 'v', sizeof(val));
	for (int round = 0; round < 20; round++)
		for (int i = 0; i < 50; i++) {
			snprintf(key, sizeof(key), "hot-%d", i);
			if (cm_l1_get(c, key, strlen(key), buf, sizeof(buf)) <
			    0)
				cm_l1_set(c, key, strlen(key), val, sizeof(val),
				          0);
		}
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof(key), "scan-%d", i);
		if (cm_l1_get(c, key, strlen(key), buf, sizeof(buf)) < 0)
			cm_l1_set(c, key, strlen(key), val, sizeof(val), 0);
	}
	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof(key), "hot-%d", i);
		if (cm_l1_get(c, key, strlen(key), buf, sizeof(buf)) >= 0)
			alive++;
	}
	cm_l1_free(c);
	return (alive);
}

static void
test_scan_resistance(void **state)
{
	int tlfu = hot_survivors(CM_L1_TINYLFU);
	int lru = hot_survivors(CM_L1_LRU);

	(void) state;
	print_message("hot keys surviving a scan: W-TinyLFU %d/50, LRU %d/50\n",
	              tlfu, lru);
	assert_true(tlfu >= 40);
	assert_true(lru <= 5);
}

static void
test_replace_and_delete(void **state)
{
	cm_l1 *c = cm_l1_new(1 << 20, 0);
	char buf[16];

	(void) state;
	cm_l1_set(c, "k", 1, "one", 3, 0);
	assert_int_equal(cm_l1_get(c, "k", 1, buf, sizeof(buf)), 3);
	cm_l1_set(c, "k", 1, "three", 5, 0);
	assert_int_equal(cm_l1_get(c, "k", 1, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "three", 5);
	cm_l1_del(c, "k", 1);
	assert_int_equal(cm_l1_get(c, "k", 1, buf, sizeof(buf)), -1);
	cm_l1_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ttl),
	    cmocka_unit_test(test_epoch),
	    cmocka_unit_test(test_byte_bound),
	    cmocka_unit_test(test_scan_resistance),
	    cmocka_unit_test(test_replace_and_delete),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
