/*
 * util_test.c - unit tests for common/util.c: numbers, durations, times,
 * the lock, memory, standard output, signals, bytes as JSON text.
 *
 * Usage: util_test [NAME]; without NAME it lists the tests.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "exitcode.h"
#include "log.h"
#include "util.h"
#include "unit.h"

/* util_i64toa() against snprintf() over the edges and a sweep. */
static void
test_i64toa(void)
{
	static const int64_t edge[] = { 0, 1, -1, 9, 10, -10, 99, 100,
	    1250, -1250, 100000000, INT32_MAX, INT32_MIN, INT64_MAX,
	    INT64_MIN, INT64_MAX - 1, INT64_MIN + 1 };
	char want[32], got[UTIL_I64_LEN + 1];
	size_t i, n;
	int64_t v;

	for (i = 0; i < sizeof(edge) / sizeof(edge[0]); i++) {
		snprintf(want, sizeof(want), "%" PRId64, edge[i]);
		n = util_i64toa(edge[i], got);
		CHECK(n == strlen(want) && strcmp(got, want) == 0);
	}
	for (v = -100000; v <= 100000; v += 7) {
		snprintf(want, sizeof(want), "%" PRId64, v * 1000003);
		n = util_i64toa(v * 1000003, got);
		CHECK(n == strlen(want) && strcmp(got, want) == 0);
	}
}

static void
test_strtonum(void)
{
	const char *e;

	CHECK(util_strtonum("42", 1, 100, &e) == 42 && e == NULL);
	util_strtonum("0", 1, 100, &e);
	CHECK(e != NULL && strcmp(e, "too small") == 0);
	util_strtonum("101", 1, 100, &e);
	CHECK(e != NULL && strcmp(e, "too large") == 0);
	util_strtonum("99999999999999999999999", 1, 100, &e);
	CHECK(e != NULL && strcmp(e, "too large") == 0);
	util_strtonum("12x", 1, 100, &e);
	CHECK(e != NULL && strcmp(e, "invalid") == 0);
	util_strtonum("", 1, 100, &e);
	CHECK(e != NULL);
	util_strtonum(" 5", 1, 100, &e);
	CHECK(e != NULL);
}

static void
test_duration(void)
{
	int64_t ms;
	const char *e;

	CHECK(util_duration("250ms", &ms, &e) == 0 && ms == 250);
	CHECK(util_duration("5s", &ms, &e) == 0 && ms == 5000);
	CHECK(util_duration("2m", &ms, &e) == 0 && ms == 120000);
	CHECK(util_duration("1h", &ms, &e) == 0 && ms == 3600000);
	CHECK(util_duration("7d", &ms, &e) == 0 && ms == 604800000LL);
	CHECK(util_duration("0s", &ms, &e) == 0 && ms == 0);
	CHECK(util_duration("5", &ms, &e) == -1 && e != NULL);
	CHECK(util_duration("s", &ms, &e) == -1);
	CHECK(util_duration("-5s", &ms, &e) == -1);
	CHECK(util_duration("5 s", &ms, &e) == -1);
	CHECK(util_duration("1.5s", &ms, &e) == -1);
	CHECK(util_duration("5w", &ms, &e) == -1);
	CHECK(util_duration("99999999999999999999d", &ms, &e) == -1);
	CHECK(util_duration("9999999999999999d", &ms, &e) == -1);
}

