/*
 * The notifier's store in PostgreSQL: the only file that speaks libpq.
 *
 * One struct nt_pg per thread, each with its own connection (cm_pg:
 * reconnection with backoff behind the process's breaker, every wait
 * bounded by the deadline set with nt_pg_set_deadline and never longer
 * than CM_PG_WAIT_MAX_MS).  Every write is one statement in autocommit,
 * so no transaction is ever left open across a lost connection: what must
 * change together is one statement (a data-modifying CTE) or one call of
 * a function of schema.sql (accept, put_preferences).
 *
 * Group commit.  A Send is accepted only once it is committed, and a
 * commit costs a WAL flush; so Sends go through the batcher: RPC workers
 * queue their element and sleep, one thread with a connection of its own
 * takes everything queued (up to max_batch) and writes it with one call
 * of notifier.accept (one transaction, one flush), then wakes the
 * waiters.  No timer: a batch leaves as soon as the previous one is done.
 * A batch that fails with an SQL error is retried element by element, so
 * one bad element cannot fail its neighbours.  (The waiter's life is the
 * shortener's: two references, the last one frees it.)
 *
 * Locks.  A worker holds a session-level advisory lock on the
 * notification it processes (the bigint key space, keyed by the id); a
 * worker that dies or loses its connection releases it with its session.
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

#include <jansson.h>

#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "schema_sql.h"
#include "status.h"
#include "store.h"
#include "util.h"

#define APP_NAME          "notifier"
#define HEALTH_MAX_AGE_MS 1000
#define HEALTH_TIMEOUT_MS 300
#define BATCH_MARGIN_MS   20

enum pg_stmt {
	ST_LOCK,
	ST_UNLOCK,
	ST_LOAD,
	ST_USER,
	ST_DEVICES,
	ST_RECORD,
	ST_INBOX_PUT,
	ST_DEVICE_REMOVE,
	ST_DIGEST_JOIN,
	ST_DIGEST_COUNT,
	ST_SET_DUE,
	ST_ACCEPT,
	ST_OUTBOX_TAKE,
	ST_OUTBOX_DONE,
	ST_LIST_DEAD,
	ST_REPLAY,
	ST_PUT_PREFS,
	ST_GET_PREFS,
	ST_GET_QUIET,
	ST_SET_PREF,
	ST_DEV_ADD,
	ST_DEV_LIST,
	ST_DEV_DEL,
	ST_CONTACT_GET,
	ST_CONTACT_PUT,
	ST_CODE_FAILED,
	ST_INBOX_LIST,
	ST_INBOX_UNREAD,
	ST_MARK_READ,
	ST_MARK_ALL,
	ST_COUNT
};

static const struct {
	const char *name;
	const char *sql;
	int nparams;
} stmts[ST_COUNT] = {
    [ST_LOCK] = {"nt_lock", "SELECT pg_try_advisory_lock($1::bigint)", 1},
    [ST_UNLOCK] = {"nt_unlock", "SELECT pg_advisory_unlock($1::bigint)", 1},
    [ST_LOAD] = {"nt_load",
                 "SELECT n.user_id, n.type, n.priority, n.title, n.body, "
                 "n.data, n.tmpl, n.vars, n.grp, n.due_ms, n.created_at, "
                 "n.digest_state, d.channel, d.status, d.attempts, "
                 "d.provider, d.last_error, d.next_ms "
                 "FROM notifier.notifications n "
                 "JOIN notifier.deliveries d ON d.notification_id = n.id "
                 "WHERE n.id = $1 ORDER BY d.channel",
                 1},
    /* Channels turned off for the type; the end of quiet hours when the
     * user's local time is inside them (PostgreSQL's time zones, so the
     * process's TZ never matters); contact. */
    [ST_USER] = {"nt_user",
                 "SELECT coalesce((SELECT string_agg(p.channel::text, ',') "
                 "FROM notifier.preferences p WHERE p.user_id = $1 "
                 "AND p.type = $2 AND NOT p.enabled), ''), "
                 "coalesce((SELECT CASE WHEN (s < e AND m >= s AND m < e) "
                 "OR (s > e AND (m >= s OR m < e)) "
                 "THEN (extract(epoch FROM ((date_trunc('day', lt) "
                 "+ make_interval(mins => e) "
                 "+ CASE WHEN s > e AND m >= s THEN interval '1 day' "
                 "ELSE interval '0' END) AT TIME ZONE tz)) * 1000)::bigint "
                 "ELSE 0 END FROM (SELECT q.start_min AS s, q.end_min AS e, "
                 "q.time_zone AS tz, l.lt, (extract(hour FROM l.lt) * 60 "
                 "+ extract(minute FROM l.lt))::int AS m "
                 "FROM notifier.quiet_hours q CROSS JOIN LATERAL "
                 "(SELECT now() AT TIME ZONE q.time_zone AS lt) l "
                 "WHERE q.user_id = $1) z), 0), "
                 "coalesce(c.email, ''), coalesce(c.phone, ''), "
                 "coalesce(c.pending_phone, '') "
                 "FROM (SELECT 1) one LEFT JOIN notifier.contacts c "
                 "ON c.user_id = $1",
                 2},
    [ST_DEVICES] = {"nt_devices",
                    "SELECT id, endpoint FROM notifier.devices "
                    "WHERE user_id = $1 ORDER BY id LIMIT 10",
                    1},
    /* A channel's state and its log row: one statement, one commit. */
    [ST_RECORD] = {"nt_record",
                   "WITH u AS (UPDATE notifier.deliveries SET status = $3, "
                   "attempts = $4, provider = $5, last_error = $6, "
                   "next_ms = $7, updated_at = $8 "
                   "WHERE notification_id = $1 AND channel = $2) "
                   "INSERT INTO notifier.delivery_log (notification_id, "
                   "channel, provider, status, error, at_ms) "
                   "VALUES ($1, $2, $5, $9, $6, $10)",
                   10},
    [ST_INBOX_PUT] = {"nt_inbox_put",
                      "INSERT INTO notifier.inbox (id, user_id, type, "
                      "title, body, data, created_at) "
                      "VALUES ($1, $2, $3, $4, $5, $6, $7) "
                      "ON CONFLICT (id) DO NOTHING",
                      7},
    [ST_DEVICE_REMOVE] = {"nt_device_remove",
                          "DELETE FROM notifier.devices WHERE id = $1", 1},
    [ST_DIGEST_JOIN] =
        {"nt_digest_join",
         "INSERT INTO notifier.digests AS d (user_id, type, grp, head_id, "
         "until_ms, count) VALUES ($1, $2, $3, $4, $5::bigint + $6, 1) "
         "ON CONFLICT (user_id, type, grp) DO UPDATE SET "
         "head_id = CASE WHEN d.until_ms <= $5 THEN EXCLUDED.head_id "
         "ELSE d.head_id END, "
         "until_ms = CASE WHEN d.until_ms <= $5 THEN EXCLUDED.until_ms "
         "ELSE d.until_ms END, "
         "count = CASE WHEN d.until_ms <= $5 THEN 1 ELSE d.count + 1 END "
         "RETURNING head_id, until_ms",
         6},
    [ST_DIGEST_COUNT] = {"nt_digest_count",
                         "SELECT coalesce(max(count), 1) FROM "
                         "notifier.digests WHERE head_id = $1",
                         1},
    [ST_SET_DUE] = {"nt_set_due",
                    "UPDATE notifier.notifications SET due_ms = $2, "
                    "digest_state = $3 WHERE id = $1",
                    3},
    [ST_ACCEPT] = {"nt_accept",
                   "SELECT ord, id, dup FROM notifier.accept($1::jsonb, $2)",
                   2},
    [ST_OUTBOX_TAKE] = {"nt_outbox_take",
                        "SELECT seq, notification_id, priority, due_ms "
                        "FROM notifier.outbox ORDER BY seq LIMIT $1",
                        1},
    [ST_OUTBOX_DONE] = {"nt_outbox_done",
                        "DELETE FROM notifier.outbox "
                        "WHERE seq = ANY ($1::bigint[])",
                        1},
    [ST_LIST_DEAD] = {"nt_list_dead",
                      "SELECT DISTINCT notification_id FROM "
                      "notifier.deliveries WHERE status = 3 AND "
                      "($1::bigint = 0 OR notification_id < $1) "
                      "ORDER BY notification_id DESC LIMIT $2",
                      2},
    /* Dead channels back to queued and an outbox row, together. */
    [ST_REPLAY] = {"nt_replay",
                   "WITH r AS (UPDATE notifier.deliveries SET status = 0, "
                   "attempts = 0, next_ms = 0, updated_at = $2 "
                   "WHERE notification_id = $1 AND status = 3 "
                   "RETURNING channel), "
                   "o AS (INSERT INTO notifier.outbox (notification_id, "
                   "priority, due_ms) SELECT n.id, n.priority, 0 "
                   "FROM notifier.notifications n WHERE n.id = $1 "
                   "AND EXISTS (SELECT 1 FROM r) RETURNING 1) "
                   "SELECT (SELECT count(*) FROM r), "
                   "(SELECT count(*) FROM notifier.notifications "
                   "WHERE id = $1)",
                   2},
    [ST_PUT_PREFS] = {"nt_put_prefs",
                      "SELECT notifier.put_preferences($1, $2::text[], "
                      "$3::smallint[], $4::boolean[], $5, $6, $7)",
                      7},
    [ST_GET_PREFS] = {"nt_get_prefs",
                      "SELECT type, channel, enabled FROM "
                      "notifier.preferences WHERE user_id = $1 "
                      "ORDER BY type, channel LIMIT 1000",
                      1},
    [ST_GET_QUIET] = {"nt_get_quiet",
                      "SELECT start_min, end_min, time_zone FROM "
                      "notifier.quiet_hours WHERE user_id = $1",
                      1},
    [ST_SET_PREF] = {"nt_set_pref",
                     "INSERT INTO notifier.preferences (user_id, type, "
                     "channel, enabled) VALUES ($1, $2, $3, $4) "
                     "ON CONFLICT (user_id, type, channel) DO UPDATE "
                     "SET enabled = EXCLUDED.enabled",
                     4},
    /* At most 10 devices; re-registering an endpoint updates it. */
    [ST_DEV_ADD] = {"nt_dev_add",
                    "INSERT INTO notifier.devices (id, user_id, endpoint, "
                    "platform, created_at) "
                    "SELECT nextval('notifier.ids'), $1, $2, $3, $4 "
                    "WHERE (SELECT count(*) FROM notifier.devices "
                    "WHERE user_id = $1 AND endpoint <> $2) < 10 "
                    "ON CONFLICT (user_id, endpoint) DO UPDATE "
                    "SET platform = EXCLUDED.platform "
                    "RETURNING id, created_at",
                    4},
    [ST_DEV_LIST] = {"nt_dev_list",
                     "SELECT id, endpoint, platform, created_at FROM "
                     "notifier.devices WHERE user_id = $1 AND "
                     "($2::bigint = 0 OR id < $2) ORDER BY id DESC LIMIT $3",
                     3},
    [ST_DEV_DEL] = {"nt_dev_del",
                    "DELETE FROM notifier.devices "
                    "WHERE id = $1 AND user_id = $2",
                    2},
    [ST_CONTACT_GET] = {"nt_contact_get",
                        "SELECT email, phone, pending_phone, code_hash, "
                        "code_sent_at, code_attempts FROM notifier.contacts "
                        "WHERE user_id = $1",
                        1},
    [ST_CONTACT_PUT] =
        {"nt_contact_put",
         "INSERT INTO notifier.contacts (user_id, email, phone, "
         "pending_phone, code_hash, code_sent_at, code_attempts) "
         "VALUES ($1, $2, $3, $4, $5, $6, $7) "
         "ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, "
         "phone = EXCLUDED.phone, pending_phone = EXCLUDED.pending_phone, "
         "code_hash = EXCLUDED.code_hash, "
         "code_sent_at = EXCLUDED.code_sent_at, "
         "code_attempts = EXCLUDED.code_attempts",
         7},
    [ST_CODE_FAILED] = {"nt_code_failed",
                        "UPDATE notifier.contacts SET code_attempts = "
                        "code_attempts + 1 WHERE user_id = $1",
                        1},
    [ST_INBOX_LIST] = {"nt_inbox_list",
                       "SELECT id, type, title, body, data, read, "
                       "created_at FROM notifier.inbox WHERE user_id = $1 "
                       "AND ($2::bigint = 0 OR id < $2) "
                       "ORDER BY id DESC LIMIT $3",
                       3},
    [ST_INBOX_UNREAD] = {"nt_inbox_unread",
                         "SELECT count(*) FROM notifier.inbox "
                         "WHERE user_id = $1 AND NOT read",
                         1},
    [ST_MARK_READ] = {"nt_mark_read",
                      "UPDATE notifier.inbox SET read = true "
                      "WHERE id = $1 AND user_id = $2",
                      2},
    [ST_MARK_ALL] = {"nt_mark_all",
                     "UPDATE notifier.inbox SET read = true "
                     "WHERE user_id = $1 AND NOT read",
                     1},
};

