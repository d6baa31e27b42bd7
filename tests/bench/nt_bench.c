/*
 * nt_bench: load for the notifier benchmark (tests/bench/notifier.sh),
 * over RPC as a service of the stack calls it: every call carries the
 * metadata origin=service, which the gateway never sends and the
 * notifier's handlers take for a service's own call (handlers.c).  Calls
 * are asynchronous, WINDOW of them in flight on one client, as the
 * gateway keeps its calls in flight.  Prints figures; it is not a test.
 *
 *   nt_bench send ADDR SECONDS WINDOW
 *       Send for SECONDS (push to users acc0..acc999, who have no
 *       device, scheduled a day ahead so that they stay out of the
 *       streams); prints "accepted/s p50_ms p99_ms errors accepted".
 *   nt_bench devices ADDR USERS URL
 *       AddDevice for users nb0..nb<USERS-1> (as each user), endpoint
 *       URL/<user>.
 *   nt_bench load ADDR USERS NORMAL HIGH RATE OUT
 *       NORMAL normal-priority pushes spread over users nb*, as fast as a
 *       window of 64 goes; once half of them are accepted, HIGH
 *       high-priority ones at RATE a second beside them;
 *       writes one line per accepted Send to OUT:
 *       "<n|h> <id> <send time, Unix s with ms fraction>", the time taken
 *       just before the call, so Send-to-arrival includes the accept.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "notifier.pb-c.h"
#include "rpc/rpc.h"
#include "util.h"

#define MAX_SAMPLES (1 << 21)
#define PAYLOAD_MAX 1024
#define DEADLINE_MS 10000

enum kind { K_SEND, K_DEVICE, K_NORMAL, K_HIGH };

struct rec {
	char kind;
	int64_t id;
	double t_s;
};

struct bench {
	cm_rpc_client *cli;
	const char *url; /* devices: endpoint base */
	int users;
	atomic_long issued, done, errors;
	atomic_long hissued, hdone; /* the high ones of load */
	long limit;                 /* calls to issue, 0 = until stop */
	atomic_int stop;
	int64_t *lat_us;
	atomic_long nlat;
	struct rec *recs;
	atomic_long nrecs;
	long maxrecs;
	long ok_at_stop; /* answers counted when the time was up */
};

struct slot {
	struct bench *b;
	enum kind kind;
	long n;
	int64_t t0_us;
	double t0_s;
	char user[32];
	uint8_t buf[PAYLOAD_MAX];
};

static struct bench B;

static double
wall_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((double) ts.tv_sec + ts.tv_nsec / 1e9);
}

static void issue(struct slot *s);

static void
on_done(void *arg, const cm_rpc_result *res)
{
	struct slot *s = arg;
	struct bench *b = s->b;
	long i;

	if (res->status != CM_OK) {
		if (atomic_fetch_add(&b->errors, 1) < 5)
			fprintf(stderr, "nt_bench: call failed: %d %s\n",
			        res->status, res->message ? res->message : "");
	} else {
		if ((i = atomic_fetch_add(&b->nlat, 1)) < MAX_SAMPLES)
			b->lat_us[i] = cm_mono_us() - s->t0_us;
		if (s->kind == K_NORMAL || s->kind == K_HIGH) {
			Notifier__SendResponse *r =
			    notifier__send_response__unpack(NULL, res->len,
			                                    res->payload);
			if (r != NULL &&
			    (i = atomic_fetch_add(&b->nrecs, 1)) < b->maxrecs) {
				b->recs[i].kind = s->kind == K_HIGH ? 'h' : 'n';
				b->recs[i].id = strtoll(r->id, NULL, 10);
				b->recs[i].t_s = s->t0_s;
			}
			notifier__send_response__free_unpacked(r, NULL);
		}
	}
	atomic_fetch_add(s->kind == K_HIGH ? &b->hdone : &b->done, 1);
	if (s->kind != K_HIGH && !atomic_load(&b->stop))
		issue(s);
	else if (s->kind == K_HIGH)
		free(s);
}

