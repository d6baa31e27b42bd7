/*
 * The shortener's store in PostgreSQL: the only file that speaks libpq.
 *
 * One instance per thread, each with its own connection (cm_pg reconnects
 * with backoff, behind a breaker shared by the process).  Statements are
 * prepared lazily on each connection (cm_pg_exec_prepared), which keeps
 * reconnection invisible here.  Every statement waits at most until the
 * deadline of the request it serves (shortener_pg_set_deadline: the RPC
 * handlers pass what is left of theirs) and never more than
 * CM_PG_WAIT_MAX_MS; a PostgreSQL that does not answer by then costs the
 * connection and the caller gets CM_UNAVAILABLE (common/pg.c).
 *
 * Inserts and group commit.  Every created link must be durable before
 * the reply (default synchronous_commit), so each insert costs a commit,
 * and a commit costs a WAL flush.  One transaction per link from each
 * worker's connection does group its flushes, but on a small machine the
 * CPU goes to waking and switching dozens of backends.  So inserts go
 * through the batcher: RPC workers queue their insert and sleep; one
 * thread with a connection of its own takes everything queued (up to
 * max_batch) and writes it as one statement,
 *
 *   INSERT ... SELECT * FROM unnest($1::text[], ...)
 *   ON CONFLICT (code) DO NOTHING RETURNING id
 *
 * one transaction and one flush for the lot, then wakes the waiters.  Ids
 * are unique per create, so RETURNING id tells each waiter whether its row
 * went in or its code was taken (by an older row or by an earlier row of
 * the same batch: ON CONFLICT DO NOTHING resolves those in order).  No
 * timer: a batch leaves as soon as the previous one is done, so a lone
 * insert is not delayed, and batches grow with the load.  If a batch fails
 * with an SQL error (not a lost connection), its rows are retried one by
 * one so that one bad row cannot fail its neighbours.
 *
 * Every other write is its own transaction in autocommit.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "schema_sql.h"
#include "shortener.h"
#include "status.h"
#include "store.h"
#include "util.h"

#define CLICKS_CHUNK     1000
#define BATCH_DEFAULT    256
#define BATCH_MARGIN_MS  20
#define DEADLOCK_RETRIES 3
#define APP_NAME         "shortener"
/* Health: what is known is fresh for a second; a probe waits 300 ms. */
#define HEALTH_MAX_AGE_MS 1000
#define HEALTH_TIMEOUT_MS 300

enum pg_stmt {
	ST_LEASE,
	ST_INSERT,
	ST_INSERT_BATCH,
	ST_GET,
	ST_LIST_FIRST,
	ST_LIST_AFTER,
	ST_REMOVE,
	ST_CLICKS,
	ST_PURGE,
	ST_COUNT
};

