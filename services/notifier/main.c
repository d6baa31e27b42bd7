/*
 * notifier: the notification service.  Wiring only:
 *
 *   configuration -> log -> schema migration -> signals blocked ->
 *   accept batcher -> relay thread (runs the outbox at once) -> delivery
 *   workers -> RPC server -> wait for SIGINT/SIGTERM -> stop the server
 *   (requests in flight finish) -> stop the batcher, the relay and the
 *   workers -> free.
 *
 * Threads:
 *   - NOTIFIER_WORKERS RPC workers, each with its own PostgreSQL
 *     connection; Sends go through the batcher (group commit, store_pg.c).
 *   - the relay: moves outbox rows into the streams (or the due-time set)
 *     and due members of the due-time set into the streams; woken after
 *     each commit, otherwise every 100 ms, and run once at start-up, so
 *     what was committed before a crash is relayed after the restart.
 *   - NOTIFIER_DELIVERY_WORKERS delivery workers, each with its own
 *     PostgreSQL and Redis connection and its own providers (channel.h):
 *     they read the streams through the consumer group, high before
 *     normal before low in a weighted order (the first stream tried is
 *     high 3 times in 6, normal 2, low 1, so low never starves; one
 *     script call tries them in that order), take
 *     over messages left pending longer than NOTIFIER_VISIBILITY_MS by a
 *     worker that died (XAUTOCLAIM), and call nt_process.  A message is
 *     acknowledged (and deleted) once processed; one whose stores failed
 *     stays pending and is taken again after the visibility timeout.
 *
 * The fault switch NOTIFIER_FAULT=exit_before_relay (tests only) makes
 * the relay exit the process after it has read committed outbox rows and
 * before it writes them to Redis: the test of the outbox.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>

#include "cli.h"
#include "config.h"
#include "handlers.h"
#include "log.h"
#include "metrics.h"
#include "notifier.h"
#include "rpc/rpc.h"
#include "status.h"
#include "store.h"
#include "util.h"

#define DEV_UNSUB_KEY       "notifier-dev-unsubscribe-key-change-me"
#define INSTALLED_TEMPLATES "/etc/backends/templates"
#define MIGRATE_WAIT_S      60
#define RELAY_BATCH         500
#define RELAY_IDLE_MS       100
#define READ_BLOCK_MS       500
#define REDIS_TIMEOUT_MS    1000

static const char env_help[] =
    "  NOTIFIER_LISTEN             address to serve (tcp://127.0.0.1:7004)\n"
    "  NOTIFIER_ADDR               address `health` probes "
    "(tcp://127.0.0.1:7004)\n"
    "  NOTIFIER_WORKERS            RPC worker threads (16)\n"
    "  NOTIFIER_DELIVERY_WORKERS   delivery worker threads (8)\n"
    "  NOTIFIER_SEND_BATCH         most Sends one commit takes (256)\n"
    "  NOTIFIER_MAX_ATTEMPTS       attempts per channel before it is "
    "dead (3)\n"
    "  NOTIFIER_RETRY_BASE_MS      first backoff, doubled per attempt, "
    "jittered (1000)\n"
    "  NOTIFIER_RETRY_MAX_MS       longest backoff (300000)\n"
    "  NOTIFIER_VISIBILITY_MS      a message pending this long is taken "
    "over (30000)\n"
    "  NOTIFIER_THROTTLE_MAX       messages per user and channel per "
    "window; 0 off (20)\n"
    "  NOTIFIER_THROTTLE_WINDOW_S  the throttle's window (60)\n"
    "  NOTIFIER_DIGEST_WINDOW_S    low-priority messages of one type and "
    "group\n"
    "                              within this become one; 0 off (300)\n"
    "  NOTIFIER_FAILOVER_AFTER     consecutive failures that switch to "
    "the\n"
    "                              secondary provider (5)\n"
    "  NOTIFIER_FAILOVER_SKIP_MS   how long the primary is skipped "
    "(30000)\n"
    "  NOTIFIER_STREAM_MAX         stream length over which the relay "
    "waits (100000)\n"
    "  NOTIFIER_TEMPLATES          template directory (" INSTALLED_TEMPLATES
    "\n"
    "                              if present, else the source tree's "
    "deploy/templates)\n"
    "  NOTIFIER_UNSUBSCRIBE_KEY    HMAC key of unsubscribe links, at least "
    "32\n"
    "                              bytes (or NOTIFIER_UNSUBSCRIBE_KEY_FILE);"
    " needed\n"
    "                              unless BACKENDS_DEV_MODE=1\n"
    "  NOTIFIER_SMTP_URL, NOTIFIER_SMS_URL, ... the providers "
    "(services/notifier/channel.h)\n"
    "  PUBLIC_BASE_URL             base of unsubscribe links "
    "(http://localhost:8080)\n"
    "  REDIS_URL                   streams, due-time set "
    "(redis://127.0.0.1:6379)\n"
    "  DATABASE_URL                PostgreSQL (postgresql://backends:"
    "backends@127.0.0.1:5432/backends)\n"
    "  LOG_LEVEL                   debug | info | warn | error (info)\n";

struct dworker {
	pthread_t thread;
	int index;
	nt_worker w;
	struct nt_pg *pg;
	struct nt_redis *redis;
	struct nt_store store;
	struct nt_queue queue;
};

struct app {
	const char *database_url, *redis_url;
	nt_engine engine;
	struct nt_svc svc;
	struct nt_batcher *batcher;
	atomic_bool stop;
	int64_t visibility_ms;
	long long stream_max;
	bool fault_exit_before_relay;
	/* relay */
	pthread_t relay;
	pthread_mutex_t relay_mu;
	pthread_cond_t relay_cv;
	bool relay_kick;
	/* delivery */
	struct dworker *workers;
	int nworkers;
	/* health */
	pthread_mutex_t health_mu;
	struct nt_pg *health_pg;
	struct nt_redis *health_redis;
	cm_counter *processed, *relayed;
};

