/*
 * The in-process cache.
 *
 * Keys hash (FNV-1a, then a 64-bit finaliser for good high bits) to one of
 * nshards shards; the top bits pick the shard, the low bits the bucket.
 * Each shard is independent and behind its own mutex: a chained hash table
 * that doubles when it holds more entries than buckets, a byte budget of
 * max_bytes / nshards, and a CLOCK ring for eviction.
 *
 * CLOCK (second chance): entries sit on a circular list in insertion order
 * with a "referenced" bit that every hit sets.  To make room, the hand walks
 * the ring: a referenced entry loses its bit and is passed over, an
 * unreferenced (or expired) one is evicted.  New entries go just behind the
 * hand, so they are the last it reaches.  This approximates LRU with no
 * list surgery on the read path, which matters because reads are by far
 * the most frequent operation and all happen under the shard lock.
 *
 * Expiry is lazy: an expired entry is dropped when a read finds it or the
 * hand passes it.  Times are monotonic milliseconds.
 *
 * Epochs: each shard counts the deletes and clears it has seen.  A reader
 * that missed reads the epoch before loading from the source and stores the
 * result with cm_l1_set_if; if a delete hit the shard in between, the store
 * is skipped.  Per-shard rather than per-key, so a delete may needlessly
 * skip an unrelated fill in the same shard: harmless, it is only a miss.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "l1cache.h"
#include "util.h"

struct l1_entry {
	struct l1_entry *hnext;       /* hash chain */
	struct l1_entry *prev, *next; /* CLOCK ring */
	uint64_t hash;
	int64_t expires_ms; /* monotonic; 0 = never */
	uint32_t klen, vlen;
	bool ref;
	unsigned char data[]; /* key, then value */
};

struct l1_shard {
	pthread_mutex_t mu;
	struct l1_entry **buckets;
	size_t nbuckets;       /* power of two */
	struct l1_entry *hand; /* CLOCK hand; NULL when empty */
	size_t bytes, budget;
	uint64_t epoch;
	uint64_t hits, misses, sets, evictions, expired, entries;
};

struct cm_l1 {
	struct l1_shard *shards;
	unsigned nshards;
	unsigned shard_shift; /* 64 - log2(nshards) */
};

#define L1_MIN_BUCKETS 64

static size_t
l1_entry_size(size_t klen, size_t vlen)
{
	return (sizeof(struct l1_entry) + klen + vlen);
}

static uint64_t
l1_hash(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	/* murmur3's fmix64: FNV's high bits alone are weak. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return (h);
}

cm_l1 *
cm_l1_new(size_t max_bytes, unsigned nshards)
{
	cm_l1 *c;
	unsigned i, shift = 64;

	if (nshards == 0)
		nshards = 16;
	if ((nshards & (nshards - 1)) != 0 || nshards > 65536)
		return (NULL);
	for (unsigned n = nshards; n > 1; n >>= 1)
		shift--;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return (NULL);
	if ((c->shards = calloc(nshards, sizeof(*c->shards))) == NULL) {
		free(c);
		return (NULL);
	}
	c->nshards = nshards;
	c->shard_shift = shift;
	for (i = 0; i < nshards; i++) {
		struct l1_shard *s = &c->shards[i];

		pthread_mutex_init(&s->mu, NULL);
		s->budget = max_bytes / nshards;
		s->nbuckets = L1_MIN_BUCKETS;
		if ((s->buckets = calloc(s->nbuckets, sizeof(*s->buckets))) ==
		    NULL) {
			c->nshards = i + 1;
			cm_l1_free(c);
			return (NULL);
		}
	}
	return (c);
}

static struct l1_shard *
l1_shard(cm_l1 *c, uint64_t h)
{
	/* A shift by 64 is undefined: one shard means shard 0. */
	if (c->nshards == 1)
		return (&c->shards[0]);
	return (&c->shards[h >> c->shard_shift]);
}

