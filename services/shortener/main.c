/*
 * shortener: the URL shortener service.  Wiring only:
 *
 *   configuration -> log -> schema migration -> signals blocked ->
 *   cache engine (with its invalidation subscriber) -> maintenance
 *   thread -> RPC server ->
 *   wait for SIGINT/SIGTERM -> stop the server (requests in flight finish)
 *   -> stop the threads -> free.
 *
 * Threads: SHORTENER_WORKERS RPC workers, each with its own PostgreSQL and
 * Redis connection (struct shortener_io); the insert batcher (store_pg.c),
 * which commits the workers' inserts together; the cache engine's
 * invalidation subscriber (common/cache.c), which drops L1 entries that any
 * instance deleted; and the maintenance
 * thread, which purges expired links and retries invalidations that could
 * not be sent.  Health checks use one more pair of connections of their
 * own, behind a mutex that is only ever tried (see health()).
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>

#include "cli.h"
#include "cache.h"
#include "config.h"
#include "handlers.h"
#include "log.h"
#include "rpc/rpc.h"
#include "shortener.h"
#include "store.h"
#include "util.h"

#define DEV_ID_KEY       "shortener-dev-key-change-me"
#define REDIS_TIMEOUT_MS 200
#define PURGE_BATCH      1000
#define MIGRATE_WAIT_S   60

static const char env_help[] =
    "  SHORTENER_LISTEN            address to serve (tcp://127.0.0.1:7001)\n"
    "  SHORTENER_ADDR              address `health` probes "
    "(tcp://127.0.0.1:7001)\n"
    "  SHORTENER_WORKERS           worker threads, each with its own\n"
    "                              database connection (32)\n"
    "  SHORTENER_INSERT_BATCH      most links one INSERT commits "
    "together (256);\n"
    "                              0 commits each link on its own\n"
    "  SHORTENER_CODE_MODE         sequential | hash (sequential)\n"
    "  SHORTENER_ID_KEY            key of the id permutation, at least 32\n"
    "                              bytes (or SHORTENER_ID_KEY_FILE); needed\n"
    "                              unless BACKENDS_DEV_MODE=1; keep it "
    "secret\n"
    "  SHORTENER_L1_MB             in-process redirect cache (the cache\n"
    "                              engine's L1), MiB (64)\n"
    "  SHORTENER_CACHE             engine | off: redirects read through\n"
    "                              the cache engine, or always read\n"
    "                              PostgreSQL (a baseline) (engine)\n"
    "  SHORTENER_PURGE_INTERVAL_S  seconds between purges of expired "
    "links (60)\n"
    "  SHORTENER_PURGE_GRACE_S     purge links expired longer ago than "
    "this (86400)\n"
    "  PUBLIC_BASE_URL             base of short links "
    "(http://localhost:8080)\n"
    "  REDIS_URL                   redirect cache and invalidations\n"
    "                              (redis://127.0.0.1:6379)\n"
    "  DATABASE_URL                PostgreSQL (postgresql://backends:"
    "backends@127.0.0.1:5432/backends)\n"
    "  LOG_LEVEL                   debug | info | warn | error (info)\n";

struct maint {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	struct shortener *svc;
	struct shortener_io io;
	int purge_interval_s;
	int64_t purge_grace_s;
};

struct app {
	struct shortener *svc;
	struct shortener_pg_batcher *batcher;
	const char *database_url;
	const char *redis_url;
	cm_cache *engine;
	bool read_through; /* SHORTENER_CACHE=engine */
	pthread_mutex_t health_mu;
	struct shortener_io health_io;
	struct maint maint;
};

static struct app app;

/* The RPC workers insert through the batcher; other threads never insert. */
static void
io_open(struct shortener_io *io, struct shortener_pg_batcher *batcher)
{
	shortener_pg_open(&io->store, app.database_url, batcher);
	shortener_redis_open(&io->cache, app.engine, app.redis_url,
	                     REDIS_TIMEOUT_MS, app.read_through);
}

static void
io_close(struct shortener_io *io)
{
	shortener_pg_close(&io->store);
	shortener_redis_close(&io->cache);
}

static void *
worker_init(void *arg)
{
	struct shortener_io *io;

	(void) arg;
	if ((io = calloc(1, sizeof(*io))) == NULL)
		fatal("event=worker_init");
	io_open(io, app.batcher);
	/* Connect now rather than on this worker's first request, so that a
	 * slow connect (or name lookup) is paid before serving, not by a
	 * caller; a failure is retried on use, with backoff. */
	(void) io->store.ops->ping(io->store.impl);
	return (io);
}

static void
worker_fini(void *worker, void *arg)
{
	(void) arg;
	io_close(worker);
	free(worker);
}

