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

#endif
