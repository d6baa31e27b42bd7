/*
 * A Redis connection that reconnects by itself, with backoff.  One per
 * thread (hiredis contexts are not thread-safe).  When Redis is down,
 * commands fail fast (NULL) instead of blocking: connecting and every
 * command have a short timeout, and after a failure no reconnection is
 * attempted until the backoff has passed.
 */
#ifndef CM_REDIS_H
#define CM_REDIS_H

#include <stdbool.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

typedef struct cm_redis cm_redis;

/*
 * url: "redis://[:password@]host:port[/db]" or "unix:/path".
 * timeout_ms bounds connect and each command.  Never fails to allocate
 * (fatal on OOM); the first connection attempt is made lazily.
 */
cm_redis *cm_redis_new(const char *url, int timeout_ms);
void cm_redis_free(cm_redis *r);

/*
 * Runs a command (redisCommand format).  Returns the reply (caller
 * freeReplyObject()s) or NULL if Redis is unreachable; an error reply
 * (REDIS_REPLY_ERROR) is returned as a reply.
 */
redisReply *cm_redis_cmd(cm_redis *r, const char *fmt, ...);
redisReply *cm_redis_cmdargv(cm_redis *r, int argc, const char **argv,
                             const size_t *argvlen);
/* Pipelining: append n commands, then read n replies (NULL if down). */
int cm_redis_append(cm_redis *r, const char *fmt, ...);
redisReply *cm_redis_get_reply(cm_redis *r);

/* True if the last operation succeeded (used for health). */
bool cm_redis_ok(cm_redis *r);
/* PING now (respecting backoff); true if Redis answered. */
bool cm_redis_ping(cm_redis *r);

/*
 * What the process knows of the Redis at r's URL, from every cm_redis of
 * it: false while the breaker is open or when the last command or
 * connection attempt failed.  *age_ms: how long ago that last outcome was
 * (INT64_MAX when there was none yet).  Never blocks; reads only state
 * shared by the process, so any thread may call it with any cm_redis.
 */
bool cm_redis_state(const cm_redis *r, int64_t *age_ms);
/*
 * For a health check: cm_redis_state, after a PING on r (bounded by its
 * timeout; nothing is sent while the breaker is open) when what is known
 * is older than max_age_ms.  r must be the caller's own.
 */
bool cm_redis_check(cm_redis *r, int max_age_ms);

/* Parses a redis URL into host/port/password/db; 0 on success. */
int cm_redis_parse_url(const char *url, char *host, size_t hostlen, int *port,
                       char *password, size_t pwlen, int *db);

#endif
