/*
 * pipe.c - the worker's pipe mode (pipe.h): a reader thread that hands
 * JSON lines over through a ring, the heap of records waiting for a
 * retry, and the loop that takes from both on the worker's thread.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exitcode.h"
#include "jsonl.h"
#include "kafka.h"
#include "log.h"
#include "pipe.h"
#include "route.h"
#include "util.h"
#include "worker_local.h"

/*
 * The reader thread hands lines over through a ring of slots.  Handing
 * over one line at a time cost two thread wake-ups a line, a quarter of
 * pay-process's time; the reader now sleeps until the ring is half empty
 * and refills it.  READER_BYTES bounds the lines it holds.
 */
#define READER_SLOTS	64
#define READER_BYTES	(1024 * 1024)

/*
 * A line, or what a rejected line left (jsonl_rejected()): line holds
 * len bytes, not NUL-terminated when rejected, total the line's length.
 */
struct reader_slot {
	int		 status;	/* enum jsonl_status */
	char		*line;
	size_t		 len;
	size_t		 total;
	long		 lineno;
	char		*key;		/* JSONL_LINE, keyed: the subject */
	size_t		 keylen;
	char		 err[256];
};

struct reader {
	pthread_t	 th;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;		/* count or quit changed */
	struct jsonl	*r;
	struct reader_slot slots[READER_SLOTS];
	size_t		 head;		/* the oldest filled slot */
	size_t		 count;		/* filled slots */
	size_t		 bytes;		/* of their lines */
	int		 keyed;	/* take each line's ordering key */
	int		 waiting;	/* the reader waits for room */
	int		 quit;		/* the worker wants no more */
};

/*
 * The heap of records waiting for a retry.
 */

int
pipe_retries_push(struct pipe_retries *q, const struct pipe_retry *r)
{
	struct pipe_retry *copy;

	if ((copy = malloc(sizeof(*copy))) == NULL)
		return -1;
	*copy = *r;
	if (timerheap_push(&q->t, r->due_ms, copy) == -1) {
		free(copy);
		return -1;
	}
	return 0;
}

struct pipe_retry
pipe_retries_pop(struct pipe_retries *q)
{
	struct pipe_retry *p = timerheap_pop(&q->t), r = *p;

	free(p);
	return r;
}

void
pipe_retries_free(struct pipe_retries *q)
{
	struct pipe_retry r;

	while (q->t.n > 0) {
		r = pipe_retries_pop(q);
		free(r.value);
		free(r.why);
	}
	timerheap_free(&q->t);
}

/*
 * The reader and the loop.
 */

/* Room for one more line: a free slot, and the byte bound not reached. */
static int
reader_room(const struct reader *rd)
{
	return rd->count == 0 ||
	    (rd->count < READER_SLOTS && rd->bytes < READER_BYTES);
}

/* Drained to half, in slots and in bytes: time to wake a waiting reader. */
static int
reader_low(const struct reader *rd)
{
	return rd->count == 0 || (rd->count <= READER_SLOTS / 2 &&
	    rd->bytes <= READER_BYTES / 2);
}

/* A copy of what jsonl_next() returned (st) for a slot, or NULL. */
static char *
reader_copy(struct jsonl *r, int st, const char *line, size_t *len,
    size_t *total)
{
	char *copy;

	if (st == JSONL_LINE) {
		*total = *len;
		return strndup(line, *len);
	}
	*len = *total = 0;
	if (st != JSONL_REJECT ||
	    (line = jsonl_rejected(r, len, total)) == NULL ||
	    (copy = malloc(*len)) == NULL) {
		*len = 0;
		return NULL;
	}
	memcpy(copy, line, *len);
	return copy;
}

