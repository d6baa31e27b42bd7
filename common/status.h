/*
 * The gRPC status code set, used as RPC reply status everywhere, and its
 * mapping to HTTP as grpc-gateway maps it.
 */
#ifndef CM_STATUS_H
#define CM_STATUS_H

enum cm_code {
	CM_OK = 0,
	CM_CANCELLED = 1,
	CM_UNKNOWN = 2,
	CM_INVALID_ARGUMENT = 3,
	CM_DEADLINE_EXCEEDED = 4,
	CM_NOT_FOUND = 5,
	CM_ALREADY_EXISTS = 6,
	CM_PERMISSION_DENIED = 7,
	CM_RESOURCE_EXHAUSTED = 8,
	CM_FAILED_PRECONDITION = 9,
	CM_ABORTED = 10,
	CM_OUT_OF_RANGE = 11,
	CM_UNIMPLEMENTED = 12,
	CM_INTERNAL = 13,
	CM_UNAVAILABLE = 14,
	CM_DATA_LOSS = 15,
	CM_UNAUTHENTICATED = 16,
};

/* "NOT_FOUND" etc.; "UNKNOWN" for codes outside the set. */
const char *cm_code_name(int code);
/* HTTP status for a code: OK 200, INVALID_ARGUMENT 400, NOT_FOUND 404 ... */
int cm_code_http(int code);

#endif
