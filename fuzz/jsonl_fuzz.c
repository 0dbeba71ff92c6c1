/*
 * jsonl_fuzz.c - libFuzzer target for common/jsonl.c, the JSON-lines reader.
 *
 * The first byte picks maxlen (1..64, so the too-long path is common), the
 * second the largest read the FILE underneath answers (1..16, or all at
 * once), the rest is the input.  Besides not crashing, every outcome is
 * checked against the input itself: a returned line is that line's bytes
 * less its "\r\n", short enough, NUL-free and valid UTF-8; a rejected line
 * really was too long or bad; a line never reported was blank; and the
 * last line number is the number of lines in the input.  The UTF-8
 * checker is held to an independent decoder on the whole input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct src {
	const uint8_t	*p;
	size_t		 len;
	size_t		 pos;
	size_t		 chunk;
};

static ssize_t
src_read(void *cookie, char *buf, size_t size)
{
	struct src *s = cookie;

	if (s->chunk != 0 && size > s->chunk)
		size = s->chunk;
	if (size > s->len - s->pos)
		size = s->len - s->pos;
	memcpy(buf, s->p + s->pos, size);
	s->pos += size;
	return (ssize_t)size;
}

/* Line no (from 1) of the input: *start and *len, without its "\n". */
static void
input_line(const uint8_t *p, size_t n, long no, size_t *start, size_t *len)
{
	const uint8_t *nl;
	size_t at = 0;

	for (; no > 1; no--) {
		nl = memchr(p + at, '\n', n - at);
		if (nl == NULL)
			abort();	/* the reader numbered past the input */
		at = (size_t)(nl - p) + 1;
	}
	nl = memchr(p + at, '\n', n - at);
	*start = at;
	*len = (nl == NULL ? n : (size_t)(nl - p)) - at;
}

static long
input_lines(const uint8_t *p, size_t n)
{
	long lines = 0;
	size_t i;

	for (i = 0; i < n; i++)
		lines += p[i] == '\n';
	return lines + (n > 0 && p[n - 1] != '\n');
}

static int
blank(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return 0;
	return 1;
}

/* Without its final "\r": the length that counts against maxlen. */
static void
strip_cr(const uint8_t *p, size_t start, size_t *len)
{
	if (*len > 0 && p[start + *len - 1] == '\r')
		(*len)--;
}

/* Line 1 loses a byte order mark at its start. */
static void
strip_bom(const uint8_t *p, long no, size_t *start, size_t *len)
{
	if (no == 1 && *len >= 3 &&
	    memcmp(p + *start, "\xef\xbb\xbf", 3) == 0) {
		*start += 3;
		*len -= 3;
	}
}

/* The line's content, as the reader returns it. */
static void
content(const uint8_t *p, long no, size_t *start, size_t *len)
{
	strip_cr(p, *start, len);
	strip_bom(p, no, start, len);
}

/* Lines after last and before no were skipped: they must be blank. */
static void
check_skipped(const uint8_t *p, size_t n, long last, long no)
{
	size_t start, len;

	for (last++; last < no; last++) {
		input_line(p, n, last, &start, &len);
		content(p, last, &start, &len);
		if (!blank(p + start, len))
			abort();
	}
}

static void
check_line(const uint8_t *p, size_t n, long no, const char *line,
    size_t len, size_t maxlen)
{
	size_t start, ilen;

	input_line(p, n, no, &start, &ilen);
	content(p, no, &start, &ilen);
	if (len == 0 || len > maxlen || line[len] != '\0' ||
	    memchr(line, '\0', len) != NULL ||
	    jsonl_utf8_check(line, len, NULL) != 0 ||
	    len != ilen || memcmp(line, p + start, len) != 0 ||
	    blank((const uint8_t *)line, len))
		abort();
}

/* What jsonl_rejected() kept: the line as read, or its head. */
static void
check_kept(const struct jsonl *r, const uint8_t *p, size_t start, size_t len,
    size_t maxlen)
{
	const char *b;
	size_t kept, total, want = len;

	if (len > maxlen)
		want = maxlen < JSONL_REJECT_HEAD ? maxlen : JSONL_REJECT_HEAD;
	if ((b = jsonl_rejected(r, &kept, &total)) == NULL ||
	    total != len || kept != want || memcmp(b, p + start, kept) != 0)
		abort();
}

static void
check_rejected(const struct jsonl *r, const uint8_t *p, size_t n, long no,
    size_t maxlen)
{
	size_t start, len;

	if (*jsonl_error(r) == '\0')
		abort();
	input_line(p, n, no, &start, &len);
	strip_cr(p, start, &len);
	check_kept(r, p, start, len, maxlen);
	if (len > maxlen)
		return;
	strip_bom(p, no, &start, &len);
	if (memchr(p + start, '\0', len) == NULL &&
	    jsonl_utf8_check(p + start, len, NULL) == 0)
		abort();
}

/*
 * An independent judge of UTF-8: decodes by arithmetic, then checks the
 * code point against the shortest form and the valid ranges.
 */
static int
ref_valid(const uint8_t *s, size_t len)
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

/* The checker agrees with the judge, and a bad offset ends a good prefix. */
static void
check_utf8(const uint8_t *p, size_t n)
{
	const char *why = NULL;
	size_t off = 0;
	int ok;

	ok = jsonl_utf8_check_why(p, n, &off, &why) == 0;
	if (ok != ref_valid(p, n))
		abort();
	if (!ok && (off >= n || why == NULL || !ref_valid(p, off)))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cookie_io_functions_t io = { .read = src_read };
	struct src src;
	struct jsonl *r;
	const char *line;
	size_t maxlen, len;
	long last = 0;
	FILE *fp;
	int rc;

	if (size < 2)
		return 0;
	maxlen = data[0] % 64 + 1;
	src.chunk = data[1] % 17;
	src.p = data + 2;
	src.len = size - 2;
	src.pos = 0;
	check_utf8(src.p, src.len);
	if ((fp = fopencookie(&src, "r", io)) == NULL)
		return 0;
	if ((r = jsonl_open(fp, "fuzz", maxlen)) == NULL) {
		fclose(fp);
		return 0;
	}
	while ((rc = jsonl_next(r, &line, &len)) != JSONL_EOF) {
		if (jsonl_lineno(r) <= last)
			abort();
		check_skipped(src.p, src.len, last, jsonl_lineno(r));
		last = jsonl_lineno(r);
		if (rc == JSONL_LINE)
			check_line(src.p, src.len, last, line, len, maxlen);
		else if (rc == JSONL_REJECT)
			check_rejected(r, src.p, src.len, last, maxlen);
		else
			abort();	/* no read error from memory */
	}
	check_skipped(src.p, src.len, last, input_lines(src.p, src.len) + 1);
	if (jsonl_lineno(r) != input_lines(src.p, src.len))
		abort();
	jsonl_close(r);
	fclose(fp);
	return 0;
}
