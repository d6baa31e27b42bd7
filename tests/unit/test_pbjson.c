/*
 * Unit tests of common/pbjson.c, on the real service messages
 * (shortener.proto, health.proto) and on test-only messages with every
 * field type and label (pbjson_test.proto, pbjson_test2.proto).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <math.h>
#include <stdio.h>

#include <cmocka.h>
#include <jansson.h>

#include "arena.h"
#include "health.pb-c.h"
#include "pbjson.h"
#include "pbjson_test.pb-c.h"
#include "pbjson_test2.pb-c.h"
#include "shortener.pb-c.h"

struct fx {
	cm_arena arena;
	char err[256];
};

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (fx == NULL)
		return (-1);
	cm_arena_init(&fx->arena);
	*state = fx;
	return (0);
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	cm_arena_fini(&fx->arena);
	free(fx);
	return (0);
}

/*
 * Parses js (which must be valid JSON) and decodes it into msg, which is
 * initialised here for desc.  Returns cm_pbjson_decode's result.  NULs
 * in strings are let through, so that the decoder's own check is tested.
 */
static int
dec(struct fx *fx, const ProtobufCMessageDescriptor *desc, const char *js,
    void *msg)
{
	json_error_t jerr;
	json_t *j;
	int rv;

	j = json_loads(js, JSON_ALLOW_NUL, &jerr);
	if (j == NULL)
		fail_msg("bad test JSON %s: %s", js, jerr.text);
	protobuf_c_message_init(desc, msg);
	fx->err[0] = '\0';
	rv = cm_pbjson_decode(desc, j, msg, &fx->arena, fx->err,
	                      sizeof(fx->err));
	json_decref(j);
	return (rv);
}

/* Decoding js must fail with exactly the error message want. */
static void
dec_fails(struct fx *fx, const ProtobufCMessageDescriptor *desc, const char *js,
          const char *want)
{
	union {
		ProtobufCMessage base;
		max_align_t align;
		char buf[1024];
	} m;

	assert_true(desc->sizeof_message <= sizeof(m));
	assert_int_equal(dec(fx, desc, js, &m), -1);
	assert_string_equal(fx->err, want);
}

/* Encodes msg and returns its compact JSON text (caller frees). */
static char *
enc(const void *msg)
{
	json_t *j;
	char *s;

	j = cm_pbjson_encode(msg);
	assert_non_null(j);
	assert_true(json_is_object(j));
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	assert_non_null(s);
	return (s);
}

static void
assert_enc(const void *msg, const char *want)
{
	char *s = enc(msg);

	assert_string_equal(s, want);
	free(s);
}

static void
test_shortener_round_trip(void **state)
{
	struct fx *fx = *state;
	Shortener__CreateUrlRequest req;
	Shortener__Url url = SHORTENER__URL__INIT, back;
	char *s;

	assert_int_equal(dec(fx, &shortener__create_url_request__descriptor,
	                     "{\"long_url\":\"https://example.com/a?b=c\","
	                     "\"custom_alias\":\"mine\",\"expires_in\":3600}",
	                     &req),
	                 0);
	assert_string_equal(req.long_url, "https://example.com/a?b=c");
	assert_string_equal(req.custom_alias, "mine");
	assert_true(req.expires_in == 3600);

	url.code = "abc123";
	url.short_url = "https://s.example/abc123";
	url.long_url = "https://example.com/\xc3\xa9";
	url.created_at = 1700000000;
	url.expires_at = 0;
	url.clicks = INT64_MAX;
	s = enc(&url);
	assert_string_equal(
	    s,
	    "{\"code\":\"abc123\",\"short_url\":\"https://s.example/abc123\","
	    "\"long_url\":\"https://example.com/\xc3\xa9\","
	    "\"created_at\":1700000000,\"expires_at\":0,"
	    "\"clicks\":9223372036854775807}");
	assert_int_equal(dec(fx, &shortener__url__descriptor, s, &back), 0);
	free(s);
	assert_string_equal(back.code, url.code);
	assert_string_equal(back.short_url, url.short_url);
	assert_string_equal(back.long_url, url.long_url);
	assert_true(back.created_at == url.created_at);
	assert_true(back.clicks == INT64_MAX);

	/* defaults are emitted too */
	shortener__url__init(&url);
	assert_enc(&url, "{\"code\":\"\",\"short_url\":\"\",\"long_url\":\"\","
	                 "\"created_at\":0,\"expires_at\":0,\"clicks\":0}");
}

static void
test_camel_case(void **state)
{
	struct fx *fx = *state;
	Shortener__CreateUrlRequest req;
	Shortener__ListUrlsResponse resp;

	assert_int_equal(dec(fx, &shortener__create_url_request__descriptor,
	                     "{\"longUrl\":\"u\",\"customAlias\":\"a\","
	                     "\"expiresIn\":\"60\"}",
	                     &req),
	                 0);
	assert_string_equal(req.long_url, "u");
	assert_string_equal(req.custom_alias, "a");
	assert_true(req.expires_in == 60);

	assert_int_equal(dec(fx, &shortener__list_urls_response__descriptor,
	                     "{\"nextCursor\":\"c\",\"urls\":[{\"shortUrl\":"
	                     "\"s\",\"createdAt\":5}]}",
	                     &resp),
	                 0);
	assert_string_equal(resp.next_cursor, "c");
	assert_int_equal(resp.n_urls, 1);
	assert_string_equal(resp.urls[0]->short_url, "s");
	assert_true(resp.urls[0]->created_at == 5);

	/* the same field twice, under both names */
	dec_fails(fx, &shortener__create_url_request__descriptor,
	          "{\"long_url\":\"a\",\"longUrl\":\"b\"}",
	          "field \"long_url\": given more than once");
	/* camelCase is only the JSON name, not any capitalisation */
	dec_fails(fx, &shortener__create_url_request__descriptor,
	          "{\"LongUrl\":\"a\"}", "unknown field \"LongUrl\"");
	dec_fails(fx, &shortener__create_url_request__descriptor,
	          "{\"longurl\":\"a\"}", "unknown field \"longurl\"");
}

static void
test_int64_forms(void **state)
{
	struct fx *fx = *state;
	Shortener__CreateUrlRequest r;
	const ProtobufCMessageDescriptor *d =
	    &shortener__create_url_request__descriptor;
	json_error_t jerr;

	assert_int_equal(dec(fx, d, "{\"expires_in\":9223372036854775807}", &r),
	                 0);
	assert_true(r.expires_in == INT64_MAX);
	assert_int_equal(
	    dec(fx, d, "{\"expires_in\":-9223372036854775808}", &r), 0);
	assert_true(r.expires_in == INT64_MIN);
	assert_int_equal(
	    dec(fx, d, "{\"expires_in\":\"9223372036854775807\"}", &r), 0);
	assert_true(r.expires_in == INT64_MAX);
	assert_int_equal(
	    dec(fx, d, "{\"expires_in\":\"-9223372036854775808\"}", &r), 0);
	assert_true(r.expires_in == INT64_MIN);
	assert_int_equal(dec(fx, d, "{\"expires_in\":\"-42\"}", &r), 0);
	assert_true(r.expires_in == -42);
	/* integral reals, e.g. exponent notation */
	assert_int_equal(dec(fx, d, "{\"expires_in\":1e3}", &r), 0);
	assert_true(r.expires_in == 1000);
	assert_int_equal(dec(fx, d, "{\"expires_in\":-2.0}", &r), 0);
	assert_true(r.expires_in == -2);

	dec_fails(fx, d, "{\"expires_in\":\"9223372036854775808\"}",
	          "field \"expires_in\": value out of range for int64");
	dec_fails(fx, d, "{\"expires_in\":\"-9223372036854775809\"}",
	          "field \"expires_in\": value out of range for int64");
	dec_fails(fx, d, "{\"expires_in\":\"99999999999999999999\"}",
	          "field \"expires_in\": value out of range for int64");
	dec_fails(fx, d, "{\"expires_in\":1e30}",
	          "field \"expires_in\": value out of range for int64");
	dec_fails(fx, d, "{\"expires_in\":9223372036854775808.0}",
	          "field \"expires_in\": value out of range for int64");
	dec_fails(fx, d, "{\"expires_in\":1.5}",
	          "field \"expires_in\": expected an integer");
	dec_fails(fx, d, "{\"expires_in\":\"12abc\"}",
	          "field \"expires_in\": expected an integer");
	dec_fails(fx, d, "{\"expires_in\":\"99999999999999999999x\"}",
	          "field \"expires_in\": expected an integer");
	dec_fails(fx, d, "{\"expires_in\":\" 12\"}",
	          "field \"expires_in\": expected an integer");
	dec_fails(fx, d, "{\"expires_in\":\"+12\"}",
	          "field \"expires_in\": expected an integer");
	dec_fails(fx, d, "{\"expires_in\":\"\"}",
	          "field \"expires_in\": expected an integer");
	dec_fails(fx, d, "{\"expires_in\":\"-\"}",
	          "field \"expires_in\": expected an integer");
	dec_fails(fx, d, "{\"expires_in\":\"1.5\"}",
	          "field \"expires_in\": expected an integer");
	dec_fails(fx, d, "{\"expires_in\":true}",
	          "field \"expires_in\": expected an integer");
	dec_fails(fx, d, "{\"expires_in\":[1]}",
	          "field \"expires_in\": expected an integer");
	dec_fails(fx, d, "{\"expires_in\":{}}",
	          "field \"expires_in\": expected an integer");

	/* jansson itself refuses integers it cannot hold */
	assert_null(
	    json_loads("{\"expires_in\":99999999999999999999}", 0, &jerr));
}

static void
test_int32_range(void **state)
{
	struct fx *fx = *state;
	Shortener__ListUrlsRequest r;
	const ProtobufCMessageDescriptor *d =
	    &shortener__list_urls_request__descriptor;

	assert_int_equal(dec(fx, d, "{\"limit\":2147483647}", &r), 0);
	assert_int_equal(r.limit, INT32_MAX);
	assert_int_equal(dec(fx, d, "{\"limit\":-2147483648}", &r), 0);
	assert_int_equal(r.limit, INT32_MIN);
	assert_int_equal(dec(fx, d, "{\"limit\":\"25\"}", &r), 0);
	assert_int_equal(r.limit, 25);
	dec_fails(fx, d, "{\"limit\":2147483648}",
	          "field \"limit\": value out of range for int32");
	dec_fails(fx, d, "{\"limit\":-2147483649}",
	          "field \"limit\": value out of range for int32");
	dec_fails(fx, d, "{\"limit\":\"4294967296\"}",
	          "field \"limit\": value out of range for int32");
	dec_fails(fx, d, "{\"limit\":1e30}",
	          "field \"limit\": value out of range for int32");
	dec_fails(fx, d, "{\"limit\":9223372036854775807}",
	          "field \"limit\": value out of range for int32");
}

