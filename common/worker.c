/*
 * worker.c - the consume, handle, produce loop of worker.h: Kafka mode
 * with the retry topic, paused partitions and the DLQ; pipe mode with a
 * reader thread and in-process retries; signals and graceful shutdown.
 *
 * One thread does everything (handlers, delivery callbacks, rebalances);
 * only pipe mode adds a thread that does nothing but read lines, so that
 * a retry comes due on time while the input is idle.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "event.h"
#include "exitcode.h"
#include "jsonl.h"
#include "kafka.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#define TICK_MS			1000
#define REACHABLE_MS		10000	/* startup: wait for a broker */
#define REVOKE_FLUSH_MS		10000
#define WHY_MAX			512
#define ATTEMPT_MAX		1000000

#define HDR_ATTEMPT		"orderflow.attempt"
#define HDR_NOT_BEFORE		"orderflow.not-before"
#define HDR_ORIG_TOPIC		"orderflow.original.topic"
#define HDR_ORIG_PARTITION	"orderflow.original.partition"
#define HDR_ORIG_OFFSET		"orderflow.original.offset"
#define HDR_KIND		"orderflow.error.kind"
#define HDR_MESSAGE		"orderflow.error.message"

/*
 * Memory (pay-process stays under 32 MiB resident): the consumer keeps
 * at most 10000 records or 1 MiB prefetched and fetches at most 1 MiB at
 * once (a larger record still comes alone), and the producer queues at
 * most 2 MiB (kafka.c), instead of librdkafka's 100000 records and
 * 64 MiB.  Applied before -X and -F, which may override them.
 *
 * A full prefetch queue stops fetching until librdkafka looks again: a
 * second later before 2.2 unless kafka.c's kicker wakes it, and
 * fetch.queue.backoff.ms later since.  With the kicker, pay-process on a
 * backlog of 100,000 events did as well with 1 MiB as with 2 MiB (about
 * 21,000 events a second) at 2 MiB less resident.
 */
static struct opt_prop consumer_props[] = {
	{ "queued.min.messages", "10000", "worker default" },
	{ "queued.max.messages.kbytes", "1024", "worker default" },
	{ "fetch.max.bytes", "1048576", "worker default" },
	{ "fetch.queue.backoff.ms", "20", "worker default" }
};
#define CONSUMER_PROPS_OLD	3	/* librdkafka < 2.2: the first three */
static struct opt_prop producer_props[] = {
	{ "queue.buffering.max.kbytes", "2048", "worker default" }
};

/* A retry-topic partition paused until its first record is due. */
struct pause {
	const char	*topic;
	int32_t		 partition;
	int64_t		 offset;
	int64_t		 due_ms;	/* epoch ms */
};

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
 * Pipe mode: the reader thread hands lines over through a ring of slots.
 * Handing over one line at a time cost two thread wake-ups a line, a
 * quarter of pay-process's time; the reader now sleeps until the ring is
 * half empty and refills it.  READER_BYTES bounds the lines it holds.
 */
#define READER_SLOTS	64
#define READER_BYTES	(1024 * 1024)

struct reader_slot {
	int		 status;	/* enum jsonl_status */
	char		*line;
	size_t		 len;
	long		 lineno;
	char		 err[256];
};

struct reader {
	pthread_t	 th;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;		/* count or quit changed */
	struct jsonl	*r;
	struct reader_slot slots[READER_SLOTS];
	size_t		 head;		/* the oldest filled slot */
	size_t		 count;		/* filled slots */
	size_t		 bytes;		/* of their lines */
	int		 waiting;	/* the reader waits for room */
	int		 quit;		/* the worker wants no more */
};

struct worker {
	const struct worker_config *cf;
	struct worker_stats	*st;
	struct kafka_producer	*p;
	struct kafka_consumer	*c;
	FILE			*dlq_fp;
	const char		*in_name;	/* pipe mode: for messages */
	struct pause		*pauses;
	size_t			 npauses;
	struct pipe_retry	*heap;		/* min-heap on due_ms */
	size_t			 nheap;
	size_t			 heapcap;
	int			 rc;		/* the first error, or OK */
	unsigned long		 rejected;	/* pipe mode: invalid inputs */
	int64_t			 next_tick;
	int64_t			 next_report;
};

enum dr_kind { DR_OUTPUT, DR_RETRY, DR_DLQ };

/* What a produced record's delivery callback needs. */
struct dr {
	struct worker	*w;
	const char	*topic;		/* the input's topic; NULL: no offset */
	int32_t		 partition;
	int64_t		 offset;
	enum dr_kind	 kind;
};

/* The signals that stop a run, in the order worker_run() restores them. */
static const int stop_signals[] = { SIGINT, SIGTERM, 0 };

