/*
 * The notifier end to end over its real transports, black-box: the real
 * notifier and gateway binaries, a private Redis, the run's PostgreSQL, a
 * real SMTP server (Debian's aiosmtpd under /usr/bin/python3, its Mailbox
 * handler subclassed only to hold a message on a switch) and HTTP
 * receivers written here for push and SMS.  Everything a user or an
 * operator does goes through the gateway's HTTP API.
 *
 *   - email: a template type and a plain title with emoji arrive with the
 *     right subject, bodies and headers; the List-Unsubscribe URL, POSTed
 *     through the gateway, turns the type's email off; a title carrying
 *     "\r\nBcc:" ends dead with nothing in the mailbox;
 *   - push and SMS with the Idempotency-Key; the phone confirmation code
 *     arrives by SMS;
 *   - the SMS provider down: 3 attempts with backoff, dead letter, a replay
 *     that delivers only the failed channel; the secondary provider taking
 *     over after 5 consecutive failures of the primary;
 *   - the notifier killed (-9) while a receiver holds its request: after a
 *     restart push and SMS arrive once at a receiver that honours the key
 *     and both copies of the email carry one Message-ID;
 *   - push endpoints leading to internal addresses are never contacted.
 *
 * The receivers listen on 127.0.0.1 and [::1] on one port each and count
 * every connection, so "never contacted" is measured, not assumed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/evp.h>

#include "harness.h"

#define SECRET    "integration-secret-integration-secret"
#define UNSUB_KEY "integration-unsubscribe-key-0123456789"
#define SMS_TOKEN "integration-sms-token-0123456789abcdef"
#define BASE      "http://notify.test"
#define FROM      "notifier@e2e.test"
/* How long the primary SMS provider is skipped after failing over. */
#define FAILOVER_SKIP_MS 6000

/* ============================================================ receiver */

#define RCV_MAX_REQ 64

typedef struct rcv_req {
	char path[512];
	char *headers; /* the raw head after the request line */
	char *body;
	int64_t at_ms; /* cm_mono_ms() when it was read */
	bool fresh;    /* its Idempotency-Key had not been seen */
} rcv_req;

typedef struct rcv {
	int fd4, fd6, port;
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, hold;
	int active; /* connection threads running */
	int status;
	char location[256];
	char retry_after[32];
	int times; /* > 0: answers left before status is 200 again */
	int conns;
	int nreq;
	rcv_req reqs[RCV_MAX_REQ];
} rcv;

typedef struct rcv_conn {
	rcv *r;
	int fd;
} rcv_conn;

static void
rcv_answer(rcv *r, int status, const char *location)
{
	pthread_mutex_lock(&r->mu);
	r->status = status;
	snprintf(r->location, sizeof(r->location), "%s",
	         location != NULL ? location : "");
	pthread_mutex_unlock(&r->mu);
}

/* The next n answers are status with Retry-After, then 200 again. */
static void
rcv_answer_n(rcv *r, int n, int status, const char *retry_after)
{
	pthread_mutex_lock(&r->mu);
	r->status = status;
	r->times = n;
	snprintf(r->retry_after, sizeof(r->retry_after), "%s",
	         retry_after != NULL ? retry_after : "");
	pthread_mutex_unlock(&r->mu);
}

static void
rcv_hold(rcv *r, bool hold)
{
	pthread_mutex_lock(&r->mu);
	r->hold = hold;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void
rcv_clear(rcv *r)
{
	pthread_mutex_lock(&r->mu);
	for (int i = 0; i < r->nreq; i++) {
		free(r->reqs[i].headers);
		free(r->reqs[i].body);
	}
	memset(r->reqs, 0, sizeof(r->reqs));
	r->nreq = 0;
	r->conns = 0;
	pthread_mutex_unlock(&r->mu);
}

static int
rcv_conns(rcv *r)
{
	int n;

	pthread_mutex_lock(&r->mu);
	n = r->conns;
	pthread_mutex_unlock(&r->mu);
	return (n);
}

static int
rcv_nreq(rcv *r)
{
	int n;

	pthread_mutex_lock(&r->mu);
	n = r->nreq;
	pthread_mutex_unlock(&r->mu);
	return (n);
}

static bool
rcv_wait(rcv *r, int want, int timeout_ms)
{
	for (int64_t end = cm_mono_ms() + timeout_ms; cm_mono_ms() < end;
	     h_msleep(20))
		if (rcv_nreq(r) >= want)
			return (true);
	return (rcv_nreq(r) >= want);
}

/* Value of a header of a head block (malloc'd), or NULL. */
static char *
head_value(const char *head, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = head; p != NULL && *p != '\0';) {
		const char *e = strstr(p, "\r\n");
		size_t l = e != NULL ? (size_t) (e - p) : strlen(p);

		if (l > n && p[n] == ':' && strncasecmp(p, name, n) == 0) {
			const char *v = p + n + 1;

			while (*v == ' ')
				v++;
			return (strndup(v, (size_t) (p + l - v)));
		}
		p = e != NULL ? e + 2 : NULL;
	}
	return (NULL);
}

/* Request i's header (malloc'd) or NULL; copied under the lock. */
static char *
rcv_header(rcv *r, int i, const char *name)
{
	char *v = NULL;

	pthread_mutex_lock(&r->mu);
	if (i < r->nreq)
		v = head_value(r->reqs[i].headers, name);
	pthread_mutex_unlock(&r->mu);
	return (v);
}

static char *
rcv_body(rcv *r, int i)
{
	char *v = NULL;

	pthread_mutex_lock(&r->mu);
	if (i < r->nreq)
		v = strdup(r->reqs[i].body);
	pthread_mutex_unlock(&r->mu);
	return (v);
}

/* Requests that carried Idempotency-Key key, and of them the deliveries
 * (the first with the key: a receiver honouring it drops the rest). */
static void
rcv_key_count(rcv *r, const char *key, int *requests, int *deliveries)
{
	*requests = *deliveries = 0;
	pthread_mutex_lock(&r->mu);
	for (int i = 0; i < r->nreq; i++) {
		char *k = head_value(r->reqs[i].headers, "Idempotency-Key");

		if (k != NULL && strcmp(k, key) == 0) {
			(*requests)++;
			if (r->reqs[i].fresh)
				(*deliveries)++;
		}
		free(k);
	}
	pthread_mutex_unlock(&r->mu);
}

/*
 * One connection: reads one request, records it (marking whether its
 * Idempotency-Key is new), waits while the hold switch is on, answers the
 * configured status (and Location).
 */
