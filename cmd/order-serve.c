/*
 * order-serve - takes orders over HTTP (POST /orders), stores each one
 * durably with its outbox record in Berkeley DB, publishes the outbox to
 * order-created, and follows payment-processed so that GET /orders/ID
 * shows pending, then approved or declined (CONTRACT "order-serve HTTP").
 *
 * Threads and who owns what:
 *   HTTP pool	libmicrohttpd's threads run handle(): they check, parse and
 *		validate a request, build the event, the stored order and
 *		the answer, then suspend the connection and hand a job to
 *		the committer, which resumes the connection when the job is
 *		done; meanwhile the thread serves its other connections.
 *   committer	the only thread that writes orders, idempotency keys and
 *		the outbox.  It takes every job waiting (up to BATCH_MAX)
 *		and runs them in ONE durable transaction, together with the
 *		deletion of the outbox records the relay got acknowledged and
 *		the reading of the next records for the relay; each order,
 *		its outbox record and its key commit or abort together.
 *		Why not one transaction per request and Berkeley DB's own
 *		group commit: BDB locks btree pages, and every append to the
 *		outbox writes its last page, so concurrent request
 *		transactions wait for each other's log flush one by one
 *		(measured: about 1,000 a second whatever the number of
 *		threads).  One writer batching the requests that arrived
 *		during the previous flush is group commit done one level up:
 *		no lock is held across requests, and the batch grows with
 *		the load.
 *   relay	owns the idempotent producer: publishes the records the
 *		committer read, in sequence order, keyed by order id; an
 *		acknowledged record goes back to the committer to be deleted;
 *		a failed one is produced again after RETRY_MS.  At most
 *		--max-in-flight records are unacknowledged at once.
 *   main	signals, the payment-processed consumer, expiry of old
 *		idempotency keys, checkpoints, and the shutdown sequence.
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
#include <librdkafka/rdkafka.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "event.h"
#include "exitcode.h"
#include "kafka.h"
#include "log.h"
#include "opt.h"
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
#define IDEM_KEY_MAX		255
#define IDEM_TTL_MS		(24LL * 3600 * 1000)
#define IDEM_DONE		1
#define BATCH_MAX		1024	/* jobs in one transaction */
#define SCAN_MAX		512	/* outbox records read per batch */
#define RETRY_MS		1000	/* a failed delivery: produced again */
#define CONSUME_BATCH		256
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
#define KEYSET_BUCKETS		1024
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

/* The statuses counted by /metrics; anything else is counted as "other". */
static const int status_codes[] = {
	200, 201, 400, 401, 404, 405, 409, 413, 415, 422, 500, 503
};
#define NSTATUS	(sizeof(status_codes) / sizeof(status_codes[0]))

/* Latency histogram bounds, in microseconds; +Inf follows. */
static const uint64_t lat_bounds_us[] = {
	500, 1000, 2500, 5000, 10000, 20000, 50000, 100000, 250000, 1000000
};
#define NBUCKET	(sizeof(lat_bounds_us) / sizeof(lat_bounds_us[0]))

