/*
 * kafka.h - every librdkafka client orderflow makes: the producer and
 * group consumer every command uses, a consumer that assigns itself
 * partitions (dlq-replay) and Admin API handles (topic-admin).  No other
 * file makes a librdkafka configuration or handle, so every client logs
 * through one callback, with one level mapping and one redaction rule.
 *
 * Guarantees (orderflow(7)): an event counts as sent only once the broker
 * acknowledged it (idempotent producer, acks=all); a consumer commits an
 * offset only after the outputs of every record below it were acknowledged,
 * so a crash replays records, never loses them.
 *
 * Configuration: defaults are set first, then opt_apply() sets -b and the
 * user's -X/-F properties in order, so -X overrides any default.  Overriding
 * enable.idempotence or acks voids the guarantee above.
 *
 * Threads: besides librdkafka's own, one: a group consumer over librdkafka
 * before 2.2 starts a fetch kicker (kafka.c) that asks the leaders of its
 * assigned partitions for their end offsets while kafka_consumer_poll()
 * drains a full queue; it calls nothing of the caller's, and
 * kafka_consumer_close() joins it.  Delivery callbacks (kafka_dr_cb), error
 * and rebalance handling all run on the thread that calls kafka_poll(),
 * kafka_flush(), kafka_produce() (while it waits for room),
 * kafka_consumer_poll() or kafka_consumer_close().  A command polls its
 * producer and its consumer from one thread, so a delivery callback may
 * call kafka_consumer_done() directly.  Only librdkafka's log lines come
 * from its internal threads; they go through log.h, which is safe for that.
 */
#ifndef OF_KAFKA_H
#define OF_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "opt.h"

/* How long kafka_produce() waits for room in a full queue. */
#define KAFKA_QUEUE_WAIT_MS	30000

struct kafka_producer;
struct kafka_consumer;

/*
 * Called once per produced message with its outcome: err 0 means the
 * broker acknowledged it at partition and offset; otherwise it was not
 * delivered (offset is -1 and partition may be -1).
 */
typedef void kafka_dr_cb(void *opaque, rd_kafka_resp_err_t err,
	    int32_t partition, int64_t offset);

/*
 * Producer: enable.idempotence=true, acks=all, linger.ms=0.5 (latency
 * first, but long enough that outputs produced one by one go out
 * together instead of each in a request of its own),
 * queue.buffering.max.kbytes=2048 and queue.buffering.max.messages=100000
 * (bounded memory), partitioner=murmur2_random (the Java clients' choice,
 * so a key lands on the same partition whoever produced it), no
 * compression unless -X compression.type=... is given.  Returns NULL with
 * a message in err on a bad property.
 */
struct kafka_producer *kafka_producer_new(const struct opt_kafka *,
	    char *err, size_t errlen);

/*
 * For a mode that makes no client (pipe mode): checks -b, -X and -F as
 * making one would, on a librdkafka configuration that is then dropped,
 * so that a bad property is the same usage error in every mode.  Exits
 * OF_EXIT_USAGE with the message a client's making would log.
 */
void	kafka_conf_check(const struct opt_kafka *);

/*
 * Queues one message for topic; the key (NULL for none) and value are
 * copied.  headers (may be NULL) belong to librdkafka once this returns 0;
 * on an error the caller keeps them.  A full queue is not an error: it
 * serves delivery reports and retries for up to KAFKA_QUEUE_WAIT_MS.
 * cb (may be NULL) is called exactly once, from a later kafka_poll(),
 * kafka_flush(), kafka_produce(), kafka_producer_tick(),
 * kafka_producer_release() or kafka_producer_destroy(), and only if
 * this returns 0.  Returns 0 or the error (RD_KAFKA_RESP_ERR__FATAL: see
 * kafka_fatal()).
 */
