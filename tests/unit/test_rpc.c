/*
 * RPC over NNG, end to end within one process: a real server and client
 * over IPC sockets.  Covers dispatch, metadata, errors, deadlines, dropped
 * expired requests, fail-fast without a server, and the health probe.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "cli.h"
#include "rpc/rpc.h"
#include "rpc.pb-c.h"
#include "shortener.pb-c.h"
#include "util.h"

static atomic_int create_calls;
static bool health_serving = true;
static char url[128];

/* Resolve echoes the code, the caller and one metadata value. */
static int
h_resolve(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	const Shortener__ResolveRequest *req = (const void *) in;
	Shortener__ResolveResponse *rep;
	const char *role = cm_rpc_ctx_meta(ctx, "claim.role");

	if (strcmp(req->code, "missing") == 0)
		return (
		    cm_rpc_error(ctx, CM_NOT_FOUND, "no code %s", req->code));
	rep = cm_rpc_new_msg(ctx, &shortener__resolve_response__descriptor);
	rep->long_url = cm_arena_printf(
	    ctx->arena, "echo:%s:%s:%s:%s", req->code, ctx->user_id,
	    role != NULL ? role : "-", ctx->request_id);
	rep->expires_at = ctx->deadline_ms;
	*out = &rep->base;
	return (CM_OK);
}

/* Create is slow: 300 ms. */
static int
h_create(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	Shortener__Url *rep;

	(void) in;
	atomic_fetch_add(&create_calls, 1);
	nng_msleep(300);
	rep = cm_rpc_new_msg(ctx, &shortener__url__descriptor);
	rep->code = cm_pbstr("slow");
	*out = &rep->base;
	return (CM_OK);
}

static const cm_rpc_handler handlers[] = {
    [0] = h_create, /* Create */
    [1] = NULL,     /* Get: unimplemented */
    [2] = NULL,     [3] = NULL, [4] = h_resolve, [5] = NULL,
};

static size_t
health(void *arg, cm_health_dep *deps, size_t max, bool *serving)
{
	(void) arg;
	(void) max;
	deps[0].name = "postgres";
	deps[0].ok = health_serving;
	deps[0].detail = NULL;
	*serving = health_serving;
	return (1);
}

struct fixture {
	cm_rpc_server *srv;
	cm_rpc_client *cli;
};

static int
group_setup(void **state)
{
	static struct fixture f;
	static const cm_rpc_service svc = {&shortener__shortener__descriptor,
	                                   handlers};
	cm_rpc_server_config cfg = {0};

	snprintf(url, sizeof(url), "ipc:///tmp/cm_rpc_test_%d.sock",
	         (int) getpid());
	cfg.url = url;
	cfg.services = &svc;
	cfg.nservices = 1;
	cfg.nworkers = 4;
	cfg.health = health;
	if (cm_rpc_server_start(&f.srv, &cfg) != 0)
		return (-1);
	if (cm_rpc_client_open(&f.cli, url) != 0)
		return (-1);
	for (int i = 0; i < 200 && cm_rpc_client_connected(f.cli) == 0; i++)
		nng_msleep(5);
	*state = &f;
	return (cm_rpc_client_connected(f.cli) == 1 ? 0 : -1);
}

static int
group_teardown(void **state)
{
	struct fixture *f = *state;

	cm_rpc_client_close(f->cli);
	cm_rpc_server_stop(f->srv);
	nng_fini();
	return (0);
}

static int
resolve(cm_rpc_client *cli, const cm_rpc_meta *meta, const char *code,
        int64_t deadline, cm_arena *a, Shortener__ResolveResponse **rep,
        char *msg, size_t msglen)
{
	Shortener__ResolveRequest req = SHORTENER__RESOLVE_REQUEST__INIT;

	req.code = cm_pbstr(code);
	return (cm_rpc_call(cli, meta, "shortener.Shortener/Resolve", &req.base,
	                    &shortener__resolve_response__descriptor,
	                    (ProtobufCMessage **) rep, deadline, a, msg,
	                    msglen));
}

static void
test_call_ok_with_metadata(void **state)
{
	struct fixture *f = *state;
	cm_rpc_meta meta = {
	    .request_id = "rid-1", .user_id = "alice", .nmeta = 1};
	Shortener__ResolveResponse *rep = NULL;
	cm_arena a;
	char msg[128];
	int64_t deadline = cm_now_ms() + 2000;

	meta.meta[0].key = "claim.role";
	meta.meta[0].value = "admin";
	cm_arena_init(&a);
	assert_int_equal(
	    resolve(f->cli, &meta, "abc", deadline, &a, &rep, msg, sizeof(msg)),
	    CM_OK);
	assert_string_equal(rep->long_url, "echo:abc:alice:admin:rid-1");
	/* The absolute deadline travels in the envelope. */
	assert_int_equal(rep->expires_at, deadline);
	cm_arena_fini(&a);
}

