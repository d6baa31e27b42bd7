/*
 * A bump allocator for memory that lives exactly as long as one request
 * (h2o's mempool): allocations are never freed one by one; cm_arena_reset
 * drops them all and keeps the first block for reuse.
 */
#ifndef CM_ARENA_H
#define CM_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

typedef struct cm_arena {
	struct cm_arena_block *head;
	ProtobufCAllocator pb; /* allocator view for protobuf-c unpack */
} cm_arena;

void cm_arena_init(cm_arena *a);
/* Frees everything but the first block. */
void cm_arena_reset(cm_arena *a);
/* Frees everything. */
void cm_arena_fini(cm_arena *a);
/* Zeroed memory, 16-byte aligned; aborts on out-of-memory (fatalx). */
void *cm_arena_alloc(cm_arena *a, size_t n);
char *cm_arena_strdup(cm_arena *a, const char *s);
char *cm_arena_strndup(cm_arena *a, const char *s, size_t n);
char *cm_arena_printf(cm_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
