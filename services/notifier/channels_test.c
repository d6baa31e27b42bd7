/*
 * Unit tests of the notifier's channel side without a network: templates,
 * the email header rules (RFC 2047 subjects, CR/LF refusal, addresses),
 * phone numbers, the outbound guard's address classification and allow
 * list, Retry-After, the outcome table, channel names and the providers
 * of the configuration.  What needs a server is in
 * tests/integration/test_notifier_channels.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "channel.h"
#include "nt_channels.h"
#include "outbound.h"
#include "template.h"

/* ------------------------------------------------------------ helpers */

static char tdir[64];

static void
write_file(const char *name, const char *content, size_t len)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tdir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(content, 1, len, f), len);
	fclose(f);
}

static void
write_str(const char *name, const char *content)
{
	write_file(name, content, strlen(content));
}

static int
setup_dir(void **state)
{
	(void) state;
	snprintf(tdir, sizeof(tdir), "/tmp/nt-tpl-XXXXXX");
	return (mkdtemp(tdir) == NULL ? -1 : 0);
}

static int
teardown_dir(void **state)
{
	char cmd[128];

	(void) state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tdir);
	return (system(cmd) == 0 ? 0 : -1);
}

static int
render(const char *type, const char *channel, const nt_vars *v,
       nt_rendered *out, char *err)
{
	memset(out, 0, sizeof(*out));
	err[0] = '\0';
	return (nt_template_render(tdir, type, channel, v, out, err, 256));
}

/* ---------------------------------------------------------- templates */

static void
test_template_render_escape(void **state)
{
	const char *names[] = {"user", "title"};
	const char *values[] = {"Ann & <Bob>", "\"quoted\" 'single'"};
	nt_vars v = {2, names, values};
	nt_rendered r;
	char err[256];

	(void) state;
	write_str("t.escape.email.subject", "Hi {{user}}: {{title}}\n");
	write_str("t.escape.email.txt", "Dear {{user}},\n{{title}}\n");
	write_str("t.escape.email.html", "<p>{{user}}</p><b>{{title}}</b>");
	assert_int_equal(render("t.escape", "email", &v, &r, err), 1);
	/* Subject and text as they are; the subject loses its line break. */
	assert_string_equal(r.subject, "Hi Ann & <Bob>: \"quoted\" 'single'");
	assert_string_equal(r.text, "Dear Ann & <Bob>,\n\"quoted\" 'single'\n");
	assert_string_equal(r.html,
	                    "<p>Ann &amp; &lt;Bob&gt;</p>"
	                    "<b>&quot;quoted&quot; &#39;single&#39;</b>");
	nt_rendered_free(&r);
	assert_null(r.subject);
}

static void
test_template_missing_var(void **state)
{
	const char *names[] = {"user"};
	const char *values[] = {"ann"};
	nt_vars v = {1, names, values};
	nt_rendered r;
	char err[256];

	(void) state;
	write_str("t.missing.push.subject", "Hello {{user}}");
	write_str("t.missing.push.txt", "line one\nyour {{video_title}} is "
	                                "ready\n");
	assert_int_equal(render("t.missing", "push", &v, &r, err), -1);
	assert_non_null(strstr(err, "video_title"));
	assert_non_null(strstr(err, ":2")); /* the line */
	assert_null(r.subject);
	assert_null(r.text);
	/* No variables at all. */
	assert_int_equal(render("t.missing", "push", NULL, &r, err), -1);
	assert_non_null(strstr(err, "user"));
}

static void
test_template_none(void **state)
{
	nt_rendered r;
	char err[256];

	(void) state;
	assert_int_equal(render("no.such.type", "push", NULL, &r, err), 0);
	assert_null(r.subject);
	assert_null(r.text);
	assert_null(r.html);
	/* A template for another channel is not this channel's. */
	write_str("t.other.email.txt", "x");
	assert_int_equal(render("t.other", "sms", NULL, &r, err), 0);
	/* Only some parts: the others stay NULL. */
	assert_int_equal(render("t.other", "email", NULL, &r, err), 1);
	assert_null(r.subject);
	assert_string_equal(r.text, "x");
	assert_null(r.html);
	nt_rendered_free(&r);
}

static void
test_template_bad_type(void **state)
{
	static const char *const bad[] = {
	    "../etc/passwd", "..",   "a/b", "/abs", "Video.ready", "",
	    ".hidden",       "a..b", "a b", "a\n",  "-x",          "é",
	};
	char long_type[80];
	nt_rendered r;
	char err[256];

	(void) state;
	/* A file a traversal would reach, to be sure it is not read. */
	write_str("passwd.push.txt", "secret");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(render(bad[i], "push", NULL, &r, err), -1);
		assert_non_null(strstr(err, "type"));
	}
	assert_int_equal(render(NULL, "push", NULL, &r, err), -1);
	memset(long_type, 'a', 65);
	long_type[65] = '\0';
	assert_int_equal(render(long_type, "push", NULL, &r, err), -1);
	long_type[64] = '\0';
	assert_int_equal(render(long_type, "push", NULL, &r, err), 0);
	/* The channel is checked too. */
	assert_int_equal(render("video.ready", "../x", NULL, &r, err), -1);
	assert_int_equal(render("video.ready", "fax", NULL, &r, err), -1);
	/* Good types with every allowed character. */
	assert_int_equal(render("feed.like_2-x", "inapp", NULL, &r, err), 0);
}

