/*
 * jsonl.c - the JSON-lines reader: framing, length, NUL and UTF-8 checks.
 *
 * Bytes come from fgets_unlocked() in pieces that end at a newline: the
 * stdio buffer does the bulk reads, and a line never makes us wait for
 * input past its newline.
 * The line buffer starts small and doubles up to maxlen + 1 bytes (room for
 * the NUL); past that the rest of a line is counted and dropped, which is
 * how a huge line is skipped in bounded memory.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"

#define JSONL_INITIAL	4096	/* first size of the line buffer */
#define JSONL_PIECE	2048	/* the most one fgets() call reads */
/*
 * stdio's buffer for what we read: its default of one disk block meant a
 * read(2) every few lines, which on a virtual machine cost a tenth of
 * order-submit's time.  read(2) returns what a pipe or terminal has, so
 * a larger buffer adds no wait.  glibc ignores setvbuf()'s size unless
 * it is given the buffer, so we give it one: stdin's is static.
 */
#define JSONL_READ_BUF	65536

struct jsonl {
	FILE	*fp;
	int	 owned;		/* jsonl_open_file() opened fp */
	char	*iobuf;		/* fp's stdio buffer, when ours */
	char	*name;
	size_t	 maxlen;
	char	*buf;
	size_t	 size;		/* allocated; grows up to maxlen + 1 */
	long	 lineno;
	int	 eof;		/* EOF seen: never read again */
	int	 failed;	/* read error seen: sticky JSONL_ERROR */
	char	 err[160];
	size_t	 rej_len;	/* jsonl_rejected(): bytes at buf, or 0 */
	size_t	 rej_total;	/* the rejected line's length */
};

/* The result of reading one raw line into r->buf. */
struct raw {
	size_t	 n;		/* bytes kept in r->buf */
	size_t	 total;		/* bytes in the line, without "\n" */
	int	 blank;		/* only spaces, tabs and CRs */
	int	 cr;		/* the last byte was "\r" */
	int	 any;		/* a line at all (not EOF at its start) */
};

static int stdin_buffered;	/* its buffer was set */
static char stdin_buf[JSONL_READ_BUF];

struct jsonl *
jsonl_open(FILE *fp, const char *name, size_t maxlen)
{
	struct jsonl *r;

	if (maxlen == 0)
		maxlen = JSONL_MAXLEN_DEFAULT;
	if (fp == NULL || maxlen > SIZE_MAX / 2) {
		errno = EINVAL;
		return NULL;
	}
	if (name == NULL || strcmp(name, "-") == 0)
		name = "stdin";
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	if ((r->name = strdup(name)) == NULL) {
		free(r);
		return NULL;
	}
	r->fp = fp;
	r->maxlen = maxlen;
	return r;
}

struct jsonl *
jsonl_open_file(const char *path, size_t maxlen)
{
	struct jsonl *r;
	FILE *fp;
	int saved;

	if (path == NULL || strcmp(path, "-") == 0) {
		/* Before stdin's first read only: setvbuf() must come first. */
		if (!stdin_buffered++)
			(void)setvbuf(stdin, stdin_buf, _IOFBF,
			    sizeof(stdin_buf));
		return jsonl_open(stdin, "-", maxlen);
	}
	if ((fp = fopen(path, "r")) == NULL)
		return NULL;
	if ((r = jsonl_open(fp, path, maxlen)) == NULL) {
		saved = errno;
		fclose(fp);
		errno = saved;
		return NULL;
	}
	r->owned = 1;
	/* Without memory for it, stdio's own buffer will do. */
	if ((r->iobuf = malloc(JSONL_READ_BUF)) != NULL &&
	    setvbuf(fp, r->iobuf, _IOFBF, JSONL_READ_BUF) != 0) {
		free(r->iobuf);
		r->iobuf = NULL;
	}
	return r;
}

void
jsonl_close(struct jsonl *r)
{
	if (r == NULL)
		return;
	if (r->owned)
		fclose(r->fp);
	free(r->iobuf);
	free(r->buf);
	free(r->name);
	free(r);
}

long
jsonl_lineno(const struct jsonl *r)
{
	return r->lineno;
}

const char *
jsonl_name(const struct jsonl *r)
{
	return r->name;
}

const char *
jsonl_error(const struct jsonl *r)
{
	return r->err;
}

