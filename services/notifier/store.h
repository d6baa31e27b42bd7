/*
 * The notifier's seams to storage.
 *
 * struct nt_store_ops is what the engine (nt_process) needs of PostgreSQL;
 * struct nt_queue_ops what it needs of Redis (the due-time set, the
 * dead-letter stream, throttle counters).  store_pg.c and store_redis.c
 * implement them on the real stores, store_mem.c in memory for the unit
 * tests.  Every op returns CM_OK or a cm_code (CM_UNAVAILABLE: the store
 * could not be used; CM_NOT_FOUND where said).
 *
 * The rest of this header is the API side of the PostgreSQL store (what
 * the RPC handlers call: preferences, devices, contact, inbox, the admin
 * views), the accept batcher (group commit of Sends), the outbox relay's
 * queries and the Redis queue's calls that only main.c's threads make.
 */
#ifndef NOTIFIER_STORE_H
#define NOTIFIER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "notifier.h"

struct nt_store_ops {
	const char *name;
	/* A session lock on the notification (one worker at a time). */
	int (*lock)(void *impl, int64_t id, bool *got);
	void (*unlock)(void *impl, int64_t id);
	/* The notification and its channels; CM_NOT_FOUND if none. */
	int (*load)(void *impl, int64_t id, cm_arena *a, nt_notification *out);
	int (*user_ctx)(void *impl, const char *user, const char *type,
	                cm_arena *a, nt_user_ctx *out);
	/*
	 * Writes one channel's state and its row of the delivery log
	 * (what: "sent", "failed", ...; d's provider and last_error), both
	 * or neither: one commit for the two.
	 */
	int (*record)(void *impl, int64_t id, const nt_delivery *d,
	              const char *what, int64_t now_ms);
	int (*inbox_put)(void *impl, const nt_notification *n,
	                 const char *title, const char *body);
	int (*device_remove)(void *impl, int64_t device_id);
	/*
	 * Joins n to the digest of its user, type and group: the open one
	 * (ending after now_ms), or a new one with n as its head ending at
	 * now_ms + window_ms.  Sets the head's id and the window's end.
	 */
	int (*digest_join)(void *impl, const nt_notification *n, int64_t now_ms,
	                   int64_t window_ms, int64_t *head, int64_t *until_ms);
	/* How many messages the digest headed by head holds (1 + joined). */
	int (*digest_count)(void *impl, int64_t head, int *count);
	/* Sets due_ms and digest_state of a notification. */
	int (*set_due)(void *impl, int64_t id, int64_t due_ms,
	               int digest_state);
};

struct nt_store {
	const struct nt_store_ops *ops;
	void *impl;
};

struct nt_queue_ops {
	const char *name;
	/* Into the due-time set: due at due_ms, then the stream of prio. */
	int (*schedule)(void *impl, int prio, int64_t id, int64_t due_ms);
	/* Onto the dead-letter stream. */
	int (*dead_letter)(void *impl, int64_t id, int channel,
	                   const char *error);
	/* Counts one message of user on channel in the current window. */
	int (*throttle)(void *impl, const char *user, int channel,
	                int64_t window_ms, int64_t now_ms, long *count);
};

struct nt_queue {
	const struct nt_queue_ops *ops;
	void *impl;
};

/* ---- the in-memory fake (store_mem.c) ---- */

struct nt_mem;
struct nt_mem *nt_mem_new(void);
void nt_mem_free(struct nt_mem *m);
void nt_mem_store(struct nt_mem *m, struct nt_store *out);
void nt_mem_queue(struct nt_mem *m, struct nt_queue *out);
/* Adds a notification with the given channels, all queued; returns it. */
nt_notification *nt_mem_add(struct nt_mem *m, int64_t id, const char *user,
                            const char *type, int prio, const int *channels,
                            size_t nch);
nt_notification *nt_mem_get(struct nt_mem *m, int64_t id);
/* The recipient's context (off_mask, quiet hours, contact, devices). */
nt_user_ctx *nt_mem_user(struct nt_mem *m);
/* What the queue saw. */
int64_t nt_mem_scheduled(struct nt_mem *m, int64_t id); /* 0 if not */
size_t nt_mem_dead_count(struct nt_mem *m);
size_t nt_mem_inbox_count(struct nt_mem *m);
size_t nt_mem_log_count(struct nt_mem *m);

/* ---- PostgreSQL (store_pg.c) ---- */

struct nt_pg;
struct nt_pg *nt_pg_new(const char *conninfo);
void nt_pg_free(struct nt_pg *p);
void nt_pg_store(struct nt_pg *p, struct nt_store *out);
/* Bounds the next statements (cm_pg_set_deadline, cm_mono_ms clock). */
void nt_pg_set_deadline(struct nt_pg *p, int64_t deadline_ms);
bool nt_pg_health(struct nt_pg *p, bool probe, const char **detail);
/* SELECT 1 now: connects ahead of the first request. */
bool nt_pg_ping(struct nt_pg *p);
int nt_pg_migrate(const char *conninfo);

/*
 * The accept batcher: Sends from every RPC worker are written together by
 * one thread (group commit).  nt_pg_accept queues elem (nt_send_prepare's
 * JSON) and waits until it is committed or until until_ms (cm_mono_ms)
 * passes: CM_OK with the id and whether it was a duplicate, or
 * CM_UNAVAILABLE.  on_commit runs on the batcher thread after each commit
 * (main.c wakes the relay).
 */
