/*
 * JSON <-> protobuf-c transcoding, driven only by the message descriptors.
 *
 * protobuf-c lays a message out as a C struct and its descriptors say, for
 * every field, where the value lives (offset) and where its quantifier
 * lives (quantifier_offset): the has_ flag of a proto2/proto3 optional
 * scalar or bytes field, the n_ count of a repeated field, or the case
 * member of a oneof (PROTOBUF_C_FIELD_FLAG_ONEOF; checked before the label,
 * as protobuf-c itself does).  Optional strings and messages have no has_
 * flag: a NULL pointer means unset.  Value storage by type:
 *
 *	int32, sint32, sfixed32, enum		int32_t (enums are int-sized)
 *	uint32, fixed32				uint32_t
 *	int64, sint64, sfixed64			int64_t
 *	uint64, fixed64				uint64_t
 *	float, double, bool			float, double,
 *protobuf_c_boolean string, bytes, message			char *,
 *ProtobufCBinaryData, ProtobufCMessage *
 *
 * All field access goes through memcpy at those offsets, so no pointer is
 * ever formed with a type the storage does not have.
 *
 * Decoding is strict, because its input is whatever a client sent: unknown
 * keys, a field given twice (e.g. as "long_url" and "longUrl"), two members
 * of one oneof, wrong JSON types, non-integral or out-of-range numbers,
 * strings with NUL bytes and bad base64 are all errors with a message naming
 * the field by its proto path ("urls[2].long_url").  Integers may come as
 * JSON integers, as integral JSON reals (1e3) or as strings holding a clean
 * decimal integer ("-12", no sign '+', no blanks); that is the only way to
 * give a uint64 above INT64_MAX, since jansson stores integers as long long
 * and fails to parse bigger ones.  Floats take numbers, numeric strings and
 * "NaN", "Infinity", "-Infinity".  null leaves a field as initialised.
 * Enums take a value's full name, its short name (see pbj_enum_prefix) or
 * its number.  Missing proto2 required fields are not an error here (a URL
 * parameter may still supply them); sub-messages nest at most 100 deep.
 *
 * A map<K, V> field is, in protobuf-c, a repeated field of a nested entry
 * message with fields key = 1 and value = 2 (pbj_map_entry).  In JSON it
 * is an object whose keys are the map's keys as text; decoding builds one
 * entry per key (at most CM_PBJSON_MAP_MAX), with integer keys in
 * canonical decimal only, so that the distinct keys of a JSON object are
 * distinct map keys.  Keys a JSON text repeats are the parser's to
 * refuse (JSON_REJECT_DUPLICATES; see pbjson.h).
 *
 * Encoding writes every field in field-number order under its proto name.
 * Fields with explicit presence that are unset (has_ false, a NULL optional
 * string or message, a oneof member that is not the current case) are null,
 * so every key is always present and the output decodes back to the same
 * message.  64-bit integers are JSON numbers, except uint64 values above
 * INT64_MAX, which jansson cannot hold and are written as decimal strings;
 * non-finite floats are the strings "NaN", "Infinity", "-Infinity"; enums
 * are short names ("high"; the full name where the short one would read
 * back as another value; numbers without a name stay numbers); maps are
 * objects, with every value present (an entry without its message value
 * has the empty message).
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "arena.h"
#include "log.h"
#include "pbjson.h"

#define PBJ_PATHMAX 256
/*
 * Sub-message nesting accepted in JSON, as protobuf's own parsers limit
 * recursion to 100: jansson alone allows 2048 levels, and each one costs a
 * few hundred bytes of stack here.
 */
#define PBJ_MAXDEPTH 100

/* Decoder state: where errors go and the path of the field being decoded. */
struct pbj_dec {
	cm_arena *arena;
	char *err;
	size_t errlen;
	size_t pathlen;
	int depth;
	char path[PBJ_PATHMAX];
};

/* Scratch storage big enough and aligned for any single field value. */
union pbj_value {
	int32_t i32;
	uint32_t u32;
	int64_t i64;
	uint64_t u64;
	float f;
	double d;
	protobuf_c_boolean b;
	char *s;
	ProtobufCBinaryData bin;
	ProtobufCMessage *m;
};

/* A parsed integer before it is fitted to a field type. */
struct pbj_int {
	int neg;
	uint64_t mag;
};

#define PBJ_SEEN 0x01 /* key present in this object */
#define PBJ_SET  0x02 /* ... and not null */

static int pbj_dec_message(struct pbj_dec *, const ProtobufCMessageDescriptor *,
                           json_t *, ProtobufCMessage *);
static json_t *pbj_enc_message(const ProtobufCMessage *);

/* Field-independent helpers. */

static size_t
pbj_type_size(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		return (sizeof(int32_t));
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return (sizeof(int64_t));
	case PROTOBUF_C_TYPE_FLOAT:
		return (sizeof(float));
	case PROTOBUF_C_TYPE_DOUBLE:
		return (sizeof(double));
	case PROTOBUF_C_TYPE_BOOL:
		return (sizeof(protobuf_c_boolean));
	case PROTOBUF_C_TYPE_STRING:
		return (sizeof(char *));
	case PROTOBUF_C_TYPE_BYTES:
		return (sizeof(ProtobufCBinaryData));
	case PROTOBUF_C_TYPE_MESSAGE:
		return (sizeof(ProtobufCMessage *));
	}
	fatalx("pbjson: unknown protobuf-c field type %d", (int) type);
}

static const char *
pbj_type_name(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_INT32:
		return ("int32");
	case PROTOBUF_C_TYPE_SINT32:
		return ("sint32");
	case PROTOBUF_C_TYPE_SFIXED32:
		return ("sfixed32");
	case PROTOBUF_C_TYPE_INT64:
		return ("int64");
	case PROTOBUF_C_TYPE_SINT64:
		return ("sint64");
	case PROTOBUF_C_TYPE_SFIXED64:
		return ("sfixed64");
	case PROTOBUF_C_TYPE_UINT32:
		return ("uint32");
	case PROTOBUF_C_TYPE_FIXED32:
		return ("fixed32");
	case PROTOBUF_C_TYPE_UINT64:
		return ("uint64");
	case PROTOBUF_C_TYPE_FIXED64:
		return ("fixed64");
	case PROTOBUF_C_TYPE_FLOAT:
		return ("float");
	case PROTOBUF_C_TYPE_DOUBLE:
		return ("double");
	case PROTOBUF_C_TYPE_BOOL:
		return ("bool");
	case PROTOBUF_C_TYPE_ENUM:
		return ("enum");
	case PROTOBUF_C_TYPE_STRING:
		return ("string");
	case PROTOBUF_C_TYPE_BYTES:
		return ("bytes");
	case PROTOBUF_C_TYPE_MESSAGE:
		return ("message");
	}
	return ("unknown");
}

static int
pbj_type_is_int(ProtobufCType type)
{
	return (type <= PROTOBUF_C_TYPE_FIXED64);
}

/*
 * Whether key is the lowerCamelCase JSON name of the snake_case proto name,
 * computed as protoc computes json_name: each '_' is dropped and the letter
 * after it upper-cased; nothing else changes.
 */
