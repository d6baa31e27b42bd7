/*
 * Unit tests of the gateway's pure parts (gateway_core): route matching,
 * transcoding, JWT verification, client addresses behind proxies, click
 * counters and the small helpers.  No sockets, no servers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cache.pb-c.h"
#include "shortener.pb-c.h"

#include "gwlib.h"

/* ---- a hand-made message with a bytes field, for raw-body routes ---- */

typedef struct {
	ProtobufCMessage base;
	ProtobufCBinaryData data;
	char *name;
} TestRaw;

static void test_raw_init(TestRaw *m);

static const ProtobufCFieldDescriptor test_raw_fields[2] = {
    {"data", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_BYTES, 0,
     offsetof(TestRaw, data), NULL, NULL, 0, 0, NULL, NULL},
    {"name", 2, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0,
     offsetof(TestRaw, name), NULL, &protobuf_c_empty_string, 0, 0, NULL, NULL},
};
static const unsigned test_raw_by_name[2] = {0, 1};
static const ProtobufCIntRange test_raw_ranges[2] = {{1, 0}, {0, 2}};
static const ProtobufCMessageDescriptor test_raw_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.Raw",
    "Raw",
    "Test__Raw",
    "test",
    sizeof(TestRaw),
    2,
    test_raw_fields,
    test_raw_by_name,
    1,
    test_raw_ranges,
    (ProtobufCMessageInit) test_raw_init,
    NULL,
    NULL,
    NULL};

static void
test_raw_init(TestRaw *m)
{
	memset(m, 0, sizeof(*m));
	m->base.descriptor = &test_raw_desc;
	m->name = (char *) protobuf_c_empty_string;
}

static const ProtobufCMethodDescriptor test_methods[1] = {
    {"Put", &test_raw_desc, &test_raw_desc},
};
static const unsigned test_methods_by_name[1] = {0};
static const ProtobufCServiceDescriptor test_service = {
    PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC,
    "test.Blobs",
    "Blobs",
    "Test__Blobs",
    "test",
    1,
    test_methods,
    test_methods_by_name};

/* ---- routes ---- */

static struct gw_router R;

static int
router_setup(void **state)
{
	char err[256];

	(void) state;
	assert_int_equal(gw_router_init(&R, gw_routes, gw_nroutes, gw_services,
	                                gw_nservices, err, sizeof(err)),
	                 0);
	return (0);
}

static int
router_teardown(void **state)
{
	(void) state;
	gw_router_fini(&R);
	return (0);
}

static enum gw_match_result
match(const char *method, const char *path, cm_arena *a, struct gw_match *m)
{
	return (gw_router_match(&R, method, path, strlen(path), a, m));
}

static void
test_route_match(void **state)
{
	struct gw_match m;
	cm_arena a;
	size_t len;

	(void) state;
	cm_arena_init(&a);
	assert_int_equal(match("POST", "/api/v1/urls", &a, &m), GW_MATCH_OK);
	assert_string_equal(m.route->def->rpc, "shortener.Shortener/Create");
	assert_int_equal(m.route->def->status, 201);
	assert_ptr_equal(m.route->in,
	                 &shortener__create_url_request__descriptor);
	assert_ptr_equal(m.route->out, &shortener__url__descriptor);
	assert_string_equal(m.route->upstream_name, "shortener");

	assert_int_equal(match("GET", "/api/v1/urls", &a, &m), GW_MATCH_OK);
	assert_string_equal(m.route->def->rpc, "shortener.Shortener/List");
	assert_int_equal(m.nparams, 0);

	assert_int_equal(match("GET", "/api/v1/urls/abc123", &a, &m),
	                 GW_MATCH_OK);
	assert_string_equal(m.route->def->rpc, "shortener.Shortener/Get");
	assert_string_equal(gw_match_param(&m, "code", &len), "abc123");
	assert_int_equal(len, 6);
	assert_null(gw_match_param(&m, "nope", NULL));

	assert_int_equal(match("DELETE", "/api/v1/urls/abc", &a, &m),
	                 GW_MATCH_OK);
	assert_int_equal(m.route->def->status, 204);
	assert_true(m.route->def->flags & GW_RF_DROP_CODE);
	assert_int_equal(m.route->def->auth, GW_AUTH_REQUIRED);

	/* Literal beats parameter; HEAD is served by GET. */
	assert_int_equal(match("GET", "/healthz", &a, &m), GW_MATCH_OK);
	assert_string_equal(m.route->handler_name, "health");
	assert_int_equal(match("HEAD", "/metrics", &a, &m), GW_MATCH_OK);
	assert_string_equal(m.route->handler_name, "metrics");
	assert_int_equal(match("GET", "/xYz_-9", &a, &m), GW_MATCH_OK);
	assert_string_equal(m.route->handler_name, "redirect");
	assert_string_equal(gw_match_param(&m, "code", NULL), "xYz_-9");
	assert_int_equal(match("HEAD", "/abc", &a, &m), GW_MATCH_OK);
	assert_string_equal(m.route->handler_name, "redirect");

	/* Parameters are percent-decoded. */
	assert_int_equal(match("GET", "/api/v1/urls/%41b%2Fc", &a, &m),
	                 GW_MATCH_OK);
	assert_string_equal(gw_match_param(&m, "code", NULL), "Ab/c");
	assert_int_equal(match("GET", "/api/v1/urls/%zz", &a, &m),
	                 GW_MATCH_BAD_PATH);
	assert_int_equal(match("GET", "/api/v1/urls/%00", &a, &m),
	                 GW_MATCH_BAD_PATH);
	cm_arena_fini(&a);
}

