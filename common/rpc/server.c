/*
 * RPC server: one rep0 socket, a set of receive contexts, N worker threads.
 *
 * Receiving is asynchronous: every context keeps a receive posted, and its
 * aio callback (on an NNG task thread) only moves the request onto the
 * work queue.  Worker threads of our own take requests from the queue and
 * decode the envelope, look the method up, unpack, run the handler, pack,
 * and post the reply on the request's context; the send's callback posts
 * the context's next receive.  So handlers block freely on Redis or
 * Postgres without starving NNG's small task pool, per-worker state (store
 * connections) needs no locking, and a busy worker takes the next queued
 * request without sleeping: one wake-up per request at most, none under
 * load.  There are twice as many contexts as workers, so requests keep
 * arriving while every worker is busy.  All memory of one request comes
 * from the worker's arena and is dropped in one call once the reply is
 * packed.
 *
 * Requests whose deadline has passed are dropped without a reply (the
 * caller has given up already).  A malformed envelope gets INVALID_ARGUMENT
 * and an unknown method UNIMPLEMENTED; nothing a client sends can crash the
 * server.  Every server also serves health.Health.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "config.h"
#include "health.pb-c.h"
#include "internal.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define CODE_COUNT 17

/* A receive context's life: posted receive, queued, served, sending. */
enum rctx_state { RC_RECV, RC_QUEUED, RC_SENDING, RC_IDLE };

struct method {
	char name[160];
	const ProtobufCMethodDescriptor *md;
	cm_rpc_handler handler;
	cm_histogram *latency;
	cm_counter *_Atomic by_code[CODE_COUNT];
};

struct worker {
	cm_rpc_server *srv;
	pthread_t thread;
	cm_arena arena;
	void *state;
	int started;
};

struct rctx {
	cm_rpc_server *srv;
	nng_ctx ctx;
	nng_aio *aio;
	nng_msg *req;
	struct rctx *qnext;
	atomic_int state;
};

struct cm_rpc_server {
	nng_socket sock;
	cm_rpc_server_config cfg;
	struct method *methods;
	size_t nmethods;
	struct worker *workers;
	int nworkers;
	struct rctx *rctxs;
	int nrctx;
	pthread_mutex_t qmtx;
	pthread_cond_t qcv;
	struct rctx *qhead, **qtail;
	int qlen;     /* requests on the queue */
	int nwaiting; /* workers asleep on qcv */
	int nbusy;    /* workers serving a request */
	int qstop;
	atomic_int stopping;
	cm_counter *dropped;
	cm_counter *malformed;
};

static int health_check(cm_rpc_ctx *, const ProtobufCMessage *,
                        ProtobufCMessage **);
static int health_metrics(cm_rpc_ctx *, const ProtobufCMessage *,
                          ProtobufCMessage **);

static const cm_rpc_handler health_handlers[] = {health_check, health_metrics};

/*
 * Health.Check: asks the service's health callback for its dependencies
 * and overall state.
 */
static int
health_check(cm_rpc_ctx *ctx, const ProtobufCMessage *in,
             ProtobufCMessage **out)
{
	const cm_rpc_server_config *cfg = ctx->service_arg;
	Health__HealthCheckResponse *rep;
	cm_health_dep deps[16];
	size_t n = 0;
	bool serving = true;

	(void) in;
	rep = cm_rpc_new_msg(ctx, &health__health_check_response__descriptor);
	if (cfg->health != NULL)
		n = cfg->health(cfg->arg, deps, CM_ARRAY_LEN(deps), &serving);
	rep->status =
	    serving
	        ? HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
	        : HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
	rep->n_dependencies = n;
	rep->dependencies =
	    cm_arena_alloc(ctx->arena, sizeof(*rep->dependencies) * (n + 1));
	for (size_t i = 0; i < n; i++) {
		Health__Dependency *d =
		    cm_rpc_new_msg(ctx, &health__dependency__descriptor);
		d->name = cm_arena_strdup(ctx->arena, deps[i].name);
		d->ok = deps[i].ok;
		d->detail = cm_arena_strdup(
		    ctx->arena, deps[i].detail != NULL ? deps[i].detail : "");
		rep->dependencies[i] = d;
	}
	*out = &rep->base;
	return (CM_OK);
}

