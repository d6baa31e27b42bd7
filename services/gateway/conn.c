/*
 * A client connection's life: accept, read, write, time out, close.
 *
 * Reading.  All connections of a loop read into the loop's one buffer
 * (libuv calls alloc and read back to back, so it is never shared by two
 * reads); the parser works on it in place.  Only bytes that cannot be
 * parsed yet, because a request is waiting for an upstream or the output
 * is backed up, are copied into conn->pending, which is bounded: past
 * PENDING_MAX, reading stops until the backlog is parsed.
 *
 * Writing.  Responses are appended to conn->out; after each read callback
 * (or async completion) everything queued is written at once, first with
 * uv_try_write (no request, no callback, the common case) and, if the
 * socket is full, the rest with one uv_write from a second buffer, so a
 * batch of pipelined responses costs one system call.  Parsing stops while
 * more than OUT_MAX bytes wait for a slow reader.
 *
 * Closing.  A response that ends the connection is followed by a write
 * shutdown and a short linger that reads and discards, so the client sees
 * the response rather than a reset caused by its own unread bytes.  The
 * connection is freed in uv_close's callback, or later if an upstream call
 * still refers to it (then it waits on the loop's zombie list).
 *
 * Timeouts are checked by the loop's sweep timer four times a second, not
 * with a timer per connection: cheaper, and precise enough for 10 s and
 * 60 s limits.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#include "gateway.h"

#define PENDING_MAX (256 * 1024)
#define OUT_MAX     (1024 * 1024)
#define LINGER_MS   2000
#define TRIM_ABOVE  (64 * 1024)

static void conn_maybe_close(struct gw_conn *c);

/*
 * Drops an empty buffer that a large response or upload made big, so an
 * idle keep-alive connection holds a few hundred bytes, not megabytes.
 */
static void
conn_trim(struct gw_buf *b)
{
	if (b->len == 0 && b->cap > TRIM_ABOVE)
		gw_buf_free(b);
}

bool
gw_conn_out_full(const struct gw_conn *c)
{
	return (c->out.len + c->wr.len > OUT_MAX);
}

static void
ip_from_sockaddr(const struct sockaddr_storage *ss, uint8_t ip[16])
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0,    0,
	                                     0, 0, 0, 0, 0xff, 0xff};

	memset(ip, 0, 16);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *) ss;

		memcpy(ip, v4mapped, 12);
		memcpy(ip + 12, &in->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
		    (const struct sockaddr_in6 *) ss;

		memcpy(ip, &in6->sin6_addr, 16);
	}
}

static void
on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct gw_conn *c = h->data;

	(void) hint;
	buf->base = c->loop->rbuf;
	buf->len = sizeof(c->loop->rbuf);
}

static void
conn_list_remove(struct gw_conn **head, struct gw_conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		*head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

static void
conn_list_add(struct gw_conn **head, struct gw_conn *c)
{
	c->prev = NULL;
	c->next = *head;
	if (*head != NULL)
		(*head)->prev = c;
	*head = c;
}

void
gw_conn_free(struct gw_conn *c)
{
	cm_arena_fini(&c->arena);
	gw_buf_free(&c->pending);
	gw_buf_free(&c->out);
	gw_buf_free(&c->wr);
	free(c);
}

/*
 * Called by the upstream glue (handler.c) when a call that referred to a
 * closed connection comes back: the last one frees it.
 */
void
gw_conn_unref_closed(struct gw_conn *c)
{
	struct gw_loop *l = c->loop;

	if (c->refs > 0)
		return;
	conn_list_remove(&l->zombies, c);
	gw_conn_free(c);
}

static void
on_close(uv_handle_t *h)
{
	struct gw_conn *c = h->data;
	struct gw_loop *l = c->loop;

	c->closed = true;
	if (c->in_req) {
		/* The client went away before its answer: log it as such. */
		c->req.status = 499;
		c->req.dur_us = cm_mono_us() - c->req.start_us;
		gw_metrics_request(l, c->req.route, 499, c->req.dur_us);
		if (gw_cfg.access_log)
			gw_alog_request(c);
		c->in_req = false;
	}
	conn_list_remove(&l->conns, c);
	l->nconns--;
	if (c->refs > 0)
		conn_list_add(&l->zombies, c);
	else
		gw_conn_free(c);
	gw_loop_maybe_finish(l);
}

void
gw_conn_close(struct gw_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->reading)
		uv_read_stop((uv_stream_t *) &c->tcp);
	c->reading = false;
	uv_close((uv_handle_t *) &c->tcp, on_close);
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
	struct gw_conn *c = req->data;

	if (status < 0 && !c->closing)
		gw_conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void
conn_read_start(struct gw_conn *c)
{
	if (c->reading || c->closing || c->eof)
		return;
	if (uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read) == 0)
		c->reading = true;
}

