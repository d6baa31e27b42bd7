/*
 * The notifier's RPC handlers.  Each checks who calls (below), validates
 * its input with the domain's checks, and calls the store; the status and
 * message of an error become the reply's (cm_rpc_error).
 *
 * Who may do what.  Send, Get, ListDead and Replay are a service's own
 * calls (metadata "origin" = "service", which the gateway never sends: it
 * builds the metadata of the calls it makes itself) or an operator's
 * (a token with role=admin); a caller without a user id is
 * UNAUTHENTICATED, one without the role PERMISSION_DENIED.  The /me calls
 * act for the caller's user id only, so another user's notification or
 * device is NOT_FOUND, never someone else's.  Unsubscribe needs only its
 * token.  The metadata is believed because of who can send it: over
 * tls+tcp:// only holders of the stack's certificates, over plain tcp://
 * only what reaches the loopback listener.
 *
 * Before the store runs, the worker's PostgreSQL connection is given the
 * request's deadline less a margin for the reply (io_for).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "log.h"
#include "status.h"
#include "util.h"

#define ERRLEN          256
#define REPLY_MARGIN_MS 100
/* The longest a Send waits for its commit without a deadline. */
#define ACCEPT_WAIT_MAX_MS 5000

static struct nt_svc *
svc(cm_rpc_ctx *ctx)
{
	return (ctx->service_arg);
}

/* The deadline for a store call: what is left less the reply's margin. */
static int64_t
until_of(cm_rpc_ctx *ctx)
{
	int left = cm_rpc_ctx_remaining_ms(ctx);
	int margin = left / 4 < REPLY_MARGIN_MS ? left / 4 : REPLY_MARGIN_MS;

	if (left == INT32_MAX)
		return (0);
	return (cm_mono_ms() + (left - margin));
}

static struct nt_pg *
io_for(cm_rpc_ctx *ctx)
{
	struct nt_pg *p = ctx->worker;

	nt_pg_set_deadline(p, until_of(ctx));
	return (p);
}

static int
store_error(cm_rpc_ctx *ctx, int rv)
{
	switch (rv) {
	case CM_UNAVAILABLE:
		return (cm_rpc_error(ctx, rv, "the store is unavailable"));
	case CM_NOT_FOUND:
		return (cm_rpc_error(ctx, rv, "not found"));
	case CM_INVALID_ARGUMENT:
		return (cm_rpc_error(ctx, rv, "invalid value"));
	default:
		return (cm_rpc_error(ctx, rv, "store error"));
	}
}

static bool
own_call(const cm_rpc_ctx *ctx)
{
	const char *o = cm_rpc_ctx_meta(ctx, "origin");

	return (o != NULL && strcmp(o, "service") == 0);
}

/* A service's own call, or an operator's. */
static int
need_admin(cm_rpc_ctx *ctx)
{
	const char *role;

	if (own_call(ctx))
		return (CM_OK);
	if (ctx->user_id == NULL || *ctx->user_id == '\0')
		return (cm_rpc_error(ctx, CM_UNAUTHENTICATED,
		                     "a token is required"));
	role = cm_rpc_ctx_meta(ctx, "claim.role");
	if (role == NULL || strcmp(role, "admin") != 0)
		return (cm_rpc_error(ctx, CM_PERMISSION_DENIED,
		                     "the admin role is required"));
	return (CM_OK);
}

/* The caller's own user id, or UNAUTHENTICATED. */
static int
need_user(cm_rpc_ctx *ctx)
{
	if (ctx->user_id == NULL || *ctx->user_id == '\0')
		return (cm_rpc_error(ctx, CM_UNAUTHENTICATED,
		                     "a token is required"));
	if (!nt_user_ok(ctx->user_id))
		return (
		    cm_rpc_error(ctx, CM_INVALID_ARGUMENT, "unusable user id"));
	return (CM_OK);
}