static void
test_template_spaces_in_braces(void **state)
{
	const char *names[] = {"a", "b.c", "d_e-f"};
	const char *values[] = {"1", "2", "3"};
	nt_vars v = {3, names, values};
	nt_rendered r;
	char err[256];

	(void) state;
	write_str("t.spaces.sms.txt", "{{a}}|{{ a }}|{{\tb.c  }}|{{d_e-f }}|"
	                              "{ {a} }|{a}|}}");
	assert_int_equal(render("t.spaces", "sms", &v, &r, err), 1);
	assert_string_equal(r.text, "1|1|2|3|{ {a} }|{a}|}}");
	nt_rendered_free(&r);
	/* Not placeholders: errors, never silently empty. */
	write_str("t.bad1.sms.txt", "x {{ }} y");
	assert_int_equal(render("t.bad1", "sms", &v, &r, err), -1);
	write_str("t.bad2.sms.txt", "x {{a b}} y");
	assert_int_equal(render("t.bad2", "sms", &v, &r, err), -1);
	write_str("t.bad3.sms.txt", "x {{a");
	assert_int_equal(render("t.bad3", "sms", &v, &r, err), -1);
	assert_non_null(strstr(err, "without"));
}

static void
test_template_literal_braces_in_values(void **state)
{
	const char *names[] = {"x", "y"};
	const char *values[] = {"{{y}}", "SECRET"};
	nt_vars v = {2, names, values};
	nt_rendered r;
	char err[256];

	(void) state;
	write_str("t.literal.email.txt", "[{{x}}]");
	write_str("t.literal.email.html", "[{{x}}]");
	assert_int_equal(render("t.literal", "email", &v, &r, err), 1);
	/* Inserted as it is: no second pass expands it. */
	assert_string_equal(r.text, "[{{y}}]");
	assert_string_equal(r.html, "[{{y}}]");
	nt_rendered_free(&r);
}

static void
test_template_file_bounds(void **state)
{
	char *big = malloc(64 * 1024 + 1);
	nt_rendered r;
	char err[256];
	char path[256];

	(void) state;
	assert_non_null(big);
	memset(big, 'a', 64 * 1024 + 1);
	write_file("t.big.push.txt", big, 64 * 1024 + 1);
	assert_int_equal(render("t.big", "push", NULL, &r, err), -1);
	assert_non_null(strstr(err, "over"));
	write_file("t.fits.push.txt", big, 64 * 1024);
	assert_int_equal(render("t.fits", "push", NULL, &r, err), 1);
	assert_int_equal(strlen(r.text), 64 * 1024);
	nt_rendered_free(&r);
	free(big);
	/* A NUL byte, a directory and a FIFO are bad files (the FIFO must
	 * not hang the render). */
	write_file("t.nul.push.txt", "a\0b", 3);
	assert_int_equal(render("t.nul", "push", NULL, &r, err), -1);
	snprintf(path, sizeof(path), "%s/t.dir.push.txt", tdir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(render("t.dir", "push", NULL, &r, err), -1);
	snprintf(path, sizeof(path), "%s/t.fifo.push.txt", tdir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(render("t.fifo", "push", NULL, &r, err), -1);
	/* No directory. */
	assert_int_equal(
	    nt_template_render(NULL, "x", "push", NULL, &r, err, sizeof(err)),
	    -1);
}

static void
test_template_shipped(void **state)
{
	const char *names[] = {"video_title", "url",   "reason", "sender",
	                       "preview",     "actor", "post",   "comment",
	                       "code",        "count"};
	const char *values[] = {"Cats <3",   "https://example.org/v/1",
	                        "bad codec", "ann",
	                        "hi",        "bob",
	                        "My post",   "nice",
	                        "123456",    "2"};
	nt_vars v = {10, names, values};
	static const struct {
		const char *type, *channel;
	} shipped[] = {
	    {"video.ready", "push"},    {"video.ready", "email"},
	    {"video.ready", "inapp"},   {"video.failed", "push"},
	    {"video.failed", "email"},  {"video.failed", "inapp"},
	    {"chat.message", "push"},   {"feed.like", "inapp"},
	    {"feed.comment", "inapp"},  {"feed.follow", "inapp"},
	    {"contact.confirm", "sms"},
	};
	const char *dir = NT_TEMPLATES_DIR;
	nt_rendered r;
	char err[256];

	(void) state;
	for (size_t i = 0; i < sizeof(shipped) / sizeof(shipped[0]); i++) {
		memset(&r, 0, sizeof(r));
		err[0] = '\0';
		if (nt_template_render(dir, shipped[i].type, shipped[i].channel,
		                       &v, &r, err, sizeof(err)) != 1)
			fail_msg("%s.%s: %s", shipped[i].type,
			         shipped[i].channel, err);
		assert_non_null(r.text);
		if (strcmp(shipped[i].channel, "sms") != 0)
			assert_non_null(r.subject);
		if (strcmp(shipped[i].channel, "email") == 0)
			assert_non_null(r.html);
		nt_rendered_free(&r);
	}
	/* The html of video.ready escapes its values. */
	assert_int_equal(nt_template_render(dir, "video.ready", "email", &v, &r,
	                                    err, sizeof(err)),
	                 1);
	assert_non_null(strstr(r.html, "Cats &lt;3"));
	assert_null(strstr(r.html, "Cats <3"));
	nt_rendered_free(&r);
}

/* --------------------------------------------------- email and headers */

/* Decodes base64 (no whitespace) into out; returns the length or -1. */
static int
b64_decode(const char *in, size_t n, unsigned char *out)
{
	int len = EVP_DecodeBlock(out, (const unsigned char *) in, (int) n);

	if (len < 0)
		return (-1);
	if (n >= 1 && in[n - 1] == '=')
		len--;
	if (n >= 2 && in[n - 2] == '=')
		len--;
	return (len);
}

/* Is s (n bytes) valid UTF-8 on its own? */
static bool
utf8_ok(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k = s[i] < 0x80             ? 1
		           : (s[i] & 0xe0) == 0xc0 ? 2
		           : (s[i] & 0xf0) == 0xe0 ? 3
		           : (s[i] & 0xf8) == 0xf0 ? 4
		                                   : 0;
		if (k == 0 || i + k > n)
			return (false);
		for (size_t j = 1; j < k; j++)
			if ((s[i + j] & 0xc0) != 0x80)
				return (false);
		i += k;
	}
	return (true);
}

/*
 * Checks the folded "Subject: "+enc within 78 columns per line and
 * decodes it as a mail reader would: lines unfolded, encoded-words
 * decoded, whitespace between adjacent encoded-words dropped.  Each word
 * must hold whole characters.  Returns malloc'd text.
 */
static char *
subject_decode(const char *enc)
{
	char *line = NULL, *out = calloc(1, 4096);
	size_t o = 0, word_end = 0;
	const char *p;
	bool prev_word = false;

	assert_non_null(out);
	assert_true(asprintf(&line, "Subject: %s", enc) > 0);
	for (p = line; *p != '\0';) {
		const char *e = strstr(p, "\r\n");
		size_t l = e != NULL ? (size_t) (e - p) : strlen(p);
		assert_true(l <= 78);
		if (e == NULL)
			break;
		assert_true(e[2] == ' ' || e[2] == '\t');
		p = e + 2;
	}
	/* Unfold. */
	{
		char *w = line;
		for (char *r = line; *r != '\0'; r++) {
			if (r[0] == '\r' && r[1] == '\n') {
				r++;
				continue;
			}
			*w++ = *r;
		}
		*w = '\0';
	}
	p = line + strlen("Subject: ");
	while (*p != '\0') {
		if (strncmp(p, "=?UTF-8?B?", 10) == 0) {
			const char *b = p + 10, *end = strstr(b, "?=");
			unsigned char dec[128];
			int n;
			assert_non_null(end);
			assert_true(end - p + 2 <= 75); /* RFC 2047 2. */
			n = b64_decode(b, (size_t) (end - b), dec);
			assert_true(n > 0);
			assert_true(utf8_ok(dec, (size_t) n));
			/* Whitespace between two words is not text. */
			if (prev_word)
				o = word_end;
			memcpy(out + o, dec, (size_t) n);
			o += (size_t) n;
			word_end = o;
			p = end + 2;
			prev_word = true;
		} else {
			out[o++] = *p++;
			if (*(p - 1) != ' ')
				prev_word = false;
		}
		assert_true(o < 4000);
	}
	out[o] = '\0';
	free(line);
	return (out);
}

static void
test_subject_ascii_plain(void **state)
{
	static const char *const plain[] = {
	    "Your video is ready",
	    "a",
	    "Punctuation: (ok) [ok] <ok> \"ok\" 'ok' !#$%&*+/= ?^_`{|}~-",
	};
	char longs[400];
	char *e, *d;

	(void) state;
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		e = nt_subject_encode(plain[i]);
		assert_string_equal(e, plain[i]);
		free(e);
	}
	/* A long one is folded at spaces, never encoded. */
	longs[0] = '\0';
	for (int i = 0; i < 30; i++)
		strcat(longs, i ? " word" : "start");
	strcat(longs, "  two");
	e = nt_subject_encode(longs);
	assert_null(strstr(e, "=?"));
	assert_non_null(strstr(e, "\r\n "));
	d = subject_decode(e);
	assert_string_equal(d, longs);
	free(d);
	free(e);
	/* Something that looks like an encoded-word is encoded itself. */
	e = nt_subject_encode("about =?UTF-8?B?QQ==?= words");
	assert_true(strncmp(e, "=?UTF-8?B?", 10) == 0);
	d = subject_decode(e);
	assert_string_equal(d, "about =?UTF-8?B?QQ==?= words");
	free(d);
	free(e);
}

