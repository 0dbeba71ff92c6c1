/*
 * worker.c - the consume, handle, produce loop of worker.h: the run, its
 * start and graceful shutdown, signals, and Kafka mode with the retry
 * topic's paused partitions.  Where each outcome goes is route.c's; pipe
 * mode, with its reader thread and in-process retries, is pipe.c's.
 *
 * The loop runs on one thread (handlers, delivery callbacks, rebalances).
 * Pipe mode adds a thread that does nothing but read lines, so that a
 * retry comes due on time while the input is idle; a command may hand a
 * record's work to a thread of its own and complete it later
 * (worker_complete(): pay-process's and notify's stores, storeq.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "exitcode.h"
#include "flow.h"
#include "kafka.h"
#include "log.h"
#include "pipe.h"
#include "route.h"
#include "util.h"
#include "worker.h"
#include "worker_local.h"

#define TICK_MS			1000
#define REACHABLE_MS		10000	/* startup: wait for a broker */
#define REVOKE_FLUSH_MS		10000
#define HOLD_MS			1000	/* full that long: fetching paused */
#define ATTEMPT_MAX		1000000
#define FENCED_AGAIN_MS		60000	/* see consumer_renew() */

/*
 * Memory (pay-process stays under 32 MiB resident): the consumer keeps
 * at most 1,000 records a partition (kafka.c) or 1 MiB prefetched,
 * instead of librdkafka's 100000 records and 64 MiB, and fetches at most
 * 1 MiB at once (a larger record still comes alone); the producer queues
 * at most 2 MiB or 5,000 records (kafka.c).  Applied before -X and -F,
 * which may override them.  The records' count is what bounds small
 * records: at 10,000 a partition, pay-process over a backlog of Avro
 * records (a fifth the size of JSON ones) peaked at 33 MiB, at 1,000 at
 * 29, and relayed JSON as fast (scripts/bench.d/FINDINGS.md, relay).
 *
 * A full prefetch queue stops fetching until librdkafka looks again: a
 * second later before 2.2 unless kafka.c's kicker wakes it, and
 * fetch.queue.backoff.ms later since.  With the kicker, pay-process on a
 * backlog of 100,000 events did as well with 1 MiB as with 2 MiB (about
 * 21,000 events a second) at 2 MiB less resident.
 *
 * A fetch takes at most 256 KiB of a partition instead of 1 MiB, and
 * malloc maps anything from 128 KiB on by itself (MMAP_THRESHOLD, set
 * before the consumer starts), so that each fetch buffer goes back to
 * the system once its records are done: malloc's own threshold rises to
 * the largest block freed, after which the consumer thread's arena kept
 * the buffers of the busiest moment.  Together they took 2 MiB off
 * pay-process's peak in either format (Avro 29.2 to 30.2 MiB against
 * 31.3 to 33.0, six rounds each), each alone half of that or less, at
 * the same rate (scripts/bench.d/FINDINGS.md, relay).
 */
static struct opt_prop consumer_props[] = {
	{ "queued.max.messages.kbytes", "1024", "worker default" },
	{ "fetch.max.bytes", "1048576", "worker default" },
	{ "max.partition.fetch.bytes", "262144", "worker default" },
	{ "fetch.queue.backoff.ms", "20", "worker default" }
};
#define CONSUMER_PROPS	\
	(sizeof(consumer_props) / sizeof(consumer_props[0]))
#define CONSUMER_PROPS_OLD	3	/* librdkafka < 2.2: the first three */
#define MMAP_THRESHOLD		(128 * 1024)

/*
 * A worker's outputs leave as the store's transactions commit, a few
 * dozen at a time over six partitions.  A linger of 2 ms instead of
 * kafka.c's half millisecond gathers them into requests several times
 * larger: relaying a backlog, the broker spent a third less CPU on them,
 * librdkafka's broker thread half as much, and pay-process relayed about
 * 12% more a second.  The price is at most 2 ms on the hop from a
 * payment to its notification (scripts/bench.d/FINDINGS.md, relay).
 */
static struct opt_prop producer_props[] = {
	{ "queue.buffering.max.kbytes", "2048", "worker default" },
	{ "linger.ms", "2", "worker default" }
};

