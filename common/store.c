/*
 * store.c - the Berkeley DB 5.3 state of the stateful commands.
 *
 * Files in the environment directory (besides BDB's __db.* regions,
 * __db.register and log.* files):
 *   idem.db	 btree: key -> created_ms, expires_ms, state, and the
 *		 outcome, or where outcome.db holds it
 *   idem-exp.db btree, a secondary index of idem.db (DB->associate):
 *		 expires_ms -> key, so expiry walks only expired records
 *   outcome.db	 heap: the outcomes longer than IDEM_INLINE_MAX
 *   orders.db	 btree: order id -> JSON text
 *   outbox.db	 btree: big-endian seq -> appended_ms, data
 *   meta.db	 btree holding the outbox's DB_SEQUENCE
 * Numbers are stored big-endian, signed ones with the sign bit flipped,
 * so that byte order (BDB's default comparison) is numeric order.
 *
 * Why outcomes live apart: idempotency keys arrive in no useful order,
 * so idem.db takes its inserts all over the tree.  With outcomes inline
 * (a payment event is ~500 bytes) a 4 KiB leaf holds a handful of
 * records, every second or third insert splits one, each split logs
 * whole pages, and a tree many times the cache costs a page read and a
 * page write per insert.  Keeping only a 26-byte reference in the tree
 * makes it several times smaller and its splits rare; the heap takes the
 * outcomes in arrival order, filling its pages one after the other, and
 * reuses the space of deleted ones.  Short outcomes stay inline, where
 * they cost less than the reference and a second lookup.
 *
 * The outbox takes numbers from a DB_SEQUENCE without a cache, each
 * increment its own small non-syncing transaction, rather than from a
 * RECNO's DB_APPEND or a sequence inside the caller's transaction: those
 * hold a write lock on the last page or on the counter until commit, so
 * concurrent appenders would wait for each other's log flush and lose
 * group commit.  The price is gaps (an abort wastes its number) and
 * numbers allocated in an order slightly different from commit order
 * (see store.h).  An increment is durable as soon as any later commit
 * is, since the log is flushed in order, so a number is never reused.
 *
 * Surviving other processes' deaths (CONTRACT "State"):
 * - DB_REGISTER|DB_RECOVER: an open notices a process that died with the
 *   environment open and runs full recovery, which rebuilds the regions
 *   from the log and makes the other processes see STORE_RUNRECOVERY and
 *   reopen.  Not DB_FAILCHK, which would try failchk first: to run it, the
 *   open attaches to the regions and takes their mutexes, and when the
 *   dead process held one (it died inside the library) the open blocks
 *   for ever.  Full recovery takes none of them.  A crash of the machine
 *   is handled by the same recovery.
 * - Processes still running must not wait forever for the locks of a
 *   dead one.  A thread waiting for a lock sleeps in BDB until the lock
 *   is released (lock timeouts are only noticed by a detector run, which
 *   nothing would trigger), so each store has a watchdog thread that runs
 *   failchk every FAILCHK_MS: it aborts the dead process's transaction,
 *   whose locks are released, and the waiter wakes up.  store_run() also
 *   runs failchk before retrying, and store_checkpoint() runs it.
 * - When failchk says STORE_RUNRECOVERY (a process died inside the
 *   library, maybe holding one of its mutexes) it does not free the dead
 *   process's locks, nor panic the environment.  The store is then
 *   broken, and failchk() panics the environment, so that every call in
 *   every process fails with STORE_RUNRECOVERY at once instead of
 *   perhaps blocking on the dead process's mutex (store_close()'s
 *   checkpoint did, for ever); the caller reopens it, and the open runs
 *   recovery.  Threads already waiting for those locks are woken by lock
 *   timeouts (LOCK_TIMEOUT_US), which the watchdog enforces by running
 *   the detector for expired locks on every tick: they get STORE_DEADLOCK
 *   and, retrying, STORE_RUNRECOVERY.
 * - is_alive() checks the thread (tgkill(2) with signal 0), not only the
 *   process, using kernel thread ids as BDB thread ids, so the slots of
 *   threads that exited are reused by new ones.  A recycled pid or tid
 *   looks alive: the lock then stays until that process exits.
 * - A process killed inside a library call while holding one of BDB's
 *   region mutexes (process-shared pthread mutexes, not robust ones):
 *   every thread that then needs that mutex, in every process, blocks
 *   for ever, failchk included; only a new process's open (recovery)
 *   helps.  A process killed in a tight loop of commits does this about
 *   half the time; one killed while idle or between calls never does.
 *   So each round of the watchdog also takes the main region mutexes
 *   (a transaction begun and aborted, a log flush, the lock detector),
 *   and a monitor thread, which never calls the library, ends the
 *   process with status 1 and a message when the watchdog has not
 *   finished a round for STALL_MS (or $ORDERFLOW_STORE_STALL_MS), or
 *   when the store is broken and a transaction has stayed open that
 *   long (in a broken store every call fails at once, so one that does
 *   not return is blocked).  A wedge becomes a crash, which a supervisor
 *   (systemd's Restart=) turns into a restart whose open recovers.  A
 *   stopped process (SIGSTOP) is not taken for a wedged one.
 * Deadlocks between live transactions are broken by the detector that
 * runs on every lock conflict (DB_LOCK_DEFAULT); store_run() retries.
 *
 * Commits are synchronous unless STORE_NOSYNC; concurrent committers are
 * never serialised here: BDB flushes the log once for all commits
 * waiting at that moment (group commit).
 */
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <db.h>

#include "log.h"
#include "store.h"
#include "util.h"

_Static_assert(STORE_NOTFOUND == DB_NOTFOUND, "STORE_NOTFOUND");
_Static_assert(STORE_EXISTS == DB_KEYEXIST, "STORE_EXISTS");
_Static_assert(STORE_DEADLOCK == DB_LOCK_DEADLOCK, "STORE_DEADLOCK");
_Static_assert(STORE_RUNRECOVERY == DB_RUNRECOVERY, "STORE_RUNRECOVERY");
_Static_assert(sizeof(db_threadid_t) >= sizeof(pid_t), "db_threadid_t");