const char *
jsonl_rejected(const struct jsonl *r, size_t *len, size_t *total)
{
	*len = r->rej_len;
	*total = r->rej_total;
	return r->rej_total > 0 ? r->buf : NULL;
}

/* The last line is rejected; keeps (a head of) its n bytes in r->buf. */
static int
reject(struct jsonl *r, size_t n, size_t total)
{
	r->rej_len = n < total ? (n < JSONL_REJECT_HEAD ? n :
	    JSONL_REJECT_HEAD) : n;
	r->rej_total = total;
	return JSONL_REJECT;
}

/*
 * Makes room for one more byte.  Returns 0 when the line has reached its
 * cap (the byte must be dropped), -1 if out of memory, 1 otherwise.
 */
static int
room(struct jsonl *r, size_t n)
{
	size_t cap = r->maxlen, nsize;
	char *nbuf;

	if (n >= cap)
		return 0;
	if (n + 1 < r->size)	/* keep one byte for the NUL */
		return 1;
	nsize = r->size == 0 ? JSONL_INITIAL : r->size * 2;
	if (nsize > cap + 1)
		nsize = cap + 1;
	if ((nbuf = realloc(r->buf, nsize)) == NULL)
		return -1;
	r->buf = nbuf;
	r->size = nsize;
	return 1;
}

static int
blank(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return 0;
	return 1;
}

/*
 * Reads through the next "\n" or EOF, keeping at most maxlen bytes.
 * Returns 0, or -1 on a read error or out of memory (r->err set).
 *
 * The bytes come in pieces of at most JSONL_PIECE from fgets_unlocked(),
 * which finds the newline in stdio's buffer with memchr() and stops at
 * it; a loop of getc_unlocked() over every byte was a tenth of
 * order-submit's instructions.  fgets() does not say how many bytes it
 * stored, and a line may hold NUL bytes (rejected later, at their
 * offset), so the piece is filled with "\n" first: the last NUL in it is
 * the one fgets() wrote after the bytes.  Past maxlen the pieces go to a
 * scratch buffer and are only counted.
 */
static int
read_raw(struct jsonl *r, struct raw *raw)
{
	char scratch[JSONL_PIECE], *dst, *nul;
	size_t n = 0, total = 0, want, got;
	int allblank = 1, last = 0, nl = 0;

	memset(raw, 0, sizeof(*raw));
	errno = 0;
	while (!nl) {
		if (n < r->maxlen) {
			if (room(r, n) < 0) {
				snprintf(r->err, sizeof(r->err),
				    "out of memory");
				return -1;
			}
			/* Room for a byte and the NUL: fgets() stores one. */
			dst = r->buf + n;
			want = r->size - n;
			if (want > r->maxlen - n + 1)
				want = r->maxlen - n + 1;
		} else {
			dst = scratch;
			want = sizeof(scratch);
		}
		if (want > JSONL_PIECE)
			want = JSONL_PIECE;
		memset(dst, '\n', want);
		if (fgets_unlocked(dst, (int)want, r->fp) == NULL) {
			if (ferror(r->fp)) {
				snprintf(r->err, sizeof(r->err),
				    "read error: %s",
				    strerror(errno ? errno : EIO));
				return -1;
			}
			r->eof = 1;
			break;
		}
		raw->any = 1;
		nul = memrchr(dst, '\0', want);
		got = (size_t)(nul - dst);
		if (got > 0 && dst[got - 1] == '\n') {
			nl = 1;
			got--;
		}
		if (allblank && !blank(dst, got))
			allblank = 0;
		if (got > 0)
			last = (unsigned char)dst[got - 1];
		total += got;
		if (dst != scratch)
			n += got;
	}
	raw->n = n;
	raw->total = total;
	raw->blank = allblank;
	raw->cr = last == '\r';
	return 0;
}

/* Checks one kept line; returns 0, or -1 with r->err set. */
static int
check_line(struct jsonl *r, const char *s, size_t len, size_t base)
{
	const char *nul, *why;
	size_t off;

	if ((nul = memchr(s, '\0', len)) != NULL) {
		snprintf(r->err, sizeof(r->err), "NUL byte at byte offset %zu",
		    base + (size_t)(nul - s));
		return -1;
	}
	if (jsonl_utf8_check_why(s, len, &off, &why) == -1) {
		snprintf(r->err, sizeof(r->err),
		    "invalid UTF-8 at byte offset %zu (0x%02x): %s",
		    base + off, (unsigned char)s[off], why);
		return -1;
	}
	return 0;
}

