/*
 * Handlers of the test build only (GW_TEST_HANDLERS; the gateway-test
 * binary), under /_test/, each exercising one thing the layers offer so
 * that the integration tests check it through the real binary:
 *
 *   GET  /_test/upgrade   "101 Switching Protocols" (Upgrade: echo), then
 *                         the connection echoes raw bytes (a protocol
 *                         other than HTTP on the same connection)
 *   POST /_test/sink      a streamed body into a slow sink: every piece
 *                         pauses the request for ?delay_ms=N (default 1);
 *                         answers {"bytes":N,"sum":S} (S: byte sum mod
 *                         2^32); bodies up to 2 GiB
 *   GET  /_test/blob      ?size=N[&chunked=1]: N bytes in pieces of
 *                         64 KiB (byte i is 'a' + i % 26), written as
 *                         the output drains; HEAD answers the head only
 *   GET  /_test/headers   ?name=H: {"count":C,"value":"..."} (the first
 *                         header H, case-insensitive, and how many header
 *                         lines came), with a response header
 *                         X-Test-Added: yes
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"

#define PIECE     (64 * 1024)
#define MAX_SINKS 16

static char pattern[PIECE + 26];

/* ---- /_test/upgrade ---- */

static void
echo_feed(struct gw_conn *c, void *state, const char *p, size_t len)
{
	(void) state;
	gw_conn_write(c, p, len);
}

static void
echo_close(struct gw_conn *c, void *state)
{
	(void) c;
	(void) state;
}

static const struct gw_proto echo_proto = {
    .name = "echo",
    .feed = echo_feed,
    .close = echo_close,
};

static void
upgrade_request(struct gw_req *rq)
{
	gw_resp_header(rq, "Upgrade", "echo");
	gw_resp_header(rq, "Connection", "Upgrade");
	gw_respond(rq, 101, NULL, NULL, 0);
	gw_req_upgrade(rq, &echo_proto, NULL);
}

/* ---- query parameters ---- */

static uint64_t
query_u64(const struct gw_req *rq, const char *name, uint64_t dflt)
{
	const struct gw_creq *cr = gw_creq(rq);
	const char *cur = cr->query, *end = cr->query + cr->qlen, *k, *v;
	size_t kl, vl;

	while (cr->query != NULL && gw_query_next(&cur, end, &k, &kl, &v, &vl))
		if (kl == strlen(name) && memcmp(k, name, kl) == 0)
			return (strtoull(v, NULL, 10));
	return (dflt);
}

/* ---- /_test/sink ---- */

struct sink_loop {
	struct gw_loop *loop;
	uv_timer_t timer;
	struct gw_req_ref waiting[MAX_SINKS];
	bool used[MAX_SINKS];
};

struct sink_req {
	uint64_t bytes;
	uint32_t sum;
	uint64_t delay_ms;
};

static const struct gw_handler sink_handler;

static void
sink_wake(uv_timer_t *t)
{
	struct sink_loop *sl = t->data;

	for (size_t i = 0; i < MAX_SINKS; i++) {
		struct gw_req *rq;

		if (!sl->used[i])
			continue;
		sl->used[i] = false;
		if ((rq = gw_req_release(&sl->waiting[i])) != NULL)
			gw_req_resume(rq);
	}
}

static void
sink_start(struct gw_req *rq)
{
	struct sink_req *sr = gw_req_hstate(rq);

	sr->delay_ms = query_u64(rq, "delay_ms", 1);
}

static enum gw_body_ret
sink_body(struct gw_req *rq, const char *p, size_t len)
{
	struct sink_req *sr = gw_req_hstate(rq);
	struct sink_loop *sl = gw_handler_loop(rq->loop, &sink_handler);

	sr->bytes += len;
	for (size_t i = 0; i < len; i++)
		sr->sum += (unsigned char) p[i];
	if (sr->delay_ms == 0)
		return (GW_BODY_GO);
	for (size_t i = 0; i < MAX_SINKS; i++) {
		if (sl->used[i])
			continue;
		sl->used[i] = true;
		gw_req_hold(rq, &sl->waiting[i]);
		uv_timer_start(&sl->timer, sink_wake, sr->delay_ms, 0);
		return (GW_BODY_PAUSE);
	}
	return (GW_BODY_GO);
}

static void
sink_request(struct gw_req *rq)
{
	struct sink_req *sr = gw_req_hstate(rq);
	char *body = cm_arena_printf(rq->arena, "{\"bytes\":%llu,\"sum\":%u}",
	                             (unsigned long long) sr->bytes, sr->sum);

	gw_respond(rq, 200, "application/json", body, strlen(body));
}

