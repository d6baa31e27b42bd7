/*
 * Event loops: one per thread, each with its own listening socket.
 *
 * libuv 1.44 cannot set SO_REUSEPORT, so the socket is made here (socket,
 * SO_REUSEADDR + SO_REUSEPORT, bind) and handed to uv_tcp_open; the kernel
 * then balances new connections across the loops' sockets, with no shared
 * accept queue and no lock.  With port 0 the first loop's port is reused by
 * the others.
 *
 * Draining (SIGTERM/SIGINT; the main thread calls gw_loop_drain, which only
 * sets a flag and wakes the loop): the listener is closed, idle keep-alive
 * connections are closed, busy ones finish their request and close after
 * it (responses say "Connection: close").  When no connection is left, the
 * click counters are flushed to the shortener and the loop waits for the
 * replies; then its handles are closed and uv_run returns.  Past
 * GATEWAY_DRAIN_TIMEOUT_MS connections are closed by force and whatever
 * is still unflushed is reported lost in the log.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#include "gateway.h"

#define SWEEP_MS 250

struct gw_loop **gw_loops;
size_t gw_nloops;

/* Creates a bound, non-blocking TCP socket with SO_REUSEPORT. */
static int
listen_socket(const char *host, int port, int *bound_port)
{
	struct addrinfo hints, *res = NULL, *ai;
	char portstr[16];
	int fd = -1, one = 1, rv;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%d", port);
	if ((rv = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res)) !=
	    0) {
		log_warnx("event=listen host=%s err=\"%s\"", host,
		          gai_strerror(rv));
		return (-1);
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		fd = socket(ai->ai_family,
		            ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
		               sizeof(one)) != 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
		               sizeof(one)) != 0) {
			log_warn("event=setsockopt");
			close(fd);
			fd = -1;
			continue;
		}
		if (ai->ai_family == AF_INET6) {
			int zero = 0;

			(void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero,
			                  sizeof(zero));
		}
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			log_warn("event=bind host=%s port=%d", host, port);
			close(fd);
			fd = -1;
			continue;
		}
		if (getsockname(fd, (struct sockaddr *) &ss, &sl) == 0) {
			if (ss.ss_family == AF_INET)
				*bound_port = ntohs(
				    ((struct sockaddr_in *) &ss)->sin_port);
			else
				*bound_port = ntohs(
				    ((struct sockaddr_in6 *) &ss)->sin6_port);
		}
		break;
	}
	freeaddrinfo(res);
	return (fd);
}

static void
on_connection(uv_stream_t *server, int status)
{
	struct gw_loop *l = server->data;

	if (status < 0) {
		log_warnx("event=accept err=\"%s\"", uv_strerror(status));
		return;
	}
	gw_conn_accept(l);
}

static void
loop_close_handles(struct gw_loop *l)
{
	l->closing = true;
	pthread_mutex_lock(&l->qmu);
	l->qclosed = true;
	pthread_mutex_unlock(&l->qmu);
	uv_close((uv_handle_t *) &l->async, NULL);
	uv_close((uv_handle_t *) &l->sweep, NULL);
	uv_close((uv_handle_t *) &l->flush, NULL);
	/* Held answers left here belong to closed connections (zombies). */
	if (l->clicks.n > 0) {
		size_t it = 0, len;
		const char *code;
		int64_t n, lost = 0;

		while (gw_clicks_next(&l->clicks, &it, &code, &len, &n))
			lost += n;
		log_warnx("event=clicks_lost loop=%u codes=%zu clicks=%lld",
		          l->id, l->clicks.n, (long long) lost);
	}
	gw_alog_flush(l);
}

void
gw_loop_maybe_finish(struct gw_loop *l)
{
	int64_t now;

	if (!l->draining || l->closing)
		return;
	if (l->nconns > 0)
		return;
	now = (int64_t) uv_now(&l->loop);
	if (now < l->drain_deadline) {
		if (l->flush_inflight > 0)
			return;
		if (l->clicks.n > 0) {
			/* A failed flush is retried by the flush timer. */
			if (now - l->flush_last >= 100)
				gw_clicks_flush(l, true);
			return;
		}
		if (l->calls > 0)
			return;
	}
	loop_close_handles(l);
}

static void
on_flush(uv_timer_t *t)
{
	struct gw_loop *l = t->data;

	gw_clicks_flush(l, l->draining);
	if (l->draining)
		gw_loop_maybe_finish(l);
}

static void
loop_begin_drain(struct gw_loop *l)
{
	struct gw_conn *c, *next;

	if (l->draining)
		return;
	l->draining = true;
	l->drain_deadline =
	    (int64_t) uv_now(&l->loop) + gw_cfg.drain_timeout_ms;
	uv_close((uv_handle_t *) &l->listener, NULL);
	for (c = l->conns; c != NULL; c = next) {
		next = c->next;
		if (gw_conn_idle(c))
			gw_conn_close(c);
	}
	/* Retry failed click flushes quickly while draining. */
	uv_timer_start(&l->flush, on_flush, 100, 100);
	gw_loop_maybe_finish(l);
}