/* Ends the connection after its last response: shut down and linger. */
static void
conn_linger(struct gw_conn *c)
{
	if (c->eof) {
		gw_conn_close(c);
		return;
	}
	c->linger = true;
	c->linger_ms = (int64_t) uv_now(&c->loop->loop);
	c->sreq.data = c;
	if (uv_shutdown(&c->sreq, (uv_stream_t *) &c->tcp, on_shutdown) != 0) {
		gw_conn_close(c);
		return;
	}
	conn_read_start(c);
}

/* Closes when nothing is left to write and nothing more will come. */
static void
conn_maybe_close(struct gw_conn *c)
{
	if (c->closing || c->linger || c->writing || c->out.len > 0)
		return;
	if (c->close_after)
		conn_linger(c);
	else if (c->eof && !c->busy)
		gw_conn_close(c);
}

static void
on_write(uv_write_t *req, int status)
{
	struct gw_conn *c = req->data;

	c->writing = false;
	c->wr.len = 0;
	if (c->closing)
		return;
	conn_trim(&c->wr);
	if (status < 0) {
		gw_conn_close(c);
		return;
	}
	c->last_ms = (int64_t) uv_now(&c->loop->loop);
	gw_conn_resume(c);
}

void
gw_conn_flush(struct gw_conn *c)
{
	uv_buf_t b;
	int n;

	if (c->closing || c->writing)
		return;
	if (c->out.len > 0) {
		b = uv_buf_init(c->out.p, (unsigned int) c->out.len);
		n = uv_try_write((uv_stream_t *) &c->tcp, &b, 1);
		if (n < 0 && n != UV_EAGAIN) {
			gw_conn_close(c);
			return;
		}
		if (n < 0)
			n = 0;
		if ((size_t) n < c->out.len) {
			struct gw_buf t = c->wr;

			/* The rest goes out from wr; out collects anew. */
			c->wr = c->out;
			c->out = t;
			c->out.len = 0;
			b = uv_buf_init(
			    c->wr.p + n,
			    (unsigned int) (c->wr.len - (size_t) n));
			c->wreq.data = c;
			if (uv_write(&c->wreq, (uv_stream_t *) &c->tcp, &b, 1,
			             on_write) != 0) {
				gw_conn_close(c);
				return;
			}
			c->writing = true;
			return;
		}
		c->out.len = 0;
		c->last_ms = (int64_t) uv_now(&c->loop->loop);
		conn_trim(&c->out);
	}
	conn_maybe_close(c);
}

