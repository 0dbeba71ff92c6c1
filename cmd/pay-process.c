/*
 * pay-process - the payment worker: reads order.created events, charges
 * each order at most once (with the built-in simulator of pay-process(1) or an
 * HTTP payment gateway) and writes payment.processed events.  Retries,
 * dead letters, pipe mode and shutdown are worker.h's.
 *
 * At most one payment per order id: the outcome (the payment.processed
 * event) is recorded in Berkeley DB under the order id, put-if-absent,
 * and committed before the event is sent.  A repeat of the order finds
 * the record and re-sends the recorded event, same id, charging nothing.
 * A crash between the charge and the record charges again only through
 * the gateway, with the same Idempotency-Key (the order id), which the
 * gateway answers with the first charge's outcome.
 *
 * Up to --concurrency orders are in flight at once (worker.h's start and
 * pump): each waits for the store, and with a gateway for its call too.
 * The store runs on a thread of its own (storeq.h), one transaction for
 * the records queued at the time, so the loop never waits on Berkeley DB
 * and a batch costs one commit.  A gateway's calls go through httpq.h;
 * the worker never has two events of one order in flight, so two calls
 * with one Idempotency-Key never overlap, and a crash repeats at most
 * the calls in flight, with those whose records were not committed yet.
 */
#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "codec.h"
#include "event.h"
#include "evpack.h"
#include "exitcode.h"
#include "flow.h"
#include "httpq.h"
#include "kafka.h"
#include "log.h"
#include "opt.h"
#include "store.h"
#include "storeq.h"
#include "upkeep.h"
#include "util.h"
#include "worker.h"

#define SOURCE			"/orderflow/pay-process"
#define DEF_LIMIT		1000000		/* minor units */
#define DEF_BACKOFF_MS		1000
#define DEF_BACKOFF_MAX_MS	60000
#define DEF_MAX_ATTEMPTS	5
#define DEF_TTL_MS		(7LL * 24 * 3600 * 1000)
#define DEF_GW_TIMEOUT_MS	10000
#define GW_CONNECT_MAX_MS	3000
#define REPORT_MS		10000
#define WHY_LEN			1024	/* a failure's message, room to spare */
#define TEXT_KEEP_MAX		16384	/* a larger payment text is not kept */

/* The state of an idempotency record. */
#define IDEM_PAID		1	/* outcome: the payment event, evpack.h */

enum {
	OPT_BACKOFF = OPT_CMD_FIRST,
	OPT_BACKOFF_MAX,
	OPT_CONCURRENCY,
	OPT_DEDUP_TTL,
	OPT_DLQ,
	OPT_GATEWAY,
	OPT_GATEWAY_TIMEOUT,
	OPT_LIMIT,
	OPT_MAX_ATTEMPTS,
	OPT_SYNC
};

/* The result of charging an order. */
enum charge_result {
	CHARGE_APPROVED,
	CHARGE_DECLINED,
	CHARGE_TRANSIENT,
	CHARGE_PERMANENT
};

struct charge {
	enum charge_result r;
	char	reason[EVENT_REASON_MAX + 1];	/* declined */
	char	payment_id[ORDER_ID_MAX + 1];	/* the gateway's, or "" */
	char	why[256];			/* transient, permanent */
};

struct pp {
	struct opt_kafka o;
	struct opt_codec oc;
	struct codec	*codec;		/* reads both formats, writes one */
	struct codec	*store_codec;	/* the store thread's, to write */
	const char	*out_topic;
	int		 avro_out;	/* outputs encoded from the event */
	struct store	*store;
	const char	*state;
	unsigned	 store_flags;
	int64_t		 limit;
	int64_t		 ttl_ms;
	const char	*gateway;
	int64_t		 gw_timeout_ms;
	int		 concurrency;
	struct httpq	*hq;		/* the gateway's calls */
	struct storeq	*sq;		/* the store's thread */
	struct upkeep	 up;		/* the store's upkeep */
	uint64_t	 approved;
	uint64_t	 declined;
	uint64_t	 duplicates;
	struct payjob	*spare;		/* finished jobs, kept for the next */
	int		 nspare;	/* how many: at most concurrency */
};

static struct pp pp;

static void
usage(void)
{
	fprintf(stderr,
	    "usage: %s [-hqVv] [-b brokers] [-F file] [-G group] [-i file] "
	    "[-o -]\n"
	    "           [-r url] [-X name=value] [--backoff duration] "
	    "[--backoff-max duration]\n"
	    "           [--concurrency n] [--dedup-ttl duration] [--dlq file]\n"
	    "           [--format format] [--gateway url] "
	    "[--gateway-timeout duration]\n"
	    "           [--limit amount] [--log-format format] "
	    "[--max-attempts n]\n"
	    "           [--state dir] [--sync] [--topic-prefix prefix]\n",
	    log_progname());
}