static void *
rcv_conn_main(void *arg)
{
	rcv_conn *c = arg;
	rcv *r = c->r;
	char buf[65536], *end = NULL, *cl, *key;
	size_t n = 0, clen = 0, hlen;
	struct timeval tv = {.tv_sec = 10};
	ssize_t k;
	rcv_req q = {0};

	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (n < sizeof(buf) - 1) {
		if ((k = read(c->fd, buf + n, sizeof(buf) - 1 - n)) <= 0)
			goto out;
		n += (size_t) k;
		buf[n] = '\0';
		if ((end = strstr(buf, "\r\n\r\n")) != NULL)
			break;
	}
	if (end == NULL)
		goto out;
	hlen = (size_t) (end - buf) + 4;
	{
		const char *eol = strstr(buf, "\r\n");
		char method[16];

		sscanf(buf, "%15s %511s", method, q.path);
		q.headers = strndup(eol + 2, (size_t) (end + 2 - (eol + 2)));
	}
	if ((cl = head_value(q.headers, "Content-Length")) != NULL)
		clen = (size_t) strtoul(cl, NULL, 10);
	free(cl);
	if (clen > sizeof(buf) - 1 - hlen)
		goto out;
	while (n < hlen + clen) {
		if ((k = read(c->fd, buf + n, hlen + clen - n)) <= 0)
			goto out;
		n += (size_t) k;
	}
	q.body = strndup(buf + hlen, clen);
	q.at_ms = cm_mono_ms();
	key = head_value(q.headers, "Idempotency-Key");

	pthread_mutex_lock(&r->mu);
	q.fresh = true;
	for (int i = 0; key != NULL && i < r->nreq; i++) {
		char *o = head_value(r->reqs[i].headers, "Idempotency-Key");

		if (o != NULL && strcmp(o, key) == 0)
			q.fresh = false;
		free(o);
	}
	free(key);
	if (r->nreq < RCV_MAX_REQ) {
		r->reqs[r->nreq++] = q;
		memset(&q, 0, sizeof(q));
	}
	while (r->hold && !r->stop)
		pthread_cond_wait(&r->cv, &r->mu);
	snprintf(buf, sizeof(buf),
	         "HTTP/1.1 %d Test\r\nContent-Length: 2\r\n"
	         "Connection: close\r\n%s%s%s%s%s%s\r\nok",
	         r->status, r->location[0] ? "Location: " : "", r->location,
	         r->location[0] ? "\r\n" : "",
	         r->retry_after[0] ? "Retry-After: " : "", r->retry_after,
	         r->retry_after[0] ? "\r\n" : "");
	if (r->times > 0 && --r->times == 0) {
		r->status = 200;
		r->retry_after[0] = '\0';
	}
	pthread_mutex_unlock(&r->mu);
	/* The client may be gone (killed mid-send): no SIGPIPE. */
	(void) send(c->fd, buf, strlen(buf), MSG_NOSIGNAL);
out:
	free(q.headers);
	free(q.body);
	close(c->fd);
	pthread_mutex_lock(&r->mu);
	r->active--;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	free(c);
	return (NULL);
}

static void *
rcv_main(void *arg)
{
	rcv *r = arg;
	struct pollfd pfd[2] = {{.fd = r->fd4, .events = POLLIN},
	                        {.fd = r->fd6, .events = POLLIN}};

	for (;;) {
		bool stop;

		pthread_mutex_lock(&r->mu);
		stop = r->stop;
		pthread_mutex_unlock(&r->mu);
		if (stop)
			break;
		if (poll(pfd, 2, 50) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			rcv_conn *c;
			pthread_t t;
			int fd;

			if (!(pfd[i].revents & POLLIN))
				continue;
			if ((fd = accept(pfd[i].fd, NULL, NULL)) < 0)
				continue;
			c = malloc(sizeof(*c));
			c->r = r;
			c->fd = fd;
			pthread_mutex_lock(&r->mu);
			r->conns++;
			r->active++;
			pthread_mutex_unlock(&r->mu);
			if (pthread_create(&t, NULL, rcv_conn_main, c) != 0) {
				close(fd);
				free(c);
				pthread_mutex_lock(&r->mu);
				r->active--;
				pthread_mutex_unlock(&r->mu);
				continue;
			}
			pthread_detach(t);
		}
	}
	return (NULL);
}

/* A receiver on 127.0.0.1:P and [::1]:P (one free port), answering 200. */
static rcv *
rcv_start(void)
{
	rcv *r = calloc(1, sizeof(*r));
	int one = 1;

	assert_non_null(r);
	for (int tries = 0; tries < 20; tries++) {
		struct sockaddr_in s4 = {.sin_family = AF_INET};
		struct sockaddr_in6 s6 = {.sin6_family = AF_INET6,
		                          .sin6_addr = IN6ADDR_LOOPBACK_INIT};
		socklen_t len = sizeof(s4);

		r->fd4 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		r->fd6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(r->fd4 >= 0 && r->fd6 >= 0);
		s4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		setsockopt(r->fd6, IPPROTO_IPV6, IPV6_V6ONLY, &one,
		           sizeof(one));
		if (bind(r->fd4, (struct sockaddr *) &s4, sizeof(s4)) == 0 &&
		    getsockname(r->fd4, (struct sockaddr *) &s4, &len) == 0) {
			s6.sin6_port = s4.sin_port;
			if (bind(r->fd6, (struct sockaddr *) &s6, sizeof(s6)) ==
			        0 &&
			    listen(r->fd4, 64) == 0 &&
			    listen(r->fd6, 64) == 0) {
				r->port = ntohs(s4.sin_port);
				break;
			}
		}
		close(r->fd4);
		close(r->fd6);
	}
	assert_true(r->port > 0);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->status = 200;
	assert_int_equal(pthread_create(&r->thr, NULL, rcv_main, r), 0);
	return (r);
}

static void
rcv_stop(rcv *r)
{
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thr, NULL);
	pthread_mutex_lock(&r->mu);
	while (r->active > 0)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	close(r->fd4);
	close(r->fd6);
	rcv_clear(r);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
}

/* ====================================================== SMTP and mail */

static const char smtp_handler_py[] =
    "# aiosmtpd's Mailbox; while the file named by NT_SMTP_HOLD exists,\n"
    "# a message is stored and its 250 held back.\n"
    "import asyncio, os\n"
    "from aiosmtpd.handlers import Mailbox\n"
    "\n"
    "class Handler(Mailbox):\n"
    "    async def handle_DATA(self, server, session, envelope):\n"
    "        r = await super().handle_DATA(server, session, envelope)\n"
    "        while os.path.exists(os.environ['NT_SMTP_HOLD']):\n"
    "            await asyncio.sleep(0.05)\n"
    "        return r\n";

static struct {
	h_proc proc;
	int port;
	char dir[64], mail[160], hold[160];
} S;

