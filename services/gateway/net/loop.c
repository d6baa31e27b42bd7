/*
 * Event loops: one per thread, each with its own listening socket.
 *
 * libuv 1.44 cannot set SO_REUSEPORT, so the socket is made here (socket,
 * SO_REUSEADDR + SO_REUSEPORT, bind) and handed to uv_tcp_open; the kernel
 * then balances new connections across the loops' sockets, with no shared
 * accept queue and no lock.  With port 0 the first loop's port is reused by
 * the others.
 *
 * Other threads reach a loop only through gw_loop_post (a task queue under
 * the loop's mutex, and uv_async_send) and gw_loop_drain (a flag and the
 * same wake-up).  The mutex is taken once per posted task, never on a path
 * that answers from memory.
 *
 * Draining (SIGTERM/SIGINT): the listener is closed and every connection's
 * protocol is told to finish (HTTP closes idle keep-alive connections at
 * once; busy ones finish their request and close after it).  When no
 * connection is left, the application is asked whether it is done (it may
 * still flush counters, or wait for calls in flight); then the loop's
 * handles are closed and uv_run returns.  Past GATEWAY_DRAIN_TIMEOUT_MS
 * connections are closed by force and the loop ends whatever is left.
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

#include "internal.h"

struct gw_net_config gw_net_cfg;
const struct gw_app *gw_app;
struct gw_loop **gw_loops;
size_t gw_nloops;

void
gw_net_init(const struct gw_app *app)
{
	gw_app = app;
	gw_http1_init();
}

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
	l->state = GW_LOOP_CLOSING;
	pthread_mutex_lock(&l->qmu);
	l->qclosed = true;
	pthread_mutex_unlock(&l->qmu);
	if (gw_app->loop_close != NULL)
		gw_app->loop_close(l);
	uv_close((uv_handle_t *) &l->async, NULL);
	uv_close((uv_handle_t *) &l->tick, NULL);
}

void
gw_loop_check_drained(struct gw_loop *l)
{
	bool force;

	if (l->state != GW_LOOP_DRAINING || l->nconns > 0)
		return;
	force = gw_loop_now(l) >= l->drain_deadline;
	if (gw_app->drained != NULL && !gw_app->drained(l, force) && !force)
		return;
	loop_close_handles(l);
}

static void
loop_begin_drain(struct gw_loop *l)
{
	struct gw_conn *c, *next;

	if (l->state != GW_LOOP_RUNNING)
		return;
	l->state = GW_LOOP_DRAINING;
	l->drain_deadline = gw_loop_now(l) + gw_net_cfg.drain_timeout_ms;
	uv_close((uv_handle_t *) &l->listener, NULL);
	for (c = l->conns; c != NULL; c = next) {
		next = c->next;
		gw_conn_drain(c);
	}
	gw_loop_check_drained(l);
}

static void
on_async(uv_async_t *h)
{
	struct gw_loop *l = h->data;
	struct gw_task *t, *next;

	pthread_mutex_lock(&l->qmu);
	t = l->qhead;
	l->qhead = l->qtail = NULL;
	pthread_mutex_unlock(&l->qmu);
	for (; t != NULL; t = next) {
		next = t->next;
		t->run(l, t);
	}
	if (atomic_load(&l->drain_requested))
		loop_begin_drain(l);
	gw_loop_check_drained(l);
}

static void
on_tick(uv_timer_t *t)
{
	struct gw_loop *l = t->data;
	struct gw_conn *c, *next;
	int64_t now = gw_loop_now(l);
	bool force = l->state == GW_LOOP_DRAINING && now >= l->drain_deadline;

	for (c = l->conns; c != NULL; c = next) {
		next = c->next;
		if (force)
			gw_conn_close(c);
		else
			gw_conn_tick(c, now);
	}
	if (gw_app->tick != NULL)
		gw_app->tick(l);
	gw_loop_check_drained(l);
}

int64_t
gw_loop_now(const struct gw_loop *l)
{
	return ((int64_t) uv_now(&l->uv));
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
gw_loop_post(struct gw_loop *l, struct gw_task *t)
{
	pthread_mutex_lock(&l->qmu);
	if (l->qclosed) {
		pthread_mutex_unlock(&l->qmu);
		return (-1);
	}
	t->next = NULL;
	if (l->qtail != NULL)
		l->qtail->next = t;
	else
		l->qhead = t;
	l->qtail = t;
	/* Sent under the lock, so the handle cannot be closed meanwhile. */
	uv_async_send(&l->async);
	pthread_mutex_unlock(&l->qmu);
	return (0);
}