#define CACHE_BYTES		(8 * 1024 * 1024)	/* RSS stays < 32 MiB */
#define LOG_FILE_BYTES		(4 * 1024 * 1024)
#define THREAD_SLOTS		256	/* threads in the library at once */
#define FAILCHK_MS		1000
#define LOCK_TIMEOUT_US		2000000
#define RETRY_FAILCHK_MS	100
#define OPEN_TRIES		5
#define STALL_MS		30000

#define ENV_FLAGS	(DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK |	\
	DB_INIT_LOG | DB_INIT_MPOOL | DB_THREAD | DB_REGISTER |		\
	DB_RECOVER)

#define IDEM_HDR	20	/* created_ms, expires_ms, state */
/*
 * The stored state: the caller's in the low 31 bits (so from -2^30 to
 * 2^30 - 1), and in the top bit whether the outcome is in outcome.db.
 * A record written before outcomes moved out reads the same, unless its
 * state was negative (the commands store 1).
 */
#define IDEM_APART	UINT32_C(0x80000000)
#define IDEM_STATE_MIN	(-(1 << 30))
#define IDEM_STATE_MAX	((1 << 30) - 1)
#define IDEM_REF	6	/* after the header: heap pgno, indx */
#define IDEM_INLINE_MAX	64	/* longer outcomes go to outcome.db */
#define HEAP_REGION_PAGES	256	/* outcome.db's regions: 1 MiB */
#define OUTBOX_HDR	8	/* appended_ms */

struct store {
	DB_ENV		*env;
	DB		*idem;
	DB		*idem_exp;
	DB		*outcomes;
	DB		*orders;
	DB		*outbox;
	DB		*meta;
	DB_SEQUENCE	*seq;
	int64_t		 failchk_ms;	/* last run, monotonic; atomic */
	int		 failchk_busy;	/* atomic */
	int		 broken;	/* failchk said RUNRECOVERY; atomic */
	int64_t		 round_ms;	/* the watchdog's last round; atomic */
	int		 watchdog_done;	/* atomic */
	int64_t		 stall_ms;
	pthread_t	 watchdog;
	pthread_t	 monitor;
	pthread_mutex_t	 mu;		/* guards stop, for cv */
	pthread_cond_t	 cv;
	int		 stop;
	int		 watching;	/* the watchdog runs */
};

/* The arguments of every table operation, run by a store_fn. */
struct op {
	const char		*key;
	const void		*data;
	size_t			 len;
	int64_t			 now_ms;
	uint64_t		 seq;
	size_t			 max;
	u_int32_t		 rmw;	/* DB_RMW inside a caller's txn */
	const struct store_idem	*in;
	struct store_idem	*idem;
	struct store_outbox_rec	*rec;
	char			**json;
	uint64_t		*seqp;
	size_t			*np;
	int64_t			*msp;
};

static DB_TXN *
dbtxn(struct store_txn *t)
{
	return (DB_TXN *)t;
}

/* Numbers in byte order: big-endian, signed ones with the sign flipped. */
static void
put_u64(unsigned char *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = v & 0xff;
}

static uint64_t
get_u64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void
put_u32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static uint32_t
get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static void
put_i64(unsigned char *p, int64_t v)
{
	put_u64(p, (uint64_t)v ^ (UINT64_C(1) << 63));
}

static int64_t
get_i64(const unsigned char *p)
{
	return (int64_t)(get_u64(p) ^ (UINT64_C(1) << 63));
}

static void
dbt_in(DBT *d, const void *p, size_t len)
{
	memset(d, 0, sizeof(*d));
	d->data = (void *)(uintptr_t)p;
	d->size = (u_int32_t)len;
}

static void
dbt_out(DBT *d)
{
	memset(d, 0, sizeof(*d));
	d->flags = DB_DBT_MALLOC;
}

/* A NUL-terminated malloc'd copy of p[0..len). */
static void *
copy_nul(const void *p, size_t len)
{
	char *c;

	if ((c = malloc(len + 1)) == NULL)
		return NULL;
	memcpy(c, p, len);
	c[len] = '\0';
	return c;
}

static int
check_key(const char *key)
{
	size_t len;

	if (key == NULL)
		return EINVAL;
	len = strlen(key);
	return len == 0 || len > STORE_KEY_MAX ? EINVAL : 0;
}

static void
err_cb(const DB_ENV *env, const char *pfx, const char *msg)
{
	(void)env;
	(void)pfx;
	log_warn("store: %s", msg);
}

static void
msg_cb(const DB_ENV *env, const char *msg)
{
	(void)env;
	log_info("store: %s", msg);
}

/*
 * BDB thread ids are kernel thread ids, so is_alive() can check them.  BDB
 * asks for them on every mutex operation: they are cached per thread, and
 * forgotten in a child after fork(2).
 */
static __thread pid_t cached_pid;
static void	thread_id_atfork(void);
static __thread db_threadid_t cached_tid;

static void
thread_id_forget(void)
{
	cached_pid = 0;
}

static void
thread_id_atfork(void)
{
	(void)pthread_atfork(NULL, NULL, thread_id_forget);
}

static void
thread_id(DB_ENV *env, pid_t *pid, db_threadid_t *tid)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	(void)env;
	if (cached_pid == 0) {
		(void)pthread_once(&once, thread_id_atfork);
		cached_pid = getpid();
		cached_tid = (db_threadid_t)syscall(SYS_gettid);
	}
	if (pid != NULL)
		*pid = cached_pid;
	if (tid != NULL)
		*tid = cached_tid;
}

