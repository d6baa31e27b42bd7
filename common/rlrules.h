/*
 * Rate-limit rules and the matcher: which rules apply to a request, with
 * which limit and which counter key.
 *
 * The rate limiter decides requests against these rules; the gateway
 * matches them locally to skip the round trip for requests no rule
 * matches, and applies their failure policies when the rate limiter cannot
 * be asked.  Both must agree exactly on "which rules, which key", so the
 * matcher lives here, once, and so does the reader of the rules file
 * (rlrules_file.c): the gateway starts with the file's rules, so that it
 * knows every rule's failure policy before its first request, and then
 * holds the rate limiter's, rebuilt from its Rules RPC reply
 * (cm_rl_rules_from_pb).  The counters and the fallback limiter stay in
 * services/ratelimiter.  Pure code: no socket, no store.
 */
#ifndef CM_RLRULES_H
#define CM_RLRULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratelimiter.pb-c.h"

enum cm_rl_algo {
	CM_RL_TOKEN_BUCKET = 0,
	CM_RL_FIXED_WINDOW,
	CM_RL_SLIDING_LOG,
	CM_RL_SLIDING_WINDOW, /* the weighted two-window counter */
	CM_RL_GCRA,
};

enum cm_rl_keyby {
	CM_RL_KEY_IP = 0,
	CM_RL_KEY_USER,       /* token holders only; anonymous requests skip */
	CM_RL_KEY_ANON_IP,    /* anonymous callers only, by IP */
	CM_RL_KEY_USER_OR_IP, /* the user if any, else the IP */
	CM_RL_KEY_API_KEY,    /* callers with an API key only */
	CM_RL_KEY_GLOBAL,     /* one counter for everybody */
};

struct cm_rl_limit {
	int64_t limit;     /* requests per window */
	int64_t window_ms; /* > 0 */
	int64_t burst;     /* token bucket / GCRA capacity; 0 = limit */
	bool unlimited;
};

struct cm_rl_tier {
	char *name;
	struct cm_rl_limit lim;
};

struct cm_rl_rule {
	char *name;
	char *method; /* upper case; NULL: any */
	char *path;   /* glob: '*' within a segment, '**' across */
	enum cm_rl_keyby key;
	enum cm_rl_algo algo;
	struct cm_rl_limit lim;
	struct cm_rl_tier *tiers;
	size_t ntiers;
	bool shadow;      /* decide and count, never block */
	bool fail_closed; /* store down: refuse (503) instead of fallback */
};

/*
 * A rule set, immutable once built and shared by reference count: a reload
 * swaps in a new set while requests in progress finish with the old one.
 * All memory (rules, names, tiers, source) is owned by the set and released
 * by cm_rl_rules_free.
 */
struct cm_rl_rules {
	struct cm_rl_rule *v;
	size_t n;
	char *source;
	int64_t loaded_at; /* Unix seconds */
	uint64_t version;  /* hash of the rules text: equal on every replica */
	int refs;          /* guarded by the holder's lock */
};

/* "token_bucket", "ip", ...; "?" for a value outside the enum. */
const char *cm_rl_algo_name(enum cm_rl_algo a);
const char *cm_rl_keyby_name(enum cm_rl_keyby k);
/* The reverse: 0 and *out set for a known name, else -1 (*out untouched). */
int cm_rl_algo_parse(const char *name, enum cm_rl_algo *out);
int cm_rl_keyby_parse(const char *name, enum cm_rl_keyby *out);

/*
 * Whether s is acceptable as a rule name: 1-64 characters, no braces,
 * colons or spaces (it becomes part of a Redis Cluster hash tag).
 */
bool cm_rl_name_valid(const char *s);

/* Frees the set and everything in it, whatever its refs; NULL is a no-op. */
void cm_rl_rules_free(struct cm_rl_rules *rs);

