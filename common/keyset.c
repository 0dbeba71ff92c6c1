/*
 * keyset.c - a set of strings shared by threads, a hash table of chained
 * nodes under one mutex (keyset.h).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "keyset.h"
#include "util.h"

#define KEYSET_BUCKETS		1024

struct keynode {
	struct keynode	*next;
	char		 key[];
};

struct keyset {
	pthread_mutex_t		 mu;
	struct keynode		*b[KEYSET_BUCKETS];
	atomic_size_t		 count;
};

/* FNV-1a. */
static unsigned
key_hash(const char *k)
{
	unsigned h = 2166136261u;

	for (; *k != '\0'; k++)
		h = (h ^ (unsigned char)*k) * 16777619u;
	return h % KEYSET_BUCKETS;
}

struct keyset *
keyset_new(void)
{
	struct keyset *ks;

	ks = util_xcalloc(1, sizeof(*ks));
	pthread_mutex_init(&ks->mu, NULL);
	return ks;
}

int
keyset_add(struct keyset *ks, const char *key)
{
	struct keynode *n;
	unsigned h = key_hash(key);
	size_t len = strlen(key);

	pthread_mutex_lock(&ks->mu);
	for (n = ks->b[h]; n != NULL; n = n->next)
		if (strcmp(n->key, key) == 0) {
			pthread_mutex_unlock(&ks->mu);
			return -1;
		}
	n = util_xmalloc(sizeof(*n) + len + 1);
	memcpy(n->key, key, len + 1);
	n->next = ks->b[h];
	ks->b[h] = n;
	pthread_mutex_unlock(&ks->mu);
	atomic_fetch_add(&ks->count, 1);
	return 0;
}

void
keyset_del(struct keyset *ks, const char *key)
{
	struct keynode **np, *n;

	pthread_mutex_lock(&ks->mu);
	for (np = &ks->b[key_hash(key)]; (n = *np) != NULL; np = &n->next)
		if (strcmp(n->key, key) == 0) {
			*np = n->next;
			free(n);
			atomic_fetch_sub(&ks->count, 1);
			break;
		}
	pthread_mutex_unlock(&ks->mu);
}

size_t
keyset_count(struct keyset *ks)
{
	return atomic_load(&ks->count);
}

void
keyset_free(struct keyset *ks)
{
	struct keynode *n, *next;
	size_t i;

	if (ks == NULL)
		return;
	for (i = 0; i < KEYSET_BUCKETS; i++)
		for (n = ks->b[i]; n != NULL; n = next) {
			next = n->next;
			free(n);
		}
	pthread_mutex_destroy(&ks->mu);
	free(ks);
}
