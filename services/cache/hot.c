/*
 * Hot-key tracking: a top-K in Redis.
 *
 * Every Get that finds a value calls cachesvc_hot_record, which bumps a
 * counter in a small in-memory table (a mutex and an open-addressed hash of
 * HOT_SLOTS entries; when it is full, new keys are simply not counted until
 * the next flush: the hot ones are already in).  A thread flushes the table
 * every flush_ms with one pipelined ZINCRBY per key into "<prefix>:hot",
 * then trims the set to the `keep` best.  Every decay_ms the scores are
 * halved (ZUNIONSTORE with WEIGHTS 0.5), so yesterday's hot keys fade.
 * Every instance adds to the same set: warming follows the fleet's load.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cachesvc.h"
#include "log.h"
#include "redis.h"
#include "util.h"

#define HOT_SLOTS 4096

struct hot_slot {
	char *member; /* ns "|" key, malloc'd; NULL: free */
	uint64_t count;
};

struct cachesvc_hot {
	pthread_mutex_t mu;
	struct hot_slot *slots;
	size_t used;
	pthread_mutex_t rmu; /* guards r */
	cm_redis *r;
	char zkey[128];
	int flush_ms, decay_ms;
	size_t keep;
	pthread_t thread;
	pthread_mutex_t stop_mu;
	pthread_cond_t stop_cv;
	bool stop;
};

static uint64_t
hot_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char) *s) * 1099511628211ULL;
	return (h);
}

void
cachesvc_hot_record(struct cachesvc_hot *h, const char *ns, const char *key)
{
	char buf[600];
	size_t i;

	if (h == NULL || (size_t) snprintf(buf, sizeof(buf), "%s|%s", ns,
	                                   key) >= sizeof(buf))
		return;
	pthread_mutex_lock(&h->mu);
	i = hot_hash(buf) & (HOT_SLOTS - 1);
	for (size_t n = 0; n < HOT_SLOTS; n++, i = (i + 1) & (HOT_SLOTS - 1)) {
		struct hot_slot *s = &h->slots[i];

		if (s->member == NULL) {
			if (h->used >= HOT_SLOTS / 2)
				break; /* full enough: skip until the flush */
			if ((s->member = strdup(buf)) == NULL)
				break;
			s->count = 1;
			h->used++;
			break;
		}
		if (strcmp(s->member, buf) == 0) {
			s->count++;
			break;
		}
	}
	pthread_mutex_unlock(&h->mu);
}

