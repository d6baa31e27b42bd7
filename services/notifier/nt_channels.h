/*
 * The channel side's own seams: the providers channels.c wires from the
 * configuration, and the pure checks and encoders they use (so the unit
 * tests reach them without a network).  Not for the engine: it sees only
 * channel.h and template.h.
 */
#ifndef NT_CHANNELS_H
#define NT_CHANNELS_H

#include <stdbool.h>
#include <stddef.h>

#include "channel.h"

/*
 * Provider constructors.  Each fills *p (ops and impl) and returns 0, or -1
 * with the reason in err.  secondary picks the provider's name in the
 * delivery log ("smtp" or "smtp-2", "sms-http" or "sms-http-2"); the
 * strings are copied.
 */
int nt_push_new(const nt_outbound_cfg *cfg, nt_provider *p, char *err,
                size_t errlen);
/* url: smtp:// or smtps:// of the relay (trusted); from: an addr-spec. */
int nt_email_new(const nt_outbound_cfg *cfg, bool secondary, const char *url,
                 const char *from, nt_provider *p, char *err, size_t errlen);
/* url: http(s):// of the provider (trusted); token may be NULL. */
int nt_sms_new(const nt_outbound_cfg *cfg, bool secondary, const char *url,
               const char *token, nt_provider *p, char *err, size_t errlen);

/* Longest email address (RFC 5321: 64 + 1 + 255, path limit 256). */
#define NT_ADDR_MAX 254
/* Longest subject accepted, in bytes of UTF-8. */
#define NT_SUBJECT_MAX 900

/*
 * A sane addr-spec: local@domain, the local part a dot-atom of atext
 * (1-64 bytes; no quoted strings), the domain dot-separated labels of
 * letters, digits and inner hyphens (each 1-63, all at most 253), at most
 * NT_ADDR_MAX bytes.  Nothing else: no spaces, control characters,
 * display names, comments, brackets or non-ASCII.
 */
bool nt_email_addr_valid(const char *addr);

/*
 * Whether s can go into a header value: valid UTF-8 with no control
 * character (C0 incl. CR, LF and TAB, DEL, C1), at most max bytes.
 */
bool nt_header_value_ok(const char *s, size_t max);

/*
 * The Subject header line's value for s (already checked with
 * nt_header_value_ok): printable ASCII stays as it is (unless it holds
 * "=?", which a reader would take for an encoded-word), folded at spaces
 * so that lines stay within 78 characters where a space allows; anything
 * else becomes RFC 2047 encoded-words (=?UTF-8?B?...?=) of whole UTF-8
 * characters, each line "Subject: " + word or " " + word within 78
 * characters, joined by CRLF SP.  Returns a malloc'd string (the
 * caller's), or NULL when out of memory.
 */
char *nt_subject_encode(const char *s);

/* E.164: "+" then 8 to 15 digits, the first not 0. */
bool nt_phone_valid(const char *phone);

#endif
