/*
 * order-serve - takes orders over HTTP (POST /orders), stores each one
 * durably with its outbox record in Berkeley DB, publishes the outbox to
 * order-created, and follows payment-processed so that GET /orders/ID
 * shows pending, then approved or declined (order-serve(1), "Requests and answers").
 *
 * Threads and who owns what:
 *   HTTP pool	libmicrohttpd's threads run handle(): they check, parse and
 *		validate a request, build the event, the stored order and
 *		the answer, then suspend the connection and hand a job to
 *		the committer, which resumes the connection when the job is
 *		done; meanwhile the thread serves its other connections.
 *   committer	the only thread that writes orders, idempotency keys and
 *		the outbox, in one durable transaction per batch of jobs
 *		(common/committer.h).
 *   relay	owns the idempotent producer: publishes the records the
 *		committer read, and hands back those the broker
 *		acknowledged (common/outbox.h).
 *   main	signals, the payment-processed consumer (common/payfollow.h),
 *		expiry of old idempotency keys, checkpoints, and the
 *		shutdown sequence.
 * The documents stored for an order are built by common/orderdoc.h, the
 * idempotency keys in progress kept in common/keyset.h, and the /metrics
 * page written by common/metrics.h.
 *
 * Durability: an answer 201 is sent only after its batch committed with
 * a synchronous log flush; a record leaves the outbox only after the
 * broker acknowledged it.  So after a crash the committer reads the
 * outbox from the start again and whatever was not acknowledged is
 * published again, with the same event id.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "codec.h"
#include "committer.h"
#include "event.h"
#include "exitcode.h"
#include "flow.h"
#include "kafka.h"
#include "keyset.h"
#include "log.h"
#include "metrics.h"
#include "opt.h"
#include "orderdoc.h"
#include "outbox.h"
#include "payfollow.h"
#include "store.h"
#include "util.h"

#define DEF_LISTEN		"127.0.0.1:8080"
#define DEF_THREADS		32
#define DEF_IDLE_MS		10000
#define DEF_DRAIN_MS		10000
#define DEF_MAX_CONN		1024
#define DEF_MAX_IN_FLIGHT	1000
#define BODY_MAX		(64 * 1024)	/* larger: 413 */
#define DISCARD_MAX		(1024 * 1024)	/* then the connection is cut */
#define URL_MAX			(8 * 1024)	/* longer: 414 */
#define HEADERS_MAX		(16 * 1024)	/* more bytes of header fields: 431 */
#define IDEM_KEY_MAX		255
#define EXPIRE_EVERY_MS		10000
/*
 * A checkpoint writes the cache's dirty pages and syncs the data files,
 * and the committer's log syncs wait behind it.  Every 10 s, the p99 of
 * requests at a steady 5,000 a second was 65-110 ms (5 ms with no
 * checkpoint at all); twice a second, with less to write each time,
 * 8-12 ms, and no loss of throughput.  Without activity since the last
 * one, a checkpoint does nothing.  Old log files go at each one.
 */
#define CHECKPOINT_EVERY_MS	500
#define SOURCE			"/orderflow/order-serve"

enum {
	OPT_DRAIN_TIMEOUT = OPT_CMD_FIRST,
	OPT_IDLE_TIMEOUT,
	OPT_LISTEN,
	OPT_MAX_CONN,
	OPT_MAX_IN_FLIGHT,
	OPT_THREADS,
	OPT_TOKEN_FILE
};

enum route {
	R_ORDERS,	/* /orders */
	R_ORDER,	/* /orders/ID */
	R_HEALTHZ,
	R_METRICS,
	R_OTHER,
	R_COUNT
};

static const char *const route_names[R_COUNT] = {
	"/orders", "/orders/{id}", "/healthz", "/metrics", "other"
};

/* One request, from its headers to its completion (MHD's con_cls). */
struct req {
	int64_t		 start_us;
	enum route	 route;
	int		 is_post;
	int		 status;	/* answered; 0 not yet */
	int		 too_big;
	int		 key_owned;	/* idem_key is ours in the key set */
	char		*body;
	size_t		 len;
	size_t		 discarded;
	char		 method[16];
	char		 path[160];	/* printable copy, for the log */
	char		 order_id[ORDER_ID_MAX + 1];
	char		 traceparent[TRACEPARENT_LEN + 1];
	char		 idem_key[IDEM_KEY_MAX + 1];
	struct job	*job;		/* POST /orders: with the committer */
};

/*
 * An order waiting for the committer.  Its connection is suspended
 * meanwhile (MHD_suspend_connection), so that the HTTP thread serves its
 * other connections: a pool thread can hold several, and one waiting for
 * a disk flush must not hold up the others.  The committer resumes it
 * once done (job_done()); the handler, called again, answers and frees it.
 */
struct job {
	struct committer_job	 cj;		/* first: job_done() */
	int			 status;	/* the answer */
	char			*body;		/* malloc'd when not 201 */
	struct MHD_Connection	*conn;
	struct orderdoc		 doc;		/* cj's strings point into it */
};

