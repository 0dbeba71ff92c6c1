/*
 * timerheap.h - items waiting until a time: a binary min-heap on an
 * int64 due time, for records waiting for their next attempt (pipe
 * mode's in-process retries, Kafka mode's retries read before they are
 * due).  The clock is the caller's: monotonic or epoch ms, one per heap.
 *
 * Items are the caller's pointers, never looked at.  Pure C, not
 * thread-safe.  All zero is an empty heap.
 */
#ifndef OF_TIMERHEAP_H
#define OF_TIMERHEAP_H

#include <stddef.h>
#include <stdint.h>

struct timer {
	int64_t	 due;
	void	*item;
};

struct timerheap {
	struct timer	*h;
	size_t		 n;
	size_t		 cap;
};

/* Adds item due at due.  Returns 0, or -1 when out of memory. */
int	timerheap_push(struct timerheap *, int64_t due, void *item);

/* Takes out the item due first; the heap must not be empty. */
void	*timerheap_pop(struct timerheap *);

/* When the first item is due, or INT64_MAX when the heap is empty. */
int64_t	timerheap_next(const struct timerheap *);

/* Frees the heap's array (not the items); it is empty again. */
void	timerheap_free(struct timerheap *);

#endif
