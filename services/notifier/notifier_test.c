/*
 * Unit tests of the notifier's engine: nt_process over the in-memory store
 * (store_mem.c) with providers of the test's own, whose outcome the test
 * sets -- the only place a provider is faked (the integration tests use
 * the real channels).  Also the validation of Sends, backoff, failover
 * and unsubscribe tokens.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notifier.h"
#include "status.h"
#include "store.h"

#define T0 1700000000000LL

/* A provider whose outcome the test sets. */
struct fake {
	nt_outcome outcome;
	int64_t retry_after_ms;
	int calls;
	char last_title[256];
	char last_target[256];
};

static void
fake_send(void *impl, const nt_message *m, const char *target, nt_result *r)
{
	struct fake *f = impl;

	f->calls++;
	snprintf(f->last_title, sizeof(f->last_title), "%s", m->title);
	snprintf(f->last_target, sizeof(f->last_target), "%s", target);
	memset(r, 0, sizeof(*r));
	r->outcome = f->outcome;
	r->retry_after_ms = f->retry_after_ms;
	if (f->outcome != NT_SENT)
		snprintf(r->error, sizeof(r->error), "fake failure %d",
		         (int) f->outcome);
}

static void
fake_free(void *impl)
{
	(void) impl;
}

static const nt_provider_ops fake_push_a = {.name = "push-a",
                                            .channel = NT_CH_PUSH,
                                            .send = fake_send,
                                            .free = fake_free};
static const nt_provider_ops fake_push_b = {.name = "push-b",
                                            .channel = NT_CH_PUSH,
                                            .send = fake_send,
                                            .free = fake_free};
static const nt_provider_ops fake_sms = {.name = "sms-a",
                                         .channel = NT_CH_SMS,
                                         .send = fake_send,
                                         .free = fake_free};

struct fx {
	nt_engine e;
	nt_worker w;
	struct nt_mem *m;
	struct nt_store store;
	struct nt_queue queue;
	struct fake a, b, sms;
};

static struct fx *
fx_new(const nt_engine_cfg *override)
{
	struct fx *f = calloc(1, sizeof(*f));
	nt_engine_cfg c = {
	    .max_attempts = 3,
	    .backoff_base_ms = 1000,
	    .backoff_max_ms = 300000,
	    .templates_dir = "/nonexistent/templates",
	    .public_base_url = "http://x.test",
	    .unsubscribe_key = "0123456789abcdef0123456789abcdef",
	    .failover_threshold = 5,
	    .failover_skip_ms = 30000,
	};

	assert_non_null(f);
	if (override != NULL)
		c = *override;
	nt_engine_init(&f->e, &c);
	f->m = nt_mem_new();
	nt_mem_store(f->m, &f->store);
	nt_mem_queue(f->m, &f->queue);
	f->w.store = &f->store;
	f->w.queue = &f->queue;
	f->w.rng = 42;
	cm_arena_init(&f->w.arena);
	f->w.primary[NT_CH_PUSH] =
	    (nt_provider){.ops = &fake_push_a, .impl = &f->a};
	f->w.primary[NT_CH_SMS] =
	    (nt_provider){.ops = &fake_sms, .impl = &f->sms};
	f->a.outcome = f->b.outcome = f->sms.outcome = NT_SENT;
	nt_mem_user(f->m)->ndevices = 1;
	nt_mem_user(f->m)->devices[0].id = 7;
	nt_mem_user(f->m)->devices[0].endpoint = "https://push.test/u/1";
	return (f);
}

static void
fx_free(struct fx *f)
{
	cm_arena_fini(&f->w.arena);
	nt_engine_fini(&f->e);
	nt_mem_free(f->m);
	free(f);
}

static const nt_delivery *
del(struct fx *f, int64_t id, int ch)
{
	nt_notification *n = nt_mem_get(f->m, id);

	for (size_t i = 0; i < n->ndel; i++)
		if (n->del[i].channel == ch)
			return (&n->del[i]);
	fail();
	return (NULL);
}