struct metrics {
	atomic_uint_fast64_t	req[R_COUNT][NSTATUS + 1];
	atomic_uint_fast64_t	lat[NBUCKET + 1];
	atomic_uint_fast64_t	lat_sum_us;
	atomic_uint_fast64_t	published;
	atomic_uint_fast64_t	delivery_failures;
	atomic_uint_fast64_t	payments;
	atomic_uint_fast64_t	batches;
	atomic_uint_fast64_t	batch_orders;
	atomic_uint_fast64_t	keys_in_flight;
	atomic_uint_fast64_t	relay_in_flight;
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
 * What POST /orders builds from a valid order, on the HTTP thread, so that
 * the committer only writes.
 */
struct post {
	struct order	 ord;
	struct event	 ev;
	char		*event_json;
	char		*outbox;
	char		*order_json;
	char		*created;
	char		*outcome;
	char		 fp[65];
};

/*
 * An order waiting for the committer.  Its connection is suspended
 * meanwhile (MHD_suspend_connection), so that the HTTP thread serves its
 * other connections: a pool thread can hold several, and one waiting for
 * a disk flush must not hold up the others.  The committer resumes it
 * once done is set; the handler, called again, answers and frees it.
 */
struct job {
	struct job	*next;
	const char	*idem_key;	/* NULL: none */
	const char	*order_id;
	const char	*order_json;
	const char	*outbox;
	size_t		 outbox_len;
	const char	*outcome;	/* what a replay of idem_key answers */
	const char	*fingerprint;
	int		 done;
	int		 status;	/* 201, or replayed, or an error */
	char		*body;		/* malloc'd when not 201 */
	struct MHD_Connection *conn;
	struct post	 post;		/* the strings above point into it */
};

/* An outbox record on its way to the broker (owned by the relay). */
struct obrec {
	struct obrec	*next;
	uint64_t	 seq;
	char		*data;		/* "KEY\nTRACEPARENT\nEVENT" */
	size_t		 len;
	const char	*key;		/* point into data */
	const char	*tp;
	const char	*event;
	size_t		 event_len;
	int64_t		 retry_at;	/* monotonic ms; 0: produce now */
};

/* What the committer shares with the handlers and the relay (under mu). */
struct committer {
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;		/* the committer has work */
	pthread_cond_t	 relay_cv;	/* the relay has records */
	struct job	*jobs;
	struct job	**jobs_tail;
	uint64_t	*acked;		/* seqs to delete */
	size_t		 nacked;
	size_t		 acked_cap;
	struct obrec	*hand;		/* read for the relay */
	struct obrec	**hand_tail;
	size_t		 relay_room;	/* records the relay can take */
	uint64_t	 scan_after;	/* last seq read for the relay */
	int		 scan_dirty;	/* records may exist after scan_after */
	int		 stop;
	atomic_int	 failed;	/* a store error it cannot get over */
};

struct keynode {
	struct keynode	*next;
	char		 key[];
};

/* Idempotency keys of requests in progress: the 409 of CONTRACT. */
struct keyset {
	pthread_mutex_t	 mu;
	struct keynode	*b[KEYSET_BUCKETS];
};

struct server {
	struct opt_kafka	 o;
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
	struct kafka_producer	*prod;
	struct kafka_consumer	*cons;
	struct MHD_Daemon	*httpd;
	struct committer	 cm;
	struct keyset		 keys;
	struct metrics		 m;
	pthread_t		 committer_thr;
	pthread_t		 relay_thr;
	atomic_int		 relay_stop;	/* 1 drain, 2 stop now */
	atomic_int		 relay_empty;	/* nothing to publish */
	atomic_int		 kafka_failed;
	atomic_int		 reqs_active;
	atomic_int		 suspended;	/* connections with a job */
};

static struct server srv;
static volatile sig_atomic_t run = 1;

static void
usage(void)
{
	fprintf(stderr,
	    "usage: %s [-hqVv] [-b brokers] [-F file] [-G group] "
	    "[-X name=value]\n"
	    "           [--drain-timeout duration] [--idle-timeout duration]\n"
	    "           [--listen addr:port] [--log-format format] "
	    "[--max-connections n]\n"
	    "           [--max-in-flight n] [--state dir] [--threads n]\n"
	    "           [--token-file file] [--topic-prefix prefix]\n",
	    log_progname());
}

static void
on_signal(int sig)
{
	(void)sig;
	run = 0;
}

static void *
xmalloc(size_t n)
{
	void *p;

	if ((p = malloc(n == 0 ? 1 : n)) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	return p;
}

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * The key set.
 */

static unsigned
key_hash(const char *k)
{
	unsigned h = 2166136261u;

	for (; *k != '\0'; k++)
		h = (h ^ (unsigned char)*k) * 16777619u;
	return h % KEYSET_BUCKETS;
}

/* Returns 0 when added, -1 when the key is in progress already. */
static int
keyset_add(struct keyset *ks, const char *key)
{
	struct keynode *n;
	unsigned h = key_hash(key);
	size_t len = strlen(key);

	pthread_mutex_lock(&ks->mu);
	for (n = ks->b[h]; n != NULL; n = n->next)
		if (strcmp(n->key, key) == 0) {
			pthread_mutex_unlock(&ks->mu);
			return -1;
		}
	n = xmalloc(sizeof(*n) + len + 1);
	memcpy(n->key, key, len + 1);
	n->next = ks->b[h];
	ks->b[h] = n;
	pthread_mutex_unlock(&ks->mu);
	atomic_fetch_add(&srv.m.keys_in_flight, 1);
	return 0;
}

static void
keyset_del(struct keyset *ks, const char *key)
{
	struct keynode **np, *n;

	pthread_mutex_lock(&ks->mu);
	for (np = &ks->b[key_hash(key)]; (n = *np) != NULL; np = &n->next)
		if (strcmp(n->key, key) == 0) {
			*np = n->next;
			free(n);
			atomic_fetch_sub(&srv.m.keys_in_flight, 1);
			break;
		}
	pthread_mutex_unlock(&ks->mu);
}

/*
 * JSON helpers (cJSON; the caller frees what they return).
 */

static char *
json_print(cJSON *o)
{
	char *s;

	if (o == NULL || (s = cJSON_PrintUnformatted(o)) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	cJSON_Delete(o);
	return s;
}

static char *
json_error(const char *msg, const char *field)
{
	cJSON *o;

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "error", msg);
	if (field != NULL)
		cJSON_AddStringToObject(o, "field", field);
	return json_print(o);
}

static char *
json_created(const char *order_id, const char *event_id)
{
	cJSON *o;

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "order_id", order_id);
	cJSON_AddStringToObject(o, "event_id", event_id);
	cJSON_AddStringToObject(o, "status", "pending");
	return json_print(o);
}

/* The order as stored and as GET /orders/ID shows it. */
static char *
json_order(const struct order *ord, const char *event_id, int64_t now_ms)
{
	cJSON *o, *items, *it;
	char ts[40];
	size_t i;

	util_rfc3339(now_ms, ts, sizeof(ts));
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "order_id", ord->order_id);
	cJSON_AddStringToObject(o, "status", "pending");
	cJSON_AddStringToObject(o, "event_id", event_id);
	cJSON_AddStringToObject(o, "customer_id", ord->customer_id);
	cJSON_AddStringToObject(o, "email", ord->email);
	cJSON_AddStringToObject(o, "currency", ord->currency);
	cJSON_AddNumberToObject(o, "total", (double)ord->total);
	cJSON_AddStringToObject(o, "payment_method", ord->payment_method);
	items = cJSON_AddArrayToObject(o, "items");
	for (i = 0; i < ord->nitems; i++) {
		it = cJSON_CreateObject();
		cJSON_AddStringToObject(it, "sku", ord->items[i].sku);
		cJSON_AddNumberToObject(it, "qty", ord->items[i].qty);
		cJSON_AddNumberToObject(it, "unit_price",
		    (double)ord->items[i].unit_price);
		cJSON_AddItemToArray(items, it);
	}
	cJSON_AddStringToObject(o, "created_at", ts);
	return json_print(o);
}

/* What a replay of an idempotency key answers, with the body's hash. */
static char *
json_outcome(const char *fingerprint, int status, const char *order_id,
    const char *body)
{
	cJSON *o;

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "fingerprint", fingerprint);
	cJSON_AddNumberToObject(o, "status", status);
	cJSON_AddStringToObject(o, "order_id", order_id);
	cJSON_AddStringToObject(o, "body", body);
	return json_print(o);
}

/*
 * The committer.
 */

/* The arguments and results of one batch transaction. */
struct batch {
	struct job	*jobs;
	uint64_t	*acked;
	size_t		 nacked;
	size_t		 scan_want;
	uint64_t	 scan_from;
	int64_t		 now_ms;
	/* results, reset by every attempt */
	struct obrec	*scanned;
	struct obrec	**scanned_tail;
	uint64_t	 scan_last;
	int		 scan_end;
	size_t		 appended;
};

static void
obrec_free(struct obrec *r)
{
	if (r == NULL)
		return;
	free(r->data);
	free(r);
}

