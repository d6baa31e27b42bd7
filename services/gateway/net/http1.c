/*
 * HTTP/1.1, the protocol every connection starts with: http-parser's
 * callbacks assemble a request (request line and every header) in the
 * connection's arena, the feed loop runs the parser over received bytes,
 * and the response writers put responses, whole or in pieces, into the
 * connection's output.
 *
 * One request at a time.  The parser is paused at the end of every
 * message, so a connection's next request is parsed only once the current
 * one has been answered; bytes received meanwhile wait in h1->pending,
 * which is bounded (past PENDING_MAX reading stops).  Responses therefore
 * go out in request order without a reordering queue, and a batch of
 * pipelined requests answered at once costs one write.
 *
 * A request ends when both its message has been received and its response
 * completed (an early refusal may be written while the body is still
 * being read and discarded).  Then the application's on_end runs and the
 * arena is released in one call.
 *
 * Bounds.  The request line and headers together are bounded by
 * http-parser's own limit (http_parser_set_max_header_size; over it 431),
 * the number of header lines by GATEWAY_MAX_HEADERS (431), the body by
 * rq->max_body (413; a Content-Length over it is refused before a byte
 * of the body is read, and "100 Continue" is never sent for it), and the
 * time to receive a request by GATEWAY_REQUEST_TIMEOUT_MS (408; for a
 * streamed body, the time since the last byte).
 *
 * Back-pressure.  A streamed body goes to the application's on_body piece
 * by piece (at most one read buffer each); when it answers
 * GW_BODY_PAUSE the parser stops after that piece, bytes pile up in
 * pending up to PENDING_MAX and then reading stops, until gw_req_resume.
 * A response in pieces gets its proceed callback only when everything
 * queued has been written, so a slow reader holds one piece, not the file.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#include "internal.h"

#define PENDING_MAX (256 * 1024)
#define OUT_MAX     (1024 * 1024)
#define TRIM_ABOVE  (64 * 1024)

struct h1 {
	struct gw_conn *c;
	http_parser parser;
	cm_arena arena;
	struct gw_req req;
	uint64_t seq;
	bool in_req;      /* a request has begun and not ended */
	bool in_run;      /* the parser is running (responses wait) */
	bool close_after; /* the connection ends after this response */
	bool eof;         /* the client half-closed */
	bool upgraded;    /* handed to another protocol */
	bool completed;   /* on_message_complete just ran */
	bool head_done;   /* on_headers_complete just ran */
	bool in_head;     /* the bytes parsed are a request head */
	char head_prev;   /* the last head byte seen (bare LF check) */
	bool too_many;    /* header lines over the bound */
	struct gw_buf pending;
	/* header assembly */
	struct gw_str url, hname, hval;
	bool in_value;
	size_t hcap;
};

static void h1_run(struct h1 *h, const char *data, size_t len);

/*
 * Buffered request bodies in flight, all loops: bounded by
 * GATEWAY_BODY_BUDGET_BYTES, so that many slow uploads at once cannot
 * hold the gateway's memory (a body is allocated as it arrives, never
 * from its Content-Length; over the budget: 503).
 */
static atomic_uint_fast64_t bodies_held;

static bool
body_reserve(struct gw_req *rq, size_t len)
{
	uint64_t was = atomic_fetch_add(&bodies_held, len);

	if (was + len > gw_net_cfg.body_budget) {
		atomic_fetch_sub(&bodies_held, len);
		return (false);
	}
	rq->body_held += len;
	return (true);
}

static void
body_release(struct gw_req *rq)
{
	if (rq->body_held > 0)
		atomic_fetch_sub(&bodies_held, rq->body_held);
	rq->body_held = 0;
}

static struct h1 *
h1_of(const struct gw_req *rq)
{
	return ((struct h1 *) rq->conn->pstate);
}

/* ---- request begin and end ---- */

