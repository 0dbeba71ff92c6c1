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
 * it is the event's subject, "" when it has none (one parse a line, on the
 * reader's thread for a new line, here for a retry).
 *
 * Finished jobs are kept for the next ones, up to the concurrency and
 * the backlog below, each with room for a record rounded up to JOB_ROUND
 * (the job of a record larger than JOB_SPARE_MAX is freed): a malloc(3)
 * and a free(3) of a record's size for each record (about 430
 * instructions, more when a burst overflows malloc's per-thread caches)
 * became a pop and a push.  A spare is poisoned under AddressSanitizer,
 * which catches a use of a finished job as it would a use after free().
 *
 * Beyond the concurrency jobs started, as many again (at least
 * INFLIGHT_BACKLOG) are held ready, so that a burst of calls that end
 * together is followed at once by the next ones, without waiting for a
 * fetch; only then does fetching pause.
 *
 * The order within a key: keyq holds a key's jobs in submission order
 * and hands out the next one only when the one before completed, through
 * the ready list (never from inside worker_complete(), which the command
 * calls from its pump).  Everything runs on the worker's thread.
 */
#include <sanitizer/asan_interface.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "exitcode.h"
#include "keyq.h"
#include "log.h"
#include "route.h"
#include "timerheap.h"
#include "util.h"
#include "worker.h"
#include "worker_local.h"

#define INFLIGHT_BACKLOG	64
#define JOB_ROUND		512	/* a job's data room, in steps of */
#define JOB_SPARE_MAX		16384	/* a larger room is not kept */

struct worker_job {
	struct worker		*w;
	struct worker_job	*next;		/* the ready list, or spares */
	size_t			 room;		/* bytes of data */
	struct worker_input	 in;		/* points into data */
	rd_kafka_headers_t	*hdrs;		/* a copy, or NULL */
	size_t			 keylen;	/* the ordering key's */
	char			 tp[64];
	char			 data[];	/* value, NUL, key, NUL, key */
};

char *
inflight_key_of(const void *line, size_t len, size_t *keylen)
{
	const cJSON *s;
	cJSON *o;
	char *k;

	o = len > 0 ? cJSON_ParseWithLength(line, len) : NULL;
	s = cJSON_GetObjectItemCaseSensitive(o, "subject");
	k = strdup(cJSON_IsString(s) ? s->valuestring : "");
	cJSON_Delete(o);
	*keylen = k != NULL ? strlen(k) : 0;
	return k;
}

/* A zeroed job with room for need bytes of data: a spare, or new. */
static struct worker_job *
job_alloc(struct worker *w, size_t need)
{
	struct worker_job *j;
	size_t room;

	if ((j = w->spare_jobs) != NULL) {
		ASAN_UNPOISON_MEMORY_REGION(j, sizeof(*j));
		ASAN_UNPOISON_MEMORY_REGION(j->data, j->room);
		w->spare_jobs = j->next;
		w->nspare_jobs--;
		if (j->room >= need) {
			room = j->room;
			memset(j, 0, sizeof(*j));
			j->room = room;
			return j;
		}
		free(j);
	}
	room = (need + JOB_ROUND - 1) / JOB_ROUND * JOB_ROUND;
	if (room < need || (j = malloc(sizeof(*j) + room)) == NULL)
		return NULL;
	memset(j, 0, sizeof(*j));
	j->room = room;
	return j;
}

/*
 * A copy of in and src, with its ordering key (given: pipe_key, else
 * found here); NULL: out of memory.
 */
static struct worker_job *
job_new(struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *src, rd_kafka_headers_t *owned,
    const char *pipe_key, size_t pipe_keylen)
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
	} else if (pipe_key != NULL) {
		key = pipe_key;
		keylen = pipe_keylen;
	} else {
		if ((subj = inflight_key_of(in->value, in->len,
		    &keylen)) == NULL)
			return NULL;
		key = subj;
	}
	if ((j = job_alloc(w, in->len + 1 + in->keylen + 1 + keylen)) ==
	    NULL) {
		free(subj);
		return NULL;
	}
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
		util_strlcpy(j->tp, in->traceparent, sizeof(j->tp));
		j->in.traceparent = j->tp;
	}
	if (owned != NULL)
		j->hdrs = owned;
	else if (src != NULL && (j->hdrs = rd_kafka_headers_copy(src)) ==
	    NULL) {
		free(j);
		return NULL;
	}
	j->in.headers = j->hdrs;
	return j;
}

