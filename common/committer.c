/*
 * committer.c - order-serve's single writer: batches the orders waiting
 * into one durable transaction with the outbox's upkeep (committer.h).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "committer.h"
#include "exitcode.h"
#include "log.h"
#include "store.h"
#include "util.h"

#define BATCH_MAX		1024	/* jobs in one transaction */
#define SCAN_MAX		512	/* outbox records read per batch */
#define IDEM_TTL_MS		(24LL * 3600 * 1000)
#define IDEM_DONE		1	/* store_idem's state: answered */

/* What the committer shares with the submitters and the relay (under mu). */
struct committer {
	struct committer_conf	 conf;
	pthread_t		 thr;
	int			 started;
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;		/* the committer has work */
	pthread_cond_t		 relay_cv;	/* the relay has records */
	struct committer_job	*jobs;
	struct committer_job	**jobs_tail;
	uint64_t		*acked;		/* seqs to delete */
	size_t			 nacked;
	size_t			 acked_cap;
	struct committer_rec	*hand;		/* read for the relay */
	struct committer_rec	**hand_tail;
	size_t			 relay_room;	/* records the relay can take */
	uint64_t		 scan_after;	/* last seq read for relay */
	int			 scan_dirty;	/* records may exist after */
						/* scan_after */
	int			 stop;
	atomic_int		 failed;	/* a store error it cannot */
						/* get over */
	atomic_uint_fast64_t	 batches;
	atomic_uint_fast64_t	 batch_orders;
};

/* The arguments and results of one batch transaction. */
struct batch {
	struct committer_job	*jobs;
	uint64_t		*acked;
	size_t			 nacked;
	size_t			 scan_want;
	uint64_t		 scan_from;
	int64_t			 now_ms;
	/* results, reset by every attempt */
	struct committer_rec	*scanned;
	struct committer_rec	**scanned_tail;
	uint64_t		 scan_last;
	int			 scan_end;
	size_t			 appended;
};

void
committer_rec_free(struct committer_rec *r)
{
	if (r == NULL)
		return;
	free(r->data);
	free(r);
}

void
committer_rec_list_free(struct committer_rec *r)
{
	struct committer_rec *next;

	for (; r != NULL; r = next) {
		next = r->next;
		committer_rec_free(r);
	}
}

/* Splits "KEY\nTRACEPARENT\nEVENT" in place; -1 when malformed. */
static int
rec_split(struct committer_rec *r)
{
	char *nl1, *nl2;

	if ((nl1 = memchr(r->data, '\n', r->len)) == NULL ||
	    (nl2 = memchr(nl1 + 1, '\n', r->len - (nl1 + 1 - r->data))) ==
	    NULL || nl1 == r->data)
		return -1;
	*nl1 = *nl2 = '\0';
	r->key = r->data;
	r->tp = nl1 + 1;
	r->event = nl2 + 1;
	r->event_len = r->len - (nl2 + 1 - r->data);
	return 0;
}

static void
job_reset(struct committer_job *j)
{
	free(j->replay);
	j->replay = NULL;
	j->replay_len = 0;
	j->result = 0;
}

static int
batch_job(struct store *s, struct store_txn *t, struct batch *b,
    struct committer_job *j)
{
	struct store_idem rec;
	uint64_t seq;
	char *json;
	int ret;

	job_reset(j);
	if (j->idem_key != NULL) {
		ret = store_idem_get(s, t, j->idem_key, b->now_ms, &rec);
		if (ret == 0) {
			/* A key already used: the submitter answers. */
			j->result = COMMITTER_REPLAY;
			j->replay = rec.outcome;
			j->replay_len = rec.outcome_len;
			rec.outcome = NULL;
			store_idem_free(&rec);
			return 0;
		}
		if (ret != STORE_NOTFOUND)
			return ret;
	}
	if ((ret = store_order_get(s, t, j->order_id, &json)) == 0) {
		free(json);
		j->result = COMMITTER_EXISTS;
		return 0;
	}
	if (ret != STORE_NOTFOUND)
		return ret;
	if ((ret = store_order_put(s, t, j->order_id, j->order_json)) != 0 ||
	    (ret = store_outbox_append(s, t, j->outbox, j->outbox_len,
	    b->now_ms, &seq)) != 0)
		return ret;
	if (j->idem_key != NULL) {
		memset(&rec, 0, sizeof(rec));
		rec.created_ms = b->now_ms;
		rec.expires_ms = b->now_ms + IDEM_TTL_MS;
		rec.state = IDEM_DONE;
		rec.outcome = (void *)(uintptr_t)j->outcome;
		rec.outcome_len = strlen(j->outcome);
		if ((ret = store_idem_put(s, t, j->idem_key, &rec)) != 0)
			return ret;
	}
	j->result = COMMITTER_STORED;
	b->appended++;
	return 0;
}

