/*
 * util_test.c - unit tests for common/util.c: numbers, durations, times,
 * the lock.
 *
 * Usage: util_test [NAME]; without NAME it lists the tests.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static int failures;

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);	\
		failures++;						\
	}								\
} while (0)

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

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{ "strtonum", test_strtonum },
	{ "duration", test_duration },
	{ "rfc3339", test_rfc3339 },
	{ "time", test_time },
	{ "lock", test_lock },
	{ "i64toa", test_i64toa },
};

int
main(int argc, char *argv[])
{
	size_t i;

	for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (argc < 2) {
			puts(tests[i].name);
			continue;
		}
		if (strcmp(argv[1], tests[i].name) == 0) {
			tests[i].fn();
			return failures != 0;
		}
	}
	if (argc < 2)
		return 0;
	fprintf(stderr, "util_test: %s: no such test\n", argv[1]);
	return 2;
}
