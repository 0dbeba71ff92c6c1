/*
 * table.c - topic-admin's rows as an aligned table or as JSON lines
 * (table.h).  Table mode keeps every cell as a string until table_end(),
 * as a column's width is known only once its last row is in.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "exitcode.h"
#include "log.h"
#include "table.h"
#include "util.h"

/* Tables printed so far by the process: a blank line before the next. */
static int tables_printed;

void
table_fmt_ll(char *buf, size_t len, long long v)
{
	snprintf(buf, len, "%lld", v);
}

void
table_fmt_ids(char *buf, size_t len, const int32_t *ids, int n)
{
	size_t off = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < n && off < len; i++)
		off += snprintf(buf + off, len - off, "%s%d", i ? "," : "",
		    (int)ids[i]);
}

void
table_init(struct table *out, const struct table_col *cols, size_t ncol,
    int json)
{
	memset(out, 0, sizeof(*out));
	out->cols = cols;
	out->ncol = ncol;
	out->json = json;
}

static int
parse_ll(const char *s, long long *v)
{
	char *end;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	*v = strtoll(s, &end, 10);
	return *end == '\0' && errno == 0 ? 0 : -1;
}

static void
json_add(cJSON *obj, const struct table_col *c, const char *v)
{
	cJSON *arr;
	char *dup, *tok, *save;
	long long n;

	if (v == NULL)
		return;
	switch (c->type) {
	case TABLE_STR:
		cJSON_AddStringToObject(obj, c->key, v);
		break;
	case TABLE_INT:
		if (parse_ll(v, &n) == 0)
			cJSON_AddNumberToObject(obj, c->key, (double)n);
		break;
	case TABLE_LIST:
		arr = cJSON_AddArrayToObject(obj, c->key);
		dup = util_xstrdup(v);
		for (tok = strtok_r(dup, ",", &save); tok != NULL;
		    tok = strtok_r(NULL, ",", &save))
			if (parse_ll(tok, &n) == 0)
				cJSON_AddItemToArray(arr,
				    cJSON_CreateNumber((double)n));
		free(dup);
		break;
	}
}

static void
table_json(const struct table *out, const char *const *v)
{
	cJSON *obj;
	char *s;
	size_t i;

	if ((obj = cJSON_CreateObject()) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	for (i = 0; i < out->ncol; i++)
		json_add(obj, &out->cols[i], v[i]);
	if ((s = cJSON_PrintUnformatted(obj)) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	printf("%s\n", s);
	cJSON_free(s);
	cJSON_Delete(obj);
}

void
table_row(struct table *out, const char *const *v)
{
	char **cells;
	size_t i;

	if (out->json) {
		table_json(out, v);
		return;
	}
	cells = realloc(out->cells, (out->nrows + 1) * out->ncol *
	    sizeof(*cells));
	if (cells == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	out->cells = cells;
	cells += out->nrows++ * out->ncol;
	for (i = 0; i < out->ncol; i++)
		cells[i] = util_xstrdup(v[i] != NULL ? v[i] : "-");
}

static void
table_line(const struct table *out, const size_t *w, const char *const *v)
{
	size_t i;

	for (i = 0; i < out->ncol; i++) {
		const char *sep = i + 1 < out->ncol ? "  " : "\n";

		if (out->cols[i].type != TABLE_STR)
			printf("%*s%s", (int)w[i], v[i], sep);
		else if (i + 1 < out->ncol)
			printf("%-*s%s", (int)w[i], v[i], sep);
		else
			printf("%s%s", v[i], sep);
	}
}

void
table_end(struct table *out)
{
	const char *head[TABLE_MAXCOL];
	size_t w[TABLE_MAXCOL], i, r;

	if (out->json || out->nrows == 0 || out->ncol > TABLE_MAXCOL)
		goto done;
	for (i = 0; i < out->ncol; i++) {
		head[i] = out->cols[i].head;
		w[i] = strlen(head[i]);
		for (r = 0; r < out->nrows; r++)
			if (strlen(out->cells[r * out->ncol + i]) > w[i])
				w[i] = strlen(out->cells[r * out->ncol + i]);
	}
	if (tables_printed++ > 0)
		putchar('\n');
	table_line(out, w, head);
	for (r = 0; r < out->nrows; r++)
		table_line(out, w, (const char *const *)out->cells +
		    r * out->ncol);
done:
	for (i = 0; i < out->nrows * out->ncol; i++)
		free(out->cells[i]);
	free(out->cells);
	out->cells = NULL;
	out->nrows = 0;
}