/*
 * SERVING while PostgreSQL answers: it is the source of truth.  Redis down
 * only slows redirects and delays invalidations, so it shows as a failed
 * dependency of a service that still serves.
 *
 * The stores' states come from what the process's connections have seen
 * (their breakers and last outcomes), so a health check costs no round
 * trip while the service has traffic, and a PostgreSQL that stopped
 * answering shows as soon as one request has timed out on it.  When that
 * knowledge is over a second old, one health check at a time asks the
 * stores itself on connections of its own, bounded (300 ms PostgreSQL,
 * REDIS_TIMEOUT_MS Redis); the others meanwhile answer from what is known
 * without waiting for it (a trylock, never a wait on a lock).
 */
static size_t
health(void *arg, cm_health_dep *deps, size_t max, bool *serving)
{
	struct shortener_io *io = &app.health_io;
	const char *pg_detail;
	bool pg, redis, probe;
	size_t n = 0;

	(void) arg;
	probe = pthread_mutex_trylock(&app.health_mu) == 0;
	pg = shortener_pg_health(&io->store, probe, &pg_detail);
	redis = shortener_redis_health(&io->cache, probe);
	if (probe)
		pthread_mutex_unlock(&app.health_mu);
	if (n < max)
		deps[n++] = (cm_health_dep){
		    .name = "postgres", .ok = pg, .detail = pg_detail};
	if (n < max)
		deps[n++] = (cm_health_dep){
		    .name = "redis",
		    .ok = redis,
		    .detail = redis ? NULL
		                    : "unreachable: redirects served from "
		                      "postgres"};
	if (n < max)
		deps[n++] =
		    (cm_health_dep){.name = "invalidation",
		                    .ok = cm_cache_subscribed(app.engine),
		                    .detail = cm_cache_subscribed(app.engine)
		                                  ? NULL
		                                  : "not subscribed"};
	*serving = pg;
	return (n);
}

/* Sleeps up to ms unless stopped; true if stopping. */
static bool
maint_sleep(struct maint *m, int ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long) (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&m->mu);
	if (!m->stop)
		pthread_cond_timedwait(&m->cv, &m->mu, &ts);
	stop = m->stop;
	pthread_mutex_unlock(&m->mu);
	return (stop);
}

static bool
maint_stopping(struct maint *m)
{
	bool stop;

	pthread_mutex_lock(&m->mu);
	stop = m->stop;
	pthread_mutex_unlock(&m->mu);
	return (stop);
}

/*
 * Once a second: retry invalidations that failed.  Every purge interval:
 * delete expired links in batches until a batch comes back short.
 */
static void *
maint_main(void *arg)
{
	struct maint *m = arg;
	int64_t next_purge = cm_mono_ms() + 5000;
	size_t n, total;

	while (!maint_sleep(m, 1000)) {
		shortener_retry_invalidations(m->svc, &m->io);
		if (cm_mono_ms() < next_purge)
			continue;
		next_purge =
		    cm_mono_ms() + (int64_t) m->purge_interval_s * 1000;
		total = 0;
		do {
			if (shortener_purge(m->svc, &m->io, m->purge_grace_s,
			                    PURGE_BATCH, &n) != 0)
				break;
			total += n;
		} while (n == PURGE_BATCH && !maint_stopping(m));
		if (total > 0)
			log_info("event=purged links=%zu", total);
	}
	return (NULL);
}

static void
maint_start(struct maint *m)
{
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	io_open(&m->io, NULL);
	if (pthread_create(&m->thread, NULL, maint_main, m) != 0)
		fatalx("event=maint_start");
}

static void
maint_stop(struct maint *m)
{
	pthread_mutex_lock(&m->mu);
	m->stop = true;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
	pthread_join(m->thread, NULL);
	io_close(&m->io);
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
}

/*
 * Applies the schema, waiting for PostgreSQL for up to MIGRATE_WAIT_S
 * (in a stack starting together, it may come up after us).
 */
static void
migrate(void)
{
	int64_t deadline = cm_mono_ms() + MIGRATE_WAIT_S * 1000;
	int backoff_ms = 100;

	while (shortener_pg_migrate(app.database_url) != 0) {
		if (cm_mono_ms() > deadline)
			fatalx("event=migrate msg=\"cannot migrate the "
			       "schema\"");
		usleep((useconds_t) backoff_ms * 1000);
		if ((backoff_ms *= 2) > 2000)
			backoff_ms = 2000;
	}
}