static bool
smtp_ready(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	struct timeval tv = {.tv_sec = 1};
	char buf[64] = {0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = false;

	sa.sin_port = htons((uint16_t) port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0 &&
	    read(fd, buf, sizeof(buf) - 1) > 3)
		ok = strncmp(buf, "220", 3) == 0;
	if (ok && write(fd, "QUIT\r\n", 6) < 0)
		ok = false;
	close(fd);
	return (ok);
}

static void
smtp_start(void)
{
	static char listen_arg[64];
	char path[256];
	FILE *f;

	snprintf(S.dir, sizeof(S.dir), "/tmp/nt-e2e-%d", (int) getpid());
	mkdir(S.dir, 0700);
	snprintf(S.mail, sizeof(S.mail), "%s/mail", S.dir);
	snprintf(S.hold, sizeof(S.hold), "%s/hold", S.dir);
	snprintf(path, sizeof(path), "%s/nt_e2e_smtp.py", S.dir);
	assert_non_null(f = fopen(path, "w"));
	fputs(smtp_handler_py, f);
	fclose(f);

	S.port = h_free_port();
	snprintf(listen_arg, sizeof(listen_arg), "127.0.0.1:%d", S.port);
	memset(&S.proc, 0, sizeof(S.proc));
	S.proc.name = "aiosmtpd-e2e";
	S.proc.bin = "/usr/bin/python3";
	S.proc.argv[0] = "/usr/bin/python3";
	S.proc.argv[1] = "-m";
	S.proc.argv[2] = "aiosmtpd";
	S.proc.argv[3] = "-n";
	S.proc.argv[4] = "-l";
	S.proc.argv[5] = listen_arg;
	S.proc.argv[6] = "-c";
	S.proc.argv[7] = "nt_e2e_smtp.Handler";
	S.proc.argv[8] = S.mail;
	h_proc_env(&S.proc, "PYTHONPATH", "%s", S.dir);
	h_proc_env(&S.proc, "NT_SMTP_HOLD", "%s", S.hold);
	h_proc_start(&S.proc);
	for (int i = 0; i < 200; i++) {
		if (smtp_ready(S.port))
			return;
		h_msleep(50);
	}
	fail_msg("aiosmtpd did not start on port %d (log %s)", S.port,
	         S.proc.log);
}

static void
smtp_hold(bool on)
{
	if (on) {
		FILE *f = fopen(S.hold, "w");

		assert_non_null(f);
		fclose(f);
	} else {
		unlink(S.hold);
	}
}

/* Paths of the messages in the Maildir (new/ and cur/). */
static int
mail_list(char paths[][320], int max)
{
	static const char *const sub[] = {"new", "cur"};
	int n = 0;

	for (int s = 0; s < 2; s++) {
		char d[200];
		DIR *dir;
		struct dirent *e;

		snprintf(d, sizeof(d), "%s/%s", S.mail, sub[s]);
		if ((dir = opendir(d)) == NULL)
			continue;
		while ((e = readdir(dir)) != NULL && n < max) {
			if (e->d_name[0] == '.')
				continue;
			if ((size_t) snprintf(paths[n], 320, "%.200s/%.100s", d,
			                      e->d_name) < 320)
				n++;
		}
		closedir(dir);
	}
	return (n);
}

static int
mail_count(void)
{
	char paths[16][320];

	return (mail_list(paths, 16));
}

static bool
mail_wait(int want, int timeout_ms)
{
	for (int64_t end = cm_mono_ms() + timeout_ms; cm_mono_ms() < end;
	     h_msleep(20))
		if (mail_count() >= want)
			return (true);
	return (mail_count() >= want);
}

static void
mail_clear(void)
{
	char paths[16][320];
	int n = mail_list(paths, 16);

	for (int i = 0; i < n; i++)
		unlink(paths[i]);
}

/* Message i of the Maildir with "\n" line ends, malloc'd. */
static char *
mail_read(int i)
{
	char paths[16][320], *buf, *w;
	int n = mail_list(paths, 16);
	FILE *f;
	size_t len;

	assert_true(i < n);
	assert_non_null(f = fopen(paths[i], "rb"));
	buf = calloc(1, 1 << 20);
	len = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	buf[len] = '\0';
	w = buf;
	for (char *r = buf; *r != '\0'; r++)
		if (!(r[0] == '\r' && r[1] == '\n'))
			*w++ = *r;
	*w = '\0';
	return (buf);
}

/* The one message in the Maildir (asserted), removed, malloc'd. */
static char *
mail_take(void)
{
	char *m;

	assert_int_equal(mail_count(), 1);
	m = mail_read(0);
	mail_clear();
	return (m);
}

/* A header of a message or part head, unfolded, malloc'd; NULL if absent. */
static char *
head_get(const char *msg, const char *name)
{
	size_t n = strlen(name);
	const char *end = strstr(msg, "\n\n");
	const char *p = msg;

	if (end == NULL)
		end = msg + strlen(msg);
	while (p < end) {
		const char *e = strchr(p, '\n');

		if (e == NULL || e > end)
			e = end;
		if ((size_t) (e - p) > n && p[n] == ':' &&
		    strncasecmp(p, name, n) == 0) {
			char *v = calloc(1, 4096);
			size_t o = 0;
			const char *s = p + n + 1;

			while (*s == ' ')
				s++;
			for (;;) {
				while (s < e && o < 4095)
					v[o++] = *s++;
				if (e < end && (e[1] == ' ' || e[1] == '\t')) {
					s = e + 1;
					e = strchr(s, '\n');
					if (e == NULL || e > end)
						e = end;
					continue;
				}
				break;
			}
			v[o] = '\0';
			return (v);
		}
		p = e + 1;
	}
	return (NULL);
}

/* RFC 2047 B-words decoded (whitespace between words dropped). */
static char *
rfc2047_decode(const char *v)
{
	char *out = calloc(1, 4096);
	size_t o = 0, word_end = 0;
	bool after_word = false;

	for (const char *p = v; *p != '\0' && o < 4000;) {
		if (strncasecmp(p, "=?UTF-8?B?", 10) == 0) {
			const char *b = p + 10, *e = strstr(b, "?=");
			unsigned char dec[256];
			int k;

			assert_non_null(e);
			assert_true(e - b < 300);
			k = EVP_DecodeBlock(dec, (const unsigned char *) b,
			                    (int) (e - b));
			assert_true(k >= 0);
			if (e - b >= 1 && e[-1] == '=')
				k--;
			if (e - b >= 2 && e[-2] == '=')
				k--;
			if (after_word)
				o = word_end;
			memcpy(out + o, dec, (size_t) k);
			o += (size_t) k;
			word_end = o;
			p = e + 2;
			after_word = true;
		} else {
			if (*p != ' ')
				after_word = false;
			out[o++] = *p++;
		}
	}
	out[o] = '\0';
	return (out);
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	return (-1);
}

/* Quoted-printable decoded (lines ended by "\n"), malloc'd. */
static char *
qp_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '=' && i + 1 < n && s[i + 1] == '\n') {
			i++;
		} else if (s[i] == '=' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
		           hexval(s[i + 2]) >= 0) {
			out[o++] =
			    (char) (hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return (out);
}

typedef struct mpart {
	char *type; /* Content-Type */
	char *text; /* decoded body */
} mpart;

/* The parts of a multipart message, decoded; returns their number. */
static int
mail_parts(const char *msg, mpart *parts, int max)
{
	char *ct = head_get(msg, "Content-Type"), *b, delim[128];
	const char *p, *body;
	int n = 0;

	assert_non_null(ct);
	assert_non_null(b = strstr(ct, "boundary="));
	b += 9;
	if (*b == '"') {
		b++;
		b[strcspn(b, "\"")] = '\0';
	} else {
		b[strcspn(b, "; ")] = '\0';
	}
	snprintf(delim, sizeof(delim), "\n--%s", b);
	free(ct);
	body = strstr(msg, "\n\n");
	assert_non_null(body);
	p = strstr(body, delim);
	while (p != NULL && n < max) {
		const char *start = p + strlen(delim), *next, *pb;
		char *cte, *head;

		if (strncmp(start, "--", 2) == 0)
			break;
		start = strchr(start, '\n') + 1;
		next = strstr(start, delim);
		assert_non_null(next);
		pb = strstr(start, "\n\n");
		assert_true(pb != NULL && pb < next);
		head = strndup(start, (size_t) (pb - start + 2));
		parts[n].type = head_get(head, "Content-Type");
		cte = head_get(head, "Content-Transfer-Encoding");
		pb += 2;
		if (cte != NULL && strcasecmp(cte, "quoted-printable") == 0)
			parts[n].text = qp_decode(pb, (size_t) (next - pb));
		else
			parts[n].text = strndup(pb, (size_t) (next - pb));
		free(cte);
		free(head);
		n++;
		p = next;
	}
	return (n);
}

static void
parts_free(mpart *parts, int n)
{
	for (int i = 0; i < n; i++) {
		free(parts[i].type);
		free(parts[i].text);
	}
}

/* =========================================================== the stack */

static struct {
	h_redis redis;
	h_proc nt, gw;
	int nt_port, gw_port;
	char nt_addr[64], gw_url[64];
	const char *nt_bin, *gw_bin;
	char auth_admin[1024];
	unsigned seq;
	rcv *push;  /* allowed push receiver */
	rcv *redir; /* allowed, answers 302 to trap */
	rcv *trap;  /* not allowed: must never be contacted */
	rcv *sms1, *sms2;
} T;

static void
unique(char *out, size_t n, const char *prefix)
{
	snprintf(out, n, "%s-%d-%lx-%u", prefix, (int) getpid(),
	         (unsigned long) time(NULL) & 0xfffff, T.seq++);
}

static void
notifier_start(void)
{
	h_proc *p = &T.nt;

	memset(p, 0, sizeof(*p));
	p->name = "notifier-e2e";
	p->bin = T.nt_bin;
	h_proc_env(p, "NOTIFIER_LISTEN", "%s", T.nt_addr);
	h_proc_env(p, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(p, "DATABASE_URL", "%s", getenv("DATABASE_URL"));
	h_proc_env(p, "PUBLIC_BASE_URL", "%s", BASE);
	h_proc_env(p, "BACKENDS_DEV_MODE", "1");
	h_proc_env(p, "NOTIFIER_UNSUBSCRIBE_KEY", "%s", UNSUB_KEY);
	h_proc_env(p, "NOTIFIER_WORKERS", "4");
	h_proc_env(p, "NOTIFIER_DELIVERY_WORKERS", "4");
	h_proc_env(p, "NOTIFIER_VISIBILITY_MS", "1500");
	h_proc_env(p, "NOTIFIER_RETRY_BASE_MS", "200");
	h_proc_env(p, "NOTIFIER_THROTTLE_MAX", "0");
	h_proc_env(p, "NOTIFIER_DIGEST_WINDOW_S", "0");
	h_proc_env(p, "NOTIFIER_FAILOVER_SKIP_MS", "%d", FAILOVER_SKIP_MS);
	h_proc_env(p, "NOTIFIER_SEND_TIMEOUT_MS", "3000");
	h_proc_env(p, "NOTIFIER_OUTBOUND_ALLOW", "127.0.0.1:%d,127.0.0.1:%d",
	           T.push->port, T.redir->port);
	h_proc_env(p, "NOTIFIER_SMTP_URL", "smtp://127.0.0.1:%d", S.port);
	h_proc_env(p, "NOTIFIER_SMTP_FROM", "%s", FROM);
	h_proc_env(p, "NOTIFIER_SMS_URL", "http://127.0.0.1:%d/sms",
	           T.sms1->port);
	h_proc_env(p, "NOTIFIER_SMS_URL_2", "http://127.0.0.1:%d/sms2",
	           T.sms2->port);
	h_proc_env(p, "NOTIFIER_SMS_TOKEN", "%s", SMS_TOKEN);
	h_proc_start(p);
	assert_true(h_wait_healthy(T.nt_bin, T.nt_addr, 20000));
}

static void
gateway_start(void)
{
	h_proc *p = &T.gw;

	memset(p, 0, sizeof(*p));
	p->name = "gateway-e2e";
	p->bin = T.gw_bin;
	h_proc_env(p, "GATEWAY_LISTEN", "127.0.0.1:%d", T.gw_port);
	h_proc_env(p, "GATEWAY_THREADS", "2");
	h_proc_env(p, "NOTIFIER_ADDR", "%s", T.nt_addr);
	h_proc_env(p, "SHORTENER_ADDR", "tcp://127.0.0.1:%d", h_free_port());
	h_proc_env(p, "RATELIMITER_ADDR", "tcp://127.0.0.1:%d", h_free_port());
	h_proc_env(p, "CACHE_ADDR", "tcp://127.0.0.1:%d", h_free_port());
	h_proc_env(p, "REDIS_URL", "%s", T.redis.url);
	h_proc_env(p, "PUBLIC_BASE_URL", "%s", BASE);
	h_proc_env(p, "AUTH_JWT_SECRET", "%s", SECRET);
	h_proc_env(p, "GATEWAY_RATELIMIT", "0");
	h_proc_start(p);
}

/* Waits until the gateway's /healthz shows the notifier SERVING. */
static void
wait_gateway_notifier(void)
{
	char url[128];

	snprintf(url, sizeof(url), "%s/healthz", T.gw_url);
	for (int64_t end = cm_mono_ms() + 20000; cm_mono_ms() < end;
	     h_msleep(100)) {
		h_resp r;
		bool ok;

		h_http(&r, "GET", url, NULL, NULL, 0);
		ok = r.body != NULL &&
		     strstr(r.body, "\"notifier\":{\"status\":\"SERVING\"") !=
		         NULL;
		h_resp_free(&r);
		if (ok)
			return;
	}
	fail_msg("the gateway does not see the notifier");
}

/* ---- HTTP ---- */

static void api(h_resp *r, const char *method, const char *auth,
                const char *body, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void
api(h_resp *r, const char *method, const char *auth, const char *body,
    const char *fmt, ...)
{
	char path[1024], url[1200];
	const char *hdrs[] = {"Content-Type: application/json", auth, NULL};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	snprintf(url, sizeof(url), "%s%s", T.gw_url, path);
	h_http(r, method, url, hdrs, body, body != NULL ? strlen(body) : 0);
}

static void
expect(const h_resp *r, long status)
{
	if (r->status != status)
		fprintf(stderr, "expected %ld, got %ld: %s\n", status,
		        r->status, r->body != NULL ? r->body : "");
	assert_int_equal(r->status, status);
}

static void
make_auth(char *out, size_t n, const char *sub, const char *role)
{
	char payload[256], *tok;

	snprintf(payload, sizeof(payload), "{\"sub\":\"%s\",%s\"exp\":%ld}",
	         sub, role != NULL ? role : "", (long) time(NULL) + 3600);
	tok = h_jwt(SECRET, "HS256", payload);
	snprintf(out, n, "Authorization: Bearer %s", tok);
	free(tok);
}

/*
 * A device stored for user straight into PostgreSQL, as one registered
 * before the API refused its endpoint would be: the send-time guard must
 * stop it all the same.
 */
static void
device_insert(const char *user, const char *endpoint)
{
	static PGconn *c;
	const char *params[2] = {user, endpoint};
	PGresult *res;

	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		if (c != NULL)
			PQfinish(c);
		c = PQconnectdb(getenv("DATABASE_URL"));
		assert_int_equal(PQstatus(c), CONNECTION_OK);
	}
	res = PQexecParams(c,
	                   "INSERT INTO notifier.devices (id, user_id, "
	                   "endpoint, platform, created_at) VALUES "
	                   "(nextval('notifier.ids'), $1, $2, '', "
	                   "extract(epoch FROM now())::bigint)",
	                   2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		fail_msg("device insert: %s", PQerrorMessage(c));
	PQclear(res);
}

/* A new user (its id into user) and its Authorization header. */
static void
new_user(char *user, size_t ulen, char *auth, size_t alen, const char *pfx)
{
	unique(user, ulen, pfx);
	make_auth(auth, alen, user, NULL);
}

/* POST /api/v1/notifications as admin: 202 and the id (malloc'd). */
static char *
send_ok(const char *json)
{
	h_resp r;
	char *id;

	api(&r, "POST", T.auth_admin, json, "/api/v1/notifications");
	expect(&r, 202);
	id = h_json_str(&r, "id");
	assert_non_null(id);
	h_resp_free(&r);
	return (id);
}

/* A field of channel ch of notification id (admin view), malloc'd. */
static char *
channel_field(const char *id, const char *ch, const char *field)
{
	h_resp r;
	json_t *j, *chans, *c;
	size_t i;
	char *out = NULL;

	api(&r, "GET", T.auth_admin, NULL, "/api/v1/notifications/%s", id);
	expect(&r, 200);
	j = json_loads(r.body, 0, NULL);
	assert_non_null(j);
	chans = json_object_get(j, "channels");
	json_array_foreach(chans, i, c)
	{
		json_t *v;

		if (strcmp(json_string_value(json_object_get(c, "channel")),
		           ch) != 0)
			continue;
		v = json_object_get(c, field);
		if (json_is_string(v))
			out = strdup(json_string_value(v));
		else if (json_is_integer(v))
			out = json_dumps(v, JSON_ENCODE_ANY);
	}
	json_decref(j);
	h_resp_free(&r);
	assert_non_null(out);
	return (out);
}

/* Waits until channel ch of id is past queued/failed; its status. */
static char *
wait_final(const char *id, const char *ch, int timeout_ms)
{
	int64_t end = cm_mono_ms() + timeout_ms;
	char *s = NULL;

	while (cm_mono_ms() < end) {
		free(s);
		s = channel_field(id, ch, "status");
		if (strcmp(s, "queued") != 0 && strcmp(s, "failed") != 0)
			return (s);
		h_msleep(50);
	}
	return (s);
}

static void
expect_channel(const char *id, const char *ch, const char *field,
               const char *want)
{
	char *s = channel_field(id, ch, field);

	if (strcmp(s, want) != 0)
		fprintf(stderr,
		        "notification %s channel %s: %s is \"%s\", "
		        "want \"%s\"\n",
		        id, ch, field, s, want);
	assert_string_equal(s, want);
	free(s);
}

static void
expect_final(const char *id, const char *ch, const char *want)
{
	char *s = wait_final(id, ch, 20000);

	if (strcmp(s, want) != 0) {
		char *e = channel_field(id, ch, "last_error");

		fprintf(stderr,
		        "notification %s channel %s: %s (%s), want "
		        "%s\n",
		        id, ch, s, e, want);
		free(e);
	}
	assert_string_equal(s, want);
	free(s);
}

static void
put_contact(const char *auth, const char *json)
{
	h_resp r;

	api(&r, "PUT", auth, json, "/api/v1/me/contact");
	expect(&r, 200);
	h_resp_free(&r);
}

static void
add_device(const char *auth, const char *endpoint)
{
	char body[512];
	h_resp r;

	snprintf(body, sizeof(body), "{\"endpoint\":\"%s\"}", endpoint);
	api(&r, "POST", auth, body, "/api/v1/me/devices");
	expect(&r, 201);
	h_resp_free(&r);
}

/* The form field name of an x-www-form-urlencoded body, decoded. */
static char *
form_get(const char *form, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = form; p != NULL && *p != '\0';) {
		const char *e = strchr(p, '&');
		size_t l = e != NULL ? (size_t) (e - p) : strlen(p);

		if (l > n && p[n] == '=' && strncmp(p, name, n) == 0) {
			int ol = 0;
			char *raw = strndup(p + n + 1, l - n - 1), *v, *out;

			for (char *c = raw; *c != '\0'; c++)
				if (*c == '+')
					*c = ' ';
			v = curl_easy_unescape(NULL, raw, 0, &ol);
			out = strndup(v, (size_t) ol);
			curl_free(v);
			free(raw);
			return (out);
		}
		p = e != NULL ? e + 1 : NULL;
	}
	return (NULL);
}

/*
 * Sets the user's contact (a PUT replaces both: email may be NULL) and
 * confirms the phone number through the API with the code read from the
 * SMS the provider (sms1) received.  Returns with sms1's record cleared.
 */
static void
confirm_phone(const char *auth, const char *phone, const char *email)
{
	char body[128], *form, *to, *text, *key, *bearer;
	const char *d;
	h_resp r;

	rcv_clear(T.sms1);
	snprintf(body, sizeof(body), "{\"phone\":\"%s\",\"email\":\"%s\"}",
	         phone, email != NULL ? email : "");
	api(&r, "PUT", auth, body, "/api/v1/me/contact");
	expect(&r, 200);
	h_resp_free(&r);
	assert_true(rcv_wait(T.sms1, 1, 10000));
	form = rcv_body(T.sms1, 0);
	to = form_get(form, "to");
	text = form_get(form, "body");
	assert_non_null(to);
	assert_non_null(text);
	assert_string_equal(to, phone);
	assert_non_null(strstr(text, "Your confirmation code is "));
	d = strpbrk(text, "0123456789");
	assert_non_null(d);
	assert_int_equal(strspn(d, "0123456789"), 6);
	key = rcv_header(T.sms1, 0, "Idempotency-Key");
	assert_non_null(key);
	bearer = rcv_header(T.sms1, 0, "Authorization");
	assert_non_null(bearer);
	assert_string_equal(bearer, "Bearer " SMS_TOKEN);
	snprintf(body, sizeof(body), "{\"code\":\"%.6s\"}", d);
	api(&r, "POST", auth, body, "/api/v1/me/contact/confirm");
	expect(&r, 200);
	{
		char *p = h_json_str(&r, "phone");

		assert_string_equal(p, phone);
		free(p);
	}
	h_resp_free(&r);
	free(form);
	free(to);
	free(text);
	free(key);
	free(bearer);
	rcv_clear(T.sms1);
}

static int
suite_setup(void **state)
{
	char admin[64];

	(void) state;
	T.nt_bin = getenv("NOTIFIER_BIN");
	T.gw_bin = getenv("GATEWAY_BIN");
	if (getenv("DATABASE_URL") == NULL || T.nt_bin == NULL ||
	    T.gw_bin == NULL) {
		fprintf(stderr, "integration tests need DATABASE_URL, "
		                "NOTIFIER_BIN and GATEWAY_BIN: run "
		                "tests/run.sh\n");
		return (-1);
	}
	curl_global_init(CURL_GLOBAL_ALL);
	T.push = rcv_start();
	T.redir = rcv_start();
	T.trap = rcv_start();
	T.sms1 = rcv_start();
	T.sms2 = rcv_start();
	smtp_start();
	h_redis_start(&T.redis);
	T.nt_port = h_free_port();
	T.gw_port = h_free_port();
	snprintf(T.nt_addr, sizeof(T.nt_addr), "tcp://127.0.0.1:%d", T.nt_port);
	snprintf(T.gw_url, sizeof(T.gw_url), "http://127.0.0.1:%d", T.gw_port);
	notifier_start();
	gateway_start();
	wait_gateway_notifier();
	unique(admin, sizeof(admin), "ops");
	make_auth(T.auth_admin, sizeof(T.auth_admin), admin,
	          "\"role\":\"admin\",");
	return (0);
}

static int
suite_teardown(void **state)
{
	char path[256];

	(void) state;
	h_proc_stop(&T.gw, 5000);
	h_proc_stop(&T.nt, 10000);
	h_proc_stop(&S.proc, 5000);
	h_redis_stop(&T.redis);
	h_proc_free(&T.gw);
	h_proc_free(&T.nt);
	h_proc_free(&S.proc);
	rcv_stop(T.push);
	rcv_stop(T.redir);
	rcv_stop(T.trap);
	rcv_stop(T.sms1);
	rcv_stop(T.sms2);
	mail_clear();
	unlink(S.hold);
	snprintf(path, sizeof(path), "%s/nt_e2e_smtp.py", S.dir);
	unlink(path);
	snprintf(path, sizeof(path), "rm -rf '%s'", S.dir);
	(void) system(path);
	curl_global_cleanup();
	return (0);
}

/* ================================================================ tests */

/*
 * Email: the template type (video.ready) with vars and a plain title with
 * emoji, read back from aiosmtpd's Maildir; then the unsubscribe link,
 * POSTed as a mail client does (RFC 8058), and a title carrying a header.
 */
static void
test_email(void **state)
{
	char user[64], auth[1024], body[1024], want[256], *id, *msg, *v, *s;
	mpart parts[4];
	int np;
	h_resp r;

	(void) state;
	mail_clear();
	new_user(user, sizeof(user), auth, sizeof(auth), "mail");
	put_contact(auth, "{\"email\":\"reader@example.com\"}");

	/* A template type: subject, text and HTML from the vars. */
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"video.ready\","
	         "\"channels\":[\"email\"],\"priority\":\"high\","
	         "\"vars\":{\"video_title\":\"Cats <3 & dogs\","
	         "\"url\":\"https://v.example/w/42\"}}",
	         user);
	id = send_ok(body);
	expect_final(id, "email", "sent");
	expect_channel(id, "email", "provider", "smtp");
	assert_true(mail_wait(1, 5000));
	msg = mail_take();
	v = head_get(msg, "Subject");
	assert_non_null(v);
	s = rfc2047_decode(v);
	assert_string_equal(s, "Your video is ready: Cats <3 & dogs");
	free(s);
	free(v);
	v = head_get(msg, "To");
	assert_non_null(strstr(v, "reader@example.com"));
	free(v);
	v = head_get(msg, "From");
	assert_non_null(strstr(v, FROM));
	free(v);
	v = head_get(msg, "Message-ID");
	snprintf(want, sizeof(want), "<%s@e2e.test>", id);
	assert_string_equal(v, want);
	free(v);
	v = head_get(msg, "List-Unsubscribe-Post");
	assert_non_null(v);
	assert_string_equal(v, "List-Unsubscribe=One-Click");
	free(v);
	v = head_get(msg, "Content-Type");
	assert_non_null(strstr(v, "multipart/alternative"));
	free(v);
	np = mail_parts(msg, parts, 4);
	assert_int_equal(np, 2);
	assert_non_null(strstr(parts[0].type, "text/plain"));
	assert_non_null(strstr(parts[0].text, "your video \"Cats <3 & dogs\" "
	                                      "has been processed"));
	assert_non_null(strstr(parts[0].text, "https://v.example/w/42"));
	assert_non_null(strstr(parts[1].type, "text/html"));
	assert_non_null(
	    strstr(parts[1].text, "<strong>Cats &lt;3 &amp; dogs</strong>"));
	assert_non_null(
	    strstr(parts[1].text, "href=\"https://v.example/w/42\""));
	parts_free(parts, np);

	/* The List-Unsubscribe URL, as the mail client POSTs it. */
	{
		char *u = head_get(msg, "List-Unsubscribe"), url[1024];
		const char *hdrs[] = {
		    "Content-Type: application/x-www-form-urlencoded", NULL};
		size_t bl = strlen("<" BASE "/u/");

		assert_non_null(u);
		assert_true(strncmp(u, "<" BASE "/u/", bl) == 0);
		assert_true(u[strlen(u) - 1] == '>');
		u[strlen(u) - 1] = '\0';
		snprintf(url, sizeof(url), "%s/u/%s", T.gw_url, u + bl);
		/* A GET (a link scanner) must not unsubscribe (RFC 8058). */
		h_http(&r, "GET", url, NULL, NULL, 0);
		assert_true(r.status >= 400);
		h_resp_free(&r);
		api(&r, "GET", auth, NULL,
		    "/api/v1/me/notification-preferences");
		expect(&r, 200);
		assert_null(strstr(r.body, "\"enabled\":false"));
		h_resp_free(&r);
		h_http(&r, "POST", url, hdrs, "List-Unsubscribe=One-Click",
		       strlen("List-Unsubscribe=One-Click"));
		expect(&r, 200);
		h_resp_free(&r);
		api(&r, "GET", auth, NULL,
		    "/api/v1/me/notification-preferences");
		expect(&r, 200);
		assert_non_null(strstr(r.body, "\"type\":\"video.ready\","
		                               "\"channel\":\"email\","
		                               "\"enabled\":false"));
		h_resp_free(&r);
		free(u);
	}
	free(msg);
	free(id);

	/* That type's email is off now: the next one skips email. */
	id = send_ok(body);
	expect_final(id, "email", "skipped");
	expect_channel(id, "email", "last_error", "turned off by the user");
	free(id);

	/* A plain title with emoji (no template): RFC 2047 subject, the
	 * text part alone.  Other types still get email. */
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.party\","
	         "\"title\":\"Gr\\u00fc\\u00dfe \\ud83c\\udf89 party "
	         "time\",\"body\":\"Line one\\nLine two \\u2014 "
	         "caf\\u00e9\",\"channels\":[\"email\"],"
	         "\"priority\":\"high\"}",
	         user);
	id = send_ok(body);
	expect_final(id, "email", "sent");
	assert_int_equal(mail_count(), 1);
	msg = mail_take();
	v = head_get(msg, "Subject");
	assert_non_null(strstr(v, "=?UTF-8?B?"));
	s = rfc2047_decode(v);
	assert_string_equal(s, "Grüße 🎉 party time");
	free(s);
	free(v);
	v = head_get(msg, "List-Unsubscribe");
	assert_non_null(v);
	free(v);
	np = mail_parts(msg, parts, 4);
	assert_int_equal(np, 1);
	assert_non_null(strstr(parts[0].type, "text/plain"));
	assert_non_null(strstr(parts[0].text, "Line one\nLine two — café"));
	parts_free(parts, np);
	free(msg);
	free(id);

	/* A header in the title: dead at once, nothing sent. */
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.inject\","
	         "\"title\":\"Hi\\r\\nBcc: x@y\",\"body\":\"b\","
	         "\"channels\":[\"email\",\"inapp\"],\"priority\":\"high\"}",
	         user);
	id = send_ok(body);
	expect_final(id, "email", "dead");
	expect_channel(id, "email", "attempts", "1");
	s = channel_field(id, "email", "last_error");
	assert_non_null(strstr(s, "CR/LF"));
	free(s);
	expect_final(id, "inapp", "sent");
	h_msleep(300);
	assert_int_equal(mail_count(), 0);
	free(id);
}