/*
 * Builds a rule set from a ratelimiter.RateLimiter/Rules reply, so that a
 * caller matches requests exactly as the rate limiter that sent it does.
 * Source, loaded_at and version are copied from the reply; method "*" or
 * "" means any; a window is taken from window_ms, or from window_s when
 * window_ms is 0 (a reply from a limiter that predates the field).  Checked:
 * rule names (valid, unique), paths (start with '/'), key and algorithm
 * names (known), failure ("open" or "closed"), limits (limit >= 0, window
 * > 0, burst >= 0) except for unlimited tiers.
 *
 * On success returns 0 and *out is a new set with one reference, owned by
 * the caller (cm_rl_rules_free); resp is not retained.  On error returns
 * CM_INVALID_ARGUMENT with the reason in err and leaves *out untouched.
 */
int cm_rl_rules_from_pb(const Ratelimiter__RulesResponse *resp,
                        struct cm_rl_rules **out, char *err, size_t errlen);

/*
 * Parses a rules document (YAML or JSON; JSON is YAML; the format is
 * documented in deploy/ratelimit-rules.yaml).  An empty document means no
 * rules.  source names the document in errors and in the set.  The
 * version is a hash of the text, so every process that reads the same
 * file gets the same version.  On success returns 0 and *out is a new set
 * with one reference, owned by the caller (cm_rl_rules_free); on error
 * returns CM_INVALID_ARGUMENT with the reason (line numbers where the
 * parser has them) in err and leaves *out untouched.
 */
int cm_rl_rules_parse(const char *text, size_t len, const char *source,
                      struct cm_rl_rules **out, char *err, size_t errlen);
/* As cm_rl_rules_parse, reading the file at path (at most 16 MiB). */
int cm_rl_rules_load(const char *path, struct cm_rl_rules **out, char *err,
                     size_t errlen);

/* Where the container image installs the shipped rules. */
#define CM_RL_RULES_INSTALLED "/etc/backends/ratelimit-rules.yaml"
/* The shipped rules in the source tree (the build sets the full path). */
#ifndef CM_RL_RULES_SOURCE
#define CM_RL_RULES_SOURCE "deploy/ratelimit-rules.yaml"
#endif

/*
 * The rules file every process of the stack reads: RATELIMIT_RULES if
 * set, else CM_RL_RULES_INSTALLED if it is readable, else
 * CM_RL_RULES_SOURCE.  The string is not to be freed.
 */
const char *cm_rl_rules_path(void);

/* Glob match: '*' matches within a path segment, '**' anything. */
bool cm_rl_glob(const char *pat, const char *s);

/* What a request is, for matching.  NULL and "" both mean absent. */
struct cm_rl_request {
	const char *method, *path, *ip, *user, *tier, *api_key;
};

#define CM_RL_MAX_MATCH 16
#define CM_RL_KEY_MAX   256

/*
 * A rule that applies to a request, with its effective limit and key.  The
 * rule pointer borrows from the set, which must outlive the match.
 */
struct cm_rl_match {
	const struct cm_rl_rule *rule;
	struct cm_rl_limit lim;  /* the tier's, if the caller has one */
	char key[CM_RL_KEY_MAX]; /* the Redis key: rl:{<rule>:<kind>:<value>} */
};

/*
 * The rules of rs (NULL: none) that apply to rq, at most max of them, in
 * file order, written to out; returns the number written.  A rule keyed by
 * something the request lacks (user, API key), an anon_ip rule for a token
 * holder, and a rule whose limit for the caller's tier is unlimited do not
 * apply.  A missing IP counts as "unknown"; the effective burst is never
 * 0 (it defaults to the limit).
 */
size_t cm_rl_match(const struct cm_rl_rules *rs, const struct cm_rl_request *rq,
                   struct cm_rl_match *out, size_t max);

/*
 * The Redis key for a rule and a key value, as cm_rl_match builds it
 * (truncated to outlen): kind is "ip", "user", "apikey" or "all".
 */
void cm_rl_key(char *out, size_t outlen, const struct cm_rl_rule *r,
               const char *kind, const char *value);

#endif
