/*
 * orderdoc.h - the JSON documents order-serve keeps for an order: the
 * order as stored and as GET /orders/ID shows it, the body of the answer
 * 201, the outcome an Idempotency-Key replays, and the outbox record of
 * its order.created event.  All are built from a valid order on the HTTP
 * thread, so that the committer (committer.h) only writes; a payment
 * changes the stored order with orderdoc_paid() (payfollow.h).  The body
 * of an error answer is built here too, so that every JSON answer has
 * one home.
 *
 * Guarantees: the stored order starts "pending" with its event id and
 * created_at; a payment sets status, payment_id, updated_at and, when
 * declined, reason.  The outcome holds the SHA-256 of the request body,
 * so that a replay with another body can be told apart (422).
 *
 * Threads: none; nothing is shared.  Ownership: every string is malloc'd
 * and belongs to its document (orderdoc_free()) or to the caller.
 */
#ifndef OF_ORDERDOC_H
#define OF_ORDERDOC_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

struct orderdoc {
	struct order	 ord;		/* the caller's order_parse() */
	struct event	 ev;		/* its order.created event */
	char		*event_json;
	char		*outbox;	/* "ORDER_ID\nTRACEPARENT\nEVENT" */
	char		*order_json;	/* as stored */
	char		*created;	/* the body of the answer 201 */
	char		*outcome;	/* keyed only: what a replay answers */
	char		 fp[65];	/* keyed only: body's SHA-256, hex */
};

/*
 * Builds the documents of d->ord (parsed from body) at now_ms, its event
 * from source with traceparent ("" for none), and with keyed the
 * fingerprint and the outcome.  Returns 0, or -1 when one cannot be built
 * (orderdoc_free() frees what was).
 */
int	orderdoc_build(struct orderdoc *d, const char *source,
	    const char *traceparent, const char *body, size_t len, int keyed,
	    int64_t now_ms);

/* Frees what d holds, its order and event included. */
void	orderdoc_free(struct orderdoc *d);

/*
 * The stored order order_json with a payment's outcome applied (reason is
 * kept only when declined).  Returns a malloc'd string, or NULL when
 * order_json is not JSON.  Applying the same payment again gives the same
 * document.
 */
char	*orderdoc_paid(const char *order_json, enum event_pay_status status,
	    const char *payment_id, const char *reason, const char *time);

/*
 * What a request whose body has the fingerprint fp gets when its key's
 * stored outcome (outcome_len bytes) is replayed: the first answer again,
 * 422 when fp differs (another body), 500 when the outcome cannot be read.
 * Returns the status and sets *body to a malloc'd JSON body.
 */
int	 orderdoc_replay(const char *outcome, size_t outcome_len,
	    const char *fp, char **body);

/* The body of an error answer: {"error": msg, "field": field}, field */
/* left out when NULL or "" (the whole body).  Returns a malloc'd string. */
char	*orderdoc_error(const char *msg, const char *field);

#endif /* OF_ORDERDOC_H */
