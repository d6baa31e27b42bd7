/* Integration test harness: child processes, a private Redis, HTTP. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "harness.h"

extern char **environ;

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "harness: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

void
h_msleep(int ms)
{
	struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

int
h_free_port(void)
{
	struct sockaddr_in sa = {0};
	socklen_t len = sizeof(sa);
	int fd, port;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		die("socket: %s", strerror(errno));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *) &sa, &len) != 0)
		die("bind: %s", strerror(errno));
	port = ntohs(sa.sin_port);
	close(fd);
	return (port);
}

void
h_proc_env(h_proc *p, const char *key, const char *fmt, ...)
{
	char val[1024];
	va_list ap;

	if (p->nenv >= H_MAX_ENV)
		die("too many env vars");
	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	if (asprintf(&p->env[p->nenv++], "%s=%s", key, val) < 0)
		die("oom");
}

void
h_proc_start(h_proc *p)
{
	pid_t pid;

	if (p->log[0] == '\0')
		snprintf(p->log, sizeof(p->log), "%s/%s-%d.log",
		         getenv("TEST_LOG_DIR") ? getenv("TEST_LOG_DIR")
		                                : "/tmp",
		         p->name, (int) getpid());
	if (p->argv[0] == NULL)
		p->argv[0] = (char *) p->bin;
	if ((pid = fork()) < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		for (size_t i = 0; i < p->nenv; i++)
			putenv(p->env[i]);
		execv(p->bin, p->argv);
		fprintf(stderr, "exec %s: %s\n", p->bin, strerror(errno));
		_exit(127);
	}
	p->pid = pid;
}

int
h_proc_stop(h_proc *p, int wait_ms)
{
	int status = -1;

	if (p->pid <= 0)
		return (-1);
	kill(p->pid, SIGTERM);
	for (int i = 0; i < wait_ms; i += 5) {
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			p->pid = 0;
			return (status);
		}
		h_msleep(5);
	}
	kill(p->pid, SIGKILL);
	waitpid(p->pid, &status, 0);
	p->pid = 0;
	return (-1);
}

void
h_proc_kill(h_proc *p)
{
	if (p->pid <= 0)
		return;
	kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, 0);
	p->pid = 0;
}

void
h_proc_free(h_proc *p)
{
	for (size_t i = 0; i < p->nenv; i++)
		free(p->env[i]);
	p->nenv = 0;
}

int
h_health(const char *bin, const char *addr, int timeout_ms)
{
	char tmo[32];
	pid_t pid;
	int status;

	snprintf(tmo, sizeof(tmo), "%d", timeout_ms);
	if ((pid = fork()) == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(bin, bin, "health", "--addr", addr, "--timeout", tmo,
		      (char *) NULL);
		_exit(127);
	}
	if (pid < 0)
		return (-1);
	/* The probe bounds itself by --timeout; one that outlives it by 10 s
	 * is hung: say so, and never wait for it for good. */
	for (int64_t until = cm_mono_ms() + timeout_ms + 10000;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			break;
		if (w < 0)
			return (-1);
		if (cm_mono_ms() > until) {
			fprintf(stderr, "h_health: %s health --addr %s hung\n",
			        bin, addr);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return (-1);
		}
		h_msleep(5);
	}
	return (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

bool
h_wait_healthy(const char *bin, const char *addr, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 50) {
		if (h_health(bin, addr, 500) == 0)
			return (true);
		h_msleep(50);
	}
	return (false);
}

void
h_redis_start(h_redis *r)
{
	const char *bin = getenv("TEST_REDIS_SERVER");
	static char port[16], dir[128];

	if (bin == NULL)
		bin = "/usr/bin/redis-server";
	if (r->port == 0) {
		r->port = h_free_port();
		snprintf(r->dir, sizeof(r->dir), "/tmp/h-redis-%d-%d",
		         (int) getpid(), r->port);
		mkdir(r->dir, 0700);
	}
	snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d", r->port);
	snprintf(port, sizeof(port), "%d", r->port);
	snprintf(dir, sizeof(dir), "%s", r->dir);
	memset(&r->proc, 0, sizeof(r->proc));
	r->proc.name = "redis";
	r->proc.bin = bin;
	r->proc.argv[0] = (char *) bin;
	r->proc.argv[1] = "--port";
	r->proc.argv[2] = port;
	r->proc.argv[3] = "--bind";
	r->proc.argv[4] = "127.0.0.1";
	r->proc.argv[5] = "--save";
	r->proc.argv[6] = "";
	r->proc.argv[7] = "--dir";
	r->proc.argv[8] = dir;
	h_proc_start(&r->proc);
	/* Wait until it accepts connections. */
	for (int i = 0; i < 200; i++) {
		struct sockaddr_in sa = {0};
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		sa.sin_family = AF_INET;
		sa.sin_port = htons((uint16_t) r->port);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int ok = connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
		close(fd);
		if (ok)
			return;
		h_msleep(25);
	}
	die("redis-server did not start on port %d", r->port);
}

void
h_redis_stop(h_redis *r)
{
	h_proc_stop(&r->proc, 3000);
}

char *
h_redis_cmd(const h_redis *r, const char *cmd)
{
	char req[1024];
	size_t n;
	int len;

	/* QUIT makes Redis close the connection after the reply. */
	len = snprintf(req, sizeof(req), "%s\r\nQUIT\r\n", cmd);
	if (len < 0 || (size_t) len >= sizeof(req))
		die("h_redis_cmd: command too long");
	return (h_raw(r->port, req, (size_t) len, 2000, &n));
}

