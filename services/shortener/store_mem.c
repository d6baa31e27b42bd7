/*
 * An in-memory fake of both seams, for unit tests: a store (an array of
 * links, searched linearly: tests hold a handful) and a shared cache
 * (another array, with tombstones, ignoring TTLs).  One mutex guards
 * everything, so the same instance may serve several threads, as the real
 * database does.  Knobs take either side "down" and count calls.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "shortener.h"
#include "status.h"
#include "store.h"
#include "util.h"

struct mem_link {
	int64_t id;
	char *code, *long_url, *owner;
	int64_t created_at, expires_at, clicks;
};

struct mem_cached {
	char *code;
	char *long_url; /* NULL: a tombstone */
	int64_t expires_at;
};

struct shortener_mem {
	pthread_mutex_t mu;
	struct mem_link *links;
	size_t nlinks, caplinks;
	struct mem_cached *cached;
	size_t ncached, capcached;
	uint64_t next_block, block;
	bool store_down, cache_down;
	struct shortener_mem_stats stats;
};

static char *
xstrdup(const char *s)
{
	char *d;

	if (s == NULL)
		return (NULL);
	if ((d = strdup(s)) == NULL)
		abort();
	return (d);
}

static void *
grow(void *p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return (p);
	*cap = *cap == 0 ? 16 : *cap * 2;
	if ((p = realloc(p, *cap * size)) == NULL)
		abort();
	return (p);
}

struct shortener_mem *
shortener_mem_new(void)
{
	struct shortener_mem *m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		abort();
	pthread_mutex_init(&m->mu, NULL);
	m->next_block = 1;
	m->block = 1000;
	return (m);
}

