/*
 * storeenv.c - the Berkeley DB 5.3 environment under store.c's tables:
 * its open (with recovery), the failchk watchdog, the stall monitor,
 * checkpoints, log flushes and transactions.
 *
 * Surviving other processes' deaths (orderflow(7), STATE):
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
 * runs on every lock conflict (DB_LOCK_DEFAULT); store.c retries.
 *
 * Commits are synchronous unless STOREENV_NOSYNC; concurrent committers
 * are never serialised here: BDB flushes the log once for all commits
 * waiting at that moment (group commit).
 */
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <db.h>

#include "exitcode.h"
#include "log.h"
#include "storeenv.h"
#include "util.h"

_Static_assert(sizeof(db_threadid_t) >= sizeof(pid_t), "db_threadid_t");

/*
 * order-serve's.  The cache region is resident whole (DB_REGION_INIT):
 * with 8 MiB order-serve peaked at 32.8 and 33.0 MiB under the serve
 * benchmark, with 6 MiB at 29.8 and 29.9, serving as fast (11,300 to
 * 13,300 requests a second flat out either way); with 4 MiB at 24.9 and
 * 25.8 against 28.4 and 29.0 with 6 (15 s of wrk flat out: 15,500 and
 * 17,400 requests a second against 15,600 and 16,000).
 */
#define CACHE_BYTES		(4 * 1024 * 1024)
/*
 * The workers' (STOREENV_SMALLCACHE): they insert under random keys into
 * tables far larger than any such cache, which misses the same with 4 MiB
 * as with 8 (callgrind: 2,815 and 2,820 million instructions for 20,000
 * payments), and the cache region is resident once touched: pay-process
 * peaked at 35 MiB with 8 and 28 to 31 MiB with 4 on 100,000 events.
 * With 2 MiB, 25 to 27 MiB against 28 to 30.5 with 4, at rates within
 * the noise; the price is page I/O through the kernel: with random order
 * ids 0.79 reads and 0.89 writes of a page a payment instead of 0.60 and
 * 0.70, about a tenth more system time on the store's thread, which is
 * the less busy of the two.  The memory target is the harder limit.
 */
#define SMALL_CACHE_BYTES	(2 * 1024 * 1024)
#define LOG_FILE_BYTES		(4 * 1024 * 1024)
#define THREAD_SLOTS		256	/* threads in the library at once */
#define FAILCHK_MS		1000
#define LOCK_TIMEOUT_US		2000000
#define STALL_MS		30000

#define REGION_PREFIX		"__db."	/* Berkeley DB's region files */

#define ENV_FLAGS	(DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK |	\
	DB_INIT_LOG | DB_INIT_MPOOL | DB_THREAD | DB_REGISTER |		\
	DB_RECOVER)

struct storeenv {
	DB_ENV		*env;
	int64_t		 failchk_ms;	/* last run, monotonic; atomic */
	int		 failchk_busy;	/* atomic */
	int		 broken;	/* failchk said RUNRECOVERY; atomic */
	int64_t		 round_ms;	/* the watchdog's last round; atomic */
	int		 watchdog_done;	/* under mu */
	int64_t		 stall_ms;
	pthread_t	 watchdog;
	pthread_t	 monitor;
	pthread_mutex_t	 mu;		/* guards stop, for cv */
	pthread_cond_t	 cv;
	int		 stop;
	int		 watching;	/* the watchdog runs */
	int64_t		 opening_ms;	/* the open began reading opening;
					   0: none; atomic */
	const char	*opening;	/* a table's file name; atomic */
	char		*dir;
};

/*
 * Berkeley DB's words for a file it cannot read as its own: a damaged
 * page or header reads as an encrypted one, or as of another format.  A
 * table whose pages name each other in a cycle (or a page itself as its
 * child) makes a thread latch a page it holds already: its error-checking
 * mutex refuses ("Resource deadlock avoided") and the environment panics.
 */
static const char *const damage_words[] = {
	"Encrypted database", "Encrypted checksum", "checksum error",
	"unexpected file type or format", "magic number",
	"unable to read region info", "illegal page type or format",
	"pthread lock failed: Resource deadlock avoided", NULL
};
static unsigned damaged;	/* atomic: bit i: damage_words[i] was seen */

