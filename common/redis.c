/*
 * A Redis connection that reconnects by itself.
 *
 * The rule is "never a hang": connecting and every command are bounded by
 * the timeout given at creation (hiredis sets SO_RCVTIMEO/SO_SNDTIMEO from
 * redisSetTimeout), and a connection that fails is thrown away.  What
 * happens next depends on how it failed:
 *
 *   - a proven connection (one that has answered) broke with EOF or a
 *     reset: the next call may reconnect at once, because Redis may simply
 *     have restarted;
 *   - a connection attempt failed, a fresh connection failed its first
 *     command, or a command timed out: the breaker opens, and for the
 *     backoff (100 ms, doubling to 2 s while failures go on) every call
 *     fails at once with NULL.  A stopped or overloaded Redis still accepts
 *     TCP connections (the kernel does), so "connected" proves nothing
 *     until a reply arrives; and a Redis too slow to answer in time is not
 *     helped by more requests.
 *
 * The breaker is shared by every cm_redis of the same URL in the process:
 * a service has one connection per worker thread, and without sharing each
 * of them would pay its own timeout before backing off.  With it, one
 * timeout per backoff period is paid by the whole process while Redis is
 * unwell, and callers degrade instead of queueing.  The first reply after
 * a failure closes it.
 *
 * The breaker also keeps the last outcome of any connection to its Redis
 * (a reply, or a failure), which is what health checks report
 * (cm_redis_state, cm_redis_check): a service that talks to Redis anyway
 * need not ask it again for every Health.Check.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redis.h"
#include "util.h"

#define REDIS_BACKOFF_MIN_MS 100
#define REDIS_BACKOFF_MAX_MS 2000
#define REDIS_BREAKERS       16
#define REDIS_OUTCOME_MS     100

/* The shared state of one Redis (by URL): see the top of the file. */
struct redis_breaker {
	char url[512];
	_Atomic int64_t until_ms; /* monotonic; calls fail fast before */
	_Atomic int backoff_ms;   /* the next opening's length */
	_Atomic int64_t last_ms;  /* monotonic time of the last outcome */
	_Atomic bool last_ok;     /* that outcome: a reply */
};

static struct redis_breaker breakers[REDIS_BREAKERS];
static size_t nbreakers;
static pthread_mutex_t breakers_mu = PTHREAD_MUTEX_INITIALIZER;

struct cm_redis {
	char host[256]; /* host name, or a unix socket path */
	int port;       /* 0: unix socket */
	char password[256];
	int db;
	int timeout_ms;
	redisContext *c;
	struct redis_breaker *br;
	int pending; /* appended commands whose reply is unread */
	bool fresh;  /* connected, but no reply received yet */
	bool ok;
};

/* The breaker for url, made on first use; breakers live as long as the
 * process (a handful of URLs at most). */
static struct redis_breaker *
redis_breaker_get(const char *url)
{
	struct redis_breaker *br = NULL;

	pthread_mutex_lock(&breakers_mu);
	for (size_t i = 0; i < nbreakers; i++)
		if (strcmp(breakers[i].url, url) == 0)
			br = &breakers[i];
	if (br == NULL) {
		if (nbreakers == REDIS_BREAKERS)
			fatalx("event=redis_new msg=\"too many Redis URLs\"");
		br = &breakers[nbreakers++];
		cm_strlcpy(br->url, url, sizeof(br->url));
		atomic_init(&br->until_ms, 0);
		atomic_init(&br->backoff_ms, REDIS_BACKOFF_MIN_MS);
		atomic_init(&br->last_ms, 0);
		atomic_init(&br->last_ok, true);
	}
	pthread_mutex_unlock(&breakers_mu);
	return (br);
}

/*
 * Parses "redis://[[user]:password@]host[:port][/db]" or "unix:/path"
 * (then host holds the path and port is 0).  The user name of a Redis 6
 * ACL URL is accepted and ignored: AUTH is sent with the password only.
 */
