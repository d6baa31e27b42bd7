/*
 * A PostgreSQL connection that reconnects by itself, with a breaker shared
 * by the process, every wait bounded; and the schema migration every
 * service runs at start-up.  One cm_pg per thread.
 */
#ifndef CM_PG_H
#define CM_PG_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

/* The longest a statement waits when no deadline is set (ms). */
#define CM_PG_WAIT_MAX_MS 5000

typedef struct cm_pg cm_pg;

/*
 * conninfo: a libpq connection string or URI (DATABASE_URL).  appname: the
 * connection's application_name (the service's name, so pg_stat_activity
 * tells whose a backend is), or NULL; the connection string may override
 * it.  Never fails (fatal on OOM); the first connection is made lazily.
 */
cm_pg *cm_pg_new(const char *conninfo, const char *appname);
void cm_pg_free(cm_pg *p);

/*
 * Bounds every statement (and the connection attempt it may need) on p
 * until the absolute deadline deadline_ms (cm_mono_ms clock), e.g. what is
 * left of an RPC's deadline; 0: none.  Either way no statement waits more
 * than CM_PG_WAIT_MAX_MS.  Stays set until changed.
 *
 * cm_pg_deadline: when a statement starting now must be done by (the
 * deadline set, capped at CM_PG_WAIT_MAX_MS from now); never 0.
 */
void cm_pg_set_deadline(cm_pg *p, int64_t deadline_ms);
int64_t cm_pg_deadline(const cm_pg *p);

/*
 * Runs a statement with text parameters and results.  Returns the result
 * (caller PQclear()s), or NULL when PostgreSQL could not be used: the
 * breaker is open, connecting failed, the connection broke, or no answer
 * came before the deadline (then the connection has been closed and a
 * later call makes a new one).  SQL errors come back as a result with
 * PGRES_FATAL_ERROR; check PQresultStatus.
 *
 * cm_pg_exec_prepared runs the statement prepared under name, preparing it
 * from sql first when this connection does not know it (a fresh
 * connection), so reconnection is invisible to the caller.
 */
PGresult *cm_pg_exec(cm_pg *p, const char *sql, int nparams,
                     const char *const *params);
PGresult *cm_pg_exec_prepared(cm_pg *p, const char *name, const char *sql,
                              int nparams, const char *const *params);

/* SELECT 1 within the deadline: true if the server answered. */
bool cm_pg_ping(cm_pg *p);

/*
 * What the process knows of the PostgreSQL at p's conninfo, from every
 * cm_pg of it: false while the breaker is open or when the last outcome
 * (a statement, a connection attempt) was a failure, with a static reason
 * in *detail (NULL when up).  *age_ms: how long ago that outcome was
 * (INT64_MAX when there was none yet).  Never blocks; reads only state
 * shared by the process, so any thread may call it with any cm_pg.
 */
bool cm_pg_state(const cm_pg *p, int64_t *age_ms, const char **detail);

/*
 * For a health check: cm_pg_state, except that when what is known is
 * older than max_age_ms, SELECT 1 runs on p first, waiting at most
 * timeout_ms (unless the breaker is open: then nothing is sent).  Such a
 * timeout counts as a failure but does not open the breaker, unless this
 * was the probe of a half-open one: a health check must not fail the
 * requests of a server that is merely slow.  p must be the caller's own.
 */
bool cm_pg_check(cm_pg *p, int max_age_ms, int timeout_ms, const char **detail);

/*
 * Creates the schema and applies sql (idempotent DDL) under a
 * transaction-level advisory lock keyed by schema, so concurrent instances
 * starting together migrate once.  Waits at most 30 s (when p has no
 * deadline).  Returns 0 or -1 (logged).
 */
int cm_pg_migrate(cm_pg *p, const char *schema, const char *sql);

#endif
