/*
 * jsonl_test.c - unit tests for common/jsonl.c, the JSON-lines reader:
 * framing, numbering, limits and hostile bytes.
 *
 * Usage: jsonl_test [NAME | all]; without NAME it lists the tests.  A
 * failed check prints its file:line and what it expected on stderr; the
 * exit status is 1 if any failed.
 */
#include <sys/resource.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonl.h"
#include "unit.h"

/* Mentions the caller's line, so a failure inside a helper is placed. */
#define EXPECT_LINE(r, no, text) \
	expect_line(__LINE__, (r), (no), (text), sizeof(text) - 1)
#define EXPECT_REJECT(r, no, msg) \
	expect_reject(__LINE__, (r), (no), (msg))
#define EXPECT_EOF(r)			expect_eof(__LINE__, (r))

static void __attribute__((format(printf, 2, 3)))
fail(int where, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: ", __FILE__, where);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	failures++;
}

static const char *
status_name(int rc)
{
	switch (rc) {
	case JSONL_LINE:
		return "a line";
	case JSONL_EOF:
		return "EOF";
	case JSONL_REJECT:
		return "a rejected line";
	case JSONL_ERROR:
		return "a read error";
	}
	return "an unknown status";
}

static void
expect_line(int where, struct jsonl *r, long no, const char *text, size_t tlen)
{
	const char *line = NULL;
	size_t len = 0;
	int rc;

	if ((rc = jsonl_next(r, &line, &len)) != JSONL_LINE) {
		fail(where, "expected a line, got %s (%s)", status_name(rc),
		    jsonl_error(r));
		return;
	}
	if (len != tlen || memcmp(line, text, tlen) != 0 || line[len] != '\0')
		fail(where, "expected line \"%s\", got \"%s\"", text, line);
	if (jsonl_lineno(r) != no)
		fail(where, "expected line number %ld, got %ld", no,
		    jsonl_lineno(r));
}

static void
expect_reject(int where, struct jsonl *r, long no, const char *msg)
{
	const char *line;
	size_t len;
	int rc;

	if ((rc = jsonl_next(r, &line, &len)) != JSONL_REJECT) {
		fail(where, "expected a rejected line, got %s",
		    status_name(rc));
		return;
	}
	if (strstr(jsonl_error(r), msg) == NULL)
		fail(where, "expected an error with \"%s\", got \"%s\"", msg,
		    jsonl_error(r));
	if (jsonl_lineno(r) != no)
		fail(where, "expected line number %ld, got %ld", no,
		    jsonl_lineno(r));
}

static void
expect_eof(int where, struct jsonl *r)
{
	const char *line;
	size_t len;
	int rc;

	if ((rc = jsonl_next(r, &line, &len)) != JSONL_EOF)
		fail(where, "expected EOF, got %s (%s)", status_name(rc),
		    jsonl_error(r));
}

static FILE *bytes_fp;	/* the file of the reader open_bytes() made */

/* A reader over len bytes of data, through a real file; done() ends it. */
static struct jsonl *
open_bytes(const void *data, size_t len, size_t maxlen)
{
	struct jsonl *r;

	if ((bytes_fp = tmpfile()) == NULL ||
	    fwrite(data, 1, len, bytes_fp) != len ||
	    fseek(bytes_fp, 0, SEEK_SET) != 0) {
		perror("tmpfile");
		exit(1);
	}
	if ((r = jsonl_open(bytes_fp, "test.jsonl", maxlen)) == NULL) {
		perror("jsonl_open");
		exit(1);
	}
	return r;
}

#define OPEN_STR(s, maxlen)	open_bytes((s), sizeof(s) - 1, (maxlen))

static void
done(struct jsonl *r)
{
	jsonl_close(r);
	fclose(bytes_fp);
	bytes_fp = NULL;
}

/* Closes a reader over a file the test opened itself. */
static void
close_fp(struct jsonl *r, FILE *fp)
{
	jsonl_close(r);
	fclose(fp);
}