static void
test_route_trailing_slash_and_404(void **state)
{
	struct gw_match m;
	cm_arena a;

	(void) state;
	cm_arena_init(&a);
	assert_int_equal(match("GET", "/api/v1/urls/", &a, &m), GW_MATCH_OK);
	assert_string_equal(m.route->def->rpc, "shortener.Shortener/List");
	assert_int_equal(match("GET", "/api/v1/urls/abc/", &a, &m),
	                 GW_MATCH_OK);
	assert_string_equal(gw_match_param(&m, "code", NULL), "abc");
	assert_int_equal(match("GET", "/healthz/", &a, &m), GW_MATCH_OK);
	assert_string_equal(m.route->handler_name, "health");

	assert_int_equal(match("GET", "/", &a, &m), GW_MATCH_NOT_FOUND);
	assert_int_equal(match("GET", "", &a, &m), GW_MATCH_NOT_FOUND);
	assert_int_equal(match("GET", "//", &a, &m), GW_MATCH_NOT_FOUND);
	assert_int_equal(match("GET", "/api//v1", &a, &m), GW_MATCH_NOT_FOUND);
	assert_int_equal(match("GET", "/api/v1/urls//", &a, &m),
	                 GW_MATCH_NOT_FOUND);
	assert_int_equal(match("GET", "/api/v1/nothing/here", &a, &m),
	                 GW_MATCH_NOT_FOUND);
	assert_int_equal(match("GET", "/api/v1/urls/a/b", &a, &m),
	                 GW_MATCH_NOT_FOUND);
	assert_int_equal(match("GET", "no-slash", &a, &m), GW_MATCH_NOT_FOUND);
	cm_arena_fini(&a);
}

static void
test_route_405(void **state)
{
	struct gw_match m;
	cm_arena a;

	(void) state;
	cm_arena_init(&a);
	assert_int_equal(match("PUT", "/api/v1/urls", &a, &m),
	                 GW_MATCH_BAD_METHOD);
	assert_string_equal(m.allow, "POST, GET, HEAD");
	assert_int_equal(match("PATCH", "/api/v1/urls/abc", &a, &m),
	                 GW_MATCH_BAD_METHOD);
	assert_string_equal(m.allow, "GET, HEAD, DELETE");
	/* /healthz and /{code} both match the path: GET/HEAD only. */
	assert_int_equal(match("POST", "/healthz", &a, &m),
	                 GW_MATCH_BAD_METHOD);
	assert_string_equal(m.allow, "GET, HEAD");
	assert_int_equal(match("DELETE", "/abc", &a, &m), GW_MATCH_BAD_METHOD);
	assert_string_equal(m.allow, "GET, HEAD");
	cm_arena_fini(&a);
}

static void
test_route_table_errors(void **state)
{
	static const ProtobufCServiceDescriptor *const svcs[] = {
	    &shortener__shortener__descriptor,
	    &test_service,
	};
	struct {
		struct gw_route r;
		const char *why;
	} bad[] = {
	    {{.method = "GET", .path = "/x", .rpc = "nope.Nope/X"},
	     "unknown service"},
	    {{.method = "GET", .path = "/x", .rpc = "shortener.Shortener/Nope"},
	     "unknown method"},
	    {{.method = "GET", .path = "/x", .rpc = "shortener"}, "pkg.Svc/M"},
	    {{.method = "GET",
	      .path = "/x/{nofield}",
	      .rpc = "shortener.Shortener/Get"},
	     "not a field"},
	    {{.method = "GET", .path = "x", .rpc = "shortener.Shortener/Get"},
	     "start with /"},
	    {{.method = "GET",
	      .path = "/x/{",
	      .rpc = "shortener.Shortener/Get"},
	     "bad parameter"},
	    {{.method = "POST",
	      .path = "/x",
	      .rpc = "test.Blobs/Put",
	      .body = GW_BODY_RAW,
	      .body_field = "name"},
	     "bytes"},
	    {{.method = "POST",
	      .path = "/h",
	      .handler = "health",
	      .body = GW_BODY_JSON},
	     "JSON body without rpc"},
	    {{.method = NULL, .path = "/x"}, "no method"},
	};
	struct gw_router r;
	char err[256];
	size_t i;

	(void) state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(
		    gw_router_init(&r, &bad[i].r, 1, svcs, 2, err, sizeof(err)),
		    -1);
		if (strstr(err, bad[i].why) == NULL)
			fail_msg("case %zu: %s", i, err);
	}
	/* An explicit upstream overrides the package. */
	{
		struct gw_route ok = {.method = "PUT",
		                      .path = "/blobs/{name}",
		                      .rpc = "test.Blobs/Put",
		                      .upstream = "blobstore",
		                      .body = GW_BODY_RAW,
		                      .body_field = "data"};

		assert_int_equal(
		    gw_router_init(&r, &ok, 1, svcs, 2, err, sizeof(err)), 0);
		assert_string_equal(r.routes[0].upstream_name, "blobstore");
		assert_non_null(r.routes[0].body_fd);
		gw_router_fini(&r);
	}
}

/* ---- transcoding ---- */

static void
test_transcode_json_body(void **state)
{
	struct gw_match m;
	cm_arena a;
	uint8_t *out;
	size_t len;
	char err[256];
	const char *body =
	    "{\"long_url\":\"https://e.com/x\",\"customAlias\":\"abc\","
	    "\"expires_in\":\"3600\"}";
	Shortener__CreateUrlRequest *req;

	(void) state;
	cm_arena_init(&a);
	assert_int_equal(match("POST", "/api/v1/urls", &a, &m), GW_MATCH_OK);
	assert_int_equal(gw_transcode_request(m.route, &m, NULL, 0, body,
	                                      strlen(body), &a, &out, &len, err,
	                                      sizeof(err)),
	                 0);
	req = shortener__create_url_request__unpack(NULL, len, out);
	assert_non_null(req);
	assert_string_equal(req->long_url, "https://e.com/x");
	assert_string_equal(req->custom_alias, "abc");
	assert_int_equal(req->expires_in, 3600);
	shortener__create_url_request__free_unpacked(req, NULL);

	/* An empty body is an empty message. */
	assert_int_equal(gw_transcode_request(m.route, &m, NULL, 0, " \r\n", 3,
	                                      &a, &out, &len, err, sizeof(err)),
	                 0);
	assert_int_equal(len, 0);

	/* Bad JSON, not an object, unknown field, wrong type. */
	assert_int_equal(gw_transcode_request(m.route, &m, NULL, 0, "{", 1, &a,
	                                      &out, &len, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "invalid JSON"));
	assert_int_equal(gw_transcode_request(m.route, &m, NULL, 0, "[1]", 3,
	                                      &a, &out, &len, err, sizeof(err)),
	                 -1);
	assert_int_equal(gw_transcode_request(m.route, &m, NULL, 0,
	                                      "{\"bogus\":1}", 11, &a, &out,
	                                      &len, err, sizeof(err)),
	                 -1);
	assert_int_equal(gw_transcode_request(m.route, &m, NULL, 0,
	                                      "{\"expires_in\":\"soon\"}", 21,
	                                      &a, &out, &len, err, sizeof(err)),
	                 -1);
	assert_int_equal(gw_transcode_request(m.route, &m, NULL, 0,
	                                      "{\"a\":1,\"a\":2}", 13, &a, &out,
	                                      &len, err, sizeof(err)),
	                 -1);
	cm_arena_fini(&a);
}