int
cm_redis_parse_url(const char *url, char *host, size_t hostlen, int *port,
                   char *password, size_t pwlen, int *db)
{
	const char *p, *at, *end, *colon, *slash;
	size_t n;
	char *ep;
	long v;

	if (hostlen == 0 || pwlen == 0)
		return (-1);
	password[0] = '\0';
	*db = 0;
	if (strncmp(url, "unix:", 5) == 0) {
		p = url + 5;
		if (strncmp(p, "//", 2) == 0)
			p += 2;
		if (*p != '/' || strlen(p) >= hostlen)
			return (-1);
		cm_strlcpy(host, p, hostlen);
		*port = 0;
		return (0);
	}
	if (strncmp(url, "redis://", 8) != 0)
		return (-1);
	p = url + 8;
	slash = strchr(p, '/');
	end = slash != NULL ? slash : p + strlen(p);
	/* The password may itself hold '@': the last one ends userinfo. */
	at = NULL;
	for (const char *q = p; q < end; q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		colon = memchr(p, ':', (size_t) (at - p));
		if (colon != NULL) {
			n = (size_t) (at - colon - 1);
			if (n >= pwlen)
				return (-1);
			memcpy(password, colon + 1, n);
			password[n] = '\0';
		}
		p = at + 1;
	}
	colon = NULL;
	for (const char *q = p; q < end; q++)
		if (*q == ':')
			colon = q;
	n = (size_t) ((colon != NULL ? colon : end) - p);
	if (n == 0 || n >= hostlen)
		return (-1);
	memcpy(host, p, n);
	host[n] = '\0';
	*port = 6379;
	if (colon != NULL) {
		errno = 0;
		v = strtol(colon + 1, &ep, 10);
		if (ep != end || ep == colon + 1 || errno != 0 || v < 1 ||
		    v > 65535)
			return (-1);
		*port = (int) v;
	}
	if (slash != NULL && slash[1] != '\0') {
		errno = 0;
		v = strtol(slash + 1, &ep, 10);
		if (*ep != '\0' || errno != 0 || v < 0 || v > 1000000)
			return (-1);
		*db = (int) v;
	}
	return (0);
}

cm_redis *
cm_redis_new(const char *url, int timeout_ms)
{
	cm_redis *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		fatal("event=redis_new");
	if (strlen(url) >= sizeof(breakers[0].url) ||
	    cm_redis_parse_url(url, r->host, sizeof(r->host), &r->port,
	                       r->password, sizeof(r->password), &r->db) != 0)
		fatalx("event=redis_bad_url msg=\"REDIS_URL must be "
		       "redis://[:password@]host[:port][/db] or unix:/path\"");
	r->br = redis_breaker_get(url);
	r->timeout_ms = timeout_ms > 0 ? timeout_ms : 500;
	return (r);
}

static void
redis_drop(cm_redis *r)
{
	if (r->c != NULL) {
		redisFree(r->c);
		r->c = NULL;
	}
	r->pending = 0;
	r->ok = false;
}

void
cm_redis_free(cm_redis *r)
{
	if (r == NULL)
		return;
	redis_drop(r);
	free(r);
}

/*
 * Records the outcome of a command or connection attempt.  A reply after
 * replies recorded less than REDIS_OUTCOME_MS ago is not written: every
 * thread shares this line, and replies are many.
 */
static void
redis_outcome(struct redis_breaker *br, bool ok)
{
	int64_t now = cm_mono_ms();

	if (ok && atomic_load(&br->last_ok) &&
	    now - atomic_load(&br->last_ms) < REDIS_OUTCOME_MS)
		return;
	atomic_store(&br->last_ok, ok);
	atomic_store(&br->last_ms, now);
}

/*
 * Redis failed us (see the top of the file): drop the connection and open
 * the breaker.  The backoff doubles only when an attempt made after the
 * last opening fails, not when many threads fail at the same moment.
 */