static const struct {
	const char *name;
	const char *sql;
	int nparams;
} stmts[ST_COUNT] = {
    [ST_LEASE] = {"sh_lease",
                  "SELECT nextval('shortener.url_id_blocks'), increment_by "
                  "FROM pg_sequences WHERE schemaname = 'shortener' "
                  "AND sequencename = 'url_id_blocks'",
                  0},
    [ST_INSERT] =
        {"sh_insert",
         "INSERT INTO shortener.urls (code, id, long_url, owner, created_at, "
         "expires_at) VALUES ($1, $2, $3, $4, $5, $6) "
         "ON CONFLICT (code) DO NOTHING RETURNING 1",
         6},
    [ST_INSERT_BATCH] =
        {"sh_insert_batch",
         "INSERT INTO shortener.urls (code, id, long_url, owner, created_at, "
         "expires_at) SELECT * FROM unnest($1::text[], $2::bigint[], "
         "$3::text[], $4::text[], $5::bigint[], $6::bigint[]) "
         "ON CONFLICT (code) DO NOTHING RETURNING id",
         6},
    [ST_GET] =
        {"sh_get",
         "SELECT id, code, long_url, owner, created_at, "
         "coalesce(expires_at, 0), clicks FROM shortener.urls WHERE code = $1",
         1},
    [ST_LIST_FIRST] =
        {"sh_list_first",
         "SELECT id, code, long_url, owner, created_at, "
         "coalesce(expires_at, 0), clicks FROM shortener.urls "
         "WHERE owner = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
         2},
    [ST_LIST_AFTER] = {"sh_list_after",
                       "SELECT id, code, long_url, owner, created_at, "
                       "coalesce(expires_at, 0), clicks FROM shortener.urls "
                       "WHERE owner = $1 AND (created_at, id) < ($2, $3) "
                       "ORDER BY created_at DESC, id DESC LIMIT $4",
                       4},
    [ST_REMOVE] = {"sh_remove",
                   "DELETE FROM shortener.urls WHERE code = $1 AND owner = $2",
                   2},
    /* Duplicate codes in a batch are summed: UPDATE ... FROM applies only
     * one matching source row per target row.  The rows are locked first,
     * in code order (LockRows above the Sort), so two batches touching the
     * same codes wait for each other instead of deadlocking. */
    [ST_CLICKS] = {"sh_clicks",
                   "WITH locked AS (SELECT code FROM shortener.urls "
                   "WHERE code = ANY ($1::text[]) ORDER BY code FOR UPDATE) "
                   "UPDATE shortener.urls u SET clicks = u.clicks + v.n "
                   "FROM (SELECT code, sum(n)::bigint AS n "
                   "FROM unnest($1::text[], $2::bigint[]) AS t(code, n) "
                   "GROUP BY code) v, locked l "
                   "WHERE u.code = v.code AND l.code = v.code",
                   2},
    /* = ANY (ARRAY(...)) rather than IN (...): with the generic plan of a
     * prepared statement the planner cannot see LIMIT $2 and would join
     * against a scan of the whole table; this way the primary key is used. */
    [ST_PURGE] =
        {"sh_purge",
         "DELETE FROM shortener.urls WHERE code = ANY (ARRAY(SELECT code "
         "FROM shortener.urls WHERE expires_at < $1 ORDER BY expires_at "
         "LIMIT $2 FOR UPDATE SKIP LOCKED))",
         2},
};

struct pg_store {
	cm_pg *pg;
	struct shortener_pg_batcher *batcher; /* NULL: insert directly */
};

/*
 * One insert waiting for the batcher.  It lives on the heap with two
 * references, the waiting thread's and the queue's (then the batcher's),
 * and whichever side drops the last one frees it: a waiter that gives up
 * marks itself gone and returns, and the batcher, which may be writing
 * its row at that moment, still writes its outcome into live memory.  The
 * link is copied in, since the caller's strings (its request's arena) go
 * when it returns.  Each waiter sleeps on a semaphore of its own, so
 * finishing a batch wakes exactly the threads it served and none of them
 * has to take the queue's mutex again.
 */
struct pg_waiter {
	struct shortener_link l; /* its strings are in buf */
	struct pg_waiter *next;
	int64_t until; /* cm_mono_ms: when the waiter gives up */
	int rv;        /* written by the batcher before done is posted */
	sem_t done;
	atomic_bool gone; /* the waiter gave up: skip it */
	atomic_int refs;
	char buf[];
};

struct shortener_pg_batcher {
	pthread_mutex_t mu;
	pthread_cond_t work; /* the batcher waits for inserts */
	struct pg_waiter *head, **tail;
	bool stop;
	size_t max_batch;
	struct pg_store st; /* the batcher's own connection */
	pthread_t thread;
	cm_counter *batches, *rows;
	cm_histogram *latency;
};

/* SQLSTATE of a failed result, "" if none. */
static const char *
pg_sqlstate(const PGresult *res)
{
	const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return (s != NULL ? s : "");
}

/*
 * Runs statement k (prepared on this connection on first use).  Returns
 * the result (caller PQclear()s) or NULL when PostgreSQL is unreachable or
 * did not answer by the deadline.
 */
static PGresult *
pg_run(struct pg_store *st, enum pg_stmt k, const char *const *params)
{
	return (cm_pg_exec_prepared(st->pg, stmts[k].name, stmts[k].sql,
	                            stmts[k].nparams, params));
}

/*
 * A lock wait that hit lock_timeout (55P03) or a statement cancelled by a
 * timeout (57014): the server is busy, not at fault.
 */
