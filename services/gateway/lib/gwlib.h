/*
 * lib: the gateway's pure layer, with no socket, no event loop and no RPC,
 * so that unit tests drive it with plain inputs.  It includes nothing from
 * the layers above (net/, core/, handler/) and links without them.
 *
 *   routes.c     the shipped route table (data)
 *   route.c      the router: compiling a table and matching requests
 *   transcode.c  request/reply transcoding for a route (JSON <-> protobuf)
 *   auth.c       JWT (HS256) verification and signing, token comparison
 *   proxy.c      IP addresses, TRUSTED_PROXIES and X-Forwarded-For
 *   clicks.c     the per-thread click counter map
 *   text.c       small helpers: buffers, request ids, redirect codes,
 *                status texts, JSON error bodies, redirect cache values
 */
#ifndef GW_LIB_H
#define GW_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "arena.h"

/* ---- growable byte buffers ---- */

/*
 * A malloc'd byte buffer that grows on demand.  Used for what outlives one
 * request (a connection's output, an access-log batch); the owner frees it
 * with gw_buf_free.  Out-of-memory is fatal (fatalx), as for the arena.
 */
struct gw_buf {
	char *p;
	size_t len, cap;
};

void gw_buf_reserve(struct gw_buf *b, size_t extra);
void gw_buf_append(struct gw_buf *b, const void *p, size_t n);
void gw_buf_puts(struct gw_buf *b, const char *s);
void gw_buf_printf(struct gw_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends v in decimal. */
void gw_buf_putu(struct gw_buf *b, uint64_t v);
void gw_buf_free(struct gw_buf *b);

/*
 * A string being assembled from fragments (header values arrive in pieces)
 * in an arena: grows by doubling, so the waste is bounded by its size.
 * Always NUL-terminated once anything has been appended.
 */
struct gw_str {
	char *p;
	size_t len, cap;
};

void gw_str_append(struct gw_str *s, cm_arena *a, const char *p, size_t n);

/* ---- small pure helpers (core.c) ---- */

/* A sane X-Request-Id: 1..128 characters of [A-Za-z0-9._-]. */
bool gw_rid_valid(const char *s, size_t len);
/* A short-link code: 1..64 characters of [A-Za-z0-9_-]. */
bool gw_code_valid(const char *s, size_t len);
/* True if s holds no control characters (safe in a header value). */
bool gw_header_safe(const char *s, size_t len);
/* "Not Found" etc.; "Unknown" for others. */
const char *gw_http_reason(int status);
/* The error code name used for an error the gateway itself produces. */
const char *gw_http_code_name(int status);
/* Appends s as a JSON string (with quotes) to b. */
void gw_json_quote(struct gw_buf *b, const char *s, size_t len);
/* Appends {"error":{"code":"...","message":"..."}} to b. */
void gw_error_json(struct gw_buf *b, const char *code, const char *msg);
/* Case-insensitive comparison of a counted string with a C string. */
bool gw_strcaseeq(const char *s, size_t len, const char *lit);
/* Trims spaces and tabs at both ends of a counted string. */
const char *gw_trim(const char *s, size_t *len);
/*
 * Whether an Accept value (a comma-separated list of media ranges) names
 * application/json with a weight above 0.  Wildcards do not count: JSON
 * is for clients that ask for it by name.
 */
bool gw_accept_json(const char *accept, size_t len);

/* 64-bit FNV-1a, continuing from h (start with GW_FNV_INIT). */
#define GW_FNV_INIT 14695981039346656037ULL
uint64_t gw_fnv1a(uint64_t h, const void *p, size_t n);

/*
 * Splits a request target into path and query.  Accepts origin-form
 * ("/p?q") and absolute-form ("http://host/p?q"); a fragment is dropped.
 * Returns 0, or -1 for any other form.
 */
int gw_split_target(const char *t, size_t len, const char **path, size_t *plen,
                    const char **query, size_t *qlen);

/*
 * Percent-decodes s into arena memory (NUL-terminated); with plus_space,
 * '+' decodes to ' ' (query strings).  Returns 0, or -1 on a malformed
 * escape or a decoded NUL byte.
 */
int gw_pct_decode(const char *s, size_t len, bool plus_space, cm_arena *a,
                  char **out, size_t *outlen);

/*
 * Iterates over "k=v&k2=v2": returns true with the raw (still encoded)
 * key and value of the next pair, advancing *cur; empty pairs are skipped.
 */
bool gw_query_next(const char **cur, const char *end, const char **k,
                   size_t *klen, const char **v, size_t *vlen);

/* ---- the redirect cache value (core.c) ---- */

/*
 * A cached redirect, in the shortener's value format for namespace
 * "shortener" of the cache engine: "<expires_at> <long_url>", expires_at
 * in decimal Unix seconds (0 = never), the URL as is (it holds no space).
 * A link the shortener reported expired is cached the same way, with an
 * expires_at in the past; an unknown code is the engine's negative entry.
 */
struct gw_redir {
	int64_t expires_at; /* Unix seconds; 0 = never */
	const char *url;    /* gw_redir_parse: points into the value */
	size_t url_len;
};

/* Redirect targets longer than this are refused (502). */
#define GW_REDIR_URL_MAX 4096
/* Longer values are not cached (the shortener's URLs are 2048 at most). */
#define GW_REDIR_VALUE_MAX (GW_REDIR_URL_MAX + 32)

/*
 * Writes e as "<expires_at> <url>" into buf, NUL-terminated; returns its
 * length without the NUL, or 0 if it does not fit or expires_at < 0.
 */
size_t gw_redir_format(const struct gw_redir *e, char *buf, size_t buflen);
/*
 * Parses "<expires_at> <url>": 0, or -1 if malformed.  e->url points into
 * buf and may be empty (the caller decides whether it can be served).
 */
int gw_redir_parse(const void *buf, size_t len, struct gw_redir *e);
/*
 * How long a link may stay cached: max_ms, but never past its expiry.
 * Returns <= 0 when it must not be cached at all.
 */
int64_t gw_redir_ttl_ms(int64_t now_ms, int64_t expires_at, int64_t max_ms);

/* ---- routes (route.c) ---- */

enum gw_auth {
	GW_AUTH_OPTIONAL = 0, /* a token is verified if present */
	GW_AUTH_REQUIRED,     /* no token -> 401 */
	GW_AUTH_NONE,         /* Authorization is not a JWT here (/metrics) */
};

/* Where the request body goes. */
enum gw_body {
	GW_BODY_NONE = 0, /* ignored */
	GW_BODY_JSON,     /* the whole request message, as JSON */
	GW_BODY_RAW,      /* raw bytes into the bytes field body_field */
};

/* Route flags. */
#define GW_RF_DROP_CODE                                                        \
	0x1 /* on success, answer once {code} is out of the redirect cache */
/* {key} longer than GW_KEY_MAX bytes -> 413 before any call. */
#define GW_RF_KEY_LIMIT 0x200
#define GW_KEY_MAX      512

/*
 * One row of the route table.  Path parameters ("{code}") and query
 * parameters bind to fields of the RPC's input message by name.  The
 * handler is named, not called: the core binds the name to a registered
 * handler at start-up (core/gwcore.h, gw_handler_register), and an unknown
 * name stops start-up.
 */
struct gw_route {
	const char *method;   /* "GET", "POST", ...; GET also serves HEAD */
	const char *path;     /* "/api/v1/urls/{code}" */
	const char *handler;  /* registered handler; NULL: "rpc" */
	const char *rpc;      /* "pkg.Service/Method" */
	const char *upstream; /* NULL: the rpc's package ("shortener") */
	int status;           /* success status; 0 means 200 */
	enum gw_auth auth;
	enum gw_body body;
	const char *body_field; /* GW_BODY_RAW: a bytes field */
	unsigned flags;         /* GW_RF_* */
	uint64_t max_body;      /* request body bound; 0: the gateway's */
};

#define GW_MAX_SEGS   16
#define GW_MAX_PARAMS 8

/* The core's; the router only carries pointers to them. */
struct gw_upstream;
struct gw_handler;

/* A route compiled for matching, with its descriptors resolved. */
struct gw_croute {
	const struct gw_route *def;
	unsigned idx;    /* position in the table */
	char label[128]; /* "GET /api/v1/urls/{code}" */
	size_t nsegs;
	struct {
		const char *s; /* literal text or the parameter's name */
		size_t len;
		bool param;
	} segs[GW_MAX_SEGS];
	uint32_t literal_mask; /* literal segments, first segment highest */
	const ProtobufCServiceDescriptor *service;
	const ProtobufCMessageDescriptor *in, *out;
	const ProtobufCFieldDescriptor *body_fd;
	const char *handler_name; /* def->handler, or "rpc" */
	char upstream_name[64];
	struct gw_upstream *up;           /* bound by the core */
	const struct gw_handler *handler; /* bound by the core */
};

struct gw_router {
	struct gw_croute *routes; /* malloc'd */
	size_t n;
};

/* The gateway's route table and the services it knows (routes.c). */
extern const struct gw_route gw_routes[];
extern const size_t gw_nroutes;
extern const ProtobufCServiceDescriptor *const gw_services[];
extern const size_t gw_nservices;

/*
 * Compiles a route table: parses patterns, resolves each rpc (where a row
 * names one) to its service and input/output descriptors, and checks that
 * every path parameter and body field exists in the input message.  Returns 0,
 * or -1 with the reason in err; a table is static data, so the caller treats an
 * error as fatal.  gw_router_fini frees what init allocated.
 */
int gw_router_init(struct gw_router *r, const struct gw_route *defs, size_t n,
                   const ProtobufCServiceDescriptor *const *services,
                   size_t nservices, char *err, size_t errlen);
void gw_router_fini(struct gw_router *r);

struct gw_param {
	const char *name;
	size_t nlen;
	char *value; /* percent-decoded, NUL-terminated, in the arena */
	size_t vlen;
};

enum gw_match_result {
	GW_MATCH_OK = 0,
	GW_MATCH_NOT_FOUND,  /* 404 */
	GW_MATCH_BAD_METHOD, /* 405; m->allow lists the methods */
	GW_MATCH_BAD_PATH,   /* 400: malformed percent-encoding */
};

struct gw_match {
	const struct gw_croute *route;
	size_t nparams;
	struct gw_param params[GW_MAX_PARAMS];
	char allow[96]; /* "GET, HEAD, DELETE" */
};

/*
 * Matches method and path (no query).  A single trailing slash is ignored
 * ("/api/v1/urls/" is "/api/v1/urls"); empty segments never match.  When
 * several routes match, the one with literal segments earliest wins
 * ("/healthz" over "/{code}").  HEAD is served by GET routes.  Parameter
 * values are decoded into arena.
 */
enum gw_match_result gw_router_match(const struct gw_router *r,
                                     const char *method, const char *path,
                                     size_t plen, cm_arena *a,
                                     struct gw_match *m);
/* A matched parameter's value, or NULL. */
const char *gw_match_param(const struct gw_match *m, const char *name,
                           size_t *len);

/* ---- transcoding (transcode.c) ---- */

/* Query parameters per request, and values per repeated parameter;
 * over either: 400. */
#define GW_QUERY_MAX        256
#define GW_QUERY_REPEAT_MAX 100

/*
 * Builds the packed RPC request for a transcoded ("rpc") route: the JSON body
 * (if the route takes one; an empty body is {}), or the raw body into the
 * route's bytes field, then query parameters, then path parameters, bound
 * to fields by name.  *out is allocated from arena.  Returns 0, or -1 with
 * a client-facing reason in err (the caller answers 400).
 */
int gw_transcode_request(const struct gw_croute *r, const struct gw_match *m,
                         const char *query, size_t qlen, const char *body,
                         size_t blen, cm_arena *a, uint8_t **out,
                         size_t *outlen, char *err, size_t errlen);
/*
 * gw_transcode_request in two steps, for a handler that adds to the
 * message before it goes out: the input message, bound as above (in the
 * arena, of the route's input type), then packed (arena memory).
 */
int gw_transcode_message(const struct gw_croute *r, const struct gw_match *m,
                         const char *query, size_t qlen, const char *body,
                         size_t blen, cm_arena *a, ProtobufCMessage **out,
                         char *err, size_t errlen);
uint8_t *gw_transcode_pack(const ProtobufCMessage *msg, cm_arena *a,
                           size_t *outlen);

/*
 * Unpacks a reply payload with the route's output descriptor and renders
 * it as JSON text in arena (*json, NUL-terminated).  0, or -1 if the
 * payload does not unpack.
 */
int gw_transcode_reply(const struct gw_croute *r, const uint8_t *payload,
                       size_t len, cm_arena *a, char **json, size_t *jlen);

/* ---- authentication (auth.c) ---- */

enum gw_jwt_err {
	GW_JWT_OK = 0,
	GW_JWT_MALFORMED,     /* not three base64url parts of JSON */
	GW_JWT_BAD_ALG,       /* alg is not HS256 ("none" included) */
	GW_JWT_BAD_SIGNATURE, /* HMAC does not match */
	GW_JWT_EXPIRED,       /* now >= exp */
	GW_JWT_NOT_YET_VALID, /* now < nbf */
	GW_JWT_NO_SUBJECT,    /* sub missing, empty or not a string */
	GW_JWT_BAD_SUBJECT,   /* sub not 1-64 of [A-Za-z0-9._@-] */
};

/* A user id (a token's sub): 1-64 characters of [A-Za-z0-9._@-]. */
#define GW_USER_MAX 64
bool gw_user_valid(const char *s, size_t len);

const char *gw_jwt_strerror(int err);

/*
 * The rate limiter's id of an X-API-Key value: 32 hex characters of
 * SHA-256 over it (domain-separated), so keys never reach Redis or the
 * logs in clear and every id has the same size.  The value must be 1-256
 * visible ASCII characters (no spaces); returns false otherwise.
 */
#define GW_API_KEY_MAX 256
bool gw_api_key_id(const char *key, size_t len, char out[33]);

/* Who the caller is, from a verified token; strings in the arena. */
struct gw_identity {
	const char *user; /* sub */
	const char *role; /* claim "role", NULL if absent */
	const char *tier; /* claim "tier", NULL if absent */
};

/*
 * Verifies a compact JWT against an HS256 key.  The header's alg is checked
 * before anything else is trusted: only "HS256" is accepted.  The signature
 * is compared in constant time; exp and nbf (numbers, Unix seconds) are
 * checked against now; sub must be a valid user id (gw_user_valid); a
 * token holding '=' (padding) is malformed.  On GW_JWT_OK, *id
 * is filled (strings from arena).  Returns a gw_jwt_err.
 */
int gw_jwt_verify(const char *tok, size_t len, const void *key, size_t keylen,
                  int64_t now, cm_arena *a, struct gw_identity *id);

/*
 * Signs an HS256 token for sub with iat = now, exp = now + ttl (ttl <= 0:
 * no exp), and extra string claims (keys[i] = values[i]).  Returns a
 * malloc'd token (caller frees) or NULL (reserved claim name or OOM).
 */
char *gw_jwt_sign(const char *sub, int64_t now, int64_t ttl,
                  const char *const *keys, const char *const *values,
                  size_t nclaims, const void *key, size_t keylen);

/*
 * Extracts the credentials of "Bearer <token>" (scheme case-insensitive).
 * Returns 0, or -1 if the header is not a bearer credential.
 */
int gw_bearer(const char *hdr, size_t len, const char **tok, size_t *toklen);

/* Compares two secrets in constant time (their SHA-256 digests). */
bool gw_secret_equal(const char *a, size_t alen, const char *b, size_t blen);

/* base64url without padding; out needs 4*ceil(n/3)+1 bytes. */
size_t gw_b64url_encode(const void *in, size_t n, char *out);
/* Decodes base64url (padding optional); -1 on bad input, else length. */
long gw_b64url_decode(const char *in, size_t n, void *out, size_t outlen);

/* ---- client addresses (proxy.c) ---- */

/* Addresses are 16 bytes; IPv4 is held v4-mapped (::ffff:a.b.c.d). */
struct gw_cidr {
	uint8_t addr[16];
	unsigned bits; /* prefix length over the 128-bit form */
};

struct gw_trust {
	struct gw_cidr *v; /* malloc'd */
	size_t n;
};

/*
 * Parses TRUSTED_PROXIES: comma-separated IPv4/IPv6 addresses or CIDRs
 * (whitespace around items allowed, empty = none).  0, or -1 with err.
 */
int gw_trust_parse(struct gw_trust *t, const char *spec, char *err,
                   size_t errlen);
void gw_trust_fini(struct gw_trust *t);
bool gw_trust_has(const struct gw_trust *t, const uint8_t ip[16]);

/*
 * Parses an address as found in X-Forwarded-For: IPv4 ("1.2.3.4", optional
 * ":port"), IPv6 ("::1", or "[::1]" with optional ":port").  0 or -1.
 */
int gw_ip_parse(const char *s, size_t len, uint8_t ip[16]);
/* Canonical text (v4-mapped shown as IPv4); out >= 46 bytes. */
void gw_ip_format(const uint8_t ip[16], char *out, size_t outlen);
bool gw_ip_is_loopback(const uint8_t ip[16]);

/*
 * The client address of a request: the socket peer, unless the peer is a
 * trusted proxy; then X-Forwarded-For is walked from the right, skipping
 * trusted hops, and the first untrusted address is the client.  A
 * malformed entry stops the walk (the hop to its right is used).  If every
 * hop is trusted the left-most one is the client.
 */
void gw_client_ip(const struct gw_trust *t, const uint8_t peer[16],
                  const char *xff, size_t xlen, uint8_t out[16]);

/* ---- click counters (clicks.c) ---- */

/*
 * Clicks per code, counted by one thread without locks and drained in
 * batches.  An open-addressing table of fixed-size slots (codes are at
 * most 64 bytes), bounded to max_codes distinct codes: a click for a new
 * code beyond that is refused (the caller counts it as dropped).
 */
struct gw_click_slot {
	int64_t count; /* 0: empty slot */
	uint8_t len;
	char code[64];
};

struct gw_clicks {
	struct gw_click_slot *slots;
	size_t cap, n, max;
};

void gw_clicks_init(struct gw_clicks *c, size_t max_codes);
void gw_clicks_fini(struct gw_clicks *c);
/* Adds n clicks; 0, or -1 when the code is new and the table is full. */
int gw_clicks_add(struct gw_clicks *c, const char *code, size_t len, int64_t n);
/* Iterates: *it starts at 0; false at the end. */
bool gw_clicks_next(const struct gw_clicks *c, size_t *it, const char **code,
                    size_t *len, int64_t *n);
void gw_clicks_clear(struct gw_clicks *c);

#endif /* GW_LIB_H */