static void
test_rfc3339(void)
{
	char buf[40];
	int64_t t;

	CHECK(util_rfc3339_parse("1970-01-01T00:00:00Z") == 0);
	CHECK(util_rfc3339_parse("2026-11-26T10:00:00Z") == 1795687200000LL);
	CHECK(util_rfc3339_parse("2026-11-26T10:00:00.5Z") == 1795687200500LL);
	CHECK(util_rfc3339_parse("2026-11-26T11:00:00+01:00") ==
	    1795687200000LL);
	CHECK(util_rfc3339_parse("2026-11-26T09:30:00-00:30") ==
	    1795687200000LL);
	CHECK(util_rfc3339_parse("2026-11-26") == -1);
	CHECK(util_rfc3339_parse("2026-13-26T10:00:00Z") == -1);
	CHECK(util_rfc3339_parse("2026-11-26T10:00:00") == -1);
	CHECK(util_rfc3339_parse("2026-11-26T10:00:00Zjunk") == -1);
	CHECK(util_rfc3339_parse("2026-11-26t10:00:00.123456z") ==
	    1795687200123LL);
	CHECK(util_rfc3339_parse("2026-11-26 10:00:00Z") == 1795687200000LL);
	CHECK(util_rfc3339_parse("2026-11-26T10:00:00.Z") == -1);
	CHECK(util_rfc3339_parse("2026-11-26T24:00:00Z") == -1);
	CHECK(util_rfc3339_parse("2026-11-26T10:60:00Z") == -1);
	CHECK(util_rfc3339_parse("2026-11-32T10:00:00Z") == -1);
	CHECK(util_rfc3339_parse("2026-00-26T10:00:00Z") == -1);
	/* fields of exactly their digits: no sign, space or short field */
	CHECK(util_rfc3339_parse("+026-11-26T10:00:00Z") == -1);
	CHECK(util_rfc3339_parse("2026-+1-26T10:00:00Z") == -1);
	CHECK(util_rfc3339_parse("2026-11- 6T10:00:00Z") == -1);
	CHECK(util_rfc3339_parse("2026-11-26T1:00:00Z") == -1);
	CHECK(util_rfc3339_parse("2026-11-26T10:00:00+1:00") == -1);
	CHECK(util_rfc3339_parse("2026-11-26T10:00:00+01:0") == -1);
	CHECK(util_rfc3339_parse("2026-11-26T10:00:00+01:00x") == -1);
	CHECK(util_rfc3339_parse("2026-11-26T10:00:00+24:00") == -1);
	CHECK(util_rfc3339_parse("2026-11-26T10:00:00+01-00") == -1);
	CHECK(util_rfc3339_parse("2026-11-2") == -1);
	CHECK(util_rfc3339_parse("") == -1);
	util_rfc3339(1795687200123LL, buf, sizeof(buf));
	CHECK(strcmp(buf, "2026-11-26T10:00:00.123Z") == 0);
	t = util_rfc3339_parse(buf);
	CHECK(t == 1795687200123LL);
}

static void
test_time(void)
{
	int64_t t, now;
	const char *e;

	CHECK(util_time("2026-11-26T10:00:00Z", &t, &e) == 0 &&
	    t == 1795687200000LL);
	now = util_now_ms();
	CHECK(util_time("1h", &t, &e) == 0);
	CHECK(t <= now - 3600000 + 1000 && t >= now - 3600000 - 1000);
	CHECK(util_time("yesterday", &t, &e) == -1 && e != NULL);
}

/* flock(2) locks belong to the open file, so one process can test both
 * sides: a second open of the file is refused while the first is held. */
static void
test_lock(void)
{
	char dir[] = "/tmp/util_test.XXXXXX", path[64];
	int fd, fd2;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/lock", dir);
	CHECK((fd = util_lock(path)) >= 0);
	errno = 0;
	CHECK(util_lock(path) == -1 && errno == EWOULDBLOCK);
	close(fd);
	CHECK((fd2 = util_lock(path)) >= 0);
	close(fd2);
	CHECK(util_lock("/nonexistent/dir/lock") == -1 && errno == ENOENT);
	unlink(path);
	rmdir(dir);
}

/* The messages of a child that fails on purpose are not the test's. */
static void
quiet(void)
{
	if (freopen("/dev/null", "w", stderr) == NULL)
		_exit(3);
}

static void
huge_calloc(void)
{
	quiet();
	util_xcalloc(SIZE_MAX / 2, 4);
}

static void
huge_malloc(void)
{
	quiet();
	util_xmalloc(SIZE_MAX - 4096);
}

/* Unbuffered: the write fails at once, and the flush finds nothing. */
static void
full_stdout(void)
{
	quiet();
	if (freopen("/dev/full", "w", stdout) == NULL ||
	    setvbuf(stdout, NULL, _IONBF, 0) != 0)
		_exit(4);
	printf("x");
	_exit(util_stdout_flush() == -1 ? 0 : 1);
}