struct nt_pg {
	cm_pg *pg;
};

static const char *
sqlstate(const PGresult *res)
{
	const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return (s != NULL ? s : "");
}

static PGresult *
run(struct nt_pg *p, enum pg_stmt k, const char *const *params)
{
	return (cm_pg_exec_prepared(p->pg, stmts[k].name, stmts[k].sql,
	                            stmts[k].nparams, params));
}

/*
 * Maps a result to a cm_code, logging SQL errors; clears it unless OK.
 * A lock or statement timeout is CM_UNAVAILABLE, a bad value (22xxx)
 * CM_INVALID_ARGUMENT, other SQL errors CM_INTERNAL.
 */
static int
check(PGresult *res, ExecStatusType want, const char *what)
{
	const char *st;
	int rv;

	if (res == NULL)
		return (CM_UNAVAILABLE);
	if (PQresultStatus(res) == want)
		return (CM_OK);
	st = sqlstate(res);
	if (strncmp(st, "22", 2) == 0) {
		rv = CM_INVALID_ARGUMENT;
	} else {
		log_warnx("event=pg_error op=%s sqlstate=%s err=\"%.*s\"", what,
		          st, (int) strcspn(PQresultErrorMessage(res), "\n\""),
		          PQresultErrorMessage(res));
		rv = strcmp(st, "55P03") == 0 || strcmp(st, "57014") == 0
		         ? CM_UNAVAILABLE
		         : CM_INTERNAL;
	}
	PQclear(res);
	return (rv);
}

