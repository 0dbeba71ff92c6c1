/*
 * jsonmem.h - where cJSON gets its memory: a per-thread arena while a
 * scope is open, malloc otherwise.
 *
 * Parsing an event and building one cost some hundred small allocations
 * each, all freed together a moment later; through malloc and free that
 * was a quarter of order-submit's time.  Between jsonmem_begin() and
 * jsonmem_end() the calling thread's cJSON allocations come from an
 * arena, cJSON_Delete() and cJSON_free() of them cost nothing, and
 * jsonmem_end() takes back everything allocated since its begin at once.
 *
 * Contract: nothing cJSON allocates inside a scope may outlive it or be
 * handed to another thread (cJSON_Print() results included: print into a
 * caller's buffer, or print after jsonmem_end()).  Scopes nest.  What
 * does not fit in the arena comes from malloc, as outside a scope, and
 * anything cJSON allocates may be freed with cJSON_free() or
 * cJSON_Delete() inside a scope or out of it.
 */
#ifndef JSONMEM_H
#define JSONMEM_H

#include <stddef.h>

#define JSONMEM_ARENA	65536	/* bytes of a thread's arena */

size_t	jsonmem_begin(void);
void	jsonmem_end(size_t mark);
size_t	jsonmem_used(void);	/* arena bytes in use, for the tests */

#endif