static int
is_alive(DB_ENV *env, pid_t pid, db_threadid_t tid, u_int32_t flags)
{
	long r;

	(void)env;
	if ((flags & DB_MUTEX_PROCESS_ONLY) || tid == 0)
		r = kill(pid, 0);
	else
		r = syscall(SYS_tgkill, pid, (pid_t)tid, 0);
	return r == 0 || errno == EPERM;
}

/*
 * Runs failchk unless it ran less than every_ms ago or another thread is
 * running it now: callers never queue behind it.
 */
static int
failchk(struct store *s, int64_t every_ms)
{
	int64_t now = util_mono_ms();
	int ret;

	if (now - __atomic_load_n(&s->failchk_ms, __ATOMIC_RELAXED) < every_ms)
		return 0;
	if (__atomic_exchange_n(&s->failchk_busy, 1, __ATOMIC_ACQUIRE))
		return 0;
	if ((ret = s->env->failchk(s->env, 0)) == DB_RUNRECOVERY &&
	    !__atomic_exchange_n(&s->broken, 1, __ATOMIC_RELAXED)) {
		log_error("store: a process died inside Berkeley DB: "
		    "the environment must be reopened");
		/*
		 * failchk says so without panicking the environment, so a
		 * later call (store_close()'s checkpoint) could still block
		 * on a mutex the dead process held.  Panicked, every call in
		 * every process returns DB_RUNRECOVERY at once; recovery is
		 * needed anyway.
		 */
		(void)s->env->set_flags(s->env, DB_PANIC_ENVIRONMENT, 1);
	}
	__atomic_store_n(&s->failchk_ms, now, __ATOMIC_RELAXED);
	__atomic_store_n(&s->failchk_busy, 0, __ATOMIC_RELEASE);
	return ret;
}

static int
env_config(DB_ENV *env, unsigned flags)
{
	int ret;

	env->set_errcall(env, err_cb);
	env->set_msgcall(env, msg_cb);
	if ((ret = env->set_cachesize(env, 0, CACHE_BYTES, 1)) != 0 ||
	    (ret = env->set_lg_max(env, LOG_FILE_BYTES)) != 0 ||
	    (ret = env->log_set_config(env, DB_LOG_AUTO_REMOVE, 1)) != 0 ||
	    (ret = env->set_lk_detect(env, DB_LOCK_DEFAULT)) != 0 ||
	    (ret = env->set_timeout(env, LOCK_TIMEOUT_US,
	    DB_SET_LOCK_TIMEOUT)) != 0 ||
	    (ret = env->set_thread_count(env, THREAD_SLOTS)) != 0 ||
	    (ret = env->set_thread_id(env, thread_id)) != 0 ||
	    (ret = env->set_isalive(env, is_alive)) != 0)
		return ret;
	if (flags & STORE_NOSYNC)
		ret = env->set_flags(env, DB_TXN_WRITE_NOSYNC, 1);
	return ret;
}

static int
env_open(struct store *s, const char *dir, unsigned flags)
{
	int ret;

	if (util_mkdir_p(dir, 0700) == -1) {
		ret = errno;
		log_error("store: %s: %s", dir, strerror(ret));
		return ret;
	}
	if ((ret = db_env_create(&s->env, 0)) != 0)
		return ret;
	if ((ret = env_config(s->env, flags)) == 0 &&
	    (ret = s->env->open(s->env, dir, ENV_FLAGS, 0600)) != 0)
		log_error("store: %s: %s", dir, db_strerror(ret));
	if (ret != 0) {
		(void)s->env->close(s->env, 0);
		s->env = NULL;
	}
	return ret;
}

static int
db_open(DB_ENV *env, DB **dbp, const char *file, DBTYPE type,
    u_int32_t dbflags)
{
	DB *db;
	int ret;

	*dbp = NULL;
	if ((ret = db_create(&db, env, 0)) != 0)
		return ret;
	/*
	 * A heap reuses the space of deleted records only once its
	 * current region (by default all the pages one bitmap page
	 * tracks, 64 MiB) is full; small regions keep it near the size
	 * of what it holds.
	 */
	if (type == DB_HEAP &&
	    (ret = db->set_heap_regionsize(db, HEAP_REGION_PAGES)) != 0) {
		(void)db->close(db, 0);
		return ret;
	}
	if ((dbflags == 0 || (ret = db->set_flags(db, dbflags)) == 0) &&
	    (ret = db->open(db, NULL, file, NULL, type,
	    DB_CREATE | DB_THREAD | DB_AUTO_COMMIT, 0600)) == 0) {
		*dbp = db;
		return 0;
	}
	(void)db->close(db, 0);
	return ret;
}

/* The secondary key of an idempotency record: its expires_ms. */
static int
idem_exp_key(DB *sec, const DBT *key, const DBT *data, DBT *result)
{
	(void)sec;
	(void)key;
	if (data->size < IDEM_HDR)
		return DB_DONOTINDEX;
	memset(result, 0, sizeof(*result));
	result->data = (unsigned char *)data->data + 8;
	result->size = 8;
	return 0;
}

static int
seq_open(struct store *s)
{
	DB_SEQUENCE *seq;
	DBT key;
	int ret;

	if ((ret = db_sequence_create(&seq, s->meta, 0)) != 0)
		return ret;
	dbt_in(&key, "outbox.seq", strlen("outbox.seq"));
	if ((ret = seq->initial_value(seq, 1)) == 0 &&
	    (ret = seq->open(seq, NULL, &key, DB_CREATE | DB_THREAD)) == 0) {
		s->seq = seq;
		return 0;
	}
	(void)seq->close(seq, 0);
	return ret;
}

static DB_SEQUENCE *abandoned[64];