#define DAMAGE_HINT	": the state is damaged (db_verify(1) on its .db files " \
	"finds the damaged one); stop every process that uses it, then " \
	"restore it from a backup, or move it aside to start afresh: what " \
	"was not committed comes again from the broker, but the records " \
	"of what was done are lost (see orderflow(7), STATE)"

/*
 * What Berkeley DB says of every call after a panic, and of the handles
 * that a panicked environment cannot close: a dozen lines or more after
 * the one that says why.
 */
static const char *const panic_echoes[] = {
	"fatal region error detected", "File handles still open",
	"Open file handle:", NULL
};
static int panicked;		/* atomic: a PANIC was logged */

static int
panic_echo(const char *msg)
{
	size_t i;

	if (strstr(msg, "PANIC:") != NULL &&
	    __atomic_exchange_n(&panicked, 1, __ATOMIC_RELAXED) == 0)
		return 0;
	if (!__atomic_load_n(&panicked, __ATOMIC_RELAXED))
		return 0;
	for (i = 0; panic_echoes[i] != NULL; i++)
		if (strstr(msg, panic_echoes[i]) != NULL)
			return 1;
	return 0;
}

/*
 * The first message of each kind about damage is an error, the rest debug;
 * so are the echoes of a panic.
 */
static void
err_cb(const DB_ENV *env, const char *pfx, const char *msg)
{
	unsigned i, bit;

	(void)env;
	(void)pfx;
	if (panic_echo(msg)) {
		log_debug("store: %s", msg);
		return;
	}
	for (i = 0; damage_words[i] != NULL; i++)
		if (strstr(msg, damage_words[i]) != NULL)
			break;
	bit = 1u << i;
	if (damage_words[i] == NULL)
		log_warn("store: %s", msg);
	else if ((__atomic_fetch_or(&damaged, bit, __ATOMIC_RELAXED) & bit) == 0)
		log_error("store: %s (damaged state)", msg);
	else
		log_debug("store: %s", msg);
}

const char *
storeenv_damage_hint(int err)
{
	if (err == EAGAIN || __atomic_load_n(&damaged, __ATOMIC_RELAXED))
		return DAMAGE_HINT;
	return "";
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
failchk(struct storeenv *s, int64_t every_ms)
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
	if ((ret = env->set_cachesize(env, 0, flags & STOREENV_SMALLCACHE ?
	    SMALL_CACHE_BYTES : CACHE_BYTES, 1)) != 0 ||
	    (ret = env->set_lg_max(env, LOG_FILE_BYTES)) != 0 ||
	    (ret = env->log_set_config(env, DB_LOG_AUTO_REMOVE, 1)) != 0 ||
	    (ret = env->set_lk_detect(env, DB_LOCK_DEFAULT)) != 0 ||
	    (ret = env->set_timeout(env, LOCK_TIMEOUT_US,
	    DB_SET_LOCK_TIMEOUT)) != 0 ||
	    (ret = env->set_thread_count(env, THREAD_SLOTS)) != 0 ||
	    (ret = env->set_thread_id(env, thread_id)) != 0 ||
	    (ret = env->set_isalive(env, is_alive)) != 0)
		return ret;
	/*
	 * The regions' first pages are written at creation, so a disk
	 * too full for them fails the open; regions_reserve() does the rest.
	 */
	if ((ret = env->set_flags(env, DB_REGION_INIT, 1)) != 0)
		return ret;
	if (flags & STOREENV_NOSYNC)
		ret = env->set_flags(env, DB_TXN_WRITE_NOSYNC, 1);
	return ret;
}

/*
 * Berkeley DB's open(2) for every file it opens (regions, log, tables):
 * a symbolic link planted in the state directory is not followed.
 */
static int
open_nofollow(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode = 0;

	if (flags & O_CREAT) {
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	return open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode);
}

static void
open_nofollow_install(void)
{
	(void)db_env_set_func_open(open_nofollow);
}

