/*
 * Metric registry.  Families (one per name) hold series (one per label
 * set).  Lookups walk short lists under one mutex; that is fine because
 * callers look up once and keep the pointer.  Values are C11 atomics with
 * relaxed ordering: a scrape may see a histogram's count and sum a few
 * observations apart, which Prometheus tolerates.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "log.h"
#include "metrics.h"

static const int64_t hist_bounds_us[] = {
    50,    100,   250,    500,    1000,   2500,    5000,    10000,
    25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 10000000};
#define NBUCKETS (sizeof(hist_bounds_us) / sizeof(hist_bounds_us[0]))

enum metric_type { METRIC_COUNTER, METRIC_HISTOGRAM };

struct cm_counter {
	_Atomic uint64_t v;
};

struct cm_histogram {
	_Atomic uint64_t buckets[NBUCKETS + 1]; /* last one is +Inf */
	_Atomic uint64_t count;
	_Atomic uint64_t sum_us;
};

struct series {
	struct series *next;
	char *labels;
	union {
		struct cm_counter c;
		struct cm_histogram h;
	} u;
};

struct family {
	struct family *next;
	char *name;
	char *help;
	enum metric_type type;
	struct series *series, **tail;
};

static pthread_mutex_t registry_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct family *families, **families_tail = &families;

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		fatalx("event=oom where=metrics");
	return (p);
}

/* Finds or creates the series; called with the registry lock held. */
static struct series *
series_get(const char *name, const char *labels, const char *help,
           enum metric_type type)
{
	struct family *f;
	struct series *s;

	for (f = families; f != NULL; f = f->next)
		if (strcmp(f->name, name) == 0)
			break;
	if (f == NULL) {
		if ((f = calloc(1, sizeof(*f))) == NULL)
			fatalx("event=oom where=metrics");
		f->name = xstrdup(name);
		f->help = xstrdup(help != NULL ? help : name);
		f->type = type;
		f->tail = &f->series;
		*families_tail = f;
		families_tail = &f->next;
	} else if (f->type != type) {
		fatalx("event=metric_type_clash name=%s", name);
	}
	for (s = f->series; s != NULL; s = s->next)
		if (strcmp(s->labels, labels) == 0)
			return (s);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		fatalx("event=oom where=metrics");
	s->labels = xstrdup(labels);
	*f->tail = s;
	f->tail = &s->next;
	return (s);
}

cm_counter *
cm_counter_get(const char *name, const char *labels, const char *help)
{
	struct series *s;

	pthread_mutex_lock(&registry_mtx);
	s = series_get(name, labels, help, METRIC_COUNTER);
	pthread_mutex_unlock(&registry_mtx);
	return (&s->u.c);
}

void
cm_counter_add(cm_counter *c, uint64_t v)
{
	atomic_fetch_add_explicit(&c->v, v, memory_order_relaxed);
}

uint64_t
cm_counter_value(const cm_counter *c)
{
	return (atomic_load_explicit(&c->v, memory_order_relaxed));
}

cm_histogram *
cm_histogram_get(const char *name, const char *labels, const char *help)
{
	struct series *s;

	pthread_mutex_lock(&registry_mtx);
	s = series_get(name, labels, help, METRIC_HISTOGRAM);
	pthread_mutex_unlock(&registry_mtx);
	return (&s->u.h);
}

void
cm_histogram_observe_us(cm_histogram *h, int64_t us)
{
	size_t i;

	if (us < 0)
		us = 0;
	for (i = 0; i < NBUCKETS; i++)
		if (us <= hist_bounds_us[i])
			break;
	atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, (uint64_t) us,
	                          memory_order_relaxed);
}

struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

static void buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = 1;
			return;
		}
		if ((size_t) n < b->cap - b->len) {
			b->len += (size_t) n;
			return;
		}
		size_t ncap = (b->cap + (size_t) n) * 2;
		char *np = realloc(b->p, ncap);
		if (np == NULL) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

/* Label text for a series plus one extra label (le="..."). */
static void
labels_with(struct buf *b, const char *labels, const char *extra)
{
	if (*labels == '\0' && extra == NULL)
		return;
	buf_printf(b, "{%s%s%s}", labels,
	           (*labels != '\0' && extra != NULL) ? "," : "",
	           extra != NULL ? extra : "");
}

char *
cm_metrics_render(void)
{
	struct buf b = {0};
	struct family *f;
	struct series *s;

	if ((b.p = malloc(4096)) == NULL)
		return (NULL);
	b.cap = 4096;
	b.p[0] = '\0';
	pthread_mutex_lock(&registry_mtx);
	for (f = families; f != NULL; f = f->next) {
		buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help,
		           f->name,
		           f->type == METRIC_COUNTER ? "counter" : "histogram");
		for (s = f->series; s != NULL; s = s->next) {
			if (f->type == METRIC_COUNTER) {
				buf_printf(&b, "%s", f->name);
				labels_with(&b, s->labels, NULL);
				buf_printf(&b, " %llu\n",
				           (unsigned long long)
				               cm_counter_value(&s->u.c));
				continue;
			}
			uint64_t cum = 0;
			char le[48];
			for (size_t i = 0; i <= NBUCKETS; i++) {
				cum += atomic_load_explicit(
				    &s->u.h.buckets[i], memory_order_relaxed);
				if (i < NBUCKETS)
					snprintf(le, sizeof(le), "le=\"%g\"",
					         (double) hist_bounds_us[i] /
					             1e6);
				else
					snprintf(le, sizeof(le), "le=\"+Inf\"");
				buf_printf(&b, "%s_bucket", f->name);
				labels_with(&b, s->labels, le);
				buf_printf(&b, " %llu\n",
				           (unsigned long long) cum);
			}
			buf_printf(&b, "%s_sum", f->name);
			labels_with(&b, s->labels, NULL);
			buf_printf(&b, " %.6f\n",
			           (double) atomic_load_explicit(
			               &s->u.h.sum_us, memory_order_relaxed) /
			               1e6);
			buf_printf(&b, "%s_count", f->name);
			labels_with(&b, s->labels, NULL);
			buf_printf(&b, " %llu\n",
			           (unsigned long long) atomic_load_explicit(
			               &s->u.h.count, memory_order_relaxed));
		}
	}
	pthread_mutex_unlock(&registry_mtx);
	if (b.oom) {
		free(b.p);
		return (NULL);
	}
	return (b.p);
}
