/*
 * The shortener's RPC handlers.  Each one unpacks nothing and decides
 * nothing: the request arrives unpacked, the domain does the work, and the
 * status and message of an error become the reply's (cm_rpc_error).
 *
 * Before the domain runs, the worker's PostgreSQL store is given the
 * request's deadline (io_for), so that a PostgreSQL that stops answering
 * costs a request at most what is left of its deadline, and the reply
 * (UNAVAILABLE) still reaches a caller who is waiting for it.
 */
#include <stdint.h>

#include "handlers.h"
#include "shortener.h"
#include "status.h"
#include "util.h"

#define ERRLEN 256
/* Kept from the store's share of a deadline for the reply's way back. */
#define REPLY_MARGIN_MS 100

/*
 * The worker's stores, their waits bounded by the request's deadline less
 * a margin for the reply (a quarter of what is left, at most
 * REPLY_MARGIN_MS); no deadline, no bound but the store's own.
 */
static struct shortener_io *
io_for(cm_rpc_ctx *ctx)
{
	struct shortener_io *io = ctx->worker;
	int left = cm_rpc_ctx_remaining_ms(ctx);
	int margin = left / 4 < REPLY_MARGIN_MS ? left / 4 : REPLY_MARGIN_MS;

	shortener_pg_set_deadline(
	    &io->store, left == INT32_MAX ? 0 : cm_mono_ms() + (left - margin));
	return (io);
}

static int
h_create(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	Shortener__Url *u;
	char err[ERRLEN];
	int rv;

	rv = shortener_create(ctx->service_arg, io_for(ctx), ctx->user_id,
	                      (const Shortener__CreateUrlRequest *) in,
	                      ctx->arena, &u, err, sizeof(err));
	if (rv != CM_OK)
		return (cm_rpc_error(ctx, rv, "%s", err));
	*out = &u->base;
	return (CM_OK);
}

static int
h_get(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	Shortener__Url *u;
	char err[ERRLEN];
	int rv;

	rv = shortener_get(ctx->service_arg, io_for(ctx), ctx->user_id,
	                   (const Shortener__GetUrlRequest *) in, ctx->arena,
	                   &u, err, sizeof(err));
	if (rv != CM_OK)
		return (cm_rpc_error(ctx, rv, "%s", err));
	*out = &u->base;
	return (CM_OK);
}

static int
h_list(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	Shortener__ListUrlsResponse *r;
	char err[ERRLEN];
	int rv;

	rv = shortener_list(ctx->service_arg, io_for(ctx), ctx->user_id,
	                    (const Shortener__ListUrlsRequest *) in, ctx->arena,
	                    &r, err, sizeof(err));
	if (rv != CM_OK)
		return (cm_rpc_error(ctx, rv, "%s", err));
	*out = &r->base;
	return (CM_OK);
}

static int
h_delete(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	Shortener__Empty *e;
	char err[ERRLEN];
	int rv;

	rv = shortener_delete(ctx->service_arg, io_for(ctx), ctx->user_id,
	                      (const Shortener__DeleteUrlRequest *) in, err,
	                      sizeof(err));
	if (rv != CM_OK)
		return (cm_rpc_error(ctx, rv, "%s", err));
	e = cm_rpc_new_msg(ctx, &shortener__empty__descriptor);
	*out = &e->base;
	return (CM_OK);
}

static int
h_resolve(cm_rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out)
{
	Shortener__ResolveResponse *r;
	char err[ERRLEN];
	int rv;

	rv = shortener_resolve(ctx->service_arg, io_for(ctx),
	                       (const Shortener__ResolveRequest *) in,
	                       ctx->arena, &r, err, sizeof(err));
	if (rv != CM_OK)
		return (cm_rpc_error(ctx, rv, "%s", err));
	*out = &r->base;
	return (CM_OK);
}

static int
h_record_clicks(cm_rpc_ctx *ctx, const ProtobufCMessage *in,
                ProtobufCMessage **out)
{
	Shortener__Empty *e;
	char err[ERRLEN];
	int rv;

	rv = shortener_record_clicks(
	    ctx->service_arg, io_for(ctx),
	    (const Shortener__RecordClicksRequest *) in, err, sizeof(err));
	if (rv != CM_OK)
		return (cm_rpc_error(ctx, rv, "%s", err));
	e = cm_rpc_new_msg(ctx, &shortener__empty__descriptor);
	*out = &e->base;
	return (CM_OK);
}

/* In the order of the methods in proto/shortener.proto. */
static const cm_rpc_handler handlers[] = {
    h_create, h_get, h_list, h_delete, h_resolve, h_record_clicks,
};

const cm_rpc_service shortener_rpc_service = {
    .desc = &shortener__shortener__descriptor,
    .handlers = handlers,
};