static int64_t
i64(const PGresult *res, int row, int col)
{
	return (strtoll(PQgetvalue(res, row, col), NULL, 10));
}

static char *
str(cm_arena *a, const PGresult *res, int row, int col)
{
	return (cm_arena_strdup(a, PQgetvalue(res, row, col)));
}

#define NUM(buf, v) snprintf(buf, sizeof(buf), "%" PRId64, (int64_t) (v))

/* Runs k expecting a command; *rows gets the rows it touched. */
static int
exec_count(struct nt_pg *p, enum pg_stmt k, const char *const *params,
           int64_t *rows)
{
	PGresult *res = run(p, k, params);
	int rv;

	if ((rv = check(res, PGRES_COMMAND_OK, stmts[k].name)) != CM_OK)
		return (rv);
	if (rows != NULL)
		*rows = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return (CM_OK);
}

/* ---- the engine's ops ---- */

static int
op_lock(void *impl, int64_t id, bool *got)
{
	char s[24];
	const char *params[1] = {s};
	PGresult *res;
	int rv;

	NUM(s, id);
	res = run(impl, ST_LOCK, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "lock")) != CM_OK)
		return (rv);
	*got = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return (CM_OK);
}

static void
op_unlock(void *impl, int64_t id)
{
	char s[24];
	const char *params[1] = {s};
	PGresult *res;

	NUM(s, id);
	res = run(impl, ST_UNLOCK, params);
	if (check(res, PGRES_TUPLES_OK, "unlock") == CM_OK)
		PQclear(res);
}

static int
op_load(void *impl, int64_t id, cm_arena *a, nt_notification *n)
{
	char s[24];
	const char *params[1] = {s};
	PGresult *res;
	int rv, rows;

	NUM(s, id);
	res = run(impl, ST_LOAD, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "load")) != CM_OK)
		return (rv);
	if ((rows = PQntuples(res)) == 0) {
		PQclear(res);
		return (CM_NOT_FOUND);
	}
	memset(n, 0, sizeof(*n));
	n->id = id;
	n->user = str(a, res, 0, 0);
	n->type = str(a, res, 0, 1);
	n->priority = (int) i64(res, 0, 2);
	n->title = str(a, res, 0, 3);
	n->body = str(a, res, 0, 4);
	n->data_json = str(a, res, 0, 5);
	n->tmpl = str(a, res, 0, 6);
	n->vars_json = str(a, res, 0, 7);
	n->grp = str(a, res, 0, 8);
	n->due_ms = i64(res, 0, 9);
	n->created_at = i64(res, 0, 10);
	n->digest_state = (int) i64(res, 0, 11);
	for (int r = 0; r < rows && n->ndel < NT_CH_COUNT; r++) {
		nt_delivery *d = &n->del[n->ndel++];

		d->channel = (int) i64(res, r, 12);
		d->status = (int) i64(res, r, 13);
		d->attempts = (int) i64(res, r, 14);
		cm_strlcpy(d->provider, PQgetvalue(res, r, 15),
		           sizeof(d->provider));
		cm_strlcpy(d->last_error, PQgetvalue(res, r, 16),
		           sizeof(d->last_error));
		d->next_ms = i64(res, r, 17);
	}
	PQclear(res);
	return (CM_OK);
}

