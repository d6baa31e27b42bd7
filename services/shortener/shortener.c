/*
 * The URL shortener's domain.
 *
 * Codes.  A custom alias is its own code.  Otherwise the code comes from
 * one of two generators, chosen by configuration:
 *
 *   sequential: ids come from the store in leased blocks (a PostgreSQL
 *     sequence stepping by the block size, so no two processes ever hold
 *     the same id); this process hands them out under a mutex and leases a
 *     new block when one runs out.  An id passes through a keyed 40-bit
 *     permutation (cm_idperm) before base62, so consecutive links get
 *     unrelated codes and the space cannot be walked by counting; 62^7 >
 *     2^40, so every code is 7 characters.
 *   hash: the first 42 bits of SHA-256(long_url [, owner] [, salt]) taken
 *     mod 62^7, in base62.  Creating the same URL twice (same owner, no
 *     expiry) gives the same link back; a code taken by a different link
 *     is a collision, and the next salt is tried, a bounded number of
 *     times.
 *
 * Either way the store's insert is the arbiter: it fails with
 * CM_ALREADY_EXISTS when the code is taken (a PRIMARY KEY and ON CONFLICT
 * DO NOTHING in PostgreSQL), so of two concurrent creates of one alias
 * exactly one wins, and a generated code that happens to equal an older
 * custom alias is simply skipped, as is one equal to an older link's code
 * generated under another key (SHORTENER_ID_KEY changed: the permutation
 * is a bijection for one key only; codes are stored, so old links keep
 * theirs).  Every row gets a leased id, whatever the mode: it breaks ties
 * when listing a user's links.
 *
 * Redirects (Resolve) read through the cache, which does every level
 * itself: production's is the multi-level engine of common/cache.h (L1 in
 * process, L2 Redis, single-flight, leases, stale-if-error, negative
 * caching, invalidation of every instance's L1), and the store's lookup is
 * its loader.  Without a cache (SHORTENER_CACHE=off) every redirect reads
 * the store.  Whether a link has expired is decided at read time from its
 * expires_at, so no level can serve an expired link as live; an expired
 * link is cached only briefly.  The resolve path never writes to the
 * store.
 *
 * A delete drops the code from the cache, which leaves a tombstone (a fill
 * racing the delete cannot put the link back) and tells every instance; an
 * invalidation that cannot be sent (Redis down) is kept and retried by the
 * maintenance thread.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "base62.h"
#include "idperm.h"
#include "log.h"
#include "metrics.h"
#include "shortener.h"
#include "status.h"
#include "util.h"

#define PENDING_MAX 4096
/* 62^7: the number of 7-character base62 codes. */
#define CODE_SPACE 3521614606208ULL

struct pending {
	char code[SHORTENER_ALIAS_MAX + 1];
	int tomb_ttl_s;
};

struct shortener {
	enum shortener_code_mode mode;
	cm_idperm perm;
	char *base;          /* PUBLIC_BASE_URL without '/' */
	char base_host[256]; /* lower case, no final dot */
	int base_port;
	int expired_ttl_s, cache_ttl_s, tombstone_ttl_s;
	int64_t (*now)(void);

	pthread_mutex_t id_mu; /* the leased block: [id_next, id_end) */
	uint64_t id_next, id_end;

	pthread_mutex_t pending_mu;
	struct pending *pending;
	size_t npending;

	cm_counter *res_cache, *res_store, *collisions;
};

static const char *const reserved_words[] = {
    "api",   "healthz", "metrics", "ws",      "static",
    "admin", "hls",     "upload",  "uploads", "v1"};

/* ---- URLs ---- */

struct url_parts {
	const char *host;
	size_t hostlen;
	int port; /* effective: explicit, or the scheme's */
};

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	return (-1);
}

/* A registered name: dot-separated labels of [A-Za-z0-9_-]. */
static bool
host_name_ok(const char *h, size_t len)
{
	size_t label = 0;

	if (len > 0 && h[len - 1] == '.')
		len--; /* one final dot is allowed ("example.com.") */
	if (len == 0 || len > 253)
		return (false);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char) h[i];

		if (c == '.') {
			if (label == 0)
				return (false);
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_')
			return (false);
		if (++label > 63)
			return (false);
	}
	return (label > 0);
}