static void
test_lines(void)
{
	struct jsonl *r;

	r = OPEN_STR("{\"a\":1}\n{\"b\":2}\n[]\n", 0);
	CHECK(jsonl_lineno(r) == 0);
	CHECK(strcmp(jsonl_error(r), "") == 0);
	EXPECT_LINE(r, 1, "{\"a\":1}");
	EXPECT_LINE(r, 2, "{\"b\":2}");
	EXPECT_LINE(r, 3, "[]");
	EXPECT_EOF(r);
	EXPECT_EOF(r);
	CHECK(jsonl_lineno(r) == 3);
	done(r);

	r = OPEN_STR("", 0);
	EXPECT_EOF(r);
	CHECK(jsonl_lineno(r) == 0);
	done(r);
}

static void
test_empty(void)
{
	struct jsonl *r;
	static const char in[] =
	    "\n\n  \t \n{}\n\r\n \r\n[1]\n\n \t\r \r\n\n";

	r = OPEN_STR(in, 0);
	EXPECT_LINE(r, 4, "{}");
	EXPECT_LINE(r, 7, "[1]");
	EXPECT_EOF(r);
	CHECK(jsonl_lineno(r) == 10);
	done(r);

	/* Only blank lines: EOF at once; a long blank line is no error. */
	r = OPEN_STR("\n \n\t\t\n", 0);
	EXPECT_EOF(r);
	done(r);
	r = OPEN_STR("                                \n{}", 8);
	EXPECT_LINE(r, 2, "{}");
	EXPECT_EOF(r);
	done(r);
}

static void
test_nofinalnl(void)
{
	struct jsonl *r;

	r = OPEN_STR("{}\n[1]", 0);
	EXPECT_LINE(r, 1, "{}");
	EXPECT_LINE(r, 2, "[1]");
	EXPECT_EOF(r);
	done(r);

	r = OPEN_STR("x", 0);
	EXPECT_LINE(r, 1, "x");
	EXPECT_EOF(r);
	done(r);

	r = OPEN_STR("{}\n\n   ", 0);
	EXPECT_LINE(r, 1, "{}");
	EXPECT_EOF(r);
	done(r);

	r = OPEN_STR("{}\n\xc3", 0);
	EXPECT_LINE(r, 1, "{}");
	EXPECT_REJECT(r, 2, "truncated");
	EXPECT_EOF(r);
	done(r);
}

static void
test_crlf(void)
{
	struct jsonl *r;

	r = OPEN_STR("{}\r\n[1]\r\n\r\n\"x\"\r", 0);
	EXPECT_LINE(r, 1, "{}");
	EXPECT_LINE(r, 2, "[1]");
	EXPECT_LINE(r, 4, "\"x\"");
	EXPECT_EOF(r);
	done(r);

	/* Only the one "\r" before the newline goes; others are data. */
	r = OPEN_STR("a\r\r\nb\rc\n", 0);
	EXPECT_LINE(r, 1, "a\r");
	EXPECT_LINE(r, 2, "b\rc");
	EXPECT_EOF(r);
	done(r);

	/* Mixed line ends in one file. */
	r = OPEN_STR("1\n2\r\n3\n", 0);
	EXPECT_LINE(r, 1, "1");
	EXPECT_LINE(r, 2, "2");
	EXPECT_LINE(r, 3, "3");
	EXPECT_EOF(r);
	done(r);
}

/* A FILE that yields a line of n bytes of 'x', then the rest as given. */
struct gen {
	size_t		 n;
	const char	*rest;
	size_t		 restlen;
	size_t		 chunk;		/* largest read; 0 for no limit */
	size_t		 fail_after;	/* bytes before EIO; 0 for never */
	size_t		 pos;
};

static ssize_t
gen_read(void *cookie, char *buf, size_t size)
{
	struct gen *g = cookie;
	size_t i;

	if (g->chunk != 0 && size > g->chunk)
		size = g->chunk;
	if (g->fail_after != 0 && g->pos >= g->fail_after) {
		errno = EIO;
		return -1;
	}
	if (g->fail_after != 0 && size > g->fail_after - g->pos)
		size = g->fail_after - g->pos;
	for (i = 0; i < size; i++, g->pos++) {
		if (g->pos < g->n)
			buf[i] = 'x';
		else if (g->pos - g->n < g->restlen)
			buf[i] = g->rest[g->pos - g->n];
		else
			break;
	}
	return (ssize_t)i;
}