static int
op_user_ctx(void *impl, const char *user, const char *type, cm_arena *a,
            nt_user_ctx *u)
{
	const char *params[2] = {user, type};
	PGresult *res;
	const char *off;
	int rv;

	memset(u, 0, sizeof(*u));
	res = run(impl, ST_USER, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "user")) != CM_OK)
		return (rv);
	if (PQntuples(res) != 1) {
		PQclear(res);
		return (CM_INTERNAL);
	}
	for (off = PQgetvalue(res, 0, 0); *off != '\0';) {
		long c = strtol(off, (char **) &off, 10);

		if (c >= 0 && c < NT_CH_COUNT)
			u->off_mask |= 1u << c;
		if (*off == ',')
			off++;
		else
			break;
	}
	u->quiet_until_ms = i64(res, 0, 1);
	u->email = str(a, res, 0, 2);
	u->phone = str(a, res, 0, 3);
	u->pending_phone = str(a, res, 0, 4);
	PQclear(res);

	res = run(impl, ST_DEVICES, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "devices")) != CM_OK)
		return (rv);
	for (int r = 0; r < PQntuples(res) && u->ndevices < NT_DEVICES_MAX;
	     r++) {
		u->devices[u->ndevices].id = i64(res, r, 0);
		u->devices[u->ndevices++].endpoint = str(a, res, r, 1);
	}
	PQclear(res);
	return (CM_OK);
}

static int
op_record(void *impl, int64_t id, const nt_delivery *d, const char *what,
          int64_t now_ms)
{
	char sid[24], ch[24], st[24], at[24], next[24], now[24], at_ms[24];
	const char *params[10] = {sid,           ch,   st,  at,   d->provider,
	                          d->last_error, next, now, what, at_ms};

	NUM(sid, id);
	NUM(ch, d->channel);
	NUM(st, d->status);
	NUM(at, d->attempts);
	NUM(next, d->next_ms);
	NUM(now, now_ms / 1000);
	NUM(at_ms, now_ms);
	return (exec_count(impl, ST_RECORD, params, NULL));
}

static int
op_inbox_put(void *impl, const nt_notification *n, const char *title,
             const char *body)
{
	char sid[24], at[24];
	const char *params[7] = {sid,  n->user,      n->type, title,
	                         body, n->data_json, at};

	NUM(sid, n->id);
	NUM(at, n->created_at);
	return (exec_count(impl, ST_INBOX_PUT, params, NULL));
}

static int
op_device_remove(void *impl, int64_t device_id)
{
	char sid[24];
	const char *params[1] = {sid};

	NUM(sid, device_id);
	log_info("event=device_removed device=%" PRId64, device_id);
	return (exec_count(impl, ST_DEVICE_REMOVE, params, NULL));
}

static int
op_digest_join(void *impl, const nt_notification *n, int64_t now_ms,
               int64_t window_ms, int64_t *head, int64_t *until_ms)
{
	char sid[24], now[24], win[24];
	const char *params[6] = {n->user, n->type, n->grp, sid, now, win};
	PGresult *res;
	int rv;

	NUM(sid, n->id);
	NUM(now, now_ms);
	NUM(win, window_ms);
	res = run(impl, ST_DIGEST_JOIN, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "digest_join")) != CM_OK)
		return (rv);
	if (PQntuples(res) != 1) {
		PQclear(res);
		return (CM_INTERNAL);
	}
	*head = i64(res, 0, 0);
	*until_ms = i64(res, 0, 1);
	PQclear(res);
	return (CM_OK);
}

static int
op_digest_count(void *impl, int64_t head, int *count)
{
	char sid[24];
	const char *params[1] = {sid};
	PGresult *res;
	int rv;

	NUM(sid, head);
	res = run(impl, ST_DIGEST_COUNT, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "digest_count")) != CM_OK)
		return (rv);
	*count = PQntuples(res) == 1 ? (int) i64(res, 0, 0) : 1;
	PQclear(res);
	return (CM_OK);
}

static int
op_set_due(void *impl, int64_t id, int64_t due_ms, int digest_state)
{
	char sid[24], due[24], ds[24];
	const char *params[3] = {sid, due, ds};

	NUM(sid, id);
	NUM(due, due_ms);
	NUM(ds, digest_state);
	return (exec_count(impl, ST_SET_DUE, params, NULL));
}

static const struct nt_store_ops pg_ops = {
    .name = "postgres",
    .lock = op_lock,
    .unlock = op_unlock,
    .load = op_load,
    .user_ctx = op_user_ctx,
    .record = op_record,
    .inbox_put = op_inbox_put,
    .device_remove = op_device_remove,
    .digest_join = op_digest_join,
    .digest_count = op_digest_count,
    .set_due = op_set_due,
};

struct nt_pg *
nt_pg_new(const char *conninfo)
{
	struct nt_pg *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		fatal("event=pg_new");
	p->pg = cm_pg_new(conninfo, APP_NAME);
	return (p);
}

void
nt_pg_free(struct nt_pg *p)
{
	if (p == NULL)
		return;
	cm_pg_free(p->pg);
	free(p);
}

void
nt_pg_store(struct nt_pg *p, struct nt_store *out)
{
	out->ops = &pg_ops;
	out->impl = p;
}

void
nt_pg_set_deadline(struct nt_pg *p, int64_t deadline_ms)
{
	cm_pg_set_deadline(p->pg, deadline_ms);
}

