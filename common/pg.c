/*
 * A PostgreSQL connection that reconnects by itself, and the start-up
 * migration.
 *
 * Never a hang.  A PostgreSQL that stops answering without closing its
 * sockets (a stopped or wedged server, a network that drops packets) would
 * leave a thread in PQexec forever: TCP keepalives take minutes, and
 * statement_timeout is enforced by the backend, which is the party that
 * stopped.  So nothing here blocks in libpq.  Connections are made with
 * PQconnectStartParams and PQconnectPoll, statements sent with PQsend* on
 * a non-blocking connection and their results read with PQconsumeInput,
 * and every wait in between is a poll() on PQsocket bounded by the
 * caller's deadline (cm_pg_set_deadline: what is left of the RPC being
 * served) and by CM_PG_WAIT_MAX_MS from the start of the statement (all
 * a caller without a deadline gets).  Connecting is bounded by
 * PG_CONNECT_MAX_MS as well.
 *
 * A statement that has not answered by the deadline is abandoned by
 * closing its connection (PQfinish, which on a non-blocking connection
 * does not wait either); the next call connects anew.  PQcancel is no way
 * out: it opens a connection of its own and waits for it with no bound,
 * and a stopped server would not act on it anyway.  Whether an abandoned
 * statement ran is unknowable, so nothing is retried: the caller answers
 * UNAVAILABLE.  Lock waits of a live server are the server's to bound:
 * connections set lock_timeout (1 s), which comes back as an SQL error
 * and leaves the connection and the breaker alone.
 *
 * The breaker.  Every cm_pg of one connection string in the process shares
 * one (a service has a connection per worker thread, and without sharing
 * each of them would pay its own timeout before backing off):
 *
 *   - closed: statements go to the server;
 *   - open: a connection attempt failed, or a statement got no answer for
 *     PG_TRIP_MIN_MS or more before its deadline.  For the backoff (100 ms,
 *     doubling to 2 s while failures go on) every call fails at once with
 *     NULL, connections in hand or not;
 *   - half-open: after the backoff, one caller (the probe) goes through,
 *     the others still fail at once; the probe's answer closes the
 *     breaker, its failure opens it again for twice as long.
 *
 * So while PostgreSQL is unwell the whole process pays about one timeout
 * per backoff period, and callers fail fast instead of queueing.  A
 * timeout shorter than PG_TRIP_MIN_MS says more about the caller's
 * deadline than about the server: it costs the connection but decides
 * nothing.  A connection that breaks (EOF, reset: the server restarted,
 * or an administrator ended the backend) is replaced at once, without
 * opening the breaker: a restarted server is best found by connecting.
 *
 * The breaker also holds the last outcome (when, and which failure), which
 * is what a service's health check reports (cm_pg_state, cm_pg_check),
 * so asking for health costs no round trip while the process talks to the
 * server anyway.
 *
 * Before using a connection that looks fine, libpq reads whatever the
 * server sent while it sat idle (PQconsumeInput never blocks).  A backend
 * terminated by a restart has sent its FATAL message and closed the
 * socket; this notices it, so the first statement after a restart does not
 * fail needlessly.
 *
 * Name lookup is the one wait not bounded here: libpq resolves a host name
 * inside PQconnectStartParams.  Slow lookups are logged.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pg.h"
#include "util.h"

#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 2000
#define PG_CONNECT_MAX_MS 3000
#define PG_TRIP_MIN_MS    250
#define PG_MIGRATE_MS     30000
/* Sent at connect: a lock wait ends after 1 s (see pg_connect). */
#define PG_OPTIONS    "-c lock_timeout=1000"
#define PG_BREAKERS   16
#define PG_OUTCOME_MS 100
/* A probe that never reports (it cannot happen; a safety net) releases
 * the half-open breaker after this long. */
#define PG_PROBE_HOLD_MS (CM_PG_WAIT_MAX_MS + PG_CONNECT_MAX_MS)

enum pg_err { PG_ERR_NONE, PG_ERR_CONNECT, PG_ERR_TIMEOUT, PG_ERR_LOST };

static const char *const pg_err_text[] = {
    [PG_ERR_NONE] = NULL,
    [PG_ERR_CONNECT] = "cannot connect",
    [PG_ERR_TIMEOUT] = "did not answer in time",
    [PG_ERR_LOST] = "connection lost",
};

