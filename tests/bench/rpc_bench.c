/*
 * rpc_bench: throughput and latency of our RPC layer over TCP loopback,
 * plain (tcp://) and with mutual TLS (tls+tcp://, the stack's
 * certificates), against a baseline of plain NNG req/rep carrying the
 * same bytes, in the same run.  Prints figures; it is not a test.
 *
 *   rpc_bench [seconds] [window]
 *
 * Both sides run in this process (server workers + client), as they would
 * on one host.  "window" calls are kept in flight.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "rpc/rpc.h"
#include "shortener.pb-c.h"
#include "util.h"

static int
h_resolve(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	Shortener__ResolveResponse *rep;

	(void) in;
	rep = cm_rpc_new_msg(ctx, &shortener__resolve_response__descriptor);
	rep->long_url = cm_pbstr("https://example.com/some/long/path");
	*out = &rep->base;
	return (CM_OK);
}

static const cm_rpc_handler handlers[6] = {[4] = h_resolve};

struct run {
	cm_rpc_client *cli;
	atomic_long done;
	atomic_int stop;
	uint8_t payload[64];
	size_t len;
	int64_t lat_us[1 << 20];
	atomic_long nlat;
	pthread_mutex_t mtx;
};

struct slot {
	struct run *r;
	int64_t t0;
};

static void issue(struct slot *s);

static void
on_done(void *arg, const cm_rpc_result *res)
{
	struct slot *s = arg;
	long i = atomic_fetch_add(&s->r->nlat, 1);

	if (res->status != CM_OK) {
		fprintf(stderr, "rpc failed: %d %s\n", res->status,
		        res->message);
		exit(1);
	}
	if (i < (1 << 20))
		s->r->lat_us[i] = cm_mono_us() - s->t0;
	atomic_fetch_add(&s->r->done, 1);
	if (!atomic_load(&s->r->stop))
		issue(s);
}

static void
issue(struct slot *s)
{
	s->t0 = cm_mono_us();
	cm_rpc_call_async(s->r->cli, NULL, "shortener.Shortener/Resolve",
	                  s->r->payload, s->r->len, cm_now_ms() + 5000, on_done,
	                  s);
}

static int
cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

	return ((x > y) - (x < y));
}

static void
report(const char *name, long n, double secs, int64_t *lat, long nlat)
{
	if (nlat > (1 << 20))
		nlat = 1 << 20;
	qsort(lat, (size_t) nlat, sizeof(*lat), cmp64);
	printf("%-28s %10.0f calls/s  p50 %6.3f ms  p99 %6.3f ms\n", name,
	       n / secs, nlat ? lat[nlat / 2] / 1000.0 : 0,
	       nlat ? lat[nlat * 99 / 100] / 1000.0 : 0);
}

/* Baseline: cooked rep0 echo server with worker threads, same payload. */
struct raw_srv {
	nng_socket sock;
	atomic_int stop;
};

static void *
raw_worker(void *arg)
{
	struct raw_srv *s = arg;
	nng_ctx ctx;
	nng_aio *aio;

	nng_ctx_open(&ctx, s->sock);
	nng_aio_alloc(&aio, NULL, NULL);
	while (!atomic_load(&s->stop)) {
		nng_aio_set_timeout(aio, 100);
		nng_ctx_recv(ctx, aio);
		nng_aio_wait(aio);
		if (nng_aio_result(aio) != 0)
			continue;
		nng_msg *m = nng_aio_get_msg(aio);
		nng_aio_set_msg(aio, m);
		nng_ctx_send(ctx, aio);
		nng_aio_wait(aio);
		if (nng_aio_result(aio) != 0)
			nng_msg_free(m);
	}
	nng_ctx_close(ctx);
	nng_aio_free(aio);
	return (NULL);
}

struct raw_cli {
	nng_socket sock;
	nng_ctx ctx;
	nng_aio *aio;
	struct run *r;
	int64_t t0;
	int sending;
};

static void
raw_cb(void *arg)
{
	struct raw_cli *c = arg;

	if (nng_aio_result(c->aio) != 0) {
		if (c->sending)
			nng_msg_free(nng_aio_get_msg(c->aio));
		return;
	}
	if (c->sending) {
		c->sending = 0;
		nng_ctx_recv(c->ctx, c->aio);
		return;
	}
	nng_msg_free(nng_aio_get_msg(c->aio));
	long i = atomic_fetch_add(&c->r->nlat, 1);
	if (i < (1 << 20))
		c->r->lat_us[i] = cm_mono_us() - c->t0;
	atomic_fetch_add(&c->r->done, 1);
	if (atomic_load(&c->r->stop))
		return;
	nng_msg *m;
	nng_msg_alloc(&m, 0);
	nng_msg_append(m, c->r->payload, c->r->len);
	c->t0 = cm_mono_us();
	c->sending = 1;
	nng_aio_set_msg(c->aio, m);
	nng_ctx_send(c->ctx, c->aio);
}

/* Our RPC layer at url over PIPES connections (default 1) to one
 * server, window calls in flight for secs: calls per second, or -1. */
