/*
 * Integration test harness: runs the real binaries and a private Redis as
 * child processes on free loopback ports, and speaks HTTP to the gateway
 * with libcurl.  PostgreSQL comes from DATABASE_URL (tests/run.sh starts
 * one for the run).
 */
#ifndef TEST_HARNESS_H
#define TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define H_MAX_ENV 32

typedef struct h_proc {
	const char *name;
	pid_t pid;
	char log[256];
	char *env[H_MAX_ENV]; /* "K=V" strings, owned */
	size_t nenv;
	const char *bin;
	char *argv[16];
} h_proc;

/* Sleeps ms milliseconds. */
void h_msleep(int ms);
/* Clocks: cm_mono_ms() and cm_now_ms() from common/util.h. */
#include "util.h"

/* A free TCP port on 127.0.0.1 (bound and released; racy but fine here). */
int h_free_port(void);

/* Adds "KEY=value" to a process's environment (before h_proc_start). */
void h_proc_env(h_proc *p, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Starts the process with its env on top of ours; logs to p->log. */
void h_proc_start(h_proc *p);
/* SIGTERM, wait up to wait_ms, then SIGKILL.  Returns the exit status. */
int h_proc_stop(h_proc *p, int wait_ms);
void h_proc_kill(h_proc *p);
void h_proc_free(h_proc *p);

/* Runs "<bin> health --addr addr"; returns its exit code. */
int h_health(const char *bin, const char *addr, int timeout_ms);
/* Polls h_health until 0 or timeout; returns true when serving. */
bool h_wait_healthy(const char *bin, const char *addr, int timeout_ms);

/* A private redis-server on a free port (no persistence: test data). */
typedef struct h_redis {
	h_proc proc;
	int port;
	char url[64];
	char dir[128];
} h_redis;
void h_redis_start(h_redis *r);
void h_redis_stop(h_redis *r);
/* Runs one inline command ("PUBSUB NUMSUB ch"); returns the raw RESP
 * reply (malloc'd), "" if Redis did not answer. */
char *h_redis_cmd(const h_redis *r, const char *cmd);

/* ---- HTTP ---- */

typedef struct h_resp {
	long status;
	char *body;
	size_t body_len;
	char *headers; /* raw header block, lower-cased names */
	double total_ms;
} h_resp;

/*
 * Performs one request.  headers: NULL-terminated array of "Name: value".
 * body may be NULL.  A transport failure (connection refused, timeout)
 * leaves status 0.
 */
void h_http(h_resp *r, const char *method, const char *url,
            const char *const *headers, const char *body, size_t body_len);
void h_resp_free(h_resp *r);
/* Value of a response header (case-insensitive name), malloc'd, or NULL. */
char *h_resp_header(const h_resp *r, const char *name);

/* Sends raw bytes on a new TCP connection and reads until the peer closes
 * or timeout; returns malloc'd response bytes. */
char *h_raw(int port, const char *data, size_t len, int timeout_ms,
            size_t *outlen);

/* Parses a JSON body and returns a string / integer member (dotted path
 * one level deep like "error.code"); NULL / -1 when absent. */
char *h_json_str(const h_resp *r, const char *path);
long long h_json_int(const h_resp *r, const char *path);

/*
 * One sample of a gateway's /metrics (asked from loopback): name with its
 * labels as exposed ("gateway_ratelimit_checks_total{result=\"local\"}"),
 * or -1 if absent.  Counters kept per loop may lag by a tick (250 ms).
 */
long long h_metric(const char *base, const char *name);

/* A signed HS256 JWT with the given payload JSON, or with alg "none". */
char *h_jwt(const char *secret, const char *alg, const char *payload_json);

#endif
