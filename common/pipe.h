/*
 * pipe.h - the worker's pipe mode (worker.h): JSON lines from a file or
 * standard input instead of Kafka, and the in-process heap of records
 * waiting for their next attempt.
 *
 * pipe_run() reads the input with a thread of its own, which does
 * nothing but read (jsonl.h) into a ring of at most 64 lines and 1 MiB
 * (a longer line comes alone) and sleeps until the ring has drained to
 * half; SIGINT and SIGTERM never reach it.  On the caller's thread, in
 * input order, each line goes to route_handle() (route.h) and each line
 * jsonl.h rejects to route_dead_letter() as "invalid" with the bytes
 * jsonl_rejected() kept (and FLOW_H_ORIG_LENGTH when only a head);
 * a retry that came due goes before the next line.  While
 * WORKER_PIPE_RETRIES records wait, reading pauses.  It returns at the
 * end of the input once no retry waits, after the first error (w->rc),
 * or when the worker is stopped; retries still waiting then become dead
 * letters of kind "transient", so that no input is lost.
 *
 * Private to the worker (worker.c, route.c); commands use worker.h.
 */
#ifndef OF_PIPE_H
#define OF_PIPE_H

#include <stddef.h>
#include <stdint.h>

#include "timerheap.h"

struct worker;

/* Pipe mode: a record waiting for its next attempt. */
struct pipe_retry {
	int64_t	 due_ms;		/* monotonic */
	char	*value;
	size_t	 len;
	long	 lineno;
	int	 attempt;		/* the attempt it waits for */
	char	*why;			/* why the last one failed */
};

/*
 * The records waiting, a timerheap.h on due_ms: t.n of them, the first
 * due at timerheap_next(&t).  All zero is an empty heap.
 */
struct pipe_retries {
	struct timerheap	 t;
};

/* Adds r, whose value and why the heap then owns.  -1: out of memory. */
int	pipe_retries_push(struct pipe_retries *, const struct pipe_retry *r);

/* Takes out the record due first; the heap must not be empty. */
struct pipe_retry pipe_retries_pop(struct pipe_retries *);

/* Frees the records still waiting and the heap; it is empty again. */
void	pipe_retries_free(struct pipe_retries *);

/* Runs pipe mode on w->cf->input, as described above. */
void	pipe_run(struct worker *w);

#endif
