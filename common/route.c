/*
 * route.c - where an outcome goes (route.h): outputs, retries and dead
 * letters as Kafka records or lines, their control headers, and the
 * delivery reports that mark an input done.  Also the log lines about an
 * input and the backoff schedule of worker.h.
 */
#include <sanitizer/asan_interface.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "codec.h"
#include "event.h"
#include "exitcode.h"
#include "flow.h"
#include "jsonl.h"
#include "kafka.h"
#include "log.h"
#include "pipe.h"
#include "route.h"
#include "util.h"
#include "worker_local.h"

enum delivery_kind { DELIVERY_OUTPUT, DELIVERY_RETRY, DELIVERY_DLQ };

/*
 * What a produced record's delivery callback needs, and kafka.c's
 * record of the callback (kafka_produce_dr()).  Kept for the next record
 * when done, up to DELIVERY_SPARES (all on the worker's thread, which
 * produces and serves the delivery reports): two malloc(3) and free(3)
 * calls less for each record.  A spare is poisoned under AddressSanitizer,
 * which catches a use of a finished delivery as it would a use after
 * free().
 */
#define DELIVERY_SPARES	2048

struct delivery {
	struct kafka_dr	 dr;		/* the callback: delivered(), d */
	struct delivery	*next;		/* spares */
	struct worker	*w;
	const char	*topic;		/* the input's topic; NULL: no offset */
	int32_t		 partition;
	int64_t		 offset;
	enum delivery_kind kind;
};

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

static struct delivery *
delivery_get(struct worker *w)
{
	struct delivery *d;

	if ((d = w->spare_deliveries) == NULL)
		return malloc(sizeof(*d));
	ASAN_UNPOISON_MEMORY_REGION(d, sizeof(*d));
	w->spare_deliveries = d->next;
	w->nspare_deliveries--;
	return d;
}

static void
delivery_put(struct worker *w, struct delivery *d)
{
	if (w->nspare_deliveries >= DELIVERY_SPARES) {
		free(d);
		return;
	}
	d->next = w->spare_deliveries;
	w->spare_deliveries = d;
	w->nspare_deliveries++;
	ASAN_POISON_MEMORY_REGION(d, sizeof(*d));
}

void
route_free(struct worker *w)
{
	struct delivery *d;

	while ((d = w->spare_deliveries) != NULL) {
		ASAN_UNPOISON_MEMORY_REGION(d, sizeof(*d));
		w->spare_deliveries = d->next;
		free(d);
	}
	w->nspare_deliveries = 0;
}

static void
delivered(void *opaque, rd_kafka_resp_err_t err, int32_t partition,
    int64_t offset)
{
	static const char *const what[] = { "output", "retry", "dead letter" };
	struct delivery *d = opaque;
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
		worker_fail(w, OF_EXIT_KAFKA);
	} else {
		if (d->kind == DELIVERY_RETRY)
			w->st->retried++;
		else if (d->kind == DELIVERY_DLQ)
			w->st->dead_lettered++;
		if (d->topic != NULL && w->c != NULL)
			kafka_consumer_done(w->c, d->topic, d->partition,
			    d->offset);
	}
	delivery_put(w, d);
}