static FILE *
gen_open(struct gen *g)
{
	cookie_io_functions_t io = { .read = gen_read };
	FILE *fp;

	if ((fp = fopencookie(g, "r", io)) == NULL) {
		perror("fopencookie");
		exit(1);
	}
	return fp;
}

static long
maxrss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static void
test_toolong(void)
{
	static const char rest[] = "\n{\"ok\":1}\n";
	struct gen g = { 2 * 1024 * 1024, rest, sizeof(rest) - 1, 0, 0, 0 };
	struct jsonl *r;
	FILE *fp;
	long before;

	/* 2 MiB against the default 1 MiB. */
	fp = gen_open(&g);
	r = jsonl_open(fp, "big.jsonl", 0);
	EXPECT_REJECT(r, 1, "line too long: 2097152 bytes, at most 1048576");
	EXPECT_LINE(r, 2, "{\"ok\":1}");
	EXPECT_EOF(r);
	close_fp(r, fp);

	/* Exactly the limit is fine; one more is not; "\r\n" is not counted. */
	r = OPEN_STR("12345678\n123456789\n12345678\r\n1234567\r\r\n"
	    "123456789\r\n123456789", 8);
	EXPECT_LINE(r, 1, "12345678");
	EXPECT_REJECT(r, 2, "9 bytes, at most 8 allowed");
	EXPECT_LINE(r, 3, "12345678");
	EXPECT_LINE(r, 4, "1234567\r");
	EXPECT_REJECT(r, 5, "9 bytes");
	EXPECT_REJECT(r, 6, "9 bytes");
	EXPECT_EOF(r);
	done(r);

	/* 256 MiB in one line is skipped in bounded memory. */
	g.n = 256 * 1024 * 1024;
	g.pos = 0;
	before = maxrss_kb();
	fp = gen_open(&g);
	r = jsonl_open(fp, "huge.jsonl", 4096);
	EXPECT_REJECT(r, 1, "line too long: 268435456 bytes");
	EXPECT_LINE(r, 2, "{\"ok\":1}");
	EXPECT_EOF(r);
	close_fp(r, fp);
	CHECK(maxrss_kb() - before < 32 * 1024);

	/* Absurd limits are refused. */
	errno = 0;
	CHECK(jsonl_open(stdin, "x", SIZE_MAX) == NULL && errno == EINVAL);
}

static void
test_nul(void)
{
	struct jsonl *r;

	r = OPEN_STR("{\"a\":\"x\0y\"}\n{}\n\0\n", 0);
	EXPECT_REJECT(r, 1, "NUL byte at byte offset 7");
	EXPECT_LINE(r, 2, "{}");
	EXPECT_REJECT(r, 3, "NUL byte at byte offset 0");
	EXPECT_EOF(r);
	done(r);

	/* A NUL in a line of blanks makes it no blank line. */
	r = OPEN_STR("  \0 \n", 0);
	EXPECT_REJECT(r, 1, "offset 2");
	EXPECT_EOF(r);
	done(r);

	/* NUL is valid UTF-8: only the reader refuses it. */
	CHECK(jsonl_utf8_check("a\0b", 3, NULL) == 0);
}

