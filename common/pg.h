/*
 * A PostgreSQL connection that reconnects by itself, with backoff, and the
 * schema migration every service runs at start-up.  One per thread.
 */
#ifndef CM_PG_H
#define CM_PG_H

#include <stdbool.h>

#include <libpq-fe.h>

typedef struct cm_pg cm_pg;

/* conninfo: a libpq connection string or URI (DATABASE_URL). */
cm_pg *cm_pg_new(const char *conninfo);
void cm_pg_free(cm_pg *p);

/*
 * A live connection, or NULL if PostgreSQL is unreachable (then no new
 * attempt is made until the backoff has passed).  Do not PQfinish it.
 * After a query fails with a broken connection, call cm_pg_reset.
 */
PGconn *cm_pg_conn(cm_pg *p);
void cm_pg_reset(cm_pg *p);
bool cm_pg_ok(cm_pg *p);

/*
 * Runs a parameterized query (text parameters and results).  Returns the
 * result (caller PQclear()s) or NULL if the server is unreachable or the
 * connection broke (the connection is then reset).  SQL errors come back
 * as a result with PGRES_FATAL_ERROR; check PQresultStatus.
 */
PGresult *cm_pg_exec(cm_pg *p, const char *sql, int nparams,
                     const char *const *params);

/*
 * Creates the schema and applies sql (idempotent DDL) under a
 * transaction-level advisory lock keyed by schema, so concurrent instances
 * starting together migrate once.  Returns 0 or -1 (logged).
 */
int cm_pg_migrate(cm_pg *p, const char *schema, const char *sql);

#endif
