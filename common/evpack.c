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

#include <uuid/uuid.h>

#include "evpack.h"
#include "util.h"

/* Form 2's flags: what it keeps in a shorter form, or leaves out. */
#define F_CAUSE		0x01	/* id derived from the cause, kept */
#define F_PID		0x02	/* payment_id derived from the cause too */
#define F_SOURCE	0x04	/* source is EVPACK_SOURCE */
#define F_SUBJECT	0x08	/* subject is the order id */
#define F_TIME		0x10	/* time is util_rfc3339() of its ms */
#define F_TRACE		0x20	/* traceparent, version 00, as bytes */
#define F_ALL		0x3f

/* The last millisecond of year 9999: form 2's times stop there. */
#define TIME_MS_MAX	INT64_C(253402300799999)

#define UUID_BYTES	16u
#define TRACE_BYTES	((size_t)TRACEPARENT_BYTES)

/* The event's strings in their order in the form, with their limits. */
struct field {
	size_t	off;		/* in struct event */
	size_t	max;		/* longest, without the NUL */
	int	flag;		/* form 2 leaves it out under this flag */
};

#define EV(m)	offsetof(struct event, m)
#define PAY(m)	(offsetof(struct event, payment) + \
	offsetof(struct event_payment, m))

static const struct field fields[] = {
	{ EV(id), EVENT_ID_MAX, F_CAUSE },
	{ EV(source), EVENT_SOURCE_MAX, F_SOURCE },
	{ EV(subject), ORDER_ID_MAX, F_SUBJECT },
	{ EV(time), EVENT_TIME_MAX, F_TIME },
	{ EV(traceparent), TRACEPARENT_LEN, F_TRACE },
	{ PAY(order_id), ORDER_ID_MAX, 0 },
	{ PAY(payment_id), ORDER_ID_MAX, F_PID },
	{ PAY(currency), 3, 0 },
	{ PAY(reason), EVENT_REASON_MAX, 0 },
	{ PAY(customer_id), ORDER_CUSTOMER_MAX, 0 },
	{ PAY(email), ORDER_EMAIL_MAX, 0 },
	{ PAY(payment_method), ORDER_PM_MAX, 0 },
};

#define NFIELDS	(sizeof(fields) / sizeof(fields[0]))

/* Form 1 writes every length in 2 bytes; form 2 in 1 where it fits. */
static size_t
len_width(int magic, size_t max)
{
	return magic == EVPACK_MAGIC2 && max <= 255 ? 1 : 2;
}

/* The flags of ev's form 2: what can be left out or kept shorter. */
static int
flags_of(const struct event *ev, const struct evpack_cause *cause,
    unsigned char uuid[UUID_BYTES], unsigned char trace[TRACE_BYTES])
{
	char t[UTIL_RFC3339_LEN + 1];
	int f = 0;

	if (cause != NULL && cause->id != NULL &&
	    event_uuid_bytes(cause->id, uuid) == 0)
		f |= F_CAUSE | (cause->payment_id_derived ? F_PID : 0);
	if (strcmp(ev->source, EVPACK_SOURCE) == 0)
		f |= F_SOURCE;
	if (strcmp(ev->subject, ev->payment.order_id) == 0)
		f |= F_SUBJECT;
	if (ev->time_ms >= 0 && ev->time_ms <= TIME_MS_MAX) {
		util_rfc3339(ev->time_ms, t, sizeof(t));
		if (strcmp(t, ev->time) == 0)
			f |= F_TIME;
	}
	if (trace_to_bytes(ev->traceparent, trace) == 0)
		f |= F_TRACE;
	return f;
}

size_t
evpack_encode(const struct event *ev, const struct evpack_cause *cause,
    unsigned char *buf)
{
	unsigned char uuid[UUID_BYTES], trace[TRACE_BYTES], *p = buf;
	const char *s;
	size_t i, n;
	int f;

	if (ev->kind != EVENT_PAYMENT_PROCESSED_V1) {
		errno = EINVAL;
		return 0;
	}
	f = flags_of(ev, cause, uuid, trace);
	*p++ = EVPACK_MAGIC2;
	*p++ = (unsigned char)ev->payment.status;
	util_put_be64(p, (uint64_t)ev->payment.amount);
	p += 8;
	*p++ = (unsigned char)f;
	if (f & F_CAUSE) {
		memcpy(p, uuid, UUID_BYTES);
		p += UUID_BYTES;
	}
	if (f & F_TIME) {
		util_put_be64(p, (uint64_t)ev->time_ms);
		p += 8;
	}
	if (f & F_TRACE) {
		memcpy(p, trace, TRACE_BYTES);
		p += TRACE_BYTES;
	}
	for (i = 0; i < NFIELDS; i++) {
		if (f & fields[i].flag)
			continue;
		s = (const char *)ev + fields[i].off;
		n = strnlen(s, fields[i].max);
		if (len_width(EVPACK_MAGIC2, fields[i].max) == 2)
			*p++ = (unsigned char)(n >> 8);
		*p++ = (unsigned char)n;
		memcpy(p, s, n);
		p += n;
	}
	return (size_t)(p - buf);
}

