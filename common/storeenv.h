/*
 * storeenv.h - the Berkeley DB environment under store.h's tables: one
 * transactional environment in a directory, shared by processes and
 * threads, that survives their deaths.  Only store.c uses it; the
 * commands see it through store.h.
 *
 * The contract:
 * - storeenv_open() creates the directory (mode 0700) and opens the
 *   environment with DB_REGISTER|DB_RECOVER: when a process died with it
 *   open (or the machine crashed), the open runs full recovery first.
 *   One open environment per directory per process (DB_REGISTER).
 *   The open refuses (EPERM, the reason in the log) a directory that
 *   another user owns or that group or others may write, and an entry
 *   in it that is a symbolic link, another user's, or writable by group
 *   or others (as ssh's StrictModes); Berkeley DB opens every file with
 *   O_NOFOLLOW.  After the open, each region file (__db.NNN, a shared
 *   mapping) is given its whole size on the disk: a full disk is then
 *   an error of the open (ENOSPC, the directory named in the log), not
 *   a SIGBUS at a later page fault.  A region that grows during the
 *   open itself (recovery) is not reserved yet: a SIGBUS (a fault, not
 *   kill(2)) while the environment opens writes an error naming the
 *   directory and exits OF_EXIT_FAIL, and the next open recovers.
 * - storeenv_watch() starts two threads for the environment.  The
 *   watchdog runs failchk every second: the transaction of a process
 *   killed holding locks is aborted and its locks released, so waiters
 *   go on within about a second.  When failchk finds that a process died
 *   inside the library, the environment is marked broken and panicked:
 *   every later call, in every process, fails with DB_RUNRECOVERY (=
 *   STORE_RUNRECOVERY) at once, and the owner must close it and open it
 *   again, which recovers it.  A lock wait lasts at most about 2 s (then
 *   DB_LOCK_DEADLOCK).
 * - The stall monitor, the other thread, never calls the library.  It
 *   ENDS THE PROCESS, with _exit(1) and an error in the log, when the
 *   watchdog has made no round for 30 s ($ORDERFLOW_STORE_STALL_MS, 1000
 *   to 3600000 ms), or when the environment is broken and a transaction
 *   has stayed open that long: a process killed while it held one of the
 *   library's internal mutexes (not robust ones) blocks every thread
 *   that needs it, in every process, for ever, and only a new process's
 *   open can recover.  So it does when the open has read one table that
 *   long (storeenv_opening()).  Those are the only exits in this module
 *   and store.c: a wedge becomes a crash, which a supervisor turns into
 *   a restart.
 *   A stopped process (SIGSTOP) is not taken for a wedged one.
 * - Transactions begun here are counted for the monitor, so every one
 *   must end with storeenv_txn_commit() or storeenv_txn_abort().
 *
 * Functions return 0 or a Berkeley DB error (or an errno value).
 */
#ifndef OF_STOREENV_H
#define OF_STOREENV_H

#include <stdint.h>

#include <db.h>

/* storeenv_open() flags. */
#define STOREENV_NOSYNC	0x01	/* commits do not flush the log: they
				   survive a process crash, not an OS
				   crash (DB_TXN_WRITE_NOSYNC) */
#define STOREENV_SMALLCACHE 0x02 /* a cache of SMALL_CACHE_BYTES, not
				   CACHE_BYTES (storeenv.c); for an
				   environment created now */
#define STOREENV_EXCLUSIVE 0x04	/* no other process uses the directory:
				   a table file ending in part of a page
				   (an extension that a full disk cut
				   short) loses that part, and the region
				   files are removed, before the
				   environment opens with recovery (a
				   damaged region crashed the open) */

struct storeenv;

/*
 * Opens the environment in dir (see above); no thread runs until
 * storeenv_watch().
 */
int	 storeenv_open(struct storeenv **, const char *dir, unsigned flags);
/*
 * Stops the threads if they run and closes the environment; every
 * database handle opened in it must be closed first.  NULL is fine.
 */
int	 storeenv_close(struct storeenv *);
/* The environment, for opening databases and reading their errors. */
DB_ENV	*storeenv_db(struct storeenv *);

/* Starts the watchdog and the stall monitor (see above). */
int	 storeenv_watch(struct storeenv *);
/* Stops them and waits for them; fine when they do not run. */
void	 storeenv_unwatch(struct storeenv *);
/*
 * Names the table (its file name, a string that outlives the open) that
 * the opening of the tables reads from now, or NULL when it is done.  A
 * table read for the stall time ENDS THE PROCESS the same way, with
 * _exit(1) and an error naming the file: a damaged page can make
 * Berkeley DB wait there for ever, and no signal stops it.
 */
void	 storeenv_opening(struct storeenv *, const char *file);
/* The table named last, or NULL. */
const char *storeenv_opening_file(struct storeenv *);

/* Writes a checkpoint, when anything changed since the last one. */
int	 storeenv_checkpoint(struct storeenv *);
/* Writes the log to disk: every commit so far is then durable. */
int	 storeenv_flush(struct storeenv *);
/*
 * Runs failchk (aborts the transactions of dead processes, releases their
 * locks), unless it ran less than every_ms ago or another thread runs it
 * now: callers never queue behind it.  DB_RUNRECOVERY marks the
 * environment broken (see above).
 */
int	 storeenv_failchk(struct storeenv *, int64_t every_ms);

/*
 * What to add to the message about a failed open that returned err: ""
 * unless Berkeley DB said that a file is damaged (it reads a damaged
 * file as encrypted or of another format, a damaged region as busy:
 * EAGAIN), then a sentence saying so and what to do.
 */
const char	*storeenv_damage_hint(int err);

/* Begins a transaction; DB_RUNRECOVERY at once when broken. */
int	 storeenv_txn_begin(struct storeenv *, DB_TXN **);
/* Both end the transaction, whatever they return. */
int	 storeenv_txn_commit(DB_TXN *);
int	 storeenv_txn_abort(DB_TXN *);

#endif