rd_kafka_resp_err_t kafka_produce(struct kafka_producer *, const char *topic,
	    const void *key, size_t keylen, const void *value, size_t vlen,
	    rd_kafka_headers_t *headers, kafka_dr_cb *cb, void *opaque);

/*
 * The same with the callback and its opaque in dr, memory of the
 * caller's that must stay as it is until the callback was called (or
 * this returned an error): a caller that keeps such memory for each
 * message spares kafka_produce()'s allocation of it.  The fields are
 * kafka.c's but cb and opaque, which the caller sets.
 */
struct kafka_dr {
	kafka_dr_cb	*cb;
	void		*opaque;
	int		 alone;		/* kafka.c's own: freed after cb */
};

rd_kafka_resp_err_t kafka_produce_dr(struct kafka_producer *,
	    const char *topic, const void *key, size_t keylen,
	    const void *value, size_t vlen, rd_kafka_headers_t *headers,
	    struct kafka_dr *dr);

/*
 * Holding back: from now on kafka_produce() keeps a copy of each message
 * instead of handing it to librdkafka, until max are held or
 * kafka_producer_tick() or kafka_producer_release() lets them go, in the
 * order produced.  librdkafka sends a partition's messages in a request
 * of their own once its linger has passed since the first; a worker that
 * hands over its outputs one by one as they are ready, with a backlog to
 * work through, has them sent in many small requests, each of which costs
 * the broker about as much as a large one (scripts/bench.d/FINDINGS.md,
 * relay).  Held back while the backlog lasts, they go out in fewer, larger
 * ones.  A message librdkafka refuses when it is let go has its callback
 * called with the error, from the call that let it go.  hold_ms 0 stops
 * holding (letting go what is held).
 */
void	kafka_producer_hold(struct kafka_producer *, int hold_ms, size_t max);

/*
 * Lets the held messages go if starved (the caller has no input waiting,
 * so nothing would join them) or the first has been held hold_ms.
 */
void	kafka_producer_tick(struct kafka_producer *, int starved);

/* Lets every held message go to librdkafka. */
void	kafka_producer_release(struct kafka_producer *);

/* Serves delivery reports and errors; returns how many events it served. */
int	kafka_poll(struct kafka_producer *, int timeout_ms);

/*
 * Lets the held messages go, then waits up to timeout_ms for every queued
 * message to be acknowledged or failed, serving their callbacks.  Returns how many are still queued: a
 * caller that gets more than 0 reports them and exits OF_EXIT_KAFKA.
 */
int	kafka_flush(struct kafka_producer *, int timeout_ms);

/*
 * Destroys the producer.  Messages still queued are purged and their
 * callbacks get RD_KAFKA_RESP_ERR__PURGE_QUEUE: call kafka_flush() first.
 */
void	kafka_producer_destroy(struct kafka_producer *);

rd_kafka_t *kafka_producer_rk(struct kafka_producer *);

/*
 * For a handle made here (kafka_producer_rk(), kafka_consumer_rk()):
 *
 * kafka_fatal() returns 1 and the reason in buf when the client raised a
 * fatal error (it can do nothing more: stop with OF_EXIT_KAFKA), else 0.
 *
 * kafka_unreachable() returns 1 when librdkafka reported every broker down
 * and none has answered since (a delivery, a message, a metadata reply).
 *
 * kafka_wait_reachable() asks a broker for metadata until one answers or
 * timeout_ms passes.  Returns 0, or the last error (RD_KAFKA_RESP_ERR__
 * TIMED_OUT, __TRANSPORT, __FATAL, ...): then the caller exits
 * OF_EXIT_KAFKA.
 */
int	kafka_fatal(rd_kafka_t *, char *buf, size_t len);
int	kafka_unreachable(rd_kafka_t *);
rd_kafka_resp_err_t kafka_wait_reachable(rd_kafka_t *, int timeout_ms);

/*
 * kafka_coordinator_moving() returns 1 when err says a group's coordinator
 * is moving or loading (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
 * COORDINATOR_NOT_AVAILABLE): asking again a little later may succeed.
 */