static void
test_transcode_params(void **state)
{
	struct gw_match m;
	cm_arena a;
	uint8_t *out;
	size_t len;
	char err[256];
	const char *q = "limit=5&cursor=a%2Bb+c&&";
	Shortener__ListUrlsRequest *lr;
	Shortener__GetUrlRequest *gr;

	(void) state;
	cm_arena_init(&a);
	assert_int_equal(match("GET", "/api/v1/urls", &a, &m), GW_MATCH_OK);
	assert_int_equal(gw_transcode_request(m.route, &m, q, strlen(q), NULL,
	                                      0, &a, &out, &len, err,
	                                      sizeof(err)),
	                 0);
	lr = shortener__list_urls_request__unpack(NULL, len, out);
	assert_non_null(lr);
	assert_int_equal(lr->limit, 5);
	assert_string_equal(lr->cursor, "a+b c");
	shortener__list_urls_request__free_unpacked(lr, NULL);

	q = "limit=5&color=red";
	assert_int_equal(gw_transcode_request(m.route, &m, q, strlen(q), NULL,
	                                      0, &a, &out, &len, err,
	                                      sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "unknown query parameter \"color\""));
	q = "limit=many";
	assert_int_equal(gw_transcode_request(m.route, &m, q, strlen(q), NULL,
	                                      0, &a, &out, &len, err,
	                                      sizeof(err)),
	                 -1);
	q = "limit=%zz";
	assert_int_equal(gw_transcode_request(m.route, &m, q, strlen(q), NULL,
	                                      0, &a, &out, &len, err,
	                                      sizeof(err)),
	                 -1);
	q = "=5";
	assert_int_equal(gw_transcode_request(m.route, &m, q, strlen(q), NULL,
	                                      0, &a, &out, &len, err,
	                                      sizeof(err)),
	                 -1);

	/* The path parameter wins over a query parameter of the same name. */
	assert_int_equal(match("GET", "/api/v1/urls/Zed", &a, &m), GW_MATCH_OK);
	q = "code=other";
	assert_int_equal(gw_transcode_request(m.route, &m, q, strlen(q), NULL,
	                                      0, &a, &out, &len, err,
	                                      sizeof(err)),
	                 0);
	gr = shortener__get_url_request__unpack(NULL, len, out);
	assert_string_equal(gr->code, "Zed");
	shortener__get_url_request__free_unpacked(gr, NULL);
	cm_arena_fini(&a);
}

static void
test_transcode_raw_body(void **state)
{
	static const ProtobufCServiceDescriptor *const svcs[] = {&test_service};
	struct gw_route rt = {.method = "PUT",
	                      .path = "/blobs/{name}",
	                      .rpc = "test.Blobs/Put",
	                      .body = GW_BODY_RAW,
	                      .body_field = "data"};
	struct gw_router r;
	struct gw_match m;
	cm_arena a;
	char err[256];
	uint8_t *out;
	size_t len;
	TestRaw *msg;
	const char body[] = {'a', '\0', 'b', '{'};

	(void) state;
	cm_arena_init(&a);
	assert_int_equal(gw_router_init(&r, &rt, 1, svcs, 1, err, sizeof(err)),
	                 0);
	assert_int_equal(gw_router_match(&r, "PUT", "/blobs/x.bin", 12, &a, &m),
	                 GW_MATCH_OK);
	assert_int_equal(gw_transcode_request(m.route, &m, NULL, 0, body,
	                                      sizeof(body), &a, &out, &len, err,
	                                      sizeof(err)),
	                 0);
	msg = (TestRaw *) protobuf_c_message_unpack(&test_raw_desc, NULL, len,
	                                            out);
	assert_non_null(msg);
	assert_int_equal(msg->data.len, sizeof(body));
	assert_memory_equal(msg->data.data, body, sizeof(body));
	assert_string_equal(msg->name, "x.bin");
	protobuf_c_message_free_unpacked(&msg->base, NULL);
	gw_router_fini(&r);
	cm_arena_fini(&a);
}

static void
test_transcode_reply(void **state)
{
	struct gw_match m;
	cm_arena a;
	Shortener__Url url = SHORTENER__URL__INIT;
	uint8_t buf[256];
	size_t len;
	char *json;
	size_t jlen;
	json_t *j;

	(void) state;
	cm_arena_init(&a);
	url.code = "abc";
	url.long_url = "https://e.com/\"q\"";
	url.created_at = 1700000000;
	url.clicks = 7;
	len = shortener__url__pack(&url, buf);
	assert_int_equal(match("GET", "/api/v1/urls/abc", &a, &m), GW_MATCH_OK);
	assert_int_equal(
	    gw_transcode_reply(m.route, buf, len, &a, &json, &jlen), 0);
	j = json_loads(json, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "code")),
	                    "abc");
	assert_string_equal(json_string_value(json_object_get(j, "long_url")),
	                    "https://e.com/\"q\"");
	assert_int_equal(json_integer_value(json_object_get(j, "clicks")), 7);
	json_decref(j);
	/* Garbage does not unpack. */
	assert_int_equal(gw_transcode_reply(m.route,
	                                    (const uint8_t *) "\xff\xff", 2, &a,
	                                    &json, &jlen),
	                 -1);
	cm_arena_fini(&a);
}

/* ---- JWT ---- */

static const char KEY[] = "unit-test-secret";

/* A token with an arbitrary header and payload, HMAC-SHA256 signed. */
static char *
make_token(const char *header, const char *payload, const char *key, bool sign)
{
	char *tok = malloc(4096);
	size_t n;
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	n = gw_b64url_encode(header, strlen(header), tok);
	tok[n++] = '.';
	n += gw_b64url_encode(payload, strlen(payload), tok + n);
	if (sign) {
		HMAC(EVP_sha256(), key, (int) strlen(key), (uint8_t *) tok, n,
		     mac, &maclen);
		tok[n++] = '.';
		n += gw_b64url_encode(mac, maclen, tok + n);
	} else {
		tok[n++] = '.';
	}
	tok[n] = '\0';
	return (tok);
}