bool
nt_pg_health(struct nt_pg *p, bool probe, const char **detail)
{
	int64_t age;

	if (probe)
		return (cm_pg_check(p->pg, HEALTH_MAX_AGE_MS, HEALTH_TIMEOUT_MS,
		                    detail));
	return (cm_pg_state(p->pg, &age, detail));
}

bool
nt_pg_ping(struct nt_pg *p)
{
	return (cm_pg_ping(p->pg));
}

int
nt_pg_migrate(const char *conninfo)
{
	cm_pg *pg = cm_pg_new(conninfo, APP_NAME);
	int rv;

	rv = cm_pg_migrate(pg, "notifier", notifier_schema_sql);
	cm_pg_free(pg);
	return (rv);
}

/* ---- the accept batcher ---- */

struct waiter {
	struct waiter *next;
	int64_t until;
	int rv;
	int64_t id;
	bool dup;
	sem_t done;
	atomic_bool gone;
	atomic_int refs;
	char elem[]; /* the JSON element */
};

struct nt_batcher {
	pthread_mutex_t mu;
	pthread_cond_t work;
	struct waiter *head, **tail;
	bool stop;
	size_t max_batch;
	struct nt_pg *p;
	pthread_t thread;
	void (*on_commit)(void *);
	void *arg;
	cm_counter *batches, *rows;
	cm_histogram *latency;
};

static void
waiter_unref(struct waiter *w)
{
	if (atomic_fetch_sub(&w->refs, 1) == 1) {
		sem_destroy(&w->done);
		free(w);
	}
}

/* One accept call for elems; fills each waiter from its row. */
static int
accept_call(struct nt_pg *p, struct waiter **w, size_t n)
{
	char now[24], *batch;
	const char *params[2];
	size_t len = 3;
	PGresult *res;
	int rv;

	for (size_t i = 0; i < n; i++)
		len += strlen(w[i]->elem) + 1;
	if ((batch = malloc(len)) == NULL)
		fatal("event=accept_batch");
	batch[0] = '[';
	len = 1;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(w[i]->elem);

		if (i > 0)
			batch[len++] = ',';
		memcpy(batch + len, w[i]->elem, l);
		len += l;
	}
	batch[len++] = ']';
	batch[len] = '\0';
	NUM(now, cm_now_s());
	params[0] = batch;
	params[1] = now;
	res = run(p, ST_ACCEPT, params);
	free(batch);
	if (res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR &&
	    strncmp(sqlstate(res), "55", 2) != 0 &&
	    strncmp(sqlstate(res), "57", 2) != 0 && n > 1) {
		log_warnx("event=accept_batch_failed rows=%zu sqlstate=%s "
		          "msg=\"retrying one by one\"",
		          n, sqlstate(res));
		PQclear(res);
		for (size_t i = 0; i < n; i++)
			w[i]->rv = accept_call(p, &w[i], 1);
		return (CM_OK);
	}
	if ((rv = check(res, PGRES_TUPLES_OK, "accept")) != CM_OK) {
		for (size_t i = 0; i < n; i++)
			w[i]->rv = rv;
		return (rv);
	}
	for (size_t i = 0; i < n; i++)
		w[i]->rv = CM_INTERNAL;
	for (int r = 0; r < PQntuples(res); r++) {
		int64_t ord = i64(res, r, 0);

		if (ord < 0 || (size_t) ord >= n)
			continue;
		w[ord]->id = i64(res, r, 1);
		w[ord]->dup = PQgetvalue(res, r, 2)[0] == 't';
		w[ord]->rv = CM_OK;
	}
	PQclear(res);
	return (n == 1 ? w[0]->rv : CM_OK);
}