static void
h1_req_begin(struct h1 *h)
{
	struct gw_req *rq = &h->req;
	struct gw_conn *c = h->c;

	memset(rq, 0, sizeof(*rq));
	memset(&h->url, 0, sizeof(h->url));
	memset(&h->hname, 0, sizeof(h->hname));
	memset(&h->hval, 0, sizeof(h->hval));
	h->in_value = false;
	h->hcap = 0;
	h->too_many = false;
	rq->conn = c;
	rq->loop = c->loop;
	rq->arena = &h->arena;
	rq->seq = ++h->seq;
	rq->start_us = cm_mono_us();
	rq->start_ms = gw_loop_now(c->loop);
	rq->content_length = UINT64_MAX;
	rq->max_body = gw_net_cfg.max_body_bytes;
	rq->target = "";
	h->in_req = true;
}

/* Both the message and its response are complete. */
static void
h1_req_end(struct h1 *h)
{
	struct gw_req *rq = &h->req;

	if (!h->in_req)
		return;
	if (rq->start_us != 0)
		gw_app->on_end(rq);
	body_release(rq);
	/*
	 * The struct stays as it is (finished, responded) until the next
	 * request begins, so a caller that checks rq->finished after a call
	 * that may have ended it reads the truth; what it pointed to in the
	 * arena is gone.
	 */
	rq->finished = true;
	h->in_req = false;
	h->in_head = true;
	cm_arena_reset(&h->arena);
	gw_conn_trim(h->c);
}

/* The response is complete. */
static void
h1_finish(struct gw_req *rq)
{
	struct h1 *h = h1_of(rq);

	rq->finished = true;
	rq->want_proceed = false;
	if (rq->status == 101)
		return; /* gw_req_upgrade follows */
	if (rq->paused) {
		/* Answered while paused: the rest is read and discarded. */
		rq->paused = false;
		http_parser_pause(&h->parser, 0);
	}
	if (rq->complete || h->close_after)
		h1_req_end(h);
	if (h->close_after)
		gw_conn_end(h->c);
	else if (!h->in_run)
		h1_run(h, NULL, 0);
}

/* ---- parser callbacks ---- */

static int
on_message_begin(http_parser *p)
{
	h1_req_begin(p->data);
	return (0);
}

static int
on_url(http_parser *p, const char *at, size_t len)
{
	struct h1 *h = p->data;

	gw_str_append(&h->url, &h->arena, at, len);
	return (0);
}

/* A header line is complete: into rq->hdrs. */
static void
header_push(struct h1 *h)
{
	struct gw_req *rq = &h->req;
	struct gw_header *hd;

	if (!h->in_value)
		return;
	h->in_value = false;
	if (rq->nhdrs == gw_net_cfg.max_headers) {
		h->too_many = true;
	} else {
		if (rq->nhdrs == h->hcap) {
			size_t cap = h->hcap ? h->hcap * 2 : 16;
			struct gw_header *v =
			    cm_arena_alloc(&h->arena, cap * sizeof(*v));

			if (rq->nhdrs > 0)
				memcpy(v, rq->hdrs, rq->nhdrs * sizeof(*v));
			rq->hdrs = v;
			h->hcap = cap;
		}
		hd = &rq->hdrs[rq->nhdrs++];
		hd->name = h->hname.p != NULL ? h->hname.p : "";
		hd->nlen = h->hname.len;
		hd->value = h->hval.p != NULL ? h->hval.p : "";
		hd->vlen = h->hval.len;
		{
			size_t vl = hd->vlen;

			/* Optional whitespace after the value is not part
			 * of it (the parser drops the leading one). */
			gw_trim(hd->value, &vl);
			hd->vlen = vl;
		}
	}
	memset(&h->hname, 0, sizeof(h->hname));
	memset(&h->hval, 0, sizeof(h->hval));
}

static int
on_header_field(http_parser *p, const char *at, size_t len)
{
	struct h1 *h = p->data;

	header_push(h);
	if (!h->too_many)
		gw_str_append(&h->hname, &h->arena, at, len);
	return (0);
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
	struct h1 *h = p->data;

	h->in_value = true;
	if (!h->too_many)
		gw_str_append(&h->hval, &h->arena, at, len);
	return (0);
}