static const char *const pg_err_open[] = {
    [PG_ERR_NONE] = "breaker open",
    [PG_ERR_CONNECT] = "cannot connect (breaker open)",
    [PG_ERR_TIMEOUT] = "did not answer in time (breaker open)",
    [PG_ERR_LOST] = "connection lost (breaker open)",
};

/* The shared state of one PostgreSQL (by connection string). */
struct pg_breaker {
	char *conninfo;
	_Atomic int64_t until_ms; /* 0 closed; open before, half-open after */
	_Atomic int backoff_ms;   /* the next opening's length */
	_Atomic int64_t last_ms;  /* monotonic time of the last outcome */
	_Atomic int last_err;     /* its enum pg_err */
};

static struct pg_breaker breakers[PG_BREAKERS];
static size_t nbreakers;
static pthread_mutex_t breakers_mu = PTHREAD_MUTEX_INITIALIZER;

struct cm_pg {
	char *conninfo;
	char *appname; /* NULL: none */
	PGconn *conn;
	struct pg_breaker *br;
	int64_t deadline_ms; /* cm_mono_ms; 0: none */
	bool probing;        /* this cm_pg holds the half-open breaker */
	bool health;         /* in cm_pg_check: timeouts do not trip */
};

/* The breaker for conninfo, made on first use; they live as long as the
 * process (one or two connection strings at most). */
static struct pg_breaker *
pg_breaker_get(const char *conninfo)
{
	struct pg_breaker *br = NULL;

	pthread_mutex_lock(&breakers_mu);
	for (size_t i = 0; i < nbreakers && br == NULL; i++)
		if (strcmp(breakers[i].conninfo, conninfo) == 0)
			br = &breakers[i];
	if (br == NULL) {
		if (nbreakers == PG_BREAKERS)
			fatalx("event=pg_new msg=\"too many connection "
			       "strings\"");
		br = &breakers[nbreakers];
		if ((br->conninfo = strdup(conninfo)) == NULL)
			fatal("event=pg_new");
		atomic_init(&br->until_ms, 0);
		atomic_init(&br->backoff_ms, PG_BACKOFF_MIN_MS);
		atomic_init(&br->last_ms, 0);
		atomic_init(&br->last_err, PG_ERR_NONE);
		nbreakers++;
	}
	pthread_mutex_unlock(&breakers_mu);
	return (br);
}

cm_pg *
cm_pg_new(const char *conninfo, const char *appname)
{
	cm_pg *p;

	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (p->conninfo = strdup(conninfo)) == NULL ||
	    (appname != NULL && (p->appname = strdup(appname)) == NULL))
		fatal("event=pg_new");
	p->br = pg_breaker_get(conninfo);
	return (p);
}

static void
pg_drop(cm_pg *p)
{
	if (p->conn != NULL) {
		PQfinish(p->conn);
		p->conn = NULL;
	}
}

void
cm_pg_free(cm_pg *p)
{
	if (p == NULL)
		return;
	pg_drop(p);
	free(p->conninfo);
	free(p->appname);
	free(p);
}

void
cm_pg_set_deadline(cm_pg *p, int64_t deadline_ms)
{
	p->deadline_ms = deadline_ms;
}

int64_t
cm_pg_deadline(const cm_pg *p)
{
	int64_t cap = cm_mono_ms() + CM_PG_WAIT_MAX_MS;

	return (p->deadline_ms != 0 && p->deadline_ms < cap ? p->deadline_ms
	                                                    : cap);
}

/* Notices are the server's chatter ("schema already exists, skipping"). */
static void
pg_notice(void *arg, const char *msg)
{
	(void) arg;
	log_debug("event=pg_notice msg=\"%.*s\"", (int) strcspn(msg, "\n"),
	          msg);
}

/*
 * The first line of the connection's last error, without quotes (the
 * message goes into a quoted logfmt field), into buf.
 */
static const char *
pg_errline(PGconn *conn, char *buf, size_t len)
{
	const char *m;
	size_t i;

	m = conn != NULL ? PQerrorMessage(conn) : "out of memory";
	for (i = 0; i + 1 < len && m[i] != '\0' && m[i] != '\n'; i++)
		buf[i] = m[i] == '"' ? '\'' : m[i];
	buf[i] = '\0';
	return (buf);
}

/* ---- the breaker ---- */

/*
 * Whether a call may use the server now (see the top of the file).  A
 * caller that finds the breaker half-open becomes the probe, unless it
 * cannot wait PG_TRIP_MIN_MS: its timeout would prove nothing.
 */