static struct l1_entry **
l1_find(struct l1_shard *s, uint64_t h, const void *key, size_t klen)
{
	struct l1_entry **pp = &s->buckets[h & (s->nbuckets - 1)];

	for (; *pp != NULL; pp = &(*pp)->hnext)
		if ((*pp)->hash == h && (*pp)->klen == klen &&
		    memcmp((*pp)->data, key, klen) == 0)
			return (pp);
	return (pp);
}

/* Unlinks e (found at *pp in its chain) from the table and ring; frees it. */
static void
l1_remove(struct l1_shard *s, struct l1_entry **pp)
{
	struct l1_entry *e = *pp;

	*pp = e->hnext;
	if (e->next == e) {
		s->hand = NULL;
	} else {
		e->prev->next = e->next;
		e->next->prev = e->prev;
		if (s->hand == e)
			s->hand = e->next;
	}
	s->bytes -= l1_entry_size(e->klen, e->vlen);
	s->entries--;
	free(e);
}

/* Removes e wherever it is (finds its chain link first). */
static void
l1_remove_entry(struct l1_shard *s, struct l1_entry *e)
{
	struct l1_entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	l1_remove(s, pp);
}

static bool
l1_expired(const struct l1_entry *e, int64_t now)
{
	return (e->expires_ms != 0 && e->expires_ms <= now);
}

/*
 * Runs the CLOCK hand until need more bytes fit in the budget.  Two turns
 * of the ring are always enough: the first clears every referenced bit.
 */
static void
l1_make_room(struct l1_shard *s, size_t need, int64_t now)
{
	size_t steps = 2 * s->entries + 1;

	while (s->hand != NULL && s->bytes + need > s->budget && steps-- > 0) {
		struct l1_entry *e = s->hand;

		if (l1_expired(e, now)) {
			s->expired++;
			l1_remove_entry(s, e);
		} else if (e->ref) {
			e->ref = false;
			s->hand = e->next;
		} else {
			s->evictions++;
			l1_remove_entry(s, e);
		}
	}
}

/* Doubles the bucket array; on allocation failure the table stays as is. */
static void
l1_grow(struct l1_shard *s)
{
	struct l1_entry **nb;
	size_t n = s->nbuckets * 2;

	if ((nb = calloc(n, sizeof(*nb))) == NULL)
		return;
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct l1_entry *e = s->buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->hnext;
			e->hnext = nb[e->hash & (n - 1)];
			nb[e->hash & (n - 1)] = e;
		}
	}
	free(s->buckets);
	s->buckets = nb;
	s->nbuckets = n;
}

long
cm_l1_get(cm_l1 *c, const void *key, size_t klen, void *buf, size_t buflen)
{
	uint64_t h = l1_hash(key, klen);
	struct l1_shard *s = l1_shard(c, h);
	struct l1_entry **pp, *e;
	long rv = -1;

	pthread_mutex_lock(&s->mu);
	pp = l1_find(s, h, key, klen);
	if ((e = *pp) != NULL && l1_expired(e, cm_mono_ms())) {
		s->expired++;
		l1_remove(s, pp);
		e = NULL;
	}
	if (e != NULL) {
		e->ref = true;
		if (buflen > 0 && e->vlen > 0)
			memcpy(buf, e->data + e->klen,
			       e->vlen < buflen ? e->vlen : buflen);
		rv = (long) e->vlen;
		s->hits++;
	} else {
		s->misses++;
	}
	pthread_mutex_unlock(&s->mu);
	return (rv);
}

