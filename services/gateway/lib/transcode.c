/*
 * Transcoding for "rpc" routes: an HTTP request (JSON body or raw body,
 * query string, path parameters) becomes the packed input message of the
 * route's RPC, and the RPC's reply becomes JSON.  All the per-message work
 * is common/pbjson's, driven by the descriptors the router resolved; this
 * file only decides what binds where.  Everything is allocated from the
 * request's arena.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "pbjson.h"

#include "gwlib.h"

/* Stores the raw body into the route's bytes field. */
static void
bind_raw_body(const struct gw_croute *r, ProtobufCMessage *msg,
              const char *body, size_t blen, cm_arena *a)
{
	const ProtobufCFieldDescriptor *fd = r->body_fd;
	ProtobufCBinaryData *bd =
	    (ProtobufCBinaryData *) ((char *) msg + fd->offset);
	uint8_t *copy = cm_arena_alloc(a, blen ? blen : 1);

	if (blen)
		memcpy(copy, body, blen);
	bd->data = copy;
	bd->len = blen;
	if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		*(uint32_t *) ((char *) msg + fd->quantifier_offset) = fd->id;
	else if (fd->label == PROTOBUF_C_LABEL_OPTIONAL &&
	         fd->quantifier_offset != 0)
		*(protobuf_c_boolean *) ((char *) msg + fd->quantifier_offset) =
		    1;
}

static int
bind_json_body(const struct gw_croute *r, ProtobufCMessage *msg,
               const char *body, size_t blen, cm_arena *a, char *err,
               size_t errlen)
{
	json_error_t jerr;
	json_t *obj;
	size_t i;
	int rv;

	for (i = 0; i < blen; i++)
		if (body[i] != ' ' && body[i] != '\t' && body[i] != '\r' &&
		    body[i] != '\n')
			break;
	if (i == blen)
		return (0); /* an empty body is {} */
	obj = json_loadb(body, blen, JSON_REJECT_DUPLICATES, &jerr);
	if (obj == NULL) {
		snprintf(err, errlen, "invalid JSON: %s (at offset %d)",
		         jerr.text, jerr.position);
		return (-1);
	}
	if (!json_is_object(obj)) {
		json_decref(obj);
		snprintf(err, errlen, "the request body must be a JSON object");
		return (-1);
	}
	rv = cm_pbjson_decode(r->in, obj, msg, a, err, errlen);
	json_decref(obj);
	return (rv == 0 ? 0 : -1);
}

static int
bind_query(const struct gw_croute *r, ProtobufCMessage *msg, const char *query,
           size_t qlen, cm_arena *a, char *err, size_t errlen)
{
	const char *cur = query, *end = query + qlen, *k, *v;
	struct qparam {
		char *key, *val;
		size_t vlen;
		bool done;
	} * ps;
	const char **vals;
	size_t kl, vl, n = 0, *lens;

	ps = cm_arena_alloc(a, GW_QUERY_MAX * sizeof(*ps));
	while (gw_query_next(&cur, end, &k, &kl, &v, &vl)) {
		size_t klen;

		if (n == GW_QUERY_MAX) {
			snprintf(err, errlen, "more than %d query parameters",
			         GW_QUERY_MAX);
			return (-1);
		}
		if (gw_pct_decode(k, kl, true, a, &ps[n].key, &klen) != 0 ||
		    gw_pct_decode(v, vl, true, a, &ps[n].val, &ps[n].vlen) !=
		        0) {
			snprintf(err, errlen, "malformed query string");
			return (-1);
		}
		if (klen == 0) {
			snprintf(err, errlen, "empty query parameter name");
			return (-1);
		}
		ps[n++].done = false;
	}
	vals = cm_arena_alloc(a, (n ? n : 1) * sizeof(*vals));
	lens = cm_arena_alloc(a, (n ? n : 1) * sizeof(*lens));
	/* Every value of one name at once: a repeated field is copied once. */
	for (size_t i = 0; i < n; i++) {
		size_t m = 0;
		int rv;

		if (ps[i].done)
			continue;
		for (size_t j = i; j < n; j++) {
			if (ps[j].done || strcmp(ps[j].key, ps[i].key) != 0)
				continue;
			ps[j].done = true;
			vals[m] = ps[j].val;
			lens[m++] = ps[j].vlen;
		}
		if (m > GW_QUERY_REPEAT_MAX) {
			snprintf(err, errlen,
			         "more than %d values for query parameter "
			         "\"%.64s\"",
			         GW_QUERY_REPEAT_MAX, ps[i].key);
			return (-1);
		}
		rv = cm_pbjson_add_field_texts(r->in, msg, ps[i].key, vals,
		                               lens, m, a, err, errlen);
		if (rv == -2) {
			snprintf(err, errlen,
			         "unknown query parameter \"%.64s\"",
			         ps[i].key);
			return (-1);
		}
		if (rv != 0)
			return (-1);
	}
	return (0);
}