/* Queues "100 Continue" once the body is really wanted. */
static void
maybe_continue(struct h1 *h)
{
	struct gw_req *rq = &h->req;
	bool has_body = rq->chunked || (rq->content_length != UINT64_MAX &&
	                                rq->content_length > 0);

	if (!rq->expect_continue || rq->continued || rq->responded || !has_body)
		return;
	rq->continued = true;
	gw_buf_append(&h->c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

/* An error the framing itself decides; the connection ends after it. */
static void
h1_refuse(struct h1 *h, int status, const char *msg)
{
	h->close_after = true;
	gw_respond_error(&h->req, status, gw_http_code_name(status), msg);
}

static int
on_headers_complete(http_parser *p)
{
	struct h1 *h = p->data;
	struct gw_req *rq = &h->req;
	const char *expect;
	size_t elen;
	bool has_body;

	header_push(h);
	rq->method = p->method;
	rq->method_known = true;
	rq->head = p->method == HTTP_HEAD;
	rq->http10 = p->http_major == 1 && p->http_minor == 0;
	rq->upgrade = p->upgrade != 0;
	rq->keepalive = http_should_keep_alive(p) && !rq->upgrade;
	rq->chunked = (p->flags & F_CHUNKED) != 0;
	if (p->content_length != ULLONG_MAX)
		rq->content_length = p->content_length;
	rq->target = h->url.p != NULL ? h->url.p : "";
	rq->tlen = h->url.len;
	if (h->too_many) {
		h1_refuse(h, 431, "too many header lines");
		return (-1);
	}
	if (p->http_major == 0 && p->http_minor == 9) {
		h1_refuse(h, 400, "request line without an HTTP version");
		return (-1);
	}
	if (p->http_major != 1 || p->http_minor > 1) {
		h1_refuse(h, 505, "only versions 1.0 and 1.1 are served");
		return (-1);
	}
	/*
	 * The parser (built non-strict) takes malformed chunk framing that
	 * a proxy in front may read otherwise: chunked bodies are refused,
	 * so that no two readers can disagree where a request ends.
	 */
	if (rq->chunked) {
		h1_refuse(h, 411,
		          "chunked request bodies are not accepted: "
		          "send Content-Length");
		return (-1);
	}
	if ((expect = gw_req_header(rq, "expect", &elen)) != NULL) {
		if (!gw_strcaseeq(expect, elen, "100-continue") ||
		    gw_req_header_count(rq, "expect") > 1) {
			h1_refuse(h, 417, "unsupported expectation");
			return (-1);
		}
		rq->expect_continue = !rq->http10;
	}
	has_body = rq->chunked ||
	           (rq->content_length != UINT64_MAX && rq->content_length > 0);

	gw_app->on_head(rq);
	if (!h->in_req || rq->finished) {
		/*
		 * Refused early: never invite a body we would throw away, and
		 * read one only up to the gateway's default bound (a refused
		 * upload is not read for gigabytes to keep the connection).
		 */
		if (h->in_req && rq->max_body > gw_net_cfg.max_body_bytes)
			rq->max_body = gw_net_cfg.max_body_bytes;
		if (has_body && (rq->expect_continue || !h->in_req ||
		                 (rq->content_length != UINT64_MAX &&
		                  rq->content_length > rq->max_body))) {
			h->close_after = true;
			if (h->in_req && rq->finished)
				h1_req_end(h);
			gw_conn_end(h->c);
			return (-1);
		}
		if (h->in_req)
			rq->body_mode = GW_BODY_DISCARD;
		h->head_done = true;
		http_parser_pause(p, 1);
		return (0);
	}
	if (rq->content_length != UINT64_MAX &&
	    rq->content_length > rq->max_body) {
		h1_refuse(h, 413, "request body too large");
		return (-1);
	}
	if (!rq->paused)
		maybe_continue(h);
	/* Paused here always, so the feed loop knows where the head ended
	 * (the bare LF check); it goes on unless the application paused. */
	h->head_done = true;
	http_parser_pause(p, 1);
	return (0);
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
	struct h1 *h = p->data;
	struct gw_req *rq = &h->req;

	rq->body_seen += len;
	if (rq->body_seen > rq->max_body) {
		if (rq->finished) {
			/* Discarding after an early answer: enough. */
			h->close_after = true;
			gw_conn_end(h->c);
		} else {
			h1_refuse(h, 413, "request body too large");
		}
		return (-1);
	}
	if (rq->finished)
		return (0);
	switch (rq->body_mode) {
	case GW_BODY_BUFFER:
		if (!body_reserve(rq, len)) {
			h1_refuse(h, 503, "too many request bodies in flight");
			return (-1);
		}
		gw_str_append(&rq->body, &h->arena, at, len);
		break;
	case GW_BODY_STREAM:
		if (gw_app->on_body(rq, at, len) == GW_BODY_PAUSE &&
		    h->in_req && !rq->finished) {
			rq->paused = true;
			http_parser_pause(p, 1);
		}
		break;
	case GW_BODY_DISCARD:
	default:
		break;
	}
	return (0);
}

static int
on_message_complete(http_parser *p)
{
	struct h1 *h = p->data;

	h->req.complete = true;
	h->completed = true;
	http_parser_pause(p, 1);
	return (0);
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* A parse error: answer it (unless answered already) and end. */
static void
h1_parse_error(struct h1 *h, enum http_errno e)
{
	if (h->close_after || h->c->state != GW_CONN_OPEN)
		return; /* answered, or the connection is ending */
	if (!h->in_req)
		h1_req_begin(h);
	if (h->req.finished) {
		h->close_after = true;
		h1_req_end(h);
		gw_conn_end(h->c);
		return;
	}
	if (e == HPE_HEADER_OVERFLOW)
		h1_refuse(h, 431, "request header too large");
	else if (e == HPE_LF_EXPECTED)
		h1_refuse(h, 400, "line ends must be CRLF");
	else
		h1_refuse(h, 400, http_errno_description(e));
}

/* The message is in: hand it to the application, or end the request. */
static void
h1_complete(struct h1 *h)
{
	struct gw_req *rq = &h->req;

	h->completed = false;
	if (!h->in_req)
		return;
	if (rq->finished) {
		h1_req_end(h);
		return;
	}
	gw_app->on_complete(rq);
}

/* Whether the parser may run now. */
static bool
h1_can_parse(const struct h1 *h)
{
	return (h->c->state == GW_CONN_OPEN && !h->close_after &&
	        !h->upgraded && !(h->in_req && h->req.complete) &&
	        !(h->in_req && h->req.paused) &&
	        gw_conn_queued(h->c) <= OUT_MAX);
}

/*
 * Whether the head bytes p[0..n) hold a line feed not preceded by a
 * carriage return: the parser accepts one, a proxy in front may not, and
 * the two would then disagree where headers end.  The previous byte is
 * kept across reads.
 */
static bool
head_bare_lf(struct h1 *h, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n' && h->head_prev != '\r')
			return (true);
		h->head_prev = p[i];
	}
	return (false);
}

/* Runs the parser over data; returns the bytes consumed. */
static size_t
h1_parse(struct h1 *h, const char *data, size_t len)
{
	size_t off = 0;

	while (off < len && h1_can_parse(h)) {
		size_t n = http_parser_execute(&h->parser, &settings,
		                               data + off, len - off);
		enum http_errno e = HTTP_PARSER_ERRNO(&h->parser);

		if (h->in_head &&
		    head_bare_lf(h, data + off,
		                 e == HPE_PAUSED && h->head_done ? n + 1 : n)) {
			h->in_head = false;
			h1_parse_error(h, HPE_LF_EXPECTED);
			return (len);
		}
		off += n;
		if (e == HPE_PAUSED && h->head_done) {
			h->head_done = false;
			h->in_head = false;
			if (h->in_req && h->req.paused)
				break; /* the application's: until resume */
			http_parser_pause(&h->parser, 0);
			continue;
		}
		if (e == HPE_PAUSED) {
			if (h->completed) {
				http_parser_pause(&h->parser, 0);
				h1_complete(h);
				continue;
			}
			/* Paused by the application: wait for resume. */
			break;
		}
		if (e != HPE_OK) {
			h1_parse_error(h, e);
			return (len);
		}
		if (n == 0)
			break;
	}
	return (off);
}

/* Hands the connection over after a 101 (gw_req_upgrade). */
static void
h1_switch(struct h1 *h, const char *data, size_t len)
{
	struct gw_conn *c = h->c;
	struct gw_buf rest = h->pending;

	memset(&h->pending, 0, sizeof(h->pending));
	if (len > 0)
		gw_buf_append(&rest, data, len);
	cm_arena_fini(&h->arena);
	free(h);
	gw_conn_read_resume(c);
	if (rest.len > 0)
		c->proto->feed(c, c->pstate, rest.p, rest.len);
	gw_buf_free(&rest);
	gw_conn_flush(c);
}

/*
 * Parses what is pending, then data (new bytes, may be NULL), keeping
 * what cannot be parsed yet; pauses or resumes reading by the backlog.
 */
static void
h1_run(struct h1 *h, const char *data, size_t len)
{
	struct gw_conn *c = h->c;
	size_t used;

	if (h->in_run)
		return;
	h->in_run = true;
	while (h->pending.len > 0 && h1_can_parse(h)) {
		used = h1_parse(h, h->pending.p, h->pending.len);
		if (used == 0)
			break;
		memmove(h->pending.p, h->pending.p + used,
		        h->pending.len - used);
		h->pending.len -= used;
	}
	if (len > 0 && h->pending.len == 0 && h1_can_parse(h)) {
		used = h1_parse(h, data, len);
		data += used;
		len -= used;
	}
	h->in_run = false;
	if (h->upgraded) {
		h1_switch(h, data, len);
		return;
	}
	if (h->close_after || c->state != GW_CONN_OPEN) {
		h->pending.len = 0;
		len = 0;
	}
	if (len > 0)
		gw_buf_append(&h->pending, data, len);
	/* Between requests only: no churn while a body streams through. */
	if (!h->in_req && h->pending.len == 0 && h->pending.cap > TRIM_ABOVE)
		gw_buf_free(&h->pending);
	if (h->pending.len >= PENDING_MAX)
		gw_conn_read_pause(c);
	else if (c->read_paused)
		gw_conn_read_resume(c);
	if (h->eof && !h->in_req && (h->pending.len == 0 || !h1_can_parse(h)))
		gw_conn_end(c);
	gw_conn_flush(c);
}

/* ---- the protocol's hooks ---- */

static void
h1_feed(struct gw_conn *c, void *state, const char *p, size_t len)
{
	(void) c;
	h1_run(state, p, len);
}

static void
h1_eof(struct gw_conn *c, void *state)
{
	struct h1 *h = state;

	(void) c;
	h->eof = true;
	h1_run(h, NULL, 0);
}

static void
h1_drained(struct gw_conn *c, void *state)
{
	struct h1 *h = state;
	struct gw_req *rq = &h->req;

	if (h->in_req && rq->want_proceed && rq->proceed != NULL) {
		rq->want_proceed = false;
		rq->proceed(rq, rq->proceed_arg);
		return;
	}
	if (h->pending.len > 0 || h->eof || c->read_paused)
		h1_run(h, NULL, 0);
}

static void
h1_tick(struct gw_conn *c, void *state, int64_t now)
{
	struct h1 *h = state;
	struct gw_req *rq = &h->req;

	if (c->state != GW_CONN_OPEN)
		return;
	if (h->in_req) {
		if (rq->deadline != 0 && !rq->responded &&
		    now >= rq->deadline) {
			gw_app->on_timeout(rq);
			return;
		}
		if (!rq->complete && !rq->paused && !h->close_after) {
			int64_t since = rq->body_mode == GW_BODY_STREAM
			                    ? c->last_ms
			                    : rq->start_ms;

			if (now - since >= gw_net_cfg.request_timeout_ms) {
				if (rq->finished) {
					h->close_after = true;
					h1_req_end(h);
					gw_conn_end(c);
				} else {
					h1_refuse(
					    h, 408,
					    "request not received in time");
				}
			}
		}
		return;
	}
	if (c->writing || gw_conn_queued(c) > 0)
		return;
	if ((c->loop->state == GW_LOOP_DRAINING && h->pending.len == 0) ||
	    now - c->last_ms >= gw_net_cfg.idle_timeout_ms)
		gw_conn_close(c);
}

static void
h1_drain(struct gw_conn *c, void *state)
{
	struct h1 *h = state;

	if (!h->in_req && h->pending.len == 0 && !c->writing &&
	    gw_conn_queued(c) == 0)
		gw_conn_close(c);
	/* Otherwise the response in progress says "Connection: close". */
}

static void
h1_close(struct gw_conn *c, void *state)
{
	struct h1 *h = state;

	(void) c;
	if (h == NULL)
		return;
	if (h->in_req && h->req.start_us != 0) {
		/* The client went away before its answer: log it so. */
		if (!h->req.finished)
			h->req.status = 499;
		gw_app->on_end(&h->req);
	}
	body_release(&h->req);
	h->in_req = false;
	cm_arena_fini(&h->arena);
	gw_buf_free(&h->pending);
	free(h);
}

const struct gw_proto gw_http1_proto = {
    .name = "http/1.1",
    .feed = h1_feed,
    .eof = h1_eof,
    .drained = h1_drained,
    .tick = h1_tick,
    .drain = h1_drain,
    .close = h1_close,
};

void
gw_http1_init(void)
{
	http_parser_set_max_header_size((uint32_t) gw_net_cfg.max_header_bytes);
}

void *
gw_http1_new(struct gw_conn *c)
{
	struct h1 *h;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		fatalx("gateway: out of memory");
	h->c = c;
	h->in_head = true;
	http_parser_init(&h->parser, HTTP_REQUEST);
	h->parser.data = h;
	cm_arena_init(&h->arena);
	return (h);
}

/* ---- the request API ---- */

const char *
gw_req_header(const struct gw_req *rq, const char *name, size_t *len)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i < rq->nhdrs; i++) {
		const struct gw_header *hd = &rq->hdrs[i];

		if (hd->nlen == nl && gw_strcaseeq(hd->name, hd->nlen, name)) {
			if (len != NULL)
				*len = hd->vlen;
			return (hd->value);
		}
	}
	return (NULL);
}