static int
paging(cm_rpc_ctx *ctx, int32_t limit, const char *cursor, size_t *lim,
       int64_t *after)
{
	if (nt_limit(limit, lim) != 0)
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "limit must be 1 to %d", NT_LIST_MAX));
	if (nt_cursor_parse(cursor, after) != 0)
		return (
		    cm_rpc_error(ctx, CM_INVALID_ARGUMENT, "invalid cursor"));
	return (CM_OK);
}

/* Accepts one element through the batcher; the relay is woken. */
static int
accept_elem(cm_rpc_ctx *ctx, const char *elem, int64_t *id, bool *dup)
{
	int64_t until = until_of(ctx);
	int rv;

	if (until == 0 || until > cm_mono_ms() + ACCEPT_WAIT_MAX_MS)
		until = cm_mono_ms() + ACCEPT_WAIT_MAX_MS;
	rv = nt_pg_accept(svc(ctx)->batcher, elem, until, id, dup);
	if (rv == CM_OK && !*dup && svc(ctx)->wake_relay != NULL)
		svc(ctx)->wake_relay();
	return (rv);
}

static int
h_send(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Notifier__SendRequest *rq = (const Notifier__SendRequest *) in;
	Notifier__SendResponse *r;
	char err[ERRLEN], *elem;
	int64_t due, id;
	bool dup = false;
	int rv, prio;

	if ((rv = need_admin(ctx)) != CM_OK)
		return (rv);
	rv = nt_send_prepare(svc(ctx)->engine, rq, cm_now_ms(), &elem, &due,
	                     &prio, err, sizeof(err));
	if (rv != CM_OK)
		return (cm_rpc_error(ctx, rv, "%s", err));
	rv = accept_elem(ctx, elem, &id, &dup);
	free(elem);
	if (rv != CM_OK)
		return (store_error(ctx, rv));
	r = cm_rpc_new_msg(ctx, &notifier__send_response__descriptor);
	r->id = cm_arena_printf(ctx->arena, "%" PRId64, id);
	r->status = cm_pbstr(dup       ? "duplicate"
	                     : due > 0 ? "scheduled"
	                               : "queued");
	log_debug("event=accepted id=%" PRId64 " dup=%d prio=%d", id, dup,
	          prio);
	*out = &r->base;
	return (CM_OK);
}

static int
h_get(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Notifier__GetRequest *rq = (const Notifier__GetRequest *) in;
	Notifier__Notification *n;
	int64_t id;
	int rv;

	if ((rv = need_admin(ctx)) != CM_OK)
		return (rv);
	if ((id = nt_id_parse(rq->id)) < 0)
		return (
		    cm_rpc_error(ctx, CM_NOT_FOUND, "no such notification"));
	if ((rv = nt_pg_get(io_for(ctx), id, ctx->arena, &n)) != CM_OK)
		return (rv == CM_NOT_FOUND
		            ? cm_rpc_error(ctx, rv, "no such notification")
		            : store_error(ctx, rv));
	*out = &n->base;
	return (CM_OK);
}

static int
h_list_dead(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Notifier__ListDeadRequest *rq =
	    (const Notifier__ListDeadRequest *) in;
	Notifier__ListDeadResponse *r;
	struct nt_pg *p;
	int64_t after, *ids;
	size_t lim, n;
	int rv;

	if ((rv = need_admin(ctx)) != CM_OK ||
	    (rv = paging(ctx, rq->limit, rq->cursor, &lim, &after)) != CM_OK)
		return (rv);
	p = io_for(ctx);
	ids = cm_arena_alloc(ctx->arena, (lim + 1) * sizeof(*ids));
	if ((rv = nt_pg_list_dead(p, after, lim + 1, ctx->arena, ids, &n)) !=
	    CM_OK)
		return (store_error(ctx, rv));
	r = cm_rpc_new_msg(ctx, &notifier__list_dead_response__descriptor);
	r->next_cursor = cm_pbstr("");
	if (n > lim) {
		n = lim;
		r->next_cursor = nt_cursor_make(ctx->arena, ids[n - 1]);
	}
	r->notifications =
	    cm_arena_alloc(ctx->arena, (n + 1) * sizeof(*r->notifications));
	for (size_t i = 0; i < n; i++) {
		Notifier__Notification *x;

		rv = nt_pg_get(p, ids[i], ctx->arena, &x);
		if (rv == CM_NOT_FOUND)
			continue;
		if (rv != CM_OK)
			return (store_error(ctx, rv));
		r->notifications[r->n_notifications++] = x;
	}
	*out = &r->base;
	return (CM_OK);
}

