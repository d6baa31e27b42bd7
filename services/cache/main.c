/*
 * cache: the cache service.  Wiring only:
 *
 *   configuration -> log -> signals blocked -> engine (with its
 *   invalidation subscriber) -> hot-key tracker -> warm L1 from the hot
 *   keys -> RPC server -> wait for SIGINT/SIGTERM -> stop the server ->
 *   flush the hot keys -> free.
 *
 * The engine is shared by every worker; it keeps a Redis connection per
 * thread itself, so workers need no per-worker state.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>

#include "cache.h"
#include "cachesvc.h"
#include "cli.h"
#include "config.h"
#include "log.h"
#include "rpc/rpc.h"
#include "util.h"

static const char env_help[] =
    "  CACHE_LISTEN               address to serve (tcp://127.0.0.1:7003)\n"
    "  CACHE_ADDR                 address `health` probes "
    "(tcp://127.0.0.1:7003)\n"
    "  CACHE_WORKERS              worker threads (2: requests are L1\n"
    "                             lookups or one Redis round trip)\n"
    "  CACHE_L1_MB                in-process cache (L1), MiB (256)\n"
    "  CACHE_L1_TTL_MS            longest life of an L1 entry (60000)\n"
    "  CACHE_DEFAULT_TTL_S        TTL of a Set without one (300)\n"
    "  CACHE_STALE_S              how long Redis keeps a value past its\n"
    "                             TTL for read-through callers whose\n"
    "                             source fails; this service's Gets never\n"
    "                             return it (60)\n"
    "  CACHE_PREFIX               Redis key prefix and channel (cache)\n"
    "  CACHE_INTERNAL_NAMESPACES  not writable through the gateway\n"
    "                             (shortener)\n"
    "  CACHE_HOT_FLUSH_MS         hot-key counts flushed to Redis every\n"
    "                             (1000)\n"
    "  CACHE_HOT_KEYS             hot keys kept and warmed (1000)\n"
    "  CACHE_WARM                 warm L1 from the hot keys at start (1)\n"
    "  REDIS_URL                  L2, invalidations, hot keys\n"
    "                             (redis://127.0.0.1:6379)\n"
    "  LOG_LEVEL                  debug | info | warn | error (info)\n";

static struct cachesvc svc;

static size_t
health(void *arg, cm_health_dep *deps, size_t max, bool *serving)
{
	bool redis, sub;
	size_t n = 0;

	(void) arg;
	redis = cm_cache_redis_ok(svc.cache);
	sub = cm_cache_subscribed(svc.cache);
	if (n < max)
		deps[n++] = (cm_health_dep){
		    .name = "redis",
		    .ok = redis,
		    .detail = redis ? NULL : "unreachable: L1 only"};
	if (n < max)
		deps[n++] = (cm_health_dep){
		    .name = "invalidation",
		    .ok = sub,
		    .detail = sub ? NULL : "not subscribed: L1 bypassed"};
	/* L1 alone cannot be trusted without invalidations: Redis is the
	 * service. */
	*serving = redis;
	return (n);
}

static int
serve(void)
{
	cm_cache_config cc;
	cm_rpc_server_config sc;
	cm_rpc_server *server;
	const char *listen, *redis_url, *prefix;
	int rv, sig, workers;
	int64_t deadline;

	log_init("cache");
	listen = cm_env_str("CACHE_LISTEN", "tcp://127.0.0.1:7003");
	workers = (int) cm_env_int("CACHE_WORKERS", 2, 1, 1024);
	redis_url = cm_env_str("REDIS_URL", "redis://127.0.0.1:6379");
	prefix = cm_env_str("CACHE_PREFIX", "cache");
	memset(&cc, 0, sizeof(cc));
	cc.redis_url = redis_url;
	cc.prefix = prefix;
	cc.l1_bytes = (size_t) cm_env_int("CACHE_L1_MB", 256, 0, 65536) << 20;
	cc.l1_ttl_ms = cm_env_int("CACHE_L1_TTL_MS", 60000, 1, 86400000);
	cc.stale_ms = cm_env_int("CACHE_STALE_S", 60, 1, 86400) * 1000;
	cc.jitter_pct = 10;
	svc.default_ttl_s = cm_env_int("CACHE_DEFAULT_TTL_S", 300, 1, 2592000);
	cc.default_ttl_ms = svc.default_ttl_s * 1000;
	svc.internal_ns = cm_env_str("CACHE_INTERNAL_NAMESPACES", "shortener");

	cm_signals_block();
	if (cm_cache_new(&svc.cache, &cc) != 0)
		fatalx("event=cache_new");
	svc.hot = cachesvc_hot_start(
	    redis_url, prefix,
	    (int) cm_env_int("CACHE_HOT_FLUSH_MS", 1000, 10, 600000), 60000,
	    (size_t) cm_env_int("CACHE_HOT_KEYS", 1000, 1, 1000000));
	if (cm_env_bool("CACHE_WARM", true)) {
		/* The first subscription clears L1: warm after it. */
		deadline = cm_mono_ms() + 2000;
		while (!cm_cache_subscribed(svc.cache) &&
		       cm_mono_ms() < deadline)
			usleep(10000);
		svc.warmed_at_start = cachesvc_hot_warm(
		    svc.hot, svc.cache, NULL,
		    (size_t) cm_env_int("CACHE_HOT_KEYS", 1000, 1, 1000000));
		log_info("event=warmed keys=%lld",
		         (long long) svc.warmed_at_start);
	}

	memset(&sc, 0, sizeof(sc));
	sc.url = listen;
	sc.services = &cachesvc_rpc_service;
	sc.nservices = 1;
	sc.nworkers = workers;
	sc.health = health;
	sc.arg = &svc;
	if ((rv = cm_rpc_server_start(&server, &sc)) != 0)
		fatalx("event=listen addr=%s err=\"%s\"", listen,
		       nng_strerror(rv));
	log_info("event=serving addr=%s workers=%d l1_mb=%zu", listen, workers,
	         cc.l1_bytes >> 20);

	sig = cm_signals_wait();
	log_info("event=stopping signal=%d", sig);
	cm_rpc_server_stop(server);
	cachesvc_hot_stop(svc.hot);
	cm_cache_free(svc.cache);
	log_info("event=stopped");
	return (0);
}

int
main(int argc, char **argv)
{
	static const cm_cli cli = {
	    .name = "cache",
	    .summary = "the cache service (cache.Cache over NNG)",
	    .env_help = env_help,
	    .addr_env = "CACHE_ADDR",
	    .addr_default = "tcp://127.0.0.1:7003",
	    .health = NULL,
	    .commands = NULL,
	    .serve = serve,
	};

	return (cm_cli_main(&cli, argc, argv));
}