static void *
batcher_main(void *arg)
{
	struct nt_batcher *b = arg;
	struct waiter **batch, *w;
	int64_t now, until;
	size_t n;

	if ((batch = calloc(b->max_batch, sizeof(*batch))) == NULL)
		fatal("event=batcher");
	(void) cm_pg_ping(b->p->pg);
	pthread_mutex_lock(&b->mu);
	for (;;) {
		while (b->head == NULL && !b->stop)
			pthread_cond_wait(&b->work, &b->mu);
		if (b->head == NULL)
			break;
		now = cm_mono_ms();
		until = 0;
		for (n = 0; n < b->max_batch && b->head != NULL;) {
			w = b->head;
			if ((b->head = w->next) == NULL)
				b->tail = &b->head;
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
			int64_t t0 = cm_mono_us();

			cm_pg_set_deadline(b->p->pg, until - BATCH_MARGIN_MS);
			(void) accept_call(b->p, batch, n);
			cm_histogram_observe_us(b->latency, cm_mono_us() - t0);
			cm_counter_add(b->batches, 1);
			cm_counter_add(b->rows, n);
			if (b->on_commit != NULL)
				b->on_commit(b->arg);
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

struct nt_batcher *
nt_batcher_start(const char *conninfo, size_t max_batch,
                 void (*on_commit)(void *), void *arg)
{
	struct nt_batcher *b;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		fatal("event=batcher_start");
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->work, NULL);
	b->tail = &b->head;
	b->max_batch = max_batch > 0 ? max_batch : 256;
	b->p = nt_pg_new(conninfo);
	b->on_commit = on_commit;
	b->arg = arg;
	b->batches = cm_counter_get("notifier_accept_batches_total", "",
	                            "Accept statements written by the batcher");
	b->rows = cm_counter_get("notifier_accept_rows_total", "",
	                         "Sends offered to the batcher");
	b->latency = cm_histogram_get("notifier_accept_batch_seconds", "",
	                              "Time to write and commit one batch");
	if (pthread_create(&b->thread, NULL, batcher_main, b) != 0)
		fatalx("event=batcher_start err=pthread_create");
	return (b);
}

void
nt_batcher_stop(struct nt_batcher *b)
{
	if (b == NULL)
		return;
	pthread_mutex_lock(&b->mu);
	b->stop = true;
	pthread_cond_signal(&b->work);
	pthread_mutex_unlock(&b->mu);
	pthread_join(b->thread, NULL);
	nt_pg_free(b->p);
	pthread_cond_destroy(&b->work);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

int
nt_pg_accept(struct nt_batcher *b, const char *elem, int64_t until, int64_t *id,
             bool *dup)
{
	size_t len = strlen(elem) + 1;
	struct waiter *w;
	struct timespec ts = {.tv_sec = (time_t) (until / 1000),
	                      .tv_nsec = (long) (until % 1000) * 1000000L};
	int rv, e;

	if ((w = calloc(1, sizeof(*w) + len)) == NULL)
		fatal("event=accept");
	memcpy(w->elem, elem, len);
	w->until = until;
	sem_init(&w->done, 0, 0);
	atomic_init(&w->gone, false);
	atomic_init(&w->refs, 2);
	pthread_mutex_lock(&b->mu);
	*b->tail = w;
	b->tail = &w->next;
	if (b->head == w)
		pthread_cond_signal(&b->work);
	pthread_mutex_unlock(&b->mu);
	while ((e = sem_clockwait(&w->done, CLOCK_MONOTONIC, &ts)) != 0 &&
	       errno == EINTR)
		;
	if (e != 0 && sem_trywait(&w->done) == 0)
		e = 0;
	if (e == 0) {
		rv = w->rv;
		if (rv == CM_OK) {
			*id = w->id;
			*dup = w->dup;
		}
	} else {
		atomic_store(&w->gone, true);
		log_warnx("event=accept_timeout");
		rv = CM_UNAVAILABLE;
	}
	waiter_unref(w);
	return (rv);
}

/* ---- outbox ---- */

int
nt_pg_outbox_take(struct nt_pg *p, nt_outbox_row *rows, size_t max, size_t *n)
{
	char lim[24];
	const char *params[1] = {lim};
	PGresult *res;
	int rv;

	NUM(lim, max);
	res = run(p, ST_OUTBOX_TAKE, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "outbox_take")) != CM_OK)
		return (rv);
	*n = 0;
	for (int r = 0; r < PQntuples(res) && *n < max; r++) {
		rows[*n].seq = i64(res, r, 0);
		rows[*n].id = i64(res, r, 1);
		rows[*n].priority = (int) i64(res, r, 2);
		rows[*n].due_ms = i64(res, r, 3);
		(*n)++;
	}
	PQclear(res);
	return (CM_OK);
}

int
nt_pg_outbox_done(struct nt_pg *p, const nt_outbox_row *rows, size_t n)
{
	char *arr, *q;
	const char *params[1];
	int rv;

	if (n == 0)
		return (CM_OK);
	if ((arr = malloc(n * 22 + 3)) == NULL)
		fatal("event=outbox_done");
	q = arr;
	*q++ = '{';
	for (size_t i = 0; i < n; i++)
		q += sprintf(q, "%s%" PRId64, i > 0 ? "," : "", rows[i].seq);
	*q++ = '}';
	*q = '\0';
	params[0] = arr;
	rv = exec_count(p, ST_OUTBOX_DONE, params, NULL);
	free(arr);
	return (rv);
}

/* ---- admin ---- */

int
nt_pg_get(struct nt_pg *p, int64_t id, cm_arena *a,
          Notifier__Notification **out)
{
	Notifier__Notification *r;
	nt_notification n;
	int rv;

	if ((rv = op_load(p, id, a, &n)) != CM_OK)
		return (rv);
	r = cm_arena_alloc(a, sizeof(*r));
	notifier__notification__init(r);
	r->id = cm_arena_printf(a, "%" PRId64, id);
	r->user = cm_pbstr(n.user);
	r->type = cm_pbstr(n.type);
	r->priority = (Notifier__Priority) n.priority;
	r->created_at = n.created_at;
	r->title = cm_pbstr(n.title);
	r->body = cm_pbstr(n.body);
	r->send_at = n.due_ms / 1000;
	r->group = cm_pbstr(n.grp);
	r->n_channels = n.ndel;
	r->channels = cm_arena_alloc(a, (n.ndel + 1) * sizeof(*r->channels));
	for (size_t i = 0; i < n.ndel; i++) {
		Notifier__ChannelState *c = cm_arena_alloc(a, sizeof(*c));

		notifier__channel_state__init(c);
		c->channel = cm_pbstr(nt_channel_name(n.del[i].channel));
		c->status = cm_pbstr(nt_status_name(n.del[i].status));
		c->attempts = n.del[i].attempts;
		c->provider = cm_arena_strdup(a, n.del[i].provider);
		c->last_error = cm_arena_strdup(a, n.del[i].last_error);
		r->channels[i] = c;
	}
	*out = r;
	return (CM_OK);
}

int
nt_pg_list_dead(struct nt_pg *p, int64_t after, size_t max, cm_arena *a,
                int64_t *ids, size_t *n)
{
	char aft[24], lim[24];
	const char *params[2] = {aft, lim};
	PGresult *res;
	int rv;

	(void) a;
	NUM(aft, after);
	NUM(lim, max);
	res = run(p, ST_LIST_DEAD, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "list_dead")) != CM_OK)
		return (rv);
	*n = 0;
	for (int r = 0; r < PQntuples(res) && *n < max; r++)
		ids[(*n)++] = i64(res, r, 0);
	PQclear(res);
	return (CM_OK);
}

int
nt_pg_replay(struct nt_pg *p, int64_t id, int *n)
{
	char sid[24], now[24];
	const char *params[2] = {sid, now};
	PGresult *res;
	int rv;

	NUM(sid, id);
	NUM(now, cm_now_s());
	res = run(p, ST_REPLAY, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "replay")) != CM_OK)
		return (rv);
	if (PQntuples(res) != 1 || i64(res, 0, 1) == 0) {
		PQclear(res);
		return (CM_NOT_FOUND);
	}
	*n = (int) i64(res, 0, 0);
	PQclear(res);
	return (CM_OK);
}