static void
tables_close(struct store *s)
{
	size_t i;

	/*
	 * In a panicked environment the sequence's close fails and frees
	 * nothing, and the handles it leads to (the tables, the environment)
	 * stay allocated: a few tens of KiB each time a store broken by
	 * another process's death is reopened.  They are kept reachable so
	 * that a leak checker (LeakSanitizer) tells them from real leaks.
	 */
	if (s->seq != NULL && s->seq->close(s->seq, 0) != 0)
		for (i = 0; i < sizeof(abandoned) / sizeof(abandoned[0]); i++)
			if (abandoned[i] == NULL) {
				abandoned[i] = s->seq;
				break;
			}
	if (s->idem_exp != NULL)
		(void)s->idem_exp->close(s->idem_exp, 0);
	if (s->idem != NULL)
		(void)s->idem->close(s->idem, 0);
	if (s->outcomes != NULL)
		(void)s->outcomes->close(s->outcomes, 0);
	if (s->orders != NULL)
		(void)s->orders->close(s->orders, 0);
	if (s->outbox != NULL)
		(void)s->outbox->close(s->outbox, 0);
	if (s->meta != NULL)
		(void)s->meta->close(s->meta, 0);
	s->seq = NULL;
	s->idem = s->idem_exp = s->outcomes = NULL;
	s->orders = s->outbox = s->meta = NULL;
}

static int
tables_open(struct store *s)
{
	DB_ENV *e = s->env;
	int ret;

	if ((ret = db_open(e, &s->idem, "idem.db", DB_BTREE, 0)) != 0 ||
	    (ret = db_open(e, &s->idem_exp, "idem-exp.db", DB_BTREE,
	    DB_DUPSORT)) != 0 ||
	    (ret = s->idem->associate(s->idem, NULL, s->idem_exp,
	    idem_exp_key, DB_CREATE)) != 0 ||
	    (ret = db_open(e, &s->outcomes, "outcome.db", DB_HEAP, 0)) != 0 ||
	    (ret = db_open(e, &s->orders, "orders.db", DB_BTREE, 0)) != 0 ||
	    (ret = db_open(e, &s->outbox, "outbox.db", DB_BTREE, 0)) != 0 ||
	    (ret = db_open(e, &s->meta, "meta.db", DB_BTREE, 0)) != 0 ||
	    (ret = seq_open(s)) != 0)
		tables_close(s);
	return ret;
}

static int
retryable(int ret)
{
	return ret == DB_LOCK_DEADLOCK || ret == DB_LOCK_NOTGRANTED;
}

