/*
 * A client connection's life: accept, read, write, time out, close.  What
 * the bytes mean is the protocol's (struct gw_proto): HTTP/1.1 at first,
 * another after an upgrade.
 *
 * Reading.  All connections of a loop read into the loop's one buffer
 * (libuv calls alloc and read back to back, so it is never shared by two
 * reads), and the protocol's feed works on it in place; a protocol copies
 * only what it cannot use yet, and stops reading (gw_conn_read_pause) when
 * that backlog is large.
 *
 * Writing.  Output is appended to conn->out; gw_conn_flush writes
 * everything queued at once, first with uv_try_write (no request, no
 * callback, the common case) and, if the socket is full, the rest with one
 * uv_write from a second buffer, so a batch of pipelined responses costs
 * one system call.  Once everything is written the protocol's drained hook
 * runs, so it can produce more (the next piece of a long response, the
 * next pipelined request); flush is not re-entered from there, it loops.
 *
 * Closing.  A connection that ends (gw_conn_end) writes what is queued,
 * then shuts down its write side and lingers, reading and discarding, so
 * the client sees the response rather than a reset caused by its own
 * unread bytes.  The connection is freed in uv_close's callback, or later
 * while references remain (gw_req_hold; it then waits on the loop's zombie
 * list).
 *
 * Caps.  Connections are counted for the whole process (an atomic) and
 * per client address (the socket peer; a table under one mutex, touched
 * on accept and close only); trusted proxies have no per-address cap.  A
 * connection over a cap is answered "503" with "Connection: close" and
 * closed at once.  An accepted socket is never left pending: without
 * memory for a connection it is accepted into the loop's spare handle and
 * closed, so the listener keeps going.
 *
 * Timeouts are checked by the loop's tick four times a second, not with a
 * timer per connection: cheaper, and precise enough for 10 s and 60 s
 * limits.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#include "internal.h"

#define LINGER_MS    2000
#define TRIM_ABOVE   (64 * 1024)
#define ADDR_BUCKETS 4096

enum { COUNTED_NONE = 0, COUNTED_PROCESS, COUNTED_ADDR };

struct addr_count {
	struct addr_count *next;
	uint8_t ip[16];
	size_t n;
};

static atomic_size_t conns_total;
static struct {
	pthread_mutex_t mu;
	struct addr_count *b[ADDR_BUCKETS];
} A = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct addr_count **
addr_slot(const uint8_t ip[16])
{
	struct addr_count **p =
	    &A.b[gw_fnv1a(GW_FNV_INIT, ip, 16) % ADDR_BUCKETS];

	while (*p != NULL && memcmp((*p)->ip, ip, 16) != 0)
		p = &(*p)->next;
	return (p);
}

/* Counts c in the caps; false (and nothing counted) if over one. */
static bool
conn_admit(struct gw_conn *c)
{
	struct addr_count **p;
	bool ok = true;

	if (atomic_fetch_add(&conns_total, 1) >= gw_net_cfg.max_conns) {
		atomic_fetch_sub(&conns_total, 1);
		return (false);
	}
	c->counted = COUNTED_PROCESS;
	if (gw_net_cfg.exempt != NULL &&
	    gw_trust_has(gw_net_cfg.exempt, c->peer))
		return (true);
	pthread_mutex_lock(&A.mu);
	p = addr_slot(c->peer);
	if (*p == NULL && (*p = calloc(1, sizeof(**p))) != NULL)
		memcpy((*p)->ip, c->peer, 16);
	if (*p == NULL || (*p)->n >= gw_net_cfg.max_conns_per_addr)
		ok = false;
	else
		(*p)->n++;
	pthread_mutex_unlock(&A.mu);
	if (!ok) {
		atomic_fetch_sub(&conns_total, 1);
		c->counted = COUNTED_NONE;
		return (false);
	}
	c->counted = COUNTED_ADDR;
	return (true);
}

static void
conn_release(struct gw_conn *c)
{
	struct addr_count **p, *a;

	if (c->counted == COUNTED_NONE)
		return;
	atomic_fetch_sub(&conns_total, 1);
	if (c->counted == COUNTED_ADDR) {
		pthread_mutex_lock(&A.mu);
		p = addr_slot(c->peer);
		if ((a = *p) != NULL && --a->n == 0) {
			*p = a->next;
			free(a);
		}
		pthread_mutex_unlock(&A.mu);
	}
	c->counted = COUNTED_NONE;
}

/*
 * Drops an empty buffer that a large response made big, so an idle
 * keep-alive connection holds a few hundred bytes, not megabytes.
 */
static void
conn_trim(struct gw_buf *b)
{
	if (b->len == 0 && b->cap > TRIM_ABOVE)
		gw_buf_free(b);
}

/*
 * The protocol calls this between messages (not while a long response is
 * written, so its pieces do not reallocate the buffers every time).
 */
