/*
 * net: the gateway's network layer.  Event loops, connections, HTTP/1.1
 * framing and the response writer.  It knows no route, no handler and no
 * service: what a request means is decided by the application above it
 * (core/), which plugs in through one table of hooks (struct gw_app).
 *
 * Threads.  GATEWAY_THREADS loops, each with its own listening socket on
 * the same port (SO_REUSEPORT: the kernel spreads connections), its own
 * connections and read buffer.  Everything here runs on a loop's thread
 * except gw_loop_post and gw_loop_drain, which other threads call.
 *
 * Connections.  A connection speaks one protocol at a time through a
 * vtable (struct gw_proto): HTTP/1.1 first; after a "101 Switching
 * Protocols" the application hands the connection to another protocol
 * (gw_req_upgrade), whose feed function then gets every byte.  Its life
 * is one state (enum gw_conn_state) plus independent I/O flags.  Memory
 * tied to a connection is freed only in its uv_close callback, or later
 * while references taken with gw_req_hold remain.
 *
 * A request's life (HTTP/1.1).  The parser assembles the request line and
 * every header in the connection's arena; at the end of the headers the
 * application's on_head decides (it may answer at once) and says how the
 * body is to be taken: discarded, buffered whole, or streamed in pieces
 * with back-pressure, each bounded by rq->max_body.  When the message is
 * complete the application's on_complete runs; it answers then or later,
 * whole (gw_respond) or in pieces (gw_resp_start, gw_resp_send).  The
 * request ends when both the message and its response are complete: the
 * application's on_end accounts for it and the arena is released in one
 * call.  One request is handled at a time per connection; pipelined ones
 * wait (bounded) until the one before them has been answered, so responses
 * go out in order with no reordering queue.
 */
#ifndef GW_NET_H
#define GW_NET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <http_parser.h>
#include <uv.h>

#include "arena.h"
#include "lib/gwlib.h"

/* ---- configuration, set before the loops start ---- */

struct gw_net_config {
	char listen_host[256];
	int listen_port;
	int threads;
	size_t max_header_bytes; /* request line + headers; over it 431 */
	size_t max_headers;      /* header lines; over it 431 */
	uint64_t max_body_bytes; /* default rq->max_body */
	uint64_t body_budget;    /* buffered body bytes, all requests */
	int64_t idle_timeout_ms;
	int64_t write_timeout_ms;   /* output with no write progress */
	int64_t request_timeout_ms; /* to receive a whole request */
	int64_t drain_timeout_ms;
	size_t max_conns;              /* open connections, all loops */
	size_t max_conns_per_addr;     /* per client address (socket peer) */
	const struct gw_trust *exempt; /* peers without a per-address cap */
};

extern struct gw_net_config gw_net_cfg;

struct gw_loop;
struct gw_conn;
struct gw_req;

/* ---- the application's hooks ---- */

/* What on_body answers. */
enum gw_body_ret {
	GW_BODY_GO = 0, /* give me more */
	GW_BODY_PAUSE,  /* the piece is taken; no more until gw_req_resume */
};

struct gw_app {
	/* Per loop: on the main thread, before the loop runs / after it
	 * has ended (loop->app is the application's). */
	void (*loop_init)(struct gw_loop *l);
	void (*loop_free)(struct gw_loop *l);
	/* On the loop, every GW_TICK_MS. */
	void (*tick)(struct gw_loop *l);
	/*
	 * Draining, with no connection left: true when the application has
	 * nothing left to finish (the loop then ends).  force: the drain
	 * deadline has passed; the loop ends whatever the answer.
	 */
	bool (*drained)(struct gw_loop *l, bool force);
	/* The loop is about to end: close the application's own handles. */
	void (*loop_close)(struct gw_loop *l);

