/*
 * The redirect cache, a service of the core (rcache.c): the cache
 * engine's L1 in the shortener's namespace, shared by the loops.
 * Included through gwcore.h.
 */
#ifndef GW_RCACHE_H
#define GW_RCACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "cache.h"

/*
 * The cache engine's key prefix and namespace: the shortener's, so that
 * its deletes reach this cache.  They must equal the prefix given to
 * cm_cache_new in services/shortener/main.c and SHORTENER_CACHE_NS
 * (services/shortener/store.h); a service cannot include another's
 * headers, hence the copies.
 */
#define GW_RCACHE_PREFIX "cache"
#define GW_RCACHE_NS     "shortener"

/* The engine; NULL when there is no redirect cache.  Loop threads call
 * only cm_cache_l1_lookup, cm_cache_l1_fill and the functions below. */
extern cm_cache *gw_rcache;

/* Drops code from this gateway's L1 (a DELETE it served). */
void gw_rcache_drop(const char *code, size_t clen);
/*
 * For /healthz: false while the cache cannot be used (its invalidation
 * subscription is down, or the namespace's version is not known yet), so
 * that every redirect asks the shortener; *detail (static text) says why.
 * A gateway without a redirect cache is fine ("off").
 */
bool gw_rcache_state(const char **detail);

#endif