static int
pbj_camel_eq(const char *name, const char *key)
{
	int up = 0;
	char c;

	for (; *name != '\0'; name++) {
		if (*name == '_') {
			up = 1;
			continue;
		}
		c = *name;
		if (up && c >= 'a' && c <= 'z')
			c = (char) (c - 'a' + 'A');
		up = 0;
		if (*key++ != c)
			return (0);
	}
	return (*key == '\0');
}

/* The field named key, by proto name first, then by JSON name; or NULL. */
static const ProtobufCFieldDescriptor *
pbj_find_field(const ProtobufCMessageDescriptor *desc, const char *key)
{
	const ProtobufCFieldDescriptor *f;
	unsigned i;

	if ((f = protobuf_c_message_descriptor_get_field_by_name(desc, key)) !=
	    NULL)
		return (f);
	for (i = 0; i < desc->n_fields; i++)
		if (pbj_camel_eq(desc->fields[i].name, key))
			return (&desc->fields[i]);
	return (NULL);
}

/*
 * Length of the well-formed UTF-8 sequence (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF) at s[0..n), or 0 if there is none.
 */
static size_t
pbj_utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (c < 0x80)
		return (1);
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return (0);
	if (n < len || s[1] < lo || s[1] > hi)
		return (0);
	for (i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return (0);
	return (len);
}

static int
pbj_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t i = 0, k;

	while (i < n) {
		if ((k = pbj_utf8_seq(p + i, n - i)) == 0)
			return (0);
		i += k;
	}
	return (1);
}

static int
pbj_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return (c - 'A');
	if (c >= 'a' && c <= 'z')
		return (c - 'a' + 26);
	if (c >= '0' && c <= '9')
		return (c - '0' + 52);
	if (c == '+' || c == '-')
		return (62);
	if (c == '/' || c == '_')
		return (63);
	return (-1);
}

/*
 * Decodes base64 in the standard or URL-safe alphabet, padding optional
 * (but if '=' is present, the length must be a multiple of four).  No
 * blanks.  out must hold (n / 4) * 3 + 2 bytes.  Returns 0 or -1.
 */
static int
pbj_b64_decode(const char *s, size_t n, unsigned char *out, size_t *outlen)
{
	size_t i, o = 0, pad = 0;
	uint32_t acc = 0;
	int v, k = 0;

	if (n > 0 && s[n - 1] == '=') {
		if (n % 4 != 0)
			return (-1);
		pad = (n >= 2 && s[n - 2] == '=') ? 2 : 1;
		n -= pad;
	}
	if (n % 4 == 1)
		return (-1);
	for (i = 0; i < n; i++) {
		if ((v = pbj_b64_value((unsigned char) s[i])) < 0)
			return (-1);
		acc = (acc << 6) | (uint32_t) v;
		if (++k == 4) {
			out[o++] = (unsigned char) (acc >> 16);
			out[o++] = (unsigned char) (acc >> 8);
			out[o++] = (unsigned char) acc;
			acc = 0;
			k = 0;
		}
	}
	if (k == 2) {
		out[o++] = (unsigned char) (acc >> 4);
	} else if (k == 3) {
		out[o++] = (unsigned char) (acc >> 10);
		out[o++] = (unsigned char) (acc >> 2);
	}
	*outlen = o;
	return (0);
}

/*
 * Parses a clean decimal integer: an optional '-', then one or more digits,
 * nothing else.  Returns 0, -1 if malformed, -2 if the magnitude exceeds
 * UINT64_MAX.
 */
static int
pbj_parse_dec(const char *s, size_t n, struct pbj_int *out)
{
	uint64_t mag = 0;
	size_t i = 0;
	int neg = 0, d;

	if (n > 0 && s[0] == '-') {
		neg = 1;
		i = 1;
	}
	if (i == n)
		return (-1);
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return (-1);
		d = s[i] - '0';
		if (mag > (UINT64_MAX - (uint64_t) d) / 10) {
			/* Keep scanning: "12x" is malformed, not too big. */
			for (i++; i < n; i++)
				if (s[i] < '0' || s[i] > '9')
					return (-1);
			return (-2);
		}
		mag = mag * 10 + (uint64_t) d;
	}
	out->neg = neg && mag != 0;
	out->mag = mag;
	return (0);
}

/*
 * Fits v to the integer field type and stores it at dst.  Returns 0, or -1
 * if v is out of the type's range.
 */
static int
pbj_int_store(ProtobufCType type, const struct pbj_int *v, void *dst)
{
	int32_t i32;
	uint32_t u32;
	int64_t i64;

	switch (type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		if (v->neg ? v->mag > (uint64_t) INT32_MAX + 1
		           : v->mag > INT32_MAX)
			return (-1);
		i32 = v->neg ? (int32_t) (-(int64_t) v->mag) : (int32_t) v->mag;
		memcpy(dst, &i32, sizeof(i32));
		return (0);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		if (v->neg || v->mag > UINT32_MAX)
			return (-1);
		u32 = (uint32_t) v->mag;
		memcpy(dst, &u32, sizeof(u32));
		return (0);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		if (v->neg ? v->mag > (uint64_t) INT64_MAX + 1
		           : v->mag > INT64_MAX)
			return (-1);
		if (!v->neg)
			i64 = (int64_t) v->mag;
		else if (v->mag == (uint64_t) INT64_MAX + 1)
			i64 = INT64_MIN;
		else
			i64 = -(int64_t) v->mag;
		memcpy(dst, &i64, sizeof(i64));
		return (0);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		if (v->neg)
			return (-1);
		memcpy(dst, &v->mag, sizeof(v->mag));
		return (0);
	default:
		fatalx("pbjson: %s is not an integer type",
		       pbj_type_name(type));
	}
}

/* Decoder errors. */