struct server {
	struct opt_kafka	 o;
	struct opt_codec	 oc;
	struct codec		*codec;		/* the relay's: writes one format */
	struct codec		*pf_codec;	/* the follower's: reads both */
	const char		*listen;
	const char		*topic;		/* order-created */
	const char		*pay_topic;	/* payment-processed */
	int			 threads;
	int64_t			 idle_ms;
	int64_t			 drain_ms;
	long long		 max_conn;
	long long		 max_in_flight;
	unsigned char		 token_md[32];
	int			 has_token;
	struct store		*st;
	struct committer	*cm;
	struct outbox		*ob;		/* the relay */
	struct payfollow	*pf;
	struct metrics		*metrics;
	struct MHD_Daemon	*httpd;
	struct keyset		*keys;		/* in progress: 409 */
	atomic_int		 kafka_failed;	/* the consumer's */
	atomic_int		 reqs_active;
	atomic_int		 suspended;	/* connections with a job */
};

static struct server srv;

/* The signals that stop order-serve; SIGPIPE is ignored besides. */
static const int stop_signals[] = { SIGINT, SIGTERM, 0 };

/* Set by a thread that hit a fatal error (serve_stop()). */
static atomic_int stopping;

static void
usage(void)
{
	fprintf(stderr,
	    "usage: %s [-hqVv] [-b brokers] [-F file] [-G group] [-r url] "
	    "[-X name=value]\n"
	    "           [--drain-timeout duration] [--format format] "
	    "[--idle-timeout duration]\n"
	    "           [--listen addr:port] [--log-format format] "
	    "[--max-connections n]\n"
	    "           [--max-in-flight n] [--state dir] [--threads n]\n"
	    "           [--token-file file] [--topic-prefix prefix]\n",
	    log_progname());
}

/* Asks main to stop, as a signal does: the relay's fatal Kafka error. */
static void
serve_stop(void)
{
	atomic_store(&stopping, 1);
}

/* 0 once a signal or serve_stop() asked to stop. */
static int
serve_running(void)
{
	return !atomic_load(&stopping) && !util_signal_caught();
}

/*
 * The monotonic clock in microseconds, for request latencies: the log
 * shows them to the microsecond and the histogram's lowest buckets are
 * finer than util_mono_ms()'s milliseconds.
 */
static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Jobs: what the committer found, as an answer.
 */

static void
job_set(struct job *j, int status, char *body)
{
	free(j->body);
	j->status = status;
	j->body = body;
}

/* Sets the answer of a job the committer is done with. */
static void
job_result(struct job *j)
{
	char *body;
	int status;

	switch (j->cj.result) {
	case COMMITTER_STORED:
		job_set(j, 201, NULL);
		break;
	case COMMITTER_REPLAY:
		/* A key already used: the first answer again, or 422. */
		status = orderdoc_replay(j->cj.replay, j->cj.replay_len,
		    j->doc.fp, &body);
		job_set(j, status, body);
		break;
	case COMMITTER_EXISTS:
		job_set(j, 409, orderdoc_error("an order with this order_id "
		    "exists already", "order_id"));
		break;
	case COMMITTER_STOPPED:
		job_set(j, 503, orderdoc_error("shutting down", NULL));
		break;
	default:
		job_set(j, 503, orderdoc_error("the order could not be "
		    "stored; try again", NULL));
		break;
	}
}

/* The committer's done callback: the job's request is answered next. */
static void
job_done(struct committer_job *cj)
{
	struct job *j = (struct job *)cj;

	MHD_resume_connection(j->conn);
}

/*
 * HTTP.
 */

static enum MHD_Result
respond(struct MHD_Connection *conn, struct req *r, int status,
    const char *body, const char *ctype, const char *hname,
    const char *hval)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(strlen(body),
	    (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", ctype);
	if (hname != NULL)
		MHD_add_response_header(resp, hname, hval);
	if (*r->traceparent != '\0')
		MHD_add_response_header(resp, FLOW_H_TRACEPARENT, r->traceparent);
	ret = MHD_queue_response(conn, (unsigned int)status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		r->status = status;
	return ret;
}

static enum MHD_Result
respond_json(struct MHD_Connection *conn, struct req *r, int status,
    char *body, const char *hname, const char *hval)
{
	enum MHD_Result ret;

	ret = respond(conn, r, status, body, "application/json", hname, hval);
	free(body);
	return ret;
}

static enum MHD_Result
respond_error(struct MHD_Connection *conn, struct req *r, int status,
    const char *msg, const char *field)
{
	return respond_json(conn, r, status, orderdoc_error(msg, field), NULL,
	    NULL);
}

static int
valid_order_id(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "abcdefghijklmnopqrstuvwxyz0123456789._:-", s[n]) == NULL ||
		    n >= ORDER_ID_MAX)
			return 0;
	return n > 0;
}