static const struct {
	const char	*s;
	size_t		 off;
	const char	*why;
} bad[] = {
	{ "\xc0\xaf", 0, "overlong encoding" },
	{ "\xc1\xbf", 0, "overlong encoding" },
	{ "ab\xe0\x80\xaf", 2, "overlong encoding" },
	{ "\xe0\x9f\xbf", 0, "overlong encoding" },
	{ "\xf0\x80\x80\xaf", 0, "overlong encoding" },
	{ "\xf0\x8f\xbf\xbf", 0, "overlong encoding" },
	{ "x\xed\xa0\x80", 1, "surrogate code point" },
	{ "\xed\xbf\xbf", 0, "surrogate code point" },
	{ "\xf4\x90\x80\x80", 0, "code point above U+10FFFF" },
	{ "\xf5\x80\x80\x80", 0, "code point above U+10FFFF" },
	{ "\xf7\xbf\xbf\xbf", 0, "code point above U+10FFFF" },
	{ "\xf8\x88\x80\x80\x80", 0, "byte never valid in UTF-8" },
	{ "\xff", 0, "byte never valid in UTF-8" },
	{ "\xfe", 0, "byte never valid in UTF-8" },
	{ "\x80", 0, "unexpected continuation byte" },
	{ "a\xbf", 1, "unexpected continuation byte" },
	{ "\xc3\xa9\xa9", 2, "unexpected continuation byte" },
	{ "abc\xc3", 3, "truncated sequence" },
	{ "\xe2\x82", 0, "truncated sequence" },
	{ "\xe2\x82" "A", 0, "truncated sequence" },
	{ "\xf0\x9f\x98", 0, "truncated sequence" },
	{ "\xf0\x9f\x98" "A", 0, "truncated sequence" },
	{ "\xc3\xa9\xc3", 2, "truncated sequence" },
	{ "\xc3 ", 0, "truncated sequence" },
};

static void
test_badutf8(void)
{
	struct jsonl *r;
	char in[64], want[128];
	const char *why;
	size_t i, off, n;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		n = strlen(bad[i].s);
		off = 999;
		why = NULL;
		if (jsonl_utf8_check_why(bad[i].s, n, &off, &why) != -1 ||
		    off != bad[i].off || why == NULL ||
		    strstr(why, bad[i].why) == NULL) {
			fprintf(stderr, "%s:%d: bad[%zu]: offset %zu (want %zu)"
			    ", %s (want %s)\n", __FILE__, __LINE__, i, off,
			    bad[i].off, why ? why : "valid", bad[i].why);
			failures++;
		}
		CHECK(jsonl_utf8_check(bad[i].s, n, NULL) == -1);

		/* Through the reader, as line 2, with good lines around. */
		snprintf(in, sizeof(in), "{}\n%s\n[]\n", bad[i].s);
		r = open_bytes(in, strlen(in), 0);
		snprintf(want, sizeof(want), "at byte offset %zu (0x%02x): %s",
		    bad[i].off, (unsigned char)bad[i].s[bad[i].off],
		    bad[i].why);
		EXPECT_LINE(r, 1, "{}");
		EXPECT_REJECT(r, 2, want);
		EXPECT_LINE(r, 3, "[]");
		EXPECT_EOF(r);
		done(r);
	}
}

/*
 * An independent judge: decodes by arithmetic and checks the code point
 * against the shortest form and the valid ranges.
 */