/* Stores under the shard lock; with check, only if the epoch is unchanged. */
static void
l1_set(cm_l1 *c, const void *key, size_t klen, const void *val, size_t vlen,
       int64_t ttl_ms, bool check, uint64_t epoch)
{
	uint64_t h = l1_hash(key, klen);
	struct l1_shard *s = l1_shard(c, h);
	struct l1_entry **pp, *e;
	size_t size = l1_entry_size(klen, vlen);
	int64_t now;

	if (klen > UINT32_MAX || vlen > UINT32_MAX || size > s->budget)
		return;
	if ((e = malloc(size)) == NULL)
		return;
	now = cm_mono_ms();
	e->hash = h;
	e->klen = (uint32_t) klen;
	e->vlen = (uint32_t) vlen;
	e->ref = false;
	e->expires_ms = ttl_ms > 0 ? now + ttl_ms : 0;
	if (klen > 0)
		memcpy(e->data, key, klen);
	if (vlen > 0)
		memcpy(e->data + klen, val, vlen);

	pthread_mutex_lock(&s->mu);
	if (check && s->epoch != epoch) {
		pthread_mutex_unlock(&s->mu);
		free(e);
		return;
	}
	if (*(pp = l1_find(s, h, key, klen)) != NULL)
		l1_remove(s, pp);
	l1_make_room(s, size, now);
	if (s->bytes + size > s->budget) {
		pthread_mutex_unlock(&s->mu);
		free(e);
		return;
	}
	if (s->entries >= s->nbuckets)
		l1_grow(s);
	pp = &s->buckets[h & (s->nbuckets - 1)];
	e->hnext = *pp;
	*pp = e;
	if (s->hand == NULL) {
		e->prev = e->next = e;
		s->hand = e;
	} else {
		/* Just behind the hand: the last entry it will reach. */
		e->next = s->hand;
		e->prev = s->hand->prev;
		e->prev->next = e;
		s->hand->prev = e;
	}
	s->bytes += size;
	s->entries++;
	s->sets++;
	pthread_mutex_unlock(&s->mu);
}

void
cm_l1_set(cm_l1 *c, const void *key, size_t klen, const void *val, size_t vlen,
          int64_t ttl_ms)
{
	l1_set(c, key, klen, val, vlen, ttl_ms, false, 0);
}

void
cm_l1_set_if(cm_l1 *c, const void *key, size_t klen, const void *val,
             size_t vlen, int64_t ttl_ms, uint64_t epoch)
{
	l1_set(c, key, klen, val, vlen, ttl_ms, true, epoch);
}

uint64_t
cm_l1_epoch(cm_l1 *c, const void *key, size_t klen)
{
	struct l1_shard *s = l1_shard(c, l1_hash(key, klen));
	uint64_t epoch;

	pthread_mutex_lock(&s->mu);
	epoch = s->epoch;
	pthread_mutex_unlock(&s->mu);
	return (epoch);
}

void
cm_l1_del(cm_l1 *c, const void *key, size_t klen)
{
	uint64_t h = l1_hash(key, klen);
	struct l1_shard *s = l1_shard(c, h);
	struct l1_entry **pp;

	pthread_mutex_lock(&s->mu);
	s->epoch++;
	if (*(pp = l1_find(s, h, key, klen)) != NULL)
		l1_remove(s, pp);
	pthread_mutex_unlock(&s->mu);
}

/* Frees every entry of a locked shard. */
static void
l1_shard_clear(struct l1_shard *s)
{
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct l1_entry *e = s->buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->hnext;
			free(e);
		}
		s->buckets[i] = NULL;
	}
	s->hand = NULL;
	s->bytes = 0;
	s->entries = 0;
}

void
cm_l1_clear(cm_l1 *c)
{
	for (unsigned i = 0; i < c->nshards; i++) {
		struct l1_shard *s = &c->shards[i];

		pthread_mutex_lock(&s->mu);
		s->epoch++;
		l1_shard_clear(s);
		pthread_mutex_unlock(&s->mu);
	}
}

void
cm_l1_get_stats(cm_l1 *c, cm_l1_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < c->nshards; i++) {
		struct l1_shard *s = &c->shards[i];

		pthread_mutex_lock(&s->mu);
		out->hits += s->hits;
		out->misses += s->misses;
		out->sets += s->sets;
		out->evictions += s->evictions;
		out->expired += s->expired;
		out->entries += s->entries;
		out->bytes += s->bytes;
		pthread_mutex_unlock(&s->mu);
	}
}

void
cm_l1_free(cm_l1 *c)
{
	if (c == NULL)
		return;
	for (unsigned i = 0; i < c->nshards; i++) {
		struct l1_shard *s = &c->shards[i];

		if (s->buckets != NULL) {
			l1_shard_clear(s);
			free(s->buckets);
		}
		pthread_mutex_destroy(&s->mu);
	}
	free(c->shards);
	free(c);
}
