/*
 * RPC client over a raw req0 socket.
 *
 * Cooked req0 resends a request when its timer fires and, worse, when the
 * pipe it went out on closes; for a non-idempotent call (a POST) that may
 * run it twice.  So we use the raw socket, which sends each message exactly
 * once, and do the request/reply matching ourselves:
 *
 *   - a call takes a slot in a fixed table; its 32-bit request id is the
 *     slot index plus a generation (high bit set, as the wire needs), so a
 *     late reply to a recycled slot is recognised and dropped;
 *   - one receive aio runs continuously and completes the call its reply
 *     names;
 *   - a reaper thread completes calls whose deadline passed
 *     (DEADLINE_EXCEEDED) and calls failed before sending (UNAVAILABLE), so
 *     that the completion never runs inside cm_rpc_call_async itself;
 *   - pipe notifications count connected servers: with none, a call fails
 *     at once; when the last one goes, every call in flight fails at once.
 *
 * Whoever unlinks a call from the in-flight list under the lock completes
 * it, so every call completes exactly once.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "internal.h"
#include "log.h"
#include "util.h"

#define SLOT_BITS    13
#define NSLOTS       (1u << SLOT_BITS)
#define GEN_MASK     ((1u << (31 - SLOT_BITS)) - 1)
#define REAP_TICK_MS 5
#define DEFAULT_WAIT 30000

struct call {
	struct call *prev, *next; /* in-flight list, or free list (next) */
	uint32_t gen;
	int in_use;
	int preset; /* status to complete with, -1 = none */
	const char *preset_msg;
	int64_t deadline; /* monotonic ms */
	cm_rpc_done done;
	void *arg;
};

struct cm_rpc_client {
	nng_socket sock;
	nng_aio *recv_aio;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	pthread_t reaper;
	atomic_int closing;   /* written under mtx, read without it */
	atomic_int connected; /* written under mtx, read without it */
	struct call slots[NSLOTS];
	struct call *free_list;
	struct call inflight; /* sentinel of a circular list */
};

static void
list_insert(struct cm_rpc_client *c, struct call *k)
{
	k->prev = c->inflight.prev;
	k->next = &c->inflight;
	c->inflight.prev->next = k;
	c->inflight.prev = k;
}

static void
list_remove(struct call *k)
{
	k->prev->next = k->next;
	k->next->prev = k->prev;
	k->prev = k->next = NULL;
}

/* Returns a call to the free list; called with the lock held. */
static void
slot_release(struct cm_rpc_client *c, struct call *k)
{
	k->in_use = 0;
	k->gen = (k->gen + 1) & GEN_MASK;
	k->next = c->free_list;
	c->free_list = k;
}

static void
complete(cm_rpc_done done, void *arg, int status, const char *msg)
{
	cm_rpc_result r = {status, msg, NULL, 0};

	done(arg, &r);
}

/*
 * Receive callback (NNG task thread): match the reply to its call, hand
 * the result to the caller, and post the next receive.
 */
static void
recv_cb(void *arg)
{
	struct cm_rpc_client *c = arg;
	nng_msg *msg;
	uint32_t id, idx;
	struct call *k;
	cm_rpc_done done = NULL;
	void *darg = NULL;
	Rpc__Reply *rep;

	if (nng_aio_result(c->recv_aio) != 0) {
		if (!atomic_load(&c->closing))
			nng_recv_aio(c->sock, c->recv_aio);
		return;
	}
	msg = nng_aio_get_msg(c->recv_aio);
	nng_aio_set_msg(c->recv_aio, NULL);
	if (nng_msg_header_trim_u32(msg, &id) != 0)
		goto next;
	idx = id & (NSLOTS - 1);
	pthread_mutex_lock(&c->mtx);
	k = &c->slots[idx];
	if (k->in_use && k->prev != NULL &&
	    k->gen == ((id & 0x7fffffffu) >> SLOT_BITS)) {
		list_remove(k);
		done = k->done;
		darg = k->arg;
		slot_release(c, k);
	}
	pthread_mutex_unlock(&c->mtx);
	if (done == NULL)
		goto next; /* late reply: the call already timed out */
	rep = rpc__reply__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	if (rep == NULL) {
		complete(done, darg, CM_INTERNAL, "malformed reply envelope");
	} else {
		cm_rpc_result r = {rep->status,
		                   rep->message != NULL ? rep->message : "",
		                   rep->payload.data, rep->payload.len};
		done(darg, &r);
		rpc__reply__free_unpacked(rep, NULL);
	}
next:
	nng_msg_free(msg);
	if (!atomic_load(&c->closing))
		nng_recv_aio(c->sock, c->recv_aio);
}