static int
serve(void)
{
	struct shortener_config c;
	cm_cache_config cc;
	size_t l1_bytes;
	cm_rpc_server_config sc;
	cm_rpc_server *server;
	const char *listen, *mode, *key;
	char err[256];
	long batch;
	int rv, sig, workers;

	log_init("shortener");
	memset(&c, 0, sizeof(c));
	listen = cm_env_str("SHORTENER_LISTEN", "tcp://127.0.0.1:7001");
	workers = (int) cm_env_int("SHORTENER_WORKERS", 32, 1, 1024);
	batch = cm_env_int("SHORTENER_INSERT_BATCH", 256, 0, 10000);
	mode = cm_env_str("SHORTENER_CODE_MODE", "sequential");
	if (strcmp(mode, "sequential") == 0)
		c.mode = SHORTENER_CODE_SEQUENTIAL;
	else if (strcmp(mode, "hash") == 0)
		c.mode = SHORTENER_CODE_HASH;
	else
		fatalx("event=config msg=\"SHORTENER_CODE_MODE must be "
		       "sequential or hash\"");
	key = cm_env_secret("SHORTENER_ID_KEY", DEV_ID_KEY);
	c.id_key = key;
	c.public_base_url =
	    cm_env_str("PUBLIC_BASE_URL", "http://localhost:8080");
	/* The engine holds the L1; the domain keeps none of its own. */
	l1_bytes = (size_t) cm_env_int("SHORTENER_L1_MB", 64, 0, 65536) << 20;
	c.expired_ttl_s = 3;
	mode = cm_env_str("SHORTENER_CACHE", "engine");
	if (strcmp(mode, "engine") != 0 && strcmp(mode, "off") != 0)
		fatalx("event=config msg=\"SHORTENER_CACHE must be engine or "
		       "off\"");
	app.read_through = strcmp(mode, "engine") == 0;
	if (!app.read_through)
		log_warnx("event=config msg=\"SHORTENER_CACHE=off: every "
		          "redirect reads PostgreSQL\"");
	app.redis_url = cm_env_str("REDIS_URL", "redis://127.0.0.1:6379");
	app.database_url = cm_env_str(
	    "DATABASE_URL",
	    "postgresql://backends:backends@127.0.0.1:5432/backends");
	app.maint.purge_interval_s =
	    (int) cm_env_int("SHORTENER_PURGE_INTERVAL_S", 60, 1, 86400);
	app.maint.purge_grace_s = cm_env_int("SHORTENER_PURGE_GRACE_S", 86400,
	                                     0, SHORTENER_EXPIRES_MAX);
	if (shortener_new(&app.svc, &c, err, sizeof(err)) != 0)
		fatalx("event=config msg=\"%s\"", err);

	migrate();
	cm_signals_block();

	memset(&cc, 0, sizeof(cc));
	cc.redis_url = app.redis_url;
	cc.prefix = "cache";
	cc.l1_bytes = l1_bytes;
	cc.l1_ttl_ms = 60000;
	cc.negative_ttl_ms = 3000;
	cc.default_ttl_ms = 3600000;
	cc.stale_ms = 60000;
	cc.jitter_pct = 10;
	cc.xfetch_beta = 1.0;
	cc.redis_timeout_ms = REDIS_TIMEOUT_MS;
	if (cm_cache_new(&app.engine, &cc) != 0)
		fatalx("event=cache_new");
	pthread_mutex_init(&app.health_mu, NULL);
	io_open(&app.health_io, NULL);
	app.maint.svc = app.svc;
	maint_start(&app.maint);
	if (batch > 0)
		app.batcher = shortener_pg_batcher_start(app.database_url,
		                                         (size_t) batch);

	memset(&sc, 0, sizeof(sc));
	sc.url = listen;
	sc.services = &shortener_rpc_service;
	sc.nservices = 1;
	sc.nworkers = workers;
	sc.worker_init = worker_init;
	sc.worker_fini = worker_fini;
	sc.health = health;
	sc.arg = app.svc;
	if ((rv = cm_rpc_server_start(&server, &sc)) != 0)
		fatalx("event=listen addr=%s err=\"%s\"", listen,
		       nng_strerror(rv));
	log_info("event=serving addr=%s workers=%d mode=%s base=%s", listen,
	         workers, mode, shortener_base_url(app.svc));

	sig = cm_signals_wait();
	log_info("event=stopping signal=%d", sig);
	cm_rpc_server_stop(server);
	shortener_pg_batcher_stop(app.batcher);
	maint_stop(&app.maint);
	io_close(&app.health_io);
	cm_cache_free(app.engine);
	pthread_mutex_destroy(&app.health_mu);
	shortener_free(app.svc);
	log_info("event=stopped");
	return (0);
}

int
main(int argc, char **argv)
{
	static const cm_cli cli = {
	    .name = "shortener",
	    .summary = "the URL shortener service (shortener.Shortener "
	               "over NNG)",
	    .env_help = env_help,
	    .addr_env = "SHORTENER_ADDR",
	    .addr_default = "tcp://127.0.0.1:7001",
	    .health = NULL,
	    .commands = NULL,
	    .serve = serve,
	};

	return (cm_cli_main(&cli, argc, argv));
}