/* Buffered: the write fails at the flush. */
static void
full_stdout_at_flush(void)
{
	quiet();
	if (freopen("/dev/full", "w", stdout) == NULL)
		_exit(4);
	printf("x");
	_exit(util_stdout_flush() == -1 ? 0 : 1);
}

/* Memory: never NULL, zeroed, n == 0 a pointer of its own; none: exit 1. */
static void
test_alloc(void)
{
	unsigned char *p, *q;
	char *s;
	size_t i;

	p = util_xcalloc(16, 4);
	for (i = 0; i < 64 && p[i] == 0; i++)
		;
	CHECK(i == 64);
	q = util_xcalloc(0, 8);
	CHECK(q != NULL && q != p);
	for (i = 0; i < 8 && q[i] == 0; i++)
		;
	CHECK(i == 8);
	free(p);
	free(q);
	s = util_xstrdup("order-created");
	CHECK(strcmp(s, "order-created") == 0);
	free(s);
	s = util_xstrdup("");
	CHECK(s != NULL && *s == '\0');
	free(s);
	CHECK(unit_in_child(huge_calloc) == OF_EXIT_FAIL);
}

/* Usable to its last byte, 0 bytes a pointer of its own; none: exit 1. */
static void
test_xmalloc(void)
{
	unsigned char *p, *q;
	size_t i;

	p = util_xmalloc(1 << 20);
	memset(p, 0xa5, 1 << 20);
	for (i = 0; i < 1 << 20 && p[i] == 0xa5; i++)
		;
	CHECK(i == 1 << 20);
	q = util_xmalloc(0);
	CHECK(q != NULL && q != p);
	*q = 1;
	free(p);
	free(q);
	CHECK(unit_in_child(huge_malloc) == OF_EXIT_FAIL);
}

/* A write that failed, earlier or at the flush, is reported. */
static void
test_stdout(void)
{
	CHECK(util_stdout_flush() == 0);
	CHECK(unit_in_child(full_stdout) == 0);
	CHECK(unit_in_child(full_stdout_at_flush) == 0);
}

static const int stop_sigs[] = { SIGINT, SIGTERM, SIGHUP, 0 };

/*
 * A signal ignored before stays ignored and the others are caught and
 * counted up to 2; old holds what was there before.
 */
static void
signals_child(void)
{
	struct sigaction old[3], now;

	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_DFL);
	util_signals_catch(stop_sigs, SA_RESTART, old);
	if (old[0].sa_handler != SIG_IGN || old[2].sa_handler != SIG_DFL)
		_exit(10);
	if (sigaction(SIGINT, NULL, &now) == -1 || now.sa_handler != SIG_IGN)
		_exit(11);
	if (sigaction(SIGTERM, NULL, &now) == -1 ||
	    now.sa_handler == SIG_DFL || now.sa_handler == SIG_IGN ||
	    !(now.sa_flags & SA_RESTART))
		_exit(12);
	if (util_signal_caught() != 0 || util_signal_count() != 0)
		_exit(13);
	raise(SIGINT);		/* ignored: not seen */
	if (util_signal_caught() != 0 || util_signal_count() != 0)
		_exit(14);
	raise(SIGTERM);
	if (util_signal_caught() != SIGTERM || util_signal_count() != 1)
		_exit(15);
	raise(SIGHUP);
	raise(SIGTERM);
	if (util_signal_caught() != SIGTERM || util_signal_count() != 2)
		_exit(16);
	/* Restored, SIGHUP kills again. */
	sigaction(SIGHUP, &old[2], NULL);
	raise(SIGHUP);
	_exit(17);
}

static void
test_signals(void)
{
	CHECK(unit_in_child(signals_child) == 128 + SIGHUP);
}

/* One case of util_json_bytes(): what comes out and whether as base64. */
static void
json_bytes_is(const void *p, size_t len, const char *want, int want_b64)
{
	char *s;
	int b64 = -1;

	s = util_json_bytes(p, len, &b64);
	CHECK(s != NULL && strcmp(s, want) == 0 && b64 == want_b64);
	if (s != NULL && (strcmp(s, want) != 0 || b64 != want_b64))
		fprintf(stderr, "got \"%s\" (base64 %d), want \"%s\"\n",
		    s, b64, want);
	free(s);
}

