/*
 * The multi-level cache engine (see cache.h for the contract).
 *
 * Names.  With "ver" the namespace's version in decimal and "vk" the
 * string ver ":" key:
 *
 *   L1 key          ns "|" vk
 *   L2 value        <prefix>:{ns}:vk            (ns is the hash tag: a
 *   tag set         <prefix>:{ns}:tag:<tag>      namespace lives on one
 *   lease           <prefix>:{ns}:lease:vk       Redis Cluster node)
 *   version         <prefix>:{ns}:ver
 *   channel         <prefix>:inv
 *
 * Tag sets hold vk members, so invalidating a tag needs no other lookup.
 *
 * Values, in L1 and L2 alike, start with a 13-byte header: a kind ('V' a
 * value, 'M' a value with metadata, 'N' a cached "not found", 'T' a
 * tombstone left by a delete), the logical ("soft") expiry in wall-clock
 * ms, and the last load's duration in ms (XFetch's delta).  An 'M' value
 * goes on with one byte, the metadata's length m (1-255), and m bytes of
 * metadata before the payload; 'V' values (all of them before metadata
 * existed) have none.  L2's own TTL is the soft TTL plus stale_ms: the
 * stale tail is what stale-if-error and lease losers serve, and only
 * them: every read checks the soft expiry (to the ms, against the
 * engine's clock) before it answers with a value, whichever level it came
 * from.  The TTLs the engine picks (defaults, loaders') are shortened by a
 * random jitter so keys written together do not expire together; a TTL a
 * Set names is kept.  L1 entries live at most until the soft expiry.
 *
 * Invalidation messages on the channel: "k" + L1 key (drop it) and
 * "v" ns "|" ver (the namespace moved to version ver).  On (re)subscription
 * the L1 is cleared and known versions are forgotten, because messages
 * published meanwhile are lost.
 *
 * Redis connections are per thread (a pthread key per engine).  Loader
 * fills go through a Lua script that refuses to overwrite a tombstone.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "invalidate.h"
#include "l1cache.h"
#include "log.h"
#include "redis.h"
#include "status.h"
#include "util.h"

#define HDR_LEN           13
#define META_MAX          CM_CACHE_META_MAX
#define MAX_NS            64
#define MAX_VERSIONS      256
#define MAX_TRACKED       16
#define NFLIGHT           64
#define LEASE_POLL_MS     10
#define TAGSET_MIN_TTL_MS (24LL * 3600 * 1000)

static const char fill_lua[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v and string.sub(v, 1, 1) == 'T' then return 0 end "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1";
static const char release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('DEL', KEYS[1]) end return 0";

struct flight {
	struct flight *next;
	char *key;
	size_t klen;
	pthread_cond_t cv;
	bool done;
	int refs;
	int rv, level;
	void *data, *meta;
	size_t len, mlen;
};

struct tls_conn {
	struct tls_conn *prev, *next;
	cm_cache *c;
	cm_redis *r;
	uint64_t rnd;
};

struct version {
	char ns[MAX_NS + 1];
	uint64_t ver;
};

struct cm_cache {
	cm_cache_config cfg;
	char *prefix, *channel, *redis_url;
	cm_l1 *l1;
	cm_invalidator *inv;
	pthread_key_t key;
	pthread_mutex_t conns_mu;
	struct tls_conn conns; /* sentinel */

	pthread_mutex_t ver_mu;
	struct version vers[MAX_VERSIONS];
	size_t nvers;
	/* Namespaces whose versions are fetched after every resubscription
	 * (cm_cache_track), under ver_mu. */
	char tracked[MAX_TRACKED][MAX_NS + 1];
	size_t ntracked;

	pthread_mutex_t fl_mu;
	struct flight *flights[NFLIGHT];

	_Atomic uint64_t l1_hits, l1_misses, l2_hits, l2_misses, negative_hits;
	_Atomic uint64_t loads, load_errors, stale_served, lease_waits;
	_Atomic uint64_t flight_joins, early_refreshes, invalidations;
	_Atomic uint64_t l1_clears, get_us_total, gets;
};

#define STAT(c, f) atomic_fetch_add_explicit(&(c)->f, 1, memory_order_relaxed)

/* The wall clock expiries are kept in (a test's, or the real one). */
static int64_t
clock_ms(const cm_cache *c)
{
	return (c->cfg.now_ms != NULL ? c->cfg.now_ms(c->cfg.now_arg)
	                              : cm_now_ms());
}

const char *
cm_cache_level_name(int level)
{
	switch (level) {
	case CM_CACHE_L1:
		return ("l1");
	case CM_CACHE_L2:
		return ("l2");
	case CM_CACHE_LOADER:
		return ("loader");
	case CM_CACHE_STALE:
		return ("stale");
	default:
		return ("none");
	}
}

bool
cm_cache_ns_ok(const char *ns)
{
	size_t n = ns != NULL ? strlen(ns) : 0;

	if (n == 0 || n > MAX_NS)
		return (false);
	for (size_t i = 0; i < n; i++) {
		char ch = ns[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
		      ch == '.'))
			return (false);
	}
	return (true);
}

/* ---- per-thread Redis ---- */

static void
tls_unlink(struct tls_conn *t)
{
	t->prev->next = t->next;
	t->next->prev = t->prev;
}

static void
tls_destroy(void *arg)
{
	struct tls_conn *t = arg;

	pthread_mutex_lock(&t->c->conns_mu);
	tls_unlink(t);
	pthread_mutex_unlock(&t->c->conns_mu);
	cm_redis_free(t->r);
	free(t);
}

static struct tls_conn *
tls_get(cm_cache *c)
{
	struct tls_conn *t = pthread_getspecific(c->key);

	if (t != NULL)
		return (t);
	if ((t = calloc(1, sizeof(*t))) == NULL)
		fatal("event=cache_conn");
	t->c = c;
	t->r = cm_redis_new(c->redis_url, c->cfg.redis_timeout_ms);
	if (cm_random(&t->rnd, sizeof(t->rnd)) != 0 || t->rnd == 0)
		t->rnd = (uint64_t) cm_mono_us() | 1;
	pthread_mutex_lock(&c->conns_mu);
	t->next = c->conns.next;
	t->prev = &c->conns;
	c->conns.next->prev = t;
	c->conns.next = t;
	pthread_mutex_unlock(&c->conns_mu);
	(void) pthread_setspecific(c->key, t);
	return (t);
}

