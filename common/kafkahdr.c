/*
 * kafkahdr.c - the record header helpers of kafka.h: adding, reading and
 * copying librdkafka's headers by name, with the contract's rules for a
 * value read as a string or an integer.  They need no client, so they
 * live apart from kafka.c's handles and callbacks.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "kafka.h"
#include "util.h"

int
kafka_header_add_str(rd_kafka_headers_t *h, const char *name,
    const char *value)
{
	return rd_kafka_header_add(h, name, -1, value, -1) ==
	    RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

int
kafka_header_add_int64(rd_kafka_headers_t *h, const char *name, int64_t value)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, value);
	return kafka_header_add_str(h, name, buf);
}

const rd_kafka_headers_t *
kafka_msg_headers(const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *h;

	if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return NULL;
	return h;
}

int
kafka_header_get_str(const rd_kafka_headers_t *h, const char *name,
    char *buf, size_t len)
{
	const void *v;
	size_t sz = 0;

	if (h == NULL || rd_kafka_header_get_last(h, name, &v, &sz) !=
	    RD_KAFKA_RESP_ERR_NO_ERROR)
		v = NULL;
	return kafka_header_str(v, sz, buf, len);
}

int
kafka_header_str(const void *v, size_t sz, char *buf, size_t len)
{
	if (len > 0)
		buf[0] = '\0';
	if (v == NULL)
		return -1;
	if (sz >= len || sz > INT32_MAX || memchr(v, '\0', sz) != NULL)
		return -2;
	memcpy(buf, v, sz);
	buf[sz] = '\0';
	return (int)sz;
}

void
kafka_headers_find(const rd_kafka_headers_t *h, const char *const *names,
    size_t n, const void **vals, size_t *sizes)
{
	const char *name;
	const void *v;
	size_t i, next = 0, idx, sz;
	int k;

	for (i = 0; i < n; i++) {
		vals[i] = NULL;
		sizes[i] = 0;
	}
	if (h == NULL || n == 0)
		return;
	for (idx = 0; rd_kafka_header_get_all(h, idx, &name, &v, &sz) ==
	    RD_KAFKA_RESP_ERR_NO_ERROR; idx++)
		if ((k = util_name_index(names, n, next, name)) != -1) {
			vals[k] = v;
			sizes[k] = sz;
			next = (size_t)k + 1;
		}
}

int
kafka_header_get_int64(const rd_kafka_headers_t *h, const char *name,
    int64_t *v)
{
	char buf[32];
	const char *e;
	long long n;
	int r;

	if ((r = kafka_header_get_str(h, name, buf, sizeof(buf))) < 0)
		return r;
	n = util_strtonum(buf, INT64_MIN, INT64_MAX, &e);
	if (e != NULL)
		return -2;
	*v = n;
	return 0;
}

static int
name_in(const char *name, const char *const *list)
{
	for (; list != NULL && *list != NULL; list++)
		if (strcmp(name, *list) == 0)
			return 1;
	return 0;
}

rd_kafka_headers_t *
kafka_headers_copy_except(const rd_kafka_headers_t *src,
    const char *const *drop)
{
	rd_kafka_headers_t *dst;
	const char *name;
	const void *v;
	size_t i, sz;

	dst = rd_kafka_headers_new(src != NULL ? rd_kafka_header_cnt(src) : 4);
	for (i = 0; src != NULL &&
	    rd_kafka_header_get_all(src, i, &name, &v, &sz) ==
	    RD_KAFKA_RESP_ERR_NO_ERROR; i++)
		if (!name_in(name, drop))
			rd_kafka_header_add(dst, name, -1, v, v != NULL ?
			    (ssize_t)sz : 0);
	return dst;
}
