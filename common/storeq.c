/*
 * storeq.c - the store thread of storeq.h: a queue in, a queue back, and
 * one transaction per batch.
 *
 * One mutex guards both queues and the stop flag; the thread holds it
 * only to move requests between lists, never while Berkeley DB works, so
 * the worker's thread waits on it for a few instructions at most.  The
 * upkeep tick runs between batches on this thread, so it needs no lock
 * against them, and a batch never waits for a tick longer than the tick
 * itself lasts (upkeep.h bounds it).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "store.h"
#include "storeq.h"
#include "util.h"

#define TICK_MS		1000
#define BACKOFF_MAX_MS	64	/* between tries after a deadlock */

struct storeq {
	struct store		**sp;
	struct storeq_hooks	  h;
	pthread_t		  thread;
	pthread_mutex_t		  mu;
	pthread_cond_t		  work;		/* queued, or stopping */
	pthread_cond_t		  back;		/* handed back */
	struct storeq_req	 *in, *in_tail;
	struct storeq_req	 *out, *out_tail;
	int			  stopping;
	unsigned long		  batches;	/* atomic */
	size_t			  pending;	/* the worker's thread's */
};

static void
pause_ms(int64_t ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/*
 * Runs the bodies of batch in one transaction and commits it; after a
 * deadlock, aborts and runs it all again, as store_run() would.
 */
static int
batch_run(struct storeq *q, struct storeq_req *batch)
{
	struct store_txn *t;
	struct storeq_req *r;
	int err, tries;

	for (tries = 1;; tries++) {
		if (*q->sp == NULL)
			return EIO;	/* a reopen failed: upkeep stopped us */
		if ((err = store_txn_begin(*q->sp, &t)) != 0)
			return err;
		for (r = batch; r != NULL && err == 0; r = r->next)
			err = r->body(*q->sp, t, r);
		if (err == 0)
			err = store_txn_commit(t);
		else
			(void)store_txn_abort(t);
		if (err != STORE_DEADLOCK || tries >= STORE_RUN_TRIES)
			return err;
		(void)store_failchk(*q->sp);
		pause_ms(tries < 7 ? 1 << (tries - 1) : BACKOFF_MAX_MS);
	}
}

/* Up to STOREQ_BATCH_MAX requests off the queue; under q->mu. */
static struct storeq_req *
batch_take(struct storeq *q, struct storeq_req **tail)
{
	struct storeq_req *batch = q->in, *r = q->in;
	size_t n;

	for (n = 1; n < STOREQ_BATCH_MAX && r->next != NULL; n++)
		r = r->next;
	q->in = r->next;
	if (q->in == NULL)
		q->in_tail = NULL;
	r->next = NULL;
	*tail = r;
	return batch;
}

static void
batch_back(struct storeq *q, struct storeq_req *batch,
    struct storeq_req *tail, int err)
{
	struct storeq_req *r;

	__atomic_add_fetch(&q->batches, 1, __ATOMIC_RELAXED);
	if (err != 0 && q->h.failed != NULL)
		q->h.failed(q->h.arg, err);
	for (r = batch; r != NULL; r = r->next)
		r->err = err;
	pthread_mutex_lock(&q->mu);
	if (q->out_tail != NULL)
		q->out_tail->next = batch;
	else
		q->out = batch;
	q->out_tail = tail;
	pthread_cond_signal(&q->back);
	pthread_mutex_unlock(&q->mu);
	if (q->h.wake != NULL)
		q->h.wake(q->h.arg);
}

static void
tick_due(struct storeq *q, int64_t *next)
{
	if (util_mono_ms() < *next)
		return;
	if (q->h.tick != NULL)
		q->h.tick(q->h.arg);
	*next = util_mono_ms() + TICK_MS;
}

static void *
storeq_main(void *arg)
{
	struct storeq *q = arg;
	struct storeq_req *batch, *tail;
	struct timespec ts;
	int64_t next = util_mono_ms() + TICK_MS;

	pthread_mutex_lock(&q->mu);
	for (;;) {
		while (q->in == NULL && !q->stopping) {
			ts = util_time_in(CLOCK_MONOTONIC,
			    next - util_mono_ms() > 0 ? next - util_mono_ms() :
			    0);
			pthread_cond_timedwait(&q->work, &q->mu, &ts);
			pthread_mutex_unlock(&q->mu);
			tick_due(q, &next);
			pthread_mutex_lock(&q->mu);
		}
		if (q->in == NULL)
			break;
		batch = batch_take(q, &tail);
		pthread_mutex_unlock(&q->mu);
		batch_back(q, batch, tail, batch_run(q, batch));
		tick_due(q, &next);
		pthread_mutex_lock(&q->mu);
		if (q->in == NULL && q->h.idle != NULL) {
			pthread_mutex_unlock(&q->mu);
			q->h.idle(q->h.arg);
			pthread_mutex_lock(&q->mu);
		}
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

struct storeq *
storeq_start(struct store **sp, const struct storeq_hooks *h)
{
	struct storeq *q;
	int e;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->sp = sp;
	if (h != NULL)
		q->h = *h;
	pthread_mutex_init(&q->mu, NULL);
	util_cond_init_monotonic(&q->work);
	util_cond_init_monotonic(&q->back);
	if ((e = pthread_create(&q->thread, NULL, storeq_main, q)) != 0) {
		pthread_cond_destroy(&q->back);
		pthread_cond_destroy(&q->work);
		pthread_mutex_destroy(&q->mu);
		free(q);
		errno = e;
		return NULL;
	}
	return q;
}

void
storeq_submit(struct storeq *q, struct storeq_req *r)
{
	r->next = NULL;
	r->err = 0;
	q->pending++;
	pthread_mutex_lock(&q->mu);
	if (q->in_tail != NULL)
		q->in_tail->next = r;
	else {
		q->in = r;
		pthread_cond_signal(&q->work);
	}
	q->in_tail = r;
	pthread_mutex_unlock(&q->mu);
}

void
storeq_call(struct storeq *q, struct storeq_req *r, storeq_body_fn *body,
    storeq_done_fn *done, void *arg)
{
	r->body = body;
	r->done = done;
	r->arg = arg;
	storeq_submit(q, r);
}

size_t
storeq_collect(struct storeq *q, int wait_ms)
{
	struct storeq_req *r, *next;
	struct timespec ts;
	size_t n = 0;

	pthread_mutex_lock(&q->mu);
	if (q->out == NULL && wait_ms > 0 && q->pending > 0) {
		ts = util_time_in(CLOCK_MONOTONIC, wait_ms);
		pthread_cond_timedwait(&q->back, &q->mu, &ts);
	}
	r = q->out;
	q->out = q->out_tail = NULL;
	pthread_mutex_unlock(&q->mu);
	for (; r != NULL; r = next, n++) {
		next = r->next;		/* done may free r */
		q->pending--;
		r->done(r, r->err);
	}
	return n;
}

unsigned long
storeq_batches(const struct storeq *q)
{
	return __atomic_load_n(&q->batches, __ATOMIC_RELAXED);
}

size_t
storeq_pending(const struct storeq *q)
{
	return q->pending;
}

void
storeq_stop(struct storeq *q)
{
	if (q == NULL)
		return;
	pthread_mutex_lock(&q->mu);
	q->stopping = 1;
	pthread_cond_signal(&q->work);
	pthread_mutex_unlock(&q->mu);
	pthread_join(q->thread, NULL);
	pthread_cond_destroy(&q->back);
	pthread_cond_destroy(&q->work);
	pthread_mutex_destroy(&q->mu);
	free(q);
}