/* Sleeps a random time below 2^n ms (at most 256 ms). */
static void
backoff(int n)
{
	static __thread unsigned int seed;
	struct timespec ts;
	long ms;

	if (seed == 0)
		seed = (unsigned int)syscall(SYS_gettid) ^
		    (unsigned int)util_mono_ms();
	ms = rand_r(&seed) % (1L << (n < 8 ? n : 8)) + 1;
	ts.tv_sec = 0;
	ts.tv_nsec = ms * 1000000;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Waits until ms from now or until stopped; 1 when stopped. */
static int
watchdog_wait(struct store *s, int64_t ms)
{
	struct timespec ts = util_time_in(CLOCK_MONOTONIC, ms);
	int stop;

	pthread_mutex_lock(&s->mu);
	while (!s->stop &&
	    pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT)
		;
	stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

/* Takes the transaction and log regions' mutexes, and lets them go. */
static void
probe(struct store *s)
{
	DB_TXN *t;

	if (s->env->txn_begin(s->env, NULL, &t, DB_TXN_NOWAIT) == 0)
		(void)t->abort(t);
	(void)s->env->log_flush(s->env, NULL);
}

static void *
watchdog(void *arg)
{
	struct store *s = arg;

	while (!watchdog_wait(s, FAILCHK_MS)) {
		(void)failchk(s, FAILCHK_MS / 2);
		(void)s->env->lock_detect(s->env, 0, DB_LOCK_EXPIRE, NULL);
		if (!__atomic_load_n(&s->broken, __ATOMIC_RELAXED))
			probe(s);
		__atomic_store_n(&s->round_ms, util_mono_ms(),
		    __ATOMIC_RELAXED);
	}
	__atomic_store_n(&s->watchdog_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * Transactions open in the process, and when one last began or ended; for
 * the process, not each store, since a DB_TXN does not lead back to its
 * store (processes have one store, or several in tests).  Atomic.
 */
static int	txns;
static int64_t	txns_ms;

static void
txn_count(int n)
{
	__atomic_add_fetch(&txns, n, __ATOMIC_RELAXED);
	__atomic_store_n(&txns_ms, util_mono_ms(), __ATOMIC_RELAXED);
}

/* Whether the library is stuck (see the top of the file). */
static int
stalled(struct store *s, int64_t now)
{
	if (now - __atomic_load_n(&s->round_ms, __ATOMIC_RELAXED) >
	    s->stall_ms)
		return 1;
	return __atomic_load_n(&s->broken, __ATOMIC_RELAXED) &&
	    __atomic_load_n(&txns, __ATOMIC_RELAXED) > 0 &&
	    now - __atomic_load_n(&txns_ms, __ATOMIC_RELAXED) > s->stall_ms;
}

/*
 * Ends the process when the library is stuck.  Runs until the watchdog
 * has finished, so that a watchdog stuck while the store closes is caught
 * too.  Its own oversleeping means the process was stopped: the others
 * get a new chance then.
 */
static void *
monitor(void *arg)
{
	struct store *s = arg;
	int64_t now, last = util_mono_ms();

	while (!__atomic_load_n(&s->watchdog_done, __ATOMIC_ACQUIRE)) {
		(void)watchdog_wait(s, FAILCHK_MS);
		now = util_mono_ms();
		if (now - last > 5 * FAILCHK_MS) {
			__atomic_store_n(&s->round_ms, now, __ATOMIC_RELAXED);
			__atomic_store_n(&txns_ms, now, __ATOMIC_RELAXED);
		}
		last = now;
		if (!stalled(s, now))
			continue;
		log_error("store: Berkeley DB has made no progress for "
		    "%lld ms: a process probably died holding one of its "
		    "mutexes; exiting so that a restart recovers",
		    (long long)s->stall_ms);
		_exit(1);
	}
	return NULL;
}

static int64_t
stall_ms(void)
{
	const char *e = getenv("ORDERFLOW_STORE_STALL_MS");
	const char *errstr;
	long long v;

	if (e == NULL || *e == '\0')
		return STALL_MS;
	v = util_strtonum(e, 1000, 3600000, &errstr);
	if (errstr != NULL) {
		log_warn("ORDERFLOW_STORE_STALL_MS=%s: %s; using %d", e,
		    errstr, STALL_MS);
		return STALL_MS;
	}
	return v;
}

static int
watchdog_start(struct store *s)
{
	pthread_condattr_t ca;
	int ret;

	if ((ret = pthread_condattr_init(&ca)) != 0)
		return ret;
	if ((ret = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) == 0 &&
	    (ret = pthread_cond_init(&s->cv, &ca)) == 0) {
		if ((ret = pthread_mutex_init(&s->mu, NULL)) != 0)
			pthread_cond_destroy(&s->cv);
	}
	pthread_condattr_destroy(&ca);
	if (ret != 0)
		return ret;
	s->stall_ms = stall_ms();
	s->round_ms = util_mono_ms();
	if ((ret = pthread_create(&s->watchdog, NULL, watchdog, s)) != 0) {
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
		return ret;
	}
	if ((ret = pthread_create(&s->monitor, NULL, monitor, s)) != 0) {
		pthread_mutex_lock(&s->mu);
		s->stop = 1;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->watchdog, NULL);
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
		return ret;
	}
	s->watching = 1;
	return 0;
}

static void
watchdog_stop(struct store *s)
{
	if (!s->watching)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	/* The monitor watches until the watchdog has finished its round. */
	pthread_join(s->watchdog, NULL);
	pthread_join(s->monitor, NULL);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	s->watching = 0;
}

int
store_open(struct store **sp, const char *dir, unsigned flags)
{
	struct store *s;
	int ret, i;

	*sp = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return ENOMEM;
	if ((ret = env_open(s, dir, flags)) != 0) {
		free(s);
		return ret;
	}
	/* Two processes creating the tables at once may deadlock. */
	for (i = 0; (ret = tables_open(s)) != 0 && retryable(ret) &&
	    i < OPEN_TRIES; i++)
		backoff(i + 1);
	if (ret != 0)
		log_error("store: %s: %s", dir, db_strerror(ret));
	else if ((ret = watchdog_start(s)) != 0)
		tables_close(s);
	if (ret != 0) {
		(void)s->env->close(s->env, 0);
		free(s);
		return ret;
	}
	*sp = s;
	return 0;
}

int
store_close(struct store *s)
{
	int ret, t_ret;

	if (s == NULL)
		return 0;
	watchdog_stop(s);
	ret = s->env->txn_checkpoint(s->env, 0, 0, 0);
	tables_close(s);
	if ((t_ret = s->env->close(s->env, 0)) != 0 && ret == 0)
		ret = t_ret;
	free(s);
	return ret;
}

int
store_checkpoint(struct store *s)
{
	int ret;

	if ((ret = failchk(s, 0)) != 0)
		return ret;
	return s->env->txn_checkpoint(s->env, 0, 0, 0);
}

int
store_flush(struct store *s)
{
	return s->env->log_flush(s->env, NULL);
}

int
store_failchk(struct store *s)
{
	return failchk(s, 0);
}

const char *
store_strerror(int err)
{
	return db_strerror(err);
}

int
store_txn_begin(struct store *s, struct store_txn **tp)
{
	DB_TXN *t;
	int ret;

	*tp = NULL;
	if (__atomic_load_n(&s->broken, __ATOMIC_RELAXED))
		return DB_RUNRECOVERY;
	txn_count(1);
	if ((ret = s->env->txn_begin(s->env, NULL, &t, 0)) != 0) {
		txn_count(-1);
		return ret;
	}
	*tp = (struct store_txn *)t;
	return 0;
}

int
store_txn_commit(struct store_txn *t)
{
	DB_TXN *txn = dbtxn(t);
	int ret;

	ret = txn->commit(txn, 0);
	txn_count(-1);
	return ret;
}

int
store_txn_abort(struct store_txn *t)
{
	DB_TXN *txn = dbtxn(t);
	int ret;

	ret = txn->abort(txn);
	txn_count(-1);
	return ret;
}

static int
run_once(struct store *s, store_fn *fn, void *arg)
{
	struct store_txn *t;
	int ret;

	if ((ret = store_txn_begin(s, &t)) != 0)
		return ret;
	if ((ret = fn(s, t, arg)) != 0) {
		(void)store_txn_abort(t);
		return ret;
	}
	return store_txn_commit(t);
}

int
store_run(struct store *s, store_fn *fn, void *arg)
{
	int ret, i;

	for (i = 0; i < STORE_RUN_TRIES; i++) {
		if (i > 0) {
			if ((ret = failchk(s, RETRY_FAILCHK_MS)) != 0)
				return ret;
			backoff(i);
		}
		if (!retryable(ret = run_once(s, fn, arg)))
			return ret;
	}
	return DB_LOCK_DEADLOCK;
}

/*
 * Runs a table operation in the caller's transaction, or in one of its
 * own (with retries) when there is none.
 */
static int
in_txn(struct store *s, struct store_txn *t, store_fn *fn, struct op *o)
{
	int ret;

	if (t == NULL)
		return store_run(s, fn, o);
	o->rmw = DB_RMW;
	ret = fn(s, t, o);
	return retryable(ret) ? DB_LOCK_DEADLOCK : ret;
}

/* Idempotency records. */

static void
rid_dbt(DBT *k, DB_HEAP_RID *rid)
{
	memset(k, 0, sizeof(*k));
	k->data = rid;
	k->size = DB_HEAP_RID_SZ;
	k->ulen = sizeof(*rid);
	k->flags = DB_DBT_USERMEM;
}

/*
 * Decodes a record of idem.db but for its outcome, which is either
 * inline (rid->pgno 0, since a heap's page 0 is its meta page; the
 * r->outcome_len bytes after the header) or where outcome.db keeps it.
 */
static int
idem_decode(const DBT *d, struct store_idem *r, DB_HEAP_RID *rid)
{
	const unsigned char *p = d->data;
	uint32_t state;
	int64_t v;

	memset(r, 0, sizeof(*r));
	memset(rid, 0, sizeof(*rid));
	if (d->size < IDEM_HDR)
		return EBADMSG;
	r->created_ms = get_i64(p);
	r->expires_ms = get_i64(p + 8);
	state = get_u32(p + 16);
	v = state & ~IDEM_APART;	/* 31 bits, sign-extended from bit 30 */
	r->state = (int)(v & 0x40000000 ? v - 0x80000000 : v);
	if (state & IDEM_APART) {
		if (d->size != IDEM_HDR + IDEM_REF)
			return EBADMSG;
		rid->pgno = get_u32(p + IDEM_HDR);
		rid->indx = (db_indx_t)(p[IDEM_HDR + 4] << 8 |
		    p[IDEM_HDR + 5]);
		return rid->pgno == 0 ? EBADMSG : 0;
	}
	r->outcome_len = d->size - IDEM_HDR;
	return 0;
}

/*
 * Copies the outcome of the decoded record d to r.  A reference to
 * nothing is damage, never "no record": that answer would let a payment
 * be made twice.
 */
static int
idem_outcome(struct store *s, struct store_txn *t, const DBT *d,
    DB_HEAP_RID *rid, u_int32_t flags, struct store_idem *r)
{
	DBT k, v;
	int ret;

	if (rid->pgno == 0) {
		r->outcome = copy_nul((unsigned char *)d->data + IDEM_HDR,
		    r->outcome_len);
		return r->outcome == NULL ? ENOMEM : 0;
	}
	rid_dbt(&k, rid);
	dbt_out(&v);
	ret = s->outcomes->get(s->outcomes, dbtxn(t), &k, &v, flags);
	if (ret == DB_NOTFOUND)
		return EBADMSG;
	if (ret != 0)
		return ret;
	r->outcome_len = v.size;
	r->outcome = copy_nul(v.data, v.size);
	free(v.data);
	return r->outcome == NULL ? ENOMEM : 0;
}

/* The record under key as stored; d.data is malloc'd. */
static int
idem_raw(struct store *s, struct store_txn *t, const char *key,
    u_int32_t flags, DBT *d)
{
	DBT k;

	dbt_in(&k, key, strlen(key));
	dbt_out(d);
	return s->idem->get(s->idem, dbtxn(t), &k, d, flags);
}

static int
idem_read(struct store *s, struct store_txn *t, const char *key,
    u_int32_t flags, struct store_idem *r)
{
	DB_HEAP_RID rid;
	DBT d;
	int ret;

	if ((ret = idem_raw(s, t, key, flags, &d)) != 0)
		return ret;
	if ((ret = idem_decode(&d, r, &rid)) == 0)
		ret = idem_outcome(s, t, &d, &rid, flags, r);
	free(d.data);
	if (ret != 0)
		store_idem_free(r);
	return ret;
}

/* Deletes the outcome kept apart at rid, if any (pgno 0: none). */
static int
outcome_del(struct store *s, struct store_txn *t, DB_HEAP_RID *rid)
{
	DBT k;
	int ret;

	if (rid->pgno == 0)
		return 0;
	rid_dbt(&k, rid);
	ret = s->outcomes->del(s->outcomes, dbtxn(t), &k, 0);
	return ret == DB_NOTFOUND ? 0 : ret;
}

/* Deletes the outcome that the stored record d keeps apart, if any. */
static int
outcome_del_of(struct store *s, struct store_txn *t, const DBT *d)
{
	struct store_idem r;
	DB_HEAP_RID rid;
	int ret;

	if ((ret = idem_decode(d, &r, &rid)) != 0)
		return ret;
	return outcome_del(s, t, &rid);
}

/* Writes a record over whatever is under key, whose outcome is gone. */
static int
idem_write(struct store *s, struct store_txn *t, const char *key,
    const struct store_idem *r)
{
	unsigned char ref[IDEM_HDR + IDEM_REF], *buf = ref;
	uint32_t state = (uint32_t)r->state & ~IDEM_APART;
	DB_HEAP_RID rid;
	size_t len;
	DBT k, d;
	int ret;

	if (r->outcome_len > IDEM_INLINE_MAX) {
		rid_dbt(&k, &rid);
		dbt_in(&d, r->outcome, r->outcome_len);
		if ((ret = s->outcomes->put(s->outcomes, dbtxn(t), &k, &d,
		    DB_APPEND)) != 0)
			return ret;
		state |= IDEM_APART;
		put_u32(buf + IDEM_HDR, rid.pgno);
		buf[IDEM_HDR + 4] = (unsigned char)(rid.indx >> 8);
		buf[IDEM_HDR + 5] = (unsigned char)rid.indx;
		len = IDEM_HDR + IDEM_REF;
	} else {
		len = IDEM_HDR + r->outcome_len;
		if (len > sizeof(ref) && (buf = malloc(len)) == NULL)
			return ENOMEM;
		if (r->outcome_len > 0)
			memcpy(buf + IDEM_HDR, r->outcome, r->outcome_len);
	}
	put_i64(buf, r->created_ms);
	put_i64(buf + 8, r->expires_ms);
	put_u32(buf + 16, state);
	dbt_in(&k, key, strlen(key));
	dbt_in(&d, buf, len);
	ret = s->idem->put(s->idem, dbtxn(t), &k, &d, 0);
	if (buf != ref)
		free(buf);
	return ret;
}

static int
idem_get_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	int ret;

	if ((ret = idem_read(s, t, o->key, o->rmw, o->idem)) != 0)
		return ret;
	if (o->idem->expires_ms <= o->now_ms) {
		store_idem_free(o->idem);
		return DB_NOTFOUND;
	}
	return 0;
}

int
store_idem_get(struct store *s, struct store_txn *t, const char *key,
    int64_t now_ms, struct store_idem *rec)
{
	struct op o = { .key = key, .now_ms = now_ms, .idem = rec };

	memset(rec, 0, sizeof(*rec));
	if (check_key(key) != 0)
		return EINVAL;
	return in_txn(s, t, idem_get_fn, &o);
}

/*
 * Puts o->in under o->key.  With o->now_ms > 0 only in place of nothing
 * or of an expired record: an unexpired one gives DB_KEYEXIST, and is
 * copied to o->idem when that is not NULL.
 */
static int
idem_put_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	struct store_idem old;
	DB_HEAP_RID rid;
	DBT d;
	int ret;

	ret = idem_raw(s, t, o->key, DB_RMW, &d);
	if (ret == DB_NOTFOUND)
		return idem_write(s, t, o->key, o->in);
	if (ret != 0)
		return ret;
	if ((ret = idem_decode(&d, &old, &rid)) == 0 && o->now_ms > 0 &&
	    old.expires_ms > o->now_ms) {
		if (o->idem != NULL && (ret = idem_outcome(s, t, &d, &rid,
		    DB_RMW, &old)) == 0) {
			*o->idem = old;
			old.outcome = NULL;
		}
		ret = ret == 0 ? DB_KEYEXIST : ret;
	} else if (ret == 0)
		ret = outcome_del(s, t, &rid);
	else if (o->now_ms == 0)
		ret = 0;	/* a plain put replaces even a damaged record */
	store_idem_free(&old);
	free(d.data);
	return ret == 0 ? idem_write(s, t, o->key, o->in) : ret;
}

/* Whether key and rec can be stored (store.h: the state's range). */
static int
idem_put_ok(const char *key, const struct store_idem *rec)
{
	return check_key(key) == 0 && rec->state >= IDEM_STATE_MIN &&
	    rec->state <= IDEM_STATE_MAX && rec->outcome_len <= UINT32_MAX;
}

int
store_idem_put(struct store *s, struct store_txn *t, const char *key,
    const struct store_idem *rec)
{
	struct op o = { .key = key, .in = rec };

	if (!idem_put_ok(key, rec))
		return EINVAL;
	return in_txn(s, t, idem_put_fn, &o);
}

int
store_idem_put_new(struct store *s, struct store_txn *t, const char *key,
    const struct store_idem *rec, int64_t now_ms, struct store_idem *old)
{
	struct op o = { .key = key, .in = rec, .now_ms = now_ms, .idem = old };

	if (old != NULL)
		memset(old, 0, sizeof(*old));
	if (!idem_put_ok(key, rec) || now_ms <= 0)
		return EINVAL;
	return in_txn(s, t, idem_put_fn, &o);
}

static int
idem_del_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	DBT k, d;
	int ret;

	if ((ret = idem_raw(s, t, o->key, DB_RMW, &d)) != 0)
		return ret;
	ret = outcome_del_of(s, t, &d);
	free(d.data);
	if (ret != 0)
		return ret;
	dbt_in(&k, o->key, strlen(o->key));
	return s->idem->del(s->idem, dbtxn(t), &k, 0);
}