/* An IPv6 literal between brackets (contents only): hex, ':' and '.'. */
static bool
host_ipv6_ok(const char *h, size_t len)
{
	bool colon = false;

	if (len < 2 || len > 45)
		return (false);
	for (size_t i = 0; i < len; i++) {
		if (h[i] == ':')
			colon = true;
		else if (hexval((unsigned char) h[i]) < 0 && h[i] != '.')
			return (false);
	}
	return (colon);
}

/*
 * Parses an absolute http(s) URL: scheme://host[:port][/path][?q][#f].
 * Checks every byte (no whitespace, control, non-ASCII or the characters
 * browsers treat specially: \ " < >), percent escapes, the host and the
 * port, and refuses userinfo.  On failure *why says what is wrong.
 */
static bool
url_parse(const char *u, struct url_parts *p, const char **why)
{
	const char *auth, *aend, *hend, *end;
	size_t len = strlen(u);
	long port;

	if (len == 0) {
		*why = "is required";
		return (false);
	}
	if (len > SHORTENER_URL_MAX) {
		*why = "is longer than 2048 bytes";
		return (false);
	}
	end = u + len;
	if (len > 7 && strncasecmp(u, "http://", 7) == 0) {
		auth = u + 7;
		p->port = 80;
	} else if (len > 8 && strncasecmp(u, "https://", 8) == 0) {
		auth = u + 8;
		p->port = 443;
	} else {
		*why = "must be an absolute http:// or https:// URL";
		return (false);
	}
	for (const char *c = u; c < end; c++) {
		unsigned char b = (unsigned char) *c;

		if (b <= 0x20 || b >= 0x7f) {
			*why = "must not contain spaces, control or non-ASCII "
			       "characters (percent-encode them)";
			return (false);
		}
		if (b == '\\' || b == '"' || b == '<' || b == '>') {
			*why = "must not contain \\, \", < or >";
			return (false);
		}
		if (b == '%' &&
		    (c + 2 >= end || hexval(c[1]) < 0 || hexval(c[2]) < 0)) {
			*why = "has a malformed percent escape";
			return (false);
		}
	}
	aend = auth + strcspn(auth, "/?#");
	if (memchr(auth, '@', (size_t) (aend - auth)) != NULL) {
		*why = "must not contain user:password@";
		return (false);
	}
	if (*auth == '[') {
		hend = memchr(auth, ']', (size_t) (aend - auth));
		if (hend == NULL ||
		    !host_ipv6_ok(auth + 1, (size_t) (hend - auth - 1))) {
			*why = "has an invalid host";
			return (false);
		}
		p->host = auth;
		p->hostlen = (size_t) (hend + 1 - auth);
		hend++;
		if (hend != aend && *hend != ':') {
			*why = "has an invalid host";
			return (false);
		}
	} else {
		hend = memchr(auth, ':', (size_t) (aend - auth));
		if (hend == NULL)
			hend = aend;
		p->host = auth;
		p->hostlen = (size_t) (hend - auth);
		if (p->hostlen == 0) {
			*why = "has no host";
			return (false);
		}
		if (!host_name_ok(auth, p->hostlen)) {
			*why = "has an invalid host";
			return (false);
		}
	}
	if (hend < aend) { /* *hend == ':' */
		port = 0;
		if (aend - hend < 2 || aend - hend > 6) {
			*why = "has an invalid port";
			return (false);
		}
		for (const char *c = hend + 1; c < aend; c++) {
			if (*c < '0' || *c > '9') {
				*why = "has an invalid port";
				return (false);
			}
			port = port * 10 + (*c - '0');
		}
		if (port < 1 || port > 65535) {
			*why = "has an invalid port";
			return (false);
		}
		p->port = (int) port;
	}
	return (true);
}

/* Lower-cases a host without its final dot into out (outlen bytes). */
static void
host_canon(const char *h, size_t len, char *out, size_t outlen)
{
	size_t i;

	if (len > 0 && h[len - 1] == '.')
		len--;
	for (i = 0; i < len && i + 1 < outlen; i++)
		out[i] = (char) tolower((unsigned char) h[i]);
	out[i] = '\0';
}