static void
obrec_list_free(struct obrec *r)
{
	struct obrec *next;

	for (; r != NULL; r = next) {
		next = r->next;
		obrec_free(r);
	}
}

/* Splits "KEY\nTRACEPARENT\nEVENT" in place; -1 when malformed. */
static int
obrec_split(struct obrec *r)
{
	char *nl1, *nl2;

	if ((nl1 = memchr(r->data, '\n', r->len)) == NULL ||
	    (nl2 = memchr(nl1 + 1, '\n', r->len - (nl1 + 1 - r->data))) ==
	    NULL || nl1 == r->data)
		return -1;
	*nl1 = *nl2 = '\0';
	r->key = r->data;
	r->tp = nl1 + 1;
	r->event = nl2 + 1;
	r->event_len = r->len - (nl2 + 1 - r->data);
	return 0;
}

static void
job_set(struct job *j, int status, char *body)
{
	free(j->body);
	j->status = status;
	j->body = body;
}

/* A key already used: the first answer again, or 422 for another body. */
static void
job_replay(struct job *j, const struct store_idem *rec)
{
	const cJSON *fp, *st, *body;
	cJSON *o;

	o = cJSON_ParseWithLength(rec->outcome, rec->outcome_len);
	fp = cJSON_GetObjectItemCaseSensitive(o, "fingerprint");
	st = cJSON_GetObjectItemCaseSensitive(o, "status");
	body = cJSON_GetObjectItemCaseSensitive(o, "body");
	if (!cJSON_IsString(fp) || !cJSON_IsNumber(st) ||
	    !cJSON_IsString(body))
		job_set(j, 500, json_error("stored answer unreadable", NULL));
	else if (strcmp(fp->valuestring, j->fingerprint) != 0)
		job_set(j, 422, json_error("Idempotency-Key already used "
		    "with a different body", "Idempotency-Key"));
	else {
		job_set(j, st->valueint, strdup(body->valuestring));
		if (j->body == NULL)
			log_fatal(OF_EXIT_FAIL, "out of memory");
	}
	cJSON_Delete(o);
}

static int
batch_job(struct store *s, struct store_txn *t, struct batch *b,
    struct job *j)
{
	struct store_idem rec;
	uint64_t seq;
	char *json;
	int ret;

	job_set(j, 0, NULL);
	if (j->idem_key != NULL) {
		ret = store_idem_get(s, t, j->idem_key, b->now_ms, &rec);
		if (ret == 0) {
			job_replay(j, &rec);
			store_idem_free(&rec);
			return 0;
		}
		if (ret != STORE_NOTFOUND)
			return ret;
	}
	if ((ret = store_order_get(s, t, j->order_id, &json)) == 0) {
		free(json);
		job_set(j, 409, json_error("an order with this order_id "
		    "exists already", "order_id"));
		return 0;
	}
	if (ret != STORE_NOTFOUND)
		return ret;
	if ((ret = store_order_put(s, t, j->order_id, j->order_json)) != 0 ||
	    (ret = store_outbox_append(s, t, j->outbox, j->outbox_len,
	    b->now_ms, &seq)) != 0)
		return ret;
	if (j->idem_key != NULL) {
		memset(&rec, 0, sizeof(rec));
		rec.created_ms = b->now_ms;
		rec.expires_ms = b->now_ms + IDEM_TTL_MS;
		rec.state = IDEM_DONE;
		rec.outcome = (void *)(uintptr_t)j->outcome;
		rec.outcome_len = strlen(j->outcome);
		if ((ret = store_idem_put(s, t, j->idem_key, &rec)) != 0)
			return ret;
	}
	j->status = 201;
	b->appended++;
	return 0;
}

/* Reads the records the relay asked for (after this batch's appends). */
static int
batch_scan(struct store *s, struct store_txn *t, struct batch *b)
{
	struct store_outbox_rec rec;
	struct obrec *r;
	uint64_t after = b->scan_from;
	size_t n;
	int ret;

	for (n = 0; n < b->scan_want; n++) {
		if ((ret = store_outbox_first(s, t, after, &rec)) ==
		    STORE_NOTFOUND) {
			b->scan_end = 1;
			return 0;
		}
		if (ret != 0)
			return ret;
		after = b->scan_last = rec.seq;
		r = xmalloc(sizeof(*r));
		memset(r, 0, sizeof(*r));
		r->seq = rec.seq;
		r->data = rec.data;
		r->len = rec.len;
		if (obrec_split(r) == -1) {
			log_error("outbox record %" PRIu64 " is malformed; "
			    "deleted", r->seq);
			obrec_free(r);
			if ((ret = store_outbox_del(s, t, after)) != 0)
				return ret;
			continue;
		}
		*b->scanned_tail = r;
		b->scanned_tail = &r->next;
	}
	return 0;
}

/* A store_fn: safe to run again after a deadlock (results are reset). */
static int
batch_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct batch *b = arg;
	struct job *j;
	size_t i;
	int ret;

	obrec_list_free(b->scanned);
	b->scanned = NULL;
	b->scanned_tail = &b->scanned;
	b->scan_last = b->scan_from;
	b->scan_end = 0;
	b->appended = 0;
	for (i = 0; i < b->nacked; i++)
		if ((ret = store_outbox_del(s, t, b->acked[i])) != 0 &&
		    ret != STORE_NOTFOUND)
			return ret;
	for (j = b->jobs; j != NULL; j = j->next)
		if ((ret = batch_job(s, t, b, j)) != 0)
			return ret;
	if (b->scan_want > 0)
		return batch_scan(s, t, b);
	return 0;
}

static int
committer_has_work(const struct committer *c)
{
	return c->jobs != NULL || c->nacked > 0 ||
	    (c->relay_room > 0 && c->scan_dirty);
}