static double
run_ours(struct run *r, struct slot *slots, int window, int nw, int secs,
         const char *url, const char *label)
{
	static const cm_rpc_service svc = {&shortener__shortener__descriptor,
	                                   handlers};
	cm_rpc_server_config cfg = {0};
	cm_rpc_server *srv;
	char multi[1024] = "";
	int npipes = getenv("PIPES") ? atoi(getenv("PIPES")) : 1;
	int64_t t0;
	double el;
	long n;

	for (int i = 0; i < npipes && i < 8; i++) {
		strcat(multi, i ? "," : "");
		strcat(multi, url);
	}
	atomic_store(&r->stop, 0);
	atomic_store(&r->done, 0);
	atomic_store(&r->nlat, 0);
	cfg.url = url;
	cfg.services = &svc;
	cfg.nservices = 1;
	cfg.nworkers = nw;
	cm_rpc_set_name("shortener");
	if (cm_rpc_server_start(&srv, &cfg) != 0) {
		fprintf(stderr, "rpc_bench: cannot listen on %s\n", url);
		return (-1);
	}
	cm_rpc_set_name("gateway");
	if (cm_rpc_client_open_peer(&r->cli, multi, "shortener") != 0) {
		fprintf(stderr, "rpc_bench: cannot dial %s\n", url);
		return (-1);
	}
	while (cm_rpc_client_connected(r->cli) == 0)
		nng_msleep(1);
	t0 = cm_mono_us();
	for (int i = 0; i < window; i++) {
		slots[i].r = r;
		issue(&slots[i]);
	}
	sleep((unsigned) secs);
	atomic_store(&r->stop, 1);
	n = atomic_load(&r->done);
	el = (cm_mono_us() - t0) / 1e6;
	nng_msleep(200);
	report(label, n, el, r->lat_us, atomic_load(&r->nlat));
	cm_rpc_client_close(r->cli);
	cm_rpc_server_stop(srv);
	return (n / el);
}

/* A free loopback port (bound and released). */
static int
free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *) &a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return (port);
}

/* The stack's certificates for the TLS run: RPC_TLS_DIR if set, else
 * made by deploy/certs.sh into a directory of this run. */
static int
tls_certs(void)
{
	static char dir[64];
	char cmd[512];

	if (getenv("RPC_TLS_DIR") != NULL)
		return (0);
	snprintf(dir, sizeof(dir), "/tmp/rpc_bench_tls.%d", (int) getpid());
	snprintf(cmd, sizeof(cmd),
	         "%s/deploy/certs.sh %s gateway shortener >/dev/null",
	         CM_SOURCE_DIR, dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "rpc_bench: %s failed\n", cmd);
		return (-1);
	}
	setenv("RPC_TLS_DIR", dir, 1);
	return (0);
}

int
main(int argc, char **argv)
{
	int secs = argc > 1 ? atoi(argv[1]) : 5;
	int window = argc > 2 ? atoi(argv[2]) : 64;
	static struct run r;
	struct slot *slots = calloc((size_t) window, sizeof(*slots));
	char url[64], url2[64];
	Shortener__ResolveRequest req = SHORTENER__RESOLVE_REQUEST__INIT;
	pthread_t th[64];
	int nw = getenv("WORKERS") ? atoi(getenv("WORKERS")) : 4;
	if (nw < 1 || nw > 64)
		nw = 4;
	struct raw_srv rs = {0};
	struct raw_cli *rc;

	req.code = cm_pbstr("abcdefg");
	r.len = shortener__resolve_request__pack(&req, r.payload);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", free_port());
	snprintf(url2, sizeof(url2), "tcp://127.0.0.1:%d", free_port());

	/* Baseline first. */
	nng_rep0_open(&rs.sock);
	if (nng_listen(rs.sock, url2, NULL, 0) != 0)
		return (1);
	for (int i = 0; i < nw; i++)
		pthread_create(&th[i], NULL, raw_worker, &rs);
	rc = calloc((size_t) window, sizeof(*rc));
	nng_socket csock;
	nng_req0_open(&csock);
	nng_dial(csock, url2, NULL, 0);
	int64_t t0 = cm_mono_us();
	for (int i = 0; i < window; i++) {
		rc[i].sock = csock;
		rc[i].r = &r;
		nng_ctx_open(&rc[i].ctx, csock);
		nng_aio_alloc(&rc[i].aio, raw_cb, &rc[i]);
		nng_msg *m;
		nng_msg_alloc(&m, 0);
		nng_msg_append(m, r.payload, r.len);
		rc[i].t0 = cm_mono_us();
		rc[i].sending = 1;
		nng_aio_set_msg(rc[i].aio, m);
		nng_ctx_send(rc[i].ctx, rc[i].aio);
	}
	sleep((unsigned) secs);
	atomic_store(&r.stop, 1);
	long n = atomic_load(&r.done);
	double el = (cm_mono_us() - t0) / 1e6;
	report("nng req/rep echo (baseline)", n, el, r.lat_us,
	       atomic_load(&r.nlat));
	double base = n / el;
	for (int i = 0; i < window; i++) {
		nng_aio_stop(rc[i].aio);
		nng_aio_free(rc[i].aio);
	}
	nng_close(csock);
	atomic_store(&rs.stop, 1);
	for (int i = 0; i < nw; i++)
		pthread_join(th[i], NULL);
	nng_close(rs.sock);

	/* Ours, over tcp:// and then over mutual TLS, same load. */
	double tcp = run_ours(&r, slots, window, nw, secs, url,
	                      "cm_rpc tcp:// (envelope, dispatch)");
	if (tcp < 0)
		return (1);
	printf("ratio to baseline: %.2f (window %d, %d workers, tcp "
	       "loopback)\n",
	       tcp / base, window, nw);
	if (tls_certs() != 0)
		return (1);
	snprintf(url, sizeof(url), "tls+tcp://127.0.0.1:%d", free_port());
	double tls = run_ours(&r, slots, window, nw, secs, url,
	                      "cm_rpc tls+tcp:// (mutual TLS)");
	if (tls < 0)
		return (1);
	printf("ratio to baseline: %.2f; tls+tcp:// / tcp:// = %.2f\n",
	       tls / base, tls / tcp);
	free(slots);
	free(rc);
	return (0);
}