static int
verify(const char *tok, struct gw_identity *id, cm_arena *a)
{
	return (gw_jwt_verify(tok, strlen(tok), KEY, strlen(KEY),
	                      (int64_t) time(NULL), a, id));
}

static void
test_jwt_good(void **state)
{
	const char *keys[] = {"role", "tier"}, *vals[] = {"admin", "pro"};
	char *tok;
	struct gw_identity id;
	cm_arena a;

	(void) state;
	cm_arena_init(&a);
	tok = gw_jwt_sign("alice", (int64_t) time(NULL), 60, keys, vals, 2, KEY,
	                  strlen(KEY));
	assert_non_null(tok);
	assert_int_equal(verify(tok, &id, &a), GW_JWT_OK);
	assert_string_equal(id.user, "alice");
	assert_string_equal(id.role, "admin");
	assert_string_equal(id.tier, "pro");
	{
		/* The same token with "=" padding is refused. */
		size_t n = strlen(tok);
		char *padded = malloc(n + 2);

		memcpy(padded, tok, n);
		padded[n] = '=';
		padded[n + 1] = '\0';
		assert_int_equal(verify(padded, &id, &a), GW_JWT_MALFORMED);
		free(padded);
	}
	free(tok);
	/* 64 characters of the user id alphabet pass; 65 do not. */
	{
		char user[66];

		memset(user, 'u', 65);
		user[0] = 'A';
		user[1] = '.';
		user[2] = '@';
		user[3] = '_';
		user[4] = '-';
		user[64] = '\0';
		tok = gw_jwt_sign(user, (int64_t) time(NULL), 60, NULL, NULL, 0,
		                  KEY, strlen(KEY));
		assert_non_null(tok);
		assert_int_equal(verify(tok, &id, &a), GW_JWT_OK);
		assert_string_equal(id.user, user);
		free(tok);
		user[64] = 'u';
		user[65] = '\0';
		assert_null(gw_jwt_sign(user, 0, 60, NULL, NULL, 0, KEY, 3));
		assert_null(gw_jwt_sign("a b", 0, 60, NULL, NULL, 0, KEY, 3));
	}

	/* Hand-made, no exp, non-string role ignored. */
	tok = make_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
	                 "{\"sub\":\"bob\",\"role\":5}", KEY, true);
	assert_int_equal(verify(tok, &id, &a), GW_JWT_OK);
	assert_string_equal(id.user, "bob");
	assert_null(id.role);
	assert_null(id.tier);
	free(tok);

	/* Reserved claims cannot be set with --claim. */
	keys[0] = "exp";
	assert_null(gw_jwt_sign("alice", 0, 60, keys, vals, 1, KEY, 3));
	assert_null(gw_jwt_sign("", 0, 60, NULL, NULL, 0, KEY, 3));
	cm_arena_fini(&a);
}

static void
test_jwt_rejections(void **state)
{
	struct gw_identity id;
	cm_arena a;
	char pl[256], *tok;
	long now = (long) time(NULL);
	struct {
		const char *hdr, *payload, *key;
		bool sign;
		int want;
	} cases[] = {
	    /* bad signature */
	    {"{\"alg\":\"HS256\"}", "{\"sub\":\"m\"}", "other-key", true,
	     GW_JWT_BAD_SIGNATURE},
	    /* alg none, unsigned and signed */
	    {"{\"alg\":\"none\"}", "{\"sub\":\"m\"}", KEY, false,
	     GW_JWT_BAD_ALG},
	    {"{\"alg\":\"none\"}", "{\"sub\":\"m\"}", KEY, true,
	     GW_JWT_BAD_ALG},
	    /* other algorithms, even with a valid HS256 MAC */
	    {"{\"alg\":\"HS512\"}", "{\"sub\":\"m\"}", KEY, true,
	     GW_JWT_BAD_ALG},
	    {"{\"alg\":\"RS256\"}", "{\"sub\":\"m\"}", KEY, true,
	     GW_JWT_BAD_ALG},
	    {"{\"alg\":\"hs256\"}", "{\"sub\":\"m\"}", KEY, true,
	     GW_JWT_BAD_ALG},
	    {"{\"typ\":\"JWT\"}", "{\"sub\":\"m\"}", KEY, true, GW_JWT_BAD_ALG},
	    {"{\"alg\":256}", "{\"sub\":\"m\"}", KEY, true, GW_JWT_BAD_ALG},
	    /* claims */
	    {"{\"alg\":\"HS256\"}", "{\"role\":\"admin\"}", KEY, true,
	     GW_JWT_NO_SUBJECT},
	    {"{\"alg\":\"HS256\"}", "{\"sub\":\"\"}", KEY, true,
	     GW_JWT_NO_SUBJECT},
	    {"{\"alg\":\"HS256\"}", "{\"sub\":42}", KEY, true,
	     GW_JWT_NO_SUBJECT},
	    {"{\"alg\":\"HS256\"}", "{\"sub\":\"a b\"}", KEY, true,
	     GW_JWT_BAD_SUBJECT},
	    {"{\"alg\":\"HS256\"}", "{\"sub\":\"{tag}\"}", KEY, true,
	     GW_JWT_BAD_SUBJECT},
	    {"{\"alg\":\"HS256\"}", "{\"sub\":\"a/b\"}", KEY, true,
	     GW_JWT_BAD_SUBJECT},
	    {"{\"alg\":\"HS256\"}",
	     "{\"sub\":\"0123456789012345678901234567890123456789012345678901"
	     "2345678901234\"}",
	     KEY, true, GW_JWT_BAD_SUBJECT},
	    {"{\"alg\":\"HS256\"}", "{\"sub\":\"m\",\"exp\":\"never\"}", KEY,
	     true, GW_JWT_MALFORMED},
	    {"{\"alg\":\"HS256\"}", "[1,2]", KEY, true, GW_JWT_MALFORMED},
	    {"{\"alg\":\"HS256\",\"crit\":[\"x\"]}", "{\"sub\":\"m\"}", KEY,
	     true, GW_JWT_MALFORMED},
	    {"not json", "{\"sub\":\"m\"}", KEY, true, GW_JWT_MALFORMED},
	};
	const char *garbage[] = {"",        "abc",         "a.b",
	                         "a.b.c.d", "!!!.e30.e30", "e30.e30.",
	                         "..",      "Bearer x"};
	size_t i;

	(void) state;
	cm_arena_init(&a);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got;

		tok = make_token(cases[i].hdr, cases[i].payload, cases[i].key,
		                 cases[i].sign);
		got = verify(tok, &id, &a);
		if (got != cases[i].want)
			fail_msg("case %zu: got %s, want %s", i,
			         gw_jwt_strerror(got),
			         gw_jwt_strerror(cases[i].want));
		free(tok);
	}

	/* expired, and not yet valid */
	snprintf(pl, sizeof(pl), "{\"sub\":\"m\",\"exp\":%ld}", now - 1);
	tok = make_token("{\"alg\":\"HS256\"}", pl, KEY, true);
	assert_int_equal(verify(tok, &id, &a), GW_JWT_EXPIRED);
	free(tok);
	snprintf(pl, sizeof(pl), "{\"sub\":\"m\",\"exp\":%ld}", now);
	tok = make_token("{\"alg\":\"HS256\"}", pl, KEY, true);
	assert_int_equal(verify(tok, &id, &a), GW_JWT_EXPIRED);
	free(tok);
	snprintf(pl, sizeof(pl), "{\"sub\":\"m\",\"nbf\":%ld}", now + 600);
	tok = make_token("{\"alg\":\"HS256\"}", pl, KEY, true);
	assert_int_equal(verify(tok, &id, &a), GW_JWT_NOT_YET_VALID);
	free(tok);
	snprintf(pl, sizeof(pl), "{\"sub\":\"m\",\"nbf\":%ld,\"exp\":%ld}",
	         now - 5, now + 5);
	tok = make_token("{\"alg\":\"HS256\"}", pl, KEY, true);
	assert_int_equal(verify(tok, &id, &a), GW_JWT_OK);
	/* A flipped payload byte breaks the signature. */
	tok[strlen("eyJhbGciOiJIUzI1NiJ9.") + 2] ^= 1;
	assert_int_equal(verify(tok, &id, &a), GW_JWT_BAD_SIGNATURE);
	free(tok);

	for (i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
		assert_int_not_equal(verify(garbage[i], &id, &a), GW_JWT_OK);
	cm_arena_fini(&a);
}