static int
ref_valid(const unsigned char *s, size_t len)
{
	size_t i = 0, n, k;
	uint32_t cp, min;

	while (i < len) {
		if (s[i] < 0x80)
			n = 1, cp = s[i], min = 0;
		else if ((s[i] & 0xe0) == 0xc0)
			n = 2, cp = s[i] & 0x1f, min = 0x80;
		else if ((s[i] & 0xf0) == 0xe0)
			n = 3, cp = s[i] & 0x0f, min = 0x800;
		else if ((s[i] & 0xf8) == 0xf0)
			n = 4, cp = s[i] & 0x07, min = 0x10000;
		else
			return 0;
		if (i + n > len)
			return 0;
		for (k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n;
	}
	return 1;
}

static void
test_goodutf8(void)
{
	static const char in[] =
	    "{\"name\":\"Jos\xc3\xa9\"}\n"		/* é, 2 bytes */
	    "{\"price\":\"\xe2\x82\xac" "5\"}\n"	/* €, 3 bytes */
	    "{\"mood\":\"\xf0\x9f\x98\x80\"}\n"		/* U+1F600, 4 bytes */
	    "\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"
	    "\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\n";	/* edges */
	unsigned char b[4];
	struct jsonl *r;
	unsigned a, c, d;
	long wrong = 0;

	r = OPEN_STR(in, 0);
	EXPECT_LINE(r, 1, "{\"name\":\"Jos\xc3\xa9\"}");
	EXPECT_LINE(r, 2, "{\"price\":\"\xe2\x82\xac" "5\"}");
	EXPECT_LINE(r, 3, "{\"mood\":\"\xf0\x9f\x98\x80\"}");
	EXPECT_LINE(r, 4, "\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf"
	    "\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf");
	EXPECT_EOF(r);
	done(r);

	/* Every string of 1, 2 and 3 bytes, against the reference. */
	for (a = 0; a < 256; a++) {
		b[0] = a;
		wrong += (jsonl_utf8_check(b, 1, NULL) == 0) != ref_valid(b, 1);
		for (c = 0; c < 256; c++) {
			b[1] = c;
			wrong += (jsonl_utf8_check(b, 2, NULL) == 0) !=
			    ref_valid(b, 2);
			for (d = 0; d < 256; d++) {
				b[2] = d;
				wrong += (jsonl_utf8_check(b, 3, NULL) == 0) !=
				    ref_valid(b, 3);
			}
		}
	}
	/* Every 4-byte lead and second byte, with edge continuations. */
	for (a = 0xf0; a < 0x100; a++)
		for (c = 0; c < 256; c++)
			for (d = 0; d < 16; d++) {
				static const unsigned char e[4] =
				    { 0x80, 0xbf, 0x7f, 0xc0 };

				b[0] = a;
				b[1] = c;
				b[2] = e[d & 3];
				b[3] = e[d >> 2];
				wrong += (jsonl_utf8_check(b, 4, NULL) == 0) !=
				    ref_valid(b, 4);
			}
	CHECK(wrong == 0);
}

/* xorshift32: the same garbage on every run. */
static uint32_t
rnd(uint32_t *state)
{
	uint32_t x = *state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *state = x;
}

/* Reads r to its end checking what any input must give; returns lines. */
static long
drain(struct jsonl *r, size_t maxlen, long *rejected)
{
	const char *line;
	size_t len;
	long lines = 0, last = 0;
	int rc;

	*rejected = 0;
	while ((rc = jsonl_next(r, &line, &len)) != JSONL_EOF) {
		CHECK(rc == JSONL_LINE || rc == JSONL_REJECT);
		if (rc != JSONL_LINE && rc != JSONL_REJECT)
			break;
		CHECK(jsonl_lineno(r) > last);
		last = jsonl_lineno(r);
		if (rc == JSONL_REJECT) {
			CHECK(*jsonl_error(r) != '\0');
			(*rejected)++;
			continue;
		}
		lines++;
		CHECK(len > 0 && len <= maxlen);
		CHECK(memchr(line, '\0', len) == NULL && line[len] == '\0');
		CHECK(jsonl_utf8_check(line, len, NULL) == 0);
	}
	return lines;
}

static void
test_garbage(void)
{
	static unsigned char buf[1024 * 1024];
	struct jsonl *r;
	uint32_t seed = 2463534242u;
	size_t i, nl = 0;
	long rejected;

	/* Random bytes: every line framed, numbered and judged. */
	for (i = 0; i < sizeof(buf); i++)
		if ((buf[i] = rnd(&seed) & 0xff) == '\n')
			nl++;
	r = open_bytes(buf, sizeof(buf), 256);
	drain(r, 256, &rejected);
	CHECK(rejected > 0);
	CHECK(jsonl_lineno(r) == (long)nl + (buf[sizeof(buf) - 1] != '\n'));
	done(r);

	/* Random bytes with no newline: one line, too long. */
	for (i = 0; i < sizeof(buf); i++)
		if ((buf[i] = rnd(&seed) & 0xff) == '\n')
			buf[i] = 0xff;
	r = open_bytes(buf, sizeof(buf), 1000);
	EXPECT_REJECT(r, 1, "line too long: 1048576 bytes");
	EXPECT_EOF(r);
	done(r);

	/* The same within the limit: invalid, with an offset. */
	r = open_bytes(buf, sizeof(buf), 0);
	EXPECT_REJECT(r, 1, "at byte offset");
	EXPECT_EOF(r);
	done(r);

	/* High bytes one per line, and a few lone continuation bytes. */
	for (i = 0; i < 256; i++) {
		buf[2 * i] = 0x80 + i / 2;
		buf[2 * i + 1] = '\n';
	}
	r = open_bytes(buf, 256, 0);
	CHECK(drain(r, JSONL_MAXLEN_DEFAULT, &rejected) == 0);
	CHECK(rejected == 128 && jsonl_lineno(r) == 128);
	done(r);
}

/* The input both chunked tests read, and what they must find in it. */
static const char chunked_in[] =
    "{\"order_id\":\"o-1\",\"email\":\"ana@example.com\"}\n"
    "{\"name\":\"Ren\xc3\xa9\",\"note\":\"\xe2\x82\xac\xf0\x9f\x98\x80\"}\r\n"
    "\n"
    "0123456789012345678901234567890123456789012345678901234567890123"
    "456789\n"
    "{\"bad\":\"\xed\xa0\x80\"}\n"
    "   \r\n"
    "{\"last\":true}";

static void
expect_chunked(struct jsonl *r)
{
	EXPECT_LINE(r, 1,
	    "{\"order_id\":\"o-1\",\"email\":\"ana@example.com\"}");
	EXPECT_LINE(r, 2, "{\"name\":\"Ren\xc3\xa9\","
	    "\"note\":\"\xe2\x82\xac\xf0\x9f\x98\x80\"}");
	EXPECT_REJECT(r, 4, "line too long: 70 bytes, at most 64");
	EXPECT_REJECT(r, 5, "at byte offset 8 (0xed): surrogate");
	EXPECT_LINE(r, 7, "{\"last\":true}");
	EXPECT_EOF(r);
}

static void
test_chunks(void)
{
	struct gen g = { 0, chunked_in, sizeof(chunked_in) - 1, 1, 0, 0 };
	struct jsonl *r;
	FILE *fp;
	size_t chunk;

	for (chunk = 1; chunk <= 7; chunk++) {
		g.chunk = chunk;
		g.pos = 0;
		fp = gen_open(&g);
		setvbuf(fp, NULL, _IONBF, 0);
		r = jsonl_open(fp, "chunks", 64);
		expect_chunked(r);
		close_fp(r, fp);
	}
}

static void
test_pipe(void)
{
	struct jsonl *r;
	size_t off, n;
	pid_t pid;
	FILE *fp;
	int fd[2], status;

	if (pipe(fd) == -1 || (pid = fork()) == -1) {
		perror("pipe");
		exit(1);
	}
	if (pid == 0) {
		close(fd[0]);
		for (off = 0; off < sizeof(chunked_in) - 1; off += n) {
			n = off % 5 + 1;
			if (n > sizeof(chunked_in) - 1 - off)
				n = sizeof(chunked_in) - 1 - off;
			if (write(fd[1], chunked_in + off, n) != (ssize_t)n)
				_exit(1);
		}
		_exit(0);
	}
	close(fd[1]);
	if ((fp = fdopen(fd[0], "r")) == NULL) {
		perror("fdopen");
		exit(1);
	}
	r = jsonl_open(fp, "-", 64);
	CHECK(strcmp(jsonl_name(r), "stdin") == 0);
	expect_chunked(r);
	close_fp(r, fp);
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0);
}

