/*
 * The cache service's state and RPC handlers (cachesvc.c), and its hot-key
 * tracker (hot.c).
 */
#ifndef CACHESVC_H
#define CACHESVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "rpc/rpc.h"

#define CACHESVC_KEY_MAX       512
#define CACHESVC_VALUE_MAX     (1 << 20)
#define CACHESVC_TAGS_MAX      32
#define CACHESVC_CTYPE_MAX     127
#define CACHESVC_CTYPE_DEFAULT "application/octet-stream"

struct cachesvc_hot;

struct cachesvc {
	cm_cache *cache;
	struct cachesvc_hot *hot;
	const char *internal_ns; /* comma-separated, not writable externally */
	int64_t default_ttl_s;
	int64_t warmed_at_start;
};

extern const cm_rpc_service cachesvc_rpc_service;

/*
 * A value's content type (ctype.c, pure): an RFC 9110 media type,
 * type "/" subtype *( OWS ";" OWS [ name "=" ( token / quoted-string ) ] ),
 * 1-CACHESVC_CTYPE_MAX bytes of visible ASCII, spaces and tabs, with no
 * space at either end.  It is stored with the value and sent back as a
 * response header, so nothing else gets through.
 */
bool cachesvc_content_type_ok(const char *s, size_t len);

/*
 * Hot keys: gets are counted in memory and flushed every flush_ms into a
 * Redis sorted set "<prefix>:hot" (ZINCRBY), whose scores are halved every
 * decay_ms and which is trimmed to the top `keep` members.  Members are
 * ns "|" key.  A thread of its own does the flushing.
 */
struct cachesvc_hot *cachesvc_hot_start(const char *redis_url,
                                        const char *prefix, int flush_ms,
                                        int decay_ms, size_t keep);
/* Flushes what is counted, then stops. */
void cachesvc_hot_stop(struct cachesvc_hot *h);
void cachesvc_hot_record(struct cachesvc_hot *h, const char *ns,
                         const char *key);
/*
 * Warms c's L1 with the hottest `limit` keys (of namespace ns, or every
 * namespace if ns is NULL or ""); returns how many were warmed.
 */
int64_t cachesvc_hot_warm(struct cachesvc_hot *h, cm_cache *c, const char *ns,
                          size_t limit);

#endif
