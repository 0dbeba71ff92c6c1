/*
 * jsonmem.c - cJSON's allocator: a per-thread bump arena for the scopes
 * of jsonmem.h, malloc and free for everything else.
 *
 * The hooks are installed before main() by a constructor, so that no
 * cJSON object ever predates them and any object can be freed by them.
 * An arena is a thread's own 64 KiB, allocated on its first scope and
 * freed when the thread exits; a pointer belongs to it if its address
 * lies inside, so free needs no header on either kind of block.  Under
 * AddressSanitizer what is not handed out is poisoned and blocks are kept
 * REDZONE bytes apart, so that the sanitizer builds still catch a read or
 * write past a block (the macros are no-ops otherwise).
 */
#include <sanitizer/asan_interface.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "jsonmem.h"

#define ALIGN	16
#if defined(__SANITIZE_ADDRESS__)
#define REDZONE	16
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REDZONE	16
#endif
#endif
#ifndef REDZONE
#define REDZONE	0
#endif

static __thread unsigned char	*arena;
static __thread size_t		 used;
static __thread unsigned	 depth;	/* open scopes */
/* Allocations inside a scope that came from malloc; the count at each begin. */
#define DEPTH_MAX	8
static __thread unsigned long	 spills;
static __thread unsigned long	 spills_at[DEPTH_MAX];
static pthread_key_t		 arena_key;
static pthread_once_t		 arena_once = PTHREAD_ONCE_INIT;

static int
in_arena(const void *p)
{
	uintptr_t a = (uintptr_t)arena, x = (uintptr_t)p;

	return arena != NULL && x >= a && x < a + JSONMEM_ARENA;
}

static void *
hook_malloc(size_t n)
{
	size_t need;
	void *p;

	need = ((n + ALIGN - 1) & ~(size_t)(ALIGN - 1)) + REDZONE;
	if (depth == 0)
		return malloc(n);
	if (arena == NULL || need < n || need > JSONMEM_ARENA - used) {
		spills++;
		return malloc(n);
	}
	p = arena + used;
	used += need;
	ASAN_UNPOISON_MEMORY_REGION(p, n);
	return p;
}

static void
hook_free(void *p)
{
	if (!in_arena(p))
		free(p);
}

static void
arena_destroy(void *a)
{
	ASAN_UNPOISON_MEMORY_REGION(a, JSONMEM_ARENA);
	free(a);
}

static void
key_create(void)
{
	if (pthread_key_create(&arena_key, arena_destroy) != 0)
		abort();
}

__attribute__((constructor)) static void
hooks_install(void)
{
	cJSON_Hooks h = { hook_malloc, hook_free };

	cJSON_InitHooks(&h);
}

/* Without memory for an arena, the scope just uses malloc. */
size_t
jsonmem_begin(void)
{
	if (arena == NULL) {
		pthread_once(&arena_once, key_create);
		if ((arena = malloc(JSONMEM_ARENA)) != NULL &&
		    pthread_setspecific(arena_key, arena) != 0) {
			free(arena);
			arena = NULL;
		}
		if (arena != NULL)
			ASAN_POISON_MEMORY_REGION(arena, JSONMEM_ARENA);
	}
	if (depth < DEPTH_MAX)
		spills_at[depth] = spills;
	depth++;
	return used;
}

void
jsonmem_end(size_t mark)
{
	if (depth == 0 || mark > used)
		abort();
	depth--;
	ASAN_POISON_MEMORY_REGION(arena + mark, used - mark);
	used = mark;
}

void
jsonmem_end_tree(size_t mark, cJSON *tree)
{
	if (depth == 0)
		abort();
	if (tree != NULL && (depth > DEPTH_MAX ||
	    spills != spills_at[depth - 1]))
		cJSON_Delete(tree);
	jsonmem_end(mark);
}

size_t
jsonmem_used(void)
{
	return used;
}