	/*
	 * The headers are in.  The application may answer at once (an early
	 * refusal: the body, if any, is then discarded or, with "Expect:
	 * 100-continue", never invited); else it sets rq->body_mode and
	 * rq->max_body, and may pause the request (gw_req_pause) while it
	 * decides asynchronously.
	 */
	void (*on_head)(struct gw_req *rq);
	/* GW_BODY_STREAM: a piece of the body (never empty). */
	enum gw_body_ret (*on_body)(struct gw_req *rq, const char *p,
	                            size_t len);
	/* The message is complete and not answered yet. */
	void (*on_complete)(struct gw_req *rq);
	/* rq->deadline has passed with no answer: answer now. */
	void (*on_timeout)(struct gw_req *rq);
	/*
	 * The request is over: answered (rq->status, rq->bytes), or the client
	 * went away first (status 499).  For logs and metrics; rq's memory is
	 * released right after.
	 */
	void (*on_end)(struct gw_req *rq);
	/* Writing a response head: append the application's own headers
	 * (a request id) as "Name: value\r\n" lines. */
	void (*head_lines)(struct gw_req *rq, struct gw_buf *out);
};

/* Installs the application; before the loops start. */
void gw_net_init(const struct gw_app *app);

/* ---- loops ---- */

#define GW_TICK_MS   250
#define GW_RBUF_SIZE (64 * 1024)

/* Work handed to a loop from another thread. */
struct gw_task {
	struct gw_task *next;
	void (*run)(struct gw_loop *l, struct gw_task *t);
};

enum gw_loop_state {
	GW_LOOP_RUNNING = 0,
	GW_LOOP_DRAINING, /* not accepting; connections finish */
	GW_LOOP_CLOSING,  /* handles closing; uv_run about to return */
};

struct gw_loop {
	unsigned id;
	uv_loop_t uv;
	uv_tcp_t listener;
	uv_async_t async; /* posted tasks and the drain signal */
	uv_timer_t tick;
	pthread_t thread;
	atomic_bool drain_requested;
	enum gw_loop_state state;
	int64_t drain_deadline; /* uv_now */

	pthread_mutex_t qmu; /* posted tasks */
	struct gw_task *qhead, *qtail;
	bool qclosed;

	struct gw_conn *conns;   /* live connections */
	struct gw_conn *zombies; /* closed, still referenced */
	size_t nconns;

	uv_tcp_t reject;  /* accepts and closes when no memory is left */
	bool reject_busy; /* its close is under way */

	char rbuf[GW_RBUF_SIZE]; /* read buffer shared by the connections */
	struct gw_buf scratch;   /* for building one response body */
	int64_t date_s;
	char date[40]; /* "Date: ...\r\n" */

	void *app; /* the application's per-loop state */
};

extern struct gw_loop **gw_loops;
extern size_t gw_nloops;

/* Starts gw_net_cfg.threads loops listening; *port is the one bound. */
int gw_loops_start(int *port);
/* From the main thread: drain every loop and wait for them to end. */
void gw_loops_stop(void);
/*
 * Then, once nothing can post to them any more (upstream clients closed):
 * runs what was posted late and frees the loops.
 */
void gw_loops_free(void);
/*
 * From any thread: runs t->run on l's thread, later.  Returns 0, or -1 if
 * the loop has ended (t was not taken; the caller frees it).
 */
int gw_loop_post(struct gw_loop *l, struct gw_task *t);
/* The loop's clock (uv_now), milliseconds. */
int64_t gw_loop_now(const struct gw_loop *l);
/* "Date: <IMF-fixdate>\r\n", recomputed once a second. */
const char *gw_loop_date(struct gw_loop *l);
/* Called by the application when work it reported in drained() ended. */
void gw_loop_check_drained(struct gw_loop *l);

/* ---- connections and protocols ---- */

enum gw_conn_state {
	GW_CONN_OPEN = 0, /* reading and writing */
	GW_CONN_ENDING,   /* close once the queued output is written */
	GW_CONN_LINGER,   /* write side shut; reading and discarding */
	GW_CONN_CLOSING,  /* uv_close called */
	GW_CONN_CLOSED,   /* handle closed; kept while referenced */
};

/*
 * A protocol spoken on a connection.  feed gets every byte received (it
 * must take them all, buffering what it cannot use yet, and may stop
 * reading with gw_conn_read_pause); eof when the peer has half-closed;
 * drained when all queued output has been written; tick on every loop
 * tick (timeouts); drain when the gateway shuts down (finish, then end the
 * connection: HTTP closes an idle one at once, WebSocket says "going
 * away"); close once, when the connection closes, to free the protocol's
 * state.  Any hook but feed and close may be NULL.
 */
