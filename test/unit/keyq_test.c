/*
 * keyq_test.c - unit tests for common/keyq.c: items of one key come out
 * one at a time in the order they went in; other keys never wait; what
 * is kept for reuse never confuses one key with another.
 *
 * Usage: keyq_test [NAME]; without NAME it lists the tests.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyq.h"
#include "unit.h"

#define ITEM(i)	((void *)(uintptr_t)(i))

static void
test_fifo(void)
{
	struct keyq *q;

	CHECK((q = keyq_new()) != NULL);
	CHECK(!keyq_busy(q, "a", 1));
	CHECK(keyq_push(q, "a", 1, ITEM(1)) == 1);
	CHECK(keyq_busy(q, "a", 1));
	CHECK(keyq_push(q, "a", 1, ITEM(2)) == 0);
	CHECK(keyq_push(q, "a", 1, ITEM(3)) == 0);
	CHECK(keyq_items(q) == 3 && keyq_keys(q) == 1);
	CHECK(keyq_done(q, "a", 1) == ITEM(2));
	CHECK(keyq_done(q, "a", 1) == ITEM(3));
	CHECK(keyq_done(q, "a", 1) == NULL);
	CHECK(!keyq_busy(q, "a", 1));
	CHECK(keyq_items(q) == 0 && keyq_keys(q) == 0);
	CHECK(keyq_done(q, "a", 1) == NULL);	/* not busy: no change */
	keyq_free(q);
}

static void
test_keys(void)
{
	struct keyq *q;

	CHECK((q = keyq_new()) != NULL);
	CHECK(keyq_push(q, "a", 1, ITEM(1)) == 1);
	CHECK(keyq_push(q, "b", 1, ITEM(2)) == 1);
	CHECK(keyq_push(q, "ab", 2, ITEM(3)) == 1);
	CHECK(keyq_push(q, "a\0b", 3, ITEM(4)) == 1);
	CHECK(keyq_push(q, "", 0, ITEM(5)) == 1);
	CHECK(keyq_push(q, "", 0, ITEM(6)) == 0);
	CHECK(keyq_keys(q) == 5 && keyq_items(q) == 6);
	CHECK(keyq_done(q, "b", 1) == NULL);
	CHECK(keyq_busy(q, "a", 1));
	CHECK(keyq_done(q, "", 0) == ITEM(6));
	keyq_free(q);		/* items still held: freed with it */
}

/*
 * Thousands of keys, items finished in a shuffled order of keys: each
 * key's items still come out in order, and the table grows.
 */
static void
test_many(void)
{
	enum { NKEYS = 5000, PER = 4 };
	struct keyq *q;
	char key[16];
	int *next, *order, i, k, t, started;
	void *it;

	CHECK((q = keyq_new()) != NULL);
	next = calloc(NKEYS, sizeof(*next));
	order = calloc(NKEYS, sizeof(*order));
	started = 0;
	for (i = 0; i < PER; i++)
		for (k = 0; k < NKEYS; k++) {
			snprintf(key, sizeof(key), "o-%d", k);
			if (keyq_push(q, key, strlen(key),
			    ITEM(k * PER + i + 1)) == 1)
				started++;
		}
	CHECK(started == NKEYS);
	CHECK(keyq_keys(q) == NKEYS && keyq_items(q) == NKEYS * PER);
	for (k = 0; k < NKEYS; k++)
		order[k] = k;
	srandom(7);
	for (k = NKEYS - 1; k > 0; k--) {
		i = (int)(random() % (k + 1));
		t = order[k];
		order[k] = order[i];
		order[i] = t;
	}
	for (i = 1; i <= PER; i++)
		for (t = 0; t < NKEYS; t++) {
			k = order[t];
			snprintf(key, sizeof(key), "o-%d", k);
			it = keyq_done(q, key, strlen(key));
			if (i < PER)
				CHECK(it == ITEM(k * PER + i + 1));
			else
				CHECK(it == NULL);
			next[k]++;
		}
	CHECK(keyq_keys(q) == 0 && keyq_items(q) == 0);
	free(next);
	free(order);
	keyq_free(q);
}

/*
 * Entries and nodes are reused (keyq.c keeps them): keys of every length
 * around the inline size, in turn and over each other's reused entries,
 * are still told apart by their last byte and by their length.
 */
static void
test_reuse(void)
{
	static const size_t lens[] = { 0, 1, 63, 64, 65, 200 };
	enum { NLENS = sizeof(lens) / sizeof(lens[0]) };
	struct keyq *q;
	char a[256], b[256];
	size_t i, j, round;

	CHECK((q = keyq_new()) != NULL);
	memset(a, 'k', sizeof(a));
	memcpy(b, a, sizeof(b));
	for (round = 0; round < 3; round++)
		for (i = 0; i < NLENS; i++) {
			j = (i + round + 1) % NLENS;
			if (lens[i] > 0)
				b[lens[i] - 1] = 'z';
			CHECK(keyq_push(q, a, lens[i], ITEM(1)) == 1);
			CHECK(keyq_push(q, a, lens[j], ITEM(2)) == 1);
			CHECK(keyq_busy(q, b, lens[i]) == (lens[i] == 0));
			CHECK(keyq_push(q, a, lens[i], ITEM(3)) == 0);
			CHECK(keyq_done(q, a, lens[i]) == ITEM(3));
			CHECK(keyq_done(q, a, lens[j]) == NULL);
			CHECK(keyq_done(q, a, lens[i]) == NULL);
			CHECK(keyq_keys(q) == 0 && keyq_items(q) == 0);
			if (lens[i] > 0)
				b[lens[i] - 1] = 'k';
		}
	keyq_free(q);
}

static const struct unit_test tests[] = {
	{ "fifo", test_fifo },
	{ "keys", test_keys },
	{ "many", test_many },
	{ "reuse", test_reuse },
};

int
main(int argc, char *argv[])
{
	return unit_main("keyq_test", tests, argc, argv);
}
