/*
 * store.h - the Berkeley DB state every stateful command keeps in
 * --state DIR: idempotency records, orders and an outbox, in one
 * transactional environment that several processes and threads share.
 *
 * Every table operation takes a transaction: one from store_txn_begin(),
 * so that an order, its outbox record and its idempotency key commit or
 * abort together, or NULL for an operation of its own (retried on
 * deadlock, see store_run()).  Inside a caller's transaction, reads take
 * write locks (they are read-modify-write in this project), so two
 * transactions updating the same key do not deadlock on a lock upgrade.
 *
 * Functions return 0, or an error: one of the STORE_* codes below (the
 * Berkeley DB values), another Berkeley DB code, or an errno value.
 * store_strerror() names any of them; details also go to the log.
 *
 * The store exits in one case only, never on an error it can return: the
 * stall monitor of an open store ends the process with _exit(1) and an
 * error in the log when Berkeley DB has made no progress for 30 s
 * ($ORDERFLOW_STORE_STALL_MS).  That happens when a process died holding
 * one of the library's internal mutexes, which no call can ever get back:
 * rather than hang, the process exits, and its supervisor's restart
 * recovers the environment (storeenv.h, orderflow(7) STATE).
 *
 * Failure of another process (storeenv.h has the contract, storeenv.c
 * the strategy): a process killed holding locks is cleaned up (its
 * transaction aborted, its locks released) by failchk, which the
 * environment runs on open, every second from a watchdog thread each
 * open store has, before store_run() retries, and from
 * store_checkpoint(); waiting threads then proceed.  STORE_RUNRECOVERY
 * means a process died inside the library (every later transaction of
 * this store fails the same way): close the store (every thread must
 * stop using it first) and open it again, which runs recovery.  A lock
 * wait lasts at most about 2 s (then STORE_DEADLOCK); retry a
 * transaction that failed with STORE_DEADLOCK (store_run() does).  A
 * process killed while holding one of BDB's internal mutexes blocks the
 * others: the exit above.
 *
 * DB_REGISTER allows one open store per directory per process.  A store
 * may be used by many threads at once; a transaction by one at a time.
 */
#ifndef OF_STORE_H
#define OF_STORE_H

#include <stddef.h>
#include <stdint.h>

/* Error codes (equal to Berkeley DB's, checked at compile time). */
#define STORE_NOTFOUND		(-30988)	/* DB_NOTFOUND */
#define STORE_EXISTS		(-30994)	/* DB_KEYEXIST */
#define STORE_DEADLOCK		(-30993)	/* DB_LOCK_DEADLOCK: retry */
#define STORE_RUNRECOVERY	(-30973)	/* DB_RUNRECOVERY: reopen */

/* store_open() flags. */
#define STORE_NOSYNC	0x01	/* commits survive a process crash, not an
				   OS crash (DB_TXN_WRITE_NOSYNC) */
#define STORE_SMALLCACHE 0x02	/* half the cache, for a smaller resident
				   set (a new environment; an existing one
				   keeps its size) */
