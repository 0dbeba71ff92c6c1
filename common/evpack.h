/*
 * evpack.h - a payment.processed event in the compact binary form that
 * pay-process keeps as a payment's recorded outcome, in place of its JSON
 * text: a fraction of the size, so a fraction of the store's log and
 * pages (scripts/bench.d/FINDINGS.md, relay).
 *
 * Form 1 (EVPACK_MAGIC, read only): the magic (a byte no JSON text
 * starts with, so that a record written as JSON before reads as JSON),
 * the status (1 byte), the amount (8 bytes, big-endian), then each string
 * of the event as a 2-byte big-endian length and its bytes: id, source,
 * subject, time, traceparent, order_id, payment_id, currency, reason,
 * customer_id, email, payment_method.
 *
 * Form 2 (EVPACK_MAGIC2, written): the magic, the status, the amount, a
 * byte of flags, then what the flags keep in short form: the cause's id
 * (16 bytes, when the event's id, and perhaps its payment_id, are the
 * ones event_derive_id() makes from it, which are then left out), the
 * time in epoch milliseconds (8 bytes, when the text is util_rfc3339()'s
 * of them and the year at most 9999), the traceparent's fields (25
 * bytes, when it is of version 00); then the strings of form 1 the flags
 * do not leave out (also the source when it is EVPACK_SOURCE, the
 * subject when it is the order id), each with its length in 1 byte, or 2
 * for the source.  A payment of pay-process's simulator takes about 110
 * bytes instead of 230.
 *
 * The type is payment.processed.v1 by definition, and time_ms is the
 * time's.  event_serialize() of the event decoded is byte for byte that
 * of the event encoded.
 */
#ifndef OF_EVPACK_H
#define OF_EVPACK_H

#include <stddef.h>

#include "event.h"

#define EVPACK_MAGIC	0x01
#define EVPACK_MAGIC2	0x02
#define EVPACK_SOURCE	"/orderflow/pay-process"
/* The longest form: form 1 with every string at its limit. */
#define EVPACK_MAX	(1 + 1 + 8 + 1 + 12 * 2 + EVENT_ID_MAX + \
	EVENT_SOURCE_MAX + ORDER_ID_MAX + EVENT_TIME_MAX + TRACEPARENT_LEN + \
	2 * ORDER_ID_MAX + 3 + EVENT_REASON_MAX + ORDER_CUSTOMER_MAX + \
	ORDER_EMAIL_MAX + ORDER_PM_MAX)

/*
 * What a payment event was derived from: id, the id of the event it
 * answers, from which event_payment_processed() derived the payment's id
 * and, when payment_id_derived, its payment_id (no gateway gave one).
 * The caller vouches for both: the form keeps id in their place.
 */
struct evpack_cause {
	const char	*id;
	int		 payment_id_derived;
};

/*
 * Writes ev, a payment.processed.v1 event, into buf (EVPACK_MAX bytes)
 * in form 2; cause may be NULL.  Returns the length, or 0 (errno EINVAL)
 * for another kind of event.
 */
size_t	evpack_encode(const struct event *ev, const struct evpack_cause *cause,
	    unsigned char *buf);

/* Whether len bytes at buf are in either form (else JSON text). */
int	evpack_is(const void *buf, size_t len);

/*
 * Reads either form back into *ev.  Returns 0, or -1 (errno EBADMSG) when
 * the bytes are not a whole, well-formed event: a length past the end or
 * over its field's limit, bytes left over, a byte or flag out of place.
 */
int	evpack_decode(const void *buf, size_t len, struct event *ev);

/*
 * The JSON text of a recorded outcome of len bytes: the event in either
 * form, serialized, or a record written before the forms existed as it
 * is.  Returns it malloc'd and NUL-terminated, or NULL with errno
 * EBADMSG (a damaged form) or ENOMEM.
 */
char	*evpack_text(const void *buf, size_t len);

#endif