/*
 * With a backlog (input waiting), outputs are held back until
 * OUT_HOLD_MAX are waiting or the first has waited OUT_HOLD_MS, then
 * handed to librdkafka together (kafka_producer_hold()): librdkafka sends
 * a partition's records in a request of their own once their linger has
 * passed, and while a worker works through a backlog, the few dozen that
 * each store transaction releases made a request each, whose cost to the
 * broker hardly depends on its size.  Held back, the same records take
 * less than half the requests and the broker about a third less CPU.  As
 * soon as no input is waiting, what is held goes at once: one keeping up
 * with its input adds nothing to a record's way.  The backlog is the
 * input's, not the records in the worker's hands: a loop slower than its
 * store has few of those while its input waits, and judged by them it
 * let its outputs go 17 at a time on average (scripts/bench.d/FINDINGS.md,
 * relay).
 */
#define OUT_HOLD_MS		20
#define OUT_HOLD_MAX		1024

/*
 * A partition paused until its first record is due (a retry), or, with
 * due_ms INT64_MAX, until its window of unfinished records shrank.
 */
struct pause {
	const char	*topic;
	int32_t		 partition;
	int64_t		 offset;	/* the retry's; -1 */
	int64_t		 due_ms;	/* epoch ms */
};

/* The signals that stop a run, in the order worker_run() restores them. */
static const int stop_signals[] = { SIGINT, SIGTERM, 0 };

static volatile sig_atomic_t stopping;	/* worker_stop() */

void
worker_stop(void)
{
	stopping = 1;
}

int
worker_running(void)
{
	return !stopping && !util_signal_caught();
}

void
worker_catch_signals(void)
{
	util_signals_catch(stop_signals, SA_RESTART, NULL);
}

void
worker_fail(struct worker *w, int code)
{
	if (w->rc == OF_EXIT_OK)
		w->rc = code;
}

void
worker_periodic(struct worker *w)
{
	int64_t now = util_mono_ms();

	if (now >= w->next_tick) {
		if (w->cf->tick != NULL)
			w->cf->tick(w->cf->ctx);
		w->next_tick = now + TICK_MS;
	}
	if (w->cf->report_ms > 0 && now >= w->next_report) {
		if (w->cf->report != NULL)
			w->cf->report(w->cf->ctx, w->st, 0);
		w->next_report = now + w->cf->report_ms;
	}
}

/*
 * Kafka mode.
 */

/*
 * The entry of a paused partition, added when missing (a realloc, under
 * which the partition is resumed and NULL returned).
 */
static struct pause *
pause_entry(struct worker *w, const char *topic, int32_t partition)
{
	struct pause *p;
	size_t i;

	for (i = 0; i < w->npauses; i++)
		if (w->pauses[i].partition == partition &&
		    strcmp(w->pauses[i].topic, topic) == 0)
			return &w->pauses[i];
	p = realloc(w->pauses, (w->npauses + 1) * sizeof(*p));
	if (p == NULL) {
		kafka_consumer_resume(w->c, topic, partition);
		return NULL;
	}
	w->pauses = p;
	p = &w->pauses[w->npauses++];
	p->topic = topic;
	p->partition = partition;
	return p;
}

/*
 * The record at offset is not due before due_ms: its partition stops
 * there.  Returns 0, or -1 when the partition could not be paused (the
 * record is then handled now: early rather than never).
 */
static int
pause_until(struct worker *w, const char *topic, int32_t partition,
    int64_t offset, int64_t due_ms)
{
	struct pause *p;

	if (kafka_consumer_pause(w->c, topic, partition) == -1)
		return -1;
	if (kafka_consumer_seek(w->c, topic, partition, offset) == -1) {
		kafka_consumer_resume(w->c, topic, partition);
		return -1;
	}
	if ((p = pause_entry(w, topic, partition)) == NULL)
		return -1;
	p->offset = offset;
	p->due_ms = due_ms;
	log_debug("%s [%d]: offset %" PRId64 " is due in %" PRId64 " ms: "
	    "partition paused", topic, (int)partition, offset,
	    due_ms - util_now_ms());
	return 0;
}

