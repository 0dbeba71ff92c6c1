/*
 * offtrack_test.c - unit tests for common/offtrack.c: the committable
 * offset never passes a pending record, whatever order records finish in.
 *
 * Usage: offtrack_test [NAME]; without NAME it runs every test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offtrack.h"
#include "unit.h"

/* The committable offset of topic "t" partition part, or -1 if none. */
static int64_t
next_of(struct offtrack *t, int32_t part)
{
	int64_t next;

	if (!offtrack_committable(t, "t", part, &next))
		return -1;
	return next;
}

static void
test_inorder(void)
{
	struct offtrack *t;
	int64_t o;

	CHECK((t = offtrack_new()) != NULL);
	CHECK(next_of(t, 0) == -1);
	for (o = 10; o < 15; o++)
		CHECK(offtrack_begin(t, "t", 0, o) == 0);
	CHECK(offtrack_pending(t) == 5);
	CHECK(next_of(t, 0) == 10);
	for (o = 10; o < 15; o++) {
		CHECK(offtrack_done(t, "t", 0, o) == 1);
		CHECK(next_of(t, 0) == o + 1);
	}
	CHECK(offtrack_pending(t) == 0);
	CHECK(offtrack_done(t, "t", 0, 12) == -1);	/* already done */
	CHECK(offtrack_done(t, "t", 0, 99) == -1);	/* never begun */
	CHECK(offtrack_done(t, "t", 1, 10) == -1);	/* unknown partition */
	CHECK(offtrack_begin(t, "t", 0, -1) == -1);
	CHECK(next_of(t, 0) == 15);
	offtrack_free(t);
}

static void
test_outoforder(void)
{
	struct offtrack *t;
	int64_t o;

	CHECK((t = offtrack_new()) != NULL);
	for (o = 0; o < 6; o++)
		CHECK(offtrack_begin(t, "t", 0, o) == 0);
	CHECK(offtrack_done(t, "t", 0, 5) == 0);
	CHECK(offtrack_done(t, "t", 0, 4) == 0);
	CHECK(offtrack_done(t, "t", 0, 1) == 0);
	CHECK(offtrack_done(t, "t", 0, 1) == -1);
	CHECK(next_of(t, 0) == 0);
	CHECK(offtrack_done(t, "t", 0, 0) == 1);
	CHECK(next_of(t, 0) == 2);	/* 2 is still pending */
	CHECK(offtrack_done(t, "t", 0, 3) == 0);
	CHECK(next_of(t, 0) == 2);
	CHECK(offtrack_partition_pending(t, "t", 0) == 1);
	CHECK(offtrack_done(t, "t", 0, 2) == 1);
	CHECK(next_of(t, 0) == 6);
	CHECK(offtrack_pending(t) == 0);
	offtrack_free(t);
}

static void
test_gaps(void)
{
	struct offtrack *t;

	CHECK((t = offtrack_new()) != NULL);
	/* 6 is a transaction marker or was compacted away: never seen. */
	CHECK(offtrack_begin(t, "t", 0, 5) == 0);
	CHECK(offtrack_begin(t, "t", 0, 7) == 0);
	CHECK(offtrack_done(t, "t", 0, 7) == 0);
	CHECK(next_of(t, 0) == 5);
	CHECK(offtrack_done(t, "t", 0, 5) == 1);
	CHECK(next_of(t, 0) == 8);
	/* A gap before a pending record: commit stops at the pending one. */
	CHECK(offtrack_begin(t, "t", 0, 20) == 0);
	CHECK(offtrack_begin(t, "t", 0, 30) == 0);
	CHECK(offtrack_done(t, "t", 0, 30) == 0);
	CHECK(next_of(t, 0) == 20);
	CHECK(offtrack_done(t, "t", 0, 20) == 1);
	CHECK(next_of(t, 0) == 31);
	offtrack_free(t);
}