struct nt_batcher;
struct nt_batcher *nt_batcher_start(const char *conninfo, size_t max_batch,
                                    void (*on_commit)(void *), void *arg);
void nt_batcher_stop(struct nt_batcher *b);
int nt_pg_accept(struct nt_batcher *b, const char *elem, int64_t until_ms,
                 int64_t *id, bool *dup);

/* The outbox: the oldest rows, then their removal once relayed. */
typedef struct nt_outbox_row {
	int64_t seq, id, due_ms;
	int priority;
} nt_outbox_row;
int nt_pg_outbox_take(struct nt_pg *p, nt_outbox_row *rows, size_t max,
                      size_t *n);
int nt_pg_outbox_done(struct nt_pg *p, const nt_outbox_row *rows, size_t n);

/* The admin views. */
int nt_pg_get(struct nt_pg *p, int64_t id, cm_arena *a,
              Notifier__Notification **out);
int nt_pg_list_dead(struct nt_pg *p, int64_t after, size_t max, cm_arena *a,
                    int64_t *ids, size_t *n);
/* Dead channels back to queued, with an outbox row; *n of them. */
int nt_pg_replay(struct nt_pg *p, int64_t id, int *n);

/* Preferences. */
int nt_pg_put_prefs(struct nt_pg *p, const char *user,
                    const Notifier__Preferences *in, const int *channels,
                    int qstart, int qend);
int nt_pg_get_prefs(struct nt_pg *p, const char *user, cm_arena *a,
                    Notifier__Preferences **out);
int nt_pg_set_pref(struct nt_pg *p, const char *user, const char *type,
                   int channel, bool enabled);

/* Devices. */
int nt_pg_add_device(struct nt_pg *p, const char *user, const char *endpoint,
                     const char *platform, cm_arena *a, Notifier__Device **out);
int nt_pg_list_devices(struct nt_pg *p, const char *user, int64_t after,
                       size_t max, cm_arena *a, Notifier__Device **out,
                       size_t *n);
int nt_pg_delete_device(struct nt_pg *p, const char *user, int64_t id);

/* Contact. */
typedef struct nt_contact {
	char *email, *phone, *pending_phone, *code_hash; /* arena */
	int64_t code_sent_at;
	int code_attempts;
} nt_contact;
int nt_pg_get_contact(struct nt_pg *p, const char *user, cm_arena *a,
                      nt_contact *out);
/* Writes email, phone, pending phone and code state as given. */
int nt_pg_put_contact(struct nt_pg *p, const char *user, const nt_contact *c);
int nt_pg_code_failed(struct nt_pg *p, const char *user);

/* Inbox. */
int nt_pg_list_inbox(struct nt_pg *p, const char *user, int64_t after,
                     size_t max, cm_arena *a, Notifier__InboxItem **out,
                     size_t *n, int64_t *unread);
int nt_pg_mark_read(struct nt_pg *p, const char *user, int64_t id);
int nt_pg_mark_all_read(struct nt_pg *p, const char *user, int64_t *n);

/* ---- Redis (store_redis.c) ---- */

#define NT_PRIOS 3 /* streams: high, normal, low */

struct nt_redis;
struct nt_redis *nt_redis_new(const char *url, int timeout_ms,
                              const char *consumer);
void nt_redis_free(struct nt_redis *r);
void nt_redis_queue(struct nt_redis *r, struct nt_queue *out);
bool nt_redis_health(struct nt_redis *r, bool probe);
/* Creates the consumer group of every stream (idempotent). */
int nt_redis_init_groups(struct nt_redis *r);
/* Straight onto the stream of prio. */
int nt_redis_push(struct nt_redis *r, int prio, int64_t id);
/* Length of the stream of prio (backpressure of the relay). */
int nt_redis_len(struct nt_redis *r, int prio, long long *len);
/* Moves what is due at now_ms from the due-time set to the streams. */
int nt_redis_move_due(struct nt_redis *r, int64_t now_ms, size_t max,
                      size_t *moved);

typedef struct nt_msg {
	int prio;
	int64_t id;
	char entry[48]; /* the stream entry's id */
} nt_msg;
/*
 * Reads up to max new messages: from the stream of prio only (block_ms 0:
 * no wait), or, prio 0, from all three, waiting up to block_ms.
 */
int nt_redis_read(struct nt_redis *r, int prio, int block_ms, nt_msg *out,
                  size_t max, size_t *n);
/* Takes over messages pending longer than idle_ms on the stream of prio. */
int nt_redis_autoclaim(struct nt_redis *r, int prio, int64_t idle_ms,
                       nt_msg *out, size_t max, size_t *n);
/*
 * Reads up to max new messages from the first stream, in the order of
 * the norder priorities given, that has any (one round trip), no wait.
 */
/* Outbox rows into the streams (due by now_ms) or the due-time set, in
 * one pipeline. */
int nt_redis_relay(struct nt_redis *r, const nt_outbox_row *rows, size_t n,
                   int64_t now_ms);
int nt_redis_read_first(struct nt_redis *r, const int *order, size_t norder,
                        nt_msg *out, size_t max, size_t *n);
int nt_redis_ack(struct nt_redis *r, const nt_msg *m);

#endif