static void
test_inapp_delivered(void **state)
{
	struct fx *f = fx_new(NULL);
	int ch[] = {NT_CH_INAPP};

	(void) state;
	nt_mem_add(f->m, 1, "u", "t", NT_PRIO_NORMAL, ch, 1);
	assert_int_equal(nt_process(&f->e, &f->w, 1, T0), CM_OK);
	assert_int_equal(del(f, 1, NT_CH_INAPP)->status, NT_ST_SENT);
	assert_int_equal(del(f, 1, NT_CH_INAPP)->attempts, 1);
	assert_int_equal(nt_mem_inbox_count(f->m), 1);
	assert_int_equal(nt_mem_log_count(f->m), 1);
	assert_int_equal(nt_mem_scheduled(f->m, 1), 0);
	/* A second message for it finds nothing to do. */
	assert_int_equal(nt_process(&f->e, &f->w, 1, T0 + 5), CM_OK);
	assert_int_equal(nt_mem_inbox_count(f->m), 1);
	/* An unknown id is done with. */
	assert_int_equal(nt_process(&f->e, &f->w, 99, T0), CM_OK);
	fx_free(f);
}

/*
 * Push fails (5xx-like) while inapp works: three attempts with growing,
 * jittered backoff through the due-time set, then dead and on the
 * dead-letter stream; a replay (dead -> queued, as nt_pg_replay does)
 * sends only push again, and inapp is not delivered twice.
 */
static void
test_retries_dead_replay(void **state)
{
	struct fx *f = fx_new(NULL);
	int ch[] = {NT_CH_PUSH, NT_CH_INAPP};
	int64_t now = T0, due, prev_delay = 0;
	nt_notification *n;

	(void) state;
	nt_mem_add(f->m, 2, "u", "t", NT_PRIO_NORMAL, ch, 2);
	f->a.outcome = NT_RETRY;
	for (int attempt = 1; attempt <= 2; attempt++) {
		assert_int_equal(nt_process(&f->e, &f->w, 2, now), CM_OK);
		assert_int_equal(del(f, 2, NT_CH_PUSH)->status, NT_ST_FAILED);
		assert_int_equal(del(f, 2, NT_CH_PUSH)->attempts, attempt);
		due = nt_mem_scheduled(f->m, 2);
		assert_true(due > now);
		/* base 1 s doubled per attempt, equal jitter */
		assert_true(due - now >= 500LL << (attempt - 1));
		assert_true(due - now <= 1000LL << (attempt - 1));
		assert_true(due - now > prev_delay / 2);
		prev_delay = due - now;
		/* Too early: nothing is attempted, it waits again. */
		assert_int_equal(nt_process(&f->e, &f->w, 2, due - 1), CM_OK);
		assert_int_equal(f->a.calls, attempt);
		now = due;
	}
	assert_int_equal(nt_process(&f->e, &f->w, 2, now), CM_OK);
	assert_int_equal(del(f, 2, NT_CH_PUSH)->status, NT_ST_DEAD);
	assert_int_equal(del(f, 2, NT_CH_PUSH)->attempts, 3);
	assert_string_equal(del(f, 2, NT_CH_PUSH)->last_error,
	                    "fake failure 1");
	assert_int_equal(nt_mem_dead_count(f->m), 1);
	assert_int_equal(f->a.calls, 3);
	assert_int_equal(del(f, 2, NT_CH_INAPP)->status, NT_ST_SENT);
	assert_int_equal(nt_mem_inbox_count(f->m), 1);

	/* Replay: the dead channel only. */
	n = nt_mem_get(f->m, 2);
	for (size_t i = 0; i < n->ndel; i++)
		if (n->del[i].status == NT_ST_DEAD) {
			n->del[i].status = NT_ST_QUEUED;
			n->del[i].attempts = 0;
		}
	f->a.outcome = NT_SENT;
	assert_int_equal(nt_process(&f->e, &f->w, 2, now + 10), CM_OK);
	assert_int_equal(del(f, 2, NT_CH_PUSH)->status, NT_ST_SENT);
	assert_int_equal(f->a.calls, 4);
	assert_int_equal(nt_mem_inbox_count(f->m), 1);
	fx_free(f);
}