static enum route
route_of(const char *url)
{
	if (strcmp(url, "/orders") == 0)
		return R_ORDERS;
	if (strncmp(url, "/orders/", 8) == 0 && valid_order_id(url + 8))
		return R_ORDER;
	if (strcmp(url, "/healthz") == 0)
		return R_HEALTHZ;
	if (strcmp(url, "/metrics") == 0)
		return R_METRICS;
	return R_OTHER;
}

/* Copies s for the log, anything unprintable as '?'. */
static void
printable_copy(char *dst, size_t len, const char *s)
{
	size_t i;

	for (i = 0; i + 1 < len && s[i] != '\0'; i++)
		dst[i] = s[i] > 0x20 && s[i] < 0x7f ? s[i] : '?';
	dst[i] = '\0';
}

static const char *
header(struct MHD_Connection *conn, const char *name)
{
	return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* Constant time: both sides are hashed, then compared with CRYPTO_memcmp. */
static int
authorized(struct server *sv, struct MHD_Connection *conn)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	const char *a;

	if (!sv->has_token)
		return 1;
	if ((a = header(conn, "Authorization")) == NULL ||
	    strncasecmp(a, "Bearer ", 7) != 0)
		return 0;
	if (EVP_Digest(a + 7, strlen(a + 7), md, &mdlen, EVP_sha256(),
	    NULL) != 1 || mdlen != sizeof(sv->token_md))
		return 0;
	return CRYPTO_memcmp(md, sv->token_md, sizeof(sv->token_md)) == 0;
}