static void __attribute__((noreturn))
usage_error(const char *fmt, const char *arg, const char *why)
{
	char msg[256];

	snprintf(msg, sizeof(msg), fmt, arg);
	if (why != NULL)
		log_error("%s: %s", msg, why);
	else
		log_error("%s", msg);
	usage();
	exit(OF_EXIT_USAGE);
}

/*
 * The store, on its own thread (storeq.h): every read and write of an
 * order's record is a request, run with the others queued at the time in
 * one transaction, and answered on the worker's thread once it
 * committed.
 */

/*
 * An order in flight, from its start to its outcome: the event, the
 * charge once known, and the store request of the step it is at (a
 * lookup before a gateway call or after a failed charge, the record of an
 * approval or a decline).  The text buffer and the two events come last:
 * a job is zeroed up to them, their builders initialise the events whole,
 * and the buffer stays with the job from one record to the next (the
 * payment's text is written into it on the store's thread and lent to the
 * worker: a malloc(3) there and a free(3) on the worker's thread, each
 * of memory the other thread last held, less for each record).
 */
struct payjob {
	struct pp		*p;
	struct worker_job	*job;
	struct payjob		*next;		/* in pp's spares */
	int			 charged;	/* ch holds the charge */
	struct charge		 ch;
	struct storeq_req	 req;
	int			 built;		/* payev (and its text) are built */
	int			 build_err;	/* or why they could not be */
	int			 pid_derived;	/* payev's payment_id is */
						/* derived, not the gateway's */
	void			*avro;		/* or its Avro record */
	size_t			 avro_len;
	rd_kafka_headers_t	*avro_hdrs;
	int64_t			 now_ms;
	char			*recorded;	/* a payment recorded before */
	size_t			 recorded_len;
	char			*text;		/* kept: payev's JSON, */
						/* unless avro_out */
	size_t			 text_cap;
	struct event		 ev;
	struct event		 payev;		/* the payment recorded */
};

static void	call_gateway(struct payjob *);

/*
 * A job for the next record.  A job is 5 KiB, past malloc's per-thread
 * caches: one kept from a finished record costs neither a trip through
 * its bins nor zeroing the events that parsing overwrites anyway.
 */
static struct payjob *
payjob_new(struct pp *p)
{
	struct payjob *pj;

	if ((pj = p->spare) != NULL) {
		p->spare = pj->next;
		p->nspare--;
	} else {
		if ((pj = malloc(sizeof(*pj))) == NULL)
			return NULL;
		pj->text = NULL;
		pj->text_cap = 0;
	}
	memset(pj, 0, offsetof(struct payjob, text));
	pj->p = p;
	return pj;
}

/* pj's own memory back; the job itself kept for the next record. */
static void
payjob_drop(struct payjob *pj)
{
	struct pp *p = pj->p;

	if (p->nspare >= p->concurrency || pj->text_cap > TEXT_KEEP_MAX) {
		free(pj->text);
		free(pj);
		return;
	}
	pj->next = p->spare;
	p->spare = pj;
	p->nspare++;
}

static void
payjob_free(struct payjob *pj)
{
	event_free(&pj->ev);
	free(pj->avro);
	if (pj->avro_hdrs != NULL)
		rd_kafka_headers_destroy(pj->avro_hdrs);
	free(pj->recorded);
	payjob_drop(pj);
}

static void
payjob_spares_free(struct pp *p)
{
	struct payjob *pj;

	while ((pj = p->spare) != NULL) {
		p->spare = pj->next;
		free(pj->text);
		free(pj);
	}
	p->nspare = 0;
}

/* The outcome of pj: the worker has it, pj is gone. */
static void
finish(struct payjob *pj, enum worker_outcome r, struct worker_output *out,
    const char *why)
{
	worker_complete(pj->job, r, out, why);
	payjob_free(pj);
}

/* A failure with its message. */
static void
finish_failed(struct payjob *pj, enum worker_outcome r, const char *fmt,
    const char *arg)
{
	char why[WHY_LEN];

	snprintf(why, sizeof(why), fmt, arg);
	finish(pj, r, NULL, why);
}

/*
 * A batch failed: upkeep.h's rule (orderflow(7), STATE) reopens the store
 * or stops pay-process, on the store's thread; its records are transient
 * either way (store_failed() below), so they go to the retry topic, or
 * are tried again after a restart.
 */
static void
store_batch_failed(void *arg, int err)
{
	struct pp *p = arg;

	(void)upkeep_failed(&p->up, err, NULL);
}

static void
store_failed(struct payjob *pj, int err)
{
	finish_failed(pj, WORKER_TRANSIENT, "state: %s", store_strerror(err));
}

/* Failchk, expiry and checkpoints (upkeep.h), between batches. */
static void
store_tick(void *arg)
{
	struct pp *p = arg;

	upkeep_tick(&p->up);
}

