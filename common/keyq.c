/*
 * keyq.c - per-key FIFO queues (keyq.h): a chained hash table of busy
 * keys, each with a singly linked FIFO of its items, the head running.
 *
 * The table doubles when it holds more keys than buckets and never
 * shrinks: its size follows the most keys ever busy at once, which the
 * worker bounds by its concurrency.  Nodes, and entries whose key fits
 * KEYQ_INLINE bytes (an order id does), go to free lists when done and
 * are taken from them again: each record pushed and done cost four
 * malloc(3) and free(3) calls, about 440 instructions, and more under a
 * burst that overflows malloc's per-thread caches.  The lists hold no
 * more than the most items and keys ever held at once.  What they hold is
 * poisoned under AddressSanitizer, which catches a use after keyq_done()
 * as it would a use after free() (the macros are no-ops otherwise).
 */
#include <sanitizer/asan_interface.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyq.h"

#define KEYQ_BUCKETS0	64
#define KEYQ_INLINE	64	/* key bytes of an entry kept for reuse */

struct keyq_node {
	struct keyq_node *next;
	void		*item;
};

struct keyq_ent {
	struct keyq_ent	*next;		/* in its bucket */
	struct keyq_node *head;		/* running */
	struct keyq_node *tail;
	uint64_t	 hash;
	size_t		 keylen;
	unsigned char	 key[];
};

struct keyq {
	struct keyq_ent	**b;
	size_t		 nb;		/* a power of two */
	size_t		 nkeys;
	size_t		 nitems;
	struct keyq_node *free_nodes;	/* linked by next */
	struct keyq_ent	*free_ents;	/* of KEYQ_INLINE key bytes */
};

/* FNV-1a, 64 bits: keys are short ids, the table needs no more. */
static uint64_t
keyq_hash(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h = 14695981039346656037ULL;

	while (len-- > 0) {
		h ^= *p++;
		h *= 1099511628211ULL;
	}
	return h;
}

struct keyq *
keyq_new(void)
{
	struct keyq *q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	if ((q->b = calloc(KEYQ_BUCKETS0, sizeof(*q->b))) == NULL) {
		free(q);
		return NULL;
	}
	q->nb = KEYQ_BUCKETS0;
	return q;
}

void
keyq_free(struct keyq *q)
{
	struct keyq_ent *e, *en;
	struct keyq_node *n, *nn;
	size_t i;

	if (q == NULL)
		return;
	for (i = 0; i < q->nb; i++)
		for (e = q->b[i]; e != NULL; e = en) {
			en = e->next;
			for (n = e->head; n != NULL; n = nn) {
				nn = n->next;
				free(n);
			}
			free(e);
		}
	for (n = q->free_nodes; n != NULL; n = nn) {
		ASAN_UNPOISON_MEMORY_REGION(n, sizeof(*n));
		nn = n->next;
		free(n);
	}
	for (e = q->free_ents; e != NULL; e = en) {
		ASAN_UNPOISON_MEMORY_REGION(e, sizeof(*e) + KEYQ_INLINE);
		en = e->next;
		free(e);
	}
	free(q->b);
	free(q);
}

static struct keyq_node *
node_get(struct keyq *q)
{
	struct keyq_node *n;

	if ((n = q->free_nodes) != NULL) {
		ASAN_UNPOISON_MEMORY_REGION(n, sizeof(*n));
		q->free_nodes = n->next;
		return n;
	}
	return malloc(sizeof(*n));
}

static void
node_put(struct keyq *q, struct keyq_node *n)
{
	n->next = q->free_nodes;
	q->free_nodes = n;
	ASAN_POISON_MEMORY_REGION(n, sizeof(*n));
}

/* An entry for a key of len bytes; its keylen is set to len. */
static struct keyq_ent *
ent_get(struct keyq *q, size_t len)
{
	struct keyq_ent *e;

	if (len > KEYQ_INLINE)
		e = malloc(sizeof(*e) + len);
	else if ((e = q->free_ents) != NULL) {
		ASAN_UNPOISON_MEMORY_REGION(e, sizeof(*e) + KEYQ_INLINE);
		q->free_ents = e->next;
	} else
		e = malloc(sizeof(*e) + KEYQ_INLINE);
	if (e != NULL)
		e->keylen = len;
	return e;
}

static void
ent_put(struct keyq *q, struct keyq_ent *e)
{
	if (e->keylen > KEYQ_INLINE) {
		free(e);
		return;
	}
	e->next = q->free_ents;
	q->free_ents = e;
	ASAN_POISON_MEMORY_REGION(e, sizeof(*e) + KEYQ_INLINE);
}

/* The entry of key and the link that points at it, or NULL. */
static struct keyq_ent **
keyq_find(const struct keyq *q, const void *key, size_t len, uint64_t h)
{
	struct keyq_ent **pp;

	for (pp = &q->b[h & (q->nb - 1)]; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->hash == h && (*pp)->keylen == len &&
		    (len == 0 || memcmp((*pp)->key, key, len) == 0))
			return pp;
	return NULL;
}

/* Doubles the table; on failure it stays as it is (only slower). */
static void
keyq_grow(struct keyq *q)
{
	struct keyq_ent **nb, *e, *en;
	size_t i, n = q->nb * 2;

	if ((nb = calloc(n, sizeof(*nb))) == NULL)
		return;
	for (i = 0; i < q->nb; i++)
		for (e = q->b[i]; e != NULL; e = en) {
			en = e->next;
			e->next = nb[e->hash & (n - 1)];
			nb[e->hash & (n - 1)] = e;
		}
	free(q->b);
	q->b = nb;
	q->nb = n;
}

int
keyq_busy(const struct keyq *q, const void *key, size_t keylen)
{
	return keyq_find(q, key, keylen, keyq_hash(key, keylen)) != NULL;
}

int
keyq_push(struct keyq *q, const void *key, size_t keylen, void *item)
{
	struct keyq_ent **pp, *e;
	struct keyq_node *n;
	uint64_t h = keyq_hash(key, keylen);

	if ((n = node_get(q)) == NULL)
		return -1;
	n->next = NULL;
	n->item = item;
	if ((pp = keyq_find(q, key, keylen, h)) != NULL) {
		e = *pp;
		e->tail->next = n;
		e->tail = n;
		q->nitems++;
		return 0;
	}
	if ((e = ent_get(q, keylen)) == NULL) {
		node_put(q, n);
		return -1;
	}
	e->head = e->tail = n;
	e->hash = h;
	if (keylen > 0)
		memcpy(e->key, key, keylen);
	if (q->nkeys >= q->nb)
		keyq_grow(q);
	e->next = q->b[h & (q->nb - 1)];
	q->b[h & (q->nb - 1)] = e;
	q->nkeys++;
	q->nitems++;
	return 1;
}

void *
keyq_done(struct keyq *q, const void *key, size_t keylen)
{
	struct keyq_ent **pp, *e;
	struct keyq_node *n;

	if ((pp = keyq_find(q, key, keylen, keyq_hash(key, keylen))) == NULL)
		return NULL;
	e = *pp;
	n = e->head;
	e->head = n->next;
	node_put(q, n);
	q->nitems--;
	if (e->head != NULL)
		return e->head->item;
	*pp = e->next;
	ent_put(q, e);
	q->nkeys--;
	return NULL;
}

size_t
keyq_items(const struct keyq *q)
{
	return q->nitems;
}

size_t
keyq_keys(const struct keyq *q)
{
	return q->nkeys;
}