static int
h_replay(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Notifier__ReplayRequest *rq =
	    (const Notifier__ReplayRequest *) in;
	Notifier__ReplayResponse *r;
	int64_t id;
	int rv, n = 0;

	if ((rv = need_admin(ctx)) != CM_OK)
		return (rv);
	if ((id = nt_id_parse(rq->id)) < 0)
		return (
		    cm_rpc_error(ctx, CM_NOT_FOUND, "no such notification"));
	if ((rv = nt_pg_replay(io_for(ctx), id, &n)) != CM_OK)
		return (rv == CM_NOT_FOUND
		            ? cm_rpc_error(ctx, rv, "no such notification")
		            : store_error(ctx, rv));
	if (n == 0)
		return (cm_rpc_error(
		    ctx, CM_FAILED_PRECONDITION,
		    "notification %" PRId64 " has no dead channel", id));
	if (svc(ctx)->wake_relay != NULL)
		svc(ctx)->wake_relay();
	log_info("event=replay id=%" PRId64 " channels=%d", id, n);
	r = cm_rpc_new_msg(ctx, &notifier__replay_response__descriptor);
	r->id = cm_arena_printf(ctx->arena, "%" PRId64, id);
	r->requeued = n;
	*out = &r->base;
	return (CM_OK);
}

static bool
tz_ok(const char *tz)
{
	size_t n = strlen(tz);

	return (n > 0 && n <= 64 &&
	        strspn(tz,
	               "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	               "0123456789/_+-") == n);
}

static int
h_put_prefs(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Notifier__Preferences *rq = (const Notifier__Preferences *) in;
	const Notifier__QuietHours *q = rq->quiet_hours;
	Notifier__Preferences *r;
	struct nt_pg *p;
	int *chans, qs = 0, qe = 0, rv;

	if ((rv = need_user(ctx)) != CM_OK)
		return (rv);
	if (rq->n_preferences > NT_PREFS_MAX)
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "preferences: at most %d", NT_PREFS_MAX));
	chans = cm_arena_alloc(ctx->arena,
	                       (rq->n_preferences + 1) * sizeof(*chans));
	for (size_t i = 0; i < rq->n_preferences; i++) {
		const Notifier__Preference *e = rq->preferences[i];

		if (e->type == NULL || !nt_type_ok(e->type))
			return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
			                     "preferences: type is 1-%d of "
			                     "[a-z0-9._-]",
			                     NT_TYPE_MAX));
		if ((chans[i] = nt_channel_parse(e->channel != NULL ? e->channel
		                                                    : "")) < 0)
			return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
			                     "preferences: channel is push, "
			                     "email, sms or inapp"));
		for (size_t j = 0; j < i; j++)
			if (chans[j] == chans[i] &&
			    strcmp(rq->preferences[j]->type, e->type) == 0)
				return (cm_rpc_error(
				    ctx, CM_INVALID_ARGUMENT,
				    "preferences: %s/%s given twice", e->type,
				    e->channel));
	}
	if (q != NULL) {
		qs = nt_hhmm_parse(q->start != NULL ? q->start : "");
		qe = nt_hhmm_parse(q->end != NULL ? q->end : "");
		if (qs < 0 || qe < 0)
			return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
			                     "quiet_hours: start and end are "
			                     "HH:MM"));
		if (qs != qe &&
		    !tz_ok(q->time_zone != NULL ? q->time_zone : ""))
			return (
			    cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
			                 "quiet_hours: time_zone is an IANA "
			                 "name such as Europe/Berlin"));
	}
	p = io_for(ctx);
	rv = nt_pg_put_prefs(p, ctx->user_id, rq, chans, qs, qe);
	if (rv == CM_INVALID_ARGUMENT)
		return (
		    cm_rpc_error(ctx, rv, "quiet_hours: unknown time zone"));
	if (rv != CM_OK)
		return (store_error(ctx, rv));
	if ((rv = nt_pg_get_prefs(p, ctx->user_id, ctx->arena, &r)) != CM_OK)
		return (store_error(ctx, rv));
	*out = &r->base;
	return (CM_OK);
}

