/*
 * pay-process - the payment worker: reads order.created events, charges
 * each order at most once (with the built-in simulator of pay-process(1) or an
 * HTTP payment gateway) and writes payment.processed events.  Retries,
 * dead letters, pipe mode and shutdown are worker.h's.
 *
 * At most one payment per order id: the outcome (the payment.processed
 * event) is recorded in Berkeley DB under the order id, put-if-absent in
 * one transaction, before the event is sent.  A repeat of the order finds
 * the record and re-sends the recorded event, same id, charging nothing.
 * A crash between the charge and the record charges again only through
 * the gateway, with the same Idempotency-Key (the order id), which the
 * gateway answers with the first charge's outcome.
 *
 * The simulator answers in microseconds: one order at a time (worker.h's
 * handler).  A gateway's calls go through httpq.h, up to --concurrency at
 * once (worker.h's start and pump); the worker never has two events of
 * one order in flight, so two calls with one Idempotency-Key never
 * overlap, and a crash repeats at most the calls in flight.
 */
#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "event.h"
#include "exitcode.h"
#include "flow.h"
#include "httpq.h"
#include "log.h"
#include "opt.h"
#include "store.h"
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

/* The state of an idempotency record. */
#define IDEM_PAID		1	/* outcome: the payment.processed JSON */

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
	struct store	*store;
	const char	*state;
	unsigned	 store_flags;
	int64_t		 limit;
	int64_t		 ttl_ms;
	const char	*gateway;
	int64_t		 gw_timeout_ms;
	int		 concurrency;
	struct httpq	*hq;		/* the gateway's calls */
	struct upkeep	 up;		/* the store's upkeep */
	uint64_t	 approved;
	uint64_t	 declined;
	uint64_t	 duplicates;
};

/* A gateway call in flight: the order it charges and its job. */
struct gwcall {
	struct pp		*p;
	struct worker_job	*job;
	struct event		 ev;
	int			 attempt;
};

static struct pp pp;