static void
test_handler_error_and_message(void **state)
{
	struct fixture *f = *state;
	Shortener__ResolveResponse *rep = NULL;
	cm_arena a;
	char msg[128];

	cm_arena_init(&a);
	assert_int_equal(resolve(f->cli, NULL, "missing", cm_now_ms() + 2000,
	                         &a, &rep, msg, sizeof(msg)),
	                 CM_NOT_FOUND);
	assert_string_equal(msg, "no code missing");
	assert_null(rep);
	cm_arena_fini(&a);
}

static void
test_unimplemented(void **state)
{
	struct fixture *f = *state;
	Shortener__GetUrlRequest req = SHORTENER__GET_URL_REQUEST__INIT;
	ProtobufCMessage *out = NULL;
	cm_arena a;
	char msg[128];

	cm_arena_init(&a);
	assert_int_equal(cm_rpc_call(f->cli, NULL, "shortener.Shortener/Get",
	                             &req.base, &shortener__url__descriptor,
	                             &out, cm_now_ms() + 2000, &a, msg,
	                             sizeof(msg)),
	                 CM_UNIMPLEMENTED);
	assert_int_equal(cm_rpc_call(f->cli, NULL, "no.Such/Method", &req.base,
	                             &shortener__url__descriptor, &out,
	                             cm_now_ms() + 2000, &a, msg, sizeof(msg)),
	                 CM_UNIMPLEMENTED);
	assert_non_null(strstr(msg, "no.Such/Method"));
	cm_arena_fini(&a);
}

struct async_out {
	atomic_int done;
	int status;
	char msg[128];
};

static void
async_done(void *arg, const cm_rpc_result *r)
{
	struct async_out *o = arg;

	o->status = r->status;
	cm_strlcpy(o->msg, r->message, sizeof(o->msg));
	atomic_store(&o->done, 1);
}

static void
wait_done(struct async_out *o, int max_ms)
{
	for (int i = 0; i < max_ms && !atomic_load(&o->done); i++)
		nng_msleep(1);
	assert_true(atomic_load(&o->done));
}

static void
test_malformed_payload(void **state)
{
	struct fixture *f = *state;
	static uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
	struct async_out o = {0};

	cm_rpc_call_async(f->cli, NULL, "shortener.Shortener/Resolve", junk,
	                  sizeof(junk), cm_now_ms() + 2000, async_done, &o);
	wait_done(&o, 2000);
	assert_int_equal(o.status, CM_INVALID_ARGUMENT);
}

/* A plain req0 socket sends bytes that are no envelope at all. */
static void
test_malformed_envelope(void **state)
{
	nng_socket s;
	nng_msg *m;
	Rpc__Reply *rep;

	(void) state;
	assert_int_equal(nng_req0_open(&s), 0);
	assert_int_equal(nng_dial(s, url, NULL, 0), 0);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 2000);
	assert_int_equal(nng_send(s, "\xff\xff\xff\xff", 4, 0), 0);
	assert_int_equal(nng_recvmsg(s, &m, 0), 0);
	rep = rpc__reply__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
	assert_non_null(rep);
	assert_int_equal(rep->status, CM_INVALID_ARGUMENT);
	rpc__reply__free_unpacked(rep, NULL);
	nng_msg_free(m);
	nng_close(s);
}

/* An envelope whose deadline has passed is dropped, not worked on. */
static void
test_expired_request_dropped(void **state)
{
	Rpc__Request req = RPC__REQUEST__INIT;
	nng_socket s;
	nng_msg *m;
	uint8_t buf[256];
	int before = atomic_load(&create_calls);

	(void) state;
	req.method = cm_pbstr("shortener.Shortener/Create");
	req.deadline_ms = cm_now_ms() - 1000;
	assert_int_equal(nng_req0_open(&s), 0);
	assert_int_equal(nng_dial(s, url, NULL, 0), 0);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 400);
	assert_int_equal(nng_send(s, buf, rpc__request__pack(&req, buf), 0), 0);
	assert_int_equal(nng_recvmsg(s, &m, 0), NNG_ETIMEDOUT);
	assert_int_equal(atomic_load(&create_calls), before);
	nng_close(s);
}