static void pbj_path_push(struct pbj_dec *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Appends to the error path.  A path too long for the buffer is cut; the
 * saved length restores it exactly, since it never exceeds the buffer.
 */
static void
pbj_path_push(struct pbj_dec *d, const char *fmt, ...)
{
	va_list ap;
	size_t room = sizeof(d->path) - d->pathlen;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(d->path + d->pathlen, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		d->pathlen += (size_t) n < room ? (size_t) n : room - 1;
}

static void
pbj_path_field(struct pbj_dec *d, const char *name)
{
	pbj_path_push(d, d->pathlen == 0 ? "%s" : ".%s", name);
}

static void
pbj_path_pop(struct pbj_dec *d, size_t len)
{
	d->pathlen = len;
	d->path[len] = '\0';
}

static int pbj_err(struct pbj_dec *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Formats "field \"<path>\": <message>" into the caller's buffer; -1. */
static int
pbj_err(struct pbj_dec *d, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (d->err == NULL || d->errlen == 0)
		return (-1);
	if (d->pathlen > 0)
		n = snprintf(d->err, d->errlen, "field \"%s\": ", d->path);
	if (n < 0 || (size_t) n >= d->errlen)
		return (-1);
	va_start(ap, fmt);
	vsnprintf(d->err + n, d->errlen - (size_t) n, fmt, ap);
	va_end(ap);
	return (-1);
}

static int
pbj_err_expected(struct pbj_dec *d, const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
		return (pbj_err(d, "expected a number"));
	case PROTOBUF_C_TYPE_BOOL:
		return (pbj_err(d, "expected true or false"));
	case PROTOBUF_C_TYPE_ENUM:
		return (pbj_err(
		    d, "expected a name of enum %s",
		    ((const ProtobufCEnumDescriptor *) f->descriptor)->name));
	case PROTOBUF_C_TYPE_STRING:
		return (pbj_err(d, "expected a string"));
	case PROTOBUF_C_TYPE_BYTES:
		return (pbj_err(d, "expected a base64 string"));
	case PROTOBUF_C_TYPE_MESSAGE:
		return (pbj_err(d, "expected an object"));
	default:
		return (pbj_err(d, "expected an integer"));
	}
}

static int
pbj_err_range(struct pbj_dec *d, const ProtobufCFieldDescriptor *f)
{
	return (
	    pbj_err(d, "value out of range for %s", pbj_type_name(f->type)));
}

/* Values from text: URL parameters, and JSON strings for non-string types. */

static int
pbj_text_int(struct pbj_dec *d, const ProtobufCFieldDescriptor *f,
             const char *s, size_t n, void *dst)
{
	struct pbj_int v;
	int rv;

	if ((rv = pbj_parse_dec(s, n, &v)) == -1)
		return (pbj_err(d, "expected an integer"));
	if (rv == -2 || pbj_int_store(f->type, &v, dst) != 0)
		return (pbj_err_range(d, f));
	return (0);
}

/* Stores a double into a float or double field, checking float's range. */
static int
pbj_store_real(struct pbj_dec *d, const ProtobufCFieldDescriptor *f, double x,
               void *dst)
{
	float fx;

	if (f->type == PROTOBUF_C_TYPE_DOUBLE) {
		memcpy(dst, &x, sizeof(x));
		return (0);
	}
	if (isfinite(x) && (x > FLT_MAX || x < -FLT_MAX))
		return (pbj_err_range(d, f));
	fx = (float) x;
	memcpy(dst, &fx, sizeof(fx));
	return (0);
}

/*
 * A float from text: "NaN", "Infinity", "-Infinity", or a decimal number
 * (digits, sign, point, exponent: no blanks, hex or "inf") that strtod
 * reads to the end.
 */
static int
pbj_text_real(struct pbj_dec *d, const ProtobufCFieldDescriptor *f,
              const char *s, size_t n, void *dst)
{
	char *buf, *end;
	double x;
	size_t i;

	if (n == 3 && memcmp(s, "NaN", 3) == 0)
		return (pbj_store_real(d, f, NAN, dst));
	if (n == 8 && memcmp(s, "Infinity", 8) == 0)
		return (pbj_store_real(d, f, INFINITY, dst));
	if (n == 9 && memcmp(s, "-Infinity", 9) == 0)
		return (pbj_store_real(d, f, -INFINITY, dst));
	if (n == 0)
		return (pbj_err(d, "expected a number"));
	for (i = 0; i < n; i++)
		if (strchr("0123456789+-.eE", s[i]) == NULL || s[i] == '\0')
			return (pbj_err(d, "expected a number"));
	buf = cm_arena_strndup(d->arena, s, n);
	errno = 0;
	x = strtod(buf, &end);
	if (end != buf + n)
		return (pbj_err(d, "expected a number"));
	if (errno == ERANGE && isinf(x))
		return (pbj_err_range(d, f));
	return (pbj_store_real(d, f, x, dst));
}

/*
 * Enum value names.  A value is known by its full name (PRIORITY_HIGH) and
 * by its short name (high): the full name lower-cased, without the prefix
 * the enum type's name gives its values in the style guides (Priority ->
 * PRIORITY_, ServingStatus -> SERVING_STATUS_).  The prefix is recognised
 * as protoc recognises it when it checks proto3 enums for names that
 * collide (case and '_' ignored), and must be followed by a '_' and by a
 * rest that does not start with a digit: COLORFUL in enum Color stays
 * "colorful", PRIORITY_1 stays "priority_1" (so no short name is ever
 * read as a number).  Value names are ASCII identifiers.
 */

static char
pbj_lower(char c)
{
	return (c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c);
}

/* Length of the prefix of name that its short name drops; 0 if none. */
static size_t
pbj_enum_prefix(const ProtobufCEnumDescriptor *ed, const char *name)
{
	const char *t = ed->short_name;
	size_t i = 0, j = 0;

	if (t == NULL || *t == '\0')
		return (0);
	while (t[j] != '\0') {
		if (t[j] == '_') {
			j++;
			continue;
		}
		if (name[i] == '_') {
			i++;
			continue;
		}
		/* a mismatch stops at the end of name, too */
		if (pbj_lower(name[i]) != pbj_lower(t[j]))
			return (0);
		i++;
		j++;
	}
	if (name[i] != '_')
		return (0);
	while (name[i] == '_')
		i++;
	if (name[i] == '\0' || (name[i] >= '0' && name[i] <= '9'))
		return (0);
	return (i);
}

/* Whether s[0..n) is the short name of value ev (lower case only). */
static int
pbj_enum_short_eq(const ProtobufCEnumDescriptor *ed,
                  const ProtobufCEnumValue *ev, const char *s, size_t n)
{
	const char *p = ev->name + pbj_enum_prefix(ed, ev->name);
	size_t k;

	for (k = 0; k < n; k++)
		if (p[k] == '\0' || pbj_lower(p[k]) != s[k])
			return (0);
	return (p[n] == '\0');
}

/*
 * The value whose short name is s[0..n), or NULL.  Two values with
 * different numbers may share one (RED and COLOR_RED in enum Color, which
 * protoc allows in proto2): then NULL, *ambiguous set.
 */
static const ProtobufCEnumValue *
pbj_enum_by_short(const ProtobufCEnumDescriptor *ed, const char *s, size_t n,
                  int *ambiguous)
{
	const ProtobufCEnumValue *found = NULL;
	unsigned i;

	*ambiguous = 0;
	for (i = 0; i < ed->n_values; i++) {
		if (!pbj_enum_short_eq(ed, &ed->values[i], s, n))
			continue;
		if (found == NULL)
			found = &ed->values[i];
		else if (found->value != ed->values[i].value) {
			*ambiguous = 1;
			return (NULL);
		}
	}
	return (found);
}

/*
 * An enum value by its full name, its short name, or its number if that
 * is a defined value.
 */
static int
pbj_text_enum(struct pbj_dec *d, const ProtobufCFieldDescriptor *f,
              const char *s, size_t n, void *dst)
{
	const ProtobufCEnumDescriptor *ed = f->descriptor;
	const ProtobufCEnumValue *ev = NULL;
	struct pbj_int v;
	int32_t x;
	int ambiguous = 0;
	char *name;

	if (memchr(s, '\0', n) == NULL) {
		name = cm_arena_strndup(d->arena, s, n);
		ev = protobuf_c_enum_descriptor_get_value_by_name(ed, name);
		if (ev == NULL)
			ev = pbj_enum_by_short(ed, s, n, &ambiguous);
	}
	/* a short name is an identifier: its text is ASCII, and short */
	if (ambiguous)
		return (pbj_err(d,
		                "ambiguous value \"%.*s\" for enum %s (give "
		                "its full name)",
		                (int) n, s, ed->name));
	if (ev == NULL && pbj_parse_dec(s, n, &v) == 0 &&
	    pbj_int_store(PROTOBUF_C_TYPE_INT32, &v, &x) == 0)
		ev = protobuf_c_enum_descriptor_get_value(ed, x);
	if (ev == NULL) {
		if (n > 64 || !pbj_utf8_valid(s, n) || memchr(s, '\0', n))
			return (
			    pbj_err(d, "unknown value for enum %s", ed->name));
		return (pbj_err(d, "unknown value \"%.*s\" for enum %s",
		                (int) n, s, ed->name));
	}
	x = ev->value;
	memcpy(dst, &x, sizeof(x));
	return (0);
}

static int
pbj_text_string(struct pbj_dec *d, const char *s, size_t n, void *dst)
{
	char *p;

	if (memchr(s, '\0', n) != NULL)
		return (pbj_err(d, "string contains a NUL character"));
	if (!pbj_utf8_valid(s, n))
		return (pbj_err(d, "string is not valid UTF-8"));
	p = cm_arena_strndup(d->arena, s, n);
	memcpy(dst, &p, sizeof(p));
	return (0);
}

static int
pbj_text_bytes(struct pbj_dec *d, const char *s, size_t n, void *dst)
{
	ProtobufCBinaryData bin;
	unsigned char *buf;
	size_t len;

	buf = cm_arena_alloc(d->arena, n / 4 * 3 + 3);
	if (pbj_b64_decode(s, n, buf, &len) != 0)
		return (pbj_err(d, "invalid base64"));
	bin.len = len;
	bin.data = buf;
	memcpy(dst, &bin, sizeof(bin));
	return (0);
}

/*
 * Parses the text s[0..n) into the value at dst as field f's type.
 * json says the text is a JSON string, where bools must be JSON true/false
 * rather than text.  Messages never come from text.
 */
static int
pbj_text_value(struct pbj_dec *d, const ProtobufCFieldDescriptor *f,
               const char *s, size_t n, void *dst, int json)
{
	protobuf_c_boolean b;

	if (pbj_type_is_int(f->type))
		return (pbj_text_int(d, f, s, n, dst));
	switch (f->type) {
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
		return (pbj_text_real(d, f, s, n, dst));
	case PROTOBUF_C_TYPE_BOOL:
		if (json)
			return (pbj_err_expected(d, f));
		if ((n == 4 && memcmp(s, "true", 4) == 0) ||
		    (n == 1 && s[0] == '1'))
			b = 1;
		else if ((n == 5 && memcmp(s, "false", 5) == 0) ||
		         (n == 1 && s[0] == '0'))
			b = 0;
		else
			return (pbj_err(d, "expected true or false"));
		memcpy(dst, &b, sizeof(b));
		return (0);
	case PROTOBUF_C_TYPE_ENUM:
		return (pbj_text_enum(d, f, s, n, dst));
	case PROTOBUF_C_TYPE_STRING:
		return (pbj_text_string(d, s, n, dst));
	case PROTOBUF_C_TYPE_BYTES:
		return (pbj_text_bytes(d, s, n, dst));
	case PROTOBUF_C_TYPE_MESSAGE:
		return (pbj_err(d, "a message cannot be set from text"));
	default:
		fatalx("pbjson: unknown protobuf-c field type %d",
		       (int) f->type);
	}
}

/* Values from JSON. */

/*
 * An integer from a JSON integer or an integral JSON real.  Reals are
 * checked against the int64/uint64 span before the cast, which would
 * otherwise be undefined.  No libm: integrality is tested by the cast.
 */
static int
pbj_json_int(struct pbj_dec *d, const ProtobufCFieldDescriptor *f, json_t *j,
             void *dst)
{
	struct pbj_int v;
	json_int_t i;
	double x;

	if (json_is_integer(j)) {
		i = json_integer_value(j);
		v.neg = i < 0;
		v.mag = i < 0 ? (uint64_t) (-(i + 1)) + 1 : (uint64_t) i;
	} else if (json_is_real(j)) {
		/* Every double beyond 2^53 in magnitude is integral. */
		x = json_real_value(j);
		if (!isfinite(x))
			return (pbj_err(d, "expected an integer"));
		if (x < -9223372036854775808.0 || x >= 18446744073709551616.0)
			return (pbj_err_range(d, f));
		v.neg = x < 0;
		v.mag = x < 0 ? (uint64_t) -x : (uint64_t) x;
		if ((double) v.mag != (x < 0 ? -x : x))
			return (pbj_err(d, "expected an integer"));
		v.neg = v.neg && v.mag != 0;
	} else
		return (pbj_err_expected(d, f));
	if (pbj_int_store(f->type, &v, dst) != 0)
		return (pbj_err_range(d, f));
	return (0);
}

static int
pbj_json_submessage(struct pbj_dec *d, const ProtobufCFieldDescriptor *f,
                    json_t *j, void *dst)
{
	const ProtobufCMessageDescriptor *md = f->descriptor;
	ProtobufCMessage *m;

	if (!json_is_object(j))
		return (pbj_err_expected(d, f));
	if (d->depth >= PBJ_MAXDEPTH)
		return (pbj_err(d, "messages nested more than %d deep",
		                PBJ_MAXDEPTH));
	m = cm_arena_alloc(d->arena, md->sizeof_message);
	protobuf_c_message_init(md, m);
	d->depth++;
	if (pbj_dec_message(d, md, j, m) != 0)
		return (-1);
	d->depth--;
	memcpy(dst, &m, sizeof(m));
	return (0);
}

/* Decodes one (non-repeated, or one element of a repeated) value. */
static int
pbj_json_value(struct pbj_dec *d, const ProtobufCFieldDescriptor *f, json_t *j,
               void *dst)
{
	protobuf_c_boolean b;
	json_int_t i;
	int32_t x;

	if (json_is_string(j) && f->type != PROTOBUF_C_TYPE_MESSAGE)
		return (pbj_text_value(d, f, json_string_value(j),
		                       json_string_length(j), dst, 1));
	if (pbj_type_is_int(f->type))
		return (pbj_json_int(d, f, j, dst));
	switch (f->type) {
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
		if (!json_is_number(j))
			return (pbj_err_expected(d, f));
		return (pbj_store_real(d, f, json_number_value(j), dst));
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_is_boolean(j))
			return (pbj_err_expected(d, f));
		b = json_is_true(j);
		memcpy(dst, &b, sizeof(b));
		return (0);
	case PROTOBUF_C_TYPE_ENUM:
		if (!json_is_integer(j))
			return (pbj_err_expected(d, f));
		i = json_integer_value(j);
		if (i < INT32_MIN || i > INT32_MAX ||
		    protobuf_c_enum_descriptor_get_value(f->descriptor,
		                                         (int) i) == NULL)
			return (pbj_err(
			    d, "unknown value %lld for enum %s", (long long) i,
			    ((const ProtobufCEnumDescriptor *) f->descriptor)
			        ->name));
		x = (int32_t) i;
		memcpy(dst, &x, sizeof(x));
		return (0);
	case PROTOBUF_C_TYPE_MESSAGE:
		return (pbj_json_submessage(d, f, j, dst));
	default:
		/* string and bytes take only JSON strings, handled above */
		return (pbj_err_expected(d, f));
	}
}

/* Marks field f of msg as present: its oneof case or its has_ flag. */
static void
pbj_set_present(const ProtobufCFieldDescriptor *f, ProtobufCMessage *msg)
{
	char *base = (char *) msg;
	uint32_t id = f->id;
	protobuf_c_boolean one = 1;

	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		memcpy(base + f->quantifier_offset, &id, sizeof(id));
	else if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
	         f->type != PROTOBUF_C_TYPE_STRING &&
	         f->type != PROTOBUF_C_TYPE_MESSAGE)
		memcpy(base + f->quantifier_offset, &one, sizeof(one));
}