/* ---- preferences ---- */

/* An array literal of strings, each quoted with " and \ escaped. */
static char *
text_array(const char *const *v, size_t n)
{
	size_t len = 3;
	char *s, *q;

	for (size_t i = 0; i < n; i++)
		len += strlen(v[i]) * 2 + 3;
	if ((s = malloc(len)) == NULL)
		fatal("event=text_array");
	q = s;
	*q++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			*q++ = ',';
		*q++ = '"';
		for (const char *c = v[i]; *c != '\0'; c++) {
			if (*c == '"' || *c == '\\')
				*q++ = '\\';
			*q++ = *c;
		}
		*q++ = '"';
	}
	*q++ = '}';
	*q = '\0';
	return (s);
}

int
nt_pg_put_prefs(struct nt_pg *p, const char *user,
                const Notifier__Preferences *in, const int *channels,
                int qstart, int qend)
{
	size_t n = in->n_preferences;
	const char **types = calloc(n + 1, sizeof(*types));
	char *ta, *ca, *ea, qs[24], qe[24];
	const char *params[7];
	const char *tz = "UTC";
	int rv;

	if (types == NULL || (ca = malloc(n * 4 + 3)) == NULL ||
	    (ea = malloc(n * 2 + 3)) == NULL)
		fatal("event=put_prefs");
	for (size_t i = 0; i < n; i++)
		types[i] = in->preferences[i]->type;
	ta = text_array(types, n);
	char *q = ca, *r = ea;

	*q++ = '{';
	*r++ = '{';
	for (size_t i = 0; i < n; i++) {
		q += sprintf(q, "%s%d", i > 0 ? "," : "", channels[i]);
		r += sprintf(r, "%s%c", i > 0 ? "," : "",
		             in->preferences[i]->enabled ? 't' : 'f');
	}
	*q++ = '}';
	*r++ = '}';
	*q = *r = '\0';
	if (in->quiet_hours != NULL && in->quiet_hours->time_zone != NULL &&
	    *in->quiet_hours->time_zone != '\0')
		tz = in->quiet_hours->time_zone;
	NUM(qs, qstart);
	NUM(qe, qend);
	params[0] = user;
	params[1] = ta;
	params[2] = ca;
	params[3] = ea;
	params[4] = qs;
	params[5] = qe;
	params[6] = tz;
	{
		PGresult *res = run(p, ST_PUT_PREFS, params);

		if ((rv = check(res, PGRES_TUPLES_OK, "put_prefs")) == CM_OK)
			PQclear(res);
	}
	free(types);
	free(ta);
	free(ca);
	free(ea);
	return (rv);
}

static char *
hhmm(cm_arena *a, int min)
{
	return (cm_arena_printf(a, "%02d:%02d", min / 60, min % 60));
}

int
nt_pg_get_prefs(struct nt_pg *p, const char *user, cm_arena *a,
                Notifier__Preferences **out)
{
	const char *params[1] = {user};
	Notifier__Preferences *r;
	PGresult *res;
	int rv, rows;

	res = run(p, ST_GET_PREFS, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "get_prefs")) != CM_OK)
		return (rv);
	r = cm_arena_alloc(a, sizeof(*r));
	notifier__preferences__init(r);
	rows = PQntuples(res);
	r->preferences =
	    cm_arena_alloc(a, (size_t) (rows + 1) * sizeof(*r->preferences));
	for (int i = 0; i < rows; i++) {
		Notifier__Preference *e = cm_arena_alloc(a, sizeof(*e));

		notifier__preference__init(e);
		e->type = str(a, res, i, 0);
		e->channel = cm_pbstr(nt_channel_name((int) i64(res, i, 1)));
		if (e->channel == NULL)
			e->channel = cm_pbstr("");
		e->enabled = PQgetvalue(res, i, 2)[0] == 't';
		r->preferences[r->n_preferences++] = e;
	}
	PQclear(res);
	res = run(p, ST_GET_QUIET, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "get_quiet")) != CM_OK)
		return (rv);
	if (PQntuples(res) == 1) {
		Notifier__QuietHours *q = cm_arena_alloc(a, sizeof(*q));

		notifier__quiet_hours__init(q);
		q->start = hhmm(a, (int) i64(res, 0, 0));
		q->end = hhmm(a, (int) i64(res, 0, 1));
		q->time_zone = str(a, res, 0, 2);
		r->quiet_hours = q;
	}
	PQclear(res);
	*out = r;
	return (CM_OK);
}

int
nt_pg_set_pref(struct nt_pg *p, const char *user, const char *type, int channel,
               bool enabled)
{
	char ch[24];
	const char *params[4] = {user, type, ch, enabled ? "t" : "f"};

	NUM(ch, channel);
	return (exec_count(p, ST_SET_PREF, params, NULL));
}

/* ---- devices ---- */

static Notifier__Device *
device_row(cm_arena *a, const PGresult *res, int r)
{
	Notifier__Device *d = cm_arena_alloc(a, sizeof(*d));

	notifier__device__init(d);
	d->id = str(a, res, r, 0);
	d->endpoint = str(a, res, r, 1);
	d->platform = str(a, res, r, 2);
	d->created_at = i64(res, r, 3);
	return (d);
}

