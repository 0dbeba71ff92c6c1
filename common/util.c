/*
 * util.c - numbers, durations, times, clocks, memory, standard output,
 * signals and bytes as JSON text.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "exitcode.h"
#include "jsonl.h"
#include "log.h"
#include "util.h"

static volatile sig_atomic_t caught_sig;	/* the last signal caught */
static volatile sig_atomic_t caught_n;		/* how many, up to 2 */

long long
util_strtonum(const char *s, long long min, long long max, const char **errstr)
{
	long long v;
	char *end;

	*errstr = NULL;
	if (s == NULL || *s == '\0' || isspace((unsigned char)*s) || min > max) {
		*errstr = "invalid";
		return 0;
	}
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end != '\0') {
		*errstr = "invalid";
		return 0;
	}
	if ((v == LLONG_MIN && errno == ERANGE) || v < min) {
		*errstr = "too small";
		return 0;
	}
	if ((v == LLONG_MAX && errno == ERANGE) || v > max) {
		*errstr = "too large";
		return 0;
	}
	return v;
}

int
util_duration(const char *s, int64_t *ms, const char **errstr)
{
	static const struct { const char *unit; int64_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
		{ "d", 86400000 },
	};
	char num[24];
	size_t i, n;

	*errstr = NULL;
	for (n = 0; s[n] != '\0' && isdigit((unsigned char)s[n]); n++)
		;
	if (n == 0 || n >= sizeof(num)) {
		*errstr = "invalid duration (e.g. 250ms, 5s, 2m, 1h, 7d)";
		return -1;
	}
	memcpy(num, s, n);
	num[n] = '\0';
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		long long v;
		const char *e;

		if (strcmp(s + n, units[i].unit) != 0)
			continue;
		v = util_strtonum(num, 0, INT64_MAX / units[i].ms, &e);
		if (e != NULL) {
			*errstr = "duration out of range";
			return -1;
		}
		*ms = v * units[i].ms;
		return 0;
	}
	*errstr = "invalid duration (e.g. 250ms, 5s, 2m, 1h, 7d)";
	return -1;
}

static int64_t
days_from_civil(int y, int m, int d)
{
	int era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (int64_t)era * 146097 + doe - 719468;
}

/*
 * The number that exactly n decimal digits at p write, or -1: no sign,
 * space or shorter field, which sscanf(3)'s %2d would take (and which
 * cost a tenth of a consumer's instructions).
 */
static int
fixed_digits(const char *p, int n)
{
	int v = 0;

	for (; n > 0; n--, p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
	}
	return v;
}

int64_t
util_rfc3339_parse(const char *s)
{
	int y, mo, d, h, mi, sec, oh, om, digits;
	int64_t ms = 0, t, off;
	const char *p;

	/* "YYYY-MM-DD" then T, t or a space, then "hh:mm:ss". */
	if (strnlen(s, 19) < 19 || s[4] != '-' || s[7] != '-' ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' ||
	    s[16] != ':')
		return -1;
	y = fixed_digits(s, 4);
	mo = fixed_digits(s + 5, 2);
	d = fixed_digits(s + 8, 2);
	h = fixed_digits(s + 11, 2);
	mi = fixed_digits(s + 14, 2);
	sec = fixed_digits(s + 17, 2);
	if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 ||
	    h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
		return -1;
	p = s + 19;
	if (*p == '.') {
		for (p++, digits = 0; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*p - '0');
		if (digits == 0)
			return -1;
		for (; digits < 3; digits++)
			ms *= 10;
	}
	t = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) *
	    1000 + ms;
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
		return t;
	if ((*p != '+' && *p != '-') || strnlen(p, 7) != 6 || p[3] != ':')
		return -1;
	oh = fixed_digits(p + 1, 2);
	om = fixed_digits(p + 4, 2);
	if (oh < 0 || oh > 23 || om < 0 || om > 59)
		return -1;
	off = ((int64_t)oh * 3600 + om * 60) * 1000;
	return *p == '+' ? t - off : t + off;
}

int
util_time(const char *s, int64_t *epoch_ms, const char **errstr)
{
	int64_t t, ago;

	*errstr = NULL;
	if ((t = util_rfc3339_parse(s)) >= 0) {
		*epoch_ms = t;
		return 0;
	}
	if (util_duration(s, &ago, errstr) == 0) {
		*epoch_ms = util_now_ms() - ago;
		return 0;
	}
	*errstr = "invalid time (RFC 3339, or a duration meaning that long ago)";
	return -1;
}

static void
rfc3339_slow(int64_t epoch_ms, char *buf, size_t len)
{
	time_t sec = (time_t)(epoch_ms / 1000);
	struct tm tm;

	gmtime_r(&sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (int)(epoch_ms % 1000));
}

/*
 * Every event is stamped, so each thread keeps the text of the last
 * second it formatted and writes only the milliseconds after it: the
 * same text as rfc3339_slow(), without a gmtime_r() and a snprintf() per
 * call.
 */