static bool
pg_busy(const PGresult *res)
{
	const char *state = pg_sqlstate(res);

	return (strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0);
}

/*
 * Maps a result to a cm_code, logging SQL errors; clears it unless OK.
 * Busy (pg_busy) is CM_UNAVAILABLE, other SQL errors CM_INTERNAL.
 */
static int
pg_check(PGresult *res, ExecStatusType want, const char *what)
{
	int rv;

	if (res == NULL)
		return (CM_UNAVAILABLE);
	if (PQresultStatus(res) == want)
		return (CM_OK);
	log_warnx("event=pg_error op=%s sqlstate=%s err=\"%.*s\"", what,
	          pg_sqlstate(res),
	          (int) strcspn(PQresultErrorMessage(res), "\n\""),
	          PQresultErrorMessage(res));
	rv = pg_busy(res) ? CM_UNAVAILABLE : CM_INTERNAL;
	PQclear(res);
	return (rv);
}

static int64_t
col_i64(const PGresult *res, int row, int col)
{
	return (strtoll(PQgetvalue(res, row, col), NULL, 10));
}

static void
row_link(const PGresult *res, int row, cm_arena *a, struct shortener_link *out)
{
	out->id = col_i64(res, row, 0);
	out->code = cm_arena_strdup(a, PQgetvalue(res, row, 1));
	out->long_url = cm_arena_strdup(a, PQgetvalue(res, row, 2));
	out->owner = PQgetisnull(res, row, 3)
	                 ? NULL
	                 : cm_arena_strdup(a, PQgetvalue(res, row, 3));
	out->created_at = col_i64(res, row, 4);
	out->expires_at = col_i64(res, row, 5);
	out->clicks = col_i64(res, row, 6);
}

static int
pg_lease_ids(void *impl, uint64_t *first, uint64_t *count)
{
	PGresult *res = pg_run(impl, ST_LEASE, NULL);
	int rv;

	if ((rv = pg_check(res, PGRES_TUPLES_OK, "lease")) != CM_OK)
		return (rv);
	if (PQntuples(res) != 1) {
		PQclear(res);
		return (CM_INTERNAL);
	}
	*first = (uint64_t) col_i64(res, 0, 0);
	*count = (uint64_t) col_i64(res, 0, 1);
	PQclear(res);
	log_info("event=ids_leased first=%" PRIu64 " count=%" PRIu64, *first,
	         *count);
	return (CM_OK);
}

/* Inserts one link in its own transaction. */
static int
pg_insert_one(struct pg_store *st, const struct shortener_link *l)
{
	char id[24], created[24], expires[24];
	const char *params[6];
	PGresult *res;
	int rv;

	snprintf(id, sizeof(id), "%" PRId64, l->id);
	snprintf(created, sizeof(created), "%" PRId64, l->created_at);
	snprintf(expires, sizeof(expires), "%" PRId64, l->expires_at);
	params[0] = l->code;
	params[1] = id;
	params[2] = l->long_url;
	params[3] = l->owner; /* NULL: SQL NULL */
	params[4] = created;
	params[5] = l->expires_at != 0 ? expires : NULL;
	res = pg_run(st, ST_INSERT, params);
	if ((rv = pg_check(res, PGRES_TUPLES_OK, "insert")) != CM_OK)
		return (rv);
	rv = PQntuples(res) == 1 ? CM_OK : CM_ALREADY_EXISTS;
	PQclear(res);
	return (rv);
}

/* A growing string for array literals; aborts on out-of-memory. */
struct sbuf {
	char *p;
	size_t len, cap;
};

static void
sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		while (b->len + n + 1 > b->cap)
			b->cap = b->cap == 0 ? 256 : b->cap * 2;
		if ((b->p = realloc(b->p, b->cap)) == NULL)
			fatal("event=sbuf");
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/*
 * Appends one element to an array literal: NULL unquoted, a string between
 * double quotes with " and \ escaped (so any text survives), a comma
 * before all but the first.
 */