static bool
pg_admit(cm_pg *p, int64_t until)
{
	struct pg_breaker *br = p->br;
	int64_t u = atomic_load(&br->until_ms), now;

	if (u == 0)
		return (true);
	now = cm_mono_ms();
	if (now < u || until - now < PG_TRIP_MIN_MS)
		return (false);
	if (!atomic_compare_exchange_strong(&br->until_ms, &u,
	                                    now + PG_PROBE_HOLD_MS))
		return (false); /* another caller took the probe */
	p->probing = true;
	return (true);
}

/* The server answered: the breaker closes. */
static void
pg_success(cm_pg *p)
{
	struct pg_breaker *br = p->br;
	int64_t now = cm_mono_ms();

	p->probing = false;
	/* Every thread shares this line: an answer after answers recorded
	 * less than PG_OUTCOME_MS ago changes nothing worth a write. */
	if (atomic_load(&br->last_err) != PG_ERR_NONE ||
	    now - atomic_load(&br->last_ms) >= PG_OUTCOME_MS) {
		atomic_store(&br->last_err, PG_ERR_NONE);
		atomic_store(&br->last_ms, now);
	}
	if (atomic_load(&br->until_ms) != 0 &&
	    atomic_exchange(&br->until_ms, 0) != 0) {
		atomic_store(&br->backoff_ms, PG_BACKOFF_MIN_MS);
		log_info("event=pg_up");
	}
}

/*
 * A call failed with err; trip: whether it opens the breaker (a failed
 * probe always does).  The backoff doubles only when the breaker opens,
 * not for every thread that fails while it is open.
 */
static void
pg_failure(cm_pg *p, enum pg_err err, bool trip)
{
	struct pg_breaker *br = p->br;
	int64_t now = cm_mono_ms(), u;
	bool probe = p->probing;
	int b;

	p->probing = false;
	atomic_store(&br->last_err, (int) err);
	atomic_store(&br->last_ms, now);
	if (!trip && !probe)
		return;
	u = atomic_load(&br->until_ms);
	if (u != 0 && now < u && !probe)
		return; /* already open */
	b = atomic_load(&br->backoff_ms);
	if (!atomic_compare_exchange_strong(&br->until_ms, &u, now + b))
		return; /* another thread opened it meanwhile */
	atomic_store(&br->backoff_ms,
	             b * 2 > PG_BACKOFF_MAX_MS ? PG_BACKOFF_MAX_MS : b * 2);
	if (u == 0)
		log_warnx("event=pg_down err=\"%s\" backoff_ms=%d",
		          pg_err_text[err], b);
}

/*
 * No answer by the deadline (to a connection attempt or a statement) for
 * a wait that began at t0: see the top of the file.  The caller has
 * closed the connection.
 */
static void
pg_no_answer(cm_pg *p, enum pg_err err, int64_t t0)
{
	int64_t waited = cm_mono_ms() - t0;

	if (waited < PG_TRIP_MIN_MS && !p->probing)
		return; /* the caller's deadline was too short to tell */
	pg_failure(p, err, !p->health);
}

/* ---- connecting ---- */

/*
 * Waits until the connection's socket is ready for events or until
 * (monotonic ms).  Returns the revents, 0 on timeout, -1 on error.
 */
static int
pg_wait(PGconn *conn, short events, int64_t until)
{
	struct pollfd pfd;
	int64_t left;
	int rv;

	if ((pfd.fd = PQsocket(conn)) < 0)
		return (-1);
	pfd.events = events;
	for (;;) {
		pfd.revents = 0;
		if ((left = until - cm_mono_ms()) <= 0)
			return (0);
		rv = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int) left);
		if (rv > 0)
			return ((pfd.revents & POLLNVAL) != 0 ? -1
			                                      : pfd.revents);
		if (rv < 0 && errno != EINTR)
			return (-1);
	}
}

/*
 * Connects, waiting at most until `until` or PG_CONNECT_MAX_MS, whichever
 * comes first.  Our own settings come first so that anything the
 * connection string names (it is expanded in place of "dbname") overrides
 * them; libpq ignores connect_timeout with PQconnectPoll, hence the bound
 * here.  Keepalives and tcp_user_timeout still help an idle connection
 * notice a vanished server.  lock_timeout makes a live server end a lock
 * wait itself, with an SQL error (55P03), before the caller's deadline
 * would close the connection and open the breaker over a server that is
 * fine.  Returns true with p->conn set.
 */