static void
on_async(uv_async_t *h)
{
	struct gw_loop *l = h->data;

	gw_upstream_deliver(l);
	if (atomic_load(&l->drain_requested))
		loop_begin_drain(l);
	if (l->draining)
		gw_loop_maybe_finish(l);
}

static void
on_sweep(uv_timer_t *t)
{
	struct gw_loop *l = t->data;
	struct gw_conn *c, *next;
	int64_t now = (int64_t) uv_now(&l->loop);
	bool force = l->draining && now >= l->drain_deadline;

	for (c = l->conns; c != NULL; c = next) {
		next = c->next;
		if (force)
			gw_conn_close(c);
		else
			gw_conn_sweep(c, now);
	}
	gw_alog_flush(l);
	gw_metrics_loop_flush(l);
	if (l->draining)
		gw_loop_maybe_finish(l);
}

const char *
gw_loop_date(struct gw_loop *l)
{
	time_t now = time(NULL);

	if ((int64_t) now != l->date_s) {
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(l->date, sizeof(l->date),
		         "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
		l->date_s = (int64_t) now;
	}
	return (l->date);
}

int
gw_loop_init(struct gw_loop *l, unsigned id, int *port)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t rnd[6];
	int fd, bound = *port, rv;
	size_t i;

	l->id = id;
	if ((rv = uv_loop_init(&l->loop)) != 0) {
		log_warnx("event=uv_loop_init err=\"%s\"", uv_strerror(rv));
		return (-1);
	}
	l->loop.data = l;
	pthread_mutex_init(&l->qmu, NULL);
	atomic_init(&l->drain_requested, false);
	uv_async_init(&l->loop, &l->async, on_async);
	l->async.data = l;
	uv_timer_init(&l->loop, &l->sweep);
	l->sweep.data = l;
	uv_timer_init(&l->loop, &l->flush);
	l->flush.data = l;

	if ((fd = listen_socket(gw_cfg.listen_host, *port, &bound)) < 0)
		return (-1);
	uv_tcp_init(&l->loop, &l->listener);
	l->listener.data = l;
	if ((rv = uv_tcp_open(&l->listener, fd)) != 0 ||
	    (rv = uv_listen((uv_stream_t *) &l->listener, 1024,
	                    on_connection)) != 0) {
		log_warnx("event=listen err=\"%s\"", uv_strerror(rv));
		return (-1);
	}
	*port = bound;

	if (cm_random(rnd, sizeof(rnd)) != 0)
		memset(rnd, (int) id, sizeof(rnd));
	for (i = 0; i < sizeof(rnd); i++) {
		l->rid_prefix[2 * i] = hex[rnd[i] >> 4];
		l->rid_prefix[2 * i + 1] = hex[rnd[i] & 15];
	}
	l->rid_prefix[2 * sizeof(rnd)] = '\0';

	gw_clicks_init(&l->clicks, gw_cfg.click_max_codes);
	cm_arena_init(&l->flush_arena);
	gw_metrics_loop_init(l);
	return (0);
}

void *
gw_loop_run(void *arg)
{
	struct gw_loop *l = arg;

	uv_timer_start(&l->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
	uv_timer_start(&l->flush, on_flush, (uint64_t) gw_cfg.click_flush_ms,
	               (uint64_t) gw_cfg.click_flush_ms);
	uv_run(&l->loop, UV_RUN_DEFAULT);
	return (NULL);
}

void
gw_loop_drain(struct gw_loop *l)
{
	atomic_store(&l->drain_requested, true);
	pthread_mutex_lock(&l->qmu);
	if (!l->qclosed)
		uv_async_send(&l->async);
	pthread_mutex_unlock(&l->qmu);
}

void
gw_loop_free(struct gw_loop *l)
{
	struct gw_conn *c, *next;
	struct gw_call *call;

	/* Let close callbacks run, then the loop must be empty. */
	uv_run(&l->loop, UV_RUN_NOWAIT);
	if (uv_loop_close(&l->loop) != 0)
		log_warnx("event=loop_close loop=%u err=busy", l->id);
	for (c = l->zombies; c != NULL; c = next) {
		next = c->next;
		gw_conn_free(c);
	}
	pthread_mutex_lock(&l->qmu);
	call = l->qhead;
	l->qhead = l->qtail = NULL;
	pthread_mutex_unlock(&l->qmu);
	gw_upstream_discard(call);
	gw_clicks_fini(&l->clicks);
	cm_arena_fini(&l->flush_arena);
	gw_metrics_loop_fini(l);
	gw_buf_free(&l->alog);
	gw_buf_free(&l->scratch);
	pthread_mutex_destroy(&l->qmu);
	free(l);
}