static void
test_deadline_exceeded(void **state)
{
	struct fixture *f = *state;
	Shortener__CreateUrlRequest req = SHORTENER__CREATE_URL_REQUEST__INIT;
	ProtobufCMessage *out = NULL;
	cm_arena a;
	char msg[128];
	int64_t t0 = cm_mono_ms();

	cm_arena_init(&a);
	assert_int_equal(cm_rpc_call(f->cli, NULL, "shortener.Shortener/Create",
	                             &req.base, &shortener__url__descriptor,
	                             &out, cm_now_ms() + 100, &a, msg,
	                             sizeof(msg)),
	                 CM_DEADLINE_EXCEEDED);
	assert_in_range(cm_mono_ms() - t0, 90, 250);
	cm_arena_fini(&a);
	nng_msleep(300); /* let the slow handler finish */
}

/* Concurrent calls are matched to their own replies. */
static void
test_many_async_calls(void **state)
{
	struct fixture *f = *state;
	struct async_out o[200];
	uint8_t buf[64];
	Shortener__ResolveRequest req = SHORTENER__RESOLVE_REQUEST__INIT;

	memset(o, 0, sizeof(o));
	req.code = cm_pbstr("x");
	size_t n = shortener__resolve_request__pack(&req, buf);
	for (int i = 0; i < 200; i++)
		cm_rpc_call_async(f->cli, NULL, "shortener.Shortener/Resolve",
		                  buf, n, cm_now_ms() + 5000, async_done,
		                  &o[i]);
	for (int i = 0; i < 200; i++) {
		wait_done(&o[i], 5000);
		assert_int_equal(o[i].status, CM_OK);
	}
}

static void
test_no_server_fails_fast(void **state)
{
	cm_rpc_client *cli;
	struct async_out o = {0};
	int64_t t0;

	(void) state;
	assert_int_equal(
	    cm_rpc_client_open(&cli, "ipc:///tmp/cm_rpc_test_nobody.sock"), 0);
	t0 = cm_mono_ms();
	cm_rpc_call_async(cli, NULL, "shortener.Shortener/Resolve", NULL, 0,
	                  cm_now_ms() + 5000, async_done, &o);
	wait_done(&o, 1000);
	assert_int_equal(o.status, CM_UNAVAILABLE);
	assert_true(cm_mono_ms() - t0 < 100);
	cm_rpc_client_close(cli);
}

/* A server that goes away mid-call fails the call at once. */
static void
test_connection_lost_fails_fast(void **state)
{
	cm_rpc_client *cli;
	char u2[128];
	nng_socket raw;
	struct async_out o = {0};
	int64_t t0;

	(void) state;
	/* A bare rep0 socket that receives but never answers. */
	snprintf(u2, sizeof(u2), "ipc:///tmp/cm_rpc_test_%d_b.sock",
	         (int) getpid());
	assert_int_equal(nng_rep0_open(&raw), 0);
	assert_int_equal(nng_listen(raw, u2, NULL, 0), 0);
	assert_int_equal(cm_rpc_client_open(&cli, u2), 0);
	for (int i = 0; i < 200 && cm_rpc_client_connected(cli) == 0; i++)
		nng_msleep(5);
	cm_rpc_call_async(cli, NULL, "shortener.Shortener/Resolve", NULL, 0,
	                  cm_now_ms() + 5000, async_done, &o);
	nng_msleep(50);
	assert_false(atomic_load(&o.done));
	t0 = cm_mono_ms();
	nng_close(raw);
	wait_done(&o, 1000);
	assert_int_equal(o.status, CM_UNAVAILABLE);
	assert_true(cm_mono_ms() - t0 < 200);
	cm_rpc_client_close(cli);
}

static void
test_health_probe(void **state)
{
	(void) state;
	health_serving = true;
	assert_int_equal(cm_cli_rpc_health(url, 1000), 0);
	health_serving = false;
	assert_int_equal(cm_cli_rpc_health(url, 1000), 4);
	health_serving = true;
	assert_int_equal(
	    cm_cli_rpc_health("ipc:///tmp/cm_rpc_test_nobody.sock", 200), 2);
}

static void
test_listen_check(void **state)
{
	static const struct {
		const char *url;
		bool allow, ok;
	} cases[] = {
	    {"tcp://127.0.0.1:7001", false, true},
	    {"tcp://127.1.2.3:7001", false, true},
	    {"tcp://localhost:7001", false, true},
	    {"tcp://[::1]:7001", false, true},
	    {"tcp://0.0.0.0:7001", false, false},
	    {"tcp://*:7001", false, false},
	    {"tcp://:7001", false, false},
	    {"tcp://10.0.0.5:7001", false, false},
	    {"tcp://[::]:7001", false, false},
	    {"tcp://shortener:7001", false, false},
	    {"tcp://0.0.0.0:7001", true, true},
	    {"ipc:///tmp/x.sock", false, true},
	    {"inproc://x", false, true},
	    {"tls+tcp://0.0.0.0:7001", false, true},
	};
	char err[256];

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		if ((cm_rpc_listen_check(cases[i].url, cases[i].allow, err,
		                         sizeof(err)) == 0) != cases[i].ok)
			fail_msg("%s: %s", cases[i].url, err);
		if (!cases[i].ok)
			assert_non_null(strstr(err, "RPC_ALLOW_PLAIN_REMOTE"));
	}
}