static void
redis_trip(cm_redis *r, const char *why)
{
	struct redis_breaker *br = r->br;
	int64_t now = cm_mono_ms();
	int b = atomic_load(&br->backoff_ms);

	redis_drop(r);
	redis_outcome(br, false);
	if (now < atomic_load(&br->until_ms))
		return;                /* already open */
	if (b == REDIS_BACKOFF_MIN_MS) /* log going down once */
		log_warnx("event=redis_down addr=%s:%d err=\"%s\"", r->host,
		          r->port, why);
	atomic_store(&br->until_ms, now + b);
	atomic_store(&br->backoff_ms, b * 2 > REDIS_BACKOFF_MAX_MS
	                                  ? REDIS_BACKOFF_MAX_MS
	                                  : b * 2);
}

/* Runs AUTH/SELECT on a fresh connection; false (with a reason) if refused. */
static bool
redis_handshake(cm_redis *r, char *why, size_t whylen)
{
	redisReply *rep;

	if (r->password[0] != '\0') {
		rep = redisCommand(r->c, "AUTH %s", r->password);
		if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
			snprintf(why, whylen, "AUTH: %s",
			         rep != NULL ? rep->str : r->c->errstr);
			if (rep != NULL)
				freeReplyObject(rep);
			return (false);
		}
		freeReplyObject(rep);
	}
	if (r->db != 0) {
		rep = redisCommand(r->c, "SELECT %d", r->db);
		if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
			snprintf(why, whylen, "SELECT: %s",
			         rep != NULL ? rep->str : r->c->errstr);
			if (rep != NULL)
				freeReplyObject(rep);
			return (false);
		}
		freeReplyObject(rep);
	}
	return (true);
}

/*
 * Makes sure r->c is a live connection, connecting if needed.  Returns
 * false (fast) while the breaker is open, or when Redis was just found
 * unreachable.
 */
static bool
redis_ensure(cm_redis *r)
{
	struct timeval tv;
	char why[256];

	if (cm_mono_ms() < atomic_load(&r->br->until_ms)) {
		r->ok = false;
		return (false);
	}
	if (r->c != NULL)
		return (true);
	tv.tv_sec = r->timeout_ms / 1000;
	tv.tv_usec = (r->timeout_ms % 1000) * 1000;
	if (r->port == 0)
		r->c = redisConnectUnixWithTimeout(r->host, tv);
	else
		r->c = redisConnectWithTimeout(r->host, r->port, tv);
	if (r->c == NULL) {
		redis_trip(r, "out of memory");
		return (false);
	}
	if (r->c->err != 0) {
		cm_strlcpy(why, r->c->errstr, sizeof(why));
		redis_trip(r, why);
		return (false);
	}
	if (redisSetTimeout(r->c, tv) != REDIS_OK) {
		redis_trip(r, "cannot set timeout");
		return (false);
	}
	(void) redisEnableKeepAlive(r->c);
	if (!redis_handshake(r, why, sizeof(why))) {
		redis_trip(r, why);
		return (false);
	}
	/* Proven only by the first reply (redis_answered). */
	r->fresh = true;
	return (true);
}

/*
 * A connection failed during a command (see the top of the file for what
 * happens next).  err is errno as the failing call left it.
 */
static void
redis_broken(cm_redis *r, int err)
{
	char why[160];
	bool timeout = err == EAGAIN || err == EWOULDBLOCK || err == ETIMEDOUT;

	snprintf(why, sizeof(why), "%s", r->c != NULL ? r->c->errstr : "");
	if (r->fresh || timeout) {
		redis_trip(r, why);
		return;
	}
	log_warnx("event=redis_error addr=%s:%d err=\"%s\"", r->host, r->port,
	          why);
	redis_drop(r);
	redis_outcome(r->br, false);
}

