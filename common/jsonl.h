/*
 * jsonl.h - the JSON-lines reader every command uses for orders and events
 * on stdin or in files.
 *
 * It frames and checks bytes; it does not parse JSON (callers hand each
 * line to cJSON).  Per line it guarantees: at most maxlen bytes, no NUL
 * byte, well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF, no truncated sequence).  Rules:
 *
 * - Lines end at "\n"; a "\r" just before it is dropped (CRLF files), and a
 *   last line without a newline is still returned.
 * - Empty lines and lines of only spaces, tabs and carriage returns are
 *   skipped silently, whatever their length, but counted in line numbers.
 * - A UTF-8 byte order mark at the very start of the input is dropped.
 * - A line longer than maxlen bytes (not counting its "\n" or "\r\n") is
 *   rejected and skipped: the reader reads on to the next newline keeping
 *   only its first maxlen bytes, so memory stays bounded by maxlen
 *   whatever the input.
 * - A rejected line has an error message (jsonl_error()); byte offsets in
 *   it count from 0 at the start of the line.
 *
 * Messages carry neither name nor line number, so that a caller prints
 * them its own way, typically
 *
 *	log_error("%s:%ld: %s", jsonl_name(r), jsonl_lineno(r), jsonl_error(r));
 *
 * giving "orders.jsonl:3: invalid UTF-8 at byte offset 12: surrogate".
 *
 * The reader takes its bytes with fgets_unlocked(3), which stops at a
 * newline, so it never waits for more input than the line it returns: it
 * suits pipes fed as events happen.  A reader is not for use by several threads at once.
 */
#ifndef OF_JSONL_H
#define OF_JSONL_H

#include <stddef.h>
#include <stdio.h>

#define JSONL_MAXLEN_DEFAULT	(1024 * 1024)	/* 1 MiB */
#define JSONL_REJECT_HEAD	1024	/* jsonl_rejected(): a long line's bytes */

/* What jsonl_next() returns. */
enum jsonl_status {
	JSONL_LINE = 1,		/* a line: *line, *len set */
	JSONL_EOF = 0,		/* end of input */
	JSONL_REJECT = -1,	/* this line rejected and skipped; read on */
	JSONL_ERROR = -2	/* read error: stop; later calls say so too */
};

struct jsonl;

/*
 * A reader over fp, which the caller keeps and closes.  name is shown in
 * messages: NULL or "-" stands for standard input and is shown as "stdin";
 * anything else is copied as is.  maxlen 0 means JSONL_MAXLEN_DEFAULT.
 * Returns NULL with errno set (ENOMEM, or EINVAL for an absurd maxlen).
 */
struct jsonl	*jsonl_open(FILE *fp, const char *name, size_t maxlen);

/*
 * Opens path for reading ("-" is stdin, named "stdin") and returns a reader
 * that owns the file: jsonl_close() closes it (stdin is left open).
 * Returns NULL with errno set; the caller names path in its message.
 */
struct jsonl	*jsonl_open_file(const char *path, size_t maxlen);

/*
 * The next line.  JSONL_LINE: *line points to len bytes, NUL-terminated,
 * without the line end, valid until the next call.  JSONL_REJECT: the
 * line numbered jsonl_lineno() was skipped for the reason in jsonl_error().
 * JSONL_ERROR: reading failed or memory ran out (jsonl_error() says which,
 * with errno's text).  A read interrupted by a signal is such an error:
 * a command that must read on through signals installs its handlers with
 * SA_RESTART.
 */
int		 jsonl_next(struct jsonl *, const char **line, size_t *len);

/* The number of the line last returned or rejected, from 1; 0 before. */
long		 jsonl_lineno(const struct jsonl *);

/* The display name given to jsonl_open() ("stdin" for NULL or "-"). */
const char	*jsonl_name(const struct jsonl *);

/* Why the last line was rejected or reading failed; "" if neither. */
const char	*jsonl_error(const struct jsonl *);

/*
 * What the last jsonl_next() rejected, for a dead letter that carries it:
 * returns its bytes as read (without the line end; a byte order mark
 * kept), valid until the next call, and stores their number in *len and
 * the line's length in bytes in *total.  A line rejected for a NUL byte
 * or invalid UTF-8 is whole (*len == *total); of a line longer than
 * maxlen only the first JSONL_REJECT_HEAD bytes (at most maxlen) are
 * kept.  NULL, with both 0, when the last call rejected nothing.
 */
const char	*jsonl_rejected(const struct jsonl *, size_t *len,
		    size_t *total);

/* Frees the reader; closes the file only if jsonl_open_file() opened it. */
void		 jsonl_close(struct jsonl *);

/*
 * Checks that len bytes are well-formed UTF-8 (RFC 3629); NUL bytes are
 * valid here.  Returns 0 if so; -1 if not, storing the offset of the first
 * byte of the first bad sequence in *bad_offset unless it is NULL.
 */
int		 jsonl_utf8_check(const void *buf, size_t len,
		    size_t *bad_offset);

/* The same, also storing a short reason ("overlong encoding", ...). */
int		 jsonl_utf8_check_why(const void *buf, size_t len,
		    size_t *bad_offset, const char **why);

#endif