static int
loop_init(struct gw_loop *l, unsigned id, int *port)
{
	int fd, bound = *port, rv;

	l->id = id;
	if ((rv = uv_loop_init(&l->uv)) != 0) {
		log_warnx("event=uv_loop_init err=\"%s\"", uv_strerror(rv));
		return (-1);
	}
	l->uv.data = l;
	pthread_mutex_init(&l->qmu, NULL);
	atomic_init(&l->drain_requested, false);
	uv_async_init(&l->uv, &l->async, on_async);
	l->async.data = l;
	uv_timer_init(&l->uv, &l->tick);
	l->tick.data = l;

	if ((fd = listen_socket(gw_net_cfg.listen_host, *port, &bound)) < 0)
		return (-1);
	uv_tcp_init(&l->uv, &l->listener);
	l->listener.data = l;
	if ((rv = uv_tcp_open(&l->listener, fd)) != 0 ||
	    (rv = uv_listen((uv_stream_t *) &l->listener, 1024,
	                    on_connection)) != 0) {
		log_warnx("event=listen err=\"%s\"", uv_strerror(rv));
		return (-1);
	}
	*port = bound;
	if (gw_app->loop_init != NULL)
		gw_app->loop_init(l);
	return (0);
}

static void *
loop_run(void *arg)
{
	struct gw_loop *l = arg;

	uv_timer_start(&l->tick, on_tick, GW_TICK_MS, GW_TICK_MS);
	uv_run(&l->uv, UV_RUN_DEFAULT);
	return (NULL);
}

int
gw_loops_start(int *port)
{
	size_t i;

	gw_nloops = (size_t) gw_net_cfg.threads;
	if ((gw_loops = calloc(gw_nloops, sizeof(*gw_loops))) == NULL)
		fatalx("gateway: out of memory");
	for (i = 0; i < gw_nloops; i++) {
		if ((gw_loops[i] = calloc(1, sizeof(*gw_loops[i]))) == NULL)
			fatalx("gateway: out of memory");
		if (loop_init(gw_loops[i], (unsigned) i, port) != 0)
			return (-1);
	}
	for (i = 0; i < gw_nloops; i++)
		if (pthread_create(&gw_loops[i]->thread, NULL, loop_run,
		                   gw_loops[i]) != 0)
			fatal("event=thread_create");
	return (0);
}

static void
loop_drain(struct gw_loop *l)
{
	atomic_store(&l->drain_requested, true);
	pthread_mutex_lock(&l->qmu);
	if (!l->qclosed)
		uv_async_send(&l->async);
	pthread_mutex_unlock(&l->qmu);
}

static void
loop_free(struct gw_loop *l)
{
	struct gw_conn *c, *next;
	struct gw_task *t, *tnext;

	/* Let close callbacks run, then the loop must be empty. */
	uv_run(&l->uv, UV_RUN_NOWAIT);
	if (uv_loop_close(&l->uv) != 0)
		log_warnx("event=loop_close loop=%u err=busy", l->id);
	/*
	 * Tasks posted after the last delivery run now, while closed
	 * connections they may refer to still exist: they find them closed
	 * (gw_req_release) and free what they carry.
	 */
	pthread_mutex_lock(&l->qmu);
	t = l->qhead;
	l->qhead = l->qtail = NULL;
	pthread_mutex_unlock(&l->qmu);
	for (; t != NULL; t = tnext) {
		tnext = t->next;
		t->run(l, t);
	}
	for (c = l->zombies; c != NULL; c = next) {
		next = c->next;
		gw_conn_free(c);
	}
	if (gw_app->loop_free != NULL)
		gw_app->loop_free(l);
	gw_buf_free(&l->scratch);
	pthread_mutex_destroy(&l->qmu);
	free(l);
}

void
gw_loops_stop(void)
{
	size_t i;

	for (i = 0; i < gw_nloops; i++)
		loop_drain(gw_loops[i]);
	for (i = 0; i < gw_nloops; i++)
		pthread_join(gw_loops[i]->thread, NULL);
}

void
gw_loops_free(void)
{
	size_t i;

	for (i = 0; i < gw_nloops; i++)
		loop_free(gw_loops[i]);
	free(gw_loops);
	gw_loops = NULL;
	gw_nloops = 0;
}