static struct app app;

static void
wake_relay(void)
{
	pthread_mutex_lock(&app.relay_mu);
	app.relay_kick = true;
	pthread_cond_signal(&app.relay_cv);
	pthread_mutex_unlock(&app.relay_mu);
}

static void
on_commit(void *arg)
{
	(void) arg;
	wake_relay();
}

/* Sleeps up to ms or until woken. */
static void
relay_wait(int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long) ms * 1000000L;
	while (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&app.relay_mu);
	if (!app.relay_kick && !atomic_load(&app.stop))
		pthread_cond_timedwait(&app.relay_cv, &app.relay_mu, &ts);
	app.relay_kick = false;
	pthread_mutex_unlock(&app.relay_mu);
}

/*
 * Moves outbox rows to Redis, oldest first: due ones onto their stream,
 * later ones into the due-time set; then deletes them.  A crash between
 * the two leaves rows that are moved again after the restart: a message
 * twice in a stream is harmless (the second finds nothing pending).
 * Returns the rows moved, or -1 when a store failed.
 */
static int
relay_outbox(struct nt_pg *pg, struct nt_redis *r)
{
	nt_outbox_row rows[RELAY_BATCH];
	int64_t now = cm_now_ms();
	size_t n = 0;

	for (int p = 1; p <= NT_PRIOS; p++) {
		long long len = 0;

		if (nt_redis_len(r, p, &len) != CM_OK)
			return (-1);
		if (len > app.stream_max)
			return (0); /* backpressure: the rows wait in PG */
	}
	if (nt_pg_outbox_take(pg, rows, RELAY_BATCH, &n) != CM_OK)
		return (-1);
	if (n > 0 && app.fault_exit_before_relay) {
		log_warnx("event=fault msg=\"exit between commit and stream "
		          "write\" rows=%zu",
		          n);
		usleep(300 * 1000); /* let the accepted answers go out */
		_exit(17);
	}
	if (nt_redis_relay(r, rows, n, now) != CM_OK)
		return (-1);
	if (nt_pg_outbox_done(pg, rows, n) != CM_OK)
		return (-1);
	cm_counter_add(app.relayed, n);
	return ((int) n);
}

static void *
relay_main(void *arg)
{
	struct nt_pg *pg = nt_pg_new(app.database_url);
	struct nt_redis *r =
	    nt_redis_new(app.redis_url, REDIS_TIMEOUT_MS, "relay");
	size_t moved;
	int n;

	(void) arg;
	while (!atomic_load(&app.stop)) {
		nt_pg_set_deadline(pg, 0);
		do {
			n = relay_outbox(pg, r);
		} while (n == RELAY_BATCH && !atomic_load(&app.stop));
		do {
			moved = 0;
			if (nt_redis_move_due(r, cm_now_ms(), RELAY_BATCH,
			                      &moved) != CM_OK)
				break;
		} while (moved == RELAY_BATCH && !atomic_load(&app.stop));
		relay_wait(n < 0 ? 1000 : RELAY_IDLE_MS);
	}
	nt_pg_free(pg);
	nt_redis_free(r);
	return (NULL);
}

