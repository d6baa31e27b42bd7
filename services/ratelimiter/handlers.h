/*
 * The rate limiter's RPC handlers and the state they share: the rules in
 * force (swapped on reload), the fallback limiter, the over-limit cache.
 */
#ifndef RATELIMITER_HANDLERS_H
#define RATELIMITER_HANDLERS_H

#include <pthread.h>

#include "ratelimiter.h"
#include "rpc/rpc.h"
#include "store.h"

struct rl_service {
	pthread_mutex_t mu; /* guards rules and their reference counts */
	struct cm_rl_rules *rules;
	struct rl_fallback *fallback;
	struct rl_hot *hot;
};

/* A worker's state: its own store connection. */
struct rl_worker {
	struct rl_store store;
};

void rl_service_init(struct rl_service *s, struct cm_rl_rules *rules);
void rl_service_fini(struct rl_service *s);
/* Puts rules in force; requests in progress finish with the old set. */
void rl_service_swap(struct rl_service *s, struct cm_rl_rules *rules);

/*
 * The ratelimiter.RateLimiter service for cm_rpc_server: arg is the
 * struct rl_service *, each worker's state a struct rl_worker *.
 */
extern const cm_rpc_service ratelimiter_rpc_service;

#endif