/*
 * Bounded memory per partition: one whose window of unfinished records
 * (a record in flight or waiting, and every later one) reached
 * WORKER_WINDOW_MAX stops fetching until the window is down to half.
 */
static void
pause_window(struct worker *w, const char *topic, int32_t partition)
{
	struct pause *p;
	size_t i;

	if (kafka_consumer_window(w->c, topic, partition) < WORKER_WINDOW_MAX)
		return;
	for (i = 0; i < w->npauses; i++)
		if (w->pauses[i].partition == partition &&
		    strcmp(w->pauses[i].topic, topic) == 0)
			return;
	if (kafka_consumer_pause(w->c, topic, partition) == -1 ||
	    (p = pause_entry(w, topic, partition)) == NULL)
		return;
	p->offset = -1;
	p->due_ms = INT64_MAX;
	log_debug("%s [%d]: %d records unfinished: partition paused", topic,
	    (int)partition, WORKER_WINDOW_MAX);
}

/*
 * Resumes the partitions whose record came due (or was revoked since),
 * and those whose window shrank to half.
 */
static void
resume_due(struct worker *w)
{
	int64_t now = util_now_ms();
	struct pause *p;
	size_t i;

	for (i = 0; i < w->npauses;) {
		p = &w->pauses[i];
		if (p->due_ms == INT64_MAX ? kafka_consumer_window(w->c,
		    p->topic, p->partition) > WORKER_WINDOW_MAX / 2 :
		    p->due_ms > now) {
			i++;
			continue;
		}
		log_debug("%s [%d]: offset %" PRId64 " is due: partition "
		    "resumed", p->topic, (int)p->partition, p->offset);
		kafka_consumer_resume(w->c, p->topic, p->partition);
		*p = w->pauses[--w->npauses];
	}
}

/*
 * When a record read from the retry topic is due: its orderflow.not-before,
 * but never later than backoff_max_ms from now, the longest any retry of
 * ours waits, so that a crafted or corrupt header cannot hold a record
 * (and the commit point of its partition) back for longer.  A value that
 * is no decimal number, is missing or is not in the future is due now
 * (0).  The bound is this process's --backoff-max, whoever wrote the
 * header.
 */
static int64_t
retry_due(const struct worker *w, const rd_kafka_message_t *m,
    const rd_kafka_headers_t *h)
{
	int64_t now = util_now_ms(), v;

	if (kafka_header_get_int64(h, FLOW_H_NOT_BEFORE, &v) != 0 || v <= now)
		return 0;
	if (v - now > w->cf->backoff_max_ms) {
		log_warn("%s [%d]: offset %" PRId64 ": %s %" PRId64 " is more "
		    "than --backoff-max (%" PRId64 " ms) ahead: due in %" PRId64
		    " ms instead", rd_kafka_topic_name(m->rkt),
		    (int)m->partition, m->offset, FLOW_H_NOT_BEFORE, v,
		    w->cf->backoff_max_ms, w->cf->backoff_max_ms);
		return w->cf->backoff_max_ms > 0 ?
		    now + w->cf->backoff_max_ms : 0;
	}
	return v;
}