/* Takes what waits (called with mu held). */
static void
batch_take(struct committer *c, struct batch *b)
{
	struct job *j, **jp;
	size_t n = 0;

	memset(b, 0, sizeof(*b));
	b->jobs = c->jobs;
	for (jp = &c->jobs; (j = *jp) != NULL && n < BATCH_MAX; jp = &j->next)
		n++;
	c->jobs = *jp;
	*jp = NULL;
	if (c->jobs == NULL)
		c->jobs_tail = &c->jobs;
	b->acked = c->acked;
	b->nacked = c->nacked;
	c->acked = NULL;
	c->nacked = c->acked_cap = 0;
	if (c->relay_room > 0 && (c->scan_dirty || b->jobs != NULL))
		b->scan_want = c->relay_room < SCAN_MAX ? c->relay_room :
		    SCAN_MAX;
	b->scan_from = c->scan_after;
	b->scanned_tail = &b->scanned;
}

static void
acked_push(struct committer *c, uint64_t seq)
{
	uint64_t *a;

	if (c->nacked == c->acked_cap) {
		c->acked_cap = c->acked_cap ? c->acked_cap * 2 : 256;
		if ((a = realloc(c->acked, c->acked_cap * sizeof(*a))) == NULL)
			log_fatal(OF_EXIT_FAIL, "out of memory");
		c->acked = a;
	}
	c->acked[c->nacked++] = seq;
}

/* Publishes a batch's outcome (called with mu held). */
static void
batch_done(struct committer *c, struct batch *b, int ret)
{
	struct job *j, *next;
	size_t i, n = 0;

	if (ret == 0) {
		if (b->scanned != NULL) {
			*c->hand_tail = b->scanned;
			c->hand_tail = b->scanned_tail;
			for (; b->scanned != NULL; b->scanned =
			    b->scanned->next)
				n++;
			c->relay_room -= n < c->relay_room ? n : c->relay_room;
			pthread_cond_signal(&c->relay_cv);
		}
		c->scan_after = b->scan_last;
		if (b->scan_want > 0 && b->scan_end)
			c->scan_dirty = 0;
		else if (b->appended > 0 || b->scan_want > 0)
			c->scan_dirty = 1;
		free(b->acked);
		atomic_fetch_add(&srv.m.batches, 1);
		atomic_fetch_add(&srv.m.batch_orders, b->appended);
	} else {
		log_error("store: a batch of orders failed: %s",
		    store_strerror(ret));
		obrec_list_free(b->scanned);
		for (i = 0; i < b->nacked; i++)
			acked_push(c, b->acked[i]);
		free(b->acked);
		if (ret == STORE_RUNRECOVERY)
			atomic_store(&c->failed, 1);
	}
	b->scanned = NULL;
	for (j = b->jobs; j != NULL; j = next) {
		next = j->next;
		if (ret != 0)
			job_set(j, 503, json_error("the order could not be "
			    "stored; try again", NULL));
		j->done = 1;
	}
}

/* Hands the jobs of a finished batch back to their HTTP threads. */
static void
jobs_resume(struct job *j)
{
	struct job *next;

	/* Once resumed, a job may be freed at once: next first. */
	for (; j != NULL; j = next) {
		next = j->next;
		MHD_resume_connection(j->conn);
	}
}

static void *
committer_main(void *arg)
{
	struct server *sv = arg;
	struct committer *c = &sv->cm;
	struct batch b;
	int ret;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!committer_has_work(c) && !c->stop)
			pthread_cond_wait(&c->cv, &c->mu);
		if (!committer_has_work(c))
			break;
		batch_take(c, &b);
		pthread_mutex_unlock(&c->mu);
		b.now_ms = util_now_ms();
		ret = store_run(sv->st, batch_fn, &b);
		pthread_mutex_lock(&c->mu);
		batch_done(c, &b, ret);
		/* MHD's own locks are never taken under ours. */
		pthread_mutex_unlock(&c->mu);
		jobs_resume(b.jobs);
		/* A store that fails now will fail at once again. */
		if (ret != 0)
			util_sleep_ms(100);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/*
 * Hands a job to the committer, whose connection the caller suspended;
 * the committer resumes it when its batch is done.  Returns 0, or -1 when
 * the committer takes nothing any more (the job is then done, with a 503,
 * and the caller resumes the connection itself).
 */
static int
committer_submit(struct committer *c, struct job *j)
{
	int ret = 0;

	pthread_mutex_lock(&c->mu);
	if (c->stop || atomic_load(&c->failed)) {
		job_set(j, 503, json_error("shutting down", NULL));
		j->done = 1;
		ret = -1;
	} else {
		j->next = NULL;
		*c->jobs_tail = j;
		c->jobs_tail = &j->next;
		pthread_cond_signal(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	return ret;
}

/*
 * The relay.
 */

struct relay {
	struct server	*sv;
	struct obrec	*retry;		/* failed, produced again later */
	size_t		 in_flight;	/* produced, no delivery report yet */
	size_t		 waiting;	/* in retry */
};

struct relay_dr {
	struct relay	*rl;
	struct obrec	*rec;
};

static void
relay_dr_cb(void *opaque, rd_kafka_resp_err_t err, int32_t partition,
    int64_t offset)
{
	struct relay_dr *d = opaque;
	struct relay *rl = d->rl;
	struct obrec *r = d->rec;
	struct committer *c = &rl->sv->cm;

	(void)partition;
	(void)offset;
	free(d);
	rl->in_flight--;
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		atomic_fetch_add(&rl->sv->m.published, 1);
		pthread_mutex_lock(&c->mu);
		acked_push(c, r->seq);
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
		obrec_free(r);
		return;
	}
	atomic_fetch_add(&rl->sv->m.delivery_failures, 1);
	log_msg(LOG_LEVEL_WARN, &(struct log_ctx){ .order_id = r->key },
	    "outbox record %" PRIu64 " not delivered: %s; kept, sent again",
	    r->seq, rd_kafka_err2str(err));
	r->retry_at = util_mono_ms() + RETRY_MS;
	r->next = rl->retry;
	rl->retry = r;
	rl->waiting++;
}

/* Produces one record; on an error it waits in the retry list. */
static void
relay_produce(struct relay *rl, struct obrec *r)
{
	struct server *sv = rl->sv;
	struct relay_dr *d;
	rd_kafka_headers_t *h;
	rd_kafka_resp_err_t err;

	d = xmalloc(sizeof(*d));
	d->rl = rl;
	d->rec = r;
	h = rd_kafka_headers_new(2);
	kafka_header_add_str(h, "content-type", EVENT_CONTENT_TYPE);
	if (*r->tp != '\0')
		kafka_header_add_str(h, "traceparent", r->tp);
	err = kafka_produce(sv->prod, sv->topic, r->key, strlen(r->key),
	    r->event, r->event_len, h, relay_dr_cb, d);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		rl->in_flight++;
		return;
	}
	rd_kafka_headers_destroy(h);
	free(d);
	atomic_fetch_add(&sv->m.delivery_failures, 1);
	log_warn("outbox record %" PRIu64 ": %s; sent again later", r->seq,
	    rd_kafka_err2str(err));
	r->retry_at = util_mono_ms() + RETRY_MS;
	r->next = rl->retry;
	rl->retry = r;
	rl->waiting++;
}