size_t
gw_req_header_count(const struct gw_req *rq, const char *name)
{
	size_t nl = strlen(name), n = 0;

	for (size_t i = 0; i < rq->nhdrs; i++)
		if (rq->hdrs[i].nlen == nl &&
		    gw_strcaseeq(rq->hdrs[i].name, nl, name))
			n++;
	return (n);
}

const char *
gw_req_header_join(struct gw_req *rq, const char *name, size_t *len)
{
	struct gw_str s = {0};
	size_t nl = strlen(name), n = 0;

	for (size_t i = 0; i < rq->nhdrs; i++) {
		const struct gw_header *hd = &rq->hdrs[i];

		if (hd->nlen != nl || !gw_strcaseeq(hd->name, nl, name))
			continue;
		if (n++ > 0)
			gw_str_append(&s, rq->arena, ", ", 2);
		gw_str_append(&s, rq->arena, hd->value, hd->vlen);
	}
	if (n == 0)
		return (NULL);
	if (s.p == NULL)
		gw_str_append(&s, rq->arena, "", 0);
	*len = s.len;
	return (s.p != NULL ? s.p : "");
}

const char *
gw_req_method(const struct gw_req *rq)
{
	return (http_method_str((enum http_method) rq->method));
}

void
gw_req_pause(struct gw_req *rq)
{
	rq->paused = true;
}