/* Maps. */

/*
 * Whether name is the name protoc gives the entry message of the map field
 * f of parent: "<parent>.<F>Entry", F being f's name as protoc's
 * MapEntryName spells it (each '_' dropped, the first letter and each
 * one after a '_' upper-cased).
 */
static int
pbj_entry_name_eq(const ProtobufCMessageDescriptor *parent,
                  const ProtobufCFieldDescriptor *f, const char *name)
{
	size_t pl = strlen(parent->name);
	const char *p;
	int up = 1;
	char c;

	if (strncmp(name, parent->name, pl) != 0 || name[pl] != '.')
		return (0);
	name += pl + 1;
	for (p = f->name; *p != '\0'; p++) {
		if (*p == '_') {
			up = 1;
			continue;
		}
		c = *p;
		if (up && c >= 'a' && c <= 'z')
			c = (char) (c - 'a' + 'A');
		up = 0;
		if (*name++ != c)
			return (0);
	}
	return (strcmp(name, "Entry") == 0);
}

/*
 * The entry message of f if f is a map field of parent, else NULL.
 * protobuf-c keeps no options, so the map_entry option protoc sets is not
 * there to see: a map<K, V> field is known by the shape protoc gives it,
 * a repeated field of the nested message <F>Entry whose only fields are
 * "key" = 1 (an integer, bool or string) and "value" = 2, neither
 * repeated nor in a oneof.  A message written by hand in exactly that
 * shape is what a map is on the wire, and is taken for one.
 */