/*
 * Push and SMS to the receivers: the body of each and the headers, with
 * the notification's id as Idempotency-Key; the phone's code came by SMS
 * (confirm_phone).
 */
static void
test_push_sms(void **state)
{
	char user[64], auth[1024], body[1024], ep[256], *id, *v;
	json_t *j;

	(void) state;
	new_user(user, sizeof(user), auth, sizeof(auth), "push");
	confirm_phone(auth, "+4915112345678", NULL);
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/up/%s", T.push->port,
	         user);
	add_device(auth, ep);
	rcv_clear(T.push);
	rcv_clear(T.sms2);

	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.ping\",\"title\":\"Ping "
	         "\\u2713\",\"body\":\"Hello & bye\",\"data\":{\"k\":\"v\"},"
	         "\"channels\":[\"push\",\"sms\"],\"priority\":\"high\"}",
	         user);
	id = send_ok(body);
	expect_final(id, "push", "sent");
	expect_final(id, "sms", "sent");
	expect_channel(id, "sms", "provider", "sms-http");

	assert_int_equal(rcv_nreq(T.push), 1);
	v = rcv_header(T.push, 0, "Idempotency-Key");
	assert_string_equal(v, id);
	free(v);
	v = rcv_header(T.push, 0, "Content-Type");
	assert_string_equal(v, "application/json");
	free(v);
	pthread_mutex_lock(&T.push->mu);
	assert_non_null(strstr(T.push->reqs[0].path, user));
	pthread_mutex_unlock(&T.push->mu);
	v = rcv_body(T.push, 0);
	j = json_loads(v, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "id")), id);
	assert_string_equal(json_string_value(json_object_get(j, "title")),
	                    "Ping ✓");
	assert_string_equal(json_string_value(json_object_get(j, "body")),
	                    "Hello & bye");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(j, "data"), "k")),
	    "v");
	json_decref(j);
	free(v);

	assert_int_equal(rcv_nreq(T.sms1), 1);
	assert_int_equal(rcv_nreq(T.sms2), 0);
	v = rcv_header(T.sms1, 0, "Idempotency-Key");
	assert_string_equal(v, id);
	free(v);
	v = rcv_header(T.sms1, 0, "Content-Type");
	assert_string_equal(v, "application/x-www-form-urlencoded");
	free(v);
	v = rcv_header(T.sms1, 0, "Authorization");
	assert_string_equal(v, "Bearer " SMS_TOKEN);
	free(v);
	{
		char *form = rcv_body(T.sms1, 0);
		char *to = form_get(form, "to"), *text = form_get(form, "body");
		char *fid = form_get(form, "id");

		assert_string_equal(to, "+4915112345678");
		assert_string_equal(text, "Hello & bye");
		assert_string_equal(fid, id);
		free(form);
		free(to);
		free(text);
		free(fid);
	}
	free(id);
	rcv_clear(T.push);
	rcv_clear(T.sms1);
}

