/*
 * keyset.h - a set of strings shared by threads: order-serve's
 * idempotency keys of requests in progress, so that a second request with
 * a key in progress is answered 409 (orderflow(7), order-serve(1)).
 *
 * Guarantees: keyset_add() of a key already in the set fails until
 * keyset_del() of that key; keys are compared byte for byte.
 *
 * Threads: none of its own; every function may be called from any thread
 * at once (one mutex).
 *
 * Ownership: the set copies the keys it holds.
 */
#ifndef OF_KEYSET_H
#define OF_KEYSET_H

#include <stddef.h>

struct keyset;

/* An empty set; out of memory is fatal. */
struct keyset	*keyset_new(void);

/* Returns 0 when added, -1 when the key is in the set already. */
int	keyset_add(struct keyset *, const char *key);

/* Removes key; a key not in the set is no error. */
void	keyset_del(struct keyset *, const char *key);

/* How many keys the set holds. */
size_t	keyset_count(struct keyset *);

/* Frees the set and the keys it still holds. */
void	keyset_free(struct keyset *);

#endif /* OF_KEYSET_H */
