/*
 * The channel side's entry points (channel.h): channel names, and the
 * providers of the configuration.  Push is always there (its targets are
 * the users' endpoints); email and SMS exist when their provider URL is
 * configured, each with an optional secondary for the engine's failover.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "nt_channels.h"

static const char *const channel_names[NT_CH_COUNT] = {
    [NT_CH_PUSH] = "push",
    [NT_CH_EMAIL] = "email",
    [NT_CH_SMS] = "sms",
    [NT_CH_INAPP] = "inapp",
};

const char *
nt_channel_name(nt_channel c)
{
	if ((int) c < 0 || c >= NT_CH_COUNT)
		return (NULL);
	return (channel_names[c]);
}

int
nt_channel_parse(const char *name)
{
	if (name == NULL)
		return (-1);
	for (int i = 0; i < NT_CH_COUNT; i++)
		if (strcmp(name, channel_names[i]) == 0)
			return (i);
	return (-1);
}

/* A variable's value, NULL when unset or empty. */
static const char *
env_opt(const char *name)
{
	const char *v = cm_env_str(name, NULL);

	return (v != NULL && *v != '\0' ? v : NULL);
}

/*
 * NOTIFIER_SMS_TOKEN is optional (a provider may need none), but when it
 * is given, by value or as NOTIFIER_SMS_TOKEN_FILE, it is a secret like
 * any other: cm_env_secret refuses a short or shipped one outside
 * development mode (fatal at start-up).
 */
static const char *
sms_token(void)
{
	if (env_opt("NOTIFIER_SMS_TOKEN") == NULL &&
	    env_opt("NOTIFIER_SMS_TOKEN_FILE") == NULL)
		return (NULL);
	return (cm_env_secret("NOTIFIER_SMS_TOKEN", NULL));
}

int
nt_providers_make(nt_provider primary[NT_CH_COUNT],
                  nt_provider secondary[NT_CH_COUNT], char *err, size_t errlen)
{
	nt_outbound_cfg cfg = {
	    .allow = env_opt("NOTIFIER_OUTBOUND_ALLOW"),
	    .timeout_ms = 5000,
	};
	const char *from =
	    cm_env_str("NOTIFIER_SMTP_FROM", "notifier@localhost");
	const char *token = NULL, *u;
	char *end;
	long t;

	memset(primary, 0, sizeof(nt_provider) * NT_CH_COUNT);
	memset(secondary, 0, sizeof(nt_provider) * NT_CH_COUNT);
	if ((u = env_opt("NOTIFIER_SEND_TIMEOUT_MS")) != NULL) {
		t = strtol(u, &end, 10);
		if (*end != '\0' || t < 100 || t > 600000) {
			snprintf(err, errlen,
			         "NOTIFIER_SEND_TIMEOUT_MS: want milliseconds, "
			         "100 to 600000");
			return (-1);
		}
		cfg.timeout_ms = (int) t;
	}
	if (nt_push_new(&cfg, &primary[NT_CH_PUSH], err, errlen) != 0)
		goto fail;
	if ((u = env_opt("NOTIFIER_SMTP_URL")) != NULL &&
	    nt_email_new(&cfg, false, u, from, &primary[NT_CH_EMAIL], err,
	                 errlen) != 0)
		goto fail;
	if ((u = env_opt("NOTIFIER_SMTP_URL_2")) != NULL &&
	    nt_email_new(&cfg, true, u, from, &secondary[NT_CH_EMAIL], err,
	                 errlen) != 0)
		goto fail;
	if (env_opt("NOTIFIER_SMS_URL") != NULL ||
	    env_opt("NOTIFIER_SMS_URL_2") != NULL)
		token = sms_token();
	if ((u = env_opt("NOTIFIER_SMS_URL")) != NULL &&
	    nt_sms_new(&cfg, false, u, token, &primary[NT_CH_SMS], err,
	               errlen) != 0)
		goto fail;
	if ((u = env_opt("NOTIFIER_SMS_URL_2")) != NULL &&
	    nt_sms_new(&cfg, true, u, token, &secondary[NT_CH_SMS], err,
	               errlen) != 0)
		goto fail;
	return (0);
fail:
	nt_providers_free(primary, secondary);
	return (-1);
}

void
nt_providers_free(nt_provider primary[NT_CH_COUNT],
                  nt_provider secondary[NT_CH_COUNT])
{
	for (int i = 0; i < NT_CH_COUNT; i++) {
		if (primary[i].ops != NULL && primary[i].ops->free != NULL)
			primary[i].ops->free(primary[i].impl);
		if (secondary[i].ops != NULL && secondary[i].ops->free != NULL)
			secondary[i].ops->free(secondary[i].impl);
		primary[i].ops = secondary[i].ops = NULL;
		primary[i].impl = secondary[i].impl = NULL;
	}
}
