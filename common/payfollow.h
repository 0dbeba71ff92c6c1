/*
 * payfollow.h - order-serve's payment follower: consumes payment-processed
 * and sets the status of the orders order-serve stored (pending, then
 * approved or declined), so that GET /orders/ID shows the outcome.
 *
 * Guarantees: an event's offset is committed only after the transaction
 * that applied its batch committed, so a crash applies events again, never
 * loses them; applying one again changes nothing.  An event for an order
 * not stored here (order-submit's) or that is not a payment is passed
 * over.  A failed store transaction is retried every 500 ms while running()
 * returns 1, except STORE_RUNRECOVERY; its events are then not committed.
 *
 * Threads: none of its own.  All of it runs on the thread that calls
 * payfollow_poll() (order-serve's main thread), which also serves the
 * consumer's rebalances; payfollow_applied() may be read from any thread.
 *
 * Ownership: it owns its group consumer, from payfollow_open() to
 * payfollow_close(); it borrows the store.
 */
#ifndef OF_PAYFOLLOW_H
#define OF_PAYFOLLOW_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "opt.h"
#include "store.h"

struct payfollow;

/*
 * Subscribes to topic (payment-processed) with the group and properties
 * of o.  Events are read in either format with codec (borrowed, used on
 * the polling thread only); an Avro one whose schema the registry does
 * not give now is tried again every 500 ms while running() returns 1.
 * running() returns 0 once the command stops (a failed transaction is
 * then not retried).  Returns NULL with a message in err on a bad
 * property.
 */
struct payfollow *payfollow_open(const struct opt_kafka *o,
	    const char *topic, struct store *st, struct codec *codec,
	    int (*running)(void), char *err, size_t errlen);

/*
 * Applies one batch of events, waiting up to 100 ms for the first one.
 * Returns 0, or -1 on a fatal Kafka error (logged).
 */
int	payfollow_poll(struct payfollow *);

/* payment.processed events applied to a stored order so far. */
uint64_t payfollow_applied(struct payfollow *);

/*
 * Commits the last offsets, leaves the group and frees it all; logs a
 * warning when the offsets could not be committed.
 */
void	payfollow_close(struct payfollow *);

#endif /* OF_PAYFOLLOW_H */