void
gw_req_resume(struct gw_req *rq)
{
	struct h1 *h = h1_of(rq);

	if (!rq->paused)
		return;
	rq->paused = false;
	if (rq->finished)
		return;
	http_parser_pause(&h->parser, 0);
	maybe_continue(h);
	if (rq->complete && !h->completed) {
		/* Paused at the end of the message: it is complete now. */
		gw_app->on_complete(rq);
		return;
	}
	if (!h->in_run)
		h1_run(h, NULL, 0);
}

void
gw_req_hold(struct gw_req *rq, struct gw_req_ref *ref)
{
	ref->c = rq->conn;
	ref->seq = rq->seq;
	rq->conn->refs++;
}

struct gw_req *
gw_req_release(struct gw_req_ref *ref)
{
	struct gw_conn *c = ref->c;
	struct h1 *h;

	ref->c = NULL;
	if (c->state >= GW_CONN_CLOSING || c->proto != &gw_http1_proto) {
		gw_conn_unref(c);
		return (NULL);
	}
	c->refs--;
	h = c->pstate;
	if (!h->in_req || h->req.seq != ref->seq || h->req.finished)
		return (NULL);
	return (&h->req);
}

/* ---- responses ---- */

void
gw_resp_lines(struct gw_req *rq, const char *lines, size_t len)
{
	gw_str_append(&rq->resp_hdrs, rq->arena, lines, len);
}