int
shortener_check_url(const struct shortener *s, const char *url, char *err,
                    size_t errlen)
{
	struct url_parts p;
	const char *why;
	char host[256];

	if (!url_parse(url, &p, &why)) {
		snprintf(err, errlen, "long_url %s", why);
		return (CM_INVALID_ARGUMENT);
	}
	host_canon(p.host, p.hostlen, host, sizeof(host));
	if (p.port == s->base_port && strcmp(host, s->base_host) == 0) {
		snprintf(err, errlen,
		         "long_url must not point at this shortener (%s)",
		         s->base);
		return (CM_INVALID_ARGUMENT);
	}
	return (CM_OK);
}

/* ---- codes ---- */

static bool
code_char_ok(unsigned char c)
{
	return (isalnum(c) || c == '_' || c == '-');
}

/* A code as it can be looked up: 1..32 of [A-Za-z0-9_-]. */
static bool
code_ok(const char *code)
{
	size_t n;

	if (code == NULL)
		return (false);
	for (n = 0; code[n] != '\0'; n++)
		if (n >= SHORTENER_ALIAS_MAX ||
		    !code_char_ok((unsigned char) code[n]))
			return (false);
	return (n > 0);
}

int
shortener_check_alias(const char *alias, char *err, size_t errlen)
{
	size_t n = strlen(alias);

	if (n < SHORTENER_ALIAS_MIN || n > SHORTENER_ALIAS_MAX) {
		snprintf(err, errlen,
		         "custom_alias must be 3 to 32 characters long");
		return (CM_INVALID_ARGUMENT);
	}
	for (size_t i = 0; i < n; i++)
		if (!code_char_ok((unsigned char) alias[i])) {
			snprintf(
			    err, errlen,
			    "custom_alias may only contain A-Z, a-z, 0-9, _ "
			    "and -");
			return (CM_INVALID_ARGUMENT);
		}
	for (size_t i = 0; i < CM_ARRAY_LEN(reserved_words); i++)
		if (strcasecmp(alias, reserved_words[i]) == 0) {
			snprintf(err, errlen,
			         "custom_alias \"%s\" is a reserved word",
			         alias);
			return (CM_INVALID_ARGUMENT);
		}
	return (CM_OK);
}

void
shortener_seq_code(const struct shortener *s, uint64_t id,
                   char out[SHORTENER_CODE_LEN + 1])
{
	uint64_t v = cm_idperm_encrypt(&s->perm, id);

	if (cm_base62_encode(v, SHORTENER_CODE_LEN, out,
	                     SHORTENER_CODE_LEN + 1) != SHORTENER_CODE_LEN)
		fatalx("event=seq_code id=%" PRIu64 " msg=\"does not fit\"",
		       id);
}

void
shortener_hash_code(const char *url, const char *owner, unsigned salt,
                    char out[SHORTENER_CODE_LEN + 1])
{
	EVP_MD_CTX *md;
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen;
	char saltbuf[16];
	uint64_t v = 0;

	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		fatalx("event=sha256 msg=\"cannot initialise\"");
	EVP_DigestUpdate(md, url, strlen(url));
	if (owner != NULL && *owner != '\0') {
		EVP_DigestUpdate(md, "\0", 1);
		EVP_DigestUpdate(md, owner, strlen(owner));
	}
	if (salt > 0) {
		snprintf(saltbuf, sizeof(saltbuf), "\001%u", salt);
		EVP_DigestUpdate(md, saltbuf, strlen(saltbuf));
	}
	EVP_DigestFinal_ex(md, d, &dlen);
	EVP_MD_CTX_free(md);
	for (int i = 0; i < 6; i++)
		v = v << 8 | d[i];
	v >>= 6; /* 48 -> 42 bits */
	cm_base62_encode(v % CODE_SPACE, SHORTENER_CODE_LEN, out,
	                 SHORTENER_CODE_LEN + 1);
}

/* Takes the next id of the leased block, leasing a new block if needed. */
static int
next_id(struct shortener *s, struct shortener_io *io, int64_t *id, char *err,
        size_t errlen)
{
	uint64_t first, count, v;
	int rv;

	pthread_mutex_lock(&s->id_mu);
	if (s->id_next >= s->id_end) {
		rv = io->store.ops->lease_ids(io->store.impl, &first, &count);
		if (rv != CM_OK || count == 0 || first == 0) {
			pthread_mutex_unlock(&s->id_mu);
			snprintf(err, errlen, "cannot allocate an id: %s",
			         rv == CM_UNAVAILABLE ? "database unavailable"
			                              : "store error");
			return (rv == CM_OK ? CM_INTERNAL : rv);
		}
		s->id_next = first;
		s->id_end = first + count;
	}
	v = s->id_next++;
	pthread_mutex_unlock(&s->id_mu);
	if (v >= (UINT64_C(1) << SHORTENER_ID_BITS)) {
		snprintf(err, errlen, "the id space is exhausted");
		return (CM_INTERNAL);
	}
	*id = (int64_t) v;
	return (CM_OK);
}