/* Store thread: the order's payment, when one was recorded. */
static int
lookup_body(struct store *s, struct store_txn *t, struct storeq_req *req)
{
	struct payjob *pj = req->arg;
	struct store_idem old;
	int ret;

	free(pj->recorded);
	pj->recorded = NULL;
	ret = store_idem_get(s, t, pj->ev.subject, pj->now_ms, &old);
	if (ret == STORE_NOTFOUND)
		return 0;
	if (ret != 0)
		return ret;
	if (old.state == IDEM_PAID) {
		pj->recorded = old.outcome;
		pj->recorded_len = old.outcome_len;
	} else
		store_idem_free(&old);
	return 0;
}

static int	payment_event(const struct event *, const struct charge *,
		    struct event *, int *);

/*
 * Store thread: the payment event of the charge, and its JSON text or
 * Avro record (with the store thread's own codec) as it goes out.  They
 * are built here, not on the worker's thread, which parses and produces
 * every record: the two threads then share a payment's work more evenly
 * (scripts/bench.d/FINDINGS.md, relay).  Built once: a batch run again
 * after a deadlock keeps them.  0, or an errno.
 */
static int
build_payment(struct payjob *pj)
{
	struct pp *p = pj->p;
	char msg[256];

	if (pj->built)
		return 0;
	errno = 0;
	if (payment_event(&pj->ev, &pj->ch, &pj->payev,
	    &pj->pid_derived) == -1)
		return errno != 0 ? errno : ENOMEM;
	if (p->avro_out) {
		/* Prepared at the start: only memory can fail. */
		if (codec_encode_event(p->store_codec, p->out_topic,
		    &pj->payev, NULL, &pj->avro, &pj->avro_len,
		    &pj->avro_hdrs, msg, sizeof(msg)) == -1)
			return ENOMEM;
	} else if (event_serialize_buf(&pj->payev, &pj->text, &pj->text_cap,
	    NULL) == -1)
		return errno != 0 ? errno : ENOMEM;
	pj->built = 1;
	return 0;
}

/*
 * Store thread: put-if-absent, the payment unless one is recorded.  A
 * payment that cannot be built writes nothing and fails its own record
 * alone (recorded()), not the batch.
 */
static int
record_body(struct store *s, struct store_txn *t, struct storeq_req *req)
{
	struct payjob *pj = req->arg;
	struct store_idem rec, old;
	struct evpack_cause cause;
	unsigned char pack[EVPACK_MAX];
	int ret;

	free(pj->recorded);
	pj->recorded = NULL;
	if ((pj->build_err = build_payment(pj)) != 0)
		return 0;
	memset(&rec, 0, sizeof(rec));
	rec.created_ms = pj->now_ms;
	rec.expires_ms = pj->now_ms + pj->p->ttl_ms;
	rec.state = IDEM_PAID;
	rec.outcome = (char *)pack;
	cause.id = pj->ev.id;
	cause.payment_id_derived = pj->pid_derived;
	if ((rec.outcome_len = evpack_encode(&pj->payev, &cause, pack)) == 0)
		return EINVAL;
	ret = store_idem_put_new(s, t, pj->ev.subject, &rec, pj->now_ms, &old);
	if (ret != STORE_EXISTS)
		return ret;
	if (old.state == IDEM_PAID) {
		pj->recorded = old.outcome;
		pj->recorded_len = old.outcome_len;
		return 0;
	}
	store_idem_free(&old);
	return store_idem_put(s, t, pj->ev.subject, &rec);
}

static void
store_submit(struct payjob *pj, storeq_body_fn *body, storeq_done_fn *done)
{
	pj->now_ms = util_now_ms();
	storeq_call(pj->p->sq, &pj->req, body, done, pj);
}

/*
 * The simulator of pay-process(1), "The built-in simulator".
 */

static void
simulate(const struct pp *p, const struct event *ev, int attempt,
    struct charge *ch)
{
	const char *pm = ev->order.payment_method;
	int n;

	if (strcmp(pm, "pm_card_declined") == 0) {
		ch->r = CHARGE_DECLINED;
		snprintf(ch->reason, sizeof(ch->reason), "card_declined");
	} else if (strncmp(pm, "pm_card_", 8) == 0) {
		if (ev->order.total > p->limit) {
			ch->r = CHARGE_DECLINED;
			snprintf(ch->reason, sizeof(ch->reason),
			    "limit_exceeded");
		} else
			ch->r = CHARGE_APPROVED;
	} else if (strncmp(pm, "pm_transient_", 13) == 0 &&
	    pm[13] >= '1' && pm[13] <= '9' && pm[14] == '\0') {
		n = pm[13] - '0';
		if (attempt <= n) {
			ch->r = CHARGE_TRANSIENT;
			snprintf(ch->why, sizeof(ch->why), "simulated "
			    "transient failure (attempt %d of %d failing)",
			    attempt, n);
		} else
			ch->r = CHARGE_APPROVED;
	} else if (strcmp(pm, "pm_gateway_error") == 0) {
		ch->r = CHARGE_PERMANENT;
		snprintf(ch->why, sizeof(ch->why), "simulated gateway error");
	} else {
		ch->r = CHARGE_PERMANENT;
		snprintf(ch->why, sizeof(ch->why), "unknown payment method %s",
		    pm);
	}
}

