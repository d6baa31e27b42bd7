/*
 * Email: SMTP through libcurl to the configured relay.
 *
 * A header is where mail is forged: a subject carrying "\r\nBcc: ..." would
 * add a recipient, one carrying "\r\n\r\n" would start the body.  So every
 * value that goes into a header (the subject, the addresses, the
 * unsubscribe URL, the id in Message-ID) is checked before anything is
 * sent, and a value with a control character in it is NT_PERMANENT: it
 * would fail the same way on every retry.  Header values are never
 * escaped into shape; they are refused or, for a subject that is not
 * plain ASCII, encoded (RFC 2047), which leaves nothing of the input
 * outside the encoded-word.
 *
 * The message is built with curl_mime: multipart/alternative with a text
 * and an HTML part when there is HTML, else multipart/mixed with the text
 * alone, each part UTF-8 in quoted-printable; line breaks of the bodies
 * become CRLF first, so quoted-printable keeps them as line breaks.  The
 * Message-ID is "<notification id@domain of the sender>": a retry of the
 * same notification carries the same one, so a receiver (or a person) can
 * tell a duplicate.  libcurl does the SMTP dot-stuffing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "nt_channels.h"
#include "outbound.h"
#include "util.h"

/* Longest body part accepted, in bytes (before CRLF conversion). */
#define EMAIL_BODY_MAX (1024 * 1024)
/* Longest notification id used in a Message-ID. */
#define EMAIL_ID_MAX 128
/* Longest unsubscribe URL (the header line stays under 998). */
#define EMAIL_UNSUB_MAX 900

typedef struct email {
	CURL *h;
	int timeout_ms;
	char url[NT_URL_MAX + 1];
	char from[NT_ADDR_MAX + 1];
	const char *domain; /* into from */
	char errbuf[CURL_ERROR_SIZE];
} email;

/* ------------------------------------------------------------- checks */

static bool
is_atext(unsigned char c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	        (c >= '0' && c <= '9') || strchr("!#$%&'*+/=?^_`{|}~-", c));
}

bool
nt_email_addr_valid(const char *addr)
{
	const char *at, *p, *label;
	size_t n;

	if (addr == NULL || (n = strlen(addr)) == 0 || n > NT_ADDR_MAX)
		return (false);
	if ((at = strrchr(addr, '@')) == NULL)
		return (false);
	/* Local part: dot-atom. */
	if (at == addr || at - addr > 64 || addr[0] == '.' || at[-1] == '.')
		return (false);
	for (p = addr; p < at; p++) {
		if (*p == '.') {
			if (p[1] == '.')
				return (false);
		} else if (*p == '\0' || !is_atext((unsigned char) *p)) {
			return (false);
		}
	}
	/* Domain: LDH labels. */
	p = at + 1;
	if (*p == '\0' || strlen(p) > 253)
		return (false);
	for (label = p;; p++) {
		if (*p == '.' || *p == '\0') {
			size_t ll = (size_t) (p - label);
			if (ll == 0 || ll > 63 || label[0] == '-' ||
			    p[-1] == '-')
				return (false);
			if (*p == '\0')
				break;
			label = p + 1;
		} else if (!((*p >= 'a' && *p <= 'z') ||
		             (*p >= 'A' && *p <= 'Z') ||
		             (*p >= '0' && *p <= '9') || *p == '-')) {
			return (false);
		}
	}
	return (true);
}

/*
 * Length of the UTF-8 sequence at s (1-4), or 0 when it is not a valid
 * one (overlong forms, surrogates and values over U+10FFFF are invalid);
 * *cp gets the code point.
 */
static size_t
utf8_seq(const unsigned char *s, uint32_t *cp)
{
	uint32_t c = s[0], min;
	size_t n;

	if (c < 0x80) {
		*cp = c;
		return (1);
	}
	if ((c & 0xe0) == 0xc0) {
		n = 2, c &= 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3, c &= 0x0f, min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		n = 4, c &= 0x07, min = 0x10000;
	} else {
		return (0);
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return (0);
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return (0);
	*cp = c;
	return (n);
}

bool
nt_header_value_ok(const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *) s;
	uint32_t cp;
	size_t n;

	if (s == NULL || strlen(s) > max)
		return (false);
	while (*p != '\0') {
		if ((n = utf8_seq(p, &cp)) == 0)
			return (false);
		if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))
			return (false);
		p += n;
	}
	return (true);
}

/* Notification ids become the local part of the Message-ID. */
static bool
id_valid(const char *id)
{
	size_t n;

	if (id == NULL || (n = strlen(id)) == 0 || n > EMAIL_ID_MAX ||
	    id[0] == '.' || id[n - 1] == '.' || strstr(id, "..") != NULL)
		return (false);
	for (const char *p = id; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' ||
		      *p == '_'))
			return (false);
	return (true);
}