void
gw_resp_header(struct gw_req *rq, const char *name, const char *value)
{
	gw_str_append(&rq->resp_hdrs, rq->arena, name, strlen(name));
	gw_str_append(&rq->resp_hdrs, rq->arena, ": ", 2);
	gw_str_append(&rq->resp_hdrs, rq->arena, value, strlen(value));
	gw_str_append(&rq->resp_hdrs, rq->arena, "\r\n", 2);
}

static bool
status_has_body(int status)
{
	return (status >= 200 && status != 204 && status != 304);
}

/*
 * Status line and the headers every response has.  length: the body's,
 * GW_LEN_CHUNKED, or (for no-body statuses) ignored.
 */
static void
resp_head(struct gw_req *rq, int status, const char *ctype, uint64_t length)
{
	struct h1 *h = h1_of(rq);
	struct gw_conn *c = rq->conn;
	struct gw_buf *o = &c->out;
	bool close;

	rq->responded = true;
	rq->status = status;
	close = h->close_after || !rq->keepalive ||
	        c->loop->state != GW_LOOP_RUNNING || c->state != GW_CONN_OPEN;
	if (status == 101)
		close = false;
	if (close)
		h->close_after = true;
	gw_buf_reserve(o, 256);
	gw_buf_append(o, "HTTP/1.1 ", 9);
	gw_buf_putu(o, (uint64_t) status);
	gw_buf_append(o, " ", 1);
	gw_buf_puts(o, gw_http_reason(status));
	gw_buf_append(o, "\r\n", 2);
	gw_buf_puts(o, gw_loop_date(c->loop));
	if (status_has_body(status)) {
		if (length == GW_LEN_CHUNKED) {
			if (!rq->http10)
				gw_buf_append(
				    o, "Transfer-Encoding: chunked\r\n", 28);
		} else {
			gw_buf_append(o, "Content-Length: ", 16);
			gw_buf_putu(o, length);
			gw_buf_append(o, "\r\n", 2);
		}
	}
	if (ctype != NULL) {
		gw_buf_append(o, "Content-Type: ", 14);
		gw_buf_puts(o, ctype);
		gw_buf_append(o, "\r\n", 2);
	}
	if (gw_app->head_lines != NULL)
		gw_app->head_lines(rq, o);
	if (rq->resp_hdrs.len > 0)
		gw_buf_append(o, rq->resp_hdrs.p, rq->resp_hdrs.len);
	if (close)
		gw_buf_append(o, "Connection: close\r\n", 19);
	else if (rq->http10 && status != 101)
		gw_buf_append(o, "Connection: keep-alive\r\n", 24);
}