static volatile sig_atomic_t stopping;	/* worker_stop() */

void
worker_stop(void)
{
	stopping = 1;
}

/* 0 once worker_stop(), SIGINT or SIGTERM asked the run to end. */
static int
running(void)
{
	return !stopping && !util_signal_caught();
}

void
worker_catch_signals(void)
{
	util_signals_catch(stop_signals, SA_RESTART, NULL);
}

static void
fail(struct worker *w, int code)
{
	if (w->rc == OF_EXIT_OK)
		w->rc = code;
}

static uint64_t
random64(void)
{
	return (uint64_t)arc4random() << 32 | arc4random();
}

int64_t
worker_backoff(const struct worker_config *cf, int attempt)
{
	int64_t d, half;
	int i;

	if (attempt < 2 || cf->backoff_ms <= 0 || cf->backoff_max_ms <= 0)
		return 0;
	d = cf->backoff_ms;
	for (i = 2; i < attempt && d < cf->backoff_max_ms; i++)
		d = d > INT64_MAX / 2 ? INT64_MAX : d * 2;
	if (d > cf->backoff_max_ms)
		d = cf->backoff_max_ms;
	half = d / 2;
	return half + (int64_t)(random64() % (uint64_t)(d - half + 1));
}

/*
 * Logging: what a line is about.
 */

/* The key as an order id for log lines, when it is printable. */
static const char *
key_str(const struct worker_input *in, char *buf, size_t len)
{
	const unsigned char *k = in->key;
	size_t i;

	if (k == NULL || in->keylen == 0 || in->keylen >= len)
		return NULL;
	for (i = 0; i < in->keylen; i++)
		if (k[i] <= ' ' || k[i] >= 0x7f)
			return NULL;
	memcpy(buf, k, in->keylen);
	buf[in->keylen] = '\0';
	return buf;
}

/* "topic [p] at offset n" or "stdin:n". */
static const char *
where(const struct worker *w, const struct worker_input *in, char *buf,
    size_t len)
{
	if (in->partition < 0)
		snprintf(buf, len, "%s:%" PRId64, w->in_name, in->offset);
	else
		snprintf(buf, len, "%s [%d] at offset %" PRId64, in->topic,
		    (int)in->partition, in->offset);
	return buf;
}

static void
log_in(const struct worker *w, int level, const struct worker_input *in,
    const char *what, const char *why)
{
	struct log_ctx ctx = { 0 };
	char kbuf[ORDER_ID_MAX + 1], wbuf[512], trace[TRACE_ID_LEN + 1];

	ctx.order_id = key_str(in, kbuf, sizeof(kbuf));
	if (in->traceparent != NULL && trace_id_of(in->traceparent, trace) == 0)
		ctx.trace_id = trace;
	log_msg(level, &ctx, "%s: %s%s%s", where(w, in, wbuf, sizeof(wbuf)),
	    what, why != NULL ? ": " : "", why != NULL ? why : "");
}

/*
 * Kafka outputs and their acknowledgements.
 */

/* The input's topic as a string that lives as long as the run. */
static const char *
input_topic(const struct worker *w, const struct worker_input *in)
{
	if (w->c == NULL || in->partition < 0)
		return NULL;
	if (strcmp(in->topic, w->cf->retry_topic) == 0)
		return w->cf->retry_topic;
	return w->cf->in_topic;
}

static void
input_done(struct worker *w, const struct worker_input *in)
{
	const char *t;

	if (w->c != NULL && (t = input_topic(w, in)) != NULL)
		kafka_consumer_done(w->c, t, in->partition, in->offset);
}

static void
delivered(void *opaque, rd_kafka_resp_err_t err, int32_t partition,
    int64_t offset)
{
	static const char *const what[] = { "output", "retry", "dead letter" };
	struct dr *d = opaque;
	struct worker *w = d->w;

	(void)partition;
	(void)offset;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		w->st->failed++;
		if (d->topic != NULL)
			log_error("the %s of %s [%d] at offset %" PRId64
			    " was not acknowledged: %s", what[d->kind],
			    d->topic, (int)d->partition, d->offset,
			    rd_kafka_err2str(err));
		else
			log_error("the %s of %s:%" PRId64 " was not "
			    "acknowledged: %s", what[d->kind], w->in_name,
			    d->offset, rd_kafka_err2str(err));
		fail(w, OF_EXIT_KAFKA);
	} else {
		if (d->kind == DR_RETRY)
			w->st->retried++;
		else if (d->kind == DR_DLQ)
			w->st->dead_lettered++;
		if (d->topic != NULL && w->c != NULL)
			kafka_consumer_done(w->c, d->topic, d->partition,
			    d->offset);
	}
	free(d);
}