static void
relay_retry_due(struct relay *rl)
{
	struct obrec **rp, *r;
	int64_t now = util_mono_ms();

	for (rp = &rl->retry; (r = *rp) != NULL;) {
		if (r->retry_at > now) {
			rp = &r->next;
			continue;
		}
		*rp = r->next;
		rl->waiting--;
		relay_produce(rl, r);
	}
}

/* Takes the records read for it and says how many more it can take. */
static struct obrec *
relay_take(struct relay *rl, int64_t wait_ms)
{
	struct committer *c = &rl->sv->cm;
	struct obrec *list;
	struct timespec ts;
	size_t busy, max = (size_t)rl->sv->max_in_flight;
	int empty;

	pthread_mutex_lock(&c->mu);
	if (c->hand == NULL && wait_ms > 0) {
		ts = util_time_in(CLOCK_REALTIME, wait_ms);
		pthread_cond_timedwait(&c->relay_cv, &c->mu, &ts);
	}
	list = c->hand;
	c->hand = NULL;
	c->hand_tail = &c->hand;
	busy = rl->in_flight + rl->waiting;
	for (struct obrec *r = list; r != NULL; r = r->next)
		busy++;
	c->relay_room = busy < max ? max - busy : 0;
	if (c->relay_room > 0 && c->scan_dirty)
		pthread_cond_signal(&c->cv);
	empty = list == NULL && busy == 0 && !c->scan_dirty &&
	    c->nacked == 0;
	pthread_mutex_unlock(&c->mu);
	atomic_store(&rl->sv->relay_empty, empty);
	atomic_store(&rl->sv->m.relay_in_flight, busy);
	return list;
}

static void *
relay_main(void *arg)
{
	struct relay rl = { .sv = arg };
	struct server *sv = arg;
	struct obrec *list, *next;
	char reason[512];
	int stop;

	while ((stop = atomic_load(&sv->relay_stop)) != 2) {
		if (stop == 1 && atomic_load(&sv->relay_empty))
			break;
		list = relay_take(&rl, rl.in_flight > 0 ? 0 : 50);
		for (; list != NULL; list = next) {
			next = list->next;
			relay_produce(&rl, list);
		}
		relay_retry_due(&rl);
		kafka_poll(sv->prod, rl.in_flight > 0 ? 5 : 0);
		if (kafka_fatal(kafka_producer_rk(sv->prod), reason,
		    sizeof(reason))) {
			log_error("kafka: %s", reason);
			atomic_store(&sv->kafka_failed, 1);
			run = 0;
			break;
		}
	}
	/* What is still unacknowledged stays in the outbox. */
	if (rl.in_flight > 0)
		kafka_flush(sv->prod, 1000);
	kafka_producer_destroy(sv->prod);
	sv->prod = NULL;
	obrec_list_free(rl.retry);
	pthread_mutex_lock(&sv->cm.mu);
	obrec_list_free(sv->cm.hand);
	sv->cm.hand = NULL;
	sv->cm.hand_tail = &sv->cm.hand;
	sv->cm.relay_room = 0;
	pthread_mutex_unlock(&sv->cm.mu);
	return NULL;
}

/*
 * HTTP.
 */

static int
status_index(int status)
{
	size_t i;

	for (i = 0; i < NSTATUS; i++)
		if (status_codes[i] == status)
			return (int)i;
	return NSTATUS;
}

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
		MHD_add_response_header(resp, "traceparent", r->traceparent);
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
	return respond_json(conn, r, status, json_error(msg, field), NULL,
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

static int
valid_idem_key(const char *k)
{
	size_t n;

	for (n = 0; k[n] != '\0'; n++)
		if (k[n] < 0x21 || k[n] > 0x7e || n >= IDEM_KEY_MAX)
			return 0;
	return n > 0;
}

static int
hex_sha256(const void *p, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen, i;

	if (EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL) != 1)
		return -1;
	for (i = 0; i < mdlen && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
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

static void
buf_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
buf_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < *cap - *len) {
			*len += n;
			return;
		}
		*cap = *cap * 2 + n;
		if ((*buf = realloc(*buf, *cap)) == NULL)
			log_fatal(OF_EXIT_FAIL, "out of memory");
	}
}

