/*
 * The gateway's runtime: event loops, connections, requests, upstreams.
 * Internal to services/gateway; the pure parts are in gwcore.h.
 *
 * Threads.  GATEWAY_THREADS event loops, each with its own listening
 * socket on the same port (SO_REUSEPORT: the kernel spreads connections),
 * its own connections, click counters and access-log buffer; nothing on
 * the request path is shared between loops except the redirect cache (the
 * cache engine's L1: sharded locks) and metrics (atomics).  The main thread
 * only waits for a signal and tells every loop to drain; the redirect
 * cache's engine has a subscriber thread of its own, which also does the
 * little of the cache's work that needs Redis (rcache.c), so that no loop
 * ever waits for it.
 *
 * A request's life.  The parser (http.c) assembles the request in the
 * connection's arena and pauses at its end; handler.c routes it at
 * headers-complete time (so 404/405/401/413 and "100 Continue" are decided
 * before the body is read) and dispatches it when complete.  A handler
 * either answers at once (cached redirect, /metrics, errors) or calls an
 * upstream; then the connection is "busy": parsing stops, further bytes
 * wait in conn->pending, and the RPC's completion comes back to the loop
 * through upstream.c's queue, writes the response, and resumes parsing.
 * So pipelined requests are answered strictly in order.
 *
 * Memory.  A connection and its buffers are freed in its uv_close callback
 * (or, if an upstream call still refers to it, when that call comes back);
 * everything of a request comes from conn->arena, reset when the response
 * has been queued.
 */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <http_parser.h>
#include <uv.h>

#include "arena.h"
#include "cache.h"
#include "metrics.h"
#include "rpc/rpc.h"

#include "gwcore.h"

/* ---- configuration (main.c), read-only once the loops run ---- */

struct gw_config {
	char listen_host[256];
	int listen_port;
	int threads;
	size_t max_header_bytes;
	size_t max_body_bytes;
	int64_t idle_timeout_ms;
	int64_t request_timeout_ms;
	int64_t rpc_timeout_ms;
	int64_t drain_timeout_ms;
	bool access_log;
	size_t cache_bytes;
	int64_t cache_ttl_ms;
	int64_t negative_ttl_ms;
	int64_t click_flush_ms;
	size_t click_max_codes;
	int redirect_status; /* 302 or 301 */
	const char *jwt_secret;
	size_t jwt_secret_len;
	const char *metrics_token; /* "" = loopback only */
	struct gw_trust trust;
	const char *redis_url;
};

extern struct gw_config gw_cfg;
extern struct gw_router gw_router;

/* ---- the redirect cache (rcache.c) ---- */

/*
 * The cache engine's key prefix and namespace: the shortener's, so that
 * its deletes reach this cache.  They must equal the prefix given to
 * cm_cache_new in services/shortener/main.c and SHORTENER_CACHE_NS
 * (services/shortener/store.h); a service cannot include another's
 * headers, hence the copies.
 */
#define GW_RCACHE_PREFIX "cache"
#define GW_RCACHE_NS     "shortener"

/* The engine; NULL when there is no redirect cache.  Loop threads call
 * only cm_cache_l1_lookup, cm_cache_l1_fill and the functions below. */
extern cm_cache *gw_rcache;

/* main.c: before the loops start / after they have ended. */
void gw_rcache_start(void);
void gw_rcache_stop(void);
/* Drops code from this gateway's L1 (a DELETE it served). */
void gw_rcache_drop(const char *code, size_t clen);
/*
 * For /healthz: false while the cache cannot be used (its invalidation
 * subscription is down, or the namespace's version is not known yet), so
 * that every redirect asks the shortener; *detail (static text) says why.
 * A gateway without a redirect cache is fine ("off").
 */
bool gw_rcache_state(const char **detail);

/* ---- upstreams (upstream.c) ---- */