static const ProtobufCMessageDescriptor *
pbj_map_entry(const ProtobufCMessageDescriptor *parent,
              const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *md;
	const ProtobufCFieldDescriptor *k, *v;

	if (f->label != PROTOBUF_C_LABEL_REPEATED ||
	    f->type != PROTOBUF_C_TYPE_MESSAGE || f->descriptor == NULL)
		return (NULL);
	md = f->descriptor;
	if (md->n_fields != 2)
		return (NULL);
	k = &md->fields[0];
	v = &md->fields[1];
	if (k->id != 1 || v->id != 2 || strcmp(k->name, "key") != 0 ||
	    strcmp(v->name, "value") != 0)
		return (NULL);
	if (k->label == PROTOBUF_C_LABEL_REPEATED ||
	    v->label == PROTOBUF_C_LABEL_REPEATED ||
	    ((k->flags | v->flags) & PROTOBUF_C_FIELD_FLAG_ONEOF))
		return (NULL);
	if (!pbj_type_is_int(k->type) && k->type != PROTOBUF_C_TYPE_BOOL &&
	    k->type != PROTOBUF_C_TYPE_STRING)
		return (NULL);
	if (!pbj_entry_name_eq(parent, f, md->name))
		return (NULL);
	return (md);
}

/*
 * Appends a map key to the error path: "labels[team]" when the key is
 * short printable ASCII without quotes, backslashes or brackets (so the
 * path stays readable and valid UTF-8 however it is cut), else the
 * entry's place in the object, "labels[#3]".
 */
static void
pbj_path_key(struct pbj_dec *d, const char *key, size_t klen, size_t idx)
{
	size_t i;
	int plain = klen > 0 && klen <= 64;
	unsigned char c;

	for (i = 0; plain && i < klen; i++) {
		c = (unsigned char) key[i];
		if (c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '[' ||
		    c == ']')
			plain = 0;
	}
	if (plain)
		pbj_path_push(d, "[%.*s]", (int) klen, key);
	else
		pbj_path_push(d, "[#%zu]", idx);
}

/*
 * Parses the JSON object key s[0..n) into the key field kf of a map entry
 * at dst.  Integer keys must be canonical decimal ("7", "-7"; not "07",
 * "-0" or "+7") and bool keys "true" or "false": then two keys of one
 * JSON object, which jansson keeps distinct, are never one map key.
 */
static int
pbj_map_key(struct pbj_dec *d, const ProtobufCFieldDescriptor *kf,
            const char *s, size_t n, void *dst)
{
	struct pbj_int v;
	protobuf_c_boolean b;
	size_t i;
	int rv;

	if (kf->type == PROTOBUF_C_TYPE_STRING)
		return (pbj_text_string(d, s, n, dst));
	if (kf->type == PROTOBUF_C_TYPE_BOOL) {
		if (n == 4 && memcmp(s, "true", 4) == 0)
			b = 1;
		else if (n == 5 && memcmp(s, "false", 5) == 0)
			b = 0;
		else
			return (pbj_err(d, "map key: expected true or false"));
		memcpy(dst, &b, sizeof(b));
		return (0);
	}
	if ((rv = pbj_parse_dec(s, n, &v)) == -1)
		return (pbj_err(d, "map key: expected a decimal integer"));
	i = s[0] == '-';
	if (s[i] == '0' && (n > i + 1 || i == 1))
		return (pbj_err(d, "map key: expected a canonical decimal "
		                   "integer (no leading zeros, no -0)"));
	if (rv == -2 || pbj_int_store(kf->type, &v, dst) != 0)
		return (pbj_err(d, "map key: value out of range for %s",
		                pbj_type_name(kf->type)));
	return (0);
}

/*
 * Decodes the JSON object j into the map field f (entries md) of msg: one
 * entry per key, in the object's order, replacing any entries it had.
 * Values are as for any field of the value's type, but never null (a map
 * entry has no "unset" value in proto3 JSON).  At most CM_PBJSON_MAP_MAX
 * entries.
 */