/* Health.Metrics: the process's metrics in Prometheus text format. */
static int
health_metrics(cm_rpc_ctx *ctx, const ProtobufCMessage *in,
               ProtobufCMessage **out)
{
	Health__MetricsResponse *rep;
	char *text;

	(void) in;
	if ((text = cm_metrics_render()) == NULL)
		return (cm_rpc_error(ctx, CM_INTERNAL, "out of memory"));
	rep = cm_rpc_new_msg(ctx, &health__metrics_response__descriptor);
	rep->text = cm_arena_strdup(ctx->arena, text);
	free(text);
	*out = &rep->base;
	return (CM_OK);
}

static const struct method *
method_find(const cm_rpc_server *s, const char *name)
{
	for (size_t i = 0; i < s->nmethods; i++)
		if (strcmp(s->methods[i].name, name) == 0)
			return (&s->methods[i]);
	return (NULL);
}

static cm_counter *
method_counter(struct method *m, int code)
{
	cm_counter *c;
	char labels[256];

	if (code < 0 || code >= CODE_COUNT)
		code = CM_UNKNOWN;
	if ((c = atomic_load(&m->by_code[code])) != NULL)
		return (c);
	snprintf(labels, sizeof(labels), "method=\"%s\",code=\"%s\"", m->name,
	         cm_code_name(code));
	c = cm_counter_get("rpc_server_requests_total", labels,
	                   "RPC requests served, by method and status code");
	atomic_store(&m->by_code[code], c);
	return (c);
}

/*
 * Builds the reply envelope for one request.  Returns the nng message to
 * send, or NULL when the request is to be dropped unanswered.
 */
static nng_msg *
serve_one(struct worker *w, nng_msg *req_msg)
{
	cm_rpc_server *s = w->srv;
	Rpc__Request *req;
	Rpc__Reply rep = RPC__REPLY__INIT;
	struct method *m = NULL;
	ProtobufCMessage *in = NULL, *out = NULL;
	cm_rpc_ctx ctx = {0};
	nng_msg *reply;
	int64_t t0 = cm_mono_us();
	int code;

	req = rpc__request__unpack(&w->arena.pb, nng_msg_len(req_msg),
	                           nng_msg_body(req_msg));
	ctx.arena = &w->arena;
	ctx.worker = w->state;
	ctx.service_arg = s->cfg.arg;
	if (req == NULL || req->method == NULL) {
		cm_counter_add(s->malformed, 1);
		code = cm_rpc_error(&ctx, CM_INVALID_ARGUMENT,
		                    "malformed request envelope");
		goto reply;
	}
	if (req->deadline_ms != 0 && req->deadline_ms < cm_now_ms()) {
		cm_counter_add(s->dropped, 1);
		log_debug("event=rpc_expired method=%s rid=%s", req->method,
		          req->request_id);
		return (NULL);
	}
	ctx.method = req->method;
	ctx.request_id = req->request_id != NULL ? req->request_id : "";
	ctx.user_id = req->user_id != NULL ? req->user_id : "";
	ctx.deadline_ms = req->deadline_ms;
	ctx.envelope = req;
	log_set_rid(ctx.request_id);

	m = (struct method *) method_find(s, req->method);
	if (m == NULL || m->handler == NULL) {
		code = cm_rpc_error(&ctx, CM_UNIMPLEMENTED,
		                    "unknown method %.128s", req->method);
		goto reply;
	}
	in = protobuf_c_message_unpack(m->md->input, &w->arena.pb,
	                               req->payload.len, req->payload.data);
	if (in == NULL) {
		code = cm_rpc_error(&ctx, CM_INVALID_ARGUMENT,
		                    "malformed %s payload", m->md->input->name);
		goto reply;
	}
	/* Health methods want the server config, the rest the service's. */
	if (m->handler == health_check || m->handler == health_metrics)
		ctx.service_arg = &s->cfg;
	code = m->handler(&ctx, in, &out);
	if (code == CM_OK && out == NULL)
		code = cm_rpc_error(&ctx, CM_INTERNAL, "handler gave no reply");
	if (code == CM_OK) {
		size_t n = protobuf_c_message_get_packed_size(out);
		if (n > CM_RPC_MAX_MSG - 1024) {
			code = cm_rpc_error(&ctx, CM_RESOURCE_EXHAUSTED,
			                    "reply too large");
		} else {
			rep.payload.data = cm_arena_alloc(&w->arena, n);
			rep.payload.len = n;
			protobuf_c_message_pack(out, rep.payload.data);
		}
	}

reply:
	rep.status = code;
	rep.message = cm_pbstr(ctx.errmsg != NULL ? ctx.errmsg : "");
	if (m != NULL) {
		cm_counter_add(method_counter(m, code), 1);
		cm_histogram_observe_us(m->latency, cm_mono_us() - t0);
	}
	if (code != CM_OK && code != CM_NOT_FOUND)
		log_debug("event=rpc_error method=%s code=%s msg=\"%s\"",
		          ctx.method != NULL ? ctx.method : "-",
		          cm_code_name(code), rep.message);
	log_set_rid(NULL);
	if (cm_rpc_pack_msg(&rep.base, &reply) != 0)
		return (NULL);
	return (reply);
}

