/*
 * timerheap.c - a binary min-heap of items on their due time
 * (timerheap.h); it doubles when full and never shrinks.
 */
#include <stdlib.h>
#include <string.h>

#include "timerheap.h"

static void
timer_swap(struct timer *a, struct timer *b)
{
	struct timer t = *a;

	*a = *b;
	*b = t;
}

int
timerheap_push(struct timerheap *q, int64_t due, void *item)
{
	struct timer *n;
	size_t i;

	if (q->n == q->cap) {
		n = reallocarray(q->h, q->cap == 0 ? 16 : q->cap * 2,
		    sizeof(*n));
		if (n == NULL)
			return -1;
		q->h = n;
		q->cap = q->cap == 0 ? 16 : q->cap * 2;
	}
	i = q->n++;
	q->h[i].due = due;
	q->h[i].item = item;
	for (; i > 0 && q->h[(i - 1) / 2].due > q->h[i].due; i = (i - 1) / 2)
		timer_swap(&q->h[(i - 1) / 2], &q->h[i]);
	return 0;
}

void *
timerheap_pop(struct timerheap *q)
{
	void *top = q->h[0].item;
	size_t i = 0, l, m;

	q->h[0] = q->h[--q->n];
	for (;;) {
		l = 2 * i + 1;
		m = i;
		if (l < q->n && q->h[l].due < q->h[m].due)
			m = l;
		if (l + 1 < q->n && q->h[l + 1].due < q->h[m].due)
			m = l + 1;
		if (m == i)
			break;
		timer_swap(&q->h[i], &q->h[m]);
		i = m;
	}
	return top;
}

int64_t
timerheap_next(const struct timerheap *q)
{
	return q->n > 0 ? q->h[0].due : INT64_MAX;
}

void
timerheap_free(struct timerheap *q)
{
	free(q->h);
	memset(q, 0, sizeof(*q));
}