static void
test_bearer_and_secret(void **state)
{
	const char *tok;
	size_t len;

	(void) state;
	assert_int_equal(gw_bearer("Bearer abc.def", 14, &tok, &len), 0);
	assert_int_equal(len, 7);
	assert_memory_equal(tok, "abc.def", 7);
	assert_int_equal(gw_bearer("bearer   xyz  ", 14, &tok, &len), 0);
	assert_int_equal(len, 3);
	assert_int_equal(gw_bearer("Basic YWxpY2U6cHc=", 18, &tok, &len), -1);
	assert_int_equal(gw_bearer("Bearer", 6, &tok, &len), -1);
	assert_int_equal(gw_bearer("Bearer  ", 8, &tok, &len), -1);
	assert_int_equal(gw_bearer("Bearerx abc", 11, &tok, &len), -1);
	assert_int_equal(gw_bearer("Bearer a b", 10, &tok, &len), -1);

	assert_true(gw_secret_equal("s3cret", 6, "s3cret", 6));
	assert_false(gw_secret_equal("s3cret", 6, "s3creT", 6));
	assert_false(gw_secret_equal("s3cret", 6, "s3cret!", 7));
	assert_false(gw_secret_equal("", 0, "x", 1));
}

static void
test_b64url(void **state)
{
	char enc[64];
	uint8_t dec[64];

	(void) state;
	assert_int_equal(gw_b64url_encode("\xfb\xff", 2, enc), 3);
	assert_string_equal(enc, "-_8");
	assert_int_equal(gw_b64url_decode("-_8", 3, dec, sizeof(dec)), 2);
	assert_memory_equal(dec, "\xfb\xff", 2);
	assert_int_equal(gw_b64url_decode("-_8=", 4, dec, sizeof(dec)), 2);
	assert_int_equal(gw_b64url_decode("+/8", 3, dec, sizeof(dec)), -1);
	assert_int_equal(gw_b64url_decode("a", 1, dec, sizeof(dec)), -1);
	assert_int_equal(gw_b64url_decode("-_9", 3, dec, sizeof(dec)), -1);
	assert_int_equal(gw_b64url_decode("AAAA", 4, dec, 2), -1);
}

/* ---- client addresses ---- */

static void
ip(const char *s, uint8_t out[16])
{
	assert_int_equal(gw_ip_parse(s, strlen(s), out), 0);
}

static const char *
client(const struct gw_trust *t, const char *peer, const char *xff)
{
	static char buf[64];
	uint8_t p[16], out[16];

	ip(peer, p);
	gw_client_ip(t, p, xff, xff ? strlen(xff) : 0, out);
	gw_ip_format(out, buf, sizeof(buf));
	return (buf);
}

static void
test_ip_parse(void **state)
{
	uint8_t a[16];
	char s[64];
	const char *bad[] = {"",          "1.2.3",     "1.2.3.4.5",
	                     "256.1.1.1", "::g",       "[::1",
	                     "[::1]:",    "1.2.3.4:",  "1.2.3.4:99999x",
	                     "abc",       "[1.2.3.4]x"};
	size_t i;

	(void) state;
	ip("192.0.2.7", a);
	gw_ip_format(a, s, sizeof(s));
	assert_string_equal(s, "192.0.2.7");
	ip(" 192.0.2.7:8080 ", a);
	gw_ip_format(a, s, sizeof(s));
	assert_string_equal(s, "192.0.2.7");
	ip("[2001:db8::1]:443", a);
	gw_ip_format(a, s, sizeof(s));
	assert_string_equal(s, "2001:db8::1");
	ip("::ffff:10.1.2.3", a);
	gw_ip_format(a, s, sizeof(s));
	assert_string_equal(s, "10.1.2.3");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (gw_ip_parse(bad[i], strlen(bad[i]), a) == 0)
			fail_msg("accepted \"%s\"", bad[i]);

	ip("127.0.0.1", a);
	assert_true(gw_ip_is_loopback(a));
	ip("127.8.9.10", a);
	assert_true(gw_ip_is_loopback(a));
	ip("::1", a);
	assert_true(gw_ip_is_loopback(a));
	ip("10.0.0.1", a);
	assert_false(gw_ip_is_loopback(a));
	ip("::2", a);
	assert_false(gw_ip_is_loopback(a));
}