/*
 * Reaper thread: completes calls that are past their deadline or were
 * failed before they could be sent.
 */
static void *
reaper_main(void *arg)
{
	struct cm_rpc_client *c = arg;

	pthread_mutex_lock(&c->mtx);
	while (!c->closing) {
		struct timespec ts;
		struct call *k, *next;
		struct {
			cm_rpc_done done;
			void *arg;
			int status;
			const char *msg;
		} fire[64];
		int nfire = 0;
		int64_t now = cm_mono_ms();

		for (k = c->inflight.next; k != &c->inflight && nfire < 64;
		     k = next) {
			next = k->next;
			if (k->preset < 0 && k->deadline > now)
				continue;
			fire[nfire].done = k->done;
			fire[nfire].arg = k->arg;
			fire[nfire].status =
			    k->preset >= 0 ? k->preset : CM_DEADLINE_EXCEEDED;
			fire[nfire].msg = k->preset >= 0 ? k->preset_msg
			                                 : "deadline exceeded";
			nfire++;
			list_remove(k);
			slot_release(c, k);
		}
		if (nfire > 0) {
			pthread_mutex_unlock(&c->mtx);
			for (int i = 0; i < nfire; i++)
				complete(fire[i].done, fire[i].arg,
				         fire[i].status, fire[i].msg);
			pthread_mutex_lock(&c->mtx);
			continue;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += REAP_TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&c->cv, &c->mtx, &ts);
	}
	pthread_mutex_unlock(&c->mtx);
	return (NULL);
}

/* Fails every call in flight with status; called with the lock held. */
static void
fail_all_locked(struct cm_rpc_client *c, int status, const char *msg)
{
	for (struct call *k = c->inflight.next; k != &c->inflight; k = k->next)
		if (k->preset < 0) {
			k->preset = status;
			k->preset_msg = msg;
		}
	pthread_cond_signal(&c->cv);
}

static void
pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct cm_rpc_client *c = arg;

	(void) p;
	pthread_mutex_lock(&c->mtx);
	if (ev == NNG_PIPE_EV_ADD_POST) {
		atomic_fetch_add(&c->connected, 1);
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		if (atomic_fetch_sub(&c->connected, 1) <= 1) {
			atomic_store(&c->connected, 0);
			fail_all_locked(c, CM_UNAVAILABLE,
			                "connection to server lost");
		}
	}
	pthread_mutex_unlock(&c->mtx);
}

/* The host of a tls+tcp:// address, the name its certificate must carry
 * when the caller names none. */
static void
url_host(const char *url, char *out, size_t len)
{
	const char *h = url + strlen("tls+tcp://"), *end;
	size_t n;

	if (*h == '[') {
		h++;
		end = strchr(h, ']');
	} else {
		end = strrchr(h, ':');
	}
	n = end != NULL ? (size_t) (end - h) : strlen(h);
	if (n >= len)
		n = len - 1;
	memcpy(out, h, n);
	out[n] = '\0';
}

/* Starts one dialer, with the TLS configuration a tls+tcp:// one needs. */
static int
dial_one(struct cm_rpc_client *c, const char *url, const char *peer)
{
	nng_dialer d;
	nng_tls_config *tls = NULL;
	char host[256], err[512];
	int rv;

	if ((rv = nng_dialer_create(&d, c->sock, url)) != 0)
		return (rv);
	if (cm_rpc_url_is_tls(url)) {
		if (peer == NULL) {
			url_host(url, host, sizeof(host));
			peer = host;
		}
		if (cm_rpc_tls_config(&tls, false, peer, err, sizeof(err)) !=
		    0) {
			log_warnx("event=rpc_tls_error url=%s err=\"%s\"", url,
			          err);
			nng_dialer_close(d);
			return (NNG_EINVAL);
		}
		rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, tls);
		nng_tls_config_free(tls); /* the dialer holds it */
		if (rv != 0) {
			nng_dialer_close(d);
			return (rv);
		}
	}
	if ((rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0)
		nng_dialer_close(d);
	return (rv);
}

int
cm_rpc_client_open(cm_rpc_client **out, const char *addrs)
{
	return (cm_rpc_client_open_peer(out, addrs, NULL));
}