/* A reply arrived: the connection is proven, the breaker closes. */
static void
redis_answered(cm_redis *r)
{
	struct redis_breaker *br = r->br;

	if (r->fresh &&
	    atomic_exchange(&br->backoff_ms, REDIS_BACKOFF_MIN_MS) !=
	        REDIS_BACKOFF_MIN_MS)
		log_info("event=redis_up addr=%s:%d", r->host, r->port);
	r->fresh = false;
	r->ok = true;
	redis_outcome(br, true);
}

static redisReply *
redis_vcmd(cm_redis *r, const char *fmt, va_list ap)
{
	redisReply *rep;

	if (!redis_ensure(r))
		return (NULL);
	if (r->pending != 0) {
		/* Unread pipelined replies would answer this command. */
		redis_drop(r);
		if (!redis_ensure(r))
			return (NULL);
	}
	errno = 0;
	rep = redisvCommand(r->c, fmt, ap);
	if (rep == NULL) {
		redis_broken(r, errno);
		return (NULL);
	}
	redis_answered(r);
	return (rep);
}

redisReply *
cm_redis_cmd(cm_redis *r, const char *fmt, ...)
{
	redisReply *rep;
	va_list ap;

	va_start(ap, fmt);
	rep = redis_vcmd(r, fmt, ap);
	va_end(ap);
	return (rep);
}

redisReply *
cm_redis_cmdargv(cm_redis *r, int argc, const char **argv,
                 const size_t *argvlen)
{
	redisReply *rep;

	if (!redis_ensure(r))
		return (NULL);
	if (r->pending != 0) {
		redis_drop(r);
		if (!redis_ensure(r))
			return (NULL);
	}
	errno = 0;
	rep = redisCommandArgv(r->c, argc, argv, argvlen);
	if (rep == NULL) {
		redis_broken(r, errno);
		return (NULL);
	}
	redis_answered(r);
	return (rep);
}

/*
 * Appends a command to the output buffer; nothing is sent until the first
 * cm_redis_get_reply.  Returns 0, or -1 when Redis is unreachable (then the
 * caller must not read replies for this batch).
 */
int
cm_redis_append(cm_redis *r, const char *fmt, ...)
{
	va_list ap;
	int rv;

	if (!redis_ensure(r))
		return (-1);
	va_start(ap, fmt);
	rv = redisvAppendCommand(r->c, fmt, ap);
	va_end(ap);
	if (rv != REDIS_OK) {
		redis_broken(r, errno);
		return (-1);
	}
	r->pending++;
	return (0);
}

/*
 * Reads the next pipelined reply.  Never connects: a connection lost in the
 * middle of a batch makes every remaining read return NULL.
 */
redisReply *
cm_redis_get_reply(cm_redis *r)
{
	void *rep = NULL;

	if (r->c == NULL || r->pending == 0)
		return (NULL);
	errno = 0;
	if (redisGetReply(r->c, &rep) != REDIS_OK || rep == NULL) {
		redis_broken(r, errno);
		return (NULL);
	}
	r->pending--;
	redis_answered(r);
	return (rep);
}

bool
cm_redis_ok(cm_redis *r)
{
	return (r->ok);
}

bool
cm_redis_ping(cm_redis *r)
{
	redisReply *rep;
	bool up;

	if ((rep = cm_redis_cmd(r, "PING")) == NULL)
		return (false);
	up = rep->type != REDIS_REPLY_ERROR;
	freeReplyObject(rep);
	return (up);
}

bool
cm_redis_state(const cm_redis *r, int64_t *age_ms)
{
	struct redis_breaker *br = r->br;
	int64_t last = atomic_load(&br->last_ms), now = cm_mono_ms();

	*age_ms = last == 0 ? INT64_MAX : now - last;
	if (now < atomic_load(&br->until_ms))
		return (false);
	return (atomic_load(&br->last_ok));
}

bool
cm_redis_check(cm_redis *r, int max_age_ms)
{
	int64_t age;
	bool up = cm_redis_state(r, &age);

	if (age < max_age_ms)
		return (up);
	/* While the breaker is open this sends nothing. */
	(void) cm_redis_ping(r);
	return (cm_redis_state(r, &age));
}
