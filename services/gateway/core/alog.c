/*
 * The access log: one line per request, in the same logfmt shape as
 * common/log.c's lines ("ts=... level=info svc=gateway rid=... ..."), so
 * that one parser reads both.
 *
 * log_info costs a formatted line and a write(2) per request on the event
 * loop, which at tens of thousands of redirects a second is a large share
 * of the work, and a slow log consumer (a full pipe, a stalled disk) would
 * stall every connection of the loop.  So each loop formats its lines by
 * hand into its own buffer, and hands full batches (about 4 KiB: one
 * pipe-atomic write of whole lines) to a writer thread through a mutex
 * and a bounded queue; partial batches go on the loop's sweep timer
 * (every 250 ms).  Lines may thus appear up to a quarter second late, never
 * out of order within a loop.  If the writer falls behind by more than
 * QUEUE_MAX batches, new batches are dropped and counted (the loop never
 * waits for the log).  Buffers are recycled, so logging allocates nothing
 * in the steady state.  GATEWAY_ACCESS_LOG=0 turns it off; LOG_LEVEL=warn
 * or error too.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#include "internal.h"

#define BATCH_MAX    4096
#define PATH_MAX_LOG 256
#define QUEUE_MAX    1024 /* batches: 4 MiB of lines */
#define FREE_MAX     64

struct alog_batch {
	struct alog_batch *next;
	struct gw_buf buf;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool running, stop;
	struct alog_batch *head, *tail, *free;
	size_t queued, nfree;
	uint64_t dropped;
} W = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void
write_all(const char *p, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(STDERR_FILENO, p + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t) n;
	}
}

static void *
writer_main(void *arg)
{
	struct alog_batch *b;
	uint64_t dropped;

	(void) arg;
	pthread_mutex_lock(&W.mu);
	for (;;) {
		while (W.head == NULL && !W.stop && W.dropped == 0)
			pthread_cond_wait(&W.cv, &W.mu);
		dropped = W.dropped;
		W.dropped = 0;
		if ((b = W.head) == NULL && W.stop)
			break;
		if (b != NULL) {
			W.head = b->next;
			if (W.head == NULL)
				W.tail = NULL;
			W.queued--;
		}
		pthread_mutex_unlock(&W.mu);
		if (dropped > 0)
			log_warnx("event=access_log_dropped batches=%llu",
			          (unsigned long long) dropped);
		if (b != NULL) {
			write_all(b->buf.p, b->buf.len);
			b->buf.len = 0;
		}
		pthread_mutex_lock(&W.mu);
		if (b != NULL && W.nfree < FREE_MAX) {
			b->next = W.free;
			W.free = b;
			W.nfree++;
		} else if (b != NULL) {
			gw_buf_free(&b->buf);
			free(b);
		}
	}
	pthread_mutex_unlock(&W.mu);
	return (NULL);
}

void
gw_alog_start(void)
{
	if (!gw_core_cfg.access_log)
		return;
	if (pthread_create(&W.thread, NULL, writer_main, NULL) != 0)
		fatal("event=thread_create what=access_log");
	W.running = true;
}

void
gw_alog_stop(void)
{
	struct alog_batch *b;

	if (W.running) {
		pthread_mutex_lock(&W.mu);
		W.stop = true;
		pthread_cond_signal(&W.cv);
		pthread_mutex_unlock(&W.mu);
		pthread_join(W.thread, NULL);
		W.running = false;
	}
	while ((b = W.free) != NULL) {
		W.free = b->next;
		gw_buf_free(&b->buf);
		free(b);
	}
	W.nfree = 0;
}

/*
 * Hands the loop's lines to the writer; the loop continues with a
 * recycled buffer.  Without a writer (it is only off when the log is)
 * the lines are written here.
 */