static void *
reader_main(void *arg)
{
	struct reader *rd = arg;
	struct reader_slot *sl;
	const char *line;
	char *copy, *key;
	size_t len, total, keylen = 0;
	int st;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	do {
		/* Cancelled only while it waits for input. */
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		st = jsonl_next(rd->r, &line, &len);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		copy = reader_copy(rd->r, st, line, &len, &total);
		if (st == JSONL_LINE && copy == NULL)
			st = JSONL_ERROR;
		/*
		 * The ordering key costs a parse of the line: here, on the
		 * reader's thread, rather than the worker's.
		 */
		key = NULL;
		if (st == JSONL_LINE && rd->keyed &&
		    (key = inflight_key_of(copy, len, &keylen)) == NULL) {
			free(copy);
			copy = NULL;
			st = JSONL_ERROR;
		}
		pthread_mutex_lock(&rd->mu);
		while (!reader_room(rd) && !rd->quit) {
			rd->waiting = 1;
			pthread_cond_wait(&rd->cv, &rd->mu);
		}
		rd->waiting = 0;
		if (rd->quit) {
			pthread_mutex_unlock(&rd->mu);
			free(copy);
			free(key);
			break;
		}
		sl = &rd->slots[(rd->head + rd->count) % READER_SLOTS];
		sl->status = st;
		sl->line = copy;
		sl->len = len;
		sl->total = total;
		sl->lineno = jsonl_lineno(rd->r);
		sl->key = key;
		sl->keylen = keylen;
		snprintf(sl->err, sizeof(sl->err), "%s", copy == NULL &&
		    st == JSONL_ERROR && *jsonl_error(rd->r) == '\0' ?
		    "out of memory" : jsonl_error(rd->r));
		if (rd->count++ == 0)
			pthread_cond_broadcast(&rd->cv);
		if (copy != NULL)
			rd->bytes += len;
		pthread_mutex_unlock(&rd->mu);
	} while (st != JSONL_EOF && st != JSONL_ERROR);
	return NULL;
}

