/*
 * The notifier's domain: what a Send may carry, and what becomes of one
 * notification when a worker takes it (nt_process).
 *
 * A notification's life.  A Send is checked here (nt_send_prepare) and
 * committed with one row per channel (status queued) and an outbox row;
 * the relay moves the outbox row into the stream of its priority, or into
 * the due-time set when it is due later.  A worker takes the message from
 * the stream and calls nt_process, which
 *
 *   1. locks the notification (one worker at a time; a second one that
 *      finds it locked puts its message back a second later),
 *   2. waits (through the due-time set, never by sleeping) while the
 *      notification is not due: send_at, a digest window, quiet hours;
 *   3. attempts each channel that is queued, or failed and due again:
 *      skipped when the user turned it off for the type or there is
 *      nothing to send to, held back to the next window when over the
 *      user's throttle, otherwise one attempt through the channel's
 *      provider (the secondary while failover says so);
 *   4. writes each channel's new state and a delivery-log row per
 *      attempt; a retryable failure gets its retry in the due-time set at
 *      its backoff, the last one (max_attempts) or a permanent one makes
 *      the channel dead and puts it on the dead-letter stream.
 *
 * Channels already sent, skipped or dead are never touched again, so a
 * retry or a replay (which turns dead channels back into queued ones)
 * sends only what was not delivered.  A worker that dies mid-send leaves
 * its message pending in the stream, and another worker takes it over
 * (XAUTOCLAIM) after the visibility timeout; providers get the
 * notification's id as Idempotency-Key / Message-ID, so a receiver that
 * honours it sees the message once.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base62.h"
#include "notifier.h"
#include "status.h"
#include "store.h"
#include "template.h"
#include "util.h"

static const char *const status_names[NT_ST_COUNT] = {
    [NT_ST_QUEUED] = "queued",   [NT_ST_SENT] = "sent",
    [NT_ST_FAILED] = "failed",   [NT_ST_DEAD] = "dead",
    [NT_ST_SKIPPED] = "skipped",
};

const char *
nt_status_name(int status)
{
	return (status >= 0 && status < NT_ST_COUNT ? status_names[status]
	                                            : "unknown");
}

/* ---- failover ---- */

void
nt_failover_init(nt_failover *f, int threshold, int64_t skip_ms)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	f->threshold = threshold > 0 ? threshold : 5;
	f->skip_ms = skip_ms > 0 ? skip_ms : 30000;
}

void
nt_failover_fini(nt_failover *f)
{
	pthread_mutex_destroy(&f->mu);
}

bool
nt_failover_use_secondary(nt_failover *f, int c, int64_t now_ms)
{
	bool sec;

	if (c < 0 || c >= NT_CH_COUNT)
		return (false);
	pthread_mutex_lock(&f->mu);
	sec = f->ch[c].skip_until_ms > now_ms;
	pthread_mutex_unlock(&f->mu);
	return (sec);
}

void
nt_failover_report(nt_failover *f, int c, bool ok, int64_t now_ms)
{
	if (c < 0 || c >= NT_CH_COUNT)
		return;
	pthread_mutex_lock(&f->mu);
	if (ok) {
		f->ch[c].failures = 0;
		f->ch[c].skip_until_ms = 0;
	} else if (++f->ch[c].failures >= f->threshold ||
	           f->ch[c].skip_until_ms != 0) {
		/* The threshold reached, or the probe after a skip failed:
		 * skip the primary (again). */
		f->ch[c].skip_until_ms = now_ms + f->skip_ms;
		f->ch[c].failures = 0;
	}
	pthread_mutex_unlock(&f->mu);
}

/* ---- engine ---- */

void
nt_engine_init(nt_engine *e, const nt_engine_cfg *cfg)
{
	e->cfg = *cfg;
	if (e->cfg.max_attempts < 1)
		e->cfg.max_attempts = 3;
	if (e->cfg.backoff_base_ms < 1)
		e->cfg.backoff_base_ms = 1000;
	if (e->cfg.backoff_max_ms < e->cfg.backoff_base_ms)
		e->cfg.backoff_max_ms = e->cfg.backoff_base_ms;
	if (e->cfg.throttle_window_ms < 1)
		e->cfg.throttle_window_ms = 60000;
	nt_failover_init(&e->fo, cfg->failover_threshold,
	                 cfg->failover_skip_ms);
}

void
nt_engine_fini(nt_engine *e)
{
	nt_failover_fini(&e->fo);
}

/* xorshift64*: jitter needs spread, not secrecy. */
static uint64_t
rng_next(uint64_t *s)
{
	uint64_t x = *s != 0 ? *s : 0x9e3779b97f4a7c15ULL;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return (x * 0x2545f4914f6cdd1dULL);
}