static void
on_message(struct worker *w, const rd_kafka_message_t *m)
{
	const rd_kafka_headers_t *h;
	rd_kafka_headers_t *own;
	struct worker_input in;
	const char *topic;
	int64_t due, v;
	char raw[256], tp[TRACEPARENT_LEN + 1];
	int from_retry;

	topic = rd_kafka_topic_name(m->rkt);
	h = kafka_msg_headers(m);
	from_retry = strcmp(topic, w->cf->retry_topic) == 0;
	memset(&in, 0, sizeof(in));
	in.value = m->payload;
	in.len = m->payload != NULL ? m->len : 0;
	in.key = m->key;
	in.keylen = m->key != NULL ? m->key_len : 0;
	in.attempt = 1;
	if (kafka_header_get_int64(h, FLOW_H_ATTEMPT, &v) == 0 && v >= 1 &&
	    v <= ATTEMPT_MAX)
		in.attempt = (int)v;
	in.topic = from_retry ? w->cf->retry_topic : w->cf->in_topic;
	in.partition = m->partition;
	in.offset = m->offset;
	in.headers = h;
	if (kafka_header_get_str(h, FLOW_H_TRACEPARENT, raw, sizeof(raw)) >= 0 &&
	    trace_parse(raw, tp) == 0)
		in.traceparent = tp;
	/*
	 * A retry not due yet waits in memory, its offset pending, while
	 * the records behind it go on; with the heap full, its partition
	 * pauses there instead.
	 */
	if (from_retry && (due = retry_due(w, m, h)) > 0) {
		if (kafka_consumer_track(w->c, m) == 0 &&
		    inflight_hold(w, &in, h, due) == 0) {
			pause_window(w, in.topic, in.partition);
			return;
		}
		if (pause_until(w, w->cf->retry_topic, m->partition,
		    m->offset, due) == 0)
			return;
	}
	if (kafka_consumer_track(w->c, m) == -1) {
		log_error("out of memory");
		worker_fail(w, OF_EXIT_FAIL);
		return;
	}
	/* The message's headers go to the job as they are, not copied. */
	if (h != NULL && rd_kafka_message_detach_headers(
	    (rd_kafka_message_t *)m, &own) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		in.headers = own;
		inflight_submit_owned(w, &in, NULL, own, NULL, 0);
	} else
		inflight_submit(w, &in, h);
	pause_window(w, in.topic, in.partition);
}

/* Before revoked partitions commit: let outputs in flight be done. */
static void
on_revoke(void *opaque)
{
	struct worker *w = opaque;

	kafka_flush(w->p, REVOKE_FLUSH_MS);
}

/*
 * The consumer's fatal error is FENCED_INSTANCE_ID: the group gave its
 * group.instance.id to a newer member.  Another process with the same
 * id does that, and so does the broker's own restart: librdkafka 2.0
 * rejoins with the member id it had, which the group forgot when that
 * session ran out while the broker was away.
 */
static int
consumer_fenced(struct worker *w)
{
	char reason[512];

	return w->c != NULL && rd_kafka_fatal_error(kafka_consumer_rk(w->c),
	    reason, sizeof(reason)) == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID;
}

/*
 * A fatal error of the producer or the consumer ends the run with
 * OF_EXIT_KAFKA; a fenced consumer does not (run_kafka() renews it).
 */
static int
check_fatal(struct worker *w)
{
	char buf[512];

	if ((w->c != NULL && !consumer_fenced(w) &&
	    kafka_fatal(kafka_consumer_rk(w->c), buf, sizeof(buf))) ||
	    (w->p != NULL &&
	    kafka_fatal(kafka_producer_rk(w->p), buf, sizeof(buf)))) {
		log_error("kafka: fatal error: %s", buf);
		worker_fail(w, OF_EXIT_KAFKA);
		return 1;
	}
	return 0;
}

/*
 * Bounded memory: with inflight_max() records held, the worker takes no
 * more (take()); held so for HOLD_MS, fetching pauses until a quarter of
 * them are done.  Resuming resumes every partition, so those paused for
 * a retry are paused again.  librdkafka drops what it prefetched for a
 * paused partition and fetches again from the next record not consumed,
 * so nothing is skipped.
 */
static void
hold(struct worker *w)
{
	size_t held = inflight_held(w), i, n = inflight_max(w);
	int64_t now = util_mono_ms();

	if (!inflight_full(w))
		w->full_since = 0;
	else if (w->full_since == 0)
		w->full_since = now;
	if (!w->holding && w->full_since != 0 &&
	    now - w->full_since >= HOLD_MS) {
		if (kafka_consumer_hold(w->c, 1) == 0) {
			w->holding = 1;
			log_debug("%zu records in flight: fetching paused",
			    held);
		}
	} else if (w->holding && held <= n - (n >= 4 ? n / 4 : 1)) {
		if (kafka_consumer_hold(w->c, 0) == 0) {
			w->holding = 0;
			for (i = 0; i < w->npauses; i++)
				kafka_consumer_pause(w->c, w->pauses[i].topic,
				    w->pauses[i].partition);
			log_debug("%zu records in flight: fetching resumed",
			    held);
		}
	}
}

