/*
 * The rate limiter's domain: rules rendered for the Rules RPC (reading
 * the rules file and matching them are common/rlrules.h, shared with the
 * gateway), and the in-process pieces that work without Redis (the
 * fallback limiter and the cache of keys known to be over limit).
 * No socket, Redis or NNG header is included here: main.c and
 * store_redis.c wire it to the world, ratelimiter_test.c drives it with
 * plain data.
 */
#ifndef RATELIMITER_H
#define RATELIMITER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "ratelimiter.pb-c.h"
#include "rlrules.h"

/*
 * The Rules RPC reply for a rule set: every field cm_rl_rules_from_pb
 * needs to rebuild an identical set.  Everything (the messages and their
 * strings) is allocated in a and lives until the arena is reset; rs is
 * not retained.
 */
Ratelimiter__RulesResponse *rl_rules_to_pb(const struct cm_rl_rules *rs,
                                           cm_arena *a);

/* One rule's verdict. */
struct rl_verdict {
	bool allowed;
	int64_t remaining;
	int64_t reset_ms;
	int64_t retry_ms; /* when denied: until a retry may pass */
};

/*
 * The in-process fallback limiter, used while Redis is away: a token bucket
 * per key (capacity = burst or limit, refilled at limit per window), in a
 * bounded table (full: the table is cleared, a rough limit stays rough).
 * Like the Redis script, a request is admitted only if every rule allows
 * it, and only then does it spend.  Thread-safe.
 */
struct rl_fallback;
struct rl_fallback *rl_fallback_new(size_t max_keys);
void rl_fallback_free(struct rl_fallback *f);
/* Decides n matches at now_ms (monotonic); v[i] gets each verdict. */
bool rl_fallback_check(struct rl_fallback *f, const struct cm_rl_match *m,
                       size_t n, int64_t cost, int64_t now_ms,
                       struct rl_verdict *v);

/*
 * Keys known to be over limit until a given time, so that a flood is
 * refused without asking Redis each time.  Thread-safe, bounded.
 */
struct rl_hot;
struct rl_hot *rl_hot_new(size_t max_keys);
void rl_hot_free(struct rl_hot *h);
void rl_hot_put(struct rl_hot *h, const char *key, int64_t until_ms);
/* Milliseconds the key stays over limit at now_ms, or 0. */
int64_t rl_hot_get(struct rl_hot *h, const char *key, int64_t now_ms);

#endif
