/*
 * Cache invalidation over Redis pub/sub.  A publisher announces that keys
 * changed; every subscribed instance drops its in-process copies.
 *
 * The subscriber runs a thread of its own holding a SUBSCRIBE connection.
 * on_key is called (on that thread) for every key published; on_reset is
 * called whenever the subscription is (re)established after a loss, because
 * messages published while it was down are lost and every local copy may
 * be stale: the owner clears its cache.  Also called once at the first
 * successful subscription, and always before cm_invalidator_subscribed
 * turns true.  on_reset returns false when the owner could not get ready
 * (it needed Redis and Redis failed): the subscription is then dropped and
 * made again after a backoff, with another on_reset.
 */
#ifndef CM_INVALIDATE_H
#define CM_INVALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include "redis.h"

typedef struct cm_invalidator cm_invalidator;

typedef struct cm_invalidator_config {
	const char *redis_url;
	const char *channel;
	void (*on_key)(void *arg, const char *key, size_t len);
	bool (*on_reset)(void *arg);
	void *arg;
} cm_invalidator_config;

int cm_invalidator_start(cm_invalidator **out, const cm_invalidator_config *c);
void cm_invalidator_stop(cm_invalidator *inv);
/* True while subscribed (for health and for "may I trust my cache?"). */
bool cm_invalidator_subscribed(cm_invalidator *inv);

/* PUBLISH channel key on r; 0 on success, -1 if Redis is unreachable. */
int cm_invalidate_publish(cm_redis *r, const char *channel, const char *key);

#endif