/*
 * The HTTP gateway.
 */

static char *
gateway_body(const struct event *ev)
{
	cJSON *o;
	char amount[24], *s = NULL;

	snprintf(amount, sizeof(amount), "%" PRId64, ev->order.total);
	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	if (cJSON_AddStringToObject(o, "order_id", ev->order.order_id) &&
	    cJSON_AddRawToObject(o, "amount", amount) &&
	    cJSON_AddStringToObject(o, "currency", ev->order.currency) &&
	    cJSON_AddStringToObject(o, "payment_method",
	    ev->order.payment_method))
		s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

/* A string member of the reply, copied when it fits, else "". */
static void
reply_str(const cJSON *o, const char *name, char *buf, size_t len)
{
	const cJSON *v;

	buf[0] = '\0';
	v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (cJSON_IsString(v) && strlen(v->valuestring) < len)
		snprintf(buf, len, "%s", v->valuestring);
}

/* A 2xx reply: {"status":"approved"|"declined","payment_id":..,"reason":..} */
static void
gateway_ok(const struct httpq_result *r, struct charge *ch)
{
	cJSON *o;
	char status[16];

	if ((o = cJSON_ParseWithLength(r->reply, r->len)) == NULL ||
	    !cJSON_IsObject(o)) {
		cJSON_Delete(o);
		ch->r = CHARGE_TRANSIENT;
		snprintf(ch->why, sizeof(ch->why), "gateway: the reply is "
		    "not a JSON object");
		return;
	}
	reply_str(o, "status", status, sizeof(status));
	reply_str(o, "payment_id", ch->payment_id, sizeof(ch->payment_id));
	reply_str(o, "reason", ch->reason, sizeof(ch->reason));
	cJSON_Delete(o);
	if (strcmp(status, "approved") == 0)
		ch->r = CHARGE_APPROVED;
	else if (strcmp(status, "declined") == 0) {
		ch->r = CHARGE_DECLINED;
		if (ch->reason[0] == '\0')
			snprintf(ch->reason, sizeof(ch->reason), "declined");
	} else {
		ch->r = CHARGE_TRANSIENT;
		snprintf(ch->why, sizeof(ch->why), "gateway: the reply has "
		    "no status approved or declined");
	}
}

/*
 * Status codes: 2xx the reply above; 402 declined with the reply's
 * reason; 408, 409 (the same key in flight), 425, 429 and 5xx transient;
 * any other code permanent.
 */
static void
gateway_status(long code, const struct httpq_result *r, struct charge *ch)
{
	cJSON *o;

	if (code >= 200 && code <= 299) {
		gateway_ok(r, ch);
		return;
	}
	if (code == 402) {
		ch->r = CHARGE_DECLINED;
		if ((o = cJSON_ParseWithLength(r->reply, r->len)) != NULL)
			reply_str(o, "reason", ch->reason, sizeof(ch->reason));
		cJSON_Delete(o);
		if (ch->reason[0] == '\0')
			snprintf(ch->reason, sizeof(ch->reason),
			    "payment_required");
		return;
	}
	if (code == 408 || code == 409 || code == 425 || code == 429 ||
	    (code >= 500 && code <= 599))
		ch->r = CHARGE_TRANSIENT;
	else
		ch->r = CHARGE_PERMANENT;
	snprintf(ch->why, sizeof(ch->why), "gateway: HTTP %ld", code);
}

/* The request's headers; NULL when out of memory. */
static struct curl_slist *
gateway_headers(const struct event *ev)
{
	struct curl_slist *h = NULL;

	/* "Expect:" (empty): no "100 Continue" round trip. */
	if (httpq_header(&h, "Content-Type: application/json") == -1 ||
	    httpq_header(&h, "Accept: application/json") == -1 ||
	    httpq_header(&h, "Expect:") == -1 ||
	    httpq_header(&h, "Idempotency-Key: %s",
	    ev->order.order_id) == -1 ||
	    (ev->traceparent[0] != '\0' && httpq_header(&h, "%s: %s",
	    FLOW_H_TRACEPARENT, ev->traceparent) == -1))
		return NULL;
	return h;
}

/* The charge of a call that ended. */
static void
gateway_result(const struct event *ev, const struct httpq_result *r,
    struct charge *ch)
{
	memset(ch, 0, sizeof(*ch));
	if (r->res != CURLE_OK) {
		ch->r = CHARGE_TRANSIENT;
		snprintf(ch->why, sizeof(ch->why), "gateway: %s", r->error);
	} else
		gateway_status(r->code, r, ch);
	log_debug("gateway: order %s: HTTP %ld", ev->order.order_id, r->code);
}

static void
gateway_init(struct pp *p)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 ||
	    (p->hq = httpq_new(p->gateway, (long)p->gw_timeout_ms,
	    GW_CONNECT_MAX_MS, "orderflow-pay-process/" VERSION,
	    p->concurrency)) == NULL)
		log_fatal(OF_EXIT_FAIL, "libcurl: cannot initialise");
}