struct membuf {
	char *p;
	size_t len;
};

static size_t
write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct membuf *b = arg;
	size_t sz = size * n;
	char *np = realloc(b->p, b->len + sz + 1);

	if (np == NULL)
		return (0);
	memcpy(np + b->len, data, sz);
	b->len += sz;
	np[b->len] = '\0';
	b->p = np;
	return (sz);
}

void
h_http(h_resp *r, const char *method, const char *url,
       const char *const *headers, const char *body, size_t body_len)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hl = NULL;
	struct membuf b = {0}, h = {0};
	CURLcode rc;

	memset(r, 0, sizeof(*r));
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
		hl = curl_slist_append(hl, headers[i]);
	/* No "Expect: 100-continue" unless a test asks for it. */
	hl = curl_slist_append(hl, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	if (body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
		                 (curl_off_t) body_len);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, write_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
		curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &r->total_ms);
		r->total_ms *= 1000.0;
	}
	r->body = b.p != NULL ? b.p : strdup("");
	r->body_len = b.len;
	r->headers = h.p != NULL ? h.p : strdup("");
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
}

void
h_resp_free(h_resp *r)
{
	free(r->body);
	free(r->headers);
	memset(r, 0, sizeof(*r));
}

char *
h_resp_header(const h_resp *r, const char *name)
{
	size_t n = strlen(name);
	const char *p = r->headers;

	while (p != NULL && *p != '\0') {
		const char *eol = strstr(p, "\r\n");
		size_t len = eol != NULL ? (size_t) (eol - p) : strlen(p);
		if (len > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1;
			while (*v == ' ')
				v++;
			return (strndup(v, (size_t) (p + len - v)));
		}
		p = eol != NULL ? eol + 2 : NULL;
	}
	return (NULL);
}

char *
h_raw(int port, const char *data, size_t len, int timeout_ms, size_t *outlen)
{
	struct sockaddr_in sa = {0};
	struct membuf b = {0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char buf[4096];

	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0)
		die("connect %d: %s", port, strerror(errno));
	if (write(fd, data, len) != (ssize_t) len)
		die("short write");
	for (;;) {
		struct pollfd pfd = {fd, POLLIN, 0};
		if (poll(&pfd, 1, timeout_ms) <= 0)
			break;
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		write_cb(buf, 1, (size_t) n, &b);
	}
	close(fd);
	*outlen = b.len;
	return (b.p != NULL ? b.p : strdup(""));
}

static json_t *
json_path(json_t *root, const char *path)
{
	char buf[128];
	char *dot;

	snprintf(buf, sizeof(buf), "%s", path);
	if ((dot = strchr(buf, '.')) != NULL) {
		*dot = '\0';
		return (json_object_get(json_object_get(root, buf), dot + 1));
	}
	return (json_object_get(root, buf));
}

char *
h_json_str(const h_resp *r, const char *path)
{
	json_t *root = json_loadb(r->body, r->body_len, 0, NULL);
	json_t *v;
	char *out = NULL;

	if (root == NULL)
		return (NULL);
	if ((v = json_path(root, path)) != NULL && json_is_string(v))
		out = strdup(json_string_value(v));
	json_decref(root);
	return (out);
}

long long
h_json_int(const h_resp *r, const char *path)
{
	json_t *root = json_loadb(r->body, r->body_len, 0, NULL);
	json_t *v;
	long long out = -1;

	if (root == NULL)
		return (-1);
	if ((v = json_path(root, path)) != NULL) {
		if (json_is_integer(v))
			out = json_integer_value(v);
		else if (json_is_string(v))
			out = strtoll(json_string_value(v), NULL, 10);
	}
	json_decref(root);
	return (out);
}

static char *
b64url(const unsigned char *in, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	int len = EVP_EncodeBlock((unsigned char *) out, in, (int) n);

	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (char *p = out; *p; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	return (out);
}

char *
h_jwt(const char *secret, const char *alg, const char *payload_json)
{
	char header[64], *h, *p, *signing, *out;
	unsigned char mac[32];
	unsigned int maclen = 0;

	snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}",
	         alg);
	h = b64url((const unsigned char *) header, strlen(header));
	p = b64url((const unsigned char *) payload_json, strlen(payload_json));
	if (asprintf(&signing, "%s.%s", h, p) < 0)
		die("oom");
	if (strcmp(alg, "none") == 0) {
		if (asprintf(&out, "%s.", signing) < 0)
			die("oom");
	} else {
		HMAC(EVP_sha256(), secret, (int) strlen(secret),
		     (const unsigned char *) signing, strlen(signing), mac,
		     &maclen);
		char *s = b64url(mac, maclen);
		if (asprintf(&out, "%s.%s", signing, s) < 0)
			die("oom");
		free(s);
	}
	free(h);
	free(p);
	free(signing);
	return (out);
}

long long
h_metric(const char *base, const char *name)
{
	char url[128], pat[256];
	const char *p;
	long long v = -1;
	h_resp r;

	snprintf(url, sizeof(url), "%s/metrics", base);
	snprintf(pat, sizeof(pat), "\n%s ", name);
	h_http(&r, "GET", url, NULL, NULL, 0);
	if (r.status == 200 && r.body != NULL &&
	    (p = strstr(r.body, pat)) != NULL)
		v = strtoll(p + strlen(pat), NULL, 10);
	h_resp_free(&r);
	return (v);
}
