/*
 * The notifier's channels over real transports, no mocks:
 *
 *   - email through a real SMTP server: Debian's aiosmtpd (run by
 *     /usr/bin/python3 as a child process) with its Mailbox handler,
 *     subclassed only to answer 550 / 451 for two recipient names, writing
 *     every message it accepts into a Maildir that the test reads back;
 *   - push and SMS into HTTP receivers written here: threaded servers on
 *     free loopback ports (IPv4 and IPv6 on the same port) that record
 *     every connection and request and answer with a configurable status,
 *     Retry-After and Location, or hold the request until released;
 *   - the outbound guard against requests to internal addresses, each
 *     attempt checked both ways: refused (NT_REFUSED) with the receiver
 *     never reached, and, where the same URL can reach a receiver, sent
 *     once its exact ip:port is allowed, so the refusal is the guard's and
 *     not an absent server's.
 *
 * Providers are made by nt_providers_make from the environment, as the
 * engine makes them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
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
#include <jansson.h>
#include <openssl/evp.h>

#include "channel.h"
#include "harness.h"
#include "nt_channels.h"

/* ============================================================ receiver */

#define RCV_MAX_REQ 64

typedef struct rcv_req {
	char method[16];
	char path[512];
	char *headers; /* the raw head after the request line */
	char *body;
	size_t body_len;
} rcv_req;

typedef struct rcv {
	int fd4, fd6, port;
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, hold;
	int active; /* connection threads running */
	/* The answer. */
	int status;
	char retry_after[64];
	char location[256];
	size_t body_bytes; /* of the response body */
	/* What came. */
	int conns;
	int nreq;
	rcv_req reqs[RCV_MAX_REQ];
} rcv;

typedef struct rcv_conn {
	rcv *r;
	int fd;
} rcv_conn;