static void
test_subject_utf8_encoded(void **state)
{
	const char *emoji = "Your video is ready \xf0\x9f\x8e\xac "
	                    "Gr\xc3\xbc\xc3\x9f"
	                    "e \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac";
	char many[1024];
	char *e, *d;

	(void) state;
	e = nt_subject_encode(emoji);
	assert_true(strncmp(e, "=?UTF-8?B?", 10) == 0);
	for (const char *p = e; *p != '\0'; p++)
		assert_true(*p == '\r' || *p == '\n' ||
		            (*p >= 0x20 && *p < 0x7f));
	d = subject_decode(e);
	assert_string_equal(d, emoji);
	free(d);
	free(e);
	/* Spaces where a word ends and the next begins are text, not the
	 * whitespace between words. */
	e = nt_subject_encode(
	    "Your video \xe2\x80\x9c"
	    "Caf\xc3\xa9 \xf0\x9f\x8e\xac\xe2\x80\x9d is ready "
	    "\xe2\x9c\x85 \xe6\x97\xa5\xe6\x9c\xac too");
	d = subject_decode(e);
	assert_string_equal(d,
	                    "Your video \xe2\x80\x9c"
	                    "Caf\xc3\xa9 \xf0\x9f\x8e\xac\xe2\x80\x9d is "
	                    "ready \xe2\x9c\x85 \xe6\x97\xa5\xe6\x9c\xac too");
	free(d);
	free(e);
	/* Many 4-byte characters: several words, folded, none splitting a
	 * character (subject_decode checks each word is whole UTF-8). */
	many[0] = '\0';
	for (int i = 0; i < 100; i++)
		strcat(many, "\xf0\x9f\x8e\xac");
	strcat(many, "x\xc3\xa9");
	e = nt_subject_encode(many);
	assert_non_null(strstr(e, "?=\r\n =?UTF-8?B?"));
	d = subject_decode(e);
	assert_string_equal(d, many);
	free(d);
	free(e);
}