/* ---- mutual TLS ---- */

static char tls_dir[128], other_dir[128], tls_url[128];
static cm_rpc_server *tls_srv;

/* Certificates by deploy/certs.sh: the stack's, and another CA's. */
static void
make_certs(const char *dir)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
	         "rm -rf %s && %s/deploy/certs.sh %s gateway shortener cache",
	         dir, CM_SOURCE_DIR, dir);
	assert_int_equal(system(cmd), 0);
}

static int
free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return (port);
}

/* A client with the process's certificates; connected within wait_ms? */
static cm_rpc_client *
tls_client(const char *dir, const char *peer, int wait_ms)
{
	cm_rpc_client *cli;

	setenv("RPC_TLS_DIR", dir, 1);
	cm_rpc_set_name("gateway");
	assert_int_equal(cm_rpc_client_open_peer(&cli, tls_url, peer), 0);
	for (int i = 0; i < wait_ms / 5 && cm_rpc_client_connected(cli) == 0;
	     i++)
		nng_msleep(5);
	return (cli);
}

static int
tls_setup(void **state)
{
	static const cm_rpc_service svc = {&shortener__shortener__descriptor,
	                                   handlers};
	cm_rpc_server_config cfg = {0};

	(void) state;
	snprintf(tls_dir, sizeof(tls_dir), "/tmp/cm_rpc_tls_%d",
	         (int) getpid());
	snprintf(other_dir, sizeof(other_dir), "/tmp/cm_rpc_tls_%d_other",
	         (int) getpid());
	make_certs(tls_dir);
	make_certs(other_dir);
	snprintf(tls_url, sizeof(tls_url), "tls+tcp://127.0.0.1:%d",
	         free_port());
	setenv("RPC_TLS_DIR", tls_dir, 1);
	cm_rpc_set_name("shortener");
	cfg.url = tls_url;
	cfg.services = &svc;
	cfg.nservices = 1;
	cfg.nworkers = 2;
	cfg.health = health;
	return (cm_rpc_server_start(&tls_srv, &cfg) == 0 ? 0 : -1);
}

static int
tls_teardown(void **state)
{
	char cmd[512];

	(void) state;
	cm_rpc_server_stop(tls_srv);
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", tls_dir, other_dir);
	return (system(cmd) == 0 ? 0 : -1);
}

/* The stack's certificates: served, metadata and all. */
static void
test_tls_served(void **state)
{
	cm_rpc_client *cli = tls_client(tls_dir, "shortener", 2000);
	cm_rpc_meta meta = {.user_id = "alice", .nmeta = 1};
	Shortener__ResolveResponse *rep;
	cm_arena a;
	char msg[128];

	(void) state;
	assert_int_equal(cm_rpc_client_connected(cli), 1);
	meta.meta[0].key = "claim.role";
	meta.meta[0].value = "admin";
	cm_arena_init(&a);
	assert_int_equal(resolve(cli, &meta, "abc", cm_now_ms() + 2000, &a,
	                         &rep, msg, sizeof(msg)),
	                 CM_OK);
	assert_true(strncmp(rep->long_url, "echo:abc:alice:admin:", 21) == 0);
	cm_arena_fini(&a);
	cm_rpc_client_close(cli);
	/* The health probe takes the same settings. */
	cm_rpc_set_name("shortener");
	assert_int_equal(cm_cli_rpc_health(tls_url, 2000), 0);
}

/* Whoever cannot show the stack's certificate, or expects another
 * service, gets no connection: the call fails UNAVAILABLE, unserved. */
