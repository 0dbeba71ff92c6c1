/*
 * route.h - where the outcome of one input goes, by the rules worker.h
 * states: an output to out_topic or standard output; a retry to
 * retry_topic (Kafka input) or to pipe mode's heap (pipe.h); a dead
 * letter to dlq_topic or, with output "-", as a JSON line to dlq_file.
 * Retry and dead-letter records carry the input's headers with the
 * orderflow.* control headers set again.
 *
 * A record produced for an input marks the input's offset done once the
 * broker acknowledged it (kafka_consumer_done()); one it refused counts
 * as failed and ends the run with OF_EXIT_KAFKA.  Delivery reports come
 * on the worker's thread, from kafka_poll() and kafka_flush().  Errors go
 * to worker_fail(); the counters of struct worker_stats are kept here.
 *
 * Private to the worker (worker.c, pipe.c); commands use worker.h.
 */
#ifndef OF_ROUTE_H
#define OF_ROUTE_H

#include <librdkafka/rdkafka.h>

#include "worker.h"

struct worker;

/*
 * Hands in to the command's handler (its start with job when job is not
 * NULL) and sends the outcome where it goes, which it returns; nothing is
 * sent for WORKER_PENDING (route_outcome() follows).  src holds the Kafka
 * record's headers (NULL in pipe mode), which a retry or dead letter
 * keeps.
 */
enum worker_outcome route_handle(struct worker *,
	    const struct worker_input *in, const rd_kafka_headers_t *src,
	    struct worker_job *job);

/*
 * Sends the outcome r of in where it goes, as route_handle() does with a
 * handler's: out (may be NULL) is freed, why is the failure's message.
 */
void	route_outcome(struct worker *, const struct worker_input *in,
	    const rd_kafka_headers_t *src, enum worker_outcome r,
	    struct worker_output *out, const char *why);

/*
 * Sends in to the dead letters with kind ("invalid", "permanent",
 * "exhausted" or "transient") and why as orderflow.error.kind and
 * .message.  An invalid input in pipe mode counts as rejected (worker_run()
 * then returns OF_EXIT_REJECTED).
 */
/* Frees what the deliveries kept; after the producer is destroyed. */
void	route_free(struct worker *);

void	route_dead_letter(struct worker *, const struct worker_input *in,
	    const rd_kafka_headers_t *src, const char *kind, const char *why);

#endif