static void
test_trusted_proxies(void **state)
{
	struct gw_trust t;
	char err[128];
	uint8_t a[16];

	(void) state;
	assert_int_equal(
	    gw_trust_parse(&t, " 10.0.0.0/8, 192.168.1.1 ,fd00::/8,::1,,", err,
	                   sizeof(err)),
	    0);
	assert_int_equal(t.n, 4);
	ip("10.200.3.4", a);
	assert_true(gw_trust_has(&t, a));
	ip("11.0.0.1", a);
	assert_false(gw_trust_has(&t, a));
	ip("192.168.1.1", a);
	assert_true(gw_trust_has(&t, a));
	ip("192.168.1.2", a);
	assert_false(gw_trust_has(&t, a));
	ip("fd12::5", a);
	assert_true(gw_trust_has(&t, a));
	ip("fe80::1", a);
	assert_false(gw_trust_has(&t, a));

	/* Untrusted peer: X-Forwarded-For is ignored. */
	assert_string_equal(client(&t, "203.0.113.9", "1.1.1.1"),
	                    "203.0.113.9");
	/* Trusted peer: the right-most untrusted address. */
	assert_string_equal(client(&t, "10.0.0.2", "1.1.1.1"), "1.1.1.1");
	assert_string_equal(client(&t, "10.0.0.2", "6.6.6.6, 1.1.1.1"),
	                    "1.1.1.1");
	assert_string_equal(
	    client(&t, "10.0.0.2", "6.6.6.6, 1.1.1.1, 10.9.9.9,192.168.1.1"),
	    "1.1.1.1");
	/* Every hop trusted: the left-most. */
	assert_string_equal(client(&t, "10.0.0.2", "10.1.1.1, 10.2.2.2"),
	                    "10.1.1.1");
	/* Garbage stops the walk at the hop that sent it. */
	assert_string_equal(client(&t, "10.0.0.2", "1.1.1.1, junk"),
	                    "10.0.0.2");
	assert_string_equal(client(&t, "10.0.0.2", "junk, 10.3.3.3"),
	                    "10.3.3.3");
	assert_string_equal(client(&t, "10.0.0.2", ""), "10.0.0.2");
	/* Ports, brackets, IPv6. */
	assert_string_equal(client(&t, "::1", "[2001:db8::5]:1234"),
	                    "2001:db8::5");
	assert_string_equal(client(&t, "::1", "198.51.100.1:5555"),
	                    "198.51.100.1");
	gw_trust_fini(&t);

	/* No trusted proxies: never believed. */
	assert_int_equal(gw_trust_parse(&t, "", err, sizeof(err)), 0);
	assert_string_equal(client(&t, "10.0.0.2", "1.1.1.1"), "10.0.0.2");
	gw_trust_fini(&t);

	assert_int_equal(gw_trust_parse(&t, "10.0.0.0/33", err, sizeof(err)),
	                 -1);
	assert_int_equal(gw_trust_parse(&t, "::/129", err, sizeof(err)), -1);
	assert_int_equal(gw_trust_parse(&t, "nope", err, sizeof(err)), -1);
	assert_int_equal(gw_trust_parse(&t, "1.2.3.4/", err, sizeof(err)), -1);
	assert_int_equal(gw_trust_parse(&t, "0.0.0.0/0", err, sizeof(err)), 0);
	ip("8.8.8.8", a);
	assert_true(gw_trust_has(&t, a));
	ip("2001:db8::1", a);
	assert_false(gw_trust_has(&t, a)); /* a v4 /0 is v4 only */
	gw_trust_fini(&t);
}

/* ---- helpers ---- */

static void
test_rid_and_code(void **state)
{
	char long_rid[130];

	(void) state;
	assert_true(gw_rid_valid("abc-DEF_1.2", 11));
	assert_false(gw_rid_valid("", 0));
	assert_false(gw_rid_valid("a b", 3));
	assert_false(gw_rid_valid("a\r\nX-Evil: 1", 12));
	memset(long_rid, 'a', sizeof(long_rid));
	assert_true(gw_rid_valid(long_rid, 128));
	assert_false(gw_rid_valid(long_rid, 129));

	assert_true(gw_code_valid("aZ09_-", 6));
	assert_false(gw_code_valid("a.b", 3));
	assert_false(gw_code_valid("", 0));
	assert_true(gw_code_valid(long_rid, 64));
	assert_false(gw_code_valid(long_rid, 65));
	assert_false(gw_code_valid("a/b", 3));
}

static void
test_split_target(void **state)
{
	const char *p, *q;
	size_t pl, ql;

	(void) state;
	assert_int_equal(gw_split_target("/a/b?x=1#f", 10, &p, &pl, &q, &ql),
	                 0);
	assert_int_equal(pl, 4);
	assert_memory_equal(p, "/a/b", 4);
	assert_int_equal(ql, 3);
	assert_memory_equal(q, "x=1", 3);
	assert_int_equal(gw_split_target("/a#f?x", 6, &p, &pl, &q, &ql), 0);
	assert_int_equal(pl, 2);
	assert_null(q);
	assert_int_equal(
	    gw_split_target("http://h:1/p?q", 14, &p, &pl, &q, &ql), 0);
	assert_memory_equal(p, "/p", 2);
	assert_int_equal(ql, 1);
	assert_int_equal(gw_split_target("http://h", 8, &p, &pl, &q, &ql), 0);
	assert_int_equal(pl, 1);
	assert_int_equal(gw_split_target("*", 1, &p, &pl, &q, &ql), -1);
	assert_int_equal(gw_split_target("h:80", 4, &p, &pl, &q, &ql), -1);
	assert_int_equal(gw_split_target("", 0, &p, &pl, &q, &ql), -1);
}