static void
handle(struct dworker *d, const nt_msg *m)
{
	int rv = CM_OK;

	if (m->id > 0) {
		nt_pg_set_deadline(d->pg, 0);
		rv = nt_process(&app.engine, &d->w, m->id, cm_now_ms());
	}
	if (rv == CM_OK) {
		(void) nt_redis_ack(d->redis, m);
		cm_counter_add(app.processed, 1);
	} else {
		log_warnx("event=process_failed id=%" PRId64 " rv=%s", m->id,
		          cm_code_name(rv));
	}
}

/* First choices of the weighted order: high 3, normal 2, low 1 in 6. */
static const int first_choice[6] = {1, 2, 1, 3, 1, 2};

static void *
dworker_main(void *arg)
{
	struct dworker *d = arg;
	unsigned slot = (unsigned) d->index;
	int64_t next_claim = cm_mono_ms() + 200 + d->index * 97 % 1000;
	nt_msg msgs[8];
	size_t n;

	while (!atomic_load(&app.stop)) {
		int order[NT_PRIOS], k = 0;

		if (cm_mono_ms() >= next_claim) {
			for (int p = 1; p <= NT_PRIOS; p++)
				if (nt_redis_autoclaim(d->redis, p,
				                       app.visibility_ms, msgs,
				                       4, &n) == CM_OK)
					for (size_t i = 0; i < n; i++)
						handle(d, &msgs[i]);
			next_claim = cm_mono_ms() + (app.visibility_ms / 2 > 500
			                                 ? app.visibility_ms / 2
			                                 : 500);
		}
		order[k++] = first_choice[slot++ % 6];
		for (int p = 1; p <= NT_PRIOS; p++)
			if (p != order[0])
				order[k++] = p;
		if (nt_redis_read_first(d->redis, order, NT_PRIOS, msgs, 1,
		                        &n) != CM_OK) {
			usleep(200 * 1000);
			continue;
		}
		for (size_t j = 0; j < n; j++)
			handle(d, &msgs[j]);
		if (n > 0)
			continue;
		if (nt_redis_read(d->redis, 0, READ_BLOCK_MS, msgs, 1, &n) !=
		    CM_OK) {
			usleep(200 * 1000);
			continue;
		}
		for (size_t j = 0; j < n; j++)
			handle(d, &msgs[j]);
	}
	return (NULL);
}

