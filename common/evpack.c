/*
 * evpack.c - the compact binary form of a recorded payment event
 * (evpack.h).  Strings go in with their lengths, not escaped; decoding
 * checks every length against its field's limit and the whole against
 * the bytes given, so a damaged record is an error, never a short read.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evpack.h"
#include "util.h"

/* The event's strings in their order in the form, with their limits. */
struct field {
	size_t	off;		/* in struct event */
	size_t	max;		/* longest, without the NUL */
};

#define EV(m)	offsetof(struct event, m)
#define PAY(m)	(offsetof(struct event, payment) + \
	offsetof(struct event_payment, m))

static const struct field fields[] = {
	{ EV(id), EVENT_ID_MAX },
	{ EV(source), EVENT_SOURCE_MAX },
	{ EV(subject), ORDER_ID_MAX },
	{ EV(time), EVENT_TIME_MAX },
	{ EV(traceparent), TRACEPARENT_LEN },
	{ PAY(order_id), ORDER_ID_MAX },
	{ PAY(payment_id), ORDER_ID_MAX },
	{ PAY(currency), 3 },
	{ PAY(reason), EVENT_REASON_MAX },
	{ PAY(customer_id), ORDER_CUSTOMER_MAX },
	{ PAY(email), ORDER_EMAIL_MAX },
	{ PAY(payment_method), ORDER_PM_MAX },
};

#define NFIELDS	(sizeof(fields) / sizeof(fields[0]))

size_t
evpack_encode(const struct event *ev, unsigned char *buf)
{
	const char *s;
	uint64_t a;
	size_t i, n, len = 0;
	int j;

	if (ev->kind != EVENT_PAYMENT_PROCESSED_V1) {
		errno = EINVAL;
		return 0;
	}
	buf[len++] = EVPACK_MAGIC;
	buf[len++] = (unsigned char)ev->payment.status;
	a = (uint64_t)ev->payment.amount;
	for (j = 56; j >= 0; j -= 8)
		buf[len++] = (unsigned char)(a >> j);
	for (i = 0; i < NFIELDS; i++) {
		s = (const char *)ev + fields[i].off;
		n = strnlen(s, fields[i].max);
		buf[len++] = (unsigned char)(n >> 8);
		buf[len++] = (unsigned char)n;
		memcpy(buf + len, s, n);
		len += n;
	}
	return len;
}

int
evpack_is(const void *buf, size_t len)
{
	return len > 0 && *(const unsigned char *)buf == EVPACK_MAGIC;
}

static int
bad(void)
{
	errno = EBADMSG;
	return -1;
}

int
evpack_decode(const void *buf, size_t len, struct event *ev)
{
	const unsigned char *p = buf, *end = p + len;
	uint64_t a = 0;
	size_t i, n;
	char *s;
	int j;

	memset(ev, 0, sizeof(*ev));
	if (len < 10 || p[0] != EVPACK_MAGIC ||
	    (p[1] != EVENT_PAY_APPROVED && p[1] != EVENT_PAY_DECLINED))
		return bad();
	ev->kind = EVENT_PAYMENT_PROCESSED_V1;
	ev->payment.status = (enum event_pay_status)p[1];
	for (j = 0; j < 8; j++)
		a = a << 8 | p[2 + j];
	if (a > (uint64_t)ORDER_TOTAL_MAX)
		return bad();
	ev->payment.amount = (int64_t)a;
	p += 10;
	for (i = 0; i < NFIELDS; i++) {
		if (end - p < 2)
			return bad();
		n = (size_t)p[0] << 8 | p[1];
		p += 2;
		if (n > fields[i].max || (size_t)(end - p) < n ||
		    memchr(p, '\0', n) != NULL)
			return bad();
		s = (char *)ev + fields[i].off;
		memcpy(s, p, n);
		s[n] = '\0';
		p += n;
	}
	if (p != end || (ev->time_ms = util_rfc3339_parse(ev->time)) < 0)
		return bad();
	snprintf(ev->type, sizeof(ev->type), "%s",
	    event_kind_type(ev->kind));
	return 0;
}

char *
evpack_text(const void *buf, size_t len)
{
	struct event ev;
	char *text;

	if (evpack_is(buf, len))
		return evpack_decode(buf, len, &ev) == 0 ?
		    event_serialize(&ev, NULL) : NULL;
	if ((text = malloc(len + 1)) == NULL)
		return NULL;
	memcpy(text, buf, len);
	text[len] = '\0';
	return text;
}