/*
 * Whether st, the state directory or a file in it (path), may be trusted,
 * as ssh's StrictModes decides: owned by this process's user, writable by
 * nobody else, not a symbolic link.  Another user who can write there
 * could plant a link that makes this process write its log over any file
 * it may write, or change the state under it.
 */
static int
trusted(const char *path, const struct stat *st)
{
	if (S_ISLNK(st->st_mode)) {
		log_error("store: %s: a symbolic link in the state directory; "
		    "refusing to use it", path);
		return 0;
	}
	if (st->st_uid != geteuid()) {
		log_error("store: %s: owned by uid %lu, not by this user "
		    "(uid %lu); refusing to use it", path,
		    (unsigned long)st->st_uid, (unsigned long)geteuid());
		return 0;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		log_error("store: %s: writable by group or others (mode %04o); "
		    "refusing to use it (chmod go-w)", path,
		    (unsigned)(st->st_mode & 07777));
		return 0;
	}
	return 1;
}

/*
 * Refuses (EPERM, with the reason in the log) a state directory, or an
 * entry in it, that trusted() does not accept.  The directory itself may
 * be reached through a symbolic link that its owner made.
 */
static int
dir_check(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *d;
	int ret = 0;

	if ((d = opendir(dir)) == NULL || fstat(dirfd(d), &st) == -1) {
		ret = errno;
		log_error("store: %s: %s", dir, strerror(ret));
		if (d != NULL)
			closedir(d);
		return ret;
	}
	if (!trusted(dir, &st))
		ret = EPERM;
	while (ret == 0 && (errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		(void)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (fstatat(dirfd(d), de->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) == -1) {
			if (errno == ENOENT)	/* removed meanwhile */
				continue;
			ret = errno;
			log_error("store: %s: %s", path, strerror(ret));
		} else if (!trusted(path, &st))
			ret = EPERM;
	}
	if (ret == 0 && errno != 0) {
		ret = errno;
		log_error("store: %s: %s", dir, strerror(ret));
	}
	closedir(d);
	return ret;
}

/*
 * Whether magic (a table's first page, bytes 12 to 15, as read) is one
 * Berkeley DB writes: an access method's, in either byte order, or that
 * of a file in the middle of a rename, which recovery finishes.
 */
static int
table_magic(uint32_t magic)
{
	static const uint32_t known[] = { DB_BTREEMAGIC, DB_HASHMAGIC,
	    DB_HEAPMAGIC, DB_QAMMAGIC, DB_RENAMEMAGIC };
	size_t i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (magic == known[i] || magic == __builtin_bswap32(known[i]))
			return 1;
	return 0;
}

/*
 * A table file that a full disk left ending in part of a page: Berkeley
 * DB extends a file by writing its new page, and a write that finds too
 * little space writes what fits.  The next open of the table then fails
 * ("file size not a multiple of the pagesize") for good, though the log,
 * which is written first, holds everything committed: a page beyond a
 * file's end is one recovery knows how to bring back, as after any crash
 * before a new page was written out.  So the part is cut off, the page
 * size read from the table's first page (its metadata, in this
 * machine's byte order; a file whose first page is not whole is left to
 * Berkeley DB).  Only where no other process can be extending the file
 * at this moment; recovery, which follows, brings the page back.
 *
 * A first page without a magic number of Berkeley DB's is damage, and
 * said so here (EINVAL), naming the file: recovery would otherwise meet
 * it first, and when the damage does not look encrypted, its open of the
 * table fails with no word of why ("Recovery function ... failed", a
 * panic, DB_RUNRECOVERY).  Returns 0 or an errno value.
 */
static int
table_trim(int dirfd, const char *dir, const char *name)
{
	unsigned char meta[24];
	char msg[PATH_MAX + 128];
	uint32_t psize, magic;
	struct stat st;
	int fd, ret = 0;

	if ((fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return errno == ENOENT ? 0 : errno;
	if (fstat(fd, &st) == -1)
		ret = errno;
	else if (pread(fd, meta, sizeof(meta), 0) == (ssize_t)sizeof(meta)) {
		memcpy(&magic, meta + 12, sizeof(magic));
		memcpy(&psize, meta + 20, sizeof(psize));
		if (!table_magic(magic)) {
			/* err_cb() marks it as damage, once. */
			snprintf(msg, sizeof(msg), "%s/%s: unexpected file "
			    "type or format: its first page has no Berkeley "
			    "DB magic number", dir, name);
			err_cb(NULL, NULL, msg);
			close(fd);
			return EINVAL;
		}
		if (psize >= 512 && psize <= 65536 &&
		    (psize & (psize - 1)) == 0 && st.st_size > (off_t)psize &&
		    st.st_size % psize != 0) {
			log_warn("store: %s/%s: %lld bytes, not a whole number "
			    "of %u-byte pages (a write cut short by a full "
			    "disk): the last %lld cut off", dir, name,
			    (long long)st.st_size, (unsigned)psize,
			    (long long)(st.st_size % psize));
			if (ftruncate(fd, st.st_size - st.st_size % psize) == -1)
				ret = errno;
		}
	}
	close(fd);
	if (ret != 0)
		log_error("store: %s/%s: %s", dir, name, strerror(ret));
	return ret;
}

/* table_trim() of every table file (NAME.db) in dir. */
static int
tables_trim(const char *dir)
{
	struct dirent *de;
	size_t n;
	DIR *d;
	int ret = 0;

	if ((d = opendir(dir)) == NULL)
		return errno;
	while (ret == 0 && (de = readdir(d)) != NULL) {
		n = strlen(de->d_name);
		if (n > 3 && strcmp(de->d_name + n - 3, ".db") == 0)
			ret = table_trim(dirfd(d), dir, de->d_name);
	}
	closedir(d);
	return ret;
}

/*
 * Normal recovery, whether or not DB_REGISTER would find it needed: a
 * process that closed the environment before it exited leaves none to
 * do, but table_trim() may have cut a page that only the log now holds,
 * and regions_remove() took what a dead process left in the regions.
 */
static int
recover(const char *dir, unsigned flags)
{
	DB_ENV *env;
	int ret, t_ret;

	if ((ret = db_env_create(&env, 0)) != 0)
		return ret;
	if ((ret = env_config(env, flags)) == 0 && (ret = env->open(env, dir,
	    ENV_FLAGS & ~DB_REGISTER, 0600)) != 0)
		log_error("store: %s: recovery: %s%s", dir, db_strerror(ret),
		    ret == EAGAIN ? "" : storeenv_damage_hint(ret));
	if ((t_ret = env->close(env, 0)) != 0 && ret == 0)
		ret = t_ret;
	return ret;
}

/*
 * Gives the region file path the disk space of its whole mapping, end
 * bytes.  Berkeley DB maps each region file at its maximum size but
 * extends the file only by writing its last byte: on a full disk the
 * first touch of a page without space is a SIGBUS.  With the space
 * reserved now, a full disk is an error of this open instead.
 */
static int
region_reserve(const char *path, off_t end)
{
	int fd, ret;

	if ((fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return errno;
	ret = posix_fallocate(fd, 0, end);
	close(fd);
	return ret;
}

/*
 * Reserves the space of every region file of dir that this process maps
 * (/proc/self/maps says how far each mapping reaches).  ENOSPC and the
 * like are returned, with the state directory named in the log.
 */
static int
regions_reserve(const char *dir)
{
	char real[PATH_MAX], line[PATH_MAX + 128], *path, *nl;
	unsigned long long lo, hi, off;
	size_t len;
	FILE *f;
	int n, ret = 0;

	if (realpath(dir, real) == NULL)
		return errno;
	len = strlen(real);
	if ((f = fopen("/proc/self/maps", "re")) == NULL) {
		log_warn("store: /proc/self/maps: %s; the disk space of "
		    "Berkeley DB's regions is not reserved", strerror(errno));
		return 0;
	}
	while (ret == 0 && fgets(line, sizeof(line), f) != NULL) {
		if ((nl = strchr(line, '\n')) != NULL)
			*nl = '\0';
		if (sscanf(line, "%llx-%llx %*s %llx %*s %*s %n", &lo, &hi,
		    &off, &n) != 3)
			continue;
		path = line + n;
		/*
		 * Mappings of an environment this process failed to close
		 * (it was panicked) may stay, of files recovery removed.
		 */
		if (strncmp(path, real, len) != 0 || path[len] != '/' ||
		    strncmp(path + len + 1, REGION_PREFIX,
		    strlen(REGION_PREFIX)) != 0 ||
		    strstr(path, " (deleted)") != NULL)
			continue;
		if ((ret = region_reserve(path, (off_t)(off + hi - lo))) ==
		    ENOENT)
			ret = 0;
		if (ret != 0)
			log_error("store: %s: cannot reserve %llu bytes for "
			    "Berkeley DB's region file %s: %s; free space "
			    "there and start again", dir,
			    (unsigned long long)(off + hi - lo),
			    path + len + 1, strerror(ret));
	}
	fclose(f);
	return ret;
}

/*
 * A bus error while an environment opens.  Berkeley DB may grow a region
 * while it opens one (recovery does), past the space regions_reserve()
 * gives each region afterwards, and on a full disk the first touch of
 * such a page is a SIGBUS.  For the open's length a fault (not a signal
 * sent by kill(2)) writes bus_line, prepared beforehand since a handler
 * may not format, and exits 1: recovery runs again at the next start.
 */
static pthread_mutex_t bus_mu = PTHREAD_MUTEX_INITIALIZER;
static char bus_line[PATH_MAX + 512];
static size_t bus_len;

static void
bus_fault(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (si->si_code <= 0) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	if (bus_len > 0)
		(void)!write(STDERR_FILENO, bus_line, bus_len);
	_exit(OF_EXIT_FAIL);
}

static void
bus_guard(const char *dir, struct sigaction *old)
{
	struct sigaction sa;

	pthread_mutex_lock(&bus_mu);
	bus_len = log_render(bus_line, sizeof(bus_line), "store: %s: a bus "
	    "error while Berkeley DB opened its regions there: the disk is "
	    "probably full; free space there and start again", dir);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = bus_fault;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGBUS, &sa, old);
}

static void
bus_unguard(const struct sigaction *old)
{
	(void)sigaction(SIGBUS, old, NULL);
	pthread_mutex_unlock(&bus_mu);
}

/*
 * Removes the region files (__db.NNN) of dir, which the next open with
 * DB_RECOVER makes again from the log.  Only for a process that holds
 * the directory's lock: another one could be using them.
 */
static int
regions_remove(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *e;
	size_t n = strlen(REGION_PREFIX);
	DIR *d;
	int ret = 0;

	if ((d = opendir(dir)) == NULL)
		return errno;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, REGION_PREFIX, n) != 0 ||
		    strspn(e->d_name + n, "0123456789") != 3 ||
		    e->d_name[n + 3] != '\0')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (unlink(path) == -1 && errno != ENOENT)
			ret = errno;
	}
	closedir(d);
	return ret;
}

/*
 * env_open() past the directory's checks, with bus errors guarded.  The
 * regions hold nothing the log and the tables do not once recovery has
 * run (the cache, the log's buffer, locks), and Berkeley DB trusts what
 * it finds in them: a damaged one crashed the open (SIGSEGV) or failed
 * it.  So a process that holds the directory's lock, which no other
 * process can then be using, removes them and recovers from the log at
 * every open, as it did only after a crash.
 */
static int
env_open_guarded(struct storeenv *s, const char *dir, unsigned flags)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	int ret;

	(void)pthread_once(&once, open_nofollow_install);
	if (flags & STOREENV_EXCLUSIVE) {
		if ((ret = tables_trim(dir)) != 0) {
			/* Other faults were named with their file. */
			if (*storeenv_damage_hint(ret) != '\0')
				log_error("store: %s: %s%s", dir,
				    strerror(ret), storeenv_damage_hint(ret));
			return ret;
		}
		if ((ret = regions_remove(dir)) != 0) {
			log_error("store: %s: cannot remove the old regions: %s",
			    dir, strerror(ret));
			return ret;
		}
		if ((ret = recover(dir, flags)) != 0)
			return ret;
	}
	if ((ret = db_env_create(&s->env, 0)) != 0)
		return ret;
	if ((ret = env_config(s->env, flags)) == 0 &&
	    (ret = s->env->open(s->env, dir, ENV_FLAGS, 0600)) != 0)
		log_error("store: %s: %s%s", dir, db_strerror(ret),
		    storeenv_damage_hint(ret));
	if (ret == 0)
		ret = regions_reserve(dir);
	if (ret != 0) {
		(void)s->env->close(s->env, 0);
		s->env = NULL;
	}
	return ret;
}