static void
sb_elem(struct sbuf *b, const char *s, bool first)
{
	if (!first)
		sb_put(b, ",", 1);
	if (s == NULL) {
		sb_put(b, "NULL", 4);
		return;
	}
	sb_put(b, "\"", 1);
	for (const char *c = s; *c != '\0'; c++) {
		size_t n = strcspn(c, "\"\\");

		sb_put(b, c, n);
		c += n;
		if (*c == '\0')
			break;
		sb_put(b, "\\", 1);
		sb_put(b, c, 1);
	}
	sb_put(b, "\"", 1);
}

static void
sb_elem_i64(struct sbuf *b, int64_t v, bool null, bool first)
{
	char num[24];

	snprintf(num, sizeof(num), "%" PRId64, v);
	sb_elem(b, null ? NULL : num, first);
}

/*
 * Writes the n links of a batch with one statement and sets each waiter's
 * outcome.  Called on the batcher thread only.
 */
static void
batch_insert(struct shortener_pg_batcher *b, struct pg_waiter **w, size_t n)
{
	struct sbuf a[6];
	const char *params[6];
	PGresult *res;
	size_t i;
	int64_t t0;
	int rows;

	memset(a, 0, sizeof(a));
	for (i = 0; i < 6; i++)
		sb_put(&a[i], "{", 1);
	for (i = 0; i < n; i++) {
		const struct shortener_link *l = &w[i]->l;

		sb_elem(&a[0], l->code, i == 0);
		sb_elem_i64(&a[1], l->id, false, i == 0);
		sb_elem(&a[2], l->long_url, i == 0);
		sb_elem(&a[3], l->owner, i == 0);
		sb_elem_i64(&a[4], l->created_at, false, i == 0);
		sb_elem_i64(&a[5], l->expires_at, l->expires_at == 0, i == 0);
	}
	for (i = 0; i < 6; i++) {
		sb_put(&a[i], "}", 1);
		params[i] = a[i].p;
	}
	t0 = cm_mono_us();
	res = pg_run(&b->st, ST_INSERT_BATCH, params);
	cm_histogram_observe_us(b->latency, cm_mono_us() - t0);
	for (i = 0; i < 6; i++)
		free(a[i].p);
	cm_counter_add(b->batches, 1);
	cm_counter_add(b->rows, n);

	if (res == NULL) {
		for (i = 0; i < n; i++)
			w[i]->rv = CM_UNAVAILABLE;
		return;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK && pg_busy(res)) {
		/* One by one would wait again, for each row. */
		(void) pg_check(res, PGRES_TUPLES_OK, "insert_batch");
		for (i = 0; i < n; i++)
			w[i]->rv = CM_UNAVAILABLE;
		return;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warnx("event=pg_batch_failed rows=%zu sqlstate=%s "
		          "msg=\"retrying one by one\"",
		          n, pg_sqlstate(res));
		PQclear(res);
		for (i = 0; i < n; i++)
			w[i]->rv = pg_insert_one(&b->st, &w[i]->l);
		return;
	}
	rows = PQntuples(res);
	for (i = 0; i < n; i++) {
		w[i]->rv = CM_ALREADY_EXISTS;
		for (int r = 0; r < rows; r++)
			if (col_i64(res, r, 0) == w[i]->l.id) {
				w[i]->rv = CM_OK;
				break;
			}
	}
	PQclear(res);
}

static bool pg_ping(void *impl);

/* Drops one reference; the last one frees the waiter. */
static void
waiter_unref(struct pg_waiter *w)
{
	if (atomic_fetch_sub(&w->refs, 1) == 1) {
		sem_destroy(&w->done);
		free(w);
	}
}

/* A waiter for l (copied), giving up at until; fatal on OOM. */
static struct pg_waiter *
waiter_new(const struct shortener_link *l, int64_t until)
{
	size_t nc = strlen(l->code) + 1, nu = strlen(l->long_url) + 1;
	size_t no = l->owner != NULL ? strlen(l->owner) + 1 : 0;
	struct pg_waiter *w;

	if ((w = calloc(1, sizeof(*w) + nc + nu + no)) == NULL)
		fatal("event=batcher_insert");
	w->l = *l;
	w->l.code = memcpy(w->buf, l->code, nc);
	w->l.long_url = memcpy(w->buf + nc, l->long_url, nu);
	w->l.owner = no > 0 ? memcpy(w->buf + nc + nu, l->owner, no) : NULL;
	w->until = until;
	sem_init(&w->done, 0, 0);
	atomic_init(&w->gone, false);
	atomic_init(&w->refs, 2);
	return (w);
}

