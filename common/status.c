/* gRPC status names and their HTTP mapping (as grpc-gateway maps them). */
#include "status.h"
#include "util.h"

static const char *const code_names[] = {
    [CM_OK] = "OK",
    [CM_CANCELLED] = "CANCELLED",
    [CM_UNKNOWN] = "UNKNOWN",
    [CM_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
    [CM_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
    [CM_NOT_FOUND] = "NOT_FOUND",
    [CM_ALREADY_EXISTS] = "ALREADY_EXISTS",
    [CM_PERMISSION_DENIED] = "PERMISSION_DENIED",
    [CM_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
    [CM_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
    [CM_ABORTED] = "ABORTED",
    [CM_OUT_OF_RANGE] = "OUT_OF_RANGE",
    [CM_UNIMPLEMENTED] = "UNIMPLEMENTED",
    [CM_INTERNAL] = "INTERNAL",
    [CM_UNAVAILABLE] = "UNAVAILABLE",
    [CM_DATA_LOSS] = "DATA_LOSS",
    [CM_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

static const int code_http[] = {
    [CM_OK] = 200,
    [CM_CANCELLED] = 499,
    [CM_UNKNOWN] = 500,
    [CM_INVALID_ARGUMENT] = 400,
    [CM_DEADLINE_EXCEEDED] = 504,
    [CM_NOT_FOUND] = 404,
    [CM_ALREADY_EXISTS] = 409,
    [CM_PERMISSION_DENIED] = 403,
    [CM_RESOURCE_EXHAUSTED] = 429,
    [CM_FAILED_PRECONDITION] = 400,
    [CM_ABORTED] = 409,
    [CM_OUT_OF_RANGE] = 400,
    [CM_UNIMPLEMENTED] = 501,
    [CM_INTERNAL] = 500,
    [CM_UNAVAILABLE] = 503,
    [CM_DATA_LOSS] = 500,
    [CM_UNAUTHENTICATED] = 401,
};

const char *
cm_code_name(int code)
{
	if (code < 0 || (unsigned) code >= CM_ARRAY_LEN(code_names))
		return ("UNKNOWN");
	return (code_names[code]);
}

int
cm_code_http(int code)
{
	if (code < 0 || (unsigned) code >= CM_ARRAY_LEN(code_http))
		return (500);
	return (code_http[code]);
}
