/*
 * The notifier's queues in Redis: the only file that speaks hiredis.
 *
 * Keys (one hash tag, so a Redis Cluster keeps them in one slot, as the
 * scripts below need):
 *   notifier:{q}:s:1, :s:2, :s:3   a stream per priority (high, normal,
 *                                  low), entries {n: <notification id>},
 *                                  consumer group "workers"
 *   notifier:{q}:due               the due-time set: member "<prio>:<id>",
 *                                  score the Unix ms it is due at; backoff,
 *                                  send_at, quiet hours, throttle and
 *                                  digest windows all wait here
 *   notifier:{q}:dead              the dead-letter stream {n, c, e}
 *                                  (capped at about 100000 entries; the
 *                                  state of record is PostgreSQL's)
 *   notifier:{q}:thr:<user>:<ch>:<window>   throttle counters
 *
 * Moving due members into the streams is one script (ZRANGEBYSCORE, XADD,
 * ZREM), so a member is never both lost and not yet streamed.  A worker's
 * read in its weighted order of the streams is one script too (the first
 * stream that has a new message answers), and so is the acknowledgement
 * (XACK, XDEL): one round trip each, measured in tests/bench/notifier.sh
 * (a delivery was bound by round trips on loopback).  (hiredis
 * formats commands itself: no %zu, sizes go as %d.)  A member
 * scheduled again keeps the earlier of its two times (ZADD LT).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redis.h"
#include "status.h"
#include "store.h"
#include "util.h"

#define K_DUE    "notifier:{q}:due"
#define K_DEAD   "notifier:{q}:dead"
#define K_THR    "notifier:{q}:thr:"
#define GROUP    "workers"
#define DEAD_MAX 100000

static const char *const k_stream[NT_PRIOS + 1] = {
    NULL, "notifier:{q}:s:1", "notifier:{q}:s:2", "notifier:{q}:s:3"};

static const char move_lua[] =
    "local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], "
    "'LIMIT', 0, tonumber(ARGV[2])) "
    "for _, m in ipairs(items) do "
    "  local p = tonumber(string.sub(m, 1, 1)) "
    "  if p ~= nil and p >= 1 and p <= 3 then "
    "    redis.call('XADD', KEYS[1 + p], '*', 'n', string.sub(m, 3)) "
    "  end "
    "  redis.call('ZREM', KEYS[1], m) "
    "end "
    "return #items";

/* KEYS: the streams in the order to try; ARGV: group, consumer, count.
 * The reply of the first XREADGROUP that found something, or nil. */
static const char read_first_lua[] =
    "for i = 1, #KEYS do "
    "  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], "
    "'COUNT', ARGV[3], 'STREAMS', KEYS[i], '>') "
    "  if r then return r end "
    "end "
    "return false";

static const char ack_lua[] = "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) "
                              "return redis.call('XDEL', KEYS[1], ARGV[2])";

static const char throttle_lua[] =
    "local v = redis.call('INCR', KEYS[1]) "
    "if v == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
    "return v";

struct nt_redis {
	cm_redis *r;
	char consumer[96];
};

struct nt_redis *
nt_redis_new(const char *url, int timeout_ms, const char *consumer)
{
	struct nt_redis *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		fatal("event=redis_new");
	r->r = cm_redis_new(url, timeout_ms);
	cm_strlcpy(r->consumer, consumer != NULL ? consumer : "-",
	           sizeof(r->consumer));
	return (r);
}

void
nt_redis_free(struct nt_redis *r)
{
	if (r == NULL)
		return;
	cm_redis_free(r->r);
	free(r);
}

bool
nt_redis_health(struct nt_redis *r, bool probe)
{
	int64_t age;

	if (probe)
		return (cm_redis_check(r->r, 1000));
	return (cm_redis_state(r->r, &age));
}

/* CM_OK for a reply that is not an error, else logged. */
static int
reply_check(redisReply *rep, const char *what)
{
	if (rep == NULL)
		return (CM_UNAVAILABLE);
	if (rep->type == REDIS_REPLY_ERROR) {
		log_warnx("event=redis_error op=%s err=\"%s\"", what, rep->str);
		freeReplyObject(rep);
		return (CM_INTERNAL);
	}
	return (CM_OK);
}