void
shortener_mem_free(struct shortener_mem *m)
{
	for (size_t i = 0; i < m->nlinks; i++) {
		free(m->links[i].code);
		free(m->links[i].long_url);
		free(m->links[i].owner);
	}
	for (size_t i = 0; i < m->ncached; i++) {
		free(m->cached[i].code);
		free(m->cached[i].long_url);
	}
	free(m->links);
	free(m->cached);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

void
shortener_mem_set_down(struct shortener_mem *m, bool store_down,
                       bool cache_down)
{
	pthread_mutex_lock(&m->mu);
	m->store_down = store_down;
	m->cache_down = cache_down;
	pthread_mutex_unlock(&m->mu);
}

void
shortener_mem_get_stats(struct shortener_mem *m,
                        struct shortener_mem_stats *out)
{
	pthread_mutex_lock(&m->mu);
	*out = m->stats;
	pthread_mutex_unlock(&m->mu);
}

void
shortener_mem_set_lease(struct shortener_mem *m, uint64_t block)
{
	pthread_mutex_lock(&m->mu);
	m->block = block;
	pthread_mutex_unlock(&m->mu);
}

/* ---- store ---- */

static struct mem_link *
mem_find(struct shortener_mem *m, const char *code)
{
	for (size_t i = 0; i < m->nlinks; i++)
		if (strcmp(m->links[i].code, code) == 0)
			return (&m->links[i]);
	return (NULL);
}

static void
mem_copy_out(cm_arena *a, const struct mem_link *l, struct shortener_link *out)
{
	out->id = l->id;
	out->code = cm_arena_strdup(a, l->code);
	out->long_url = cm_arena_strdup(a, l->long_url);
	out->owner = l->owner != NULL ? cm_arena_strdup(a, l->owner) : NULL;
	out->created_at = l->created_at;
	out->expires_at = l->expires_at;
	out->clicks = l->clicks;
}

static int
mem_lease_ids(void *impl, uint64_t *first, uint64_t *count)
{
	struct shortener_mem *m = impl;

	pthread_mutex_lock(&m->mu);
	if (m->store_down) {
		pthread_mutex_unlock(&m->mu);
		return (CM_UNAVAILABLE);
	}
	*first = m->next_block;
	*count = m->block;
	m->next_block += m->block;
	pthread_mutex_unlock(&m->mu);
	return (CM_OK);
}

static int
mem_insert(void *impl, const struct shortener_link *l)
{
	struct shortener_mem *m = impl;
	struct mem_link *n;

	pthread_mutex_lock(&m->mu);
	if (m->store_down) {
		pthread_mutex_unlock(&m->mu);
		return (CM_UNAVAILABLE);
	}
	m->stats.inserts++;
	if (mem_find(m, l->code) != NULL) {
		pthread_mutex_unlock(&m->mu);
		return (CM_ALREADY_EXISTS);
	}
	m->links = grow(m->links, &m->caplinks, m->nlinks, sizeof(*m->links));
	n = &m->links[m->nlinks++];
	n->id = l->id;
	n->code = xstrdup(l->code);
	n->long_url = xstrdup(l->long_url);
	n->owner = xstrdup(l->owner);
	n->created_at = l->created_at;
	n->expires_at = l->expires_at;
	n->clicks = 0;
	pthread_mutex_unlock(&m->mu);
	return (CM_OK);
}

static int
mem_get(void *impl, const char *code, cm_arena *a, struct shortener_link *out)
{
	struct shortener_mem *m = impl;
	struct mem_link *l;
	int rv = CM_NOT_FOUND;

	pthread_mutex_lock(&m->mu);
	if (m->store_down) {
		pthread_mutex_unlock(&m->mu);
		return (CM_UNAVAILABLE);
	}
	m->stats.store_gets++;
	if ((l = mem_find(m, code)) != NULL) {
		mem_copy_out(a, l, out);
		rv = CM_OK;
	}
	pthread_mutex_unlock(&m->mu);
	return (rv);
}

/* Newest first: (created_at, id) descending. */
static bool
mem_older(const struct mem_link *l, int64_t created_at, int64_t id)
{
	return (l->created_at < created_at ||
	        (l->created_at == created_at && l->id < id));
}

static int
mem_list(void *impl, const char *owner, const struct shortener_cursor *after,
         size_t max, cm_arena *a, struct shortener_link *out, size_t *n)
{
	struct shortener_mem *m = impl;
	int64_t t = INT64_MAX, id = INT64_MAX;
	size_t k = 0;

	pthread_mutex_lock(&m->mu);
	if (m->store_down) {
		pthread_mutex_unlock(&m->mu);
		return (CM_UNAVAILABLE);
	}
	if (after != NULL) {
		t = after->created_at;
		id = after->id;
	}
	/* Selection by repeated scans: fine for a test's handful of rows. */
	while (k < max) {
		struct mem_link *best = NULL;

		for (size_t i = 0; i < m->nlinks; i++) {
			struct mem_link *l = &m->links[i];

			if (l->owner == NULL || strcmp(l->owner, owner) != 0 ||
			    !mem_older(l, t, id))
				continue;
			if (best == NULL ||
			    mem_older(best, l->created_at, l->id))
				best = l;
		}
		if (best == NULL)
			break;
		mem_copy_out(a, best, &out[k++]);
		t = best->created_at;
		id = best->id;
	}
	*n = k;
	pthread_mutex_unlock(&m->mu);
	return (CM_OK);
}

static void
mem_drop(struct shortener_mem *m, struct mem_link *l)
{
	free(l->code);
	free(l->long_url);
	free(l->owner);
	*l = m->links[--m->nlinks];
}

static int
mem_remove(void *impl, const char *code, const char *owner)
{
	struct shortener_mem *m = impl;
	struct mem_link *l;
	int rv = CM_NOT_FOUND;

	pthread_mutex_lock(&m->mu);
	if (m->store_down) {
		pthread_mutex_unlock(&m->mu);
		return (CM_UNAVAILABLE);
	}
	if ((l = mem_find(m, code)) != NULL && l->owner != NULL &&
	    strcmp(l->owner, owner) == 0) {
		mem_drop(m, l);
		rv = CM_OK;
	}
	pthread_mutex_unlock(&m->mu);
	return (rv);
}

static int
mem_add_clicks(void *impl, const struct shortener_clicks *c, size_t n)
{
	struct shortener_mem *m = impl;
	struct mem_link *l;

	pthread_mutex_lock(&m->mu);
	if (m->store_down) {
		pthread_mutex_unlock(&m->mu);
		return (CM_UNAVAILABLE);
	}
	for (size_t i = 0; i < n; i++)
		if ((l = mem_find(m, c[i].code)) != NULL)
			l->clicks += c[i].count;
	pthread_mutex_unlock(&m->mu);
	return (CM_OK);
}

static int
mem_purge(void *impl, int64_t before, size_t max, size_t *n)
{
	struct shortener_mem *m = impl;
	size_t k = 0;

	pthread_mutex_lock(&m->mu);
	if (m->store_down) {
		pthread_mutex_unlock(&m->mu);
		return (CM_UNAVAILABLE);
	}
	for (size_t i = 0; i < m->nlinks && k < max;) {
		struct mem_link *l = &m->links[i];

		if (l->expires_at != 0 && l->expires_at < before) {
			mem_drop(m, l);
			k++;
		} else {
			i++;
		}
	}
	*n = k;
	pthread_mutex_unlock(&m->mu);
	return (CM_OK);
}

static bool
mem_ping(void *impl)
{
	struct shortener_mem *m = impl;
	bool up;

	pthread_mutex_lock(&m->mu);
	up = !m->store_down;
	pthread_mutex_unlock(&m->mu);
	return (up);
}

static const struct shortener_store_ops mem_store_ops = {
    .name = "mem",
    .lease_ids = mem_lease_ids,
    .insert = mem_insert,
    .get = mem_get,
    .list = mem_list,
    .remove = mem_remove,
    .add_clicks = mem_add_clicks,
    .purge = mem_purge,
    .ping = mem_ping,
};

void
shortener_mem_store(struct shortener_mem *m, struct shortener_store *out)
{
	out->ops = &mem_store_ops;
	out->impl = m;
}

/* ---- cache ---- */

static struct mem_cached *
mem_cache_find(struct shortener_mem *m, const char *code)
{
	for (size_t i = 0; i < m->ncached; i++)
		if (strcmp(m->cached[i].code, code) == 0)
			return (&m->cached[i]);
	return (NULL);
}

/*
 * Read-through: a cached link or tombstone answers; a miss calls load
 * (outside the lock: it takes it for the store) and caches a link it
 * finds, unless a tombstone appeared meanwhile.  With the cache down, load
 * answers alone.
 */
static int
mem_cache_resolve(void *impl, const char *code, shortener_load_fn load,
                  void *arg, cm_arena *a, struct shortener_cached *out)
{
	struct shortener_mem *m = impl;
	struct mem_cached *c;
	int rv, ttl_s = 0;
	bool down;

	pthread_mutex_lock(&m->mu);
	if (!(down = m->cache_down)) {
		m->stats.cache_gets++;
		if ((c = mem_cache_find(m, code)) != NULL) {
			rv = CM_NOT_FOUND;
			if (c->long_url != NULL) {
				out->long_url = cm_arena_strdup(a, c->long_url);
				out->expires_at = c->expires_at;
				rv = CM_OK;
			}
			pthread_mutex_unlock(&m->mu);
			return (rv);
		}
	}
	pthread_mutex_unlock(&m->mu);
	if ((rv = load(arg, code, a, out, &ttl_s)) != CM_OK || down)
		return (rv);
	pthread_mutex_lock(&m->mu);
	if (!m->cache_down && mem_cache_find(m, code) == NULL) {
		m->stats.cache_fills++;
		m->cached = grow(m->cached, &m->capcached, m->ncached,
		                 sizeof(*m->cached));
		c = &m->cached[m->ncached++];
		c->code = xstrdup(code);
		c->long_url = xstrdup(out->long_url);
		c->expires_at = out->expires_at;
	}
	pthread_mutex_unlock(&m->mu);
	return (CM_OK);
}

static int
mem_cache_invalidate(void *impl, const char *code, int tomb_ttl_s)
{
	struct shortener_mem *m = impl;
	struct mem_cached *c;

	pthread_mutex_lock(&m->mu);
	if (m->cache_down) {
		pthread_mutex_unlock(&m->mu);
		return (CM_UNAVAILABLE);
	}
	m->stats.invalidations++;
	if ((c = mem_cache_find(m, code)) != NULL) {
		free(c->code);
		free(c->long_url);
		*c = m->cached[--m->ncached];
	}
	if (tomb_ttl_s > 0) {
		m->cached = grow(m->cached, &m->capcached, m->ncached,
		                 sizeof(*m->cached));
		c = &m->cached[m->ncached++];
		c->code = xstrdup(code);
		c->long_url = NULL;
		c->expires_at = 0;
	}
	pthread_mutex_unlock(&m->mu);
	return (CM_OK);
}

static bool
mem_cache_ping(void *impl)
{
	struct shortener_mem *m = impl;
	bool up;

	pthread_mutex_lock(&m->mu);
	up = !m->cache_down;
	pthread_mutex_unlock(&m->mu);
	return (up);
}

static const struct shortener_cache_ops mem_cache_ops = {
    .name = "mem",
    .resolve = mem_cache_resolve,
    .invalidate = mem_cache_invalidate,
    .ping = mem_cache_ping,
};

void
shortener_mem_cache(struct shortener_mem *m, struct shortener_cache *out)
{
	out->ops = &mem_cache_ops;
	out->impl = m;
}