/* Produces one record for in; h belongs to this function. */
static int
produce(struct worker *w, const struct worker_input *in, enum dr_kind kind,
    const char *topic, const void *key, size_t keylen, const void *value,
    size_t vlen, rd_kafka_headers_t *h)
{
	rd_kafka_resp_err_t err;
	struct dr *d;

	if ((d = malloc(sizeof(*d))) == NULL) {
		rd_kafka_headers_destroy(h);
		log_error("out of memory");
		fail(w, OF_EXIT_FAIL);
		return -1;
	}
	d->w = w;
	d->topic = input_topic(w, in);
	d->partition = in->partition;
	d->offset = in->offset;
	d->kind = kind;
	err = kafka_produce(w->p, topic, key, keylen, value, vlen, h,
	    delivered, d);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_headers_destroy(h);
		free(d);
		log_error("%s: cannot produce: %s", topic, rd_kafka_err2str(err));
		fail(w, OF_EXIT_KAFKA);
		return -1;
	}
	return 0;
}

/*
 * The headers of a retry or dead-letter record: the input's, without the
 * control headers, which are set again.  A record read from the retry
 * topic keeps the orderflow.original.* it carries.
 */
static rd_kafka_headers_t *
control_headers(const struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *src, int attempt, int64_t not_before,
    const char *kind, const char *why)
{
	static const char *const drop_all[] = { HDR_ATTEMPT, HDR_NOT_BEFORE,
	    HDR_KIND, HDR_MESSAGE, HDR_ORIG_TOPIC, HDR_ORIG_PARTITION,
	    HDR_ORIG_OFFSET, NULL };
	static const char *const drop_ctl[] = { HDR_ATTEMPT, HDR_NOT_BEFORE,
	    HDR_KIND, HDR_MESSAGE, NULL };
	rd_kafka_headers_t *h;
	char buf[1];
	int keep;

	keep = src != NULL && in->partition >= 0 &&
	    strcmp(in->topic, w->cf->retry_topic) == 0 &&
	    kafka_header_get_str(src, HDR_ORIG_TOPIC, buf, sizeof(buf)) != -1;
	h = kafka_headers_copy_except(src, keep ? drop_ctl : drop_all);
	kafka_header_add_int64(h, HDR_ATTEMPT, attempt);
	if (not_before > 0)
		kafka_header_add_int64(h, HDR_NOT_BEFORE, not_before);
	if (!keep) {
		kafka_header_add_str(h, HDR_ORIG_TOPIC, in->topic);
		kafka_header_add_int64(h, HDR_ORIG_PARTITION, in->partition);
		kafka_header_add_int64(h, HDR_ORIG_OFFSET, in->offset);
	}
	kafka_header_add_str(h, HDR_KIND, kind);
	kafka_header_add_str(h, HDR_MESSAGE, why);
	return h;
}

/*
 * Dead letters as JSON lines.
 */

/* Adds name: the bytes as a string, or name_base64 when not UTF-8 text. */
static int
add_bytes(cJSON *o, const char *name, const void *buf, size_t len)
{
	char b64name[64], *s;
	int b64, ok;

	if (buf == NULL)
		return cJSON_AddNullToObject(o, name) != NULL ? 0 : -1;
	if ((s = util_json_bytes(buf, len, &b64)) == NULL)
		return -1;
	snprintf(b64name, sizeof(b64name), "%s_base64", name);
	ok = cJSON_AddStringToObject(o, b64 ? b64name : name, s) != NULL;
	free(s);
	return ok ? 0 : -1;
}

/* The headers as an object; the last of a name wins, as in kafka.h. */
static cJSON *
headers_json(const rd_kafka_headers_t *h)
{
	cJSON *o;
	const char *name;
	const void *v;
	char *s;
	size_t i, sz;

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	for (i = 0; rd_kafka_header_get_all(h, i, &name, &v, &sz) ==
	    RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
		if (v == NULL || memchr(v, '\0', sz) != NULL ||
		    jsonl_utf8_check(v, sz, NULL) != 0 ||
		    (s = strndup(v, sz)) == NULL)
			continue;
		cJSON_DeleteItemFromObjectCaseSensitive(o, name);
		cJSON_AddStringToObject(o, name, s);
		free(s);
	}
	return o;
}

