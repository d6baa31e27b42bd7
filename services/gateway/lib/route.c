/*
 * The router: compiles a route table (routes.c holds the shipped one) and
 * matches requests against it.
 *
 * Compiling resolves each row's rpc, if it names one, to its service and
 * input/output descriptors, and checks that path parameters and the body
 * field exist in the input message, so that a table that cannot work
 * stops start-up instead of failing a request.  Which handler serves a
 * row is a name here; the core binds it to a registered handler.
 *
 * Matching is a linear scan over a handful of compiled patterns: with ten
 * routes that costs less than hashing would, and it keeps 404 and 405
 * (with the Allow header) exact.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gwlib.h"

static int
route_error(char *err, size_t errlen, const struct gw_route *d, const char *why)
{
	snprintf(err, errlen, "route %s %s: %s", d->method ? d->method : "?",
	         d->path ? d->path : "?", why);
	return (-1);
}

/* Resolves "pkg.Service/Method" to its descriptors. */
static int
route_resolve_rpc(struct gw_croute *cr,
                  const ProtobufCServiceDescriptor *const *services,
                  size_t nservices, char *err, size_t errlen)
{
	const struct gw_route *d = cr->def;
	const char *slash = strchr(d->rpc, '/');
	const ProtobufCMethodDescriptor *md = NULL;
	size_t i, slen;

	if (slash == NULL || slash[1] == '\0')
		return (route_error(err, errlen, d, "rpc is not pkg.Svc/M"));
	slen = (size_t) (slash - d->rpc);
	for (i = 0; i < nservices; i++) {
		const ProtobufCServiceDescriptor *sd = services[i];

		if (strlen(sd->name) == slen &&
		    memcmp(sd->name, d->rpc, slen) == 0) {
			cr->service = sd;
			break;
		}
	}
	if (cr->service == NULL)
		return (route_error(err, errlen, d, "unknown service"));
	md = protobuf_c_service_descriptor_get_method_by_name(cr->service,
	                                                      slash + 1);
	if (md == NULL)
		return (route_error(err, errlen, d, "unknown method"));
	cr->in = md->input;
	cr->out = md->output;
	snprintf(cr->upstream_name, sizeof(cr->upstream_name), "%s",
	         d->upstream ? d->upstream : cr->service->package);
	return (0);
}

static bool
valid_ident(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return (false);
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      c == '_' || (i > 0 && c >= '0' && c <= '9')))
			return (false);
	}
	return (true);
}

/* Splits the pattern into literal and "{param}" segments. */
static int
route_parse_path(struct gw_croute *cr, char *err, size_t errlen)
{
	const struct gw_route *d = cr->def;
	const char *p = d->path, *end;

	if (p == NULL || p[0] != '/')
		return (route_error(err, errlen, d, "path must start with /"));
	end = p + strlen(p);
	p++;
	while (p < end) {
		const char *e = memchr(p, '/', (size_t) (end - p));
		size_t len;

		if (e == NULL)
			e = end;
		len = (size_t) (e - p);
		if (len == 0)
			return (route_error(err, errlen, d, "empty segment"));
		if (cr->nsegs == GW_MAX_SEGS)
			return (
			    route_error(err, errlen, d, "too many segments"));
		if (p[0] == '{') {
			if (len < 3 || p[len - 1] != '}' ||
			    !valid_ident(p + 1, len - 2))
				return (route_error(err, errlen, d,
				                    "bad parameter"));
			cr->segs[cr->nsegs].s = p + 1;
			cr->segs[cr->nsegs].len = len - 2;
			cr->segs[cr->nsegs].param = true;
		} else {
			cr->segs[cr->nsegs].s = p;
			cr->segs[cr->nsegs].len = len;
			cr->segs[cr->nsegs].param = false;
		}
		cr->nsegs++;
		p = e + 1;
	}
	for (size_t i = 0; i < cr->nsegs; i++)
		if (!cr->segs[i].param)
			cr->literal_mask |= 1u << (GW_MAX_SEGS - 1 - i);
	return (0);
}

static const ProtobufCFieldDescriptor *
field_by_name(const ProtobufCMessageDescriptor *md, const char *s, size_t len)
{
	char name[128];

	if (len >= sizeof(name))
		return (NULL);
	memcpy(name, s, len);
	name[len] = '\0';
	return (protobuf_c_message_descriptor_get_field_by_name(md, name));
}

