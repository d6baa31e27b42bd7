/*
 * The in-process cache.
 *
 * Keys hash (FNV-1a, then a 64-bit finaliser for good high bits) to one of
 * nshards shards; the top bits pick the shard, the low bits the bucket.
 * Each shard is independent and behind its own mutex: a chained hash table
 * that doubles when it holds more entries than buckets, a byte budget of
 * max_bytes / nshards, and the eviction policy's lists.
 *
 * Policy: W-TinyLFU (Einziger, Friedman, Manes: "TinyLFU: A Highly
 * Efficient Cache Admission Policy", and Caffeine's window variant).
 *
 *   - A frequency sketch per shard estimates how often each key was asked
 *     for recently: a count-min sketch of four rows of 4-bit-range counters
 *     (bytes saturating at 15) in front of which sits a "doorkeeper" bloom
 *     filter, so a key seen once costs one bit, not four counters.  After
 *     10 x width increments every counter is halved and the doorkeeper
 *     cleared (aging), so the sketch follows a changing popularity.
 *   - New entries enter a small LRU window (1% of the budget): recency
 *     gets a chance, bursts are not turned away.
 *   - The rest is the main region, a segmented LRU: probation (20%) and
 *     protected (80%).  A hit in probation promotes to protected; protected
 *     overflow demotes its LRU end back to probation.
 *   - When the window overflows, its LRU entry (the candidate) asks to
 *     enter main.  If main has room it enters probation.  Otherwise it
 *     competes with main's victim (probation's LRU end): the candidate is
 *     admitted, evicting the victim, only if the sketch says it is the
 *     more frequent; else the candidate is dropped.  A scan (keys asked
 *     for once) thus flows through the window and out again without
 *     flushing the frequently used keys from main: scan resistance.
 *
 * CM_L1_LRU is the same machinery with a window as large as the budget and
 * no main region: plain LRU, kept for the benchmark comparison.
 *
 * Expiry is lazy: an expired entry is dropped when a read finds it or it
 * turns up at an LRU end during eviction.  Times are monotonic ms.
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

enum { Q_WINDOW, Q_PROBATION, Q_PROTECTED, Q_N };

struct l1_entry {
	struct l1_entry *hnext;       /* hash chain */
	struct l1_entry *prev, *next; /* LRU list of its queue */
	uint64_t hash;
	int64_t expires_ms; /* monotonic; 0 = never */
	uint32_t klen, vlen;
	uint8_t q; /* Q_* */
	           /* key, then value, follow the struct: see ENTRY_DATA.  Not a
	            * flexible array member, so that a list's sentinel can be a plain
	            * struct l1_entry inside struct l1_list (ISO C forbids embedding a
	            * struct with a flexible array member). */
};

#define ENTRY_DATA(e) ((unsigned char *) ((e) + 1))

struct l1_list {
	struct l1_entry head; /* sentinel: head.next is MRU, head.prev LRU */
	size_t bytes;
};

struct l1_sketch {
	uint8_t *rows[4];
	uint64_t *door; /* doorkeeper bits */
	size_t width;   /* power of two */
	unsigned shift; /* 64 - log2(width) */
	size_t doorbits;
	size_t samples, sample_max;
};

struct l1_shard {
	pthread_mutex_t mu;
	struct l1_entry **buckets;
	size_t nbuckets; /* power of two */
	struct l1_list q[Q_N];
	size_t bytes, budget, window_budget, protected_budget;
	struct l1_sketch sk;
	uint64_t epoch;
	uint64_t hits, misses, sets, evictions, expired, entries, rejected;
};

struct cm_l1 {
	struct l1_shard *shards;
	unsigned nshards;
	unsigned shard_shift; /* 64 - log2(nshards) */
	enum cm_l1_policy policy;
};

#define L1_MIN_BUCKETS 64
/* Assumed mean entry size, to size the sketch for a byte budget. */
#define L1_SKETCH_BYTES_PER_ENTRY 128
#define L1_SKETCH_MIN             64
#define L1_SKETCH_MAX             (1u << 20)

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

/* ---- the frequency sketch ---- */

static const uint64_t sketch_seeds[4] = {
    0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL, 0x94d049bb133111ebULL,
    0xd6e8feb86659fd93ULL};

static int
sketch_init(struct l1_sketch *sk, size_t entries)
{
	size_t w = L1_SKETCH_MIN;

	while (w < entries && w < L1_SKETCH_MAX)
		w <<= 1;
	sk->width = w;
	sk->shift = 64;
	for (size_t n = w; n > 1; n >>= 1)
		sk->shift--;
	for (int i = 0; i < 4; i++)
		if ((sk->rows[i] = calloc(w, 1)) == NULL)
			return (-1);
	sk->doorbits = w * 8;
	if ((sk->door = calloc(sk->doorbits / 64, sizeof(uint64_t))) == NULL)
		return (-1);
	sk->sample_max = 10 * w;
	return (0);
}