static void
workers_start(int n)
{
	char host[64], name[96], err[256];

	if (gethostname(host, sizeof(host)) != 0)
		cm_strlcpy(host, "host", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	app.nworkers = n;
	if ((app.workers = calloc((size_t) n, sizeof(*app.workers))) == NULL)
		fatal("event=workers_start");
	for (int i = 0; i < n; i++) {
		struct dworker *d = &app.workers[i];

		d->index = i;
		snprintf(name, sizeof(name), "%s-%d-w%d", host, (int) getpid(),
		         i);
		d->pg = nt_pg_new(app.database_url);
		d->redis = nt_redis_new(app.redis_url,
		                        READ_BLOCK_MS + REDIS_TIMEOUT_MS, name);
		nt_pg_store(d->pg, &d->store);
		nt_redis_queue(d->redis, &d->queue);
		d->w.store = &d->store;
		d->w.queue = &d->queue;
		if (nt_providers_make(d->w.primary, d->w.secondary, err,
		                      sizeof(err)) != 0)
			fatalx("event=providers err=\"%s\"", err);
		if (cm_random(&d->w.rng, sizeof(d->w.rng)) != 0)
			d->w.rng = (uint64_t) cm_now_ms() ^ (uint64_t) i;
		cm_arena_init(&d->w.arena);
		if (pthread_create(&d->thread, NULL, dworker_main, d) != 0)
			fatalx("event=workers_start err=pthread_create");
	}
}

static void
workers_stop(void)
{
	for (int i = 0; i < app.nworkers; i++) {
		struct dworker *d = &app.workers[i];

		pthread_join(d->thread, NULL);
		nt_providers_free(d->w.primary, d->w.secondary);
		cm_arena_fini(&d->w.arena);
		nt_pg_free(d->pg);
		nt_redis_free(d->redis);
	}
	free(app.workers);
}

static void *
worker_init(void *arg)
{
	struct nt_pg *p = nt_pg_new(app.database_url);

	(void) arg;
	(void) nt_pg_ping(p);
	return (p);
}

static void
worker_fini(void *worker, void *arg)
{
	(void) arg;
	nt_pg_free(worker);
}

/*
 * SERVING while PostgreSQL and Redis answer: without PostgreSQL nothing is
 * accepted, without Redis nothing is delivered.  States come from what the
 * connections have seen; one check at a time probes (trylock).
 */
static size_t
health(void *arg, cm_health_dep *deps, size_t max, bool *serving)
{
	const char *pg_detail = NULL;
	bool pg, redis, probe;
	size_t n = 0;

	(void) arg;
	probe = pthread_mutex_trylock(&app.health_mu) == 0;
	pg = nt_pg_health(app.health_pg, probe, &pg_detail);
	redis = nt_redis_health(app.health_redis, probe);
	if (probe)
		pthread_mutex_unlock(&app.health_mu);
	if (n < max)
		deps[n++] = (cm_health_dep){
		    .name = "postgres", .ok = pg, .detail = pg_detail};
	if (n < max)
		deps[n++] = (cm_health_dep){
		    .name = "redis",
		    .ok = redis,
		    .detail =
		        redis ? NULL : "unreachable: nothing is delivered"};
	*serving = pg && redis;
	return (n);
}

static void
migrate(void)
{
	int64_t deadline = cm_mono_ms() + MIGRATE_WAIT_S * 1000;
	int backoff_ms = 100;

	while (nt_pg_migrate(app.database_url) != 0) {
		if (cm_mono_ms() > deadline)
			fatalx("event=migrate msg=\"cannot migrate the "
			       "schema\"");
		usleep((useconds_t) backoff_ms * 1000);
		if ((backoff_ms *= 2) > 2000)
			backoff_ms = 2000;
	}
}

/* The consumer groups, waiting for Redis like migrate() for PostgreSQL. */
static void
init_groups(void)
{
	int64_t deadline = cm_mono_ms() + MIGRATE_WAIT_S * 1000;

	while (nt_redis_init_groups(app.health_redis) != CM_OK) {
		if (cm_mono_ms() > deadline)
			fatalx("event=init_groups msg=\"cannot reach Redis\"");
		usleep(500 * 1000);
	}
}

static const char *
templates_dir(void)
{
	const char *p = cm_env_str("NOTIFIER_TEMPLATES", NULL);

	if (p != NULL)
		return (p);
	if (access(INSTALLED_TEMPLATES, R_OK) == 0)
		return (INSTALLED_TEMPLATES);
	return (NT_SOURCE_TEMPLATES);
}

static int
serve(void)
{
	nt_engine_cfg ec;
	cm_rpc_server_config sc;
	cm_rpc_server *server;
	const char *listen, *fault;
	long batch;
	int rv, sig, workers, dworkers;

	log_init("notifier");
	memset(&ec, 0, sizeof(ec));
	listen = cm_env_str("NOTIFIER_LISTEN", "tcp://127.0.0.1:7004");
	workers = (int) cm_env_int("NOTIFIER_WORKERS", 16, 1, 1024);
	dworkers = (int) cm_env_int("NOTIFIER_DELIVERY_WORKERS", 8, 1, 256);
	batch = cm_env_int("NOTIFIER_SEND_BATCH", 256, 1, 10000);
	ec.max_attempts = (int) cm_env_int("NOTIFIER_MAX_ATTEMPTS", 3, 1, 100);
	ec.backoff_base_ms =
	    cm_env_int("NOTIFIER_RETRY_BASE_MS", 1000, 1, 3600000);
	ec.backoff_max_ms =
	    cm_env_int("NOTIFIER_RETRY_MAX_MS", 300000, 1, 86400000);
	ec.throttle_max =
	    (int) cm_env_int("NOTIFIER_THROTTLE_MAX", 20, 0, 1000000);
	ec.throttle_window_ms =
	    cm_env_int("NOTIFIER_THROTTLE_WINDOW_S", 60, 1, 86400) * 1000;
	ec.digest_window_ms =
	    cm_env_int("NOTIFIER_DIGEST_WINDOW_S", 300, 0, 86400) * 1000;
	ec.failover_threshold =
	    (int) cm_env_int("NOTIFIER_FAILOVER_AFTER", 5, 1, 1000);
	ec.failover_skip_ms =
	    cm_env_int("NOTIFIER_FAILOVER_SKIP_MS", 30000, 1, 86400000);
	ec.templates_dir = templates_dir();
	ec.public_base_url =
	    cm_env_str("PUBLIC_BASE_URL", "http://localhost:8080");
	ec.unsubscribe_key =
	    cm_env_secret("NOTIFIER_UNSUBSCRIBE_KEY", DEV_UNSUB_KEY);
	app.visibility_ms =
	    cm_env_int("NOTIFIER_VISIBILITY_MS", 30000, 100, 86400000);
	app.stream_max =
	    cm_env_int("NOTIFIER_STREAM_MAX", 100000, 100, 100000000);
	fault = cm_env_str("NOTIFIER_FAULT", "");
	if (strcmp(fault, "exit_before_relay") == 0)
		app.fault_exit_before_relay = true;
	else if (*fault != '\0')
		fatalx("event=config msg=\"NOTIFIER_FAULT: unknown fault\"");
	app.redis_url = cm_env_str("REDIS_URL", "redis://127.0.0.1:6379");
	app.database_url = cm_env_str(
	    "DATABASE_URL",
	    "postgresql://backends:backends@127.0.0.1:5432/backends");
	nt_engine_init(&app.engine, &ec);
	app.processed = cm_counter_get("notifier_processed_total", "",
	                               "Stream messages processed");
	app.relayed = cm_counter_get("notifier_relayed_total", "",
	                             "Outbox rows moved to Redis");

	migrate();
	cm_signals_block();
	pthread_mutex_init(&app.health_mu, NULL);
	pthread_mutex_init(&app.relay_mu, NULL);
	pthread_cond_init(&app.relay_cv, NULL);
	app.health_pg = nt_pg_new(app.database_url);
	app.health_redis =
	    nt_redis_new(app.redis_url, REDIS_TIMEOUT_MS, "health");
	init_groups();

	app.batcher =
	    nt_batcher_start(app.database_url, (size_t) batch, on_commit, NULL);
	app.svc.engine = &app.engine;
	app.svc.batcher = app.batcher;
	app.svc.wake_relay = wake_relay;
	app.svc.unsubscribe_key = ec.unsubscribe_key;
	app.svc.outbound_allow = cm_env_str("NOTIFIER_OUTBOUND_ALLOW", NULL);
	if (pthread_create(&app.relay, NULL, relay_main, NULL) != 0)
		fatalx("event=relay_start");
	workers_start(dworkers);

	memset(&sc, 0, sizeof(sc));
	sc.url = listen;
	sc.services = &notifier_rpc_service;
	sc.nservices = 1;
	sc.nworkers = workers;
	sc.worker_init = worker_init;
	sc.worker_fini = worker_fini;
	sc.health = health;
	sc.arg = &app.svc;
	if ((rv = cm_rpc_server_start(&server, &sc)) != 0)
		fatalx("event=listen addr=%s err=\"%s\"", listen,
		       nng_strerror(rv));
	log_info("event=serving addr=%s workers=%d delivery_workers=%d "
	         "templates=%s",
	         listen, workers, dworkers, ec.templates_dir);

	sig = cm_signals_wait();
	log_info("event=stopping signal=%d", sig);
	cm_rpc_server_stop(server);
	nt_batcher_stop(app.batcher);
	atomic_store(&app.stop, true);
	wake_relay();
	pthread_join(app.relay, NULL);
	workers_stop();
	nt_pg_free(app.health_pg);
	nt_redis_free(app.health_redis);
	pthread_cond_destroy(&app.relay_cv);
	pthread_mutex_destroy(&app.relay_mu);
	pthread_mutex_destroy(&app.health_mu);
	nt_engine_fini(&app.engine);
	log_info("event=stopped");
	return (0);
}

int
main(int argc, char **argv)
{
	static const cm_cli cli = {
	    .name = "notifier",
	    .summary = "the notification service (notifier.Notifier over NNG)",
	    .env_help = env_help,
	    .addr_env = "NOTIFIER_ADDR",
	    .addr_default = "tcp://127.0.0.1:7004",
	    .health = NULL,
	    .commands = NULL,
	    .serve = serve,
	};

	return (cm_cli_main(&cli, argc, argv));
}