/*
 * The handler.
 */

/*
 * The recorded payment again: same event, same id, nothing charged.  The
 * record (len bytes, evpack.h's form or the JSON text of an older one)
 * goes out as JSON text, checked as any incoming event is.
 */
static enum worker_outcome
repeat(struct pp *p, const struct event *ev, char *json, size_t len,
    struct worker_output *out, char *why, size_t whylen)
{
	struct event old;
	struct event_err err;
	struct log_ctx ctx = { ev->id, ev->subject, NULL };
	char trace[TRACE_ID_LEN + 1], *text;
	int e;

	if (trace_id_of(ev->traceparent, trace) == 0)
		ctx.trace_id = trace;

	text = evpack_text(json, len);
	e = errno;
	free(json);
	if ((json = text) == NULL) {
		snprintf(why, whylen, "the recorded payment of order %s is "
		    "unreadable: %s", ev->subject, strerror(e));
		return e == ENOMEM ? WORKER_TRANSIENT : WORKER_PERMANENT;
	}
	if (event_parse(json, strlen(json), &old, &err) == -1) {
		event_free(&old);
		free(json);
		snprintf(why, whylen, "the recorded payment of order %s is "
		    "unreadable: %s", ev->subject, err.text);
		return WORKER_PERMANENT;
	}
	log_msg(LOG_LEVEL_DEBUG, &ctx, "order %s was paid before: event %s "
	    "sent again", ev->subject, old.id);
	snprintf(out->traceparent, sizeof(out->traceparent), "%s",
	    old.traceparent);
	event_free(&old);
	if ((out->key = strdup(ev->subject)) == NULL) {
		free(json);
		snprintf(why, whylen, "out of memory");
		return WORKER_TRANSIENT;
	}
	out->value = json;
	p->duplicates++;
	return WORKER_DONE;
}

/*
 * The payment event of a charge that was approved or declined;
 * *pid_derived says whether its payment_id is the one derived from the
 * order's event (evpack.h), not a gateway's.
 */
static int
payment_event(const struct event *ev, const struct charge *ch,
    struct event *pay, int *pid_derived)
{
	enum event_pay_status st;
	const char *pid;

	st = ch->r == CHARGE_APPROVED ? EVENT_PAY_APPROVED : EVENT_PAY_DECLINED;
	pid = ch->payment_id[0] != '\0' ? ch->payment_id : NULL;
	*pid_derived = pid == NULL;
	/* A gateway's id or reason that breaks the rules is not used. */
	if (event_payment_processed(pay, ev, st, ch->reason, pid,
	    SOURCE) == 0)
		return 0;
	*pid_derived = 1;
	if (errno != EINVAL || event_payment_processed(pay, ev, st,
	    "declined", NULL, SOURCE) == -1)
		return -1;
	return 0;
}

/*
 * A record came back (store thread, committed): the order's payment
 * event goes out, or the one recorded before it.
 */
static void
recorded(struct storeq_req *req, int err)
{
	struct payjob *pj = req->arg;
	struct pp *p = pj->p;
	struct worker_output out;
	struct log_ctx ctx = { pj->ev.id, pj->ev.subject, NULL };
	char trace[TRACE_ID_LEN + 1], why[WHY_LEN];
	enum worker_outcome r;

	if (err != 0) {
		store_failed(pj, err);
		return;
	}
	if (pj->build_err != 0) {
		finish_failed(pj, WORKER_TRANSIENT, "cannot build the payment "
		    "event: %s", strerror(pj->build_err));
		return;
	}
	memset(&out, 0, sizeof(out));
	if (pj->recorded != NULL) {
		/* Another event of this order was paid before. */
		r = repeat(p, &pj->ev, pj->recorded, pj->recorded_len, &out,
		    why, sizeof(why));
		pj->recorded = NULL;
		finish(pj, r, &out, why);
		return;
	}
	/* Both are the job's until finish() is done with it. */
	out.borrowed = 1;
	out.key = pj->ev.subject;
	out.value = pj->built && !p->avro_out ? pj->text : NULL;
	out.event = &pj->payev;
	out.record = pj->avro;
	out.reclen = pj->avro_len;
	out.headers = pj->avro_hdrs;
	pj->avro = NULL;
	pj->avro_hdrs = NULL;
	util_strlcpy(out.traceparent, pj->payev.traceparent,
	    sizeof(out.traceparent));
	if (pj->ch.r == CHARGE_APPROVED)
		p->approved++;
	else
		p->declined++;
	/* Every record passes here: the line's context only when shown. */
	if (log_level() >= LOG_LEVEL_DEBUG) {
		if (trace_id_of(pj->ev.traceparent, trace) == 0)
			ctx.trace_id = trace;
		log_msg(LOG_LEVEL_DEBUG, &ctx, "order %s: %s%s%s",
		    pj->ev.subject,
		    event_pay_status_name(pj->payev.payment.status),
		    pj->ch.r == CHARGE_DECLINED ? " " : "",
		    pj->ch.r == CHARGE_DECLINED ? pj->payev.payment.reason :
		    "");
	}
	finish(pj, WORKER_DONE, &out, "");
}