int
cm_rpc_client_open_peer(cm_rpc_client **out, const char *addrs,
                        const char *peer)
{
	struct cm_rpc_client *c;
	char *list, *tok, *save = NULL;
	int rv, ndial = 0;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return (NNG_ENOMEM);
	pthread_mutex_init(&c->mtx, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->inflight.next = c->inflight.prev = &c->inflight;
	for (int i = NSLOTS - 1; i >= 0; i--) {
		c->slots[i].next = c->free_list;
		c->free_list = &c->slots[i];
	}
	if ((rv = nng_req0_open_raw(&c->sock)) != 0)
		goto fail;
	nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, CM_RPC_MAX_MSG);
	nng_socket_set_int(c->sock, NNG_OPT_SENDBUF, 8192);
	nng_socket_set_int(c->sock, NNG_OPT_RECVBUF, 8192);
	nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 20);
	nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 500);
	nng_pipe_notify(c->sock, NNG_PIPE_EV_ADD_POST, pipe_cb, c);
	nng_pipe_notify(c->sock, NNG_PIPE_EV_REM_POST, pipe_cb, c);
	if ((list = strdup(addrs)) == NULL) {
		rv = NNG_ENOMEM;
		goto fail_sock;
	}
	for (tok = strtok_r(list, ", ", &save); tok != NULL;
	     tok = strtok_r(NULL, ", ", &save)) {
		if ((rv = dial_one(c, tok, peer)) != 0) {
			log_warnx("event=rpc_dial_error url=%s err=\"%s\"", tok,
			          nng_strerror(rv));
			free(list);
			goto fail_sock;
		}
		ndial++;
	}
	free(list);
	if (ndial == 0) {
		rv = NNG_EADDRINVAL;
		goto fail_sock;
	}
	if ((rv = nng_aio_alloc(&c->recv_aio, recv_cb, c)) != 0)
		goto fail_sock;
	if (pthread_create(&c->reaper, NULL, reaper_main, c) != 0) {
		rv = NNG_ENOMEM;
		nng_aio_free(c->recv_aio);
		goto fail_sock;
	}
	nng_recv_aio(c->sock, c->recv_aio);
	*out = c;
	return (0);
fail_sock:
	nng_close(c->sock);
fail:
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mtx);
	free(c);
	return (rv);
}

/*
 * Closes the client.  Calls still in flight complete with UNAVAILABLE
 * before this returns.
 */
void
cm_rpc_client_close(cm_rpc_client *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mtx);
	fail_all_locked(c, CM_UNAVAILABLE, "client closed");
	pthread_mutex_unlock(&c->mtx);
	/* Let the reaper deliver those completions, then stop it. */
	for (;;) {
		pthread_mutex_lock(&c->mtx);
		int empty = c->inflight.next == &c->inflight;
		if (empty)
			c->closing = 1;
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mtx);
		if (empty)
			break;
		nng_msleep(1);
	}
	pthread_join(c->reaper, NULL);
	/* The receive callback no longer re-arms (closing is set): stop it
	 * before the socket goes, so nothing runs on a freed aio. */
	nng_aio_stop(c->recv_aio);
	nng_close(c->sock);
	nng_aio_free(c->recv_aio);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mtx);
	free(c);
}

int
cm_rpc_client_connected(cm_rpc_client *c)
{
	return (atomic_load(&c->connected));
}

/*
 * Registers the call, then sends it.  Failures before the send (no server,
 * queue full, oversized) still go through the reaper, so that done never
 * runs on the caller's stack.
 */