struct gw_proto {
	const char *name;
	void (*feed)(struct gw_conn *c, void *state, const char *p, size_t len);
	void (*eof)(struct gw_conn *c, void *state);
	void (*drained)(struct gw_conn *c, void *state);
	void (*tick)(struct gw_conn *c, void *state, int64_t now);
	void (*drain)(struct gw_conn *c, void *state);
	void (*close)(struct gw_conn *c, void *state);
};

struct gw_conn {
	uv_tcp_t tcp;
	struct gw_loop *loop;
	struct gw_conn *prev, *next;
	enum gw_conn_state state;
	/* I/O flags, independent of the state */
	bool reading;     /* uv_read_start in force */
	bool read_paused; /* the protocol asked not to read */
	bool writing;     /* a uv_write in flight */
	bool eof;         /* the peer half-closed */
	const struct gw_proto *proto;
	void *pstate;
	uint8_t peer[16];
	char peer_str[48];
	struct gw_buf out; /* output not yet given to the kernel */
	struct gw_buf wr;  /* bytes of the uv_write in flight */
	uv_write_t wreq;
	uv_shutdown_t sreq;
	int refs;         /* gw_req_hold references */
	uint8_t counted;  /* in the connection caps (conn.c) */
	int64_t last_ms;  /* last byte received or sent */
	int64_t write_ms; /* last write progress */
	int64_t linger_ms;
};

/* Queues bytes and writes them (uv_try_write first). */
void gw_conn_write(struct gw_conn *c, const void *p, size_t len);
/* Writes what is queued; called after a batch of gw_conn_write. */
void gw_conn_flush(struct gw_conn *c);
/* Bytes queued and not yet taken by the kernel. */
size_t gw_conn_queued(const struct gw_conn *c);
/* Ends the connection once the queued output is written. */
void gw_conn_end(struct gw_conn *c);
/* Closes at once. */
void gw_conn_close(struct gw_conn *c);
/* Back-pressure for protocols: stop / restart reading. */
void gw_conn_read_pause(struct gw_conn *c);
void gw_conn_read_resume(struct gw_conn *c);

/* ---- HTTP/1.1 requests ---- */

struct gw_header {
	const char *name, *value; /* NUL-terminated, in the arena */
	size_t nlen, vlen;
};

enum gw_body_mode {
	GW_BODY_DISCARD = 0, /* read and dropped (bounded by max_body) */
	GW_BODY_BUFFER,      /* whole, in rq->body */
	GW_BODY_STREAM,      /* in pieces to on_body, with back-pressure */
};

/* Set by gw_req_hold, checked by gw_req_release. */
struct gw_req_ref {
	struct gw_conn *c;
	uint64_t seq;
};

typedef void (*gw_proceed_cb)(struct gw_req *rq, void *arg);

struct gw_req {
	struct gw_conn *conn;
	struct gw_loop *loop;
	cm_arena *arena; /* released when the request ends */
	uint64_t seq;    /* per connection */
	int64_t start_us, start_ms;

	/* the request, as parsed */
	int method; /* enum http_method, once method_known */
	bool method_known;
	bool head, http10, keepalive, upgrade, chunked, expect_continue;
	uint64_t content_length; /* UINT64_MAX: none */
	const char *target;      /* the request target, NUL-terminated */
	size_t tlen;
	struct gw_header *hdrs;
	size_t nhdrs;

	/* set by the application (on_head) */
	enum gw_body_mode body_mode;
	uint64_t max_body;
	int64_t deadline; /* loop ms by which an answer is due; 0: none */
	void *app;        /* the application's per-request state */

	/* the body: buffered (GW_BODY_BUFFER), or bytes seen so far */
	struct gw_str body;
	uint64_t body_seen;
	uint64_t body_held; /* of the global budget (buffered bytes) */

	/* the response */
	int status;
	uint64_t bytes; /* body bytes sent */
	bool responded; /* a head (other than 100) has been written */
	bool finished;  /* the response is complete */

