/*
 * An in-process cache: a thread-safe, sharded hash map from byte-string keys
 * to byte-string values, bounded in bytes, with a TTL per entry and
 * W-TinyLFU eviction and admission within each shard (or plain LRU, for
 * comparison: see cm_l1_new_policy).
 *
 * Reads racing invalidations: cm_l1_epoch() returns a per-shard counter that
 * every delete and clear advances.  A reader that misses takes the epoch,
 * loads the value from the source, and stores it with cm_l1_set_if(...,
 * epoch): if an invalidation of that shard happened meanwhile, the store is
 * skipped, so a value read before a delete is never cached after it.
 */
#ifndef CM_L1CACHE_H
#define CM_L1CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cm_l1 cm_l1;

typedef struct cm_l1_stats {
	uint64_t hits, misses, sets, evictions, expired, entries, bytes;
	uint64_t rejected; /* new entries the admission filter turned away */
} cm_l1_stats;

enum cm_l1_policy {
	CM_L1_TINYLFU = 0, /* W-TinyLFU: window LRU + SLRU main + sketch */
	CM_L1_LRU,         /* plain LRU, no admission (benchmark baseline) */
};

/* max_bytes bounds keys + values + per-entry overhead.  nshards a power
 * of two (0 picks 16).  NULL on bad arguments or out of memory. */
cm_l1 *cm_l1_new(size_t max_bytes, unsigned nshards);
cm_l1 *cm_l1_new_policy(size_t max_bytes, unsigned nshards,
                        enum cm_l1_policy policy);
void cm_l1_free(cm_l1 *c);

/*
 * Copies the value into buf (buflen bytes) and returns its full length, or
 * -1 when absent or expired.  If the value is longer than buflen, only
 * buflen bytes are copied (the return value tells).
 */
long cm_l1_get(cm_l1 *c, const void *key, size_t klen, void *buf,
               size_t buflen);
/* ttl_ms <= 0: no expiry.  Replaces an existing entry. */
void cm_l1_set(cm_l1 *c, const void *key, size_t klen, const void *val,
               size_t vlen, int64_t ttl_ms);
uint64_t cm_l1_epoch(cm_l1 *c, const void *key, size_t klen);
/* Stores only if no delete/clear hit the key's shard since epoch was read. */
void cm_l1_set_if(cm_l1 *c, const void *key, size_t klen, const void *val,
                  size_t vlen, int64_t ttl_ms, uint64_t epoch);
void cm_l1_del(cm_l1 *c, const void *key, size_t klen);
void cm_l1_clear(cm_l1 *c);
void cm_l1_get_stats(cm_l1 *c, cm_l1_stats *out);

#endif