static cm_redis *
rconn(cm_cache *c)
{
	return (tls_get(c)->r);
}

/* Uniform in [0, 1), per-thread xorshift. */
static double
rnd01(cm_cache *c)
{
	struct tls_conn *t = tls_get(c);

	t->rnd ^= t->rnd << 13;
	t->rnd ^= t->rnd >> 7;
	t->rnd ^= t->rnd << 17;
	return ((double) (t->rnd >> 11) / 9007199254740992.0);
}

/* ---- versions ---- */

static struct version *
ver_find(cm_cache *c, const char *ns)
{
	for (size_t i = 0; i < c->nvers; i++)
		if (strcmp(c->vers[i].ns, ns) == 0)
			return (&c->vers[i]);
	return (NULL);
}

/* Records ns at version v unless a newer one is known. */
static void
ver_store(cm_cache *c, const char *ns, uint64_t v)
{
	struct version *e;

	pthread_mutex_lock(&c->ver_mu);
	if ((e = ver_find(c, ns)) == NULL && c->nvers < MAX_VERSIONS) {
		e = &c->vers[c->nvers++];
		cm_strlcpy(e->ns, ns, sizeof(e->ns));
		e->ver = v;
	} else if (e != NULL && v > e->ver) {
		e->ver = v;
	}
	pthread_mutex_unlock(&c->ver_mu);
}

/* The namespace's version: known, or fetched if fetch; false if unknown. */
static bool
ver_get(cm_cache *c, const char *ns, bool fetch, uint64_t *out)
{
	struct version *e;
	redisReply *rep;
	bool ok = false;
	uint64_t v = 0;

	pthread_mutex_lock(&c->ver_mu);
	if ((e = ver_find(c, ns)) != NULL) {
		*out = e->ver;
		ok = true;
	}
	pthread_mutex_unlock(&c->ver_mu);
	if (ok || !fetch)
		return (ok);
	rep = cm_redis_cmd(rconn(c), "GET %s:{%s}:ver", c->prefix, ns);
	if (rep == NULL)
		return (false);
	if (rep->type == REDIS_REPLY_STRING)
		v = strtoull(rep->str, NULL, 10);
	ok = rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_NIL;
	freeReplyObject(rep);
	if (!ok)
		return (false);
	ver_store(c, ns, v);
	return (ver_get(c, ns, false, out));
}

/* ---- names ---- */

struct names {
	char *l1; /* ns "|" vk */
	size_t l1len;
	char *vk; /* points into l1 */
	size_t vklen;
	char *l2; /* prefix ":{" ns "}:" vk */
	size_t l2len;
};

static void
names_make(cm_cache *c, const char *ns, uint64_t ver, const void *key,
           size_t klen, struct names *n)
{
	char vs[24];
	size_t nsl = strlen(ns), vsl, pl = strlen(c->prefix);

	vsl = (size_t) snprintf(vs, sizeof(vs),
	                        "%llu:", (unsigned long long) ver);
	n->l1len = nsl + 1 + vsl + klen;
	n->l2len = pl + 2 + nsl + 2 + vsl + klen;
	if ((n->l1 = malloc(n->l1len + n->l2len + 2)) == NULL)
		fatal("event=cache_names");
	memcpy(n->l1, ns, nsl);
	n->l1[nsl] = '|';
	memcpy(n->l1 + nsl + 1, vs, vsl);
	memcpy(n->l1 + nsl + 1 + vsl, key, klen);
	n->l1[n->l1len] = '\0';
	n->vk = n->l1 + nsl + 1;
	n->vklen = vsl + klen;
	n->l2 = n->l1 + n->l1len + 1;
	memcpy(n->l2, c->prefix, pl);
	memcpy(n->l2 + pl, ":{", 2);
	memcpy(n->l2 + pl + 2, ns, nsl);
	memcpy(n->l2 + pl + 2 + nsl, "}:", 2);
	memcpy(n->l2 + pl + 4 + nsl, n->vk, n->vklen);
	n->l2[n->l2len] = '\0';
}

static void
names_free(struct names *n)
{
	free(n->l1);
}

/* ---- values ---- */

/*
 * A parsed header.  Offsets, not pointers, so that a header stays valid
 * for a copy of the bytes it was parsed from: the metadata is at
 * HDR_LEN + 1 when mlen > 0, the payload at off.
 */
struct hdr {
	char kind;
	int64_t soft_ms;
	uint32_t delta_ms;
	size_t off;  /* where the payload starts */
	size_t mlen; /* metadata length (0: none) */
};

/* 'V' and 'M' hold values; 'N' and 'T' read as "not found". */
static bool
is_value(char kind)
{
	return (kind == 'V' || kind == 'M');
}

static bool
hdr_parse(const void *p, size_t len, struct hdr *h)
{
	const unsigned char *b = p;

	if (len < HDR_LEN ||
	    (b[0] != 'V' && b[0] != 'M' && b[0] != 'N' && b[0] != 'T'))
		return (false);
	h->kind = (char) b[0];
	memcpy(&h->soft_ms, b + 1, 8);
	memcpy(&h->delta_ms, b + 9, 4);
	h->off = HDR_LEN;
	h->mlen = 0;
	if (h->kind == 'M') {
		if (len < HDR_LEN + 1 || b[HDR_LEN] == 0 ||
		    len < HDR_LEN + 1 + (size_t) b[HDR_LEN])
			return (false);
		h->mlen = b[HDR_LEN];
		h->off = HDR_LEN + 1 + h->mlen;
	}
	return (true);
}

/*
 * A header (+ metadata) + payload buffer (malloc'd); *total gets its
 * length.  kind 'V' with meta becomes 'M'; meta is at most META_MAX bytes
 * (the callers check).
 */
static unsigned char *
val_make(char kind, int64_t soft_ms, uint32_t delta_ms, const char *meta,
         size_t mlen, const void *data, size_t len, size_t *total)
{
	size_t off = HDR_LEN;
	unsigned char *b;

	if (kind == 'V' && mlen > 0)
		kind = 'M';
	if (kind == 'M')
		off += 1 + mlen;
	if ((b = malloc(off + len + 1)) == NULL)
		fatal("event=cache_val");
	b[0] = (unsigned char) kind;
	memcpy(b + 1, &soft_ms, 8);
	memcpy(b + 9, &delta_ms, 4);
	if (kind == 'M') {
		b[HDR_LEN] = (unsigned char) mlen;
		memcpy(b + HDR_LEN + 1, meta, mlen);
	}
	if (len > 0)
		memcpy(b + off, data, len);
	*total = off + len;
	return (b);
}

