/*
 * The notifier's domain: validation of what callers send, and the engine
 * that delivers one notification (nt_process).  No socket, Redis or
 * PostgreSQL header is included here: the engine reaches its state through
 * struct nt_store_ops and struct nt_queue_ops (store.h), and the transports
 * through the providers of channel.h.  The unit tests drive it with
 * store_mem.c and providers of their own.
 */
#ifndef NOTIFIER_H
#define NOTIFIER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "channel.h"
#include "notifier.pb-c.h"

/* Delivery status of one channel (deliveries.status). */
enum nt_status {
	NT_ST_QUEUED = 0,
	NT_ST_SENT = 1,
	NT_ST_FAILED = 2, /* failed, will be retried at next_ms */
	NT_ST_DEAD = 3,
	NT_ST_SKIPPED = 4,
	NT_ST_COUNT
};
const char *nt_status_name(int status);

/* Priorities as stored (Notifier__Priority without UNSPECIFIED). */
enum { NT_PRIO_HIGH = 1, NT_PRIO_NORMAL = 2, NT_PRIO_LOW = 3 };

#define NT_LIST_DEFAULT   20
#define NT_LIST_MAX       100
#define NT_DEVICES_MAX    10
#define NT_TYPE_MAX       64
#define NT_USER_MAX       128
#define NT_TITLE_MAX      256
#define NT_BODY_MAX       4096
#define NT_KEY_MAX        200
#define NT_GROUP_MAX      128
#define NT_MAP_MAX        64 /* entries of data and of vars */
#define NT_MAP_KEY_MAX    64
#define NT_MAP_VALUE_MAX  1024
#define NT_ENDPOINT_MAX   1024
#define NT_PREFS_MAX      100
#define NT_ERROR_MAX      256
#define NT_SEND_AHEAD_MAX (366LL * 86400) /* send_at at most a year ahead */
#define NT_CODE_TTL_S     600             /* a phone code lives 10 minutes */
#define NT_CODE_RESEND_S  60              /* at most one code a minute */
#define NT_CODE_TRIES     5
/* The type of the SMS that carries a phone confirmation code. */
#define NT_TYPE_PHONE_CODE "contact.confirm"

/* ---- the engine's view of a notification ---- */

typedef struct nt_delivery {
	int channel;
	int status;
	int attempts;
	int64_t next_ms;
	char provider[32];
	char last_error[NT_ERROR_MAX];
} nt_delivery;

/* Strings live in the arena the loader was given. */
typedef struct nt_notification {
	int64_t id;
	const char *user, *type, *title, *body, *data_json, *tmpl, *vars_json;
	const char *grp;
	int priority;
	int64_t due_ms, created_at;
	int digest_state;
	size_t ndel;
	nt_delivery del[NT_CH_COUNT];
} nt_notification;

/* What processing needs to know of the recipient. */
typedef struct nt_user_ctx {
	uint32_t off_mask;      /* 1 << channel: turned off for the type */
	int64_t quiet_until_ms; /* 0: not in quiet hours now */
	const char *email, *phone, *pending_phone; /* "" if none */
	size_t ndevices;
	struct {
		int64_t id;
		const char *endpoint;
	} devices[NT_DEVICES_MAX];
} nt_user_ctx;

/* ---- provider failover, shared by a process's workers ---- */

typedef struct nt_failover {
	pthread_mutex_t mu;
	int threshold;   /* consecutive failures that switch (5) */
	int64_t skip_ms; /* how long the primary is skipped (30 s) */
	struct {
		int failures;
		int64_t skip_until_ms; /* 0: the primary is in use */
	} ch[NT_CH_COUNT];
} nt_failover;

void nt_failover_init(nt_failover *f, int threshold, int64_t skip_ms);
void nt_failover_fini(nt_failover *f);
/* True when channel c should use its secondary now (if it has one). */
bool nt_failover_use_secondary(nt_failover *f, int c, int64_t now_ms);
/*
 * The outcome of an attempt on channel c's primary: ok resets the count;
 * a failure counts, and the threshold-th one (or a failed probe after the
 * skip) skips the primary for skip_ms.  Attempts on the secondary are not
 * reported.
 */
void nt_failover_report(nt_failover *f, int c, bool ok, int64_t now_ms);

/* ---- the engine ---- */

typedef struct nt_engine_cfg {
	int max_attempts;        /* per channel (3) */
	int64_t backoff_base_ms; /* first retry after about this (1000) */
	int64_t backoff_max_ms;  /* cap of a backoff (300000) */
	int throttle_max;        /* per user, channel and window; 0: off */
	int64_t throttle_window_ms;
	int64_t digest_window_ms; /* 0: no digests */
	const char *templates_dir;
	const char *public_base_url; /* unsubscribe links */
	const char *unsubscribe_key; /* HMAC key of unsubscribe tokens */
	int failover_threshold;      /* 5 */
	int64_t failover_skip_ms;    /* 30000 */
} nt_engine_cfg;

