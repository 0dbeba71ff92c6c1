/*
 * inflight.c - the records a worker has in flight (worker_local.h):
 * key-ordered concurrency over keyq.h, the asynchronous jobs of
 * worker.h's start and worker_complete(), and, in Kafka mode, the heap
 * of retry records held until they are due.
 *
 * A job is a copy of its input (value, key, headers), made when it is
 * submitted, so that the consumer's message or pipe mode's line can go
 * at once.  Its key is the record's Kafka key; a record without one is
 * ordered with the other keyless records of its partition; in pipe mode
 * it is the event's subject (one parse a line), "" when it has none.
 *
 * The order within a key: keyq holds a key's jobs in submission order
 * and hands out the next one only when the one before completed, through
 * the ready list (never from inside worker_complete(), which the command
 * calls from its pump).  Everything runs on the worker's thread.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "exitcode.h"
#include "keyq.h"
#include "log.h"
#include "route.h"
#include "util.h"
#include "worker.h"
#include "worker_local.h"

struct worker_job {
	struct worker		*w;
	struct worker_job	*next;		/* the ready list */
	struct worker_input	 in;		/* points into data */
	rd_kafka_headers_t	*hdrs;		/* a copy, or NULL */
	size_t			 keylen;	/* the ordering key's */
	int64_t			 due_ms;	/* held retries: epoch ms */
	char			 tp[64];
	char			 data[];	/* value, NUL, key, NUL, key */
};

/* The event's subject, as the key of pipe mode; "" without one. */
static char *
subject_of(const struct worker_input *in, size_t *len)
{
	const cJSON *s;
	cJSON *o;
	char *k;

	o = in->len > 0 ? cJSON_ParseWithLength(in->value, in->len) : NULL;
	s = cJSON_GetObjectItemCaseSensitive(o, "subject");
	k = strdup(cJSON_IsString(s) ? s->valuestring : "");
	cJSON_Delete(o);
	*len = k != NULL ? strlen(k) : 0;
	return k;
}

/* A copy of in and src, with its ordering key; NULL: out of memory. */
static struct worker_job *
job_new(struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *src)
{
	struct worker_job *j;
	char part[sizeof(int32_t) + 1], *subj = NULL;
	const void *key;
	size_t keylen;

	if (in->key != NULL) {
		key = in->key;
		keylen = in->keylen;
	} else if (in->partition >= 0) {
		/* A NUL first: never the same as a printable key. */
		part[0] = '\0';
		memcpy(part + 1, &in->partition, sizeof(in->partition));
		key = part;
		keylen = sizeof(part);
	} else {
		if ((subj = subject_of(in, &keylen)) == NULL)
			return NULL;
		key = subj;
	}
	j = malloc(sizeof(*j) + in->len + 1 + in->keylen + 1 + keylen);
	if (j == NULL) {
		free(subj);
		return NULL;
	}
	memset(j, 0, sizeof(*j));
	j->w = w;
	j->in = *in;
	if (in->len > 0)
		memcpy(j->data, in->value, in->len);
	j->data[in->len] = '\0';
	j->in.value = in->value != NULL ? j->data : NULL;
	if (in->key != NULL) {
		memcpy(j->data + in->len + 1, in->key, in->keylen);
		j->in.key = j->data + in->len + 1;
	}
	j->keylen = keylen;
	memcpy(j->data + in->len + 1 + in->keylen + 1, key, keylen);
	free(subj);
	if (in->traceparent != NULL) {
		snprintf(j->tp, sizeof(j->tp), "%s", in->traceparent);
		j->in.traceparent = j->tp;
	}
	if (src != NULL && (j->hdrs = rd_kafka_headers_copy(src)) == NULL) {
		free(j);
		return NULL;
	}
	return j;
}

static const char *
job_key(const struct worker_job *j)
{
	return j->data + j->in.len + 1 + j->in.keylen + 1;
}

static void
job_free(struct worker_job *j)
{
	if (j->hdrs != NULL)
		rd_kafka_headers_destroy(j->hdrs);
	free(j);
}

static void
ready_push(struct worker *w, struct worker_job *j)
{
	j->next = NULL;
	if (w->ready_tail != NULL)
		w->ready_tail->next = j;
	else
		w->ready = j;
	w->ready_tail = j;
}

static void
oom(struct worker *w)
{
	log_error("out of memory");
	worker_fail(w, OF_EXIT_FAIL);
}

/* Behind the key's running job, or ready to start when the key is idle. */
static void
job_enqueue(struct worker *w, struct worker_job *j)
{
	switch (keyq_push(w->kq, job_key(j), j->keylen, j)) {
	case 1:
		ready_push(w, j);
		break;
	case 0:
		break;
	default:
		job_free(j);
		oom(w);
		break;
	}
}

/* The outcome goes where it goes; the key's next job becomes ready. */
static void
job_finish(struct worker_job *j, enum worker_outcome r,
    struct worker_output *out, const char *why)
{
	struct worker *w = j->w;
	struct worker_job *next;

	route_outcome(w, &j->in, j->hdrs, r, out, why);
	if ((next = keyq_done(w->kq, job_key(j), j->keylen)) != NULL)
		ready_push(w, next);
	job_free(j);
}

void
worker_complete(struct worker_job *j, enum worker_outcome r,
    struct worker_output *out, const char *why)
{
	j->w->pending--;
	if (r == WORKER_PENDING) {
		r = WORKER_TRANSIENT;
		why = "worker: pending given as an outcome";
	}
	job_finish(j, r, out, why);
}