/* ---- invalidation ---- */

/* Keeps an invalidation that could not be sent, for the retry. */
static void
pending_add(struct shortener *s, const char *code, int tomb_ttl_s)
{
	size_t i;

	pthread_mutex_lock(&s->pending_mu);
	for (i = 0; i < s->npending; i++)
		if (strcmp(s->pending[i].code, code) == 0)
			break;
	if (i == s->npending) {
		if (s->npending == PENDING_MAX) {
			pthread_mutex_unlock(&s->pending_mu);
			log_warnx("event=invalidation_dropped code=%s", code);
			return;
		}
		s->npending++;
	}
	cm_strlcpy(s->pending[i].code, code, sizeof(s->pending[i].code));
	s->pending[i].tomb_ttl_s = tomb_ttl_s;
	pthread_mutex_unlock(&s->pending_mu);
}

/* Drops code from the cache, which tells every instance. */
static void
invalidate(struct shortener *s, struct shortener_io *io, const char *code,
           int tomb_ttl_s)
{
	if (io->cache.ops == NULL)
		return;
	if (io->cache.ops->invalidate(io->cache.impl, code, tomb_ttl_s) !=
	    CM_OK) {
		log_warnx("event=invalidation_deferred code=%s", code);
		pending_add(s, code, tomb_ttl_s);
	}
}

void
shortener_retry_invalidations(struct shortener *s, struct shortener_io *io)
{
	struct pending p;

	if (io->cache.ops == NULL)
		return;
	for (;;) {
		pthread_mutex_lock(&s->pending_mu);
		if (s->npending == 0) {
			pthread_mutex_unlock(&s->pending_mu);
			return;
		}
		p = s->pending[--s->npending];
		pthread_mutex_unlock(&s->pending_mu);
		if (io->cache.ops->invalidate(io->cache.impl, p.code,
		                              p.tomb_ttl_s) != CM_OK) {
			pending_add(s, p.code, p.tomb_ttl_s);
			return;
		}
		log_info("event=invalidation_sent code=%s", p.code);
	}
}

size_t
shortener_pending_invalidations(struct shortener *s)
{
	size_t n;

	pthread_mutex_lock(&s->pending_mu);
	n = s->npending;
	pthread_mutex_unlock(&s->pending_mu);
	return (n);
}

/* ---- life cycle ---- */

static int64_t
wall_now(void)
{
	return (cm_now_s());
}

int
shortener_new(struct shortener **out, const struct shortener_config *c,
              char *err, size_t errlen)
{
	struct shortener *s;
	struct url_parts p;
	const char *why;
	size_t n;

	if (c->public_base_url == NULL ||
	    !url_parse(c->public_base_url, &p, &why)) {
		snprintf(err, errlen, "PUBLIC_BASE_URL %s",
		         c->public_base_url == NULL ? "is required" : why);
		return (CM_INVALID_ARGUMENT);
	}
	if (strpbrk(c->public_base_url, "?#") != NULL) {
		snprintf(err, errlen, "PUBLIC_BASE_URL must not have a query");
		return (CM_INVALID_ARGUMENT);
	}
	if (c->id_key == NULL || *c->id_key == '\0') {
		snprintf(err, errlen, "the id key must not be empty");
		return (CM_INVALID_ARGUMENT);
	}
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->base = strdup(c->public_base_url)) == NULL ||
	    (s->pending = calloc(PENDING_MAX, sizeof(*s->pending))) == NULL)
		fatal("event=shortener_new");
	for (n = strlen(s->base); n > 0 && s->base[n - 1] == '/'; n--)
		s->base[n - 1] = '\0';
	host_canon(p.host, p.hostlen, s->base_host, sizeof(s->base_host));
	s->base_port = p.port;
	if (cm_idperm_init(&s->perm, c->id_key, SHORTENER_ID_BITS) != 0)
		fatalx(
		    "event=shortener_new msg=\"cannot key the permutation\"");
	s->mode = c->mode;
	s->expired_ttl_s = c->expired_ttl_s > 0 ? c->expired_ttl_s : 3;
	s->cache_ttl_s = c->cache_ttl_s > 0 ? c->cache_ttl_s : 3600;
	s->tombstone_ttl_s = c->tombstone_ttl_s > 0 ? c->tombstone_ttl_s : 300;
	s->now = c->now != NULL ? c->now : wall_now;
	pthread_mutex_init(&s->id_mu, NULL);
	pthread_mutex_init(&s->pending_mu, NULL);
	s->res_cache =
	    cm_counter_get("shortener_resolve_source_total", "source=\"cache\"",
	                   "Resolve answers by the tier that had them");
	s->res_store = cm_counter_get(
	    "shortener_resolve_source_total", "source=\"postgres\"",
	    "Resolve answers by the tier that had them");
	s->collisions =
	    cm_counter_get("shortener_code_collisions_total", "",
	                   "Generated codes that were already taken");
	*out = s;
	return (CM_OK);
}

