/*
 * HTTP/1.1 on top of http-parser: the parser callbacks that assemble a
 * request, the feed loop that runs the parser over received bytes, and the
 * response writers.
 *
 * The parser is paused at the end of every message, so exactly one request
 * is handled at a time per connection: the feed loop dispatches it, and
 * continues with the next pipelined request only once the current one has
 * been answered (at once, or when its upstream call returns).  Responses
 * are therefore written in request order without any reordering queue.
 *
 * Only the headers the gateway reads are kept (Authorization, X-Request-Id,
 * X-Forwarded-For, Expect, If-None-Match, X-API-Key); Content-Length,
 * Transfer-Encoding and Connection are the parser's.  The header-size limit is
 * the parser's own (http_parser_set_max_header_size, set at start-up): it
 * counts the request line and all header bytes, and overflowing it is a 431.
 */
#include <string.h>

#include "log.h"
#include "util.h"

#include "gateway.h"

static struct gw_req *
req_of(http_parser *p)
{
	return (&((struct gw_conn *) p->data)->req);
}

static int
on_message_begin(http_parser *p)
{
	struct gw_conn *c = p->data;

	memset(&c->req, 0, sizeof(c->req));
	c->req.start_us = cm_mono_us();
	c->req.start_ms = (int64_t) uv_now(&c->loop->loop);
	c->in_req = true;
	return (0);
}

static int
on_url(http_parser *p, const char *at, size_t len)
{
	struct gw_conn *c = p->data;

	gw_str_append(&c->req.url, &c->arena, at, len);
	return (0);
}

static enum gw_hdr
classify(const char *name, size_t len)
{
	switch (len) {
	case 6:
		if (gw_strcaseeq(name, len, "expect"))
			return (GW_HDR_EXPECT);
		break;
	case 9:
		if (gw_strcaseeq(name, len, "x-api-key"))
			return (GW_HDR_X_API_KEY);
		break;
	case 12:
		if (gw_strcaseeq(name, len, "x-request-id"))
			return (GW_HDR_X_REQUEST_ID);
		break;
	case 13:
		if (gw_strcaseeq(name, len, "authorization"))
			return (GW_HDR_AUTHORIZATION);
		if (gw_strcaseeq(name, len, "if-none-match"))
			return (GW_HDR_IF_NONE_MATCH);
		break;
	case 15:
		if (gw_strcaseeq(name, len, "x-forwarded-for"))
			return (GW_HDR_X_FORWARDED_FOR);
		break;
	}
	return (GW_HDR_OTHER);
}

static int
on_header_field(http_parser *p, const char *at, size_t len)
{
	struct gw_req *rq = req_of(p);

	if (rq->in_value) {
		rq->in_value = false;
		rq->fnlen = 0;
	}
	if (rq->fnlen + len <= sizeof(rq->fname))
		memcpy(rq->fname + rq->fnlen, at, len);
	rq->fnlen += len;
	return (0);
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
	struct gw_conn *c = p->data;
	struct gw_req *rq = &c->req;

	if (!rq->in_value) {
		rq->in_value = true;
		rq->cur = rq->fnlen <= sizeof(rq->fname)
		              ? classify(rq->fname, rq->fnlen)
		              : GW_HDR_OTHER;
		switch (rq->cur) {
		case GW_HDR_AUTHORIZATION:
			rq->nauth++;
			break;
		case GW_HDR_X_REQUEST_ID:
			if (rq->rid_in.len > 0)
				rq->cur = GW_HDR_OTHER; /* first one wins */
			break;
		case GW_HDR_X_API_KEY:
			if (rq->apikey.len > 0)
				rq->cur = GW_HDR_OTHER; /* first one wins */
			break;
		case GW_HDR_X_FORWARDED_FOR:
			if (rq->xff.len > 0)
				gw_str_append(&rq->xff, &c->arena, ",", 1);
			break;
		case GW_HDR_EXPECT:
			if (rq->expect.len > 0)
				gw_str_append(&rq->expect, &c->arena, ",", 1);
			break;
		default:
			break;
		}
	}
	switch (rq->cur) {
	case GW_HDR_AUTHORIZATION:
		gw_str_append(&rq->auth, &c->arena, at, len);
		break;
	case GW_HDR_X_REQUEST_ID:
		gw_str_append(&rq->rid_in, &c->arena, at, len);
		break;
	case GW_HDR_X_FORWARDED_FOR:
		gw_str_append(&rq->xff, &c->arena, at, len);
		break;
	case GW_HDR_EXPECT:
		gw_str_append(&rq->expect, &c->arena, at, len);
		break;
	case GW_HDR_IF_NONE_MATCH:
		gw_str_append(&rq->inm, &c->arena, at, len);
		break;
	case GW_HDR_X_API_KEY:
		gw_str_append(&rq->apikey, &c->arena, at, len);
		break;
	default:
		break;
	}
	return (0);
}

static int
on_headers_complete(http_parser *p)
{
	struct gw_conn *c = p->data;

	/* Nonzero other than 1/2 fails the parse with HPE_CB_headers_complete;
	 * http_fail then answers the early status. */
	return (gw_request_head(c) == 0 ? 0 : -1);
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
	struct gw_conn *c = p->data;
	struct gw_req *rq = &c->req;

	rq->body_seen += len;
	if (rq->body_seen > gw_cfg.max_body_bytes) {
		rq->early_status = 413;
		rq->early_msg = "request body too large";
		return (-1);
	}
	if (!rq->discard_body)
		gw_str_append(&rq->body, &c->arena, at, len);
	return (0);
}

