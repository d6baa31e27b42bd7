/*
 * "metrics": GET /metrics, the Prometheus text of every series
 * (core/metrics.c).  It answers loopback clients, and others that present
 * "Authorization: Bearer <METRICS_TOKEN>" (compared in constant time);
 * anyone else gets 403.
 */
#include <stdlib.h>
#include <string.h>

#include "handlers.h"

static bool
metrics_allowed(struct gw_req *rq)
{
	const char *auth, *tok;
	size_t alen, toklen;

	if (gw_ip_is_loopback(gw_creq(rq)->client))
		return (true);
	if (gw_core_cfg.metrics_token[0] == '\0' ||
	    (auth = gw_req_header(rq, "authorization", &alen)) == NULL)
		return (false);
	if (gw_bearer(auth, alen, &tok, &toklen) != 0)
		return (false);
	return (gw_secret_equal(tok, toklen, gw_core_cfg.metrics_token,
	                        strlen(gw_core_cfg.metrics_token)));
}

static void
metrics_request(struct gw_req *rq)
{
	char *text;

	if (!metrics_allowed(rq)) {
		gw_respond_error(
		    rq, 403, "PERMISSION_DENIED",
		    "metrics are for loopback or the metrics token");
		return;
	}
	gw_metrics_loop_flush(rq->loop);
	if ((text = gw_metrics_render()) == NULL) {
		gw_respond_error(rq, 500, "INTERNAL", "out of memory");
		return;
	}
	gw_respond(rq, 200, "text/plain; version=0.0.4; charset=utf-8", text,
	           strlen(text));
	free(text);
}

static const struct gw_handler metrics_handler = {
    .name = "metrics",
    .flags = GW_HF_UNFILTERED,
    .on_request = metrics_request,
};

void
gw_metrics_register(void)
{
	gw_handler_register(&metrics_handler);
}