	/* internal to net */
	struct gw_str resp_hdrs; /* "Name: value\r\n" lines added */
	bool complete;           /* the message has been received */
	bool paused;             /* gw_req_pause in force */
	bool continued;          /* 100 Continue sent */
	bool resp_chunked;
	uint64_t resp_left; /* Content-Length still to send */
	gw_proceed_cb proceed;
	void *proceed_arg;
	bool want_proceed;
};

/* The first header named name (case-insensitive), or NULL; *len set. */
const char *gw_req_header(const struct gw_req *rq, const char *name,
                          size_t *len);
/* How many headers are named name. */
size_t gw_req_header_count(const struct gw_req *rq, const char *name);
/*
 * All headers named name joined with ", " (as RFC 9110 allows for list
 * headers), in the arena; NULL if there is none.
 */
const char *gw_req_header_join(struct gw_req *rq, const char *name,
                               size_t *len);
/* "GET", "POST", ... */
const char *gw_req_method(const struct gw_req *rq);

/*
 * Pausing: no more body is read (and on_complete waits) until
 * gw_req_resume.  From on_head: before any body byte is taken and before
 * "100 Continue" is sent.
 */
void gw_req_pause(struct gw_req *rq);
void gw_req_resume(struct gw_req *rq);

/*
 * References for asynchronous work: gw_req_hold notes the request;
 * gw_req_release drops the reference and returns the request if it is
 * still the connection's current one and unanswered, else NULL (the
 * client went away, or it was answered meanwhile, by a timeout say).
 * Every hold is released exactly once.
 */
void gw_req_hold(struct gw_req *rq, struct gw_req_ref *ref);
struct gw_req *gw_req_release(struct gw_req_ref *ref);

/* Adds a response header (copied); before the response starts. */
void gw_resp_header(struct gw_req *rq, const char *name, const char *value);
/* Adds preformatted "Name: value\r\n" lines (copied). */
void gw_resp_lines(struct gw_req *rq, const char *lines, size_t len);

/*
 * A whole response: status line, Date, Content-Type (if ctype),
 * Content-Length (but for 1xx, 204 and 304), the application's and the
 * added headers, Connection as needed, and the body unless the request
 * was HEAD.  The response is complete: rq must not be used after (it may
 * already be released).
 */
void gw_respond(struct gw_req *rq, int status, const char *ctype,
                const void *body, size_t len);
/* gw_respond with a JSON error body {"error":{"code","message"}}. */
void gw_respond_error(struct gw_req *rq, int status, const char *code,
                      const char *msg);
/* The redirect, a hot path: no body, Location and Cache-Control. */
void gw_respond_redirect(struct gw_req *rq, int status, const char *loc,
                         size_t loclen, const char *cache_control);

/*
 * A response in pieces.  gw_resp_start writes the head with a
 * Content-Length (length) or, with GW_LEN_CHUNKED, chunked encoding
 * (HTTP/1.1 clients; an HTTP/1.0 client gets the body until close).
 * Returns true if a body is to follow: then the handler sends it with
 * gw_resp_send, the last piece with final set, and proceed(rq, arg) is
 * called whenever the output has drained enough for the next piece (never
 * from within gw_resp_send).  Returns false when no body is sent (HEAD,
 * 204, 304): the response is then complete and rq must not be used.
 * Sending more than length bytes, or ending short of it, closes the
 * connection after the response.
 */
#define GW_LEN_CHUNKED UINT64_MAX
bool gw_resp_start(struct gw_req *rq, int status, const char *ctype,
                   uint64_t length, gw_proceed_cb proceed, void *arg);
void gw_resp_send(struct gw_req *rq, const void *p, size_t len, bool final);

/*
 * Hands the connection to another protocol after a 101 response was
 * written with gw_respond: the request ends, the HTTP state (parser,
 * arena, buffers) is freed, and every byte from then on, including those
 * already received after the request, goes to proto->feed.  rq must not be
 * used after.
 */
void gw_req_upgrade(struct gw_req *rq, const struct gw_proto *proto,
                    void *state);

#endif /* GW_NET_H */
