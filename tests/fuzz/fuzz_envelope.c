/*
 * libFuzzer: RPC envelopes and payloads as a server receives them, unpacked
 * with the arena allocator the server uses, then re-packed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "arena.h"
#include "rpc.pb-c.h"
#include "shortener.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cm_arena a;
	Rpc__Request *req;
	ProtobufCMessage *m;

	cm_arena_init(&a);
	req = rpc__request__unpack(&a.pb, size, data);
	if (req != NULL) {
		size_t n = rpc__request__get_packed_size(req);
		uint8_t *buf = cm_arena_alloc(&a, n);
		rpc__request__pack(req, buf);
	}
	m = protobuf_c_message_unpack(
	    &shortener__record_clicks_request__descriptor, &a.pb, size, data);
	if (m != NULL) {
		size_t n = protobuf_c_message_get_packed_size(m);
		protobuf_c_message_pack(m, cm_arena_alloc(&a, n));
	}
	cm_arena_fini(&a);
	return (0);
}
