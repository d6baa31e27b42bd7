/*
 * Logging in the OpenBSD daemons' style, with structured output: one line
 * per event in logfmt, "ts=... level=... svc=... [rid=...] <fields>".
 * Callers write their fields as key=value pairs in the format string, e.g.
 * log_info("event=listen addr=%s", url).  The request id of the request a
 * thread is working on (log_set_rid) is added to every line it writes.
 * Lines go to stderr, written with one write(2) so threads do not interleave.
 */
#ifndef CM_LOG_H
#define CM_LOG_H

#include <stdarg.h>

enum cm_log_level { CM_LOG_DEBUG, CM_LOG_INFO, CM_LOG_WARN, CM_LOG_ERROR };

/* Sets the service name and the level from LOG_LEVEL (debug/info/warn/error).
 */
void log_init(const char *service);
void log_set_level(enum cm_log_level level);
/* Thread-local request id for the lines this thread writes; NULL clears. */
void log_set_rid(const char *rid);

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* As log_warnx, appending err="strerror(errno)". */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

#endif