static void
test_tls_refused(void **state)
{
	cm_rpc_client *cli;
	nng_socket raw;
	nng_dialer d;
	nng_tls_config *cfg;
	nng_msg *m;
	char path[1024];
	cm_arena a;
	Shortener__ResolveResponse *rep;
	char msg[128];

	(void) state;
	cm_arena_init(&a);
	/* A certificate of another CA, trusting the stack's CA. */
	snprintf(path, sizeof(path),
	         "mkdir -p %s/mixed && cp %s/ca.crt %s/gateway.crt "
	         "%s/gateway.key %s/mixed/",
	         other_dir, tls_dir, other_dir, other_dir, other_dir);
	assert_int_equal(system(path), 0);
	snprintf(path, sizeof(path), "%s/mixed", other_dir);
	cli = tls_client(path, "shortener", 500);
	assert_int_equal(cm_rpc_client_connected(cli), 0);
	assert_int_equal(resolve(cli, NULL, "abc", cm_now_ms() + 500, &a, &rep,
	                         msg, sizeof(msg)),
	                 CM_UNAVAILABLE);
	cm_rpc_client_close(cli);
	/* Another CA altogether. */
	cli = tls_client(other_dir, "shortener", 500);
	assert_int_equal(cm_rpc_client_connected(cli), 0);
	assert_int_equal(resolve(cli, NULL, "abc", cm_now_ms() + 500, &a, &rep,
	                         msg, sizeof(msg)),
	                 CM_UNAVAILABLE);
	cm_rpc_client_close(cli);
	/* The right CA, but the server is not the service asked for. */
	cli = tls_client(tls_dir, "cache", 500);
	assert_int_equal(cm_rpc_client_connected(cli), 0);
	assert_int_equal(resolve(cli, NULL, "abc", cm_now_ms() + 500, &a, &rep,
	                         msg, sizeof(msg)),
	                 CM_UNAVAILABLE);
	cm_rpc_client_close(cli);
	cm_arena_fini(&a);

	/* No certificate at all: a bare NNG client trusting the CA. */
	assert_int_equal(nng_req0_open(&raw), 0);
	assert_int_equal(nng_dialer_create(&d, raw, tls_url), 0);
	assert_int_equal(nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT), 0);
	snprintf(path, sizeof(path), "%s/ca.crt", tls_dir);
	assert_int_equal(nng_tls_config_ca_file(cfg, path), 0);
	assert_int_equal(nng_tls_config_server_name(cfg, "shortener"), 0);
	assert_int_equal(nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg), 0);
	nng_tls_config_free(cfg);
	assert_int_equal(nng_dialer_start(d, NNG_FLAG_NONBLOCK), 0);
	nng_socket_set_ms(raw, NNG_OPT_RECVTIMEO, 500);
	nng_socket_set_ms(raw, NNG_OPT_SENDTIMEO, 500);
	assert_int_equal(nng_msg_alloc(&m, 0), 0);
	assert_int_equal(nng_msg_append(m, "\x0a\x01x", 3), 0);
	if (nng_sendmsg(raw, m, 0) != 0)
		nng_msg_free(m);
	else
		assert_int_equal(nng_recvmsg(raw, &m, 0), NNG_ETIMEDOUT);
	nng_close(raw);
}

/* A tls+tcp:// address without certificates is refused at once. */
static void
test_tls_needs_certs(void **state)
{
	cm_rpc_client *cli;
	cm_rpc_server *srv;
	cm_rpc_server_config cfg = {0};
	char u[128];

	(void) state;
	snprintf(u, sizeof(u), "tls+tcp://127.0.0.1:%d", free_port());
	unsetenv("RPC_TLS_DIR");
	cfg.url = u;
	assert_int_equal(cm_rpc_server_start(&srv, &cfg), NNG_EINVAL);
	assert_int_equal(cm_rpc_client_open(&cli, u), NNG_EINVAL);
	setenv("RPC_TLS_DIR", "/nonexistent", 1);
	assert_int_equal(cm_rpc_client_open(&cli, u), NNG_EINVAL);
	unsetenv("RPC_TLS_DIR");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_call_ok_with_metadata),
	    cmocka_unit_test(test_handler_error_and_message),
	    cmocka_unit_test(test_unimplemented),
	    cmocka_unit_test(test_malformed_payload),
	    cmocka_unit_test(test_malformed_envelope),
	    cmocka_unit_test(test_expired_request_dropped),
	    cmocka_unit_test(test_deadline_exceeded),
	    cmocka_unit_test(test_many_async_calls),
	    cmocka_unit_test(test_no_server_fails_fast),
	    cmocka_unit_test(test_connection_lost_fails_fast),
	    cmocka_unit_test(test_health_probe),
	    cmocka_unit_test(test_listen_check),
	};
	const struct CMUnitTest tls_tests[] = {
	    cmocka_unit_test(test_tls_served),
	    cmocka_unit_test(test_tls_refused),
	    cmocka_unit_test(test_tls_needs_certs),
	};
	int failed = cmocka_run_group_tests(tls_tests, tls_setup, tls_teardown);

	return (failed +
	        cmocka_run_group_tests(tests, group_setup, group_teardown));
}
