/*
 * keyq.h - per-key FIFO queues for key-ordered concurrency.
 *
 * Records with the same key must be handled one after another, in the
 * order they arrived; records with different keys may be handled at the
 * same time.  keyq remembers, for each key with work outstanding, the one
 * item running and the items waiting behind it, and hands the next one
 * out when the running one is finished.  A key with nothing outstanding
 * takes no memory.
 *
 * Items are the caller's pointers; keyq never looks at them.  Keys are
 * bytes (may hold NUL), copied.  Memory is one entry per busy key and one
 * node per item held; what is done is kept for reuse, up to the most ever
 * held at once, until keyq_free().  Pure C, not thread-safe: one thread owns it; unit
 * tested in test/unit/keyq_test.c.
 */
#ifndef OF_KEYQ_H
#define OF_KEYQ_H

#include <stddef.h>

struct keyq;

/* Returns NULL when out of memory. */
struct keyq	*keyq_new(void);

/* Frees the queue; the items still held are the caller's to free. */
void		 keyq_free(struct keyq *);

/*
 * Whether an item of key is running or waiting: then another item of the
 * same key must be queued with keyq_push(), not started.
 */
int	keyq_busy(const struct keyq *, const void *key, size_t keylen);

/*
 * Adds item under key.  Returns 1 when the key was idle: item is now the
 * key's running item and the caller starts it; 0 when it waits behind
 * the key's running item; -1 when out of memory (nothing changed).
 */
int	keyq_push(struct keyq *, const void *key, size_t keylen, void *item);

/*
 * The running item of key is finished.  Returns the key's next waiting
 * item, which is now its running one (the caller starts it), or NULL
 * when none waits (the key is idle and forgotten).  Calling it for a key
 * that is not busy returns NULL and changes nothing.
 */
void	*keyq_done(struct keyq *, const void *key, size_t keylen);

/* Items held (running and waiting), and busy keys. */
size_t	keyq_items(const struct keyq *);
size_t	keyq_keys(const struct keyq *);

#endif
