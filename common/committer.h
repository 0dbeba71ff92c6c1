/*
 * committer.h - order-serve's single writer: one thread that stores
 * orders, their idempotency keys and their outbox records in Berkeley DB,
 * and reads the outbox for the relay (outbox.h).
 *
 * Guarantees: every job waiting (up to a batch's limit) is run in ONE
 * durable transaction, together with the deletion of the outbox records
 * the relay got acknowledged and the reading of the next records for it;
 * each order, its outbox record and its key commit or abort together.  A
 * job is done only once its batch committed with a synchronous log flush,
 * or failed.  A record leaves the outbox only after committer_ack().
 *
 * Why one writer and not one transaction per request with Berkeley DB's
 * own group commit: BDB locks btree pages, and every append to the outbox
 * writes its last page, so concurrent request transactions wait for each
 * other's log flush one by one (measured: about 1,000 a second whatever
 * the number of threads).  One writer batching the requests that arrived
 * during the previous flush is group commit done one level up: no lock is
 * held across requests, and the batch grows with the load.
 *
 * Threads: committer_start() starts the committer's thread, the only one
 * that writes to the store through it; committer_submit() is called from
 * any thread (the HTTP pool), committer_records(), committer_ack() and
 * committer_records_drop() from the relay's.  The done callback runs on
 * the committer's thread with no lock of the committer held.
 *
 * Ownership: the committer borrows the store and the jobs (a job is the
 * submitter's again once done); it owns the records it read until
 * committer_records() hands them over, and the acknowledgements until they
 * are deleted.  After a crash the outbox is read from its start again, so
 * whatever was not acknowledged is published again, with the same event.
 */
#ifndef OF_COMMITTER_H
#define OF_COMMITTER_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

enum committer_result {
	COMMITTER_STORED = 1,	/* order, outbox record and key committed */
	COMMITTER_REPLAY,	/* the key was used: replay holds its outcome */
	COMMITTER_EXISTS,	/* an order with this order id exists already */
	COMMITTER_FAILED,	/* the batch failed: nothing was stored */
	COMMITTER_STOPPED	/* the committer takes no job any more */
};

/*
 * An order to store.  The submitter fills the fields down to outcome
 * and keeps them valid until the job is done; the committer sets the
 * rest.  The strings are stored as they are: outcome is what a later
 * request with the same idem_key gets back as replay, for 24 hours.
 */
struct committer_job {
	struct committer_job	*next;		/* the committer's */
	const char		*idem_key;	/* NULL: none */
	const char		*order_id;
	const char		*order_json;
	const char		*outbox;	/* "KEY\nTRACEPARENT\nEVENT" */
	size_t			 outbox_len;
	const char		*outcome;	/* with idem_key only */
	int			 done;
	enum committer_result	 result;
	char			*replay;	/* malloc'd; the submitter */
	size_t			 replay_len;	/* frees it */
};

/* An outbox record read for the relay, split into its three parts. */
struct committer_rec {
	struct committer_rec	*next;
	uint64_t		 seq;
	char			*data;		/* "KEY\nTRACEPARENT\nEVENT" */
	size_t			 len;
	const char		*key;		/* point into data */
	const char		*tp;		/* "": none */
	const char		*event;
	size_t			 event_len;
	int64_t			 retry_at;	/* the relay's */
};

struct committer_conf {
	struct store	*st;
	size_t		 relay_max;	/* records the relay holds at most */
	/* Called once a submitted job is done; it may free the job. */
	void		(*done)(struct committer_job *);
};

struct committer;

/*
 * A committer that has not started: the outbox is read from its start
 * (what a previous run left goes first).  Never fails (out of memory is
 * fatal).
 */
struct committer *committer_new(const struct committer_conf *);

/* Starts the thread; -1 when it cannot be created. */
int	committer_start(struct committer *);

/*
 * Hands a job to the committer, which calls done once its batch is done.
 * Returns 0, or -1 when the committer takes nothing any more: the job is
 * then done at once with COMMITTER_STOPPED and done is not called.
 */
int	committer_submit(struct committer *, struct committer_job *);

/*
 * For the relay: takes the records read for it, first waiting up to
 * wait_ms for some when there are none.  *busy is the number of records
 * the relay holds (produced or waiting to be produced again) on entry, and
 * that plus those returned on return; the committer reads at most
 * relay_max - *busy more.  *idle is set when nothing is left to publish:
 * no record returned or held, none known unread in the outbox, no
 * acknowledgement waiting to be deleted.
 */
struct committer_rec *committer_records(struct committer *, int64_t wait_ms,
	    size_t *busy, int *idle);

/* For the relay: the record seq was acknowledged; it leaves the outbox. */
void	committer_ack(struct committer *, uint64_t seq);

/* For the relay as it ends: records read for it and not taken are freed. */
void	committer_records_drop(struct committer *);

/* Frees one record, or a list of them by next (NULL is fine for both). */
void	committer_rec_free(struct committer_rec *);
void	committer_rec_list_free(struct committer_rec *);

/*
 * 1 once the store failed in a way only recovery mends
 * (STORE_RUNRECOVERY): every job is refused from then on.
 */
int	committer_failed(struct committer *);

/* Committed batches, and the orders they stored. */
void	committer_stats(struct committer *, uint64_t *batches,
	    uint64_t *orders);

/*
 * Runs what waits (jobs, acknowledgements) to its end, then ends the
 * thread and returns once it has.  Stop the relay and the HTTP server
 * first: a job submitted afterwards is refused.  A batch that fails once
 * stopping (a full disk) is not tried again: what still waits is given
 * up, the jobs done as COMMITTER_FAILED, the acknowledged records left
 * in the outbox (published again at the next start), so that the stop
 * never waits for the store to mend.
 */
void	committer_stop(struct committer *);

/* Frees a stopped (or never started) committer. */
void	committer_free(struct committer *);

#endif /* OF_COMMITTER_H */
