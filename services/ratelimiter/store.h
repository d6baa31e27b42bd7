/*
 * The seam between the rate limiter's decisions and the store that keeps
 * the counters.  store_redis.c is the real one; a test can put a fake
 * behind the same ops.
 */
#ifndef RATELIMITER_STORE_H
#define RATELIMITER_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "ratelimiter.h"

struct rl_store_ops {
	const char *name;
	/*
	 * Decides n matched rules for one request of the given cost, in one
	 * atomic step: every rule is checked, and only if every non-shadow
	 * rule allows is the cost spent (from each rule that allows).  With
	 * peek, nothing is spent.  Fills v[0..n) and *all.  Returns 0, or
	 * -1 if the store could not decide (down, slow, error): never a
	 * verdict then.
	 */
	int (*check)(void *impl, const struct cm_rl_match *m, size_t n,
	             int64_t cost, bool peek, struct rl_verdict *v, bool *all);
	/*
	 * Whether the store works, for Health.Check: from what the process
	 * has seen of it, without a round trip (any thread may ask); with
	 * probe, and when that is over a second old, after one bounded
	 * round trip on impl (which must then be the caller's own).
	 */
	bool (*health)(void *impl, bool probe);
	void (*close)(void *impl);
};

struct rl_store {
	const struct rl_store_ops *ops;
	void *impl;
};

/* Opens the Redis store (connects lazily); timeout_ms bounds each call. */
void rl_redis_open(struct rl_store *s, const char *url, int timeout_ms);

#endif