static int
env_open(struct storeenv *s, const char *dir, unsigned flags)
{
	struct sigaction old;
	int ret;

	if (util_mkdir_p(dir, 0700) == -1) {
		ret = errno;
		log_error("store: %s: %s", dir, strerror(ret));
		return ret;
	}
	if ((ret = dir_check(dir)) != 0)
		return ret;
	bus_guard(dir, &old);
	ret = env_open_guarded(s, dir, flags);
	bus_unguard(&old);
	return ret;
}

/*
 * Waits until ms from now or until *flag (one of s's, under s->mu) is set;
 * returns *flag.
 */
static int
flag_wait(struct storeenv *s, const int *flag, int64_t ms)
{
	struct timespec ts = util_time_in(CLOCK_MONOTONIC, ms);
	int set;

	pthread_mutex_lock(&s->mu);
	while (!*flag &&
	    pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT)
		;
	set = *flag;
	pthread_mutex_unlock(&s->mu);
	return set;
}

/* Waits until ms from now or until stopped; 1 when stopped. */
static int
watchdog_wait(struct storeenv *s, int64_t ms)
{
	return flag_wait(s, &s->stop, ms);
}

/* Takes the transaction and log regions' mutexes, and lets them go. */
static void
probe(struct storeenv *s)
{
	DB_TXN *t;

	if (s->env->txn_begin(s->env, NULL, &t, DB_TXN_NOWAIT) == 0)
		(void)t->abort(t);
	(void)s->env->log_flush(s->env, NULL);
}