static void *
batcher_main(void *arg)
{
	struct shortener_pg_batcher *b = arg;
	struct pg_waiter **batch, *w;
	int64_t now, until;
	size_t n;

	if ((batch = calloc(b->max_batch, sizeof(*batch))) == NULL)
		fatal("event=batcher");
	/* Connect now, not when the first link waits for it: a slow connect
	 * (or name lookup) must not be paid by the first callers. */
	(void) pg_ping(&b->st);
	pthread_mutex_lock(&b->mu);
	for (;;) {
		while (b->head == NULL && !b->stop)
			pthread_cond_wait(&b->work, &b->mu);
		if (b->head == NULL)
			break; /* stopping, and nothing is left */
		now = cm_mono_ms();
		until = 0;
		for (n = 0; n < b->max_batch && b->head != NULL;) {
			w = b->head;
			if ((b->head = w->next) == NULL)
				b->tail = &b->head;
			/* One past its deadline is timing out by itself. */
			if (atomic_load(&w->gone) || w->until <= now) {
				waiter_unref(w);
				continue;
			}
			if (w->until > until)
				until = w->until;
			batch[n++] = w;
		}
		pthread_mutex_unlock(&b->mu);
		if (n > 0) {
			/* A little before the last waiter gives up, so that
			 * the waiters hear the outcome (a timeout has opened
			 * the breaker by then) rather than time out first. */
			cm_pg_set_deadline(b->st.pg, until - BATCH_MARGIN_MS);
			batch_insert(b, batch, n);
			for (size_t i = 0; i < n; i++) {
				sem_post(&batch[i]->done);
				waiter_unref(batch[i]);
			}
		}
		pthread_mutex_lock(&b->mu);
	}
	pthread_mutex_unlock(&b->mu);
	free(batch);
	return (NULL);
}

/*
 * Queues the insert for the batcher and sleeps until it is written or
 * until passes (then CM_UNAVAILABLE: whether the row went in is not
 * known).
 */
static int
batcher_insert(struct shortener_pg_batcher *b, const struct shortener_link *l,
               int64_t until)
{
	struct pg_waiter *w = waiter_new(l, until);
	struct timespec ts = {.tv_sec = (time_t) (until / 1000),
	                      .tv_nsec = (long) (until % 1000) * 1000000L};
	int rv, e;

	pthread_mutex_lock(&b->mu);
	*b->tail = w;
	b->tail = &w->next;
	if (b->head == w)
		pthread_cond_signal(&b->work); /* it may be asleep */
	pthread_mutex_unlock(&b->mu);
	/* cm_mono_ms is CLOCK_MONOTONIC. */
	while ((e = sem_clockwait(&w->done, CLOCK_MONOTONIC, &ts)) != 0 &&
	       errno == EINTR)
		;
	if (e != 0 && sem_trywait(&w->done) == 0)
		e = 0; /* done just now */
	if (e == 0) {
		rv = w->rv;
	} else {
		atomic_store(&w->gone, true);
		log_warnx("event=insert_timeout code=%s", w->l.code);
		rv = CM_UNAVAILABLE;
	}
	waiter_unref(w);
	return (rv);
}

static int
pg_insert(void *impl, const struct shortener_link *l)
{
	struct pg_store *st = impl;

	if (st->batcher != NULL)
		return (batcher_insert(st->batcher, l, cm_pg_deadline(st->pg)));
	return (pg_insert_one(st, l));
}

static int
pg_get(void *impl, const char *code, cm_arena *a, struct shortener_link *out)
{
	const char *params[1] = {code};
	PGresult *res = pg_run(impl, ST_GET, params);
	int rv;

	if ((rv = pg_check(res, PGRES_TUPLES_OK, "get")) != CM_OK)
		return (rv);
	if (PQntuples(res) == 0) {
		PQclear(res);
		return (CM_NOT_FOUND);
	}
	row_link(res, 0, a, out);
	PQclear(res);
	return (CM_OK);
}