int
store_idem_del(struct store *s, struct store_txn *t, const char *key)
{
	struct op o = { .key = key };

	if (check_key(key) != 0)
		return EINVAL;
	return in_txn(s, t, idem_del_fn, &o);
}

/* Walks the expiry index from the oldest, deleting through it. */
static int
expire_walk(struct store *s, struct store_txn *t, struct op *o, DBC *c)
{
	DBT k, d;
	int ret, stop;

	for (*o->np = 0; *o->np < o->max; (*o->np)++) {
		dbt_out(&k);
		dbt_out(&d);
		if ((ret = c->get(c, &k, &d, DB_NEXT | DB_RMW)) != 0)
			return ret == DB_NOTFOUND ? 0 : ret;
		stop = k.size != 8 || get_i64(k.data) > o->now_ms;
		ret = stop ? 0 : outcome_del_of(s, t, &d);
		free(k.data);
		free(d.data);
		if (stop || ret != 0)
			return ret;
		if ((ret = c->del(c, 0)) != 0)
			return ret;
	}
	return 0;
}

static int
idem_expire_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	DBC *c;
	int ret, t_ret;

	if ((ret = s->idem_exp->cursor(s->idem_exp, dbtxn(t), &c, 0)) != 0)
		return ret;
	ret = expire_walk(s, t, o, c);
	if ((t_ret = c->close(c)) != 0 && ret == 0)
		ret = t_ret;
	return ret;
}