/*
 * Callback of a context's aio (NNG task thread): a received request goes on
 * the work queue; a finished send posts the next receive.  Never blocks.
 */
static void
rctx_cb(void *arg)
{
	struct rctx *rc = arg;
	cm_rpc_server *s = rc->srv;
	int rv = nng_aio_result(rc->aio);

	if (atomic_load(&rc->state) == RC_SENDING) {
		if (rv != 0)
			nng_msg_free(nng_aio_get_msg(rc->aio));
		if (atomic_load(&s->stopping)) {
			atomic_store(&rc->state, RC_IDLE);
			return;
		}
		atomic_store(&rc->state, RC_RECV);
		nng_ctx_recv(rc->ctx, rc->aio);
		return;
	}
	if (rv != 0) {
		/* Cancelled or closed: this context is done. */
		atomic_store(&rc->state, RC_IDLE);
		return;
	}
	rc->req = nng_aio_get_msg(rc->aio);
	nng_aio_set_msg(rc->aio, NULL);
	atomic_store(&rc->state, RC_QUEUED);
	pthread_mutex_lock(&s->qmtx);
	rc->qnext = NULL;
	*s->qtail = rc;
	s->qtail = &rc->qnext;
	/* Wake a worker only when no awake one is free to take the request:
	 * a worker between two requests takes it without sleeping, and a
	 * wake-up it does not need costs a context switch (and, with fast
	 * handlers, lock handoffs between cores).  A worker blocked in a
	 * handler is not free, so requests never wait behind a slow one. */
	if (++s->qlen > s->nworkers - s->nwaiting - s->nbusy && s->nwaiting > 0)
		pthread_cond_signal(&s->qcv);
	pthread_mutex_unlock(&s->qmtx);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	cm_rpc_server *s = w->srv;
	int busy = 0;

	if (s->cfg.worker_init != NULL)
		w->state = s->cfg.worker_init(s->cfg.arg);
	for (;;) {
		struct rctx *rc;
		nng_msg *rep;

		pthread_mutex_lock(&s->qmtx);
		s->nbusy -= busy;
		busy = 0;
		while (s->qhead == NULL && !s->qstop) {
			s->nwaiting++;
			pthread_cond_wait(&s->qcv, &s->qmtx);
			s->nwaiting--;
		}
		if ((rc = s->qhead) == NULL) {
			pthread_mutex_unlock(&s->qmtx);
			break;
		}
		if ((s->qhead = rc->qnext) == NULL)
			s->qtail = &s->qhead;
		s->qlen--;
		s->nbusy++;
		busy = 1;
		pthread_mutex_unlock(&s->qmtx);

		rep = serve_one(w, rc->req);
		nng_msg_free(rc->req);
		rc->req = NULL;
		cm_arena_reset(&w->arena);
		if (rep == NULL) {
			/* Dropped (expired): listen again on this context. */
			if (atomic_load(&s->stopping)) {
				atomic_store(&rc->state, RC_IDLE);
				continue;
			}
			atomic_store(&rc->state, RC_RECV);
			nng_ctx_recv(rc->ctx, rc->aio);
			continue;
		}
		atomic_store(&rc->state, RC_SENDING);
		nng_aio_set_msg(rc->aio, rep);
		nng_ctx_send(rc->ctx, rc->aio);
	}
	if (s->cfg.worker_fini != NULL)
		s->cfg.worker_fini(w->state, s->cfg.arg);
	return (NULL);
}