/* Takes the table's content (swaps in an empty one) and writes it. */
static void
hot_flush(struct cachesvc_hot *h)
{
	struct hot_slot *old, *fresh;
	size_t n = 0;
	redisReply *rep;

	if ((fresh = calloc(HOT_SLOTS, sizeof(*fresh))) == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	old = h->slots;
	h->slots = fresh;
	h->used = 0;
	pthread_mutex_unlock(&h->mu);
	pthread_mutex_lock(&h->rmu);
	for (size_t i = 0; i < HOT_SLOTS; i++)
		if (old[i].member != NULL &&
		    cm_redis_append(h->r, "ZINCRBY %s %llu %s", h->zkey,
		                    (unsigned long long) old[i].count,
		                    old[i].member) == 0)
			n++;
	if (n > 0 && cm_redis_append(h->r, "ZREMRANGEBYRANK %s 0 %lld", h->zkey,
	                             -(long long) h->keep - 1) == 0)
		n++;
	for (size_t i = 0; i < n; i++) {
		if ((rep = cm_redis_get_reply(h->r)) == NULL)
			break;
		freeReplyObject(rep);
	}
	pthread_mutex_unlock(&h->rmu);
	for (size_t i = 0; i < HOT_SLOTS; i++)
		free(old[i].member);
	free(old);
}

static void
hot_decay(struct cachesvc_hot *h)
{
	redisReply *rep;

	pthread_mutex_lock(&h->rmu);
	rep = cm_redis_cmd(h->r, "ZUNIONSTORE %s 1 %s WEIGHTS 0.5", h->zkey,
	                   h->zkey);
	if (rep != NULL)
		freeReplyObject(rep);
	pthread_mutex_unlock(&h->rmu);
}

static void *
hot_main(void *arg)
{
	struct cachesvc_hot *h = arg;
	int64_t next_decay = cm_mono_ms() + h->decay_ms;
	struct timespec ts;
	bool stop = false;

	while (!stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += h->flush_ms / 1000;
		ts.tv_nsec += (long) (h->flush_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&h->stop_mu);
		if (!h->stop)
			pthread_cond_timedwait(&h->stop_cv, &h->stop_mu, &ts);
		stop = h->stop;
		pthread_mutex_unlock(&h->stop_mu);
		hot_flush(h);
		if (cm_mono_ms() >= next_decay) {
			hot_decay(h);
			next_decay = cm_mono_ms() + h->decay_ms;
		}
	}
	return (NULL);
}

struct cachesvc_hot *
cachesvc_hot_start(const char *redis_url, const char *prefix, int flush_ms,
                   int decay_ms, size_t keep)
{
	struct cachesvc_hot *h;

	if ((h = calloc(1, sizeof(*h))) == NULL ||
	    (h->slots = calloc(HOT_SLOTS, sizeof(*h->slots))) == NULL)
		fatal("event=hot_start");
	pthread_mutex_init(&h->mu, NULL);
	pthread_mutex_init(&h->rmu, NULL);
	pthread_mutex_init(&h->stop_mu, NULL);
	pthread_cond_init(&h->stop_cv, NULL);
	h->r = cm_redis_new(redis_url, 500);
	snprintf(h->zkey, sizeof(h->zkey), "%s:hot", prefix);
	h->flush_ms = flush_ms;
	h->decay_ms = decay_ms;
	h->keep = keep;
	if (pthread_create(&h->thread, NULL, hot_main, h) != 0)
		fatalx("event=hot_start");
	return (h);
}

void
cachesvc_hot_stop(struct cachesvc_hot *h)
{
	if (h == NULL)
		return;
	pthread_mutex_lock(&h->stop_mu);
	h->stop = true;
	pthread_cond_signal(&h->stop_cv);
	pthread_mutex_unlock(&h->stop_mu);
	pthread_join(h->thread, NULL); /* its last round flushes */
	for (size_t i = 0; i < HOT_SLOTS; i++)
		free(h->slots[i].member);
	free(h->slots);
	cm_redis_free(h->r);
	pthread_mutex_destroy(&h->mu);
	pthread_mutex_destroy(&h->rmu);
	pthread_mutex_destroy(&h->stop_mu);
	pthread_cond_destroy(&h->stop_cv);
	free(h);
}

int64_t
cachesvc_hot_warm(struct cachesvc_hot *h, cm_cache *c, const char *ns,
                  size_t limit)
{
	redisReply *rep;
	int64_t n = 0;
	size_t nsl = ns != NULL ? strlen(ns) : 0;

	pthread_mutex_lock(&h->rmu);
	rep = cm_redis_cmd(h->r, "ZREVRANGE %s 0 %lld", h->zkey,
	                   (long long) (nsl > 0 ? h->keep : limit) - 1);
	pthread_mutex_unlock(&h->rmu);
	if (rep == NULL)
		return (0);
	for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY &&
	                   i < rep->elements && (size_t) n < limit;
	     i++) {
		redisReply *e = rep->element[i];
		char *bar, *m;

		if (e->type != REDIS_REPLY_STRING ||
		    (bar = strchr(e->str, '|')) == NULL)
			continue;
		if ((m = strdup(e->str)) == NULL)
			break;
		m[bar - e->str] = '\0';
		if ((nsl == 0 || strcmp(m, ns) == 0) &&
		    cm_cache_warm(c, m, m + (bar - e->str) + 1,
		                  strlen(m + (bar - e->str) + 1)) == 0)
			n++;
		free(m);
	}
	freeReplyObject(rep);
	return (n);
}