void
gw_conn_trim(struct gw_conn *c)
{
	if (c->writing)
		return;
	conn_trim(&c->out);
	conn_trim(&c->wr);
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
	gw_buf_free(&c->out);
	gw_buf_free(&c->wr);
	free(c);
}

/* A closed connection lost a reference; the last one frees it. */
void
gw_conn_unref(struct gw_conn *c)
{
	if (--c->refs > 0 || c->state != GW_CONN_CLOSED)
		return;
	conn_list_remove(&c->loop->zombies, c);
	gw_conn_free(c);
}

static void
on_close(uv_handle_t *h)
{
	struct gw_conn *c = h->data;
	struct gw_loop *l = c->loop;

	c->state = GW_CONN_CLOSED;
	conn_release(c);
	c->proto->close(c, c->pstate);
	c->pstate = NULL;
	conn_list_remove(&l->conns, c);
	l->nconns--;
	if (c->refs > 0)
		conn_list_add(&l->zombies, c);
	else
		gw_conn_free(c);
	gw_loop_check_drained(l);
}

void
gw_conn_close(struct gw_conn *c)
{
	if (c->state >= GW_CONN_CLOSING)
		return;
	c->state = GW_CONN_CLOSING;
	if (c->reading)
		uv_read_stop((uv_stream_t *) &c->tcp);
	c->reading = false;
	uv_close((uv_handle_t *) &c->tcp, on_close);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Reads while the state allows it and nobody asked to pause. */
static void
conn_read_update(struct gw_conn *c)
{
	bool want = (c->state == GW_CONN_LINGER ||
	             (c->state <= GW_CONN_ENDING && !c->read_paused)) &&
	            !c->eof;

	if (want && !c->reading) {
		if (uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read) ==
		    0)
			c->reading = true;
	} else if (!want && c->reading) {
		uv_read_stop((uv_stream_t *) &c->tcp);
		c->reading = false;
	}
}

void
gw_conn_read_pause(struct gw_conn *c)
{
	c->read_paused = true;
	conn_read_update(c);
}

void
gw_conn_read_resume(struct gw_conn *c)
{
	c->read_paused = false;
	conn_read_update(c);
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
	struct gw_conn *c = req->data;

	if (status < 0)
		gw_conn_close(c);
}

/* All output is written and the connection ends: shut down, linger. */
static void
conn_linger(struct gw_conn *c)
{
	if (c->eof) {
		gw_conn_close(c);
		return;
	}
	c->state = GW_CONN_LINGER;
	c->linger_ms = gw_loop_now(c->loop);
	c->sreq.data = c;
	if (uv_shutdown(&c->sreq, (uv_stream_t *) &c->tcp, on_shutdown) != 0) {
		gw_conn_close(c);
		return;
	}
	conn_read_update(c);
}

size_t
gw_conn_queued(const struct gw_conn *c)
{
	return (c->out.len + c->wr.len);
}

void
gw_conn_write(struct gw_conn *c, const void *p, size_t len)
{
	if (c->state >= GW_CONN_LINGER)
		return;
	gw_buf_append(&c->out, p, len);
}

static void
on_write(uv_write_t *req, int status)
{
	struct gw_conn *c = req->data;

	c->writing = false;
	c->wr.len = 0;
	if (c->state >= GW_CONN_CLOSING)
		return;
	if (status < 0) {
		gw_conn_close(c);
		return;
	}
	c->write_ms = c->last_ms = gw_loop_now(c->loop);
	gw_conn_flush(c);
}

/*
 * One write of what is queued.  Returns true when everything has gone
 * to the kernel, false if a uv_write is in flight (or the connection
 * closed).
 */
static bool
conn_write_out(struct gw_conn *c, bool try_first)
{
	uv_buf_t b;
	int n = 0;

	if (c->writing)
		return (false);
	if (c->out.len == 0)
		return (true);
	b = uv_buf_init(c->out.p, (unsigned int) c->out.len);
	if (try_first)
		n = uv_try_write((uv_stream_t *) &c->tcp, &b, 1);
	if (n < 0 && n != UV_EAGAIN) {
		gw_conn_close(c);
		return (false);
	}
	if (n < 0)
		n = 0;
	if (n > 0)
		c->write_ms = c->last_ms = gw_loop_now(c->loop);
	if ((size_t) n < c->out.len) {
		struct gw_buf t = c->wr;

		/* The rest goes out from wr; out collects anew. */
		c->wr = c->out;
		c->out = t;
		c->out.len = 0;
		b = uv_buf_init(c->wr.p + n,
		                (unsigned int) (c->wr.len - (size_t) n));
		c->wreq.data = c;
		if (uv_write(&c->wreq, (uv_stream_t *) &c->tcp, &b, 1,
		             on_write) != 0) {
			gw_conn_close(c);
			return (false);
		}
		c->writing = true;
		if (n == 0)
			c->write_ms = gw_loop_now(c->loop);
		return (false);
	}
	c->out.len = 0;
	return (true);
}