/* A small deterministic generator, so a failure can be replayed. */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void
test_thousands(void)
{
	enum { N = 20000, P = 3 };
	struct offtrack *t;
	static int64_t order[P][N];
	static char done[P][N];
	int64_t low[P], base = 1000;
	uint64_t seed = 42;
	size_t i, j, k;
	int32_t p;

	CHECK((t = offtrack_new()) != NULL);
	/* Every third offset is a gap; offsets begin in order. */
	for (p = 0; p < P; p++) {
		for (i = 0; i < N; i++) {
			CHECK(offtrack_begin(t, "t", p, base + 3 * i / 2) == 0);
			order[p][i] = i;
		}
		for (i = N - 1; i > 0; i--) {	/* shuffle the finishing order */
			j = rnd(&seed) % (i + 1);
			k = order[p][i];
			order[p][i] = order[p][j];
			order[p][j] = k;
		}
		low[p] = 0;
	}
	CHECK(offtrack_pending(t) == (size_t)N * P);
	for (i = 0; i < N; i++) {
		for (p = 0; p < P; p++) {
			k = order[p][i];
			CHECK(offtrack_done(t, "t", p, base + 3 * k / 2) >= 0);
			done[p][k] = 1;
			while (low[p] < N && done[p][low[p]])
				low[p]++;
			if (low[p] < N)
				CHECK(next_of(t, p) == base + 3 * low[p] / 2);
			else
				CHECK(next_of(t, p) ==
				    base + 3 * (int64_t)(N - 1) / 2 + 1);
		}
	}
	CHECK(offtrack_pending(t) == 0);
	offtrack_free(t);
}

static void
test_forget(void)
{
	struct offtrack *t;

	CHECK((t = offtrack_new()) != NULL);
	CHECK(offtrack_begin(t, "a", 0, 1) == 0);
	CHECK(offtrack_begin(t, "a", 0, 2) == 0);
	CHECK(offtrack_begin(t, "a", 1, 7) == 0);
	CHECK(offtrack_begin(t, "b", 0, 4) == 0);
	CHECK(offtrack_pending(t) == 4);
	offtrack_forget_partition(t, "a", 0);
	offtrack_forget_partition(t, "a", 9);		/* unknown: a no-op */
	CHECK(offtrack_pending(t) == 2);
	CHECK(offtrack_partition_pending(t, "a", 0) == 0);
	CHECK(offtrack_partition_pending(t, "a", 1) == 1);
	CHECK(offtrack_done(t, "a", 0, 1) == -1);	/* late delivery */
	{
		int64_t n;

		CHECK(offtrack_committable(t, "a", 0, &n) == 0);
		CHECK(offtrack_committable(t, "b", 0, &n) == 1 && n == 4);
		CHECK(offtrack_done(t, "b", 0, 4) == 1);
		CHECK(offtrack_committable(t, "b", 0, &n) == 1 && n == 5);
		CHECK(offtrack_committable(t, "a", 1, &n) == 1 && n == 7);
	}
	/* Assigned again: starts afresh. */
	CHECK(offtrack_begin(t, "a", 0, 50) == 0);
	CHECK(offtrack_done(t, "a", 0, 50) == 1);
	{
		int64_t n;

		CHECK(offtrack_committable(t, "a", 0, &n) == 1 && n == 51);
	}
	offtrack_free(t);
}