void
cm_rpc_call_async(cm_rpc_client *c, const cm_rpc_meta *meta, const char *method,
                  const uint8_t *payload, size_t len, int64_t deadline_ms,
                  cm_rpc_done done, void *arg)
{
	Rpc__Request req = RPC__REQUEST__INIT;
	Rpc__Metadata md[CM_RPC_MAX_META], *mdp[CM_RPC_MAX_META];
	char rid[33];
	struct call *k;
	nng_msg *msg = NULL;
	uint32_t id, gen;
	int64_t now = cm_now_ms(), wait;
	int rv;
	const char *fail = NULL;

	if (deadline_ms <= 0)
		deadline_ms = now + DEFAULT_WAIT;
	wait = deadline_ms - now;

	pthread_mutex_lock(&c->mtx);
	if ((k = c->free_list) == NULL) {
		pthread_mutex_unlock(&c->mtx);
		/* No slot to defer through: a dedicated failure path. */
		log_warnx("event=rpc_client_full method=%s", method);
		complete(done, arg, CM_RESOURCE_EXHAUSTED,
		         "too many calls in flight");
		return;
	}
	c->free_list = k->next;
	k->in_use = 1;
	k->preset = -1;
	k->done = done;
	k->arg = arg;
	k->deadline = cm_mono_ms() + (wait > 0 ? wait : 0);
	gen = k->gen;
	id = 0x80000000u | (gen << SLOT_BITS) | (uint32_t) (k - c->slots);
	list_insert(c, k);
	if (atomic_load(&c->connected) == 0)
		fail = "no server connected";
	else if (wait <= 0)
		fail = "deadline already passed";
	pthread_mutex_unlock(&c->mtx);
	if (fail != NULL)
		goto failed;

	req.method = cm_pbstr(method);
	if (meta != NULL && meta->request_id != NULL)
		req.request_id = cm_pbstr(meta->request_id);
	else {
		cm_unique_id(rid);
		req.request_id = rid;
	}
	req.deadline_ms = deadline_ms;
	req.user_id = cm_pbstr(
	    meta != NULL && meta->user_id != NULL ? meta->user_id : "");
	if (meta != NULL) {
		size_t n = meta->nmeta < CM_RPC_MAX_META ? meta->nmeta
		                                         : CM_RPC_MAX_META;
		for (size_t i = 0; i < n; i++) {
			rpc__metadata__init(&md[i]);
			md[i].key = cm_pbstr(meta->meta[i].key);
			md[i].value = cm_pbstr(meta->meta[i].value);
			mdp[i] = &md[i];
		}
		req.n_metadata = n;
		req.metadata = mdp;
	}
	req.payload.data = (uint8_t *) (uintptr_t) payload;
	req.payload.len = len;
	if ((rv = cm_rpc_pack_msg(&req.base, &msg)) != 0) {
		fail =
		    rv == NNG_EMSGSIZE ? "request too large" : "out of memory";
		goto failed;
	}
	nng_msg_header_append_u32(msg, id);
	if ((rv = nng_sendmsg(c->sock, msg, NNG_FLAG_NONBLOCK)) != 0) {
		nng_msg_free(msg);
		fail = rv == NNG_EAGAIN ? "send queue full" : "send failed";
		goto failed;
	}
	return;
failed:
	pthread_mutex_lock(&c->mtx);
	/* The slot may have completed (connection lost) and been reused. */
	if (k->in_use && k->gen == gen && k->prev != NULL && k->preset < 0) {
		k->preset = CM_UNAVAILABLE;
		k->preset_msg = fail;
		pthread_cond_signal(&c->cv);
	}
	pthread_mutex_unlock(&c->mtx);
}

struct sync_call {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	int finished;
	int status;
	const ProtobufCMessageDescriptor *out_desc;
	ProtobufCMessage *out;
	cm_arena *arena;
	char *msg;
	size_t msglen;
};

/* Completion of a synchronous call: unpack into the caller's arena. */
static void
sync_done(void *arg, const cm_rpc_result *r)
{
	struct sync_call *s = arg;
	int status = r->status;
	ProtobufCMessage *out = NULL;

	if (status == CM_OK) {
		out = protobuf_c_message_unpack(s->out_desc, &s->arena->pb,
		                                r->len, r->payload);
		if (out == NULL)
			status = CM_INTERNAL;
	}
	if (s->msg != NULL && s->msglen > 0)
		cm_strlcpy(s->msg,
		           status == CM_INTERNAL && r->status == CM_OK
		               ? "malformed reply payload"
		               : r->message,
		           s->msglen);
	pthread_mutex_lock(&s->mtx);
	s->status = status;
	s->out = out;
	s->finished = 1;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mtx);
}

int
cm_rpc_call(cm_rpc_client *c, const cm_rpc_meta *meta, const char *method,
            const ProtobufCMessage *in,
            const ProtobufCMessageDescriptor *out_desc, ProtobufCMessage **out,
            int64_t deadline_ms, cm_arena *arena, char *msg, size_t msglen)
{
	struct sync_call s = {
	    .out_desc = out_desc, .arena = arena, .msg = msg, .msglen = msglen};
	size_t n = protobuf_c_message_get_packed_size(in);
	uint8_t stackbuf[1024], *buf = stackbuf;

	if (msg != NULL && msglen > 0)
		msg[0] = '\0';
	if (n > sizeof(stackbuf) && (buf = malloc(n)) == NULL)
		return (CM_RESOURCE_EXHAUSTED);
	protobuf_c_message_pack(in, buf);
	pthread_mutex_init(&s.mtx, NULL);
	pthread_cond_init(&s.cv, NULL);
	cm_rpc_call_async(c, meta, method, buf, n, deadline_ms, sync_done, &s);
	if (buf != stackbuf)
		free(buf);
	pthread_mutex_lock(&s.mtx);
	while (!s.finished)
		pthread_cond_wait(&s.cv, &s.mtx);
	pthread_mutex_unlock(&s.mtx);
	pthread_cond_destroy(&s.cv);
	pthread_mutex_destroy(&s.mtx);
	if (s.status == CM_OK)
		*out = s.out;
	return (s.status);
}