/* The requests at r in order all carry Idempotency-Key key. */
static void
expect_keys(rcv *r, int from, int to, const char *key)
{
	for (int i = from; i < to; i++) {
		char *v = rcv_header(r, i, "Idempotency-Key");

		assert_non_null(v);
		assert_string_equal(v, key);
		free(v);
	}
}

static int64_t
rcv_at(rcv *r, int i)
{
	int64_t t;

	pthread_mutex_lock(&r->mu);
	t = r->reqs[i].at_ms;
	pthread_mutex_unlock(&r->mu);
	return (t);
}

/*
 * What a push endpoint answers steers the engine: 429 with Retry-After
 * puts the next attempt no sooner than it asks (the backoff alone would
 * be 100-200 ms here), then the message goes; 410 means the device is
 * gone: the channel is dead at once and the device is removed.
 */
static void
test_push_retry_after_and_gone(void **state)
{
	char user[64], auth[1024], body[1024], ep[256], *id;
	int64_t t0, t1;
	h_resp r;

	(void) state;
	new_user(user, sizeof(user), auth, sizeof(auth), "gone");
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/up/%s", T.push->port,
	         user);
	add_device(auth, ep);
	rcv_clear(T.push);
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.busy\",\"title\":\"t\","
	         "\"body\":\"b\",\"channels\":[\"push\"],"
	         "\"priority\":\"high\"}",
	         user);
	rcv_answer_n(T.push, 1, 429, "1");
	id = send_ok(body);
	expect_final(id, "push", "sent");
	expect_channel(id, "push", "attempts", "2");
	assert_int_equal(rcv_nreq(T.push), 2);
	expect_keys(T.push, 0, 2, id);
	t0 = rcv_at(T.push, 0);
	t1 = rcv_at(T.push, 1);
	if (t1 - t0 < 950)
		fail_msg("retried after %lld ms, Retry-After said 1 s",
		         (long long) (t1 - t0));
	free(id);

	rcv_clear(T.push);
	rcv_answer_n(T.push, 1, 410, NULL);
	id = send_ok(body);
	expect_final(id, "push", "dead");
	expect_channel(id, "push", "attempts", "1");
	assert_int_equal(rcv_nreq(T.push), 1);
	api(&r, "GET", auth, NULL, "/api/v1/me/devices");
	expect(&r, 200);
	assert_null(strstr(r.body, ep));
	h_resp_free(&r);
	free(id);
	rcv_clear(T.push);
}