/* Whether rq may be answered (once; a bug otherwise). */
static bool
resp_ok(const struct gw_req *rq)
{
	if (rq->responded) {
		log_warnx("event=bug msg=\"response written twice\" status=%d",
		          rq->status);
		return (false);
	}
	return (true);
}

void
gw_respond(struct gw_req *rq, int status, const char *ctype, const void *body,
           size_t len)
{
	struct gw_buf *o = &rq->conn->out;
	bool send_body = !rq->head && status_has_body(status);

	if (!resp_ok(rq))
		return;
	resp_head(rq, status, ctype, len);
	gw_buf_append(o, "\r\n", 2);
	if (send_body && len > 0)
		gw_buf_append(o, body, len);
	rq->bytes = send_body ? len : 0;
	h1_finish(rq);
}

void
gw_respond_error(struct gw_req *rq, int status, const char *code,
                 const char *msg)
{
	struct gw_buf *s = &rq->loop->scratch;

	s->len = 0;
	gw_error_json(s, code, msg ? msg : "");
	gw_respond(rq, status, "application/json", s->p, s->len);
}

void
gw_respond_redirect(struct gw_req *rq, int status, const char *loc,
                    size_t loclen, const char *cache_control)
{
	struct gw_buf *o = &rq->conn->out;

	if (!resp_ok(rq))
		return;
	resp_head(rq, status, NULL, 0);
	gw_buf_reserve(o, loclen + 64);
	gw_buf_append(o, "Location: ", 10);
	gw_buf_append(o, loc, loclen);
	gw_buf_append(o, "\r\nCache-Control: ", 17);
	gw_buf_puts(o, cache_control);
	gw_buf_append(o, "\r\n\r\n", 4);
	rq->bytes = 0;
	h1_finish(rq);
}

