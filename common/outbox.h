/*
 * outbox.h - order-serve's outbox relay: one thread that publishes the
 * outbox records the committer (committer.h) reads for it, and hands each
 * acknowledged one back to the committer to be deleted.
 *
 * Guarantees: records are produced in sequence order, keyed by order id,
 * with their content-type and traceparent headers, by an idempotent
 * producer; a record leaves the outbox only after the broker acknowledged
 * it (committer_ack()).  A failed one is produced again after
 * OUTBOX_RETRY_MS.  At most the committer's relay_max records are
 * unacknowledged at once.  What is unacknowledged when the relay stops
 * stays in the outbox and is published at the next start, with the same
 * event id.
 *
 * Threads: outbox_start() starts the relay's thread, which alone produces,
 * polls the producer and runs its delivery callbacks; the other functions
 * are called from any thread (main's shutdown sequence).
 *
 * Ownership: the relay owns the producer from outbox_start() on and
 * destroys it as its thread ends; it borrows the committer, which must
 * outlive it.
 */
#ifndef OF_OUTBOX_H
#define OF_OUTBOX_H

#include <stdint.h>

#include "codec.h"
#include "committer.h"
#include "kafka.h"

/* A record the broker did not acknowledge is produced again after this. */
#define OUTBOX_RETRY_MS	1000

struct outbox_conf {
	struct kafka_producer	*prod;
	const char		*topic;		/* order-created */
	/*
	 * The records' format, its schema prepared for topic; NULL: JSON.
	 * Used by the relay's thread only.
	 */
	struct codec		*codec;
	struct committer	*cm;
	void			(*fatal)(void);	/* called by the relay's */
						/* thread on a fatal Kafka */
						/* error, as it ends */
};

struct outbox;

/* Starts the relay's thread; NULL when it cannot be created. */
struct outbox	*outbox_start(const struct outbox_conf *);

/*
 * 1 when nothing is left to publish: no record held, none known unread in
 * the outbox, no acknowledgement waiting to be deleted.
 */
int	outbox_idle(struct outbox *);

/* 1 once the producer raised a fatal error (the relay has then ended). */
int	outbox_failed(struct outbox *);

/* Asks the relay to end once it is idle (outbox_idle()). */
void	outbox_drain(struct outbox *);

/*
 * Ends the relay now and returns once its thread has ended: it waits up
 * to a second for the acknowledgements of records in flight, destroys the
 * producer and frees the records it held (they stay in the outbox).
 */
void	outbox_stop(struct outbox *);

/*
 * Records acknowledged, deliveries that failed (each is produced again),
 * and records held now (produced or waiting to be produced again).
 */
void	outbox_stats(struct outbox *, uint64_t *published,
	    uint64_t *failures, uint64_t *in_flight);

/* Frees a stopped relay. */
void	outbox_free(struct outbox *);

#endif /* OF_OUTBOX_H */
