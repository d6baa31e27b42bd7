/* Shared between the RPC server and client; not part of the API. */
#ifndef CM_RPC_INTERNAL_H
#define CM_RPC_INTERNAL_H

#include <nng/nng.h>

#include "rpc.h"
#include "rpc.pb-c.h"

/* Largest message either side accepts (cache values go up to 1 MiB). */
#define CM_RPC_MAX_MSG (8u << 20)

/*
 * Packs a protobuf message into the body of a new nng message.
 * Returns 0 or an NNG error; *out is set only on success.
 */
int cm_rpc_pack_msg(const ProtobufCMessage *m, nng_msg **out);

#endif