#define STORE_EXCLUSIVE	0x04	/* no other process writes idempotency
				   records here while this store is open
				   (the caller holds the directory's lock):
				   a table found empty at open is not
				   looked into until this store writes to
				   it */

/* Limits on keys (idempotency keys, order ids). */
#define STORE_KEY_MAX	1024

struct store;
struct store_txn;

/* An idempotency record. */
struct store_idem {
	int64_t	 created_ms;
	int64_t	 expires_ms;	/* expired (absent) once now_ms >= this */
	int	 state;		/* the caller's (e.g. in flight, done), */
				/* from -2^30 to 2^30 - 1 */
	void	*outcome;	/* opaque bytes; on get, malloc'd and */
	size_t	 outcome_len;	/* NUL-terminated (not counted in len) */
};

/* An outbox record. */
struct store_outbox_rec {
	uint64_t	 seq;
	int64_t		 appended_ms;
	void		*data;		/* malloc'd and NUL-terminated */
	size_t		 len;
};

/*
 * A transaction body for store_run(): returns 0 to commit, anything else
 * to abort and return that.
 */
typedef int	store_fn(struct store *, struct store_txn *, void *);

/*
 * Opens (creating dir with mode 0700 and the tables if missing) the
 * environment in dir, running recovery when a process died using it.
 */
int		 store_open(struct store **sp, const char *dir, unsigned flags);
/* Checkpoints and closes; NULL is fine. */
int		 store_close(struct store *);
/* Writes a checkpoint (when anything changed) and runs failchk. */
int		 store_checkpoint(struct store *);
/*
 * Writes the log to disk: every transaction committed so far, also under
 * STORE_NOSYNC, is durable once this returns 0 (group commit).
 */
int		 store_flush(struct store *);
/* Aborts the transactions of dead processes, releases their locks. */
int		 store_failchk(struct store *);
const char	*store_strerror(int err);
/*
 * Once Berkeley DB has said that a file of this process's state is
 * damaged: what to do, as a clause that begins with ": "; else "".
 */
const char	*store_damage_hint(void);

int		 store_txn_begin(struct store *, struct store_txn **);
/* Both free the transaction, whatever they return. */
int		 store_txn_commit(struct store_txn *);
int		 store_txn_abort(struct store_txn *);

/*
 * Runs fn in a transaction and commits it; on STORE_DEADLOCK (from fn or
 * the commit) aborts, runs failchk, backs off and tries again, at most
 * STORE_RUN_TRIES times.  fn must be safe to run again.
 */
#define STORE_RUN_TRIES	20
int		 store_run(struct store *, store_fn *fn, void *arg);

/*
 * Idempotency records.  get returns STORE_NOTFOUND for an absent or
 * expired record; on success rec->outcome must be freed
 * (store_idem_free()).  put inserts or overwrites.  put_new inserts unless
 * an unexpired record exists: then it returns STORE_EXISTS and, when old
 * is not NULL, fills it in.  put takes the record's created_ms for now.
 * A record lives at least until its expires_ms and at most about two
 * periods longer: the store's generation period (storeidem.c), the TTL of
 * the first record put rounded up to a power of two ms, at least 65 s.  del
 * returns STORE_NOTFOUND when absent.  expire, in one transaction,
 * deletes at most max records of a TTL no generation holds, one by one,
 * and then, unless it deleted max, drops whole the generations ended by
 * now_ms, however many records they hold; it stores how many records
 * went in *n: call it again while *n == max.  put and put_new return
 * EINVAL for a state out of range, and put_new for now_ms <= 0.
 */
int	store_idem_get(struct store *, struct store_txn *, const char *key,
	    int64_t now_ms, struct store_idem *rec);
int	store_idem_put(struct store *, struct store_txn *, const char *key,
	    const struct store_idem *rec);
int	store_idem_put_new(struct store *, struct store_txn *, const char *key,
	    const struct store_idem *rec, int64_t now_ms,
	    struct store_idem *old);
int	store_idem_del(struct store *, struct store_txn *, const char *key);
int	store_idem_expire(struct store *, struct store_txn *, int64_t now_ms,
	    size_t max, size_t *n);
void	store_idem_free(struct store_idem *);

/* Orders: order id -> JSON text.  get mallocs *json (free it). */
int	store_order_get(struct store *, struct store_txn *,
	    const char *order_id, char **json);
int	store_order_put(struct store *, struct store_txn *,
	    const char *order_id, const char *json);

/*
 * The outbox, a queue ordered by sequence number.  Numbers start at 1 and
 * increase in the order they are allocated, which is not quite commit
 * order: a transaction that appended 7 may commit after one that appended
 * 8, and one that aborts leaves a gap.  So a relay that remembers the last
 * number it saw must rescan from 0 now and then (records are deleted once
 * published, so first(0) is always the oldest).
 * first returns the first record with seq > after, or STORE_NOTFOUND;
 * free it with store_outbox_free().  del returns STORE_NOTFOUND when
 * absent.  stats stores the number of records and the append time of
 * the oldest (0 when empty).
 */
int	store_outbox_append(struct store *, struct store_txn *,
	    const void *data, size_t len, int64_t now_ms, uint64_t *seq);
int	store_outbox_first(struct store *, struct store_txn *, uint64_t after,
	    struct store_outbox_rec *rec);
int	store_outbox_del(struct store *, struct store_txn *, uint64_t seq);
int	store_outbox_stats(struct store *, struct store_txn *,
	    uint64_t *depth, int64_t *oldest_ms);
void	store_outbox_free(struct store_outbox_rec *);

#endif