int
jsonl_next(struct jsonl *r, const char **line, size_t *len)
{
	struct raw raw;
	size_t n, skip;

	r->rej_len = r->rej_total = 0;
	if (r->failed)
		return JSONL_ERROR;
	for (;;) {
		r->err[0] = '\0';
		if (r->eof)
			return JSONL_EOF;
		if (read_raw(r, &raw) == -1) {
			r->failed = 1;
			r->lineno++;
			return JSONL_ERROR;
		}
		if (!raw.any)
			return JSONL_EOF;
		r->lineno++;
		if (raw.blank)
			continue;
		if (raw.cr)
			raw.total--;
		n = raw.n > raw.total ? raw.total : raw.n;
		if (raw.total > r->maxlen) {
			snprintf(r->err, sizeof(r->err),
			    "line too long: %zu bytes, at most %zu allowed",
			    raw.total, r->maxlen);
			return reject(r, n, raw.total);
		}
		skip = 0;
		if (r->lineno == 1 && n >= 3 &&
		    memcmp(r->buf, "\xef\xbb\xbf", 3) == 0)
			skip = 3;
		r->buf[n] = '\0';
		if (check_line(r, r->buf + skip, n - skip, skip) == -1)
			return reject(r, n, n);
		if (skip && blank(r->buf + skip, n - skip))
			continue;
		*line = r->buf + skip;
		*len = n - skip;
		return JSONL_LINE;
	}
}

/*
 * The length of the sequence led by byte b, 0 for a byte that cannot lead
 * one; *lo and *hi bound the second byte (RFC 3629, section 4), which is
 * what excludes overlong forms, surrogates and code points past U+10FFFF.
 */
static int
utf8_lead(unsigned char b, unsigned char *lo, unsigned char *hi)
{
	*lo = 0x80;
	*hi = 0xbf;
	if (b < 0x80)
		return 1;
	if (b >= 0xc2 && b <= 0xdf)
		return 2;
	if (b >= 0xe0 && b <= 0xef) {
		if (b == 0xe0)
			*lo = 0xa0;
		else if (b == 0xed)
			*hi = 0x9f;
		return 3;
	}
	if (b >= 0xf0 && b <= 0xf4) {
		if (b == 0xf0)
			*lo = 0x90;
		else if (b == 0xf4)
			*hi = 0x8f;
		return 4;
	}
	return 0;
}

/* Why the sequence led by b failed, its second byte being b1 (or -1). */
static const char *
utf8_why(unsigned char b, int b1)
{
	if (b >= 0x80 && b <= 0xbf)
		return "unexpected continuation byte";
	if (b == 0xc0 || b == 0xc1 || (b == 0xe0 && b1 >= 0x80 && b1 < 0xa0) ||
	    (b == 0xf0 && b1 >= 0x80 && b1 < 0x90))
		return "overlong encoding";
	if (b == 0xed && b1 >= 0xa0 && b1 <= 0xbf)
		return "surrogate code point";
	if ((b >= 0xf5 && b <= 0xf7) || (b == 0xf4 && b1 >= 0x90 && b1 <= 0xbf))
		return "code point above U+10FFFF";
	if (b >= 0xf8)
		return "byte never valid in UTF-8";
	return "truncated sequence";
}

int
jsonl_utf8_check_why(const void *buf, size_t len, size_t *bad_offset,
    const char **why)
{
	const unsigned char *s = buf;
	unsigned char lo, hi;
	size_t i = 0, k;
	int n;

	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		n = utf8_lead(s[i], &lo, &hi);
		if (n == 0)
			goto bad;
		if (i + 1 >= len || s[i + 1] < lo || s[i + 1] > hi)
			goto bad;
		for (k = 2; k < (size_t)n; k++)
			if (i + k >= len || (s[i + k] & 0xc0) != 0x80)
				goto bad;
		i += n;
	}
	return 0;
bad:
	if (bad_offset != NULL)
		*bad_offset = i;
	if (why != NULL)
		*why = utf8_why(s[i], i + 1 < len ? s[i + 1] : -1);
	return -1;
}

int
jsonl_utf8_check(const void *buf, size_t len, size_t *bad_offset)
{
	return jsonl_utf8_check_why(buf, len, bad_offset, NULL);
}