/* Builds the method table: the service's methods, then health.Health. */
static int
methods_build(cm_rpc_server *s)
{
	const cm_rpc_service health = {&health__health__descriptor,
	                               health_handlers};
	size_t n = health.desc->n_methods, k = 0;

	for (size_t i = 0; i < s->cfg.nservices; i++)
		n += s->cfg.services[i].desc->n_methods;
	if ((s->methods = calloc(n, sizeof(*s->methods))) == NULL)
		return (NNG_ENOMEM);
	for (size_t i = 0; i <= s->cfg.nservices; i++) {
		const cm_rpc_service *svc =
		    i < s->cfg.nservices ? &s->cfg.services[i] : &health;
		for (unsigned j = 0; j < svc->desc->n_methods; j++) {
			struct method *m = &s->methods[k++];
			char labels[200];
			cm_rpc_method_name(svc->desc, j, m->name,
			                   sizeof(m->name));
			m->md = &svc->desc->methods[j];
			m->handler = svc->handlers[j];
			snprintf(labels, sizeof(labels), "method=\"%s\"",
			         m->name);
			m->latency = cm_histogram_get(
			    "rpc_server_duration_seconds", labels,
			    "Time spent serving an RPC, by method");
		}
	}
	s->nmethods = k;
	return (0);
}

int
cm_rpc_listen_check(const char *url, bool allow_remote, char *err,
                    size_t errlen)
{
	const char *host, *end;
	size_t len;

	if (strncmp(url, "tcp://", 6) != 0 || allow_remote)
		return (0); /* ipc://, inproc://, tls+tcp:// */
	host = url + 6;
	if (host[0] == '[') {
		end = strchr(host, ']');
		host++;
	} else {
		end = strrchr(host, ':');
	}
	len = end != NULL ? (size_t) (end - host) : strlen(host);
	if ((len == 9 && strncmp(host, "localhost", 9) == 0) ||
	    (len == 3 && strncmp(host, "::1", 3) == 0) ||
	    (len >= 4 && strncmp(host, "127.", 4) == 0))
		return (0);
	snprintf(err, errlen,
	         "%s is a plain tcp:// listener on an address other than "
	         "loopback: anyone who reaches it is believed; bind 127.0.0.1, "
	         "or set RPC_ALLOW_PLAIN_REMOTE=1 on a private network",
	         url);
	return (-1);
}

/*
 * A new pipe on a TLS listener whose peer was not verified is closed
 * before it carries a request.  With peer certificates required the
 * handshake already refuses such a peer; this keeps the rule in one
 * visible place.  Plain pipes have no such option: loopback (or
 * RPC_ALLOW_PLAIN_REMOTE's private network) is their boundary.
 */
static void
pipe_check(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	bool verified;

	(void) ev;
	(void) arg;
	if (nng_pipe_get_bool(p, NNG_OPT_TLS_VERIFIED, &verified) == 0 &&
	    !verified) {
		log_warnx("event=rpc_peer_refused why=unverified");
		nng_pipe_close(p);
	}
}

/* Creates and starts the listener (with mutual TLS on tls+tcp://). */
static int
listen_start(cm_rpc_server *s, const char *url)
{
	nng_listener l;
	nng_tls_config *tls;
	char err[512];
	int rv;

	if ((rv = nng_listener_create(&l, s->sock, url)) != 0)
		return (rv);
	if (cm_rpc_url_is_tls(url)) {
		if (cm_rpc_tls_config(&tls, true, NULL, err, sizeof(err)) !=
		    0) {
			log_warnx("event=rpc_tls_error url=%s err=\"%s\"", url,
			          err);
			nng_listener_close(l);
			return (NNG_EINVAL);
		}
		rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, tls);
		nng_tls_config_free(tls); /* the listener holds it */
		if (rv != 0) {
			nng_listener_close(l);
			return (rv);
		}
		nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_PRE, pipe_check, s);
	}
	if ((rv = nng_listener_start(l, 0)) != 0)
		nng_listener_close(l);
	return (rv);
}

