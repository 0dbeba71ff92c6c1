/*
 * order-submit - reads orders as JSON lines, checks each with the common
 * validator (event.h) and produces one order.created.v2 event per valid
 * order to the order-created topic, printing one receipt per order; with
 * -o - it writes the events to standard output instead (pipe mode).
 *
 * The fast path is one pass over the input with no flush per message:
 * events are queued on the idempotent producer (kafka.h) and delivery
 * reports are served between lines; memory stays bounded because the
 * producer's queue is bounded and kafka_produce() waits when it is full.
 * Receipts are printed from the delivery callbacks, so they come in the
 * order the broker acknowledges: input order within a partition, possibly
 * interleaved across partitions.  The ids a receipt needs live in slots
 * taken from a free list, so a long run allocates no receipt memory once
 * the list has grown to the number of events in flight.
 *
 * Guarantee: every valid order gets exactly one receipt, either with the
 * partition and offset the broker acknowledged or with an error.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "event.h"
#include "exitcode.h"
#include "flow.h"
#include "jsonl.h"
#include "kafka.h"
#include "log.h"
#include "opt.h"
#include "util.h"

#define SOURCE		"/orderflow/order-submit"
#define DEF_TIMEOUT_MS	30000
#define REACH_MS	5000	/* the reachability check, at most */
#define SLICE_MS	100	/* longest wait between two signal checks */
#define PURGE_MS	5000	/* serving the callbacks of purged events */
#define SLOT_CHUNK	1024
#define POLL_EVERY	16	/* lines between two kafka_poll(); a power of 2 */

enum {
	OPT_TIMEOUT = OPT_CMD_FIRST
};

/* What one produced event's receipt needs; on the free list when idle. */
struct slot {
	struct slot	*next;
	struct submit	*s;
	char		 order_id[ORDER_ID_MAX + 1];
	char		 event_id[EVENT_UUID_LEN + 1];
};

struct chunk {
	struct chunk	*next;
	struct slot	 slots[SLOT_CHUNK];
};

struct submit {
	struct opt_kafka	 o;
	struct opt_codec	 oc;
	struct codec		*codec;		/* the events' format */
	struct kafka_producer	*p;		/* NULL in pipe mode */
	const char		*topic;
	int64_t			 timeout_ms;
	int			 pipe;		/* -o - */
	const char		*down;		/* why nothing more is sent */
	char			 downbuf[512];
	struct slot		*free;
	struct chunk		*chunks;
	cJSON			*receipt;	/* reused for every receipt */
	cJSON			*r_order, *r_event, *r_part, *r_off;
	char			 r_partbuf[UTIL_I64_LEN + 1];
	char			 r_offbuf[UTIL_I64_LEN + 1];
	uint64_t		 inflight;
	uint64_t		 valid, rejected, delivered, failed;
	int			 io_error;	/* an input that could not be read */
	const char		*purged;	/* why waiting was given up */
};

static char outbuf[65536];		/* stdout's buffer */
/*
 * No SA_RESTART: a signal interrupts a read that waits for input, so that
 * SIGINT stops a run reading a terminal or an idle pipe at once.  A second
 * signal gives up waiting for acknowledgements.
 */
static const int stop_signals[] = { SIGINT, SIGTERM, 0 };

static void
usage(void)
{
	fprintf(stderr,
	    "usage: %s [-hqVv] [-b brokers] [-F file] [-m timeout] [-o -] "
	    "[-r url]\n"
	    "           [-X name=value] [--format format] "
	    "[--log-format format]\n"
	    "           [--topic-prefix prefix] [file ...]\n", log_progname());
}

/*
 * Receipts.
 */

/*
 * A member whose value is the text at *text, referenced and not copied:
 * a string (raw 0) or a JSON literal the caller writes (raw 1).  The
 * caller keeps the text alive and may repoint or rewrite it between two
 * prints; cJSON_Delete() leaves it alone.
 */