/*
 * Fills a read's *out with a copy of the payload and of the metadata, in
 * one allocation (both NUL-terminated): freeing out->data frees both.
 */
static void
value_out(cm_cache_value *out, const void *data, size_t len, const void *meta,
          size_t mlen, int64_t ttl_ms)
{
	char *d = malloc(len + 1 + mlen + 1);

	if (d == NULL)
		fatal("event=cache_out");
	if (len > 0)
		memcpy(d, data, len);
	d[len] = '\0'; /* convenient for text values */
	out->data = d;
	out->len = len;
	out->ttl_ms = ttl_ms;
	out->meta = NULL;
	out->meta_len = 0;
	if (mlen > 0) {
		memcpy(d + len + 1, meta, mlen);
		d[len + 1 + mlen] = '\0';
		out->meta = d + len + 1;
		out->meta_len = mlen;
	}
}

/* value_out from a whole stored value (header included) and its header. */
static void
value_out_raw(cm_cache_value *out, const unsigned char *raw, size_t rawlen,
              const struct hdr *h, int64_t ttl_ms)
{
	value_out(out, raw + h->off, rawlen - h->off,
	          h->mlen > 0 ? raw + HDR_LEN + 1 : NULL, h->mlen, ttl_ms);
}

static void *
dup_payload(const void *p, size_t len)
{
	void *d = malloc(len + 1);

	if (d == NULL)
		fatal("event=cache_dup");
	if (len > 0)
		memcpy(d, p, len);
	((char *) d)[len] = '\0'; /* convenient for text values */
	return (d);
}

static int64_t
jitter(cm_cache *c, int64_t ttl)
{
	double j = (double) c->cfg.jitter_pct / 100.0 * rnd01(c);

	return (ttl - (int64_t) ((double) ttl * j));
}

/* XFetch: recompute early with probability growing near expiry. */
static bool
xfetch(cm_cache *c, const struct hdr *h, int64_t now)
{
	double r;

	if (c->cfg.xfetch_beta <= 0 || h->delta_ms == 0)
		return (false);
	r = rnd01(c);
	if (r <= 0)
		return (false);
	return ((double) now -
	            (double) h->delta_ms * c->cfg.xfetch_beta * log(r) >=
	        (double) h->soft_ms);
}

static bool
l1_trusted(cm_cache *c)
{
	return (c->l1 != NULL &&
	        (c->cfg.no_subscribe || cm_invalidator_subscribed(c->inv)));
}

static void
l1_put(cm_cache *c, const struct names *n, const unsigned char *v, size_t len,
       int64_t ttl_ms, bool check, uint64_t epoch)
{
	if (!l1_trusted(c) || ttl_ms <= 0)
		return;
	if (ttl_ms > c->cfg.l1_ttl_ms)
		ttl_ms = c->cfg.l1_ttl_ms;
	if (check)
		cm_l1_set_if(c->l1, n->l1, n->l1len, v, len, ttl_ms, epoch);
	else
		cm_l1_set(c->l1, n->l1, n->l1len, v, len, ttl_ms);
}

static void
publish(cm_cache *c, const char *msg, size_t len)
{
	redisReply *rep;

	rep = cm_redis_cmd(rconn(c), "PUBLISH %s %b", c->channel, msg, len);
	if (rep != NULL)
		freeReplyObject(rep);
}

static void
publish_key(cm_cache *c, const struct names *n)
{
	char *m = malloc(n->l1len + 2);

	if (m == NULL)
		fatal("event=cache_publish");
	m[0] = 'k';
	memcpy(m + 1, n->l1, n->l1len);
	publish(c, m, n->l1len + 1);
	free(m);
}

/* ---- invalidation subscriber ---- */

static void
on_inval(void *arg, const char *msg, size_t len)
{
	cm_cache *c = arg;
	const char *bar;
	char ns[MAX_NS + 1];

	if (len < 2)
		return;
	STAT(c, invalidations);
	if (msg[0] == 'k') {
		if (c->l1 != NULL)
			cm_l1_del(c->l1, msg + 1, len - 1);
	} else if (msg[0] == 'v' && (bar = memchr(msg, '|', len)) != NULL &&
	           (size_t) (bar - msg - 1) <= MAX_NS) {
		memcpy(ns, msg + 1, (size_t) (bar - msg - 1));
		ns[bar - msg - 1] = '\0';
		ver_store(c, ns, strtoull(bar + 1, NULL, 10));
	}
}

/*
 * (Re)subscribed, before L1 is trusted again: what was published while we
 * were away is lost, so forget every version and clear L1, then fetch the
 * tracked namespaces' versions again (this thread may block), so that the
 * event-loop API works without waiting for a blocking call.  If Redis
 * fails that (the first command after a restart may meet a dead
 * connection, and the breaker may still be open), the subscription is
 * made again after a backoff: L1 stays untrusted until then.
 */
static bool
on_reset(void *arg)
{
	cm_cache *c = arg;
	char tracked[MAX_TRACKED][MAX_NS + 1];
	size_t n;
	uint64_t v;

	pthread_mutex_lock(&c->ver_mu);
	c->nvers = 0;
	n = c->ntracked;
	memcpy(tracked, c->tracked, sizeof(tracked[0]) * n);
	pthread_mutex_unlock(&c->ver_mu);
	if (c->l1 != NULL)
		cm_l1_clear(c->l1);
	STAT(c, l1_clears);
	for (size_t i = 0; i < n; i++)
		if (!ver_get(c, tracked[i], true, &v) &&
		    !ver_get(c, tracked[i], true, &v)) {
			log_warnx("event=cache_version_unknown ns=%s",
			          tracked[i]);
			return (false);
		}
	return (true);
}

/* ---- life cycle ---- */

static char *
xstrdup(const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		fatal("event=cache_new");
	return (d);
}