/* "application/json", maybe with parameters; any case. */
static int
json_content_type(const char *ct)
{
	size_t n;

	if (ct == NULL)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	n = strcspn(ct, "; \t");
	return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

/*
 * The key of an Idempotency-Key header (the IETF httpapi draft): an RFC
 * 8941 sf-string, "k-1", whose only escapes are \" and \\ and which may
 * have spaces around it but no parameters; or, as clients sent it before
 * the draft, the bare k-1 (visible ASCII, not starting with a double
 * quote), which is the same key.  Stores the key (1 to IDEM_KEY_MAX
 * characters) in out and returns 0, or -1 when v is neither.
 */
static int
idem_key_parse(const char *v, char out[IDEM_KEY_MAX + 1])
{
	size_t n = 0;

	while (*v == ' ')
		v++;
	if (*v != '"') {
		for (; v[n] != '\0'; n++)
			if (v[n] < 0x21 || v[n] > 0x7e || n >= IDEM_KEY_MAX)
				return -1;
		memcpy(out, v, n);
		out[n] = '\0';
		return n > 0 ? 0 : -1;
	}
	for (v++; *v != '"'; v++) {
		if (*v == '\\' && v[1] != '"' && v[1] != '\\')
			return -1;
		if (*v == '\\')
			v++;
		else if (*v < 0x20 || *v > 0x7e)	/* NUL: no closing quote */
			return -1;
		if (n >= IDEM_KEY_MAX)
			return -1;
		out[n++] = *v;
	}
	for (v++; *v == ' '; v++)
		;
	out[n] = '\0';
	return *v == '\0' && n > 0 ? 0 : -1;
}

static enum MHD_Result
get_order(struct server *sv, struct MHD_Connection *conn, struct req *r,
    const char *id)
{
	char *json;
	int ret;

	snprintf(r->order_id, sizeof(r->order_id), "%s", id);
	if ((ret = store_order_get(sv->st, NULL, id, &json)) ==
	    STORE_NOTFOUND)
		return respond_error(conn, r, 404, "no such order", NULL);
	if (ret != 0) {
		log_error("store: order %s: %s", id, store_strerror(ret));
		return respond_error(conn, r, 500, "the order could not be "
		    "read", NULL);
	}
	return respond_json(conn, r, 200, json, NULL, NULL);
}

static enum MHD_Result
get_metrics(struct server *sv, struct MHD_Connection *conn, struct req *r)
{
	struct metrics_page pg;
	uint64_t depth, published, failures, held, batches, orders;
	int64_t oldest;
	double age = 0;
	enum MHD_Result ret;
	int err;

	if ((err = store_outbox_stats(sv->st, NULL, &depth, &oldest)) != 0) {
		log_error("store: outbox: %s", store_strerror(err));
		return respond_error(conn, r, 500, "the outbox could not be "
		    "read", NULL);
	}
	if (depth > 0 && oldest > 0 && util_now_ms() > oldest)
		age = (util_now_ms() - oldest) / 1000.0;
	metrics_page(sv->metrics, &pg);
	outbox_stats(sv->ob, &published, &failures, &held);
	committer_stats(sv->cm, &batches, &orders);
	metrics_page_value(&pg, "outbox_depth", "gauge",
	    "Orders stored and not yet acknowledged by the broker.",
	    (double)depth);
	metrics_page_value(&pg, "outbox_oldest_age_seconds", "gauge",
	    "Age of the oldest outbox record (0 when empty).", age);
	metrics_page_value(&pg, "delivery_failures_total", "counter",
	    "Outbox records the broker did not acknowledge (each is sent "
	    "again).", (double)failures);
	metrics_page_value(&pg, "events_published_total", "counter",
	    "Outbox records acknowledged by the broker.", (double)published);
	metrics_page_value(&pg, "relay_in_flight", "gauge",
	    "Outbox records produced or waiting to be produced again.",
	    (double)held);
	metrics_page_value(&pg, "payments_applied_total", "counter",
	    "payment.processed events applied to a stored order.",
	    (double)payfollow_applied(sv->pf));
	metrics_page_value(&pg, "commit_batches_total", "counter",
	    "Durable transactions of the committer.", (double)batches);
	metrics_page_value(&pg, "committed_orders_total", "counter",
	    "Orders stored by those transactions.", (double)orders);
	metrics_page_value(&pg, "idempotency_keys_in_flight", "gauge",
	    "Requests with an Idempotency-Key not answered yet.",
	    (double)keyset_count(sv->keys));
	ret = respond(conn, r, 200, pg.text, "text/plain; version=0.0.4; "
	    "charset=utf-8", NULL, NULL);
	free(pg.text);
	return ret;
}

/* The answer of a done job; its body, if any, goes with the answer. */
static enum MHD_Result
answer_job(struct MHD_Connection *conn, struct req *r, struct job *j,
    const struct orderdoc *p)
{
	char loc[sizeof("/orders/") + ORDER_ID_MAX], *body;
	const cJSON *id;
	cJSON *o;

	job_result(j);
	if (j->status == 201 && j->body == NULL) {
		snprintf(loc, sizeof(loc), "/orders/%s", p->ord.order_id);
		return respond(conn, r, 201, p->created, "application/json",
		    "Location", loc);
	}
	/* A replayed 201 names the order it created, not this one's. */
	if (j->status == 201) {
		o = cJSON_Parse(j->body);
		id = cJSON_GetObjectItemCaseSensitive(o, "order_id");
		if (cJSON_IsString(id) && valid_order_id(id->valuestring)) {
			snprintf(loc, sizeof(loc), "/orders/%s",
			    id->valuestring);
			snprintf(r->order_id, sizeof(r->order_id), "%s",
			    id->valuestring);
		} else
			snprintf(loc, sizeof(loc), "/orders");
		cJSON_Delete(o);
		body = j->body;
		j->body = NULL;
		return respond_json(conn, r, 201, body, "Location", loc);
	}
	body = j->body;
	j->body = NULL;
	return respond_json(conn, r, j->status, body, NULL, NULL);
}

static void
job_free(struct job *j)
{
	orderdoc_free(&j->doc);
	free(j->cj.replay);
	free(j->body);
	free(j);
}

/*
 * Checks and builds the order, then suspends the connection and hands the
 * job to the committer; handle() is called again once it is resumed, and
 * post_answer() answers.
 */
static enum MHD_Result
post_order(struct server *sv, struct MHD_Connection *conn, struct req *r)
{
	struct event_err err;
	struct job *j;
	struct orderdoc *p;

	if (r->too_big)
		return respond_error(conn, r, 413, "the body is larger than "
		    "64 KiB", NULL);
	j = util_xcalloc(1, sizeof(*j));
	p = &j->doc;
	if (order_parse(r->body != NULL ? r->body : "", r->len, &p->ord,
	    &err) == -1) {
		job_free(j);
		return respond_error(conn, r, 400, err.msg, err.field);
	}
	snprintf(r->order_id, sizeof(r->order_id), "%s", p->ord.order_id);
	if (orderdoc_build(p, SOURCE, r->traceparent, r->body != NULL ?
	    r->body : "", r->len, *r->idem_key != '\0', util_now_ms()) == -1) {
		job_free(j);
		return respond_error(conn, r, 500, "the event could not be "
		    "built", NULL);
	}
	j->cj.idem_key = *r->idem_key != '\0' ? r->idem_key : NULL;
	j->cj.order_id = p->ord.order_id;
	j->cj.order_json = p->order_json;
	j->cj.outbox = p->outbox;
	j->cj.outbox_len = strlen(p->outbox);
	j->cj.outcome = p->outcome;
	j->conn = conn;
	r->job = j;
	/* Suspended first: the committer may resume it at once. */
	atomic_fetch_add(&sv->suspended, 1);
	MHD_suspend_connection(conn);
	if (committer_submit(sv->cm, &j->cj) == -1)
		MHD_resume_connection(conn);
	return MHD_YES;
}

/* The resumed request: its job is done. */
static enum MHD_Result
post_answer(struct server *sv, struct MHD_Connection *conn, struct req *r)
{
	struct job *j = r->job;
	enum MHD_Result ret;

	r->job = NULL;
	atomic_fetch_sub(&sv->suspended, 1);
	ret = answer_job(conn, r, j, &j->doc);
	job_free(j);
	return ret;
}

static enum MHD_Result
add_field_len(void *cls, enum MHD_ValueKind kind, const char *name,
    const char *value)
{
	size_t *n = cls;

	(void)kind;
	*n += strlen(name) + (value != NULL ? strlen(value) : 0) + 4;
	return MHD_YES;
}

/*
 * The request's size, checked before anything else; MHD_YES with
 * r->status 0 goes on.  The limits are below libmicrohttpd's own (a
 * request line and header fields that do not fit its 32 KiB memory pool
 * a connection get its HTML 414 or 431, which no option of libmicrohttpd
 * 0.9 can change), so that all but the largest requests get this API's
 * JSON answer.
 */
static enum MHD_Result
check_size(struct MHD_Connection *conn, struct req *r, const char *url)
{
	size_t n = 0;

	if (strlen(url) > URL_MAX)
		return respond_error(conn, r, 414, "the URL is longer than "
		    "8 KiB", NULL);
	MHD_get_connection_values(conn, MHD_HEADER_KIND, add_field_len, &n);
	if (n > HEADERS_MAX)
		return respond_error(conn, r, 431, "the header fields are "
		    "larger than 16 KiB", NULL);
	return MHD_YES;
}

/* Checks done once the headers are in; MHD_YES with r->status 0 goes on. */
static enum MHD_Result
check_headers(struct server *sv, struct MHD_Connection *conn, struct req *r)
{
	const char *v, *errstr;
	long long n;

	if (r->route != R_HEALTHZ && !authorized(sv, conn))
		return respond_json(conn, r, 401, orderdoc_error("a valid "
		    "Authorization: Bearer token is required", NULL),
		    "WWW-Authenticate", "Bearer realm=\"order-serve\"");
	if (r->route == R_OTHER)
		return respond_error(conn, r, 404, "no such resource", NULL);
	if (r->route == R_ORDERS && !r->is_post)
		return respond_json(conn, r, 405, orderdoc_error("method not "
		    "allowed", NULL), "Allow", "POST");
	if (r->route != R_ORDERS && strcmp(r->method, "GET") != 0 &&
	    strcmp(r->method, "HEAD") != 0)
		return respond_json(conn, r, 405, orderdoc_error("method not "
		    "allowed", NULL), "Allow", "GET, HEAD");
	if (r->route != R_ORDERS)
		return MHD_YES;
	if (!json_content_type(header(conn, "Content-Type")))
		return respond_error(conn, r, 415, "Content-Type must be "
		    "application/json", NULL);
	if ((v = header(conn, "Content-Length")) != NULL) {
		n = util_strtonum(v, 0, LLONG_MAX, &errstr);
		if (errstr == NULL && n > BODY_MAX)
			return respond_error(conn, r, 413, "the body is larger "
			    "than 64 KiB", NULL);
	}
	if (trace_parse(header(conn, FLOW_H_TRACEPARENT), r->traceparent) == -1)
		trace_generate(r->traceparent);
	if ((v = header(conn, "Idempotency-Key")) != NULL) {
		if (idem_key_parse(v, r->idem_key) == -1) {
			r->idem_key[0] = '\0';
			return respond_error(conn, r, 400, "must be a string "
			    "(RFC 8941) of 1 to 255 characters, or 1 to 255 "
			    "visible ASCII characters", "Idempotency-Key");
		}
		if (keyset_add(sv->keys, r->idem_key) == -1) {
			r->idem_key[0] = '\0';
			return respond_error(conn, r, 409, "a request with "
			    "this Idempotency-Key is in progress",
			    "Idempotency-Key");
		}
		r->key_owned = 1;
	}
	return MHD_YES;
}

/* The body, at most BODY_MAX bytes kept; more is counted and dropped. */
static enum MHD_Result
take_body(struct req *r, const char *data, size_t *size)
{
	size_t n = *size;

	*size = 0;
	if (r->too_big || r->len + n > BODY_MAX) {
		r->too_big = 1;
		r->discarded += n;
		return r->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
	}
	if (r->body == NULL)
		r->body = util_xmalloc(BODY_MAX + 1);
	memcpy(r->body + r->len, data, n);
	r->len += n;
	r->body[r->len] = '\0';
	return MHD_YES;
}

static struct req *
req_new(struct MHD_Connection *conn, const char *url, const char *method)
{
	struct req *r;

	(void)conn;
	r = util_xcalloc(1, sizeof(*r));
	r->start_us = mono_us();
	r->route = route_of(url);
	r->is_post = strcmp(method, "POST") == 0;
	printable_copy(r->method, sizeof(r->method), method);
	printable_copy(r->path, sizeof(r->path), url);
	atomic_fetch_add(&srv.reqs_active, 1);
	return r;
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct server *sv = cls;
	struct req *r = *con_cls;

	(void)version;
	/*
	 * An answer queued before the request was read to its end closes
	 * the connection: errors found in the headers do, the rest waits
	 * for the end so that connections are kept alive.
	 */
	if (r == NULL) {
		*con_cls = r = req_new(conn, url, method);
		if (check_size(conn, r, url) == MHD_NO)
			return MHD_NO;
		return r->status != 0 ? MHD_YES : check_headers(sv, conn, r);
	}
	if (*upload_data_size > 0)
		return take_body(r, upload_data, upload_data_size);
	if (r->job != NULL)
		return post_answer(sv, conn, r);
	if (r->status != 0)
		return MHD_YES;
	switch (r->route) {
	case R_ORDERS:
		return post_order(sv, conn, r);
	case R_ORDER:
		return get_order(sv, conn, r, url + 8);
	case R_HEALTHZ:
		return respond(conn, r, 200, "{\"status\":\"ok\"}",
		    "application/json", NULL, NULL);
	case R_METRICS:
		return get_metrics(sv, conn, r);
	default:
		return respond_error(conn, r, 404, "no such resource", NULL);
	}
}

/* One log line a request, its metrics, and the request's end. */
static void
completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct server *sv = cls;
	struct req *r = *con_cls;
	char trace[TRACE_ID_LEN + 1];
	struct log_ctx ctx = { NULL, NULL, NULL };
	int64_t us;

	(void)conn;
	if (r == NULL)
		return;
	*con_cls = NULL;
	us = mono_us() - r->start_us;
	if (r->job != NULL) {
		/* Resumed, then closed before it was answered. */
		atomic_fetch_sub(&sv->suspended, 1);
		job_free(r->job);
	}
	if (r->key_owned)
		keyset_del(sv->keys, r->idem_key);
	if (*r->order_id != '\0')
		ctx.order_id = r->order_id;
	if (*r->traceparent != '\0' && trace_id_of(r->traceparent, trace) == 0)
		ctx.trace_id = trace;
	if (r->status != 0) {
		metrics_request(sv->metrics, r->route, r->status, us);
		log_msg(LOG_LEVEL_INFO, &ctx, "%s %s %d %.3fms", r->method,
		    r->path, r->status, us / 1000.0);
	} else
		log_msg(LOG_LEVEL_INFO, &ctx, "%s %s aborted (%s) %.3fms",
		    r->method, r->path,
		    toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ?
		    "timed out" : "connection closed", us / 1000.0);
	free(r->body);
	free(r);
	atomic_fetch_sub(&sv->reqs_active, 1);
}

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[1024];
	size_t n;

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	log_debug("http: %s", buf);
}

