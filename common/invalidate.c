/*
 * Cache invalidation over Redis pub/sub.
 *
 * The subscriber thread owns a plain hiredis context (a subscribed
 * connection can do nothing but pub/sub, so it cannot be a cm_redis).  It
 * loops:
 *
 *   connect (bounded by a timeout) -> AUTH -> SUBSCRIBE channel ->
 *   on_reset() -> read messages, calling on_key() for each
 *
 * and on any failure drops the connection, waits out a backoff (100 ms
 * doubling to 2 s) and starts over.  on_reset runs after every successful
 * subscription, the first included, because whatever was published while
 * we were not subscribed is lost and the owner's cache may be stale.
 *
 * The thread never blocks in a read: it poll()s the socket together with a
 * pipe that cm_invalidator_stop writes to, so stopping is immediate.  A
 * subscribed connection is silent when nothing is published, so a peer that
 * vanished without closing the socket would go unnoticed; the thread sends
 * a PING (allowed in subscribed mode) after PING_IDLE_MS of silence and
 * counts the connection lost if nothing arrives within PING_WAIT_MS.
 *
 * Message format: the payload of each message on the channel is one key
 * (for the shortener: the short code), passed to on_key as it is.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "invalidate.h"
#include "log.h"
#include "util.h"

#define INV_CONNECT_TIMEOUT_MS 1000
#define INV_BACKOFF_MIN_MS     100
#define INV_BACKOFF_MAX_MS     2000
#define INV_PING_IDLE_MS       5000
#define INV_PING_WAIT_MS       3000

struct cm_invalidator {
	char *channel;
	char host[256];
	int port;
	char password[256];
	int db;
	void (*on_key)(void *arg, const char *key, size_t len);
	bool (*on_reset)(void *arg);
	void *arg;
	pthread_t thread;
	int wake[2]; /* stop pipe: [0] polled by the thread */
	atomic_bool stop;
	atomic_bool subscribed;
	redisContext *c;
};

/* Sleeps ms, or less if stop is requested; true if stopping. */
static bool
inv_sleep(cm_invalidator *inv, int ms)
{
	struct pollfd pfd = {.fd = inv->wake[0], .events = POLLIN};

	if (atomic_load(&inv->stop))
		return (true);
	(void) poll(&pfd, 1, ms);
	return (atomic_load(&inv->stop));
}

/* Writes the whole output buffer (bounded by the socket's send timeout). */
static bool
inv_flush(redisContext *c)
{
	int done = 0;

	while (!done)
		if (redisBufferWrite(c, &done) != REDIS_OK)
			return (false);
	return (true);
}

/* Sends a command and waits for its reply (bounded by the timeout). */
static redisReply *
inv_command(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	void *rep;
	int rv;

	va_start(ap, fmt);
	rv = redisvAppendCommand(c, fmt, ap);
	va_end(ap);
	if (rv != REDIS_OK || redisGetReply(c, &rep) != REDIS_OK)
		return (NULL);
	return (rep);
}

/* Connects and subscribes; false (with the reason logged once) on failure. */
static bool
inv_subscribe(cm_invalidator *inv, bool quiet)
{
	struct timeval tv;
	redisReply *rep;
	const char *why = NULL;

	tv.tv_sec = INV_CONNECT_TIMEOUT_MS / 1000;
	tv.tv_usec = (INV_CONNECT_TIMEOUT_MS % 1000) * 1000;
	if (inv->port == 0)
		inv->c = redisConnectUnixWithTimeout(inv->host, tv);
	else
		inv->c = redisConnectWithTimeout(inv->host, inv->port, tv);
	if (inv->c == NULL || inv->c->err != 0 ||
	    redisSetTimeout(inv->c, tv) != REDIS_OK) {
		why = inv->c != NULL ? inv->c->errstr : "out of memory";
		goto fail;
	}
	(void) redisEnableKeepAlive(inv->c);
	if (inv->password[0] != '\0') {
		rep = inv_command(inv->c, "AUTH %s", inv->password);
		if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
			why = "AUTH refused";
			if (rep != NULL)
				freeReplyObject(rep);
			goto fail;
		}
		freeReplyObject(rep);
	}
	rep = inv_command(inv->c, "SUBSCRIBE %s", inv->channel);
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY ||
	    rep->elements != 3) {
		why = rep == NULL ? inv->c->errstr : "unexpected reply";
		if (rep != NULL)
			freeReplyObject(rep);
		goto fail;
	}
	freeReplyObject(rep);
	return (true);
fail:
	if (!quiet)
		log_warnx("event=invalidator_down channel=%s addr=%s:%d "
		          "err=\"%s\"",
		          inv->channel, inv->host, inv->port, why);
	if (inv->c != NULL) {
		redisFree(inv->c);
		inv->c = NULL;
	}
	return (false);
}

/* Handles one reply on the subscribed connection. */
static void
inv_dispatch(cm_invalidator *inv, redisReply *rep)
{
	redisReply *kind;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1)
		return;
	kind = rep->element[0];
	if (kind->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(kind->str, "message") == 0 && rep->elements == 3 &&
	    rep->element[2]->type == REDIS_REPLY_STRING)
		inv->on_key(inv->arg, rep->element[2]->str,
		            (size_t) rep->element[2]->len);
	/* "pong" and (un)subscribe confirmations need nothing. */
}

/*
 * Reads messages until the connection fails or stop is requested.
 * Returns true if stopping; otherwise *why says what failed.
 */
