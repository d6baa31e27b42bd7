/*
 * The rate limiter's domain: rules (parsed from YAML or JSON), matching a
 * request against them, and the in-process pieces that work without Redis
 * (the fallback limiter and the cache of keys known to be over limit).
 * No socket, Redis or NNG header is included here: main.c and
 * store_redis.c wire it to the world, ratelimiter_test.c drives it with
 * plain data.
 */
#ifndef RATELIMITER_H
#define RATELIMITER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum rl_algo {
	RL_TOKEN_BUCKET = 0,
	RL_FIXED_WINDOW,
	RL_SLIDING_LOG,
	RL_SLIDING_WINDOW, /* the weighted two-window counter */
	RL_GCRA,
};

enum rl_keyby {
	RL_KEY_IP = 0,
	RL_KEY_USER,       /* token holders only; anonymous requests skip */
	RL_KEY_ANON_IP,    /* anonymous callers only, by IP */
	RL_KEY_USER_OR_IP, /* the user if any, else the IP */
	RL_KEY_API_KEY,    /* callers with an API key only */
	RL_KEY_GLOBAL,     /* one counter for everybody */
};

struct rl_limit {
	int64_t limit;     /* requests per window */
	int64_t window_ms; /* > 0 */
	int64_t burst;     /* token bucket / GCRA capacity; 0 = limit */
	bool unlimited;
};

struct rl_tier {
	char *name;
	struct rl_limit lim;
};

struct rl_rule {
	char *name;
	char *method; /* NULL: any */
	char *path;   /* glob: '*' within a segment, '**' across */
	enum rl_keyby key;
	enum rl_algo algo;
	struct rl_limit lim;
	struct rl_tier *tiers;
	size_t ntiers;
	bool shadow;      /* decide and count, never block */
	bool fail_closed; /* store down: refuse (503) instead of fallback */
};

/*
 * A parsed rule set, immutable once loaded and shared by reference count:
 * a reload swaps in a new set while requests in progress finish with the
 * old one.
 */
struct rl_rules {
	struct rl_rule *v;
	size_t n;
	char *source;
	int64_t loaded_at; /* Unix seconds */
	uint64_t version;  /* hash of the rules text: equal on every replica */
	int refs;          /* guarded by the holder's lock */
};

const char *rl_algo_name(enum rl_algo a);
const char *rl_keyby_name(enum rl_keyby k);

/*
 * Parses a rules document (YAML or JSON; JSON is YAML).  An empty
 * document means no rules.  On success *out is a new set with one
 * reference (rl_rules_free drops the set); on error returns -1 with the
 * reason (line numbers where the parser has them) in err.
 */
int rl_rules_parse(const char *text, size_t len, const char *source,
                   struct rl_rules **out, char *err, size_t errlen);
/* As rl_rules_parse, reading the file at path. */
int rl_rules_load(const char *path, struct rl_rules **out, char *err,
                  size_t errlen);
void rl_rules_free(struct rl_rules *r);

/* Glob match: '*' matches within a path segment, '**' anything. */
bool rl_glob(const char *pat, const char *s);

/* What a request is, for matching. */
struct rl_request {
	const char *method, *path, *ip, *user, *tier, *api_key;
};

#define RL_MAX_MATCH 16
#define RL_KEY_MAX   256

/* A rule that applies to a request, with its effective limit and key. */
struct rl_match {
	const struct rl_rule *rule;
	struct rl_limit lim;  /* the tier's, if the caller has one */
	char key[RL_KEY_MAX]; /* the Redis key: rl:{<rule>:<kind>:<value>} */
};

/*
 * The rules that apply to rq (at most max), in file order.  A rule keyed by
 * something the request lacks (user, API key) or whose tier is unlimited
 * does not apply.  Returns the number written.
 */
size_t rl_match(const struct rl_rules *rs, const struct rl_request *rq,
                struct rl_match *out, size_t max);

/* The Redis key for a rule and a key value (as rl_match builds it). */
void rl_key(char *out, size_t outlen, const struct rl_rule *r, const char *kind,
            const char *value);

/* One rule's verdict. */
struct rl_verdict {
	bool allowed;
	int64_t remaining;
	int64_t reset_ms;
	int64_t retry_ms; /* when denied: until a retry may pass */
};

/*
 * The in-process fallback limiter, used while Redis is away: a token bucket
 * per key (capacity = burst or limit, refilled at limit per window), in a
 * bounded table (full: the table is cleared, a rough limit stays rough).
 * Like the Redis script, a request is admitted only if every rule allows
 * it, and only then does it spend.  Thread-safe.
 */
struct rl_fallback;
struct rl_fallback *rl_fallback_new(size_t max_keys);
void rl_fallback_free(struct rl_fallback *f);
/* Decides n matches at now_ms (monotonic); v[i] gets each verdict. */
bool rl_fallback_check(struct rl_fallback *f, const struct rl_match *m,
                       size_t n, int64_t cost, int64_t now_ms,
                       struct rl_verdict *v);

/*
 * Keys known to be over limit until a given time, so that a flood is
 * refused without asking Redis each time.  Thread-safe, bounded.
 */
struct rl_hot;
struct rl_hot *rl_hot_new(size_t max_keys);
void rl_hot_free(struct rl_hot *h);
void rl_hot_put(struct rl_hot *h, const char *key, int64_t until_ms);
/* Milliseconds the key stays over limit at now_ms, or 0. */
int64_t rl_hot_get(struct rl_hot *h, const char *key, int64_t now_ms);

#endif