static void
job_start(struct worker *w, struct worker_job *j)
{
	struct worker_output out;
	enum worker_outcome r;
	char why[WHY_MAX];

	memset(&out, 0, sizeof(out));
	why[0] = '\0';
	w->st->processed++;
	if (w->cf->start != NULL)
		r = w->cf->start(w->cf->ctx, j, &j->in, &out, why,
		    sizeof(why));
	else
		r = w->cf->handle(w->cf->ctx, &j->in, &out, why, sizeof(why));
	if (r == WORKER_PENDING)
		w->pending++;
	else
		job_finish(j, r, &out, why);
}

static void
ready_run(struct worker *w)
{
	struct worker_job *j;

	while ((j = w->ready) != NULL) {
		if ((w->ready = j->next) == NULL)
			w->ready_tail = NULL;
		job_start(w, j);
	}
}

/*
 * The heap of held retries.
 */

static void
heap_swap(struct worker_job **a, struct worker_job **b)
{
	struct worker_job *t = *a;

	*a = *b;
	*b = t;
}

static int
heap_push(struct job_heap *q, struct worker_job *j)
{
	struct worker_job **n;
	size_t i;

	if (q->n == q->cap) {
		n = reallocarray(q->heap, q->cap == 0 ? 16 : q->cap * 2,
		    sizeof(*n));
		if (n == NULL)
			return -1;
		q->heap = n;
		q->cap = q->cap == 0 ? 16 : q->cap * 2;
	}
	i = q->n++;
	q->heap[i] = j;
	for (; i > 0 && q->heap[(i - 1) / 2]->due_ms > q->heap[i]->due_ms;
	    i = (i - 1) / 2)
		heap_swap(&q->heap[(i - 1) / 2], &q->heap[i]);
	return 0;
}

static struct worker_job *
heap_pop(struct job_heap *q)
{
	struct worker_job *top = q->heap[0];
	size_t i = 0, l, m;

	q->heap[0] = q->heap[--q->n];
	for (;;) {
		l = 2 * i + 1;
		m = i;
		if (l < q->n && q->heap[l]->due_ms < q->heap[m]->due_ms)
			m = l;
		if (l + 1 < q->n && q->heap[l + 1]->due_ms <
		    q->heap[m]->due_ms)
			m = l + 1;
		if (m == i)
			break;
		heap_swap(&q->heap[i], &q->heap[m]);
		i = m;
	}
	return top;
}

/*
 * The interface of worker_local.h.
 */

int
inflight_init(struct worker *w)
{
	return (w->kq = keyq_new()) != NULL ? 0 : -1;
}

void
inflight_free(struct worker *w)
{
	while (w->timers.n > 0)
		job_free(heap_pop(&w->timers));
	free(w->timers.heap);
	memset(&w->timers, 0, sizeof(w->timers));
	/* Jobs still held belong to calls abandoned at the deadline. */
	keyq_free(w->kq);
	w->kq = NULL;
}

void
inflight_submit(struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *src)
{
	struct worker_job *j;

	/* One at a time: nothing is ever held, no copy is needed. */
	if (w->cf->start == NULL && keyq_items(w->kq) == 0) {
		route_handle(w, in, src);
		return;
	}
	if ((j = job_new(w, in, src)) == NULL) {
		oom(w);
		return;
	}
	job_enqueue(w, j);
	ready_run(w);
}

int
inflight_hold(struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *src, int64_t due_ms)
{
	struct worker_job *j;

	if (w->timers.n >= WORKER_RETRY_WAITING)
		return -1;
	if ((j = job_new(w, in, src)) == NULL)
		return -1;
	j->due_ms = due_ms;
	if (heap_push(&w->timers, j) == -1) {
		job_free(j);
		return -1;
	}
	log_debug("%s [%d]: offset %" PRId64 " is due in %" PRId64 " ms: "
	    "held", in->topic, (int)in->partition, in->offset,
	    due_ms - util_now_ms());
	return 0;
}

void
inflight_run(struct worker *w, int wait_ms)
{
	int64_t now;

	if (w->kq == NULL)
		return;
	if (w->timers.n > 0) {
		now = util_now_ms();
		while (w->timers.n > 0 && w->timers.heap[0]->due_ms <= now)
			job_enqueue(w, heap_pop(&w->timers));
	}
	ready_run(w);
	if (w->pending > 0 && w->cf->pump != NULL)
		w->cf->pump(w->cf->ctx, wait_ms);
	ready_run(w);
}

void
inflight_drain(struct worker *w, int64_t deadline)
{
	if (w->kq == NULL)
		return;
	while (w->timers.n > 0)
		job_free(heap_pop(&w->timers));
	while (keyq_items(w->kq) > 0 && util_mono_ms() < deadline) {
		inflight_run(w, WORKER_PUMP_MS);
		if (w->p != NULL)
			kafka_poll(w->p, 0);
	}
	if (keyq_items(w->kq) > 0) {
		log_error("%zu record(s) still in flight after %d ms: "
		    "abandoned", keyq_items(w->kq), WORKER_FLUSH_MS);
		worker_fail(w, OF_EXIT_FAIL);
	}
}

size_t
inflight_held(const struct worker *w)
{
	return w->kq != NULL ? keyq_items(w->kq) : 0;
}

int
inflight_full(const struct worker *w)
{
	return w->kq != NULL && keyq_items(w->kq) >=
	    (size_t)(w->cf->concurrency > 0 ? w->cf->concurrency : 1);
}

int
inflight_busy(const struct worker *w)
{
	return w->pending > 0 || w->ready != NULL;
}

int64_t
inflight_next_due(const struct worker *w)
{
	return w->timers.n > 0 ? w->timers.heap[0]->due_ms : INT64_MAX;
}