void
shortener_free(struct shortener *s)
{
	if (s == NULL)
		return;
	pthread_mutex_destroy(&s->id_mu);
	pthread_mutex_destroy(&s->pending_mu);
	free(s->pending);
	free(s->base);
	free(s);
}

const char *
shortener_base_url(const struct shortener *s)
{
	return (s->base);
}

/* ---- methods ---- */

static bool
anonymous(const char *user)
{
	return (user == NULL || *user == '\0');
}

static int
store_error(int rv, char *err, size_t errlen)
{
	if (rv == CM_UNAVAILABLE)
		snprintf(err, errlen, "database unavailable");
	else
		snprintf(err, errlen, "database error");
	return (rv == CM_UNAVAILABLE ? CM_UNAVAILABLE : CM_INTERNAL);
}

/* The reply for a link; everything is copied into the arena. */
static Shortener__Url *
url_reply(struct shortener *s, cm_arena *a, const struct shortener_link *l)
{
	Shortener__Url *u = cm_arena_alloc(a, sizeof(*u));

	shortener__url__init(u);
	u->code = cm_arena_strdup(a, l->code);
	u->short_url = cm_arena_printf(a, "%s/%s", s->base, l->code);
	u->long_url = cm_arena_strdup(a, l->long_url);
	u->created_at = l->created_at;
	u->expires_at = l->expires_at;
	u->clicks = l->clicks;
	return (u);
}

/* Same link for hash-mode deduplication: same URL and owner, no expiry. */
static bool
same_link(const struct shortener_link *a, const struct shortener_link *b)
{
	const char *oa = a->owner != NULL ? a->owner : "";
	const char *ob = b->owner != NULL ? b->owner : "";

	return (strcmp(a->long_url, b->long_url) == 0 && strcmp(oa, ob) == 0 &&
	        a->expires_at == 0 && b->expires_at == 0);
}

/*
 * Inserts l under a generated code, trying again on a collision: with the
 * next id (sequential) or the next salt (hash).  In hash mode, finding the
 * same link already there returns it in *existing instead.
 */
static int
insert_generated(struct shortener *s, struct shortener_io *io,
                 struct shortener_link *l, char *code, cm_arena *a,
                 struct shortener_link *existing, bool *found, char *err,
                 size_t errlen)
{
	int rv;

	*found = false;
	for (unsigned i = 0;; i++) {
		if (s->mode == SHORTENER_CODE_SEQUENTIAL) {
			if (i == SHORTENER_SEQ_ATTEMPTS)
				break;
			if (i > 0 &&
			    (rv = next_id(s, io, &l->id, err, errlen)) != CM_OK)
				return (rv);
			shortener_seq_code(s, (uint64_t) l->id, code);
		} else {
			if (i == SHORTENER_HASH_ATTEMPTS)
				break;
			shortener_hash_code(l->long_url, l->owner, i, code);
		}
		rv = io->store.ops->insert(io->store.impl, l);
		if (rv != CM_ALREADY_EXISTS)
			return (rv == CM_OK ? rv
			                    : store_error(rv, err, errlen));
		if (s->mode == SHORTENER_CODE_HASH) {
			rv = io->store.ops->get(io->store.impl, code, a,
			                        existing);
			if (rv == CM_OK && same_link(l, existing)) {
				*found = true;
				return (CM_OK);
			}
			if (rv != CM_OK && rv != CM_NOT_FOUND)
				return (store_error(rv, err, errlen));
		}
		cm_counter_add(s->collisions, 1);
		log_info("event=code_collision code=%s attempt=%u", code, i);
	}
	snprintf(err, errlen, "could not find a free code");
	return (CM_INTERNAL);
}