/*
 * The outcome of a charge: a failure as it is; an approval or a decline
 * recorded put-if-absent, then its event (recorded()).
 */
static void
settle(struct payjob *pj)
{
	if (pj->ch.r == CHARGE_TRANSIENT || pj->ch.r == CHARGE_PERMANENT) {
		finish_failed(pj, pj->ch.r == CHARGE_TRANSIENT ?
		    WORKER_TRANSIENT : WORKER_PERMANENT, "%s", pj->ch.why);
		return;
	}
	/* The payment is built with its record (build_payment()). */
	store_submit(pj, record_body, recorded);
}

/*
 * A lookup came back: a payment recorded before is sent again; else a
 * failed charge stands (the simulator's), or the gateway is called.
 */
static void
looked_up(struct storeq_req *req, int err)
{
	struct payjob *pj = req->arg;
	struct worker_output out;
	char why[WHY_LEN];
	enum worker_outcome r;

	if (err != 0) {
		store_failed(pj, err);
		return;
	}
	if (pj->recorded != NULL) {
		memset(&out, 0, sizeof(out));
		r = repeat(pj->p, &pj->ev, pj->recorded, pj->recorded_len,
		    &out, why, sizeof(why));
		pj->recorded = NULL;
		finish(pj, r, &out, why);
	} else if (pj->charged)
		settle(pj);
	else
		call_gateway(pj);
}

/*
 * The input as an order.created event, upcast to v2: WORKER_DONE, or the
 * outcome of an input that is not one (ev is then freed).
 */
static enum worker_outcome
order_event(struct codec *codec, const struct worker_input *in,
    struct event *ev, char *why, size_t whylen)
{
	struct event_err err;
	int ret;

	if (in->len == 0) {
		snprintf(why, whylen, "%s value", in->value == NULL ? "null" :
		    "empty");
		return WORKER_INVALID;
	}
	if ((ret = codec_parse(codec, in->value, in->len, in->headers, ev,
	    &err)) != CODEC_OK) {
		snprintf(why, whylen, "%s", err.text);
		event_free(ev);
		return ret == CODEC_INVALID ? WORKER_INVALID : WORKER_TRANSIENT;
	}
	if (ev->kind != EVENT_ORDER_CREATED_V1 &&
	    ev->kind != EVENT_ORDER_CREATED_V2) {
		snprintf(why, whylen, "type: %s is not an order.created event",
		    ev->type);
		event_free(ev);
		return WORKER_INVALID;
	}
	if (event_upcast_v1(ev) == -1) {
		snprintf(why, whylen, "cannot upcast: %s", strerror(errno));
		event_free(ev);
		return WORKER_TRANSIENT;
	}
	return WORKER_DONE;
}

/* A gateway call ended: its outcome is settled. */
static void
gateway_done(void *arg, const struct httpq_result *res)
{
	struct payjob *pj = arg;

	gateway_result(&pj->ev, res, &pj->ch);
	pj->charged = 1;
	settle(pj);
}

static void
call_gateway(struct payjob *pj)
{
	struct curl_slist *h;
	char *body;

	body = gateway_body(&pj->ev);
	h = gateway_headers(&pj->ev);
	if (body != NULL && h != NULL && httpq_post(pj->p->hq, body,
	    strlen(body), h, gateway_done, pj) == 0)
		return;
	if (body == NULL || h == NULL) {
		free(body);
		curl_slist_free_all(h);
	}
	finish_failed(pj, WORKER_TRANSIENT, "%s", "gateway: out of memory");
}

/*
 * The handler, for the simulator and the gateway alike: every order is
 * pending until the store answered.  The simulator, which costs
 * nothing, answers first: an approval or a decline meets a recorded
 * payment in the put-if-absent, a failure looks for one.  A gateway call
 * comes after a lookup, so that an order paid before is answered from
 * its record without a call.  The worker never has two records of one
 * order in flight, so the record read is still the truth when the call
 * ends.
 */
static enum worker_outcome
start(void *ctx, struct worker_job *job, const struct worker_input *in,
    struct worker_output *out, char *why, size_t whylen)
{
	struct pp *p = ctx;
	struct payjob *pj;
	enum worker_outcome r;

