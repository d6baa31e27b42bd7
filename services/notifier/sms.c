/*
 * SMS: an HTTP POST in the common form-encoded style (to=+E164&body=...&
 * id=..., as Twilio-like gateways take it) to the configured provider URL,
 * with "Authorization: Bearer <NOTIFIER_SMS_TOKEN>" when a token is set
 * and the same Idempotency-Key as push.  The provider is configured, not
 * user-registered, so its address is trusted; the phone number is the
 * user's and is checked (E.164) before anything is sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "nt_channels.h"
#include "outbound.h"
#include "util.h"

/* Longest SMS text accepted, in bytes (10 concatenated segments). */
#define SMS_BODY_MAX  1600
#define SMS_ID_MAX    128
#define SMS_TOKEN_MAX 512

typedef struct sms {
	nt_outbound *out;
	char url[NT_URL_MAX + 1];
	char auth[32 + SMS_TOKEN_MAX]; /* "" without a token */
} sms;

bool
nt_phone_valid(const char *phone)
{
	size_t n = 0;

	if (phone == NULL || phone[0] != '+' || phone[1] < '1' ||
	    phone[1] > '9')
		return (false);
	for (const char *p = phone + 1; *p != '\0'; p++, n++)
		if (*p < '0' || *p > '9' || n >= 15)
			return (false);
	return (n >= 8);
}

static bool
visible_ascii(const char *s, size_t max)
{
	size_t n = 0;

	if (s == NULL || *s == '\0')
		return (false);
	for (const char *p = s; *p != '\0'; p++, n++)
		if (*p <= 0x20 || *p >= 0x7f || n >= max)
			return (false);
	return (true);
}

/* "name=escaped(value)" appended to buf at *len; false when it is full. */
static bool
form_add(char *buf, size_t cap, size_t *len, const char *name,
         const char *value)
{
	/* libcurl ignores the handle argument since 7.82. */
	char *v = curl_easy_escape(NULL, value, 0);
	int n;

	if (v == NULL)
		return (false);
	n = snprintf(buf + *len, cap - *len, "%s%s=%s", *len ? "&" : "", name,
	             v);
	curl_free(v);
	if (n < 0 || (size_t) n >= cap - *len)
		return (false);
	*len += (size_t) n;
	return (true);
}

static void
sms_send(void *impl, const nt_message *m, const char *phone, nt_result *r)
{
	sms *s = impl;
	/* Each escaped byte takes at most 3. */
	char form[3 * (SMS_BODY_MAX + SMS_ID_MAX + 16) + 32];
	char key[32 + SMS_ID_MAX];
	const char *headers[4];
	const char *text = m->body != NULL ? m->body : "";
	size_t len = 0, nh = 0;

	memset(r, 0, sizeof(*r));
	if (!nt_phone_valid(phone)) {
		nt_result_set(r, NT_PERMANENT, 0,
		              "refused: not an E.164 phone number");
		return;
	}
	if (!visible_ascii(m->id, SMS_ID_MAX)) {
		nt_result_set(r, NT_PERMANENT, 0,
		              "refused: notification id unfit for a header");
		return;
	}
	if (strlen(text) > SMS_BODY_MAX) {
		nt_result_set(r, NT_PERMANENT, 0,
		              "refused: the SMS text is over %d bytes",
		              SMS_BODY_MAX);
		return;
	}
	if (!form_add(form, sizeof(form), &len, "to", phone) ||
	    !form_add(form, sizeof(form), &len, "body", text) ||
	    !form_add(form, sizeof(form), &len, "id", m->id)) {
		nt_result_set(r, NT_RETRY, 0, "out of memory");
		return;
	}
	snprintf(key, sizeof(key), "Idempotency-Key: %s", m->id);
	headers[nh++] = "Content-Type: application/x-www-form-urlencoded";
	headers[nh++] = key;
	if (s->auth[0] != '\0')
		headers[nh++] = s->auth;
	headers[nh] = NULL;
	nt_outbound_post(s->out, s->url, headers, form, len, false, r);
}

static void
sms_free(void *impl)
{
	sms *s = impl;

	if (s == NULL)
		return;
	nt_outbound_free(s->out);
	free(s);
}

static const nt_provider_ops sms_ops[2] = {
    {.name = "sms-http",
     .channel = NT_CH_SMS,
     .send = sms_send,
     .free = sms_free},
    {.name = "sms-http-2",
     .channel = NT_CH_SMS,
     .send = sms_send,
     .free = sms_free},
};

int
nt_sms_new(const nt_outbound_cfg *cfg, bool secondary, const char *url,
           const char *token, nt_provider *p, char *err, size_t errlen)
{
	const char *var = secondary ? "NOTIFIER_SMS_URL_2" : "NOTIFIER_SMS_URL";
	sms *s;

	if (!nt_url_is_http(url)) {
		snprintf(err, errlen,
		         "%s: want an http:// or https:// URL without spaces",
		         var);
		return (-1);
	}
	if (token != NULL && !visible_ascii(token, SMS_TOKEN_MAX)) {
		snprintf(err, errlen,
		         "NOTIFIER_SMS_TOKEN: want 1-%d visible ASCII bytes",
		         SMS_TOKEN_MAX);
		return (-1);
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	if (nt_outbound_new(cfg, true, &s->out, err, errlen) != 0) {
		free(s);
		return (-1);
	}
	cm_strlcpy(s->url, url, sizeof(s->url));
	if (token != NULL)
		snprintf(s->auth, sizeof(s->auth), "Authorization: Bearer %s",
		         token);
	p->ops = &sms_ops[secondary ? 1 : 0];
	p->impl = s;
	return (0);
}
