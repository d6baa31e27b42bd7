/*
 * Click counters: one table per event-loop thread, so counting a click on
 * the redirect path takes no lock and touches no shared cache line.  The
 * table is open addressing with linear probing over fixed-size slots (a
 * code is at most 64 bytes), so a click for a code already present costs
 * a hash and a compare, and no allocation.  It grows by doubling up to
 * max codes; past that, clicks for new codes are refused and the caller
 * counts them as dropped, which bounds memory when the shortener is down
 * for long and nothing can be flushed.  Draining is a walk plus a clear.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"

#include "gwlib.h"

static uint64_t
hash_code(const char *s, size_t len)
{
	uint64_t h = gw_fnv1a(GW_FNV_INIT, s, len);

	return (h ^ (h >> 29));
}

static void
clicks_alloc(struct gw_clicks *c, size_t cap)
{
	if ((c->slots = calloc(cap, sizeof(*c->slots))) == NULL)
		fatalx("gateway: out of memory for click counters");
	c->cap = cap;
}

void
gw_clicks_init(struct gw_clicks *c, size_t max_codes)
{
	memset(c, 0, sizeof(*c));
	c->max = max_codes ? max_codes : 1;
	clicks_alloc(c, 64);
}

void
gw_clicks_fini(struct gw_clicks *c)
{
	free(c->slots);
	memset(c, 0, sizeof(*c));
}

static struct gw_click_slot *
clicks_find(struct gw_click_slot *slots, size_t cap, const char *code,
            size_t len)
{
	size_t i = (size_t) hash_code(code, len) & (cap - 1);

	for (;;) {
		struct gw_click_slot *s = &slots[i];

		if (s->count == 0 ||
		    (s->len == len && memcmp(s->code, code, len) == 0))
			return (s);
		i = (i + 1) & (cap - 1);
	}
}

static void
clicks_grow(struct gw_clicks *c)
{
	struct gw_click_slot *old = c->slots;
	size_t oldcap = c->cap, i;

	clicks_alloc(c, oldcap * 2);
	for (i = 0; i < oldcap; i++) {
		if (old[i].count != 0)
			*clicks_find(c->slots, c->cap, old[i].code,
			             old[i].len) = old[i];
	}
	free(old);
}

int
gw_clicks_add(struct gw_clicks *c, const char *code, size_t len, int64_t n)
{
	struct gw_click_slot *s;

	if (len == 0 || len > sizeof(s->code) || n <= 0)
		return (0);
	s = clicks_find(c->slots, c->cap, code, len);
	if (s->count != 0) {
		s->count += n;
		return (0);
	}
	if (c->n >= c->max)
		return (-1);
	if ((c->n + 1) * 10 > c->cap * 7) {
		clicks_grow(c);
		s = clicks_find(c->slots, c->cap, code, len);
	}
	s->count = n;
	s->len = (uint8_t) len;
	memcpy(s->code, code, len);
	c->n++;
	return (0);
}

bool
gw_clicks_next(const struct gw_clicks *c, size_t *it, const char **code,
               size_t *len, int64_t *n)
{
	while (*it < c->cap) {
		const struct gw_click_slot *s = &c->slots[(*it)++];

		if (s->count != 0) {
			*code = s->code;
			*len = s->len;
			*n = s->count;
			return (true);
		}
	}
	return (false);
}

void
gw_clicks_clear(struct gw_clicks *c)
{
	/* Shrink back after a burst of distinct codes. */
	if (c->cap > 4096) {
		free(c->slots);
		clicks_alloc(c, 4096);
	} else {
		memset(c->slots, 0, c->cap * sizeof(*c->slots));
	}
	c->n = 0;
}