/*
 * Rounds of "write everything, then let the protocol produce more" that
 * one flush runs with uv_try_write before it leaves the rest to a
 * uv_write and its callback, so that a fast reader of a long response
 * cannot keep the loop from its other connections.
 */
#define FLUSH_ROUNDS 8

void
gw_conn_flush(struct gw_conn *c)
{
	static __thread struct gw_conn *flushing;
	static __thread bool again;
	int rounds = 0;

	if (flushing == c) {
		if (c->out.len > 0)
			again = true;
		return;
	}
	if (flushing != NULL) {
		/* Another connection's hook wrote here: write, no hook. */
		if (c->state < GW_CONN_LINGER)
			(void) conn_write_out(c, true);
		return;
	}
	flushing = c;
	do {
		again = false;
		if (c->state >= GW_CONN_LINGER ||
		    !conn_write_out(c, ++rounds <= FLUSH_ROUNDS))
			break;
		if (c->state == GW_CONN_ENDING) {
			conn_linger(c);
			break;
		}
		if (c->proto->drained != NULL)
			c->proto->drained(c, c->pstate);
	} while (again);
	flushing = NULL;
}

void
gw_conn_end(struct gw_conn *c)
{
	if (c->state != GW_CONN_OPEN)
		return;
	c->state = GW_CONN_ENDING;
	gw_conn_flush(c);
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct gw_conn *c = s->data;

	if (nread == 0)
		return;
	if (nread < 0) {
		if (nread != UV_EOF || c->state == GW_CONN_LINGER) {
			gw_conn_close(c);
			return;
		}
		/* Half-close: the protocol answers what was asked. */
		c->eof = true;
		conn_read_update(c);
		if (c->state == GW_CONN_OPEN && c->proto->eof != NULL)
			c->proto->eof(c, c->pstate);
		else if (c->state == GW_CONN_OPEN)
			gw_conn_end(c);
		return;
	}
	c->last_ms = gw_loop_now(c->loop);
	if (c->state != GW_CONN_OPEN)
		return; /* ending: discarded */
	c->proto->feed(c, c->pstate, buf->base, (size_t) nread);
	if (c->state < GW_CONN_CLOSING)
		gw_conn_flush(c);
}

static void
on_reject_close(uv_handle_t *h)
{
	struct gw_loop *l = h->data;

	l->reject_busy = false;
}

/* No memory for a connection: accept it anyway, and close it. */
static void
conn_reject(struct gw_loop *l)
{
	log_warnx("event=accept err=\"out of memory\"");
	if (l->reject_busy)
		return;
	uv_tcp_init(&l->uv, &l->reject);
	l->reject.data = l;
	l->reject_busy = true;
	(void) uv_accept((uv_stream_t *) &l->listener,
	                 (uv_stream_t *) &l->reject);
	uv_close((uv_handle_t *) &l->reject, on_reject_close);
}

/* Over a cap: a 503 if the socket takes it at once, then closed. */
static void
conn_refuse(struct gw_conn *c)
{
	static const char resp[] =
	    "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Type: application/json\r\nContent-Length: 66\r\n"
	    "Connection: close\r\n\r\n"
	    "{\"error\":{\"code\":\"UNAVAILABLE\",\"message\":\"too many "
	    "connections\"}}\n";
	uv_buf_t b = uv_buf_init((char *) resp, sizeof(resp) - 1);

	(void) uv_try_write((uv_stream_t *) &c->tcp, &b, 1);
	gw_conn_close(c);
}

void
gw_conn_accept(struct gw_loop *l)
{
	struct gw_conn *c;
	struct sockaddr_storage ss;
	int sl = sizeof(ss);

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		conn_reject(l);
		return;
	}
	c->loop = l;
	uv_tcp_init(&l->uv, &c->tcp);
	c->tcp.data = c;
	c->proto = &gw_http1_proto;
	c->pstate = gw_http1_new(c);
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
	c->last_ms = gw_loop_now(l);
	if (!conn_admit(c)) {
		conn_refuse(c);
		return;
	}
	conn_read_update(c);
}

void
gw_conn_drain(struct gw_conn *c)
{
	if (c->state != GW_CONN_OPEN)
		return;
	if (c->proto->drain != NULL)
		c->proto->drain(c, c->pstate);
	else
		gw_conn_end(c);
}

void
gw_conn_tick(struct gw_conn *c, int64_t now)
{
	if (c->state >= GW_CONN_CLOSING)
		return;
	if (c->state == GW_CONN_LINGER) {
		if (now - c->linger_ms >= LINGER_MS)
			gw_conn_close(c);
		return;
	}
	if (c->writing && now - c->write_ms >= gw_net_cfg.write_timeout_ms) {
		/*
		 * No write progress for that long: a reader that stopped.
		 * Progress, not completion: a long download read at a modest
		 * rate goes on.
		 */
		gw_conn_close(c);
		return;
	}
	if (c->proto->tick != NULL)
		c->proto->tick(c, c->pstate, now);
}
