/*
 * cache_bench: Get of one L1-resident key through the cache service's RPC,
 * from `clients` threads each with its own client socket (synchronous
 * calls).  Prints calls/s; not a test.
 *
 *   cache_bench ADDR [seconds] [clients]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.pb-c.h"
#include "rpc/rpc.h"
#include "util.h"

static const char *addr;
static int seconds = 10;
static atomic_long calls, errors;
static int64_t end_ms;

static void *
client(void *arg)
{
	Cache__GetRequest rq = CACHE__GET_REQUEST__INIT;
	cm_rpc_client *c;
	ProtobufCMessage *out;
	cm_arena a;

	(void) arg;
	if (cm_rpc_client_open(&c, addr) != 0)
		return (NULL);
	for (int i = 0; i < 300 && cm_rpc_client_connected(c) == 0; i++)
		usleep(10000);
	rq.ns = "bench";
	rq.key = "hot";
	cm_arena_init(&a);
	while (cm_now_ms() < end_ms) {
		if (cm_rpc_call(c, NULL, "cache.Cache/Get", &rq.base,
		                &cache__get_response__descriptor, &out,
		                cm_now_ms() + 2000, &a, NULL, 0) == CM_OK)
			atomic_fetch_add(&calls, 1);
		else
			atomic_fetch_add(&errors, 1);
		cm_arena_reset(&a);
	}
	cm_arena_fini(&a);
	cm_rpc_client_close(c);
	return (NULL);
}

int
main(int argc, char **argv)
{
	int nclients = 16;
	pthread_t th[256];

	if (argc < 2) {
		fprintf(stderr,
		        "usage: cache_bench ADDR [seconds] [clients]\n");
		return (1);
	}
	addr = argv[1];
	if (argc > 2)
		seconds = atoi(argv[2]);
	if (argc > 3)
		nclients = atoi(argv[3]);
	if (nclients < 1 || nclients > 256)
		return (1);
	{
		/* The key, set once: then every Get is an L1 hit. */
		Cache__SetRequest st = CACHE__SET_REQUEST__INIT;
		ProtobufCMessage *out;
		cm_rpc_client *c;
		cm_arena a;

		if (cm_rpc_client_open(&c, addr) != 0)
			return (2);
		for (int i = 0; i < 300 && cm_rpc_client_connected(c) == 0; i++)
			usleep(10000);
		st.ns = "bench";
		st.key = "hot";
		st.value.data = (uint8_t *) "https://example.com/a/value";
		st.value.len = strlen((char *) st.value.data);
		st.ttl = 3600;
		cm_arena_init(&a);
		if (cm_rpc_call(c, NULL, "cache.Cache/Set", &st.base,
		                &cache__set_response__descriptor, &out,
		                cm_now_ms() + 2000, &a, NULL, 0) != CM_OK)
			fprintf(stderr, "cache_bench: Set failed\n");
		cm_arena_fini(&a);
		cm_rpc_client_close(c);
	}
	end_ms = cm_now_ms() + seconds * 1000L;
	for (int i = 0; i < nclients; i++)
		pthread_create(&th[i], NULL, client, NULL);
	for (int i = 0; i < nclients; i++)
		pthread_join(th[i], NULL);
	printf("cache_rpc_get clients=%d calls/s=%.0f errors=%ld\n", nclients,
	       (double) atomic_load(&calls) / seconds, atomic_load(&errors));
	return (0);
}