int	kafka_coordinator_moving(rd_kafka_resp_err_t);

/*
 * kafka_committed() is rd_kafka_committed() that asks again, until
 * timeout_ms passes, while the group's coordinator is moving or loading
 * (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_
 * AVAILABLE, for the request or any partition): a broker answers so
 * while it starts or takes over __consumer_offsets, and librdkafka does
 * not retry them here.  Returns 0 only when every partition's offset was
 * read (RD_KAFKA_OFFSET_INVALID where none is committed); a partition's
 * error is returned as the request's, since reading it as "nothing
 * committed" would start that partition over.
 */
rd_kafka_resp_err_t kafka_committed(rd_kafka_t *,
	    rd_kafka_topic_partition_list_t *, int timeout_ms);

/*
 * kafka_leader_moving() returns 1 when err says a partition's leader is
 * moving or not yet known to the broker asked (NOT_LEADER_OR_FOLLOWER,
 * LEADER_NOT_AVAILABLE, FENCED_ or UNKNOWN_LEADER_EPOCH, OFFSET_NOT_
 * AVAILABLE, UNKNOWN_TOPIC_OR_PART, a lost connection): a broker answers
 * so for seconds after a topic is created or a broker restarts.
 */
int	kafka_leader_moving(rd_kafka_resp_err_t);

/*
 * kafka_watermarks() is rd_kafka_query_watermark_offsets() that asks
 * again, until timeout_ms passes, while the partition's leader is moving
 * (kafka_leader_moving()); librdkafka returns those errors at once here.
 * The caller has seen the partition in the topic's metadata, so an
 * unknown partition is taken for one the broker has not caught up with.
 */
rd_kafka_resp_err_t kafka_watermarks(rd_kafka_t *, const char *topic,
	    int32_t partition, int64_t *low, int64_t *high, int timeout_ms);

/*
 * Headers (kafkahdr.c).  Values are UTF-8 strings (orderflow(7), HEADERS),
 * numbers in decimal.
 * Names are compared exactly; when a name occurs more than once the last
 * occurrence counts.  hdrs may be NULL when reading (no headers).
 */
int	kafka_header_add_str(rd_kafka_headers_t *, const char *name,
	    const char *value);
int	kafka_header_add_int64(rd_kafka_headers_t *, const char *name,
	    int64_t value);

/* The message's headers, or NULL; they belong to the message. */
const rd_kafka_headers_t *kafka_msg_headers(const rd_kafka_message_t *);

/*
 * Copies the last value of name into buf, NUL-terminated.  Returns its
 * length; -1 when absent (or a null value); -2 when it does not fit in buf
 * or holds a NUL byte (buf is then "").
 */
int	kafka_header_get_str(const rd_kafka_headers_t *, const char *name,
	    char *buf, size_t len);

/* The same for a header's value v of sz bytes (NULL: absent). */
int	kafka_header_str(const void *v, size_t sz, char *buf, size_t len);

/*
 * The last values of n names in one pass over the headers, for a reader
 * of many: vals[i] and sizes[i] for names[i], vals[i] NULL when absent
 * (or a null value).  The values belong to the headers.
 */
void	kafka_headers_find(const rd_kafka_headers_t *,
	    const char *const *names, size_t n, const void **vals,
	    size_t *sizes);

/* Returns 0 and sets *v; -1 when absent; -2 when not a decimal int64. */
int	kafka_header_get_int64(const rd_kafka_headers_t *, const char *name,
	    int64_t *v);

/*
 * A new list with every header of src (may be NULL) in order, except
 * those named in drop (NULL-terminated; may be NULL).
 */
rd_kafka_headers_t *kafka_headers_copy_except(const rd_kafka_headers_t *src,
	    const char *const *drop);

