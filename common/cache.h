/*
 * The multi-level cache engine: L1 in process (cm_l1, W-TinyLFU, bounded
 * in bytes), L2 in Redis, and the source behind them reached through a
 * loader the caller supplies.  One engine per process, shared by every
 * thread (it keeps one Redis connection per thread itself).
 *
 * Keys live in namespaces.  A namespace has a version (a counter in
 * Redis) that is part of every key: bumping it makes the whole namespace
 * unreachable at once, and the old entries age out.  A key may carry
 * tags; invalidating a tag drops every key that carries it.
 *
 * Reads (cm_cache_get_or_load, for service threads that may block):
 *
 *   L1 -> L2 -> loader, filling the faster levels on the way back.
 *
 *   - single flight: at most one load per key per process at a time; the
 *     other callers wait for its result;
 *   - lease: across processes, a short Redis lease (SET NX PX) picks the
 *     one that loads; the others serve the stale value if there is one,
 *     or poll L2 briefly for the winner's fill;
 *   - XFetch: a fresh hit may trigger an early refresh, with a probability
 *     that grows as expiry nears and with the cost of the last load
 *     (Vattani et al., "Optimal Probabilistic Cache Stampede Prevention");
 *   - stale-if-error: L2 keeps a value stale_ms past its expiry; when the
 *     loader fails (or another instance holds the lease), the stale value
 *     is served.  Only a read with a loader ever gets a value past its
 *     expiry: without one, an expired value is "not found", whichever
 *     level holds it;
 *   - negative caching: a loader's CM_NOT_FOUND is cached for
 *     negative_ttl_ms.
 *
 * Invalidation reaches every process's L1 through a pub/sub channel; a
 * process whose subscription is down does not trust (or fill) its L1, and
 * clears it when the subscription is back.  Fills after a miss are made
 * against the L1 epoch read before the miss (cm_l1_set_if), so a read that
 * raced an invalidation never stores the stale value.
 *
 * Errors: functions return a cm_code (status.h).  CM_UNAVAILABLE when
 * Redis is needed and unreachable.
 */
#ifndef CM_CACHE_H
#define CM_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cm_cache cm_cache;

typedef struct cm_cache_config {
	const char *redis_url; /* required */
	const char *prefix;    /* Redis key prefix and channel base ("cache") */
	size_t l1_bytes;       /* 0: no L1 */
	int64_t l1_ttl_ms;     /* cap on an L1 entry's life (60000) */
	int64_t default_ttl_ms;  /* when a set or loader gives none (300000) */
	int64_t negative_ttl_ms; /* "not found" (5000) */
	int64_t stale_ms;      /* served on loader error past expiry (60000) */
	int64_t lease_ms;      /* a loader's lease (2000) */
	int64_t lease_wait_ms; /* how long losers poll L2 (lease_ms) */
	int jitter_pct;        /* TTLs shortened by up to this % (10) */
	double xfetch_beta;    /* 0: no early refresh; 1.0 is the paper's */
	int redis_timeout_ms;  /* per command (200) */
	bool no_subscribe;     /* tests: no invalidation subscriber */
	/* The wall clock (ms) that expiries are kept in; NULL: cm_now_ms.
	 * Tests move it to expire values that L1 and Redis still hold. */
	int64_t (*now_ms)(void *arg);
	void *now_arg;
} cm_cache_config;

/* Where a read was answered. */
enum cm_cache_level {
	CM_CACHE_NONE = 0,
	CM_CACHE_L1,
	CM_CACHE_L2,
	CM_CACHE_LOADER,
	CM_CACHE_STALE, /* a stale value: loader failed or lease held */
};
const char *cm_cache_level_name(int level);

/*
 * A value handed to and from the engine.  Values may carry metadata: a
 * short string kept with them (the cache service keeps a value's content
 * type there), at most CM_CACHE_META_MAX bytes.  Values written without
 * it, or before it existed, read with meta NULL.
 */
#define CM_CACHE_META_MAX 255
typedef struct cm_cache_value {
	void *data; /* malloc'd; whoever holds the struct frees it */
	size_t len;
	int64_t ttl_ms; /* loader: 0 means the default */
	/* Reads: the metadata, NUL-terminated, in data's allocation (freed
	 * with it), or NULL.  Loaders' values carry none (ignored). */
	const char *meta;
	size_t meta_len;
} cm_cache_value;

/*
 * A loader: fetches key from the source.  CM_OK with *out filled (data
 * malloc'd, the engine takes it), CM_NOT_FOUND (cached negatively), or
 * another code (an error: stale is served if there is one).
 */
typedef int (*cm_cache_loader)(void *arg, const char *ns, const void *key,
                               size_t klen, cm_cache_value *out);

typedef struct cm_cache_stats {
	uint64_t l1_hits, l1_misses, l2_hits, l2_misses, negative_hits;
	uint64_t loads, load_errors, stale_served, lease_waits, flight_joins;
	uint64_t early_refreshes, invalidations, l1_clears;
	uint64_t l1_evictions, l1_rejected, l1_entries, l1_bytes;
	uint64_t get_us_total, gets; /* latency: total / count */
} cm_cache_stats;

