/*
 * The core as a whole: the registry of handlers and filters, the binding
 * of route rows to them, the per-loop state of each (fanned out from
 * net/'s loop hooks), and the core's start and stop.
 *
 * Registration happens on the main thread before the loops start; after
 * that the tables are read-only, so the loops read them without locks.
 * A handler or filter with per-loop state is a "module": its hooks get an
 * index into every loop's mstate[], allocated zeroed at loop init.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#include "internal.h"

struct gw_core_config gw_core_cfg;
struct gw_router gw_router;

static const struct gw_handler *handlers[GW_MAX_MODULES];
static size_t nhandlers;
const struct gw_filter *gw_filters[GW_MAX_MODULES];
size_t gw_nfilters;
static const struct gw_loop_hooks *modules[GW_MAX_MODULES];
static size_t nmodules;

static void
module_add(const struct gw_loop_hooks *hooks)
{
	if (nmodules == GW_MAX_MODULES)
		fatalx("gateway: too many handlers and filters");
	modules[nmodules++] = hooks;
}

size_t
gw_module_index(const struct gw_loop_hooks *hooks)
{
	for (size_t i = 0; i < nmodules; i++)
		if (modules[i] == hooks)
			return (i);
	fatalx("gateway: unregistered module");
}

void
gw_handler_register(const struct gw_handler *h)
{
	for (size_t i = 0; i < nhandlers; i++)
		if (strcmp(handlers[i]->name, h->name) == 0)
			fatalx("gateway: handler %s registered twice", h->name);
	if (nhandlers == GW_MAX_MODULES)
		fatalx("gateway: too many handlers");
	handlers[nhandlers++] = h;
	module_add(&h->loop);
}

void
gw_filter_register(const struct gw_filter *f)
{
	if (gw_nfilters == GW_MAX_MODULES)
		fatalx("gateway: too many filters");
	gw_filters[gw_nfilters++] = f;
	module_add(&f->loop);
}

void *
gw_handler_loop(struct gw_loop *l, const struct gw_handler *h)
{
	return (gw_core_loop(l)->mstate[gw_module_index(&h->loop)]);
}

void *
gw_filter_loop(struct gw_loop *l, const struct gw_filter *f)
{
	return (gw_core_loop(l)->mstate[gw_module_index(&f->loop)]);
}

void
gw_core_bind_routes(void)
{
	char err[256];

	for (size_t i = 0; i < gw_router.n; i++) {
		struct gw_croute *r = &gw_router.routes[i];
		const struct gw_handler *h = NULL;

		for (size_t j = 0; j < nhandlers; j++)
			if (strcmp(handlers[j]->name, r->handler_name) == 0)
				h = handlers[j];
		if (h == NULL)
			fatalx("event=routes route=\"%s\" err=\"no handler "
			       "named %s\"",
			       r->label, r->handler_name);
		if (r->in != NULL &&
		    (r->up = gw_upstream_find(r->upstream_name)) == NULL)
			fatalx("event=routes route=\"%s\" err=\"no upstream "
			       "%s\"",
			       r->label, r->upstream_name);
		err[0] = '\0';
		if (h->check_route != NULL &&
		    h->check_route(r, err, sizeof(err)) != 0)
			fatalx(
			    "event=routes route=\"%s\" handler=%s err=\"%s\"",
			    r->label, h->name, err);
		r->handler = h;
	}
}

/* ---- per-loop state, from net/'s loop hooks ---- */

static void
core_loop_init(struct gw_loop *l)
{
	struct gw_core_loop *cl;

	if ((cl = calloc(1, sizeof(*cl))) == NULL)
		fatalx("gateway: out of memory");
	l->app = cl;
	gw_request_loop_init(l);
	gw_metrics_loop_init(l);
	for (size_t i = 0; i < nmodules; i++) {
		const struct gw_loop_hooks *m = modules[i];

		if (m->size > 0 && (cl->mstate[i] = calloc(1, m->size)) == NULL)
			fatalx("gateway: out of memory");
		if (m->init != NULL)
			m->init(l, cl->mstate[i]);
	}
}

static void
core_tick(struct gw_loop *l)
{
	struct gw_core_loop *cl = gw_core_loop(l);

	for (size_t i = 0; i < nmodules; i++)
		if (modules[i]->tick != NULL)
			modules[i]->tick(l, cl->mstate[i]);
	gw_alog_flush(l);
	gw_metrics_loop_flush(l);
}

static bool
core_drained(struct gw_loop *l, bool force)
{
	struct gw_core_loop *cl = gw_core_loop(l);
	bool done = true;

	for (size_t i = 0; i < nmodules; i++)
		if (modules[i]->drained != NULL &&
		    !modules[i]->drained(l, cl->mstate[i], force))
			done = false;
	return (done && cl->calls == 0);
}

static void
core_loop_close(struct gw_loop *l)
{
	struct gw_core_loop *cl = gw_core_loop(l);

	for (size_t i = 0; i < nmodules; i++)
		if (modules[i]->close != NULL)
			modules[i]->close(l, cl->mstate[i]);
	gw_alog_flush(l);
}

static void
core_loop_free(struct gw_loop *l)
{
	struct gw_core_loop *cl = gw_core_loop(l);

	for (size_t i = 0; i < nmodules; i++) {
		if (modules[i]->fini != NULL)
			modules[i]->fini(l, cl->mstate[i]);
		free(cl->mstate[i]);
	}
	gw_metrics_loop_fini(l);
	gw_alog_flush(l);
	gw_buf_free(&cl->alog);
	free(cl);
	l->app = NULL;
}

const struct gw_app gw_core_app = {
    .loop_init = core_loop_init,
    .loop_free = core_loop_free,
    .tick = core_tick,
    .drained = core_drained,
    .loop_close = core_loop_close,
    .on_head = gw_request_head,
    .on_body = gw_request_body,
    .on_complete = gw_request_complete,
    .on_timeout = gw_request_timeout,
    .on_end = gw_request_end,
    .head_lines = gw_request_head_lines,
};

/* ---- start and stop ---- */

void
gw_core_start(const struct gw_route *routes, size_t nroutes)
{
	char err[256];

	if (gw_router_init(&gw_router, routes, nroutes, gw_services,
	                   gw_nservices, err, sizeof(err)) != 0)
		fatalx("event=routes err=\"%s\"", err);
	gw_upstreams_open();
	gw_core_bind_routes();
	gw_rcache_start();
	gw_metrics_init();
	gw_alog_start();
	gw_net_init(&gw_core_app);
}

void
gw_core_stop_upstreams(void)
{
	gw_upstreams_close();
}

void
gw_core_stop(void)
{
	gw_alog_stop();
	gw_rcache_stop();
	gw_metrics_fini();
	gw_router_fini(&gw_router);
	gw_trust_fini(&gw_core_cfg.trust);
}