static bool
inv_listen(cm_invalidator *inv, const char **why)
{
	struct pollfd pfd[2];
	void *rep;
	int64_t last_rx, ping_sent = 0;
	int n;

	last_rx = cm_mono_ms();
	for (;;) {
		/* Replies already buffered come first. */
		for (;;) {
			rep = NULL;
			if (redisGetReplyFromReader(inv->c, &rep) != REDIS_OK) {
				*why = inv->c->errstr;
				return (false);
			}
			if (rep == NULL)
				break;
			inv_dispatch(inv, rep);
			freeReplyObject(rep);
		}
		if (ping_sent == 0 &&
		    cm_mono_ms() - last_rx >= INV_PING_IDLE_MS) {
			if (redisAppendCommand(inv->c, "PING") != REDIS_OK ||
			    !inv_flush(inv->c)) {
				*why = inv->c->errstr;
				return (false);
			}
			ping_sent = cm_mono_ms();
		}
		if (ping_sent != 0 &&
		    cm_mono_ms() - ping_sent >= INV_PING_WAIT_MS) {
			*why = "no answer to PING";
			return (false);
		}
		pfd[0] = (struct pollfd){.fd = inv->c->fd, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = inv->wake[0], .events = POLLIN};
		n = poll(pfd, 2, 500);
		if (atomic_load(&inv->stop))
			return (true);
		if (n < 0 && errno != EINTR) {
			*why = "poll failed";
			return (false);
		}
		if (n > 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			if (redisBufferRead(inv->c) != REDIS_OK) {
				*why = inv->c->errstr;
				return (false);
			}
			last_rx = cm_mono_ms();
			ping_sent = 0;
		}
	}
}

static void *
inv_main(void *arg)
{
	cm_invalidator *inv = arg;
	const char *why = "";
	int backoff = INV_BACKOFF_MIN_MS;
	bool was_down = false;

	while (!atomic_load(&inv->stop)) {
		if (!inv_subscribe(inv, was_down)) {
			was_down = true;
			if (inv_sleep(inv, backoff))
				break;
			backoff = backoff * 2 > INV_BACKOFF_MAX_MS
			              ? INV_BACKOFF_MAX_MS
			              : backoff * 2;
			continue;
		}
		/* Whatever was published before this point is lost to us:
		 * the owner resets before it is told it is subscribed. */
		if (inv->on_reset != NULL && !inv->on_reset(inv->arg)) {
			log_warnx("event=invalidator_reset_failed channel=%s",
			          inv->channel);
			redisFree(inv->c);
			inv->c = NULL;
			was_down = true;
			if (inv_sleep(inv, backoff))
				break;
			backoff = backoff * 2 > INV_BACKOFF_MAX_MS
			              ? INV_BACKOFF_MAX_MS
			              : backoff * 2;
			continue;
		}
		log_info("event=invalidator_subscribed channel=%s",
		         inv->channel);
		was_down = false;
		backoff = INV_BACKOFF_MIN_MS;
		atomic_store(&inv->subscribed, true);
		if (inv_listen(inv, &why)) {
			atomic_store(&inv->subscribed, false);
			break;
		}
		atomic_store(&inv->subscribed, false);
		log_warnx("event=invalidator_lost channel=%s err=\"%s\"",
		          inv->channel, why);
		redisFree(inv->c);
		inv->c = NULL;
		if (inv_sleep(inv, INV_BACKOFF_MIN_MS))
			break;
	}
	if (inv->c != NULL) {
		redisFree(inv->c);
		inv->c = NULL;
	}
	return (NULL);
}

int
cm_invalidator_start(cm_invalidator **out, const cm_invalidator_config *c)
{
	cm_invalidator *inv;
	int flags;

	if (c->on_key == NULL || c->channel == NULL || c->redis_url == NULL)
		return (-1);
	if ((inv = calloc(1, sizeof(*inv))) == NULL)
		return (-1);
	if (cm_redis_parse_url(c->redis_url, inv->host, sizeof(inv->host),
	                       &inv->port, inv->password, sizeof(inv->password),
	                       &inv->db) != 0) {
		log_warnx("event=invalidator_bad_url");
		free(inv);
		return (-1);
	}
	if ((inv->channel = strdup(c->channel)) == NULL) {
		free(inv);
		return (-1);
	}
	inv->on_key = c->on_key;
	inv->on_reset = c->on_reset;
	inv->arg = c->arg;
	atomic_init(&inv->stop, false);
	atomic_init(&inv->subscribed, false);
	if (pipe(inv->wake) != 0) {
		free(inv->channel);
		free(inv);
		return (-1);
	}
	flags = fcntl(inv->wake[1], F_GETFL);
	(void) fcntl(inv->wake[1], F_SETFL, flags | O_NONBLOCK);
	if (pthread_create(&inv->thread, NULL, inv_main, inv) != 0) {
		close(inv->wake[0]);
		close(inv->wake[1]);
		free(inv->channel);
		free(inv);
		return (-1);
	}
	*out = inv;
	return (0);
}

void
cm_invalidator_stop(cm_invalidator *inv)
{
	char b = 1;

	if (inv == NULL)
		return;
	atomic_store(&inv->stop, true);
	(void) !write(inv->wake[1], &b, 1);
	pthread_join(inv->thread, NULL);
	close(inv->wake[0]);
	close(inv->wake[1]);
	free(inv->channel);
	free(inv);
}

bool
cm_invalidator_subscribed(cm_invalidator *inv)
{
	return (inv != NULL && atomic_load(&inv->subscribed));
}

int
cm_invalidate_publish(cm_redis *r, const char *channel, const char *key)
{
	redisReply *rep;
	int rv;

	if ((rep = cm_redis_cmd(r, "PUBLISH %s %s", channel, key)) == NULL)
		return (-1);
	rv = rep->type == REDIS_REPLY_ERROR ? -1 : 0;
	freeReplyObject(rep);
	return (rv);
}