/*
 * The SMS provider down: the primary answers 500.  Three attempts with
 * growing backoff, dead, listed under dead letters; a replay after it
 * recovers delivers the SMS only (the inbox copy stays one).  Then
 * failover: with the primary failing again, after 5 consecutive failures
 * (3 of one message, 2 of the next) the secondary takes the next attempt;
 * while the primary is skipped a new message goes to the secondary at
 * once; after the skip the primary is probed and used again.
 */
static void
test_sms_down_failover(void **state)
{
	char user[64], auth[1024], body[1024], title[64];
	char *id, *id2, *id3, *id4, *id5, *s;
	int64_t t0, t1, t2;
	h_resp r;

	(void) state;
	new_user(user, sizeof(user), auth, sizeof(auth), "smsdown");
	confirm_phone(auth, "+4915122223333", NULL);
	rcv_clear(T.sms2);
	rcv_answer(T.sms1, 500, NULL);

	unique(title, sizeof(title), "down");
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.down\",\"title\":\"%s\","
	         "\"body\":\"down\",\"channels\":[\"sms\",\"inapp\"],"
	         "\"priority\":\"high\"}",
	         user, title);
	id = send_ok(body);
	expect_final(id, "sms", "dead");
	expect_channel(id, "sms", "attempts", "3");
	s = channel_field(id, "sms", "last_error");
	assert_non_null(strstr(s, "HTTP 500"));
	free(s);
	expect_final(id, "inapp", "sent");
	assert_int_equal(rcv_nreq(T.sms1), 3);
	assert_int_equal(rcv_nreq(T.sms2), 0);
	expect_keys(T.sms1, 0, 3, id);
	/* Backoff: base 200 ms doubled, jittered to [d/2, d]. */
	t0 = rcv_at(T.sms1, 0);
	t1 = rcv_at(T.sms1, 1);
	t2 = rcv_at(T.sms1, 2);
	assert_true(t1 - t0 >= 90);
	assert_true(t2 - t1 >= 190);

	api(&r, "GET", T.auth_admin, NULL,
	    "/api/v1/notifications/dead?limit=100");
	expect(&r, 200);
	assert_non_null(strstr(r.body, id));
	h_resp_free(&r);

	/* The provider is back: a replay sends the SMS, not the inbox. */
	rcv_answer(T.sms1, 200, NULL);
	api(&r, "POST", T.auth_admin, NULL,
	    "/api/v1/notifications/dead/%s/replay", id);
	expect(&r, 200);
	assert_int_equal(h_json_int(&r, "requeued"), 1);
	h_resp_free(&r);
	expect_final(id, "sms", "sent");
	assert_int_equal(rcv_nreq(T.sms1), 4);
	expect_keys(T.sms1, 3, 4, id);
	expect_channel(id, "inapp", "attempts", "1");
	api(&r, "GET", auth, NULL, "/api/v1/me/notifications?limit=100");
	expect(&r, 200);
	assert_non_null(strstr(r.body, title));
	assert_null(strstr(strstr(r.body, title) + 1, title));
	h_resp_free(&r);

	/* Failover: 3 failures of one message, 2 of the next, then the
	 * secondary. */
	rcv_clear(T.sms1);
	rcv_answer(T.sms1, 500, NULL);
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.down\",\"title\":\"fo\","
	         "\"body\":\"failover\",\"channels\":[\"sms\"],"
	         "\"priority\":\"high\"}",
	         user);
	id2 = send_ok(body);
	expect_final(id2, "sms", "dead");
	assert_int_equal(rcv_nreq(T.sms1), 3);
	id3 = send_ok(body);
	expect_final(id3, "sms", "sent");
	expect_channel(id3, "sms", "attempts", "3");
	expect_channel(id3, "sms", "provider", "sms-http-2");
	assert_int_equal(rcv_nreq(T.sms1), 5);
	assert_int_equal(rcv_nreq(T.sms2), 1);
	expect_keys(T.sms1, 3, 5, id3);
	expect_keys(T.sms2, 0, 1, id3);
	{
		char *path;

		pthread_mutex_lock(&T.sms2->mu);
		path = strdup(T.sms2->reqs[0].path);
		pthread_mutex_unlock(&T.sms2->mu);
		assert_string_equal(path, "/sms2");
		free(path);
	}
	/* The primary is skipped: the next goes to the secondary first. */
	id4 = send_ok(body);
	expect_final(id4, "sms", "sent");
	expect_channel(id4, "sms", "attempts", "1");
	expect_channel(id4, "sms", "provider", "sms-http-2");
	assert_int_equal(rcv_nreq(T.sms1), 5);
	assert_int_equal(rcv_nreq(T.sms2), 2);
	/* After the skip the primary, recovered, is probed and used. */
	rcv_answer(T.sms1, 200, NULL);
	h_msleep(FAILOVER_SKIP_MS + 200);
	id5 = send_ok(body);
	expect_final(id5, "sms", "sent");
	expect_channel(id5, "sms", "provider", "sms-http");
	assert_int_equal(rcv_nreq(T.sms1), 6);
	assert_int_equal(rcv_nreq(T.sms2), 2);
	free(id);
	free(id2);
	free(id3);
	free(id4);
	free(id5);
	rcv_clear(T.sms1);
	rcv_clear(T.sms2);
}