int
shortener_create(struct shortener *s, struct shortener_io *io, const char *user,
                 const Shortener__CreateUrlRequest *in, cm_arena *a,
                 Shortener__Url **out, char *err, size_t errlen)
{
	struct shortener_link l, existing;
	const char *url = in->long_url != NULL ? in->long_url : "";
	const char *alias = in->custom_alias != NULL ? in->custom_alias : "";
	char code[SHORTENER_ALIAS_MAX + 1];
	bool found = false;
	int64_t now = s->now();
	int rv;

	if ((rv = shortener_check_url(s, url, err, errlen)) != CM_OK)
		return (rv);
	if (*alias != '\0' &&
	    (rv = shortener_check_alias(alias, err, errlen)) != CM_OK)
		return (rv);
	if (in->expires_in < 0 || in->expires_in > SHORTENER_EXPIRES_MAX) {
		snprintf(
		    err, errlen,
		    "expires_in must be 0 (never) to %lld seconds (10 years)",
		    (long long) SHORTENER_EXPIRES_MAX);
		return (CM_INVALID_ARGUMENT);
	}
	memset(&l, 0, sizeof(l));
	l.code = code;
	l.long_url = url;
	l.owner = anonymous(user) ? NULL : user;
	l.created_at = now;
	l.expires_at = in->expires_in > 0 ? now + in->expires_in : 0;
	if ((rv = next_id(s, io, &l.id, err, errlen)) != CM_OK)
		return (rv);

	if (*alias != '\0') {
		cm_strlcpy(code, alias, sizeof(code));
		rv = io->store.ops->insert(io->store.impl, &l);
		if (rv == CM_ALREADY_EXISTS) {
			snprintf(err, errlen, "custom_alias \"%s\" is taken",
			         alias);
			return (rv);
		}
		if (rv != CM_OK)
			return (store_error(rv, err, errlen));
		/*
		 * Someone may have asked for this alias before it existed:
		 * drop negative entries and tombstones everywhere.
		 */
		invalidate(s, io, code, 0);
	} else {
		rv = insert_generated(s, io, &l, code, a, &existing, &found,
		                      err, errlen);
		if (rv != CM_OK)
			return (rv);
	}
	*out = url_reply(s, a, found ? &existing : &l);
	return (CM_OK);
}

/* Loads a link the caller may read: its owner's, or anonymous. */
static int
load_owned(struct shortener_io *io, const char *user, const char *code,
           bool delete, cm_arena *a, struct shortener_link *l, char *err,
           size_t errlen)
{
	int rv;

	if (!code_ok(code)) {
		snprintf(err, errlen, "no such link");
		return (CM_NOT_FOUND);
	}
	rv = io->store.ops->get(io->store.impl, code, a, l);
	if (rv == CM_NOT_FOUND) {
		snprintf(err, errlen, "no such link");
		return (rv);
	}
	if (rv != CM_OK)
		return (store_error(rv, err, errlen));
	if (l->owner == NULL || *l->owner == '\0') {
		if (!delete)
			return (CM_OK); /* anonymous links are public */
		snprintf(err, errlen, "anonymous links cannot be deleted");
		return (CM_PERMISSION_DENIED);
	}
	if (anonymous(user)) {
		snprintf(err, errlen, "this link belongs to a user: sign in");
		return (CM_UNAUTHENTICATED);
	}
	if (strcmp(user, l->owner) != 0) {
		snprintf(err, errlen, "this link belongs to another user");
		return (CM_PERMISSION_DENIED);
	}
	return (CM_OK);
}

int
shortener_get(struct shortener *s, struct shortener_io *io, const char *user,
              const Shortener__GetUrlRequest *in, cm_arena *a,
              Shortener__Url **out, char *err, size_t errlen)
{
	struct shortener_link l;
	int rv;

	if ((rv = load_owned(io, user, in->code, false, a, &l, err, errlen)) !=
	    CM_OK)
		return (rv);
	*out = url_reply(s, a, &l);
	return (CM_OK);
}