int
gw_transcode_message(const struct gw_croute *r, const struct gw_match *m,
                     const char *query, size_t qlen, const char *body,
                     size_t blen, cm_arena *a, ProtobufCMessage **out,
                     char *err, size_t errlen)
{
	ProtobufCMessage *msg;
	size_t i;

	msg = cm_arena_alloc(a, r->in->sizeof_message);
	protobuf_c_message_init(r->in, msg);
	if (r->def->body == GW_BODY_JSON &&
	    bind_json_body(r, msg, body, blen, a, err, errlen) != 0)
		return (-1);
	if (r->def->body == GW_BODY_RAW)
		bind_raw_body(r, msg, body, blen, a);
	if (qlen > 0 && bind_query(r, msg, query, qlen, a, err, errlen) != 0)
		return (-1);
	for (i = 0; i < m->nparams; i++) {
		char name[128];
		int rv;

		snprintf(name, sizeof(name), "%.*s", (int) m->params[i].nlen,
		         m->params[i].name);
		rv = cm_pbjson_set_field_text(
		    r->in, msg, name, m->params[i].value, m->params[i].vlen, a,
		    err, errlen);
		if (rv != 0) {
			if (rv == -2)
				snprintf(err, errlen, "no field \"%s\"", name);
			return (-1);
		}
	}
	*out = msg;
	return (0);
}

uint8_t *
gw_transcode_pack(const ProtobufCMessage *msg, cm_arena *a, size_t *outlen)
{
	uint8_t *buf;
	size_t n;

	n = protobuf_c_message_get_packed_size(msg);
	buf = cm_arena_alloc(a, n ? n : 1);
	protobuf_c_message_pack(msg, buf);
	*outlen = n;
	return (buf);
}

int
gw_transcode_request(const struct gw_croute *r, const struct gw_match *m,
                     const char *query, size_t qlen, const char *body,
                     size_t blen, cm_arena *a, uint8_t **out, size_t *outlen,
                     char *err, size_t errlen)
{
	ProtobufCMessage *msg;

	if (gw_transcode_message(r, m, query, qlen, body, blen, a, &msg, err,
	                         errlen) != 0)
		return (-1);
	*out = gw_transcode_pack(msg, a, outlen);
	return (0);
}

int
gw_transcode_reply(const struct gw_croute *r, const uint8_t *payload,
                   size_t len, cm_arena *a, char **json, size_t *jlen)
{
	ProtobufCMessage *msg;
	json_t *j;
	size_t n;
	char *buf;

	msg = protobuf_c_message_unpack(r->out, &a->pb, len, payload);
	if (msg == NULL)
		return (-1);
	if ((j = cm_pbjson_encode(msg)) == NULL)
		return (-1);
	n = json_dumpb(j, NULL, 0, JSON_COMPACT);
	buf = cm_arena_alloc(a, n + 1);
	if (n > 0 && json_dumpb(j, buf, n, JSON_COMPACT) != n) {
		json_decref(j);
		return (-1);
	}
	buf[n] = '\0';
	json_decref(j);
	*json = buf;
	*jlen = n;
	return (0);
}
