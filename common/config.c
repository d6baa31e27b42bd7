/* Configuration getters over the environment. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

bool
cm_dev_mode(void)
{
	return (cm_env_bool("BACKENDS_DEV_MODE", false));
}

/* Values that were ever shipped as defaults: never secrets outside
 * development mode. */
static const char *const shipped[] = {
    "dev-secret-change-me",
    "local-dev-secret-change-me",
    "shortener-dev-key-change-me",
};

/* The contents of NAME_FILE, or NULL when that variable is unset. */
static const char *
secret_file(const char *name)
{
	char var[128], *buf;
	const char *path;
	FILE *f;
	size_t n;

	snprintf(var, sizeof(var), "%s_FILE", name);
	if ((path = cm_env_str(var, NULL)) == NULL)
		return (NULL);
	if ((f = fopen(path, "r")) == NULL)
		fatal("event=config_error var=%s path=%s msg=\"cannot read "
		      "the secret\"",
		      var, path);
	if ((buf = malloc(4097)) == NULL)
		fatalx("event=oom where=secret_file");
	n = fread(buf, 1, 4097, f);
	fclose(f);
	if (n > 4096)
		fatalx("event=config_error var=%s path=%s msg=\"a secret file "
		       "holds at most 4096 bytes\"",
		       var, path);
	buf[n] = '\0';
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	return (buf);
}

const char *
cm_env_secret(const char *name, const char *dev_value)
{
	const char *v = cm_env_str(name, NULL), *why = NULL;
	bool dev = cm_dev_mode();
	char unset[160];

	if (v == NULL && (v = secret_file(name)) != NULL && *v == '\0')
		v = NULL;
	if (v == NULL) {
		snprintf(unset, sizeof(unset), "is not set (nor %s_FILE)",
		         name);
		why = unset;
	} else if (strlen(v) < CM_SECRET_MIN) {
		why = "is shorter than 32 bytes";
	} else {
		for (size_t i = 0; i < sizeof(shipped) / sizeof(shipped[0]);
		     i++)
			if (strcmp(v, shipped[i]) == 0)
				why = "is a development value the project "
				      "ships";
	}
	if (v != NULL && dev_value != NULL && strcmp(v, dev_value) == 0)
		why = "is a development value the project ships";
	if (why == NULL)
		return (v);
	if (!dev)
		fatalx(
		    "event=config_error var=%s msg=\"%s %s: give a secret "
		    "of at least 32 bytes, e.g. from `openssl rand -hex 32`; "
		    "BACKENDS_DEV_MODE=1 allows development values, for "
		    "local use only\"",
		    name, name, why);
	log_warnx("event=config var=%s msg=\"%s %s: development mode goes "
	          "on with %s; never outside local use\"",
	          name, name, why, v == NULL ? "a development value" : "it");
	return (v != NULL ? v : dev_value);
}