int
nt_pg_add_device(struct nt_pg *p, const char *user, const char *endpoint,
                 const char *platform, cm_arena *a, Notifier__Device **out)
{
	char now[24];
	const char *params[4] = {user, endpoint, platform, now};
	Notifier__Device *d;
	PGresult *res;
	int rv;

	NUM(now, cm_now_s());
	res = run(p, ST_DEV_ADD, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "dev_add")) != CM_OK)
		return (rv);
	if (PQntuples(res) != 1) {
		PQclear(res);
		return (CM_RESOURCE_EXHAUSTED);
	}
	d = cm_arena_alloc(a, sizeof(*d));
	notifier__device__init(d);
	d->id = str(a, res, 0, 0);
	d->endpoint = cm_arena_strdup(a, endpoint);
	d->platform = cm_arena_strdup(a, platform);
	d->created_at = i64(res, 0, 1);
	PQclear(res);
	*out = d;
	return (CM_OK);
}

int
nt_pg_list_devices(struct nt_pg *p, const char *user, int64_t after, size_t max,
                   cm_arena *a, Notifier__Device **out, size_t *n)
{
	char aft[24], lim[24];
	const char *params[3] = {user, aft, lim};
	PGresult *res;
	int rv;

	NUM(aft, after);
	NUM(lim, max);
	res = run(p, ST_DEV_LIST, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "dev_list")) != CM_OK)
		return (rv);
	*n = 0;
	for (int r = 0; r < PQntuples(res) && *n < max; r++)
		out[(*n)++] = device_row(a, res, r);
	PQclear(res);
	return (CM_OK);
}

int
nt_pg_delete_device(struct nt_pg *p, const char *user, int64_t id)
{
	char sid[24];
	const char *params[2] = {sid, user};
	int64_t rows = 0;
	int rv;

	NUM(sid, id);
	if ((rv = exec_count(p, ST_DEV_DEL, params, &rows)) != CM_OK)
		return (rv);
	return (rows == 0 ? CM_NOT_FOUND : CM_OK);
}

/* ---- contact ---- */

int
nt_pg_get_contact(struct nt_pg *p, const char *user, cm_arena *a, nt_contact *c)
{
	const char *params[1] = {user};
	PGresult *res;
	int rv;

	res = run(p, ST_CONTACT_GET, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "contact_get")) != CM_OK)
		return (rv);
	memset(c, 0, sizeof(*c));
	if (PQntuples(res) == 0) {
		c->email = c->phone = c->pending_phone = c->code_hash =
		    cm_arena_strdup(a, "");
	} else {
		c->email = str(a, res, 0, 0);
		c->phone = str(a, res, 0, 1);
		c->pending_phone = str(a, res, 0, 2);
		c->code_hash = str(a, res, 0, 3);
		c->code_sent_at = i64(res, 0, 4);
		c->code_attempts = (int) i64(res, 0, 5);
	}
	PQclear(res);
	return (CM_OK);
}

int
nt_pg_put_contact(struct nt_pg *p, const char *user, const nt_contact *c)
{
	char sent[24], tries[24];
	const char *params[7] = {
	    user,         c->email, c->phone, c->pending_phone,
	    c->code_hash, sent,     tries};

	NUM(sent, c->code_sent_at);
	NUM(tries, c->code_attempts);
	return (exec_count(p, ST_CONTACT_PUT, params, NULL));
}

int
nt_pg_code_failed(struct nt_pg *p, const char *user)
{
	const char *params[1] = {user};

	return (exec_count(p, ST_CODE_FAILED, params, NULL));
}

/* ---- inbox ---- */

int
nt_pg_list_inbox(struct nt_pg *p, const char *user, int64_t after, size_t max,
                 cm_arena *a, Notifier__InboxItem **out, size_t *n,
                 int64_t *unread)
{
	char aft[24], lim[24];
	const char *params[3] = {user, aft, lim};
	PGresult *res;
	int rv;

	NUM(aft, after);
	NUM(lim, max);
	res = run(p, ST_INBOX_LIST, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "inbox_list")) != CM_OK)
		return (rv);
	*n = 0;
	for (int r = 0; r < PQntuples(res) && *n < max; r++) {
		Notifier__InboxItem *it = cm_arena_alloc(a, sizeof(*it));
		nt_kv *kv = NULL;
		size_t k = 0;

		notifier__inbox_item__init(it);
		it->id = str(a, res, r, 0);
		it->type = str(a, res, r, 1);
		it->title = str(a, res, r, 2);
		it->body = str(a, res, r, 3);
		if (nt_json_map(PQgetvalue(res, r, 4), a, &kv, &k) == 0 &&
		    k > 0) {
			it->data = cm_arena_alloc(a, k * sizeof(*it->data));
			for (size_t i = 0; i < k; i++) {
				Notifier__InboxItem__DataEntry *e =
				    cm_arena_alloc(a, sizeof(*e));

				notifier__inbox_item__data_entry__init(e);
				e->key = cm_pbstr(kv[i].key);
				e->value = cm_pbstr(kv[i].value);
				it->data[i] = e;
			}
			it->n_data = k;
		}
		it->read = PQgetvalue(res, r, 5)[0] == 't';
		it->created_at = i64(res, r, 6);
		out[(*n)++] = it;
	}
	PQclear(res);
	res = run(p, ST_INBOX_UNREAD, params);
	if ((rv = check(res, PGRES_TUPLES_OK, "inbox_unread")) != CM_OK)
		return (rv);
	*unread = PQntuples(res) == 1 ? i64(res, 0, 0) : 0;
	PQclear(res);
	return (CM_OK);
}

int
nt_pg_mark_read(struct nt_pg *p, const char *user, int64_t id)
{
	char sid[24];
	const char *params[2] = {sid, user};
	int64_t rows = 0;
	int rv;

	NUM(sid, id);
	if ((rv = exec_count(p, ST_MARK_READ, params, &rows)) != CM_OK)
		return (rv);
	return (rows == 0 ? CM_NOT_FOUND : CM_OK);
}

int
nt_pg_mark_all_read(struct nt_pg *p, const char *user, int64_t *n)
{
	const char *params[1] = {user};

	return (exec_count(p, ST_MARK_ALL, params, n));
}
