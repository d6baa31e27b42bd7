/*
 * A PostgreSQL connection that reconnects by itself, and the start-up
 * migration.
 *
 * Reconnection follows the same rule as redis.c: a connection that broke
 * while in use may be replaced at once (the server restarted, or an
 * administrator terminated the backend), while a failed connection attempt
 * starts a backoff (100 ms doubling to 2 s) during which callers get NULL
 * at once instead of waiting on connect again.
 *
 * Before handing out a connection that looks fine, cm_pg_conn lets libpq
 * read whatever the server sent while the connection sat idle
 * (PQconsumeInput never blocks).  A backend terminated by a restart has
 * sent its FATAL message and closed the socket; this notices it, so the
 * first query after a restart does not fail needlessly.  (A connection
 * that dies between this check and the query still fails that query:
 * whether a statement ran is unknowable then, so it is never retried.)
 *
 * Connections are made with a connect timeout and TCP keepalives plus
 * tcp_user_timeout, so that a server that vanished without closing its
 * sockets cannot hold a thread forever.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pg.h"
#include "util.h"

#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 2000

struct cm_pg {
	char *conninfo;
	PGconn *conn;
	int64_t next_try_ms; /* monotonic; no connect attempt before */
	int backoff_ms;
	bool ok;
};

cm_pg *
cm_pg_new(const char *conninfo)
{
	cm_pg *p;

	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (p->conninfo = strdup(conninfo)) == NULL)
		fatal("event=pg_new");
	p->backoff_ms = PG_BACKOFF_MIN_MS;
	return (p);
}

static void
pg_drop(cm_pg *p)
{
	if (p->conn != NULL) {
		PQfinish(p->conn);
		p->conn = NULL;
	}
	p->ok = false;
}

void
cm_pg_free(cm_pg *p)
{
	if (p == NULL)
		return;
	pg_drop(p);
	free(p->conninfo);
	free(p);
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

/*
 * Connects.  Our own settings come first so that anything the connection
 * string names (it is expanded in place of "dbname") overrides them.
 */
static void
pg_connect(cm_pg *p)
{
	char err[256];
	static const char *const keys[] = {
	    "connect_timeout",  "keepalives",
	    "keepalives_idle",  "keepalives_interval",
	    "keepalives_count", "tcp_user_timeout",
	    "dbname",           NULL};
	static const char *vals[] = {"3", "1",     "30", "5",
	                             "3", "10000", NULL, NULL};
	const char *v[CM_ARRAY_LEN(vals)];
	int64_t t0 = cm_mono_ms(), took;

	memcpy(v, vals, sizeof(v));
	v[6] = p->conninfo;
	p->conn = PQconnectdbParams(keys, v, 1);
	/* connect_timeout does not bound the name lookup: say when it was
	 * slow (a resolver that drops queries costs 5 s a try). */
	if ((took = cm_mono_ms() - t0) >= 500)
		log_warnx("event=pg_connect_slow ms=%lld", (long long) took);
	if (p->conn != NULL && PQstatus(p->conn) == CONNECTION_OK) {
		PQsetNoticeProcessor(p->conn, pg_notice, NULL);
		if (p->backoff_ms != PG_BACKOFF_MIN_MS)
			log_info("event=pg_up");
		p->backoff_ms = PG_BACKOFF_MIN_MS;
		p->next_try_ms = 0;
		p->ok = true;
		return;
	}
	if (p->backoff_ms == PG_BACKOFF_MIN_MS)
		log_warnx("event=pg_down err=\"%s\"",
		          pg_errline(p->conn, err, sizeof(err)));
	pg_drop(p);
	p->next_try_ms = cm_mono_ms() + p->backoff_ms;
	p->backoff_ms *= 2;
	if (p->backoff_ms > PG_BACKOFF_MAX_MS)
		p->backoff_ms = PG_BACKOFF_MAX_MS;
}

PGconn *
cm_pg_conn(cm_pg *p)
{
	char err[256];

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
		p->next_try_ms = 0;
	}
	if (cm_mono_ms() < p->next_try_ms)
		return (NULL);
	pg_connect(p);
	return (p->conn);
}

/* The caller saw the connection break: drop it; reconnect on next use. */
void
cm_pg_reset(cm_pg *p)
{
	char err[256];

	if (p->conn != NULL)
		log_warnx("event=pg_reset err=\"%s\"",
		          pg_errline(p->conn, err, sizeof(err)));
	pg_drop(p);
	p->next_try_ms = 0;
}

bool
cm_pg_ok(cm_pg *p)
{
	return (p->ok);
}

PGresult *
cm_pg_exec(cm_pg *p, const char *sql, int nparams, const char *const *params)
{
	PGconn *conn;
	PGresult *res;

	if ((conn = cm_pg_conn(p)) == NULL)
		return (NULL);
	res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (res == NULL || PQstatus(conn) != CONNECTION_OK) {
		PQclear(res);
		cm_pg_reset(p);
		return (NULL);
	}
	p->ok = true;
	return (res);
}

/* Runs one command of the migration; false (logged) unless it succeeded. */
static bool
pg_migrate_step(const char *what, PGresult *res)
{
	ExecStatusType st;

	if (res == NULL) {
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
	PGconn *conn;
	PGresult *res;
	char *ident, *stmt;
	const char *params[1] = {schema};
	size_t len;
	bool ok;

	if ((conn = cm_pg_conn(p)) == NULL) {
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

	ok =
	    pg_migrate_step("begin", PQexec(conn, "BEGIN")) &&
	    pg_migrate_step(
	        "lock",
	        PQexecParams(conn, "SELECT pg_advisory_xact_lock(hashtext($1))",
	                     1, NULL, params, NULL, NULL, 0)) &&
	    pg_migrate_step("schema", PQexec(conn, stmt)) &&
	    pg_migrate_step("apply", PQexec(conn, sql)) &&
	    pg_migrate_step("commit", PQexec(conn, "COMMIT"));
	free(stmt);
	if (!ok) {
		if (PQstatus(conn) != CONNECTION_OK) {
			cm_pg_reset(p);
			return (-1);
		}
		res = PQexec(conn, "ROLLBACK");
		PQclear(res);
		return (-1);
	}
	log_info("event=pg_migrated schema=%s", schema);
	return (0);
}