static void
test_permanent_dead_at_once(void **state)
{
	struct fx *f = fx_new(NULL);
	int ch[] = {NT_CH_PUSH};

	(void) state;
	nt_mem_add(f->m, 3, "u", "t", NT_PRIO_NORMAL, ch, 1);
	f->a.outcome = NT_PERMANENT;
	assert_int_equal(nt_process(&f->e, &f->w, 3, T0), CM_OK);
	assert_int_equal(del(f, 3, NT_CH_PUSH)->status, NT_ST_DEAD);
	assert_int_equal(del(f, 3, NT_CH_PUSH)->attempts, 1);
	assert_int_equal(nt_mem_dead_count(f->m), 1);
	assert_int_equal(nt_mem_scheduled(f->m, 3), 0);
	fx_free(f);
}

static void
test_gone_removes_device(void **state)
{
	struct fx *f = fx_new(NULL);
	int ch[] = {NT_CH_PUSH};

	(void) state;
	nt_mem_add(f->m, 4, "u", "t", NT_PRIO_NORMAL, ch, 1);
	f->a.outcome = NT_GONE;
	assert_int_equal(nt_process(&f->e, &f->w, 4, T0), CM_OK);
	assert_int_equal(del(f, 4, NT_CH_PUSH)->status, NT_ST_DEAD);
	assert_int_equal(nt_mem_user(f->m)->ndevices, 0);
	fx_free(f);
}

static void
test_retry_after_honoured(void **state)
{
	struct fx *f = fx_new(NULL);
	int ch[] = {NT_CH_PUSH};

	(void) state;
	nt_mem_add(f->m, 5, "u", "t", NT_PRIO_NORMAL, ch, 1);
	f->a.outcome = NT_RETRY;
	f->a.retry_after_ms = 60000;
	assert_int_equal(nt_process(&f->e, &f->w, 5, T0), CM_OK);
	assert_int_equal(nt_mem_scheduled(f->m, 5), T0 + 60000);
	fx_free(f);
}

/*
 * Five consecutive failures of the primary switch to the secondary for
 * the skip time; then the primary is probed, and a failed probe switches
 * back at once.
 */