int
cm_cache_new(cm_cache **out, const cm_cache_config *cfg)
{
	cm_cache *c;
	cm_invalidator_config ic;
	char chan[256];

	if (cfg->redis_url == NULL)
		return (CM_INVALID_ARGUMENT);
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return (CM_RESOURCE_EXHAUSTED);
	c->cfg = *cfg;
	c->prefix = xstrdup(cfg->prefix != NULL ? cfg->prefix : "cache");
	c->redis_url = xstrdup(cfg->redis_url);
	snprintf(chan, sizeof(chan), "%s:inv", c->prefix);
	c->channel = xstrdup(chan);
#define DEF(f, v)                                                              \
	if (c->cfg.f <= 0)                                                     \
	c->cfg.f = (v)
	DEF(l1_ttl_ms, 60000);
	DEF(default_ttl_ms, 300000);
	DEF(negative_ttl_ms, 5000);
	DEF(stale_ms, 60000);
	DEF(lease_ms, 2000);
	DEF(lease_wait_ms, c->cfg.lease_ms);
	DEF(redis_timeout_ms, 200);
#undef DEF
	if (c->cfg.jitter_pct < 0 || c->cfg.jitter_pct > 50)
		c->cfg.jitter_pct = 10;
	pthread_mutex_init(&c->conns_mu, NULL);
	pthread_mutex_init(&c->ver_mu, NULL);
	pthread_mutex_init(&c->fl_mu, NULL);
	c->conns.next = c->conns.prev = &c->conns;
	if (pthread_key_create(&c->key, tls_destroy) != 0)
		fatalx("event=cache_new msg=\"no thread key\"");
	if (cfg->l1_bytes > 0 && (c->l1 = cm_l1_new(cfg->l1_bytes, 16)) == NULL)
		fatalx("event=cache_new msg=\"cannot create L1\"");
	if (!cfg->no_subscribe) {
		memset(&ic, 0, sizeof(ic));
		ic.redis_url = c->redis_url;
		ic.channel = c->channel;
		ic.on_key = on_inval;
		ic.on_reset = on_reset;
		ic.arg = c;
		if (cm_invalidator_start(&c->inv, &ic) != 0) {
			cm_cache_free(c);
			return (CM_INTERNAL);
		}
	}
	*out = c;
	return (CM_OK);
}

void
cm_cache_free(cm_cache *c)
{
	struct tls_conn *t;

	if (c == NULL)
		return;
	cm_invalidator_stop(c->inv);
	(void) pthread_key_delete(c->key);
	while ((t = c->conns.next) != &c->conns) {
		tls_unlink(t);
		cm_redis_free(t->r);
		free(t);
	}
	cm_l1_free(c->l1);
	pthread_mutex_destroy(&c->conns_mu);
	pthread_mutex_destroy(&c->ver_mu);
	pthread_mutex_destroy(&c->fl_mu);
	free(c->prefix);
	free(c->channel);
	free(c->redis_url);
	free(c);
}

/* ---- single flight ---- */

static unsigned
fl_bucket(const char *key, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char) key[i]) * 16777619u;
	return (h % NFLIGHT);
}

/* Joins the flight for key, or starts one (*leader true). Locked by fl_mu. */
static struct flight *
fl_join(cm_cache *c, const char *key, size_t len, bool *leader)
{
	unsigned b = fl_bucket(key, len);
	struct flight *f;

	pthread_mutex_lock(&c->fl_mu);
	for (f = c->flights[b]; f != NULL; f = f->next)
		if (f->klen == len && memcmp(f->key, key, len) == 0)
			break;
	if (f != NULL) {
		f->refs++;
		*leader = false;
		STAT(c, flight_joins);
		while (!f->done)
			pthread_cond_wait(&f->cv, &c->fl_mu);
		pthread_mutex_unlock(&c->fl_mu);
		return (f);
	}
	if ((f = calloc(1, sizeof(*f))) == NULL ||
	    (f->key = malloc(len + 1)) == NULL)
		fatal("event=cache_flight");
	memcpy(f->key, key, len);
	f->klen = len;
	pthread_cond_init(&f->cv, NULL);
	f->refs = 1;
	f->next = c->flights[b];
	c->flights[b] = f;
	*leader = true;
	pthread_mutex_unlock(&c->fl_mu);
	return (f);
}

static void
fl_release(cm_cache *c, struct flight *f)
{
	bool last;

	pthread_mutex_lock(&c->fl_mu);
	last = --f->refs == 0;
	pthread_mutex_unlock(&c->fl_mu);
	if (!last)
		return;
	pthread_cond_destroy(&f->cv);
	free(f->data);
	free(f->meta);
	free(f->key);
	free(f);
}

/* The leader publishes its result and takes the flight off the table. */
static void
fl_finish(cm_cache *c, struct flight *f, int rv, int level, const void *data,
          size_t len, const void *meta, size_t mlen)
{
	unsigned b = fl_bucket(f->key, f->klen);
	struct flight **pp;

	pthread_mutex_lock(&c->fl_mu);
	f->rv = rv;
	f->level = level;
	f->data = rv == CM_OK ? dup_payload(data, len) : NULL;
	f->len = len;
	f->meta = rv == CM_OK && mlen > 0 ? dup_payload(meta, mlen) : NULL;
	f->mlen = f->meta != NULL ? mlen : 0;
	f->done = true;
	for (pp = &c->flights[b]; *pp != NULL; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&c->fl_mu);
}

/* ---- the read path ---- */

/* What one L2 read found. */
struct l2_read {
	bool down;  /* Redis unreachable */
	bool found; /* a parseable value */
	struct hdr h;
	unsigned char *raw; /* header + payload, malloc'd */
	size_t rawlen;
};

static void
l2_get(cm_cache *c, const struct names *n, struct l2_read *r)
{
	redisReply *rep;

	memset(r, 0, sizeof(*r));
	rep = cm_redis_cmd(rconn(c), "GET %b", n->l2, n->l2len);
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		r->down = true;
	} else if (rep->type == REDIS_REPLY_STRING &&
	           hdr_parse(rep->str, rep->len, &r->h)) {
		r->found = true;
		r->raw = dup_payload(rep->str, rep->len);
		r->rawlen = rep->len;
	}
	if (rep != NULL)
		freeReplyObject(rep);
}

/* Writes a loader's result to L2 unless a tombstone is there. */
static void
l2_fill(cm_cache *c, const struct names *n, const unsigned char *v, size_t len,
        int64_t px)
{
	redisReply *rep;
	char pxs[24];

	snprintf(pxs, sizeof(pxs), "%lld", (long long) px);
	rep = cm_redis_cmd(rconn(c), "EVAL %s 1 %b %b %s", fill_lua, n->l2,
	                   n->l2len, v, len, pxs);
	if (rep != NULL)
		freeReplyObject(rep);
}

