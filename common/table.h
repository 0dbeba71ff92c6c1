/*
 * table.h - the output of topic-admin(1): rows of named columns, printed
 * as one aligned table when the rows are complete, or as one JSON object
 * a line (-J) as each row comes.
 *
 * Table mode: rows are kept until table_end(), which prints a heading
 * line of the column heads, then the rows; each column as wide as its
 * widest cell, two spaces between columns, numbers (TABLE_INT,
 * TABLE_LIST) right-aligned, strings left-aligned, the last column
 * unpadded.  A NULL cell shows as "-".  Every table after the first one
 * the process prints is preceded by a blank line.  A table without rows
 * prints nothing, nor does one of more than TABLE_MAXCOL columns.
 *
 * JSON mode: table_row() prints the row at once, as one object keyed by
 * the columns' keys, in column order; a cell that is NULL or does not
 * read as its column's type has no key (see enum table_type).
 *
 * Output goes to stdout through stdio; checking that it was written is
 * the caller's (util_stdout_flush()).  Out of memory is fatal (exit 1).
 * Threads: none; one thread at a time (the blank line between tables is
 * counted for the whole process).
 */
#ifndef OF_TABLE_H
#define OF_TABLE_H

#include <stddef.h>
#include <stdint.h>

#define TABLE_MAXCOL	16

enum table_type {
	TABLE_STR,	/* NULL: "-" in the table, no key in JSON */
	TABLE_INT,	/* not a number ("-", "total"): no key in JSON */
	TABLE_LIST	/* "1,2,3": a JSON array of numbers */
};

/* A column: its heading in the table, its key in JSON, its type. */
struct table_col {
	const char	*head;
	const char	*key;
	enum table_type	 type;
};

/* One table being printed; its members are the module's own. */
struct table {
	const struct table_col	*cols;
	size_t			 ncol;
	int			 json;
	char			**cells;
	size_t			 nrows;
};

/*
 * Starts a table of ncol columns, cols[] (kept, not copied: it must
 * outlive the table); json selects JSON mode.
 */
void	table_init(struct table *, const struct table_col *cols,
	    size_t ncol, int json);

/* One row of ncol values (copied); v[i] may be NULL. */
void	table_row(struct table *, const char *const *v);

/* Prints the table in table mode, then frees its rows: it may be reused. */
void	table_end(struct table *);

/* v in decimal, as a TABLE_INT cell. */
void	table_fmt_ll(char *buf, size_t len, long long v);

/* The n ids comma-separated ("1,2,3"), as a TABLE_LIST cell; cut at len. */
void	table_fmt_ids(char *buf, size_t len, const int32_t *ids, int n);

#endif
