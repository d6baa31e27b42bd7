/*
 * The notifier's RPC handlers: the glue between cm_rpc (context, arena,
 * status) and the domain (notifier.h) with its stores (store.h).
 */
#ifndef NOTIFIER_HANDLERS_H
#define NOTIFIER_HANDLERS_H

#include "notifier.h"
#include "rpc/rpc.h"
#include "store.h"

/* cm_rpc_server_config.arg: what every handler shares. */
struct nt_svc {
	nt_engine *engine;
	struct nt_batcher *batcher;
	void (*wake_relay)(void); /* work was committed to the outbox */
	const char *unsubscribe_key;
	/* NOTIFIER_OUTBOUND_ALLOW (may be NULL): see nt_endpoint_refusal. */
	const char *outbound_allow;
};

/*
 * The notifier.Notifier service for cm_rpc_server.  Each worker's state
 * is its struct nt_pg *.
 */
extern const cm_rpc_service notifier_rpc_service;

#endif