void
util_rfc3339(int64_t epoch_ms, char *buf, size_t len)
{
	static __thread int64_t cached_sec = -1;
	static __thread char cached[32];	/* "YYYY-MM-DDTHH:MM:SS" */
	int64_t sec = epoch_ms / 1000;
	int ms = (int)(epoch_ms % 1000);
	time_t t;
	struct tm tm;

	if (epoch_ms < 0 || len < UTIL_RFC3339_LEN + 1) {
		rfc3339_slow(epoch_ms, buf, len);
		return;
	}
	if (sec != cached_sec) {
		t = (time_t)sec;
		gmtime_r(&t, &tm);
		if (snprintf(cached, sizeof(cached),
		    "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
		    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		    tm.tm_sec) != UTIL_RFC3339_LEN - 5) {
			/* A year past 9999. */
			cached_sec = -1;
			rfc3339_slow(epoch_ms, buf, len);
			return;
		}
		cached_sec = sec;
	}
	memcpy(buf, cached, UTIL_RFC3339_LEN - 5);
	buf += UTIL_RFC3339_LEN - 5;
	buf[0] = '.';
	buf[1] = (char)('0' + ms / 100);
	buf[2] = (char)('0' + ms / 10 % 10);
	buf[3] = (char)('0' + ms % 10);
	buf[4] = 'Z';
	buf[5] = '\0';
}

void
util_put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

uint32_t
util_get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

void
util_put_be64(unsigned char *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = v & 0xff;
}

uint64_t
util_get_be64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int64_t
util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec
util_time_in(clockid_t clock, int64_t ms)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

int
util_cond_init_monotonic(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	int e;

	if ((e = pthread_condattr_init(&ca)) != 0)
		return e;
	if ((e = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) == 0)
		e = pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
	return e;
}

void
util_sleep_ms(int64_t ms)
{
	struct timespec ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	nanosleep(&ts, NULL);
}

int64_t
util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
util_mkdir_p(const char *dir, unsigned int mode)
{
	char *path, *p;
	int rc = 0;

	if ((path = strdup(dir)) == NULL)
		return -1;
	for (p = path + 1; rc == 0; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		if (p[-1] != '/') {
			char c = *p;

			*p = '\0';
			if (mkdir(path, mode) == -1 && errno != EEXIST)
				rc = -1;
			*p = c;
		}
		if (*p == '\0')
			break;
	}
	free(path);
	return rc;
}

int
util_lock(const char *path)
{
	int fd, e;

	if ((fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
	    0644)) == -1)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

size_t
util_i64toa(int64_t v, char buf[UTIL_I64_LEN + 1])
{
	char tmp[UTIL_I64_LEN];
	uint64_t u;
	size_t n = 0, len = 0;

	/* The magnitude as unsigned: -INT64_MIN does not fit an int64_t. */
	u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		buf[len++] = '-';
	while (n > 0)
		buf[len++] = tmp[--n];
	buf[len] = '\0';
	return len;
}

void *
util_xmalloc(size_t size)
{
	void *p;

	if ((p = malloc(size == 0 ? 1 : size)) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	return p;
}

void *
util_xcalloc(size_t n, size_t size)
{
	void *p;

	if ((p = calloc(n == 0 ? 1 : n, size)) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	return p;
}

char *
util_xstrdup(const char *s)
{
	char *p;

	if ((p = strdup(s)) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	return p;
}

int
util_stdout_flush(void)
{
	errno = 0;
	if (fflush(stdout) == 0 && !ferror(stdout))
		return 0;
	/* An earlier write failed and the flush itself had nothing to say. */
	if (errno == 0)
		errno = EIO;
	log_error("stdout: %s", strerror(errno));
	return -1;
}

static void
on_signal(int sig)
{
	caught_sig = sig;
	if (caught_n < 2)
		caught_n++;
}

void
util_signals_catch(const int *sigs, int flags, struct sigaction *old)
{
	struct sigaction sa, before;
	size_t i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	for (i = 0; sigs[i] != 0; i++) {
		/* Not a signal: SIG_DFL before, and sigaction() fails again. */
		memset(&before, 0, sizeof(before));
		sigaction(sigs[i], NULL, &before);
		if (old != NULL)
			old[i] = before;
		if (before.sa_handler != SIG_IGN)
			sigaction(sigs[i], &sa, NULL);
	}
}

int
util_signal_caught(void)
{
	return caught_sig;
}

int
util_signal_count(void)
{
	return caught_n;
}

/* Well-formed UTF-8 without NUL bytes: a JSON string can hold it as is. */
static int
is_text(const void *p, size_t len)
{
	return len == 0 || (memchr(p, '\0', len) == NULL &&
	    jsonl_utf8_check(p, len, NULL) == 0);
}

char *
util_json_bytes(const void *p, size_t len, int *base64)
{
	char *s;

	if (!(*base64 = !is_text(p, len))) {
		if ((s = malloc(len + 1)) == NULL)
			return NULL;
		if (len > 0)
			memcpy(s, p, len);
		s[len] = '\0';
		return s;
	}
	/* EVP_EncodeBlock() counts in int, its output included. */
	if (len > (size_t)INT_MAX / 4 * 3 ||
	    (s = malloc((len + 2) / 3 * 4 + 1)) == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)s, p, (int)len);
	return s;
}

int
util_buf_append(char **buf, size_t *len, size_t *cap, const void *p,
    size_t n, size_t first, size_t max)
{
	size_t c;
	char *b;

	if (n > max - *len)
		return -1;
	if (*len + n + 1 > *cap) {
		for (c = *cap == 0 ? first : *cap; c < *len + n + 1; c *= 2)
			;
		if ((b = realloc(*buf, c)) == NULL)
			return -2;
		*buf = b;
		*cap = c;
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

size_t
util_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src), m;

	if (size > 0) {
		m = n < size ? n : size - 1;
		memcpy(dst, src, m);
		dst[m] = '\0';
	}
	return n;
}