int64_t
nt_backoff_ms(const nt_engine_cfg *c, int attempts, int64_t retry_after_ms,
              uint64_t *rng)
{
	int64_t d = c->backoff_base_ms;

	for (int i = 1; i < attempts && d < c->backoff_max_ms; i++)
		d *= 2;
	if (d > c->backoff_max_ms)
		d = c->backoff_max_ms;
	d = d / 2 + (int64_t) (rng_next(rng) % (uint64_t) (d / 2 + 1));
	if (retry_after_ms > d)
		d = retry_after_ms < c->backoff_max_ms ? retry_after_ms
		                                       : c->backoff_max_ms;
	return (d);
}

static int64_t
min_due(int64_t a, int64_t b)
{
	if (a == 0)
		return (b);
	if (b == 0)
		return (a);
	return (a < b ? a : b);
}

/* The variables of a notification as template.h wants them. */
static void
vars_of(const nt_notification *n, cm_arena *a, nt_vars *v)
{
	nt_kv *kv = NULL;
	size_t k = 0;
	const char **names, **values;

	memset(v, 0, sizeof(*v));
	if (nt_json_map(n->vars_json, a, &kv, &k) != 0 || k == 0)
		return;
	names = cm_arena_alloc(a, k * sizeof(*names));
	values = cm_arena_alloc(a, k * sizeof(*values));
	for (size_t i = 0; i < k; i++) {
		names[i] = kv[i].key;
		values[i] = kv[i].value;
	}
	v->n = k;
	v->names = names;
	v->values = values;
}

struct attempt {
	nt_outcome outcome;
	int64_t retry_after_ms;
	char provider[32];
	char error[NT_ERROR_MAX];
};

/*
 * Sends n on channel d->channel to every target through one provider.
 * Several push devices: the best outcome counts (sent over retry over
 * the rest); a device that answered 404/410 is removed.
 */
static int
send_targets(nt_engine *e, nt_worker *w, const nt_notification *n,
             const nt_user_ctx *u, const nt_message *m, const nt_provider *p,
             struct attempt *at)
{
	const char *targets[NT_DEVICES_MAX];
	int64_t dev_ids[NT_DEVICES_MAX];
	size_t nt = 0;
	int best = -1;
	static const int rank[] = {[NT_SENT] = 4,
	                           [NT_RETRY] = 3,
	                           [NT_PERMANENT] = 2,
	                           [NT_GONE] = 1,
	                           [NT_REFUSED] = 2};

	(void) e;
	if (p->ops->channel == NT_CH_PUSH) {
		for (size_t i = 0; i < u->ndevices && nt < NT_DEVICES_MAX;
		     i++) {
			dev_ids[nt] = u->devices[i].id;
			targets[nt++] = u->devices[i].endpoint;
		}
	} else if (p->ops->channel == NT_CH_EMAIL) {
		targets[nt++] = u->email;
	} else {
		targets[nt++] = strcmp(n->type, NT_TYPE_PHONE_CODE) == 0
		                    ? u->pending_phone
		                    : u->phone;
	}
	cm_strlcpy(at->provider, p->ops->name, sizeof(at->provider));
	for (size_t i = 0; i < nt; i++) {
		nt_result r;

		memset(&r, 0, sizeof(r));
		p->ops->send(p->impl, m, targets[i], &r);
		if ((unsigned) r.outcome > NT_REFUSED)
			r.outcome = NT_PERMANENT; /* not an outcome of ours */
		if (r.outcome == NT_GONE && p->ops->channel == NT_CH_PUSH)
			(void) w->store->ops->device_remove(w->store->impl,
			                                    dev_ids[i]);
		if (best < 0 || rank[r.outcome] > rank[best]) {
			best = (int) r.outcome;
			at->retry_after_ms = r.retry_after_ms;
			cm_strlcpy(at->error, r.error, sizeof(at->error));
		}
	}
	at->outcome = best < 0 ? NT_PERMANENT : (nt_outcome) best;
	return (CM_OK);
}

/* Whether channel c has anything to send to. */
static const char *
no_target(const nt_notification *n, const nt_user_ctx *u, int c)
{
	switch (c) {
	case NT_CH_PUSH:
		return (u->ndevices == 0 ? "no device registered" : NULL);
	case NT_CH_EMAIL:
		return (u->email[0] == '\0' ? "no email address" : NULL);
	case NT_CH_SMS:
		if (strcmp(n->type, NT_TYPE_PHONE_CODE) == 0)
			return (u->pending_phone[0] == '\0'
			            ? "no phone number to confirm"
			            : NULL);
		return (u->phone[0] == '\0' ? "no confirmed phone number"
		                            : NULL);
	default:
		return (NULL);
	}
}