static void
test_failover(void **state)
{
	nt_engine_cfg c = {.max_attempts = 100,
	                   .backoff_base_ms = 10,
	                   .backoff_max_ms = 10,
	                   .templates_dir = "/nonexistent",
	                   .public_base_url = "http://x.test",
	                   .failover_threshold = 5,
	                   .failover_skip_ms = 30000};
	struct fx *f = fx_new(&c);
	int ch[] = {NT_CH_PUSH};
	int64_t now = T0;

	(void) state;
	f->w.secondary[NT_CH_PUSH] =
	    (nt_provider){.ops = &fake_push_b, .impl = &f->b};
	f->a.outcome = NT_RETRY;
	for (int i = 0; i < 5; i++) {
		nt_mem_add(f->m, 10 + i, "u", "t", NT_PRIO_NORMAL, ch, 1);
		assert_int_equal(nt_process(&f->e, &f->w, 10 + i, now++),
		                 CM_OK);
	}
	assert_int_equal(f->a.calls, 5);
	assert_int_equal(f->b.calls, 0);
	nt_mem_add(f->m, 20, "u", "t", NT_PRIO_NORMAL, ch, 1);
	assert_int_equal(nt_process(&f->e, &f->w, 20, now), CM_OK);
	assert_int_equal(f->a.calls, 5);
	assert_int_equal(f->b.calls, 1);
	assert_int_equal(del(f, 20, NT_CH_PUSH)->status, NT_ST_SENT);
	assert_string_equal(del(f, 20, NT_CH_PUSH)->provider, "push-b");
	/* The first five retry on the secondary. */
	assert_int_equal(nt_process(&f->e, &f->w, 10, now + 20), CM_OK);
	assert_string_equal(del(f, 10, NT_CH_PUSH)->provider, "push-b");
	assert_int_equal(f->a.calls, 5);

	/* After 30 s the primary is probed; failing, it is skipped again. */
	now += 30001;
	nt_mem_add(f->m, 21, "u", "t", NT_PRIO_NORMAL, ch, 1);
	assert_int_equal(nt_process(&f->e, &f->w, 21, now), CM_OK);
	assert_int_equal(f->a.calls, 6);
	nt_mem_add(f->m, 22, "u", "t", NT_PRIO_NORMAL, ch, 1);
	assert_int_equal(nt_process(&f->e, &f->w, 22, now + 1), CM_OK);
	assert_int_equal(f->a.calls, 6);
	assert_string_equal(del(f, 22, NT_CH_PUSH)->provider, "push-b");

	/* A probe that succeeds brings the primary back. */
	now += 30001;
	f->a.outcome = NT_SENT;
	nt_mem_add(f->m, 23, "u", "t", NT_PRIO_NORMAL, ch, 1);
	assert_int_equal(nt_process(&f->e, &f->w, 23, now), CM_OK);
	assert_string_equal(del(f, 23, NT_CH_PUSH)->provider, "push-a");
	nt_mem_add(f->m, 24, "u", "t", NT_PRIO_NORMAL, ch, 1);
	assert_int_equal(nt_process(&f->e, &f->w, 24, now + 1), CM_OK);
	assert_string_equal(del(f, 24, NT_CH_PUSH)->provider, "push-a");
	fx_free(f);
}

static void
test_preference_off(void **state)
{
	struct fx *f = fx_new(NULL);
	int ch[] = {NT_CH_PUSH, NT_CH_INAPP};

	(void) state;
	nt_mem_user(f->m)->off_mask = 1u << NT_CH_PUSH;
	nt_mem_add(f->m, 30, "u", "t", NT_PRIO_NORMAL, ch, 2);
	assert_int_equal(nt_process(&f->e, &f->w, 30, T0), CM_OK);
	assert_int_equal(del(f, 30, NT_CH_PUSH)->status, NT_ST_SKIPPED);
	assert_int_equal(del(f, 30, NT_CH_INAPP)->status, NT_ST_SENT);
	assert_int_equal(f->a.calls, 0);
	fx_free(f);
}

static void
test_quiet_hours(void **state)
{
	struct fx *f = fx_new(NULL);
	int ch[] = {NT_CH_PUSH};

	(void) state;
	nt_mem_user(f->m)->quiet_until_ms = T0 + 3600000;
	nt_mem_add(f->m, 40, "u", "t", NT_PRIO_NORMAL, ch, 1);
	nt_mem_add(f->m, 41, "u", "t", NT_PRIO_HIGH, ch, 1);
	assert_int_equal(nt_process(&f->e, &f->w, 40, T0), CM_OK);
	assert_int_equal(del(f, 40, NT_CH_PUSH)->status, NT_ST_QUEUED);
	assert_int_equal(nt_mem_scheduled(f->m, 40), T0 + 3600000);
	assert_int_equal(f->a.calls, 0);
	/* High priority goes through quiet hours. */
	assert_int_equal(nt_process(&f->e, &f->w, 41, T0), CM_OK);
	assert_int_equal(del(f, 41, NT_CH_PUSH)->status, NT_ST_SENT);
	/* When they are over, the deferred one goes. */
	nt_mem_user(f->m)->quiet_until_ms = 0;
	assert_int_equal(nt_process(&f->e, &f->w, 40, T0 + 3600000), CM_OK);
	assert_int_equal(del(f, 40, NT_CH_PUSH)->status, NT_ST_SENT);
	fx_free(f);
}