static int
pbj_dec_map(struct pbj_dec *d, const ProtobufCFieldDescriptor *f,
            const ProtobufCMessageDescriptor *md, json_t *j,
            ProtobufCMessage *msg)
{
	const ProtobufCFieldDescriptor *kf = &md->fields[0];
	const ProtobufCFieldDescriptor *vf = &md->fields[1];
	ProtobufCMessage **arr = NULL, *e;
	char *base = (char *) msg, *ents = NULL;
	const char *key;
	size_t n, i = 0, klen, mark = d->pathlen;
	json_t *v;

	if (!json_is_object(j))
		return (pbj_err(d, "expected an object (a map)"));
	n = json_object_size(j);
	if (n > CM_PBJSON_MAP_MAX)
		return (
		    pbj_err(d, "more than %d map entries", CM_PBJSON_MAP_MAX));
	if (n > 0) {
		arr = cm_arena_alloc(d->arena, n * sizeof(*arr));
		ents = cm_arena_alloc(d->arena, n * md->sizeof_message);
	}
	json_object_keylen_foreach(j, key, klen, v)
	{
		/* sizeof_message keeps every entry aligned as the first */
		e = (ProtobufCMessage *) (void *) (ents +
		                                   i * md->sizeof_message);
		protobuf_c_message_init(md, e);
		pbj_path_key(d, key, klen, i);
		if (pbj_map_key(d, kf, key, klen, (char *) e + kf->offset) != 0)
			return (-1);
		pbj_set_present(kf, e);
		if (pbj_json_value(d, vf, v, (char *) e + vf->offset) != 0)
			return (-1);
		pbj_set_present(vf, e);
		pbj_path_pop(d, mark);
		arr[i++] = e;
	}
	memcpy(base + f->quantifier_offset, &i, sizeof(i));
	memcpy(base + f->offset, &arr, sizeof(arr));
	return (0);
}

/*
 * Decodes the JSON value j into field f of msg.  null leaves the field as
 * it is; a repeated field takes an array, which replaces its elements; a
 * map field takes an object, which replaces its entries.
 */
static int
pbj_dec_field(struct pbj_dec *d, const ProtobufCFieldDescriptor *f, json_t *j,
              ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *md;
	char *base = (char *) msg, *arr = NULL;
	size_t n, i, size, mark;
	json_t *e;

	if (json_is_null(j))
		return (0);
	if ((md = pbj_map_entry(msg->descriptor, f)) != NULL)
		return (pbj_dec_map(d, f, md, j, msg));
	if (f->label != PROTOBUF_C_LABEL_REPEATED) {
		if (pbj_json_value(d, f, j, base + f->offset) != 0)
			return (-1);
		pbj_set_present(f, msg);
		return (0);
	}
	if (!json_is_array(j))
		return (pbj_err(d, "expected an array"));
	n = json_array_size(j);
	size = pbj_type_size(f->type);
	if (n > SIZE_MAX / size)
		return (pbj_err(d, "array too long"));
	if (n > 0)
		arr = cm_arena_alloc(d->arena, n * size);
	mark = d->pathlen;
	json_array_foreach(j, i, e)
	{
		pbj_path_push(d, "[%zu]", i);
		if (pbj_json_value(d, f, e, arr + i * size) != 0)
			return (-1);
		pbj_path_pop(d, mark);
	}
	memcpy(base + f->quantifier_offset, &n, sizeof(n));
	memcpy(base + f->offset, &arr, sizeof(arr));
	return (0);
}

/*
 * Decodes the JSON object obj into msg, field by field.  state[] records,
 * per field, whether its key was seen (so "long_url" and "longUrl" together
 * are an error) and whether it was set to a non-null value (so two members
 * of a oneof are an error).  It lives on the stack for ordinary messages.
 */
static int
pbj_dec_message(struct pbj_dec *d, const ProtobufCMessageDescriptor *desc,
                json_t *obj, ProtobufCMessage *msg)
{
	const ProtobufCFieldDescriptor *f, *g;
	unsigned char stack[128], *state = stack;
	const char *key;
	json_t *v;
	size_t idx, mark = d->pathlen;
	unsigned k;

	if (!json_is_object(obj))
		return (pbj_err(d, "expected an object"));
	if (desc->n_fields > sizeof(stack))
		state = cm_arena_alloc(d->arena, desc->n_fields);
	else
		memset(stack, 0, sizeof(stack));

	json_object_foreach(obj, key, v)
	{
		if ((f = pbj_find_field(desc, key)) == NULL) {
			pbj_path_push(d, d->pathlen == 0 ? "%s" : ".%s", key);
			snprintf(d->err, d->errlen, "unknown field \"%s\"",
			         d->path);
			pbj_path_pop(d, mark);
			return (-1);
		}
		idx = (size_t) (f - desc->fields);
		pbj_path_field(d, f->name);
		if (state[idx] & PBJ_SEEN)
			return (pbj_err(d, "given more than once"));
		state[idx] |= PBJ_SEEN;
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    !json_is_null(v)) {
			for (k = 0; k < desc->n_fields; k++) {
				g = &desc->fields[k];
				if (k != idx && (state[k] & PBJ_SET) &&
				    (g->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
				    g->quantifier_offset ==
				        f->quantifier_offset)
					return (pbj_err(d,
					                "conflicts with \"%s\" "
					                "(same oneof)",
					                g->name));
			}
		}
		if (pbj_dec_field(d, f, v, msg) != 0)
			return (-1);
		if (!json_is_null(v))
			state[idx] |= PBJ_SET;
		pbj_path_pop(d, mark);
	}
	return (0);
}

static void
pbj_dec_init(struct pbj_dec *d, cm_arena *arena, char *err, size_t errlen)
{
	d->arena = arena;
	d->err = errlen > 0 ? err : NULL;
	d->errlen = err != NULL ? errlen : 0;
	d->pathlen = 0;
	d->depth = 0;
	d->path[0] = '\0';
	if (d->err != NULL)
		d->err[0] = '\0';
}

/*
 * See pbjson.h.  On failure msg may be partly filled (from the arena); the
 * caller discards it.  msg must have been initialised for desc.
 */
int
cm_pbjson_decode(const ProtobufCMessageDescriptor *desc, json_t *obj,
                 ProtobufCMessage *msg, cm_arena *arena, char *err,
                 size_t errlen)
{
	struct pbj_dec d;

	if (msg == NULL || msg->descriptor != desc)
		fatalx("pbjson: message does not match descriptor %s",
		       desc != NULL ? desc->name : "(null)");
	pbj_dec_init(&d, arena, err, errlen);
	if (!json_is_object(obj))
		return (pbj_err(&d, "expected a JSON object"));
	return (pbj_dec_message(&d, desc, obj, msg));
}

/*
 * See pbjson.h.  A repeated field gets the values appended, all of them
 * with one copy of the array (so binding n repeated query parameters is
 * linear, not quadratic); any other field is overwritten by the last
 * value, its has_ flag or oneof case set.  Bytes are base64, bools
 * "true"/"false"/"1"/"0", enums a name or a defined number, floats as in
 * JSON strings.  msg is changed only on success.
 */