/* Writes d and its log row. */
static int
record(nt_worker *w, const nt_notification *n, const nt_delivery *d,
       const char *what, int64_t now_ms)
{
	return (w->store->ops->record(w->store->impl, n->id, d, what, now_ms));
}

/*
 * One channel of n, due now.  May set *next (the earliest time the
 * notification must be looked at again).
 */
static int
deliver(nt_engine *e, nt_worker *w, const nt_notification *n,
        const nt_user_ctx *u, const char *title, const char *body,
        nt_delivery *d, int64_t now_ms, int64_t *next)
{
	const nt_engine_cfg *c = &e->cfg;
	const int ch = d->channel;
	const bool internal = strcmp(n->type, NT_TYPE_PHONE_CODE) == 0;
	const nt_provider *p;
	nt_rendered rd = {NULL, NULL, NULL};
	const char *html = NULL;
	struct attempt at;
	nt_message m;
	nt_vars vars;
	char err[NT_ERROR_MAX - 16];
	const char *why;
	bool secondary = false;
	int rv;

	memset(&at, 0, sizeof(at));
	if (ch < 0 || ch >= NT_CH_COUNT) {
		d->status = NT_ST_SKIPPED;
		cm_strlcpy(d->last_error, "unknown channel",
		           sizeof(d->last_error));
		return (record(w, n, d, "skipped", now_ms));
	}
	if (!internal && (u->off_mask & (1u << ch))) {
		d->status = NT_ST_SKIPPED;
		cm_strlcpy(d->last_error, "turned off by the user",
		           sizeof(d->last_error));
		return (record(w, n, d, "skipped", now_ms));
	}
	/* The channel's template, if the type has one (every channel,
	 * the inbox too): its subject is the title, its text the body. */
	vars_of(n, &w->arena, &vars);
	rv = nt_template_render(c->templates_dir, n->tmpl, nt_channel_name(ch),
	                        &vars, &rd, err, sizeof(err));
	if (rv < 0) {
		d->status = NT_ST_DEAD;
		d->attempts++;
		snprintf(d->last_error, sizeof(d->last_error), "template: %s",
		         err);
		if ((rv = record(w, n, d, "dead", now_ms)) != CM_OK)
			return (rv);
		return (w->queue->ops->dead_letter(w->queue->impl, n->id, ch,
		                                   d->last_error));
	}
	if (rv == 1) {
		if (rd.subject != NULL)
			title = cm_arena_strdup(&w->arena, rd.subject);
		if (rd.text != NULL)
			body = cm_arena_strdup(&w->arena, rd.text);
		if (rd.html != NULL && ch == NT_CH_EMAIL)
			html = cm_arena_strdup(&w->arena, rd.html);
	}
	nt_rendered_free(&rd);
	if (ch == NT_CH_INAPP) {
		if ((rv = w->store->ops->inbox_put(w->store->impl, n, title,
		                                   body)) != CM_OK)
			return (rv);
		d->status = NT_ST_SENT;
		d->attempts++;
		d->last_error[0] = '\0';
		cm_strlcpy(d->provider, "inbox", sizeof(d->provider));
		return (record(w, n, d, "sent", now_ms));
	}
	if ((why = no_target(n, u, ch)) != NULL) {
		d->status = NT_ST_SKIPPED;
		cm_strlcpy(d->last_error, why, sizeof(d->last_error));
		return (record(w, n, d, "skipped", now_ms));
	}
	if (w->secondary[ch].ops != NULL &&
	    nt_failover_use_secondary(&e->fo, ch, now_ms))
		secondary = true;
	p = secondary ? &w->secondary[ch] : &w->primary[ch];
	if (p->ops == NULL) {
		d->status = NT_ST_SKIPPED;
		cm_strlcpy(d->last_error, "channel not configured",
		           sizeof(d->last_error));
		return (record(w, n, d, "skipped", now_ms));
	}
	if (c->throttle_max > 0 && !internal) {
		long count = 0;

		if ((rv = w->queue->ops->throttle(w->queue->impl, n->user, ch,
		                                  c->throttle_window_ms, now_ms,
		                                  &count)) != CM_OK)
			return (rv);
		if (count > c->throttle_max) {
			/* Held back to the next window, no attempt spent. */
			d->next_ms = (now_ms / c->throttle_window_ms + 1) *
			             c->throttle_window_ms;
			cm_strlcpy(d->last_error, "throttled",
			           sizeof(d->last_error));
			*next = min_due(*next, d->next_ms);
			return (record(w, n, d, "throttled", now_ms));
		}
	}

	memset(&m, 0, sizeof(m));
	m.id = cm_arena_printf(&w->arena, "%" PRId64, n->id);
	m.user = n->user;
	m.type = n->type;
	m.title = title;
	m.body = body;
	m.data_json = n->data_json;
	m.html = html;
	if (ch == NT_CH_EMAIL && c->unsubscribe_key != NULL && !internal) {
		char *tok =
		    nt_unsub_token(c->unsubscribe_key, n->user, n->type);

		if (tok != NULL) {
			m.unsubscribe_url = cm_arena_printf(
			    &w->arena, "%s/u/%s", c->public_base_url, tok);
			free(tok);
		}
	}
	rv = send_targets(e, w, n, u, &m, p, &at);
	if (rv != CM_OK)
		return (rv);
	if (!secondary)
		nt_failover_report(&e->fo, ch, at.outcome != NT_RETRY, now_ms);

	d->attempts++;
	cm_strlcpy(d->provider, at.provider, sizeof(d->provider));
	cm_strlcpy(d->last_error, at.error, sizeof(d->last_error));
	switch (at.outcome) {
	case NT_SENT:
		d->status = NT_ST_SENT;
		d->last_error[0] = '\0';
		d->next_ms = 0;
		return (record(w, n, d, "sent", now_ms));
	case NT_RETRY:
		if (d->attempts < c->max_attempts) {
			d->status = NT_ST_FAILED;
			d->next_ms =
			    now_ms + nt_backoff_ms(c, d->attempts,
			                           at.retry_after_ms, &w->rng);
			*next = min_due(*next, d->next_ms);
			return (record(w, n, d, "failed", now_ms));
		}
		break;
	default:
		break;
	}
	d->status = NT_ST_DEAD;
	d->next_ms = 0;
	if (d->last_error[0] == '\0')
		cm_strlcpy(d->last_error, "permanent failure",
		           sizeof(d->last_error));
	if ((rv = record(w, n, d, "dead", now_ms)) != CM_OK)
		return (rv);
	return (w->queue->ops->dead_letter(w->queue->impl, n->id, ch,
	                                   d->last_error));
}