/* Packs the request of call n of the slot's kind into s->buf. */
static size_t
pack(struct slot *s, const char **method)
{
	Notifier__SendRequest rq = NOTIFIER__SEND_REQUEST__INIT;
	Notifier__AddDeviceRequest dv = NOTIFIER__ADD_DEVICE_REQUEST__INIT;
	char *channels[1] = {cm_pbstr("push")}, title[64], url[256];

	if (s->kind == K_DEVICE) {
		snprintf(s->user, sizeof(s->user), "nb%ld", s->n);
		snprintf(url, sizeof(url), "%s/%s", s->b->url, s->user);
		dv.endpoint = url;
		dv.platform = cm_pbstr("bench");
		*method = "notifier.Notifier/AddDevice";
		return (notifier__add_device_request__get_packed_size(&dv) >
		                PAYLOAD_MAX
		            ? 0
		            : notifier__add_device_request__pack(&dv, s->buf));
	}
	snprintf(s->user, sizeof(s->user), "%s%ld",
	         s->kind == K_SEND ? "acc" : "nb", s->n % s->b->users);
	snprintf(title, sizeof(title), "bench %ld", s->n);
	rq.user = s->user;
	rq.type = cm_pbstr("bench.push");
	rq.title = title;
	rq.body = cm_pbstr("a notification of the benchmark");
	rq.n_channels = 1;
	rq.channels = channels;
	rq.priority = s->kind == K_HIGH ? NOTIFIER__PRIORITY__PRIORITY_HIGH
	                                : NOTIFIER__PRIORITY__PRIORITY_NORMAL;
	if (s->kind == K_SEND) /* scheduled: part 2 starts on empty queues */
		rq.send_at = (int64_t) time(NULL) + 86400;
	*method = "notifier.Notifier/Send";
	return (notifier__send_request__pack(&rq, s->buf));
}

static void
issue(struct slot *s)
{
	struct bench *b = s->b;
	cm_rpc_meta meta = {0};
	const char *method;
	size_t len;
	long n = s->kind == K_HIGH ? atomic_fetch_add(&b->hissued, 1)
	                           : atomic_fetch_add(&b->issued, 1);

	if (s->kind != K_HIGH && b->limit > 0 && n >= b->limit)
		return;
	s->n = n;
	len = pack(s, &method);
	if (s->kind == K_DEVICE) {
		meta.user_id = s->user;
	} else {
		meta.nmeta = 1;
		meta.meta[0].key = "origin";
		meta.meta[0].value = "service";
	}
	s->t0_s = wall_s();
	s->t0_us = cm_mono_us();
	cm_rpc_call_async(b->cli, &meta, method, s->buf, len,
	                  cm_now_ms() + DEADLINE_MS, on_done, s);
}

static int
cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

	return ((x > y) - (x < y));
}

static double
pct_ms(double p)
{
	long n = atomic_load(&B.nlat);

	if (n > MAX_SAMPLES)
		n = MAX_SAMPLES;
	if (n == 0)
		return (0);
	qsort(B.lat_us, (size_t) n, sizeof(*B.lat_us), cmp64);
	return (
	    B.lat_us[(long) (n * p / 100) < n ? (long) (n * p / 100) : n - 1] /
	    1000.0);
}

static void send_high(long nh, double rate);

/* Starts window slots of kind k and waits until limit calls are done
 * (limit > 0) or secs have passed; returns the seconds taken.  With nh,
 * once half the limit is done, sends nh high ones at rate meanwhile. */
static double
run_window(enum kind k, int window, long limit, int secs, long nh, double rate)
{
	struct slot *slots = calloc((size_t) window, sizeof(*slots));
	int64_t t0 = cm_mono_us(), end = t0 + (int64_t) secs * 1000000;
	double el;

	if (slots == NULL)
		exit(1);
	atomic_store(&B.stop, 0);
	atomic_store(&B.issued, 0);
	atomic_store(&B.done, 0);
	B.limit = limit;
	for (int i = 0; i < window; i++) {
		slots[i].b = &B;
		slots[i].kind = k;
		issue(&slots[i]);
	}
	if (nh > 0) {
		while (atomic_load(&B.done) < limit / 2)
			usleep(1000);
		send_high(nh, rate);
	}
	while (limit > 0 ? atomic_load(&B.done) < limit : cm_mono_us() < end)
		usleep(1000);
	el = (cm_mono_us() - t0) / 1e6;
	B.ok_at_stop = atomic_load(&B.nlat);
	atomic_store(&B.stop, 1);
	/* What is still in flight ends within the deadline. */
	for (int i = 0; i < DEADLINE_MS / 10 &&
	                atomic_load(&B.done) < atomic_load(&B.issued) &&
	                (limit == 0 || atomic_load(&B.done) < limit);
	     i++)
		usleep(10000);
	usleep(100000);
	free(slots);
	return (el);
}