static int
reader_start(struct reader *rd, const char *path, int keyed)
{
	sigset_t block, old;
	int e;

	memset(rd, 0, sizeof(*rd));
	rd->keyed = keyed;
	if ((rd->r = jsonl_open_file(path, 0)) == NULL) {
		log_error("%s: %s", path, strerror(errno));
		return -1;
	}
	pthread_mutex_init(&rd->mu, NULL);
	util_cond_init_monotonic(&rd->cv);
	/* Signals go to the worker's thread, never to the reader. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	e = pthread_create(&rd->th, NULL, reader_main, rd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e != 0) {
		log_error("pthread_create: %s", strerror(e));
		jsonl_close(rd->r);
		return -1;
	}
	return 0;
}

static void
reader_stop(struct reader *rd, int finished)
{
	pthread_mutex_lock(&rd->mu);
	rd->quit = 1;
	pthread_cond_broadcast(&rd->cv);
	pthread_mutex_unlock(&rd->mu);
	if (!finished)
		pthread_cancel(rd->th);
	pthread_join(rd->th, NULL);
	for (; rd->count > 0; rd->count--) {
		free(rd->slots[rd->head].line);
		free(rd->slots[rd->head].key);
		rd->head = (rd->head + 1) % READER_SLOTS;
	}
	jsonl_close(rd->r);
	pthread_cond_destroy(&rd->cv);
	pthread_mutex_destroy(&rd->mu);
}

/*
 * Waits up to wait_ms for the reader's next slot.  Returns 1 with the
 * slot's contents in *out (the caller frees out->line), 0 on a timeout.
 * The reader is woken when the ring has drained to half, not for every
 * slot.
 */
static int
reader_take(struct reader *rd, int64_t wait_ms, struct reader_slot *out)
{
	struct timespec ts = util_time_in(CLOCK_MONOTONIC, wait_ms);
	struct reader_slot *sl;
	int got = 0;

	pthread_mutex_lock(&rd->mu);
	while (rd->count == 0 &&
	    pthread_cond_timedwait(&rd->cv, &rd->mu, &ts) != ETIMEDOUT)
		;
	if (rd->count > 0) {
		sl = &rd->slots[rd->head];
		*out = *sl;
		if (sl->line != NULL)
			rd->bytes -= sl->len;
		sl->line = NULL;
		rd->head = (rd->head + 1) % READER_SLOTS;
		rd->count--;
		got = 1;
		if (rd->waiting && reader_low(rd))
			pthread_cond_broadcast(&rd->cv);
	}
	pthread_mutex_unlock(&rd->mu);
	return got;
}

static void
pipe_input(struct worker_input *in, const void *value,
    size_t len, long lineno, int attempt)
{
	memset(in, 0, sizeof(*in));
	in->value = value;
	in->len = len;
	in->attempt = attempt;
	in->topic = "-";
	in->partition = -1;
	in->offset = lineno;
}

static void
pipe_retry_now(struct worker *w)
{
	struct pipe_retry r = pipe_retries_pop(&w->retries);
	struct worker_input in;

	pipe_input(&in, r.value, r.len, r.lineno, r.attempt);
	inflight_submit(w, &in, NULL);
	free(r.value);
	free(r.why);
}

/*
 * A line jsonl.h rejected: a dead letter of kind invalid with the bytes
 * the reader kept, and, when that is only the head of a line too long,
 * the line's length in FLOW_H_ORIG_LENGTH.
 */
static void
pipe_reject(struct worker *w, const struct reader_slot *sl)
{
	struct worker_input in;
	rd_kafka_headers_t *h = NULL;

	pipe_input(&in, sl->line, sl->line != NULL ? sl->len : 0, sl->lineno,
	    1);
	if (sl->line != NULL && sl->len < sl->total &&
	    (h = rd_kafka_headers_new(1)) != NULL)
		kafka_header_add_int64(h, FLOW_H_ORIG_LENGTH,
		    (int64_t)sl->total);
	w->st->processed++;
	route_dead_letter(w, &in, h, "invalid", sl->err);
	if (h != NULL)
		rd_kafka_headers_destroy(h);
}

/* One slot from the reader.  Returns 1 at the end of the input. */
static int
pipe_slot(struct worker *w, struct reader_slot *sl)
{
	struct worker_input in;

	switch (sl->status) {
	case JSONL_LINE:
		pipe_input(&in, sl->line, sl->len, sl->lineno, 1);
		inflight_submit_keyed(w, &in, NULL, sl->key, sl->keylen);
		free(sl->line);
		free(sl->key);
		return 0;
	case JSONL_REJECT:
		pipe_reject(w, sl);
		free(sl->line);
		return 0;
	case JSONL_ERROR:
		log_error("%s: %s", w->in_name, sl->err);
		worker_fail(w, OF_EXIT_FAIL);
		return 1;
	default:
		return 1;
	}
}

static void
nap(int64_t ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	nanosleep(&ts, NULL);
}

/* Stopped with retries waiting: they become dead letters, not lost. */
static void
pipe_abandon(struct worker *w)
{
	struct worker_input in;
	struct pipe_retry r;
	char msg[WHY_MAX + 64];

	while (w->retries.t.n > 0) {
		r = pipe_retries_pop(&w->retries);
		pipe_input(&in, r.value, r.len, r.lineno, r.attempt - 1);
		snprintf(msg, sizeof(msg), "stopped before attempt %d: %s",
		    r.attempt, r.why);
		route_dead_letter(w, &in, NULL, "transient", msg);
		free(r.value);
		free(r.why);
	}
}

void
pipe_run(struct worker *w)
{
	struct reader rd;
	struct reader_slot sl;
	int64_t now, wait;
	int busy, eof = 0;

	if (reader_start(&rd, w->cf->input, w->cf->start != NULL) == -1) {
		worker_fail(w, OF_EXIT_FAIL);
		return;
	}
	w->in_name = jsonl_name(rd.r);
	while (w->rc == OF_EXIT_OK && worker_running()) {
		now = util_mono_ms();
		busy = inflight_busy(w);
		if (timerheap_next(&w->retries.t) <= now)
			pipe_retry_now(w);
		else if (eof && w->retries.t.n == 0 && inflight_held(w) == 0)
			break;
		else {
			wait = WORKER_POLL_MS;
			if (w->retries.t.n > 0 &&
			    timerheap_next(&w->retries.t) - now < wait)
				wait = timerheap_next(&w->retries.t) - now;
			if (busy && wait > WORKER_PUMP_MS)
				wait = WORKER_PUMP_MS;
			if (eof || w->retries.t.n >= WORKER_PIPE_RETRIES ||
			    inflight_full(w)) {
				if (busy)
					inflight_run(w, (int)wait);
				else
					nap(wait);
			} else if (reader_take(&rd, busy ? 0 : wait, &sl))
				eof = pipe_slot(w, &sl);
			else if (busy)
				inflight_run(w, (int)wait);
		}
		inflight_run(w, 0);
		if (w->p != NULL)
			kafka_poll(w->p, 0);
		worker_periodic(w);
	}
	/* Stopped: what is in flight ends first, its retries then abandoned. */
	inflight_drain(w, util_mono_ms() + WORKER_FLUSH_MS);
	if (w->retries.t.n > 0)
		pipe_abandon(w);
	reader_stop(&rd, eof);
}