bool
gw_resp_start(struct gw_req *rq, int status, const char *ctype, uint64_t length,
              gw_proceed_cb proceed, void *arg)
{
	struct h1 *h = h1_of(rq);

	if (!resp_ok(rq))
		return (false);
	resp_head(rq, status, ctype, length);
	gw_buf_append(&rq->conn->out, "\r\n", 2);
	if (rq->head || !status_has_body(status)) {
		h1_finish(rq);
		return (false);
	}
	rq->resp_chunked = length == GW_LEN_CHUNKED;
	if (rq->resp_chunked && rq->http10)
		h->close_after = true; /* the body ends with the connection */
	rq->resp_left = rq->resp_chunked ? 0 : length;
	rq->proceed = proceed;
	rq->proceed_arg = arg;
	rq->want_proceed = true;
	if (!h->in_run)
		gw_conn_flush(rq->conn);
	return (true);
}

void
gw_resp_send(struct gw_req *rq, const void *p, size_t len, bool final)
{
	struct h1 *h = h1_of(rq);
	struct gw_buf *o = &rq->conn->out;

	if (!rq->responded || rq->finished)
		return;
	if (rq->resp_chunked && !rq->http10) {
		if (len > 0) {
			gw_buf_printf(o, "%zx\r\n", len);
			gw_buf_append(o, p, len);
			gw_buf_append(o, "\r\n", 2);
		}
		if (final)
			gw_buf_append(o, "0\r\n\r\n", 5);
	} else if (rq->resp_chunked) {
		gw_buf_append(o, p, len);
	} else {
		if (len > rq->resp_left) {
			log_warnx("event=bug msg=\"response longer than its "
			          "Content-Length\"");
			len = (size_t) rq->resp_left;
			final = true;
			h->close_after = true;
		}
		gw_buf_append(o, p, len);
		rq->resp_left -= len;
		if (final && rq->resp_left > 0)
			h->close_after = true; /* cut short: no reuse */
	}
	rq->bytes += len;
	if (final) {
		h1_finish(rq);
		return;
	}
	rq->want_proceed = true;
	if (!h->in_run)
		gw_conn_flush(rq->conn);
}

void
gw_req_upgrade(struct gw_req *rq, const struct gw_proto *proto, void *state)
{
	struct h1 *h = h1_of(rq);
	struct gw_conn *c = rq->conn;

	if (rq->status != 101) {
		log_warnx("event=bug msg=\"upgrade without a 101\"");
		return;
	}
	h->upgraded = true;
	h1_req_end(h);
	c->proto = proto;
	c->pstate = state;
	if (!h->in_run)
		h1_switch(h, NULL, 0);
	/* else h1_run hands over what it has not parsed when it returns */
}
