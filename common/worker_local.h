/*
 * worker_local.h - what the three files of the worker share and nothing
 * else includes: the state of one worker_run() and the calls between
 * worker.c (the run, Kafka mode), route.c (where outcomes go) and pipe.c
 * (pipe mode).  Commands see worker.h only.
 *
 * Everything here runs on the worker's thread.  w->rc holds the first
 * error of the run; once it is set, the loops end and nothing is taken
 * from the input any more.
 */
#ifndef OF_WORKER_LOCAL_H
#define OF_WORKER_LOCAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "flow.h"
#include "kafka.h"
#include "pipe.h"
#include "worker.h"

#define WHY_MAX			512	/* a handler's why, with its NUL */

struct pause;
struct keyq;

struct worker {
	const struct worker_config *cf;
	struct worker_stats	*st;
	struct kafka_producer	*p;
	struct kafka_consumer	*c;
	FILE			*dlq_fp;
	const char		*in_name;	/* pipe mode: for messages */
	struct pause		*pauses;
	size_t			 npauses;
	struct pipe_retries	 retries;	/* pipe mode: to retry */
	int			 rc;		/* the first error, or OK */
	unsigned long		 rejected;	/* pipe mode: invalid inputs */
	int64_t			 next_tick;
	int64_t			 next_report;
	/* Concurrency (inflight.c): with cf->start only. */
	struct keyq		*kq;		/* jobs by key: running, held */
	struct worker_job	*ready;		/* to start, in order */
	struct worker_job	*ready_tail;
	struct delivery		*spare_deliveries; /* route.c's, for reuse */
	size_t			 nspare_deliveries;
	struct worker_job	*spare_jobs;	/* finished, for reuse */
	size_t			 nspare_jobs;
	struct timerheap	 timers;	/* Kafka: retries not due (epoch) */
	size_t			 pending;	/* started, not complete */
	int			 holding;	/* fetching paused: full */
	int64_t			 full_since;	/* mono ms; 0: not full */
};

/* Sets w->rc to code unless an error came first. */
void	worker_fail(struct worker *, int code);

/* Calls the config's tick and report hooks when they are due. */
void	worker_periodic(struct worker *);

/* 0 once worker_stop(), SIGINT or SIGTERM asked the run to end. */
int	worker_running(void);

/*
 * inflight.c: the records in flight.  inflight_submit() hands an input
 * to the handler (without cf->start: route_handle() at once), holding
 * it behind an earlier record of its key; inflight_hold() keeps a retry
 * record until due_ms (epoch ms; -1: the heap is full, nothing changed);
 * inflight_run() starts what is due and ready and pumps the calls in
 * flight, waiting at most wait_ms; inflight_drain() runs until nothing
 * is in flight or the deadline (monotonic) passed, then drops the
 * retries held (their offsets were never done: they come again).
 */
int	inflight_init(struct worker *);
void	inflight_free(struct worker *);
void	inflight_submit(struct worker *, const struct worker_input *in,
	    const rd_kafka_headers_t *src);
/*
 * inflight_submit() with the ordering key taken already (pipe mode: by
 * the reader's thread, with inflight_key_of()); key NULL: none taken.
 */
void	inflight_submit_keyed(struct worker *, const struct worker_input *in,
	    const rd_kafka_headers_t *src, const char *key, size_t keylen);
/*
 * inflight_submit_keyed() taking over owned, the record's headers
 * detached from its message, instead of copying src.
 */
void	inflight_submit_owned(struct worker *, const struct worker_input *in,
	    const rd_kafka_headers_t *src, rd_kafka_headers_t *owned,
	    const char *key, size_t keylen);
/*
 * The ordering key of a line of pipe mode, the event's subject ("" when
 * it has none), malloc'd; NULL when out of memory.  Thread-safe.
 */
char	*inflight_key_of(const void *line, size_t len, size_t *keylen);
int	inflight_hold(struct worker *, const struct worker_input *in,
	    const rd_kafka_headers_t *src, int64_t due_ms);
void	inflight_run(struct worker *, int wait_ms);
void	inflight_drain(struct worker *, int64_t deadline);
/*
 * Records held (started, ready, waiting for their key); the most held
 * at once (the concurrency and a backlog as large, at least 64), and
 * whether that many are.
 */
size_t	inflight_held(const struct worker *);
size_t	inflight_max(const struct worker *);
int	inflight_full(const struct worker *);
/* Whether effects are pending (the loop should pump, not sleep). */
int	inflight_busy(const struct worker *);
/* Epoch ms of the first retry held, or INT64_MAX. */
int64_t	inflight_next_due(const struct worker *);

#endif