/*
 * Whether to take a record now.  Full, the worker stops taking them for
 * up to HOLD_MS: librdkafka's prefetch queue, bounded (consumer_props),
 * fills and its fetching stops by itself, and what it holds is there
 * when room comes back.  Pausing the partitions instead throws that
 * away, to be fetched again after the resume: a worker that fills and
 * drains every few milliseconds (the simulator against its store) spent
 * more on fetching again than on paying.  Full for longer (calls that
 * hang), hold() pauses fetching and the consumer is polled again, for
 * its rebalances and errors.
 */
static int
take(const struct worker *w)
{
	return !inflight_full(w) || w->holding;
}

/* The consumer's wait: at most until the first retry held is due. */
static int
poll_wait(const struct worker *w)
{
	int64_t due = inflight_next_due(w), left;

	if (due == INT64_MAX)
		return WORKER_POLL_MS;
	left = due - util_now_ms();
	return left <= 0 ? 0 : left < WORKER_POLL_MS ? (int)left :
	    WORKER_POLL_MS;
}

/*
 * The group consumer of the input and retry topics, in w->c.  Returns 0,
 * or -1 with the run failed with code.
 */
static int
consumer_start(struct worker *w, const struct opt_kafka *o, int code)
{
	const char *topics[3];
	char err[512];

	topics[0] = w->cf->in_topic;
	topics[1] = w->cf->retry_topic;
	topics[2] = NULL;
	if ((w->c = kafka_consumer_new(o, topics, err, sizeof(err))) == NULL) {
		log_error("%s", err);
		worker_fail(w, code);
		return -1;
	}
	kafka_consumer_on_revoke(w->c, on_revoke, w);
	return 0;
}

static void	drain(struct worker *);

/*
 * A fenced consumer can do nothing more, not even commit.  What is in
 * flight is finished and its outputs acknowledged (storing their offsets
 * fails: they are not committed), the consumer closed and a new one made
 * with the same group.instance.id, which gets the partitions again.  The
 * records after the last commit come again: repeats, which the state's
 * records and the derived event ids answer (orderflow(7)).  Retries held
 * in memory are dropped and come again too.  Fenced again within
 * FENCED_AGAIN_MS of the last renewal, the id is another live member's:
 * the run ends with OF_EXIT_KAFKA, as on any other fatal error.  *renewed
 * is the time (monotonic) of the last renewal, -1 before the first.
 * Returns 0, or -1 when the run failed.
 */
static int
consumer_renew(struct worker *w, const struct opt_kafka *o, int64_t *renewed)
{
	char buf[512];

	kafka_fatal(kafka_consumer_rk(w->c), buf, sizeof(buf));
	if (*renewed >= 0 && util_mono_ms() - *renewed < FENCED_AGAIN_MS) {
		log_error("kafka: fatal error: %s; fenced again %" PRId64
		    " ms after rejoining: another member of the group has "
		    "this group.instance.id", buf, util_mono_ms() - *renewed);
		worker_fail(w, OF_EXIT_KAFKA);
		return -1;
	}
	log_warn("kafka: %s: finishing what is in flight, then joining the "
	    "group again; records not committed come again", buf);
	inflight_drain(w, util_mono_ms() + WORKER_FLUSH_MS);
	drain(w);
	kafka_consumer_close(w->c);
	w->c = NULL;
	w->npauses = 0;
	w->holding = 0;
	if (w->rc != OF_EXIT_OK || consumer_start(w, o, OF_EXIT_KAFKA) == -1)
		return -1;
	*renewed = util_mono_ms();
	return 0;
}