static void
test_rewind(void)
{
	struct offtrack *t;
	int64_t o;

	CHECK((t = offtrack_new()) != NULL);
	for (o = 0; o < 10; o++)
		CHECK(offtrack_begin(t, "t", 0, o) == 0);
	CHECK(offtrack_done(t, "t", 0, 0) == 1);
	CHECK(offtrack_done(t, "t", 0, 1) == 1);
	CHECK(offtrack_done(t, "t", 0, 3) == 0);	/* 2 pending */
	CHECK(offtrack_done(t, "t", 0, 6) == 0);
	/* The consumer goes back to 5: 5..9 will come again. */
	CHECK(offtrack_begin(t, "t", 0, 5) == 0);
	CHECK(offtrack_pending(t) == 3);		/* 2, 4 and the new 5 */
	CHECK(offtrack_done(t, "t", 0, 7) == -1);	/* dropped */
	CHECK(offtrack_done(t, "t", 0, 2) == 1);	/* up to 4, pending */
	CHECK(next_of(t, 0) == 4);
	CHECK(offtrack_done(t, "t", 0, 4) == 1);
	CHECK(next_of(t, 0) == 5);
	CHECK(offtrack_done(t, "t", 0, 5) == 1);
	CHECK(next_of(t, 0) == 6);

	/* A seek back to a record not begun yet (a retry not yet due). */
	for (o = 6; o < 9; o++)
		CHECK(offtrack_begin(t, "t", 0, o) == 0);
	CHECK(offtrack_rewind(t, "t", 0, 7) == 0);
	CHECK(offtrack_pending(t) == 1);
	CHECK(offtrack_done(t, "t", 0, 8) == -1);
	CHECK(offtrack_done(t, "t", 0, 6) == 1);
	CHECK(next_of(t, 0) == 7);			/* never past 7 */
	CHECK(offtrack_begin(t, "t", 0, 7) == 0);	/* not a rewind */
	CHECK(offtrack_pending(t) == 1);
	CHECK(offtrack_done(t, "t", 0, 7) == 1);
	CHECK(next_of(t, 0) == 8);

	/* Below everything resolved (an offset reset to earliest). */
	CHECK(offtrack_begin(t, "t", 0, 0) == 0);
	CHECK(next_of(t, 0) == 0);
	CHECK(offtrack_done(t, "t", 0, 0) == 1);
	CHECK(next_of(t, 0) == 1);

	/* The same offset delivered twice is begun twice, pending once. */
	CHECK(offtrack_begin(t, "t", 0, 1) == 0);
	CHECK(offtrack_begin(t, "t", 0, 1) == 0);
	CHECK(offtrack_pending(t) == 1);
	CHECK(offtrack_done(t, "t", 0, 1) == 1);
	CHECK(offtrack_done(t, "t", 0, 1) == -1);

	/* A rewind creates an unknown partition at its offset. */
	CHECK(offtrack_rewind(t, "t", 3, 40) == 0);
	CHECK(next_of(t, 3) == 40);
	CHECK(offtrack_rewind(t, "t", 3, -1) == -1);
	offtrack_free(t);
}

/* The ring wraps around and grows while records are in flight. */
static void
test_wrap(void)
{
	struct offtrack *t;
	int64_t o, lo = 0;

	CHECK((t = offtrack_new()) != NULL);
	for (o = 0; o < 5000; o++) {
		CHECK(offtrack_begin(t, "t", 0, o) == 0);
		/* Keep a window of 40, then 400 records in flight. */
		if (o - lo >= (o < 2500 ? 40 : 400)) {
			CHECK(offtrack_done(t, "t", 0, lo) == 1);
			lo++;
			CHECK(next_of(t, 0) == lo);
		}
	}
	CHECK(offtrack_partition_pending(t, "t", 0) == (size_t)(5000 - lo));
	CHECK(offtrack_partition_window(t, "t", 0) == (size_t)(5000 - lo));
	/* Done records above a pending one stay in the window. */
	CHECK(offtrack_done(t, "t", 0, 4999) == 0);
	CHECK(offtrack_partition_window(t, "t", 0) == (size_t)(5000 - lo));
	CHECK(offtrack_partition_pending(t, "t", 0) == (size_t)(4999 - lo));
	CHECK(offtrack_partition_window(t, "t", 7) == 0);
	offtrack_free(t);
}

static const struct unit_test tests[] = {
	{ "inorder", test_inorder },
	{ "outoforder", test_outoforder },
	{ "gaps", test_gaps },
	{ "thousands", test_thousands },
	{ "forget", test_forget },
	{ "rewind", test_rewind },
	{ "wrap", test_wrap },
};

int
main(int argc, char *argv[])
{
	return unit_main("offtrack_test", tests, argc, argv);
}