int
nt_redis_init_groups(struct nt_redis *r)
{
	for (int p = 1; p <= NT_PRIOS; p++) {
		redisReply *rep = cm_redis_cmd(
		    r->r, "XGROUP CREATE %s " GROUP " 0 MKSTREAM", k_stream[p]);

		if (rep == NULL)
			return (CM_UNAVAILABLE);
		if (rep->type == REDIS_REPLY_ERROR &&
		    strncmp(rep->str, "BUSYGROUP", 9) != 0) {
			log_warnx("event=xgroup_create err=\"%s\"", rep->str);
			freeReplyObject(rep);
			return (CM_INTERNAL);
		}
		freeReplyObject(rep);
	}
	return (CM_OK);
}

int
nt_redis_push(struct nt_redis *r, int prio, int64_t id)
{
	redisReply *rep;
	int rv;

	if (prio < 1 || prio > NT_PRIOS)
		prio = 2;
	rep = cm_redis_cmd(r->r, "XADD %s * n %" PRId64, k_stream[prio], id);
	if ((rv = reply_check(rep, "xadd")) == CM_OK)
		freeReplyObject(rep);
	return (rv);
}

/*
 * Relays outbox rows in one pipeline: due ones onto their stream (XADD),
 * later ones into the due-time set (ZADD LT).  One round trip for a
 * batch instead of one per row: a high-priority row behind a batch of
 * normal ones waits for the batch (tests/bench/notifier.sh).  Every reply
 * is read, so the connection stays in step; CM_OK only if each command
 * succeeded (the rows are relayed again otherwise, which is harmless).
 */
int
nt_redis_relay(struct nt_redis *r, const nt_outbox_row *rows, size_t n,
               int64_t now_ms)
{
	size_t sent = 0;
	int rv = CM_OK;

	for (size_t i = 0; i < n; i++) {
		int p = rows[i].priority < 1 || rows[i].priority > NT_PRIOS
		            ? 2
		            : rows[i].priority;
		int a = rows[i].due_ms > now_ms
		            ? cm_redis_append(r->r,
		                              "ZADD " K_DUE " LT %" PRId64
		                              " %d:%" PRId64,
		                              rows[i].due_ms, p, rows[i].id)
		            : cm_redis_append(r->r, "XADD %s * n %" PRId64,
		                              k_stream[p], rows[i].id);

		if (a != 0) {
			rv = CM_UNAVAILABLE;
			break;
		}
		sent++;
	}
	for (size_t i = 0; i < sent; i++) {
		redisReply *rep = cm_redis_get_reply(r->r);
		int c = reply_check(rep, "relay");

		if (c == CM_OK)
			freeReplyObject(rep);
		else if (rv == CM_OK)
			rv = c;
	}
	return (rv);
}

int
nt_redis_len(struct nt_redis *r, int prio, long long *len)
{
	redisReply *rep = cm_redis_cmd(r->r, "XLEN %s", k_stream[prio]);
	int rv;

	if ((rv = reply_check(rep, "xlen")) != CM_OK)
		return (rv);
	*len = rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
	freeReplyObject(rep);
	return (CM_OK);
}

int
nt_redis_move_due(struct nt_redis *r, int64_t now_ms, size_t max, size_t *moved)
{
	redisReply *rep = cm_redis_cmd(
	    r->r, "EVAL %s 4 %s %s %s %s %" PRId64 " %d", move_lua, K_DUE,
	    k_stream[1], k_stream[2], k_stream[3], now_ms, (int) max);
	int rv;

	if ((rv = reply_check(rep, "move_due")) != CM_OK)
		return (rv);
	*moved = rep->type == REDIS_REPLY_INTEGER ? (size_t) rep->integer : 0;
	freeReplyObject(rep);
	return (CM_OK);
}

static int
prio_of(const char *key)
{
	for (int p = 1; p <= NT_PRIOS; p++)
		if (strcmp(key, k_stream[p]) == 0)
			return (p);
	return (0);
}