static int
h_get_prefs(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	Notifier__Preferences *r;
	int rv;

	(void) in;
	if ((rv = need_user(ctx)) != CM_OK)
		return (rv);
	if ((rv = nt_pg_get_prefs(io_for(ctx), ctx->user_id, ctx->arena, &r)) !=
	    CM_OK)
		return (store_error(ctx, rv));
	*out = &r->base;
	return (CM_OK);
}

static int
h_add_device(cm_rpc_ctx *ctx, const ProtobufCMessage *in,
             ProtobufCMessage **out)
{
	const Notifier__AddDeviceRequest *rq =
	    (const Notifier__AddDeviceRequest *) in;
	const char *platform = rq->platform != NULL ? rq->platform : "";
	const char *why;
	Notifier__Device *d;
	int rv;

	if ((rv = need_user(ctx)) != CM_OK)
		return (rv);
	if (rq->endpoint == NULL || !nt_endpoint_ok(rq->endpoint))
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "endpoint: an http(s) URL of at most %d "
		                     "bytes",
		                     NT_ENDPOINT_MAX));
	if ((why = nt_endpoint_refusal(rq->endpoint,
	                               svc(ctx)->outbound_allow)) != NULL)
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "endpoint: the address is %s", why));
	if (strlen(platform) > 32 ||
	    strspn(platform, "abcdefghijklmnopqrstuvwxyz0123456789._-") !=
	        strlen(platform))
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "platform: at most 32 of [a-z0-9._-]"));
	rv = nt_pg_add_device(io_for(ctx), ctx->user_id, rq->endpoint, platform,
	                      ctx->arena, &d);
	if (rv == CM_RESOURCE_EXHAUSTED)
		return (cm_rpc_error(ctx, rv, "at most %d devices per user",
		                     NT_DEVICES_MAX));
	if (rv != CM_OK)
		return (store_error(ctx, rv));
	*out = &d->base;
	return (CM_OK);
}

static int
h_list_devices(cm_rpc_ctx *ctx, const ProtobufCMessage *in,
               ProtobufCMessage **out)
{
	const Notifier__ListDevicesRequest *rq =
	    (const Notifier__ListDevicesRequest *) in;
	Notifier__ListDevicesResponse *r;
	Notifier__Device **rows;
	int64_t after;
	size_t lim, n;
	int rv;

	if ((rv = need_user(ctx)) != CM_OK ||
	    (rv = paging(ctx, rq->limit, rq->cursor, &lim, &after)) != CM_OK)
		return (rv);
	rows = cm_arena_alloc(ctx->arena, (lim + 1) * sizeof(*rows));
	if ((rv = nt_pg_list_devices(io_for(ctx), ctx->user_id, after, lim + 1,
	                             ctx->arena, rows, &n)) != CM_OK)
		return (store_error(ctx, rv));
	r = cm_rpc_new_msg(ctx, &notifier__list_devices_response__descriptor);
	r->next_cursor = cm_pbstr("");
	if (n > lim) {
		n = lim;
		r->next_cursor =
		    nt_cursor_make(ctx->arena, nt_id_parse(rows[n - 1]->id));
	}
	r->devices = rows;
	r->n_devices = n;
	*out = &r->base;
	return (CM_OK);
}

