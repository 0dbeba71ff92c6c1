/*
 * util.h - small helpers every command needs: range-checked numbers,
 * durations and times as orderflow(7) writes them, clocks, memory that must
 * be had, the check of standard output before exiting, the signals that
 * stop a command, bytes as JSON text, and numbers as big-endian bytes.
 */
#ifndef OF_UTIL_H
#define OF_UTIL_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/*
 * strtonum(3) as on OpenBSD: a decimal integer in [min, max].  On failure
 * returns 0 and sets *errstr to "invalid", "too small" or "too large".
 */
long long	 util_strtonum(const char *s, long long min, long long max,
		    const char **errstr);

/*
 * A duration: an integer followed by ms, s, m, h or d ("250ms", "5s", "7d").
 * Returns 0 and stores milliseconds, or -1 with *errstr set.
 */
int		 util_duration(const char *s, int64_t *ms, const char **errstr);

/*
 * A point in time: RFC 3339 ("2026-11-26T10:00:00Z", offsets allowed) or a
 * duration meaning that long before now.  Stores epoch milliseconds.
 */
int		 util_time(const char *s, int64_t *epoch_ms, const char **errstr);

/* Epoch milliseconds parsed from RFC 3339; -1 on error. */
int64_t		 util_rfc3339_parse(const char *s);

/* RFC 3339 in UTC with milliseconds: "2026-11-26T10:00:00.123Z" (25 bytes). */
#define UTIL_RFC3339_LEN	24	/* without the NUL */
void		 util_rfc3339(int64_t epoch_ms, char *buf, size_t len);

/*
 * mkdir -p: makes dir and its missing parents with mode (parents too).
 * Returns 0, or -1 with errno set.
 */
int		 util_mkdir_p(const char *dir, unsigned int mode);

/*
 * An exclusive flock(2) on path (created 0644 when missing), taken without
 * waiting and held until the returned descriptor is closed or the process
 * ends, however it ends.  Returns the descriptor, or -1 with errno set:
 * EWOULDBLOCK when another process holds the lock, ELOOP when path is a
 * symbolic link (never followed).  The file is never to be removed: two
 * processes could then lock two different files.
 */
int		 util_lock(const char *path);

/*
 * v in decimal into buf, NUL-terminated; returns its length.  What
 * snprintf("%" PRId64) writes, at a tenth of its cost: integers in every
 * event and receipt go through it.
 */
#define UTIL_I64_LEN	20	/* "-9223372036854775808", without the NUL */
size_t		 util_i64toa(int64_t v, char buf[UTIL_I64_LEN + 1]);

/* Numbers as 4 or 8 bytes, big-endian (keys that sort as numbers). */
void		 util_put_be32(unsigned char *p, uint32_t v);
uint32_t	 util_get_be32(const unsigned char *p);
void		 util_put_be64(unsigned char *p, uint64_t v);
uint64_t	 util_get_be64(const unsigned char *p);

int64_t		 util_now_ms(void);		/* wall clock */
int64_t		 util_mono_ms(void);		/* monotonic clock, for deadlines */
void		 util_sleep_ms(int64_t);	/* EINTR ends it early */
/* The time ms from now on clock, for pthread_cond_timedwait(3). */
struct timespec	 util_time_in(clockid_t clock, int64_t ms);
/*
 * pthread_cond_init(3) of a condition whose timed waits read the
 * monotonic clock (util_time_in(CLOCK_MONOTONIC, ...)), so that a change
 * of the wall clock moves no deadline.  0, or an errno value.
 */
int		 util_cond_init_monotonic(pthread_cond_t *);

