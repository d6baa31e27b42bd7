/*
 * Templates (template.h): <dir>/<type>.<channel>.{subject,txt,html}.
 *
 * A path is built only from checked parts: the type must be
 * [a-z0-9._-]{1,64}, start with a letter or digit and hold no "..", and
 * the channel must be one of channel.h's names, so no input can name a
 * file outside dir.  A file is read only when it is a regular file of at
 * most NT_TEMPLATE_MAX bytes (opened non-blocking, so a FIFO planted
 * there cannot hang a worker) and holds no NUL byte.
 *
 * Rendering is one pass over the template: "{{ name }}" (spaces or tabs
 * inside the braces allowed) is replaced by the variable's value, which is
 * copied as it is (HTML-escaped in .html) and never scanned again, so a
 * value holding "{{x}}" comes out literally.  An unterminated "{{", a
 * placeholder whose name is not [A-Za-z0-9_.-]{1,64} and a variable that
 * is missing are errors, never silently empty text.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "channel.h"
#include "template.h"

/* Largest template file, in bytes. */
#define NT_TEMPLATE_MAX (64 * 1024)
/* Largest rendered part, in bytes. */
#define NT_RENDERED_MAX (1024 * 1024)
#define NT_VAR_NAME_MAX 64

static bool
type_valid(const char *t)
{
	size_t n = 0;

	if (t == NULL ||
	    !((t[0] >= 'a' && t[0] <= 'z') || (t[0] >= '0' && t[0] <= '9')))
		return (false);
	for (const char *p = t; *p != '\0'; p++, n++)
		if (n >= 64 ||
		    !((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		      *p == '.' || *p == '_' || *p == '-'))
			return (false);
	return (strstr(t, "..") == NULL);
}

/*
 * Reads path into *out (malloc'd, NUL-terminated, the caller's) and *len.
 * 0 on success, 1 when there is no such file, -1 on an error (in err).
 */
static int
read_template(const char *path, const char *shown, char **out, size_t *len,
              char *err, size_t errlen)
{
	struct stat st;
	char *buf;
	size_t n = 0;
	ssize_t k;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return (1);
		snprintf(err, errlen, "template %s: %s", shown,
		         strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "template %s: not a regular file", shown);
		close(fd);
		return (-1);
	}
	if (st.st_size > NT_TEMPLATE_MAX) {
		snprintf(err, errlen, "template %s: over %d bytes", shown,
		         NT_TEMPLATE_MAX);
		close(fd);
		return (-1);
	}
	if ((buf = malloc(NT_TEMPLATE_MAX + 2)) == NULL) {
		snprintf(err, errlen, "out of memory");
		close(fd);
		return (-1);
	}
	/* Read to the cap, not to the size: the file may have grown. */
	while (n <= NT_TEMPLATE_MAX) {
		k = read(fd, buf + n, NT_TEMPLATE_MAX + 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			snprintf(err, errlen, "template %s: %s", shown,
			         strerror(errno));
			goto fail;
		}
		if (k == 0)
			break;
		n += (size_t) k;
	}
	close(fd);
	fd = -1;
	if (n > NT_TEMPLATE_MAX) {
		snprintf(err, errlen, "template %s: over %d bytes", shown,
		         NT_TEMPLATE_MAX);
		goto fail;
	}
	if (memchr(buf, '\0', n) != NULL) {
		snprintf(err, errlen, "template %s: holds a NUL byte", shown);
		goto fail;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return (0);
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	return (-1);
}

typedef struct out_buf {
	char *s;
	size_t len, cap;
	bool over;
} out_buf;

static bool
ob_add(out_buf *b, const char *s, size_t n)
{
	if (b->len + n > NT_RENDERED_MAX) {
		b->over = true;
		return (false);
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *t;
		while (cap < b->len + n + 1)
			cap *= 2;
		if ((t = realloc(b->s, cap)) == NULL)
			return (false);
		b->s = t;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
	return (true);
}

static bool
ob_add_html(out_buf *b, const char *s)
{
	for (const char *p = s; *p != '\0';) {
		size_t k = strcspn(p, "&<>\"'");
		const char *e = NULL;
		if (!ob_add(b, p, k))
			return (false);
		p += k;
		switch (*p) {
		case '&':
			e = "&amp;";
			break;
		case '<':
			e = "&lt;";
			break;
		case '>':
			e = "&gt;";
			break;
		case '"':
			e = "&quot;";
			break;
		case '\'':
			e = "&#39;";
			break;
		default:
			return (true);
		}
		if (!ob_add(b, e, strlen(e)))
			return (false);
		p++;
	}
	return (true);
}

static const char *
var_lookup(const nt_vars *v, const char *name, size_t n)
{
	for (size_t i = 0; v != NULL && i < v->n; i++)
		if (v->names[i] != NULL && v->values[i] != NULL &&
		    strlen(v->names[i]) == n &&
		    memcmp(v->names[i], name, n) == 0)
			return (v->values[i]);
	return (NULL);
}

static bool
var_name_char(char c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	        (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-');
}

/* Renders tpl (len bytes) into *out (malloc'd); 0, or -1 with err. */
static int
render(const char *tpl, size_t len, const nt_vars *vars, bool html,
       const char *shown, char **out, char *err, size_t errlen)
{
	const char *p = tpl, *end = tpl + len, *open, *close, *a, *b;
	out_buf ob = {0};
	const char *val;
	bool ok;
	int line;

	if (!ob_add(&ob, "", 0))
		goto oom;
	while (p < end) {
		open = memmem(p, (size_t) (end - p), "{{", 2);
		if (open == NULL) {
			if (!ob_add(&ob, p, (size_t) (end - p)))
				goto oom;
			break;
		}
		if (!ob_add(&ob, p, (size_t) (open - p)))
			goto oom;
		line = 1;
		for (const char *c = tpl; c < open; c++)
			line += *c == '\n';
		close = memmem(open + 2, (size_t) (end - open - 2), "}}", 2);
		if (close == NULL) {
			snprintf(err, errlen,
			         "template %s:%d: \"{{\" without \"}}\"", shown,
			         line);
			goto fail;
		}
		for (a = open + 2; a < close && (*a == ' ' || *a == '\t'); a++)
			;
		for (b = close; b > a && (b[-1] == ' ' || b[-1] == '\t'); b--)
			;
		ok = a < b && b - a <= NT_VAR_NAME_MAX;
		for (const char *c = a; ok && c < b; c++)
			ok = var_name_char(*c);
		if (!ok) {
			snprintf(err, errlen,
			         "template %s:%d: a placeholder is not "
			         "{{name}} with a name of [A-Za-z0-9_.-]",
			         shown, line);
			goto fail;
		}
		if ((val = var_lookup(vars, a, (size_t) (b - a))) == NULL) {
			snprintf(err, errlen,
			         "missing variable \"%.*s\" (template %s:%d)",
			         (int) (b - a), a, shown, line);
			goto fail;
		}
		if (!(html ? ob_add_html(&ob, val)
		           : ob_add(&ob, val, strlen(val))))
			goto oom;
		p = close + 2;
	}
	*out = ob.s;
	return (0);
oom:
	if (ob.over)
		snprintf(err, errlen, "template %s: rendered over %d bytes",
		         shown, NT_RENDERED_MAX);
	else
		snprintf(err, errlen, "out of memory");
fail:
	free(ob.s);
	return (-1);
}

int
nt_template_render(const char *dir, const char *type, const char *channel,
                   const nt_vars *vars, nt_rendered *out, char *err,
                   size_t errlen)
{
	static const char *const exts[3] = {"subject", "txt", "html"};
	char *parts[3] = {NULL, NULL, NULL};
	char path[PATH_MAX], shown[128];
	int found = 0, rv;

	if (!type_valid(type)) {
		snprintf(err, errlen,
		         "bad notification type (want [a-z0-9._-]{1,64}, "
		         "starting with a letter or digit)");
		return (-1);
	}
	if (channel == NULL || nt_channel_parse(channel) < 0) {
		snprintf(err, errlen, "unknown channel");
		return (-1);
	}
	if (dir == NULL || *dir == '\0') {
		snprintf(err, errlen, "no template directory");
		return (-1);
	}
	for (int i = 0; i < 3; i++) {
		char *tpl = NULL;
		size_t len = 0;

		snprintf(shown, sizeof(shown), "%s.%s.%s", type, channel,
		         exts[i]);
		if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir,
		                      shown) >= sizeof(path)) {
			snprintf(err, errlen,
			         "template directory path too long");
			goto fail;
		}
		rv = read_template(path, shown, &tpl, &len, err, errlen);
		if (rv < 0)
			goto fail;
		if (rv > 0)
			continue;
		found++;
		/* A subject is one line: the file's line break is not part
		 * of it. */
		if (i == 0)
			while (len > 0 &&
			       (tpl[len - 1] == '\n' || tpl[len - 1] == '\r' ||
			        tpl[len - 1] == ' ' || tpl[len - 1] == '\t'))
				tpl[--len] = '\0';
		rv = render(tpl, len, vars, i == 2, shown, &parts[i], err,
		            errlen);
		free(tpl);
		if (rv != 0)
			goto fail;
	}
	if (found == 0)
		return (0);
	out->subject = parts[0];
	out->text = parts[1];
	out->html = parts[2];
	return (1);
fail:
	for (int i = 0; i < 3; i++)
		free(parts[i]);
	return (-1);
}

void
nt_rendered_free(nt_rendered *r)
{
	if (r == NULL)
		return;
	free(r->subject);
	free(r->text);
	free(r->html);
	r->subject = r->text = r->html = NULL;
}