static int
pg_list(void *impl, const char *owner, const struct shortener_cursor *after,
        size_t max, cm_arena *a, struct shortener_link *out, size_t *n)
{
	char t[24], id[24], lim[24];
	const char *params[4];
	PGresult *res;
	int rv, rows;

	snprintf(lim, sizeof(lim), "%zu", max);
	params[0] = owner;
	if (after == NULL) {
		params[1] = lim;
		res = pg_run(impl, ST_LIST_FIRST, params);
	} else {
		snprintf(t, sizeof(t), "%" PRId64, after->created_at);
		snprintf(id, sizeof(id), "%" PRId64, after->id);
		params[1] = t;
		params[2] = id;
		params[3] = lim;
		res = pg_run(impl, ST_LIST_AFTER, params);
	}
	if ((rv = pg_check(res, PGRES_TUPLES_OK, "list")) != CM_OK)
		return (rv);
	rows = PQntuples(res);
	for (int i = 0; i < rows && (size_t) i < max; i++)
		row_link(res, i, a, &out[i]);
	*n = (size_t) rows < max ? (size_t) rows : max;
	PQclear(res);
	return (CM_OK);
}

static int
pg_remove(void *impl, const char *code, const char *owner)
{
	const char *params[2] = {code, owner};
	PGresult *res = pg_run(impl, ST_REMOVE, params);
	int rv;

	if ((rv = pg_check(res, PGRES_COMMAND_OK, "remove")) != CM_OK)
		return (rv);
	rv = strcmp(PQcmdTuples(res), "0") == 0 ? CM_NOT_FOUND : CM_OK;
	PQclear(res);
	return (rv);
}

/*
 * Writes the codes and counts of c[0..n) as two array literals,
 * {"code",...} and {count,...}.  Codes hold only [A-Za-z0-9_-] (the domain
 * checked), so quoting them is enough; quoted, "NULL" stays a string.
 */
static void
clicks_arrays(const struct shortener_clicks *c, size_t n, char **codes,
              char **counts)
{
	size_t clen = 2 + n * (SHORTENER_ALIAS_MAX + 3);
	size_t nlen = 2 + n * 22;
	char *p, *q;

	if ((*codes = malloc(clen)) == NULL || (*counts = malloc(nlen)) == NULL)
		fatal("event=clicks_arrays");
	p = *codes;
	q = *counts;
	*p++ = '{';
	*q++ = '{';
	for (size_t i = 0; i < n; i++) {
		p += sprintf(p, "%s\"%s\"", i > 0 ? "," : "", c[i].code);
		q += sprintf(q, "%s%" PRId64, i > 0 ? "," : "", c[i].count);
	}
	*p++ = '}';
	*q++ = '}';
	*p = '\0';
	*q = '\0';
}

/*
 * Applies the counts in chunks, each one statement that locks its rows in
 * code order first (ST_CLICKS); a deadlock, should one still happen, is
 * retried.
 */
static int
pg_add_clicks(void *impl, const struct shortener_clicks *c, size_t n)
{
	const char *params[2];
	char *codes, *counts;
	PGresult *res;
	int rv = CM_OK;

	for (size_t off = 0; off < n && rv == CM_OK; off += CLICKS_CHUNK) {
		size_t k = n - off < CLICKS_CHUNK ? n - off : CLICKS_CHUNK;

		clicks_arrays(c + off, k, &codes, &counts);
		params[0] = codes;
		params[1] = counts;
		for (int attempt = 0;; attempt++) {
			res = pg_run(impl, ST_CLICKS, params);
			if (res != NULL && attempt < DEADLOCK_RETRIES &&
			    PQresultStatus(res) == PGRES_FATAL_ERROR &&
			    strcmp(pg_sqlstate(res), "40P01") == 0) {
				PQclear(res);
				continue;
			}
			break;
		}
		free(codes);
		free(counts);
		if ((rv = pg_check(res, PGRES_COMMAND_OK, "clicks")) == CM_OK)
			PQclear(res);
	}
	return (rv);
}

