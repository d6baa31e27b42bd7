/*
 * An in-memory store and queue for the engine's unit tests: a handful of
 * notifications, one recipient, and counters of what the queue was asked
 * to do.  Not thread-safe; never used by the service.
 */
#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "store.h"
#include "util.h"

#define MEM_MAX 32

struct nt_mem {
	nt_notification n[MEM_MAX];
	size_t nn;
	nt_user_ctx user;
	int64_t due[MEM_MAX]; /* scheduled due time per slot, 0 if none */
	size_t dead, inbox, log;
	struct {
		int64_t head, until;
		int count;
		char grp[64];
	} digest;
};

static int
slot(struct nt_mem *m, int64_t id)
{
	for (size_t i = 0; i < m->nn; i++)
		if (m->n[i].id == id)
			return ((int) i);
	return (-1);
}

static int
m_lock(void *impl, int64_t id, bool *got)
{
	(void) impl;
	(void) id;
	*got = true;
	return (CM_OK);
}

static void
m_unlock(void *impl, int64_t id)
{
	(void) impl;
	(void) id;
}

static int
m_load(void *impl, int64_t id, cm_arena *a, nt_notification *out)
{
	struct nt_mem *m = impl;
	int s = slot(m, id);

	(void) a;
	if (s < 0)
		return (CM_NOT_FOUND);
	*out = m->n[s];
	return (CM_OK);
}

static int
m_user_ctx(void *impl, const char *user, const char *type, cm_arena *a,
           nt_user_ctx *out)
{
	struct nt_mem *m = impl;

	(void) user;
	(void) type;
	(void) a;
	*out = m->user;
	return (CM_OK);
}

static int
m_record(void *impl, int64_t id, const nt_delivery *d, const char *what,
         int64_t now_ms)
{
	struct nt_mem *m = impl;
	int s = slot(m, id);

	(void) what;
	(void) now_ms;
	if (s < 0)
		return (CM_NOT_FOUND);
	for (size_t i = 0; i < m->n[s].ndel; i++)
		if (m->n[s].del[i].channel == d->channel)
			m->n[s].del[i] = *d;
	m->log++;
	return (CM_OK);
}

static int
m_inbox_put(void *impl, const nt_notification *n, const char *title,
            const char *body)
{
	struct nt_mem *m = impl;

	(void) n;
	(void) title;
	(void) body;
	m->inbox++;
	return (CM_OK);
}

static int
m_device_remove(void *impl, int64_t device_id)
{
	struct nt_mem *m = impl;
	size_t j = 0;

	for (size_t i = 0; i < m->user.ndevices; i++)
		if (m->user.devices[i].id != device_id)
			m->user.devices[j++] = m->user.devices[i];
	m->user.ndevices = j;
	return (CM_OK);
}

static int
m_digest_join(void *impl, const nt_notification *n, int64_t now_ms,
              int64_t window_ms, int64_t *head, int64_t *until_ms)
{
	struct nt_mem *m = impl;

	if (m->digest.until <= now_ms || strcmp(m->digest.grp, n->grp) != 0) {
		m->digest.head = n->id;
		m->digest.until = now_ms + window_ms;
		m->digest.count = 1;
		cm_strlcpy(m->digest.grp, n->grp, sizeof(m->digest.grp));
	} else {
		m->digest.count++;
	}
	*head = m->digest.head;
	*until_ms = m->digest.until;
	return (CM_OK);
}

static int
m_digest_count(void *impl, int64_t head, int *count)
{
	struct nt_mem *m = impl;

	*count = m->digest.head == head ? m->digest.count : 1;
	return (CM_OK);
}

static int
m_set_due(void *impl, int64_t id, int64_t due_ms, int digest_state)
{
	struct nt_mem *m = impl;
	int s = slot(m, id);

	if (s < 0)
		return (CM_NOT_FOUND);
	m->n[s].due_ms = due_ms;
	m->n[s].digest_state = digest_state;
	return (CM_OK);
}

static const struct nt_store_ops mem_ops = {
    .name = "mem",
    .lock = m_lock,
    .unlock = m_unlock,
    .load = m_load,
    .user_ctx = m_user_ctx,
    .record = m_record,
    .inbox_put = m_inbox_put,
    .device_remove = m_device_remove,
    .digest_join = m_digest_join,
    .digest_count = m_digest_count,
    .set_due = m_set_due,
};

static int
q_schedule(void *impl, int prio, int64_t id, int64_t due_ms)
{
	struct nt_mem *m = impl;
	int s = slot(m, id);

	(void) prio;
	if (s >= 0)
		m->due[s] = due_ms;
	return (CM_OK);
}

static int
q_dead_letter(void *impl, int64_t id, int channel, const char *error)
{
	struct nt_mem *m = impl;

	(void) id;
	(void) channel;
	(void) error;
	m->dead++;
	return (CM_OK);
}

static int
q_throttle(void *impl, const char *user, int channel, int64_t window_ms,
           int64_t now_ms, long *count)
{
	static long counts[NT_CH_COUNT];
	static int64_t window[NT_CH_COUNT];

	(void) impl;
	(void) user;
	if (window[channel] != now_ms / window_ms) {
		window[channel] = now_ms / window_ms;
		counts[channel] = 0;
	}
	*count = ++counts[channel];
	return (CM_OK);
}

static const struct nt_queue_ops mem_queue_ops = {
    .name = "mem",
    .schedule = q_schedule,
    .dead_letter = q_dead_letter,
    .throttle = q_throttle,
};

struct nt_mem *
nt_mem_new(void)
{
	struct nt_mem *m = calloc(1, sizeof(*m));

	if (m != NULL)
		m->user.email = m->user.phone = m->user.pending_phone = "";
	return (m);
}

void
nt_mem_free(struct nt_mem *m)
{
	free(m);
}

void
nt_mem_store(struct nt_mem *m, struct nt_store *out)
{
	out->ops = &mem_ops;
	out->impl = m;
}

void
nt_mem_queue(struct nt_mem *m, struct nt_queue *out)
{
	out->ops = &mem_queue_ops;
	out->impl = m;
}

nt_notification *
nt_mem_add(struct nt_mem *m, int64_t id, const char *user, const char *type,
           int prio, const int *channels, size_t nch)
{
	nt_notification *n;

	if (m->nn >= MEM_MAX)
		return (NULL);
	n = &m->n[m->nn++];
	memset(n, 0, sizeof(*n));
	n->id = id;
	n->user = user;
	n->type = type;
	n->title = "title";
	n->body = "body";
	n->data_json = "{}";
	n->tmpl = type;
	n->vars_json = "{}";
	n->grp = "";
	n->priority = prio;
	for (size_t i = 0; i < nch && i < NT_CH_COUNT; i++)
		n->del[n->ndel++].channel = channels[i];
	return (n);
}

nt_notification *
nt_mem_get(struct nt_mem *m, int64_t id)
{
	int s = slot(m, id);

	return (s < 0 ? NULL : &m->n[s]);
}

nt_user_ctx *
nt_mem_user(struct nt_mem *m)
{
	return (&m->user);
}

int64_t
nt_mem_scheduled(struct nt_mem *m, int64_t id)
{
	int s = slot(m, id);

	return (s < 0 ? 0 : m->due[s]);
}

size_t
nt_mem_dead_count(struct nt_mem *m)
{
	return (m->dead);
}

size_t
nt_mem_inbox_count(struct nt_mem *m)
{
	return (m->inbox);
}

size_t
nt_mem_log_count(struct nt_mem *m)
{
	return (m->log);
}