struct gw_upstream {
	const char *name;         /* "shortener": routes, /healthz, labels */
	const char *addr_env;     /* "SHORTENER_ADDR" */
	const char *addr_default; /* "tcp://127.0.0.1:7001" */
	cm_rpc_client *client;
	cm_histogram *latency;
	/* The gateway serves without it (the rate limiter fails open):
	 * /healthz shows it but stays 200 when it is down. */
	bool soft;
};

extern struct gw_upstream gw_upstreams[];
extern const size_t gw_nupstreams;

/* The outcome of an upstream call, as seen on the loop thread. */
struct gw_reply {
	int status;          /* enum cm_code */
	const char *message; /* never NULL */
	const uint8_t *payload;
	size_t len;
};

struct gw_loop;
struct gw_call;

/*
 * Runs on the loop's thread once the call is over.  arg, tag and idx are
 * the caller's, passed through untouched; r is valid during the call only.
 */
typedef void (*gw_call_cb)(void *arg, uint64_t tag, int idx,
                           const struct gw_reply *r);

void gw_upstreams_open(void);
void gw_upstreams_close(void);
struct gw_upstream *gw_upstream_find(const char *name);

/*
 * Calls method on u asynchronously; cb runs exactly once, later, on l's
 * thread (never from within this function).  The payload and meta are
 * copied before this returns.  timeout_ms is relative.
 */
void gw_upstream_call(struct gw_loop *l, struct gw_upstream *u,
                      const cm_rpc_meta *meta, const char *method,
                      const uint8_t *payload, size_t len, int64_t timeout_ms,
                      gw_call_cb cb, void *arg, uint64_t tag, int idx);
/* Delivers completed calls; the loop's uv_async callback. */
void gw_upstream_deliver(struct gw_loop *l);
/* Frees undelivered completions (a list from a loop's queue). */
void gw_upstream_discard(struct gw_call *list);

/* ---- event loops (loop.c) ---- */

#define GW_RBUF_SIZE (64 * 1024)

struct gw_conn;

struct gw_loop {
	unsigned id;
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_async_t async; /* upstream completions and the drain signal */
	uv_timer_t sweep; /* timeouts, access-log flush */
	uv_timer_t flush; /* click counters */
	pthread_t thread;
	atomic_bool drain_requested;

	/* Completed upstream calls, pushed by NNG threads (upstream.c). */
	pthread_mutex_t qmu;
	struct gw_call *qhead, *qtail;
	bool qclosed;
	size_t calls; /* in flight, counted on the loop */

	bool draining, closing;
	int64_t drain_deadline;  /* uv_now */
	struct gw_conn *conns;   /* live connections */
	struct gw_conn *zombies; /* closed, waiting for an upstream call */
	size_t nconns;

	char rbuf[GW_RBUF_SIZE]; /* read buffer shared by the connections */
	struct gw_buf scratch;   /* JSON error bodies, /metrics text */

	char rid_prefix[16];
	uint64_t rid_seq;
	int64_t date_s;
	char date[40]; /* "Date: ...\r\n" */

	/* clicks (redirect.c) */
	struct gw_clicks clicks;
	cm_arena flush_arena;
	void *flush_batches; /* in flush_arena (redirect.c) */
	int flush_inflight;  /* batches awaiting their reply */
	int64_t flush_last;  /* uv_now of the last flush */
	uint64_t clicks_dropped;

	/* access log (accesslog.c) */
	struct gw_buf alog;
	int64_t alog_s;
	char alog_ts[32];

	/* metrics (metrics.c): counted here, added up by the sweep */
	cm_counter **req_counters; /* (nroutes + 1) x 500 status slots */
	uint64_t *req_local;
	uint64_t cache_hits, cache_misses;
};

extern struct gw_loop **gw_loops;
extern size_t gw_nloops;