static int
pg_purge(void *impl, int64_t before, size_t max, size_t *n)
{
	char b[24], lim[24];
	const char *params[2] = {b, lim};
	PGresult *res;
	int rv;

	snprintf(b, sizeof(b), "%" PRId64, before);
	snprintf(lim, sizeof(lim), "%zu", max);
	res = pg_run(impl, ST_PURGE, params);
	if ((rv = pg_check(res, PGRES_COMMAND_OK, "purge")) != CM_OK)
		return (rv);
	*n = (size_t) strtoul(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return (CM_OK);
}

static bool
pg_ping(void *impl)
{
	struct pg_store *st = impl;

	return (cm_pg_ping(st->pg));
}

static const struct shortener_store_ops pg_ops = {
    .name = "postgres",
    .lease_ids = pg_lease_ids,
    .insert = pg_insert,
    .get = pg_get,
    .list = pg_list,
    .remove = pg_remove,
    .add_clicks = pg_add_clicks,
    .purge = pg_purge,
    .ping = pg_ping,
};

void
shortener_pg_open(struct shortener_store *out, const char *conninfo,
                  struct shortener_pg_batcher *batcher)
{
	struct pg_store *st;

	if ((st = calloc(1, sizeof(*st))) == NULL)
		fatal("event=pg_open");
	st->pg = cm_pg_new(conninfo, APP_NAME);
	st->batcher = batcher;
	out->ops = &pg_ops;
	out->impl = st;
}

struct shortener_pg_batcher *
shortener_pg_batcher_start(const char *conninfo, size_t max_batch)
{
	struct shortener_pg_batcher *b;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		fatal("event=batcher_start");
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->work, NULL);
	b->tail = &b->head;
	b->max_batch = max_batch > 0 ? max_batch : BATCH_DEFAULT;
	b->st.pg = cm_pg_new(conninfo, APP_NAME);
	b->batches = cm_counter_get(
	    "shortener_insert_batches_total", "",
	    "Multi-row INSERT statements written by the batcher");
	b->rows = cm_counter_get("shortener_insert_rows_total", "",
	                         "Rows offered to the batcher");
	b->latency =
	    cm_histogram_get("shortener_insert_batch_seconds", "",
	                     "Time to write and commit one batch of inserts");
	if (pthread_create(&b->thread, NULL, batcher_main, b) != 0)
		fatalx("event=batcher_start err=pthread_create");
	return (b);
}

/* Writes what is still queued, then stops.  No store may use b after. */
void
shortener_pg_batcher_stop(struct shortener_pg_batcher *b)
{
	if (b == NULL)
		return;
	pthread_mutex_lock(&b->mu);
	b->stop = true;
	pthread_cond_signal(&b->work);
	pthread_mutex_unlock(&b->mu);
	pthread_join(b->thread, NULL);
	cm_pg_free(b->st.pg);
	pthread_cond_destroy(&b->work);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

void
shortener_pg_close(struct shortener_store *s)
{
	struct pg_store *st = s->impl;

	if (st == NULL)
		return;
	cm_pg_free(st->pg);
	free(st);
	s->impl = NULL;
}

void
shortener_pg_set_deadline(struct shortener_store *s, int64_t deadline_ms)
{
	struct pg_store *st = s->impl;

	cm_pg_set_deadline(st->pg, deadline_ms);
}

bool
shortener_pg_health(struct shortener_store *s, bool probe, const char **detail)
{
	struct pg_store *st = s->impl;
	int64_t age;

	if (probe)
		return (cm_pg_check(st->pg, HEALTH_MAX_AGE_MS,
		                    HEALTH_TIMEOUT_MS, detail));
	return (cm_pg_state(st->pg, &age, detail));
}

int
shortener_pg_migrate(const char *conninfo)
{
	cm_pg *pg = cm_pg_new(conninfo, APP_NAME);
	int rv;

	rv = cm_pg_migrate(pg, "shortener", shortener_schema_sql);
	cm_pg_free(pg);
	return (rv);
}