static void
test_send_at_waits(void **state)
{
	struct fx *f = fx_new(NULL);
	int ch[] = {NT_CH_INAPP};
	nt_notification *n;

	(void) state;
	n = nt_mem_add(f->m, 50, "u", "t", NT_PRIO_NORMAL, ch, 1);
	n->due_ms = T0 + 5000;
	assert_int_equal(nt_process(&f->e, &f->w, 50, T0), CM_OK);
	assert_int_equal(nt_mem_scheduled(f->m, 50), T0 + 5000);
	assert_int_equal(nt_mem_inbox_count(f->m), 0);
	assert_int_equal(nt_process(&f->e, &f->w, 50, T0 + 5000), CM_OK);
	assert_int_equal(nt_mem_inbox_count(f->m), 1);
	fx_free(f);
}

static void
test_throttle(void **state)
{
	nt_engine_cfg c = {.max_attempts = 3,
	                   .backoff_base_ms = 1000,
	                   .backoff_max_ms = 300000,
	                   .templates_dir = "/nonexistent",
	                   .public_base_url = "http://x.test",
	                   .throttle_max = 2,
	                   .throttle_window_ms = 60000};
	struct fx *f = fx_new(&c);
	int ch[] = {NT_CH_PUSH};

	(void) state;
	for (int i = 0; i < 3; i++) {
		nt_mem_add(f->m, 60 + i, "u", "t", NT_PRIO_NORMAL, ch, 1);
		assert_int_equal(nt_process(&f->e, &f->w, 60 + i, T0 + i),
		                 CM_OK);
	}
	assert_int_equal(f->a.calls, 2);
	assert_int_equal(del(f, 62, NT_CH_PUSH)->status, NT_ST_QUEUED);
	assert_int_equal(del(f, 62, NT_CH_PUSH)->attempts, 0);
	assert_int_equal(nt_mem_scheduled(f->m, 62), (T0 / 60000 + 1) * 60000);
	assert_int_equal(nt_process(&f->e, &f->w, 62, (T0 / 60000 + 1) * 60000),
	                 CM_OK);
	assert_int_equal(del(f, 62, NT_CH_PUSH)->status, NT_ST_SENT);
	fx_free(f);
}

static void
test_digest(void **state)
{
	nt_engine_cfg c = {.max_attempts = 3,
	                   .backoff_base_ms = 1000,
	                   .backoff_max_ms = 300000,
	                   .templates_dir = "/nonexistent",
	                   .public_base_url = "http://x.test",
	                   .digest_window_ms = 10000};
	struct fx *f = fx_new(&c);
	int ch[] = {NT_CH_PUSH};
	nt_notification *n;

	(void) state;
	for (int i = 0; i < 3; i++) {
		n = nt_mem_add(f->m, 70 + i, "u", "feed.like", NT_PRIO_LOW, ch,
		               1);
		n->grp = "post-1";
		n->title = "Alice liked your post";
		assert_int_equal(nt_process(&f->e, &f->w, 70 + i, T0 + i),
		                 CM_OK);
	}
	assert_int_equal(f->a.calls, 0);
	assert_int_equal(nt_mem_scheduled(f->m, 70), T0 + 10000);
	assert_int_equal(del(f, 71, NT_CH_PUSH)->status, NT_ST_SKIPPED);
	assert_int_equal(del(f, 72, NT_CH_PUSH)->status, NT_ST_SKIPPED);
	assert_int_equal(nt_process(&f->e, &f->w, 70, T0 + 10000), CM_OK);
	assert_int_equal(f->a.calls, 1);
	assert_string_equal(f->a.last_title, "Alice liked your post (+2 more)");
	assert_int_equal(del(f, 70, NT_CH_PUSH)->status, NT_ST_SENT);
	fx_free(f);
}

