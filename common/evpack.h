/*
 * evpack.h - a payment.processed event in the compact binary form that
 * pay-process keeps as a payment's recorded outcome, in place of its JSON
 * text: a fraction of the size, so a fraction of the store's log and
 * pages (scripts/bench.d/FINDINGS.md, relay).
 *
 * The form: EVPACK_MAGIC (a byte no JSON text starts with, so that a
 * record written as JSON before reads as JSON), the status (1 byte), the
 * amount (8 bytes, big-endian), then each string of the event as a
 * 2-byte big-endian length and its bytes: id, source, subject, time,
 * traceparent, order_id, payment_id, currency, reason, customer_id,
 * email, payment_method.  The type is payment.processed.v1 by
 * definition, and time_ms is the time's.  event_serialize() of the
 * event decoded is byte for byte that of the event encoded.
 */
#ifndef OF_EVPACK_H
#define OF_EVPACK_H

#include <stddef.h>

#include "event.h"

#define EVPACK_MAGIC	0x01
/* The longest form: every string at its limit. */
#define EVPACK_MAX	(1 + 1 + 8 + 12 * 2 + EVENT_ID_MAX + \
	EVENT_SOURCE_MAX + ORDER_ID_MAX + EVENT_TIME_MAX + TRACEPARENT_LEN + \
	2 * ORDER_ID_MAX + 3 + EVENT_REASON_MAX + ORDER_CUSTOMER_MAX + \
	ORDER_EMAIL_MAX + ORDER_PM_MAX)

/*
 * Writes ev, a payment.processed.v1 event, into buf (EVPACK_MAX bytes).
 * Returns the length, or 0 (errno EINVAL) for another kind of event.
 */
size_t	evpack_encode(const struct event *ev, unsigned char *buf);

/* Whether len bytes at buf are in this form (else JSON text). */
int	evpack_is(const void *buf, size_t len);

/*
 * Reads the form back into *ev.  Returns 0, or -1 (errno EBADMSG) when
 * the bytes are not a whole, well-formed event: a length past the end or
 * over its field's limit, bytes left over, a byte out of place.
 */
int	evpack_decode(const void *buf, size_t len, struct event *ev);

/*
 * The JSON text of a recorded outcome of len bytes: the event in this
 * form, serialized, or a record written before the form existed as it
 * is.  Returns it malloc'd and NUL-terminated, or NULL with errno
 * EBADMSG (a damaged form) or ENOMEM.
 */
char	*evpack_text(const void *buf, size_t len);

#endif