static int
write_dead_letter(struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *h)
{
	cJSON *o, *hj;
	char *s = NULL;
	int rc = -1;

	if ((o = cJSON_CreateObject()) == NULL)
		return -1;
	if (cJSON_AddStringToObject(o, "topic", w->cf->dlq_topic) != NULL &&
	    add_bytes(o, "key", in->key, in->keylen) == 0 &&
	    add_bytes(o, "value", in->value, in->len) == 0 &&
	    (hj = headers_json(h)) != NULL) {
		cJSON_AddItemToObject(o, "headers", hj);
		s = cJSON_PrintUnformatted(o);
	}
	cJSON_Delete(o);
	if (s == NULL) {
		log_error("out of memory");
		fail(w, OF_EXIT_FAIL);
		return -1;
	}
	if (fputs(s, w->dlq_fp) == EOF || putc('\n', w->dlq_fp) == EOF ||
	    fflush(w->dlq_fp) == EOF) {
		log_error("%s: %s", w->cf->dlq_file != NULL ?
		    w->cf->dlq_file : "stderr", strerror(errno));
		fail(w, OF_EXIT_FAIL);
	} else
		rc = 0;
	free(s);
	return rc;
}

/*
 * The outcomes.
 */

static void
dead_letter(struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *src, const char *kind, const char *why)
{
	rd_kafka_headers_t *h;
	char what[64];

	snprintf(what, sizeof(what), "dead letter (%s)", kind);
	log_in(w, LOG_LEVEL_WARN, in, what, why);
	if (w->cf->input != NULL && strcmp(kind, "invalid") == 0)
		w->rejected++;
	h = control_headers(w, in, src, in->attempt, 0, kind, why);
	if (w->cf->output != NULL) {
		if (write_dead_letter(w, in, h) == 0) {
			w->st->dead_lettered++;
			input_done(w, in);
		}
		rd_kafka_headers_destroy(h);
	} else
		produce(w, in, DR_DLQ, w->cf->dlq_topic, in->key, in->keylen,
		    in->value, in->len, h);
}

/* Pipe mode: the heap of records waiting for a retry. */
static void
heap_swap(struct pipe_retry *a, struct pipe_retry *b)
{
	struct pipe_retry t = *a;

	*a = *b;
	*b = t;
}

static int
heap_push(struct worker *w, const struct pipe_retry *r)
{
	struct pipe_retry *n;
	size_t i;

	if (w->nheap == w->heapcap) {
		n = reallocarray(w->heap, w->heapcap == 0 ? 16 :
		    w->heapcap * 2, sizeof(*n));
		if (n == NULL)
			return -1;
		w->heap = n;
		w->heapcap = w->heapcap == 0 ? 16 : w->heapcap * 2;
	}
	i = w->nheap++;
	w->heap[i] = *r;
	for (; i > 0 && w->heap[(i - 1) / 2].due_ms > w->heap[i].due_ms;
	    i = (i - 1) / 2)
		heap_swap(&w->heap[(i - 1) / 2], &w->heap[i]);
	return 0;
}

static struct pipe_retry
heap_pop(struct worker *w)
{
	struct pipe_retry top = w->heap[0];
	size_t i = 0, l, m;

	w->heap[0] = w->heap[--w->nheap];
	for (;;) {
		l = 2 * i + 1;
		m = i;
		if (l < w->nheap && w->heap[l].due_ms < w->heap[m].due_ms)
			m = l;
		if (l + 1 < w->nheap && w->heap[l + 1].due_ms <
		    w->heap[m].due_ms)
			m = l + 1;
		if (m == i)
			break;
		heap_swap(&w->heap[i], &w->heap[m]);
		i = m;
	}
	return top;
}

static void
retry(struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *src, const char *why)
{
	struct pipe_retry r;
	rd_kafka_headers_t *h;
	int64_t delay;
	char what[96];

	delay = worker_backoff(w->cf, in->attempt + 1);
	snprintf(what, sizeof(what), "attempt %d failed, attempt %d in %"
	    PRId64 " ms", in->attempt, in->attempt + 1, delay);
	log_in(w, LOG_LEVEL_INFO, in, what, why);
	if (w->c != NULL) {
		h = control_headers(w, in, src, in->attempt + 1,
		    util_now_ms() + delay, "transient", why);
		produce(w, in, DR_RETRY, w->cf->retry_topic, in->key,
		    in->keylen, in->value, in->len, h);
		return;
	}
	memset(&r, 0, sizeof(r));
	r.due_ms = util_mono_ms() + delay;
	r.len = in->len;
	r.lineno = (long)in->offset;
	r.attempt = in->attempt + 1;
	if ((r.value = malloc(in->len + 1)) == NULL ||
	    (r.why = strdup(why)) == NULL || heap_push(w, &r) == -1) {
		free(r.value);
		free(r.why);
		log_error("out of memory");
		fail(w, OF_EXIT_FAIL);
		return;
	}
	if (in->len > 0)
		memcpy(r.value, in->value, in->len);
	r.value[in->len] = '\0';
	w->st->retried++;
}