static void
test_readerr(void)
{
	static const char in[] = "{}\n[1]\n{\"cut\":";
	struct gen g = { 0, in, sizeof(in) - 1, 0, sizeof(in) - 1, 0 };
	struct jsonl *r;
	FILE *fp;

	fp = gen_open(&g);
	r = jsonl_open(fp, "broken", 0);
	EXPECT_LINE(r, 1, "{}");
	EXPECT_LINE(r, 2, "[1]");
	CHECK(jsonl_next(r, &(const char *){ NULL }, &(size_t){ 0 }) ==
	    JSONL_ERROR);
	CHECK(strstr(jsonl_error(r), "read error: ") != NULL);
	CHECK(strstr(jsonl_error(r), strerror(EIO)) != NULL);
	CHECK(jsonl_lineno(r) == 3);
	CHECK(jsonl_next(r, &(const char *){ NULL }, &(size_t){ 0 }) ==
	    JSONL_ERROR);
	close_fp(r, fp);
}

static void
test_name(void)
{
	char name[] = "orders.jsonl", path[] = "/tmp/jsonl_test.XXXXXX";
	struct jsonl *r;
	int fd, stdin_ok;

	r = jsonl_open(stdin, NULL, 0);
	CHECK(r != NULL && strcmp(jsonl_name(r), "stdin") == 0);
	jsonl_close(r);
	r = jsonl_open(stdin, "-", 0);
	CHECK(r != NULL && strcmp(jsonl_name(r), "stdin") == 0);
	jsonl_close(r);
	r = jsonl_open(stdin, name, 0);
	name[0] = 'X';
	CHECK(r != NULL && strcmp(jsonl_name(r), "orders.jsonl") == 0);
	jsonl_close(r);
	jsonl_close(NULL);
	errno = 0;
	CHECK(jsonl_open(NULL, "x", 0) == NULL && errno == EINVAL);

	errno = 0;
	CHECK(jsonl_open_file("/nonexistent/orders.jsonl", 0) == NULL &&
	    errno == ENOENT);
	if ((fd = mkstemp(path)) == -1 || write(fd, "{}\n", 3) != 3) {
		perror("mkstemp");
		exit(1);
	}
	close(fd);
	r = jsonl_open_file(path, 0);
	CHECK(r != NULL && strcmp(jsonl_name(r), path) == 0);
	if (r != NULL) {
		EXPECT_LINE(r, 1, "{}");
		EXPECT_EOF(r);
		jsonl_close(r);
	}
	unlink(path);

	/* "-" is stdin, which jsonl_close() leaves open. */
	stdin_ok = fcntl(STDIN_FILENO, F_GETFD) != -1;
	r = jsonl_open_file("-", 0);
	CHECK(r != NULL && strcmp(jsonl_name(r), "stdin") == 0);
	jsonl_close(r);
	CHECK((fcntl(STDIN_FILENO, F_GETFD) != -1) == stdin_ok);
}

