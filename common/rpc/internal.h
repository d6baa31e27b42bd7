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

/* Whether url is a tls+tcp:// address. */
bool cm_rpc_url_is_tls(const char *url);

/*
 * A TLS configuration from RPC_TLS_DIR for this process (its name's
 * certificate, the CA, peer certificates required): a server's, or a
 * client's that expects the server to be named peer.  0, or -1 with the
 * reason in err.  The caller frees it (nng_tls_config_free) once set on
 * its listener or dialer.
 */
struct nng_tls_config;
int cm_rpc_tls_config(struct nng_tls_config **out, bool server,
                      const char *peer, char *err, size_t errlen);

#endif