static void
metrics_requests(struct server *sv, char **b, size_t *len, size_t *cap)
{
	uint64_t v, cum = 0;
	size_t i, k;
	char code[8];

	buf_add(b, len, cap, "# HELP order_serve_requests_total HTTP requests "
	    "answered, by route and status.\n"
	    "# TYPE order_serve_requests_total counter\n");
	for (i = 0; i < R_COUNT; i++)
		for (k = 0; k <= NSTATUS; k++) {
			if ((v = atomic_load(&sv->m.req[i][k])) == 0)
				continue;
			if (k < NSTATUS)
				snprintf(code, sizeof(code), "%d",
				    status_codes[k]);
			else
				snprintf(code, sizeof(code), "other");
			buf_add(b, len, cap, "order_serve_requests_total"
			    "{route=\"%s\",status=\"%s\"} %" PRIu64 "\n",
			    route_names[i], code, v);
		}
	buf_add(b, len, cap, "# HELP order_serve_request_duration_seconds "
	    "Time from a request's headers to its answer.\n"
	    "# TYPE order_serve_request_duration_seconds histogram\n");
	for (i = 0; i <= NBUCKET; i++) {
		cum += atomic_load(&sv->m.lat[i]);
		if (i < NBUCKET)
			buf_add(b, len, cap, "order_serve_request_duration_"
			    "seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
			    lat_bounds_us[i] / 1e6, cum);
		else
			buf_add(b, len, cap, "order_serve_request_duration_"
			    "seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
	}
	buf_add(b, len, cap, "order_serve_request_duration_seconds_sum %.6f\n"
	    "order_serve_request_duration_seconds_count %" PRIu64 "\n",
	    atomic_load(&sv->m.lat_sum_us) / 1e6, cum);
}

static void
metric(char **b, size_t *len, size_t *cap, const char *name,
    const char *type, const char *help, double v)
{
	buf_add(b, len, cap, "# HELP order_serve_%s %s\n"
	    "# TYPE order_serve_%s %s\norder_serve_%s %.17g\n",
	    name, help, name, type, name, v);
}

static enum MHD_Result
get_metrics(struct server *sv, struct MHD_Connection *conn, struct req *r)
{
	size_t len = 0, cap = 8192;
	uint64_t depth;
	int64_t oldest;
	char *b;
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
	b = xmalloc(cap);
	*b = '\0';
	metrics_requests(sv, &b, &len, &cap);
	metric(&b, &len, &cap, "outbox_depth", "gauge",
	    "Orders stored and not yet acknowledged by the broker.",
	    (double)depth);
	metric(&b, &len, &cap, "outbox_oldest_age_seconds", "gauge",
	    "Age of the oldest outbox record (0 when empty).", age);
	metric(&b, &len, &cap, "delivery_failures_total", "counter",
	    "Outbox records the broker did not acknowledge (each is sent "
	    "again).", (double)atomic_load(&sv->m.delivery_failures));
	metric(&b, &len, &cap, "events_published_total", "counter",
	    "Outbox records acknowledged by the broker.",
	    (double)atomic_load(&sv->m.published));
	metric(&b, &len, &cap, "relay_in_flight", "gauge",
	    "Outbox records produced or waiting to be produced again.",
	    (double)atomic_load(&sv->m.relay_in_flight));
	metric(&b, &len, &cap, "payments_applied_total", "counter",
	    "payment.processed events applied to a stored order.",
	    (double)atomic_load(&sv->m.payments));
	metric(&b, &len, &cap, "commit_batches_total", "counter",
	    "Durable transactions of the committer.",
	    (double)atomic_load(&sv->m.batches));
	metric(&b, &len, &cap, "committed_orders_total", "counter",
	    "Orders stored by those transactions.",
	    (double)atomic_load(&sv->m.batch_orders));
	metric(&b, &len, &cap, "idempotency_keys_in_flight", "gauge",
	    "Requests with an Idempotency-Key not answered yet.",
	    (double)atomic_load(&sv->m.keys_in_flight));
	ret = respond(conn, r, 200, b, "text/plain; version=0.0.4; "
	    "charset=utf-8", NULL, NULL);
	free(b);
	return ret;
}

static void
post_free(struct post *p)
{
	order_free(&p->ord);
	event_free(&p->ev);
	free(p->event_json);
	free(p->outbox);
	free(p->order_json);
	free(p->created);
	free(p->outcome);
}

static int
post_build(struct post *p, struct req *r, int64_t now_ms)
{
	size_t elen;

	if (event_order_created(&p->ev, &p->ord, SOURCE,
	    r->traceparent) == -1 ||
	    (p->event_json = event_serialize(&p->ev, &elen)) == NULL)
		return -1;
	if (asprintf(&p->outbox, "%s\n%s\n%s", p->ord.order_id,
	    r->traceparent, p->event_json) == -1) {
		p->outbox = NULL;
		return -1;
	}
	p->order_json = json_order(&p->ord, p->ev.id, now_ms);
	p->created = json_created(p->ord.order_id, p->ev.id);
	if (*r->idem_key != '\0') {
		if (hex_sha256(r->body != NULL ? r->body : "", r->len,
		    p->fp) == -1)
			return -1;
		p->outcome = json_outcome(p->fp, 201, p->ord.order_id,
		    p->created);
	}
	return 0;
}

/* The answer of a done job; its body, if any, goes with the answer. */
static enum MHD_Result
answer_job(struct MHD_Connection *conn, struct req *r, struct job *j,
    const struct post *p)
{
	char loc[sizeof("/orders/") + ORDER_ID_MAX], *body;
	const cJSON *id;
	cJSON *o;

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
	post_free(&j->post);
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
	struct post *p;

	if (r->too_big)
		return respond_error(conn, r, 413, "the body is larger than "
		    "64 KiB", NULL);
	j = xmalloc(sizeof(*j));
	memset(j, 0, sizeof(*j));
	p = &j->post;
	if (order_parse(r->body != NULL ? r->body : "", r->len, &p->ord,
	    &err) == -1) {
		job_free(j);
		return respond_error(conn, r, 400, err.msg, err.field);
	}
	snprintf(r->order_id, sizeof(r->order_id), "%s", p->ord.order_id);
	if (post_build(p, r, util_now_ms()) == -1) {
		job_free(j);
		return respond_error(conn, r, 500, "the event could not be "
		    "built", NULL);
	}
	j->idem_key = *r->idem_key != '\0' ? r->idem_key : NULL;
	j->order_id = p->ord.order_id;
	j->order_json = p->order_json;
	j->outbox = p->outbox;
	j->outbox_len = strlen(p->outbox);
	j->outcome = p->outcome;
	j->fingerprint = p->fp;
	j->conn = conn;
	r->job = j;
	/* Suspended first: the committer may resume it at once. */
	atomic_fetch_add(&sv->suspended, 1);
	MHD_suspend_connection(conn);
	if (committer_submit(&sv->cm, j) == -1)
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
	ret = answer_job(conn, r, j, &j->post);
	job_free(j);
	return ret;
}

/* Checks done once the headers are in; MHD_YES with r->status 0 goes on. */
static enum MHD_Result
check_headers(struct server *sv, struct MHD_Connection *conn, struct req *r)
{
	const char *v, *errstr;
	long long n;

	if (r->route != R_HEALTHZ && !authorized(sv, conn))
		return respond_json(conn, r, 401, json_error("a valid "
		    "Authorization: Bearer token is required", NULL),
		    "WWW-Authenticate", "Bearer realm=\"order-serve\"");
	if (r->route == R_OTHER)
		return respond_error(conn, r, 404, "no such resource", NULL);
	if (r->route == R_ORDERS && !r->is_post)
		return respond_json(conn, r, 405, json_error("method not "
		    "allowed", NULL), "Allow", "POST");
	if (r->route != R_ORDERS && strcmp(r->method, "GET") != 0 &&
	    strcmp(r->method, "HEAD") != 0)
		return respond_json(conn, r, 405, json_error("method not "
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
	if ((v = header(conn, "traceparent")) != NULL && trace_valid(v))
		snprintf(r->traceparent, sizeof(r->traceparent), "%s", v);
	else
		trace_generate(r->traceparent);
	if ((v = header(conn, "Idempotency-Key")) != NULL) {
		if (!valid_idem_key(v))
			return respond_error(conn, r, 400, "must be 1 to 255 "
			    "visible ASCII characters", "Idempotency-Key");
		if (keyset_add(&sv->keys, v) == -1)
			return respond_error(conn, r, 409, "a request with "
			    "this Idempotency-Key is in progress",
			    "Idempotency-Key");
		snprintf(r->idem_key, sizeof(r->idem_key), "%s", v);
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
		r->body = xmalloc(BODY_MAX + 1);
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
	r = xmalloc(sizeof(*r));
	memset(r, 0, sizeof(*r));
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
		return check_headers(sv, conn, r);
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
	size_t b;

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
		keyset_del(&sv->keys, r->idem_key);
	if (*r->order_id != '\0')
		ctx.order_id = r->order_id;
	if (*r->traceparent != '\0' && trace_id_of(r->traceparent, trace) == 0)
		ctx.trace_id = trace;
	if (r->status != 0) {
		atomic_fetch_add(&sv->m.req[r->route][status_index(r->status)],
		    1);
		for (b = 0; b < NBUCKET && (uint64_t)us > lat_bounds_us[b]; b++)
			;
		atomic_fetch_add(&sv->m.lat[b], 1);
		atomic_fetch_add(&sv->m.lat_sum_us, (uint64_t)us);
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
 * payment-processed: the status of stored orders.
 */

struct payment_upd {
	char	order_id[ORDER_ID_MAX + 1];
	char	payment_id[ORDER_ID_MAX + 1];
	char	reason[EVENT_REASON_MAX + 1];
	char	time[EVENT_TIME_MAX + 1];
	enum event_pay_status status;
};

struct payments {
	struct payment_upd	 u[CONSUME_BATCH];
	size_t			 n;
	size_t			 applied;
};

static void
json_set_str(cJSON *o, const char *name, const char *v)
{
	cJSON_DeleteItemFromObjectCaseSensitive(o, name);
	cJSON_AddStringToObject(o, name, v);
}

/* Sets the outcome (again: a replayed event changes nothing new). */
static int
payment_apply(struct store *s, struct store_txn *t,
    const struct payment_upd *u, size_t *applied)
{
	cJSON *o;
	char *json;
	int ret;

	if ((ret = store_order_get(s, t, u->order_id, &json)) ==
	    STORE_NOTFOUND)
		return 0;	/* not taken here (order-submit's) */
	if (ret != 0)
		return ret;
	o = cJSON_Parse(json);
	free(json);
	if (o == NULL)
		return 0;
	json_set_str(o, "status", event_pay_status_name(u->status));
	json_set_str(o, "payment_id", u->payment_id);
	if (u->status == EVENT_PAY_DECLINED)
		json_set_str(o, "reason", u->reason);
	else
		cJSON_DeleteItemFromObjectCaseSensitive(o, "reason");
	json_set_str(o, "updated_at", u->time);
	json = json_print(o);
	ret = store_order_put(s, t, u->order_id, json);
	free(json);
	if (ret == 0)
		(*applied)++;
	return ret;
}

static int
payments_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct payments *p = arg;
	size_t i;
	int ret;

	p->applied = 0;
	for (i = 0; i < p->n; i++)
		if ((ret = payment_apply(s, t, &p->u[i], &p->applied)) != 0)
			return ret;
	return 0;
}

/* Takes a message into the batch; anything but a payment is passed over. */
static void
payment_add(struct payments *p, const rd_kafka_message_t *m)
{
	struct event ev;
	struct event_err err;
	struct payment_upd *u;

	if (event_parse(m->payload, m->len, &ev, &err) == -1) {
		log_warn("%s [%d] offset %" PRId64 ": not an event: %s",
		    rd_kafka_topic_name(m->rkt), (int)m->partition, m->offset,
		    err.text);
		event_free(&ev);
		return;
	}
	if (ev.kind == EVENT_PAYMENT_PROCESSED_V1) {
		u = &p->u[p->n++];
		snprintf(u->order_id, sizeof(u->order_id), "%s",
		    ev.payment.order_id);
		snprintf(u->payment_id, sizeof(u->payment_id), "%s",
		    ev.payment.payment_id);
		snprintf(u->reason, sizeof(u->reason), "%s",
		    ev.payment.reason);
		snprintf(u->time, sizeof(u->time), "%s", ev.time);
		u->status = ev.payment.status;
	}
	event_free(&ev);
}

/* Applies one batch of payment events; 0, or -1 on a fatal Kafka error. */
static int
consume_once(struct server *sv)
{
	static struct payments p;
	rd_kafka_message_t *msgs[CONSUME_BATCH];
	char reason[512];
	size_t n = 0, i;
	int ret = 0;

	p.n = 0;
	while (n < CONSUME_BATCH && (msgs[n] =
	    kafka_consumer_poll(sv->cons, n == 0 ? 100 : 0)) != NULL) {
		kafka_consumer_track(sv->cons, msgs[n]);
		payment_add(&p, msgs[n]);
		n++;
	}
	if (n == 0)
		return kafka_fatal(kafka_consumer_rk(sv->cons), reason,
		    sizeof(reason)) ? (log_error("kafka: %s", reason), -1) : 0;
	while (p.n > 0 && (ret = store_run(sv->st, payments_fn, &p)) != 0) {
		log_error("store: payments: %s", store_strerror(ret));
		if (!run || ret == STORE_RUNRECOVERY)
			break;
		util_sleep_ms(500);
	}
	atomic_fetch_add(&sv->m.payments, p.applied);
	for (i = 0; i < n; i++) {
		if (p.n == 0 || ret == 0)
			kafka_consumer_done(sv->cons,
			    rd_kafka_topic_name(msgs[i]->rkt),
			    msgs[i]->partition, msgs[i]->offset);
		rd_kafka_message_destroy(msgs[i]);
	}
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
		while (ret == 0 && n == 500 && run);
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

	while ((ch = getopt_long(argc, argv, OPT_COMMON_SHORT, longopts,
	    NULL)) != -1) {
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
			if (opt_common(&sv->o, ch, optarg) == 0) {
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
}

/* SIGINT stays ignored if ignored already (a background job). */
static void
signals_init(void)
{
	struct sigaction sa, old;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	if (sigaction(SIGINT, NULL, &old) == 0 && old.sa_handler != SIG_IGN)
		sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Threads started after this never take the signals: main handles them. */
static void
signals_block(int block)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

/*
 * One order-serve per state directory: two would both publish the outbox
 * and each keep only its own view of it.  The lock is held until exit,
 * however the process ends, so a restart after SIGKILL finds it free.
 */
static void
lock_state(const char *dir)
{
	char path[PATH_MAX];

	if (util_mkdir_p(dir, 0700) == -1)
		log_fatal(OF_EXIT_FAIL, "%s: %s", dir, strerror(errno));
	if ((size_t)snprintf(path, sizeof(path), "%s/lock", dir) >=
	    sizeof(path))
		log_fatal(OF_EXIT_FAIL, "%s: path too long", dir);
	if (util_lock(path) == -1) {
		if (errno == EWOULDBLOCK)
			log_fatal(OF_EXIT_BUSY, "%s: another order-serve uses "
			    "this state directory", dir);
		log_fatal(OF_EXIT_FAIL, "%s: %s", path, strerror(errno));
	}
}

static void
server_open(struct server *sv)
{
	const char *topics[2];
	char err[512];
	int ret;

	sv->topic = opt_topic(&sv->o, "order-created");
	sv->pay_topic = opt_topic(&sv->o, "payment-processed");
	lock_state(opt_state_dir(&sv->o));
	if ((ret = store_open(&sv->st, opt_state_dir(&sv->o), 0)) != 0)
		log_fatal(OF_EXIT_FAIL, "%s: %s", opt_state_dir(&sv->o),
		    store_strerror(ret));
	if ((sv->prod = kafka_producer_new(&sv->o, err, sizeof(err))) == NULL)
		log_fatal(OF_EXIT_USAGE, "%s", err);
	topics[0] = sv->pay_topic;
	topics[1] = NULL;
	if ((sv->cons = kafka_consumer_new(&sv->o, topics, err,
	    sizeof(err))) == NULL)
		log_fatal(OF_EXIT_USAGE, "%s", err);
	pthread_mutex_init(&sv->cm.mu, NULL);
	pthread_cond_init(&sv->cm.cv, NULL);
	pthread_cond_init(&sv->cm.relay_cv, NULL);
	pthread_mutex_init(&sv->keys.mu, NULL);
	sv->cm.jobs_tail = &sv->cm.jobs;
	sv->cm.hand_tail = &sv->cm.hand;
	sv->cm.scan_dirty = 1;	/* what a previous run left goes first */
	sv->cm.relay_room = (size_t)sv->max_in_flight;
	signals_block(1);
	if (pthread_create(&sv->committer_thr, NULL, committer_main, sv) != 0 ||
	    pthread_create(&sv->relay_thr, NULL, relay_main, sv) != 0)
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
	if (kafka_consumer_close(sv->cons) == -1)
		log_warn("kafka: the last offsets of %s were not committed",
		    sv->pay_topic);
	sv->cons = NULL;
	atomic_store(&sv->relay_stop, 1);
	while (!atomic_load(&sv->relay_empty) && util_mono_ms() < deadline &&
	    !atomic_load(&sv->kafka_failed))
		util_sleep_ms(20);
	atomic_store(&sv->relay_stop, 2);
	pthread_join(sv->relay_thr, NULL);
	pthread_mutex_lock(&sv->cm.mu);
	sv->cm.stop = 1;
	pthread_cond_signal(&sv->cm.cv);
	pthread_mutex_unlock(&sv->cm.mu);
	pthread_join(sv->committer_thr, NULL);
	if ((ret = store_outbox_stats(sv->st, NULL, &depth, &oldest)) != 0) {
		log_error("store: outbox: %s", store_strerror(ret));
		code = OF_EXIT_FAIL;
	} else if (depth > 0) {
		log_error("%" PRIu64 " order(s) not acknowledged by the broker "
		    "stay in the outbox; they are published at the next start",
		    depth);
		code = OF_EXIT_KAFKA;
	}
	if (atomic_load(&sv->kafka_failed))
		code = OF_EXIT_KAFKA;
	if (atomic_load(&sv->cm.failed) && code == OF_EXIT_OK)
		code = OF_EXIT_FAIL;
	if ((ret = store_close(sv->st)) != 0) {
		log_error("store: close: %s", store_strerror(ret));
		code = OF_EXIT_FAIL;
	}
	free(sv->cm.acked);
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
	while (run) {
		if (consume_once(sv) == -1) {
			atomic_store(&sv->kafka_failed, 1);
			break;
		}
		if (atomic_load(&sv->cm.failed)) {
			log_error("store: a process died inside Berkeley DB; "
			    "restart to run recovery");
			break;
		}
		housekeeping(sv, &expire_at, &ckpt_at);
	}
	code = server_close(sv);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		log_error("stdout: %s", strerror(errno));
		if (code == OF_EXIT_OK)
			code = OF_EXIT_FAIL;
	}
	return code;
}