/* Appends the entries [[id, [f, v, ...]], ...] of one stream to out. */
static void
entries(const redisReply *list, int prio, nt_msg *out, size_t max, size_t *n)
{
	if (list == NULL || list->type != REDIS_REPLY_ARRAY)
		return;
	for (size_t i = 0; i < list->elements && *n < max; i++) {
		const redisReply *e = list->element[i], *f;

		if (e == NULL || e->type != REDIS_REPLY_ARRAY ||
		    e->elements < 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING)
			continue;
		nt_msg *m = &out[*n];

		memset(m, 0, sizeof(*m));
		m->prio = prio;
		cm_strlcpy(m->entry, e->element[0]->str, sizeof(m->entry));
		f = e->element[1];
		if (f != NULL && f->type == REDIS_REPLY_ARRAY)
			for (size_t j = 0; j + 1 < f->elements; j += 2)
				if (f->element[j]->type == REDIS_REPLY_STRING &&
				    strcmp(f->element[j]->str, "n") == 0 &&
				    f->element[j + 1]->type ==
				        REDIS_REPLY_STRING)
					m->id = strtoll(f->element[j + 1]->str,
					                NULL, 10);
		(*n)++;
	}
}

/*
 * The messages of an XREADGROUP reply (taken over: rep is freed).  A
 * NOGROUP error (a flushed Redis: the streams went) makes the groups
 * again and reads nothing.
 */
static int
read_reply(struct nt_redis *r, redisReply *rep, nt_msg *out, size_t max,
           size_t *n)
{
	int rv;

	if (rep != NULL && rep->type == REDIS_REPLY_ERROR &&
	    strstr(rep->str, "NOGROUP") != NULL) {
		freeReplyObject(rep);
		return (nt_redis_init_groups(r));
	}
	if ((rv = reply_check(rep, "xreadgroup")) != CM_OK)
		return (rv);
	if (rep->type == REDIS_REPLY_ARRAY)
		for (size_t i = 0; i < rep->elements; i++) {
			const redisReply *s = rep->element[i];

			if (s->type != REDIS_REPLY_ARRAY || s->elements < 2 ||
			    s->element[0]->type != REDIS_REPLY_STRING)
				continue;
			entries(s->element[1], prio_of(s->element[0]->str), out,
			        max, n);
		}
	freeReplyObject(rep);
	return (CM_OK);
}

int
nt_redis_read(struct nt_redis *r, int prio, int block_ms, nt_msg *out,
              size_t max, size_t *n)
{
	const char *argv[16];
	char count[16], block[16];
	size_t argc = 0;
	redisReply *rep;

	*n = 0;
	snprintf(count, sizeof(count), "%zu", max);
	snprintf(block, sizeof(block), "%d", block_ms);
	argv[argc++] = "XREADGROUP";
	argv[argc++] = "GROUP";
	argv[argc++] = GROUP;
	argv[argc++] = r->consumer;
	argv[argc++] = "COUNT";
	argv[argc++] = count;
	if (block_ms > 0) {
		argv[argc++] = "BLOCK";
		argv[argc++] = block;
	}
	argv[argc++] = "STREAMS";
	if (prio >= 1 && prio <= NT_PRIOS) {
		argv[argc++] = k_stream[prio];
		argv[argc++] = ">";
	} else {
		for (int p = 1; p <= NT_PRIOS; p++)
			argv[argc++] = k_stream[p];
		for (int p = 1; p <= NT_PRIOS; p++)
			argv[argc++] = ">";
	}
	rep = cm_redis_cmdargv(r->r, (int) argc, argv, NULL);
	return (read_reply(r, rep, out, max, n));
}

int
nt_redis_read_first(struct nt_redis *r, const int *order, size_t norder,
                    nt_msg *out, size_t max, size_t *n)
{
	const char *argv[8 + NT_PRIOS];
	char count[16], nkeys[16];
	size_t argc = 0;

	*n = 0;
	if (norder == 0 || norder > NT_PRIOS)
		return (CM_INVALID_ARGUMENT);
	snprintf(count, sizeof(count), "%zu", max);
	snprintf(nkeys, sizeof(nkeys), "%zu", norder);
	argv[argc++] = "EVAL";
	argv[argc++] = read_first_lua;
	argv[argc++] = nkeys;
	for (size_t i = 0; i < norder; i++) {
		if (order[i] < 1 || order[i] > NT_PRIOS)
			return (CM_INVALID_ARGUMENT);
		argv[argc++] = k_stream[order[i]];
	}
	argv[argc++] = GROUP;
	argv[argc++] = r->consumer;
	argv[argc++] = count;
	return (read_reply(r, cm_redis_cmdargv(r->r, (int) argc, argv, NULL),
	                   out, max, n));
}