static void
emit(struct worker *w, const struct worker_input *in,
    const struct worker_output *out)
{
	rd_kafka_headers_t *h;

	if (w->cf->output != NULL) {
		if (fputs(out->value, stdout) == EOF ||
		    putc('\n', stdout) == EOF || fflush(stdout) == EOF) {
			log_error("stdout: %s", strerror(errno));
			fail(w, OF_EXIT_FAIL);
			return;
		}
		input_done(w, in);
		return;
	}
	if (w->cf->out_topic == NULL) {
		log_error("worker: an output but no output topic");
		fail(w, OF_EXIT_FAIL);
		return;
	}
	h = rd_kafka_headers_new(2);
	kafka_header_add_str(h, "content-type", EVENT_CONTENT_TYPE);
	if (out->traceparent[0] != '\0')
		kafka_header_add_str(h, "traceparent", out->traceparent);
	produce(w, in, DR_OUTPUT, w->cf->out_topic, out->key,
	    out->key != NULL ? strlen(out->key) : 0, out->value,
	    strlen(out->value), h);
}

/* Hands one input to the handler and sends its outcome where it goes. */
static void
handle_one(struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *src)
{
	struct worker_output out;
	enum worker_outcome r;
	char why[WHY_MAX], msg[WHY_MAX + 64];

	memset(&out, 0, sizeof(out));
	why[0] = '\0';
	w->st->processed++;
	r = w->cf->handle(w->cf->ctx, in, &out, why, sizeof(why));
	if (r != WORKER_DONE && why[0] == '\0')
		snprintf(why, sizeof(why), "no reason given");
	switch (r) {
	case WORKER_DONE:
		w->st->done++;
		if (out.value != NULL)
			emit(w, in, &out);
		else
			input_done(w, in);
		break;
	case WORKER_TRANSIENT:
		if (in->attempt < w->cf->max_attempts) {
			retry(w, in, src, why);
			break;
		}
		snprintf(msg, sizeof(msg), "attempt %d of %d failed: %s",
		    in->attempt, w->cf->max_attempts, why);
		dead_letter(w, in, src, "exhausted", msg);
		break;
	case WORKER_PERMANENT:
		dead_letter(w, in, src, "permanent", why);
		break;
	default:
		dead_letter(w, in, src, "invalid", why);
		break;
	}
	free(out.key);
	free(out.value);
}

static void
periodic(struct worker *w)
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
 * The record at offset is not due before due_ms: its partition stops
 * there.  Returns 0, or -1 when the partition could not be paused (the
 * record is then handled now: early rather than never).
 */
static int
pause_until(struct worker *w, const char *topic, int32_t partition,
    int64_t offset, int64_t due_ms)
{
	struct pause *p;
	size_t i;

	if (kafka_consumer_pause(w->c, topic, partition) == -1)
		return -1;
	if (kafka_consumer_seek(w->c, topic, partition, offset) == -1) {
		kafka_consumer_resume(w->c, topic, partition);
		return -1;
	}
	for (i = 0; i < w->npauses; i++)
		if (w->pauses[i].partition == partition &&
		    strcmp(w->pauses[i].topic, topic) == 0)
			break;
	if (i == w->npauses) {
		p = realloc(w->pauses, (w->npauses + 1) * sizeof(*p));
		if (p == NULL) {
			kafka_consumer_resume(w->c, topic, partition);
			return -1;
		}
		w->pauses = p;
		w->npauses++;
	}
	w->pauses[i].topic = topic;
	w->pauses[i].partition = partition;
	w->pauses[i].offset = offset;
	w->pauses[i].due_ms = due_ms;
	log_debug("%s [%d]: offset %" PRId64 " is due in %" PRId64 " ms: "
	    "partition paused", topic, (int)partition, offset,
	    due_ms - util_now_ms());
	return 0;
}

/* Resumes the partitions whose record came due (or was revoked since). */
static void
resume_due(struct worker *w)
{
	int64_t now = util_now_ms();
	size_t i;

	for (i = 0; i < w->npauses;) {
		if (w->pauses[i].due_ms > now) {
			i++;
			continue;
		}
		log_debug("%s [%d]: offset %" PRId64 " is due: partition "
		    "resumed", w->pauses[i].topic, (int)w->pauses[i].partition,
		    w->pauses[i].offset);
		kafka_consumer_resume(w->c, w->pauses[i].topic,
		    w->pauses[i].partition);
		w->pauses[i] = w->pauses[--w->npauses];
	}
}

