/* Clocks, strings and randomness. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int64_t
cm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

int64_t
cm_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t) ts.tv_sec);
}

int64_t
cm_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

int64_t
cm_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

size_t
cm_strlcpy(char *dst, const char *src, size_t n)
{
	size_t len = strlen(src);

	if (n > 0) {
		size_t c = len < n - 1 ? len : n - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return (len);
}

/* Touches every byte of both buffers whatever they hold. */
int
cm_ct_equal(const void *a, const void *b, size_t n)
{
	const volatile unsigned char *x = a, *y = b;
	unsigned char d = 0;

	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return (d == 0);
}

int
cm_random(void *buf, size_t n)
{
	unsigned char *p = buf;

	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		p += r;
		n -= (size_t) r;
	}
	return (0);
}

static void
hex64(char *out, uint64_t v)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 15; i >= 0; i--, v >>= 4)
		out[i] = hex[v & 15];
}

void
cm_unique_id(char out[33])
{
	static _Atomic uint64_t prefix, counter;
	uint64_t p = atomic_load_explicit(&prefix, memory_order_relaxed);

	if (p == 0) {
		/* First call (racing callers may each draw one; the first
		 * stored wins and all use it). */
		uint64_t r = 0, zero = 0;
		if (cm_random(&r, sizeof(r)) != 0 || r == 0)
			r = (uint64_t) cm_mono_us() ^
			    ((uint64_t) getpid() << 32) ^ 1;
		atomic_compare_exchange_strong(&prefix, &zero, r);
		p = atomic_load(&prefix);
	}
	hex64(out, p);
	hex64(out + 16,
	      atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed));
	out[32] = '\0';
}