/* Produces one record for in; h belongs to this function. */
static int
produce(struct worker *w, const struct worker_input *in,
    enum delivery_kind kind, const char *topic, const void *key,
    size_t keylen, const void *value, size_t vlen, rd_kafka_headers_t *h)
{
	rd_kafka_resp_err_t err;
	struct delivery *d;

	if ((d = delivery_get(w)) == NULL) {
		rd_kafka_headers_destroy(h);
		log_error("out of memory");
		worker_fail(w, OF_EXIT_FAIL);
		return -1;
	}
	d->w = w;
	d->topic = input_topic(w, in);
	d->partition = in->partition;
	d->offset = in->offset;
	d->kind = kind;
	d->dr.cb = delivered;
	d->dr.opaque = d;
	err = kafka_produce_dr(w->p, topic, key, keylen, value, vlen, h,
	    &d->dr);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_headers_destroy(h);
		delivery_put(w, d);
		log_error("%s: cannot produce: %s", topic, rd_kafka_err2str(err));
		worker_fail(w, OF_EXIT_KAFKA);
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
	static const char *const drop_all[] = { FLOW_H_ATTEMPT, FLOW_H_NOT_BEFORE,
	    FLOW_H_ERROR_KIND, FLOW_H_ERROR_MESSAGE, FLOW_H_ORIG_TOPIC, FLOW_H_ORIG_PARTITION,
	    FLOW_H_ORIG_OFFSET, NULL };
	static const char *const drop_ctl[] = { FLOW_H_ATTEMPT, FLOW_H_NOT_BEFORE,
	    FLOW_H_ERROR_KIND, FLOW_H_ERROR_MESSAGE, NULL };
	rd_kafka_headers_t *h;
	char buf[1];
	int keep;

	keep = src != NULL && in->partition >= 0 &&
	    strcmp(in->topic, w->cf->retry_topic) == 0 &&
	    kafka_header_get_str(src, FLOW_H_ORIG_TOPIC, buf, sizeof(buf)) != -1;
	h = kafka_headers_copy_except(src, keep ? drop_ctl : drop_all);
	kafka_header_add_int64(h, FLOW_H_ATTEMPT, attempt);
	if (not_before > 0)
		kafka_header_add_int64(h, FLOW_H_NOT_BEFORE, not_before);
	if (!keep) {
		kafka_header_add_str(h, FLOW_H_ORIG_TOPIC, in->topic);
		kafka_header_add_int64(h, FLOW_H_ORIG_PARTITION, in->partition);
		kafka_header_add_int64(h, FLOW_H_ORIG_OFFSET, in->offset);
	}
	kafka_header_add_str(h, FLOW_H_ERROR_KIND, kind);
	kafka_header_add_str(h, FLOW_H_ERROR_MESSAGE, why);
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
		worker_fail(w, OF_EXIT_FAIL);
		return -1;
	}
	if (fputs(s, w->dlq_fp) == EOF || putc('\n', w->dlq_fp) == EOF ||
	    fflush(w->dlq_fp) == EOF) {
		log_error("%s: %s", w->cf->dlq_file != NULL ?
		    w->cf->dlq_file : "stderr", strerror(errno));
		worker_fail(w, OF_EXIT_FAIL);
	} else
		rc = 0;
	free(s);
	return rc;
}

/*
 * The outcomes.
 */

void
route_dead_letter(struct worker *w, const struct worker_input *in,
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
		produce(w, in, DELIVERY_DLQ, w->cf->dlq_topic, in->key,
		    in->keylen, in->value, in->len, h);
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
		produce(w, in, DELIVERY_RETRY, w->cf->retry_topic, in->key,
		    in->keylen, in->value, in->len, h);
		return;
	}
	memset(&r, 0, sizeof(r));
	r.due_ms = util_mono_ms() + delay;
	r.len = in->len;
	r.lineno = (long)in->offset;
	r.attempt = in->attempt + 1;
	if ((r.value = malloc(in->len + 1)) == NULL ||
	    (r.why = strdup(why)) == NULL ||
	    pipe_retries_push(&w->retries, &r) == -1) {
		free(r.value);
		free(r.why);
		log_error("out of memory");
		worker_fail(w, OF_EXIT_FAIL);
		return;
	}
	if (in->len > 0)
		memcpy(r.value, in->value, in->len);
	r.value[in->len] = '\0';
	w->st->retried++;
}

static void
emit(struct worker *w, const struct worker_input *in,
    struct worker_output *out)
{
	rd_kafka_headers_t *h;
	char why[256];
	void *rec;
	size_t reclen;