static void
on_message(struct worker *w, const rd_kafka_message_t *m)
{
	const rd_kafka_headers_t *h;
	struct worker_input in;
	const char *topic;
	int64_t v;
	char tp[64];
	int from_retry;

	topic = rd_kafka_topic_name(m->rkt);
	h = kafka_msg_headers(m);
	from_retry = strcmp(topic, w->cf->retry_topic) == 0;
	if (from_retry && kafka_header_get_int64(h, HDR_NOT_BEFORE, &v) == 0 &&
	    v > util_now_ms() && pause_until(w, w->cf->retry_topic,
	    m->partition, m->offset, v) == 0)
		return;
	if (kafka_consumer_track(w->c, m) == -1) {
		log_error("out of memory");
		fail(w, OF_EXIT_FAIL);
		return;
	}
	memset(&in, 0, sizeof(in));
	in.value = m->payload;
	in.len = m->payload != NULL ? m->len : 0;
	in.key = m->key;
	in.keylen = m->key != NULL ? m->key_len : 0;
	in.attempt = 1;
	if (kafka_header_get_int64(h, HDR_ATTEMPT, &v) == 0 && v >= 1 &&
	    v <= ATTEMPT_MAX)
		in.attempt = (int)v;
	in.topic = from_retry ? w->cf->retry_topic : w->cf->in_topic;
	in.partition = m->partition;
	in.offset = m->offset;
	if (kafka_header_get_str(h, "traceparent", tp, sizeof(tp)) >= 0)
		in.traceparent = tp;
	handle_one(w, &in, h);
}

/* Before revoked partitions commit: let outputs in flight be done. */
static void
on_revoke(void *opaque)
{
	struct worker *w = opaque;

	kafka_flush(w->p, REVOKE_FLUSH_MS);
}

static int
check_fatal(struct worker *w)
{
	char buf[512];

	if ((w->c != NULL && kafka_fatal(kafka_consumer_rk(w->c), buf,
	    sizeof(buf))) || (w->p != NULL &&
	    kafka_fatal(kafka_producer_rk(w->p), buf, sizeof(buf)))) {
		log_error("kafka: fatal error: %s", buf);
		fail(w, OF_EXIT_KAFKA);
		return 1;
	}
	return 0;
}

static void
run_kafka(struct worker *w, const struct opt_kafka *o)
{
	const char *topics[3];
	rd_kafka_message_t *m;
	char err[512];

	topics[0] = w->cf->in_topic;
	topics[1] = w->cf->retry_topic;
	topics[2] = NULL;
	if ((w->c = kafka_consumer_new(o, topics, err, sizeof(err))) == NULL) {
		log_error("%s", err);
		fail(w, OF_EXIT_USAGE);
		return;
	}
	kafka_consumer_on_revoke(w->c, on_revoke, w);
	while (w->rc == OF_EXIT_OK && running()) {
		/* With an idle hook: first what is there, then the hook. */
		m = kafka_consumer_poll(w->c, w->cf->idle != NULL ? 0 :
		    WORKER_POLL_MS);
		if (m == NULL && w->cf->idle != NULL) {
			w->cf->idle(w->cf->ctx);
			m = kafka_consumer_poll(w->c, WORKER_POLL_MS);
		}
		if (m != NULL) {
			on_message(w, m);
			rd_kafka_message_destroy(m);
		} else if (check_fatal(w))
			break;
		kafka_poll(w->p, 0);
		resume_due(w);
		periodic(w);
	}
}

/*
 * Pipe mode.
 */

/* Room for one more line: a free slot, and the byte bound not reached. */
static int
reader_room(const struct reader *rd)
{
	return rd->count == 0 ||
	    (rd->count < READER_SLOTS && rd->bytes < READER_BYTES);
}

/* Drained to half, in slots and in bytes: time to wake a waiting reader. */
static int
reader_low(const struct reader *rd)
{
	return rd->count == 0 || (rd->count <= READER_SLOTS / 2 &&
	    rd->bytes <= READER_BYTES / 2);
}

static void *
reader_main(void *arg)
{
	struct reader *rd = arg;
	struct reader_slot *sl;
	const char *line;
	char *copy;
	size_t len;
	int st;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	do {
		/* Cancelled only while it waits for input. */
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		st = jsonl_next(rd->r, &line, &len);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		copy = NULL;
		if (st == JSONL_LINE && (copy = strndup(line, len)) == NULL)
			st = JSONL_ERROR;
		pthread_mutex_lock(&rd->mu);
		while (!reader_room(rd) && !rd->quit) {
			rd->waiting = 1;
			pthread_cond_wait(&rd->cv, &rd->mu);
		}
		rd->waiting = 0;
		if (rd->quit) {
			pthread_mutex_unlock(&rd->mu);
			free(copy);
			break;
		}
		sl = &rd->slots[(rd->head + rd->count) % READER_SLOTS];
		sl->status = st;
		sl->line = copy;
		sl->len = len;
		sl->lineno = jsonl_lineno(rd->r);
		snprintf(sl->err, sizeof(sl->err), "%s", copy == NULL &&
		    st == JSONL_ERROR && *jsonl_error(rd->r) == '\0' ?
		    "out of memory" : jsonl_error(rd->r));
		if (rd->count++ == 0)
			pthread_cond_broadcast(&rd->cv);
		if (copy != NULL)
			rd->bytes += len;
		pthread_mutex_unlock(&rd->mu);
	} while (st != JSONL_EOF && st != JSONL_ERROR);
	return NULL;
}

