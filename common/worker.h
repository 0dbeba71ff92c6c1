/*
 * worker.h - the consume, handle, produce loop that pay-process and notify
 * share: one implementation of the retry topic, the dead-letter topic, pipe
 * mode, signals and graceful shutdown.
 *
 * The command supplies a handler that turns one input event into an
 * outcome; the worker does everything around it: worker.c runs it and
 * reads Kafka, route.h sends each outcome where it goes, pipe.h is pipe
 * mode.  Where things go:
 *
 *	input	 in_topic and retry_topic, consumed in the command's group
 *		 (input NULL), or JSON lines from a file ("-": stdin)
 *	outputs	 out_topic, or standard output as JSON lines (output "-")
 *	retries	 retry_topic when the input is Kafka; in-process otherwise
 *	dead	 dlq_topic, or JSON lines to dlq_file (standard error when
 *	letters	 NULL) when output is "-"
 *
 * Kafka input (in_topic and retry_topic consumed in the command's group):
 *   - WORKER_DONE with an output: the output goes to out_topic; the input's
 *     offset is done once the broker acknowledged the output.  Without an
 *     output (notify's effect already happened), it is done at once.
 *   - WORKER_TRANSIENT: the input goes to retry_topic with the headers of
 *     orderflow(7): orderflow.attempt + 1, orderflow.not-before = now +
 *     worker_backoff() (epoch ms), orderflow.original.* and
 *     orderflow.error.* (kind "transient").  After max_attempts attempts
 *     it goes to dlq_topic with kind "exhausted" instead.
 *   - WORKER_PERMANENT / WORKER_INVALID: dlq_topic with kind "permanent" /
 *     "invalid" and the reason.
 *   Retry and dead-letter records keep the input's key, value and other
 *   headers.  orderflow.original.* name where the record was first read:
 *   a record read from retry_topic keeps the ones it carries.  A dead
 *   letter's orderflow.attempt is the attempt that failed.
 *   The input's offset is done once the retry or DLQ record is
 *   acknowledged.  A retry record whose orderflow.not-before is in the
 *   future waits in memory (at most WORKER_RETRY_WAITING) until it is
 *   due, its offset pending, while the records behind it go on; with
 *   that many waiting, its partition is paused instead, sought back to
 *   that record and resumed when it is due.  It is due at
 *   orderflow.not-before, but never later than backoff_max_ms from when
 *   it was read (a header further ahead is logged); a header that is no
 *   decimal number is ignored, so the record is due at once.  The loop polls with
 *   timeouts of at most 100 ms and never sleeps, so a long backoff never
 *   costs the group membership (orderflow(7), "Retries and the DLQ").
 *   An output the broker did not acknowledge stops the worker (its offset
 *   is never committed, so the record is handled again by the next run)
 *   and worker_run() returns OF_EXIT_KAFKA.
 *
 * Concurrency (with a start function instead of a handler): up to
 * concurrency records are held at once, from any partitions.  Records
 * with the same key (the Kafka key; without one, the partition; in pipe
 * mode the event's subject) are started strictly one after another, in
 * the order they were read, each once the one before completed; other
 * keys run side by side.  At most concurrency are started and pending;
 * as many again (at least 64) are held ready behind them.  While that
 * many are held, no more are taken (pipe mode: reading pauses; Kafka:
 * librdkafka's prefetch, itself bounded, fills and stops fetching);
 * held so for a second, fetching pauses until a quarter are done; a
 * partition whose window of unfinished records (from the oldest one not
 * done to the newest read) reaches WORKER_WINDOW_MAX pauses alone until
 * it is down to half.
 * Offsets are done as above, so the commit point never passes a record
 * in flight.  The loop waits on the effects in flight through the pump
 * (at most WORKER_PUMP_MS at a time) instead of in the consumer.
 *
 * Group membership (Kafka mode): the consumer is a static member of the
 * group, its group.instance.id opt_instance_id() of the state directory
 * (o->state; none without one), so a worker restarted on its state gets
 * its partitions back at once; -X group.instance.id=ID sets another, an
 * empty ID makes it a dynamic member.  A consumer fenced
 * (FENCED_INSTANCE_ID: its session ran out while the broker was away,
 * or another member took the id) is replaced, with a warning: what is in
 * flight is finished, the consumer closed and a new one made, and the
 * records after the last commit come again.  Fenced again within a
 * minute of that, the run ends with OF_EXIT_KAFKA like any other fatal
 * error.
 *
 * Pipe mode (input a file, "-" for stdin): events are read as JSON lines
 * (jsonl.h) by a reader thread, so retries come due while the input is
 * idle.  A transient failure is retried in-process on the same schedule
 * (with the monotonic clock); at most WORKER_PIPE_RETRIES records wait at
 * once, and reading pauses while that many do.  A line jsonl.h rejects is
 * a dead letter of kind "invalid" whose value is what jsonl_rejected()
 * kept: the whole line (NUL byte, invalid UTF-8: "value_base64" below),
 * or for a line longer than the limit its first JSONL_REJECT_HEAD (1024)
 * bytes, with the line's length in header orderflow.original.length.  After the end of the
 * input the worker waits for the retries still due, then returns.
 *
 * Dead letters as JSON lines, one object a line:
 *	{"topic":DLQ,"key":K,"value":V,"headers":{NAME:VALUE,...}}
 * with the headers a DLQ record would carry; in pipe mode
 * orderflow.original.topic is "-", .partition -1 and .offset the line
 * number.  key is null without one; value is the input as a string, null
 * when there was none, or, when it is not UTF-8 text, absent and given as
 * "value_base64" instead.  Output "-" writes each output event's value as
 * a line on standard output.  Lines are flushed one by one.
 *
 * Signals: worker_run() installs handlers for SIGINT and SIGTERM (with
 * SA_RESTART, by util_signals_catch(), so that one ignored at start stays
 * ignored) and restores the previous ones before it returns.  Either
 * signal, or worker_stop(), stops taking new input; what is in flight is
 * finished (records held behind a key included) and flushed (at most
 * WORKER_FLUSH_MS each), offsets are committed
 * and the group left.  In pipe mode, records still waiting for a retry
 * then become dead letters of kind "transient" (message "stopped before
 * attempt N: ..."), so nothing is lost.
 */
