/*
 * The URL shortener's domain: validation of links and aliases, code
 * generation, expiry and ownership rules, the read-through path of
 * redirects and click counting.  No socket, Redis or PostgreSQL here: the
 * domain talks to storage through store.h, so unit tests drive it with
 * store_mem.c.
 *
 * Every operation returns a cm_code (status.h).  On an error other than
 * CM_OK a human-readable reason is written to err (errlen bytes), ready to
 * be the RPC reply's message.  Replies are protobuf messages allocated from
 * the caller's arena (they live as long as it).
 */
#ifndef SHORTENER_H
#define SHORTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "shortener.pb-c.h"
#include "store.h"

#define SHORTENER_URL_MAX   2048
#define SHORTENER_ALIAS_MIN 3
#define SHORTENER_ALIAS_MAX 32
#define SHORTENER_CODE_LEN  7
#define SHORTENER_ID_BITS   40
/* Ten years of seconds, leap days included. */
#define SHORTENER_EXPIRES_MAX   (3653LL * 86400)
#define SHORTENER_LIST_DEFAULT  20
#define SHORTENER_LIST_MAX      100
#define SHORTENER_CLICKS_MAX    10000000 /* one entry of RecordClicks */
#define SHORTENER_CLICKS_BATCH  100000   /* entries in one RecordClicks */
#define SHORTENER_HASH_ATTEMPTS 8
#define SHORTENER_SEQ_ATTEMPTS  8

enum shortener_code_mode {
	SHORTENER_CODE_SEQUENTIAL, /* leased ids -> keyed permutation -> base62
	                            */
	SHORTENER_CODE_HASH,       /* SHA-256(url[, owner][, salt]) -> base62 */
};

struct shortener_config {
	enum shortener_code_mode mode;
	const char *id_key;          /* key of the id permutation */
	const char *public_base_url; /* e.g. "http://localhost:8080" */
	int expired_ttl_s;           /* cached expired links (default 3) */
	int cache_ttl_s;             /* cached links (default 3600) */
	int tombstone_ttl_s;         /* cache tombstones (default 300) */
	int64_t (*now)(void);        /* Unix seconds; NULL: the wall clock */
};

struct shortener;

/*
 * One thread's view of storage: each RPC worker (and the maintenance
 * thread) owns one.  cache.ops may be NULL.
 */
struct shortener_io {
	struct shortener_store store;
	struct shortener_cache cache;
};

/*
 * Creates the service state shared by every thread.  Fails (err set) if
 * public_base_url is not an http(s) URL or id_key is empty.  Free with
 * shortener_free.
 */
int shortener_new(struct shortener **out, const struct shortener_config *c,
                  char *err, size_t errlen);
void shortener_free(struct shortener *s);
/* The base, without a trailing slash. */
const char *shortener_base_url(const struct shortener *s);

/* The RPC methods.  user is the caller's id, "" or NULL when anonymous. */
int shortener_create(struct shortener *s, struct shortener_io *io,
                     const char *user, const Shortener__CreateUrlRequest *in,
                     cm_arena *a, Shortener__Url **out, char *err,
                     size_t errlen);
int shortener_get(struct shortener *s, struct shortener_io *io,
                  const char *user, const Shortener__GetUrlRequest *in,
                  cm_arena *a, Shortener__Url **out, char *err, size_t errlen);
/* A limit above SHORTENER_LIST_MAX is clamped to it. */
int shortener_list(struct shortener *s, struct shortener_io *io,
                   const char *user, const Shortener__ListUrlsRequest *in,
                   cm_arena *a, Shortener__ListUrlsResponse **out, char *err,
                   size_t errlen);
int shortener_delete(struct shortener *s, struct shortener_io *io,
                     const char *user, const Shortener__DeleteUrlRequest *in,
                     char *err, size_t errlen);
int shortener_resolve(struct shortener *s, struct shortener_io *io,
                      const Shortener__ResolveRequest *in, cm_arena *a,
                      Shortener__ResolveResponse **out, char *err,
                      size_t errlen);
/* Malformed entries (bad code, count <= 0 or absurd) are skipped. */
int shortener_record_clicks(struct shortener *s, struct shortener_io *io,
                            const Shortener__RecordClicksRequest *in, char *err,
                            size_t errlen);

/*
 * Background work, for the maintenance thread.  shortener_purge deletes one
 * batch (at most `batch`) of links expired more than grace_s ago; *purged
 * tells how many, so the caller repeats while it equals batch.
 * shortener_retry_invalidations re-sends shared-cache invalidations that
 * failed while the cache was down.
 */
int shortener_purge(struct shortener *s, struct shortener_io *io,
                    int64_t grace_s, size_t batch, size_t *purged);
void shortener_retry_invalidations(struct shortener *s,
                                   struct shortener_io *io);
/* Invalidations waiting for a retry (for health and tests). */
size_t shortener_pending_invalidations(struct shortener *s);

/* ---- exposed for tests ---- */

/* CM_OK or CM_INVALID_ARGUMENT with the reason. */
int shortener_check_url(const struct shortener *s, const char *url, char *err,
                        size_t errlen);
int shortener_check_alias(const char *alias, char *err, size_t errlen);
/* The code of id in sequential mode (SHORTENER_CODE_LEN chars + NUL). */
void shortener_seq_code(const struct shortener *s, uint64_t id,
                        char out[SHORTENER_CODE_LEN + 1]);
/* The code of (url, owner, salt) in hash mode.  owner NULL: anonymous. */
void shortener_hash_code(const char *url, const char *owner, unsigned salt,
                         char out[SHORTENER_CODE_LEN + 1]);

#endif