typedef struct nt_engine {
	nt_engine_cfg cfg;
	nt_failover fo;
} nt_engine;

/* cfg's strings must outlive the engine. */
void nt_engine_init(nt_engine *e, const nt_engine_cfg *cfg);
void nt_engine_fini(nt_engine *e);

struct nt_store;
struct nt_queue;

/* What one worker thread brings: its stores, providers and randomness. */
typedef struct nt_worker {
	struct nt_store *store;
	struct nt_queue *queue;
	nt_provider primary[NT_CH_COUNT], secondary[NT_CH_COUNT];
	uint64_t rng; /* jitter; any non-zero seed */
	cm_arena arena;
} nt_worker;

/*
 * Delivers what is due of notification id at now_ms: every channel that is
 * queued, or failed and due, is attempted once (or skipped: preference
 * off, nothing to send to), unless the whole notification waits (send_at,
 * quiet hours, throttle, a digest window): then it is put back in the
 * due-time set and nothing is attempted.  Failed channels get a retry at
 * their backoff, through the due-time set; the last failure, or a
 * permanent one, makes a channel dead and adds it to the dead-letter
 * stream.  Returns CM_OK when the message is done with (also when the
 * notification does not exist), CM_UNAVAILABLE when the stores could not
 * be used (the message is to be taken again later).
 */
int nt_process(nt_engine *e, nt_worker *w, int64_t id, int64_t now_ms);

/*
 * The delay before retry number attempts (1 = after the first failure):
 * base * 2^(attempts-1) capped at max, with "equal jitter" (uniform in
 * [d/2, d]); retry_after_ms (from Retry-After) wins when longer, capped at
 * max as well.
 */
int64_t nt_backoff_ms(const nt_engine_cfg *c, int attempts,
                      int64_t retry_after_ms, uint64_t *rng);

/* ---- validation at the edge ---- */

/*
 * Checks a Send and turns it into the JSON element the accept batch takes
 * (store_pg.c; malloc'd, caller frees), with its due time.  Templates are
 * rendered once per channel to refuse a missing variable now rather than at
 * delivery.  CM_OK or CM_INVALID_ARGUMENT with the reason in err.
 */
int nt_send_prepare(const nt_engine *e, const Notifier__SendRequest *in,
                    int64_t now_ms, char **elem, int64_t *due_ms, int *prio,
                    char *err, size_t errlen);

/*
 * The element of the SMS that carries a phone confirmation code to the
 * user's pending number (type NT_TYPE_PHONE_CODE, high priority); malloc'd.
 */
char *nt_code_elem(const char *user, const char *code);

bool nt_type_ok(const char *type);
bool nt_user_ok(const char *user);
/* "HH:MM" -> minutes after midnight, or -1. */
int nt_hhmm_parse(const char *s);
/* E.164: "+" and 7-15 digits, the first not 0. */
bool nt_phone_ok(const char *s);
/* A plain address: printable ASCII, one "@", at most 254 bytes. */
bool nt_email_ok(const char *s);
/* http:// or https://, printable ASCII without spaces, at most 1024. */
bool nt_endpoint_ok(const char *s);

/* Paging: limit 0 -> default, over max -> max; <0 is refused (-1). */
int nt_limit(int32_t limit, size_t *out);
/* Cursor: base62 of the last id returned; 0 = first page. -1 if bad. */
int nt_cursor_parse(const char *c, int64_t *after);
char *nt_cursor_make(cm_arena *a, int64_t id);
/* A decimal id from a URL, or -1. */
int64_t nt_id_parse(const char *s);

/*
 * Unsubscribe tokens: base64url(user) "." base64url(type) "."
 * base64url(first 16 bytes of HMAC-SHA256(key, user NUL type)).
 * nt_unsub_token returns it malloc'd; nt_unsub_verify checks one in
 * constant time and returns the user and type (malloc'd) or -1.
 */
char *nt_unsub_token(const char *key, const char *user, const char *type);
int nt_unsub_verify(const char *key, const char *token, char **user,
                    char **type);

/* The hash kept for a phone code: hex SHA-256 of user NUL code, out[65]. */
void nt_code_hash(const char *user, const char *code, char out[65]);

/* JSON object text -> map entries (arena); NULL on a bad object. */
typedef struct nt_kv {
	const char *key, *value;
} nt_kv;
int nt_json_map(const char *json, cm_arena *a, nt_kv **out, size_t *n);

#endif