static int
h_delete_device(cm_rpc_ctx *ctx, const ProtobufCMessage *in,
                ProtobufCMessage **out)
{
	const Notifier__DeleteDeviceRequest *rq =
	    (const Notifier__DeleteDeviceRequest *) in;
	Notifier__Empty *e;
	int64_t id;
	int rv;

	if ((rv = need_user(ctx)) != CM_OK)
		return (rv);
	if ((id = nt_id_parse(rq->id)) < 0)
		return (cm_rpc_error(ctx, CM_NOT_FOUND, "no such device"));
	rv = nt_pg_delete_device(io_for(ctx), ctx->user_id, id);
	if (rv == CM_NOT_FOUND)
		return (cm_rpc_error(ctx, rv, "no such device"));
	if (rv != CM_OK)
		return (store_error(ctx, rv));
	e = cm_rpc_new_msg(ctx, &notifier__empty__descriptor);
	*out = &e->base;
	return (CM_OK);
}

static Notifier__Contact *
contact_reply(cm_rpc_ctx *ctx, const nt_contact *c)
{
	Notifier__Contact *r =
	    cm_rpc_new_msg(ctx, &notifier__contact__descriptor);

	r->email = c->email;
	r->phone = c->phone;
	r->pending_phone = c->pending_phone;
	return (r);
}

/*
 * A new phone number gets a 6-digit code by SMS (through the SMS channel,
 * as a notification of type NT_TYPE_PHONE_CODE to the pending number) and
 * is used only once confirmed; one code a minute at most, so the API
 * cannot pump SMS to arbitrary numbers.
 */
static int
h_put_contact(cm_rpc_ctx *ctx, const ProtobufCMessage *in,
              ProtobufCMessage **out)
{
	const Notifier__PutContactRequest *rq =
	    (const Notifier__PutContactRequest *) in;
	const char *email = rq->email != NULL ? rq->email : "";
	const char *phone = rq->phone != NULL ? rq->phone : "";
	struct nt_pg *p;
	nt_contact c;
	char code[8], hash[65], *elem;
	uint32_t rnd;
	int64_t now = cm_now_s(), id;
	bool send_code = false, dup;
	int rv;

	if ((rv = need_user(ctx)) != CM_OK)
		return (rv);
	if (*email != '\0' && !nt_email_ok(email))
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "email: not an address"));
	if (*phone != '\0' && !nt_phone_ok(phone))
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "phone: E.164, e.g. +4915112345678"));
	p = io_for(ctx);
	if ((rv = nt_pg_get_contact(p, ctx->user_id, ctx->arena, &c)) != CM_OK)
		return (store_error(ctx, rv));
	c.email = cm_arena_strdup(ctx->arena, email);
	if (*phone == '\0') {
		c.phone = c.pending_phone = c.code_hash = cm_pbstr("");
	} else if (strcmp(phone, c.phone) == 0) {
		c.pending_phone = c.code_hash = cm_pbstr("");
	} else if (strcmp(phone, c.pending_phone) != 0 ||
	           now - c.code_sent_at > NT_CODE_TTL_S) {
		if (now - c.code_sent_at < NT_CODE_RESEND_S)
			return (cm_rpc_error(ctx, CM_RESOURCE_EXHAUSTED,
			                     "one code a minute: try again "
			                     "later"));
		if (cm_random(&rnd, sizeof(rnd)) != 0)
			return (
			    cm_rpc_error(ctx, CM_INTERNAL, "no randomness"));
		snprintf(code, sizeof(code), "%06u", rnd % 1000000u);
		nt_code_hash(ctx->user_id, code, hash);
		c.pending_phone = cm_arena_strdup(ctx->arena, phone);
		c.code_hash = cm_arena_strdup(ctx->arena, hash);
		c.code_sent_at = now;
		c.code_attempts = 0;
		send_code = true;
	}
	if ((rv = nt_pg_put_contact(p, ctx->user_id, &c)) != CM_OK)
		return (store_error(ctx, rv));
	if (send_code) {
		if ((elem = nt_code_elem(ctx->user_id, code)) == NULL)
			return (
			    cm_rpc_error(ctx, CM_INTERNAL, "out of memory"));
		rv = accept_elem(ctx, elem, &id, &dup);
		free(elem);
		if (rv != CM_OK)
			return (store_error(ctx, rv));
		log_info("event=phone_code id=%" PRId64, id);
	}
	*out = &contact_reply(ctx, &c)->base;
	return (CM_OK);
}