void
gw_conn_resume(struct gw_conn *c)
{
	if (c->closing)
		return;
	while (!c->busy && !c->close_after && c->pending.len > 0 &&
	       !gw_conn_out_full(c)) {
		size_t used = gw_http_feed(c, c->pending.p, c->pending.len);

		if (used == 0)
			break;
		memmove(c->pending.p, c->pending.p + used,
		        c->pending.len - used);
		c->pending.len -= used;
	}
	if (c->close_after)
		c->pending.len = 0;
	if (c->closing)
		return;
	conn_trim(&c->pending);
	if (!c->reading && c->pending.len < PENDING_MAX)
		conn_read_start(c);
	gw_conn_flush(c);
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct gw_conn *c = s->data;
	size_t n = (size_t) nread, used;

	if (nread == 0)
		return;
	if (nread < 0) {
		if (nread != UV_EOF || c->linger) {
			gw_conn_close(c);
			return;
		}
		/* Half-close: answer what was asked, then close. */
		c->eof = true;
		uv_read_stop(s);
		c->reading = false;
		if (!c->busy && c->pending.len == 0)
			conn_maybe_close(c);
		return;
	}
	c->last_ms = (int64_t) uv_now(&c->loop->loop);
	if (c->linger || c->close_after)
		return; /* discarded */
	if (c->busy || c->pending.len > 0) {
		gw_buf_append(&c->pending, buf->base, n);
		if (c->pending.len >= PENDING_MAX) {
			uv_read_stop(s);
			c->reading = false;
		}
		return;
	}
	used = gw_http_feed(c, buf->base, n);
	if (c->closing)
		return;
	if (used < n && !c->close_after)
		gw_buf_append(&c->pending, buf->base + used, n - used);
	if (c->pending.len >= PENDING_MAX) {
		uv_read_stop(s);
		c->reading = false;
	}
	gw_conn_flush(c);
}

void
gw_conn_accept(struct gw_loop *l)
{
	struct gw_conn *c;
	struct sockaddr_storage ss;
	int sl = sizeof(ss);

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warnx("event=accept err=\"out of memory\"");
		return;
	}
	c->loop = l;
	uv_tcp_init(&l->loop, &c->tcp);
	c->tcp.data = c;
	cm_arena_init(&c->arena);
	gw_http_init(c);
	conn_list_add(&l->conns, c);
	l->nconns++;
	if (uv_accept((uv_stream_t *) &l->listener, (uv_stream_t *) &c->tcp) !=
	    0) {
		gw_conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	memset(&ss, 0, sizeof(ss));
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *) &ss, &sl) == 0)
		ip_from_sockaddr(&ss, c->peer);
	gw_ip_format(c->peer, c->peer_str, sizeof(c->peer_str));
	c->last_ms = (int64_t) uv_now(&l->loop);
	conn_read_start(c);
}

bool
gw_conn_idle(const struct gw_conn *c)
{
	return (!c->in_req && !c->busy && !c->writing && c->out.len == 0 &&
	        c->pending.len == 0);
}

void
gw_conn_sweep(struct gw_conn *c, int64_t now)
{
	if (c->closing)
		return;
	if (c->linger) {
		if (now - c->linger_ms >= LINGER_MS)
			gw_conn_close(c);
		return;
	}
	if (c->busy) {
		/*
		 * The RPC client reports DEADLINE_EXCEEDED itself; this only
		 * guards against a reply that never comes.
		 */
		if (now >= c->req.deadline) {
			gw_respond_error(c, 504, "DEADLINE_EXCEEDED",
			                 "upstream did not answer", NULL);
			gw_conn_resume(c);
		}
		return;
	}
	if (c->in_req && !c->close_after) {
		if (now - c->req.start_ms >= gw_cfg.request_timeout_ms) {
			c->close_after = true;
			gw_respond_error(c, 408, "DEADLINE_EXCEEDED",
			                 "request not received in time", NULL);
			gw_conn_flush(c);
		}
		return;
	}
	if (c->writing) {
		if (now - c->last_ms >= gw_cfg.idle_timeout_ms)
			gw_conn_close(c);
		return;
	}
	if (c->loop->draining && gw_conn_idle(c)) {
		gw_conn_close(c);
		return;
	}
	if (now - c->last_ms >= gw_cfg.idle_timeout_ms)
		gw_conn_close(c);
}