static int
on_message_complete(http_parser *p)
{
	req_of(p)->complete = true;
	http_parser_pause(p, 1);
	return (0);
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void
gw_http_init(struct gw_conn *c)
{
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
}

/* A parse error: answer it and end the connection. */
static void
http_fail(struct gw_conn *c, enum http_errno e)
{
	struct gw_req *rq = &c->req;
	int status = 400;
	const char *msg = http_errno_description(e);

	if ((e == HPE_CB_headers_complete || e == HPE_CB_body) &&
	    rq->early_status != 0) {
		status = rq->early_status;
		msg = rq->early_msg;
	} else if (e == HPE_HEADER_OVERFLOW) {
		status = 431;
		msg = "request header too large";
	}
	c->close_after = true;
	gw_respond_error(c, status, gw_http_code_name(status), msg,
	                 status == rq->early_status ? rq->early_extra : NULL);
}

size_t
gw_http_feed(struct gw_conn *c, const char *data, size_t len)
{
	size_t off = 0;

	while (off < len && !c->busy && !c->close_after && !c->closing &&
	       !gw_conn_out_full(c)) {
		size_t n;
		enum http_errno e;

		n = http_parser_execute(&c->parser, &settings, data + off,
		                        len - off);
		off += n;
		e = HTTP_PARSER_ERRNO(&c->parser);
		if (e == HPE_PAUSED) {
			http_parser_pause(&c->parser, 0);
			gw_request_dispatch(c);
			continue;
		}
		if (e != HPE_OK) {
			http_fail(c, e);
			return (len);
		}
		if (n == 0)
			break;
	}
	return (off);
}

/* ---- responses ---- */

static void
put_rid(struct gw_conn *c)
{
	struct gw_req *rq = &c->req;

	if (rq->rid[0] == '\0')
		gw_request_rid(c);
	gw_buf_append(&c->out, "X-Request-Id: ", 14);
	gw_buf_puts(&c->out, rq->rid);
	gw_buf_append(&c->out, "\r\n", 2);
}

/* Status line and the headers every response has. */
static void
resp_head(struct gw_conn *c, int status, size_t clen)
{
	struct gw_req *rq = &c->req;
	struct gw_buf *o = &c->out;
	bool close;

	close = c->close_after || !rq->keepalive || c->loop->draining;
	if (close)
		c->close_after = true;
	gw_buf_reserve(o, 256);
	gw_buf_append(o, "HTTP/1.1 ", 9);
	gw_buf_putu(o, (uint64_t) status);
	gw_buf_append(o, " ", 1);
	gw_buf_puts(o, gw_http_reason(status));
	gw_buf_append(o, "\r\n", 2);
	gw_buf_puts(o, gw_loop_date(c->loop));
	if (status != 204 && status != 304) {
		gw_buf_append(o, "Content-Length: ", 16);
		gw_buf_putu(o, clen);
		gw_buf_append(o, "\r\n", 2);
	}
	put_rid(c);
	if (rq->rl_hdrs != NULL)
		gw_buf_puts(o, rq->rl_hdrs);
	if (close)
		gw_buf_append(o, "Connection: close\r\n", 19);
	else if (rq->http10)
		gw_buf_append(o, "Connection: keep-alive\r\n", 24);
}

/* The request is answered: account for it and release its memory. */
static void
req_end(struct gw_conn *c, int status, size_t bytes)
{
	struct gw_req *rq = &c->req;

	rq->status = status;
	rq->bytes = bytes;
	rq->dur_us = rq->start_us != 0 ? cm_mono_us() - rq->start_us : 0;
	gw_metrics_request(c->loop, rq->route, status, rq->dur_us);
	if (gw_cfg.access_log)
		gw_alog_request(c);
	c->busy = false;
	c->in_req = false;
	c->seq++;
	memset(rq, 0, sizeof(*rq));
	cm_arena_reset(&c->arena);
}

void
gw_respond(struct gw_conn *c, int status, const char *ctype, const char *extra,
           const void *body, size_t len)
{
	struct gw_buf *o = &c->out;
	bool send_body = !c->req.head && status != 204 && status != 304;

	resp_head(c, status, len);
	if (ctype != NULL) {
		gw_buf_append(o, "Content-Type: ", 14);
		gw_buf_puts(o, ctype);
		gw_buf_append(o, "\r\n", 2);
	}
	if (extra != NULL)
		gw_buf_puts(o, extra);
	gw_buf_append(o, "\r\n", 2);
	if (send_body && len > 0)
		gw_buf_append(o, body, len);
	req_end(c, status, send_body ? len : 0);
}

void
gw_respond_error(struct gw_conn *c, int status, const char *code,
                 const char *msg, const char *extra)
{
	struct gw_buf *s = &c->loop->scratch;

	s->len = 0;
	gw_error_json(s, code, msg ? msg : "");
	gw_respond(c, status, "application/json", extra, s->p, s->len);
}

void
gw_respond_redirect(struct gw_conn *c, int status, const char *loc,
                    size_t loclen, const char *cache_control)
{
	struct gw_buf *o = &c->out;

	resp_head(c, status, 0);
	gw_buf_reserve(o, loclen + 64);
	gw_buf_append(o, "Location: ", 10);
	gw_buf_append(o, loc, loclen);
	gw_buf_append(o, "\r\nCache-Control: ", 17);
	gw_buf_puts(o, cache_control);
	gw_buf_append(o, "\r\n\r\n", 4);
	req_end(c, status, 0);
}

/* "HTTP/1.1 100 Continue": the client may send its body now. */
void
gw_respond_continue(struct gw_conn *c)
{
	gw_buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
}