/* ----------------------------------------------------------- encoding */

/* A growing string; on failure it frees itself and stays NULL. */
typedef struct sbuf {
	char *s;
	size_t len, cap;
} sbuf;

static void
sb_add(sbuf *b, const char *s, size_t n)
{
	if (b->s == NULL && b->cap != 0)
		return; /* failed before */
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 128;
		char *t;
		while (cap < b->len + n + 1)
			cap *= 2;
		if ((t = realloc(b->s, cap)) == NULL) {
			free(b->s);
			b->s = NULL;
			b->cap = 1;
			return;
		}
		b->s = t;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
sb_str(sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/*
 * Bytes of raw UTF-8 per encoded-word: 42 bytes are 56 base64 characters,
 * a word of 68 ("=?UTF-8?B?" + 56 + "?="), so "Subject: " + word is 77.
 */
#define WORD_RAW  42
#define LINE_MAX_ 78

static char *
subject_plain(const char *s)
{
	size_t col = strlen("Subject: "), n = strlen(s), i = 0;
	sbuf b = {0};

	sb_add(&b, "", 0);
	/* Greedy: a word goes on the line when it fits, else on a new one
	 * (the space before it is the continuation's leading WSP; a line of
	 * spaces alone is never made). */
	while (i < n) {
		size_t j = i + (s[i] == ' ' ? 1 : 0);
		while (j < n && s[j] != ' ')
			j++;
		if (i > 0 && s[i] == ' ' && j - i > 1 &&
		    col + (j - i) > LINE_MAX_) {
			sb_str(&b, "\r\n");
			col = 0;
		}
		sb_add(&b, s + i, j - i);
		col += j - i;
		i = j;
	}
	return (b.s);
}

static char *
subject_words(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;
	unsigned char enc[4 * ((WORD_RAW + 2) / 3) + 1];
	sbuf b = {0};
	uint32_t cp;
	size_t n;

	sb_add(&b, "", 0);
	while (*p != '\0') {
		size_t take = 0;
		while (p[take] != '\0' && (n = utf8_seq(p + take, &cp)) != 0 &&
		       take + n <= WORD_RAW)
			take += n;
		if (take == 0) { /* not valid UTF-8: the caller checks */
			free(b.s);
			return (NULL);
		}
		EVP_EncodeBlock(enc, p, (int) take);
		if (b.len > 0)
			sb_str(&b, "\r\n ");
		sb_str(&b, "=?UTF-8?B?");
		sb_str(&b, (const char *) enc);
		sb_str(&b, "?=");
		p += take;
	}
	return (b.s);
}

char *
nt_subject_encode(const char *s)
{
	bool plain = strstr(s, "=?") == NULL;

	for (const unsigned char *p = (const unsigned char *) s;
	     plain && *p != '\0'; p++)
		if (*p < 0x20 || *p > 0x7e)
			plain = false;
	return (plain ? subject_plain(s) : subject_words(s));
}

/*
 * s with every line break (LF, CR or CRLF) as CRLF, malloc'd; NULL when
 * out of memory.
 */
static char *
crlf_lines(const char *s)
{
	sbuf b = {0};

	sb_add(&b, "", 0);
	for (const char *p = s; *p != '\0';) {
		size_t k = strcspn(p, "\r\n");
		sb_add(&b, p, k);
		p += k;
		if (*p == '\r' && p[1] == '\n')
			p += 2;
		else if (*p != '\0')
			p++;
		else
			break;
		sb_str(&b, "\r\n");
	}
	return (b.s);
}

/* RFC 5322 date in UTC, without the locale's names. */
static void
date_header(char *buf, size_t len)
{
	static const char *const wd[7] = {"Sun", "Mon", "Tue", "Wed",
	                                  "Thu", "Fri", "Sat"};
	static const char *const mo[12] = {"Jan", "Feb", "Mar", "Apr",
	                                   "May", "Jun", "Jul", "Aug",
	                                   "Sep", "Oct", "Nov", "Dec"};
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	snprintf(buf, len, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000",
	         wd[tm.tm_wday], tm.tm_mday, mo[tm.tm_mon], tm.tm_year + 1900,
	         tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* --------------------------------------------------------------- send */

static bool
slist_add(struct curl_slist **l, const char *s)
{
	struct curl_slist *t = curl_slist_append(*l, s);

	if (t == NULL)
		return (false);
	*l = t;
	return (true);
}

static bool
add_part(curl_mime *mime, const char *data, const char *type)
{
	curl_mimepart *part = curl_mime_addpart(mime);

	return (part != NULL &&
	        curl_mime_data(part, data, CURL_ZERO_TERMINATED) == CURLE_OK &&
	        curl_mime_type(part, type) == CURLE_OK &&
	        curl_mime_encoder(part, "quoted-printable") == CURLE_OK);
}

/* Refuses what must not be sent: every check before any byte goes out. */
static bool
email_check(const nt_message *m, const char *to, nt_result *r)
{
	const char *u = m->unsubscribe_url;

	if (!nt_email_addr_valid(to)) {
		nt_result_set(r, NT_PERMANENT, 0,
		              "refused: not a valid email address");
		return (false);
	}
	if (!id_valid(m->id)) {
		nt_result_set(
		    r, NT_PERMANENT, 0,
		    "refused: notification id unfit for a Message-ID");
		return (false);
	}
	if (m->title == NULL || !nt_header_value_ok(m->title, NT_SUBJECT_MAX)) {
		nt_result_set(r, NT_PERMANENT, 0,
		              "refused: the subject has a control character "
		              "(CR/LF), is not UTF-8 or is over %d bytes",
		              NT_SUBJECT_MAX);
		return (false);
	}
	if (u != NULL && (!nt_url_is_http(u) || strlen(u) > EMAIL_UNSUB_MAX ||
	                  strpbrk(u, "<>") != NULL)) {
		nt_result_set(r, NT_PERMANENT, 0,
		              "refused: unsubscribe URL unfit for a header");
		return (false);
	}
	if ((m->body != NULL && strlen(m->body) > EMAIL_BODY_MAX) ||
	    (m->html != NULL && strlen(m->html) > EMAIL_BODY_MAX)) {
		nt_result_set(r, NT_PERMANENT, 0,
		              "refused: a body is over %d bytes",
		              EMAIL_BODY_MAX);
		return (false);
	}
	return (true);
}

static void
email_send(void *impl, const nt_message *m, const char *to, nt_result *r)
{
	email *e = impl;
	struct curl_slist *hdrs = NULL, *rcpt = NULL;
	curl_mime *mime = NULL;
	char *subject = NULL, *text = NULL, *html = NULL, *line = NULL;
	char buf[1100];
	long code = 0;
	CURLcode rc;
	bool ok;

	memset(r, 0, sizeof(*r));
	if (!email_check(m, to, r))
		return;
	subject = nt_subject_encode(m->title);
	text = crlf_lines(m->body != NULL ? m->body : "");
	html = m->html != NULL ? crlf_lines(m->html) : NULL;
	if (subject == NULL || text == NULL || (m->html != NULL && !html))
		goto oom;

	date_header(buf, sizeof(buf));
	ok = slist_add(&hdrs, buf);
	snprintf(buf, sizeof(buf), "From: %s", e->from);
	ok = ok && slist_add(&hdrs, buf);
	snprintf(buf, sizeof(buf), "To: %s", to);
	ok = ok && slist_add(&hdrs, buf);
	if (asprintf(&line, "Subject: %s", subject) < 0) {
		line = NULL;
		goto oom;
	}
	ok = ok && slist_add(&hdrs, line);
	snprintf(buf, sizeof(buf), "Message-ID: <%s@%s>", m->id, e->domain);
	ok = ok && slist_add(&hdrs, buf);
	if (m->unsubscribe_url != NULL) {
		snprintf(buf, sizeof(buf), "List-Unsubscribe: <%s>",
		         m->unsubscribe_url);
		ok = ok && slist_add(&hdrs, buf) &&
		     slist_add(&hdrs, "List-Unsubscribe-Post: "
		                      "List-Unsubscribe=One-Click");
	}
	ok = ok && slist_add(&hdrs, "Auto-Submitted: auto-generated");
	/* libcurl writes the root's Content-Type itself (with the boundary)
	 * and takes the type from here, not this line. */
	if (html != NULL)
		ok = ok &&
		     slist_add(&hdrs, "Content-Type: multipart/alternative");
	snprintf(buf, sizeof(buf), "<%s>", to);
	ok = ok && slist_add(&rcpt, buf);
	if (!ok)
		goto oom;

	curl_easy_reset(e->h);
	if ((mime = curl_mime_init(e->h)) == NULL ||
	    !add_part(mime, text, "text/plain; charset=UTF-8") ||
	    (html != NULL && !add_part(mime, html, "text/html; charset=UTF-8")))
		goto oom;

	e->errbuf[0] = '\0';
	snprintf(buf, sizeof(buf), "<%s>", e->from);
	curl_easy_setopt(e->h, CURLOPT_URL, e->url);
	curl_easy_setopt(e->h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(e->h, CURLOPT_USE_SSL, (long) CURLUSESSL_TRY);
	curl_easy_setopt(e->h, CURLOPT_PROXY, "");
	curl_easy_setopt(e->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e->h, CURLOPT_TIMEOUT_MS, (long) e->timeout_ms);
	curl_easy_setopt(e->h, CURLOPT_CONNECTTIMEOUT_MS, (long) e->timeout_ms);
	curl_easy_setopt(e->h, CURLOPT_MAIL_FROM, buf);
	curl_easy_setopt(e->h, CURLOPT_MAIL_RCPT, rcpt);
	curl_easy_setopt(e->h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(e->h, CURLOPT_MIMEPOST, mime);
	curl_easy_setopt(e->h, CURLOPT_ERRORBUFFER, e->errbuf);
	rc = curl_easy_perform(e->h);
	curl_easy_getinfo(e->h, CURLINFO_RESPONSE_CODE, &code);
	/* Nothing of this request stays referenced by the handle. */
	curl_easy_setopt(e->h, CURLOPT_MAIL_RCPT, NULL);
	curl_easy_setopt(e->h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(e->h, CURLOPT_MIMEPOST, NULL);

	if (rc == CURLE_OK)
		r->outcome = NT_SENT, r->status = code ? (int) code : 250;
	else if (code >= 500 && code <= 599)
		nt_result_set(r, NT_PERMANENT, (int) code, "SMTP %ld: %s", code,
		              e->errbuf[0] ? e->errbuf
		                           : curl_easy_strerror(rc));
	else if (code >= 400 && code <= 499)
		nt_result_set(r, NT_RETRY, (int) code, "SMTP %ld: %s", code,
		              e->errbuf[0] ? e->errbuf
		                           : curl_easy_strerror(rc));
	else
		nt_result_set(r, NT_RETRY, (int) code, "smtp: %s",
		              e->errbuf[0] ? e->errbuf
		                           : curl_easy_strerror(rc));
	goto out;
oom:
	nt_result_set(r, NT_RETRY, 0, "out of memory");
out:
	curl_mime_free(mime);
	curl_slist_free_all(hdrs);
	curl_slist_free_all(rcpt);
	free(line);
	free(subject);
	free(text);
	free(html);
}

static void
email_free(void *impl)
{
	email *e = impl;

	if (e == NULL)
		return;
	curl_easy_cleanup(e->h);
	free(e);
}

/* The delivery log names the provider, so primary and secondary differ. */
static const nt_provider_ops email_ops[2] = {
    {.name = "smtp",
     .channel = NT_CH_EMAIL,
     .send = email_send,
     .free = email_free},
    {.name = "smtp-2",
     .channel = NT_CH_EMAIL,
     .send = email_send,
     .free = email_free},
};

int
nt_email_new(const nt_outbound_cfg *cfg, bool secondary, const char *url,
             const char *from, nt_provider *p, char *err, size_t errlen)
{
	const char *name =
	    secondary ? "NOTIFIER_SMTP_URL_2" : "NOTIFIER_SMTP_URL";
	email *e;

	if (url == NULL || strlen(url) > NT_URL_MAX ||
	    (strncasecmp(url, "smtp://", 7) != 0 &&
	     strncasecmp(url, "smtps://", 8) != 0)) {
		snprintf(err, errlen,
		         "%s: the relay URL must be smtp:// or "
		         "smtps://",
		         name);
		return (-1);
	}
	for (const char *c = url; *c != '\0'; c++)
		if ((unsigned char) *c <= 0x20 || *c == 0x7f) {
			snprintf(err, errlen,
			         "%s: space or control character in the relay "
			         "URL",
			         name);
			return (-1);
		}
	if (!nt_email_addr_valid(from)) {
		snprintf(err, errlen,
		         "NOTIFIER_SMTP_FROM: not an address (want a bare "
		         "addr-spec such as notifier@example.org)");
		return (-1);
	}
	if (nt_curl_global() != 0) {
		snprintf(err, errlen, "libcurl failed to initialise");
		return (-1);
	}
	if ((e = calloc(1, sizeof(*e))) == NULL ||
	    (e->h = curl_easy_init()) == NULL) {
		free(e);
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	e->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000;
	cm_strlcpy(e->url, url, sizeof(e->url));
	cm_strlcpy(e->from, from, sizeof(e->from));
	e->domain = strrchr(e->from, '@') + 1;
	p->ops = &email_ops[secondary ? 1 : 0];
	p->impl = e;
	return (0);
}
