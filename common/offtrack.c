/*
 * offtrack.c - in-order offset tracking for at-least-once consumers.
 *
 * Each partition keeps a ring (a power-of-two capacity) of the records
 * begun and not yet resolved, sorted by offset because they are appended
 * in increasing order.  The front of the ring is always pending: done
 * records at the front are popped at once, advancing base, the offset
 * below which everything is resolved.  So committable is the front's
 * offset, or base when the ring is empty.
 *
 * A consumer holds a few dozen partitions at most, so they are found by a
 * linear search (partition number first, then the topic's name).
 */
#include <stdlib.h>
#include <string.h>

#include "offtrack.h"

struct ot_rec {
	int64_t	offset;
	int	done;
};

struct ot_part {
	char		*topic;
	int32_t		 partition;
	struct ot_rec	*ring;
	size_t		 cap;		/* 0 or a power of two */
	size_t		 head;
	size_t		 len;
	size_t		 npending;
	/* Everything below base is resolved; -1: unknown. */
	int64_t		 base;
	/* The highest offset begun; -1: none. */
	int64_t		 last;
};

struct offtrack {
	struct ot_part	**parts;
	size_t		  nparts;
	size_t		  cap;
	size_t		  npending;
};

struct offtrack *
offtrack_new(void)
{
	return calloc(1, sizeof(struct offtrack));
}

static void
part_free(struct ot_part *p)
{
	free(p->topic);
	free(p->ring);
	free(p);
}

void
offtrack_free(struct offtrack *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->nparts; i++)
		part_free(t->parts[i]);
	free(t->parts);
	free(t);
}

static size_t
part_index(const struct offtrack *t, const char *topic, int32_t partition)
{
	size_t i;

	for (i = 0; i < t->nparts; i++)
		if (t->parts[i]->partition == partition &&
		    strcmp(t->parts[i]->topic, topic) == 0)
			return i;
	return (size_t)-1;
}

static struct ot_part *
part_find(const struct offtrack *t, const char *topic, int32_t partition)
{
	size_t i;

	i = part_index(t, topic, partition);
	return i == (size_t)-1 ? NULL : t->parts[i];
}

static struct ot_part *
part_get(struct offtrack *t, const char *topic, int32_t partition)
{
	struct ot_part *p, **np;
	size_t ncap;

	if ((p = part_find(t, topic, partition)) != NULL)
		return p;
	if (t->nparts == t->cap) {
		ncap = t->cap == 0 ? 8 : t->cap * 2;
		if ((np = reallocarray(t->parts, ncap, sizeof(*np))) == NULL)
			return NULL;
		t->parts = np;
		t->cap = ncap;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	if ((p->topic = strdup(topic)) == NULL) {
		free(p);
		return NULL;
	}
	p->partition = partition;
	p->base = -1;
	p->last = -1;
	t->parts[t->nparts++] = p;
	return p;
}

static struct ot_rec *
rec_at(const struct ot_part *p, size_t i)
{
	return &p->ring[(p->head + i) & (p->cap - 1)];
}

/* Doubles the ring, unrolling it so that head is 0 again. */
static int
ring_grow(struct ot_part *p)
{
	struct ot_rec *nr;
	size_t ncap, i;

	ncap = p->cap == 0 ? 64 : p->cap * 2;
	if (ncap < p->cap ||
	    (nr = reallocarray(NULL, ncap, sizeof(*nr))) == NULL)
		return -1;
	for (i = 0; i < p->len; i++)
		nr[i] = *rec_at(p, i);
	free(p->ring);
	p->ring = nr;
	p->cap = ncap;
	p->head = 0;
	return 0;
}

/* Pops the done records at the front; returns 1 if base moved. */
static int
part_settle(struct ot_part *p)
{
	struct ot_rec *r;
	int moved = 0;

	while (p->len > 0 && (r = rec_at(p, 0))->done) {
		p->base = r->offset + 1;
		p->head = (p->head + 1) & (p->cap - 1);
		p->len--;
		moved = 1;
	}
	return moved;
}

static void
part_rewind(struct offtrack *t, struct ot_part *p, int64_t offset)
{
	struct ot_rec *r;

	while (p->len > 0 && (r = rec_at(p, p->len - 1))->offset >= offset) {
		if (!r->done) {
			p->npending--;
			t->npending--;
		}
		p->len--;
	}
	if (p->len == 0 && (p->base < 0 || p->base > offset))
		p->base = offset;
	p->last = offset - 1;
}

int
offtrack_rewind(struct offtrack *t, const char *topic, int32_t partition,
    int64_t offset)
{
	struct ot_part *p;

	if (offset < 0 || (p = part_get(t, topic, partition)) == NULL)
		return -1;
	part_rewind(t, p, offset);
	return 0;
}

int
offtrack_begin(struct offtrack *t, const char *topic, int32_t partition,
    int64_t offset)
{
	struct ot_part *p;
	struct ot_rec *r;

	if (offset < 0 || (p = part_get(t, topic, partition)) == NULL)
		return -1;
	if (offset <= p->last)
		part_rewind(t, p, offset);
	if (p->len == p->cap && ring_grow(p) == -1)
		return -1;
	r = rec_at(p, p->len);
	r->offset = offset;
	r->done = 0;
	p->len++;
	p->npending++;
	t->npending++;
	p->last = offset;
	return 0;
}

/* The record holding offset, by binary search; NULL if there is none. */
static struct ot_rec *
part_search(const struct ot_part *p, int64_t offset, size_t *index)
{
	size_t lo = 0, hi = p->len, mid;
	struct ot_rec *r;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		r = rec_at(p, mid);
		if (r->offset == offset) {
			*index = mid;
			return r;
		}
		if (r->offset < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int
offtrack_done(struct offtrack *t, const char *topic, int32_t partition,
    int64_t offset)
{
	struct ot_part *p;
	struct ot_rec *r;
	size_t i;

	if ((p = part_find(t, topic, partition)) == NULL ||
	    (r = part_search(p, offset, &i)) == NULL || r->done)
		return -1;
	r->done = 1;
	p->npending--;
	t->npending--;
	if (i != 0)
		return 0;
	return part_settle(p);
}

int
offtrack_committable(const struct offtrack *t, const char *topic,
    int32_t partition, int64_t *next)
{
	const struct ot_part *p;

	if ((p = part_find(t, topic, partition)) == NULL)
		return 0;
	if (p->len > 0) {
		*next = rec_at(p, 0)->offset;
		return 1;
	}
	if (p->base < 0)
		return 0;
	*next = p->base;
	return 1;
}

void
offtrack_forget_partition(struct offtrack *t, const char *topic,
    int32_t partition)
{
	size_t i;

	if ((i = part_index(t, topic, partition)) == (size_t)-1)
		return;
	t->npending -= t->parts[i]->npending;
	part_free(t->parts[i]);
	t->parts[i] = t->parts[--t->nparts];
}

size_t
offtrack_partition_pending(const struct offtrack *t, const char *topic,
    int32_t partition)
{
	const struct ot_part *p;

	p = part_find(t, topic, partition);
	return p == NULL ? 0 : p->npending;
}

/* The ring's front is always pending: nothing pending, nothing held. */
size_t
offtrack_partition_window(const struct offtrack *t, const char *topic,
    int32_t partition)
{
	if (offtrack_partition_pending(t, topic, partition) == 0)
		return 0;
	return part_find(t, topic, partition)->len;
}

size_t
offtrack_pending(const struct offtrack *t)
{
	return t->npending;
}
