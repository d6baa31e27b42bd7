/*
 * Process-wide metrics: counters and latency histograms identified by a
 * name and a label set, rendered in Prometheus text format.  Lookup takes a
 * lock; updates are lock-free atomics, so hot paths look a metric up once
 * and keep the pointer (metrics are never freed while the process runs).
 */
#ifndef CM_METRICS_H
#define CM_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct cm_counter cm_counter;
typedef struct cm_histogram cm_histogram;

/*
 * name: a Prometheus metric name; labels: the text between the braces,
 * e.g. "method=\"Create\",code=\"OK\"" (or "" for none); help: one line.
 * Returns the same object for the same name and labels.
 */
cm_counter *cm_counter_get(const char *name, const char *labels,
                           const char *help);
void cm_counter_add(cm_counter *c, uint64_t v);
uint64_t cm_counter_value(const cm_counter *c);

/* Latency histogram in seconds, buckets from 50us to 10s. */
cm_histogram *cm_histogram_get(const char *name, const char *labels,
                               const char *help);
void cm_histogram_observe_us(cm_histogram *h, int64_t us);

/*
 * Renders every metric into a malloc'd NUL-terminated string (caller
 * frees).  Returns NULL on out-of-memory.
 */
char *cm_metrics_render(void);

#endif