/* ADDR:PORT ("[::1]:8080" for IPv6) into an address for MHD. */
static int
parse_listen(const char *s, struct sockaddr_storage *ss)
{
	struct addrinfo hints, *ai;
	char host[256];
	const char *colon, *h = host;
	size_t hl;
	int e;

	if ((colon = strrchr(s, ':')) == NULL || colon == s ||
	    (size_t)(colon - s) >= sizeof(host))
		return -1;
	hl = colon - s;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		host[hl - 1] = '\0';
		h = host + 1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((e = getaddrinfo(h, colon + 1, &hints, &ai)) != 0) {
		log_error("--listen %s: %s", s, gai_strerror(e));
		return -1;
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	return 0;
}

/*
 * libmicrohttpd's unescaping of the path and arguments, except that one
 * with an escaped NUL ("%00") is left as it came: decoded, the NUL would
 * end the string and /orders/h-1%00junk would name order h-1.  Left
 * escaped it is no valid order id, so such a path is unknown (404).
 */
static size_t
unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	(void)cls;
	(void)conn;
	if (strstr(s, "%00") != NULL)
		return strlen(s);
	return MHD_http_unescape(s);
}

static int
http_start(struct server *sv)
{
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	unsigned flags;

	if (parse_listen(sv->listen, &ss) == -1)
		return -1;
	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	    MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	sv->httpd = MHD_start_daemon(flags, 0, NULL, NULL, handle, sv,
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)sv->threads,
	    MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned int)((sv->idle_ms + 999) / 1000),
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)sv->max_conn,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    (unsigned int)(sv->max_conn / 2 > 0 ? sv->max_conn / 2 : 1),
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
	    MHD_OPTION_NOTIFY_COMPLETED, completed, sv,
	    MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
	    MHD_OPTION_END);
	if (sv->httpd == NULL) {
		log_error("cannot listen on %s: %s", sv->listen,
		    errno != 0 ? strerror(errno) : "libmicrohttpd failed");
		return -1;
	}
	info = MHD_get_daemon_info(sv->httpd, MHD_DAEMON_INFO_BIND_PORT);
	log_info("listening on %s (port %u), %d threads", sv->listen,
	    info != NULL ? (unsigned)info->port : 0, sv->threads);
	return 0;
}

