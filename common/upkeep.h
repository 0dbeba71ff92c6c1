/*
 * upkeep.h - the upkeep of a worker's store (pay-process, notify):
 * checkpoints, the expiry of old idempotency records, and the one rule
 * for a store that fails.  orderflow(7), STATE, states it for users.
 *
 * The policy, and why:
 * - upkeep_tick() runs once a second (the worker's tick), on the
 *   consumer's thread, so it must stay short.
 * - First failchk: a store broken by another process's death is
 *   reopened now, not at the next input, so that an idle command does
 *   not sit on a broken store.
 * - Expiry: store_idem_expire() drops whole the generations of records
 *   that have ended (store.h), at no cost per record, and deletes records
 *   of no generation (a TTL raised since, records of an older store) in
 *   batches of UPKEEP_EXPIRE_BATCH, each its own small transaction, until
 *   a call comes back short (nothing more is due) or
 *   UPKEEP_EXPIRE_SLICE_MS have gone by.  Every second, so records go
 *   within a generation of their expiry; batches go at several thousand
 *   a second when a backlog is due, more than any input rate the
 *   commands sustain, so the state stops growing once the TTL and a
 *   generation are reached; and the consumer loop is held up for at most
 *   the slice and one call a second (dropping a generation takes longer
 *   the larger it is, once a generation).
 * - A checkpoint every UPKEEP_CHECKPOINT_MS: recovery after a crash
 *   replays the log since the last checkpoint, so it stays a few seconds
 *   long, and log files before it can be removed, which bounds the disk
 *   the log takes.  A checkpoint of an 8 MiB cache costs little.
 * - upkeep_failed(), for a store error met anywhere (the handler or the
 *   upkeep): STORE_DEADLOCK (contention that outlasted store_run()'s
 *   retries) fails only the operation at hand: the input is retried
 *   later, the command goes on.  STORE_RUNRECOVERY (another process died
 *   inside Berkeley DB) closes the store and opens it again, which
 *   recovers it; the command goes on.  Anything else (an I/O error, a
 *   full disk, a damaged record, a failed reopen) stops the command as
 *   SIGTERM does and makes it exit 1: going on would turn every input
 *   into a retry and then a dead letter, or deliver without recording.
 *
 * Not thread-safe: the worker calls the handler and the tick from one
 * thread.
 */
#ifndef OF_UPKEEP_H
#define OF_UPKEEP_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "store.h"

#define UPKEEP_CHECKPOINT_MS	30000
#define UPKEEP_EXPIRE_BATCH	500	/* records a transaction expires */
#define UPKEEP_EXPIRE_SLICE_MS	50	/* of expiry a tick, about */

struct upkeep {
	struct store	**sp;		/* the command's store: reopened in */
					/* place, NULL once a reopen failed */
	const char	 *dir;
	unsigned	  flags;	/* store_open()'s */
	int64_t		(*clock)(void);	/* monotonic ms: util_mono_ms(); */
					/* tests set their own */
	int64_t		  next_checkpoint;
	int		  failed;	/* stopped for the store: exit 1 */
	uint64_t	  expired;	/* records expired so far */
	uint64_t	  checkpoints;	/* written so far */
};

/*
 * Sets u up for the store *sp, open in dir with flags; the first
 * checkpoint is due UPKEEP_CHECKPOINT_MS from now.
 */
void	upkeep_init(struct upkeep *u, struct store **sp, const char *dir,
	    unsigned flags);

/* Failchk, expiry and the checkpoint when due (see above). */
void	upkeep_tick(struct upkeep *u);

/*
 * The rule above for the store error err (lc, when not NULL, says which
 * input met it): returns 0 when the command goes on, -1 when it was
 * stopped (worker_stop(), u->failed set).
 */
int	upkeep_failed(struct upkeep *u, int err, const struct log_ctx *lc);

#endif