static cJSON *
ref_member(cJSON *obj, const char *name, const char *text, int raw)
{
	cJSON *item;

	if ((item = raw ? cJSON_CreateRaw("") : cJSON_CreateString("")) ==
	    NULL)
		return NULL;
	cJSON_free(item->valuestring);
	item->valuestring = (char *)(uintptr_t)text;
	item->type |= cJSON_IsReference;
	if (!cJSON_AddItemToObject(obj, name, item)) {
		cJSON_Delete(item);
		return NULL;
	}
	return item;
}

static void
receipt_init(struct submit *s)
{
	cJSON *r;

	strcpy(s->r_partbuf, "0");
	strcpy(s->r_offbuf, "0");
	if ((r = cJSON_CreateObject()) == NULL ||
	    (s->r_order = ref_member(r, "order_id", "", 0)) == NULL ||
	    (s->r_event = ref_member(r, "event_id", "", 0)) == NULL ||
	    cJSON_AddStringToObject(r, "topic", s->topic) == NULL ||
	    (s->r_part = ref_member(r, "partition", s->r_partbuf, 1)) ==
	    NULL ||
	    (s->r_off = ref_member(r, "offset", s->r_offbuf, 1)) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	s->receipt = r;
}

static void
put_line(const char *buf, size_t len)
{
	fwrite(buf, 1, len, stdout);
	putchar('\n');
}

/*
 * A delivered event: the template's members are pointed at the ids and at
 * the numbers written here (no allocation, no double) and printed into a
 * buffer of fixed size: ids are bounded, so it always fits.
 */
static void
receipt_ok(struct submit *s, const char *order_id, const char *event_id,
    int32_t partition, int64_t offset)
{
	char buf[1024];

	s->r_order->valuestring = (char *)(uintptr_t)order_id;
	s->r_event->valuestring = (char *)(uintptr_t)event_id;
	util_i64toa(partition, s->r_partbuf);
	util_i64toa(offset, s->r_offbuf);
	if (!cJSON_PrintPreallocated(s->receipt, buf, sizeof(buf), 0))
		log_fatal(OF_EXIT_FAIL, "receipt of order %s too long",
		    order_id);
	put_line(buf, strlen(buf));
}

/* An event not acknowledged, or never sent. */
static void
receipt_error(const char *order_id, const char *event_id, const char *why)
{
	cJSON *r;
	char *line;

	if ((r = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(r, "order_id", order_id) == NULL ||
	    cJSON_AddStringToObject(r, "event_id", event_id) == NULL ||
	    cJSON_AddStringToObject(r, "error", why) == NULL ||
	    (line = cJSON_PrintUnformatted(r)) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	put_line(line, strlen(line));
	cJSON_free(line);
	cJSON_Delete(r);
}

/*
 * Slots.
 */

static struct slot *
slot_get(struct submit *s)
{
	struct chunk *c;
	struct slot *sl;
	size_t i;

	if (s->free == NULL) {
		c = util_xcalloc(1, sizeof(*c));
		c->next = s->chunks;
		s->chunks = c;
		for (i = 0; i < SLOT_CHUNK; i++) {
			c->slots[i].next = s->free;
			s->free = &c->slots[i];
		}
	}
	sl = s->free;
	s->free = sl->next;
	sl->s = s;
	return sl;
}

static void
slot_put(struct submit *s, struct slot *sl)
{
	sl->next = s->free;
	s->free = sl;
}

static void
slots_free(struct submit *s)
{
	struct chunk *c, *next;

	for (c = s->chunks; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	s->chunks = NULL;
	s->free = NULL;
}

/*
 * Producing.
 */

/* From now on every valid order gets an error receipt saying why. */
static void
set_down(struct submit *s, const char *why)
{
	if (s->down != NULL)
		return;
	snprintf(s->downbuf, sizeof(s->downbuf), "not sent: %s", why);
	s->down = s->downbuf;
}

/* The delivery report of one event: its receipt. */
static void
on_delivery(void *opaque, rd_kafka_resp_err_t err, int32_t partition,
    int64_t offset)
{
	struct slot *sl = opaque;
	struct submit *s = sl->s;
	struct log_ctx ctx = { sl->event_id, sl->order_id, NULL };
	char why[256];

	s->inflight--;
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		s->delivered++;
		receipt_ok(s, sl->order_id, sl->event_id, partition, offset);
		log_msg(LOG_LEVEL_DEBUG, &ctx, "delivered to %s [%d] at %lld",
		    s->topic, (int)partition, (long long)offset);
	} else {
		s->failed++;
		if (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
		    err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
			snprintf(why, sizeof(why), "not acknowledged %s (%s)",
			    s->purged != NULL ? s->purged : "",
			    rd_kafka_err2name(err));
		else
			snprintf(why, sizeof(why), "not delivered: %s",
			    rd_kafka_err2str(err));
		receipt_error(sl->order_id, sl->event_id, why);
		log_msg(LOG_LEVEL_DEBUG, &ctx, "%s", why);
	}
	slot_put(s, sl);
}

/* Queues one event; a failure costs an error receipt at once. */
static void
produce(struct submit *s, const struct event *ev, const char *value,
    size_t vlen)
{
	rd_kafka_headers_t *hdrs;
	rd_kafka_resp_err_t err;
	struct slot *sl;
	char why[320], fatal[256];
	void *rec;

	if (s->down != NULL) {
		s->failed++;
		receipt_error(ev->subject, ev->id, s->down);
		return;
	}
	/* Avro: encoded from ev (value is NULL); JSON: value as it is. */
	rec = NULL;
	if (value == NULL) {
		if (codec_encode_event(s->codec, s->topic, ev, NULL, &rec,
		    &vlen, &hdrs, why, sizeof(why)) == -1)
			log_fatal(OF_EXIT_FAIL, "order %s: cannot encode its "
			    "event: %s", ev->subject, why);
		value = rec;
	} else if ((hdrs = flow_headers_new(ev->traceparent)) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	sl = slot_get(s);
	memcpy(sl->order_id, ev->subject, sizeof(sl->order_id));
	memcpy(sl->event_id, ev->id, sizeof(sl->event_id));
	err = kafka_produce(s->p, s->topic, ev->subject, strlen(ev->subject),
	    value, vlen, hdrs, on_delivery, sl);
	free(rec);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		s->inflight++;
		return;
	}
	rd_kafka_headers_destroy(hdrs);
	slot_put(s, sl);
	s->failed++;
	if (kafka_fatal(kafka_producer_rk(s->p), fatal, sizeof(fatal))) {
		snprintf(why, sizeof(why), "fatal Kafka error: %s", fatal);
		set_down(s, why);
		log_error("kafka: fatal error: %s", fatal);
	} else if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
		/* Nothing was acknowledged for KAFKA_QUEUE_WAIT_MS. */
		set_down(s, "the broker stopped acknowledging");
		log_error("%s: the broker stopped acknowledging: the rest "
		    "is not sent", s->o.brokers);
	}
	snprintf(why, sizeof(why), "not sent: %s", rd_kafka_err2str(err));
	receipt_error(ev->subject, ev->id, why);
}

/*
 * Input.
 */

/* One valid order: its event, produced or written out. */
static void
submit_order(struct submit *s, const struct order *o)
{
	struct event ev;
	char *value = NULL;
	size_t vlen = 0;

	if (event_order_created(&ev, o, SOURCE, NULL) == -1 ||
	    (codec_format(s->codec) == CODEC_JSON &&
	    (value = event_serialize(&ev, &vlen)) == NULL))
		log_fatal(OF_EXIT_FAIL, "order %s: cannot build its event: %s",
		    o->order_id, strerror(errno));
	s->valid++;
	if (s->pipe)
		put_line(value, vlen);
	else
		produce(s, &ev, value, vlen);
	free(value);
	event_free(&ev);
}

static void
submit_file(struct submit *s, const char *path)
{
	struct jsonl *r;
	struct order o;
	struct event_err err;
	const char *line;
	size_t len;
	int st;

	if ((r = jsonl_open_file(path, 0)) == NULL) {
		log_error("%s: %s", path, strerror(errno));
		s->io_error = 1;
		return;
	}
	while (!util_signal_caught() &&
	    (st = jsonl_next(r, &line, &len)) != JSONL_EOF) {
		if (st == JSONL_ERROR) {
			if (!util_signal_caught()) {
				log_error("%s: %s", jsonl_name(r),
				    jsonl_error(r));
				s->io_error = 1;
			}
			break;
		}
		if (st == JSONL_REJECT) {
			s->rejected++;
			log_error("%s:%ld: %s", jsonl_name(r), jsonl_lineno(r),
			    jsonl_error(r));
		} else {
			if (order_parse(line, len, &o, &err) == -1) {
				s->rejected++;
				log_error("%s:%ld: %s", jsonl_name(r),
				    jsonl_lineno(r), err.text);
			} else
				submit_order(s, &o);
			order_free(&o);
		}
		/* Delivery reports come in batches: no need to ask per line. */
		if (s->p != NULL && s->down == NULL &&
		    (jsonl_lineno(r) & (POLL_EVERY - 1)) == 0)
			kafka_poll(s->p, 0);
	}
	jsonl_close(r);
}

/*
 * Kafka.
 */

/* Unreachable: one line, then every valid order gets an error receipt. */
static void
producer_open(struct submit *s)
{
	rd_kafka_resp_err_t err;
	char msg[512];
	int64_t ms;

	if ((s->p = kafka_producer_new(&s->o, msg, sizeof(msg))) == NULL) {
		log_error("%s", msg);
		exit(OF_EXIT_USAGE);
	}
	ms = s->timeout_ms < REACH_MS ? s->timeout_ms : REACH_MS;
	err = kafka_wait_reachable(kafka_producer_rk(s->p), (int)ms);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	if (err == RD_KAFKA_RESP_ERR__FATAL &&
	    kafka_fatal(kafka_producer_rk(s->p), msg, sizeof(msg)))
		log_error("%s: fatal Kafka error: %s", s->o.brokers, msg);
	else
		log_error("%s: no broker reachable within %lld ms (%s): "
		    "no event is sent", s->o.brokers, (long long)ms,
		    rd_kafka_err2str(err));
	set_down(s, "broker unreachable");
}

static void
wait_deliveries(struct submit *s)
{
	int64_t deadline, left;

	deadline = util_mono_ms() + s->timeout_ms;
	while (s->inflight > 0 && util_signal_count() < 2 &&
	    (left = deadline - util_mono_ms()) > 0)
		kafka_flush(s->p, left < SLICE_MS ? (int)left : SLICE_MS);
	if (s->inflight == 0)
		return;
	s->purged = util_signal_count() >= 2 ? "when interrupted again" :
	    "by the deadline";
	log_error("%llu event%s not acknowledged %s", (unsigned long long)
	    s->inflight, s->inflight == 1 ? "" : "s", s->purged);
	rd_kafka_purge(kafka_producer_rk(s->p),
	    RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	deadline = util_mono_ms() + PURGE_MS;
	while (s->inflight > 0 && util_mono_ms() < deadline)
		kafka_poll(s->p, SLICE_MS);
}

static void
kafka_close(struct submit *s)
{
	char msg[512];

	wait_deliveries(s);
	if (s->down == NULL && s->purged == NULL && s->failed > 0)
		log_error("%llu of %llu events not delivered: the receipts "
		    "say why", (unsigned long long)s->failed,
		    (unsigned long long)s->valid);
	if (kafka_fatal(kafka_producer_rk(s->p), msg, sizeof(msg)) &&
	    s->down == NULL)
		log_error("kafka: fatal error: %s", msg);
	/* The outage was reported once already: not again on the way out. */
	if (s->down != NULL && log_level() > LOG_LEVEL_ERROR &&
	    log_level() < LOG_LEVEL_DEBUG)
		log_set_level(LOG_LEVEL_ERROR);
	/* Calls back for anything left, so every order has its receipt. */
	kafka_producer_destroy(s->p);
	s->p = NULL;
}

/*
 * Main.
 */

static void
parse_options(struct submit *s, int argc, char **argv)
{
	static const struct option longopts[] = {
		OPT_COMMON_LONG,
		OPT_CODEC_LONG,
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ NULL, 0, NULL, 0 }
	};
	const char *errstr;
	int ch;

	while ((ch = getopt_long(argc, argv, OPT_COMMON_SHORT OPT_CODEC_SHORT
	    "m:o:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'm':
		case OPT_TIMEOUT:
			if (util_duration(optarg, &s->timeout_ms, &errstr) ==
			    -1 || s->timeout_ms <= 0 ||
			    s->timeout_ms > INT32_MAX) {
				log_error("-m %s: %s", optarg, errstr != NULL ?
				    errstr : "out of range");
				usage();
				exit(OF_EXIT_USAGE);
			}
			break;
		case 'o':
			if (strcmp(optarg, "-") != 0) {
				log_error("-o %s: only - (standard output) "
				    "is supported", optarg);
				usage();
				exit(OF_EXIT_USAGE);
			}
			s->pipe = 1;
			break;
		default:
			if (!opt_codec(&s->oc, ch, optarg) &&
			    !opt_common(&s->o, ch, optarg)) {
				usage();
				exit(OF_EXIT_USAGE);
			}
			break;
		}
	}
	/* Kafka mode checks them as it makes its producer. */
	if (s->pipe)
		kafka_conf_check(&s->o);
	s->codec = opt_codec_new(&s->oc, s->pipe);
}

/* 1 beats 4 beats 3: the worst outcome decides. */
static int
status(const struct submit *s)
{
	if (s->io_error)
		return OF_EXIT_FAIL;
	if (s->failed > 0 || s->down != NULL)
		return OF_EXIT_KAFKA;
	if (s->rejected > 0)
		return OF_EXIT_REJECTED;
	return OF_EXIT_OK;
}

int
main(int argc, char **argv)
{
	struct submit s;
	int i, rc;

	log_init(argv[0]);
	memset(&s, 0, sizeof(s));
	opt_init(&s.o, usage);
	opt_codec_init(&s.oc);
	s.timeout_ms = DEF_TIMEOUT_MS;
	parse_options(&s, argc, argv);
	argc -= optind;
	argv += optind;
	util_signals_catch(stop_signals, 0, NULL);
	/*
	 * A receipt or event a line: one write(2) per 64 KiB rather than per
	 * disk block.  A terminal keeps its line buffering.
	 */
	if (!isatty(STDOUT_FILENO))
		(void)setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));

	s.topic = opt_topic(&s.o, FLOW_TOPIC_ORDERS);
	if (!s.pipe) {
		/* Before any input: on failure nothing was accepted. */
		opt_codec_prepare(s.codec, s.topic, EVENT_ORDER_CREATED_V2,
		    "nothing is sent");
		receipt_init(&s);
		producer_open(&s);
	}
	if (argc == 0)
		submit_file(&s, "-");
	for (i = 0; i < argc && !util_signal_caught(); i++)
		submit_file(&s, argv[i]);
	if (util_signal_caught())
		log_info("interrupted: reading stopped");
	if (s.p != NULL)
		kafka_close(&s);
	log_msg(LOG_LEVEL_DEBUG, NULL, "%llu valid, %llu rejected, "
	    "%llu delivered, %llu not", (unsigned long long)s.valid,
	    (unsigned long long)s.rejected, (unsigned long long)s.delivered,
	    (unsigned long long)s.failed);

	rc = status(&s);
	if (util_stdout_flush() == -1)
		rc = OF_EXIT_FAIL;
	cJSON_Delete(s.receipt);
	slots_free(&s);
	codec_free(s.codec);
	opt_free(&s.o);
	/* Interrupted with nothing worse to say: die by the signal. */
	if (util_signal_caught() && rc != OF_EXIT_FAIL &&
	    rc != OF_EXIT_KAFKA) {
		signal(util_signal_caught(), SIG_DFL);
		raise(util_signal_caught());
	}
	return rc;
}
