/*
 * The shortener's seams to storage.
 *
 * struct shortener_store is the source of truth (PostgreSQL in production,
 * store_mem.c in unit tests); struct shortener_cache is the shared redirect
 * cache in front of it plus the invalidation broadcast (Redis in
 * production).  Both are an ops table and an instance pointer.  Instances
 * are per thread (each RPC worker owns one of each): an implementation need
 * not be thread-safe unless it says so.
 *
 * Every operation returns a cm_code (status.h): CM_OK, the code its comment
 * names, CM_UNAVAILABLE when the store cannot be reached, or CM_INTERNAL.
 */
#ifndef SHORTENER_STORE_H
#define SHORTENER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

/* One short link as stored.  Strings belong to whoever filled the struct. */
struct shortener_link {
	int64_t id;       /* unique; orders a user's links with created_at */
	const char *code; /* the primary key */
	const char *long_url;
	const char *owner;  /* NULL: anonymous */
	int64_t created_at; /* Unix seconds */
	int64_t expires_at; /* Unix seconds; 0: never */
	int64_t clicks;
};

/* Keyset position in a user's list: rows strictly older than this. */
struct shortener_cursor {
	int64_t created_at;
	int64_t id;
};

struct shortener_clicks {
	const char *code;
	int64_t count; /* > 0 */
};

struct shortener_store_ops {
	const char *name;
	/* Leases a block of ids no other process will use: [*first, +*count).
	 */
	int (*lease_ids)(void *impl, uint64_t *first, uint64_t *count);
	/*
	 * Inserts l, durably (committed) before returning.  CM_ALREADY_EXISTS
	 * if the code is taken: of two concurrent inserts of one code exactly
	 * one succeeds.
	 */
	int (*insert)(void *impl, const struct shortener_link *l);
	/* CM_NOT_FOUND if absent.  Strings of *out come from a. */
	int (*get)(void *impl, const char *code, cm_arena *a,
	           struct shortener_link *out);
	/*
	 * owner's links, newest first (created_at desc, id desc), strictly
	 * after the cursor if not NULL; at most max of them into out, *n set.
	 * Strings come from a.
	 */
	int (*list)(void *impl, const char *owner,
	            const struct shortener_cursor *after, size_t max,
	            cm_arena *a, struct shortener_link *out, size_t *n);
	/* Deletes code if owner owns it; CM_NOT_FOUND otherwise. */
	int (*remove)(void *impl, const char *code, const char *owner);
	/* Adds the counts; codes that do not exist are ignored. */
	int (*add_clicks)(void *impl, const struct shortener_clicks *c,
	                  size_t n);
	/* Deletes at most max links that expired before `before`; *n set. */
	int (*purge)(void *impl, int64_t before, size_t max, size_t *n);
	/* True if the store answers now. */
	bool (*ping)(void *impl);
};

struct shortener_store {
	const struct shortener_store_ops *ops;
	void *impl;
};

/* What the shared cache holds for a live code. */
struct shortener_cached {
	const char *long_url;
	int64_t expires_at; /* 0: never */
};

/*
 * The source behind a read-through cache (the domain passes the store's
 * lookup): CM_OK with *out (strings from a) and *ttl_s, how long it may be
 * cached; CM_NOT_FOUND; or an error.
 */
typedef int (*shortener_load_fn)(void *arg, const char *code, cm_arena *a,
                                 struct shortener_cached *out, int *ttl_s);

struct shortener_cache_ops {
	const char *name;
	/*
	 * Read-through: answers from the cache's levels or calls load and
	 * caches its answer, never over a tombstone (so a fill that raced a
	 * delete cannot resurrect the code); with the cache down, calls
	 * load.  CM_OK (*out from a), CM_NOT_FOUND, or load's error.  The
	 * engine adds single-flight, leases, stale-if-error and negative
	 * caching.
	 */
	int (*resolve)(void *impl, const char *code, shortener_load_fn load,
	               void *arg, cm_arena *a, struct shortener_cached *out);
	/*
	 * Drops code from the cache, leaving a tombstone for tomb_ttl_s
	 * seconds if tomb_ttl_s > 0, and publishes the code on the
	 * invalidation channel so every instance drops its own copies.
	 * CM_OK or CM_UNAVAILABLE (the caller retries later).
	 */
	int (*invalidate)(void *impl, const char *code, int tomb_ttl_s);
	bool (*ping)(void *impl);
};

