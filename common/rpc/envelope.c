/*
 * Envelope helpers shared by the server and the client, and the parts of
 * the handler context API that do not need the server.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "util.h"

int
cm_rpc_pack_msg(const ProtobufCMessage *m, nng_msg **out)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	nng_msg *msg;
	int rv;

	if (n > CM_RPC_MAX_MSG)
		return (NNG_EMSGSIZE);
	if ((rv = nng_msg_alloc(&msg, n)) != 0)
		return (rv);
	protobuf_c_message_pack(m, nng_msg_body(msg));
	*out = msg;
	return (0);
}

int
cm_rpc_method_name(const ProtobufCServiceDescriptor *sd, unsigned index,
                   char *out, size_t outlen)
{
	int n;

	if (index >= sd->n_methods)
		return (-1);
	n = snprintf(out, outlen, "%s/%s", sd->name, sd->methods[index].name);
	return ((n < 0 || (size_t) n >= outlen) ? -1 : 0);
}

const char *
cm_rpc_ctx_meta(const cm_rpc_ctx *ctx, const char *key)
{
	const Rpc__Request *req = ctx->envelope;

	if (req == NULL)
		return (NULL);
	for (size_t i = 0; i < req->n_metadata; i++)
		if (req->metadata[i]->key != NULL &&
		    strcmp(req->metadata[i]->key, key) == 0)
			return (req->metadata[i]->value);
	return (NULL);
}

int
cm_rpc_error(cm_rpc_ctx *ctx, int code, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ctx->errmsg = cm_arena_strdup(ctx->arena, buf);
	return (code);
}

int
cm_rpc_ctx_remaining_ms(const cm_rpc_ctx *ctx)
{
	int64_t left;

	if (ctx->deadline_ms == 0)
		return (INT32_MAX);
	left = ctx->deadline_ms - cm_now_ms();
	if (left < 0)
		return (0);
	return (left > INT32_MAX ? INT32_MAX : (int) left);
}

void *
cm_rpc_new_msg(cm_rpc_ctx *ctx, const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m = cm_arena_alloc(ctx->arena, desc->sizeof_message);

	desc->message_init(m);
	return (m);
}