static void
test_phone_code_to_pending(void **state)
{
	struct fx *f = fx_new(NULL);
	int ch[] = {NT_CH_SMS};

	(void) state;
	nt_mem_user(f->m)->phone = "+4900000001";
	nt_mem_user(f->m)->pending_phone = "+4900000002";
	nt_mem_user(f->m)->off_mask = 1u << NT_CH_SMS;
	nt_mem_add(f->m, 80, "u", NT_TYPE_PHONE_CODE, NT_PRIO_HIGH, ch, 1);
	nt_mem_add(f->m, 81, "u", "t", NT_PRIO_HIGH, ch, 1);
	assert_int_equal(nt_process(&f->e, &f->w, 80, T0), CM_OK);
	assert_string_equal(f->sms.last_target, "+4900000002");
	/* An ordinary SMS honours the preference. */
	assert_int_equal(nt_process(&f->e, &f->w, 81, T0), CM_OK);
	assert_int_equal(del(f, 81, NT_CH_SMS)->status, NT_ST_SKIPPED);
	assert_int_equal(f->sms.calls, 1);
	fx_free(f);
}

static void
test_backoff_bounds(void **state)
{
	nt_engine_cfg c = {.backoff_base_ms = 1000, .backoff_max_ms = 8000};
	uint64_t rng = 1;

	(void) state;
	for (int i = 0; i < 200; i++) {
		int64_t d1 = nt_backoff_ms(&c, 1, 0, &rng);
		int64_t d4 = nt_backoff_ms(&c, 4, 0, &rng);
		int64_t d9 = nt_backoff_ms(&c, 9, 0, &rng);

		assert_true(d1 >= 500 && d1 <= 1000);
		assert_true(d4 >= 4000 && d4 <= 8000);
		assert_true(d9 >= 4000 && d9 <= 8000);
		assert_int_equal(nt_backoff_ms(&c, 1, 999999, &rng), 8000);
	}
}

static void
test_unsub_token(void **state)
{
	const char *key = "0123456789abcdef0123456789abcdef";
	char *t, *u = NULL, *ty = NULL;

	(void) state;
	t = nt_unsub_token(key, "alice@x", "video.ready");
	assert_non_null(t);
	assert_int_equal(nt_unsub_verify(key, t, &u, &ty), 0);
	assert_string_equal(u, "alice@x");
	assert_string_equal(ty, "video.ready");
	free(u);
	free(ty);
	assert_int_equal(
	    nt_unsub_verify("another-key-another-key-another!", t, &u, &ty),
	    -1);
	t[strlen(t) - 1] = t[strlen(t) - 1] == 'A' ? 'B' : 'A';
	assert_int_equal(nt_unsub_verify(key, t, &u, &ty), -1);
	assert_int_equal(nt_unsub_verify(key, "a.b", &u, &ty), -1);
	assert_int_equal(nt_unsub_verify(key, "", &u, &ty), -1);
	free(t);
}

static int
prepare(const char *json_channels, Notifier__Priority prio, const char *type,
        const char *title, char *err, size_t errlen)
{
	Notifier__SendRequest rq = NOTIFIER__SEND_REQUEST__INIT;
	nt_engine_cfg c = {.templates_dir = "/nonexistent"};
	nt_engine e;
	char *chans[4], buf[64], *elem = NULL, *save;
	int64_t due;
	int p, rv;

	nt_engine_init(&e, &c);
	snprintf(buf, sizeof(buf), "%s", json_channels);
	rq.n_channels = 0;
	for (char *s = strtok_r(buf, ",", &save);
	     s != NULL && rq.n_channels < 4; s = strtok_r(NULL, ",", &save))
		chans[rq.n_channels++] = s;
	rq.channels = chans;
	rq.user = "alice";
	rq.type = (char *) type;
	rq.title = (char *) title;
	rq.priority = prio;
	rv = nt_send_prepare(&e, &rq, T0, &elem, &due, &p, err, errlen);
	free(elem);
	nt_engine_fini(&e);
	return (rv);
}