#ifndef OF_WORKER_H
#define OF_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "opt.h"

#define WORKER_POLL_MS		100	/* longest wait of the loop */
#define WORKER_FLUSH_MS		30000	/* shutdown: wait for acknowledgements */
#define WORKER_PIPE_RETRIES	10000	/* pipe mode: records waiting at once */
#define WORKER_RETRY_WAITING	10000	/* Kafka: retries held until due */
#define WORKER_CONCURRENCY	256	/* default records in flight */
#define WORKER_CONCURRENCY_MAX	65536
#define WORKER_PUMP_MS		5	/* longest wait on calls in flight */
#define WORKER_WINDOW_MAX	20000	/* Kafka: a partition's unfinished */

enum worker_outcome {
	WORKER_DONE,		/* handled; *out may hold an output event */
	WORKER_TRANSIENT,	/* failed, may succeed later: retry */
	WORKER_PERMANENT,	/* failed, never succeeds: DLQ "permanent" */
	WORKER_INVALID,		/* not a valid event: DLQ "invalid" */
	WORKER_PENDING		/* start only: worker_complete() follows */
};

/* One input event, as read from Kafka or from a line of the input. */
struct worker_input {
	const void	*value;		/* not NUL-terminated; may be NULL (len 0) */
	size_t		 len;
	const void	*key;		/* NULL in pipe mode */
	size_t		 keylen;
	int		 attempt;	/* 1 on the first try; from orderflow.attempt */
	const char	*topic;		/* where it was read; "-" in pipe mode */
	int32_t		 partition;	/* -1 in pipe mode */
	int64_t		 offset;	/* the line number in pipe mode */
	const char	*traceparent;	/* trace_parse()d header, or NULL */
	/* The record's headers (codec_parse() needs them); NULL in pipe mode */
	const rd_kafka_headers_t *headers;
};

/*
 * What a handler emits with WORKER_DONE: at most one event.  key and
 * value are malloc'd by the handler and freed by the worker, unless
 * borrowed is set: then they stay the handler's, to keep valid until its
 * worker_complete() or its handler returns (the worker copies what it
 * keeps), and the handler can use their memory again for the next
 * record.  value and event both NULL means no output, and value may be NULL alone only
 * where the output is Avro to Kafka, encoded from event.  traceparent
 * (may be "") goes into the header.
 */
struct worker_output {
	char	*key;
	char	*value;
	int	 borrowed;	/* key and value are the handler's */
	char	 traceparent[64];
	/*
	 * The event value holds, when the handler has it parsed (may be
	 * NULL): an Avro output is encoded from it instead of parsing value
	 * again.  Borrowed until the handler's worker_complete() returns.
	 */
	const struct event *event;
	/*
	 * Or the output whole, already encoded for the output topic (an
	 * Avro record built on a thread of the handler's own, such as
	 * pay-process's store thread) with its headers: produced as they
	 * are.  Both belong to the worker once the handler gives them.
	 */
	void			*record;
	size_t			 reclen;
	rd_kafka_headers_t	*headers;
};

/*
 * Handles one input.  On any outcome but WORKER_DONE, why holds a
 * message for the orderflow.error.message header (and the log).  Called
 * on the worker's thread only, for one input at a time.
 */
typedef enum worker_outcome worker_handle_fn(void *ctx,
	    const struct worker_input *in, struct worker_output *out,
	    char *why, size_t whylen);