	/* An output encoded already goes as it is (worker.h). */
	if (out->record != NULL && w->cf->output == NULL &&
	    w->cf->out_topic != NULL && w->cf->codec != NULL) {
		h = out->headers;
		out->headers = NULL;
		produce(w, in, DELIVERY_OUTPUT, w->cf->out_topic, out->key,
		    out->key != NULL ? strlen(out->key) : 0, out->record,
		    out->reclen, h);
		return;
	}
	/* Only an Avro output to Kafka may come as an event alone. */
	if (out->value == NULL &&
	    (w->cf->output != NULL || w->cf->codec == NULL)) {
		log_error("worker: an output without its JSON text");
		worker_fail(w, OF_EXIT_FAIL);
		return;
	}
	if (w->cf->output != NULL) {
		if (fputs(out->value, stdout) == EOF ||
		    putc('\n', stdout) == EOF || fflush(stdout) == EOF) {
			log_error("stdout: %s", strerror(errno));
			worker_fail(w, OF_EXIT_FAIL);
			return;
		}
		input_done(w, in);
		return;
	}
	if (w->cf->out_topic == NULL) {
		log_error("worker: an output but no output topic");
		worker_fail(w, OF_EXIT_FAIL);
		return;
	}
	if (w->cf->codec == NULL) {
		if ((h = flow_headers_new(out->traceparent)) == NULL) {
			log_error("out of memory");
			worker_fail(w, OF_EXIT_FAIL);
			return;
		}
		produce(w, in, DELIVERY_OUTPUT, w->cf->out_topic, out->key,
		    out->key != NULL ? strlen(out->key) : 0, out->value,
		    strlen(out->value), h);
		return;
	}
	if ((out->event != NULL ? codec_encode_event(w->cf->codec,
	    w->cf->out_topic, out->event, out->traceparent, &rec, &reclen, &h,
	    why, sizeof(why)) : codec_encode(w->cf->codec, w->cf->out_topic,
	    out->value, strlen(out->value), out->traceparent, &rec, &reclen,
	    &h, why, sizeof(why))) == -1) {
		/* Its own output, prepared for: only memory can fail here. */
		log_error("%s: cannot encode an output: %s", w->cf->out_topic,
		    why);
		worker_fail(w, OF_EXIT_FAIL);
		return;
	}
	produce(w, in, DELIVERY_OUTPUT, w->cf->out_topic, out->key,
	    out->key != NULL ? strlen(out->key) : 0, rec, reclen, h);
	free(rec);
}

void
route_outcome(struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *src, enum worker_outcome r,
    struct worker_output *out, const char *reason)
{
	char why[WHY_MAX], msg[WHY_MAX + 64];

	util_strlcpy(why, reason != NULL && *reason != '\0' ? reason :
	    "no reason given", sizeof(why));
	switch (r) {
	case WORKER_DONE:
		w->st->done++;
		if (out != NULL && (out->value != NULL ||
		    out->event != NULL || out->record != NULL))
			emit(w, in, out);
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
		route_dead_letter(w, in, src, "exhausted", msg);
		break;
	case WORKER_PERMANENT:
		route_dead_letter(w, in, src, "permanent", why);
		break;
	default:
		route_dead_letter(w, in, src, "invalid", why);
		break;
	}
	if (out != NULL) {
		if (!out->borrowed) {
			free(out->key);
			free(out->value);
		}
		free(out->record);
		if (out->headers != NULL)
			rd_kafka_headers_destroy(out->headers);
		out->key = out->value = NULL;
		out->record = NULL;
		out->headers = NULL;
	}
}

enum worker_outcome
route_handle(struct worker *w, const struct worker_input *in,
    const rd_kafka_headers_t *src, struct worker_job *job)
{
	struct worker_output out;
	enum worker_outcome r;
	char why[WHY_MAX];

	memset(&out, 0, sizeof(out));
	why[0] = '\0';
	w->st->processed++;
	if (job != NULL)
		r = w->cf->start(w->cf->ctx, job, in, &out, why, sizeof(why));
	else
		r = w->cf->handle(w->cf->ctx, in, &out, why, sizeof(why));
	if (r != WORKER_PENDING)
		route_outcome(w, in, src, r, &out, why);
	return r;
}
