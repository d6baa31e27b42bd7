/*
 * handler: one file per kind of endpoint, each exporting only its
 * gw_<name>_register(), which registers a struct gw_handler (core/gwcore.h)
 * under the name route rows use.  main.c registers them before the core
 * binds the routes.
 */
#ifndef GW_HANDLERS_H
#define GW_HANDLERS_H

#include <stddef.h>

#include "core/gwcore.h"

void gw_rpc_register(void);      /* "rpc": JSON <-> protobuf transcoding */
void gw_redirect_register(void); /* "redirect": GET /{code} */
void gw_health_register(void);   /* "health": GET /healthz */
void gw_metrics_register(void);  /* "metrics": GET /metrics */
void gw_cache_register(void);    /* "cache": GET/PUT cache values, raw */

#ifdef GW_TEST_HANDLERS
/*
 * The test build's own handler ("testing") and routes under /_test/, to
 * exercise what the layers offer (upgrades, streamed bodies, responses in
 * pieces, headers) through the real binary.  Never in a shipped gateway.
 */
void gw_testing_register(void);
extern const struct gw_route gw_testing_routes[];
extern const size_t gw_testing_nroutes;
#endif

#endif