static void
run_kafka(struct worker *w, const struct opt_kafka *o)
{
	rd_kafka_message_t *m;
	int64_t renewed = -1;
	int busy, wait, took, go;

	if (consumer_start(w, o, OF_EXIT_USAGE) == -1)
		return;
	/* Here only: this loop lets what is held go (pipe mode would not). */
	kafka_producer_hold(w->p, OUT_HOLD_MS, OUT_HOLD_MAX);
	while (w->rc == OF_EXIT_OK && worker_running()) {
		hold(w);
		/* Calls in flight: a glance at Kafka, then the calls. */
		busy = inflight_busy(w);
		wait = busy ? 0 : poll_wait(w);
		/* Outputs held back go before a wait for input. */
		if (wait > 0)
			kafka_producer_release(w->p);
		took = take(w);
		m = took ? kafka_consumer_poll(w->c, wait) : NULL;
		if (m != NULL) {
			on_message(w, m);
			rd_kafka_message_destroy(m);
		} else if (check_fatal(w) || (consumer_fenced(w) &&
		    consumer_renew(w, o, &renewed) == -1))
			break;
		/* No input waiting: let what is held go. */
		go = took && m == NULL;
		if (go)
			kafka_producer_release(w->p);
		inflight_run(w, m == NULL && busy ? WORKER_PUMP_MS : 0);
		kafka_producer_tick(w->p, go);
		kafka_poll(w->p, 0);
		resume_due(w);
		worker_periodic(w);
	}
}

/*
 * The run.
 */

/* o with the worker's defaults in front of the user's properties. */
static int
opt_with(const struct opt_kafka *o, struct opt_prop *defs, size_t ndefs,
    struct opt_kafka *copy)
{
	*copy = *o;
	copy->props = calloc(ndefs + o->nprops, sizeof(*copy->props));
	if (copy->props == NULL)
		return -1;
	memcpy(copy->props, defs, ndefs * sizeof(*defs));
	if (o->nprops > 0)
		memcpy(copy->props + ndefs, o->props,
		    o->nprops * sizeof(*o->props));
	copy->nprops = ndefs + o->nprops;
	return 0;
}

static int
start_producer(struct worker *w, const struct opt_kafka *o)
{
	struct opt_kafka po;
	char err[512];

	if (opt_with(o, producer_props, sizeof(producer_props) /
	    sizeof(producer_props[0]), &po) == -1) {
		log_error("out of memory");
		return OF_EXIT_FAIL;
	}
	w->p = kafka_producer_new(&po, err, sizeof(err));
	free(po.props);
	if (w->p == NULL) {
		log_error("%s", err);
		return OF_EXIT_USAGE;
	}
	if (kafka_wait_reachable(kafka_producer_rk(w->p), REACHABLE_MS) != 0) {
		log_error("kafka: no broker reachable at %s", o->brokers);
		return OF_EXIT_KAFKA;
	}
	return OF_EXIT_OK;
}

/* Waits for what is in flight; what is left is reported and fails. */
static void
drain(struct worker *w)
{
	int64_t deadline = util_mono_ms() + WORKER_FLUSH_MS;
	int left;

	if (w->p == NULL)
		return;
	while ((left = kafka_flush(w->p, WORKER_POLL_MS)) > 0 &&
	    util_mono_ms() < deadline && !check_fatal(w))
		;
	if (left > 0) {
		log_error("%d record(s) not acknowledged", left);
		worker_fail(w, OF_EXIT_KAFKA);
	}
}

static int
check_config(const struct worker_config *cf)
{
	if ((cf->handle == NULL && cf->start == NULL) ||
	    (cf->start != NULL && cf->pump == NULL) ||
	    cf->concurrency < 0 || cf->concurrency > WORKER_CONCURRENCY_MAX ||
	    cf->in_topic == NULL ||
	    cf->retry_topic == NULL || cf->dlq_topic == NULL ||
	    cf->max_attempts < 1 || cf->backoff_ms < 0 ||
	    cf->backoff_max_ms < 0 || cf->report_ms < 0) {
		log_error("worker: bad configuration");
		return -1;
	}
	return 0;
}

static int
open_dlq(struct worker *w)
{
	if (w->cf->output == NULL)
		return 0;
	if (w->cf->dlq_file == NULL) {
		w->dlq_fp = stderr;
		return 0;
	}
	if ((w->dlq_fp = fopen(w->cf->dlq_file, "a")) == NULL) {
		log_error("%s: %s", w->cf->dlq_file, strerror(errno));
		return -1;
	}
	return 0;
}