/* Reads the records the relay asked for (after this batch's appends). */
static int
batch_scan(struct store *s, struct store_txn *t, struct batch *b)
{
	struct store_outbox_rec rec;
	struct committer_rec *r;
	uint64_t after = b->scan_from;
	size_t n;
	int ret;

	for (n = 0; n < b->scan_want; n++) {
		if ((ret = store_outbox_first(s, t, after, &rec)) ==
		    STORE_NOTFOUND) {
			b->scan_end = 1;
			return 0;
		}
		if (ret != 0)
			return ret;
		after = b->scan_last = rec.seq;
		r = util_xcalloc(1, sizeof(*r));
		r->seq = rec.seq;
		r->data = rec.data;
		r->len = rec.len;
		if (rec_split(r) == -1) {
			log_error("outbox record %" PRIu64 " is malformed; "
			    "deleted", r->seq);
			committer_rec_free(r);
			if ((ret = store_outbox_del(s, t, after)) != 0)
				return ret;
			continue;
		}
		*b->scanned_tail = r;
		b->scanned_tail = &r->next;
	}
	return 0;
}

/* A store_fn: safe to run again after a deadlock (results are reset). */
static int
batch_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct batch *b = arg;
	struct committer_job *j;
	size_t i;
	int ret;

	committer_rec_list_free(b->scanned);
	b->scanned = NULL;
	b->scanned_tail = &b->scanned;
	b->scan_last = b->scan_from;
	b->scan_end = 0;
	b->appended = 0;
	for (i = 0; i < b->nacked; i++)
		if ((ret = store_outbox_del(s, t, b->acked[i])) != 0 &&
		    ret != STORE_NOTFOUND)
			return ret;
	for (j = b->jobs; j != NULL; j = j->next)
		if ((ret = batch_job(s, t, b, j)) != 0)
			return ret;
	if (b->scan_want > 0)
		return batch_scan(s, t, b);
	return 0;
}

static int
has_work(const struct committer *c)
{
	return c->jobs != NULL || c->nacked > 0 ||
	    (c->relay_room > 0 && c->scan_dirty);
}

/* Takes what waits (called with mu held). */
static void
batch_take(struct committer *c, struct batch *b)
{
	struct committer_job *j, **jp;
	size_t n = 0;

	memset(b, 0, sizeof(*b));
	b->jobs = c->jobs;
	for (jp = &c->jobs; (j = *jp) != NULL && n < BATCH_MAX; jp = &j->next)
		n++;
	c->jobs = *jp;
	*jp = NULL;
	if (c->jobs == NULL)
		c->jobs_tail = &c->jobs;
	b->acked = c->acked;
	b->nacked = c->nacked;
	c->acked = NULL;
	c->nacked = c->acked_cap = 0;
	if (c->relay_room > 0 && (c->scan_dirty || b->jobs != NULL))
		b->scan_want = c->relay_room < SCAN_MAX ? c->relay_room :
		    SCAN_MAX;
	b->scan_from = c->scan_after;
	b->scanned_tail = &b->scanned;
}

static void
acked_push(struct committer *c, uint64_t seq)
{
	uint64_t *a;

	if (c->nacked == c->acked_cap) {
		c->acked_cap = c->acked_cap ? c->acked_cap * 2 : 256;
		if ((a = realloc(c->acked, c->acked_cap * sizeof(*a))) == NULL)
			log_fatal(OF_EXIT_FAIL, "out of memory");
		c->acked = a;
	}
	c->acked[c->nacked++] = seq;
}

/* Publishes a batch's outcome (called with mu held). */
static void
batch_done(struct committer *c, struct batch *b, int ret)
{
	struct committer_job *j;
	size_t i, n = 0;

	if (ret == 0) {
		if (b->scanned != NULL) {
			*c->hand_tail = b->scanned;
			c->hand_tail = b->scanned_tail;
			for (; b->scanned != NULL; b->scanned =
			    b->scanned->next)
				n++;
			c->relay_room -= n < c->relay_room ? n : c->relay_room;
			pthread_cond_signal(&c->relay_cv);
		}
		c->scan_after = b->scan_last;
		if (b->scan_want > 0 && b->scan_end)
			c->scan_dirty = 0;
		else if (b->appended > 0 || b->scan_want > 0)
			c->scan_dirty = 1;
		free(b->acked);
		atomic_fetch_add(&c->batches, 1);
		atomic_fetch_add(&c->batch_orders, b->appended);
	} else {
		log_error("store: a batch of orders failed: %s",
		    store_strerror(ret));
		committer_rec_list_free(b->scanned);
		for (i = 0; i < b->nacked; i++)
			acked_push(c, b->acked[i]);
		free(b->acked);
		if (ret == STORE_RUNRECOVERY)
			atomic_store(&c->failed, 1);
	}
	b->scanned = NULL;
	for (j = b->jobs; j != NULL; j = j->next) {
		if (ret != 0) {
			job_reset(j);
			j->result = COMMITTER_FAILED;
		}
		j->done = 1;
	}
}

/* Hands the jobs of a finished batch back to their submitters. */
static void
jobs_done(struct committer *c, struct committer_job *j)
{
	struct committer_job *next;

	/* Once done, a job may be freed at once: next first. */
	for (; j != NULL; j = next) {
		next = j->next;
		c->conf.done(j);
	}
}

