/*
 * util.h - small helpers every command needs: range-checked numbers,
 * durations and times as CONTRACT writes them, clocks.
 */
#ifndef OF_UTIL_H
#define OF_UTIL_H

#include <stddef.h>
#include <stdint.h>
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
 * EWOULDBLOCK when another process holds the lock.  The file is never to
 * be removed: two processes could then lock two different files.
 */
int		 util_lock(const char *path);

/*
 * v in decimal into buf, NUL-terminated; returns its length.  What
 * snprintf("%" PRId64) writes, at a tenth of its cost: integers in every
 * event and receipt go through it.
 */
#define UTIL_I64_LEN	20	/* "-9223372036854775808", without the NUL */
size_t		 util_i64toa(int64_t v, char buf[UTIL_I64_LEN + 1]);

int64_t		 util_now_ms(void);		/* wall clock */
int64_t		 util_mono_ms(void);		/* monotonic clock, for deadlines */
void		 util_sleep_ms(int64_t);	/* EINTR ends it early */
/* The time ms from now on clock, for pthread_cond_timedwait(3). */
struct timespec	 util_time_in(clockid_t clock, int64_t ms);

#endif
