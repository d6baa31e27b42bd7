/*
 * A stand-in for the channels (channels.c, template.c and the transports)
 * until they are built: the build uses this file only while
 * services/notifier/channels.c does not exist (see CMakeLists.txt).
 *
 * It keeps the contract of channel.h and template.h without a transport:
 * push has a provider that refuses every message as permanent ("push
 * channel not built"), email and SMS are not configured, and no template
 * exists, so every message goes out with its own title and body.  The
 * in-app channel is the engine's and works in full.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "template.h"

static const char *const names[NT_CH_COUNT] = {
    [NT_CH_PUSH] = "push",
    [NT_CH_EMAIL] = "email",
    [NT_CH_SMS] = "sms",
    [NT_CH_INAPP] = "inapp",
};

const char *
nt_channel_name(nt_channel c)
{
	return ((unsigned) c < NT_CH_COUNT ? names[c] : NULL);
}

int
nt_channel_parse(const char *name)
{
	for (int c = 0; c < NT_CH_COUNT; c++)
		if (name != NULL && strcmp(name, names[c]) == 0)
			return (c);
	return (-1);
}

static void
stub_send(void *impl, const nt_message *m, const char *target, nt_result *r)
{
	(void) impl;
	(void) m;
	(void) target;
	memset(r, 0, sizeof(*r));
	r->outcome = NT_PERMANENT;
	snprintf(r->error, sizeof(r->error), "push channel not built");
}

static void
stub_free(void *impl)
{
	(void) impl;
}

static const nt_provider_ops stub_push = {
    .name = "push-stub",
    .channel = NT_CH_PUSH,
    .send = stub_send,
    .free = stub_free,
};

int
nt_providers_make(nt_provider primary[NT_CH_COUNT],
                  nt_provider secondary[NT_CH_COUNT], char *err, size_t errlen)
{
	(void) err;
	(void) errlen;
	memset(primary, 0, sizeof(*primary) * NT_CH_COUNT);
	memset(secondary, 0, sizeof(*secondary) * NT_CH_COUNT);
	primary[NT_CH_PUSH].ops = &stub_push;
	return (0);
}

void
nt_providers_free(nt_provider primary[NT_CH_COUNT],
                  nt_provider secondary[NT_CH_COUNT])
{
	for (int c = 0; c < NT_CH_COUNT; c++) {
		if (primary[c].ops != NULL && primary[c].ops->free != NULL)
			primary[c].ops->free(primary[c].impl);
		if (secondary[c].ops != NULL && secondary[c].ops->free != NULL)
			secondary[c].ops->free(secondary[c].impl);
		primary[c].ops = secondary[c].ops = NULL;
	}
}

int
nt_template_render(const char *dir, const char *type, const char *channel,
                   const nt_vars *vars, nt_rendered *out, char *err,
                   size_t errlen)
{
	(void) dir;
	(void) type;
	(void) channel;
	(void) vars;
	(void) out;
	(void) err;
	(void) errlen;
	return (0);
}

void
nt_rendered_free(nt_rendered *r)
{
	free(r->subject);
	free(r->text);
	free(r->html);
	r->subject = r->text = r->html = NULL;
}