struct shortener_cache {
	const struct shortener_cache_ops *ops; /* NULL: no shared cache */
	void *impl;
};

/* ---- the implementations ---- */

/*
 * PostgreSQL (store_pg.c).  shortener_pg_migrate applies schema.sql
 * (embedded at build time) under cm_pg_migrate's advisory lock.
 *
 * Inserts go through a batcher shared by every thread: one thread with a
 * connection of its own that takes every insert waiting, writes them with
 * one multi-row INSERT (one transaction, one commit, one WAL flush) and
 * wakes each waiter with its own outcome.  shortener_pg_batcher_start
 * starts it; shortener_pg_batcher_stop stops it once no store uses it.
 *
 * shortener_pg_open fills *out with a store of its own connection (made
 * lazily), inserting through batcher if not NULL, directly otherwise.
 * shortener_pg_close frees it.
 *
 * Every operation of a PostgreSQL store, an insert waiting for the
 * batcher included, waits at most until the deadline given to
 * shortener_pg_set_deadline (cm_mono_ms clock; 0: none) and at most
 * CM_PG_WAIT_MAX_MS (common/pg.h), and fails with CM_UNAVAILABLE past it.
 *
 * shortener_pg_health tells whether PostgreSQL works, for Health.Check,
 * from what the process's connections have seen (never blocking; any
 * thread, any PostgreSQL store); with probe, and when that is more than a
 * second old, after a SELECT 1 of at most 300 ms on s (which must then
 * be the caller's own).  *detail: why not (static), NULL when it works.
 */
struct shortener_pg_batcher;

int shortener_pg_migrate(const char *conninfo);
struct shortener_pg_batcher *shortener_pg_batcher_start(const char *conninfo,
                                                        size_t max_batch);
void shortener_pg_batcher_stop(struct shortener_pg_batcher *b);
void shortener_pg_open(struct shortener_store *out, const char *conninfo,
                       struct shortener_pg_batcher *batcher);
void shortener_pg_close(struct shortener_store *st);
void shortener_pg_set_deadline(struct shortener_store *s, int64_t deadline_ms);
bool shortener_pg_health(struct shortener_store *s, bool probe,
                         const char **detail);

/*
 * The multi-level cache engine (store_redis.c): namespace
 * SHORTENER_CACHE_NS of the shared engine (common/cache.h), values
 * "<expires_at> <long_url>", deletes leave engine tombstones (without
 * read_through, resolve always calls the loader: a baseline) and reach
 * the gateways' redirect caches through the engine's channel.  engine is
 * shared (thread-safe); the rest is per thread.
 */
struct cm_cache;
#define SHORTENER_CACHE_NS "shortener"
void shortener_redis_open(struct shortener_cache *out, struct cm_cache *engine,
                          const char *url, int timeout_ms, bool read_through);
void shortener_redis_close(struct shortener_cache *c);
/*
 * Whether Redis works, for Health.Check, from what the process's
 * connections to it have seen (never blocking; any thread); with probe,
 * and when that is more than a second old, after a PING on c (bounded by
 * its timeout; c must then be the caller's own).
 */
bool shortener_redis_health(struct shortener_cache *c, bool probe);

/*
 * In memory (store_mem.c), for unit tests: one shared, thread-safe
 * instance serves as both store and cache.  Knobs let a test take either
 * side down and count calls.
 */
struct shortener_mem;
struct shortener_mem_stats {
	unsigned store_gets, inserts, cache_gets, cache_fills, invalidations;
};
struct shortener_mem *shortener_mem_new(void);
void shortener_mem_free(struct shortener_mem *m);
void shortener_mem_store(struct shortener_mem *m, struct shortener_store *out);
void shortener_mem_cache(struct shortener_mem *m, struct shortener_cache *out);
void shortener_mem_set_down(struct shortener_mem *m, bool store_down,
                            bool cache_down);
void shortener_mem_get_stats(struct shortener_mem *m,
                             struct shortener_mem_stats *out);
/* The block size lease_ids hands out (default 1000). */
void shortener_mem_set_lease(struct shortener_mem *m, uint64_t block);

#endif