static const char *
job_key(const struct worker_job *j)
{
	return j->data + j->in.len + 1 + j->in.keylen + 1;
}

/* At most concurrency jobs pending; the ones ready beyond it wait. */
static size_t
concurrency(const struct worker *w)
{
	return w->cf->concurrency > 1 ? (size_t)w->cf->concurrency : 1;
}

static void
job_free(struct worker_job *j)
{
	struct worker *w = j->w;

	if (j->hdrs != NULL)
		rd_kafka_headers_destroy(j->hdrs);
	if (j->room > JOB_SPARE_MAX ||
	    w->nspare_jobs >= concurrency(w) + INFLIGHT_BACKLOG) {
		free(j);
		return;
	}
	j->next = w->spare_jobs;
	w->spare_jobs = j;
	w->nspare_jobs++;
	ASAN_POISON_MEMORY_REGION(j->data, j->room);
	ASAN_POISON_MEMORY_REGION(j, sizeof(*j));
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

/* The key's next job becomes ready; j is gone. */
static void
job_next(struct worker *w, struct worker_job *j)
{
	struct worker_job *next;

	if ((next = keyq_done(w->kq, job_key(j), j->keylen)) != NULL)
		ready_push(w, next);
	job_free(j);
}

static void
job_start(struct worker *w, struct worker_job *j)
{
	if (route_handle(w, &j->in, j->hdrs, w->cf->start != NULL ? j :
	    NULL) == WORKER_PENDING)
		w->pending++;
	else
		job_next(w, j);
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
	route_outcome(j->w, &j->in, j->hdrs, r, out, why);
	job_next(j->w, j);
}

static void
ready_run(struct worker *w)
{
	struct worker_job *j;

	while ((j = w->ready) != NULL && (w->cf->start == NULL ||
	    w->pending < concurrency(w))) {
		if ((w->ready = j->next) == NULL)
			w->ready_tail = NULL;
		job_start(w, j);
	}
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
	struct worker_job *j;

	while (w->timers.n > 0)
		job_free(timerheap_pop(&w->timers));
	timerheap_free(&w->timers);
	/* Jobs still held belong to calls abandoned at the deadline. */
	keyq_free(w->kq);
	w->kq = NULL;
	while ((j = w->spare_jobs) != NULL) {
		ASAN_UNPOISON_MEMORY_REGION(j, sizeof(*j));
		ASAN_UNPOISON_MEMORY_REGION(j->data, j->room);
		w->spare_jobs = j->next;
		free(j);
	}
	w->nspare_jobs = 0;
}

void
inflight_submit(struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *src)
{
	inflight_submit_keyed(w, in, src, NULL, 0);
}

void
inflight_submit_keyed(struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *src, const char *key, size_t keylen)
{
	inflight_submit_owned(w, in, src, NULL, key, keylen);
}

void
inflight_submit_owned(struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *src, rd_kafka_headers_t *owned,
    const char *key, size_t keylen)
{
	struct worker_job *j;

	/* One at a time: nothing is ever held, no copy is needed. */
	if (w->cf->start == NULL && keyq_items(w->kq) == 0) {
		route_handle(w, in, owned != NULL ? owned : src, NULL);
		if (owned != NULL)
			rd_kafka_headers_destroy(owned);
		return;
	}
	if ((j = job_new(w, in, src, owned, key, keylen)) == NULL) {
		if (owned != NULL)
			rd_kafka_headers_destroy(owned);
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
	if ((j = job_new(w, in, src, NULL, NULL, 0)) == NULL)
		return -1;
	if (timerheap_push(&w->timers, due_ms, j) == -1) {
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
		while (timerheap_next(&w->timers) <= now)
			job_enqueue(w, timerheap_pop(&w->timers));
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
		job_free(timerheap_pop(&w->timers));
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

size_t
inflight_max(const struct worker *w)
{
	size_t n = concurrency(w);

	return n + (n > INFLIGHT_BACKLOG ? n : INFLIGHT_BACKLOG);
}

int
inflight_full(const struct worker *w)
{
	return w->kq != NULL && keyq_items(w->kq) >= inflight_max(w);
}

int
inflight_busy(const struct worker *w)
{
	return w->pending > 0 || w->ready != NULL;
}

int64_t
inflight_next_due(const struct worker *w)
{
	return timerheap_next(&w->timers);
}