static void
sink_loop_init(struct gw_loop *l, void *ls)
{
	struct sink_loop *sl = ls;

	sl->loop = l;
	uv_timer_init(&l->uv, &sl->timer);
	sl->timer.data = sl;
}

static void
sink_loop_close(struct gw_loop *l, void *ls)
{
	struct sink_loop *sl = ls;

	(void) l;
	for (size_t i = 0; i < MAX_SINKS; i++)
		if (sl->used[i]) {
			sl->used[i] = false;
			(void) gw_req_release(&sl->waiting[i]);
		}
	uv_close((uv_handle_t *) &sl->timer, NULL);
}

/* ---- /_test/blob ---- */

struct blob_req {
	uint64_t left, off;
};

static void
blob_proceed(struct gw_req *rq, void *arg)
{
	struct blob_req *br = arg;
	size_t n = br->left < PIECE ? (size_t) br->left : PIECE;

	br->left -= n;
	gw_resp_send(rq, pattern + br->off % 26, n, br->left == 0);
	br->off += n;
}

static void
blob_request(struct gw_req *rq)
{
	struct blob_req *br = gw_req_hstate(rq);
	uint64_t size = query_u64(rq, "size", 0);
	bool chunked = query_u64(rq, "chunked", 0) != 0;

	br->left = size;
	if (!gw_resp_start(rq, 200, "application/octet-stream",
	                   chunked ? GW_LEN_CHUNKED : size, blob_proceed, br))
		return;
	if (size == 0)
		gw_resp_send(rq, NULL, 0, true);
}

/* ---- /_test/headers ---- */

static void
headers_request(struct gw_req *rq)
{
	struct gw_buf *s = &rq->loop->scratch;
	const char *name = NULL, *v;
	size_t vl = 0;
	const struct gw_creq *cr = gw_creq(rq);
	const char *cur = cr->query, *end = cr->query + cr->qlen, *k, *qv;
	size_t kl, qvl;

	while (cr->query != NULL &&
	       gw_query_next(&cur, end, &k, &kl, &qv, &qvl))
		if (kl == 4 && memcmp(k, "name", 4) == 0)
			name = cm_arena_strndup(rq->arena, qv, qvl);
	v = name != NULL ? gw_req_header(rq, name, &vl) : NULL;
	s->len = 0;
	gw_buf_printf(s, "{\"count\":%zu,\"value\":", rq->nhdrs);
	if (v != NULL)
		gw_json_quote(s, v, vl);
	else
		gw_buf_puts(s, "null");
	gw_buf_puts(s, "}");
	gw_resp_header(rq, "X-Test-Added", "yes");
	gw_respond(rq, 200, "application/json", s->p, s->len);
}

/* ---- registration ---- */

static const struct gw_handler upgrade_handler = {
    .name = "test_upgrade",
    .flags = GW_HF_UNFILTERED,
    .on_request = upgrade_request,
};

static const struct gw_handler sink_handler = {
    .name = "test_sink",
    .flags = GW_HF_STREAM | GW_HF_UNFILTERED,
    .req_size = sizeof(struct sink_req),
    .loop =
        {
            .size = sizeof(struct sink_loop),
            .init = sink_loop_init,
            .close = sink_loop_close,
        },
    .on_start = sink_start,
    .on_body = sink_body,
    .on_request = sink_request,
};

static const struct gw_handler blob_handler = {
    .name = "test_blob",
    .flags = GW_HF_UNFILTERED,
    .req_size = sizeof(struct blob_req),
    .on_request = blob_request,
};

static const struct gw_handler headers_handler = {
    .name = "test_headers",
    .flags = GW_HF_UNFILTERED,
    .on_request = headers_request,
};

const struct gw_route gw_testing_routes[] = {
    {.method = "GET",
     .path = "/_test/upgrade",
     .handler = "test_upgrade",
     .auth = GW_AUTH_NONE},
    {.method = "POST",
     .path = "/_test/sink",
     .handler = "test_sink",
     .auth = GW_AUTH_NONE,
     .max_body = 2ULL << 30},
    {.method = "GET",
     .path = "/_test/blob",
     .handler = "test_blob",
     .auth = GW_AUTH_NONE},
    {.method = "GET",
     .path = "/_test/headers",
     .handler = "test_headers",
     .auth = GW_AUTH_NONE},
};
const size_t gw_testing_nroutes =
    sizeof(gw_testing_routes) / sizeof(gw_testing_routes[0]);

void
gw_testing_register(void)
{
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (char) ('a' + i % 26);
	gw_handler_register(&upgrade_handler);
	gw_handler_register(&sink_handler);
	gw_handler_register(&blob_handler);
	gw_handler_register(&headers_handler);
}