static int
reader_start(struct reader *rd, const char *path)
{
	pthread_condattr_t ca;
	sigset_t block, old;
	int e;

	memset(rd, 0, sizeof(*rd));
	if ((rd->r = jsonl_open_file(path, 0)) == NULL) {
		log_error("%s: %s", path, strerror(errno));
		return -1;
	}
	pthread_mutex_init(&rd->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rd->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* Signals go to the worker's thread, never to the reader. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	e = pthread_create(&rd->th, NULL, reader_main, rd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e != 0) {
		log_error("pthread_create: %s", strerror(e));
		jsonl_close(rd->r);
		return -1;
	}
	return 0;
}

static void
reader_stop(struct reader *rd, int finished)
{
	pthread_mutex_lock(&rd->mu);
	rd->quit = 1;
	pthread_cond_broadcast(&rd->cv);
	pthread_mutex_unlock(&rd->mu);
	if (!finished)
		pthread_cancel(rd->th);
	pthread_join(rd->th, NULL);
	for (; rd->count > 0; rd->count--) {
		free(rd->slots[rd->head].line);
		rd->head = (rd->head + 1) % READER_SLOTS;
	}
	jsonl_close(rd->r);
	pthread_cond_destroy(&rd->cv);
	pthread_mutex_destroy(&rd->mu);
}

/*
 * Waits up to wait_ms for the reader's next slot.  Returns 1 with the
 * slot's contents (the caller frees *line), 0 on a timeout.  The reader
 * is woken when the ring has drained to half, not for every slot.
 */
static int
reader_take(struct reader *rd, int64_t wait_ms, int *status, char **line,
    size_t *len, long *lineno, char *err, size_t errlen)
{
	struct timespec ts = util_time_in(CLOCK_MONOTONIC, wait_ms);
	struct reader_slot *sl;
	int got = 0;

	pthread_mutex_lock(&rd->mu);
	while (rd->count == 0 &&
	    pthread_cond_timedwait(&rd->cv, &rd->mu, &ts) != ETIMEDOUT)
		;
	if (rd->count > 0) {
		sl = &rd->slots[rd->head];
		*status = sl->status;
		*line = sl->line;
		*len = sl->len;
		*lineno = sl->lineno;
		snprintf(err, errlen, "%s", sl->err);
		if (sl->line != NULL)
			rd->bytes -= sl->len;
		sl->line = NULL;
		rd->head = (rd->head + 1) % READER_SLOTS;
		rd->count--;
		got = 1;
		if (rd->waiting && reader_low(rd))
			pthread_cond_broadcast(&rd->cv);
	}
	pthread_mutex_unlock(&rd->mu);
	return got;
}

/*
 * The reader's next slot as reader_take(), but with an idle hook the hook
 * runs first when nothing is there at once.
 */
static int
pipe_take(struct worker *w, struct reader *rd, int64_t wait_ms, int *status,
    char **line, size_t *len, long *lineno, char *err, size_t errlen)
{
	if (w->cf->idle != NULL) {
		if (reader_take(rd, 0, status, line, len, lineno, err, errlen))
			return 1;
		w->cf->idle(w->cf->ctx);
	}
	return reader_take(rd, wait_ms, status, line, len, lineno, err,
	    errlen);
}

static void
pipe_input(struct worker_input *in, const void *value,
    size_t len, long lineno, int attempt)
{
	memset(in, 0, sizeof(*in));
	in->value = value;
	in->len = len;
	in->attempt = attempt;
	in->topic = "-";
	in->partition = -1;
	in->offset = lineno;
}

static void
pipe_retry_now(struct worker *w)
{
	struct pipe_retry r = heap_pop(w);
	struct worker_input in;

	pipe_input(&in, r.value, r.len, r.lineno, r.attempt);
	handle_one(w, &in, NULL);
	free(r.value);
	free(r.why);
}

/* One slot from the reader.  Returns 1 at the end of the input. */
static int
pipe_slot(struct worker *w, int status, char *line, size_t len, long lineno,
    const char *err)
{
	struct worker_input in;

	switch (status) {
	case JSONL_LINE:
		pipe_input(&in, line, len, lineno, 1);
		handle_one(w, &in, NULL);
		free(line);
		return 0;
	case JSONL_REJECT:
		pipe_input(&in, NULL, 0, lineno, 1);
		w->st->processed++;
		dead_letter(w, &in, NULL, "invalid", err);
		return 0;
	case JSONL_ERROR:
		log_error("%s: %s", w->in_name, err);
		fail(w, OF_EXIT_FAIL);
		return 1;
	default:
		return 1;
	}
}