static void
test_all_scalars(void **state)
{
	struct fx *fx = *state;
	Pbjt__All m;
	const ProtobufCMessageDescriptor *d = &pbjt__all__descriptor;

	assert_int_equal(
	    dec(fx, d,
	        "{\"f_int32\":-5,\"f_sint32\":-2147483648,\"f_sfixed32\":"
	        "2147483647,\"f_int64\":-1,\"f_sint64\":\"-"
	        "9223372036854775808\","
	        "\"f_sfixed64\":9223372036854775807,\"f_uint32\":4294967295,"
	        "\"f_fixed32\":\"7\",\"f_uint64\":\"18446744073709551615\","
	        "\"f_fixed64\":9223372036854775807,\"f_float\":0.5,"
	        "\"f_double\":-1e300,\"f_bool\":true,\"f_color\":\"GREEN\","
	        "\"f_string\":\"s\",\"f_bytes\":\"AAEC\"}",
	        &m),
	    0);
	assert_int_equal(m.f_int32, -5);
	assert_int_equal(m.f_sint32, INT32_MIN);
	assert_int_equal(m.f_sfixed32, INT32_MAX);
	assert_true(m.f_int64 == -1);
	assert_true(m.f_sint64 == INT64_MIN);
	assert_true(m.f_sfixed64 == INT64_MAX);
	assert_true(m.f_uint32 == UINT32_MAX);
	assert_true(m.f_fixed32 == 7);
	assert_true(m.f_uint64 == UINT64_MAX);
	assert_true(m.f_fixed64 == INT64_MAX);
	assert_true(m.f_float == 0.5f);
	assert_true(m.f_double == -1e300);
	assert_true(m.f_bool);
	assert_int_equal(m.f_color, PBJT__COLOR__GREEN);
	assert_string_equal(m.f_string, "s");
	assert_int_equal(m.f_bytes.len, 3);
	assert_memory_equal(m.f_bytes.data, "\0\1\2", 3);

	/* unsigned types refuse negatives, 32-bit ones 2^32 */
	dec_fails(fx, d, "{\"f_uint64\":-1}",
	          "field \"f_uint64\": value out of range for uint64");
	dec_fails(fx, d, "{\"f_fixed64\":\"-1\"}",
	          "field \"f_fixed64\": value out of range for fixed64");
	dec_fails(fx, d, "{\"f_uint64\":\"18446744073709551616\"}",
	          "field \"f_uint64\": value out of range for uint64");
	dec_fails(fx, d, "{\"f_uint32\":4294967296}",
	          "field \"f_uint32\": value out of range for uint32");
	dec_fails(fx, d, "{\"f_fixed32\":-1}",
	          "field \"f_fixed32\": value out of range for fixed32");
	dec_fails(fx, d, "{\"f_sfixed32\":2147483648}",
	          "field \"f_sfixed32\": value out of range for sfixed32");
	dec_fails(fx, d, "{\"f_sint32\":\"-2147483649\"}",
	          "field \"f_sint32\": value out of range for sint32");
	/* "-0" is zero, which fits unsigned types */
	assert_int_equal(dec(fx, d, "{\"f_uint64\":\"-0\"}", &m), 0);
	assert_true(m.f_uint64 == 0);
	/* a uint64 real up to 2^64 - 2048 is exact */
	assert_int_equal(dec(fx, d, "{\"f_uint64\":1.8446744073709550e19}", &m),
	                 0);
	assert_true(m.f_uint64 == 18446744073709549568ULL);
	dec_fails(fx, d, "{\"f_uint64\":1.8446744073709552e19}",
	          "field \"f_uint64\": value out of range for uint64");

	/* floats */
	assert_int_equal(dec(fx, d, "{\"f_float\":3,\"f_double\":\"2.5\"}", &m),
	                 0);
	assert_true(m.f_float == 3.0f);
	assert_true(m.f_double == 2.5);
	assert_int_equal(
	    dec(fx, d, "{\"f_float\":\"-Infinity\",\"f_double\":\"NaN\"}", &m),
	    0);
	assert_true(m.f_float < 0 && m.f_float * 0.0f != 0.0f);
	assert_true(m.f_double != m.f_double);
	dec_fails(fx, d, "{\"f_float\":1e39}",
	          "field \"f_float\": value out of range for float");
	dec_fails(fx, d, "{\"f_double\":\"1e999\"}",
	          "field \"f_double\": value out of range for double");
	dec_fails(fx, d, "{\"f_double\":\"inf\"}",
	          "field \"f_double\": expected a number");
	dec_fails(fx, d, "{\"f_double\":\"0x10\"}",
	          "field \"f_double\": expected a number");
	dec_fails(fx, d, "{\"f_double\":\"1.5 \"}",
	          "field \"f_double\": expected a number");
	dec_fails(fx, d, "{\"f_double\":\"\"}",
	          "field \"f_double\": expected a number");
	dec_fails(fx, d, "{\"f_double\":false}",
	          "field \"f_double\": expected a number");

	/* bools are JSON true/false only */
	dec_fails(fx, d, "{\"f_bool\":\"true\"}",
	          "field \"f_bool\": expected true or false");
	dec_fails(fx, d, "{\"f_bool\":1}",
	          "field \"f_bool\": expected true or false");
}

