/*
 * The shortener's RPC handlers: the glue between cm_rpc (context, arena,
 * status) and the domain in shortener.h.
 */
#ifndef SHORTENER_HANDLERS_H
#define SHORTENER_HANDLERS_H

#include "rpc/rpc.h"

/*
 * The shortener.Shortener service for cm_rpc_server.  Handlers expect
 * cm_rpc_server_config.arg to be the struct shortener * and each worker's
 * state to be its struct shortener_io *.
 */
extern const cm_rpc_service shortener_rpc_service;

#endif