struct outcome {
	int rv, level;
	/* payload and metadata, valid until the caller frees *keep */
	const void *data, *meta;
	size_t len, mlen;
};

/* Points o at the payload and metadata of a stored value. */
static void
outcome_value(struct outcome *o, const unsigned char *raw, size_t rawlen,
              const struct hdr *h)
{
	o->rv = CM_OK;
	o->data = raw + h->off;
	o->len = rawlen - h->off;
	o->meta = h->mlen > 0 ? raw + HDR_LEN + 1 : NULL;
	o->mlen = h->mlen;
}

/* Turns a found L2 value into an outcome (and an L1 fill). */
static void
from_l2(cm_cache *c, const struct names *n, const struct l2_read *r,
        uint64_t epoch, int64_t now, int level, struct outcome *o)
{
	int64_t left = r->h.soft_ms - now;

	if (!is_value(r->h.kind)) {
		STAT(c, negative_hits);
		if (left > 0)
			l1_put(c, n, r->raw, HDR_LEN,
			       left < c->cfg.negative_ttl_ms
			           ? left
			           : c->cfg.negative_ttl_ms,
			       true, epoch);
		o->rv = CM_NOT_FOUND;
	} else {
		if (left > 0)
			l1_put(c, n, r->raw, r->rawlen, left, true, epoch);
		outcome_value(o, r->raw, r->rawlen, &r->h);
	}
	o->level = level;
}

static bool
lease_take(cm_cache *c, const char *ns, const struct names *n,
           const char *token, bool *down)
{
	redisReply *rep;
	bool got;

	rep = cm_redis_cmd(rconn(c), "SET %s:{%s}:lease:%b %s NX PX %lld",
	                   c->prefix, ns, n->vk, n->vklen, token,
	                   (long long) c->cfg.lease_ms);
	if (rep == NULL) {
		*down = true;
		return (false);
	}
	got = rep->type == REDIS_REPLY_STATUS;
	freeReplyObject(rep);
	return (got);
}

static void
lease_release(cm_cache *c, const char *ns, const struct names *n,
              const char *token)
{
	redisReply *rep;

	rep = cm_redis_cmd(rconn(c), "EVAL %s 1 %s:{%s}:lease:%b %s",
	                   release_lua, c->prefix, ns, n->vk, n->vklen, token);
	if (rep != NULL)
		freeReplyObject(rep);
}

/*
 * The leader's path after an L1 miss (or an early refresh): L2, the lease,
 * the loader.  fallback: a value already known (L1 hit being refreshed or
 * past its expiry), served if the load cannot be made.  Without a loader
 * no value past its expiry is served: nothing is being loaded in its
 * place.  Fills *o; *keep holds memory o points into (caller frees).
 */
static void
fetch(cm_cache *c, const char *ns, const struct names *n, const void *key,
      size_t klen, cm_cache_loader loader, void *arg, uint64_t epoch,
      struct l2_read *fb, struct outcome *o, void **keep)
{
	struct l2_read r, w;
	cm_cache_value v;
	char token[33];
	bool down = false, leased = false;
	int64_t now = clock_ms(c), t0, ttl, deadline;
	unsigned char *buf;
	size_t total;
	int rv;

	l2_get(c, n, &r);
	if (r.found) {
		if (r.h.soft_ms > now &&
		    !(loader != NULL && xfetch(c, &r.h, now))) {
			STAT(c, l2_hits);
			from_l2(c, n, &r, epoch, now, CM_CACHE_L2, o);
			*keep = r.raw;
			free(fb->raw);
			return;
		}
		if (r.h.soft_ms > now)
			STAT(c, early_refreshes);
		/* Stale, or due for an early refresh: the fallback now. */
		free(fb->raw);
		*fb = r;
	} else {
		if (!r.down)
			STAT(c, l2_misses);
		down = r.down;
	}
	if (loader == NULL) {
		if (fb->found)
			STAT(c, l2_misses); /* only past its expiry */
		free(fb->raw);
		fb->raw = NULL;
		o->rv = down ? CM_UNAVAILABLE : CM_NOT_FOUND;
		*keep = NULL;
		return;
	}
	cm_unique_id(token);
	if (!down) {
		leased = lease_take(c, ns, n, token, &down);
		if (!leased && !down) {
			STAT(c, lease_waits);
			if (fb->found) {
				STAT(c, stale_served);
				from_l2(c, n, fb, epoch, now, CM_CACHE_STALE,
				        o);
				*keep = fb->raw;
				return;
			}
			/* Another instance loads: wait for its fill. */
			deadline = cm_mono_ms() + c->cfg.lease_wait_ms;
			while (cm_mono_ms() < deadline) {
				struct timespec ts = {0,
				                      LEASE_POLL_MS * 1000000L};

				nanosleep(&ts, NULL);
				l2_get(c, n, &w);
				now = clock_ms(c);
				if (w.found && w.h.soft_ms > now) {
					STAT(c, l2_hits);
					from_l2(c, n, &w, epoch, now,
					        CM_CACHE_L2, o);
					*keep = w.raw;
					return;
				}
				free(w.raw);
				if (w.down)
					break;
			}
			/* The holder vanished or is slow: load ourselves. */
		}
	}
	STAT(c, loads);
	memset(&v, 0, sizeof(v));
	t0 = cm_mono_ms();
	rv = loader(arg, ns, key, klen, &v);
	now = clock_ms(c);
	if (rv == CM_OK) {
		struct hdr bh;

		ttl =
		    jitter(c, v.ttl_ms > 0 ? v.ttl_ms : c->cfg.default_ttl_ms);
		if (ttl < 1)
			ttl = 1;
		/* A loader's value carries no metadata. */
		buf = val_make('V', now + ttl, (uint32_t) (cm_mono_ms() - t0),
		               NULL, 0, v.data, v.len, &total);
		if (!down)
			l2_fill(c, n, buf, total, ttl + c->cfg.stale_ms);
		l1_put(c, n, buf, total, ttl, true, epoch);
		free(v.data);
		(void) hdr_parse(buf, total, &bh);
		outcome_value(o, buf, total, &bh);
		o->level = CM_CACHE_LOADER;
		*keep = buf;
		free(fb->raw);
	} else if (rv == CM_NOT_FOUND) {
		free(v.data);
		ttl = c->cfg.negative_ttl_ms;
		buf = val_make('N', now + ttl, 0, NULL, 0, NULL, 0, &total);
		if (!down)
			l2_fill(c, n, buf, total, ttl);
		l1_put(c, n, buf, total, ttl, true, epoch);
		free(buf);
		o->rv = CM_NOT_FOUND;
		o->level = CM_CACHE_LOADER;
		*keep = NULL;
		free(fb->raw);
	} else {
		free(v.data);
		STAT(c, load_errors);
		if (fb->found && is_value(fb->h.kind)) {
			STAT(c, stale_served);
			outcome_value(o, fb->raw, fb->rawlen, &fb->h);
			o->level = CM_CACHE_STALE;
			*keep = fb->raw;
		} else {
			o->rv = rv;
			*keep = NULL;
			free(fb->raw);
		}
	}
	if (leased)
		lease_release(c, ns, n, token);
}