static int
h_get_contact(cm_rpc_ctx *ctx, const ProtobufCMessage *in,
              ProtobufCMessage **out)
{
	nt_contact c;
	int rv;

	(void) in;
	if ((rv = need_user(ctx)) != CM_OK)
		return (rv);
	if ((rv = nt_pg_get_contact(io_for(ctx), ctx->user_id, ctx->arena,
	                            &c)) != CM_OK)
		return (store_error(ctx, rv));
	*out = &contact_reply(ctx, &c)->base;
	return (CM_OK);
}

static int
h_confirm(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Notifier__ConfirmContactRequest *rq =
	    (const Notifier__ConfirmContactRequest *) in;
	const char *code = rq->code != NULL ? rq->code : "";
	struct nt_pg *p;
	nt_contact c;
	char hash[65];
	int rv;

	if ((rv = need_user(ctx)) != CM_OK)
		return (rv);
	if (strlen(code) != 6 || strspn(code, "0123456789") != 6)
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT,
		                     "code: the 6 digits sent by SMS"));
	p = io_for(ctx);
	if ((rv = nt_pg_get_contact(p, ctx->user_id, ctx->arena, &c)) != CM_OK)
		return (store_error(ctx, rv));
	if (c.pending_phone[0] == '\0' || strlen(c.code_hash) != 64)
		return (cm_rpc_error(ctx, CM_FAILED_PRECONDITION,
		                     "no phone number waits for a code"));
	if (cm_now_s() - c.code_sent_at > NT_CODE_TTL_S ||
	    c.code_attempts >= NT_CODE_TRIES)
		return (cm_rpc_error(ctx, CM_FAILED_PRECONDITION,
		                     "the code expired: put the number again"));
	nt_code_hash(ctx->user_id, code, hash);
	if (!cm_ct_equal(hash, c.code_hash, 64)) {
		(void) nt_pg_code_failed(p, ctx->user_id);
		return (cm_rpc_error(ctx, CM_INVALID_ARGUMENT, "wrong code"));
	}
	c.phone = c.pending_phone;
	c.pending_phone = c.code_hash = cm_pbstr("");
	c.code_attempts = 0;
	if ((rv = nt_pg_put_contact(p, ctx->user_id, &c)) != CM_OK)
		return (store_error(ctx, rv));
	*out = &contact_reply(ctx, &c)->base;
	return (CM_OK);
}