int
nt_redis_autoclaim(struct nt_redis *r, int prio, int64_t idle_ms, nt_msg *out,
                   size_t max, size_t *n)
{
	redisReply *rep;
	int rv;

	*n = 0;
	rep = cm_redis_cmd(
	    r->r, "XAUTOCLAIM %s " GROUP " %s %" PRId64 " 0-0 COUNT %d",
	    k_stream[prio], r->consumer, idle_ms, (int) max);
	if (rep != NULL && rep->type == REDIS_REPLY_ERROR &&
	    strncmp(rep->str, "NOGROUP", 7) == 0) {
		freeReplyObject(rep);
		return (nt_redis_init_groups(r));
	}
	if ((rv = reply_check(rep, "xautoclaim")) != CM_OK)
		return (rv);
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2)
		entries(rep->element[1], prio, out, max, n);
	freeReplyObject(rep);
	return (CM_OK);
}

int
nt_redis_ack(struct nt_redis *r, const nt_msg *m)
{
	redisReply *rep;
	int rv;

	if (m->prio < 1 || m->prio > NT_PRIOS)
		return (CM_INVALID_ARGUMENT);
	rep = cm_redis_cmd(r->r, "EVAL %s 1 %s " GROUP " %s", ack_lua,
	                   k_stream[m->prio], m->entry);
	if ((rv = reply_check(rep, "ack")) == CM_OK)
		freeReplyObject(rep);
	return (rv);
}

/* ---- the engine's queue ops ---- */

static int
q_schedule(void *impl, int prio, int64_t id, int64_t due_ms)
{
	struct nt_redis *r = impl;
	redisReply *rep;
	int rv;

	if (prio < 1 || prio > NT_PRIOS)
		prio = 2;
	rep = cm_redis_cmd(r->r, "ZADD " K_DUE " LT %" PRId64 " %d:%" PRId64,
	                   due_ms, prio, id);
	if ((rv = reply_check(rep, "zadd")) == CM_OK)
		freeReplyObject(rep);
	return (rv);
}

static int
q_dead_letter(void *impl, int64_t id, int channel, const char *error)
{
	struct nt_redis *r = impl;
	redisReply *rep;
	int rv;

	rep = cm_redis_cmd(
	    r->r, "XADD " K_DEAD " MAXLEN ~ %d * n %" PRId64 " c %s e %s",
	    DEAD_MAX, id, nt_channel_name(channel), error);
	if ((rv = reply_check(rep, "dead_letter")) == CM_OK)
		freeReplyObject(rep);
	log_info("event=dead_letter id=%" PRId64 " channel=%s err=\"%s\"", id,
	         nt_channel_name(channel), error);
	return (rv);
}

static int
q_throttle(void *impl, const char *user, int channel, int64_t window_ms,
           int64_t now_ms, long *count)
{
	struct nt_redis *r = impl;
	redisReply *rep;
	char key[256];
	int rv;

	snprintf(key, sizeof(key), K_THR "%s:%d:%" PRId64, user, channel,
	         now_ms / window_ms);
	rep = cm_redis_cmd(r->r, "EVAL %s 1 %s %" PRId64, throttle_lua, key,
	                   window_ms);
	if ((rv = reply_check(rep, "throttle")) != CM_OK)
		return (rv);
	*count = rep->type == REDIS_REPLY_INTEGER ? (long) rep->integer : 0;
	freeReplyObject(rep);
	return (CM_OK);
}

static const struct nt_queue_ops redis_queue_ops = {
    .name = "redis",
    .schedule = q_schedule,
    .dead_letter = q_dead_letter,
    .throttle = q_throttle,
};

void
nt_redis_queue(struct nt_redis *r, struct nt_queue *out)
{
	out->ops = &redis_queue_ops;
	out->impl = r;
}