static void
rcv_answer(rcv *r, int status, const char *retry_after, const char *location)
{
	pthread_mutex_lock(&r->mu);
	r->status = status;
	snprintf(r->retry_after, sizeof(r->retry_after), "%s",
	         retry_after ? retry_after : "");
	snprintf(r->location, sizeof(r->location), "%s",
	         location ? location : "");
	r->body_bytes = 3;
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

/* Value of a header of a recorded request (malloc'd), or NULL. */
static char *
req_header(const rcv_req *q, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = q->headers; p != NULL && *p != '\0';) {
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

static void *
rcv_conn_main(void *arg)
{
	rcv_conn *c = arg;
	rcv *r = c->r;
	char buf[65536], *end = NULL;
	size_t n = 0, clen = 0, hlen;
	struct timeval tv = {.tv_sec = 10};
	ssize_t k;
	rcv_req q = {0};
	char *body = NULL;
	size_t blen;

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
		sscanf(buf, "%15s %511s", q.method, q.path);
		q.headers = strndup(eol + 2, (size_t) (end + 2 - (eol + 2)));
	}
	{
		char *cl = req_header(&q, "Content-Length");
		if (cl != NULL)
			clen = (size_t) strtoul(cl, NULL, 10);
		free(cl);
	}
	if (clen > sizeof(buf) - 1 - hlen)
		goto out;
	while (n < hlen + clen) {
		if ((k = read(c->fd, buf + n, hlen + clen - n)) <= 0)
			goto out;
		n += (size_t) k;
	}
	q.body = malloc(clen + 1);
	memcpy(q.body, buf + hlen, clen);
	q.body[clen] = '\0';
	q.body_len = clen;

	pthread_mutex_lock(&r->mu);
	if (r->nreq < RCV_MAX_REQ) {
		r->reqs[r->nreq++] = q;
		memset(&q, 0, sizeof(q));
	}
	while (r->hold && !r->stop)
		pthread_cond_wait(&r->cv, &r->mu);
	blen = r->body_bytes;
	snprintf(buf, sizeof(buf),
	         "HTTP/1.1 %d Test\r\nContent-Length: %zu\r\n"
	         "Connection: close\r\n%s%s%s%s%s%s\r\n",
	         r->status, blen, r->retry_after[0] ? "Retry-After: " : "",
	         r->retry_after, r->retry_after[0] ? "\r\n" : "",
	         r->location[0] ? "Location: " : "", r->location,
	         r->location[0] ? "\r\n" : "");
	pthread_mutex_unlock(&r->mu);
	if (write(c->fd, buf, strlen(buf)) < 0)
		goto out;
	if ((body = malloc(65536)) != NULL) {
		memset(body, 'x', 65536);
		while (blen > 0) {
			size_t w = blen < 65536 ? blen : 65536;
			if ((k = write(c->fd, body, w)) <= 0)
				break;
			blen -= (size_t) k;
		}
	}
out:
	free(body);
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

/* Starts a receiver on 127.0.0.1:P and [::1]:P (one free port). */
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
	rcv_answer(r, 200, NULL, NULL);
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

static h_proc smtp_proc;
static int smtp_port;
static char mail_dir[160], mod_dir[64];

static const char smtp_handler_py[] =
    "# aiosmtpd's Mailbox, with two recipients it refuses.\n"
    "from aiosmtpd.handlers import Mailbox\n"
    "\n"
    "class Handler(Mailbox):\n"
    "    async def handle_RCPT(self, server, session, envelope, address,\n"
    "                          rcpt_options):\n"
    "        if address.startswith('bounce@'):\n"
    "            return '550 5.1.1 No such user'\n"
    "        if address.startswith('later@'):\n"
    "            return '451 4.3.0 Try again later'\n"
    "        envelope.rcpt_tos.append(address)\n"
    "        return '250 OK'\n";

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

	snprintf(mod_dir, sizeof(mod_dir), "/tmp/nt-smtp-%d", (int) getpid());
	mkdir(mod_dir, 0700);
	snprintf(mail_dir, sizeof(mail_dir), "%s/mail", mod_dir);
	snprintf(path, sizeof(path), "%s/nt_test_smtp.py", mod_dir);
	assert_non_null(f = fopen(path, "w"));
	fputs(smtp_handler_py, f);
	fclose(f);

	smtp_port = h_free_port();
	snprintf(listen_arg, sizeof(listen_arg), "127.0.0.1:%d", smtp_port);
	memset(&smtp_proc, 0, sizeof(smtp_proc));
	smtp_proc.name = "aiosmtpd";
	smtp_proc.bin = "/usr/bin/python3";
	smtp_proc.argv[0] = "/usr/bin/python3";
	smtp_proc.argv[1] = "-m";
	smtp_proc.argv[2] = "aiosmtpd";
	smtp_proc.argv[3] = "-n";
	smtp_proc.argv[4] = "-l";
	smtp_proc.argv[5] = listen_arg;
	smtp_proc.argv[6] = "-c";
	smtp_proc.argv[7] = "nt_test_smtp.Handler";
	smtp_proc.argv[8] = mail_dir;
	h_proc_env(&smtp_proc, "PYTHONPATH", "%s", mod_dir);
	h_proc_start(&smtp_proc);
	for (int i = 0; i < 200; i++) {
		if (smtp_ready(smtp_port))
			return;
		h_msleep(50);
	}
	fail_msg("aiosmtpd did not start on port %d (log %s)", smtp_port,
	         smtp_proc.log);
}

/* Paths of the messages in the Maildir (new/ and cur/), malloc'd. */
static int
mail_list(char paths[][320], int max)
{
	static const char *const sub[] = {"new", "cur"};
	int n = 0;

	for (int s = 0; s < 2; s++) {
		char d[200];
		DIR *dir;
		struct dirent *e;
		snprintf(d, sizeof(d), "%s/%s", mail_dir, sub[s]);
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
	char paths[64][320];

	return (mail_list(paths, 64));
}

static void
mail_clear(void)
{
	char paths[64][320];
	int n = mail_list(paths, 64);

	for (int i = 0; i < n; i++)
		unlink(paths[i]);
}

/*
 * The one message in the Maildir, with line ends made CRLF-free ("\n"),
 * malloc'd; the file is removed.
 */
static char *
mail_take(void)
{
	char paths[64][320], *buf, *w;
	int n = mail_list(paths, 64);
	FILE *f;
	size_t len;

	assert_int_equal(n, 1);
	assert_non_null(f = fopen(paths[0], "rb"));
	buf = calloc(1, 1 << 20);
	len = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	buf[len] = '\0';
	unlink(paths[0]);
	w = buf;
	for (char *r = buf; *r != '\0'; r++)
		if (!(r[0] == '\r' && r[1] == '\n'))
			*w++ = *r;
	*w = '\0';
	return (buf);
}

/*
 * A header of a message or part (head up to the first empty line),
 * unfolded, malloc'd; NULL if absent.  Folding whitespace is kept as
 * the one space after the line break.
 */
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
			/* Only the whitespace between the words goes. */
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
			i++; /* soft line break */
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

/*
 * Splits a multipart message on the boundary of its Content-Type and
 * decodes each part's body by its Content-Transfer-Encoding; returns the
 * number of parts (at most max).
 */
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

/* ==================================================== providers, setup */

static rcv *ra, *rb, *rc_;

static void
env_clear(void)
{
	static const char *const vars[] = {
	    "NOTIFIER_SMTP_URL",        "NOTIFIER_SMTP_URL_2",
	    "NOTIFIER_SMTP_FROM",       "NOTIFIER_SMS_URL",
	    "NOTIFIER_SMS_URL_2",       "NOTIFIER_SMS_TOKEN",
	    "NOTIFIER_SMS_TOKEN_FILE",  "NOTIFIER_OUTBOUND_ALLOW",
	    "NOTIFIER_SEND_TIMEOUT_MS",
	};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

typedef struct provs {
	nt_provider pri[NT_CH_COUNT], sec[NT_CH_COUNT];
} provs;

/* The providers of the environment as it is now. */
static void
provs_make(provs *p)
{
	char err[256];

	if (nt_providers_make(p->pri, p->sec, err, sizeof(err)) != 0)
		fail_msg("nt_providers_make: %s", err);
}

static void
provs_free(provs *p)
{
	nt_providers_free(p->pri, p->sec);
}

static void setenvf(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
setenvf(const char *name, const char *fmt, ...)
{
	char v[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v, sizeof(v), fmt, ap);
	va_end(ap);
	setenv(name, v, 1);
}

static int
group_setup(void **state)
{
	(void) state;
	smtp_start();
	ra = rcv_start();
	rb = rcv_start();
	rc_ = rcv_start();
	return (0);
}

static int
group_teardown(void **state)
{
	char cmd[256];

	(void) state;
	h_proc_stop(&smtp_proc, 3000);
	h_proc_free(&smtp_proc);
	rcv_stop(ra);
	rcv_stop(rb);
	rcv_stop(rc_);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", mod_dir);
	if (system(cmd) != 0)
		return (-1);
	return (0);
}

/* Before each test: a known environment, empty receivers and mailbox. */
static int
test_setup(void **state)
{
	(void) state;
	env_clear();
	setenvf("NOTIFIER_SMTP_URL", "smtp://127.0.0.1:%d", smtp_port);
	setenv("NOTIFIER_SMTP_FROM", "notifier@example.org", 1);
	setenvf("NOTIFIER_OUTBOUND_ALLOW", "127.0.0.1:%d", ra->port);
	setenv("NOTIFIER_SEND_TIMEOUT_MS", "3000", 1);
	rcv_clear(ra);
	rcv_clear(rb);
	rcv_clear(rc_);
	rcv_answer(ra, 200, NULL, NULL);
	rcv_answer(rb, 200, NULL, NULL);
	rcv_answer(rc_, 200, NULL, NULL);
	mail_clear();
	return (0);
}

/* ================================================================ email */

static const char EMOJI_SUBJECT[] =
    "Your video \xe2\x80\x9c"
    "Caf\xc3\xa9 \xf0\x9f\x8e\xac\xe2\x80\x9d is ready \xe2\x9c\x85 "
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x82\xbf\xe3\x82"
    "\xa4\xe3\x83\x88\xe3\x83\xab too";

static void
test_email_delivered(void **state)
{
	nt_message m = {
	    .id = "n-100",
	    .user = "u1",
	    .type = "video.ready",
	    .title = EMOJI_SUBJECT,
	    .body = "Hello Ann,\nyour video is ready: "
	            "https://example.org/v/1\n.\nA line that is longer "
	            "than seventy-six characters so that quoted-printable "
	            "has to wrap it somewhere, \xc3\xbc\xc3\xb6\xc3\xa4.\n",
	    .html = "<p>Hello Ann &amp; friends,</p>\n<p><a "
	            "href=\"https://example.org/v/1\">watch</a> "
	            "\xf0\x9f\x8e\xac</p>\n",
	    .data_json = "{}",
	    .unsubscribe_url = "https://example.org/u/tok-123",
	};
	provs p;
	nt_result r;
	char *msg, *v, *d, *mid1;
	mpart parts[4];
	int n;

	(void) state;
	provs_make(&p);
	assert_string_equal(p.pri[NT_CH_EMAIL].ops->name, "smtp");
	p.pri[NT_CH_EMAIL].ops->send(p.pri[NT_CH_EMAIL].impl, &m,
	                             "ann@example.com", &r);
	if (r.outcome != NT_SENT)
		fail_msg("email: outcome %d: %s", r.outcome, r.error);
	assert_int_equal(r.status, 250);
	assert_string_equal(r.error, "");

	msg = mail_take();
	/* Envelope, as the relay saw it (aiosmtpd's Mailbox adds these). */
	v = head_get(msg, "X-MailFrom");
	assert_string_equal(v, "notifier@example.org");
	free(v);
	v = head_get(msg, "X-RcptTo");
	assert_string_equal(v, "ann@example.com");
	free(v);
	/* Headers. */
	v = head_get(msg, "From");
	assert_string_equal(v, "notifier@example.org");
	free(v);
	v = head_get(msg, "To");
	assert_string_equal(v, "ann@example.com");
	free(v);
	assert_non_null(v = head_get(msg, "Date"));
	assert_non_null(strstr(v, " +0000"));
	free(v);
	v = head_get(msg, "Subject");
	assert_non_null(v);
	assert_true(strncmp(v, "=?UTF-8?B?", 10) == 0);
	for (const char *c = v; *c != '\0'; c++)
		assert_true(*c >= 0x20 && *c < 0x7f); /* encoded: ASCII only */
	d = rfc2047_decode(v);
	assert_string_equal(d, EMOJI_SUBJECT);
	free(d);
	free(v);
	mid1 = head_get(msg, "Message-ID");
	assert_string_equal(mid1, "<n-100@example.org>");
	v = head_get(msg, "List-Unsubscribe");
	assert_string_equal(v, "<https://example.org/u/tok-123>");
	free(v);
	v = head_get(msg, "List-Unsubscribe-Post");
	assert_string_equal(v, "List-Unsubscribe=One-Click");
	free(v);
	assert_null(head_get(msg, "Bcc"));
	/* Body: multipart/alternative, text then HTML, both UTF-8; one
	 * Content-Type in the head (libcurl writes it, with the boundary). */
	v = head_get(msg, "Content-Type");
	assert_true(strncmp(v, "multipart/alternative", 21) == 0);
	free(v);
	{
		int k = 0;
		const char *hend = strstr(msg, "\n\n");
		for (const char *c = msg;
		     (c = strcasestr(c, "\nContent-Type:")) && c < hend; c++)
			k++;
		assert_int_equal(
		    k + (strncasecmp(msg, "Content-Type:", 13) == 0), 1);
	}
	n = mail_parts(msg, parts, 4);
	assert_int_equal(n, 2);
	assert_non_null(strstr(parts[0].type, "text/plain"));
	assert_non_null(strstr(parts[0].type, "UTF-8"));
	assert_non_null(strstr(parts[1].type, "text/html"));
	/* The text as sent, line breaks and the lone "." included. */
	assert_non_null(strstr(parts[0].text, m.body));
	assert_non_null(strstr(parts[1].text, m.html));
	parts_free(parts, n);
	free(msg);

	/* The same notification again (a retry): the same Message-ID. */
	p.pri[NT_CH_EMAIL].ops->send(p.pri[NT_CH_EMAIL].impl, &m,
	                             "ann@example.com", &r);
	assert_int_equal(r.outcome, NT_SENT);
	msg = mail_take();
	v = head_get(msg, "Message-ID");
	assert_string_equal(v, mid1);
	free(v);
	free(msg);
	/* Another notification: another one. */
	m.id = "n-101";
	p.pri[NT_CH_EMAIL].ops->send(p.pri[NT_CH_EMAIL].impl, &m,
	                             "ann@example.com", &r);
	assert_int_equal(r.outcome, NT_SENT);
	msg = mail_take();
	v = head_get(msg, "Message-ID");
	assert_string_equal(v, "<n-101@example.org>");
	free(v);
	free(msg);
	free(mid1);
	provs_free(&p);
}

static void
test_email_text_only_ascii(void **state)
{
	nt_message m = {.id = "n-200",
	                .title = "Plain subject",
	                .body = "Only text.\n",
	                .data_json = "{}"};
	provs p;
	nt_result r;
	char *msg, *v;
	mpart parts[4];
	int n;

	(void) state;
	provs_make(&p);
	p.pri[NT_CH_EMAIL].ops->send(p.pri[NT_CH_EMAIL].impl, &m,
	                             "bob@example.com", &r);
	assert_int_equal(r.outcome, NT_SENT);
	msg = mail_take();
	v = head_get(msg, "Subject");
	assert_string_equal(v, "Plain subject"); /* ASCII stays plain */
	free(v);
	assert_null(head_get(msg, "List-Unsubscribe"));
	assert_null(head_get(msg, "List-Unsubscribe-Post"));
	n = mail_parts(msg, parts, 4);
	assert_int_equal(n, 1);
	assert_non_null(strstr(parts[0].type, "text/plain"));
	assert_non_null(strstr(parts[0].text, "Only text.\n"));
	assert_null(strstr(msg, "text/html"));
	parts_free(parts, n);
	free(msg);
	provs_free(&p);
}

static void
test_email_header_injection_refused(void **state)
{
	nt_message m = {.id = "n-300",
	                .title = "Hello\r\nBcc: x@y",
	                .body = "b",
	                .data_json = "{}"};
	provs p;
	nt_result r;

	(void) state;
	provs_make(&p);
	p.pri[NT_CH_EMAIL].ops->send(p.pri[NT_CH_EMAIL].impl, &m,
	                             "ann@example.com", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	assert_non_null(strstr(r.error, "control"));
	m.title = "Hello\nBcc: x@y";
	p.pri[NT_CH_EMAIL].ops->send(p.pri[NT_CH_EMAIL].impl, &m,
	                             "ann@example.com", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	/* In the address. */
	m.title = "ok";
	p.pri[NT_CH_EMAIL].ops->send(p.pri[NT_CH_EMAIL].impl, &m,
	                             "ann@example.com\r\nBcc: x@y", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	p.pri[NT_CH_EMAIL].ops->send(p.pri[NT_CH_EMAIL].impl, &m,
	                             "ann@example.com>\r\nRCPT TO:<x@y", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	/* Nothing reached the relay. */
	h_msleep(100);
	assert_int_equal(mail_count(), 0);
	provs_free(&p);
}

static void
test_email_smtp_errors(void **state)
{
	nt_message m = {
	    .id = "n-400", .title = "t", .body = "b", .data_json = "{}"};
	provs p;
	nt_result r;
	int64_t t0;

	(void) state;
	/* The secondary relay: the same server under the other name. */
	setenvf("NOTIFIER_SMTP_URL_2", "smtp://127.0.0.1:%d", smtp_port);
	provs_make(&p);
	assert_string_equal(p.sec[NT_CH_EMAIL].ops->name, "smtp-2");
	p.pri[NT_CH_EMAIL].ops->send(p.pri[NT_CH_EMAIL].impl, &m,
	                             "bounce@example.com", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	assert_int_equal(r.status, 550);
	p.pri[NT_CH_EMAIL].ops->send(p.pri[NT_CH_EMAIL].impl, &m,
	                             "later@example.com", &r);
	assert_int_equal(r.outcome, NT_RETRY);
	assert_int_equal(r.status, 451);
	assert_int_equal(mail_count(), 0);
	p.sec[NT_CH_EMAIL].ops->send(p.sec[NT_CH_EMAIL].impl, &m,
	                             "carol@example.com", &r);
	assert_int_equal(r.outcome, NT_SENT);
	assert_int_equal(mail_count(), 1);
	provs_free(&p);

	/* A relay that is down: transient, and quick. */
	setenvf("NOTIFIER_SMTP_URL", "smtp://127.0.0.1:%d", h_free_port());
	provs_make(&p);
	t0 = cm_mono_ms();
	p.pri[NT_CH_EMAIL].ops->send(p.pri[NT_CH_EMAIL].impl, &m,
	                             "carol@example.com", &r);
	assert_int_equal(r.outcome, NT_RETRY);
	assert_true(cm_mono_ms() - t0 < 3000);
	provs_free(&p);
}

/* ================================================================= push */

static nt_result
push_to(provs *p, const char *id, const char *url)
{
	nt_message m = {.id = id,
	                .user = "u1",
	                .type = "chat.message",
	                .title = "Ann",
	                .body = "hi \xf0\x9f\x91\x8b \"there\"",
	                .data_json = "{\"conversation\":\"c-9\",\"n\":3}"};
	nt_result r;

	p->pri[NT_CH_PUSH].ops->send(p->pri[NT_CH_PUSH].impl, &m, url, &r);
	return (r);
}

static void
test_push_delivered(void **state)
{
	provs p;
	nt_result r;
	char url[128], *v;
	json_t *j;
	json_error_t je;
	rcv_req *q;

	(void) state;
	provs_make(&p);
	assert_string_equal(p.pri[NT_CH_PUSH].ops->name, "push");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/up/abc?x=1", ra->port);
	r = push_to(&p, "n-500", url);
	if (r.outcome != NT_SENT)
		fail_msg("push: outcome %d: %s", r.outcome, r.error);
	assert_int_equal(r.status, 200);
	assert_int_equal(rcv_nreq(ra), 1);
	q = &ra->reqs[0];
	assert_string_equal(q->method, "POST");
	assert_string_equal(q->path, "/up/abc?x=1");
	v = req_header(q, "Idempotency-Key");
	assert_string_equal(v, "n-500");
	free(v);
	v = req_header(q, "Content-Type");
	assert_string_equal(v, "application/json");
	free(v);
	assert_null(req_header(q, "Expect"));
	j = json_loadb(q->body, q->body_len, 0, &je);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "id")),
	                    "n-500");
	assert_string_equal(json_string_value(json_object_get(j, "title")),
	                    "Ann");
	assert_string_equal(json_string_value(json_object_get(j, "body")),
	                    "hi \xf0\x9f\x91\x8b \"there\"");
	assert_true(json_is_object(json_object_get(j, "data")));
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(j, "data"), "conversation")),
	                    "c-9");
	assert_int_equal(json_integer_value(
	                     json_object_get(json_object_get(j, "data"), "n")),
	                 3);
	assert_int_equal(json_object_size(j), 4);
	json_decref(j);

	/* A retry of the same notification carries the same key. */
	r = push_to(&p, "n-500", url);
	assert_int_equal(r.outcome, NT_SENT);
	assert_int_equal(rcv_nreq(ra), 2);
	v = req_header(&ra->reqs[1], "Idempotency-Key");
	assert_string_equal(v, "n-500");
	free(v);
	provs_free(&p);
}

static void
http_date_in(int seconds, char *buf, size_t len)
{
	time_t t = time(NULL) + seconds;
	struct tm tm;

	gmtime_r(&t, &tm);
	/* The C locale's names (no setlocale in this program). */
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static void
test_push_outcomes(void **state)
{
	char date[64];
	struct {
		int status;
		const char *retry_after;
		nt_outcome want;
		int64_t want_ra_ms; /* -1: about 20 s */
	} t[] = {
	    {200, NULL, NT_SENT, 0},      {201, NULL, NT_SENT, 0},
	    {204, NULL, NT_SENT, 0},      {404, NULL, NT_GONE, 0},
	    {410, NULL, NT_GONE, 0},      {429, "7", NT_RETRY, 7000},
	    {429, date, NT_RETRY, -1},    {429, NULL, NT_RETRY, 0},
	    {503, "3", NT_RETRY, 3000},   {500, NULL, NT_RETRY, 0},
	    {500, "9", NT_RETRY, 0},      {502, NULL, NT_RETRY, 0},
	    {408, NULL, NT_RETRY, 0},     {400, NULL, NT_PERMANENT, 0},
	    {401, NULL, NT_PERMANENT, 0}, {403, NULL, NT_PERMANENT, 0},
	    {413, NULL, NT_PERMANENT, 0},
	};
	provs p;
	nt_result r;
	char url[128];

	(void) state;
	http_date_in(20, date, sizeof(date));
	provs_make(&p);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/ep", ra->port);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rcv_answer(ra, t[i].status, t[i].retry_after, NULL);
		r = push_to(&p, "n-600", url);
		if (r.outcome != t[i].want || r.status != t[i].status)
			fail_msg("HTTP %d: outcome %d status %d (%s)",
			         t[i].status, r.outcome, r.status, r.error);
		if (t[i].want_ra_ms >= 0)
			assert_int_equal(r.retry_after_ms, t[i].want_ra_ms);
		else
			assert_true(r.retry_after_ms > 17000 &&
			            r.retry_after_ms <= 20000);
		if (t[i].want == NT_SENT)
			assert_string_equal(r.error, "");
		else
			assert_non_null(strstr(r.error, "HTTP"));
	}
	assert_int_equal(rcv_nreq(ra), (int) (sizeof(t) / sizeof(t[0])));

	/* A big answer body is read only up to the cap: still sent. */
	rcv_answer(ra, 200, NULL, NULL);
	ra->body_bytes = 4 << 20;
	r = push_to(&p, "n-601", url);
	assert_int_equal(r.outcome, NT_SENT);
	provs_free(&p);
}

static void
test_push_redirect_not_followed(void **state)
{
	provs p;
	nt_result r;
	char url[128], loc[128];

	(void) state;
	/* Both allowed, so only the no-redirect rule keeps rb unreached. */
	setenvf("NOTIFIER_OUTBOUND_ALLOW", "127.0.0.1:%d,127.0.0.1:%d",
	        ra->port, rb->port);
	provs_make(&p);
	snprintf(loc, sizeof(loc), "http://127.0.0.1:%d/elsewhere", rb->port);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/ep", ra->port);
	for (int s = 301; s <= 308; s++) {
		if (s == 304 || s == 305 || s == 306)
			continue;
		rcv_answer(ra, s, NULL, loc);
		r = push_to(&p, "n-700", url);
		assert_int_equal(r.outcome, NT_PERMANENT);
		assert_int_equal(r.status, s);
		assert_non_null(strstr(r.error, "not followed"));
	}
	h_msleep(50);
	assert_int_equal(rcv_conns(rb), 0);
	/* rb itself is reachable. */
	r = push_to(&p, "n-701", loc);
	assert_int_equal(r.outcome, NT_SENT);
	assert_int_equal(rcv_nreq(rb), 1);
	provs_free(&p);
}

static void
test_push_timeout(void **state)
{
	provs p;
	nt_result r;
	char url[128];
	int64_t t0, ms;

	(void) state;
	setenv("NOTIFIER_SEND_TIMEOUT_MS", "700", 1);
	provs_make(&p);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/slow", ra->port);
	rcv_hold(ra, true);
	t0 = cm_mono_ms();
	r = push_to(&p, "n-800", url);
	ms = cm_mono_ms() - t0;
	rcv_hold(ra, false);
	assert_int_equal(r.outcome, NT_RETRY);
	assert_int_equal(r.status, 0);
	assert_true(ms >= 600 && ms < 2500);
	/* It did arrive: the receiver held it. */
	assert_int_equal(rcv_nreq(ra), 1);
	provs_free(&p);
}

/* ================================================================= SSRF */

/*
 * One refused attempt: NT_REFUSED, quickly, and none of the receivers got
 * so much as a connection.
 */
static void
expect_refused(provs *p, const char *url, const char *why)
{
	nt_result r;
	int64_t t0 = cm_mono_ms();

	r = push_to(p, "n-900", url);
	if (r.outcome != NT_REFUSED)
		fail_msg("%s: outcome %d status %d (%s)", url, r.outcome,
		         r.status, r.error);
	assert_true(cm_mono_ms() - t0 < 2000);
	if (why != NULL && strstr(r.error, why) == NULL)
		fail_msg("%s: error \"%s\" lacks \"%s\"", url, r.error, why);
	h_msleep(30);
	assert_int_equal(rcv_conns(ra), 0);
	assert_int_equal(rcv_conns(rb), 0);
	assert_int_equal(rcv_conns(rc_), 0);
}

/* The same URL with its exact address allowed goes through to rcv. */
static void
expect_allowed_with(const char *allow, const char *url, rcv *to)
{
	nt_outbound_cfg cfg = {.allow = allow, .timeout_ms = 3000};
	nt_provider pp = {0};
	provs p = {0};
	nt_result r;
	char err[256];
	int before = rcv_nreq(to);

	if (nt_push_new(&cfg, &pp, err, sizeof(err)) != 0)
		fail_msg("nt_push_new: %s", err);
	p.pri[NT_CH_PUSH] = pp;
	r = push_to(&p, "n-901", url);
	if (r.outcome != NT_SENT)
		fail_msg("%s with %s allowed: outcome %d (%s)", url, allow,
		         r.outcome, r.error);
	assert_int_equal(rcv_nreq(to), before + 1);
	pp.ops->free(pp.impl);
	rcv_clear(ra);
	rcv_clear(rb);
	rcv_clear(rc_);
}

static void
test_ssrf_refused(void **state)
{
	provs p;
	char url[160], allow[64];

	(void) state;
	/* Only ra's 127.0.0.1:port is allowed. */
	provs_make(&p);

	expect_refused(&p, "http://10.1.2.3/", "private");
	expect_refused(&p, "http://10.255.255.1:8080/x", "private");
	expect_refused(&p, "http://192.168.1.1/", "private");
	expect_refused(&p, "http://172.16.0.1/", "private");
	expect_refused(&p, "http://100.64.0.1/", "CGNAT");
	expect_refused(&p, "http://169.254.169.254/latest/meta-data/",
	               "link-local");
	expect_refused(&p, "http://[fe80::1]/", "link-local");
	expect_refused(&p, "http://[fd00::1]/", "private");
	expect_refused(&p, "http://224.0.0.1/", "multicast");
	expect_refused(&p, "http://255.255.255.255/", "broadcast");

	/* A name resolving to loopback, on a port not allowed. */
	snprintf(url, sizeof(url), "http://localhost:%d/", rb->port);
	expect_refused(&p, url, "loopback");
	snprintf(allow, sizeof(allow), "127.0.0.1:%d", rb->port);
	expect_allowed_with(allow, url, rb);

	/* Another port on loopback. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", rb->port);
	expect_refused(&p, url, "loopback");
	/* The same, spelled as a number. */
	snprintf(url, sizeof(url), "http://2130706433:%d/", rb->port);
	expect_refused(&p, url, "loopback");
	snprintf(url, sizeof(url), "http://127.1:%d/", rb->port);
	expect_refused(&p, url, "loopback");

	/* IPv6 loopback on the allowed port (ra listens there too). */
	snprintf(url, sizeof(url), "http://[::1]:%d/", ra->port);
	expect_refused(&p, url, "loopback");
	snprintf(allow, sizeof(allow), "[::1]:%d", ra->port);
	expect_allowed_with(allow, url, ra);

	/* IPv4-mapped loopback on the allowed port. */
	snprintf(url, sizeof(url), "http://[::ffff:127.0.0.1]:%d/", ra->port);
	expect_refused(&p, url, "loopback");
	snprintf(allow, sizeof(allow), "[::ffff:127.0.0.1]:%d", ra->port);
	expect_allowed_with(allow, url, ra);

	/* The unspecified address (Linux connects it to the local host). */
	snprintf(url, sizeof(url), "http://0.0.0.0:%d/", ra->port);
	expect_refused(&p, url, "unspecified");
	snprintf(allow, sizeof(allow), "0.0.0.0:%d", ra->port);
	expect_allowed_with(allow, url, ra);
	snprintf(url, sizeof(url), "http://[::]:%d/", ra->port);
	expect_refused(&p, url, "unspecified");

	/* Schemes other than http(s), even to the allowed address. */
	snprintf(url, sizeof(url), "ftp://127.0.0.1:%d/", ra->port);
	expect_refused(&p, url, "URL");
	expect_refused(&p, "file:///etc/passwd", "URL");
	snprintf(url, sizeof(url), "gopher://127.0.0.1:%d/", ra->port);
	expect_refused(&p, url, "URL");
	snprintf(url, sizeof(url), "dict://127.0.0.1:%d/", ra->port);
	expect_refused(&p, url, "URL");

	/* And the allowed address itself goes through. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/ok", ra->port);
	expect_allowed_with(getenv("NOTIFIER_OUTBOUND_ALLOW"), url, ra);
	provs_free(&p);
}

/* No proxy from the environment: a proxy variable is not used. */
static void
test_push_ignores_proxy_env(void **state)
{
	provs p;
	nt_result r;
	char url[128];

	(void) state;
	setenvf("http_proxy", "http://127.0.0.1:%d", rc_->port);
	setenvf("HTTP_PROXY", "http://127.0.0.1:%d", rc_->port);
	setenvf("ALL_PROXY", "http://127.0.0.1:%d", rc_->port);
	provs_make(&p);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/ep", ra->port);
	r = push_to(&p, "n-950", url);
	unsetenv("http_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("ALL_PROXY");
	assert_int_equal(r.outcome, NT_SENT);
	assert_int_equal(rcv_nreq(ra), 1);
	assert_int_equal(rcv_conns(rc_), 0);
	provs_free(&p);
}

/* ================================================================== SMS */

/* Form value of name in a=b&c=d, %-decoded, malloc'd; NULL if absent. */
static char *
form_get(const char *form, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = form; p != NULL && *p != '\0';) {
		const char *e = strchr(p, '&');
		size_t l = e != NULL ? (size_t) (e - p) : strlen(p);
		if (l > n && p[n] == '=' && strncmp(p, name, n) == 0) {
			char *out = malloc(l + 1);
			size_t o = 0;
			for (size_t i = n + 1; i < l; i++) {
				if (p[i] == '%' && i + 2 < l + 1 &&
				    hexval(p[i + 1]) >= 0 &&
				    hexval(p[i + 2]) >= 0) {
					out[o++] =
					    (char) (hexval(p[i + 1]) * 16 +
					            hexval(p[i + 2]));
					i += 2;
				} else {
					out[o++] = p[i] == '+' ? ' ' : p[i];
				}
			}
			out[o] = '\0';
			return (out);
		}
		p = e != NULL ? e + 1 : NULL;
	}
	return (NULL);
}

static void
test_sms_delivered(void **state)
{
	const char *token = "sms-token-0123456789abcdef0123456789";
	nt_message m = {.id = "n-1000",
	                .type = "contact.confirm",
	                .title = "",
	                .body = "Code: 123456 & more+ \xc3\xbc=%",
	                .data_json = "{}"};
	provs p;
	nt_result r;
	rcv_req *q;
	char *v;

	(void) state;
	/* rb is not in the allow list: the configured provider is trusted. */
	setenvf("NOTIFIER_SMS_URL", "http://127.0.0.1:%d/sms/send", rb->port);
	setenv("NOTIFIER_SMS_TOKEN", token, 1);
	provs_make(&p);
	assert_string_equal(p.pri[NT_CH_SMS].ops->name, "sms-http");
	p.pri[NT_CH_SMS].ops->send(p.pri[NT_CH_SMS].impl, &m, "+4915112345678",
	                           &r);
	if (r.outcome != NT_SENT)
		fail_msg("sms: outcome %d: %s", r.outcome, r.error);
	assert_int_equal(rcv_nreq(rb), 1);
	q = &rb->reqs[0];
	assert_string_equal(q->method, "POST");
	assert_string_equal(q->path, "/sms/send");
	v = req_header(q, "Content-Type");
	assert_string_equal(v, "application/x-www-form-urlencoded");
	free(v);
	v = req_header(q, "Authorization");
	assert_non_null(v);
	assert_true(strncmp(v, "Bearer ", 7) == 0);
	assert_string_equal(v + 7, token);
	free(v);
	v = req_header(q, "Idempotency-Key");
	assert_string_equal(v, "n-1000");
	free(v);
	/* Escaped so that every value comes back whole. */
	assert_non_null(strstr(q->body, "to=%2B4915112345678"));
	assert_null(strchr(q->body, ' '));
	v = form_get(q->body, "to");
	assert_string_equal(v, "+4915112345678");
	free(v);
	v = form_get(q->body, "body");
	assert_string_equal(v, m.body);
	free(v);
	v = form_get(q->body, "id");
	assert_string_equal(v, "n-1000");
	free(v);
	v = form_get(q->body, "more");
	assert_null(v);

	/* Outcomes: a provider's 404 is not an endpoint gone. */
	rcv_answer(rb, 404, NULL, NULL);
	p.pri[NT_CH_SMS].ops->send(p.pri[NT_CH_SMS].impl, &m, "+4915112345678",
	                           &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	rcv_answer(rb, 429, "11", NULL);
	p.pri[NT_CH_SMS].ops->send(p.pri[NT_CH_SMS].impl, &m, "+4915112345678",
	                           &r);
	assert_int_equal(r.outcome, NT_RETRY);
	assert_int_equal(r.retry_after_ms, 11000);
	rcv_answer(rb, 503, NULL, NULL);
	p.pri[NT_CH_SMS].ops->send(p.pri[NT_CH_SMS].impl, &m, "+4915112345678",
	                           &r);
	assert_int_equal(r.outcome, NT_RETRY);
	rcv_answer(rb, 400, NULL, NULL);
	p.pri[NT_CH_SMS].ops->send(p.pri[NT_CH_SMS].impl, &m, "+4915112345678",
	                           &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	assert_int_equal(rcv_nreq(rb), 5);

	/* A number that is not E.164 never reaches the provider. */
	rcv_clear(rb);
	p.pri[NT_CH_SMS].ops->send(p.pri[NT_CH_SMS].impl, &m, "015112345678",
	                           &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	p.pri[NT_CH_SMS].ops->send(p.pri[NT_CH_SMS].impl, &m,
	                           "+4915112345678&to=+1999", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	h_msleep(30);
	assert_int_equal(rcv_conns(rb), 0);
	provs_free(&p);
}

static void
test_sms_secondary_no_token(void **state)
{
	nt_message m = {.id = "n-1100", .body = "hi", .data_json = "{}"};
	provs p;
	nt_result r;

	(void) state;
	setenvf("NOTIFIER_SMS_URL", "http://127.0.0.1:%d/a", rb->port);
	setenvf("NOTIFIER_SMS_URL_2", "http://127.0.0.1:%d/b", rc_->port);
	provs_make(&p);
	assert_string_equal(p.sec[NT_CH_SMS].ops->name, "sms-http-2");
	p.sec[NT_CH_SMS].ops->send(p.sec[NT_CH_SMS].impl, &m, "+12025550123",
	                           &r);
	assert_int_equal(r.outcome, NT_SENT);
	assert_int_equal(rcv_nreq(rc_), 1);
	assert_int_equal(rcv_nreq(rb), 0);
	assert_string_equal(rc_->reqs[0].path, "/b");
	/* Without a token, no Authorization header at all. */
	assert_null(req_header(&rc_->reqs[0], "Authorization"));
	provs_free(&p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_email_delivered, test_setup),
	    cmocka_unit_test_setup(test_email_text_only_ascii, test_setup),
	    cmocka_unit_test_setup(test_email_header_injection_refused,
	                           test_setup),
	    cmocka_unit_test_setup(test_email_smtp_errors, test_setup),
	    cmocka_unit_test_setup(test_push_delivered, test_setup),
	    cmocka_unit_test_setup(test_push_outcomes, test_setup),
	    cmocka_unit_test_setup(test_push_redirect_not_followed, test_setup),
	    cmocka_unit_test_setup(test_push_timeout, test_setup),
	    cmocka_unit_test_setup(test_ssrf_refused, test_setup),
	    cmocka_unit_test_setup(test_push_ignores_proxy_env, test_setup),
	    cmocka_unit_test_setup(test_sms_delivered, test_setup),
	    cmocka_unit_test_setup(test_sms_secondary_no_token, test_setup),
	};

	/* A receiver writing to a client that hung up must not die. */
	signal(SIGPIPE, SIG_IGN);
	return (cmocka_run_group_tests(tests, group_setup, group_teardown));
}