/* Cursor: base62(created_at) "." base62(id), of the last row returned. */
static bool
cursor_parse(const char *c, struct shortener_cursor *out)
{
	const char *dot = strchr(c, '.');
	uint64_t t, id;

	if (dot == NULL || dot == c || dot[1] == '\0' || strlen(c) > 32 ||
	    cm_base62_decode(c, (size_t) (dot - c), &t) != 0 ||
	    cm_base62_decode(dot + 1, strlen(dot + 1), &id) != 0 ||
	    t > INT64_MAX || id > INT64_MAX)
		return (false);
	out->created_at = (int64_t) t;
	out->id = (int64_t) id;
	return (true);
}

static char *
cursor_make(cm_arena *a, const struct shortener_link *l)
{
	char t[16], id[16];

	cm_base62_encode((uint64_t) l->created_at, 1, t, sizeof(t));
	cm_base62_encode((uint64_t) l->id, 1, id, sizeof(id));
	return (cm_arena_printf(a, "%s.%s", t, id));
}

int
shortener_list(struct shortener *s, struct shortener_io *io, const char *user,
               const Shortener__ListUrlsRequest *in, cm_arena *a,
               Shortener__ListUrlsResponse **out, char *err, size_t errlen)
{
	Shortener__ListUrlsResponse *r;
	struct shortener_cursor cur;
	struct shortener_link *rows;
	size_t limit, n;
	int rv;

	if (anonymous(user)) {
		snprintf(err, errlen, "sign in to list your links");
		return (CM_UNAUTHENTICATED);
	}
	if (in->limit < 0) {
		snprintf(err, errlen, "limit must be 1 to %d",
		         SHORTENER_LIST_MAX);
		return (CM_INVALID_ARGUMENT);
	}
	limit = in->limit == 0                   ? SHORTENER_LIST_DEFAULT
	        : in->limit > SHORTENER_LIST_MAX ? SHORTENER_LIST_MAX
	                                         : (size_t) in->limit;
	if (in->cursor != NULL && *in->cursor != '\0' &&
	    !cursor_parse(in->cursor, &cur)) {
		snprintf(err, errlen, "invalid cursor");
		return (CM_INVALID_ARGUMENT);
	}
	/* One row more than asked tells whether there is a next page. */
	rows = cm_arena_alloc(a, (limit + 1) * sizeof(*rows));
	rv = io->store.ops->list(
	    io->store.impl, user,
	    in->cursor != NULL && *in->cursor != '\0' ? &cur : NULL, limit + 1,
	    a, rows, &n);
	if (rv != CM_OK)
		return (store_error(rv, err, errlen));
	r = cm_arena_alloc(a, sizeof(*r));
	shortener__list_urls_response__init(r);
	r->next_cursor = cm_pbstr("");
	if (n > limit) {
		n = limit;
		r->next_cursor = cursor_make(a, &rows[n - 1]);
	}
	r->n_urls = n;
	r->urls = cm_arena_alloc(a, (n + 1) * sizeof(*r->urls));
	for (size_t i = 0; i < n; i++)
		r->urls[i] = url_reply(s, a, &rows[i]);
	*out = r;
	return (CM_OK);
}

int
shortener_delete(struct shortener *s, struct shortener_io *io, const char *user,
                 const Shortener__DeleteUrlRequest *in, char *err,
                 size_t errlen)
{
	struct shortener_link l;
	cm_arena a;
	int rv;

	if (anonymous(user)) {
		snprintf(err, errlen, "sign in to delete links");
		return (CM_UNAUTHENTICATED);
	}
	cm_arena_init(&a);
	rv = load_owned(io, user, in->code, true, &a, &l, err, errlen);
	cm_arena_fini(&a);
	if (rv != CM_OK)
		return (rv);
	rv = io->store.ops->remove(io->store.impl, in->code, user);
	if (rv == CM_NOT_FOUND) {
		snprintf(err, errlen, "no such link");
		return (rv);
	}
	if (rv != CM_OK)
		return (store_error(rv, err, errlen));
	invalidate(s, io, in->code, s->tombstone_ttl_s);
	return (CM_OK);
}

static Shortener__ResolveResponse *
resolve_reply(struct shortener *s, cm_arena *a, const char *url, size_t len,
              int64_t expires_at)
{
	Shortener__ResolveResponse *r = cm_arena_alloc(a, sizeof(*r));

	shortener__resolve_response__init(r);
	r->long_url = cm_arena_strndup(a, url, len);
	r->expires_at = expires_at;
	r->expired = expires_at != 0 && expires_at <= s->now();
	return (r);
}