static void
sketch_fini(struct l1_sketch *sk)
{
	for (int i = 0; i < 4; i++)
		free(sk->rows[i]);
	free(sk->door);
}

static size_t
sketch_idx(const struct l1_sketch *sk, uint64_t h, int row)
{
	return ((size_t) ((h * sketch_seeds[row]) >> sk->shift));
}

/* The doorkeeper's two bit positions for h. */
static bool
door_test_set(struct l1_sketch *sk, uint64_t h, bool set)
{
	size_t a = (size_t) (h & (sk->doorbits - 1));
	size_t b = (size_t) ((h >> 32) & (sk->doorbits - 1));
	bool in = (sk->door[a / 64] >> (a % 64) & 1) &&
	          (sk->door[b / 64] >> (b % 64) & 1);

	if (set) {
		sk->door[a / 64] |= 1ULL << (a % 64);
		sk->door[b / 64] |= 1ULL << (b % 64);
	}
	return (in);
}

static void
sketch_add(struct l1_sketch *sk, uint64_t h)
{
	if (sk->rows[0] == NULL)
		return;
	if (door_test_set(sk, h, true)) {
		for (int i = 0; i < 4; i++) {
			uint8_t *c = &sk->rows[i][sketch_idx(sk, h, i)];

			if (*c < 15)
				(*c)++;
		}
	}
	if (++sk->samples >= sk->sample_max) {
		/* Aging: halve every counter, forget the doorkeeper. */
		for (int i = 0; i < 4; i++)
			for (size_t j = 0; j < sk->width; j++)
				sk->rows[i][j] >>= 1;
		memset(sk->door, 0, sk->doorbits / 8);
		sk->samples /= 2;
	}
}

static unsigned
sketch_estimate(struct l1_sketch *sk, uint64_t h)
{
	unsigned m = 15;

	if (sk->rows[0] == NULL)
		return (0);
	for (int i = 0; i < 4; i++) {
		unsigned c = sk->rows[i][sketch_idx(sk, h, i)];

		if (c < m)
			m = c;
	}
	return (m + (door_test_set(sk, h, false) ? 1 : 0));
}

/* ---- lists ---- */

static void
list_init(struct l1_list *l)
{
	l->head.next = l->head.prev = &l->head;
	l->bytes = 0;
}

static struct l1_entry *
list_lru(struct l1_list *l)
{
	return (l->head.prev == &l->head ? NULL : l->head.prev);
}

static void
list_unlink(struct l1_shard *s, struct l1_entry *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	s->q[e->q].bytes -= l1_entry_size(e->klen, e->vlen);
}

static void
list_push_mru(struct l1_shard *s, struct l1_entry *e, int q)
{
	struct l1_list *l = &s->q[q];

	e->q = (uint8_t) q;
	e->next = l->head.next;
	e->prev = &l->head;
	l->head.next->prev = e;
	l->head.next = e;
	l->bytes += l1_entry_size(e->klen, e->vlen);
}

/* ---- the table ---- */

cm_l1 *
cm_l1_new(size_t max_bytes, unsigned nshards)
{
	return (cm_l1_new_policy(max_bytes, nshards, CM_L1_TINYLFU));
}

cm_l1 *
cm_l1_new_policy(size_t max_bytes, unsigned nshards, enum cm_l1_policy policy)
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
	c->policy = policy;
	for (i = 0; i < nshards; i++) {
		struct l1_shard *s = &c->shards[i];
		size_t main_budget;

		pthread_mutex_init(&s->mu, NULL);
		for (int q = 0; q < Q_N; q++)
			list_init(&s->q[q]);
		s->budget = max_bytes / nshards;
		if (policy == CM_L1_LRU) {
			s->window_budget = s->budget;
		} else {
			s->window_budget = s->budget / 100;
			if (s->window_budget < 1024)
				s->window_budget =
				    s->budget / 2 < 1024 ? s->budget / 2 : 1024;
		}
		main_budget = s->budget - s->window_budget;
		s->protected_budget = main_budget / 5 * 4;
		s->nbuckets = L1_MIN_BUCKETS;
		if ((s->buckets = calloc(s->nbuckets, sizeof(*s->buckets))) ==
		        NULL ||
		    (policy == CM_L1_TINYLFU &&
		     sketch_init(&s->sk,
		                 s->budget / L1_SKETCH_BYTES_PER_ENTRY) != 0)) {
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
		    memcmp(ENTRY_DATA(*pp), key, klen) == 0)
			return (pp);
	return (pp);
}