static int
h_list_inbox(cm_rpc_ctx *ctx, const ProtobufCMessage *in,
             ProtobufCMessage **out)
{
	const Notifier__ListInboxRequest *rq =
	    (const Notifier__ListInboxRequest *) in;
	Notifier__ListInboxResponse *r;
	Notifier__InboxItem **rows;
	int64_t after, unread = 0;
	size_t lim, n;
	int rv;

	if ((rv = need_user(ctx)) != CM_OK ||
	    (rv = paging(ctx, rq->limit, rq->cursor, &lim, &after)) != CM_OK)
		return (rv);
	rows = cm_arena_alloc(ctx->arena, (lim + 1) * sizeof(*rows));
	if ((rv = nt_pg_list_inbox(io_for(ctx), ctx->user_id, after, lim + 1,
	                           ctx->arena, rows, &n, &unread)) != CM_OK)
		return (store_error(ctx, rv));
	r = cm_rpc_new_msg(ctx, &notifier__list_inbox_response__descriptor);
	r->next_cursor = cm_pbstr("");
	if (n > lim) {
		n = lim;
		r->next_cursor =
		    nt_cursor_make(ctx->arena, nt_id_parse(rows[n - 1]->id));
	}
	r->notifications = rows;
	r->n_notifications = n;
	r->unread_count = unread;
	*out = &r->base;
	return (CM_OK);
}

static int
h_mark_read(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Notifier__MarkReadRequest *rq =
	    (const Notifier__MarkReadRequest *) in;
	Notifier__Empty *e;
	int64_t id;
	int rv;

	if ((rv = need_user(ctx)) != CM_OK)
		return (rv);
	if ((id = nt_id_parse(rq->id)) < 0)
		return (
		    cm_rpc_error(ctx, CM_NOT_FOUND, "no such notification"));
	rv = nt_pg_mark_read(io_for(ctx), ctx->user_id, id);
	if (rv == CM_NOT_FOUND)
		return (cm_rpc_error(ctx, rv, "no such notification"));
	if (rv != CM_OK)
		return (store_error(ctx, rv));
	e = cm_rpc_new_msg(ctx, &notifier__empty__descriptor);
	*out = &e->base;
	return (CM_OK);
}

static int
h_mark_all(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	Notifier__MarkAllReadResponse *r;
	int64_t n = 0;
	int rv;

	(void) in;
	if ((rv = need_user(ctx)) != CM_OK)
		return (rv);
	if ((rv = nt_pg_mark_all_read(io_for(ctx), ctx->user_id, &n)) != CM_OK)
		return (store_error(ctx, rv));
	r = cm_rpc_new_msg(ctx, &notifier__mark_all_read_response__descriptor);
	r->updated = n;
	*out = &r->base;
	return (CM_OK);
}

/* RFC 8058 one-click: the token alone turns the type's email off. */
static int
h_unsubscribe(cm_rpc_ctx *ctx, const ProtobufCMessage *in,
              ProtobufCMessage **out)
{
	const Notifier__UnsubscribeRequest *rq =
	    (const Notifier__UnsubscribeRequest *) in;
	Notifier__UnsubscribeResponse *r;
	char *user = NULL, *type = NULL;
	int rv;

	if (rq->token == NULL || nt_unsub_verify(svc(ctx)->unsubscribe_key,
	                                         rq->token, &user, &type) != 0)
		return (cm_rpc_error(ctx, CM_NOT_FOUND, "no such link"));
	rv = nt_pg_set_pref(io_for(ctx), user, type, NT_CH_EMAIL, false);
	if (rv != CM_OK) {
		free(user);
		free(type);
		return (store_error(ctx, rv));
	}
	log_info("event=unsubscribed type=%s", type);
	r = cm_rpc_new_msg(ctx, &notifier__unsubscribe_response__descriptor);
	r->type = cm_arena_strdup(ctx->arena, type);
	r->channel = cm_pbstr("email");
	free(user);
	free(type);
	*out = &r->base;
	return (CM_OK);
}

/* In the order of the methods in proto/notifier.proto. */
static const cm_rpc_handler handlers[] = {
    h_send,          h_get,         h_list_dead,   h_replay,
    h_put_prefs,     h_get_prefs,   h_add_device,  h_list_devices,
    h_delete_device, h_put_contact, h_get_contact, h_confirm,
    h_list_inbox,    h_mark_read,   h_mark_all,    h_unsubscribe,
};

const cm_rpc_service notifier_rpc_service = {
    .desc = &notifier__notifier__descriptor,
    .handlers = handlers,
};