int
cm_cache_get_or_load(cm_cache *c, const char *ns, const void *key, size_t klen,
                     cm_cache_loader loader, void *arg, cm_cache_value *out,
                     int *level)
{
	struct names n;
	struct l2_read fb;
	struct outcome o;
	struct flight *f;
	struct hdr h;
	unsigned char stackbuf[512], *v = stackbuf;
	uint64_t ver, epoch = 0;
	int64_t t0 = cm_mono_us(), now;
	long got;
	bool trust, leader, parsed;
	void *keep = NULL;
	int rv, lvl = CM_CACHE_NONE;

	if (!cm_cache_ns_ok(ns))
		return (CM_INVALID_ARGUMENT);
	memset(&fb, 0, sizeof(fb));
	memset(&o, 0, sizeof(o));
	trust = l1_trusted(c);
	if (!ver_get(c, ns, true, &ver)) {
		/* Redis down and the version unknown: straight to the source.
		 */
		ver = 0;
		trust = false;
	}
	names_make(c, ns, ver, key, klen, &n);
	if (trust) {
		got = cm_l1_get(c->l1, n.l1, n.l1len, v, sizeof(stackbuf));
		if (got > (long) sizeof(stackbuf)) {
			v = malloc((size_t) got);
			if (v == NULL)
				fatal("event=cache_get");
			got = cm_l1_get(c->l1, n.l1, n.l1len, v, (size_t) got);
		}
		now = clock_ms(c);
		parsed = got >= HDR_LEN && hdr_parse(v, (size_t) got, &h);
		if (parsed && h.soft_ms > now) {
			STAT(c, l1_hits);
			if (!is_value(h.kind)) {
				STAT(c, negative_hits);
				rv = CM_NOT_FOUND;
				lvl = CM_CACHE_L1;
				goto done;
			}
			if (loader == NULL || !xfetch(c, &h, now)) {
				value_out_raw(out, v, (size_t) got, &h,
				              h.soft_ms - now);
				rv = CM_OK;
				lvl = CM_CACHE_L1;
				goto done;
			}
			/* Early refresh: the L1 copy is the fallback. */
			STAT(c, early_refreshes);
			fb.found = true;
			fb.h = h;
			fb.raw = dup_payload(v, (size_t) got);
			fb.rawlen = (size_t) got;
		} else {
			STAT(c, l1_misses);
			/*
			 * An entry past its soft expiry is no answer (L1's
			 * own clock is monotonic and may keep it a little
			 * longer).  With a loader it is the fallback, as
			 * L2's stale tail would be.
			 */
			if (parsed && loader != NULL && is_value(h.kind)) {
				fb.found = true;
				fb.h = h;
				fb.raw = dup_payload(v, (size_t) got);
				fb.rawlen = (size_t) got;
			}
		}
		epoch = cm_l1_epoch(c->l1, n.l1, n.l1len);
	}
	f = fl_join(c, n.l1, n.l1len, &leader);
	if (!leader) {
		rv = f->rv;
		lvl = f->level;
		/* A stale value stands in for a load; this caller has none. */
		if (rv == CM_OK && lvl == CM_CACHE_STALE && loader == NULL)
			rv = CM_NOT_FOUND;
		if (rv == CM_OK)
			value_out(out, f->data, f->len, f->meta, f->mlen, 0);
		fl_release(c, f);
		free(fb.raw);
		goto done;
	}
	fetch(c, ns, &n, key, klen, loader, arg, epoch, &fb, &o, &keep);
	fl_finish(c, f, o.rv, o.level, o.data, o.len, o.meta, o.mlen);
	fl_release(c, f);
	rv = o.rv;
	lvl = o.level;
	if (rv == CM_OK)
		value_out(out, o.data, o.len, o.meta, o.mlen, 0);
	free(keep);
done:
	if (v != stackbuf)
		free(v);
	names_free(&n);
	if (level != NULL)
		*level = lvl;
	atomic_fetch_add_explicit(&c->get_us_total,
	                          (uint64_t) (cm_mono_us() - t0),
	                          memory_order_relaxed);
	STAT(c, gets);
	return (rv);
}

/* ---- the event-loop API ---- */

int
cm_cache_l1_lookup(cm_cache *c, const char *ns, const void *key, size_t klen,
                   cm_cache_value *out, cm_cache_ticket *ticket)
{
	struct names n;
	unsigned char stackbuf[4096], *buf = stackbuf;
	size_t cap = sizeof(stackbuf);
	uint64_t ver;
	struct hdr h;
	int64_t now;
	long got;
	int rv = CM_UNAVAILABLE;

	ticket->valid = false;
	if (!cm_cache_ns_ok(ns) || !l1_trusted(c) ||
	    !ver_get(c, ns, false, &ver))
		return (CM_UNAVAILABLE);
	names_make(c, ns, ver, key, klen, &n);
	got = cm_l1_get(c->l1, n.l1, n.l1len, buf, cap);
	if (got > (long) cap) {
		/* A large value: read it again into a buffer of its size. */
		cap = (size_t) got;
		if ((buf = malloc(cap)) == NULL)
			fatal("event=cache_l1_lookup");
		got = cm_l1_get(c->l1, n.l1, n.l1len, buf, cap);
	}
	now = clock_ms(c);
	/* Past its soft expiry an entry is a miss (L1's clock may lag). */
	if (got >= HDR_LEN && got <= (long) cap &&
	    hdr_parse(buf, (size_t) got, &h) && h.soft_ms > now) {
		STAT(c, l1_hits);
		if (!is_value(h.kind)) {
			rv = CM_NOT_FOUND;
		} else {
			value_out_raw(out, buf, (size_t) got, &h,
			              h.soft_ms - now);
			rv = CM_OK;
		}
	} else {
		STAT(c, l1_misses);
		ticket->epoch = cm_l1_epoch(c->l1, n.l1, n.l1len);
		ticket->version = ver;
		ticket->valid = true;
	}
	if (buf != stackbuf)
		free(buf);
	names_free(&n);
	return (rv);
}