/*
 * Lines longer than one read of the reader (2 KiB) and around that size:
 * kept whole and exact, a NUL and a UTF-8 sequence cut between two reads
 * found at their offsets, a long blank line skipped, and the line after
 * each one read with its number.
 */
static void
test_pieces(void)
{
	static const size_t sizes[] = { 2046, 2047, 2048, 2049, 4095, 4096,
	    4097, 100000 };
	struct jsonl *r;
	const char *line;
	char *in, msg[64];
	size_t i, n, len, at, eur;
	int rc;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		n = sizes[i];
		/* Four lines of n bytes (plain, NUL, cut UTF-8, blank), {}. */
		if ((in = malloc(5 * (n + 1) + 16)) == NULL)
			abort();
		memset(in, 'a', 5 * (n + 1));
		in[n] = '\n';
		at = n + 1 + n - 3;
		in[at] = '\0';
		in[2 * (n + 1) - 1] = '\n';
		/* U+20AC: in longer lines across the first read's end. */
		eur = n >= 2049 ? 2046 : n - 3;
		memcpy(in + 2 * (n + 1) + eur, "\xe2\x82\xac", 3);
		in[3 * (n + 1) - 1] = '\n';
		memset(in + 3 * (n + 1), ' ', n);
		in[4 * (n + 1) - 1] = '\n';
		memcpy(in + 4 * (n + 1), "{}\n", 3);
		r = open_bytes(in, 4 * (n + 1) + 3, 0);
		rc = jsonl_next(r, &line, &len);
		CHECK(rc == JSONL_LINE && len == n && jsonl_lineno(r) == 1);
		CHECK(rc == JSONL_LINE && strspn(line, "a") == n &&
		    line[n] == '\0');
		snprintf(msg, sizeof(msg), "NUL byte at byte offset %zu",
		    n - 3);
		EXPECT_REJECT(r, 2, msg);
		rc = jsonl_next(r, &line, &len);
		CHECK(rc == JSONL_LINE && len == n && jsonl_lineno(r) == 3);
		CHECK(rc == JSONL_LINE && memcmp(line + eur,
		    "\xe2\x82\xac", 3) == 0);
		EXPECT_LINE(r, 5, "{}");
		EXPECT_EOF(r);
		done(r);
		free(in);
	}
}

