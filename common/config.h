/*
 * Configuration from environment variables (12-factor).  Every getter takes
 * the default used when the variable is unset or empty.
 */
#ifndef CM_CONFIG_H
#define CM_CONFIG_H

#include <stdbool.h>

/* Returns the variable's value or def; the string is not to be freed. */
const char *cm_env_str(const char *name, const char *def);
/* Integer value; a malformed or out-of-range value is fatal at start-up. */
long cm_env_int(const char *name, long def, long min, long max);
/* "1", "true", "yes", "on" are true; "0", "false", "no", "off" false. */
bool cm_env_bool(const char *name, bool def);

/*
 * Development mode: BACKENDS_DEV_MODE=1, which the local stack and the
 * tests set and compose never does.  It allows the development secrets
 * below (with a warning at start-up, which cm_cli_main logs).
 */
bool cm_dev_mode(void);

/*
 * A secret: the variable's value, or else the contents of the file that
 * NAME_FILE names (as compose passes the secrets its init service made;
 * one trailing newline dropped).  Outside development mode a secret that
 * is missing, one of the development values the project has ever shipped,
 * or shorter than CM_SECRET_MIN bytes is fatal at start-up, with a message
 * saying how to make one; in development mode a missing one is dev_value,
 * and a weak one is used with a warning.  The string lives as long as the
 * process.
 */
#define CM_SECRET_MIN 32
const char *cm_env_secret(const char *name, const char *dev_value);

#endif