	(void)out;
	if ((pj = payjob_new(p)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return WORKER_TRANSIENT;
	}
	if ((r = order_event(p->codec, in, &pj->ev, why, whylen)) !=
	    WORKER_DONE) {
		payjob_drop(pj);
		return r;
	}
	pj->job = job;
	if (p->hq == NULL) {
		simulate(p, &pj->ev, in->attempt, &pj->ch);
		pj->charged = 1;
		if (pj->ch.r == CHARGE_APPROVED ||
		    pj->ch.r == CHARGE_DECLINED) {
			settle(pj);
			return WORKER_PENDING;
		}
	}
	store_submit(pj, lookup_body, looked_up);
	return WORKER_PENDING;
}

/*
 * The worker's wait: on the store's answers, and on the gateway's calls
 * (whose wait the store thread's wake cuts short).
 */
static void
pump(void *ctx, int wait_ms)
{
	struct pp *p = ctx;

	if (p->hq == NULL) {
		storeq_collect(p->sq, wait_ms);
		return;
	}
	if (storeq_collect(p->sq, 0) > 0)
		wait_ms = 0;
	httpq_run(p->hq, wait_ms);
	storeq_collect(p->sq, 0);
}

static void
store_wake(void *arg)
{
	struct pp *p = arg;

	if (p->hq != NULL)
		httpq_wakeup(p->hq);
}

static void
report(void *ctx, const struct worker_stats *st, int final)
{
	const struct pp *p = ctx;

	log_info("%sprocessed=%" PRIu64 " approved=%" PRIu64 " declined=%"
	    PRIu64 " retried=%" PRIu64 " dead-lettered=%" PRIu64
	    " duplicates=%" PRIu64, final ? "summary: " : "", st->processed,
	    p->approved, p->declined, st->retried, st->dead_lettered,
	    p->duplicates);
}

/*
 * The options into p and cf, over the defaults main() set; a usage error
 * exits with OF_EXIT_USAGE.
 */
static void
parse_options(struct pp *p, struct worker_config *cf, int argc, char **argv)
{
	static const struct option longopts[] = {
		OPT_COMMON_LONG,
		OPT_CODEC_LONG,
		{ "backoff", required_argument, NULL, OPT_BACKOFF },
		{ "backoff-max", required_argument, NULL, OPT_BACKOFF_MAX },
		{ "concurrency", required_argument, NULL, OPT_CONCURRENCY },
		{ "dedup-ttl", required_argument, NULL, OPT_DEDUP_TTL },
		{ "dlq", required_argument, NULL, OPT_DLQ },
		{ "gateway", required_argument, NULL, OPT_GATEWAY },
		{ "gateway-timeout", required_argument, NULL,
		    OPT_GATEWAY_TIMEOUT },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS },
		{ "sync", no_argument, NULL, OPT_SYNC },
		{ NULL, 0, NULL, 0 }
	};
	int ch;

	while ((ch = getopt_long(argc, argv, OPT_COMMON_SHORT OPT_CODEC_SHORT
	    "i:o:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'i':
			cf->input = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "-") != 0)
				usage_error("-o %s: only - (standard output) "
				    "is supported", optarg, NULL);
			cf->output = optarg;
			break;
		case OPT_BACKOFF:
			cf->backoff_ms = opt_duration("--backoff", optarg, 0);
			break;
		case OPT_BACKOFF_MAX:
			cf->backoff_max_ms = opt_duration("--backoff-max",
			    optarg, 0);
			break;
		case OPT_CONCURRENCY:
			p->concurrency = (int)opt_number("--concurrency",
			    optarg, 1, WORKER_CONCURRENCY_MAX);
			break;
		case OPT_DEDUP_TTL:
			p->ttl_ms = opt_duration("--dedup-ttl", optarg, 1000);
			break;
		case OPT_DLQ:
			cf->dlq_file = optarg;
			break;
		case OPT_GATEWAY:
			if (strncmp(optarg, "http://", 7) != 0 &&
			    strncmp(optarg, "https://", 8) != 0)
				usage_error("--gateway %s", optarg,
				    "expected an http:// or https:// URL");
			p->gateway = optarg;
			break;
		case OPT_GATEWAY_TIMEOUT:
			p->gw_timeout_ms = opt_duration("--gateway-timeout",
			    optarg, 1);
			break;
		case OPT_LIMIT:
			p->limit = opt_number("--limit", optarg, 0,
			    ORDER_TOTAL_MAX);
			break;
		case OPT_MAX_ATTEMPTS:
			cf->max_attempts = (int)opt_number("--max-attempts",
			    optarg, 1, 100);
			break;
		case OPT_SYNC:
			p->store_flags &= ~STORE_NOSYNC;
			break;
		default:
			if (!opt_codec(&p->oc, ch, optarg) &&
			    !opt_common(&p->o, ch, optarg)) {
				usage();
				exit(OF_EXIT_USAGE);
			}
			break;
		}
	}
	if (optind != argc)
		usage_error("%s: unexpected argument", argv[optind], NULL);
	if (cf->backoff_max_ms < cf->backoff_ms)
		usage_error("%s", "--backoff-max is less than --backoff", NULL);
	if (cf->dlq_file != NULL && cf->output == NULL)
		usage_error("%s", "--dlq goes with -o -", NULL);
	/* With a client to make, the worker checks them then. */
	if (cf->input != NULL && cf->output != NULL)
		kafka_conf_check(&p->o);
	/* The format is the outputs'; inputs are read in either. */
	p->codec = opt_codec_new(&p->oc, cf->output != NULL);
}