static void
usage(void)
{
	fprintf(stderr,
	    "usage: %s [-hqVv] [-b brokers] [-F file] [-G group] [-i file] "
	    "[-o -]\n"
	    "           [-X name=value] [--backoff duration] "
	    "[--backoff-max duration]\n"
	    "           [--concurrency n] [--dedup-ttl duration] [--dlq file]\n"
	    "           [--gateway url] [--gateway-timeout duration] "
	    "[--limit amount]\n"
	    "           [--log-format format] [--max-attempts n] "
	    "[--state dir] [--sync]\n"
	    "           [--topic-prefix prefix]\n",
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
 * The store.
 */

/*
 * A store error: upkeep.h's rule (orderflow(7), STATE) reopens the store
 * or stops pay-process; the record is transient either way, so it goes
 * to the retry topic, or is tried again after a restart.
 */
static enum worker_outcome
store_failed(struct pp *p, int err, char *why, size_t whylen)
{
	snprintf(why, whylen, "state: %s", store_strerror(err));
	(void)upkeep_failed(&p->up, err, NULL);
	return WORKER_TRANSIENT;
}

/* What record_fn needs and finds. */
struct record {
	const char	*order_id;
	const char	*json;
	size_t		 len;
	int64_t		 now_ms;
	int64_t		 ttl_ms;
	char		*recorded;	/* a payment recorded before: malloc'd */
};

/* Put-if-absent: the payment, unless one is recorded already. */
static int
record_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct record *r = arg;
	struct store_idem rec, old;
	int ret;

	free(r->recorded);
	r->recorded = NULL;
	memset(&rec, 0, sizeof(rec));
	rec.created_ms = r->now_ms;
	rec.expires_ms = r->now_ms + r->ttl_ms;
	rec.state = IDEM_PAID;
	rec.outcome = (void *)(uintptr_t)r->json;
	rec.outcome_len = r->len;
	ret = store_idem_put_new(s, t, r->order_id, &rec, r->now_ms, &old);
	if (ret != STORE_EXISTS)
		return ret;
	if (old.state == IDEM_PAID) {
		r->recorded = old.outcome;
		return 0;
	}
	store_idem_free(&old);
	return store_idem_put(s, t, r->order_id, &rec);
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

/* The recorded payment again: same event, same id, nothing charged. */
static enum worker_outcome
repeat(struct pp *p, const struct event *ev, char *json,
    struct worker_output *out, char *why, size_t whylen)
{
	struct event old;
	struct event_err err;
	struct log_ctx ctx = { ev->id, ev->subject, NULL };
	char trace[TRACE_ID_LEN + 1];

	if (trace_id_of(ev->traceparent, trace) == 0)
		ctx.trace_id = trace;

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

/* The payment event of a charge that was approved or declined. */
static char *
payment_json(const struct event *ev, const struct charge *ch,
    struct event *pay)
{
	enum event_pay_status st;
	const char *pid;

	st = ch->r == CHARGE_APPROVED ? EVENT_PAY_APPROVED : EVENT_PAY_DECLINED;
	pid = ch->payment_id[0] != '\0' ? ch->payment_id : NULL;
	/* A gateway's id or reason that breaks the rules is not used. */
	if (event_payment_processed(pay, ev, st, ch->reason, pid,
	    SOURCE) == -1 && (errno != EINVAL ||
	    event_payment_processed(pay, ev, st, "declined", NULL,
	    SOURCE) == -1))
		return NULL;
	return event_serialize(pay, NULL);
}

/*
 * Whether the order was paid before: 1 with its outcome set, 0 if not,
 * -1 with *r set on a store error.
 */
static int
paid_before(struct pp *p, const struct event *ev, struct worker_output *out,
    char *why, size_t whylen, enum worker_outcome *r)
{
	struct store_idem old;
	int ret;

	ret = store_idem_get(p->store, NULL, ev->subject, util_now_ms(), &old);
	if (ret == 0 && old.state == IDEM_PAID) {
		*r = repeat(p, ev, old.outcome, out, why, whylen);
		return 1;
	}
	if (ret == 0) {
		store_idem_free(&old);
		return 0;
	}
	if (ret == STORE_NOTFOUND)
		return 0;
	*r = store_failed(p, ret, why, whylen);
	return -1;
}

/*
 * The outcome of a charge: a failure as it is; an approval or a decline
 * recorded put-if-absent, then its event, or the payment recorded before.
 */
static enum worker_outcome
settle(struct pp *p, const struct event *ev, const struct charge *ch,
    struct worker_output *out, char *why, size_t whylen)
{
	struct record r = { 0 };
	struct event payev;
	char *json;
	int ret;

	if (ch->r == CHARGE_TRANSIENT || ch->r == CHARGE_PERMANENT) {
		snprintf(why, whylen, "%s", ch->why);
		return ch->r == CHARGE_TRANSIENT ? WORKER_TRANSIENT :
		    WORKER_PERMANENT;
	}
	r.now_ms = util_now_ms();
	r.ttl_ms = p->ttl_ms;
	json = payment_json(ev, ch, &payev);
	if (json == NULL) {
		snprintf(why, whylen, "cannot build the payment event: %s",
		    strerror(errno));
		return WORKER_TRANSIENT;
	}
	r.order_id = ev->subject;
	r.json = json;
	r.len = strlen(json);
	if ((ret = store_run(p->store, record_fn, &r)) != 0) {
		free(json);
		free(r.recorded);
		return store_failed(p, ret, why, whylen);
	}
	if (r.recorded != NULL) {
		/* Another event of this order was paid meanwhile. */
		free(json);
		return repeat(p, ev, r.recorded, out, why, whylen);
	}
	if ((out->key = strdup(ev->subject)) == NULL) {
		free(json);
		snprintf(why, whylen, "out of memory");
		return WORKER_TRANSIENT;
	}
	out->value = json;
	snprintf(out->traceparent, sizeof(out->traceparent), "%s",
	    payev.traceparent);
	if (ch->r == CHARGE_APPROVED)
		p->approved++;
	else
		p->declined++;
	{
		struct log_ctx ctx = { ev->id, ev->subject, NULL };
		char trace[TRACE_ID_LEN + 1];

		if (trace_id_of(ev->traceparent, trace) == 0)
			ctx.trace_id = trace;

		log_msg(LOG_LEVEL_DEBUG, &ctx, "order %s: %s%s%s", ev->subject,
		    event_pay_status_name(payev.payment.status),
		    ch->r == CHARGE_DECLINED ? " " : "",
		    ch->r == CHARGE_DECLINED ? payev.payment.reason : "");
	}
	return WORKER_DONE;
}

/*
 * The simulator, which costs nothing, answers first: an approval or a
 * decline meets a recorded payment in the put-if-absent, a failure looks
 * for one, so most orders take a single transaction.
 */
static enum worker_outcome
pay(struct pp *p, const struct event *ev, int attempt,
    struct worker_output *out, char *why, size_t whylen)
{
	struct charge ch;
	enum worker_outcome wr;

	memset(&ch, 0, sizeof(ch));
	simulate(p, ev, attempt, &ch);
	if ((ch.r == CHARGE_TRANSIENT || ch.r == CHARGE_PERMANENT) &&
	    paid_before(p, ev, out, why, whylen, &wr) != 0)
		return wr;
	return settle(p, ev, &ch, out, why, whylen);
}

/*
 * The input as an order.created event, upcast to v2: WORKER_DONE, or the
 * outcome of an input that is not one (ev is then freed).
 */
static enum worker_outcome
order_event(const struct worker_input *in, struct event *ev, char *why,
    size_t whylen)
{
	struct event_err err;

	if (in->len == 0) {
		snprintf(why, whylen, "%s value", in->value == NULL ? "null" :
		    "empty");
		return WORKER_INVALID;
	}
	if (event_parse(in->value, in->len, ev, &err) == -1) {
		snprintf(why, whylen, "%s", err.text);
		event_free(ev);
		return WORKER_INVALID;
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

/* The simulator's handler: one record at a time, synchronously. */
static enum worker_outcome
handle(void *ctx, const struct worker_input *in, struct worker_output *out,
    char *why, size_t whylen)
{
	struct event ev;
	struct pp *p = ctx;
	enum worker_outcome r;

	if ((r = order_event(in, &ev, why, whylen)) != WORKER_DONE)
		return r;
	r = pay(p, &ev, in->attempt, out, why, whylen);
	event_free(&ev);
	return r;
}

/* A gateway call ended: its outcome is settled and the job completed. */
static void
gateway_done(void *arg, const struct httpq_result *res)
{
	struct gwcall *gc = arg;
	struct worker_output out;
	struct charge ch;
	enum worker_outcome r;
	char why[512];

	memset(&out, 0, sizeof(out));
	why[0] = '\0';
	gateway_result(&gc->ev, res, &ch);
	r = settle(gc->p, &gc->ev, &ch, &out, why, sizeof(why));
	worker_complete(gc->job, r, &out, why);
	event_free(&gc->ev);
	free(gc);
}

/*
 * The gateway's handler: an order paid before is answered at once from
 * the record; any other starts a call and is pending until it ends.  The
 * worker never has two records of one order in flight, so the record
 * read here is still the truth when the call ends.
 */
static enum worker_outcome
start(void *ctx, struct worker_job *job, const struct worker_input *in,
    struct worker_output *out, char *why, size_t whylen)
{
	struct pp *p = ctx;
	struct gwcall *gc;
	struct curl_slist *h;
	enum worker_outcome r;
	char *body;

	if ((gc = calloc(1, sizeof(*gc))) == NULL) {
		snprintf(why, whylen, "out of memory");
		return WORKER_TRANSIENT;
	}
	if ((r = order_event(in, &gc->ev, why, whylen)) != WORKER_DONE) {
		free(gc);
		return r;
	}
	if (paid_before(p, &gc->ev, out, why, whylen, &r) == 0) {
		gc->p = p;
		gc->job = job;
		gc->attempt = in->attempt;
		body = gateway_body(&gc->ev);
		h = gateway_headers(&gc->ev);
		if (body != NULL && h != NULL && httpq_post(p->hq, body,
		    strlen(body), h, gateway_done, gc) == 0)
			return WORKER_PENDING;
		if (body == NULL || h == NULL) {
			free(body);
			curl_slist_free_all(h);
		}
		snprintf(why, whylen, "gateway: out of memory");
		r = WORKER_TRANSIENT;
	}
	event_free(&gc->ev);
	free(gc);
	return r;
}

static void
pump(void *ctx, int wait_ms)
{
	struct pp *p = ctx;

	httpq_run(p->hq, wait_ms);
}

/* Failchk, expiry and checkpoints: upkeep.h. */
static void
tick(void *ctx)
{
	struct pp *p = ctx;

	upkeep_tick(&p->up);
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
	const char *e;
	int ch;

	while ((ch = getopt_long(argc, argv, OPT_COMMON_SHORT "i:o:",
	    longopts, NULL)) != -1) {
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
			p->concurrency = (int)util_strtonum(optarg, 1,
			    WORKER_CONCURRENCY_MAX, &e);
			if (e != NULL)
				usage_error("--concurrency %s", optarg, e);
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
			p->limit = util_strtonum(optarg, 0, ORDER_TOTAL_MAX,
			    &e);
			if (e != NULL)
				usage_error("--limit %s", optarg, e);
			break;
		case OPT_MAX_ATTEMPTS:
			cf->max_attempts = (int)util_strtonum(optarg, 1, 100,
			    &e);
			if (e != NULL)
				usage_error("--max-attempts %s", optarg, e);
			break;
		case OPT_SYNC:
			p->store_flags &= ~STORE_NOSYNC;
			break;
		default:
			if (!opt_common(&p->o, ch, optarg)) {
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
}

int
main(int argc, char *argv[])
{
	struct worker_config cf;
	struct worker_stats st;
	int rc, ret;

	log_init(argv[0]);
	worker_catch_signals();
	opt_init(&pp.o, usage);
	memset(&cf, 0, sizeof(cf));
	cf.max_attempts = DEF_MAX_ATTEMPTS;
	cf.backoff_ms = DEF_BACKOFF_MS;
	cf.backoff_max_ms = DEF_BACKOFF_MAX_MS;
	pp.limit = DEF_LIMIT;
	pp.ttl_ms = DEF_TTL_MS;
	pp.gw_timeout_ms = DEF_GW_TIMEOUT_MS;
	pp.concurrency = WORKER_CONCURRENCY;
	pp.store_flags = STORE_NOSYNC;

	parse_options(&pp, &cf, argc, argv);

	cf.in_topic = opt_topic(&pp.o, FLOW_TOPIC_ORDERS);
	cf.retry_topic = opt_topic(&pp.o, FLOW_TOPIC_ORDERS_RETRY);
	cf.dlq_topic = opt_topic(&pp.o, FLOW_TOPIC_ORDERS_DLQ);
	cf.out_topic = opt_topic(&pp.o, FLOW_TOPIC_PAYMENTS);
	cf.report_ms = pp.o.verbosity > LOG_LEVEL_INFO ? REPORT_MS : 0;
	cf.handle = handle;
	cf.concurrency = pp.concurrency;
	cf.ctx = &pp;
	cf.report = report;
	cf.tick = tick;

	pp.state = opt_state_dir(&pp.o);
	opt_lock_state(&pp.o);
	if ((ret = store_open(&pp.store, pp.state, pp.store_flags)) != 0)
		log_fatal(OF_EXIT_FAIL, "%s: %s", pp.state,
		    store_strerror(ret));
	if (pp.gateway != NULL) {
		gateway_init(&pp);
		cf.start = start;
		cf.pump = pump;
	}
	upkeep_init(&pp.up, &pp.store, pp.state, pp.store_flags);

	rc = worker_run(&cf, &pp.o, &st);
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
	opt_free(&pp.o);
	if (util_stdout_flush() == -1 &&
	    (rc == OF_EXIT_OK || rc == OF_EXIT_REJECTED))
		rc = OF_EXIT_FAIL;
	return rc;
}