int
cm_pbjson_add_field_texts(const ProtobufCMessageDescriptor *desc,
                          ProtobufCMessage *msg, const char *name,
                          const char *const *values, const size_t *lens,
                          size_t nvalues, cm_arena *arena, char *err,
                          size_t errlen)
{
	const ProtobufCFieldDescriptor *f;
	struct pbj_dec d;
	union pbj_value tmp;
	char *base = (char *) msg, *arr, *old, *vals;
	size_t n, size;

	if (msg == NULL || msg->descriptor != desc)
		fatalx("pbjson: message does not match descriptor %s",
		       desc != NULL ? desc->name : "(null)");
	pbj_dec_init(&d, arena, err, errlen);
	if (name == NULL || (f = pbj_find_field(desc, name)) == NULL) {
		if (d.err != NULL)
			snprintf(d.err, d.errlen, "unknown field \"%s\"",
			         name != NULL ? name : "");
		return (-2);
	}
	pbj_path_field(&d, f->name);
	size = pbj_type_size(f->type);
	if (nvalues == 0)
		return (0);
	if (pbj_map_entry(desc, f) != NULL)
		return (pbj_err(&d, "a map cannot be set from text"));
	/* Every value parsed first: msg changes only if all are good. */
	vals = cm_arena_alloc(arena, nvalues * size);
	for (size_t i = 0; i < nvalues; i++) {
		if (values[i] == NULL && lens[i] != 0)
			return (pbj_err(&d, "no value"));
		memset(&tmp, 0, sizeof(tmp));
		if (pbj_text_value(&d, f, values[i] != NULL ? values[i] : "",
		                   lens[i], &tmp, 0) != 0)
			return (-1);
		memcpy(vals + i * size, &tmp, size);
	}
	if (f->label != PROTOBUF_C_LABEL_REPEATED) {
		memcpy(base + f->offset, vals + (nvalues - 1) * size, size);
		pbj_set_present(f, msg);
		return (0);
	}
	memcpy(&n, base + f->quantifier_offset, sizeof(n));
	memcpy(&old, base + f->offset, sizeof(old));
	if (n >= SIZE_MAX / size - nvalues)
		return (pbj_err(&d, "array too long"));
	arr = cm_arena_alloc(arena, (n + nvalues) * size);
	if (n > 0)
		memcpy(arr, old, n * size);
	memcpy(arr + n * size, vals, nvalues * size);
	n += nvalues;
	memcpy(base + f->quantifier_offset, &n, sizeof(n));
	memcpy(base + f->offset, &arr, sizeof(arr));
	return (0);
}

int
cm_pbjson_set_field_text(const ProtobufCMessageDescriptor *desc,
                         ProtobufCMessage *msg, const char *name,
                         const char *value, size_t vlen, cm_arena *arena,
                         char *err, size_t errlen)
{
	return (cm_pbjson_add_field_texts(desc, msg, name, &value, &vlen, 1,
	                                  arena, err, errlen));
}

int
cm_pbjson_field_repeated(const ProtobufCMessageDescriptor *desc,
                         const char *name)
{
	const ProtobufCFieldDescriptor *f = pbj_find_field(desc, name);

	if (f == NULL)
		return (-1);
	return (f->label == PROTOBUF_C_LABEL_REPEATED);
}

/* Encoding. */

/*
 * A JSON string from a protobuf string.  A service should never put
 * invalid UTF-8 in a string field, but if one does the reply must still be
 * JSON: each byte that does not start a well-formed sequence becomes
 * U+FFFD.
 */
static json_t *
pbj_enc_string(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t n, i = 0, o = 0, k;
	json_t *j;
	char *buf;

	if (s == NULL)
		return (json_string(""));
	n = strlen(s);
	if (pbj_utf8_valid(s, n))
		return (json_stringn_nocheck(s, n));
	if (n > (SIZE_MAX - 1) / 3 || (buf = malloc(n * 3 + 1)) == NULL)
		return (NULL);
	while (i < n) {
		if ((k = pbj_utf8_seq(p + i, n - i)) == 0) {
			memcpy(buf + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(buf + o, s + i, k);
			o += k;
			i += k;
		}
	}
	j = json_stringn_nocheck(buf, o);
	free(buf);
	return (j);
}

/* Standard base64 with padding. */
static json_t *
pbj_enc_bytes(const ProtobufCBinaryData *bin)
{
	static const char alpha[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const uint8_t *s = bin->data;
	size_t n = bin->len, i, o = 0;
	uint32_t acc;
	json_t *j;
	char *buf;

	if (n == 0 || s == NULL)
		return (json_string(""));
	if (n > SIZE_MAX / 4 * 3 - 3 || (buf = malloc((n + 2) / 3 * 4)) == NULL)
		return (NULL);
	for (i = 0; i + 3 <= n; i += 3) {
		acc =
		    (uint32_t) s[i] << 16 | (uint32_t) s[i + 1] << 8 | s[i + 2];
		buf[o++] = alpha[acc >> 18 & 63];
		buf[o++] = alpha[acc >> 12 & 63];
		buf[o++] = alpha[acc >> 6 & 63];
		buf[o++] = alpha[acc & 63];
	}
	if (n - i == 1) {
		acc = (uint32_t) s[i] << 16;
		buf[o++] = alpha[acc >> 18 & 63];
		buf[o++] = alpha[acc >> 12 & 63];
		buf[o++] = '=';
		buf[o++] = '=';
	} else if (n - i == 2) {
		acc = (uint32_t) s[i] << 16 | (uint32_t) s[i + 1] << 8;
		buf[o++] = alpha[acc >> 18 & 63];
		buf[o++] = alpha[acc >> 12 & 63];
		buf[o++] = alpha[acc >> 6 & 63];
		buf[o++] = '=';
	}
	j = json_stringn_nocheck(buf, o);
	free(buf);
	return (j);
}

/*
 * A float or double.  NaN and infinities have no JSON number, so they are
 * the strings the decoder accepts.  A float is widened through its
 * shortest round-tripping decimal form, so 0.1f is written as 0.1 rather
 * than 0.10000000149011612.
 */
static json_t *
pbj_enc_real(double x, int is_float)
{
	char buf[32];
	float fx = (float) x;
	int prec;

	if (isnan(x))
		return (json_string("NaN"));
	if (isinf(x))
		return (json_string(x > 0 ? "Infinity" : "-Infinity"));
	if (is_float) {
		for (prec = 6; prec < 9; prec++) {
			snprintf(buf, sizeof(buf), "%.*g", prec, (double) fx);
			if (strtof(buf, NULL) == fx)
				break;
		}
		if (prec < 9)
			x = strtod(buf, NULL);
	}
	return (json_real(x));
}

/*
 * An enum value by its short name, unless that would read back as another
 * value (its short name is shared with a value of another number, or is
 * the full name of one): then by its full name.
 */
static json_t *
pbj_enc_enum(const ProtobufCEnumDescriptor *ed, const ProtobufCEnumValue *ev)
{
	const char *sn = ev->name + pbj_enum_prefix(ed, ev->name);
	const ProtobufCEnumValue *w;
	size_t n = strlen(sn), k;
	char buf[64], *lc = buf;
	int ambiguous;
	json_t *j;

	if (n >= sizeof(buf) && (lc = malloc(n + 1)) == NULL)
		return (NULL);
	for (k = 0; k < n; k++)
		lc[k] = pbj_lower(sn[k]);
	lc[n] = '\0';
	/* ev has this short name: no other value unless it is ambiguous */
	if (pbj_enum_by_short(ed, lc, n, &ambiguous) == NULL ||
	    ((w = protobuf_c_enum_descriptor_get_value_by_name(ed, lc)) !=
	         NULL &&
	     w->value != ev->value))
		j = json_string(ev->name);
	else
		j = json_stringn(lc, n);
	if (lc != buf)
		free(lc);
	return (j);
}

/* The JSON for one value of field f stored at p. */
static json_t *
pbj_enc_value(const ProtobufCFieldDescriptor *f, const void *p)
{
	const ProtobufCEnumValue *ev;
	union pbj_value v;
	char buf[24];

	memcpy(&v, p, pbj_type_size(f->type));
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return (json_integer(v.i32));
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return (json_integer(v.u32));
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return (json_integer(v.i64));
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		if (v.u64 <= INT64_MAX)
			return (json_integer((json_int_t) v.u64));
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long) v.u64);
		return (json_string(buf));
	case PROTOBUF_C_TYPE_FLOAT:
		return (pbj_enc_real(v.f, 1));
	case PROTOBUF_C_TYPE_DOUBLE:
		return (pbj_enc_real(v.d, 0));
	case PROTOBUF_C_TYPE_BOOL:
		return (json_boolean(v.b));
	case PROTOBUF_C_TYPE_ENUM:
		ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v.i32);
		if (ev == NULL)
			return (json_integer(v.i32));
		return (pbj_enc_enum(f->descriptor, ev));
	case PROTOBUF_C_TYPE_STRING:
		return (pbj_enc_string(v.s));
	case PROTOBUF_C_TYPE_BYTES:
		return (pbj_enc_bytes(&v.bin));
	case PROTOBUF_C_TYPE_MESSAGE:
		if (v.m == NULL)
			return (json_null());
		return (pbj_enc_message(v.m));
	}
	fatalx("pbjson: unknown protobuf-c field type %d", (int) f->type);
}

