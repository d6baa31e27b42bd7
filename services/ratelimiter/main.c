/*
 * ratelimiter: the rate limiter service.  Wiring only:
 *
 *   configuration -> log -> rules -> signals blocked -> RPC server ->
 *   wait for a signal: SIGHUP reloads the rules (a bad file keeps the
 *   rules in force), SIGINT/SIGTERM stop the server (requests in flight
 *   finish) -> free.
 *
 * Threads: RATELIMITER_WORKERS RPC workers, each with its own Redis
 * connection; health checks use one more, behind a mutex.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "cli.h"
#include "config.h"
#include "handlers.h"
#include "log.h"
#include "rpc/rpc.h"
#include "store.h"

static const char env_help[] =
    "  RATELIMITER_LISTEN           address to serve (tcp://127.0.0.1:7002)\n"
    "  RATELIMITER_ADDR             address `health` probes "
    "(tcp://127.0.0.1:7002)\n"
    "  RATELIMITER_WORKERS          worker threads, each with its own "
    "Redis\n"
    "                               connection (16)\n"
    "  RATELIMITER_REDIS_TIMEOUT_MS bound on each Redis call (10); past "
    "it the\n"
    "                               rules' failure policies apply\n"
    "  RATELIMIT_RULES              rules file, YAML or JSON "
    "(" CM_RL_RULES_INSTALLED "\n"
    "                               if present, else " CM_RL_RULES_SOURCE ");\n"
    "                               SIGHUP reloads it\n"
    "  REDIS_URL                    counters (redis://127.0.0.1:6379)\n"
    "  LOG_LEVEL                    debug | info | warn | error (info)\n";

static struct {
	struct rl_service svc;
	const char *redis_url;
	const char *rules_path;
	int redis_timeout_ms;
	pthread_mutex_t health_mu;
	struct rl_store health_store;
} app;

static void *
worker_init(void *arg)
{
	struct rl_worker *w;

	(void) arg;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		fatal("event=worker_init");
	rl_redis_open(&w->store, app.redis_url, app.redis_timeout_ms);
	return (w);
}

static void
worker_fini(void *worker, void *arg)
{
	struct rl_worker *w = worker;

	(void) arg;
	w->store.ops->close(w->store.impl);
	free(w);
}

/*
 * Always SERVING: without Redis every rule still gets an answer (its
 * failure policy, or the fallback limiter).  Redis shows as a dependency,
 * as the process's connections have seen it; when that is over a second
 * old, one health check at a time asks Redis on its own connection
 * (bounded), the others answer from what is known meanwhile (a trylock:
 * a health check never waits on another).
 */
static size_t
health(void *arg, cm_health_dep *deps, size_t max, bool *serving)
{
	bool ok, probe;

	(void) arg;
	probe = pthread_mutex_trylock(&app.health_mu) == 0;
	ok = app.health_store.ops->health(app.health_store.impl, probe);
	if (probe)
		pthread_mutex_unlock(&app.health_mu);
	*serving = true;
	if (max == 0)
		return (0);
	deps[0] = (cm_health_dep){
	    .name = "redis",
	    .ok = ok,
	    .detail = ok ? NULL
	                 : "unreachable: failure policies and the fallback "
	                   "limiter apply"};
	return (1);
}

static void
reload(void)
{
	struct cm_rl_rules *rs;
	char err[512];

	if (cm_rl_rules_load(app.rules_path, &rs, err, sizeof(err)) != 0) {
		log_warnx("event=reload_failed msg=\"%s\" keeping=old_rules",
		          err);
		return;
	}
	rl_service_swap(&app.svc, rs);
	log_info("event=rules_reloaded path=%s rules=%zu", app.rules_path,
	         rs->n);
}

static int
serve(void)
{
	cm_rpc_server_config sc;
	cm_rpc_server *server;
	struct cm_rl_rules *rs;
	const char *listen;
	char err[512];
	int rv, sig, workers;

	log_init("ratelimiter");
	listen = cm_env_str("RATELIMITER_LISTEN", "tcp://127.0.0.1:7002");
	workers = (int) cm_env_int("RATELIMITER_WORKERS", 16, 1, 1024);
	app.redis_timeout_ms =
	    (int) cm_env_int("RATELIMITER_REDIS_TIMEOUT_MS", 10, 1, 10000);
	app.redis_url = cm_env_str("REDIS_URL", "redis://127.0.0.1:6379");
	app.rules_path = cm_rl_rules_path();
	if (cm_rl_rules_load(app.rules_path, &rs, err, sizeof(err)) != 0)
		fatalx("event=rules msg=\"%s\"", err);
	rl_service_init(&app.svc, rs);
	log_info("event=rules_loaded path=%s rules=%zu", app.rules_path, rs->n);

	cm_signals_block();
	pthread_mutex_init(&app.health_mu, NULL);
	rl_redis_open(&app.health_store, app.redis_url, 200);

	memset(&sc, 0, sizeof(sc));
	sc.url = listen;
	sc.services = &ratelimiter_rpc_service;
	sc.nservices = 1;
	sc.nworkers = workers;
	sc.worker_init = worker_init;
	sc.worker_fini = worker_fini;
	sc.health = health;
	sc.arg = &app.svc;
	if ((rv = cm_rpc_server_start(&server, &sc)) != 0)
		fatalx("event=listen addr=%s err=\"%s\"", listen,
		       nng_strerror(rv));
	log_info("event=serving addr=%s workers=%d redis=%s", listen, workers,
	         app.redis_url);

	while ((sig = cm_signals_wait()) == SIGHUP)
		reload();
	log_info("event=stopping signal=%d", sig);
	cm_rpc_server_stop(server);
	app.health_store.ops->close(app.health_store.impl);
	pthread_mutex_destroy(&app.health_mu);
	rl_service_fini(&app.svc);
	log_info("event=stopped");
	return (0);
}

int
main(int argc, char **argv)
{
	static const cm_cli cli = {
	    .name = "ratelimiter",
	    .summary = "the rate limiter service (ratelimiter.RateLimiter "
	               "over NNG)",
	    .env_help = env_help,
	    .addr_env = "RATELIMITER_ADDR",
	    .addr_default = "tcp://127.0.0.1:7002",
	    .health = NULL,
	    .commands = NULL,
	    .serve = serve,
	};

	return (cm_cli_main(&cli, argc, argv));
}