static bool
pending(const nt_delivery *d)
{
	return (d->status == NT_ST_QUEUED || d->status == NT_ST_FAILED);
}

static int
schedule(nt_worker *w, const nt_notification *n, int64_t due_ms)
{
	return (w->queue->ops->schedule(w->queue->impl, n->priority, n->id,
	                                due_ms));
}

/* nt_process with the notification locked and loaded. */
static int
process_locked(nt_engine *e, nt_worker *w, nt_notification *n, int64_t now_ms)
{
	const nt_engine_cfg *c = &e->cfg;
	struct nt_store *st = w->store;
	const char *title = n->title, *body = n->body;
	nt_user_ctx u;
	int64_t next = 0;
	bool any = false;
	int rv;

	for (size_t i = 0; i < n->ndel; i++)
		any = any || pending(&n->del[i]);
	if (!any)
		return (CM_OK); /* done already (a duplicate message) */
	if (n->due_ms > now_ms)
		return (schedule(w, n, n->due_ms));

	/* A low-priority message with a group joins its digest. */
	if (c->digest_window_ms > 0 && n->priority == NT_PRIO_LOW &&
	    n->grp[0] != '\0' && n->digest_state == 0) {
		int64_t head, until;

		if ((rv = st->ops->digest_join(st->impl, n, now_ms,
		                               c->digest_window_ms, &head,
		                               &until)) != CM_OK)
			return (rv);
		if (head == n->id) {
			if ((rv = st->ops->set_due(st->impl, n->id, until,
			                           1)) != CM_OK)
				return (rv);
			return (schedule(w, n, until));
		}
		for (size_t i = 0; i < n->ndel; i++) {
			nt_delivery *d = &n->del[i];

			if (!pending(d))
				continue;
			d->status = NT_ST_SKIPPED;
			snprintf(d->last_error, sizeof(d->last_error),
			         "in digest %" PRId64, head);
			if ((rv = record(w, n, d, "skipped", now_ms)) != CM_OK)
				return (rv);
		}
		return (CM_OK);
	}
	if (n->digest_state == 1) {
		int count = 1;

		if ((rv = st->ops->digest_count(st->impl, n->id, &count)) !=
		    CM_OK)
			return (rv);
		if (count > 1) {
			title = cm_arena_printf(&w->arena, "%s (+%d more)",
			                        n->title, count - 1);
			body = cm_arena_printf(&w->arena,
			                       "%s\n\nand %d more like it",
			                       n->body, count - 1);
		}
	}

	if ((rv = st->ops->user_ctx(st->impl, n->user, n->type, &w->arena,
	                            &u)) != CM_OK)
		return (rv);
	if (n->priority != NT_PRIO_HIGH && u.quiet_until_ms > now_ms)
		return (schedule(w, n, u.quiet_until_ms));

	for (size_t i = 0; i < n->ndel; i++) {
		nt_delivery *d = &n->del[i];

		if (!pending(d))
			continue;
		if (d->next_ms > now_ms) {
			next = min_due(next, d->next_ms);
			continue;
		}
		if ((rv = deliver(e, w, n, &u, title, body, d, now_ms,
		                  &next)) != CM_OK)
			return (rv);
	}
	if (next != 0)
		return (schedule(w, n, next));
	return (CM_OK);
}