static bool
pg_connect(cm_pg *p, int64_t until)
{
	static const char *const keys[] = {
	    "keepalives",       "keepalives_idle",  "keepalives_interval",
	    "keepalives_count", "tcp_user_timeout", "options",
	    "application_name", "dbname",           NULL};
	const char *v[] = {"1",        "30",       "5",         "3", "10000",
	                   PG_OPTIONS, p->appname, p->conninfo, NULL};
	PostgresPollingStatusType st;
	PGconn *conn;
	char err[256];
	int64_t t0 = cm_mono_ms(), took;
	int ev = 1;
	bool quiet;

	_Static_assert(CM_ARRAY_LEN(keys) == CM_ARRAY_LEN(v), "keys, values");
	if (t0 + PG_CONNECT_MAX_MS < until)
		until = t0 + PG_CONNECT_MAX_MS;
	conn = PQconnectStartParams(keys, v, 1);
	/* The name lookup happens in there, unbounded: say when it was
	 * slow (a resolver that drops queries costs 5 s a try). */
	if ((took = cm_mono_ms() - t0) >= 500)
		log_warnx("event=pg_connect_slow ms=%lld", (long long) took);
	st = conn == NULL || PQstatus(conn) == CONNECTION_BAD
	         ? PGRES_POLLING_FAILED
	         : PGRES_POLLING_WRITING;
	while (st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING) {
		ev = pg_wait(conn,
		             st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
		             until);
		if (ev <= 0)
			break;
		st = PQconnectPoll(conn);
	}
	if (st == PGRES_POLLING_OK && PQsetnonblocking(conn, 1) == 0) {
		PQsetNoticeProcessor(conn, pg_notice, NULL);
		p->conn = conn;
		pg_success(p);
		return (true);
	}
	/* Logged when the breaker is closed: once per outage, not at every
	 * probe. */
	quiet = atomic_load(&p->br->until_ms) != 0;
	if (ev == 0) {
		if (!quiet)
			log_warnx("event=pg_connect_failed err=\"no answer "
			          "within %lld ms\"",
			          (long long) (cm_mono_ms() - t0));
		PQfinish(conn);
		pg_no_answer(p, PG_ERR_CONNECT, t0);
		return (false);
	}
	/* Refused, or turned away (authentication, too many clients): a
	 * verdict, so the breaker opens whatever the deadline. */
	if (!quiet)
		log_warnx("event=pg_connect_failed err=\"%s\"",
		          pg_errline(conn, err, sizeof(err)));
	PQfinish(conn); /* NULL is fine */
	pg_failure(p, PG_ERR_CONNECT, true);
	return (false);
}

/* The connection broke in use: drop it; the next call reconnects. */
static void
pg_lost(cm_pg *p)
{
	char err[256];

	log_warnx("event=pg_lost err=\"%s\"",
	          pg_errline(p->conn, err, sizeof(err)));
	pg_drop(p);
	pg_failure(p, PG_ERR_LOST, false);
}

/*
 * A connection to run a statement on, or NULL (fast while the breaker is
 * open).  A connection the server closed while it sat idle is replaced.
 */
static PGconn *
pg_ready(cm_pg *p, int64_t until)
{
	char err[256];

	/* An expired caller must not cost the connection. */
	if (until <= cm_mono_ms() || !pg_admit(p, until))
		return (NULL);
	if (p->conn != NULL) {
		/*
		 * Twice: a terminated backend's FATAL message and its EOF may
		 * take one read each (the first read returns on data).
		 */
		if (PQstatus(p->conn) == CONNECTION_OK &&
		    PQconsumeInput(p->conn) == 1 &&
		    PQconsumeInput(p->conn) == 1 &&
		    PQstatus(p->conn) == CONNECTION_OK)
			return (p->conn);
		log_warnx("event=pg_lost err=\"%s\"",
		          pg_errline(p->conn, err, sizeof(err)));
		pg_drop(p);
	}
	if (!pg_connect(p, until))
		return (NULL);
	return (p->conn);
}

/* ---- statements ---- */

enum pg_kind { PG_SIMPLE, PG_PARAMS, PG_PREPARED, PG_PREPARE };

struct pg_query {
	enum pg_kind kind;
	const char *name; /* PG_PREPARED, PG_PREPARE */
	const char *sql;  /* PG_SIMPLE, PG_PARAMS, PG_PREPARE */
	int nparams;
	const char *const *params;
};

/*
 * Sends q on p->conn (which pg_ready gave) and reads its results, waiting
 * at most until `until`.  Returns the result, as PQexec would: the last
 * one, or the first error; NULL when the connection broke or the deadline
 * passed (reported to the breaker; the connection is gone).
 */