/*
 * Start and stop.
 */

static void
housekeeping(struct server *sv, int64_t *expire_at, int64_t *ckpt_at)
{
	int64_t now = util_mono_ms();
	size_t n;
	int ret;

	if (now >= *expire_at) {
		*expire_at = now + EXPIRE_EVERY_MS;
		do
			ret = store_idem_expire(sv->st, NULL, util_now_ms(),
			    500, &n);
		while (ret == 0 && n == 500 && serve_running());
		if (ret != 0)
			log_warn("store: expiring idempotency keys: %s",
			    store_strerror(ret));
	}
	if (now >= *ckpt_at) {
		*ckpt_at = now + CHECKPOINT_EVERY_MS;
		if ((ret = store_checkpoint(sv->st)) != 0)
			log_warn("store: checkpoint: %s", store_strerror(ret));
	}
}

static void
read_token(struct server *sv, const char *path)
{
	unsigned int mdlen;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL)
		log_fatal(OF_EXIT_FAIL, "%s: %s", path, strerror(errno));
	n = getline(&line, &cap, fp);
	fclose(fp);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' ||
	    line[n - 1] == ' ' || line[n - 1] == '\t'))
		line[--n] = '\0';
	if (n <= 0) {
		free(line);
		log_error("%s: no token on the first line", path);
		usage();
		exit(OF_EXIT_USAGE);
	}
	if (EVP_Digest(line, (size_t)n, sv->token_md, &mdlen, EVP_sha256(),
	    NULL) != 1)
		log_fatal(OF_EXIT_FAIL, "%s: cannot hash the token", path);
	OPENSSL_cleanse(line, (size_t)n);
	free(line);
	sv->has_token = 1;
}