/* The loader behind the cache: the store, counted. */
struct resolve_load {
	struct shortener *s;
	struct shortener_io *io;
	bool loaded;
};

static int
resolve_load(void *arg, const char *code, cm_arena *a,
             struct shortener_cached *out, int *ttl_s)
{
	struct resolve_load *rl = arg;
	struct shortener_link l;
	int64_t now = rl->s->now(), ttl = rl->s->cache_ttl_s;
	int rv;

	rv = rl->io->store.ops->get(rl->io->store.impl, code, a, &l);
	if (rv != CM_OK && rv != CM_NOT_FOUND)
		return (rv);
	cm_counter_add(rl->s->res_store, 1);
	rl->loaded = true;
	if (rv == CM_NOT_FOUND)
		return (rv);
	/* An expired link is cached as such, briefly: reads report it. */
	if (l.expires_at != 0 && l.expires_at <= now)
		ttl = rl->s->expired_ttl_s;
	else if (l.expires_at != 0 && l.expires_at - now < ttl)
		ttl = l.expires_at - now;
	out->long_url = l.long_url;
	out->expires_at = l.expires_at;
	*ttl_s = (int) ttl;
	return (CM_OK);
}

int
shortener_resolve(struct shortener *s, struct shortener_io *io,
                  const Shortener__ResolveRequest *in, cm_arena *a,
                  Shortener__ResolveResponse **out, char *err, size_t errlen)
{
	struct resolve_load rl = {.s = s, .io = io};
	struct shortener_cached c;
	int ttl_s, rv;

	if (!code_ok(in->code)) {
		snprintf(err, errlen, "no such link");
		return (CM_NOT_FOUND);
	}
	if (io->cache.ops != NULL)
		rv = io->cache.ops->resolve(io->cache.impl, in->code,
		                            resolve_load, &rl, a, &c);
	else
		rv = resolve_load(&rl, in->code, a, &c, &ttl_s);
	if (rv == CM_NOT_FOUND) {
		snprintf(err, errlen, "no such link");
		return (rv);
	}
	if (rv != CM_OK)
		return (store_error(rv, err, errlen));
	if (!rl.loaded)
		cm_counter_add(s->res_cache, 1);
	*out =
	    resolve_reply(s, a, c.long_url, strlen(c.long_url), c.expires_at);
	return (CM_OK);
}

int
shortener_record_clicks(struct shortener *s, struct shortener_io *io,
                        const Shortener__RecordClicksRequest *in, char *err,
                        size_t errlen)
{
	struct shortener_clicks *c;
	size_t n = 0, skipped = 0;
	int rv;

	(void) s;
	if (in->n_clicks == 0)
		return (CM_OK);
	if (in->n_clicks > SHORTENER_CLICKS_BATCH) {
		snprintf(err, errlen, "at most %d entries per call",
		         SHORTENER_CLICKS_BATCH);
		return (CM_INVALID_ARGUMENT);
	}
	if ((c = calloc(in->n_clicks, sizeof(*c))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (CM_RESOURCE_EXHAUSTED);
	}
	for (size_t i = 0; i < in->n_clicks; i++) {
		const Shortener__ClickCount *e = in->clicks[i];

		if (e == NULL || !code_ok(e->code) || e->count <= 0 ||
		    e->count > SHORTENER_CLICKS_MAX) {
			skipped++;
			continue;
		}
		c[n].code = e->code;
		c[n].count = e->count;
		n++;
	}
	if (skipped > 0)
		log_warnx("event=clicks_skipped entries=%zu", skipped);
	rv = n > 0 ? io->store.ops->add_clicks(io->store.impl, c, n) : CM_OK;
	free(c);
	return (rv == CM_OK ? rv : store_error(rv, err, errlen));
}

int
shortener_purge(struct shortener *s, struct shortener_io *io, int64_t grace_s,
                size_t batch, size_t *purged)
{
	size_t n = 0;
	int rv;

	rv =
	    io->store.ops->purge(io->store.impl, s->now() - grace_s, batch, &n);
	if (rv != CM_OK)
		return (rv);
	*purged = n;
	return (CM_OK);
}
