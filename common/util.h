/* Small helpers shared by everything: clocks, strings, the protobuf cast. */
#ifndef CM_UTIL_H
#define CM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define CM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Wall clock, Unix epoch milliseconds / seconds. */
int64_t cm_now_ms(void);
int64_t cm_now_s(void);
/* Monotonic clock in milliseconds and microseconds. */
int64_t cm_mono_ms(void);
int64_t cm_mono_us(void);

/*
 * protobuf-c declares string fields as char * although we never write
 * through them; this is the one place a const char * loses its const.
 */
static inline char *
cm_pbstr(const char *s)
{
	return ((char *) (uintptr_t) s);
}

/* strlcpy semantics: returns strlen(src); dst always terminated if n > 0. */
size_t cm_strlcpy(char *dst, const char *src, size_t n);
/* Constant-time comparison of two buffers of the same length. */
int cm_ct_equal(const void *a, const void *b, size_t n);
/* Fills buf with n random bytes from the kernel; 0 on success. */
int cm_random(void *buf, size_t n);
/*
 * A unique id, 32 hex characters plus NUL into out[33]: a random 64-bit
 * prefix drawn once per process, then a 64-bit counter.  Unique across
 * processes (with overwhelming probability) and cheap -- no system call --
 * but predictable within a process: for request ids and lease tokens,
 * never for secrets.
 */
void cm_unique_id(char out[33]);

#endif
