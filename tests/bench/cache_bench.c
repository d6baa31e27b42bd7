/*
 * cache_bench: Get of one L1-resident key through the cache service's RPC,
 * the way redis-benchmark measures GET: `clients` callers, each with one
 * call in flight (no pipelining), issuing its next call when the reply
 * arrives.  The callers share `sockets` client sockets (one TCP connection
 * each), so the load does not depend on how many threads this process has.
 * Every reply is checked to carry the value that was set.  Prints calls/s
 * and latency percentiles; not a test.
 *
 *   cache_bench ADDR [seconds] [clients] [sockets]
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.pb-c.h"
#include "rpc/rpc.h"
#include "util.h"

#define METHOD     "cache.Cache/Get"
#define VALUE      "https://example.com/a/value"
#define LAT_BUCKET 10    /* us per latency bucket */
#define LAT_N      10000 /* buckets: up to 100 ms */

struct caller {
	cm_rpc_client *c;
	int64_t sent_us;
};

/* The bench calls as a service of the stack would (see cachesvc.c). */
static const cm_rpc_meta own = {
    .nmeta = 1, .meta = {{.key = "origin", .value = "service"}}};

static uint8_t req[128];
static size_t reqlen;
static int64_t start_ms, end_ms;
static atomic_long calls, errors, wrong;
static atomic_int live;
static atomic_uint lat[LAT_N + 1];

static void send_next(struct caller *k);

static void
done(void *arg, const cm_rpc_result *r)
{
	struct caller *k = arg;
	int64_t us = cm_mono_us() - k->sent_us;
	Cache__GetResponse *rep;

	if (r->status != CM_OK) {
		atomic_fetch_add(&errors, 1);
	} else if ((rep = cache__get_response__unpack(NULL, r->len,
	                                              r->payload)) == NULL ||
	           rep->value.len != strlen(VALUE) ||
	           memcmp(rep->value.data, VALUE, rep->value.len) != 0) {
		atomic_fetch_add(&wrong, 1);
		cache__get_response__free_unpacked(rep, NULL);
	} else {
		cache__get_response__free_unpacked(rep, NULL);
		atomic_fetch_add(&calls, 1);
		atomic_fetch_add(
		    &lat[us / LAT_BUCKET < LAT_N ? us / LAT_BUCKET : LAT_N], 1);
	}
	if (cm_now_ms() < end_ms)
		send_next(k);
	else
		atomic_fetch_sub(&live, 1);
}

static void
send_next(struct caller *k)
{
	k->sent_us = cm_mono_us();
	cm_rpc_call_async(k->c, &own, METHOD, req, reqlen, cm_now_ms() + 2000,
	                  done, k);
}

static double
percentile(double p)
{
	long total = atomic_load(&calls), seen = 0;

	for (int i = 0; i <= LAT_N; i++) {
		seen += atomic_load(&lat[i]);
		if (seen > 0 && (double) seen >= p * (double) total)
			return ((i + 1) * LAT_BUCKET / 1000.0);
	}
	return (0);
}

/* Sets the key once, so that every Get is an L1 hit. */
static int
set_key(cm_rpc_client *c)
{
	Cache__SetRequest st = CACHE__SET_REQUEST__INIT;
	ProtobufCMessage *out;
	cm_arena a;
	int rv;

	st.ns = "bench";
	st.key = "hot";
	st.value.data = (uint8_t *) VALUE;
	st.value.len = strlen(VALUE);
	st.ttl = 3600;
	cm_arena_init(&a);
	rv = cm_rpc_call(c, &own, "cache.Cache/Set", &st.base,
	                 &cache__set_response__descriptor, &out,
	                 cm_now_ms() + 2000, &a, NULL, 0);
	cm_arena_fini(&a);
	return (rv);
}

int
main(int argc, char **argv)
{
	Cache__GetRequest rq = CACHE__GET_REQUEST__INIT;
	int seconds = 10, nclients = 50, nsockets = 2;
	cm_rpc_client *socks[64];
	struct caller *callers;
	double secs;

	if (argc < 2) {
		fprintf(stderr, "usage: cache_bench ADDR [seconds] [clients] "
		                "[sockets]\n");
		return (1);
	}
	if (argc > 2)
		seconds = atoi(argv[2]);
	if (argc > 3)
		nclients = atoi(argv[3]);
	if (argc > 4)
		nsockets = atoi(argv[4]);
	if (seconds < 1 || nclients < 1 || nclients > 4096 || nsockets < 1 ||
	    nsockets > 64 || nsockets > nclients) {
		fprintf(stderr, "cache_bench: bad arguments\n");
		return (1);
	}
	for (int i = 0; i < nsockets; i++) {
		if (cm_rpc_client_open(&socks[i], argv[1]) != 0)
			return (2);
		for (int t = 0; t < 300 && !cm_rpc_client_connected(socks[i]);
		     t++)
			usleep(10000);
	}
	if (set_key(socks[0]) != CM_OK) {
		fprintf(stderr, "cache_bench: Set failed\n");
		return (2);
	}
	rq.ns = "bench";
	rq.key = "hot";
	reqlen = protobuf_c_message_pack(&rq.base, req);
	if ((callers = calloc((size_t) nclients, sizeof(*callers))) == NULL)
		return (2);
	start_ms = cm_now_ms();
	end_ms = start_ms + seconds * 1000L;
	atomic_store(&live, nclients);
	for (int i = 0; i < nclients; i++) {
		callers[i].c = socks[i % nsockets];
		send_next(&callers[i]);
	}
	while (atomic_load(&live) > 0)
		usleep(10000);
	secs = (double) (cm_now_ms() - start_ms) / 1000.0;
	printf("cache_rpc_get clients=%d sockets=%d calls/s=%.0f "
	       "p50_ms=%.2f p99_ms=%.2f errors=%ld wrong=%ld\n",
	       nclients, nsockets, (double) atomic_load(&calls) / secs,
	       percentile(0.50), percentile(0.99), atomic_load(&errors),
	       atomic_load(&wrong));
	for (int i = 0; i < nsockets; i++)
		cm_rpc_client_close(socks[i]);
	free(callers);
	return (atomic_load(&wrong) == 0 ? 0 : 3);
}