/*
 * Consumer in group o->group subscribed to topics (NULL-terminated):
 * partition.assignment.strategy=range (eager; cooperative-sticky given
 * with -X works too),
 * auto.offset.reset=earliest, enable.auto.commit=true with
 * enable.auto.offset.store=false and auto.commit.interval.ms=1000:
 * librdkafka commits in the background only what this module stored, and
 * it stores only offsets the tracker says are safe.  Overriding
 * enable.auto.offset.store voids the guarantee.  session.timeout.ms=10000:
 * a member gone for good loses its partitions within 10 s.  With a
 * group.instance.id (worker.h gives one by default, -X sets another) the
 * member is static: a restart with the same id gets its partitions back
 * with no rebalance, and closing does not leave the group (its
 * partitions wait for it for the session timeout).  A static member can
 * be fenced (kafka_fatal() with FENCED_INSTANCE_ID): then the caller
 * closes it and makes a new one.  Returns NULL with a message in err on
 * a bad property or topic list.
 */
struct kafka_consumer *kafka_consumer_new(const struct opt_kafka *,
	    const char *const *topics, char *err, size_t errlen);

/*
 * The next message, or NULL on a timeout or an error (logged; partition
 * EOF is not one).  After NULL a caller checks kafka_fatal().  Rebalances
 * are handled in here.  The caller destroys the message with
 * rd_kafka_message_destroy().
 */
rd_kafka_message_t *kafka_consumer_poll(struct kafka_consumer *,
	    int timeout_ms);

/*
 * The caller starts processing msg: its offset is pending until
 * kafka_consumer_done().  Messages the caller skips on purpose (an invalid
 * one sent to the DLQ is processed, not skipped) must still be tracked
 * and done.  Returns 0, or -1 when out of memory.
 */
int	kafka_consumer_track(struct kafka_consumer *,
	    const rd_kafka_message_t *msg);

/*
 * The output of the record at topic/partition/offset was acknowledged (or
 * it needed none).  Stores the next offset to commit (rd_kafka_offsets_store)
 * when this moved it; auto-commit writes it within a second.  Returns 0,
 * or -1 when the record is not pending (its partition was revoked since:
 * harmless, another consumer will process it again).
 */
int	kafka_consumer_done(struct kafka_consumer *, const char *topic,
	    int32_t partition, int64_t offset);

/* Records tracked and not done yet, over every partition. */
size_t	kafka_consumer_pending(const struct kafka_consumer *);

/* The tracker's window of one partition: offtrack_partition_window(). */
size_t	kafka_consumer_window(const struct kafka_consumer *,
	    const char *topic, int32_t partition);

/*
 * Called on revocation before the revoked partitions' offsets are
 * committed, so the caller can flush its producer (kafka_flush()) and let
 * the deliveries mark records done: fewer records are processed twice.
 * Not called once kafka_consumer_close() hands the handle to librdkafka's
 * close, which may outlive the call.
 */
void	kafka_consumer_on_revoke(struct kafka_consumer *,
	    void (*fn)(void *opaque), void *opaque);

/*
 * Stops and restarts fetching one assigned partition (a retry record not
 * due yet).  Returns 0 or -1 (logged).
 */
int	kafka_consumer_pause(struct kafka_consumer *, const char *topic,
	    int32_t partition);
int	kafka_consumer_resume(struct kafka_consumer *, const char *topic,
	    int32_t partition);

/*
 * Stops (hold 1) and restarts (hold 0) fetching every assigned partition,
 * including those assigned while held: the bound of the records a worker
 * holds at once.  Resuming also resumes partitions paused one by one;
 * the caller pauses those again.  Returns 0 or -1 (logged).
 */
int	kafka_consumer_hold(struct kafka_consumer *, int hold);

/*
 * The partition will be consumed from offset again (usually the offset of
 * a record received but not processed yet, together with pause).  The
 * tracker is rewound first, so nothing at or above offset is committed
 * before it is processed.  Returns 0 or -1 (logged).
 */