/* Unlinks e (found at *pp in its chain) from the table and its list. */
static void
l1_remove(struct l1_shard *s, struct l1_entry **pp)
{
	struct l1_entry *e = *pp;

	*pp = e->hnext;
	list_unlink(s, e);
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

static size_t
main_bytes(const struct l1_shard *s)
{
	return (s->q[Q_PROBATION].bytes + s->q[Q_PROTECTED].bytes);
}

/* main's victim: probation's LRU end, or protected's if probation is empty.
 */
static struct l1_entry *
main_victim(struct l1_shard *s)
{
	struct l1_entry *v = list_lru(&s->q[Q_PROBATION]);

	return (v != NULL ? v : list_lru(&s->q[Q_PROTECTED]));
}

/*
 * The window overflowed: its LRU entries ask to enter main, one by one,
 * and either enter (evicting less frequent victims) or are dropped.
 */
static void
l1_evict_window(struct l1_shard *s, int64_t now)
{
	struct l1_entry *cand, *victim;
	size_t size;

	while (s->q[Q_WINDOW].bytes > s->window_budget &&
	       (cand = list_lru(&s->q[Q_WINDOW])) != NULL) {
		size = l1_entry_size(cand->klen, cand->vlen);
		if (l1_expired(cand, now)) {
			s->expired++;
			l1_remove_entry(s, cand);
			continue;
		}
		for (;;) {
			if (main_bytes(s) + size <=
			    s->budget - s->window_budget) {
				list_unlink(s, cand);
				list_push_mru(s, cand, Q_PROBATION);
				break;
			}
			victim = main_victim(s);
			if (victim != NULL && l1_expired(victim, now)) {
				s->expired++;
				l1_remove_entry(s, victim);
				continue;
			}
			if (victim == NULL ||
			    sketch_estimate(&s->sk, cand->hash) <=
			        sketch_estimate(&s->sk, victim->hash)) {
				if (victim != NULL)
					s->rejected++;
				s->evictions++;
				l1_remove_entry(s, cand);
				break;
			}
			s->evictions++;
			l1_remove_entry(s, victim);
		}
	}
}

/* A hit: recency within its queue, promotion out of probation. */
static void
l1_touch(struct l1_shard *s, struct l1_entry *e)
{
	struct l1_entry *d;

	list_unlink(s, e);
	if (e->q == Q_PROBATION) {
		list_push_mru(s, e, Q_PROTECTED);
		while (s->q[Q_PROTECTED].bytes > s->protected_budget &&
		       (d = list_lru(&s->q[Q_PROTECTED])) != NULL && d != e) {
			list_unlink(s, d);
			list_push_mru(s, d, Q_PROBATION);
		}
	} else {
		list_push_mru(s, e, e->q);
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
	sketch_add(&s->sk, h);
	pp = l1_find(s, h, key, klen);
	if ((e = *pp) != NULL && l1_expired(e, cm_mono_ms())) {
		s->expired++;
		l1_remove(s, pp);
		e = NULL;
	}
	if (e != NULL) {
		l1_touch(s, e);
		if (buflen > 0 && e->vlen > 0)
			memcpy(buf, ENTRY_DATA(e) + e->klen,
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
	e->expires_ms = ttl_ms > 0 ? now + ttl_ms : 0;
	if (klen > 0)
		memcpy(ENTRY_DATA(e), key, klen);
	if (vlen > 0)
		memcpy(ENTRY_DATA(e) + klen, val, vlen);

	pthread_mutex_lock(&s->mu);
	if (check && s->epoch != epoch) {
		pthread_mutex_unlock(&s->mu);
		free(e);
		return;
	}
	if (*(pp = l1_find(s, h, key, klen)) != NULL) {
		/* A replacement keeps the old entry's place in the policy. */
		int q = (*pp)->q;

		l1_remove(s, pp);
		e->q = (uint8_t) q;
	} else {
		e->q = Q_WINDOW;
		if (!check)
			sketch_add(&s->sk, h); /* a write is a use too */
	}
	if (s->entries >= s->nbuckets)
		l1_grow(s);
	pp = &s->buckets[h & (s->nbuckets - 1)];
	e->hnext = *pp;
	*pp = e;
	list_push_mru(s, e, e->q);
	s->bytes += size;
	s->entries++;
	s->sets++;
	if (e->q != Q_WINDOW) {
		/* Main grew by a replacement: make room there first. */
		struct l1_entry *v;

		while (main_bytes(s) > s->budget - s->window_budget &&
		       (v = main_victim(s)) != NULL && v != e) {
			s->evictions++;
			l1_remove_entry(s, v);
		}
	}
	l1_evict_window(s, now);
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
	for (int q = 0; q < Q_N; q++)
		list_init(&s->q[q]);
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
		out->rejected += s->rejected;
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
		sketch_fini(&s->sk);
		pthread_mutex_destroy(&s->mu);
	}
	free(c->shards);
	free(c);
}