int
nt_process(nt_engine *e, nt_worker *w, int64_t id, int64_t now_ms)
{
	struct nt_store *st = w->store;
	nt_notification n;
	bool got = false;
	int rv;

	cm_arena_reset(&w->arena);
	if ((rv = st->ops->lock(st->impl, id, &got)) != CM_OK)
		return (rv);
	memset(&n, 0, sizeof(n));
	rv = st->ops->load(st->impl, id, &w->arena, &n);
	if (rv == CM_NOT_FOUND) {
		if (got)
			st->ops->unlock(st->impl, id);
		return (CM_OK);
	}
	if (rv != CM_OK) {
		if (got)
			st->ops->unlock(st->impl, id);
		return (rv);
	}
	if (!got) /* another worker has it: look again in a second */
		return (schedule(w, &n, now_ms + 1000));
	rv = process_locked(e, w, &n, now_ms);
	st->ops->unlock(st->impl, id);
	return (rv);
}

/* ---- validation ---- */

bool
nt_type_ok(const char *t)
{
	size_t n = strlen(t);

	if (n == 0 || n > NT_TYPE_MAX)
		return (false);
	return (strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n);
}

bool
nt_user_ok(const char *u)
{
	size_t n = strlen(u);

	if (n == 0 || n > NT_USER_MAX)
		return (false);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char) u[i] < 0x21 || (unsigned char) u[i] > 0x7e)
			return (false);
	return (true);
}

int
nt_hhmm_parse(const char *s)
{
	if (strlen(s) != 5 || s[2] != ':' || s[0] < '0' || s[0] > '2' ||
	    s[1] < '0' || s[1] > '9' || s[3] < '0' || s[3] > '5' ||
	    s[4] < '0' || s[4] > '9')
		return (-1);
	int h = (s[0] - '0') * 10 + (s[1] - '0');
	int m = (s[3] - '0') * 10 + (s[4] - '0');

	return (h > 23 ? -1 : h * 60 + m);
}

bool
nt_phone_ok(const char *s)
{
	size_t n = strlen(s);

	return (n >= 8 && n <= 16 && s[0] == '+' && s[1] >= '1' &&
	        s[1] <= '9' && strspn(s + 1, "0123456789") == n - 1);
}

bool
nt_email_ok(const char *s)
{
	size_t n = strlen(s);
	const char *at = strchr(s, '@');

	if (n < 3 || n > 254 || at == NULL || at == s || at[1] == '\0' ||
	    strchr(at + 1, '@') != NULL)
		return (false);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char) s[i] < 0x21 ||
		    (unsigned char) s[i] > 0x7e ||
		    strchr("<>()[]\\,;:\"", s[i]) != NULL)
			return (false);
	return (true);
}

bool
nt_endpoint_ok(const char *s)
{
	size_t n = strlen(s);

	if (n > NT_ENDPOINT_MAX ||
	    (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0))
		return (false);
	if (n <= (s[4] == 's' ? 8u : 7u))
		return (false);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char) s[i] < 0x21 || (unsigned char) s[i] > 0x7e)
			return (false);
	return (true);
}

int
nt_limit(int32_t limit, size_t *out)
{
	if (limit < 0)
		return (-1);
	*out = limit == 0            ? NT_LIST_DEFAULT
	       : limit > NT_LIST_MAX ? NT_LIST_MAX
	                             : (size_t) limit;
	return (0);
}

int
nt_cursor_parse(const char *c, int64_t *after)
{
	uint64_t v;

	if (c == NULL || *c == '\0') {
		*after = 0;
		return (0);
	}
	if (strlen(c) > 12 || cm_base62_decode(c, strlen(c), &v) != 0 ||
	    v == 0 || v > INT64_MAX)
		return (-1);
	*after = (int64_t) v;
	return (0);
}

char *
nt_cursor_make(cm_arena *a, int64_t id)
{
	char buf[16];

	cm_base62_encode((uint64_t) id, 1, buf, sizeof(buf));
	return (cm_arena_strdup(a, buf));
}