void
gw_alog_flush(struct gw_loop *l)
{
	struct gw_core_loop *cl = gw_core_loop(l);
	struct alog_batch *b;

	if (cl->alog.len == 0)
		return;
	if (!W.running) {
		write_all(cl->alog.p, cl->alog.len);
		cl->alog.len = 0;
		return;
	}
	pthread_mutex_lock(&W.mu);
	if (W.queued >= QUEUE_MAX) {
		W.dropped++;
		pthread_cond_signal(&W.cv);
		pthread_mutex_unlock(&W.mu);
		cl->alog.len = 0;
		return;
	}
	if ((b = W.free) != NULL) {
		W.free = b->next;
		W.nfree--;
	} else if ((b = calloc(1, sizeof(*b))) == NULL) {
		W.dropped++;
		pthread_mutex_unlock(&W.mu);
		cl->alog.len = 0;
		return;
	}
	/* Swap buffers: the batch takes the lines, the loop an empty one. */
	{
		struct gw_buf t = b->buf;

		b->buf = cl->alog;
		cl->alog = t;
		cl->alog.len = 0;
	}
	b->next = NULL;
	if (W.tail != NULL)
		W.tail->next = b;
	else
		W.head = b;
	W.tail = b;
	W.queued++;
	pthread_cond_signal(&W.cv);
	pthread_mutex_unlock(&W.mu);
}

/* Appends a logfmt value, quoted and escaped if it needs to be. */
static void
put_value(struct gw_buf *b, const char *s, size_t len)
{
	size_t i;
	bool plain = len > 0;

	if (len > PATH_MAX_LOG)
		len = PATH_MAX_LOG;
	for (i = 0; i < len && plain; i++) {
		unsigned char c = (unsigned char) s[i];

		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
			plain = false;
	}
	if (plain) {
		gw_buf_append(b, s, len);
		return;
	}
	gw_buf_append(b, "\"", 1);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char) c};

			gw_buf_append(b, e, 2);
		} else if (c < ' ' || c == 0x7f) {
			gw_buf_append(b, "?", 1);
		} else {
			gw_buf_append(b, &s[i], 1);
		}
	}
	gw_buf_append(b, "\"", 1);
}

static void
put_ts(struct gw_core_loop *l, struct gw_buf *b)
{
	struct timespec ts;
	char ms[6];
	long m;

	clock_gettime(CLOCK_REALTIME, &ts);
	if ((int64_t) ts.tv_sec != l->alog_s) {
		struct tm tm;

		gmtime_r(&ts.tv_sec, &tm);
		strftime(l->alog_ts, sizeof(l->alog_ts), "%Y-%m-%dT%H:%M:%S",
		         &tm);
		l->alog_s = (int64_t) ts.tv_sec;
	}
	m = ts.tv_nsec / 1000000;
	ms[0] = '.';
	ms[1] = (char) ('0' + m / 100);
	ms[2] = (char) ('0' + m / 10 % 10);
	ms[3] = (char) ('0' + m % 10);
	ms[4] = 'Z';
	gw_buf_append(b, "ts=", 3);
	gw_buf_puts(b, l->alog_ts);
	gw_buf_append(b, ms, 5);
}

void
gw_alog_request(struct gw_req *rq, int64_t dur)
{
	struct gw_loop *l = rq->loop;
	struct gw_core_loop *cl = gw_core_loop(l);
	const struct gw_creq *cr = gw_creq(rq);
	struct gw_buf *b = &cl->alog;
	size_t mark;
	const char *method = rq->method_known ? gw_req_method(rq) : "-";

	if (b->len > BATCH_MAX - 1024)
		gw_alog_flush(l);
	mark = b->len;
	put_ts(cl, b);
	gw_buf_puts(b, " level=info svc=gateway rid=");
	gw_buf_puts(b, cr != NULL && cr->rid[0] ? cr->rid : "-");
	gw_buf_puts(b, " event=access method=");
	gw_buf_puts(b, method);
	gw_buf_puts(b, " path=");
	if (cr != NULL && cr->path != NULL)
		put_value(b, cr->path, cr->plen);
	else
		gw_buf_append(b, "-", 1);
	gw_buf_puts(b, " status=");
	gw_buf_putu(b, (uint64_t) rq->status);
	gw_buf_puts(b, " bytes=");
	gw_buf_putu(b, rq->bytes);
	gw_buf_puts(b, " duration_us=");
	gw_buf_putu(b, dur > 0 ? (uint64_t) dur : 0);
	gw_buf_puts(b, " ip=");
	gw_buf_puts(b, cr != NULL && cr->client_ip ? cr->client_ip
	                                           : rq->conn->peer_str);
	gw_buf_puts(b, " user=");
	if (cr != NULL && cr->id.user != NULL)
		put_value(b, cr->id.user, strlen(cr->id.user));
	else
		gw_buf_append(b, "-", 1);
	gw_buf_append(b, "\n", 1);
	/* A line that alone exceeds a batch goes out by itself. */
	if (b->len - mark > BATCH_MAX - 1024)
		gw_alog_flush(l);
}
