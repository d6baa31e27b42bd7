/*
 * Hit ratio of the L1 policy (W-TinyLFU) against plain LRU at the same
 * byte budget, on a Zipf(0.9) trace over 100k keys with a scan of unique
 * keys mixed in (every 10th request).  Prints figures; not a test.
 *
 *   l1_hitratio [requests] [budget_entries]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l1cache.h"

#define NKEYS 100000

static uint64_t rng = 88172645463325252ULL;

static double
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return ((double) (rng >> 11) / 9007199254740992.0);
}

static double
run(enum cm_l1_policy p, const long *trace, long n, size_t budget)
{
	cm_l1 *c = cm_l1_new_policy(budget, 1, p);
	char key[32], val[64], buf[128];
	long hits = 0;

	memset(val, 'v', sizeof(val));
	for (long i = 0; i < n; i++) {
		int len = snprintf(key, sizeof(key), "k%ld", trace[i]);

		if (cm_l1_get(c, key, (size_t) len, buf, sizeof(buf)) >= 0)
			hits++;
		else
			cm_l1_set(c, key, (size_t) len, val, sizeof(val), 0);
	}
	cm_l1_free(c);
	return ((double) hits / (double) n);
}

int
main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 2000000;
	long entries = argc > 2 ? atol(argv[2]) : 2000;
	double *cdf = malloc(NKEYS * sizeof(double)), sum = 0;
	long *trace = malloc((size_t) n * sizeof(long)), scan = NKEYS;
	size_t budget;

	if (cdf == NULL || trace == NULL)
		return (1);
	for (long i = 0; i < NKEYS; i++)
		sum += 1.0 / pow((double) (i + 1), 0.9);
	for (long i = 0; i < NKEYS; i++) {
		double prev = i > 0 ? cdf[i - 1] : 0;

		cdf[i] = prev + 1.0 / pow((double) (i + 1), 0.9) / sum;
	}
	for (long i = 0; i < n; i++) {
		if (i % 10 == 9) {
			trace[i] = scan++; /* the scan: never seen again */
			continue;
		}
		double u = rnd();
		long lo = 0, hi = NKEYS - 1;

		while (lo < hi) {
			long mid = (lo + hi) / 2;

			if (cdf[mid] < u)
				lo = mid + 1;
			else
				hi = mid;
		}
		trace[i] = lo;
	}
	/* Entry overhead differs little between the policies: same budget. */
	budget = (size_t) entries * (64 + 8 + 64);
	double t = run(CM_L1_TINYLFU, trace, n, budget);
	double l = run(CM_L1_LRU, trace, n, budget);

	printf("zipf(0.9) keys=%d requests=%ld scan=10%% budget=%zu bytes "
	       "(~%ld entries)\n",
	       NKEYS, n, budget, entries);
	printf("hit ratio: W-TinyLFU %.4f  LRU %.4f  (%.2fx)\n", t, l, t / l);
	free(cdf);
	free(trace);
	return (0);
}