static void
test_query_and_pct(void **state)
{
	const char *s = "a=1&&b&c=x%20y", *cur = s, *k, *v;
	size_t kl, vl, n;
	char *out;
	cm_arena a;

	(void) state;
	assert_true(gw_query_next(&cur, s + strlen(s), &k, &kl, &v, &vl));
	assert_memory_equal(k, "a", 1);
	assert_int_equal(vl, 1);
	assert_true(gw_query_next(&cur, s + strlen(s), &k, &kl, &v, &vl));
	assert_memory_equal(k, "b", 1);
	assert_int_equal(vl, 0);
	assert_true(gw_query_next(&cur, s + strlen(s), &k, &kl, &v, &vl));
	assert_memory_equal(v, "x%20y", 5);
	assert_false(gw_query_next(&cur, s + strlen(s), &k, &kl, &v, &vl));

	cm_arena_init(&a);
	assert_int_equal(gw_pct_decode("a%20b+c%2b", 10, true, &a, &out, &n),
	                 0);
	assert_string_equal(out, "a b c+");
	assert_int_equal(gw_pct_decode("a+b", 3, false, &a, &out, &n), 0);
	assert_string_equal(out, "a+b");
	assert_int_equal(gw_pct_decode("%4", 2, false, &a, &out, &n), -1);
	assert_int_equal(gw_pct_decode("%", 1, false, &a, &out, &n), -1);
	assert_int_equal(gw_pct_decode("%g0", 3, false, &a, &out, &n), -1);
	assert_int_equal(gw_pct_decode("%00", 3, false, &a, &out, &n), -1);
	cm_arena_fini(&a);
}

static void
test_error_json_and_status(void **state)
{
	struct gw_buf b = {0};
	json_t *j;

	(void) state;
	gw_error_json(&b, "NOT_FOUND", "no \"such\" link\n\x01");
	gw_buf_append(&b, "", 1);
	j = json_loads(b.p, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(j, "error"), "code")),
	                    "NOT_FOUND");
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(j, "error"), "message")),
	                    "no \"such\" link\n\x01");
	json_decref(j);
	gw_buf_free(&b);

	assert_string_equal(gw_http_reason(404), "Not Found");
	assert_string_equal(gw_http_reason(431),
	                    "Request Header Fields Too Large");
	assert_string_equal(gw_http_code_name(401), "UNAUTHENTICATED");
	assert_string_equal(gw_http_code_name(405), "UNIMPLEMENTED");
	assert_string_equal(gw_http_code_name(413), "RESOURCE_EXHAUSTED");
	assert_string_equal(gw_http_code_name(503), "UNAVAILABLE");
	assert_true(gw_strcaseeq("100-Continue", 12, "100-continue"));
	assert_false(gw_strcaseeq("100-continu", 11, "100-continue"));
	assert_true(gw_header_safe("https://e.com/a?b", 17));
	assert_false(gw_header_safe("x\r\nSet-Cookie: a", 16));
}

/* JSON only for a client that names it (with a weight above 0). */
static void
test_accept_json(void **state)
{
	static const char *const yes[] = {
	    "application/json",
	    "Application/JSON",
	    "text/plain, application/json",
	    "application/json;q=0.5",
	    "application/json; charset=utf-8; q=1",
	    "  application/json  ",
	    "text/x;a=\"p,q\", application/json;q=0.01",
	    "application/json;q=0.0001",
	};
	static const char *const no[] = {
	    "",
	    "*/*",
	    "application/*",
	    "text/plain",
	    "application/jsonx",
	    "application/json-seq",
	    "xapplication/json",
	    "application/json;q=0",
	    "application/json; q=0.000",
	    "application/json;Q=0.",
	    "text/x;a=\"application/json\"",
	    "application/octet-stream, application/json;q=0",
	};

	(void) state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!gw_accept_json(yes[i], strlen(yes[i])))
			fail_msg("not JSON: %s", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (gw_accept_json(no[i], strlen(no[i])))
			fail_msg("JSON: %s", no[i]);
}

static void
test_redirect_value(void **state)
{
	struct gw_redir e = {.expires_at = 1234567890123,
	                     .url = "https://e.com/",
	                     .url_len = 14};
	struct gw_redir d;
	char buf[64];
	size_t n;

	(void) state;
	/* The shortener's format: "<expires_at> <long_url>". */
	n = gw_redir_format(&e, buf, sizeof(buf));
	assert_int_equal(n, 28);
	assert_string_equal(buf, "1234567890123 https://e.com/");
	assert_int_equal(gw_redir_parse(buf, n, &d), 0);
	assert_true(d.expires_at == 1234567890123);
	assert_int_equal(d.url_len, 14);
	assert_memory_equal(d.url, "https://e.com/", 14);
	/* Exactly what fits: 28 bytes and the NUL. */
	assert_int_equal(gw_redir_format(&e, buf, 29), 28);
	assert_int_equal(gw_redir_format(&e, buf, 28), 0);
	e.expires_at = -1;
	assert_int_equal(gw_redir_format(&e, buf, sizeof(buf)), 0);

	/* Never expires; an empty URL parses (an expired entry may have
	 * none); anything else is malformed. */
	assert_int_equal(gw_redir_parse("0 https://e.com/a?b=c d", 23, &d), 0);
	assert_true(d.expires_at == 0);
	assert_int_equal(d.url_len, 21);
	assert_int_equal(gw_redir_parse("42 ", 3, &d), 0);
	assert_true(d.expires_at == 42);
	assert_int_equal(d.url_len, 0);
	assert_int_equal(gw_redir_parse("", 0, &d), -1);
	assert_int_equal(gw_redir_parse("42", 2, &d), -1);
	assert_int_equal(gw_redir_parse(" https://e.com/", 15, &d), -1);
	assert_int_equal(gw_redir_parse("-1 https://e.com/", 17, &d), -1);
	assert_int_equal(gw_redir_parse("4x2 https://e.com/", 18, &d), -1);
	assert_int_equal(gw_redir_parse("99999999999999999999 u", 22, &d), -1);
	assert_int_equal(gw_redir_parse("9223372036854775807 u", 21, &d), 0);
	assert_true(d.expires_at == INT64_MAX);

	/* TTL: the maximum, never past expiry. */
	assert_true(gw_redir_ttl_ms(1000000, 0, 60000) == 60000);
	assert_true(gw_redir_ttl_ms(1000000, 1030, 60000) == 30000);
	assert_true(gw_redir_ttl_ms(1000000, 5000, 60000) == 60000);
	assert_true(gw_redir_ttl_ms(1000000, 1000, 60000) <= 0);
	assert_true(gw_redir_ttl_ms(1000000, 10, 60000) < 0);
}