static PGresult *
pg_run(cm_pg *p, const struct pg_query *q, int64_t until)
{
	PGconn *conn = p->conn;
	PGresult *res = NULL, *r;
	int64_t t0 = cm_mono_ms();
	int sent = 0, rv, ev;

	switch (q->kind) {
	case PG_SIMPLE:
		sent = PQsendQuery(conn, q->sql);
		break;
	case PG_PARAMS:
		sent = PQsendQueryParams(conn, q->sql, q->nparams, NULL,
		                         q->params, NULL, NULL, 0);
		break;
	case PG_PREPARED:
		sent = PQsendQueryPrepared(conn, q->name, q->nparams, q->params,
		                           NULL, NULL, 0);
		break;
	case PG_PREPARE:
		sent = PQsendPrepare(conn, q->name, q->sql, q->nparams, NULL);
		break;
	}
	if (!sent)
		goto lost;
	/* What does not fit the socket's buffer waits in libpq's. */
	while ((rv = PQflush(conn)) == 1) {
		if ((ev = pg_wait(conn, POLLIN | POLLOUT, until)) == 0)
			goto timeout;
		if (ev < 0 || ((ev & POLLIN) != 0 && !PQconsumeInput(conn)))
			goto lost;
	}
	if (rv < 0)
		goto lost;
	for (;;) {
		while (PQisBusy(conn)) {
			if ((ev = pg_wait(conn, POLLIN, until)) == 0)
				goto timeout;
			if (ev < 0 || !PQconsumeInput(conn))
				goto lost;
		}
		if ((r = PQgetResult(conn)) == NULL)
			break;
		if (res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR) {
			PQclear(r);
			continue;
		}
		PQclear(res);
		res = r;
	}
	if (res == NULL || PQstatus(conn) != CONNECTION_OK)
		goto lost;
	pg_success(p);
	return (res);
timeout:
	PQclear(res);
	log_warnx("event=pg_timeout ms=%lld", (long long) (cm_mono_ms() - t0));
	pg_drop(p);
	pg_no_answer(p, PG_ERR_TIMEOUT, t0);
	return (NULL);
lost:
	PQclear(res);
	pg_lost(p);
	return (NULL);
}

/* SQLSTATE of a failed result, "" if none. */
static const char *
pg_sqlstate(const PGresult *res)
{
	const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return (s != NULL ? s : "");
}

PGresult *
cm_pg_exec(cm_pg *p, const char *sql, int nparams, const char *const *params)
{
	const struct pg_query q = {.kind = PG_PARAMS,
	                           .sql = sql,
	                           .nparams = nparams,
	                           .params = params};
	int64_t until = cm_pg_deadline(p);

	if (pg_ready(p, until) == NULL)
		return (NULL);
	return (pg_run(p, &q, until));
}

/*
 * Runs the prepared statement; if the server does not know it (a fresh
 * connection: SQLSTATE 26000), prepares it and runs it again, all within
 * one deadline.
 */
