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
};

/* Sets w->rc to code unless an error came first. */
void	worker_fail(struct worker *, int code);

/* Calls the config's tick and report hooks when they are due. */
void	worker_periodic(struct worker *);

/* 0 once worker_stop(), SIGINT or SIGTERM asked the run to end. */
int	worker_running(void);

#endif
