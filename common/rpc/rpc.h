/*
 * gRPC-style RPC over NNG.
 *
 * A method is named "<package>.<Service>/<Method>", from the protobuf-c
 * service descriptor (e.g. "shortener.Shortener/Create").  Requests travel
 * in an rpc.Request envelope (method, request id, absolute deadline, caller
 * identity, metadata, payload); replies in an rpc.Reply (status code from
 * status.h, message, payload).
 *
 * Server: one rep0 socket served by N worker threads of our own, each with
 * its own nng context and its own per-worker state (e.g. a Redis and a
 * Postgres connection).  Dispatch is generic: the method is looked up in the
 * registered service descriptors, the payload is unpacked with the input
 * descriptor, the handler runs, and its output is packed with the output
 * descriptor.  Every server also answers health.Health/Check and
 * health.Health/Metrics.  Expired requests are dropped unanswered; malformed
 * envelopes get INVALID_ARGUMENT, unknown methods UNIMPLEMENTED.
 *
 * Transport: tcp://, ipc:// and inproc:// as NNG has them, and tls+tcp://
 * with mutual TLS from the stack's certificates (RPC_TLS_DIR, see tls.c):
 * a TLS server serves only peers holding a certificate of the stack's CA,
 * and a TLS client talks only to a server whose certificate names the
 * service it dialled.
 *
 * Client: a raw req0 socket dialled to one address or a comma-separated
 * list of replicas.  NNG's request resending (on timer and on pipe loss) is
 * not used: a request is sent once and the deadline decides.  Correlation
 * of replies is ours.  When no server is connected, a call fails at once
 * with UNAVAILABLE; when the last connection drops, calls in flight fail
 * with UNAVAILABLE at once.
 */
#ifndef CM_RPC_H
#define CM_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "arena.h"
#include "status.h"

/*
 * This process's name among the stack's services ("shortener"): the
 * certificate it presents over tls+tcp:// is RPC_TLS_DIR/<name>.crt.
 * cm_cli_main sets the binary's name; default "client".
 */
void cm_rpc_set_name(const char *name);
const char *cm_rpc_name(void);

/* ---- caller identity and request context ---- */

#define CM_RPC_MAX_META 8

typedef struct cm_rpc_meta {
	const char *request_id; /* NULL: the client makes one */
	const char *user_id;    /* NULL or "": anonymous */
	size_t nmeta;
	struct {
		const char *key;
		const char *value;
	} meta[CM_RPC_MAX_META];
} cm_rpc_meta;

/* What a handler sees of the request it serves. */
typedef struct cm_rpc_ctx {
	const char *method;
	const char *request_id;
	const char *user_id;  /* "" when anonymous */
	int64_t deadline_ms;  /* absolute, epoch ms; 0 = none */
	const void *envelope; /* the Rpc__Request, for cm_rpc_ctx_meta */
	cm_arena *arena;      /* freed when the reply has been sent */
	void *worker;         /* the per-worker state from worker_init */
	void *service_arg;    /* cm_rpc_server_config.arg */
	const char *errmsg;   /* set by cm_rpc_error */
} cm_rpc_ctx;

/* Metadata value by key ("claim.role", "client_ip"...), NULL if absent. */
const char *cm_rpc_ctx_meta(const cm_rpc_ctx *ctx, const char *key);

/*
 * Records an error message (formatted into the ctx arena) and returns code,
 * so a handler can "return cm_rpc_error(ctx, CM_NOT_FOUND, "no such code");".
 */