int
cm_cache_track(cm_cache *c, const char *ns)
{
	uint64_t v;
	bool known = false;

	if (!cm_cache_ns_ok(ns))
		return (CM_INVALID_ARGUMENT);
	pthread_mutex_lock(&c->ver_mu);
	for (size_t i = 0; i < c->ntracked && !known; i++)
		known = strcmp(c->tracked[i], ns) == 0;
	if (!known && c->ntracked == MAX_TRACKED) {
		pthread_mutex_unlock(&c->ver_mu);
		return (CM_RESOURCE_EXHAUSTED);
	}
	if (!known)
		cm_strlcpy(c->tracked[c->ntracked++], ns, MAX_NS + 1);
	pthread_mutex_unlock(&c->ver_mu);
	return (ver_get(c, ns, true, &v) ? CM_OK : CM_UNAVAILABLE);
}

bool
cm_cache_l1_ready(cm_cache *c, const char *ns)
{
	uint64_t ver;

	return (cm_cache_ns_ok(ns) && l1_trusted(c) &&
	        ver_get(c, ns, false, &ver));
}

void
cm_cache_l1_drop(cm_cache *c, const char *ns, const void *key, size_t klen)
{
	struct names n;
	uint64_t ver;

	/* Without a known version no lookup can reach the key either. */
	if (c->l1 == NULL || !cm_cache_ns_ok(ns) ||
	    !ver_get(c, ns, false, &ver))
		return;
	names_make(c, ns, ver, key, klen, &n);
	cm_l1_del(c->l1, n.l1, n.l1len);
	names_free(&n);
}

void
cm_cache_l1_fill(cm_cache *c, const char *ns, const void *key, size_t klen,
                 const void *val, size_t vlen, int64_t ttl_ms,
                 const cm_cache_ticket *ticket)
{
	struct names n;
	unsigned char *b;
	size_t total;

	if (!ticket->valid || !cm_cache_ns_ok(ns))
		return;
	if (ttl_ms <= 0)
		ttl_ms = c->cfg.default_ttl_ms;
	names_make(c, ns, ticket->version, key, klen, &n);
	b = val_make(val != NULL ? 'V' : 'N', clock_ms(c) + ttl_ms, 0, NULL, 0,
	             val, val != NULL ? vlen : 0, &total);
	l1_put(c, &n, b, total, ttl_ms, true, ticket->epoch);
	free(b);
	names_free(&n);
}

/* ---- writes and invalidation ---- */

static int
names_for(cm_cache *c, const char *ns, const void *key, size_t klen,
          struct names *n)
{
	uint64_t ver;

	if (!cm_cache_ns_ok(ns))
		return (CM_INVALID_ARGUMENT);
	if (!ver_get(c, ns, true, &ver))
		return (CM_UNAVAILABLE);
	names_make(c, ns, ver, key, klen, n);
	return (CM_OK);
}

static bool
reply_ok(redisReply *rep)
{
	bool ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;

	if (rep != NULL)
		freeReplyObject(rep);
	return (ok);
}

int
cm_cache_set(cm_cache *c, const char *ns, const void *key, size_t klen,
             const void *val, size_t vlen, const char *meta, int64_t ttl_ms,
             const char *const *tags, size_t ntags)
{
	struct names n;
	unsigned char *b;
	int64_t ttl, tagttl;
	size_t mlen = meta != NULL ? strlen(meta) : 0, total;
	cm_redis *r;
	int rv;

	if (mlen > META_MAX)
		return (CM_INVALID_ARGUMENT);
	if ((rv = names_for(c, ns, key, klen, &n)) != CM_OK)
		return (rv);
	r = rconn(c);
	/* The caller's TTL is kept; only the default one is spread. */
	ttl = ttl_ms > 0 ? ttl_ms : jitter(c, c->cfg.default_ttl_ms);
	if (ttl < 1)
		ttl = 1;
	b = val_make('V', clock_ms(c) + ttl, 0, meta, mlen, val, vlen, &total);
	rv = CM_UNAVAILABLE;
	if (!reply_ok(cm_redis_cmd(r, "SET %b %b PX %lld", n.l2, n.l2len, b,
	                           total, (long long) (ttl + c->cfg.stale_ms))))
		goto out;
	tagttl = ttl + c->cfg.stale_ms;
	if (tagttl < TAGSET_MIN_TTL_MS)
		tagttl = TAGSET_MIN_TTL_MS;
	for (size_t i = 0; i < ntags; i++) {
		if (!reply_ok(cm_redis_cmd(r, "SADD %s:{%s}:tag:%s %b",
		                           c->prefix, ns, tags[i], n.vk,
		                           n.vklen)) ||
		    !reply_ok(cm_redis_cmd(r, "PEXPIRE %s:{%s}:tag:%s %lld GT",
		                           c->prefix, ns, tags[i],
		                           (long long) tagttl)))
			goto out;
		/* GT leaves a set without a TTL alone: give it one. */
		(void) reply_ok(
		    cm_redis_cmd(r, "PEXPIRE %s:{%s}:tag:%s %lld NX", c->prefix,
		                 ns, tags[i], (long long) tagttl));
	}
	publish_key(c, &n);
	if (c->l1 != NULL) {
		cm_l1_del(c->l1, n.l1, n.l1len);
		l1_put(c, &n, b, total, ttl, false, 0);
	}
	rv = CM_OK;
out:
	free(b);
	names_free(&n);
	return (rv);
}