int
main(int argc, char *argv[])
{
	struct storeq_hooks hooks = { .tick = store_tick,
	    .failed = store_batch_failed, .wake = store_wake, .arg = &pp };
	struct worker_config cf;
	struct worker_stats st;
	char msg[256];
	int rc, ret;

	log_init(argv[0]);
	worker_catch_signals();
	opt_init(&pp.o, usage);
	opt_codec_init(&pp.oc);
	memset(&cf, 0, sizeof(cf));
	cf.max_attempts = DEF_MAX_ATTEMPTS;
	cf.backoff_ms = DEF_BACKOFF_MS;
	cf.backoff_max_ms = DEF_BACKOFF_MAX_MS;
	pp.limit = DEF_LIMIT;
	pp.ttl_ms = DEF_TTL_MS;
	pp.gw_timeout_ms = DEF_GW_TIMEOUT_MS;
	pp.concurrency = WORKER_CONCURRENCY;
	pp.store_flags = STORE_NOSYNC | STORE_SMALLCACHE | STORE_EXCLUSIVE;

	parse_options(&pp, &cf, argc, argv);

	cf.in_topic = opt_topic(&pp.o, FLOW_TOPIC_ORDERS);
	cf.retry_topic = opt_topic(&pp.o, FLOW_TOPIC_ORDERS_RETRY);
	cf.dlq_topic = opt_topic(&pp.o, FLOW_TOPIC_ORDERS_DLQ);
	cf.out_topic = opt_topic(&pp.o, FLOW_TOPIC_PAYMENTS);
	cf.report_ms = pp.o.verbosity > LOG_LEVEL_INFO ? REPORT_MS : 0;
	cf.start = start;
	cf.pump = pump;
	cf.concurrency = pp.concurrency;
	cf.ctx = &pp;
	cf.report = report;
	if (codec_format(pp.codec) == CODEC_AVRO) {
		opt_codec_prepare(pp.codec, cf.out_topic,
		    EVENT_PAYMENT_PROCESSED_V1, "nothing is consumed");
		cf.codec = pp.codec;
		pp.avro_out = cf.output == NULL;
		pp.out_topic = cf.out_topic;
		if (pp.avro_out && (pp.store_codec = codec_writer(pp.codec,
		    msg, sizeof(msg))) == NULL)
			log_fatal(OF_EXIT_FAIL, "%s", msg);
	}

	pp.state = opt_state_dir(&pp.o);
	opt_lock_state(&pp.o);
	if ((ret = store_open(&pp.store, pp.state, pp.store_flags)) != 0)
		log_fatal(OF_EXIT_FAIL, "%s: %s", pp.state,
		    store_strerror(ret));
	if (pp.gateway != NULL)
		gateway_init(&pp);
	upkeep_init(&pp.up, &pp.store, pp.state, pp.store_flags);
	if ((pp.sq = storeq_start(&pp.store, &hooks)) == NULL)
		log_fatal(OF_EXIT_FAIL, "cannot start the store's thread: %s",
		    strerror(errno));

	rc = worker_run(&cf, &pp.o, &st);
	storeq_stop(pp.sq);
	if (pp.up.failed && (rc == OF_EXIT_OK || rc == OF_EXIT_REJECTED))
		rc = OF_EXIT_FAIL;

	/*
	 * A store broken by another process's death since the last tick
	 * cannot close cleanly, but every payment recorded is in the log,
	 * which the next open recovers: not a failure of this run.
	 */
	if ((ret = store_close(pp.store)) != 0) {
		if (ret == STORE_RUNRECOVERY)
			log_warn("%s: %s: the next open recovers it", pp.state,
			    store_strerror(ret));
		else {
			log_error("%s: %s", pp.state, store_strerror(ret));
			if (rc == OF_EXIT_OK || rc == OF_EXIT_REJECTED)
				rc = OF_EXIT_FAIL;
		}
	}
	if (pp.hq != NULL) {
		httpq_free(pp.hq);
		curl_global_cleanup();
	}
	payjob_spares_free(&pp);
	codec_free(pp.store_codec);
	codec_free(pp.codec);
	opt_free(&pp.o);
	if (util_stdout_flush() == -1 &&
	    (rc == OF_EXIT_OK || rc == OF_EXIT_REJECTED))
		rc = OF_EXIT_FAIL;
	return rc;
}