static void
test_enums(void **state)
{
	struct fx *fx = *state;
	Health__HealthCheckResponse h = HEALTH__HEALTH_CHECK_RESPONSE__INIT;
	Pbjt__All m;
	const ProtobufCMessageDescriptor *d =
	    &health__health_check_response__descriptor;

	assert_int_equal(dec(fx, d, "{\"status\":\"SERVING\"}", &h), 0);
	assert_int_equal(
	    h.status, HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	assert_int_equal(dec(fx, d, "{\"status\":2}", &h), 0);
	assert_int_equal(
	    h.status,
	    HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
	assert_int_equal(dec(fx, d, "{\"status\":\"2\"}", &h), 0);
	assert_int_equal(
	    h.status,
	    HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
	dec_fails(fx, d, "{\"status\":\"BOGUS\"}",
	          "field \"status\": unknown value \"BOGUS\" for enum "
	          "health.HealthCheckResponse.ServingStatus");
	/* ServingStatus's values have no prefix: "serving" is SERVING */
	assert_int_equal(dec(fx, d, "{\"status\":\"not_serving\"}", &h), 0);
	assert_int_equal(
	    h.status,
	    HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
	/* short names in lower case only */
	dec_fails(fx, d, "{\"status\":\"Serving\"}",
	          "field \"status\": unknown value \"Serving\" for enum "
	          "health.HealthCheckResponse.ServingStatus");
	dec_fails(fx, d, "{\"status\":7}",
	          "field \"status\": unknown value 7 for enum "
	          "health.HealthCheckResponse.ServingStatus");
	dec_fails(fx, d, "{\"status\":true}",
	          "field \"status\": expected a name of enum "
	          "health.HealthCheckResponse.ServingStatus");

	h.status = HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
	assert_enc(&h, "{\"status\":\"not_serving\",\"dependencies\":[]}");
	/* a number without a name stays a number */
	h.status = (Health__HealthCheckResponse__ServingStatus) 9;
	assert_enc(&h, "{\"status\":9,\"dependencies\":[]}");

	/* negative values, by name and number */
	assert_int_equal(
	    dec(fx, &pbjt__all__descriptor,
	        "{\"f_color\":\"INFRARED\",\"r_color\":[-1,\"RED\","
	        "0]}",
	        &m),
	    0);
	assert_int_equal(m.f_color, PBJT__COLOR__INFRARED);
	assert_int_equal(m.n_r_color, 3);
	assert_int_equal(m.r_color[0], PBJT__COLOR__INFRARED);
	assert_int_equal(m.r_color[1], PBJT__COLOR__RED);
	assert_int_equal(m.r_color[2], PBJT__COLOR__COLOR_UNSPECIFIED);
	dec_fails(
	    fx, &pbjt__all__descriptor, "{\"r_color\":[\"RED\",\"X\"]}",
	    "field \"r_color[1]\": unknown value \"X\" for enum pbjt.Color");
}

/*
 * Short names: lower case, without the prefix the enum type's name gives
 * its values; accepted beside the full names and written instead of them.
 */
static void
test_enum_short_names(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *d = &pbjt__prio__descriptor;
	Pbjt__Prio p = PBJT__PRIO__INIT, back;
	Pbjt__Priority ps[] = {PBJT__PRIORITY__PRIORITY_LOW,
	                       PBJT__PRIORITY__URGENT,
	                       PBJT__PRIORITY__PRIORITY_UNSPECIFIED};
	char *s;

	/* both forms, and numbers */
	assert_int_equal(dec(fx, d, "{\"priority\":\"high\"}", &p), 0);
	assert_int_equal(p.priority, PBJT__PRIORITY__PRIORITY_HIGH);
	assert_int_equal(dec(fx, d, "{\"priority\":\"PRIORITY_LOW\"}", &p), 0);
	assert_int_equal(p.priority, PBJT__PRIORITY__PRIORITY_LOW);
	assert_int_equal(dec(fx, d, "{\"priority\":\"urgent\"}", &p), 0);
	assert_int_equal(p.priority, PBJT__PRIORITY__URGENT);
	assert_int_equal(dec(fx, d, "{\"priority\":\"URGENT\"}", &p), 0);
	assert_int_equal(p.priority, PBJT__PRIORITY__URGENT);
	assert_int_equal(dec(fx, d, "{\"priority\":\"unspecified\"}", &p), 0);
	assert_int_equal(p.priority, PBJT__PRIORITY__PRIORITY_UNSPECIFIED);
	assert_int_equal(dec(fx, d, "{\"priority\":1}", &p), 0);
	assert_int_equal(p.priority, PBJT__PRIORITY__PRIORITY_HIGH);
	assert_int_equal(dec(fx, d, "{\"priority\":\"2\"}", &p), 0);
	assert_int_equal(p.priority, PBJT__PRIORITY__PRIORITY_LOW);
	assert_int_equal(dec(fx, d,
	                     "{\"status\":\"queued\",\"state\":\"delivered\","
	                     "\"priorities\":[\"high\",\"PRIORITY_LOW\",3]}",
	                     &p),
	                 0);
	assert_int_equal(p.status, PBJT__PRIO__STATUS__STATUS_QUEUED);
	assert_int_equal(p.state,
	                 PBJT__DELIVERY_STATE__DELIVERY_STATE_DELIVERED);
	assert_int_equal(p.n_priorities, 3);
	assert_int_equal(p.priorities[0], PBJT__PRIORITY__PRIORITY_HIGH);
	assert_int_equal(p.priorities[1], PBJT__PRIORITY__PRIORITY_LOW);
	assert_int_equal(p.priorities[2], PBJT__PRIORITY__URGENT);

	/* anything else is refused, naming the enum */
	dec_fails(fx, d, "{\"priority\":\"HIGH\"}",
	          "field \"priority\": unknown value \"HIGH\" for enum "
	          "pbjt.Priority");
	dec_fails(fx, d, "{\"priority\":\"High\"}",
	          "field \"priority\": unknown value \"High\" for enum "
	          "pbjt.Priority");
	dec_fails(fx, d, "{\"priority\":\"priority_high\"}",
	          "field \"priority\": unknown value \"priority_high\" for "
	          "enum pbjt.Priority");
	dec_fails(fx, d, "{\"priority\":\"medium\"}",
	          "field \"priority\": unknown value \"medium\" for enum "
	          "pbjt.Priority");
	dec_fails(fx, d, "{\"priority\":\"\"}",
	          "field \"priority\": unknown value \"\" for enum "
	          "pbjt.Priority");
	dec_fails(fx, d, "{\"priority\":\"high\\u0000\"}",
	          "field \"priority\": unknown value for enum pbjt.Priority");
	dec_fails(fx, d, "{\"priorities\":[\"low\",\"lowest\"]}",
	          "field \"priorities[1]\": unknown value \"lowest\" for enum "
	          "pbjt.Priority");
	dec_fails(fx, d, "{\"status\":\"status_queued\"}",
	          "field \"status\": unknown value \"status_queued\" for enum "
	          "pbjt.Prio.Status");

	/* written as short names; a number without a name stays a number */
	p.priority = PBJT__PRIORITY__PRIORITY_HIGH;
	p.n_priorities = 3;
	p.priorities = ps;
	p.status = PBJT__PRIO__STATUS__STATUS_UNSPECIFIED;
	p.state = PBJT__DELIVERY_STATE__DELIVERY_STATE_DELIVERED;
	s = enc(&p);
	assert_string_equal(s, "{\"priority\":\"high\",\"priorities\":["
	                       "\"low\",\"urgent\",\"unspecified\"],"
	                       "\"status\":\"unspecified\",\"state\":"
	                       "\"delivered\"}");
	assert_int_equal(dec(fx, d, s, &back), 0);
	free(s);
	assert_int_equal(back.priority, p.priority);
	assert_int_equal(back.n_priorities, 3);
	assert_memory_equal(back.priorities, ps, sizeof(ps));
	assert_int_equal(back.state, p.state);
	p.n_priorities = 0;
	p.priority = (Pbjt__Priority) 42;
	assert_enc(&p, "{\"priority\":42,\"priorities\":[],\"status\":"
	               "\"unspecified\",\"state\":\"delivered\"}");
}

/*
 * Enum values whose short names collide (possible in proto2): decoding
 * the shared short name is refused, full names still work, and such
 * values are written by their full names so the output reads back the
 * same.  Prefixes come off only before a '_' and a non-digit.
 */
static void
test_enum_short_name_clashes(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *d = &pbjt2__legacy_clash__descriptor;
	Pbjt2__LegacyClash c = PBJT2__LEGACY_CLASH__INIT, back;
	Pbjt2__Clash all[] = {
	    PBJT2__CLASH__CLASH_NONE,      PBJT2__CLASH__RED,
	    PBJT2__CLASH__CLASH_RED,       PBJT2__CLASH__CLASH_GREEN,
	    PBJT2__CLASH__green,           PBJT2__CLASH__CLASHING,
	    PBJT2__CLASH__CLASH_9,         PBJT2__CLASH__clash_blue,
	    PBJT2__CLASH__CLASH_CLASH_BLUE};
	char *s;

	dec_fails(fx, d, "{\"clash\":\"red\"}",
	          "field \"clash\": ambiguous value \"red\" for enum "
	          "pbjt2.Clash (give its full name)");
	assert_int_equal(dec(fx, d, "{\"clash\":\"RED\"}", &c), 0);
	assert_int_equal(c.clash, PBJT2__CLASH__RED);
	assert_int_equal(dec(fx, d, "{\"clash\":\"CLASH_RED\"}", &c), 0);
	assert_int_equal(c.clash, PBJT2__CLASH__CLASH_RED);
	/* a full name wins over a short one */
	assert_int_equal(dec(fx, d, "{\"clash\":\"green\"}", &c), 0);
	assert_int_equal(c.clash, PBJT2__CLASH__green);
	assert_int_equal(dec(fx, d, "{\"clash\":\"none\"}", &c), 0);
	assert_int_equal(c.clash, PBJT2__CLASH__CLASH_NONE);
	assert_int_equal(dec(fx, d, "{\"clash\":\"clashing\"}", &c), 0);
	assert_int_equal(c.clash, PBJT2__CLASH__CLASHING);
	assert_int_equal(dec(fx, d, "{\"clash\":\"clash_9\"}", &c), 0);
	assert_int_equal(c.clash, PBJT2__CLASH__CLASH_9);
	assert_int_equal(dec(fx, d, "{\"clash\":\"blue\"}", &c), 0);
	assert_int_equal(c.clash, PBJT2__CLASH__clash_blue);
	assert_int_equal(dec(fx, d, "{\"clash\":\"clash_blue\"}", &c), 0);
	assert_int_equal(c.clash, PBJT2__CLASH__clash_blue);
	assert_int_equal(dec(fx, d, "{\"clash\":\"CLASH_CLASH_BLUE\"}", &c), 0);
	assert_int_equal(c.clash, PBJT2__CLASH__CLASH_CLASH_BLUE);
	dec_fails(fx, d, "{\"clash\":\"ing\"}",
	          "field \"clash\": unknown value \"ing\" for enum "
	          "pbjt2.Clash");
	dec_fails(fx, d, "{\"clash\":\"9\"}",
	          "field \"clash\": unknown value \"9\" for enum "
	          "pbjt2.Clash");

	c.has_clash = 1;
	c.clash = PBJT2__CLASH__RED;
	c.n_clashes = sizeof(all) / sizeof(all[0]);
	c.clashes = all;
	s = enc(&c);
	assert_string_equal(
	    s, "{\"clash\":\"RED\",\"clashes\":[\"none\",\"RED\",\"CLASH_RED\","
	       "\"CLASH_GREEN\",\"green\",\"clashing\",\"clash_9\",\"blue\","
	       "\"CLASH_CLASH_BLUE\"]}");
	assert_int_equal(dec(fx, d, s, &back), 0);
	free(s);
	assert_int_equal(back.n_clashes, c.n_clashes);
	assert_memory_equal(back.clashes, all, sizeof(all));
}

/* Query and path parameters take the same names. */
static void
test_enum_names_from_text(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *d = &pbjt__prio__descriptor;
	Pbjt__Prio p = PBJT__PRIO__INIT;
	const char *vals[] = {"high", "PRIORITY_LOW", "urgent", "0"};
	size_t lens[] = {4, 12, 6, 1};

	assert_int_equal(cm_pbjson_set_field_text(d, &p.base, "priority", "low",
	                                          3, &fx->arena, fx->err,
	                                          sizeof(fx->err)),
	                 0);
	assert_int_equal(p.priority, PBJT__PRIORITY__PRIORITY_LOW);
	assert_int_equal(
	    cm_pbjson_set_field_text(d, &p.base, "priority", "PRIORITY_HIGH",
	                             13, &fx->arena, fx->err, sizeof(fx->err)),
	    0);
	assert_int_equal(p.priority, PBJT__PRIORITY__PRIORITY_HIGH);
	assert_int_equal(cm_pbjson_set_field_text(d, &p.base, "status",
	                                          "queued", 6, &fx->arena,
	                                          fx->err, sizeof(fx->err)),
	                 0);
	assert_int_equal(p.status, PBJT__PRIO__STATUS__STATUS_QUEUED);
	assert_int_equal(cm_pbjson_add_field_texts(d, &p.base, "priorities",
	                                           vals, lens, 4, &fx->arena,
	                                           fx->err, sizeof(fx->err)),
	                 0);
	assert_int_equal(p.n_priorities, 4);
	assert_int_equal(p.priorities[0], PBJT__PRIORITY__PRIORITY_HIGH);
	assert_int_equal(p.priorities[1], PBJT__PRIORITY__PRIORITY_LOW);
	assert_int_equal(p.priorities[2], PBJT__PRIORITY__URGENT);
	assert_int_equal(p.priorities[3], PBJT__PRIORITY__PRIORITY_UNSPECIFIED);
	assert_int_equal(cm_pbjson_set_field_text(d, &p.base, "priority",
	                                          "HIGH", 4, &fx->arena,
	                                          fx->err, sizeof(fx->err)),
	                 -1);
	assert_string_equal(fx->err, "field \"priority\": unknown value "
	                             "\"HIGH\" for enum pbjt.Priority");
	assert_int_equal(p.priority, PBJT__PRIORITY__PRIORITY_HIGH);
}

static void
test_unknown_and_wrong_types(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *h =
	    &health__health_check_response__descriptor;
	const ProtobufCMessageDescriptor *c =
	    &shortener__create_url_request__descriptor;

	dec_fails(fx, c, "{\"long_url\":\"u\",\"nope\":1}",
	          "unknown field \"nope\"");
	dec_fails(fx, h, "{\"dependencies\":[{\"name\":\"pg\",\"bogus\":1}]}",
	          "unknown field \"dependencies[0].bogus\"");
	dec_fails(fx, c, "{\"long_url\":5}",
	          "field \"long_url\": expected a string");
	dec_fails(fx, c, "{\"long_url\":[\"a\"]}",
	          "field \"long_url\": expected a string");
	dec_fails(fx, c, "{\"long_url\":\"a\\u0000b\"}",
	          "field \"long_url\": string contains a NUL character");
	dec_fails(fx, h, "{\"dependencies\":{}}",
	          "field \"dependencies\": expected an array");
	dec_fails(fx, h, "{\"dependencies\":[{\"ok\":true},5]}",
	          "field \"dependencies[1]\": expected an object");
	dec_fails(fx, h, "{\"dependencies\":[{\"ok\":\"yes\"}]}",
	          "field \"dependencies[0].ok\": expected true or false");
	dec_fails(fx, &pbjt__all__descriptor, "{\"f_inner\":[]}",
	          "field \"f_inner\": expected an object");
	dec_fails(fx, &pbjt__all__descriptor, "{\"f_inner\":\"x\"}",
	          "field \"f_inner\": expected an object");
	dec_fails(fx, &pbjt__all__descriptor, "{\"f_bytes\":5}",
	          "field \"f_bytes\": expected a base64 string");
	dec_fails(fx, &pbjt__all__descriptor,
	          "{\"legacy\":{\"subs\":[{\"x\":1},{\"x\":-1}]}}",
	          "field \"legacy.subs[1].x\": value out of range for uint32");
}

static void
test_top_level_and_bad_json(void **state)
{
	struct fx *fx = *state;
	Shortener__CreateUrlRequest r = SHORTENER__CREATE_URL_REQUEST__INIT;
	const char *docs[] = {"[]", "\"s\"", "5", "null", "true"};
	json_error_t jerr;
	json_t *j;
	size_t i;

	for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		j = json_loads(docs[i], JSON_DECODE_ANY, &jerr);
		assert_non_null(j);
		assert_int_equal(
		    cm_pbjson_decode(&shortener__create_url_request__descriptor,
		                     j, &r.base, &fx->arena, fx->err,
		                     sizeof(fx->err)),
		    -1);
		assert_string_equal(fx->err, "expected a JSON object");
		json_decref(j);
	}
	assert_int_equal(
	    cm_pbjson_decode(&shortener__create_url_request__descriptor, NULL,
	                     &r.base, &fx->arena, fx->err, sizeof(fx->err)),
	    -1);
	/* malformed or non-UTF-8 JSON never gets as far as the decoder */
	assert_null(json_loads("{\"long_url\":", 0, &jerr));
	assert_null(json_loads("{\"long_url\":\"\xff\"}", 0, &jerr));
	assert_null(json_loads("{'a':1}", 0, &jerr));
}

static void
test_null_handling(void **state)
{
	struct fx *fx = *state;
	Shortener__CreateUrlRequest r;
	Pbjt__All m;
	Pbjt2__Legacy l;

	assert_int_equal(dec(fx, &shortener__create_url_request__descriptor,
	                     "{\"long_url\":null,\"expires_in\":null}", &r),
	                 0);
	assert_string_equal(r.long_url, "");
	assert_true(r.expires_in == 0);
	assert_int_equal(dec(fx, &pbjt__all__descriptor,
	                     "{\"f_inner\":null,\"r_int32\":null,\"c_string\":"
	                     "null,\"c_int64\":3,\"legacy\":null}",
	                     &m),
	                 0);
	assert_null(m.f_inner);
	assert_int_equal(m.n_r_int32, 0);
	assert_null(m.legacy);
	assert_int_equal(m.choice_case, PBJT__ALL__CHOICE_C_INT64);
	assert_true(m.c_int64 == 3);
	assert_int_equal(dec(fx, &pbjt2__legacy__descriptor,
	                     "{\"opt_int64\":null,\"opt_string\":null}", &l),
	                 0);
	assert_false(l.has_opt_int64);
	assert_true(l.opt_int64 == 7);
	assert_null(l.opt_string);
	/* null is not an element */
	dec_fails(fx, &pbjt__all__descriptor, "{\"r_int32\":[1,null]}",
	          "field \"r_int32[1]\": expected an integer");
	dec_fails(fx, &pbjt__all__descriptor, "{\"r_inner\":[null]}",
	          "field \"r_inner[0]\": expected an object");
}

static void
test_bytes_base64(void **state)
{
	struct fx *fx = *state;
	Pbjt__All m = PBJT__ALL__INIT;
	const ProtobufCMessageDescriptor *d = &pbjt__all__descriptor;
	static const uint8_t raw[] = {0xfb, 0xff, 0x00, 'h'};
	json_t *j;

	assert_int_equal(dec(fx, d, "{\"f_bytes\":\"aGVsbG8=\"}", &m), 0);
	assert_int_equal(m.f_bytes.len, 5);
	assert_memory_equal(m.f_bytes.data, "hello", 5);
	assert_int_equal(dec(fx, d, "{\"f_bytes\":\"aGVsbG8\"}", &m), 0);
	assert_int_equal(m.f_bytes.len, 5);
	assert_memory_equal(m.f_bytes.data, "hello", 5);
	assert_int_equal(dec(fx, d, "{\"f_bytes\":\"aGVsbA==\"}", &m), 0);
	assert_int_equal(m.f_bytes.len, 4);
	assert_memory_equal(m.f_bytes.data, "hell", 4);
	/* standard and URL-safe alphabets */
	assert_int_equal(dec(fx, d, "{\"f_bytes\":\"+/8AaA==\"}", &m), 0);
	assert_int_equal(m.f_bytes.len, 4);
	assert_memory_equal(m.f_bytes.data, raw, 4);
	assert_int_equal(dec(fx, d, "{\"f_bytes\":\"-_8AaA\"}", &m), 0);
	assert_int_equal(m.f_bytes.len, 4);
	assert_memory_equal(m.f_bytes.data, raw, 4);
	assert_int_equal(dec(fx, d, "{\"f_bytes\":\"\"}", &m), 0);
	assert_int_equal(m.f_bytes.len, 0);
	assert_int_equal(dec(fx, d, "{\"r_bytes\":[\"YQ\",\"YmM=\"]}", &m), 0);
	assert_int_equal(m.n_r_bytes, 2);
	assert_int_equal(m.r_bytes[1].len, 2);
	assert_memory_equal(m.r_bytes[1].data, "bc", 2);

	dec_fails(fx, d, "{\"f_bytes\":\"a\"}",
	          "field \"f_bytes\": invalid base64");
	dec_fails(fx, d, "{\"f_bytes\":\"aGVsbG8==\"}",
	          "field \"f_bytes\": invalid base64");
	dec_fails(fx, d, "{\"f_bytes\":\"aGVsbA=\"}",
	          "field \"f_bytes\": invalid base64");
	dec_fails(fx, d, "{\"f_bytes\":\"a=bc\"}",
	          "field \"f_bytes\": invalid base64");
	dec_fails(fx, d, "{\"f_bytes\":\"aGVs bG8=\"}",
	          "field \"f_bytes\": invalid base64");
	dec_fails(fx, d, "{\"f_bytes\":\"====\"}",
	          "field \"f_bytes\": invalid base64");

	/* encoding is standard base64 with padding */
	pbjt__all__init(&m);
	m.f_bytes.data = (uint8_t *) raw;
	m.f_bytes.len = 4;
	j = cm_pbjson_encode(&m.base);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "f_bytes")),
	                    "+/8AaA==");
	json_decref(j);
	m.f_bytes.len = 2;
	j = cm_pbjson_encode(&m.base);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "f_bytes")),
	                    "+/8=");
	json_decref(j);
	m.f_bytes.len = 0;
	j = cm_pbjson_encode(&m.base);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "f_bytes")),
	                    "");
	json_decref(j);
}