PGresult *
cm_pg_exec_prepared(cm_pg *p, const char *name, const char *sql, int nparams,
                    const char *const *params)
{
	const struct pg_query run = {.kind = PG_PREPARED,
	                             .name = name,
	                             .nparams = nparams,
	                             .params = params};
	const struct pg_query prep = {
	    .kind = PG_PREPARE, .name = name, .sql = sql, .nparams = nparams};
	int64_t until = cm_pg_deadline(p);
	PGresult *res;

	if (pg_ready(p, until) == NULL)
		return (NULL);
	if ((res = pg_run(p, &run, until)) == NULL ||
	    PQresultStatus(res) != PGRES_FATAL_ERROR ||
	    strcmp(pg_sqlstate(res), "26000") != 0)
		return (res);
	PQclear(res);
	if ((res = pg_run(p, &prep, until)) == NULL)
		return (NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		return (res); /* a bug in our SQL: report it */
	PQclear(res);
	return (pg_run(p, &run, until));
}

bool
cm_pg_ping(cm_pg *p)
{
	PGresult *res = cm_pg_exec(p, "SELECT 1", 0, NULL);
	bool up = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK;

	PQclear(res);
	return (up);
}

/* ---- health ---- */

bool
cm_pg_state(const cm_pg *p, int64_t *age_ms, const char **detail)
{
	struct pg_breaker *br = p->br;
	int64_t last = atomic_load(&br->last_ms);
	int err = atomic_load(&br->last_err);

	if (err < PG_ERR_NONE || err > PG_ERR_LOST)
		err = PG_ERR_NONE;
	*age_ms = last == 0 ? INT64_MAX : cm_mono_ms() - last;
	if (atomic_load(&br->until_ms) != 0) {
		*detail = pg_err_open[err];
		return (false);
	}
	*detail = pg_err_text[err];
	return (err == PG_ERR_NONE);
}

bool
cm_pg_check(cm_pg *p, int max_age_ms, int timeout_ms, const char **detail)
{
	int64_t age, saved;
	bool up = cm_pg_state(p, &age, detail);

	if (age < max_age_ms)
		return (up);
	/* With the breaker open, pg_admit sends nothing. */
	saved = p->deadline_ms;
	p->deadline_ms = cm_mono_ms() + timeout_ms;
	p->health = true;
	(void) cm_pg_ping(p);
	p->health = false;
	p->deadline_ms = saved;
	return (cm_pg_state(p, &age, detail));
}

/* ---- migration ---- */

/* Runs one command of the migration; false (logged) unless it succeeded. */
static bool
pg_migrate_step(cm_pg *p, const char *what, const struct pg_query *q,
                int64_t until)
{
	ExecStatusType st;
	PGresult *res;

	if (p->conn == NULL || (res = pg_run(p, q, until)) == NULL) {
		log_warnx("event=pg_migrate step=%s err=\"connection lost\"",
		          what);
		return (false);
	}
	st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		log_warnx("event=pg_migrate step=%s err=\"%.*s\"", what,
		          (int) strcspn(PQresultErrorMessage(res), "\n\""),
		          PQresultErrorMessage(res));
		PQclear(res);
		return (false);
	}
	PQclear(res);
	return (true);
}

/*
 * One transaction: take the advisory lock for the schema (so concurrent
 * instances starting together serialise here, and the later ones find
 * everything in place), create the schema, make it the search path for the
 * rest of the transaction, apply sql (which may hold many statements:
 * the simple query protocol runs them all), commit.
 */
int
cm_pg_migrate(cm_pg *p, const char *schema, const char *sql)
{
	const char *params[1] = {schema};
	int64_t until =
	    p->deadline_ms != 0 ? p->deadline_ms : cm_mono_ms() + PG_MIGRATE_MS;
	/* DDL may wait for locks held by a live service: longer than the
	 * connection's lock_timeout, within the migration's own bound. */
	struct pg_query begin = {
	    .kind = PG_SIMPLE, .sql = "BEGIN; SET LOCAL lock_timeout = '25s'"};
	struct pg_query lock = {
	    .kind = PG_PARAMS,
	    .sql = "SELECT pg_advisory_xact_lock(hashtext($1))",
	    .nparams = 1,
	    .params = params};
	struct pg_query create = {.kind = PG_SIMPLE};
	struct pg_query apply = {.kind = PG_SIMPLE, .sql = sql};
	struct pg_query commit = {.kind = PG_SIMPLE, .sql = "COMMIT"};
	struct pg_query rollback = {.kind = PG_SIMPLE, .sql = "ROLLBACK"};
	PGconn *conn;
	PGresult *res;
	char *ident, *stmt;
	size_t len;
	bool ok;

	if ((conn = pg_ready(p, until)) == NULL) {
		log_warnx("event=pg_migrate schema=%s err=\"postgres "
		          "unreachable\"",
		          schema);
		return (-1);
	}
	if ((ident = PQescapeIdentifier(conn, schema, strlen(schema))) == NULL)
		fatalx("event=pg_migrate err=\"cannot quote schema\"");
	len = 2 * strlen(ident) + 128;
	if ((stmt = malloc(len)) == NULL)
		fatal("event=pg_migrate");
	snprintf(stmt, len,
	         "CREATE SCHEMA IF NOT EXISTS %s; SET LOCAL search_path TO %s",
	         ident, ident);
	PQfreemem(ident);
	create.sql = stmt;

	ok = pg_migrate_step(p, "begin", &begin, until) &&
	     pg_migrate_step(p, "lock", &lock, until) &&
	     pg_migrate_step(p, "schema", &create, until) &&
	     pg_migrate_step(p, "apply", &apply, until) &&
	     pg_migrate_step(p, "commit", &commit, until);
	free(stmt);
	if (!ok) {
		if (p->conn != NULL &&
		    (res = pg_run(p, &rollback, until)) != NULL)
			PQclear(res);
		return (-1);
	}
	log_info("event=pg_migrated schema=%s", schema);
	return (0);
}