static void
test_bom(void)
{
	struct jsonl *r;

	r = OPEN_STR("\xef\xbb\xbf{}\n\xef\xbb\xbf[]\n", 0);
	EXPECT_LINE(r, 1, "{}");
	EXPECT_LINE(r, 2, "\xef\xbb\xbf[]");	/* only at the very start */
	EXPECT_EOF(r);
	done(r);

	r = OPEN_STR("\xef\xbb\xbf  \r\n{}", 0);
	EXPECT_LINE(r, 2, "{}");
	EXPECT_EOF(r);
	done(r);

	/* Offsets still count the mark's bytes. */
	r = OPEN_STR("\xef\xbb\xbf\xff\n", 0);
	EXPECT_REJECT(r, 1, "at byte offset 3 (0xff)");
	EXPECT_EOF(r);
	done(r);
}

/* What a rejected line leaves for its dead letter: all, or its head. */
static void
test_rejected(void)
{
	char big[5000 + 2];
	const char *b;
	size_t len, total;
	struct jsonl *r;

	r = OPEN_STR("{\"a\":\"x\0y\"}\n{}\n123456789\r\n"
	    "ab\xff\r\n", 8 * 1024);
	EXPECT_REJECT(r, 1, "NUL byte");
	b = jsonl_rejected(r, &len, &total);
	CHECK(b != NULL && len == 11 && total == 11 &&
	    memcmp(b, "{\"a\":\"x\0y\"}", 11) == 0);
	EXPECT_LINE(r, 2, "{}");
	CHECK(jsonl_rejected(r, &len, &total) == NULL && len == 0 &&
	    total == 0);
	EXPECT_LINE(r, 3, "123456789");
	EXPECT_REJECT(r, 4, "invalid UTF-8");
	b = jsonl_rejected(r, &len, &total);
	CHECK(b != NULL && len == 3 && total == 3 &&
	    memcmp(b, "ab\xff", 3) == 0);
	EXPECT_EOF(r);
	CHECK(jsonl_rejected(r, &len, &total) == NULL);
	done(r);

	/* Too long: the first bytes, up to maxlen, and the whole length. */
	r = OPEN_STR("123456789\r\n", 8);
	EXPECT_REJECT(r, 1, "9 bytes");
	b = jsonl_rejected(r, &len, &total);
	CHECK(b != NULL && len == 8 && total == 9 &&
	    memcmp(b, "12345678", 8) == 0);
	done(r);
	memset(big, 'a', sizeof(big) - 2);
	big[0] = '{';
	big[sizeof(big) - 2] = '\n';
	big[sizeof(big) - 1] = '\n';
	r = open_bytes(big, sizeof(big), 4096);
	EXPECT_REJECT(r, 1, "5000 bytes");
	b = jsonl_rejected(r, &len, &total);
	CHECK(b != NULL && len == JSONL_REJECT_HEAD && total == 5000 &&
	    b[0] == '{' && b[JSONL_REJECT_HEAD - 1] == 'a');
	EXPECT_EOF(r);
	done(r);
}

static const struct unit_test tests[] = {
	{ "lines", test_lines },
	{ "empty", test_empty },
	{ "nofinalnl", test_nofinalnl },
	{ "crlf", test_crlf },
	{ "toolong", test_toolong },
	{ "nul", test_nul },
	{ "badutf8", test_badutf8 },
	{ "goodutf8", test_goodutf8 },
	{ "garbage", test_garbage },
	{ "chunks", test_chunks },
	{ "pipe", test_pipe },
	{ "readerr", test_readerr },
	{ "name", test_name },
	{ "bom", test_bom },
	{ "pieces", test_pieces },
	{ "rejected", test_rejected },
};

int
main(int argc, char *argv[])
{
	return unit_main("jsonl_test", tests, argc, argv);
}