static void
nap(int64_t ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	nanosleep(&ts, NULL);
}

/* Stopped with retries waiting: they become dead letters, not lost. */
static void
pipe_abandon(struct worker *w)
{
	struct worker_input in;
	struct pipe_retry r;
	char msg[WHY_MAX + 64];

	while (w->nheap > 0) {
		r = heap_pop(w);
		pipe_input(&in, r.value, r.len, r.lineno, r.attempt - 1);
		snprintf(msg, sizeof(msg), "stopped before attempt %d: %s",
		    r.attempt, r.why);
		dead_letter(w, &in, NULL, "transient", msg);
		free(r.value);
		free(r.why);
	}
}

static void
run_pipe(struct worker *w)
{
	struct reader rd;
	int64_t now, wait;
	size_t len;
	long lineno;
	char *line, err[256];
	int eof = 0, status;

	if (reader_start(&rd, w->cf->input) == -1) {
		fail(w, OF_EXIT_FAIL);
		return;
	}
	w->in_name = jsonl_name(rd.r);
	while (w->rc == OF_EXIT_OK && running()) {
		now = util_mono_ms();
		if (w->nheap > 0 && w->heap[0].due_ms <= now)
			pipe_retry_now(w);
		else if (eof && w->nheap == 0)
			break;
		else {
			wait = WORKER_POLL_MS;
			if (w->nheap > 0 && w->heap[0].due_ms - now < wait)
				wait = w->heap[0].due_ms - now;
			if (eof || w->nheap >= WORKER_PIPE_RETRIES) {
				if (w->cf->idle != NULL)
					w->cf->idle(w->cf->ctx);
				nap(wait);
			} else if (pipe_take(w, &rd, wait, &status, &line,
			    &len, &lineno, err, sizeof(err)))
				eof = pipe_slot(w, status, line, len, lineno,
				    err);
		}
		if (w->p != NULL)
			kafka_poll(w->p, 0);
		periodic(w);
	}
	if (w->nheap > 0)
		pipe_abandon(w);
	reader_stop(&rd, eof);
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
		fail(w, OF_EXIT_KAFKA);
	}
}

static int
check_config(const struct worker_config *cf)
{
	if (cf->handle == NULL || cf->in_topic == NULL ||
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
		fail(w, OF_EXIT_FAIL);
	}
}

static void
run(struct worker *w, const struct opt_kafka *o)
{
	struct opt_kafka co;
	int rc;

	if (open_dlq(w) == -1) {
		fail(w, OF_EXIT_FAIL);
		return;
	}
	if ((w->cf->input == NULL || w->cf->output == NULL) &&
	    (rc = start_producer(w, o)) != OF_EXIT_OK) {
		fail(w, rc);
		return;
	}
	if (w->cf->input != NULL) {
		w->in_name = w->cf->input;
		run_pipe(w);
		return;
	}
	if (opt_with(o, consumer_props, rd_kafka_version() >= 0x02020000 ?
	    sizeof(consumer_props) / sizeof(consumer_props[0]) :
	    CONSUMER_PROPS_OLD, &co) == -1) {
		log_error("out of memory");
		fail(w, OF_EXIT_FAIL);
		return;
	}
	run_kafka(w, &co);
	free(co.props);
}

int
worker_run(const struct worker_config *cf, const struct opt_kafka *o,
    struct worker_stats *st)
{
	struct sigaction old[2];
	struct worker w;
	size_t i;

	memset(st, 0, sizeof(*st));
	if (check_config(cf) == -1)
		return OF_EXIT_FAIL;
	memset(&w, 0, sizeof(w));
	w.cf = cf;
	w.st = st;
	w.in_name = "-";
	w.next_tick = util_mono_ms();
	w.next_report = util_mono_ms() + cf->report_ms;

	util_signals_catch(stop_signals, SA_RESTART, old);

	run(&w, o);
	if (cf->idle != NULL)
		cf->idle(cf->ctx);

	/* Outputs in flight first: their acknowledgements store offsets. */
	drain(&w);
	if (w.c != NULL) {
		kafka_consumer_close(w.c);
		w.c = NULL;
	}
	kafka_producer_destroy(w.p);
	close_dlq(&w);
	for (i = 0; i < w.nheap; i++) {
		free(w.heap[i].value);
		free(w.heap[i].why);
	}
	free(w.heap);
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