/* Binds *port (0: any, then *port is the one bound) and sets up l. */
int gw_loop_init(struct gw_loop *l, unsigned id, int *port);
void *gw_loop_run(void *arg);
/* From any thread: stop accepting, finish, flush clicks, exit the loop. */
void gw_loop_drain(struct gw_loop *l);
void gw_loop_free(struct gw_loop *l);
/* Called when a connection closes or a flush ends while draining. */
void gw_loop_maybe_finish(struct gw_loop *l);
/* "Date: <IMF-fixdate>\r\n", recomputed once a second. */
const char *gw_loop_date(struct gw_loop *l);

/* ---- requests and connections ---- */

/* Headers the gateway reads; others are skipped. */
enum gw_hdr {
	GW_HDR_OTHER = 0,
	GW_HDR_AUTHORIZATION,
	GW_HDR_X_REQUEST_ID,
	GW_HDR_X_FORWARDED_FOR,
	GW_HDR_EXPECT,
	GW_HDR_IF_NONE_MATCH,
	GW_HDR_X_API_KEY,
};

struct gw_req;
typedef void (*gw_reply_cb)(struct gw_conn *c, int idx,
                            const struct gw_reply *r);

struct gw_req {
	int64_t start_us;
	int64_t start_ms; /* uv_now, for the read timeout */
	int method;       /* enum http_method */
	bool have_method;
	bool head;
	bool http10;
	bool keepalive;
	bool complete;   /* message complete; dispatched */
	bool has_expect; /* Expect: 100-continue */

	/* header assembly */
	char fname[32];
	size_t fnlen;
	bool in_value;
	enum gw_hdr cur;
	int nauth;
	struct gw_str url, auth, rid_in, xff, expect;
	struct gw_str inm;    /* If-None-Match */
	struct gw_str apikey; /* X-API-Key, the first one */

	/* decided at headers-complete */
	const char *path, *query;
	size_t plen, qlen;
	struct gw_match match;
	const struct gw_croute *route;
	int early_status; /* answered at message end */
	const char *early_msg;
	const char *early_extra; /* extra headers, e.g. Allow */
	bool want_body, discard_body;
	struct gw_str body;
	size_t body_seen;
	struct gw_identity id;
	char api_key[33]; /* X-API-Key's id for the rate limiter; "" none */
	char rid[130];
	uint8_t client[16];
	const char *client_ip;

	/* upstream work */
	gw_reply_cb on_reply;
	int pending;         /* calls awaiting replies */
	int64_t deadline;    /* uv_now by which an answer is due */
	void *hstate;        /* handler state (health) */
	bool rl_done;        /* rate limit check passed (ratelimit.c) */
	void *rl_state;      /* the check in flight (ratelimit.c) */
	const char *rl_hdrs; /* RateLimit headers for the response */

	/* the redirect cache (redirect.c, handler.c) */
	cm_cache_ticket ticket; /* from a miss, for the fill */

	/* response */
	int status;
	size_t bytes; /* body bytes */
	int64_t dur_us;
	bool responded;
};

struct gw_conn {
	uv_tcp_t tcp;
	struct gw_loop *loop;
	struct gw_conn *prev, *next;
	http_parser parser;
	uint8_t peer[16];
	char peer_str[48];
	struct gw_buf pending; /* unparsed input */
	struct gw_buf out;     /* responses not yet given to the kernel */
	struct gw_buf wr;      /* bytes of the uv_write in flight */
	uv_write_t wreq;
	uv_shutdown_t sreq;
	cm_arena arena;
	struct gw_req req;
	uint64_t seq; /* request number; stale replies are dropped */
	int refs;     /* upstream calls referring to it */
	int64_t last_ms;
	int64_t linger_ms;
	bool writing, reading, busy, in_req, closing, closed;
	bool close_after, eof, linger;
};

/* conn.c */
void gw_conn_accept(struct gw_loop *l);
void gw_conn_flush(struct gw_conn *c);
/* Continues parsing buffered input after an async answer was written. */
void gw_conn_resume(struct gw_conn *c);
void gw_conn_close(struct gw_conn *c);
void gw_conn_sweep(struct gw_conn *c, int64_t now);
/* Whether the connection may be closed right away while draining. */
bool gw_conn_idle(const struct gw_conn *c);
void gw_conn_free(struct gw_conn *c);
/* Whether responses are backed up (parsing pauses). */
bool gw_conn_out_full(const struct gw_conn *c);
/* A closed connection lost an upstream reference; frees it at zero. */
void gw_conn_unref_closed(struct gw_conn *c);