static void
parse_options(struct server *sv, int argc, char **argv)
{
	static const struct option longopts[] = {
		OPT_COMMON_LONG,
		OPT_CODEC_LONG,
		{ "drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT },
		{ "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "max-connections", required_argument, NULL, OPT_MAX_CONN },
		{ "max-in-flight", required_argument, NULL, OPT_MAX_IN_FLIGHT },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
		{ NULL, 0, NULL, 0 }
	};
	int ch;

	while ((ch = getopt_long(argc, argv, OPT_COMMON_SHORT OPT_CODEC_SHORT,
	    longopts, NULL)) != -1) {
		switch (ch) {
		case OPT_DRAIN_TIMEOUT:
			sv->drain_ms = opt_duration("--drain-timeout", optarg,
			    0);
			break;
		case OPT_IDLE_TIMEOUT:
			sv->idle_ms = opt_duration("--idle-timeout", optarg,
			    1000);
			break;
		case OPT_LISTEN:
			sv->listen = optarg;
			break;
		case OPT_MAX_CONN:
			sv->max_conn = opt_number("--max-connections", optarg, 2,
			    100000);
			break;
		case OPT_MAX_IN_FLIGHT:
			sv->max_in_flight = opt_number("--max-in-flight", optarg,
			    1, 100000);
			break;
		case OPT_THREADS:
			sv->threads = opt_number("--threads", optarg, 1, 128);
			break;
		case OPT_TOKEN_FILE:
			read_token(sv, optarg);
			break;
		default:
			if (opt_codec(&sv->oc, ch, optarg) == 0 &&
			    opt_common(&sv->o, ch, optarg) == 0) {
				usage();
				exit(OF_EXIT_USAGE);
			}
			break;
		}
	}
	if (optind != argc) {
		usage();
		exit(OF_EXIT_USAGE);
	}
	sv->codec = opt_codec_new(&sv->oc, 0);
	sv->pf_codec = opt_codec_new(&sv->oc, 0);
}

/* A signal ignored already stays ignored (a background job's SIGINT). */
static void
signals_init(void)
{
	util_signals_catch(stop_signals, 0, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Threads started after this never take the signals: main handles them. */
static void
signals_block(int block)
{
	sigset_t set;
	size_t i;

	sigemptyset(&set);
	for (i = 0; stop_signals[i] != 0; i++)
		sigaddset(&set, stop_signals[i]);
	pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

static void
server_open(struct server *sv)
{
	struct committer_conf cc;
	struct outbox_conf oc;
	struct kafka_producer *prod;
	char err[512];
	int ret;

	sv->topic = opt_topic(&sv->o, FLOW_TOPIC_ORDERS);
	sv->pay_topic = opt_topic(&sv->o, FLOW_TOPIC_PAYMENTS);
	/* The outbox keeps JSON; its relay encodes as it publishes. */
	opt_codec_prepare(sv->codec, sv->topic, EVENT_ORDER_CREATED_V2,
	    "no order is accepted");
	/* Two would both publish the outbox, each with its own view. */
	opt_lock_state(&sv->o);
	if ((ret = store_open(&sv->st, opt_state_dir(&sv->o),
	    STORE_EXCLUSIVE)) != 0)
		log_fatal(OF_EXIT_FAIL, "%s: %s", opt_state_dir(&sv->o),
		    store_strerror(ret));
	if ((prod = kafka_producer_new(&sv->o, err, sizeof(err))) == NULL)
		log_fatal(OF_EXIT_USAGE, "%s", err);
	if ((sv->pf = payfollow_open(&sv->o, sv->pay_topic, sv->st,
	    sv->pf_codec, serve_running, err, sizeof(err))) == NULL)
		log_fatal(OF_EXIT_USAGE, "%s", err);
	sv->keys = keyset_new();
	sv->metrics = metrics_new("order_serve", route_names, R_COUNT);
	memset(&cc, 0, sizeof(cc));
	cc.st = sv->st;
	cc.relay_max = (size_t)sv->max_in_flight;
	cc.done = job_done;
	sv->cm = committer_new(&cc);
	memset(&oc, 0, sizeof(oc));
	oc.prod = prod;
	oc.topic = sv->topic;
	oc.codec = codec_format(sv->codec) == CODEC_AVRO ? sv->codec : NULL;
	oc.cm = sv->cm;
	oc.fatal = serve_stop;
	signals_block(1);
	if (committer_start(sv->cm) == -1 ||
	    (sv->ob = outbox_start(&oc)) == NULL)
		log_fatal(OF_EXIT_FAIL, "cannot start threads");
	if (http_start(sv) == -1)
		exit(OF_EXIT_FAIL);
	signals_block(0);
}

/* Stops taking requests and waits for those in progress. */
static void
http_stop(struct server *sv, int64_t deadline)
{
	MHD_socket lsock;

	lsock = MHD_quiesce_daemon(sv->httpd);
	while (atomic_load(&sv->reqs_active) > 0 && util_mono_ms() < deadline)
		util_sleep_ms(10);
	/*
	 * MHD must not be stopped with a connection suspended (it aborts),
	 * and the committer, still running, resumes every one it holds.
	 */
	while (atomic_load(&sv->suspended) > 0)
		util_sleep_ms(10);
	MHD_stop_daemon(sv->httpd);
	sv->httpd = NULL;
	if (lsock != MHD_INVALID_SOCKET)
		close(lsock);
}

/* The consumer's or the relay's producer's fatal error. */
static int
kafka_failed(struct server *sv)
{
	return atomic_load(&sv->kafka_failed) || outbox_failed(sv->ob);
}

/*
 * SIGTERM: no new connections, requests in progress answered, the outbox
 * published until it is empty or --drain-timeout has passed; what is left
 * stays in the outbox for the next start (exit 4).
 */
static int
server_close(struct server *sv)
{
	int64_t deadline = util_mono_ms() + sv->drain_ms;
	uint64_t depth = 0;
	int64_t oldest;
	int code = OF_EXIT_OK, ret;

	log_info("stopping: answering requests in progress, draining the "
	    "outbox (at most %" PRId64 " ms)", sv->drain_ms);
	http_stop(sv, deadline);
	payfollow_close(sv->pf);
	sv->pf = NULL;
	outbox_drain(sv->ob);
	while (!outbox_idle(sv->ob) && util_mono_ms() < deadline &&
	    !kafka_failed(sv))
		util_sleep_ms(20);
	outbox_stop(sv->ob);
	committer_stop(sv->cm);
	if ((ret = store_outbox_stats(sv->st, NULL, &depth, &oldest)) != 0) {
		log_error("store: outbox: %s", store_strerror(ret));
		code = OF_EXIT_FAIL;
	} else if (depth > 0) {
		log_error("%" PRIu64 " accepted order(s) stay in the outbox "
		    "(not acknowledged by the broker, or their deletion "
		    "failed); they are published at the next start", depth);
		code = OF_EXIT_KAFKA;
	}
	if (kafka_failed(sv))
		code = OF_EXIT_KAFKA;
	if (committer_failed(sv->cm) && code == OF_EXIT_OK)
		code = OF_EXIT_FAIL;
	if ((ret = store_close(sv->st)) != 0) {
		log_error("store: close: %s", store_strerror(ret));
		code = OF_EXIT_FAIL;
	}
	outbox_free(sv->ob);
	committer_free(sv->cm);
	metrics_free(sv->metrics);
	keyset_free(sv->keys);
	codec_free(sv->codec);
	codec_free(sv->pf_codec);
	opt_free(&sv->o);
	return code;
}

int
main(int argc, char **argv)
{
	struct server *sv = &srv;
	int64_t expire_at = 0, ckpt_at;
	int code;

	log_init(argv[0]);
	opt_init(&sv->o, usage);
	opt_codec_init(&sv->oc);
	sv->listen = DEF_LISTEN;
	sv->threads = DEF_THREADS;
	sv->idle_ms = DEF_IDLE_MS;
	sv->drain_ms = DEF_DRAIN_MS;
	sv->max_conn = DEF_MAX_CONN;
	sv->max_in_flight = DEF_MAX_IN_FLIGHT;
	parse_options(sv, argc, argv);
	signals_init();
	server_open(sv);
	ckpt_at = util_mono_ms() + CHECKPOINT_EVERY_MS;
	while (serve_running()) {
		if (payfollow_poll(sv->pf) == -1) {
			atomic_store(&sv->kafka_failed, 1);
			break;
		}
		if (committer_failed(sv->cm)) {
			log_error("store: a process died inside Berkeley DB; "
			    "restart to run recovery");
			break;
		}
		housekeeping(sv, &expire_at, &ckpt_at);
	}
	code = server_close(sv);
	if (util_stdout_flush() == -1 && code == OF_EXIT_OK)
		code = OF_EXIT_FAIL;
	return code;
}