static void
test_repeated_nested(void **state)
{
	struct fx *fx = *state;
	Shortener__ListUrlsResponse r;
	Health__HealthCheckResponse h;
	static const char *js =
	    "{\"urls\":[{\"code\":\"a\",\"short_url\":\"s/a\",\"long_url\":"
	    "\"l/a\",\"created_at\":1,\"expires_at\":2,\"clicks\":3},"
	    "{\"code\":\"b\",\"short_url\":\"s/b\",\"long_url\":\"l/b\","
	    "\"created_at\":4,\"expires_at\":5,\"clicks\":6}],"
	    "\"next_cursor\":\"n\"}";
	char *s;

	assert_int_equal(
	    dec(fx, &shortener__list_urls_response__descriptor, js, &r), 0);
	assert_int_equal(r.n_urls, 2);
	assert_string_equal(r.urls[0]->code, "a");
	assert_string_equal(r.urls[1]->long_url, "l/b");
	assert_true(r.urls[1]->clicks == 6);
	assert_string_equal(r.next_cursor, "n");
	s = enc(&r);
	assert_string_equal(s, js);
	free(s);

	assert_int_equal(dec(fx, &health__health_check_response__descriptor,
	                     "{\"status\":\"SERVING\",\"dependencies\":[{"
	                     "\"name\":\"redis\",\"ok\":true},{\"name\":\"pg\","
	                     "\"ok\":false,\"detail\":\"down\"}]}",
	                     &h),
	                 0);
	assert_int_equal(h.n_dependencies, 2);
	assert_string_equal(h.dependencies[0]->name, "redis");
	assert_true(h.dependencies[0]->ok);
	assert_string_equal(h.dependencies[0]->detail, "");
	assert_false(h.dependencies[1]->ok);
	assert_string_equal(h.dependencies[1]->detail, "down");
	assert_enc(&h, "{\"status\":\"serving\",\"dependencies\":[{\"name\":"
	               "\"redis\",\"ok\":true,\"detail\":\"\"},{\"name\":"
	               "\"pg\",\"ok\":false,\"detail\":\"down\"}]}");

	/* empty arrays */
	assert_int_equal(dec(fx, &health__health_check_response__descriptor,
	                     "{\"dependencies\":[]}", &h),
	                 0);
	assert_int_equal(h.n_dependencies, 0);
}

static void
test_oneof(void **state)
{
	struct fx *fx = *state;
	Pbjt__All m;
	const ProtobufCMessageDescriptor *d = &pbjt__all__descriptor;
	json_t *j;

	assert_int_equal(dec(fx, d, "{\"c_string\":\"x\"}", &m), 0);
	assert_int_equal(m.choice_case, PBJT__ALL__CHOICE_C_STRING);
	assert_string_equal(m.c_string, "x");
	assert_int_equal(
	    dec(fx, d, "{\"cInner\":{\"name\":\"n\",\"n\":4}}", &m), 0);
	assert_int_equal(m.choice_case, PBJT__ALL__CHOICE_C_INNER);
	assert_string_equal(m.c_inner->name, "n");
	assert_int_equal(m.c_inner->n, 4);
	assert_int_equal(dec(fx, d, "{\"c_int64\":\"-7\"}", &m), 0);
	assert_int_equal(m.choice_case, PBJT__ALL__CHOICE_C_INT64);
	assert_true(m.c_int64 == -7);
	dec_fails(
	    fx, d, "{\"c_string\":\"x\",\"c_int64\":5}",
	    "field \"c_int64\": conflicts with \"c_string\" (same oneof)");

	/* only the current member has a value; the others are null */
	pbjt__all__init(&m);
	j = cm_pbjson_encode(&m.base);
	assert_non_null(j);
	assert_true(json_is_null(json_object_get(j, "c_string")));
	assert_true(json_is_null(json_object_get(j, "c_inner")));
	assert_true(json_is_null(json_object_get(j, "c_int64")));
	json_decref(j);
	m.choice_case = PBJT__ALL__CHOICE_C_INT64;
	m.c_int64 = 99;
	j = cm_pbjson_encode(&m.base);
	assert_non_null(j);
	assert_true(json_is_null(json_object_get(j, "c_string")));
	assert_true(json_integer_value(json_object_get(j, "c_int64")) == 99);
	json_decref(j);
}

static void
test_proto2_labels(void **state)
{
	struct fx *fx = *state;
	Pbjt2__Legacy l;
	char *s;

	assert_int_equal(dec(fx, &pbjt2__legacy__descriptor,
	                     "{\"req\":1,\"optInt64\":5,\"opt_bool\":false,"
	                     "\"opt_string\":\"s\",\"opt_bytes\":\"\","
	                     "\"opt_sub\":{\"x\":3},\"subs\":[{},{\"x\":2}]}",
	                     &l),
	                 0);
	assert_int_equal(l.req, 1);
	assert_true(l.has_opt_int64);
	assert_true(l.opt_int64 == 5);
	assert_true(l.has_opt_bool);
	assert_false(l.opt_bool);
	assert_true(l.has_opt_bytes);
	assert_int_equal(l.opt_bytes.len, 0);
	assert_false(l.has_opt_double);
	assert_string_equal(l.opt_string, "s");
	assert_non_null(l.opt_sub);
	assert_true(l.opt_sub->has_x);
	assert_int_equal(l.opt_sub->x, 3);
	assert_int_equal(l.n_subs, 2);
	assert_false(l.subs[0]->has_x);
	assert_true(l.subs[1]->has_x);

	/* round trip: what was set comes back, the rest is null */
	s = enc(&l);
	assert_string_equal(
	    s, "{\"req\":1,\"opt_int64\":5,\"opt_string\":\"s\",\"opt_bytes\":"
	       "\"\",\"opt_sub\":{\"x\":3},\"opt_bool\":false,\"opt_double\":"
	       "null,\"subs\":[{\"x\":null},{\"x\":2}]}");
	assert_int_equal(dec(fx, &pbjt2__legacy__descriptor, s, &l), 0);
	free(s);
	assert_false(l.has_opt_double);
	assert_true(l.has_opt_bool);
	assert_false(l.subs[0]->has_x);

	pbjt2__legacy__init(&l);
	assert_enc(&l, "{\"req\":0,\"opt_int64\":null,\"opt_string\":null,"
	               "\"opt_bytes\":null,\"opt_sub\":null,\"opt_bool\":null,"
	               "\"opt_double\":null,\"subs\":[]}");
}