int	kafka_consumer_seek(struct kafka_consumer *, const char *topic,
	    int32_t partition, int64_t offset);

/* Commits the stored offsets now, synchronously.  Returns 0 or -1 (logged). */
int	kafka_consumer_commit(struct kafka_consumer *);

/* A list of one partition at offset; the caller destroys it. */
rd_kafka_topic_partition_list_t *
	kafka_one_partition(const char *topic, int32_t partition,
	    int64_t offset);

/*
 * Commits the stored offsets synchronously, leaves the group (revoking:
 * see kafka_consumer_on_revoke()) and destroys the consumer.  A graceful
 * shutdown first stops taking new records and flushes its producer until
 * kafka_consumer_pending() is 0 or a deadline passes.  Every message
 * polled must have been destroyed: librdkafka waits for them.  A close that
 * has not ended after 10 s is left to the process's exit (logged): the
 * group then hands the partitions out after its session timeout.  The
 * process is expected to exit soon after.  Returns 0, or -1 when a commit
 * failed (logged).
 */
int	kafka_consumer_close(struct kafka_consumer *);

rd_kafka_t *kafka_consumer_rk(struct kafka_consumer *);

/*
 * Bare handles, for what the producer and group consumer above do not do.
 * Each gets client.id, then the properties named below, then defaults
 * (the command's own: name, value pairs, NULL-terminated; may be NULL),
 * then opt_apply(), so -X still overrides them.  Both return NULL with a
 * message in err on a bad property; the caller releases a handle with
 * kafka_destroy(), after rd_kafka_consumer_close() for a consumer.
 *
 * kafka_assigned_new(): a consumer of group o->group (group.id, set
 * before defaults) that never joins it: the caller assigns it partitions
 * (rd_kafka_assign()), polls it with rd_kafka_consumer_poll() and
 * commits offsets itself.  A failed asynchronous commit is a debug line:
 * the next commit, or the caller's last synchronous one, tries again.
 *
 * kafka_admin_new(): a handle for Admin API requests and metadata only:
 * a producer that never produces or, when group is not NULL, a consumer
 * whose group.id is group (set after the user's properties) and that
 * never joins it.  It is quiet: librdkafka's log lines and errors are
 * debug lines, since the command reports a failure itself, in one line.
 */
rd_kafka_t *kafka_assigned_new(const struct opt_kafka *,
	    const char *const *defaults, char *err, size_t errlen);
rd_kafka_t *kafka_admin_new(const struct opt_kafka *, const char *group,
	    const char *const *defaults, char *err, size_t errlen);

/* Destroys a handle from kafka_assigned_new() or kafka_admin_new(). */
void	kafka_destroy(rd_kafka_t *);

/*
 * The last authentication or TLS error (RD_KAFKA_RESP_ERR__AUTHENTICATION,
 * __SSL) a handle made here reported, or 0.  Errors wait in the handle's
 * main queue until served: poll it (rd_kafka_poll()) first.  A later "all
 * brokers down" does not hide it.
 */
rd_kafka_resp_err_t kafka_auth_error(rd_kafka_t *);

/*
 * The log callback of every handle made here.  It maps librdkafka's
 * syslog(3) levels to log.h's: LOG_ERR and worse an error, LOG_WARNING a
 * warning, LOG_NOTICE and LOG_INFO information, LOG_DEBUG debug; lines of
 * the facilities FAIL (one broker connection failed: reported once, as
 * no broker reachable) and FATAL (kafka_fatal()'s reason) and every line
 * of a quiet handle (kafka_admin_new()) are debug lines.  It writes
 * "kafka: FACILITY: line" with the value of every secret property (as
 * log_redact() says) in the line redacted, and so do the error callback
 * and the error messages of the constructors here.  rk may be NULL.
 */
void	kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
	    const char *buf);

#endif