static void
close_dlq(struct worker *w)
{
	if (w->dlq_fp == NULL || w->dlq_fp == stderr)
		return;
	if (fclose(w->dlq_fp) == EOF) {
		log_error("%s: %s", w->cf->dlq_file, strerror(errno));
		worker_fail(w, OF_EXIT_FAIL);
	}
}

/*
 * The consumer's defaults in defs: consumer_props and, with a state
 * directory, static membership under opt_instance_id() (*id, to free).
 * The user's -X group.instance.id=ID comes after and wins; an empty ID
 * makes the member dynamic.  Returns how many, or (size_t)-1 with errno
 * set when the id cannot be derived.
 */
static size_t
consumer_defaults(const struct opt_kafka *o, struct opt_prop *defs,
    char **id)
{
	size_t n;

	n = rd_kafka_version() >= 0x02020000 ? CONSUMER_PROPS :
	    CONSUMER_PROPS_OLD;
	memcpy(defs, consumer_props, n * sizeof(*defs));
	*id = NULL;
	if (o->state == NULL)
		return n;
	if ((*id = opt_instance_id(o->state)) == NULL)
		return (size_t)-1;
	defs[n].name = "group.instance.id";
	defs[n].value = *id;
	defs[n].where = "worker default";
	return n + 1;
}

/* Opens where the run writes, then runs the mode of its input. */
static void
run_mode(struct worker *w, const struct opt_kafka *o)
{
	struct opt_prop defs[CONSUMER_PROPS + 1];
	struct opt_kafka co;
	char *id;
	size_t n;
	int rc;

	if (open_dlq(w) == -1) {
		worker_fail(w, OF_EXIT_FAIL);
		return;
	}
	if ((w->cf->input == NULL || w->cf->output == NULL) &&
	    (rc = start_producer(w, o)) != OF_EXIT_OK) {
		worker_fail(w, rc);
		return;
	}
	if (w->cf->input != NULL) {
		w->in_name = w->cf->input;
		pipe_run(w);
		return;
	}
	/* For the whole process: see consumer_props. */
	(void)mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
	if ((n = consumer_defaults(o, defs, &id)) == (size_t)-1) {
		log_error("%s: %s", o->state, strerror(errno));
		worker_fail(w, OF_EXIT_FAIL);
		return;
	}
	if (opt_with(o, defs, n, &co) == -1) {
		log_error("out of memory");
		worker_fail(w, OF_EXIT_FAIL);
		free(id);
		return;
	}
	run_kafka(w, &co);
	free(co.props);
	free(id);
}

int
worker_run(const struct worker_config *cf, const struct opt_kafka *o,
    struct worker_stats *st)
{
	struct sigaction old[2];
	struct worker w;

	memset(st, 0, sizeof(*st));
	if (check_config(cf) == -1)
		return OF_EXIT_FAIL;
	memset(&w, 0, sizeof(w));
	w.cf = cf;
	w.st = st;
	w.in_name = "-";
	w.next_tick = util_mono_ms();
	w.next_report = util_mono_ms() + cf->report_ms;

	if (inflight_init(&w) == -1) {
		log_error("out of memory");
		return OF_EXIT_FAIL;
	}
	util_signals_catch(stop_signals, SA_RESTART, old);

	run_mode(&w, o);
	/* Records in flight end first: their outcomes are produced. */
	inflight_drain(&w, util_mono_ms() + WORKER_FLUSH_MS);

	/* Outputs in flight first: their acknowledgements store offsets. */
	drain(&w);
	if (w.c != NULL) {
		kafka_consumer_close(w.c);
		w.c = NULL;
	}
	kafka_producer_destroy(w.p);
	route_free(&w);
	close_dlq(&w);
	pipe_retries_free(&w.retries);
	inflight_free(&w);
	free(w.pauses);
	if (cf->report != NULL)
		cf->report(cf->ctx, st, 1);
	sigaction(stop_signals[0], &old[0], NULL);
	sigaction(stop_signals[1], &old[1], NULL);
	/* Like order-submit: input rejected, the valid rest processed. */
	if (w.rc == OF_EXIT_OK && w.rejected > 0)
		return OF_EXIT_REJECTED;
	return w.rc;
}