/* Every field type through encode -> text -> decode -> encode. */
static void
test_full_round_trip(void **state)
{
	struct fx *fx = *state;
	Pbjt__All m = PBJT__ALL__INIT, back;
	Pbjt__Inner in1 = PBJT__INNER__INIT, in2 = PBJT__INNER__INIT;
	Pbjt__Inner *inners[] = {&in1, &in2};
	Pbjt2__Legacy leg = PBJT2__LEGACY__INIT;
	int32_t i32s[] = {1, -2, INT32_MAX};
	int64_t s64s[] = {INT64_MIN, 0};
	uint64_t u64s[] = {UINT64_MAX, 1};
	float fls[] = {0.1f, -3.25f};
	double dbs[] = {1e-300, 0.1};
	protobuf_c_boolean bools[] = {1, 0};
	Pbjt__Color colors[] = {PBJT__COLOR__RED, PBJT__COLOR__INFRARED};
	char *strs[] = {"a", "\xe2\x82\xac"};
	ProtobufCBinaryData bins[] = {{1, (uint8_t *) "x"}, {0, NULL}};
	char *s1, *s2;

	in1.name = "one";
	in1.n = 1;
	in2.name = "two";
	m.f_int32 = -1;
	m.f_sint32 = INT32_MIN;
	m.f_sfixed32 = -3;
	m.f_int64 = INT64_MIN;
	m.f_sint64 = -5;
	m.f_sfixed64 = INT64_MAX;
	m.f_uint32 = UINT32_MAX;
	m.f_fixed32 = 8;
	m.f_uint64 = 9223372036854775808ULL;
	m.f_fixed64 = UINT64_MAX;
	m.f_float = 0.1f;
	m.f_double = 1.0 / 3.0;
	m.f_bool = 1;
	m.f_color = PBJT__COLOR__GREEN;
	m.f_string = "quote\" backslash\\ nl\n";
	m.f_bytes.data = (uint8_t *) "\x00\xff\x10";
	m.f_bytes.len = 3;
	m.f_inner = &in1;
	m.n_r_int32 = 3;
	m.r_int32 = i32s;
	m.n_r_sint64 = 2;
	m.r_sint64 = s64s;
	m.n_r_uint64 = 2;
	m.r_uint64 = u64s;
	m.n_r_float = 2;
	m.r_float = fls;
	m.n_r_double = 2;
	m.r_double = dbs;
	m.n_r_bool = 2;
	m.r_bool = bools;
	m.n_r_color = 2;
	m.r_color = colors;
	m.n_r_string = 2;
	m.r_string = strs;
	m.n_r_bytes = 2;
	m.r_bytes = bins;
	m.n_r_inner = 2;
	m.r_inner = inners;
	m.choice_case = PBJT__ALL__CHOICE_C_INNER;
	m.c_inner = &in2;
	leg.req = 9;
	leg.has_opt_double = 1;
	leg.opt_double = -0.5;
	m.legacy = &leg;

	s1 = enc(&m);
	/* 64-bit values as numbers, uint64 above INT64_MAX as strings */
	assert_non_null(strstr(s1, "\"f_int64\":-9223372036854775808,"));
	assert_non_null(strstr(s1, "\"f_uint64\":\"9223372036854775808\","));
	assert_non_null(strstr(s1, "\"f_fixed64\":\"18446744073709551615\","));
	assert_non_null(strstr(s1, "\"f_float\":0.1"));
	assert_non_null(strstr(s1, "\"f_bytes\":\"AP8Q\""));
	assert_non_null(strstr(s1, "\"r_color\":[\"red\",\"infrared\"]"));
	assert_int_equal(dec(fx, &pbjt__all__descriptor, s1, &back), 0);
	assert_true(back.f_int64 == INT64_MIN);
	assert_true(back.f_uint64 == 9223372036854775808ULL);
	assert_true(back.f_fixed64 == UINT64_MAX);
	assert_true(back.f_float == 0.1f);
	assert_true(back.f_double == 1.0 / 3.0);
	assert_string_equal(back.f_string, m.f_string);
	assert_int_equal(back.f_bytes.len, 3);
	assert_memory_equal(back.f_bytes.data, "\x00\xff\x10", 3);
	assert_int_equal(back.n_r_float, 2);
	assert_true(back.r_float[0] == 0.1f);
	assert_true(back.r_uint64[0] == UINT64_MAX);
	assert_string_equal(back.r_string[1], "\xe2\x82\xac");
	assert_int_equal(back.choice_case, PBJT__ALL__CHOICE_C_INNER);
	assert_string_equal(back.c_inner->name, "two");
	assert_true(back.legacy->has_opt_double);
	assert_int_equal(back.legacy->req, 9);
	s2 = enc(&back);
	assert_string_equal(s1, s2);
	free(s1);
	free(s2);

	/* non-finite floats travel as strings */
	pbjt__all__init(&m);
	m.f_float = -(float) INFINITY;
	m.f_double = NAN;
	s1 = enc(&m);
	assert_non_null(strstr(s1, "\"f_float\":\"-Infinity\""));
	assert_non_null(strstr(s1, "\"f_double\":\"NaN\""));
	assert_int_equal(dec(fx, &pbjt__all__descriptor, s1, &back), 0);
	free(s1);
	assert_true(back.f_double != back.f_double);
	assert_true(back.f_float < -FLT_MAX);
}

static void
test_encode_invalid_utf8(void **state)
{
	Shortener__Url url = SHORTENER__URL__INIT;
	json_t *j;

	(void) state;
	url.code = "a\xff"
	           "b\xc3";
	url.long_url = NULL;
	j = cm_pbjson_encode(&url.base);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "code")),
	                    "a\xef\xbf\xbd"
	                    "b\xef\xbf\xbd");
	assert_string_equal(json_string_value(json_object_get(j, "long_url")),
	                    "");
	json_decref(j);
	assert_null(cm_pbjson_encode(NULL));
}

