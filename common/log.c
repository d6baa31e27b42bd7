/*
 * Structured logging: logfmt lines on stderr, one write(2) per line so that
 * lines from different threads never interleave.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *log_service = "-";
static enum cm_log_level log_level = CM_LOG_INFO;
static _Thread_local char log_rid[64];

void
log_init(const char *service)
{
	const char *lv = getenv("LOG_LEVEL");

	log_service = service;
	if (lv == NULL || *lv == '\0')
		return;
	if (strcasecmp(lv, "debug") == 0)
		log_level = CM_LOG_DEBUG;
	else if (strcasecmp(lv, "info") == 0)
		log_level = CM_LOG_INFO;
	else if (strcasecmp(lv, "warn") == 0 || strcasecmp(lv, "warning") == 0)
		log_level = CM_LOG_WARN;
	else if (strcasecmp(lv, "error") == 0)
		log_level = CM_LOG_ERROR;
}

void
log_set_level(enum cm_log_level level)
{
	log_level = level;
}

void
log_set_rid(const char *rid)
{
	if (rid == NULL)
		log_rid[0] = '\0';
	else
		snprintf(log_rid, sizeof(log_rid), "%s", rid);
}

/*
 * Formats one line: timestamp, level, service, request id, the caller's
 * fields and an optional error string, then writes it in one call.
 */
static void log_emit(enum cm_log_level, const char *, const char *, va_list)
    __attribute__((format(printf, 3, 0)));

static void
log_emit(enum cm_log_level lv, const char *err, const char *fmt, va_list ap)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	char line[4096];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	if (lv < log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	r = snprintf(line, sizeof(line),
	             "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s svc=%s",
	             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	             tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[lv],
	             log_service);
	n = (size_t) r;
	if (log_rid[0] != '\0' && n < sizeof(line))
		n += (size_t) snprintf(line + n, sizeof(line) - n, " rid=%s",
		                       log_rid);
	if (n < sizeof(line) - 1) {
		line[n++] = ' ';
		r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (r > 0)
			n += (size_t) r;
	}
	if (err != NULL && n < sizeof(line))
		n += (size_t) snprintf(line + n, sizeof(line) - n,
		                       " err=\"%s\"", err);
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void) !write(STDERR_FILENO, line, n);
}

#define LOG_FN(fn, lv)                                                         \
	void fn(const char *fmt, ...)                                          \
	{                                                                      \
		va_list ap;                                                    \
		va_start(ap, fmt);                                             \
		log_emit(lv, NULL, fmt, ap);                                   \
		va_end(ap);                                                    \
	}

LOG_FN(log_debug, CM_LOG_DEBUG)
LOG_FN(log_info, CM_LOG_INFO)
LOG_FN(log_warnx, CM_LOG_WARN)

void
log_warn(const char *fmt, ...)
{
	char errbuf[128];
	va_list ap;

	strerror_r(errno, errbuf, sizeof(errbuf));
	va_start(ap, fmt);
	log_emit(CM_LOG_WARN, errbuf, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	char errbuf[128];
	va_list ap;

	strerror_r(errno, errbuf, sizeof(errbuf));
	va_start(ap, fmt);
	log_emit(CM_LOG_ERROR, errbuf, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(CM_LOG_ERROR, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