int64_t
nt_id_parse(const char *s)
{
	char *end;
	long long v;

	if (s == NULL || *s < '1' || *s > '9' || strlen(s) > 19)
		return (-1);
	v = strtoll(s, &end, 10);
	if (*end != '\0' || v <= 0)
		return (-1);
	return ((int64_t) v);
}

/* Entries of a map field: bounded count and sizes, valid text. */
static int
map_check(const char *what, size_t n, const char *const *keys,
          const char *const *values, char *err, size_t errlen)
{
	if (n > NT_MAP_MAX) {
		snprintf(err, errlen, "%s: at most %d entries", what,
		         NT_MAP_MAX);
		return (-1);
	}
	for (size_t i = 0; i < n; i++) {
		size_t kl = keys[i] != NULL ? strlen(keys[i]) : 0;

		if (kl == 0 || kl > NT_MAP_KEY_MAX) {
			snprintf(err, errlen, "%s: keys are 1-%d bytes", what,
			         NT_MAP_KEY_MAX);
			return (-1);
		}
		if (values[i] != NULL && strlen(values[i]) > NT_MAP_VALUE_MAX) {
			snprintf(err, errlen, "%s: values are at most %d bytes",
			         what, NT_MAP_VALUE_MAX);
			return (-1);
		}
	}
	return (0);
}

/* A JSON object of the entries, as compact text (malloc'd). */
static char *
map_json(size_t n, const char *const *keys, const char *const *values)
{
	json_t *o = json_object();
	char *s;

	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, keys[i],
		                    json_string(values[i] ? values[i] : ""));
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return (s);
}

#define MAP_ARRAYS(field, n, keys, values)                                     \
	do {                                                                   \
		keys = calloc((n) + 1, sizeof(*keys));                         \
		values = calloc((n) + 1, sizeof(*values));                     \
		for (size_t i_ = 0; i_ < (n); i_++) {                          \
			keys[i_] = (field)[i_]->key;                           \
			values[i_] = (field)[i_]->value;                       \
		}                                                              \
	} while (0)

/* The element nt_send_prepare and the phone code share. */
static char *
elem_json(const char *user, const char *type, const char *title,
          const char *body, const char *data, const char *tmpl,
          const char *vars, const char *grp, const char *key, int prio,
          int64_t due_ms, uint32_t chmask)
{
	json_t *o, *ch = json_array();
	char *s;

	for (int c = 0; c < NT_CH_COUNT; c++)
		if (chmask & (1u << c))
			json_array_append_new(ch, json_integer(c));
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, "
	              "s:I, s:o}",
	              "user", user, "type", type, "title", title, "body", body,
	              "data", data, "tmpl", tmpl, "vars", vars, "grp", grp,
	              "key", key, "priority", prio, "due_ms",
	              (json_int_t) due_ms, "channels", ch);
	if (o == NULL)
		return (NULL);
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return (s);
}

static const char *
str_or(const char *s)
{
	return (s != NULL ? s : "");
}