static void
test_set_field_text(void **state)
{
	struct fx *fx = *state;
	Shortener__ListUrlsRequest l = SHORTENER__LIST_URLS_REQUEST__INIT;
	Shortener__CreateUrlRequest c = SHORTENER__CREATE_URL_REQUEST__INIT;
	Health__HealthCheckResponse h = HEALTH__HEALTH_CHECK_RESPONSE__INIT;
	Pbjt__All m = PBJT__ALL__INIT;
	Pbjt2__Legacy g = PBJT2__LEGACY__INIT;
	cm_arena *a = &fx->arena;
	char *e = fx->err;
	size_t el = sizeof(fx->err);

#define SET(desc, msg, name, text)                                             \
	cm_pbjson_set_field_text(&(desc), &(msg).base, name, text,             \
	                         strlen(text), a, e, el)

	assert_int_equal(
	    SET(shortener__list_urls_request__descriptor, l, "limit", "25"), 0);
	assert_int_equal(l.limit, 25);
	assert_int_equal(
	    SET(shortener__list_urls_request__descriptor, l, "limit", "-3"), 0);
	assert_int_equal(l.limit, -3);
	assert_int_equal(
	    SET(shortener__list_urls_request__descriptor, l, "limit", "abc"),
	    -1);
	assert_string_equal(e, "field \"limit\": expected an integer");
	assert_int_equal(l.limit, -3); /* unchanged on error */
	assert_int_equal(SET(shortener__list_urls_request__descriptor, l,
	                     "limit", "2147483648"),
	                 -1);
	assert_string_equal(e, "field \"limit\": value out of range for int32");
	assert_int_equal(
	    SET(shortener__list_urls_request__descriptor, l, "limit", ""), -1);
	assert_int_equal(
	    SET(shortener__list_urls_request__descriptor, l, "limit", "1.0"),
	    -1);
	assert_int_equal(
	    SET(shortener__list_urls_request__descriptor, l, "cursor", "c/x y"),
	    0);
	assert_string_equal(l.cursor, "c/x y");
	assert_int_equal(
	    SET(shortener__list_urls_request__descriptor, l, "nope", "1"), -2);
	assert_string_equal(e, "unknown field \"nope\"");

	/* only vlen bytes are used; camelCase names work */
	assert_int_equal(cm_pbjson_set_field_text(
	                     &shortener__create_url_request__descriptor,
	                     &c.base, "expiresIn", "120xyz", 3, a, e, el),
	                 0);
	assert_true(c.expires_in == 120);
	assert_int_equal(SET(shortener__create_url_request__descriptor, c,
	                     "expires_in", "-9223372036854775808"),
	                 0);
	assert_true(c.expires_in == INT64_MIN);
	assert_int_equal(SET(shortener__create_url_request__descriptor, c,
	                     "long_url", "\xff"),
	                 -1);
	assert_string_equal(e, "field \"long_url\": string is not valid UTF-8");
	assert_int_equal(
	    cm_pbjson_set_field_text(&shortener__create_url_request__descriptor,
	                             &c.base, "long_url", "a\0b", 3, a, e, el),
	    -1);
	assert_int_equal(cm_pbjson_set_field_text(
	                     &shortener__create_url_request__descriptor,
	                     &c.base, "custom_alias", NULL, 0, a, e, el),
	                 0);
	assert_string_equal(c.custom_alias, "");

	/* enums by name or number */
	assert_int_equal(SET(health__health_check_response__descriptor, h,
	                     "status", "SERVING"),
	                 0);
	assert_int_equal(
	    h.status, HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	assert_int_equal(
	    SET(health__health_check_response__descriptor, h, "status", "2"),
	    0);
	assert_int_equal(
	    h.status,
	    HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
	assert_int_equal(
	    SET(health__health_check_response__descriptor, h, "status", "BAD"),
	    -1);
	assert_string_equal(e, "field \"status\": unknown value \"BAD\" for "
	                       "enum health.HealthCheckResponse.ServingStatus");
	assert_int_equal(SET(health__health_check_response__descriptor, h,
	                     "dependencies", "x"),
	                 -1);
	assert_string_equal(
	    e, "field \"dependencies\": a message cannot be set from text");

	/* bools */
	assert_int_equal(SET(pbjt__all__descriptor, m, "f_bool", "true"), 0);
	assert_true(m.f_bool);
	assert_int_equal(SET(pbjt__all__descriptor, m, "f_bool", "0"), 0);
	assert_false(m.f_bool);
	assert_int_equal(SET(pbjt__all__descriptor, m, "fBool", "1"), 0);
	assert_true(m.f_bool);
	assert_int_equal(SET(pbjt__all__descriptor, m, "f_bool", "false"), 0);
	assert_false(m.f_bool);
	assert_int_equal(SET(pbjt__all__descriptor, m, "f_bool", "yes"), -1);
	assert_string_equal(e, "field \"f_bool\": expected true or false");
	assert_int_equal(SET(pbjt__all__descriptor, m, "f_bool", "TRUE"), -1);

	/* floats, unsigned, bytes */
	assert_int_equal(SET(pbjt__all__descriptor, m, "f_double", "-1.5e3"),
	                 0);
	assert_true(m.f_double == -1500.0);
	assert_int_equal(SET(pbjt__all__descriptor, m, "f_float", "abc"), -1);
	assert_int_equal(SET(pbjt__all__descriptor, m, "f_double", "1e999"),
	                 -1);
	assert_string_equal(e, "field \"f_double\": value out of range for "
	                       "double");
	assert_int_equal(
	    SET(pbjt__all__descriptor, m, "f_uint64", "18446744073709551615"),
	    0);
	assert_true(m.f_uint64 == UINT64_MAX);
	assert_int_equal(SET(pbjt__all__descriptor, m, "f_uint32", "-1"), -1);
	assert_int_equal(SET(pbjt__all__descriptor, m, "f_bytes", "aGk"), 0);
	assert_int_equal(m.f_bytes.len, 2);
	assert_memory_equal(m.f_bytes.data, "hi", 2);
	assert_int_equal(SET(pbjt__all__descriptor, m, "f_bytes", "%%%"), -1);

	/* repeated fields append */
	assert_int_equal(SET(pbjt__all__descriptor, m, "r_int32", "1"), 0);
	assert_int_equal(SET(pbjt__all__descriptor, m, "r_int32", "2"), 0);
	assert_int_equal(SET(pbjt__all__descriptor, m, "rInt32", "3"), 0);
	assert_int_equal(SET(pbjt__all__descriptor, m, "r_int32", "x"), -1);
	assert_int_equal(m.n_r_int32, 3);
	assert_int_equal(m.r_int32[0], 1);
	assert_int_equal(m.r_int32[1], 2);
	assert_int_equal(m.r_int32[2], 3);
	assert_int_equal(SET(pbjt__all__descriptor, m, "r_string", "a"), 0);
	assert_int_equal(SET(pbjt__all__descriptor, m, "r_string", "b"), 0);
	assert_int_equal(m.n_r_string, 2);
	assert_string_equal(m.r_string[1], "b");
	assert_int_equal(SET(pbjt__all__descriptor, m, "r_color", "GREEN"), 0);
	assert_int_equal(m.r_color[0], PBJT__COLOR__GREEN);
	assert_int_equal(SET(pbjt__all__descriptor, m, "r_inner", "x"), -1);

	/* a oneof member sets the case; has_ flags are set */
	assert_int_equal(SET(pbjt__all__descriptor, m, "c_int64", "77"), 0);
	assert_int_equal(m.choice_case, PBJT__ALL__CHOICE_C_INT64);
	assert_true(m.c_int64 == 77);
	assert_int_equal(SET(pbjt__all__descriptor, m, "c_string", "s"), 0);
	assert_int_equal(m.choice_case, PBJT__ALL__CHOICE_C_STRING);
	assert_string_equal(m.c_string, "s");
	assert_int_equal(SET(pbjt2__legacy__descriptor, g, "opt_int64", "8"),
	                 0);
	assert_true(g.has_opt_int64);
	assert_true(g.opt_int64 == 8);
	assert_int_equal(SET(pbjt2__legacy__descriptor, g, "opt_string", "o"),
	                 0);
	assert_string_equal(g.opt_string, "o");
#undef SET
}

static void
test_error_buffer(void **state)
{
	struct fx *fx = *state;
	Shortener__CreateUrlRequest r = SHORTENER__CREATE_URL_REQUEST__INIT;
	json_t *j;
	char small[8];

	j = json_pack("{s:i}", "long_url", 5);
	assert_non_null(j);
	memset(small, 'x', sizeof(small));
	assert_int_equal(
	    cm_pbjson_decode(&shortener__create_url_request__descriptor, j,
	                     &r.base, &fx->arena, small, sizeof(small)),
	    -1);
	assert_string_equal(small, "field \"");
	assert_int_equal(
	    cm_pbjson_decode(&shortener__create_url_request__descriptor, j,
	                     &r.base, &fx->arena, NULL, 0),
	    -1);
	json_decref(j);
	j = json_pack("{s:i}", "zzz", 5);
	assert_non_null(j);
	assert_int_equal(
	    cm_pbjson_decode(&shortener__create_url_request__descriptor, j,
	                     &r.base, &fx->arena, NULL, 0),
	    -1);
	json_decref(j);
	assert_int_equal(cm_pbjson_set_field_text(
	                     &shortener__create_url_request__descriptor,
	                     &r.base, "zzz", "1", 1, &fx->arena, NULL, 0),
	                 -2);
}

/*
 * Many values of a repeated field at once: appended in order with one
 * copy, each value checked; a scalar field takes the last.  The arena
 * grows linearly with the values, not quadratically.
 */
static void
test_add_field_texts(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *d = &pbjt__all__descriptor;
	Pbjt__All m;
	const char *vals[1000];
	size_t lens[1000];
	char buf[1000][8];

	pbjt__all__init(&m);
	for (size_t i = 0; i < 1000; i++) {
		snprintf(buf[i], sizeof(buf[i]), "%zu", i);
		vals[i] = buf[i];
		lens[i] = strlen(buf[i]);
	}
	assert_int_equal(cm_pbjson_add_field_texts(d, &m.base, "r_int32", vals,
	                                           lens, 500, &fx->arena, NULL,
	                                           0),
	                 0);
	assert_int_equal(cm_pbjson_add_field_texts(d, &m.base, "r_int32",
	                                           vals + 500, lens + 500, 500,
	                                           &fx->arena, NULL, 0),
	                 0);
	assert_int_equal(m.n_r_int32, 1000);
	for (size_t i = 0; i < 1000; i++)
		assert_int_equal(m.r_int32[i], (int32_t) i);
	/* A bad value anywhere: nothing changes. */
	vals[10] = "x";
	lens[10] = 1;
	assert_int_equal(cm_pbjson_add_field_texts(d, &m.base, "r_int32", vals,
	                                           lens, 20, &fx->arena, NULL,
	                                           0),
	                 -1);
	assert_int_equal(m.n_r_int32, 1000);
	/* A scalar: the last value. */
	assert_int_equal(cm_pbjson_add_field_texts(d, &m.base, "f_int32",
	                                           vals + 11, lens + 11, 3,
	                                           &fx->arena, NULL, 0),
	                 0);
	assert_int_equal(m.f_int32, 13);
	assert_int_equal(cm_pbjson_field_repeated(d, "r_int32"), 1);
	assert_int_equal(cm_pbjson_field_repeated(d, "f_int32"), 0);
	assert_int_equal(cm_pbjson_field_repeated(d, "nope"), -1);
}

/* Maps: JSON objects, each entry a key/value message in protobuf-c. */
static void
test_maps_round_trip(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *d = &pbjt__maps__descriptor;
	Pbjt__Maps m, back;
	Pbjt__Task *t;
	const char *js =
	    "{\"labels\":{\"team\":\"core\",\"env\":\"prod\",\"\":\"empty "
	    "key\",\"\xc3\xa9t\xc3\xa9\":\"\xe2\x82\xac\"},"
	    "\"tasks\":{\"t1\":{\"title\":\"first\",\"priority\":\"high\","
	    "\"labels\":{\"x\":\"y\"}},\"t2\":{\"title\":\"\",\"priority\":"
	    "\"unspecified\",\"labels\":{}}},"
	    "\"by_id\":{\"1\":\"one\",\"-7\":\"minus seven\",\"0\":\"zero\","
	    "\"-2147483648\":\"min\"},"
	    "\"i64\":{\"-9223372036854775808\":9223372036854775807},"
	    "\"u64\":{\"18446744073709551615\":true,\"0\":false},"
	    "\"by_bool\":{\"true\":\"low\",\"false\":\"urgent\"},"
	    "\"blobs\":{\"-1\":\"AAE=\",\"2\":\"\"},"
	    "\"reals\":{\"pi\":3.5,\"inf\":\"Infinity\"},"
	    "\"colors\":{\"4294967295\":\"infrared\"},"
	    "\"pairs\":[{\"key\":\"k\",\"value\":\"v\"}]}";
	char *s, *s2;

	assert_int_equal(dec(fx, d, js, &m), 0);
	/* entries in the object's order, keys and values typed */
	assert_int_equal(m.n_labels, 4);
	assert_string_equal(m.labels[0]->key, "team");
	assert_string_equal(m.labels[0]->value, "core");
	assert_string_equal(m.labels[1]->key, "env");
	assert_string_equal(m.labels[2]->key, "");
	assert_string_equal(m.labels[3]->value, "\xe2\x82\xac");
	assert_int_equal(m.n_tasks, 2);
	assert_string_equal(m.tasks[0]->key, "t1");
	t = m.tasks[0]->value;
	assert_non_null(t);
	assert_string_equal(t->title, "first");
	assert_int_equal(t->priority, PBJT__PRIORITY__PRIORITY_HIGH);
	assert_int_equal(t->n_labels, 1);
	assert_string_equal(t->labels[0]->key, "x");
	assert_string_equal(t->labels[0]->value, "y");
	assert_int_equal(m.tasks[1]->value->n_labels, 0);
	assert_int_equal(m.n_by_id, 4);
	assert_int_equal(m.by_id[0]->key, 1);
	assert_int_equal(m.by_id[1]->key, -7);
	assert_string_equal(m.by_id[1]->value, "minus seven");
	assert_int_equal(m.by_id[2]->key, 0);
	assert_int_equal(m.by_id[3]->key, INT32_MIN);
	assert_true(m.i64[0]->key == INT64_MIN);
	assert_true(m.i64[0]->value == INT64_MAX);
	assert_true(m.u64[0]->key == UINT64_MAX);
	assert_true(m.u64[0]->value);
	assert_false(m.u64[1]->value);
	assert_true(m.by_bool[0]->key);
	assert_int_equal(m.by_bool[0]->value, PBJT__PRIORITY__PRIORITY_LOW);
	assert_false(m.by_bool[1]->key);
	assert_int_equal(m.blobs[0]->key, -1);
	assert_int_equal(m.blobs[0]->value.len, 2);
	assert_memory_equal(m.blobs[0]->value.data, "\x00\x01", 2);
	assert_true(m.reals[0]->value == 3.5);
	assert_true(isinf(m.reals[1]->value));
	assert_true(m.colors[0]->key == UINT32_MAX);
	assert_int_equal(m.colors[0]->value, PBJT__COLOR__INFRARED);
	/* the shape of an entry is not enough: pairs stays an array */
	assert_int_equal(m.n_pairs, 1);
	assert_string_equal(m.pairs[0]->key, "k");

	/* and back: objects with string keys, values in their JSON forms */
	s = enc(&m);
	assert_string_equal(
	    s, "{\"labels\":{\"team\":\"core\",\"env\":\"prod\",\"\":\"empty "
	       "key\",\"\xc3\xa9t\xc3\xa9\":\"\xe2\x82\xac\"},"
	       "\"tasks\":{\"t1\":{\"title\":\"first\",\"priority\":\"high\","
	       "\"labels\":{\"x\":\"y\"}},\"t2\":{\"title\":\"\",\"priority\":"
	       "\"unspecified\",\"labels\":{}}},"
	       "\"by_id\":{\"1\":\"one\",\"-7\":\"minus seven\",\"0\":\"zero\","
	       "\"-2147483648\":\"min\"},"
	       "\"i64\":{\"-9223372036854775808\":9223372036854775807},"
	       "\"u64\":{\"18446744073709551615\":true,\"0\":false},"
	       "\"by_bool\":{\"true\":\"low\",\"false\":\"urgent\"},"
	       "\"blobs\":{\"-1\":\"AAE=\",\"2\":\"\"},"
	       "\"reals\":{\"pi\":3.5,\"inf\":\"Infinity\"},"
	       "\"colors\":{\"4294967295\":\"infrared\"},"
	       "\"pairs\":[{\"key\":\"k\",\"value\":\"v\"}]}");
	assert_int_equal(dec(fx, d, s, &back), 0);
	s2 = enc(&back);
	assert_string_equal(s2, s);
	free(s2);
	free(s);

	/* empty and absent maps are {}; null leaves a map empty */
	pbjt__maps__init(&m);
	assert_enc(&m, "{\"labels\":{},\"tasks\":{},\"by_id\":{},\"i64\":{},"
	               "\"u64\":{},\"by_bool\":{},\"blobs\":{},\"reals\":{},"
	               "\"colors\":{},\"pairs\":[]}");
	assert_int_equal(dec(fx, d, "{\"labels\":null,\"tasks\":{}}", &m), 0);
	assert_int_equal(m.n_labels, 0);
	assert_int_equal(m.n_tasks, 0);
	/* camelCase names too */
	assert_int_equal(dec(fx, d, "{\"byId\":{\"5\":\"five\"}}", &m), 0);
	assert_int_equal(m.n_by_id, 1);
	assert_int_equal(m.by_id[0]->key, 5);
}

/* Maps nest through message values: tasks[...].labels. */
static void
test_maps_nested(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *d = &pbjt__maps__descriptor;
	Pbjt__Maps m = PBJT__MAPS__INIT;
	Pbjt__Maps__TasksEntry te = PBJT__MAPS__TASKS_ENTRY__INIT, *tes[2];
	Pbjt__Maps__TasksEntry te2 = PBJT__MAPS__TASKS_ENTRY__INIT;
	Pbjt__Task task = PBJT__TASK__INIT;
	Pbjt__Task__LabelsEntry le = PBJT__TASK__LABELS_ENTRY__INIT, *les[1];

	assert_int_equal(dec(fx, d,
	                     "{\"tasks\":{\"a\":{\"labels\":{\"k1\":\"v1\","
	                     "\"k2\":\"v2\"}},\"b\":{\"labels\":{\"k1\":"
	                     "\"other\"}}}}",
	                     &m),
	                 0);
	assert_int_equal(m.n_tasks, 2);
	assert_int_equal(m.tasks[0]->value->n_labels, 2);
	assert_string_equal(m.tasks[0]->value->labels[1]->key, "k2");
	assert_string_equal(m.tasks[0]->value->labels[1]->value, "v2");
	/* the same key in two maps is two entries */
	assert_string_equal(m.tasks[1]->value->labels[0]->key, "k1");
	assert_string_equal(m.tasks[1]->value->labels[0]->value, "other");

	/* errors name the path through the maps */
	dec_fails(fx, d, "{\"tasks\":{\"a\":{\"labels\":{\"k\":5}}}}",
	          "field \"tasks[a].labels[k]\": expected a string");
	dec_fails(fx, d, "{\"tasks\":{\"a\":{\"labels\":[\"k\"]}}}",
	          "field \"tasks[a].labels\": expected an object (a map)");
	dec_fails(fx, d, "{\"tasks\":{\"a\":{\"bogus\":1}}}",
	          "unknown field \"tasks[a].bogus\"");
	dec_fails(fx, d, "{\"tasks\":{\"a\":{\"priority\":\"HIGH\"}}}",
	          "field \"tasks[a].priority\": unknown value \"HIGH\" for "
	          "enum pbjt.Priority");

	/* an entry without its message value is the empty message */
	le.key = "k";
	le.value = "v";
	les[0] = &le;
	task.title = "t";
	task.n_labels = 1;
	task.labels = les;
	te.key = "full";
	te.value = &task;
	te2.key = "bare";
	te2.value = NULL;
	tes[0] = &te;
	tes[1] = &te2;
	m.n_tasks = 2;
	m.tasks = tes;
	m.n_labels = m.n_by_id = m.n_i64 = m.n_u64 = m.n_by_bool = 0;
	m.n_blobs = m.n_reals = m.n_colors = m.n_pairs = 0;
	assert_enc(&m, "{\"labels\":{},\"tasks\":{\"full\":{\"title\":\"t\","
	               "\"priority\":\"unspecified\",\"labels\":{\"k\":\"v\"}},"
	               "\"bare\":{\"title\":\"\",\"priority\":\"unspecified\","
	               "\"labels\":{}}},\"by_id\":{},\"i64\":{},\"u64\":{},"
	               "\"by_bool\":{},\"blobs\":{},\"reals\":{},\"colors\":{},"
	               "\"pairs\":[]}");
}

/* Wrong JSON types and bad keys are errors naming the entry. */
static void
test_maps_bad_types(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *d = &pbjt__maps__descriptor;

	/* a map takes an object */
	dec_fails(fx, d, "{\"labels\":[]}",
	          "field \"labels\": expected an object (a map)");
	dec_fails(fx, d, "{\"labels\":[{\"key\":\"a\",\"value\":\"b\"}]}",
	          "field \"labels\": expected an object (a map)");
	dec_fails(fx, d, "{\"labels\":\"a=b\"}",
	          "field \"labels\": expected an object (a map)");
	dec_fails(fx, d, "{\"labels\":7}",
	          "field \"labels\": expected an object (a map)");
	dec_fails(fx, d, "{\"pairs\":{\"a\":\"b\"}}",
	          "field \"pairs\": expected an array");
	/* map<string, string> values are strings, never null */
	dec_fails(fx, d, "{\"labels\":{\"a\":1}}",
	          "field \"labels[a]\": expected a string");
	dec_fails(fx, d, "{\"labels\":{\"a\":\"x\",\"b\":true}}",
	          "field \"labels[b]\": expected a string");
	dec_fails(fx, d, "{\"labels\":{\"a\":null}}",
	          "field \"labels[a]\": expected a string");
	dec_fails(fx, d, "{\"labels\":{\"a\":[\"x\"]}}",
	          "field \"labels[a]\": expected a string");
	dec_fails(fx, d, "{\"labels\":{\"a\":{\"b\":\"c\"}}}",
	          "field \"labels[a]\": expected a string");
	dec_fails(fx, d, "{\"labels\":{\"a\":\"x\\u0000y\"}}",
	          "field \"labels[a]\": string contains a NUL character");
	/* keys that would not read well in a path are shown by position */
	dec_fails(fx, d, "{\"labels\":{\"ok\":\"\",\"a\\\"b\":1}}",
	          "field \"labels[#1]\": expected a string");
	dec_fails(fx, d, "{\"labels\":{\"\xc3\xa9\":1}}",
	          "field \"labels[#0]\": expected a string");
	dec_fails(fx, d, "{\"labels\":{\"\":1}}",
	          "field \"labels[#0]\": expected a string");
	dec_fails(fx, d, "{\"labels\":{\"a]b\":1}}",
	          "field \"labels[#0]\": expected a string");
	/* other value types */
	dec_fails(fx, d, "{\"tasks\":{\"t\":\"x\"}}",
	          "field \"tasks[t]\": expected an object");
	dec_fails(fx, d, "{\"tasks\":{\"t\":null}}",
	          "field \"tasks[t]\": expected an object");
	dec_fails(fx, d, "{\"i64\":{\"1\":1.5}}",
	          "field \"i64[1]\": expected an integer");
	dec_fails(fx, d, "{\"u64\":{\"1\":\"true\"}}",
	          "field \"u64[1]\": expected true or false");
	dec_fails(fx, d, "{\"by_bool\":{\"true\":\"nope\"}}",
	          "field \"by_bool[true]\": unknown value \"nope\" for enum "
	          "pbjt.Priority");
	dec_fails(fx, d, "{\"blobs\":{\"1\":\"!!\"}}",
	          "field \"blobs[1]\": invalid base64");
	dec_fails(fx, d, "{\"reals\":{\"x\":\"abc\"}}",
	          "field \"reals[x]\": expected a number");
	/* keys: decimal for integers, true/false for bools */
	dec_fails(fx, d, "{\"by_id\":{\"x\":\"a\"}}",
	          "field \"by_id[x]\": map key: expected a decimal integer");
	dec_fails(fx, d, "{\"by_id\":{\"\":\"a\"}}",
	          "field \"by_id[#0]\": map key: expected a decimal integer");
	dec_fails(fx, d, "{\"by_id\":{\"+1\":\"a\"}}",
	          "field \"by_id[+1]\": map key: expected a decimal integer");
	dec_fails(fx, d, "{\"by_id\":{\" 1\":\"a\"}}",
	          "field \"by_id[ 1]\": map key: expected a decimal integer");
	dec_fails(fx, d, "{\"by_id\":{\"1.0\":\"a\"}}",
	          "field \"by_id[1.0]\": map key: expected a decimal integer");
	dec_fails(fx, d, "{\"by_id\":{\"2147483648\":\"a\"}}",
	          "field \"by_id[2147483648]\": map key: value out of range "
	          "for int32");
	dec_fails(fx, d, "{\"u64\":{\"-1\":true}}",
	          "field \"u64[-1]\": map key: value out of range for uint64");
	dec_fails(fx, d, "{\"u64\":{\"18446744073709551616\":true}}",
	          "field \"u64[18446744073709551616]\": map key: value out of "
	          "range for uint64");
	dec_fails(fx, d, "{\"by_bool\":{\"1\":\"high\"}}",
	          "field \"by_bool[1]\": map key: expected true or false");
	dec_fails(fx, d, "{\"by_bool\":{\"True\":\"high\"}}",
	          "field \"by_bool[True]\": map key: expected true or false");
}

/*
 * Duplicates.  A key repeated in the JSON text is refused by the parser
 * the gateway uses (JSON_REJECT_DUPLICATES); keys that differ as text but
 * not as values are refused here; a map given under both its names is
 * "given more than once".  Encoding a key repeated on the wire keeps the
 * last value, as protobuf's parsers do.
 */
static void
test_maps_duplicates(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *d = &pbjt__maps__descriptor;
	Pbjt__Maps m = PBJT__MAPS__INIT;
	Pbjt__Maps__LabelsEntry l1 = PBJT__MAPS__LABELS_ENTRY__INIT;
	Pbjt__Maps__LabelsEntry l2 = PBJT__MAPS__LABELS_ENTRY__INIT;
	Pbjt__Maps__LabelsEntry l3 = PBJT__MAPS__LABELS_ENTRY__INIT;
	Pbjt__Maps__LabelsEntry *ls[] = {&l1, &l2, &l3};
	json_error_t jerr;
	json_t *j;

	j = json_loads("{\"labels\":{\"a\":\"1\",\"a\":\"2\"}}",
	               JSON_REJECT_DUPLICATES, &jerr);
	assert_null(j);
	assert_non_null(strstr(jerr.text, "duplicate object key"));
	j = json_loads("{\"tasks\":{\"t\":{\"labels\":{\"k\":\"1\",\"k\":"
	               "\"2\"}}}}",
	               JSON_REJECT_DUPLICATES, &jerr);
	assert_null(j);

	dec_fails(fx, d, "{\"by_id\":{\"1\":\"a\",\"01\":\"b\"}}",
	          "field \"by_id[01]\": map key: expected a canonical decimal "
	          "integer (no leading zeros, no -0)");
	dec_fails(fx, d, "{\"by_id\":{\"0\":\"a\",\"-0\":\"b\"}}",
	          "field \"by_id[-0]\": map key: expected a canonical decimal "
	          "integer (no leading zeros, no -0)");
	dec_fails(fx, d, "{\"i64\":{\"-07\":1}}",
	          "field \"i64[-07]\": map key: expected a canonical decimal "
	          "integer (no leading zeros, no -0)");
	dec_fails(fx, d, "{\"by_bool\":{\"true\":\"low\",\"TRUE\":\"high\"}}",
	          "field \"by_bool[TRUE]\": map key: expected true or false");
	dec_fails(fx, d, "{\"by_id\":{},\"byId\":{}}",
	          "field \"by_id\": given more than once");
	/* without JSON_REJECT_DUPLICATES jansson keeps the last: one entry */
	assert_int_equal(
	    dec(fx, d, "{\"labels\":{\"a\":\"1\",\"a\":\"2\"}}", &m), 0);
	assert_int_equal(m.n_labels, 1);
	assert_string_equal(m.labels[0]->value, "2");

	l1.key = "a";
	l1.value = "1";
	l2.key = "b";
	l2.value = "2";
	l3.key = "a";
	l3.value = "3";
	m.n_labels = 3;
	m.labels = ls;
	assert_enc(&m, "{\"labels\":{\"a\":\"3\",\"b\":\"2\"},\"tasks\":{},"
	               "\"by_id\":{},\"i64\":{},\"u64\":{},\"by_bool\":{},"
	               "\"blobs\":{},\"reals\":{},\"colors\":{},\"pairs\":[]}");
}

/* JSON text of a Maps with n entries in labels ("k0":"v", ...); freed. */
static char *
labels_json(size_t n)
{
	char *js = malloc(n * 16 + 32), *p;
	size_t i;

	assert_non_null(js);
	p = js + sprintf(js, "{\"labels\":{");
	for (i = 0; i < n; i++)
		p += sprintf(p, "%s\"k%zu\":\"v\"", i > 0 ? "," : "", i);
	sprintf(p, "}}");
	return (js);
}

/* At most CM_PBJSON_MAP_MAX entries in one map; maps never come from text. */
static void
test_maps_caps_and_text(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *d = &pbjt__maps__descriptor;
	Pbjt__Maps m;
	char *js, want[64];

	js = labels_json(CM_PBJSON_MAP_MAX);
	assert_int_equal(dec(fx, d, js, &m), 0);
	free(js);
	assert_int_equal(m.n_labels, CM_PBJSON_MAP_MAX);
	assert_string_equal(m.labels[CM_PBJSON_MAP_MAX - 1]->key, "k999");
	js = labels_json(CM_PBJSON_MAP_MAX + 1);
	snprintf(want, sizeof(want),
	         "field \"labels\": more than %d map entries",
	         CM_PBJSON_MAP_MAX);
	dec_fails(fx, d, js, want);
	free(js);

	pbjt__maps__init(&m);
	assert_int_equal(cm_pbjson_set_field_text(d, &m.base, "labels", "a=b",
	                                          3, &fx->arena, fx->err,
	                                          sizeof(fx->err)),
	                 -1);
	assert_string_equal(fx->err,
	                    "field \"labels\": a map cannot be set from text");
	assert_int_equal(cm_pbjson_set_field_text(d, &m.base, "byId", "1", 1,
	                                          &fx->arena, fx->err,
	                                          sizeof(fx->err)),
	                 -1);
	assert_string_equal(fx->err,
	                    "field \"by_id\": a map cannot be set from text");
	assert_int_equal(m.n_labels, 0);
	assert_int_equal(m.n_by_id, 0);
}

/* proto2 maps: has_ flags on the entries; unset values written as set. */
static void
test_maps_proto2(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *d = &pbjt2__legacy_maps__descriptor;
	Pbjt2__LegacyMaps m = PBJT2__LEGACY_MAPS__INIT;
	Pbjt2__LegacyMaps__ByIdEntry b = PBJT2__LEGACY_MAPS__BY_ID_ENTRY__INIT;
	Pbjt2__LegacyMaps__ByIdEntry *bs[] = {&b};
	Pbjt2__LegacyMaps__SubsEntry e = PBJT2__LEGACY_MAPS__SUBS_ENTRY__INIT;
	Pbjt2__LegacyMaps__SubsEntry *es[] = {&e};

	assert_int_equal(dec(fx, d,
	                     "{\"by_id\":{\"4294967295\":\"max\"},\"subs\":{"
	                     "\"s\":{\"x\":3},\"t\":{}}}",
	                     &m),
	                 0);
	assert_int_equal(m.n_by_id, 1);
	assert_true(m.by_id[0]->has_key);
	assert_true(m.by_id[0]->key == UINT32_MAX);
	assert_string_equal(m.by_id[0]->value, "max");
	assert_int_equal(m.n_subs, 2);
	assert_true(m.subs[0]->value->has_x);
	assert_int_equal(m.subs[0]->value->x, 3);
	assert_false(m.subs[1]->value->has_x);
	dec_fails(fx, d, "{\"subs\":{\"s\":{\"y\":1}}}",
	          "unknown field \"subs[s].y\"");

	/* no has_key, no value: the defaults */
	b.value = NULL;
	e.key = NULL;
	e.value = NULL;
	m.n_by_id = 1;
	m.by_id = bs;
	m.n_subs = 1;
	m.subs = es;
	assert_enc(&m, "{\"by_id\":{\"0\":\"\"},\"subs\":{\"\":{\"x\":null}}}");
}

/* Keys that are not UTF-8 are repaired, as string values are. */
static void
test_maps_encode_invalid_utf8(void **state)
{
	Pbjt__Maps m = PBJT__MAPS__INIT;
	Pbjt__Maps__LabelsEntry l = PBJT__MAPS__LABELS_ENTRY__INIT;
	Pbjt__Maps__LabelsEntry *ls[] = {&l, NULL};
	char *s;

	(void) state;
	l.key = "a\xff";
	l.value = "\xc3";
	m.n_labels = 2; /* a NULL entry is skipped */
	m.labels = ls;
	s = enc(&m);
	assert_non_null(
	    strstr(s, "{\"labels\":{\"a\xef\xbf\xbd\":\"\xef\xbf\xbd\"},"));
	free(s);
}

/*
 * Node JSON nested depth levels deep (depth "child" keys), with "v" set
 * to the string leaf at the bottom; the dotted path of that "v" goes to
 * path.  Caller frees the result.
 */
static char *
nested_json(size_t depth, const char *leaf, char *path, size_t pathlen)
{
	char *js, *p;
	size_t i;

	js = malloc(depth * 16 + strlen(leaf) + 64);
	assert_non_null(js);
	assert_true(pathlen > depth * 6 + 2);
	p = js;
	path[0] = '\0';
	for (i = 0; i < depth; i++) {
		p += sprintf(p, "{\"child\":");
		strcat(path, i == 0 ? "child" : ".child");
	}
	p += sprintf(p, "{\"v\":%s}", leaf);
	for (i = 0; i < depth; i++)
		*p++ = '}';
	*p = '\0';
	strcat(path, ".v");
	return (js);
}

static int
dec_node(struct fx *fx, const char *js, Pbjt__Node *n, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *j;
	int rv;

	j = json_loads(js, 0, &jerr);
	assert_non_null(j);
	pbjt__node__init(n);
	rv = cm_pbjson_decode(&pbjt__node__descriptor, j, &n->base, &fx->arena,
	                      err, errlen);
	json_decref(j);
	return (rv);
}

/*
 * Error paths deeper than the decoder's path buffer are cut at 255
 * characters, never overflowed, and the message stays terminated; nesting
 * is limited to 100 sub-messages.
 */
static void
test_deep_nesting(void **state)
{
	struct fx *fx = *state;
	Pbjt__Node n;
	const Pbjt__Node *p;
	char *js, want[512], path[1024], err[512];
	int i;

	js = nested_json(100, "\"x\"", path, sizeof(path));
	assert_true(strlen(path) > 255);
	snprintf(want, sizeof(want), "field \"%.255s\": expected an integer",
	         path);
	assert_int_equal(dec_node(fx, js, &n, err, sizeof(err)), -1);
	free(js);
	assert_string_equal(err, want);

	js = nested_json(100, "7", path, sizeof(path));
	assert_int_equal(dec_node(fx, js, &n, err, sizeof(err)), 0);
	free(js);
	for (i = 0, p = &n; p->child != NULL; p = p->child)
		i++;
	assert_int_equal(i, 100);
	assert_int_equal(p->v, 7);

	js = nested_json(101, "7", path, sizeof(path));
	assert_int_equal(dec_node(fx, js, &n, err, sizeof(err)), -1);
	free(js);
	assert_non_null(strstr(err, "\": messages nested more than 100 deep"));

	/* the nested path is exact when it fits */
	assert_int_equal(dec(fx, &pbjt__node__descriptor,
	                     "{\"child\":{\"child\":{\"v\":1,\"w\":2}}}", &n),
	                 -1);
	assert_string_equal(fx->err, "unknown field \"child.child.w\"");
	assert_int_equal(dec(fx, &pbjt__node__descriptor,
	                     "{\"child\":{\"child\":{\"v\":1}},\"v\":2}", &n),
	                 0);
	assert_int_equal(n.child->child->v, 1);
	assert_null(n.child->child->child);
	assert_int_equal(n.v, 2);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_shortener_round_trip),
	    T(test_camel_case),
	    T(test_int64_forms),
	    T(test_int32_range),
	    T(test_all_scalars),
	    T(test_enums),
	    T(test_enum_short_names),
	    T(test_enum_short_name_clashes),
	    T(test_enum_names_from_text),
	    T(test_unknown_and_wrong_types),
	    T(test_top_level_and_bad_json),
	    T(test_null_handling),
	    T(test_bytes_base64),
	    T(test_repeated_nested),
	    T(test_oneof),
	    T(test_proto2_labels),
	    T(test_full_round_trip),
	    T(test_encode_invalid_utf8),
	    T(test_set_field_text),
	    T(test_add_field_texts),
	    T(test_error_buffer),
	    T(test_deep_nesting),
	    T(test_maps_round_trip),
	    T(test_maps_nested),
	    T(test_maps_bad_types),
	    T(test_maps_duplicates),
	    T(test_maps_caps_and_text),
	    T(test_maps_proto2),
	    T(test_maps_encode_invalid_utf8),
	};
#undef T

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