/* The high ones at a steady rate, each on its own schedule (not after
 * the previous answer), while the normal ones go on. */
static void
send_high(long nh, double rate)
{
	int64_t t0 = cm_mono_us();

	for (long i = 0; i < nh; i++) {
		int64_t at = t0 + (int64_t) (i * 1e6 / rate);
		struct slot *s = calloc(1, sizeof(*s));

		while (cm_mono_us() < at)
			usleep(200);
		if (s == NULL)
			exit(1);
		s->b = &B;
		s->kind = K_HIGH;
		issue(s);
	}
}

static int
usage(void)
{
	fprintf(stderr, "usage: nt_bench send ADDR SECONDS WINDOW\n"
	                "       nt_bench devices ADDR USERS URL\n"
	                "       nt_bench load ADDR USERS NORMAL HIGH RATE "
	                "OUT\n");
	return (1);
}

int
main(int argc, char **argv)
{
	if (argc < 3)
		return (usage());
	cm_rpc_set_name("bench");
	if (cm_rpc_client_open(&B.cli, argv[2]) != 0) {
		fprintf(stderr, "nt_bench: cannot dial %s\n", argv[2]);
		return (1);
	}
	for (int i = 0; i < 500 && cm_rpc_client_connected(B.cli) == 0; i++)
		usleep(10000);
	if ((B.lat_us = calloc(MAX_SAMPLES, sizeof(*B.lat_us))) == NULL)
		return (1);
	B.users = 1000;

	if (strcmp(argv[1], "send") == 0 && argc == 5) {
		double el =
		    run_window(K_SEND, atoi(argv[4]), 0, atoi(argv[3]), 0, 0);
		long ok = B.ok_at_stop;

		printf("%.0f %.3f %.3f %ld %ld\n", ok / el, pct_ms(50),
		       pct_ms(99), atomic_load(&B.errors), ok);
	} else if (strcmp(argv[1], "devices") == 0 && argc == 5) {
		B.users = atoi(argv[3]);
		B.url = argv[4];
		run_window(K_DEVICE, 16, B.users, 0, 0, 0);
		printf("%ld devices added, %ld errors\n", atomic_load(&B.nlat),
		       atomic_load(&B.errors));
	} else if (strcmp(argv[1], "load") == 0 && argc == 8) {
		long nn = atol(argv[4]), nh = atol(argv[5]);
		double rate = atof(argv[6]), el;
		FILE *f;

		B.users = atoi(argv[3]);
		B.maxrecs = nn + nh;
		if ((B.recs = calloc((size_t) B.maxrecs, sizeof(*B.recs))) ==
		    NULL)
			return (1);
		el = run_window(K_NORMAL, 64, nn, 0, nh, rate);
		fprintf(stderr,
		        "nt_bench: %ld normal sends in %.2f s (%.0f/s)\n", nn,
		        el, nn / el);
		for (int i = 0; i < 1000 && atomic_load(&B.hdone) < nh; i++)
			usleep(10000);
		if ((f = fopen(argv[7], "w")) == NULL)
			return (1);
		for (long i = 0; i < atomic_load(&B.nrecs) && i < B.maxrecs;
		     i++)
			fprintf(f, "%c %lld %.3f\n", B.recs[i].kind,
			        (long long) B.recs[i].id, B.recs[i].t_s);
		fclose(f);
		fprintf(stderr, "nt_bench: %ld high sends, %ld errors\n", nh,
		        atomic_load(&B.errors));
	} else {
		return (usage());
	}
	cm_rpc_client_close(B.cli);
	return (atomic_load(&B.errors) > 0 ? 2 : 0);
}
