/*
 * Base62 with the alphabet "0-9A-Za-z", most significant digit first, so
 * that codes of the same length sort like the numbers they encode.  The
 * largest uint64_t needs 11 digits ("LygHa16AHYF").
 */
#include <stddef.h>
#include <stdint.h>

#include "base62.h"

static const char b62_alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#define B62_MAXDIGITS 11

/*
 * Digits are produced least significant first into a scratch buffer, then
 * copied out behind the '0' padding.  Nothing is written to out unless the
 * whole result, NUL included, fits.
 */
int
cm_base62_encode(uint64_t v, size_t minlen, char *out, size_t outlen)
{
	char tmp[B62_MAXDIGITS];
	size_t n = 0, len, pad, i;

	do {
		tmp[n++] = b62_alphabet[v % 62];
		v /= 62;
	} while (v != 0);

	len = n < minlen ? minlen : n;
	if (len > INT32_MAX || outlen == 0 || len > outlen - 1)
		return (-1);
	pad = len - n;
	for (i = 0; i < pad; i++)
		out[i] = '0';
	for (i = 0; i < n; i++)
		out[pad + i] = tmp[n - 1 - i];
	out[len] = '\0';
	return ((int) len);
}

static int
b62_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'A' && c <= 'Z')
		return (c - 'A' + 10);
	if (c >= 'a' && c <= 'z')
		return (c - 'a' + 36);
	return (-1);
}

/*
 * Accepts any number of leading '0's (encode pads with them); rejects the
 * empty string, characters outside the alphabet and values above
 * UINT64_MAX.  *out is written only on success.
 */
int
cm_base62_decode(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;
	int d;

	if (s == NULL || len == 0)
		return (-1);
	for (i = 0; i < len; i++) {
		if ((d = b62_digit((unsigned char) s[i])) < 0)
			return (-1);
		if (v > (UINT64_MAX - (uint64_t) d) / 62)
			return (-1);
		v = v * 62 + (uint64_t) d;
	}
	*out = v;
	return (0);
}