/*
 * malloc(3), calloc(3) and strdup(3) for memory a command cannot go on
 * without: when there is none they log "out of memory" and exit
 * OF_EXIT_FAIL, so they never return NULL.  util_xcalloc() of n == 0
 * elements returns a pointer of its own (to one zeroed element) as if n
 * were 1, never NULL, so that an empty array needs no special case;
 * util_xmalloc() of 0 bytes likewise returns a pointer of its own (to one
 * byte).  util_xmalloc() leaves the memory as malloc(3) does, for a
 * buffer filled before it is read: zeroing a large one is wasted work.
 */
void		*util_xmalloc(size_t size);
void		*util_xcalloc(size_t n, size_t size);
char		*util_xstrdup(const char *s);

/*
 * Flushes standard output and checks that everything written to it since
 * the start got there: a write that failed earlier (a full disk, a closed
 * pipe) shows only in ferror(3), and exit(3) would lose it.  Returns 0,
 * or -1 after logging "stdout: " and the reason.  What the failure does
 * to the exit status is the caller's rule.
 */
int		 util_stdout_flush(void);

/*
 * The signals that ask a command to stop.  util_signals_catch() installs
 * one handler for each signal of sigs (a list ended by 0), with sa_flags
 * flags (SA_RESTART, or 0 so that a signal interrupts a blocking read).
 * A signal ignored when this is called stays ignored: a shell without job
 * control starts background jobs with SIGINT ignored, and ^C typed at the
 * shell must not stop them.  Unless old is NULL it receives, one element
 * per signal of sigs, the actions before, for sigaction(2) to restore.
 *
 * The handler only records the signal, in a volatile sig_atomic_t that the
 * command polls where it waits: util_signal_caught() returns the last
 * signal caught (0 when none), util_signal_count() how many were caught,
 * counting up to 2 (a second one asks to give up waiting).
 */
void		 util_signals_catch(const int *sigs, int flags,
		    struct sigaction *old);
int		 util_signal_caught(void);
int		 util_signal_count(void);

/*
 * len bytes at p as the text of a JSON string: a NUL-terminated copy when
 * they are well-formed UTF-8 without NUL bytes (*base64 set to 0), else
 * their base64 encoding (RFC 4648, padded; *base64 set to 1).  Returns a
 * string to free(3), or NULL when out of memory (or len beyond what base64
 * can encode here, INT_MAX / 4 * 3 bytes).  Bytes that are text print as
 * themselves; any other key, value or header still survives a JSON line.
 */
char		*util_json_bytes(const void *p, size_t len, int *base64);

/*
 * Appends n bytes at p to a growing reply: *buf (NULL at first) holds
 * *len bytes and a NUL in *cap, grown by doubling from first.  0; or -1,
 * nothing appended, when it would pass max bytes; or -2 when out of
 * memory.  For libcurl's write callbacks (httpq.c, registry.c).
 */
int		 util_buf_append(char **buf, size_t *len, size_t *cap,
		    const void *p, size_t n, size_t first, size_t max);

/*
 * strlcpy(3): src into dst of size bytes, cut to fit and NUL-terminated
 * (size > 0); returns strlen(src), so a result >= size says it was cut.
 * For copies on a record's path, where snprintf(3)'s "%s" costs ten
 * times as much.
 */
size_t		 util_strlcpy(char *dst, const char *src, size_t size);

/*
 * The index of name in names[0..n), looked for from names[from] on and
 * round to names[from - 1]; -1 if it is not there.  A reader of names
 * that mostly come in names' order passes the one after the last found
 * and finds each at the first compare; looking from 0 each time, it
 * compared about half the table for each.  Inline: it runs for each
 * member and header of every record, where a call cost pay-process 330
 * instructions a payment.
 */
static inline int
util_name_index(const char *const *names, size_t n, size_t from,
    const char *name)
{
	size_t i, k;

	/* The first byte first: most names differ there. */
	for (i = 0, k = from < n ? from : 0; i < n; i++, k = k + 1 < n ?
	    k + 1 : 0)
		if (names[k][0] == name[0] && strcmp(names[k], name) == 0)
			return (int)k;
	return -1;
}

#endif