static void
test_send_validation(void **state)
{
	char err[256];

	(void) state;
	assert_int_equal(prepare("inapp", 0, "t.x", "hi", err, sizeof(err)),
	                 CM_OK);
	assert_int_equal(prepare("push,email,sms,inapp",
	                         NOTIFIER__PRIORITY__PRIORITY_LOW,
	                         "video.ready", "hi", err, sizeof(err)),
	                 CM_OK);
	assert_int_equal(prepare("fax", 0, "t", "hi", err, sizeof(err)),
	                 CM_INVALID_ARGUMENT);
	assert_int_equal(prepare("push,push", 0, "t", "hi", err, sizeof(err)),
	                 CM_INVALID_ARGUMENT);
	assert_int_equal(prepare("", 0, "t", "hi", err, sizeof(err)),
	                 CM_INVALID_ARGUMENT);
	assert_int_equal(
	    prepare("inapp", 0, "Bad Type", "hi", err, sizeof(err)),
	    CM_INVALID_ARGUMENT);
	assert_int_equal(prepare("inapp", 0, "t", "", err, sizeof(err)),
	                 CM_INVALID_ARGUMENT);
	assert_int_equal(
	    prepare("sms", 0, NT_TYPE_PHONE_CODE, "x", err, sizeof(err)),
	    CM_INVALID_ARGUMENT);
	assert_int_equal(prepare("inapp", 9, "t", "x", err, sizeof(err)),
	                 CM_INVALID_ARGUMENT);
}

static void
test_validators(void **state)
{
	int64_t after;

	(void) state;
	assert_int_equal(nt_hhmm_parse("22:00"), 22 * 60);
	assert_int_equal(nt_hhmm_parse("07:05"), 7 * 60 + 5);
	assert_int_equal(nt_hhmm_parse("24:00"), -1);
	assert_int_equal(nt_hhmm_parse("7:00"), -1);
	assert_true(nt_phone_ok("+4915112345678"));
	assert_false(nt_phone_ok("015112345678"));
	assert_false(nt_phone_ok("+0123456789"));
	assert_true(nt_email_ok("a@b.c"));
	assert_false(nt_email_ok("a@b@c"));
	assert_false(nt_email_ok("a b@c"));
	assert_false(nt_email_ok("a@b\r\nBcc: x"));
	assert_true(nt_endpoint_ok("https://ntfy.sh/topic"));
	assert_false(nt_endpoint_ok("ftp://x"));
	assert_false(nt_endpoint_ok("https://"));
	assert_int_equal(nt_cursor_parse("", &after), 0);
	assert_int_equal(after, 0);
	assert_int_equal(nt_cursor_parse("!!", &after), -1);
	assert_int_equal(nt_id_parse("123"), 123);
	assert_int_equal(nt_id_parse("0"), -1);
	assert_int_equal(nt_id_parse("12a"), -1);
	assert_int_equal(nt_id_parse("99999999999999999999"), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_inapp_delivered),
	    cmocka_unit_test(test_retries_dead_replay),
	    cmocka_unit_test(test_permanent_dead_at_once),
	    cmocka_unit_test(test_gone_removes_device),
	    cmocka_unit_test(test_retry_after_honoured),
	    cmocka_unit_test(test_failover),
	    cmocka_unit_test(test_preference_off),
	    cmocka_unit_test(test_quiet_hours),
	    cmocka_unit_test(test_send_at_waits),
	    cmocka_unit_test(test_throttle),
	    cmocka_unit_test(test_digest),
	    cmocka_unit_test(test_phone_code_to_pending),
	    cmocka_unit_test(test_backoff_bounds),
	    cmocka_unit_test(test_unsub_token),
	    cmocka_unit_test(test_send_validation),
	    cmocka_unit_test(test_validators),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