static void
test_clicks(void **state)
{
	struct gw_clicks c;
	size_t it = 0, len, seen = 0;
	const char *code;
	int64_t n, total = 0;
	char name[16];
	int i;

	(void) state;
	gw_clicks_init(&c, 1000);
	assert_int_equal(gw_clicks_add(&c, "abc", 3, 1), 0);
	assert_int_equal(gw_clicks_add(&c, "abc", 3, 2), 0);
	assert_int_equal(gw_clicks_add(&c, "xyz", 3, 5), 0);
	assert_int_equal(c.n, 2);
	while (gw_clicks_next(&c, &it, &code, &len, &n)) {
		if (len == 3 && memcmp(code, "abc", 3) == 0)
			assert_int_equal(n, 3);
		else
			assert_int_equal(n, 5);
		seen++;
	}
	assert_int_equal(seen, 2);
	gw_clicks_clear(&c);
	assert_int_equal(c.n, 0);
	it = 0;
	assert_false(gw_clicks_next(&c, &it, &code, &len, &n));

	/* Growth keeps every count; the bound refuses new codes only. */
	for (i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		assert_int_equal(gw_clicks_add(&c, name, strlen(name), i + 1),
		                 0);
	}
	assert_int_equal(gw_clicks_add(&c, "new", 3, 1), -1);
	assert_int_equal(gw_clicks_add(&c, "c7", 2, 1), 0);
	it = 0;
	while (gw_clicks_next(&c, &it, &code, &len, &n))
		total += n;
	assert_true(total == 1000 * 1001 / 2 + 1);
	gw_clicks_clear(&c);
	gw_clicks_fini(&c);
}

static void
test_api_key_id(void **state)
{
	char a[33], b[33], big[GW_API_KEY_MAX + 2];

	(void) state;
	assert_true(gw_api_key_id("secret-k1", 9, a));
	assert_int_equal(strlen(a), 32);
	for (int i = 0; i < 32; i++)
		assert_non_null(strchr("0123456789abcdef", a[i]));
	assert_true(gw_api_key_id("secret-k1", 9, b));
	assert_string_equal(a, b);
	assert_true(gw_api_key_id("secret-k2", 9, b));
	assert_string_not_equal(a, b);
	assert_null(strstr(a, "secret"));
	assert_false(gw_api_key_id("", 0, a));
	assert_false(gw_api_key_id("two words", 9, a));
	assert_false(gw_api_key_id("tab\there", 8, a));
	assert_false(gw_api_key_id("del\x7f", 4, a));
	memset(big, 'k', sizeof(big));
	assert_true(gw_api_key_id(big, GW_API_KEY_MAX, a));
	assert_false(gw_api_key_id(big, GW_API_KEY_MAX + 1, a));
}

/*
 * Repeated query parameters bind in order, linearly, and are bounded:
 * GW_QUERY_REPEAT_MAX values of one name, GW_QUERY_MAX parameters.
 */
static void
test_transcode_repeated_query(void **state)
{
	struct gw_match m;
	cm_arena a;
	uint8_t *out;
	size_t len, qlen;
	char err[256], *q = malloc(64 * 1024);
	Cache__SetRequest *req;

	(void) state;
	cm_arena_init(&a);
	assert_int_equal(match("PUT", "/api/v1/cache/ns/k", &a, &m),
	                 GW_MATCH_OK);
	/* 100 tags and one ttl: bound in order, the last ttl wins. */
	qlen = 0;
	for (int i = 0; i < GW_QUERY_REPEAT_MAX; i++)
		qlen +=
		    (size_t) sprintf(q + qlen, "%stags=t%d", i ? "&" : "", i);
	qlen += (size_t) sprintf(q + qlen, "&ttl=5&ttl=7");
	assert_int_equal(gw_transcode_request(m.route, &m, q, qlen, "v", 1, &a,
	                                      &out, &len, err, sizeof(err)),
	                 0);
	req = cache__set_request__unpack(NULL, len, out);
	assert_non_null(req);
	assert_int_equal(req->n_tags, GW_QUERY_REPEAT_MAX);
	for (size_t i = 0; i < req->n_tags; i++) {
		char want[32];

		snprintf(want, sizeof(want), "t%zu", i);
		assert_string_equal(req->tags[i], want);
	}
	assert_int_equal(req->ttl, 7);
	cache__set_request__free_unpacked(req, NULL);
	/* One more tag: 400. */
	qlen += (size_t) sprintf(q + qlen, "&tags=x");
	assert_int_equal(gw_transcode_request(m.route, &m, q, qlen, "v", 1, &a,
	                                      &out, &len, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "more than 100 values"));
	/* Too many parameters altogether: 400. */
	qlen = 0;
	for (int i = 0; i <= GW_QUERY_MAX; i++)
		qlen += (size_t) sprintf(q + qlen, "%sx%d=1", i ? "&" : "", i);
	assert_int_equal(gw_transcode_request(m.route, &m, q, qlen, "v", 1, &a,
	                                      &out, &len, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "query parameters"));
	free(q);
	cm_arena_fini(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_route_match),
	    cmocka_unit_test(test_route_trailing_slash_and_404),
	    cmocka_unit_test(test_route_405),
	    cmocka_unit_test(test_route_table_errors),
	    cmocka_unit_test(test_transcode_json_body),
	    cmocka_unit_test(test_transcode_params),
	    cmocka_unit_test(test_transcode_raw_body),
	    cmocka_unit_test(test_transcode_repeated_query),
	    cmocka_unit_test(test_transcode_reply),
	    cmocka_unit_test(test_jwt_good),
	    cmocka_unit_test(test_jwt_rejections),
	    cmocka_unit_test(test_bearer_and_secret),
	    cmocka_unit_test(test_b64url),
	    cmocka_unit_test(test_ip_parse),
	    cmocka_unit_test(test_trusted_proxies),
	    cmocka_unit_test(test_rid_and_code),
	    cmocka_unit_test(test_split_target),
	    cmocka_unit_test(test_query_and_pct),
	    cmocka_unit_test(test_error_json_and_status),
	    cmocka_unit_test(test_accept_json),
	    cmocka_unit_test(test_redirect_value),
	    cmocka_unit_test(test_clicks),
	    cmocka_unit_test(test_api_key_id),
	};

	return (cmocka_run_group_tests(tests, router_setup, router_teardown));
}