/*
 * The notifier killed (-9) while every receiver holds its request: push,
 * SMS and email each in a message of its own, so three delivery workers
 * are mid-send at once.  After a restart the messages are taken over
 * (visibility timeout) and sent again with the same key: the receivers,
 * honouring Idempotency-Key, deliver each once; the mailbox, which stored
 * the first copy before holding its 250, has two copies with one
 * Message-ID.
 */
static void
test_kill_mid_send(void **state)
{
	char user[64], auth[1024], body[1024], ep[256], want[128];
	char *idp, *ids, *ide;
	int req, del;

	(void) state;
	new_user(user, sizeof(user), auth, sizeof(auth), "kill");
	confirm_phone(auth, "+4915133334444", "kill@example.com");
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/up/%s", T.push->port,
	         user);
	add_device(auth, ep);
	mail_clear();
	rcv_clear(T.push);
	rcv_clear(T.sms1);
	rcv_hold(T.push, true);
	rcv_hold(T.sms1, true);
	smtp_hold(true);

	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.kill\",\"title\":\"k\","
	         "\"body\":\"held\",\"channels\":[\"push\"],"
	         "\"priority\":\"high\"}",
	         user);
	idp = send_ok(body);
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.kill\",\"title\":\"k\","
	         "\"body\":\"held\",\"channels\":[\"sms\"],"
	         "\"priority\":\"high\"}",
	         user);
	ids = send_ok(body);
	snprintf(body, sizeof(body),
	         "{\"user\":\"%s\",\"type\":\"test.kill\",\"title\":\"k\","
	         "\"body\":\"held\",\"channels\":[\"email\"],"
	         "\"priority\":\"high\"}",
	         user);
	ide = send_ok(body);
	assert_true(rcv_wait(T.push, 1, 10000));
	assert_true(rcv_wait(T.sms1, 1, 10000));
	if (!mail_wait(1, 10000)) {
		char *st = channel_field(ide, "email", "status");
		char *e = channel_field(ide, "email", "last_error");
		char *a = channel_field(ide, "email", "attempts");

		fail_msg("email %s not in the mailbox: %s, %s attempts, "
		         "\"%s\"",
		         ide, st, a, e);
	}

	h_proc_kill(&T.nt);
	h_proc_free(&T.nt);
	rcv_hold(T.push, false);
	rcv_hold(T.sms1, false);
	smtp_hold(false);
	notifier_start();
	wait_gateway_notifier();

	expect_final(idp, "push", "sent");
	expect_final(ids, "sms", "sent");
	expect_final(ide, "email", "sent");

	rcv_key_count(T.push, idp, &req, &del);
	assert_true(req >= 2);
	assert_int_equal(del, 1);
	assert_int_equal(rcv_nreq(T.push), req);
	rcv_key_count(T.sms1, ids, &req, &del);
	assert_true(req >= 2);
	assert_int_equal(del, 1);
	assert_int_equal(rcv_nreq(T.sms1), req);

	assert_true(mail_wait(2, 5000));
	snprintf(want, sizeof(want), "<%s@e2e.test>", ide);
	assert_int_equal(mail_count(), 2);
	for (int i = 0; i < 2; i++) {
		char *m = mail_read(i), *v = head_get(m, "Message-ID");

		assert_non_null(v);
		assert_string_equal(v, want);
		free(v);
		free(m);
	}
	mail_clear();
	rcv_clear(T.push);
	rcv_clear(T.sms1);
	free(idp);
	free(ids);
	free(ide);
}

