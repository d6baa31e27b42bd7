/*
 * libFuzzer: untrusted JSON bodies through the descriptor-driven decoder,
 * into a flat message (shortener.CreateUrlRequest), nested/repeated ones
 * (health.HealthCheckResponse, shortener.ListUrlsResponse), the test
 * messages with maps and prefixed enums (pbjt.Maps, pbjt.Prio) and every
 * field type (pbjt.All), and back out through the encoder.  What decodes
 * must encode, and the encoding must decode again (as the gateway loads
 * JSON: duplicate keys refused).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "health.pb-c.h"
#include "pbjson.h"
#include "pbjson_test.pb-c.h"
#include "shortener.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
one(const ProtobufCMessageDescriptor *desc, json_t *root)
{
	cm_arena a;
	ProtobufCMessage *m, *m2;
	json_t *out, *back;
	char err[256], *s;

	cm_arena_init(&a);
	m = cm_arena_alloc(&a, desc->sizeof_message);
	desc->message_init(m);
	if (cm_pbjson_decode(desc, root, m, &a, err, sizeof(err)) == 0) {
		if ((out = cm_pbjson_encode(m)) == NULL)
			abort();
		if ((s = json_dumps(out, 0)) == NULL)
			abort();
		back = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
		m2 = cm_arena_alloc(&a, desc->sizeof_message);
		desc->message_init(m2);
		if (back == NULL ||
		    cm_pbjson_decode(desc, back, m2, &a, err, sizeof(err)) != 0)
			abort();
		json_decref(back);
		free(s);
		json_decref(out);
	}
	cm_arena_fini(&a);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *root = json_loadb((const char *) data, size, 0, NULL);

	if (root == NULL)
		return (0);
	one(&shortener__create_url_request__descriptor, root);
	one(&health__health_check_response__descriptor, root);
	one(&shortener__list_urls_response__descriptor, root);
	one(&pbjt__maps__descriptor, root);
	one(&pbjt__prio__descriptor, root);
	one(&pbjt__all__descriptor, root);
	json_decref(root);
	return (0);
}
