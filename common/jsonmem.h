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

#include <cjson/cJSON.h>

#define JSONMEM_ARENA	65536	/* bytes of a thread's arena */

size_t	jsonmem_begin(void);
void	jsonmem_end(size_t mark);
/*
 * jsonmem_end() for a scope in which tree was made, whole: every node and
 * string of it allocated since the scope's begin.  The tree goes with the
 * arena, without the walk of cJSON_Delete() (a tenth of building and
 * printing an event), unless some of the scope's allocations came from
 * malloc; then it is deleted first.
 */
void	jsonmem_end_tree(size_t mark, cJSON *tree);
size_t	jsonmem_used(void);	/* arena bytes in use, for the tests */

#endif