/*
 * Gives up what waits, when stopping after a failed batch (called with mu
 * held, which it lets go and takes again): the acknowledgements are
 * forgotten, the jobs done as failed.
 */
static void
abandon(struct committer *c)
{
	struct committer_job *jobs = c->jobs, *j;

	c->jobs = NULL;
	c->jobs_tail = &c->jobs;
	free(c->acked);
	c->acked = NULL;
	c->nacked = c->acked_cap = 0;
	for (j = jobs; j != NULL; j = j->next) {
		job_reset(j);
		j->result = COMMITTER_FAILED;
		j->done = 1;
	}
	pthread_mutex_unlock(&c->mu);
	jobs_done(c, jobs);
	pthread_mutex_lock(&c->mu);
}

static void *
committer_main(void *arg)
{
	struct committer *c = arg;
	struct batch b;
	int ret;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!has_work(c) && !c->stop)
			pthread_cond_wait(&c->cv, &c->mu);
		if (!has_work(c))
			break;
		batch_take(c, &b);
		pthread_mutex_unlock(&c->mu);
		b.now_ms = util_now_ms();
		ret = store_run(c->conf.st, batch_fn, &b);
		pthread_mutex_lock(&c->mu);
		batch_done(c, &b, ret);
		/* The submitters' own locks are never taken under ours. */
		pthread_mutex_unlock(&c->mu);
		jobs_done(c, b.jobs);
		/* A store that fails now will fail at once again. */
		if (ret != 0)
			util_sleep_ms(100);
		pthread_mutex_lock(&c->mu);
		/*
		 * Stopping, a failed batch is not tried again: a full disk
		 * would fail it for ever and hold up the stop.  What it held
		 * stays in the store: its outbox records are published again
		 * at the next start.
		 */
		if (ret != 0 && c->stop) {
			log_error("store: stopping with the batch failed: "
			    "%zu acknowledged record(s) stay in the outbox",
			    c->nacked);
			abandon(c);
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

struct committer *
committer_new(const struct committer_conf *conf)
{
	struct committer *c;

	c = util_xcalloc(1, sizeof(*c));
	c->conf = *conf;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	pthread_cond_init(&c->relay_cv, NULL);
	c->jobs_tail = &c->jobs;
	c->hand_tail = &c->hand;
	c->scan_dirty = 1;	/* what a previous run left goes first */
	c->relay_room = conf->relay_max;
	return c;
}

int
committer_start(struct committer *c)
{
	if (pthread_create(&c->thr, NULL, committer_main, c) != 0)
		return -1;
	c->started = 1;
	return 0;
}

int
committer_submit(struct committer *c, struct committer_job *j)
{
	int ret = 0;

	pthread_mutex_lock(&c->mu);
	if (c->stop || atomic_load(&c->failed)) {
		job_reset(j);
		j->result = COMMITTER_STOPPED;
		j->done = 1;
		ret = -1;
	} else {
		j->next = NULL;
		*c->jobs_tail = j;
		c->jobs_tail = &j->next;
		pthread_cond_signal(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	return ret;
}

struct committer_rec *
committer_records(struct committer *c, int64_t wait_ms, size_t *busy,
    int *idle)
{
	struct committer_rec *list, *r;
	struct timespec ts;
	size_t max = c->conf.relay_max;

	pthread_mutex_lock(&c->mu);
	if (c->hand == NULL && wait_ms > 0) {
		ts = util_time_in(CLOCK_REALTIME, wait_ms);
		pthread_cond_timedwait(&c->relay_cv, &c->mu, &ts);
	}
	list = c->hand;
	c->hand = NULL;
	c->hand_tail = &c->hand;
	for (r = list; r != NULL; r = r->next)
		(*busy)++;
	c->relay_room = *busy < max ? max - *busy : 0;
	if (c->relay_room > 0 && c->scan_dirty)
		pthread_cond_signal(&c->cv);
	*idle = list == NULL && *busy == 0 && !c->scan_dirty &&
	    c->nacked == 0;
	pthread_mutex_unlock(&c->mu);
	return list;
}

void
committer_ack(struct committer *c, uint64_t seq)
{
	pthread_mutex_lock(&c->mu);
	acked_push(c, seq);
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void
committer_records_drop(struct committer *c)
{
	pthread_mutex_lock(&c->mu);
	committer_rec_list_free(c->hand);
	c->hand = NULL;
	c->hand_tail = &c->hand;
	c->relay_room = 0;
	pthread_mutex_unlock(&c->mu);
}

int
committer_failed(struct committer *c)
{
	return atomic_load(&c->failed);
}

void
committer_stats(struct committer *c, uint64_t *batches, uint64_t *orders)
{
	*batches = atomic_load(&c->batches);
	*orders = atomic_load(&c->batch_orders);
}

void
committer_stop(struct committer *c)
{
	pthread_mutex_lock(&c->mu);
	c->stop = 1;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (c->started)
		pthread_join(c->thr, NULL);
	c->started = 0;
}

void
committer_free(struct committer *c)
{
	if (c == NULL)
		return;
	free(c->acked);
	committer_rec_list_free(c->hand);
	pthread_cond_destroy(&c->relay_cv);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}