/*
 * Asynchronous handling, for effects that wait (an HTTP call, a child
 * process): the command gives a start function instead of a handler.
 * start either finishes at once (any outcome but WORKER_PENDING, as a
 * handler would) or begins the effect, keeps job and returns
 * WORKER_PENDING; the command then calls worker_complete(job, ...) from
 * its pump once the effect ended.  in is valid until then; the command
 * keeps what else it needs.  Called on the worker's thread only.
 */
struct codec;
struct event;
struct worker_job;

typedef enum worker_outcome worker_start_fn(void *ctx,
	    struct worker_job *job, const struct worker_input *in,
	    struct worker_output *out, char *why, size_t whylen);

/*
 * The outcome of a job whose start returned WORKER_PENDING, as a handler
 * returns it: out (may be NULL) is the worker's to free, why is the
 * failure's message.  job is gone afterwards.  Only from the pump.
 */
void	worker_complete(struct worker_job *job, enum worker_outcome,
	    struct worker_output *out, const char *why);

/*
 * Counters.  retried, dead_lettered and failed count records the broker
 * acknowledged (or lines written) and records it refused.
 */
struct worker_stats {
	uint64_t	 processed;	/* inputs handled (any outcome) */
	uint64_t	 done;		/* WORKER_DONE */
	uint64_t	 retried;	/* sent to the retry topic / queue */
	uint64_t	 dead_lettered;	/* sent to the DLQ */
	uint64_t	 failed;	/* outputs the broker did not acknowledge */
};

struct worker_config {
	const char	*in_topic;	/* e.g. "order-created" */
	const char	*retry_topic;	/* e.g. "order-created-retry" */
	const char	*dlq_topic;	/* e.g. "order-created-dlq" */
	const char	*out_topic;	/* e.g. "payment-processed"; NULL: none */
	/*
	 * The format outputs are written in (codec_prepare()d for out_topic
	 * by the command); NULL: JSON.  Used on the worker's thread only.
	 */
	struct codec	*codec;
	const char	*input;		/* a file, "-" stdin: pipe mode; NULL: Kafka */
	const char	*output;	/* "-": outputs to stdout; NULL: out_topic */
	const char	*dlq_file;	/* output "-": dead letters; NULL: stderr */
	int		 max_attempts;	/* attempts before "exhausted" (>= 1) */
	int64_t		 backoff_ms;	/* first retry's delay */
	int64_t		 backoff_max_ms; /* cap of the delay */
	int64_t		 report_ms;	/* period of the -v counters line; 0: none */
	worker_handle_fn *handle;	/* one at a time, or: */
	/*
	 * start, with up to concurrency records pending at once, each
	 * after the records of its key read before it; NULL: handle, one
	 * at a time.
	 */
	worker_start_fn	*start;
	int		 concurrency;	/* 1..WORKER_CONCURRENCY_MAX */
	/*
	 * With start: moves the effects in flight on, waiting at most
	 * wait_ms for one to end, and calls worker_complete() for those
	 * that ended.  Called often while any is pending.
	 */
	void		(*pump)(void *ctx, int wait_ms);
	void		*ctx;
	/*
	 * Called every report_ms (with -v) with final 0, and once when
	 * worker_run() ends with final 1; may be NULL.
	 */
	void		(*report)(void *ctx, const struct worker_stats *,
			    int final);
	/* Called about once a second on the worker's thread; may be NULL. */
	void		(*tick)(void *ctx);
};


/*
 * The delay before attempt (>= 2): backoff_ms * 2^(attempt - 2), capped
 * at backoff_max_ms, with jitter drawn uniformly from [delay/2, delay].
 * 0 for attempt < 2.  Exposed for tests.
 */
int64_t	worker_backoff(const struct worker_config *, int attempt);

/*
 * Runs until the input ends (pipe mode), or SIGINT/SIGTERM/worker_stop(),
 * or a fatal Kafka error.  Returns an enum of_exit: OF_EXIT_OK,
 * OF_EXIT_KAFKA when the broker was unreachable or an output was not
 * acknowledged, OF_EXIT_FAIL on an I/O error (the input, standard output,
 * dlq_file) or when out of memory, else OF_EXIT_REJECTED when an input
 * read from a file or stdin was invalid (a dead letter of kind invalid,
 * logged with its line number).  stats is zeroed first.
 */
int	worker_run(const struct worker_config *, const struct opt_kafka *,
	    struct worker_stats *);

/* Asks worker_run() to stop as SIGTERM does; async-signal-safe. */
void	worker_stop(void);

/*
 * Makes SIGINT and SIGTERM call worker_stop() from now on, so that one
 * received while the command starts (a store's recovery can take a while)
 * ends worker_run() at once instead of the process.
 */
void	worker_catch_signals(void);

#endif