int
store_idem_expire(struct store *s, struct store_txn *t, int64_t now_ms,
    size_t max, size_t *n)
{
	struct op o = { .now_ms = now_ms, .max = max, .np = n };

	*n = 0;
	return in_txn(s, t, idem_expire_fn, &o);
}

void
store_idem_free(struct store_idem *r)
{
	if (r == NULL)
		return;
	free(r->outcome);
	r->outcome = NULL;
	r->outcome_len = 0;
}

/* Orders. */

static int
order_get_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	DBT k, d;
	int ret;

	dbt_in(&k, o->key, strlen(o->key));
	dbt_out(&d);
	if ((ret = s->orders->get(s->orders, dbtxn(t), &k, &d, o->rmw)) != 0)
		return ret;
	*o->json = copy_nul(d.data, d.size);
	free(d.data);
	return *o->json == NULL ? ENOMEM : 0;
}

int
store_order_get(struct store *s, struct store_txn *t, const char *order_id,
    char **json)
{
	struct op o = { .key = order_id, .json = json };

	*json = NULL;
	if (check_key(order_id) != 0)
		return EINVAL;
	return in_txn(s, t, order_get_fn, &o);
}

static int
order_put_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	DBT k, d;

	dbt_in(&k, o->key, strlen(o->key));
	dbt_in(&d, o->data, o->len);
	return s->orders->put(s->orders, dbtxn(t), &k, &d, 0);
}