/* Creates the engine; starts the invalidation subscriber. */
int cm_cache_new(cm_cache **out, const cm_cache_config *cfg);
void cm_cache_free(cm_cache *c);

/* Namespace names: 1-64 of [A-Za-z0-9_.-]. */
bool cm_cache_ns_ok(const char *ns);

/*
 * Read-through.  On CM_OK *out holds a malloc'd copy (caller frees
 * out->data).  CM_NOT_FOUND: the key is known absent.  loader may be NULL
 * (then a miss in L1 and L2, or a value past its expiry, is CM_NOT_FOUND:
 * stale values are served only in place of a load).  level (may be NULL)
 * receives where it was answered.
 */
int cm_cache_get_or_load(cm_cache *c, const char *ns, const void *key,
                         size_t klen, cm_cache_loader loader, void *arg,
                         cm_cache_value *out, int *level);

/*
 * Non-blocking L1 lookup and fill, for event loops: never touch Redis.
 * cm_cache_l1_lookup returns CM_OK (value copied, malloc'd), CM_NOT_FOUND
 * (negatively cached) or CM_UNAVAILABLE (a miss, or an entry past its
 * expiry), and on a miss fills
 * *ticket for a later cm_cache_l1_fill, which stores the value unless an
 * invalidation came in between.
 */
typedef struct cm_cache_ticket {
	uint64_t epoch;
	uint64_t version;
	bool valid;
} cm_cache_ticket;
int cm_cache_l1_lookup(cm_cache *c, const char *ns, const void *key,
                       size_t klen, cm_cache_value *out,
                       cm_cache_ticket *ticket);
void cm_cache_l1_fill(cm_cache *c, const char *ns, const void *key, size_t klen,
                      const void *val, size_t vlen, int64_t ttl_ms,
                      const cm_cache_ticket *ticket);
/* Drops key from this instance's L1 only (never touches Redis). */
void cm_cache_l1_drop(cm_cache *c, const char *ns, const void *key,
                      size_t klen);
/*
 * The event-loop API can use L1 only for a namespace whose version the
 * engine knows, and the engine learns versions in its blocking calls and
 * forgets them whenever its subscription is re-established.  A namespace
 * tracked (at most 16) has its version fetched now (blocking: call it from
 * a service thread, not a loop) and again after every resubscription.
 * CM_OK, CM_UNAVAILABLE (Redis down: it is fetched on resubscription),
 * CM_INVALID_ARGUMENT or CM_RESOURCE_EXHAUSTED.
 */
int cm_cache_track(cm_cache *c, const char *ns);
/* Whether cm_cache_l1_lookup can use L1 for ns now: the subscription is
 * up and ns's version known (never touches Redis). */
bool cm_cache_l1_ready(cm_cache *c, const char *ns);

/*
 * Writes key to L2 (and this L1) with meta (NULL or "": none; longer than
 * CM_CACHE_META_MAX: CM_INVALID_ARGUMENT), ttl and tags; other instances
 * drop their L1 copies.  An explicit ttl_ms is kept to the millisecond
 * (reads without a loader stop finding the value when it has passed); 0
 * takes the default, shortened by the jitter.
 */
int cm_cache_set(cm_cache *c, const char *ns, const void *key, size_t klen,
                 const void *val, size_t vlen, const char *meta, int64_t ttl_ms,
                 const char *const *tags, size_t ntags);
/*
 * Drops key everywhere.  tomb_ms > 0 leaves a tombstone in L2 for that
 * long: it reads as "not found" and loader fills do not overwrite it (a
 * fill that raced the delete cannot resurrect the key).
 */
int cm_cache_delete(cm_cache *c, const char *ns, const void *key, size_t klen,
                    int64_t tomb_ms);
/* Drops every key carrying one of the tags; *n (may be NULL) counts them. */
int cm_cache_invalidate_tags(cm_cache *c, const char *ns,
                             const char *const *tags, size_t ntags, size_t *n);
/* Bumps the namespace version; *version (may be NULL) gets the new one. */
int cm_cache_bump_version(cm_cache *c, const char *ns, uint64_t *version);
/* Loads key from L2 into L1 if L2 has it: CM_OK, CM_NOT_FOUND. */
int cm_cache_warm(cm_cache *c, const char *ns, const void *key, size_t klen);
/* True if the key is in this process's L1 (for tests and Get l1_only). */
bool cm_cache_l1_has(cm_cache *c, const char *ns, const void *key, size_t klen);

void cm_cache_get_stats(cm_cache *c, cm_cache_stats *out);
/* True while the invalidation subscription is up (health). */
bool cm_cache_subscribed(cm_cache *c);
/*
 * True if Redis works, for health: from what the process's connections to
 * it have seen (breaker, last outcome), or, when that is over a second
 * old, after a PING from this thread (bounded by redis_timeout_ms).
 */
bool cm_cache_redis_ok(cm_cache *c);

#endif
