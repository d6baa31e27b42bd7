/*
 * The notifier's delivery channels: the contract between the engine (queues,
 * state, retries, preferences: engine side) and the transports (push, email,
 * SMS over real protocols: channel side).  The engine never speaks a
 * protocol; a channel never touches PostgreSQL or Redis.
 *
 * A provider is one way to deliver on a channel (a configured SMTP relay,
 * an SMS gateway URL, the push sender).  Each channel has a primary and
 * optionally a secondary provider (failover is the engine's: after 5
 * consecutive failures of the primary it uses the secondary for 30 s, then
 * probes the primary again).  Inapp is the engine's own (the inbox) and has
 * no provider.
 *
 * Calls are blocking and bounded: send() returns within timeout_ms (libcurl
 * CURLOPT_TIMEOUT_MS); it is called from the engine's worker threads, each
 * with its own provider state (make() is called once per worker).
 */
#ifndef NT_CHANNEL_H
#define NT_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum nt_channel {
	NT_CH_PUSH = 0,
	NT_CH_EMAIL = 1,
	NT_CH_SMS = 2,
	NT_CH_INAPP = 3,
	NT_CH_COUNT
} nt_channel;

/* "push", "email", "sms", "inapp"; NULL for another value. */
const char *nt_channel_name(nt_channel c);
/* The channel of a name, or -1. */
int nt_channel_parse(const char *name);

/* What one attempt came to. */
typedef enum nt_outcome {
	NT_SENT,      /* accepted by the receiver (2xx, SMTP 250) */
	NT_RETRY,     /* transient: network, timeout, 5xx, 408, 429 */
	NT_PERMANENT, /* never retried: other 4xx, SMTP 5xx, bad target */
	NT_GONE,      /* push endpoint answered 404 or 410: remove it */
	NT_REFUSED,   /* the target address is not allowed (SSRF guard) */
} nt_outcome;

typedef struct nt_result {
	nt_outcome outcome;
	int status;             /* HTTP status or SMTP code; 0 if none */
	int64_t retry_after_ms; /* from Retry-After on 429/503; 0 if none */
	char error[256];        /* for the delivery log; "" on success */
} nt_result;

/*
 * One message as a channel sends it, already rendered by the engine
 * (templates, see template.h).  Strings are UTF-8 and NUL-terminated.
 */
typedef struct nt_message {
	const char *id;   /* notification id: Idempotency-Key, Message-ID */
	const char *user; /* recipient user id */
	const char *type; /* e.g. "video.ready" */
	const char *title;
	const char *body;            /* plain text */
	const char *html;            /* email only; NULL: text only */
	const char *data_json;       /* a JSON object, "{}" if none */
	const char *unsubscribe_url; /* email: List-Unsubscribe; may be NULL */
} nt_message;

/*
 * A provider.  target is the device endpoint URL (push), the email address
 * (email) or the phone number in E.164 (sms).
 */
typedef struct nt_provider_ops {
	const char *name; /* "push", "smtp", "sms-http", ... (delivery log) */
	nt_channel channel;
	void (*send)(void *impl, const nt_message *m, const char *target,
	             nt_result *r);
	void (*free)(void *impl);
} nt_provider_ops;

typedef struct nt_provider {
	const nt_provider_ops *ops;
	void *impl;
} nt_provider;

/*
 * Where user-registered URLs (push endpoints) may lead.  Outbound requests
 * to them are checked on the address libcurl actually connects to
 * (CURLOPT_OPENSOCKETFUNCTION): no loopback, link-local, private,
 * unspecified, multicast, or IPv4-mapped forms of those; http and https
 * only; no redirects; no proxy from the environment.  allow lists
 * "ip:port" pairs exempt from that (the tests' receivers; config
 * NOTIFIER_OUTBOUND_ALLOW, comma-separated).  Configured providers
 * (SMTP relay, SMS URL) are trusted and not checked.
 */
typedef struct nt_outbound_cfg {
	const char *allow; /* may be NULL */
	int timeout_ms;    /* per attempt */
} nt_outbound_cfg;

/*
 * Why a push endpoint URL whose host is an IP address literal (as libcurl
 * reads it: also "2130706433", "0x7f.1", "[::ffff:127.0.0.1]") would be
 * refused by the send-time check, or NULL when it would not be or when
 * the host is a name (a name is judged only at send time, on the address
 * it resolves to then: a look-up now would prove nothing about later).
 * allow is NOTIFIER_OUTBOUND_ALLOW's list (may be NULL); its ip:port
 * entries are exempt, the port being the URL's or its scheme's default.
 * A courtesy at registration; the send-time check decides.
 */
const char *nt_endpoint_refusal(const char *url, const char *allow);

/*
 * The providers of the configuration (environment, read once):
 *   NOTIFIER_SMTP_URL           smtp://host:port of the relay (email)
 *   NOTIFIER_SMTP_URL_2         the secondary relay (optional)
 *   NOTIFIER_SMTP_FROM          the sender address
 *   NOTIFIER_SMS_URL            the SMS provider's POST URL
 *   NOTIFIER_SMS_URL_2          the secondary (optional)
 *   NOTIFIER_SMS_TOKEN          bearer token for the SMS provider (a secret)
 *   NOTIFIER_OUTBOUND_ALLOW     see nt_outbound_cfg
 *   NOTIFIER_SEND_TIMEOUT_MS    per attempt (default 5000)
 * nt_providers_make fills primary[c] / secondary[c] for every channel that
 * is configured (push is always there), ops NULL otherwise.  0, or -1 with
 * the reason in err (a bad URL, say).
 */
int nt_providers_make(nt_provider primary[NT_CH_COUNT],
                      nt_provider secondary[NT_CH_COUNT], char *err,
                      size_t errlen);
void nt_providers_free(nt_provider primary[NT_CH_COUNT],
                       nt_provider secondary[NT_CH_COUNT]);

#endif
