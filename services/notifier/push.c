/*
 * Push: an HTTP(S) POST of {"id","title","body","data"} to the device's
 * endpoint, as ntfy and UnifiedPush distributors receive it, with
 * "Idempotency-Key: <notification id>" so that a retry after a lost
 * answer is recognisable as the same message.  Endpoints are registered
 * by users, so every request goes through the outbound guard
 * (outbound.h); an endpoint answering 404 or 410 is NT_GONE (the engine
 * removes it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "nt_channels.h"
#include "outbound.h"

/* Longest push payload accepted (ntfy's own limit is 4 KiB of message;
 * distributors differ), in bytes. */
#define PUSH_BODY_MAX (64 * 1024)
#define PUSH_ID_MAX   128

typedef struct push {
	nt_outbound *out;
} push;

/* The notification id goes into a header: visible ASCII only. */
static bool
push_id_ok(const char *id)
{
	size_t n = 0;

	if (id == NULL || *id == '\0')
		return (false);
	for (const char *p = id; *p != '\0'; p++, n++)
		if (*p <= 0x20 || *p >= 0x7f || n >= PUSH_ID_MAX)
			return (false);
	return (true);
}

/*
 * The JSON body, malloc'd (the caller frees it), or NULL with r filled:
 * data_json must be a JSON object (NULL or "" is {}).
 */
static char *
push_body(const nt_message *m, nt_result *r)
{
	json_t *o, *data;
	json_error_t jerr;
	char *s;

	if (m->data_json == NULL || m->data_json[0] == '\0')
		data = json_object();
	else
		data = json_loads(m->data_json, JSON_REJECT_DUPLICATES, &jerr);
	if (data == NULL || !json_is_object(data)) {
		json_decref(data);
		nt_result_set(r, NT_PERMANENT, 0,
		              "refused: data is not a JSON object");
		return (NULL);
	}
	o = json_object();
	if (o == NULL ||
	    json_object_set_new(o, "id", json_string(m->id)) != 0 ||
	    json_object_set_new(o, "title",
	                        json_string(m->title ? m->title : "")) != 0 ||
	    json_object_set_new(o, "body",
	                        json_string(m->body ? m->body : "")) != 0 ||
	    json_object_set_new(o, "data", data) != 0) {
		json_decref(o);
		nt_result_set(r, NT_PERMANENT, 0,
		              "refused: title or body is not UTF-8");
		return (NULL);
	}
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s == NULL) {
		nt_result_set(r, NT_RETRY, 0, "out of memory");
		return (NULL);
	}
	if (strlen(s) > PUSH_BODY_MAX) {
		free(s);
		nt_result_set(r, NT_PERMANENT, 0,
		              "refused: the push payload is over %d bytes",
		              PUSH_BODY_MAX);
		return (NULL);
	}
	return (s);
}

static void
push_send(void *impl, const nt_message *m, const char *endpoint, nt_result *r)
{
	push *p = impl;
	char key[32 + PUSH_ID_MAX];
	const char *headers[4];
	char *body;

	memset(r, 0, sizeof(*r));
	if (!nt_url_is_http(endpoint)) {
		nt_result_set(r, NT_REFUSED, 0,
		              "URL refused: only http:// and https:// "
		              "endpoints");
		return;
	}
	if (!push_id_ok(m->id)) {
		nt_result_set(r, NT_PERMANENT, 0,
		              "refused: notification id unfit for a header");
		return;
	}
	if ((body = push_body(m, r)) == NULL)
		return;
	snprintf(key, sizeof(key), "Idempotency-Key: %s", m->id);
	headers[0] = "Content-Type: application/json";
	headers[1] = key;
	headers[2] = NULL;
	nt_outbound_post(p->out, endpoint, headers, body, strlen(body), true,
	                 r);
	free(body);
}

static void
push_free(void *impl)
{
	push *p = impl;

	if (p == NULL)
		return;
	nt_outbound_free(p->out);
	free(p);
}

static const nt_provider_ops push_ops = {
    .name = "push",
    .channel = NT_CH_PUSH,
    .send = push_send,
    .free = push_free,
};

int
nt_push_new(const nt_outbound_cfg *cfg, nt_provider *pr, char *err,
            size_t errlen)
{
	push *p;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	if (nt_outbound_new(cfg, false, &p->out, err, errlen) != 0) {
		free(p);
		return (-1);
	}
	pr->ops = &push_ops;
	pr->impl = p;
	return (0);
}
