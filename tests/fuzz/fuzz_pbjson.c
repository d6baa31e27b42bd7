/*
 * libFuzzer: untrusted JSON bodies through the descriptor-driven decoder,
 * into a flat message (shortener.CreateUrlRequest) and a nested/repeated one
 * (health.HealthCheckResponse), and back out through the encoder.
 */
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "health.pb-c.h"
#include "pbjson.h"
#include "shortener.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
one(const ProtobufCMessageDescriptor *desc, json_t *root)
{
	cm_arena a;
	ProtobufCMessage *m;
	char err[256];

	cm_arena_init(&a);
	m = cm_arena_alloc(&a, desc->sizeof_message);
	desc->message_init(m);
	if (cm_pbjson_decode(desc, root, m, &a, err, sizeof(err)) == 0) {
		json_t *out = cm_pbjson_encode(m);
		char *s = out != NULL ? json_dumps(out, 0) : NULL;
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
	json_decref(root);
	return (0);
}
