/* Configuration getters over the environment. */
#include <errno.h>
#include <stdlib.h>
#include <strings.h>

#include "config.h"
#include "log.h"

const char *
cm_env_str(const char *name, const char *def)
{
	const char *v = getenv(name);

	return ((v == NULL || *v == '\0') ? def : v);
}

long
cm_env_int(const char *name, long def, long min, long max)
{
	const char *v = getenv(name);
	char *end;
	long n;

	if (v == NULL || *v == '\0')
		return (def);
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < min || n > max)
		fatalx("event=config_error var=%s value=\"%s\" "
		       "expected=\"integer in [%ld, %ld]\"",
		       name, v, min, max);
	return (n);
}

bool
cm_env_bool(const char *name, bool def)
{
	const char *v = getenv(name);

	if (v == NULL || *v == '\0')
		return (def);
	if (strcasecmp(v, "1") == 0 || strcasecmp(v, "true") == 0 ||
	    strcasecmp(v, "yes") == 0 || strcasecmp(v, "on") == 0)
		return (true);
	if (strcasecmp(v, "0") == 0 || strcasecmp(v, "false") == 0 ||
	    strcasecmp(v, "no") == 0 || strcasecmp(v, "off") == 0)
		return (false);
	fatalx("event=config_error var=%s value=\"%s\" expected=boolean", name,
	       v);
}