static void *
watchdog(void *arg)
{
	struct storeenv *s = arg;

	while (!watchdog_wait(s, FAILCHK_MS)) {
		(void)failchk(s, FAILCHK_MS / 2);
		(void)s->env->lock_detect(s->env, 0, DB_LOCK_EXPIRE, NULL);
		if (!__atomic_load_n(&s->broken, __ATOMIC_RELAXED))
			probe(s);
		__atomic_store_n(&s->round_ms, util_mono_ms(),
		    __ATOMIC_RELAXED);
	}
	pthread_mutex_lock(&s->mu);
	s->watchdog_done = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
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
stalled(struct storeenv *s, int64_t now)
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
/*
 * Waits until ms from now or until the watchdog has finished; 1 when it
 * has.  Not woken for good by the stop: the monitor goes on watching the
 * watchdog's last round, once a FAILCHK_MS, without spinning.
 */
static int
monitor_wait(struct storeenv *s, int64_t ms)
{
	return flag_wait(s, &s->watchdog_done, ms);
}

/*
 * The table the open has been reading for the stall time, if any.  It
 * reads each table's root page, and a damaged root or inner page can leave
 * Berkeley DB waiting for ever on a page latch that its own thread holds,
 * or busy in a loop, silent and deaf to SIGTERM (random bytes over a
 * root, and a root naming itself as its child, did).  The open reads a
 * few pages of each table, so a healthy one never takes that long; a
 * wedged mutex, the other cause, ends the same way.
 */
static const char *
open_stalled(struct storeenv *s, int64_t now)
{
	const char *file = __atomic_load_n(&s->opening, __ATOMIC_RELAXED);
	int64_t t = __atomic_load_n(&s->opening_ms, __ATOMIC_RELAXED);

	return file != NULL && t != 0 && now - t > s->stall_ms ? file : NULL;
}

static void *
monitor(void *arg)
{
	struct storeenv *s = arg;
	const char *file;
	int64_t now, last = util_mono_ms();

	while (!monitor_wait(s, FAILCHK_MS)) {
		now = util_mono_ms();
		if (now - last > 5 * FAILCHK_MS) {
			__atomic_store_n(&s->round_ms, now, __ATOMIC_RELAXED);
			__atomic_store_n(&txns_ms, now, __ATOMIC_RELAXED);
			if (__atomic_load_n(&s->opening_ms, __ATOMIC_RELAXED))
				__atomic_store_n(&s->opening_ms, now,
				    __ATOMIC_RELAXED);
		}
		last = now;
		if ((file = open_stalled(s, now)) != NULL) {
			log_error("store: %s/%s: opening it has made no "
			    "progress for %lld ms: a damaged table, or a "
			    "process that died holding one of Berkeley DB's "
			    "mutexes, can make that wait for ever; exiting.  "
			    "If it happens again, stop every process that "
			    "uses %s, check the file with db_verify(1), then "
			    "restore the directory from a backup, or move it "
			    "aside to start afresh (see orderflow(7), STATE)",
			    s->dir, file, (long long)s->stall_ms, s->dir);
			_exit(1);
		}
		/* The open's own watch, above, says more. */
		if (__atomic_load_n(&s->opening_ms, __ATOMIC_RELAXED) != 0)
			continue;
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
watchdog_start(struct storeenv *s)
{
	int ret;

	if ((ret = util_cond_init_monotonic(&s->cv)) != 0)
		return ret;
	if ((ret = pthread_mutex_init(&s->mu, NULL)) != 0) {
		pthread_cond_destroy(&s->cv);
		return ret;
	}
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
watchdog_stop(struct storeenv *s)
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
storeenv_open(struct storeenv **ep, const char *dir, unsigned flags)
{
	struct storeenv *s;
	int ret;

	*ep = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return ENOMEM;
	if ((s->dir = strdup(dir)) == NULL) {
		free(s);
		return ENOMEM;
	}
	if ((ret = env_open(s, dir, flags)) != 0) {
		free(s->dir);
		free(s);
		return ret;
	}
	*ep = s;
	return 0;
}

int
storeenv_close(struct storeenv *s)
{
	int ret;

	if (s == NULL)
		return 0;
	watchdog_stop(s);
	ret = s->env->close(s->env, 0);
	free(s->dir);
	free(s);
	return ret;
}

DB_ENV *
storeenv_db(struct storeenv *s)
{
	return s->env;
}

int
storeenv_watch(struct storeenv *s)
{
	return watchdog_start(s);
}

void
storeenv_unwatch(struct storeenv *s)
{
	watchdog_stop(s);
}

void
storeenv_opening(struct storeenv *s, const char *file)
{
	__atomic_store_n(&s->opening, file, __ATOMIC_RELAXED);
	__atomic_store_n(&s->opening_ms, file != NULL ? util_mono_ms() : 0,
	    __ATOMIC_RELAXED);
}

const char *
storeenv_opening_file(struct storeenv *s)
{
	return __atomic_load_n(&s->opening, __ATOMIC_RELAXED);
}

int
storeenv_checkpoint(struct storeenv *s)
{
	return s->env->txn_checkpoint(s->env, 0, 0, 0);
}

int
storeenv_flush(struct storeenv *s)
{
	return s->env->log_flush(s->env, NULL);
}

int
storeenv_failchk(struct storeenv *s, int64_t every_ms)
{
	return failchk(s, every_ms);
}

int
storeenv_txn_begin(struct storeenv *s, DB_TXN **tp)
{
	int ret;

	*tp = NULL;
	if (__atomic_load_n(&s->broken, __ATOMIC_RELAXED))
		return DB_RUNRECOVERY;
	txn_count(1);
	if ((ret = s->env->txn_begin(s->env, NULL, tp, 0)) != 0) {
		*tp = NULL;
		txn_count(-1);
	}
	return ret;
}

int
storeenv_txn_commit(DB_TXN *t)
{
	int ret;

	ret = t->commit(t, 0);
	txn_count(-1);
	return ret;
}

int
storeenv_txn_abort(DB_TXN *t)
{
	int ret;

	ret = t->abort(t);
	txn_count(-1);
	return ret;
}