static void
test_header_value_refusal(void **state)
{
	static const char *const bad[] = {
	    "Hi\r\nBcc: x@y",
	    "a\nb",
	    "a\rb",
	    "tab\there",
	    "del\x7f",
	    "nul-less \x01",
	    "c1 \xc2\x85 next line",
	    "bad utf8 \xff",
	    "overlong \xc0\xaf",
	    "surrogate \xed\xa0\x80",
	    "truncated \xe2\x82",
	};
	char big[NT_SUBJECT_MAX + 2];

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(nt_header_value_ok(bad[i], NT_SUBJECT_MAX));
	assert_false(nt_header_value_ok(NULL, NT_SUBJECT_MAX));
	assert_true(nt_header_value_ok("", NT_SUBJECT_MAX));
	assert_true(nt_header_value_ok("Gr\xc3\xbc\xc3\x9f"
	                               "e \xf0\x9f\x8e\xac",
	                               NT_SUBJECT_MAX));
	memset(big, 'a', sizeof(big));
	big[NT_SUBJECT_MAX] = '\0';
	assert_true(nt_header_value_ok(big, NT_SUBJECT_MAX));
	big[NT_SUBJECT_MAX] = 'a';
	big[NT_SUBJECT_MAX + 1] = '\0';
	assert_false(nt_header_value_ok(big, NT_SUBJECT_MAX));
}

/*
 * The email provider refuses before it connects: its relay here is a
 * port nothing listens on, so a refusal that came from a connection
 * attempt would be NT_RETRY, not NT_PERMANENT.
 */
