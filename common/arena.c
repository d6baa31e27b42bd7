/*
 * Per-request bump allocator.  Blocks are chained newest first; a request
 * that needs more than a block gets a block of its own size.  Reset keeps
 * the oldest block (the common case fits in it), so a steady stream of
 * small requests allocates nothing after the first.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "log.h"

#define ARENA_BLOCK 8192

struct cm_arena_block {
	struct cm_arena_block *next;
	size_t size;
	size_t used;
	_Alignas(16) unsigned char data[];
};

static void *
arena_pb_alloc(void *data, size_t size)
{
	return (cm_arena_alloc(data, size));
}

static void
arena_pb_free(void *data, void *p)
{
	(void) data;
	(void) p;
}

void
cm_arena_init(cm_arena *a)
{
	a->head = NULL;
	a->pb.alloc = arena_pb_alloc;
	a->pb.free = arena_pb_free;
	a->pb.allocator_data = a;
}

void
cm_arena_reset(cm_arena *a)
{
	struct cm_arena_block *b = a->head;

	while (b != NULL && b->next != NULL) {
		struct cm_arena_block *next = b->next;
		free(b);
		b = next;
	}
	a->head = b;
	if (b != NULL)
		b->used = 0;
}

void
cm_arena_fini(cm_arena *a)
{
	cm_arena_reset(a);
	free(a->head);
	a->head = NULL;
}

void *
cm_arena_alloc(cm_arena *a, size_t n)
{
	struct cm_arena_block *b = a->head;
	void *p;

	n = (n + 15) & ~(size_t) 15;
	if (n == 0)
		n = 16;
	if (b == NULL || b->size - b->used < n) {
		size_t sz = n > ARENA_BLOCK ? n : ARENA_BLOCK;
		if ((b = malloc(sizeof(*b) + sz)) == NULL)
			fatalx("event=oom where=arena size=%zu", sz);
		b->size = sz;
		b->used = 0;
		if (a->head == NULL || n <= ARENA_BLOCK) {
			b->next = a->head;
			a->head = b;
		} else {
			/* A big one-off block goes behind the current one so
			 * the current block's free space stays usable. */
			b->next = a->head->next;
			a->head->next = b;
			b->used = n;
			memset(b->data, 0, n);
			return (b->data);
		}
	}
	p = b->data + b->used;
	b->used += n;
	memset(p, 0, n);
	return (p);
}

char *
cm_arena_strndup(cm_arena *a, const char *s, size_t n)
{
	char *p = cm_arena_alloc(a, n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return (p);
}

char *
cm_arena_strdup(cm_arena *a, const char *s)
{
	return (cm_arena_strndup(a, s, strlen(s)));
}

char *
cm_arena_printf(cm_arena *a, const char *fmt, ...)
{
	va_list ap;
	int n;
	char *p;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return (cm_arena_strdup(a, ""));
	p = cm_arena_alloc(a, (size_t) n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t) n + 1, fmt, ap);
	va_end(ap);
	return (p);
}
