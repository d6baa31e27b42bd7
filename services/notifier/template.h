/*
 * Templates: files deploy/templates/<type>.<channel>.{subject,txt,html}
 * (NOTIFIER_TEMPLATES names the directory) with {{var}} placeholders.
 * Values are inserted as they are in subject and txt, HTML-escaped in html.
 * A placeholder whose variable is missing is an error (the Send is refused
 * with INVALID_ARGUMENT); with no template for the type and channel, the
 * message's own title and body are used.
 */
#ifndef NT_TEMPLATE_H
#define NT_TEMPLATE_H

#include <stddef.h>

/* Variables: parallel arrays of n names and values. */
typedef struct nt_vars {
	size_t n;
	const char *const *names;
	const char *const *values;
} nt_vars;

/* The rendered parts; NULL where the template has no such file. */
typedef struct nt_rendered {
	char *subject, *text, *html; /* malloc'd */
} nt_rendered;

/*
 * Renders the template of type and channel from dir.  Returns 1 when a
 * template exists and was rendered, 0 when there is none for them (out
 * untouched), -1 on an error (a missing variable, an unreadable or bad
 * file, a type that is not [a-z0-9._-]{1,64}) with the reason in err.
 */
int nt_template_render(const char *dir, const char *type, const char *channel,
                       const nt_vars *vars, nt_rendered *out, char *err,
                       size_t errlen);
void nt_rendered_free(nt_rendered *r);

#endif