static void
test_email_refuses_before_sending(void **state)
{
	nt_outbound_cfg cfg = {.allow = NULL, .timeout_ms = 1000};
	nt_message m = {
	    .id = "n1", .title = "ok", .body = "b", .data_json = "{}"};
	nt_provider p = {0};
	nt_result r;
	char err[256];

	(void) state;
	assert_int_equal(nt_email_new(&cfg, false, "smtp://127.0.0.1:9",
	                              "notifier@example.org", &p, err,
	                              sizeof(err)),
	                 0);
	assert_string_equal(p.ops->name, "smtp");
	assert_int_equal(p.ops->channel, NT_CH_EMAIL);

	m.title = "Hi\r\nBcc: x@y";
	p.ops->send(p.impl, &m, "a@example.org", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	assert_non_null(strstr(r.error, "control"));
	m.title = "ok";
	p.ops->send(p.impl, &m, "a@example.org\r\nRCPT TO:<b@x>", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	p.ops->send(p.impl, &m, "not an address", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	m.unsubscribe_url = "https://x/u\r\nBcc: y@z";
	p.ops->send(p.impl, &m, "a@example.org", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	m.unsubscribe_url = "https://x/u>, <mailto:evil@x";
	p.ops->send(p.impl, &m, "a@example.org", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	m.unsubscribe_url = NULL;
	m.id = "id>\r\nBcc: y@z";
	p.ops->send(p.impl, &m, "a@example.org", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	/* A good message does try the (absent) relay: transient. */
	m.id = "n1";
	p.ops->send(p.impl, &m, "a@example.org", &r);
	assert_int_equal(r.outcome, NT_RETRY);
	p.ops->free(p.impl);

	/* Bad configuration. */
	assert_int_equal(nt_email_new(&cfg, false, "http://relay",
	                              "n@example.org", &p, err, sizeof(err)),
	                 -1);
	assert_int_equal(nt_email_new(&cfg, false, "smtp://relay",
	                              "Notifier <n@example.org>", &p, err,
	                              sizeof(err)),
	                 -1);
}

static void
test_email_address_validation(void **state)
{
	static const char *const good[] = {
	    "a@b.co",
	    "first.last+tag@sub.example.org",
	    "x@localhost",
	    "o'brien@example.ie",
	    "user_1-2@a-b.example",
	    "!#$%&'*+/=?^_`{|}~-@x.y",
	};
	static const char *const bad[] = {
	    "",           "a",           "@b",       "a@",
	    "a b@c",      "a@b c",       "a@-b.com", "a@b-.com",
	    "a..b@c",     ".a@b",        "a.@b",     "a@b..c",
	    "a@.b",       "a@b.",        "a\r\n@b",  "a@b\r\nBcc: c@d",
	    "<a@b>",      "a@b>",        "\"a\"@b",  "\xc3\xa4@b",
	    "a@\xc3\xa4", "a@[1.2.3.4]", "a@b@c",    "a(c)@b",
	    "a@b_c.d",    "a,b@c",       "a;b@c",    "a\\b@c",
	};
	char buf[400];

	(void) state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!nt_email_addr_valid(good[i]))
			fail_msg("refused %s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (nt_email_addr_valid(bad[i]))
			fail_msg("accepted %s", bad[i]);
	assert_false(nt_email_addr_valid(NULL));
	/* Local part at most 64. */
	memset(buf, 'a', 64);
	strcpy(buf + 64, "@b.c");
	assert_true(nt_email_addr_valid(buf));
	memset(buf, 'a', 65);
	strcpy(buf + 65, "@b.c");
	assert_false(nt_email_addr_valid(buf));
	/* A label at most 63. */
	strcpy(buf, "a@");
	memset(buf + 2, 'b', 64);
	strcpy(buf + 66, ".c");
	assert_false(nt_email_addr_valid(buf));
	/* The whole at most 254. */
	strcpy(buf, "a@");
	for (int i = 0; i < 5; i++)
		strcat(buf,
		       "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.");
	strcat(buf, "cc");
	assert_false(nt_email_addr_valid(buf));
}

static void
test_phone_validation(void **state)
{
	static const char *const good[] = {
	    "+4915112345678",
	    "+12025550123",
	    "+12345678",
	    "+123456789012345",
	};
	static const char *const bad[] = {
	    "4915112345678", "+0123456789", "+1234567",   "+1234567890123456",
	    "+49 15112345",  "+49-151123",  "",           "+",
	    "++4915112345",  "+49151abc45", "+4915\n123", "+\xd9\xa1\xd9\xa2",
	};

	(void) state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(nt_phone_valid(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (nt_phone_valid(bad[i]))
			fail_msg("accepted %s", bad[i]);
	assert_false(nt_phone_valid(NULL));
}

/* ------------------------------------------------------ outbound guard */

static void
sa_of(const char *ip, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t) port);
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *) ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t) port);
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
}

static void
test_guard_classification(void **state)
{
	/* reason NULL: allowed; else a word the reason must contain. */
	static const struct {
		const char *ip, *reason;
	} cases[] = {
	    /* IPv4 */
	    {"127.0.0.1", "loopback"},
	    {"127.255.255.254", "loopback"},
	    {"10.0.0.1", "private"},
	    {"10.255.255.255", "private"},
	    {"172.16.0.1", "private"},
	    {"172.31.255.255", "private"},
	    {"172.15.255.255", NULL},
	    {"172.32.0.1", NULL},
	    {"192.168.0.1", "private"},
	    {"192.168.255.255", "private"},
	    {"192.169.0.1", NULL},
	    {"169.254.169.254", "link-local"},
	    {"169.254.0.1", "link-local"},
	    {"169.253.255.255", NULL},
	    {"0.0.0.0", "unspecified"},
	    {"0.1.2.3", "reserved"},
	    {"224.0.0.1", "multicast"},
	    {"239.255.255.255", "multicast"},
	    {"255.255.255.255", "broadcast"},
	    {"240.0.0.1", "reserved"},
	    {"100.64.0.1", "CGNAT"},
	    {"100.127.255.255", "CGNAT"},
	    {"100.63.255.255", NULL},
	    {"100.128.0.1", NULL},
	    {"192.0.0.8", "reserved"},
	    {"198.18.0.1", "reserved"},
	    {"192.0.2.1", "reserved"},
	    {"8.8.8.8", NULL},
	    {"1.1.1.1", NULL},
	    {"93.184.216.34", NULL},
	    {"223.255.255.255", NULL},
	    /* IPv6 */
	    {"::1", "loopback"},
	    {"::", "unspecified"},
	    {"fe80::1", "link-local"},
	    {"febf:ffff::1", "link-local"},
	    {"fec0::1", "site-local"},
	    {"fc00::1", "private"},
	    {"fd12:3456:789a::1", "private"},
	    {"ff02::1", "multicast"},
	    {"ff0e::1", "multicast"},
	    {"100::1", "reserved"},
	    {"2001:db8::1", "reserved"},
	    {"2606:4700:4700::1111", NULL},
	    {"2001:4860:4860::8888", NULL},
	    /* IPv4-mapped: the IPv4 address decides. */
	    {"::ffff:127.0.0.1", "loopback"},
	    {"::ffff:10.0.0.1", "private"},
	    {"::ffff:172.16.5.4", "private"},
	    {"::ffff:192.168.1.1", "private"},
	    {"::ffff:169.254.169.254", "link-local"},
	    {"::ffff:0.0.0.0", "unspecified"},
	    {"::ffff:100.64.0.1", "CGNAT"},
	    {"::ffff:224.0.0.1", "multicast"},
	    {"::ffff:255.255.255.255", "broadcast"},
	    {"::ffff:8.8.8.8", NULL},
	    /* Other forms that embed IPv4. */
	    {"::127.0.0.1", "reserved"},
	    {"::8.8.8.8", "reserved"},
	    {"64:ff9b::7f00:1", "loopback"},
	    {"64:ff9b::a9fe:a9fe", "link-local"},
	    {"64:ff9b::808:808", NULL},
	    {"2002:7f00:1::1", "loopback"},
	    {"2002:c0a8:101::1", "private"},
	    {"2002:808:808::1", NULL},
	};
	struct sockaddr_storage ss;
	struct sockaddr un = {.sa_family = AF_UNIX};

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *why;
		sa_of(cases[i].ip, 80, &ss);
		why = nt_addr_refusal((struct sockaddr *) &ss);
		if (cases[i].reason == NULL && why != NULL)
			fail_msg("%s refused (%s)", cases[i].ip, why);
		if (cases[i].reason != NULL &&
		    (why == NULL || strstr(why, cases[i].reason) == NULL))
			fail_msg("%s: want \"%s\", got \"%s\"", cases[i].ip,
			         cases[i].reason, why ? why : "(allowed)");
	}
	assert_non_null(nt_addr_refusal(&un));
}

static void
test_guard_allow_list(void **state)
{
	static const char *const bad[] = {
	    "127.0.0.1", "::1:80",        "[::1]80",    "host:80",
	    "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:8x", "[::1]:",
	    ":80",       "[zz]:80",       "1.2.3:80",   "1.2.3.4:-1",
	};
	struct sockaddr_storage ss;
	nt_allow a;
	char err[128];

	(void) state;
	assert_int_equal(nt_allow_parse(" 127.0.0.1:8080 , [::1]:9000,,", &a,
	                                err, sizeof(err)),
	                 0);
	assert_int_equal(a.n, 2);
	sa_of("127.0.0.1", 8080, &ss);
	assert_true(nt_allow_match(&a, (struct sockaddr *) &ss));
	sa_of("127.0.0.1", 8081, &ss);
	assert_false(nt_allow_match(&a, (struct sockaddr *) &ss));
	sa_of("127.0.0.2", 8080, &ss);
	assert_false(nt_allow_match(&a, (struct sockaddr *) &ss));
	/* Exact: the mapped form of an allowed IPv4 is not allowed. */
	sa_of("::ffff:127.0.0.1", 8080, &ss);
	assert_false(nt_allow_match(&a, (struct sockaddr *) &ss));
	sa_of("::1", 9000, &ss);
	assert_true(nt_allow_match(&a, (struct sockaddr *) &ss));
	sa_of("::1", 8080, &ss);
	assert_false(nt_allow_match(&a, (struct sockaddr *) &ss));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (nt_allow_parse(bad[i], &a, err, sizeof(err)) != -1)
			fail_msg("accepted allow entry %s", bad[i]);
	assert_int_equal(nt_allow_parse(NULL, &a, err, sizeof(err)), 0);
	assert_int_equal(a.n, 0);
	assert_int_equal(nt_allow_parse("", &a, err, sizeof(err)), 0);
	assert_int_equal(a.n, 0);
}

/*
 * Registration's courtesy check: address literals the guard would refuse,
 * in the spellings libcurl reads, are refused unless allowed; names and
 * public addresses pass (names are judged at send time).
 */
static void
test_endpoint_refusal(void **state)
{
	static const char *const refused[] = {
	    "http://10.1.2.3/x",
	    "http://127.0.0.1:8081/x",
	    "http://2130706433:8081/x",
	    "http://0x7f.0.0.1:8081/x",
	    "http://127.1:8081/x",
	    "http://[::1]:8081/x",
	    "http://[::ffff:127.0.0.1]:8081/x",
	    "http://[::]:8081/x",
	    "http://169.254.169.254/latest/meta-data/",
	    "http://0.0.0.0:8081/x",
	    "https://192.168.1.1/x",
	    "http://user@127.0.0.1:8081/x",
	    "http://127.0.0.1/x",
	    /* Allowed means exactly that ip:port. */
	    "http://[::1]:8080/x",
	    "http://[::ffff:127.0.0.1]:8080/x",
	    "http://127.0.0.1:9000/x",
	};
	static const char *const passed[] = {
	    "https://ntfy.sh/topic",
	    "http://localhost:8080/x",
	    "http://93.184.216.34/x",
	    "http://[2606:4700::1111]/x",
	    "http://127.0.0.1:8080/allowed",
	    "http://[::1]:9000/allowed",
	    "not a url",
	};
	const char *allow = "127.0.0.1:8080,[::1]:9000";

	(void) state;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (nt_endpoint_refusal(refused[i], allow) == NULL)
			fail_msg("not refused: %s", refused[i]);
	for (size_t i = 0; i < sizeof(passed) / sizeof(passed[0]); i++)
		if (nt_endpoint_refusal(passed[i], allow) != NULL)
			fail_msg("refused: %s (%s)", passed[i],
			         nt_endpoint_refusal(passed[i], allow));
	/* The allow list's spellings are libcurl's: 2130706433 is
	 * 127.0.0.1 there too. */
	assert_null(nt_endpoint_refusal("http://2130706433:8080/x", allow));
	assert_non_null(nt_endpoint_refusal("http://127.0.0.1:8080/x", NULL));
}

static void
test_url_scheme(void **state)
{
	(void) state;
	assert_true(nt_url_is_http("http://example.org/x"));
	assert_true(nt_url_is_http("HTTPS://example.org/x"));
	assert_false(nt_url_is_http("ftp://example.org/x"));
	assert_false(nt_url_is_http("file:///etc/passwd"));
	assert_false(nt_url_is_http("gopher://x"));
	assert_false(nt_url_is_http("//example.org"));
	assert_false(nt_url_is_http("http://a b"));
	assert_false(nt_url_is_http("http://a\r\nb"));
	assert_false(nt_url_is_http(NULL));
}

/* Push refusals that need no network. */
static void
test_push_refusals(void **state)
{
	nt_outbound_cfg cfg = {.allow = NULL, .timeout_ms = 1000};
	nt_message m = {
	    .id = "n1", .title = "t", .body = "b", .data_json = "{}"};
	nt_provider p = {0};
	nt_result r;
	char err[256];

	(void) state;
	assert_int_equal(nt_push_new(&cfg, &p, err, sizeof(err)), 0);
	p.ops->send(p.impl, &m, "ftp://example.org/x", &r);
	assert_int_equal(r.outcome, NT_REFUSED);
	p.ops->send(p.impl, &m, "file:///etc/passwd", &r);
	assert_int_equal(r.outcome, NT_REFUSED);
	/* Refused on the address, before any packet: no listener needed. */
	p.ops->send(p.impl, &m, "http://10.1.2.3/", &r);
	assert_int_equal(r.outcome, NT_REFUSED);
	assert_non_null(strstr(r.error, "private"));
	p.ops->send(p.impl, &m, "http://169.254.169.254/latest/meta-data/", &r);
	assert_int_equal(r.outcome, NT_REFUSED);
	assert_non_null(strstr(r.error, "link-local"));
	m.data_json = "[1,2]";
	p.ops->send(p.impl, &m, "https://example.org/", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	m.data_json = "{bad";
	p.ops->send(p.impl, &m, "https://example.org/", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	m.data_json = "{}";
	m.id = "id\r\nX-Evil: 1";
	p.ops->send(p.impl, &m, "https://example.org/", &r);
	assert_int_equal(r.outcome, NT_PERMANENT);
	p.ops->free(p.impl);
	/* A bad allow list is a configuration error. */
	cfg.allow = "localhost:80";
	assert_int_equal(nt_push_new(&cfg, &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "localhost:80"));
}

/* --------------------------------------------------------- Retry-After */

static void
test_retry_after(void **state)
{
	/* Sun, 06 Nov 1994 08:49:37 GMT */
	const int64_t t0 = 784111777LL * 1000;

	(void) state;
	assert_int_equal(nt_retry_after_ms("120", 0), 120000);
	assert_int_equal(nt_retry_after_ms(" 5 ", 0), 5000);
	assert_int_equal(nt_retry_after_ms("0", 0), 0);
	assert_int_equal(nt_retry_after_ms("-1", 0), 0);
	assert_int_equal(nt_retry_after_ms("abc", 0), 0);
	assert_int_equal(nt_retry_after_ms("1.5", 0), 0);
	assert_int_equal(nt_retry_after_ms("12abc", 0), 0);
	assert_int_equal(nt_retry_after_ms("", 0), 0);
	assert_int_equal(nt_retry_after_ms(NULL, 0), 0);
	assert_int_equal(nt_retry_after_ms("99999999999999999999999", 0),
	                 NT_RETRY_AFTER_MAX_MS);
	assert_int_equal(nt_retry_after_ms("86401", 0), NT_RETRY_AFTER_MAX_MS);
	/* The three HTTP-date forms, 10 s ahead of now. */
	assert_int_equal(
	    nt_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", t0 - 10000),
	    10000);
	assert_int_equal(
	    nt_retry_after_ms("Sunday, 06-Nov-94 08:49:37 GMT", t0 - 10000),
	    10000);
	assert_int_equal(
	    nt_retry_after_ms("Sun Nov  6 08:49:37 1994", t0 - 10000), 10000);
	/* Past, now, malformed, another zone. */
	assert_int_equal(
	    nt_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", t0 + 1), 0);
	assert_int_equal(nt_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", t0),
	                 0);
	assert_int_equal(
	    nt_retry_after_ms("Sun, 06 Foo 1994 08:49:37 GMT", t0 - 10000), 0);
	assert_int_equal(
	    nt_retry_after_ms("Sun, 06 Nov 1994 25:49:37 GMT", t0 - 10000), 0);
	assert_int_equal(
	    nt_retry_after_ms("Sun, 06 Nov 1994 08:49:37 CET", t0 - 10000), 0);
	assert_int_equal(
	    nt_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT x", t0 - 10000),
	    0);
	/* Far ahead: capped. */
	assert_int_equal(nt_retry_after_ms("Sun, 06 Nov 2094 08:49:37 GMT", t0),
	                 NT_RETRY_AFTER_MAX_MS);
}

static void
test_outcome_table(void **state)
{
	static const struct {
		int status;
		nt_outcome push, other;
	} t[] = {
	    {200, NT_SENT, NT_SENT},
	    {201, NT_SENT, NT_SENT},
	    {202, NT_SENT, NT_SENT},
	    {204, NT_SENT, NT_SENT},
	    {299, NT_SENT, NT_SENT},
	    {404, NT_GONE, NT_PERMANENT},
	    {410, NT_GONE, NT_PERMANENT},
	    {408, NT_RETRY, NT_RETRY},
	    {429, NT_RETRY, NT_RETRY},
	    {500, NT_RETRY, NT_RETRY},
	    {502, NT_RETRY, NT_RETRY},
	    {503, NT_RETRY, NT_RETRY},
	    {504, NT_RETRY, NT_RETRY},
	    {599, NT_RETRY, NT_RETRY},
	    {400, NT_PERMANENT, NT_PERMANENT},
	    {401, NT_PERMANENT, NT_PERMANENT},
	    {403, NT_PERMANENT, NT_PERMANENT},
	    {405, NT_PERMANENT, NT_PERMANENT},
	    {413, NT_PERMANENT, NT_PERMANENT},
	    {422, NT_PERMANENT, NT_PERMANENT},
	    {301, NT_PERMANENT, NT_PERMANENT},
	    {302, NT_PERMANENT, NT_PERMANENT},
	    {303, NT_PERMANENT, NT_PERMANENT},
	    {307, NT_PERMANENT, NT_PERMANENT},
	    {308, NT_PERMANENT, NT_PERMANENT},
	    {100, NT_PERMANENT, NT_PERMANENT},
	    {600, NT_PERMANENT, NT_PERMANENT},
	    {0, NT_PERMANENT, NT_PERMANENT},
	};

	(void) state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (nt_http_outcome(t[i].status, true) != t[i].push)
			fail_msg("push %d", t[i].status);
		if (nt_http_outcome(t[i].status, false) != t[i].other)
			fail_msg("other %d", t[i].status);
	}
}

/* ------------------------------------------------- names and providers */

static void
test_channel_names(void **state)
{
	(void) state;
	for (int c = 0; c < NT_CH_COUNT; c++)
		assert_int_equal(nt_channel_parse(nt_channel_name(c)), c);
	assert_string_equal(nt_channel_name(NT_CH_PUSH), "push");
	assert_string_equal(nt_channel_name(NT_CH_EMAIL), "email");
	assert_string_equal(nt_channel_name(NT_CH_SMS), "sms");
	assert_string_equal(nt_channel_name(NT_CH_INAPP), "inapp");
	assert_null(nt_channel_name(NT_CH_COUNT));
	assert_null(nt_channel_name((nt_channel) -1));
	assert_int_equal(nt_channel_parse("fax"), -1);
	assert_int_equal(nt_channel_parse("Push"), -1);
	assert_int_equal(nt_channel_parse(""), -1);
	assert_int_equal(nt_channel_parse(NULL), -1);
}

static void
clear_env(void)
{
	static const char *const vars[] = {
	    "NOTIFIER_SMTP_URL",        "NOTIFIER_SMTP_URL_2",
	    "NOTIFIER_SMTP_FROM",       "NOTIFIER_SMS_URL",
	    "NOTIFIER_SMS_URL_2",       "NOTIFIER_SMS_TOKEN",
	    "NOTIFIER_SMS_TOKEN_FILE",  "NOTIFIER_OUTBOUND_ALLOW",
	    "NOTIFIER_SEND_TIMEOUT_MS",
	};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

static void
test_providers_make(void **state)
{
	nt_provider pri[NT_CH_COUNT], sec[NT_CH_COUNT];
	char err[256];

	(void) state;
	clear_env();
	assert_int_equal(nt_providers_make(pri, sec, err, sizeof(err)), 0);
	assert_non_null(pri[NT_CH_PUSH].ops);
	assert_string_equal(pri[NT_CH_PUSH].ops->name, "push");
	assert_null(pri[NT_CH_EMAIL].ops);
	assert_null(pri[NT_CH_SMS].ops);
	assert_null(pri[NT_CH_INAPP].ops);
	for (int c = 0; c < NT_CH_COUNT; c++)
		assert_null(sec[c].ops);
	nt_providers_free(pri, sec);
	assert_null(pri[NT_CH_PUSH].ops);

	setenv("NOTIFIER_SMTP_URL", "smtp://127.0.0.1:2525", 1);
	setenv("NOTIFIER_SMTP_URL_2", "smtp://127.0.0.1:2526", 1);
	setenv("NOTIFIER_SMTP_FROM", "n@example.org", 1);
	setenv("NOTIFIER_SMS_URL", "http://127.0.0.1:1/sms", 1);
	setenv("NOTIFIER_SMS_URL_2", "https://sms.example.org/send", 1);
	setenv("NOTIFIER_SMS_TOKEN", "0123456789abcdef0123456789abcdef", 1);
	setenv("NOTIFIER_OUTBOUND_ALLOW", "127.0.0.1:9", 1);
	setenv("NOTIFIER_SEND_TIMEOUT_MS", "2500", 1);
	assert_int_equal(nt_providers_make(pri, sec, err, sizeof(err)), 0);
	assert_string_equal(pri[NT_CH_EMAIL].ops->name, "smtp");
	assert_string_equal(sec[NT_CH_EMAIL].ops->name, "smtp-2");
	assert_string_equal(pri[NT_CH_SMS].ops->name, "sms-http");
	assert_string_equal(sec[NT_CH_SMS].ops->name, "sms-http-2");
	assert_int_equal(pri[NT_CH_SMS].ops->channel, NT_CH_SMS);
	assert_null(sec[NT_CH_PUSH].ops);
	nt_providers_free(pri, sec);

	/* Each bad setting is an error naming it, with nothing left made. */
	setenv("NOTIFIER_SEND_TIMEOUT_MS", "fast", 1);
	assert_int_equal(nt_providers_make(pri, sec, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "NOTIFIER_SEND_TIMEOUT_MS"));
	unsetenv("NOTIFIER_SEND_TIMEOUT_MS");
	setenv("NOTIFIER_SMS_URL_2", "ftp://sms.example.org/", 1);
	assert_int_equal(nt_providers_make(pri, sec, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "NOTIFIER_SMS_URL_2"));
	assert_null(pri[NT_CH_PUSH].ops);
	assert_null(pri[NT_CH_EMAIL].ops);
	unsetenv("NOTIFIER_SMS_URL_2");
	setenv("NOTIFIER_SMTP_URL", "relay:25", 1);
	assert_int_equal(nt_providers_make(pri, sec, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "NOTIFIER_SMTP_URL"));
	unsetenv("NOTIFIER_SMTP_URL");
	setenv("NOTIFIER_OUTBOUND_ALLOW", "127.0.0.1", 1);
	assert_int_equal(nt_providers_make(pri, sec, err, sizeof(err)), -1);
	clear_env();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_template_render_escape),
	    cmocka_unit_test(test_template_missing_var),
	    cmocka_unit_test(test_template_none),
	    cmocka_unit_test(test_template_bad_type),
	    cmocka_unit_test(test_template_spaces_in_braces),
	    cmocka_unit_test(test_template_literal_braces_in_values),
	    cmocka_unit_test(test_template_file_bounds),
	    cmocka_unit_test(test_template_shipped),
	    cmocka_unit_test(test_subject_ascii_plain),
	    cmocka_unit_test(test_subject_utf8_encoded),
	    cmocka_unit_test(test_header_value_refusal),
	    cmocka_unit_test(test_email_refuses_before_sending),
	    cmocka_unit_test(test_email_address_validation),
	    cmocka_unit_test(test_phone_validation),
	    cmocka_unit_test(test_guard_classification),
	    cmocka_unit_test(test_guard_allow_list),
	    cmocka_unit_test(test_endpoint_refusal),
	    cmocka_unit_test(test_url_scheme),
	    cmocka_unit_test(test_push_refusals),
	    cmocka_unit_test(test_retry_after),
	    cmocka_unit_test(test_outcome_table),
	    cmocka_unit_test(test_channel_names),
	    cmocka_unit_test(test_providers_make),
	};

	return (cmocka_run_group_tests(tests, setup_dir, teardown_dir));
}
