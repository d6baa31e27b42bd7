/*
 * `gateway health`: probes a running gateway's GET /healthz over plain
 * HTTP/1.1, with grpc_health_probe's exit codes: 0 serving (200), 2 cannot
 * connect or timed out, 3 the call failed (anything but 200 or 503, or a
 * malformed response), 4 not serving (503); 1 for a bad address.  One
 * deadline bounds everything: resolve, connect, send and receive.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#include "probe.h"

enum {
	PROBE_SERVING = 0,
	PROBE_BAD_ARGS = 1,
	PROBE_UNREACHABLE = 2,
	PROBE_FAILED = 3,
	PROBE_NOT_SERVING = 4,
};

/* "http://host:port[/...]", "host:port", "[v6]:port"; port defaults 80. */
static int
parse_addr(const char *addr, char *host, size_t hlen, char *port, size_t plen)
{
	const char *p = addr, *e, *colon;
	size_t n;

	if (strncmp(p, "http://", 7) == 0)
		p += 7;
	else if (strstr(p, "://") != NULL)
		return (-1);
	e = p + strcspn(p, "/?#");
	if (e == p)
		return (-1);
	if (*p == '[') {
		const char *rb = memchr(p, ']', (size_t) (e - p));

		if (rb == NULL)
			return (-1);
		n = (size_t) (rb - p - 1);
		colon = rb + 1 < e && rb[1] == ':' ? rb + 1 : NULL;
		if (n == 0 || n >= hlen)
			return (-1);
		memcpy(host, p + 1, n);
	} else {
		colon = memchr(p, ':', (size_t) (e - p));
		n = (size_t) ((colon ? colon : e) - p);
		if (n == 0 || n >= hlen)
			return (-1);
		memcpy(host, p, n);
	}
	host[n] = '\0';
	if (colon != NULL) {
		n = (size_t) (e - colon - 1);
		if (n == 0 || n >= plen)
			return (-1);
		memcpy(port, colon + 1, n);
		port[n] = '\0';
	} else {
		snprintf(port, plen, "80");
	}
	return (0);
}

static int
remaining(int64_t deadline)
{
	int64_t left = deadline - cm_mono_ms();

	return (left > 0 ? (int) left : 0);
}

/* Connects within the deadline; returns the socket or -1. */
static int
connect_by(const char *host, const char *port, int64_t deadline)
{
	struct addrinfo hints, *res = NULL, *ai;
	int fd = -1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return (-1);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct pollfd pfd;
		int err = 0;
		socklen_t el = sizeof(err);

		fd = socket(ai->ai_family,
		            ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			pfd.fd = fd;
			pfd.events = POLLOUT;
			if (poll(&pfd, 1, remaining(deadline)) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) ==
			        0 &&
			    err == 0)
				break;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return (fd);
}

int
gw_health_probe(const char *addr, int timeout_ms)
{
	char host[256], port[16], req[512], resp[16384];
	int64_t deadline = cm_mono_ms() + timeout_ms;
	int fd, status;
	size_t off = 0, len;
	const char *body;
	struct pollfd pfd;

	if (parse_addr(addr, host, sizeof(host), port, sizeof(port)) != 0) {
		fprintf(stderr, "health: bad address %s\n", addr);
		return (PROBE_BAD_ARGS);
	}
	if ((fd = connect_by(host, port, deadline)) < 0) {
		fprintf(stderr, "health: %s: cannot connect\n", addr);
		return (PROBE_UNREACHABLE);
	}
	len = (size_t) snprintf(
	    req, sizeof(req),
	    "GET /healthz HTTP/1.1\r\nHost: %s\r\nUser-Agent: gateway-health"
	    "\r\nConnection: close\r\n\r\n",
	    host);
	while (off < len) {
		ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);

		if (n > 0) {
			off += (size_t) n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			goto unreachable;
		pfd.fd = fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, remaining(deadline)) != 1)
			goto unreachable;
	}
	off = 0;
	for (;;) {
		ssize_t n;

		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, remaining(deadline)) != 1)
			goto unreachable;
		n = recv(fd, resp + off, sizeof(resp) - 1 - off, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			break;
		if (n > 0)
			off += (size_t) n;
		if (off == sizeof(resp) - 1)
			break;
	}
	close(fd);
	resp[off] = '\0';
	if (sscanf(resp, "HTTP/1.%*1[01] %3d", &status) != 1) {
		fprintf(stderr, "health: %s: malformed response\n", addr);
		return (PROBE_FAILED);
	}
	body = strstr(resp, "\r\n\r\n");
	body = body ? body + 4 : "";
	if (status == 200) {
		printf("status: SERVING\n%s\n", body);
		return (PROBE_SERVING);
	}
	if (status == 503) {
		printf("status: NOT_SERVING\n%s\n", body);
		return (PROBE_NOT_SERVING);
	}
	fprintf(stderr, "health: %s: HTTP %d\n", addr, status);
	return (PROBE_FAILED);
unreachable:
	close(fd);
	fprintf(stderr, "health: %s: timed out\n", addr);
	return (PROBE_UNREACHABLE);
}