int
gw_router_init(struct gw_router *r, const struct gw_route *defs, size_t n,
               const ProtobufCServiceDescriptor *const *services,
               size_t nservices, char *err, size_t errlen)
{
	size_t i, j;

	r->n = 0;
	if ((r->routes = calloc(n ? n : 1, sizeof(*r->routes))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	for (i = 0; i < n; i++) {
		struct gw_croute *cr = &r->routes[i];
		const struct gw_route *d = &defs[i];

		cr->def = d;
		cr->idx = (unsigned) i;
		if (d->method == NULL || d->method[0] == '\0')
			goto fail_msg;
		snprintf(cr->label, sizeof(cr->label), "%s %s", d->method,
		         d->path ? d->path : "");
		if (route_parse_path(cr, err, errlen) != 0)
			goto fail;
		cr->handler_name = d->handler != NULL ? d->handler : "rpc";
		if (d->rpc != NULL) {
			if (route_resolve_rpc(cr, services, nservices, err,
			                      errlen) != 0)
				goto fail;
			for (j = 0; j < cr->nsegs; j++) {
				if (cr->segs[j].param &&
				    field_by_name(cr->in, cr->segs[j].s,
				                  cr->segs[j].len) == NULL) {
					route_error(
					    err, errlen, d,
					    "path parameter is not a field");
					goto fail;
				}
			}
		}
		if (d->body == GW_BODY_RAW) {
			const ProtobufCFieldDescriptor *fd;

			fd =
			    d->body_field == NULL || cr->in == NULL
			        ? NULL
			        : protobuf_c_message_descriptor_get_field_by_name(
			              cr->in, d->body_field);
			if (fd == NULL || fd->type != PROTOBUF_C_TYPE_BYTES ||
			    fd->label == PROTOBUF_C_LABEL_REPEATED) {
				route_error(err, errlen, d,
				            "body_field is not a bytes field");
				goto fail;
			}
			cr->body_fd = fd;
		} else if (d->body == GW_BODY_JSON && cr->in == NULL) {
			route_error(err, errlen, d, "JSON body without rpc");
			goto fail;
		}
		r->n++;
	}
	return (0);
fail_msg:
	route_error(err, errlen, &defs[i], "no method");
fail:
	gw_router_fini(r);
	return (-1);
}

void
gw_router_fini(struct gw_router *r)
{
	free(r->routes);
	r->routes = NULL;
	r->n = 0;
}

static bool
method_serves(const struct gw_croute *cr, const char *method)
{
	if (strcmp(cr->def->method, method) == 0)
		return (true);
	return (strcmp(method, "HEAD") == 0 &&
	        strcmp(cr->def->method, "GET") == 0);
}

static void
allow_add(char *allow, size_t len, const char *method)
{
	size_t ml = strlen(method);
	char *p = allow;

	/* already listed? */
	while (*p != '\0') {
		char *e = strchr(p, ',');

		if ((size_t) ((e ? e : p + strlen(p)) - p) == ml &&
		    memcmp(p, method, ml) == 0)
			return;
		if (e == NULL)
			break;
		p = e + 2;
	}
	if (strlen(allow) + ml + 3 > len)
		return;
	if (allow[0] != '\0')
		strcat(allow, ", ");
	strcat(allow, method);
}

/* A request path's segments. */
struct seg {
	const char *s;
	size_t len;
};

/* Whether cr's pattern matches the segments (whatever the method). */
static bool
path_matches(const struct gw_croute *cr, const struct seg *segs, size_t n)
{
	if (cr->nsegs != n)
		return (false);
	for (size_t j = 0; j < n; j++) {
		if (cr->segs[j].param)
			continue;
		if (cr->segs[j].len != segs[j].len ||
		    memcmp(cr->segs[j].s, segs[j].s, segs[j].len) != 0)
			return (false);
	}
	return (true);
}

enum gw_match_result
gw_router_match(const struct gw_router *r, const char *method, const char *path,
                size_t plen, cm_arena *a, struct gw_match *m)
{
	struct seg segs[GW_MAX_SEGS];
	const struct gw_croute *best = NULL;
	const char *p, *end;
	size_t nsegs = 0, i, j;
	bool path_known = false;

	m->route = NULL;
	m->nparams = 0;
	m->allow[0] = '\0';
	if (plen == 0 || path[0] != '/')
		return (GW_MATCH_NOT_FOUND);
	end = path + plen;
	if (plen > 1 && end[-1] == '/') {
		end--;
		if (end[-1] == '/')
			return (GW_MATCH_NOT_FOUND); /* "//" at the end */
	}
	p = path + 1;
	while (p < end) {
		const char *e = memchr(p, '/', (size_t) (end - p));

		if (e == NULL)
			e = end;
		if (e == p || nsegs == GW_MAX_SEGS)
			return (GW_MATCH_NOT_FOUND);
		segs[nsegs].s = p;
		segs[nsegs].len = (size_t) (e - p);
		nsegs++;
		p = e + 1;
	}

	for (i = 0; i < r->n; i++) {
		const struct gw_croute *cr = &r->routes[i];

		if (!path_matches(cr, segs, nsegs))
			continue;
		path_known = true;
		if (!method_serves(cr, method))
			continue;
		if (best == NULL || cr->literal_mask > best->literal_mask)
			best = cr;
	}
	if (best == NULL) {
		if (!path_known)
			return (GW_MATCH_NOT_FOUND);
		for (i = 0; i < r->n; i++) {
			const struct gw_croute *cr = &r->routes[i];

			if (!path_matches(cr, segs, nsegs))
				continue;
			allow_add(m->allow, sizeof(m->allow), cr->def->method);
			if (strcmp(cr->def->method, "GET") == 0)
				allow_add(m->allow, sizeof(m->allow), "HEAD");
		}
		return (GW_MATCH_BAD_METHOD);
	}
	for (j = 0; j < nsegs; j++) {
		struct gw_param *pa;

		if (!best->segs[j].param)
			continue;
		if (m->nparams == GW_MAX_PARAMS)
			return (GW_MATCH_NOT_FOUND);
		pa = &m->params[m->nparams];
		pa->name = best->segs[j].s;
		pa->nlen = best->segs[j].len;
		if (gw_pct_decode(segs[j].s, segs[j].len, false, a, &pa->value,
		                  &pa->vlen) != 0)
			return (GW_MATCH_BAD_PATH);
		m->nparams++;
	}
	m->route = best;
	return (GW_MATCH_OK);
}

const char *
gw_match_param(const struct gw_match *m, const char *name, size_t *len)
{
	size_t i, nl = strlen(name);

	for (i = 0; i < m->nparams; i++) {
		if (m->params[i].nlen == nl &&
		    memcmp(m->params[i].name, name, nl) == 0) {
			if (len != NULL)
				*len = m->params[i].vlen;
			return (m->params[i].value);
		}
	}
	return (NULL);
}