int
cm_cache_delete(cm_cache *c, const char *ns, const void *key, size_t klen,
                int64_t tomb_ms)
{
	struct names n;
	unsigned char *b;
	redisReply *rep;
	size_t total;
	int rv;

	if ((rv = names_for(c, ns, key, klen, &n)) != CM_OK) {
		/* Still drop what this process may hold. */
		if (rv == CM_UNAVAILABLE && c->l1 != NULL &&
		    cm_cache_ns_ok(ns)) {
			uint64_t ver;

			if (ver_get(c, ns, false, &ver)) {
				names_make(c, ns, ver, key, klen, &n);
				cm_l1_del(c->l1, n.l1, n.l1len);
				names_free(&n);
			}
		}
		return (rv);
	}
	if (c->l1 != NULL)
		cm_l1_del(c->l1, n.l1, n.l1len);
	if (tomb_ms > 0) {
		b = val_make('T', clock_ms(c) + tomb_ms, 0, NULL, 0, NULL, 0,
		             &total);
		rep = cm_redis_cmd(rconn(c), "SET %b %b PX %lld", n.l2, n.l2len,
		                   b, total, (long long) tomb_ms);
		free(b);
	} else {
		rep = cm_redis_cmd(rconn(c), "DEL %b", n.l2, n.l2len);
	}
	if (!reply_ok(rep)) {
		names_free(&n);
		return (CM_UNAVAILABLE);
	}
	publish_key(c, &n);
	rv = cm_redis_ok(rconn(c)) ? CM_OK : CM_UNAVAILABLE;
	names_free(&n);
	return (rv);
}

int
cm_cache_invalidate_tags(cm_cache *c, const char *ns, const char *const *tags,
                         size_t ntags, size_t *count)
{
	cm_redis *r = rconn(c);
	redisReply *rep;
	size_t total = 0, nsl;
	char *m;

	if (!cm_cache_ns_ok(ns))
		return (CM_INVALID_ARGUMENT);
	nsl = strlen(ns);
	for (size_t i = 0; i < ntags; i++) {
		rep = cm_redis_cmd(r, "SMEMBERS %s:{%s}:tag:%s", c->prefix, ns,
		                   tags[i]);
		if (rep == NULL)
			return (CM_UNAVAILABLE);
		if (rep->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(rep);
			return (CM_INTERNAL);
		}
		for (size_t j = 0; j < rep->elements; j++) {
			redisReply *e = rep->element[j];

			if (e->type != REDIS_REPLY_STRING)
				continue;
			if (!reply_ok(cm_redis_cmd(r, "DEL %s:{%s}:%b",
			                           c->prefix, ns, e->str,
			                           (size_t) e->len))) {
				freeReplyObject(rep);
				return (CM_UNAVAILABLE);
			}
			if ((m = malloc(nsl + 2 + (size_t) e->len)) == NULL)
				fatal("event=cache_tags");
			m[0] = 'k';
			memcpy(m + 1, ns, nsl);
			m[1 + nsl] = '|';
			memcpy(m + 2 + nsl, e->str, (size_t) e->len);
			if (c->l1 != NULL)
				cm_l1_del(c->l1, m + 1, nsl + 1 + e->len);
			publish(c, m, nsl + 2 + (size_t) e->len);
			free(m);
			total++;
		}
		freeReplyObject(rep);
		(void) reply_ok(cm_redis_cmd(r, "DEL %s:{%s}:tag:%s", c->prefix,
		                             ns, tags[i]));
	}
	if (count != NULL)
		*count = total;
	return (CM_OK);
}

int
cm_cache_bump_version(cm_cache *c, const char *ns, uint64_t *version)
{
	redisReply *rep;
	uint64_t v;
	char msg[MAX_NS + 32];
	int n;

	if (!cm_cache_ns_ok(ns))
		return (CM_INVALID_ARGUMENT);
	rep = cm_redis_cmd(rconn(c), "INCR %s:{%s}:ver", c->prefix, ns);
	if (rep == NULL)
		return (CM_UNAVAILABLE);
	if (rep->type != REDIS_REPLY_INTEGER) {
		freeReplyObject(rep);
		return (CM_INTERNAL);
	}
	v = (uint64_t) rep->integer;
	freeReplyObject(rep);
	ver_store(c, ns, v);
	n = snprintf(msg, sizeof(msg), "v%s|%llu", ns, (unsigned long long) v);
	publish(c, msg, (size_t) n);
	if (version != NULL)
		*version = v;
	return (CM_OK);
}

int
cm_cache_warm(cm_cache *c, const char *ns, const void *key, size_t klen)
{
	struct names n;
	struct l2_read r;
	struct outcome o;
	int64_t now = clock_ms(c);
	int rv;

	if ((rv = names_for(c, ns, key, klen, &n)) != CM_OK)
		return (rv);
	l2_get(c, &n, &r);
	rv = r.down ? CM_UNAVAILABLE : CM_NOT_FOUND;
	if (r.found && is_value(r.h.kind) && r.h.soft_ms > now) {
		memset(&o, 0, sizeof(o));
		from_l2(c, &n, &r, cm_l1_epoch(c->l1, n.l1, n.l1len), now,
		        CM_CACHE_L2, &o);
		rv = CM_OK;
	}
	free(r.raw);
	names_free(&n);
	return (rv);
}

bool
cm_cache_l1_has(cm_cache *c, const char *ns, const void *key, size_t klen)
{
	cm_cache_value v;
	cm_cache_ticket t;
	int rv;

	memset(&v, 0, sizeof(v));
	rv = cm_cache_l1_lookup(c, ns, key, klen, &v, &t);
	free(v.data);
	return (rv == CM_OK || rv == CM_NOT_FOUND);
}

void
cm_cache_get_stats(cm_cache *c, cm_cache_stats *o)
{
	cm_l1_stats ls;

	memset(o, 0, sizeof(*o));
#define LD(f) o->f = atomic_load(&c->f)
	LD(l1_hits);
	LD(l1_misses);
	LD(l2_hits);
	LD(l2_misses);
	LD(negative_hits);
	LD(loads);
	LD(load_errors);
	LD(stale_served);
	LD(lease_waits);
	LD(flight_joins);
	LD(early_refreshes);
	LD(invalidations);
	LD(l1_clears);
	LD(get_us_total);
	LD(gets);
#undef LD
	if (c->l1 != NULL) {
		cm_l1_get_stats(c->l1, &ls);
		o->l1_evictions = ls.evictions;
		o->l1_rejected = ls.rejected;
		o->l1_entries = ls.entries;
		o->l1_bytes = ls.bytes;
	}
}

bool
cm_cache_subscribed(cm_cache *c)
{
	return (c->cfg.no_subscribe || cm_invalidator_subscribed(c->inv));
}

/* What the engine's connections have seen; a PING on this thread's own
 * (bounded by redis_timeout_ms) only when that is over a second old. */
bool
cm_cache_redis_ok(cm_cache *c)
{
	return (cm_redis_check(rconn(c), 1000));
}
