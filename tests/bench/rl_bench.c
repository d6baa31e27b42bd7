/*
 * rl_bench: checks per second against the ratelimiter service directly
 * (ratelimiter.RateLimiter/Check over NNG), with T client threads each
 * keeping one call in flight, spread over K client addresses.  Prints
 * checks/s, p50 and p99; it is not a test.
 *
 *   rl_bench ADDR [seconds] [threads] [keys] [path]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ratelimiter.pb-c.h"
#include "rpc/rpc.h"
#include "util.h"

#define MAX_SAMPLES (1 << 20)

static const char *addr, *path = "/bench";
static int seconds = 5, nkeys = 1000;

struct th {
	pthread_t t;
	int id;
	long n, errors, denied;
	int32_t *lat; /* microseconds */
	size_t nlat;
};

static void *
run(void *arg)
{
	struct th *th = arg;
	cm_rpc_client *c;
	int64_t end;
	cm_arena a;
	char ip[32];
	int i;

	if (cm_rpc_client_open(&c, addr) != 0)
		return (NULL);
	for (i = 0; i < 300 && cm_rpc_client_connected(c) == 0; i++)
		usleep(10000);
	cm_arena_init(&a);
	end = cm_mono_ms() + seconds * 1000;
	while (cm_mono_ms() < end) {
		Ratelimiter__CheckRequest in = RATELIMITER__CHECK_REQUEST__INIT;
		Ratelimiter__CheckResponse *out = NULL;
		int64_t t0 = cm_mono_us();
		int st;

		snprintf(ip, sizeof(ip), "10.%d.%d.%d", th->id,
		         (int) (th->n % nkeys) / 250, (int) (th->n % 250));
		in.method = cm_pbstr("GET");
		in.path = cm_pbstr(path);
		in.ip = ip;
		in.user = cm_pbstr("");
		st = cm_rpc_call(c, NULL, "ratelimiter.RateLimiter/Check",
		                 &in.base,
		                 &ratelimiter__check_response__descriptor,
		                 (ProtobufCMessage **) &out, cm_now_ms() + 1000,
		                 &a, NULL, 0);
		if (st != CM_OK)
			th->errors++;
		else if (!out->allowed)
			th->denied++;
		if (th->nlat < MAX_SAMPLES)
			th->lat[th->nlat++] = (int32_t) (cm_mono_us() - t0);
		th->n++;
		cm_arena_reset(&a);
	}
	cm_arena_fini(&a);
	cm_rpc_client_close(c);
	return (NULL);
}

static int
cmp(const void *x, const void *y)
{
	int32_t a = *(const int32_t *) x, b = *(const int32_t *) y;

	return ((a > b) - (a < b));
}

int
main(int argc, char **argv)
{
	struct th *ths;
	int nth = 16, i;
	long total = 0, errors = 0, denied = 0;
	int32_t *all;
	size_t nall = 0;

	if (argc < 2) {
		fprintf(
		    stderr,
		    "usage: rl_bench ADDR [seconds] [threads] [keys] [path]\n");
		return (1);
	}
	addr = argv[1];
	if (argc > 2)
		seconds = atoi(argv[2]);
	if (argc > 3)
		nth = atoi(argv[3]);
	if (argc > 4)
		nkeys = atoi(argv[4]);
	if (argc > 5)
		path = argv[5];
	if (nth < 1 || nkeys < 1 || seconds < 1)
		return (1);
	ths = calloc((size_t) nth, sizeof(*ths));
	for (i = 0; i < nth; i++) {
		ths[i].id = i;
		ths[i].lat = malloc(MAX_SAMPLES * sizeof(int32_t));
		pthread_create(&ths[i].t, NULL, run, &ths[i]);
	}
	for (i = 0; i < nth; i++) {
		pthread_join(ths[i].t, NULL);
		total += ths[i].n;
		errors += ths[i].errors;
		denied += ths[i].denied;
		nall += ths[i].nlat;
	}
	all = malloc((nall + 1) * sizeof(int32_t));
	nall = 0;
	for (i = 0; i < nth; i++) {
		memcpy(all + nall, ths[i].lat, ths[i].nlat * sizeof(int32_t));
		nall += ths[i].nlat;
		free(ths[i].lat);
	}
	qsort(all, nall, sizeof(int32_t), cmp);
	printf("checks_per_s=%.0f p50_ms=%.3f p99_ms=%.3f errors=%ld "
	       "denied=%ld threads=%d keys=%d\n",
	       (double) total / seconds, nall ? all[nall / 2] / 1000.0 : 0.0,
	       nall ? all[nall * 99 / 100] / 1000.0 : 0.0, errors, denied, nth,
	       nkeys);
	free(all);
	free(ths);
	return (0);
}
