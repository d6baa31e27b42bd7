/*
 * Content types of cached values: what the service accepts (cachesvc.h).
 * A recursive-descent check of RFC 9110's media-type grammar, minus
 * obs-text (bytes over 0x7e): the type goes back out in a Content-Type
 * header, so every byte must be one a header may carry.
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "cachesvc.h"

/* RFC 9110 tchar. */
static bool
tchar(unsigned char ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9'))
		return (true);
	return (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Skips a token at *i; false if there is none. */
static bool
token(const unsigned char *s, size_t len, size_t *i)
{
	size_t start = *i;

	while (*i < len && tchar(s[*i]))
		(*i)++;
	return (*i > start);
}

static void
ows(const unsigned char *s, size_t len, size_t *i)
{
	while (*i < len && (s[*i] == ' ' || s[*i] == '\t'))
		(*i)++;
}

/* Skips a quoted-string at *i (which is on its opening quote). */
static bool
quoted(const unsigned char *s, size_t len, size_t *i)
{
	for ((*i)++; *i < len; (*i)++) {
		unsigned char ch = s[*i];

		if (ch == '"') {
			(*i)++;
			return (true);
		}
		if (ch == '\\') {
			if (++(*i) == len)
				return (false);
			ch = s[*i];
			if (ch != '\t' && (ch < 0x20 || ch > 0x7e))
				return (false);
		} else if (ch != '\t' && (ch < 0x20 || ch > 0x7e)) {
			return (false);
		}
	}
	return (false);
}

bool
cachesvc_content_type_ok(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *) str;
	size_t i = 0;

	if (len == 0 || len > CACHESVC_CTYPE_MAX)
		return (false);
	if (!token(s, len, &i) || i == len || s[i++] != '/' ||
	    !token(s, len, &i))
		return (false);
	while (i < len) {
		ows(s, len, &i);
		if (i == len || s[i++] != ';')
			return (false);
		ows(s, len, &i);
		if (i == len || s[i] == ';')
			continue; /* an empty parameter */
		if (!token(s, len, &i) || i == len || s[i++] != '=')
			return (false);
		if (i < len && s[i] == '"') {
			if (!quoted(s, len, &i))
				return (false);
		} else if (!token(s, len, &i)) {
			return (false);
		}
	}
	/* No white space at the end (OWS before ';' is taken above). */
	return (s[len - 1] != ' ' && s[len - 1] != '\t');
}