static void
test_jsonbytes(void)
{
	json_bytes_is("", 0, "", 0);
	json_bytes_is(NULL, 0, "", 0);
	json_bytes_is("order-1", 7, "order-1", 0);
	json_bytes_is("caf\xc3\xa9 \"q\"", 9, "caf\xc3\xa9 \"q\"", 0);
	/* A NUL inside, bad UTF-8, a lone continuation byte: base64. */
	json_bytes_is("a\0b", 3, "YQBi", 1);
	json_bytes_is("\xff", 1, "/w==", 1);
	json_bytes_is("\xc3(", 2, "wyg=", 1);
	json_bytes_is("\x80\x81\x82", 3, "gIGC", 1);
}

/* util_strlcpy() against snprintf()'s "%s", cut or whole. */
static void
test_strlcpy(void)
{
	static const char *const src[] = { "", "a", "0123456", "01234567",
	    "012345678",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" };
	char want[16], got[16];
	size_t i, size;

	for (i = 0; i < sizeof(src) / sizeof(src[0]); i++)
		for (size = 1; size <= 9; size++) {
			memset(got, 'x', sizeof(got));
			snprintf(want, size, "%s", src[i]);
			CHECK(util_strlcpy(got, src[i], size) ==
			    strlen(src[i]));
			CHECK(strcmp(got, want) == 0);
			/* Nothing written past size bytes. */
			CHECK(got[size] == 'x');
		}
	memset(got, 'x', sizeof(got));
	CHECK(util_strlcpy(got, "abc", 0) == 3 && got[0] == 'x');
}

/* util_name_index() from every start, past the end and round. */
static void
test_name_index(void)
{
	static const char *const names[] = { "ce_id", "ce_idx", "ce_type",
	    "c", "traceparent" };
	size_t n = sizeof(names) / sizeof(names[0]), from, k;

	for (from = 0; from <= n + 1; from++) {
		for (k = 0; k < n; k++)
			CHECK(util_name_index(names, n, from, names[k]) ==
			    (int)k);
		CHECK(util_name_index(names, n, from, "ce_i") == -1);
		CHECK(util_name_index(names, n, from, "ce_idxx") == -1);
		CHECK(util_name_index(names, n, from, "") == -1);
		CHECK(util_name_index(names, n, from, "C") == -1);
	}
	CHECK(util_name_index(names, 0, 0, "c") == -1);
	CHECK(util_name_index(names, 3, 1, "c") == -1);	/* past n */
}

/*
 * A condition from util_cond_init_monotonic() waits until a deadline on
 * the monotonic clock: on the wall clock's default, a deadline taken from
 * the monotonic clock (the time since boot) lies decades in the past, and
 * the wait would end at once.
 */
static void
test_cond(void)
{
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv;
	struct timespec ts;
	int64_t t;
	int e = 0;

	REQUIRE(util_cond_init_monotonic(&cv) == 0);
	t = util_mono_ms();
	ts = util_time_in(CLOCK_MONOTONIC, 200);
	pthread_mutex_lock(&mu);
	while (e != ETIMEDOUT)
		e = pthread_cond_timedwait(&cv, &mu, &ts);
	pthread_mutex_unlock(&mu);
	CHECK(util_mono_ms() - t >= 190);
	pthread_cond_destroy(&cv);
}

static const struct unit_test tests[] = {
	{ "alloc", test_alloc },
	{ "xmalloc", test_xmalloc },
	{ "stdout", test_stdout },
	{ "signals", test_signals },
	{ "jsonbytes", test_jsonbytes },
	{ "strtonum", test_strtonum },
	{ "duration", test_duration },
	{ "rfc3339", test_rfc3339 },
	{ "time", test_time },
	{ "cond", test_cond },
	{ "lock", test_lock },
	{ "i64toa", test_i64toa },
	{ "strlcpy", test_strlcpy },
	{ "name_index", test_name_index },
};

int
main(int argc, char *argv[])
{
	log_init("util_test");
	return unit_main("util_test", tests, argc, argv);
}