int
nt_send_prepare(const nt_engine *e, const Notifier__SendRequest *in,
                int64_t now_ms, char **elem, int64_t *due_ms, int *prio,
                char *err, size_t errlen)
{
	const char *user = str_or(in->user), *type = str_or(in->type);
	const char *title = str_or(in->title), *body = str_or(in->body);
	const char *tmpl = in->template_ != NULL && *in->template_ != '\0'
	                       ? in->template_
	                       : type;
	const char **dk = NULL, **dv = NULL, **vk = NULL, **vv = NULL;
	char *data = NULL, *vars = NULL, terr[NT_ERROR_MAX];
	uint32_t mask = 0;
	int p, rv = CM_INVALID_ARGUMENT;
	int64_t due;
	nt_vars nv;

	*elem = NULL;
	if (!nt_user_ok(user)) {
		snprintf(err, errlen, "user: 1-%d printable characters",
		         NT_USER_MAX);
		return (rv);
	}
	if (!nt_type_ok(type) || !nt_type_ok(tmpl)) {
		snprintf(err, errlen, "type and template: 1-%d of [a-z0-9._-]",
		         NT_TYPE_MAX);
		return (rv);
	}
	if (strcmp(type, NT_TYPE_PHONE_CODE) == 0) {
		snprintf(err, errlen, "type %s is the service's own",
		         NT_TYPE_PHONE_CODE);
		return (rv);
	}
	if (strlen(title) > NT_TITLE_MAX || strlen(body) > NT_BODY_MAX) {
		snprintf(err, errlen,
		         "title: at most %d bytes; body: at most %d",
		         NT_TITLE_MAX, NT_BODY_MAX);
		return (rv);
	}
	if (strlen(str_or(in->idempotency_key)) > NT_KEY_MAX ||
	    strlen(str_or(in->group)) > NT_GROUP_MAX) {
		snprintf(err, errlen,
		         "idempotency_key: at most %d bytes; group: at most %d",
		         NT_KEY_MAX, NT_GROUP_MAX);
		return (rv);
	}
	if (in->n_channels == 0 || in->n_channels > NT_CH_COUNT) {
		snprintf(err, errlen,
		         "channels: one to four of push, email, sms, inapp");
		return (rv);
	}
	for (size_t i = 0; i < in->n_channels; i++) {
		int c = nt_channel_parse(str_or(in->channels[i]));

		if (c < 0 || (mask & (1u << c))) {
			snprintf(err, errlen,
			         "channels: \"%s\" is unknown or repeated",
			         str_or(in->channels[i]));
			return (rv);
		}
		mask |= 1u << c;
	}
	switch (in->priority) {
	case NOTIFIER__PRIORITY__PRIORITY_HIGH:
		p = NT_PRIO_HIGH;
		break;
	case NOTIFIER__PRIORITY__PRIORITY_UNSPECIFIED:
	case NOTIFIER__PRIORITY__PRIORITY_NORMAL:
		p = NT_PRIO_NORMAL;
		break;
	case NOTIFIER__PRIORITY__PRIORITY_LOW:
		p = NT_PRIO_LOW;
		break;
	default:
		snprintf(err, errlen, "priority: high, normal or low");
		return (rv);
	}
	if (in->send_at < 0 ||
	    in->send_at > now_ms / 1000 + NT_SEND_AHEAD_MAX) {
		snprintf(err, errlen,
		         "send_at: Unix seconds, at most a year ahead");
		return (rv);
	}
	due = in->send_at * 1000 > now_ms ? in->send_at * 1000 : 0;

	MAP_ARRAYS(in->data, in->n_data, dk, dv);
	MAP_ARRAYS(in->vars, in->n_vars, vk, vv);
	if (dk == NULL || dv == NULL || vk == NULL || vv == NULL)
		goto out;
	if (map_check("data", in->n_data, dk, dv, err, errlen) != 0 ||
	    map_check("vars", in->n_vars, vk, vv, err, errlen) != 0)
		goto out;
	nv.n = in->n_vars;
	nv.names = vk;
	nv.values = vv;
	for (int c = 0; c < NT_CH_COUNT; c++) {
		nt_rendered r = {NULL, NULL, NULL};
		int t;

		if (!(mask & (1u << c)))
			continue;
		t = nt_template_render(e->cfg.templates_dir, tmpl,
		                       nt_channel_name(c), &nv, &r, terr,
		                       sizeof(terr));
		nt_rendered_free(&r);
		if (t < 0) {
			snprintf(err, errlen, "template %s.%s: %s", tmpl,
			         nt_channel_name(c), terr);
			goto out;
		}
		if (t == 0 && title[0] == '\0' && body[0] == '\0') {
			snprintf(err, errlen,
			         "no template %s.%s: a title or body is "
			         "required",
			         tmpl, nt_channel_name(c));
			goto out;
		}
	}
	data = map_json(in->n_data, dk, dv);
	vars = map_json(in->n_vars, vk, vv);
	if (data == NULL || vars == NULL) {
		rv = CM_INTERNAL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	*elem = elem_json(user, type, title, body, data, tmpl, vars,
	                  str_or(in->group), str_or(in->idempotency_key), p,
	                  due, mask);
	if (*elem == NULL) {
		rv = CM_INTERNAL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	*due_ms = due;
	*prio = p;
	rv = CM_OK;
out:
	free(dk);
	free(dv);
	free(vk);
	free(vv);
	free(data);
	free(vars);
	return (rv);
}

char *
nt_code_elem(const char *user, const char *code)
{
	char body[128], vars[64];

	snprintf(body, sizeof(body),
	         "Your confirmation code is %s. It expires in %d minutes.",
	         code, NT_CODE_TTL_S / 60);
	snprintf(vars, sizeof(vars), "{\"code\":\"%s\"}", code);
	return (elem_json(user, NT_TYPE_PHONE_CODE, "Confirmation code", body,
	                  "{}", NT_TYPE_PHONE_CODE, vars, "", "", NT_PRIO_HIGH,
	                  0, 1u << NT_CH_SMS));
}

/* ---- unsubscribe tokens, codes ---- */

static const char b64u[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void
b64url_put(char *out, const unsigned char *in, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t) in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t) in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = b64u[(v >> 18) & 63];
		out[o++] = b64u[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = b64u[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = b64u[v & 63];
	}
	out[o] = '\0';
}

/* Decodes n characters into out (at most outmax); length or -1. */
static int
b64url_get(const char *in, size_t n, unsigned char *out, size_t outmax)
{
	uint32_t v = 0;
	size_t o = 0;
	int bits = 0;

	for (size_t i = 0; i < n; i++) {
		const char *p = memchr(b64u, in[i], 64);

		if (p == NULL || in[i] == '\0')
			return (-1);
		v = (v << 6) | (uint32_t) (p - b64u);
		if ((bits += 6) >= 8) {
			bits -= 8;
			if (o >= outmax)
				return (-1);
			out[o++] = (unsigned char) (v >> bits);
		}
	}
	return ((int) o);
}

#define MAC_LEN 16

static void
unsub_mac(const char *key, const char *user, const char *type,
          unsigned char mac[MAC_LEN])
{
	unsigned char md[EVP_MAX_MD_SIZE], *msg;
	unsigned int mdlen = 0;
	size_t ul = strlen(user), tl = strlen(type);

	msg = malloc(ul + tl + 1);
	if (msg == NULL) {
		memset(mac, 0, MAC_LEN);
		return;
	}
	memcpy(msg, user, ul);
	msg[ul] = '\0';
	memcpy(msg + ul + 1, type, tl);
	HMAC(EVP_sha256(), key, (int) strlen(key), msg, ul + tl + 1, md,
	     &mdlen);
	memcpy(mac, md, MAC_LEN);
	free(msg);
}

char *
nt_unsub_token(const char *key, const char *user, const char *type)
{
	size_t ul = strlen(user), tl = strlen(type);
	unsigned char mac[MAC_LEN];
	char *t, *p;

	if ((t = malloc((ul + tl + MAC_LEN) * 2 + 16)) == NULL)
		return (NULL);
	unsub_mac(key, user, type, mac);
	b64url_put(t, (const unsigned char *) user, ul);
	p = t + strlen(t);
	*p++ = '.';
	b64url_put(p, (const unsigned char *) type, tl);
	p += strlen(p);
	*p++ = '.';
	b64url_put(p, mac, MAC_LEN);
	return (t);
}

int
nt_unsub_verify(const char *key, const char *token, char **user, char **type)
{
	const char *d1 = strchr(token, '.'), *d2;
	unsigned char u[NT_USER_MAX + 1], t[NT_TYPE_MAX + 1], mac[MAC_LEN],
	    want[MAC_LEN];
	int ul, tl;

	if (d1 == NULL || (d2 = strchr(d1 + 1, '.')) == NULL ||
	    strlen(token) > 400)
		return (-1);
	ul = b64url_get(token, (size_t) (d1 - token), u, NT_USER_MAX);
	tl = b64url_get(d1 + 1, (size_t) (d2 - d1 - 1), t, NT_TYPE_MAX);
	if (ul <= 0 || tl <= 0 ||
	    b64url_get(d2 + 1, strlen(d2 + 1), mac, MAC_LEN) != MAC_LEN)
		return (-1);
	u[ul] = '\0';
	t[tl] = '\0';
	if (strlen((char *) u) != (size_t) ul || !nt_type_ok((char *) t))
		return (-1);
	unsub_mac(key, (char *) u, (char *) t, want);
	if (!cm_ct_equal(mac, want, MAC_LEN))
		return (-1);
	*user = strdup((char *) u);
	*type = strdup((char *) t);
	if (*user == NULL || *type == NULL) {
		free(*user);
		free(*type);
		return (-1);
	}
	return (0);
}

void
nt_code_hash(const char *user, const char *code, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	out[0] = '\0';
	if (ctx == NULL)
		return;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, user, strlen(user) + 1) == 1 &&
	    EVP_DigestUpdate(ctx, code, strlen(code)) == 1 &&
	    EVP_DigestFinal_ex(ctx, md, &n) == 1)
		for (unsigned int i = 0; i < n && i < 32; i++)
			snprintf(out + 2 * i, 3, "%02x", md[i]);
	EVP_MD_CTX_free(ctx);
}

int
nt_json_map(const char *json, cm_arena *a, nt_kv **out, size_t *n)
{
	json_t *o = json_loads(json != NULL ? json : "{}", 0, NULL);
	const char *k;
	json_t *v;
	size_t i = 0;

	if (o == NULL || !json_is_object(o)) {
		json_decref(o);
		return (-1);
	}
	*out = cm_arena_alloc(a, (json_object_size(o) + 1) * sizeof(**out));
	json_object_foreach(o, k, v)
	{
		(*out)[i].key = cm_arena_strdup(a, k);
		(*out)[i].value = cm_arena_strdup(
		    a, json_is_string(v) ? json_string_value(v) : "");
		i++;
	}
	*n = i;
	json_decref(o);
	return (0);
}
