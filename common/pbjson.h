/*
 * JSON <-> protobuf transcoding driven by protobuf-c message descriptors, so
 * no message needs hand-written JSON code.
 *
 * JSON -> protobuf (cm_pbjson_decode):
 *   - keys are the proto field names; lowerCamelCase (the proto3 JSON name)
 *     is accepted too;
 *   - int64/uint64/int32/... accept a JSON integer or a string holding a
 *     decimal integer; values out of the field's range are rejected;
 *     floats accept numbers (and integers);
 *   - bool: true/false; string: JSON string (valid UTF-8); bytes: base64
 *     (standard or URL-safe, padding optional);
 *   - enums by the full value name ("PRIORITY_HIGH"), by the short name
 *     ("high": lower case, without the prefix the enum type's name gives
 *     its values, as in enum Priority { PRIORITY_HIGH = 1; }), or by
 *     number;
 *   - map<K, V> fields as JSON objects, {"key": value, ...}: keys are
 *     strings (integer keys in canonical decimal, "7" or "-7", bool keys
 *     "true"/"false"), values as for a field of type V but never null; at
 *     most CM_PBJSON_MAP_MAX entries;
 *   - nested messages as objects, repeated fields as arrays, null as "unset";
 *   - unknown keys and wrong types are errors.
 * A key given twice in one JSON object is an error too, for fields and map
 * keys alike, but only the JSON parser sees that: jansson keeps the last
 * value unless the text is loaded with JSON_REJECT_DUPLICATES, as the
 * gateway loads request bodies.  pbjson refuses what it can see: a field
 * given under both its names, map keys that differ as text but not as
 * values ("7" and "07", refused as not canonical).
 * protobuf -> JSON (cm_pbjson_encode): every field under its proto name,
 *   defaults included; 64-bit integers as JSON numbers; enums by their
 *   short name ("high"; the full name when the short one would read back as
 *   another value); bytes as standard base64; repeated as arrays; maps as
 *   objects (a key repeated on the wire: the last entry wins); unset
 *   sub-messages as null.
 */
#ifndef CM_PBJSON_H
#define CM_PBJSON_H

#include <stddef.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "arena.h"

/*
 * Entries one map field may take from JSON; more is an error.  A JSON
 * array is bounded only by the body that holds it (the gateway's body
 * limit) and each service caps what it accepts (e.g. 32 cache tags); a
 * map gets a cap here as well, far above what one request carries
 * (labels, template variables) and low enough that a service may walk
 * one entry by entry without a limit of its own.
 */
#define CM_PBJSON_MAP_MAX 1000

/*
 * Fills msg (already initialised for desc, e.g. with desc->message_init or
 * protobuf_c_message_init) from the JSON object obj.  Strings, bytes,
 * sub-messages and repeated arrays are allocated from arena, so the
 * message is released with the arena (never protobuf_c_message_free_unpacked).
 * Returns 0, or -1 with a human-readable reason in err (errlen bytes),
 * e.g. "field \"expires_in\": expected an integer".
 */
int cm_pbjson_decode(const ProtobufCMessageDescriptor *desc, json_t *obj,
                     ProtobufCMessage *msg, cm_arena *arena, char *err,
                     size_t errlen);

/*
 * Sets one field, named by its proto name (or camelCase name), from a
 * string as it comes in a URL path or query parameter: numbers, bools and
 * enum names (full or short, as in JSON) are parsed from the text; maps
 * and messages cannot be set so.  Returns 0, -1 with err set, or -2 when
 * the message has no such field.
 */
int cm_pbjson_set_field_text(const ProtobufCMessageDescriptor *desc,
                             ProtobufCMessage *msg, const char *name,
                             const char *value, size_t vlen, cm_arena *arena,
                             char *err, size_t errlen);

/*
 * cm_pbjson_set_field_text for nvalues values at once: a repeated field
 * gets them all appended with one copy of its array (binding n repeated
 * parameters stays linear); another field takes the last one (each is
 * checked).  Same returns.
 */
int cm_pbjson_add_field_texts(const ProtobufCMessageDescriptor *desc,
                              ProtobufCMessage *msg, const char *name,
                              const char *const *values, const size_t *lens,
                              size_t nvalues, cm_arena *arena, char *err,
                              size_t errlen);

/* 1 if the field named so is repeated, 0 if not, -1 if there is none. */
int cm_pbjson_field_repeated(const ProtobufCMessageDescriptor *desc,
                             const char *name);

/* Returns a new JSON object for msg (caller json_decref()s), NULL on OOM. */
json_t *cm_pbjson_encode(const ProtobufCMessage *msg);

#endif