/* http.c */
void gw_http_init(struct gw_conn *c);
/* Parses as much of data as may be; returns the bytes consumed. */
size_t gw_http_feed(struct gw_conn *c, const char *data, size_t len);

/*
 * Writes a complete response for the current request into c->out: status
 * line, Date, Content-Type (if body or ctype), Content-Length, X-Request-Id,
 * Connection as needed, extra (preformatted "Name: value\r\n" lines), and
 * the body unless the request was HEAD.  Then ends the request: access log,
 * metrics, arena reset.
 */
void gw_respond(struct gw_conn *c, int status, const char *ctype,
                const char *extra, const void *body, size_t len);
/* gw_respond with a JSON error body {"error":{"code","message"}}. */
void gw_respond_error(struct gw_conn *c, int status, const char *code,
                      const char *msg, const char *extra);
/* Redirect, the hot path: no body, Location and Cache-Control. */
void gw_respond_redirect(struct gw_conn *c, int status, const char *loc,
                         size_t loclen, const char *cache_control);
/* Queues "HTTP/1.1 100 Continue" (the request goes on). */
void gw_respond_continue(struct gw_conn *c);

/* handler.c */
/* At headers-complete: route, auth, limits.  0, or -1 to fail the parse
 * (the early status is then answered and the connection closed). */
int gw_request_head(struct gw_conn *c);
/* Sets the request id: the client's X-Request-Id if sane, else a new one. */
void gw_request_rid(struct gw_conn *c);
void gw_request_dispatch(struct gw_conn *c);
/* Calls an upstream for the current request; cb gets the reply if the
 * request is still the current one when it arrives. */
void gw_request_call(struct gw_conn *c, struct gw_upstream *u,
                     const char *method, const uint8_t *payload, size_t len,
                     int idx, gw_reply_cb cb);
/* Fills meta for an RPC made for the current request. */
void gw_request_meta(struct gw_conn *c, cm_rpc_meta *meta);
void gw_error_from_reply(struct gw_conn *c, const struct gw_upstream *u,
                         const struct gw_reply *r);

/* redirect.c */
void gw_redirect_handle(struct gw_conn *c);
void gw_clicks_flush(struct gw_loop *l, bool final);

/* ratelimit.c */
void gw_ratelimit_init(void);
void gw_ratelimit_fini(void);
/*
 * Checks the current request against the rate limiter.  True: go on with
 * the handler now.  False: the check is in flight; its completion either
 * answers (429, 503) or calls gw_request_dispatch again.
 */
bool gw_ratelimit_check(struct gw_conn *c);

/* metrics.c */
void gw_metrics_init(void);
void gw_metrics_loop_init(struct gw_loop *l);
void gw_metrics_loop_fini(struct gw_loop *l);
void gw_metrics_loop_flush(struct gw_loop *l);
void gw_metrics_request(struct gw_loop *l, const struct gw_croute *r,
                        int status, int64_t dur_us);
void gw_metrics_upstream_error(const struct gw_upstream *u, int code);
void gw_metrics_cache(struct gw_loop *l, bool hit);
void gw_metrics_clicks(uint64_t flushed, uint64_t dropped);
void gw_metrics_handle(struct gw_conn *c);

/* accesslog.c */
/* The writer thread: started before the loops, stopped after them. */
void gw_alog_start(void);
void gw_alog_stop(void);
void gw_alog_request(struct gw_conn *c);
/* Hands the loop's buffered lines to the writer. */
void gw_alog_flush(struct gw_loop *l);

/* probe.c */
int gw_health_probe(const char *addr, int timeout_ms);

#endif
