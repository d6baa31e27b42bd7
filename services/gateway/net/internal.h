/*
 * What the files of net/ share among themselves and nobody else sees.
 */
#ifndef GW_NET_INTERNAL_H
#define GW_NET_INTERNAL_H

#include "gwnet.h"

extern const struct gw_app *gw_app;

/* conn.c */
void gw_conn_accept(struct gw_loop *l);
void gw_conn_tick(struct gw_conn *c, int64_t now);
/* The gateway drains: the protocol finishes, then ends the connection. */
void gw_conn_drain(struct gw_conn *c);
void gw_conn_free(struct gw_conn *c);
/* Frees output buffers a large response made big, if they are empty. */
void gw_conn_trim(struct gw_conn *c);
/* Drops a gw_req_hold reference; frees a closed connection at zero. */
void gw_conn_unref(struct gw_conn *c);

/* http1.c: the protocol every connection starts with. */
extern const struct gw_proto gw_http1_proto;
void gw_http1_init(void);
/* Its state for a new connection (freed by the protocol's close). */
void *gw_http1_new(struct gw_conn *c);

#endif