int
evpack_is(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	return len > 0 && (*p == EVPACK_MAGIC || *p == EVPACK_MAGIC2);
}

static int
bad(void)
{
	errno = EBADMSG;
	return -1;
}

/* The strings at p, end of either form, those f does not leave out. */
static int
strings_in(int magic, int f, const unsigned char *p,
    const unsigned char *end, struct event *ev)
{
	size_t i, n, w;
	char *s;

	for (i = 0; i < NFIELDS; i++) {
		if (f & fields[i].flag)
			continue;
		w = len_width(magic, fields[i].max);
		if ((size_t)(end - p) < w)
			return bad();
		n = w == 1 ? p[0] : (size_t)p[0] << 8 | p[1];
		p += w;
		if (n > fields[i].max || (size_t)(end - p) < n ||
		    memchr(p, '\0', n) != NULL)
			return bad();
		s = (char *)ev + fields[i].off;
		memcpy(s, p, n);
		s[n] = '\0';
		p += n;
	}
	return p == end ? 0 : bad();
}

/* Form 2's shorter parts back into text; ids derived again. */
static int
derived_in(int f, const unsigned char **pp, const unsigned char *end,
    struct event *ev)
{
	const unsigned char *p = *pp;
	char cause[EVENT_UUID_LEN + 1], u[EVENT_UUID_LEN + 1];
	uint64_t ms;

	if ((f & ~F_ALL) || ((f & F_PID) && !(f & F_CAUSE)) ||
	    (size_t)(end - p) < ((f & F_CAUSE) ? UUID_BYTES : 0u) +
	    ((f & F_TIME) ? 8u : 0u) + ((f & F_TRACE) ? TRACE_BYTES : 0u))
		return bad();
	if (f & F_CAUSE) {
		uuid_unparse_lower(p, cause);
		p += UUID_BYTES;
		if (event_derive_id(cause, EVENT_PURPOSE_PAYMENT, ev->id) == -1)
			return bad();
		if (f & F_PID) {
			if (event_derive_id(cause, EVENT_PURPOSE_PAYMENT_ID,
			    u) == -1)
				return bad();
			snprintf(ev->payment.payment_id,
			    sizeof(ev->payment.payment_id), "p-%s", u);
		}
	}
	if (f & F_TIME) {
		if ((ms = util_get_be64(p)) > (uint64_t)TIME_MS_MAX)
			return bad();
		ev->time_ms = (int64_t)ms;
		util_rfc3339(ev->time_ms, ev->time, sizeof(ev->time));
		p += 8;
	}
	if (f & F_TRACE) {
		trace_from_bytes(p, ev->traceparent);
		p += TRACE_BYTES;
	}
	if (f & F_SOURCE)
		snprintf(ev->source, sizeof(ev->source), "%s", EVPACK_SOURCE);
	*pp = p;
	return 0;
}

int
evpack_decode(const void *buf, size_t len, struct event *ev)
{
	const unsigned char *p = buf, *end = p + len;
	uint64_t a;
	int f = 0, magic;

	memset(ev, 0, sizeof(*ev));
	if (len < 10 || !evpack_is(buf, len) ||
	    (p[1] != EVENT_PAY_APPROVED && p[1] != EVENT_PAY_DECLINED))
		return bad();
	magic = p[0];
	ev->kind = EVENT_PAYMENT_PROCESSED_V1;
	ev->payment.status = (enum event_pay_status)p[1];
	if ((a = util_get_be64(p + 2)) > (uint64_t)ORDER_TOTAL_MAX)
		return bad();
	ev->payment.amount = (int64_t)a;
	p += 10;
	if (magic == EVPACK_MAGIC2) {
		if (p == end)
			return bad();
		f = *p++;
		if (derived_in(f, &p, end, ev) == -1)
			return -1;
	}
	if (strings_in(magic, f, p, end, ev) == -1)
		return -1;
	if (f & F_SUBJECT)
		memcpy(ev->subject, ev->payment.order_id,
		    sizeof(ev->subject));
	if (!(f & F_TIME) &&
	    (ev->time_ms = util_rfc3339_parse(ev->time)) < 0)
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
