/*
 * storeq.h - a worker's store on a thread of its own, with group commit.
 *
 * The worker's thread queues requests, each a body to run inside a
 * transaction.  The store thread takes what is queued (at most
 * STOREQ_BATCH_MAX requests), runs their bodies one after another in one
 * transaction, commits it and hands the requests back; storeq_collect(),
 * on the worker's thread, calls each one's done callback, in the order
 * they were queued.  So the consuming thread never waits on Berkeley DB,
 * and a batch costs one commit: one log write, and with a store opened
 * without STORE_NOSYNC one log flush, however many records it holds.
 *
 * The contract:
 * - A request comes back only after the transaction that ran its body
 *   committed (err 0), or with the error that ended its batch: then the
 *   batch was aborted whole, no body of it took effect, and every request
 *   of it comes back with that error.  Nothing is to be produced for a
 *   request before its done callback: so an output never goes out before
 *   the record that guards it is committed.
 * - A body returns 0, or a store error, which aborts the batch.  It keeps
 *   its results in its own request.  After STORE_DEADLOCK the batch runs
 *   again (store_run()'s policy), so a body must reset what it sets.
 * - Batches form by themselves: while one commits, the next requests
 *   queue, so a batch grows with the load and a lone request never waits
 *   for company.
 * - Nothing else may use the store while the queue runs: the thread also
 *   calls the tick hook about once a second, between batches (upkeep.h's
 *   upkeep_tick(), which may reopen the store in place: *sp is read
 *   anew for each batch), and the failed hook once for each batch that
 *   failed, before its requests come back (upkeep_failed()).
 * - wake (may be NULL) is called on the store thread whenever requests
 *   were handed back, for a worker that waits on something else (an
 *   HTTP queue's poll) rather than in storeq_collect().
 * - idle (may be NULL) is called on the store thread after a batch that
 *   left nothing queued: where a store whose commits do not flush the
 *   log (STORE_NOSYNC) can flush it for the batches before, off the
 *   worker's thread and when no request waits for it.
 */
#ifndef OF_STOREQ_H
#define OF_STOREQ_H

#include <stddef.h>

#include "store.h"

#define STOREQ_BATCH_MAX	256	/* requests a transaction, at most */

struct storeq;
struct storeq_req;

/* A request's body, run in the batch's transaction t. */
typedef int	storeq_body_fn(struct store *, struct store_txn *t,
		    struct storeq_req *);
/* A request back: err 0 once committed, else the batch's error. */
typedef void	storeq_done_fn(struct storeq_req *, int err);

/* Filled in by the caller, which owns it until its done callback. */
struct storeq_req {
	storeq_body_fn		*body;
	storeq_done_fn		*done;
	void			*arg;
	int			 err;		/* the queue's */
	struct storeq_req	*next;		/* the queue's */
};

struct storeq_hooks {
	void	(*tick)(void *arg);		/* about once a second */
	void	(*failed)(void *arg, int err);	/* a batch failed */
	void	(*wake)(void *arg);		/* requests handed back */
	void	(*idle)(void *arg);		/* nothing queued */
	void	 *arg;
};

/*
 * Starts the store thread on *sp.  Returns NULL with errno set when out
 * of memory or when the thread cannot start.
 */
struct storeq	*storeq_start(struct store **sp, const struct storeq_hooks *);
/* Queues r (its body and done set). */
void		 storeq_submit(struct storeq *, struct storeq_req *r);
/* Sets r's body, done and arg, and queues it. */
void		 storeq_call(struct storeq *, struct storeq_req *r,
		    storeq_body_fn *body, storeq_done_fn *done, void *arg);
/*
 * Calls the done callback of every request handed back, waiting up to
 * wait_ms for one when there is none (0: no wait).  Returns how many.
 */
size_t		 storeq_collect(struct storeq *, int wait_ms);
/* Transactions committed or aborted so far (for tests). */
unsigned long	 storeq_batches(const struct storeq *);
/* Requests queued, in a batch or handed back and not yet collected. */
size_t		 storeq_pending(const struct storeq *);
/*
 * Stops the thread once what is queued ran, and frees the queue;
 * requests handed back and not collected are abandoned without their
 * callbacks: collect first.  NULL is fine.
 */
void		 storeq_stop(struct storeq *);

#endif