/*
 * Push endpoints that lead inside: each registered by a user of its own,
 * each Send's push ends dead without a retry, and no receiver behind them
 * is ever contacted (the trap listens on 127.0.0.1 and [::1]).  An
 * address literal is refused at registration (400); such a device stored
 * in PostgreSQL directly, as one registered before the rule, is refused
 * at send time all the same.  The name and the redirect can only be
 * caught at send time.
 */
static void
test_ssrf(void **state)
{
	/* An endpoint is host, then the port of a receiver (TRAP, REDIR)
	 * or none, then path. */
	enum { NONE, TRAP, REDIR };
	static const struct {
		const char *host;
		int port;
		const char *path;
		bool literal;
	} cases[] = {
	    {"http://10.1.2.3", TRAP, "/x", true},
	    {"http://localhost", TRAP, "/x", false},
	    {"http://[::1]", TRAP, "/x", true},
	    {"http://[::ffff:127.0.0.1]", TRAP, "/x", true},
	    {"http://169.254.169.254", NONE, "/latest/meta-data/", true},
	    {"http://0.0.0.0", TRAP, "/x", true},
	    {"http://127.0.0.1", TRAP, "/x", true},
	    /* Other spellings of loopback libcurl accepts. */
	    {"http://2130706433", TRAP, "/x", true},
	    {"http://0x7f.0.0.1", TRAP, "/x", true},
	    {"http://[::]", TRAP, "/x", true},
	    {"http://ntfy.example@127.0.0.1", TRAP, "/x", true},
	    {"http://127.0.0.1", REDIR, "/redirect", false},
	};
	enum { NCASES = sizeof(cases) / sizeof(cases[0]) };
	char *ids[NCASES] = {0};
	char loc[128];

	(void) state;
	rcv_clear(T.trap);
	rcv_clear(T.redir);
	snprintf(loc, sizeof(loc), "http://127.0.0.1:%d/inside", T.trap->port);
	rcv_answer(T.redir, 302, loc);
	for (size_t i = 0; i < NCASES; i++) {
		char user[64], auth[1024], ep[256], body[512];
		h_resp r;

		new_user(user, sizeof(user), auth, sizeof(auth), "ssrf");
		if (cases[i].port == NONE)
			snprintf(ep, sizeof(ep), "%s%s", cases[i].host,
			         cases[i].path);
		else
			snprintf(ep, sizeof(ep), "%s:%d%s", cases[i].host,
			         cases[i].port == TRAP ? T.trap->port
			                               : T.redir->port,
			         cases[i].path);
		snprintf(body, sizeof(body), "{\"endpoint\":\"%s\"}", ep);
		api(&r, "POST", auth, body, "/api/v1/me/devices");
		if (cases[i].literal) {
			/* Refused at registration; stored behind the API's
			 * back, it must be refused at send time as well. */
			char *c = h_json_str(&r, "error.code");

			expect(&r, 400);
			assert_string_equal(c, "INVALID_ARGUMENT");
			assert_non_null(strstr(r.body, "the address is"));
			free(c);
			device_insert(user, ep);
		} else {
			expect(&r, 201);
		}
		h_resp_free(&r);
		snprintf(body, sizeof(body),
		         "{\"user\":\"%s\",\"type\":\"test.ssrf\",\"title\":"
		         "\"t\",\"body\":\"b\",\"channels\":[\"push\"],"
		         "\"priority\":\"high\"}",
		         user);
		ids[i] = send_ok(body);
	}
	for (size_t i = 0; i < NCASES; i++) {
		char *e;

		assert_non_null(ids[i]);
		expect_final(ids[i], "push", "dead");
		expect_channel(ids[i], "push", "attempts", "1");
		e = channel_field(ids[i], "push", "last_error");
		if (i == NCASES - 1) {
			assert_non_null(strstr(e, "HTTP 302"));
			assert_non_null(strstr(e, "not followed"));
		} else if (strstr(e, "refused") == NULL) {
			fail_msg("case %s%s: last_error \"%s\"", cases[i].host,
			         cases[i].path, e);
		}
		free(e);
		free(ids[i]);
	}
	/* The allowed receiver answered the redirect once; behind the
	 * others nothing was reached. */
	assert_int_equal(rcv_nreq(T.redir), 1);
	assert_int_equal(rcv_conns(T.trap), 0);
	/* The trap does listen: a direct request reaches it. */
	{
		char url[128];
		h_resp r;

		snprintf(url, sizeof(url), "http://127.0.0.1:%d/probe",
		         T.trap->port);
		h_http(&r, "POST", url, NULL, "x", 1);
		expect(&r, 200);
		h_resp_free(&r);
		snprintf(url, sizeof(url), "http://[::1]:%d/probe",
		         T.trap->port);
		h_http(&r, "POST", url, NULL, "x", 1);
		expect(&r, 200);
		h_resp_free(&r);
		assert_int_equal(rcv_conns(T.trap), 2);
	}
	rcv_answer(T.redir, 200, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_email),
	    cmocka_unit_test(test_push_sms),
	    cmocka_unit_test(test_ssrf),
	    cmocka_unit_test(test_push_retry_after_and_gone),
	    cmocka_unit_test(test_sms_down_failover),
	    cmocka_unit_test(test_kill_mid_send),
	};

	signal(SIGPIPE, SIG_IGN);
	return (cmocka_run_group_tests(tests, suite_setup, suite_teardown));
}