/* The JSON object key for the key of map entry e (key field kf). */
static json_t *
pbj_enc_map_key(const ProtobufCFieldDescriptor *kf, const ProtobufCMessage *e)
{
	const char *p = (const char *) e + kf->offset;
	union pbj_value v;
	char buf[24];

	memcpy(&v, p, pbj_type_size(kf->type));
	switch (kf->type) {
	case PROTOBUF_C_TYPE_STRING:
		return (pbj_enc_string(v.s));
	case PROTOBUF_C_TYPE_BOOL:
		return (json_string(v.b ? "true" : "false"));
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		snprintf(buf, sizeof(buf), "%ld", (long) v.i32);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		snprintf(buf, sizeof(buf), "%lu", (unsigned long) v.u32);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(buf, sizeof(buf), "%lld", (long long) v.i64);
		break;
	default: /* uint64, fixed64: pbj_map_entry admits no other type */
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long) v.u64);
		break;
	}
	return (json_string(buf));
}

/*
 * The JSON for the value of map entry e (value field vf).  A map value is
 * never null: an entry without its message value (the wire format allows
 * it) has the empty message, and is written as one.
 */
static json_t *
pbj_enc_map_value(const ProtobufCFieldDescriptor *vf, const ProtobufCMessage *e)
{
	const ProtobufCMessageDescriptor *vmd = vf->descriptor;
	const char *p = (const char *) e + vf->offset;
	ProtobufCMessage *m;
	json_t *j;

	if (vf->type == PROTOBUF_C_TYPE_MESSAGE) {
		memcpy(&m, p, sizeof(m));
		if (m == NULL) {
			if ((m = malloc(vmd->sizeof_message)) == NULL)
				return (NULL);
			protobuf_c_message_init(vmd, m);
			j = pbj_enc_message(m);
			free(m);
			return (j);
		}
	}
	return (pbj_enc_value(vf, p));
}

/*
 * A map field as a JSON object, its entries in their order.  Keys are
 * strings: integers in decimal, bools "true"/"false".  If a key comes
 * twice (the wire format allows it) the last entry wins, as in protobuf's
 * own parsers.
 */
static json_t *
pbj_enc_map(const ProtobufCFieldDescriptor *f,
            const ProtobufCMessageDescriptor *md, const ProtobufCMessage *msg)
{
	const ProtobufCFieldDescriptor *kf = &md->fields[0];
	const ProtobufCFieldDescriptor *vf = &md->fields[1];
	const char *base = (const char *) msg;
	ProtobufCMessage *const *arr;
	json_t *obj, *k, *v;
	size_t n, i;
	int rv;

	memcpy(&n, base + f->quantifier_offset, sizeof(n));
	memcpy(&arr, base + f->offset, sizeof(arr));
	if ((obj = json_object()) == NULL)
		return (NULL);
	for (i = 0; i < n && arr != NULL; i++) {
		if (arr[i] == NULL)
			continue;
		k = pbj_enc_map_key(kf, arr[i]);
		v = k != NULL ? pbj_enc_map_value(vf, arr[i]) : NULL;
		/* set_new takes v even when it fails */
		rv = v != NULL ? json_object_setn_new_nocheck(
		                     obj, json_string_value(k),
		                     json_string_length(k), v)
		               : -1;
		json_decref(k);
		if (rv != 0) {
			json_decref(obj);
			return (NULL);
		}
	}
	return (obj);
}

/*
 * The JSON for field f of msg: an object for a map, an array, null when
 * unset, or the value.
 */
static json_t *
pbj_enc_field(const ProtobufCFieldDescriptor *f, const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *md;
	const char *base = (const char *) msg;
	const char *arr;
	const void *ptr;
	json_t *a, *e;
	size_t n, i, size;
	uint32_t which;
	protobuf_c_boolean has;

	if ((md = pbj_map_entry(msg->descriptor, f)) != NULL)
		return (pbj_enc_map(f, md, msg));
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		memcpy(&n, base + f->quantifier_offset, sizeof(n));
		memcpy(&arr, base + f->offset, sizeof(arr));
		size = pbj_type_size(f->type);
		if ((a = json_array()) == NULL)
			return (NULL);
		for (i = 0; i < n && arr != NULL; i++) {
			if ((e = pbj_enc_value(f, arr + i * size)) == NULL ||
			    json_array_append_new(a, e) != 0) {
				json_decref(a);
				return (NULL);
			}
		}
		return (a);
	}
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		memcpy(&which, base + f->quantifier_offset, sizeof(which));
		if (which != f->id)
			return (json_null());
	} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
		if (f->type == PROTOBUF_C_TYPE_STRING ||
		    f->type == PROTOBUF_C_TYPE_MESSAGE) {
			memcpy(&ptr, base + f->offset, sizeof(ptr));
			if (ptr == NULL)
				return (json_null());
		} else {
			memcpy(&has, base + f->quantifier_offset, sizeof(has));
			if (!has)
				return (json_null());
		}
	}
	return (pbj_enc_value(f, base + f->offset));
}

static json_t *
pbj_enc_message(const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *desc = msg->descriptor;
	json_t *obj, *v;
	unsigned i;

	if ((obj = json_object()) == NULL)
		return (NULL);
	for (i = 0; i < desc->n_fields; i++) {
		v = pbj_enc_field(&desc->fields[i], msg);
		if (v == NULL || json_object_set_new_nocheck(
		                     obj, desc->fields[i].name, v) != 0) {
			json_decref(obj);
			return (NULL);
		}
	}
	return (obj);
}

/* See pbjson.h; the output shape is described at the top of this file. */
json_t *
cm_pbjson_encode(const ProtobufCMessage *msg)
{
	if (msg == NULL || msg->descriptor == NULL)
		return (NULL);
	return (pbj_enc_message(msg));
}