int
cm_rpc_server_start(cm_rpc_server **out, const cm_rpc_server_config *cfg)
{
	cm_rpc_server *s;
	char why[256];
	int rv;

	if (cm_rpc_listen_check(cfg->url,
	                        cm_env_bool("RPC_ALLOW_PLAIN_REMOTE", false),
	                        why, sizeof(why)) != 0) {
		log_warnx("event=listen err=\"%s\"", why);
		return (NNG_EPERM);
	}

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return (NNG_ENOMEM);
	s->cfg = *cfg;
	s->nworkers = cfg->nworkers > 0 ? cfg->nworkers : 8;
	s->dropped = cm_counter_get(
	    "rpc_server_expired_total", "",
	    "Requests dropped because their deadline had passed");
	s->malformed = cm_counter_get("rpc_server_malformed_total", "",
	                              "Requests with an undecodable envelope");
	if ((rv = methods_build(s)) != 0)
		goto fail;
	if ((rv = nng_rep0_open(&s->sock)) != 0)
		goto fail;
	nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, CM_RPC_MAX_MSG);
	if ((rv = listen_start(s, cfg->url)) != 0) {
		nng_close(s->sock);
		goto fail;
	}
	pthread_mutex_init(&s->qmtx, NULL);
	pthread_cond_init(&s->qcv, NULL);
	s->qtail = &s->qhead;
	s->nrctx = s->nworkers * 2 < 16 ? 16 : s->nworkers * 2;
	s->workers = calloc((size_t) s->nworkers, sizeof(*s->workers));
	s->rctxs = calloc((size_t) s->nrctx, sizeof(*s->rctxs));
	if (s->workers == NULL || s->rctxs == NULL)
		fatalx("event=oom where=rpc_server_start");
	for (int i = 0; i < s->nworkers; i++) {
		struct worker *w = &s->workers[i];
		w->srv = s;
		cm_arena_init(&w->arena);
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
			fatalx("event=rpc_server_init err=pthread_create");
		w->started = 1;
	}
	for (int i = 0; i < s->nrctx; i++) {
		struct rctx *rc = &s->rctxs[i];
		rc->srv = s;
		if ((rv = nng_ctx_open(&rc->ctx, s->sock)) != 0 ||
		    (rv = nng_aio_alloc(&rc->aio, rctx_cb, rc)) != 0)
			fatalx("event=rpc_server_init err=\"%s\"",
			       nng_strerror(rv));
		atomic_store(&rc->state, RC_RECV);
		nng_ctx_recv(rc->ctx, rc->aio);
	}
	log_info("event=rpc_listen url=%s workers=%d", cfg->url, s->nworkers);
	*out = s;
	return (0);
fail:
	free(s->methods);
	free(s);
	return (rv);
}

/*
 * Stops the server gracefully: no new request is taken (posted receives
 * are cancelled), requests already received are served and their replies
 * sent, then the workers exit and the socket closes.  Callers whose
 * requests were not yet received see the connection go and fail with
 * UNAVAILABLE.
 */
void
cm_rpc_server_stop(cm_rpc_server *s)
{
	int64_t give_up;

	if (s == NULL)
		return;
	atomic_store(&s->stopping, 1);
	for (int i = 0; i < s->nrctx; i++)
		if (atomic_load(&s->rctxs[i].state) == RC_RECV)
			nng_aio_cancel(s->rctxs[i].aio);
	/* Wait for every context to go idle: queued requests served and
	 * their replies handed to NNG (bounded, in case a handler hangs). */
	give_up = cm_mono_ms() + 30000;
	for (int i = 0; i < s->nrctx && cm_mono_ms() < give_up; i++)
		while (atomic_load(&s->rctxs[i].state) != RC_IDLE &&
		       cm_mono_ms() < give_up) {
			if (atomic_load(&s->rctxs[i].state) == RC_RECV)
				nng_aio_cancel(s->rctxs[i].aio);
			nng_msleep(1);
		}
	pthread_mutex_lock(&s->qmtx);
	s->qstop = 1;
	pthread_cond_broadcast(&s->qcv);
	pthread_mutex_unlock(&s->qmtx);
	for (int i = 0; i < s->nworkers; i++)
		if (s->workers[i].started)
			pthread_join(s->workers[i].thread, NULL);
	for (int i = 0; i < s->nrctx; i++)
		nng_aio_stop(s->rctxs[i].aio);
	nng_close(s->sock);
	for (int i = 0; i < s->nrctx; i++) {
		struct rctx *rc = &s->rctxs[i];
		nng_aio_free(rc->aio);
		if (rc->req != NULL)
			nng_msg_free(rc->req);
	}
	for (int i = 0; i < s->nworkers; i++)
		cm_arena_fini(&s->workers[i].arena);
	pthread_cond_destroy(&s->qcv);
	pthread_mutex_destroy(&s->qmtx);
	free(s->rctxs);
	free(s->workers);
	free(s->methods);
	free(s);
}