int
store_order_put(struct store *s, struct store_txn *t, const char *order_id,
    const char *json)
{
	struct op o = { .key = order_id, .data = json };

	if (check_key(order_id) != 0 || json == NULL ||
	    (o.len = strlen(json)) > UINT32_MAX)
		return EINVAL;
	return in_txn(s, t, order_put_fn, &o);
}

/* The outbox. */

static int
outbox_append_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	unsigned char kb[8], *buf;
	db_seq_t v;
	DBT k, d;
	int ret;

	/* Its own transaction: the counter is never locked until commit. */
	if ((ret = s->seq->get(s->seq, NULL, 1, &v, DB_TXN_NOSYNC)) != 0)
		return ret;
	if ((buf = malloc(OUTBOX_HDR + o->len)) == NULL)
		return ENOMEM;
	put_i64(buf, o->now_ms);
	if (o->len > 0)
		memcpy(buf + OUTBOX_HDR, o->data, o->len);
	put_u64(kb, (uint64_t)v);
	dbt_in(&k, kb, sizeof(kb));
	dbt_in(&d, buf, OUTBOX_HDR + o->len);
	ret = s->outbox->put(s->outbox, dbtxn(t), &k, &d, DB_NOOVERWRITE);
	free(buf);
	if (ret == 0)
		*o->seqp = (uint64_t)v;
	return ret;
}

int
store_outbox_append(struct store *s, struct store_txn *t, const void *data,
    size_t len, int64_t now_ms, uint64_t *seq)
{
	struct op o = { .data = data, .len = len, .now_ms = now_ms,
	    .seqp = seq };

	*seq = 0;
	if ((data == NULL && len > 0) || len > UINT32_MAX - OUTBOX_HDR)
		return EINVAL;
	return in_txn(s, t, outbox_append_fn, &o);
}

static int
outbox_decode(const DBT *k, const DBT *d, struct store_outbox_rec *r)
{
	if (k->size != 8 || d->size < OUTBOX_HDR)
		return EBADMSG;
	r->seq = get_u64(k->data);
	r->appended_ms = get_i64(d->data);
	r->len = d->size - OUTBOX_HDR;
	r->data = copy_nul((unsigned char *)d->data + OUTBOX_HDR, r->len);
	return r->data == NULL ? ENOMEM : 0;
}

/* The first record at or after key kb, read through cursor flags. */
static int
outbox_seek(struct store *s, struct store_txn *t, u_int32_t cflags,
    u_int32_t flags, unsigned char kb[8], struct store_outbox_rec *r)
{
	DBC *c;
	DBT k, d;
	int ret, t_ret;

	if ((ret = s->outbox->cursor(s->outbox, dbtxn(t), &c, cflags)) != 0)
		return ret;
	memset(&k, 0, sizeof(k));
	k.data = kb;
	k.size = k.ulen = 8;
	k.flags = DB_DBT_USERMEM;
	dbt_out(&d);
	if ((ret = c->get(c, &k, &d, flags)) == 0) {
		ret = outbox_decode(&k, &d, r);
		free(d.data);
	}
	if ((t_ret = c->close(c)) != 0 && ret == 0)
		ret = t_ret;
	return ret;
}

static int
outbox_first_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	unsigned char kb[8];

	put_u64(kb, o->seq + 1);
	return outbox_seek(s, t, 0, DB_SET_RANGE | o->rmw, kb, o->rec);
}

int
store_outbox_first(struct store *s, struct store_txn *t, uint64_t after,
    struct store_outbox_rec *rec)
{
	struct op o = { .seq = after, .rec = rec };

	memset(rec, 0, sizeof(*rec));
	if (after == UINT64_MAX)
		return DB_NOTFOUND;
	return in_txn(s, t, outbox_first_fn, &o);
}

static int
outbox_del_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	unsigned char kb[8];
	DBT k;

	put_u64(kb, o->seq);
	dbt_in(&k, kb, sizeof(kb));
	return s->outbox->del(s->outbox, dbtxn(t), &k, 0);
}

int
store_outbox_del(struct store *s, struct store_txn *t, uint64_t seq)
{
	struct op o = { .seq = seq };

	return in_txn(s, t, outbox_del_fn, &o);
}

/* Read committed: statistics never hold up appenders. */
static int
outbox_stats_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	struct store_outbox_rec r;
	DB_BTREE_STAT *st;
	unsigned char kb[8];
	int ret;

	if ((ret = s->outbox->stat(s->outbox, dbtxn(t), &st,
	    DB_READ_COMMITTED)) != 0)
		return ret;
	*o->seqp = st->bt_nkeys;
	free(st);
	*o->msp = 0;
	memset(&r, 0, sizeof(r));
	ret = outbox_seek(s, t, DB_READ_COMMITTED, DB_FIRST, kb, &r);
	if (ret == 0)
		*o->msp = r.appended_ms;
	store_outbox_free(&r);
	return ret == DB_NOTFOUND ? 0 : ret;
}

int
store_outbox_stats(struct store *s, struct store_txn *t, uint64_t *depth,
    int64_t *oldest_ms)
{
	struct op o = { .seqp = depth, .msp = oldest_ms };

	*depth = 0;
	*oldest_ms = 0;
	return in_txn(s, t, outbox_stats_fn, &o);
}

void
store_outbox_free(struct store_outbox_rec *r)
{
	if (r == NULL)
		return;
	free(r->data);
	r->data = NULL;
	r->len = 0;
}