int cm_rpc_error(cm_rpc_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Milliseconds left until the request's deadline (INT32_MAX if none). */
int cm_rpc_ctx_remaining_ms(const cm_rpc_ctx *ctx);

/*
 * A handler.  in is the unpacked request.  On CM_OK the handler sets *out to
 * a message of the method's output type; the handler allocates it (and
 * everything it points to) from ctx->arena, e.g. with cm_rpc_new_msg.
 * Any other return is the reply status (with cm_rpc_error's message).
 */
typedef int (*cm_rpc_handler)(cm_rpc_ctx *ctx, const ProtobufCMessage *in,
                              ProtobufCMessage **out);

/* A zero-initialised message of type desc, allocated from ctx->arena. */
void *cm_rpc_new_msg(cm_rpc_ctx *ctx, const ProtobufCMessageDescriptor *desc);

/* A service: its descriptor and handlers in the descriptor's method order. */
typedef struct cm_rpc_service {
	const ProtobufCServiceDescriptor *desc;
	const cm_rpc_handler *handlers; /* desc->n_methods entries */
} cm_rpc_service;

/* ---- server ---- */

/* Fills the dependencies of a Health.Check reply. */
typedef struct cm_health_dep {
	const char *name; /* "redis", "postgres", "shortener"... */
	bool ok;
	const char *detail; /* may be NULL */
} cm_health_dep;

typedef struct cm_rpc_server_config {
	const char *url;                /* e.g. "tcp://127.0.0.1:7001" */
	const cm_rpc_service *services; /* array of nservices */
	size_t nservices;
	int nworkers; /* worker threads (contexts) */
	/* Per-worker state: called on each worker thread before it serves. */
	void *(*worker_init)(void *arg);
	void (*worker_fini)(void *worker, void *arg);
	/*
	 * Health: fills up to max deps (strings must outlive the call or be
	 * static), returns the number written, and sets *serving.
	 */
	size_t (*health)(void *arg, cm_health_dep *deps, size_t max,
	                 bool *serving);
	void *arg;
} cm_rpc_server_config;

typedef struct cm_rpc_server cm_rpc_server;

/* Listens and starts the workers.  0, or an NNG error (nng_strerror). */
int cm_rpc_server_start(cm_rpc_server **out, const cm_rpc_server_config *cfg);

/*
 * Whether a server may listen on url: a plain "tcp://" listener on an
 * address other than loopback serves anyone who can reach it (callers'
 * user ids and roles are believed), so it is refused unless allow_remote
 * (RPC_ALLOW_PLAIN_REMOTE=1, for a private network such as compose's).
 * Returns 0, or -1 with the reason in err.  cm_rpc_server_start applies
 * it with the environment's setting.
 */
int cm_rpc_listen_check(const char *url, bool allow_remote, char *err,
                        size_t errlen);
/* Stops receiving, lets handlers in progress finish, frees everything. */
void cm_rpc_server_stop(cm_rpc_server *s);

/* ---- client ---- */

typedef struct cm_rpc_client cm_rpc_client;

/*
 * Opens a client dialling every address in addrs (comma-separated).
 * Dialling goes on in the background with backoff.  peer is the name of
 * the service behind them, which a tls+tcp:// server's certificate must
 * carry (NULL: the address's host).  0 or an NNG error; a tls+tcp://
 * address without usable certificates is NNG_EINVAL, logged.
 */
int cm_rpc_client_open_peer(cm_rpc_client **out, const char *addrs,
                            const char *peer);
/* cm_rpc_client_open_peer with the address's host as the peer's name. */
int cm_rpc_client_open(cm_rpc_client **out, const char *addrs);
void cm_rpc_client_close(cm_rpc_client *c);
/* Number of servers currently connected. */
int cm_rpc_client_connected(cm_rpc_client *c);

/*
 * The outcome of a call.  payload (the reply message's packed bytes) and
 * message are valid only during the callback.
 */
typedef struct cm_rpc_result {
	int status;
	const char *message; /* never NULL */
	const uint8_t *payload;
	size_t len;
} cm_rpc_result;

/*
 * Asynchronous call: sends the packed request and calls done exactly once
 * (on an NNG or timer thread, never from within this function -- except
 * when 8192 calls are already in flight on this client: then done runs at
 * once with CM_RESOURCE_EXHAUSTED) with the
 * outcome: the reply, or CM_UNAVAILABLE (no server / connection lost),
 * CM_DEADLINE_EXCEEDED (deadline passed), CM_INTERNAL.  The callback must
 * not block; the gateway hands it to its libuv loop.
 * deadline_ms is absolute (epoch ms).  method is "pkg.Service/Method".
 */
typedef void (*cm_rpc_done)(void *arg, const cm_rpc_result *res);
void cm_rpc_call_async(cm_rpc_client *c, const cm_rpc_meta *meta,
                       const char *method, const uint8_t *payload, size_t len,
                       int64_t deadline_ms, cm_rpc_done done, void *arg);

/*
 * Synchronous call with protobuf messages.  On CM_OK, *out is the unpacked
 * reply of type out_desc, allocated from arena (freed with it).  On any
 * other status, msg (if not NULL) receives the reply message.
 * Returns the status.
 */
int cm_rpc_call(cm_rpc_client *c, const cm_rpc_meta *meta, const char *method,
                const ProtobufCMessage *in,
                const ProtobufCMessageDescriptor *out_desc,
                ProtobufCMessage **out, int64_t deadline_ms, cm_arena *arena,
                char *msg, size_t msglen);

/* Method name "pkg.Service/Method" for a descriptor's method (static buf). */
int cm_rpc_method_name(const ProtobufCServiceDescriptor *sd, unsigned index,
                       char *out, size_t outlen);

#endif
