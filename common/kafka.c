/*
 * kafka.c - the only place orderflow makes librdkafka clients: the producer
 * and group consumer every command uses, and the self-assigned consumer
 * and Admin API handles of dlq-replay and topic-admin.  Here are their
 * configuration defaults, delivery callbacks, the one error and log
 * routing with its level mapping and redaction rule, rebalancing, and
 * offsets stored only when the tracker (offtrack.h) says every record
 * below them is done.
 *
 * Every handle keeps a struct kafka_base as librdkafka's opaque, so the
 * error and log callbacks, and kafka_unreachable(), find their state from
 * the rd_kafka_t alone.
 *
 * It stays one file, longer than most: the configurations, the callbacks
 * and struct kafka_base that they all read must agree with each other,
 * and a split would have to share that struct and those callbacks across
 * files.  The header helpers of kafka.h, which need none of it, are in
 * kafkahdr.c.
 */
#include <sanitizer/asan_interface.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exitcode.h"
#include "kafka.h"
#include "log.h"
#include "offtrack.h"
#include "util.h"

#define KAFKA_MAGIC		0x6b61666bU
#define KAFKA_SEEK_TIMEOUT_MS	10000
#define KICK_PEAK		32	/* records queued before a kick counts */
#define KICK_TIMEOUT_MS		1000

struct kafka_base {
	uint32_t	magic;
	int		quiet;		/* librdkafka's lines: debug only */
	int		alone;		/* allocated alone: kafka_destroy() */
	atomic_int	unreachable;	/* all down, none up since */
	atomic_int	down_logged;	/* the outage was logged */
	atomic_int	auth_err;	/* last __AUTHENTICATION or __SSL */
};

/*
 * A record kafka_produce() holds back (kafka_producer_hold()).  Held
 * records are copied into chunks of HOLD_CHUNK bytes that are used again
 * from their start once every record held is released: one malloc(3) and
 * one free(3) less for each record.  A record larger than a quarter of a
 * chunk, or held while a release is under way, is allocated alone.  Under
 * AddressSanitizer what a chunk has not handed out since it was last
 * emptied is poisoned: a held record read after its release is caught
 * as a use after free() would be.
 */
#define HOLD_CHUNK	65536

struct kafka_chunk {
	struct kafka_chunk	*next;
	size_t			 used;
	max_align_t		 data[];	/* HOLD_CHUNK bytes */
};

struct kafka_held {
	struct kafka_held	*next;
	int			 alone;		/* malloc(3)'d by itself */
	struct kafka_dr		*dr;		/* or NULL */
	rd_kafka_headers_t	*headers;	/* or NULL */
	size_t			 keylen;	/* SIZE_MAX: no key */
	size_t			 vlen;
	char			*topic;		/* into data */
	char			 data[];	/* topic, NUL, key, value */
};

struct kafka_producer {
	struct kafka_base	 base;	/* first: librdkafka's opaque */
	rd_kafka_t		*rk;
	/* Records held back: none unless kafka_producer_hold(). */
	int			 hold_ms;
	size_t			 hold_max;
	struct kafka_held	*held;
	struct kafka_held	**held_tail;
	size_t			 nheld;
	int64_t			 held_since;	/* monotonic ms of the first */
	struct kafka_chunk	*chunks;	/* the first, or NULL */
	struct kafka_chunk	*chunk;		/* the one in use */
	int			 releasing;	/* the chunks are being read */
};

struct kafka_consumer {
	struct kafka_base	 base;	/* first: librdkafka's opaque */
	rd_kafka_t		*rk;
	struct offtrack		*track;
	void			(*revoke_fn)(void *);
	void			*revoke_opaque;
	rd_kafka_resp_err_t	 last_err;	/* last consume error */
	int			 assigned;	/* a first assignment came */
	int			 held;		/* kafka_consumer_hold() */
	int			 coop;		/* a cooperative assignor */
	atomic_int		 closing;	/* close_within() under way */
	/* The fetch kicker (kick_start()); queue is NULL without it. */
	rd_kafka_queue_t	*queue;
	int			 peak;
	pthread_t		 kicker;
	pthread_mutex_t		 kick_mu;
	pthread_cond_t		 kick_cv;
	int			 kick_want;
	int			 kick_quit;
};

/*
 * name, value pairs applied before the user's properties.  The queue is
 * small (librdkafka's default is 1 GiB): 2 MiB holds thousands of events,
 * far more than a few milliseconds of acks=all round trips need, and
 * keeps a producing command under 32 MiB resident.  16 MiB cost
 * order-submit 35 MiB more at the same throughput (make bench).  The
 * count is bounded too, at 5,000 records, about what 2 MiB holds of
 * JSON events: librdkafka counts only keys and values against the
 * kilobytes, not a record's headers and bookkeeping, and Avro records,
 * a fifth the size with eight headers, filled the queue with tens of
 * thousands (order-submit in Avro peaked at 31 to 55 MiB, 23 with the
 * bound, at the same rate; JSON 19 to 20 either way).  A
 * linger of half a millisecond: with none, a worker that produces its
 * outputs one by one wakes librdkafka's broker thread for each, which
 * then sends almost every message in a request of its own; that thread
 * cost pay-process more CPU than its whole payment store, and the
 * relay went from about 50,000 to about 70,000 events a second with
 * the half millisecond.  Longer lingers add their wait to each hop of
 * the flow; the workers, whose outputs come in bursts as their store
 * commits, take 2 ms (worker.c) (scripts/bench.d/FINDINGS.md, relay and
 * end to end).
 */
static const char *const producer_defaults[] = {
	"log.connection.close", "false",
	"enable.idempotence", "true",
	"acks", "all",
	"linger.ms", "0.5",
	"queue.buffering.max.kbytes", "2048",
	"queue.buffering.max.messages", "5000",
	"partitioner", "murmur2_random",
	NULL
};

/*
 * session.timeout.ms is short: a member gone for good (killed, its host
 * down) loses its partitions within 10 s instead of librdkafka's 45 s.
 * The broker's group.min.session.timeout.ms (6 s by default) bounds it
 * from below; heartbeats every 3 s (librdkafka's default) leave room for
 * two lost ones.
 *
 * The assignor is the eager range: the workers are static members, so a
 * restart brings no rebalance, and only a member joining or gone for good
 * moves all partitions at once.  librdkafka's cooperative-sticky, before
 * 2.3 and 2.4, aborts when closed before its first assignment (issue
 * 4312), can hang for ever in closing (issue 4527), and under SIGKILLs
 * and restarts once left a topic's six partitions to no member of a
 * stable group (orderflow's fault test: found with librdkafka 2.0.2).
 * Range also gives partition N of a topic and of its retry topic to the
 * same member, so a retry usually comes back to the host whose state
 * has its order.  -X partition.assignment.strategy=cooperative-sticky is
 * honoured, with the workarounds below.
 */
static const char *const consumer_defaults[] = {
	"log.connection.close", "false",
	"partition.assignment.strategy", "range",
	"auto.offset.reset", "earliest",
	"enable.auto.commit", "true",
	"enable.auto.offset.store", "false",
	"auto.commit.interval.ms", "1000",
	"session.timeout.ms", "10000",
	/*
	 * librdkafka keeps up to 100,000 records a partition fetched ahead
	 * by default, each with some hundred bytes of its own beside its
	 * value: small Avro records made pay-process 5 MiB larger than JSON
	 * ones on the same backlog (34.4 against 27 MiB peak; 29 with 1,000),
	 * for no more speed (52-58k records a second either way).  1,000 a
	 * partition is still several times what --concurrency takes at once.
	 */
	"queued.min.messages", "1000",
	NULL
};

static struct kafka_base *
base_of(const rd_kafka_t *rk)
{
	struct kafka_base *b;

	b = rd_kafka_opaque(rk);
	return b != NULL && b->magic == KAFKA_MAGIC ? b : NULL;
}

static void
base_init(struct kafka_base *b)
{
	b->magic = KAFKA_MAGIC;
	atomic_init(&b->unreachable, 0);
	atomic_init(&b->down_logged, 0);
	atomic_init(&b->auth_err, 0);
}

/* A broker answered: a later outage is reported again. */
static void
base_reachable(struct kafka_base *b)
{
	if (b == NULL)
		return;
	atomic_store(&b->unreachable, 0);
	atomic_store(&b->down_logged, 0);
}

/*
 * For redact(): the characters of a property name, and the text after a
 * value that librdkafka quotes in an error message.
 */
#define NAME_CHARS	"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" \
			"0123456789._-"
#define PROP_QUOTE	"\" for configuration property \""

/* A NUL-terminated string being built in buf; what does not fit is lost. */
struct text {
	char	*buf;
	size_t	 len;
	size_t	 n;
};

static void
put(struct text *t, const char *s, size_t n)
{
	for (; n > 0 && *s != '\0' && t->n + 1 < t->len; n--)
		t->buf[t->n++] = *s++;
	t->buf[t->n] = '\0';
}

/* What log_redact() puts for the value of name (n bytes), or NULL. */
static const char *
secret_mark(const char *name, size_t n)
{
	char tmp[128];

	if (n >= sizeof(tmp))
		n = sizeof(tmp) - 1;
	memcpy(tmp, name, n);
	tmp[n] = '\0';
	return log_redact(tmp, NULL);
}

/*
 * Length of a value starting at v; whole: it runs to the end of the line.
 * A PEM block (a key has blanks and newlines) runs to the end of its
 * "-----END ...-----" line, or of the text.
 */
static size_t
value_len(const char *v, int whole)
{
	const char *q;

	if (whole)
		return strlen(v);
	if (strncmp(v, "-----BEGIN", 10) == 0) {
		if ((q = strstr(v, "-----END")) == NULL ||
		    (q = strstr(q + 8, "-----")) == NULL)
			return strlen(v);
		return q + 5 - v;
	}
	if (*v == '"' && (q = strchr(v + 1, '"')) != NULL)
		return q - v + 1;
	return strcspn(v, " \t,;()");
}

/* The quoted form: 'value "secret" for configuration property "name"'. */
static void
redact_quoted(const char *s, struct text *t)
{
	const char *p, *v, *name, *mark;

	while ((p = strstr(s, PROP_QUOTE)) != NULL) {
		name = p + strlen(PROP_QUOTE);
		v = p;
		while (v > s && v[-1] != '"')
			v--;
		mark = secret_mark(name, strcspn(name, "\""));
		if (v > s && mark != NULL) {
			put(t, s, v - s);
			put(t, mark, SIZE_MAX);
			put(t, p, strlen(PROP_QUOTE));
		} else
			put(t, s, p - s + strlen(PROP_QUOTE));
		s = name;
	}
	put(t, s, SIZE_MAX);
}

/*
 * The one redaction rule for librdkafka's text (log lines, error strings):
 * the value of every property log_redact() calls secret becomes
 * log_redact()'s answer.  librdkafka writes values in three forms:
 * "name = value" (a line of a configuration dump, after its "[thrd:app]: "
 * prefix: the value is the rest of the line), "name=value" (up to the
 * next blank, comma, semicolon or parenthesis, or the closing quote of a
 * quoted value), and 'value "value" for configuration property "name"'.
 * Redacting too much is harmless; a value in any other form is not
 * recognised, so a new form librdkafka adds needs a case here.
 */
static const char *
redact(const char *line, char *buf, size_t len)
{
	struct text t = { buf, len, 0 };
	char quoted[1024];
	struct text q = { quoted, sizeof(quoted), 0 };
	const char *s, *v, *mark;
	size_t k, sp;

	redact_quoted(line, &q);
	s = quoted;
	buf[0] = '\0';
	while (*s != '\0') {
		if ((k = strspn(s, NAME_CHARS)) == 0) {
			put(&t, s++, 1);
			continue;
		}
		sp = strspn(s + k, " ");
		v = s + k + sp;
		if (*v == '=' && (mark = secret_mark(s, k)) != NULL) {
			v++;
			v += strspn(v, " ");
			put(&t, s, v - s);
			put(&t, mark, SIZE_MAX);
			/* Redacted already: the text after it stays. */
			if (strncmp(v, mark, strlen(mark)) == 0)
				s = v + strlen(mark);
			else
				s = v + value_len(v, sp > 0);
		} else {
			put(&t, s, k);
			s += k;
		}
	}
	return buf;
}

/* Redacts the error message err in place. */
static void
redact_err(char *err, size_t errlen)
{
	char tmp[1024];

	snprintf(tmp, sizeof(tmp), "%s", err);
	redact(tmp, err, errlen);
}

/*
 * The one level mapping, syslog(3) levels to ours: LOG_ERR and worse are
 * errors, LOG_WARNING a warning, LOG_NOTICE and LOG_INFO information,
 * LOG_DEBUG debug.  Two facilities say again what is reported better
 * elsewhere, so they are debug lines: FAIL (a broker connection failed,
 * on every reconnect; error_cb says once that all brokers are down) and
 * FATAL (kafka_fatal() gives the reason to the caller, who reports it).
 * A quiet handle (kafka_admin_new()) has every line at debug level.
 */
static int
log_level_of(const struct kafka_base *b, int syslog_level, const char *fac)
{
	if (b != NULL && b->quiet)
		return LOG_LEVEL_DEBUG;
	if (strcmp(fac, "FAIL") == 0 || strcmp(fac, "FATAL") == 0)
		return LOG_LEVEL_DEBUG;
	if (syslog_level <= 3)
		return LOG_LEVEL_ERROR;
	if (syslog_level == 4)
		return LOG_LEVEL_WARN;
	if (syslog_level <= 6)
		return LOG_LEVEL_INFO;
	return LOG_LEVEL_DEBUG;
}

void
kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
    const char *buf)
{
	char line[1024];
	int lv;

	lv = log_level_of(rk != NULL ? base_of(rk) : NULL, level, fac);
	if (lv > log_level())
		return;
	log_msg(lv, NULL, "kafka: %s: %s", fac,
	    redact(buf, line, sizeof(line)));
}

static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct kafka_base *b = opaque;
	char r[1024];
	int lv;

	(void)rk;
	redact(reason, r, sizeof(r));
	if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
	    err == RD_KAFKA_RESP_ERR__SSL)
		atomic_store(&b->auth_err, err);
	lv = b->quiet ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN;
	switch (err) {
	case RD_KAFKA_RESP_ERR__FATAL:
		/* kafka_fatal() has the reason; the caller reports it. */
		log_debug("kafka: fatal error: %s", r);
		break;
	case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
		atomic_store(&b->unreachable, 1);
		if (atomic_exchange(&b->down_logged, 1) == 0)
			log_msg(lv, NULL, "kafka: no broker reachable: %s", r);
		else
			log_debug("kafka: %s", r);
		break;
	case RD_KAFKA_RESP_ERR__TRANSPORT:
	case RD_KAFKA_RESP_ERR__RESOLVE:
		/* One broker; librdkafka reconnects by itself. */
		log_debug("kafka: %s", r);
		break;
	default:
		log_msg(lv, NULL, "kafka: %s: %s", rd_kafka_err2name(err), r);
		break;
	}
}

static int
conf_list(rd_kafka_conf_t *conf, const char *const *d, char *err,
    size_t errlen)
{
	char kerr[512];

	for (; d != NULL && *d != NULL; d += 2)
		if (rd_kafka_conf_set(conf, d[0], d[1], kerr,
		    sizeof(kerr)) != RD_KAFKA_CONF_OK) {
			snprintf(err, errlen, "%s=%s: %s", d[0],
			    log_redact(d[0], d[1]), kerr);
			return -1;
		}
	return 0;
}

/*
 * client.id, then defaults (this module's for the kind of handle), then
 * extra (the command's own), then opt_apply(): -b, -X and -F.  An error
 * message is redacted like a log line.
 */
static rd_kafka_conf_t *
conf_new(const struct opt_kafka *o, struct kafka_base *b,
    const char *const *defaults, const char *const *extra, char *err,
    size_t errlen)
{
	rd_kafka_conf_t *conf;
	const char *const id[] = { "client.id", log_progname(), NULL };

	conf = rd_kafka_conf_new();
	if (conf_list(conf, id, err, errlen) == -1 ||
	    conf_list(conf, defaults, err, errlen) == -1 ||
	    conf_list(conf, extra, err, errlen) == -1 ||
	    opt_apply(o, conf, err, errlen) == -1) {
		redact_err(err, errlen);
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_opaque(conf, b);
	return conf;
}

/* rd_kafka_new(); on failure conf is destroyed and err says why. */
static rd_kafka_t *
handle_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *err,
    size_t errlen)
{
	rd_kafka_t *rk;
	char kerr[512];

	if ((rk = rd_kafka_new(type, conf, kerr, sizeof(kerr))) == NULL) {
		redact(kerr, err, errlen);
		rd_kafka_conf_destroy(conf);
	}
	return rk;
}

int
kafka_fatal(rd_kafka_t *rk, char *buf, size_t len)
{
	rd_kafka_resp_err_t err;
	char reason[512];

	err = rd_kafka_fatal_error(rk, reason, sizeof(reason));
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return 0;
	snprintf(buf, len, "%s (%s)", reason, rd_kafka_err2name(err));
	return 1;
}

int
kafka_unreachable(rd_kafka_t *rk)
{
	struct kafka_base *b;

	b = base_of(rk);
	return b != NULL && atomic_load(&b->unreachable);
}

rd_kafka_resp_err_t
kafka_wait_reachable(rd_kafka_t *rk, int timeout_ms)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
	int64_t deadline, left;
	char reason[256];

	deadline = util_mono_ms() + timeout_ms;
	while ((left = deadline - util_mono_ms()) > 0) {
		if (rd_kafka_fatal_error(rk, reason, sizeof(reason)) != 0)
			return RD_KAFKA_RESP_ERR__FATAL;
		err = rd_kafka_metadata(rk, 0, NULL, &md, (int)left);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			rd_kafka_metadata_destroy(md);
			base_reachable(base_of(rk));
			return 0;
		}
		/* Some errors come at once: do not spin on them. */
		if ((left = deadline - util_mono_ms()) > 0)
			util_sleep_ms(left < 100 ? left : 100);
	}
	return err;
}

int
kafka_coordinator_moving(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_NOT_COORDINATOR ||
	    err == RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS ||
	    err == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE;
}

rd_kafka_resp_err_t
kafka_committed(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *l,
    int timeout_ms)
{
	rd_kafka_resp_err_t err;
	int64_t deadline, left;
	int i;

	deadline = util_mono_ms() + timeout_ms;
	for (;;) {
		left = deadline - util_mono_ms();
		err = rd_kafka_committed(rk, l, left > 0 ? (int)left : 0);
		for (i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && i < l->cnt;
		    i++)
			err = l->elems[i].err;
		if (!kafka_coordinator_moving(err) ||
		    (left = deadline - util_mono_ms()) <= 0)
			return err;
		util_sleep_ms(left < 100 ? left : 100);
	}
}

int
kafka_leader_moving(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
	    err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
	    err == RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH ||
	    err == RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH ||
	    err == RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE ||
	    err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
	    err == RD_KAFKA_RESP_ERR__TRANSPORT;
}

rd_kafka_resp_err_t
kafka_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
    int64_t *low, int64_t *high, int timeout_ms)
{
	rd_kafka_resp_err_t err;
	int64_t deadline, left;

	deadline = util_mono_ms() + timeout_ms;
	for (;;) {
		left = deadline - util_mono_ms();
		err = rd_kafka_query_watermark_offsets(rk, topic, partition,
		    low, high, left > 0 ? (int)left : 0);
		if (!kafka_leader_moving(err) ||
		    (left = deadline - util_mono_ms()) <= 0)
			return err;
		util_sleep_ms(left < 100 ? left : 100);
	}
}

/*
 * Handles with no state of their own beyond the base: a consumer that
 * assigns itself partitions, and Admin API handles.
 */

/* Asynchronous commits that fail are retried by the next one. */
static void
committed_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *l, void *opaque)
{
	(void)rk;
	(void)l;
	(void)opaque;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR &&
	    err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		log_debug("kafka: commit: %s", rd_kafka_err2str(err));
}

static struct kafka_base *
base_alone(int quiet, char *err, size_t errlen)
{
	struct kafka_base *b;

	if ((b = calloc(1, sizeof(*b))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	base_init(b);
	b->alone = 1;
	b->quiet = quiet;
	return b;
}

rd_kafka_t *
kafka_assigned_new(const struct opt_kafka *o, const char *const *defaults,
    char *err, size_t errlen)
{
	struct kafka_base *b;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	const char *const group[] = { "group.id", o->group, NULL };

	if (o->group == NULL) {
		snprintf(err, errlen, "-G: no consumer group");
		return NULL;
	}
	if ((b = base_alone(0, err, errlen)) == NULL)
		return NULL;
	if ((conf = conf_new(o, b, group, defaults, err, errlen)) == NULL) {
		free(b);
		return NULL;
	}
	rd_kafka_conf_set_offset_commit_cb(conf, committed_cb);
	if ((rk = handle_new(RD_KAFKA_CONSUMER, conf, err, errlen)) == NULL) {
		free(b);
		return NULL;
	}
	rd_kafka_poll_set_consumer(rk);
	return rk;
}

rd_kafka_t *
kafka_admin_new(const struct opt_kafka *o, const char *group,
    const char *const *defaults, char *err, size_t errlen)
{
	struct kafka_base *b;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	const char *const id[] = { "group.id", group, NULL };

	if ((b = base_alone(1, err, errlen)) == NULL)
		return NULL;
	if ((conf = conf_new(o, b, NULL, defaults, err, errlen)) == NULL ||
	    (group != NULL && conf_list(conf, id, err, errlen) == -1)) {
		if (conf != NULL)
			rd_kafka_conf_destroy(conf);
		free(b);
		return NULL;
	}
	if ((rk = handle_new(group != NULL ? RD_KAFKA_CONSUMER :
	    RD_KAFKA_PRODUCER, conf, err, errlen)) == NULL) {
		free(b);
		return NULL;
	}
	return rk;
}

void
kafka_destroy(rd_kafka_t *rk)
{
	struct kafka_base *b;

	if (rk == NULL)
		return;
	b = base_of(rk);
	rd_kafka_destroy(rk);
	if (b != NULL && b->alone)
		free(b);
}

rd_kafka_resp_err_t
kafka_auth_error(rd_kafka_t *rk)
{
	struct kafka_base *b;

	b = base_of(rk);
	return b != NULL ? atomic_load(&b->auth_err) : 0;
}

/*
 * Producer.
 */

static void
dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct kafka_producer *p = opaque;
	struct kafka_dr *dr = m->_private;
	int alone;

	(void)rk;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		base_reachable(&p->base);
	else if (dr == NULL)
		log_error("kafka: a message to %s was not delivered: %s",
		    rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
	if (dr != NULL) {
		alone = dr->alone;
		dr->cb(dr->opaque, m->err, m->partition,
		    m->err == RD_KAFKA_RESP_ERR_NO_ERROR ? m->offset : -1);
		if (alone)
			free(dr);
	}
}

struct kafka_producer *
kafka_producer_new(const struct opt_kafka *o, char *err, size_t errlen)
{
	struct kafka_producer *p;
	rd_kafka_conf_t *conf;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	base_init(&p->base);
	p->held_tail = &p->held;
	if ((conf = conf_new(o, &p->base, producer_defaults, NULL, err,
	    errlen)) == NULL) {
		free(p);
		return NULL;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	if ((p->rk = handle_new(RD_KAFKA_PRODUCER, conf, err,
	    errlen)) == NULL) {
		free(p);
		return NULL;
	}
	return p;
}

void
kafka_conf_check(const struct opt_kafka *o)
{
	struct kafka_base b;
	rd_kafka_conf_t *conf;
	char err[512];

	base_init(&b);
	if ((conf = conf_new(o, &b, NULL, NULL, err, sizeof(err))) == NULL)
		log_fatal(OF_EXIT_USAGE, "%s", err);
	rd_kafka_conf_destroy(conf);
}

/*
 * librdkafka takes the message, waiting for room; on an error the caller
 * keeps dr and the headers.
 */
static rd_kafka_resp_err_t
produce_now(struct kafka_producer *p, const char *topic, const void *key,
    size_t keylen, const void *value, size_t vlen,
    rd_kafka_headers_t *headers, struct kafka_dr *dr)
{
	rd_kafka_resp_err_t err;
	int64_t deadline = -1;
	char reason[256];

	for (;;) {
		err = rd_kafka_producev(p->rk,
		    RD_KAFKA_V_TOPIC(topic),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		    RD_KAFKA_V_KEY(key, keylen),
		    RD_KAFKA_V_VALUE((void *)(uintptr_t)value, vlen),
		    RD_KAFKA_V_HEADERS(headers),
		    RD_KAFKA_V_OPAQUE(dr),
		    RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		/* Bounded memory: wait for deliveries to make room. */
		if (deadline == -1)
			deadline = util_mono_ms() + KAFKA_QUEUE_WAIT_MS;
		else if (util_mono_ms() >= deadline ||
		    rd_kafka_fatal_error(p->rk, reason, sizeof(reason)) != 0)
			break;
		rd_kafka_poll(p->rk, 100);
	}
	return err;
}

/* Room for a held record of n bytes (see struct kafka_held). */
static struct kafka_held *
held_alloc(struct kafka_producer *p, size_t n)
{
	struct kafka_chunk *c;
	struct kafka_held *h;
	size_t a = sizeof(max_align_t);

	if (n > SIZE_MAX - a)
		return NULL;
	n = (n + a - 1) / a * a;
	if (p->releasing || n > HOLD_CHUNK / 4) {
		if ((h = malloc(n)) != NULL)
			h->alone = 1;
		return h;
	}
	/* Nothing held: every chunk is free again. */
	if (p->nheld == 0 && (p->chunk = p->chunks) != NULL) {
		for (c = p->chunks; c != NULL; c = c->next)
			ASAN_POISON_MEMORY_REGION(c->data, HOLD_CHUNK);
		p->chunk->used = 0;
	}
	if ((c = p->chunk) == NULL || c->used + n > HOLD_CHUNK) {
		if (c != NULL && c->next != NULL)
			c = c->next;
		else {
			if ((c = malloc(sizeof(*c) + HOLD_CHUNK)) == NULL)
				return NULL;
			c->next = NULL;
			ASAN_POISON_MEMORY_REGION(c->data, HOLD_CHUNK);
			if (p->chunk != NULL)
				p->chunk->next = c;
			else
				p->chunks = c;
		}
		c->used = 0;
		p->chunk = c;
	}
	h = (struct kafka_held *)((char *)c->data + c->used);
	ASAN_UNPOISON_MEMORY_REGION(h, n);
	c->used += n;
	h->alone = 0;
	return h;
}

/* Keeps a copy of the message for kafka_producer_release(). */
static rd_kafka_resp_err_t
hold_one(struct kafka_producer *p, const char *topic, const void *key,
    size_t keylen, const void *value, size_t vlen,
    rd_kafka_headers_t *headers, struct kafka_dr *dr)
{
	struct kafka_held *h;
	size_t tlen = strlen(topic) + 1, klen = key != NULL ? keylen : 0;

	if (vlen > SIZE_MAX - sizeof(*h) - tlen - klen ||
	    (h = held_alloc(p, sizeof(*h) + tlen + klen + vlen)) == NULL)
		return RD_KAFKA_RESP_ERR__FAIL;
	h->next = NULL;
	h->dr = dr;
	h->headers = headers;
	h->keylen = key != NULL ? keylen : SIZE_MAX;
	h->vlen = vlen;
	h->topic = h->data;
	memcpy(h->data, topic, tlen);
	if (klen > 0)
		memcpy(h->data + tlen, key, klen);
	if (vlen > 0)
		memcpy(h->data + tlen + klen, value, vlen);
	if (p->nheld++ == 0)
		p->held_since = util_mono_ms();
	*p->held_tail = h;
	p->held_tail = &h->next;
	if (p->nheld >= p->hold_max)
		kafka_producer_release(p);
	return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Held back, or handed to librdkafka now. */
static rd_kafka_resp_err_t
produce_held(struct kafka_producer *p, const char *topic, const void *key,
    size_t keylen, const void *value, size_t vlen,
    rd_kafka_headers_t *headers, struct kafka_dr *dr)
{
	return p->hold_ms > 0 ?
	    hold_one(p, topic, key, keylen, value, vlen, headers, dr) :
	    produce_now(p, topic, key, keylen, value, vlen, headers, dr);
}

rd_kafka_resp_err_t
kafka_produce(struct kafka_producer *p, const char *topic, const void *key,
    size_t keylen, const void *value, size_t vlen,
    rd_kafka_headers_t *headers, kafka_dr_cb *cb, void *opaque)
{
	struct kafka_dr *dr = NULL;
	rd_kafka_resp_err_t err;

	if (cb != NULL) {
		if ((dr = malloc(sizeof(*dr))) == NULL)
			return RD_KAFKA_RESP_ERR__FAIL;
		dr->cb = cb;
		dr->opaque = opaque;
		dr->alone = 1;
	}
	err = produce_held(p, topic, key, keylen, value, vlen, headers, dr);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		free(dr);
	return err;
}

rd_kafka_resp_err_t
kafka_produce_dr(struct kafka_producer *p, const char *topic,
    const void *key, size_t keylen, const void *value, size_t vlen,
    rd_kafka_headers_t *headers, struct kafka_dr *dr)
{
	dr->alone = 0;
	return produce_held(p, topic, key, keylen, value, vlen, headers, dr);
}

void
kafka_producer_hold(struct kafka_producer *p, int hold_ms, size_t max)
{
	kafka_producer_release(p);
	p->hold_ms = hold_ms;
	p->hold_max = max > 0 ? max : 1;
}

/*
 * A held message that librdkafka refused, or that is dropped: its
 * callback gets err, as for a message that was not delivered.
 */
static void
held_fail(struct kafka_held *h, rd_kafka_resp_err_t err)
{
	int alone;

	if (h->headers != NULL)
		rd_kafka_headers_destroy(h->headers);
	if (h->dr != NULL) {
		alone = h->dr->alone;
		h->dr->cb(h->dr->opaque, err, -1, -1);
		if (alone)
			free(h->dr);
	}
}

void
kafka_producer_release(struct kafka_producer *p)
{
	struct kafka_held *h, *list = p->held;
	size_t tlen;
	rd_kafka_resp_err_t err;

	p->held = NULL;
	p->held_tail = &p->held;
	p->nheld = 0;
	p->releasing = 1;
	while ((h = list) != NULL) {
		list = h->next;
		tlen = strlen(h->topic) + 1;
		/* On an error the headers are still ours, dr freed. */
		err = produce_now(p, h->topic, h->keylen == SIZE_MAX ? NULL :
		    h->data + tlen, h->keylen == SIZE_MAX ? 0 : h->keylen,
		    h->data + tlen + (h->keylen == SIZE_MAX ? 0 : h->keylen),
		    h->vlen, h->headers, h->dr);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			log_error("%s: cannot produce: %s", h->topic,
			    rd_kafka_err2str(err));
			held_fail(h, err);
		}
		if (h->alone)
			free(h);
	}
	p->releasing = 0;
}

void
kafka_producer_tick(struct kafka_producer *p, int starved)
{
	if (p->nheld > 0 && (starved ||
	    util_mono_ms() - p->held_since >= p->hold_ms))
		kafka_producer_release(p);
}

int
kafka_poll(struct kafka_producer *p, int timeout_ms)
{
	return rd_kafka_poll(p->rk, timeout_ms);
}

int
kafka_flush(struct kafka_producer *p, int timeout_ms)
{
	kafka_producer_release(p);
	rd_kafka_flush(p->rk, timeout_ms);
	return rd_kafka_outq_len(p->rk);
}

rd_kafka_t *
kafka_producer_rk(struct kafka_producer *p)
{
	return p->rk;
}

void
kafka_producer_destroy(struct kafka_producer *p)
{
	struct kafka_chunk *c;
	struct kafka_held *h;

	if (p == NULL)
		return;
	/* Every callback runs once, even for what was never delivered. */
	while ((h = p->held) != NULL) {
		p->held = h->next;
		held_fail(h, RD_KAFKA_RESP_ERR__PURGE_QUEUE);
		if (h->alone)
			free(h);
	}
	while ((c = p->chunks) != NULL) {
		p->chunks = c->next;
		ASAN_UNPOISON_MEMORY_REGION(c->data, HOLD_CHUNK);
		free(c);
	}
	if (rd_kafka_outq_len(p->rk) > 0) {
		rd_kafka_purge(p->rk,
		    RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_flush(p->rk, 5000);
	}
	rd_kafka_destroy(p->rk);
	free(p);
}

/*
 * Consumer.
 */

rd_kafka_topic_partition_list_t *
kafka_one_partition(const char *topic, int32_t partition, int64_t offset)
{
	rd_kafka_topic_partition_list_t *l;

	l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
	return l;
}

/* Stores next for the background commit (librdkafka does not add 1). */
static void
store(struct kafka_consumer *c, const char *topic, int32_t partition,
    int64_t next)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;

	l = kafka_one_partition(topic, partition, next);
	err = rd_kafka_offsets_store(c->rk, l);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		err = l->elems[0].err;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_debug("kafka: cannot store offset %" PRId64
		    " of %s [%d]: %s", next, topic, (int)partition,
		    rd_kafka_err2str(err));
	rd_kafka_topic_partition_list_destroy(l);
}

/* Commits, synchronously, what is done in parts.  Returns 0 or -1. */
static int
commit_parts(struct kafka_consumer *c,
    const rd_kafka_topic_partition_list_t *parts)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	int64_t next;
	int i, rc = 0;

	l = rd_kafka_topic_partition_list_new(parts->cnt > 0 ? parts->cnt : 1);
	for (i = 0; i < parts->cnt; i++)
		if (offtrack_committable(c->track, parts->elems[i].topic,
		    parts->elems[i].partition, &next))
			rd_kafka_topic_partition_list_add(l,
			    parts->elems[i].topic,
			    parts->elems[i].partition)->offset = next;
	if (l->cnt > 0) {
		err = rd_kafka_commit(c->rk, l, 0);
		for (i = 0; i < l->cnt && err == RD_KAFKA_RESP_ERR_NO_ERROR;
		    i++)
			err = l->elems[i].err;
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			log_warn("kafka: commit on revocation failed: %s",
			    rd_kafka_err2str(err));
			rc = -1;
		}
	}
	rd_kafka_topic_partition_list_destroy(l);
	return rc;
}

static void
forget_parts(struct kafka_consumer *c,
    const rd_kafka_topic_partition_list_t *parts)
{
	int i;

	for (i = 0; i < parts->cnt; i++)
		offtrack_forget_partition(c->track, parts->elems[i].topic,
		    parts->elems[i].partition);
}

static void
log_parts(const char *what, const rd_kafka_topic_partition_list_t *parts)
{
	char buf[1024];
	int i, n = 0;

	buf[0] = '\0';
	for (i = 0; i < parts->cnt && n < (int)sizeof(buf); i++)
		n += snprintf(buf + n, sizeof(buf) - n, "%s%s[%d]",
		    i > 0 ? " " : "", parts->elems[i].topic,
		    (int)parts->elems[i].partition);
	/* Cooperative rebalances often hand out nothing: not news. */
	log_msg(parts->cnt > 0 ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, NULL,
	    "kafka: %s %d partition(s): %s", what, parts->cnt, buf);
}

/*
 * Rebalances, from kafka_consumer_poll() or kafka_consumer_close().  The
 * tracker's state of a partition is dropped when it comes and when it
 * goes: another consumer may have moved it in between.  Revoked partitions
 * commit what is done first, unless they were lost (another member may own
 * them already, and a commit would fail anyway).
 */
static void
rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct kafka_consumer *c = opaque;
	rd_kafka_error_t *e = NULL;
	rd_kafka_resp_err_t r = RD_KAFKA_RESP_ERR_NO_ERROR;
	int coop = c->coop;

	switch (err) {
	case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
		c->assigned = 1;
		log_parts("assigned", parts);
		forget_parts(c, parts);
		if (coop)
			e = rd_kafka_incremental_assign(rk, parts);
		else
			r = rd_kafka_assign(rk, parts);
		if (c->held)
			rd_kafka_pause_partitions(rk, parts);
		break;
	case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
		if (rd_kafka_assignment_lost(rk))
			log_parts("lost", parts);
		else {
			log_parts("revoked", parts);
			if (c->revoke_fn != NULL && !atomic_load(&c->closing))
				c->revoke_fn(c->revoke_opaque);
			commit_parts(c, parts);
		}
		forget_parts(c, parts);
		if (coop)
			e = rd_kafka_incremental_unassign(rk, parts);
		else
			r = rd_kafka_assign(rk, NULL);
		break;
	default:
		log_warn("kafka: rebalance failed: %s", rd_kafka_err2str(err));
		forget_parts(c, parts);
		r = rd_kafka_assign(rk, NULL);
		break;
	}
	if (e != NULL) {
		log_warn("kafka: rebalance: %s", rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	}
	if (r != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_warn("kafka: rebalance: %s", rd_kafka_err2str(r));
}

/*
 * The fetch kicker.  librdkafka before 2.2 stops fetching a partition while
 * the consumer's queue is over queued.max.messages.kbytes (or
 * queued.min.messages) and looks again only when the broker's thread
 * wakes up for some other reason, a second later at most (librdkafka
 * issue 2879; 2.2 added fetch.queue.backoff.ms).  A worker working
 * through a backlog then empties a full queue and waits for the rest of
 * the second: measured, pay-process used under a fifth of a CPU.
 *
 * So kafka_consumer_poll() watches the queue's length: once it has held
 * KICK_PEAK records or more and has drained to half its peak, the kicker
 * thread asks the leaders of the assigned partitions for their end
 * offsets.  The request wakes each leader's broker thread, which then sees
 * room in the queue and fetches, while half of the queue is still there
 * to work on (a quarter was not enough: 17,000 events a second, against
 * 21,000).  It costs one small request per leader per queueful;
 * a consumer that keeps up never queues KICK_PEAK records and never kicks.
 * The request blocks (up to KICK_TIMEOUT_MS), hence a thread of its own.
 */
static void *
kick_main(void *arg)
{
	struct kafka_consumer *c = arg;
	rd_kafka_topic_partition_list_t *l;
	int i;

	pthread_mutex_lock(&c->kick_mu);
	for (;;) {
		while (!c->kick_want && !c->kick_quit)
			pthread_cond_wait(&c->kick_cv, &c->kick_mu);
		if (c->kick_quit)
			break;
		c->kick_want = 0;
		pthread_mutex_unlock(&c->kick_mu);
		if (rd_kafka_assignment(c->rk, &l) ==
		    RD_KAFKA_RESP_ERR_NO_ERROR) {
			for (i = 0; i < l->cnt; i++)
				l->elems[i].offset = RD_KAFKA_OFFSET_END;
			if (l->cnt > 0)
				(void)rd_kafka_offsets_for_times(c->rk, l,
				    KICK_TIMEOUT_MS);
			rd_kafka_topic_partition_list_destroy(l);
		}
		pthread_mutex_lock(&c->kick_mu);
	}
	pthread_mutex_unlock(&c->kick_mu);
	return NULL;
}

/* Asks the kicker for one round of requests; none without a kicker. */
static void
kick(struct kafka_consumer *c)
{
	if (c->queue == NULL)
		return;
	pthread_mutex_lock(&c->kick_mu);
	c->kick_want = 1;
	pthread_cond_signal(&c->kick_cv);
	pthread_mutex_unlock(&c->kick_mu);
}

/* Starts the kicker where librdkafka needs it; without it on failure. */
static void
kick_start(struct kafka_consumer *c)
{
	if (rd_kafka_version() >= 0x020200ff)
		return;
	pthread_mutex_init(&c->kick_mu, NULL);
	pthread_cond_init(&c->kick_cv, NULL);
	c->queue = rd_kafka_queue_get_consumer(c->rk);
	if (c->queue != NULL &&
	    pthread_create(&c->kicker, NULL, kick_main, c) == 0)
		return;
	log_debug("kafka: no fetch kicker: fetching may pause a second "
	    "when the queue is full");
	if (c->queue != NULL)
		rd_kafka_queue_destroy(c->queue);
	c->queue = NULL;
	pthread_cond_destroy(&c->kick_cv);
	pthread_mutex_destroy(&c->kick_mu);
}

static void
kick_stop(struct kafka_consumer *c)
{
	if (c->queue == NULL)
		return;
	pthread_mutex_lock(&c->kick_mu);
	c->kick_quit = 1;
	pthread_cond_signal(&c->kick_cv);
	pthread_mutex_unlock(&c->kick_mu);
	pthread_join(c->kicker, NULL);
	rd_kafka_queue_destroy(c->queue);
	c->queue = NULL;
	pthread_cond_destroy(&c->kick_cv);
	pthread_mutex_destroy(&c->kick_mu);
}

/* After each poll: a kick when a queue that filled has drained. */
static void
kick_watch(struct kafka_consumer *c)
{
	int len;

	if (c->queue == NULL)
		return;
	len = (int)rd_kafka_queue_length(c->queue);
	if (len > c->peak) {
		c->peak = len;
		return;
	}
	if (c->peak < KICK_PEAK || len > c->peak / 2)
		return;
	c->peak = len;
	kick(c);
}

static void
consumer_free(struct kafka_consumer *c)
{
	offtrack_free(c->track);
	free(c);
}

static int
subscribe(struct kafka_consumer *c, const char *const *topics, char *err,
    size_t errlen)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t r;
	size_t n;

	for (n = 0; topics != NULL && topics[n] != NULL; n++)
		;
	if (n == 0) {
		snprintf(err, errlen, "no topic to consume");
		return -1;
	}
	l = rd_kafka_topic_partition_list_new((int)n);
	for (n = 0; topics[n] != NULL; n++)
		rd_kafka_topic_partition_list_add(l, topics[n],
		    RD_KAFKA_PARTITION_UA);
	r = rd_kafka_subscribe(c->rk, l);
	rd_kafka_topic_partition_list_destroy(l);
	if (r != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(err, errlen, "subscribe: %s", rd_kafka_err2str(r));
		return -1;
	}
	return 0;
}

/*
 * Whether the configured assignor is cooperative (librdkafka refuses a
 * list mixing the two protocols).  Known from the configuration so that
 * the rebalance callback need not ask rd_kafka_rebalance_protocol(),
 * which can block for ever when called from the callback that closing
 * runs (librdkafka issue 4041).
 */
static int
conf_coop(const rd_kafka_conf_t *conf)
{
	char strategy[256];
	size_t n = sizeof(strategy);

	return rd_kafka_conf_get(conf, "partition.assignment.strategy",
	    strategy, &n) == RD_KAFKA_CONF_OK &&
	    strstr(strategy, "cooperative") != NULL;
}

struct kafka_consumer *
kafka_consumer_new(const struct opt_kafka *o, const char *const *topics,
    char *err, size_t errlen)
{
	struct kafka_consumer *c;
	rd_kafka_conf_t *conf;
	char kerr[512];

	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->track = offtrack_new()) == NULL) {
		free(c);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	base_init(&c->base);
	if ((conf = conf_new(o, &c->base, consumer_defaults,
	    NULL, err, errlen)) == NULL) {
		consumer_free(c);
		return NULL;
	}
	if (o->group == NULL || rd_kafka_conf_set(conf, "group.id", o->group,
	    kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "-G: %s", o->group == NULL ?
		    "no consumer group" : kerr);
		rd_kafka_conf_destroy(conf);
		consumer_free(c);
		return NULL;
	}
	c->coop = conf_coop(conf);
	rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
	if ((c->rk = handle_new(RD_KAFKA_CONSUMER, conf, err,
	    errlen)) == NULL) {
		consumer_free(c);
		return NULL;
	}
	rd_kafka_poll_set_consumer(c->rk);
	if (subscribe(c, topics, err, errlen) == -1) {
		rd_kafka_destroy(c->rk);
		consumer_free(c);
		return NULL;
	}
	kick_start(c);
	return c;
}

rd_kafka_t *
kafka_consumer_rk(struct kafka_consumer *c)
{
	return c->rk;
}

rd_kafka_message_t *
kafka_consumer_poll(struct kafka_consumer *c, int timeout_ms)
{
	rd_kafka_message_t *m;

	m = rd_kafka_consumer_poll(c->rk, timeout_ms);
	kick_watch(c);
	if (m == NULL)
		return NULL;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		base_reachable(&c->base);
		c->last_err = RD_KAFKA_RESP_ERR_NO_ERROR;
		return m;
	}
	/* The same error again and again (a missing topic) is logged once. */
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
	    m->err == RD_KAFKA_RESP_ERR__FATAL || m->err == c->last_err)
		log_debug("kafka: consume: %s", rd_kafka_message_errstr(m));
	else
		log_warn("kafka: consume%s%s: %s", m->rkt != NULL ? " " : "",
		    m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : "",
		    rd_kafka_message_errstr(m));
	if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
		c->last_err = m->err;
	rd_kafka_message_destroy(m);
	return NULL;
}

int
kafka_consumer_track(struct kafka_consumer *c, const rd_kafka_message_t *m)
{
	return offtrack_begin(c->track, rd_kafka_topic_name(m->rkt),
	    m->partition, m->offset);
}

int
kafka_consumer_done(struct kafka_consumer *c, const char *topic,
    int32_t partition, int64_t offset)
{
	int64_t next;
	int r;

	if ((r = offtrack_done(c->track, topic, partition, offset)) == -1)
		return -1;
	if (r == 1 && offtrack_committable(c->track, topic, partition, &next))
		store(c, topic, partition, next);
	return 0;
}

size_t
kafka_consumer_pending(const struct kafka_consumer *c)
{
	return offtrack_pending(c->track);
}

size_t
kafka_consumer_window(const struct kafka_consumer *c, const char *topic,
    int32_t partition)
{
	return offtrack_partition_window(c->track, topic, partition);
}

void
kafka_consumer_on_revoke(struct kafka_consumer *c, void (*fn)(void *),
    void *opaque)
{
	c->revoke_fn = fn;
	c->revoke_opaque = opaque;
}

static int
pause_resume(struct kafka_consumer *c, const char *topic, int32_t partition,
    int pause)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;

	l = kafka_one_partition(topic, partition, RD_KAFKA_OFFSET_INVALID);
	err = pause ? rd_kafka_pause_partitions(c->rk, l) :
	    rd_kafka_resume_partitions(c->rk, l);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		err = l->elems[0].err;
	rd_kafka_topic_partition_list_destroy(l);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("kafka: cannot %s %s [%d]: %s", pause ? "pause" :
		    "resume", topic, (int)partition, rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

int
kafka_consumer_pause(struct kafka_consumer *c, const char *topic,
    int32_t partition)
{
	return pause_resume(c, topic, partition, 1);
}

int
kafka_consumer_resume(struct kafka_consumer *c, const char *topic,
    int32_t partition)
{
	return pause_resume(c, topic, partition, 0);
}

int
kafka_consumer_hold(struct kafka_consumer *c, int hold)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;

	if ((err = rd_kafka_assignment(c->rk, &l)) ==
	    RD_KAFKA_RESP_ERR_NO_ERROR) {
		err = hold ? rd_kafka_pause_partitions(c->rk, l) :
		    rd_kafka_resume_partitions(c->rk, l);
		rd_kafka_topic_partition_list_destroy(l);
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("kafka: cannot %s fetching: %s", hold ? "pause" :
		    "resume", rd_kafka_err2str(err));
		return -1;
	}
	c->held = hold;
	/*
	 * A resumed partition is fetched again only when its broker's
	 * thread wakes for another reason, up to a second later (measured:
	 * a full worker spent most of a run idle after each resume); the
	 * kicker's request wakes it now.
	 */
	if (!hold)
		kick(c);
	return 0;
}

/*
 * librdkafka asks that offsets be stored before a seek, not after, or a
 * resumed partition may start from the stored offset: so the rewound
 * tracker's offset is stored first.
 */
int
kafka_consumer_seek(struct kafka_consumer *c, const char *topic,
    int32_t partition, int64_t offset)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_error_t *e;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
	int64_t next;

	if (offtrack_rewind(c->track, topic, partition, offset) == -1) {
		log_warn("kafka: cannot seek %s [%d] to %" PRId64, topic,
		    (int)partition, offset);
		return -1;
	}
	if (offtrack_committable(c->track, topic, partition, &next))
		store(c, topic, partition, next);
	l = kafka_one_partition(topic, partition, offset);
	if ((e = rd_kafka_seek_partitions(c->rk, l,
	    KAFKA_SEEK_TIMEOUT_MS)) != NULL) {
		err = rd_kafka_error_code(e);
		rd_kafka_error_destroy(e);
	} else
		err = l->elems[0].err;
	rd_kafka_topic_partition_list_destroy(l);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("kafka: cannot seek %s [%d] to %" PRId64 ": %s", topic,
		    (int)partition, offset, rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

int
kafka_consumer_commit(struct kafka_consumer *c)
{
	rd_kafka_resp_err_t err;

	err = rd_kafka_commit(c->rk, NULL, 0);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR ||
	    err == RD_KAFKA_RESP_ERR__NO_OFFSET)
		return 0;
	log_warn("kafka: commit failed: %s", rd_kafka_err2str(err));
	return -1;
}

/*
 * librdkafka before 2.3.0 aborts when a cooperative-sticky consumer is
 * closed or destroyed before its first assignment (its assignor state is
 * still NULL: librdkafka issue 4312).  Give the assignment a bounded time to
 * come; messages fetched meanwhile are dropped untracked, so nothing of
 * theirs is committed.  Returns 1 when closing is safe.
 */
#define KAFKA_FIRST_ASSIGN_MS	15000

/*
 * Handles left open for that reason (and closings left by close_within()),
 * kept reachable so that a leak checker (LeakSanitizer) tells them from
 * real leaks; a process leaves at most a few before it exits.
 */
static void *kafka_abandoned[16];

static void
abandoned_keep(void *p)
{
	size_t i;

	for (i = 0; i < sizeof(kafka_abandoned) / sizeof(kafka_abandoned[0]);
	    i++)
		if (kafka_abandoned[i] == NULL) {
			kafka_abandoned[i] = p;
			break;
		}
}

static int
close_is_safe(struct kafka_consumer *c)
{
	rd_kafka_message_t *m;
	int64_t deadline;

	if (c->assigned || rd_kafka_version() >= 0x020300ff || !c->coop)
		return 1;
	deadline = util_mono_ms() + KAFKA_FIRST_ASSIGN_MS;
	while (!c->assigned && !kafka_unreachable(c->rk) &&
	    util_mono_ms() < deadline)
		if ((m = rd_kafka_consumer_poll(c->rk, 100)) != NULL)
			rd_kafka_message_destroy(m);
	return c->assigned;
}

/*
 * librdkafka before 2.4.0 can hang for ever in rd_kafka_consumer_close()
 * when a cooperative assignment is under way as it closes: the revocation
 * it then hands the rebalance callback never completes
 * (rd_kafka_incremental_unassign() waits on a reply that never comes;
 * librdkafka issue 4527), as after a broker bounce.  So such a consumer
 * first unsubscribes and serves its rebalances through ordinary polls
 * until it holds nothing, which takes the path that works, and only
 * then closes.  Messages fetched meanwhile are dropped untracked.
 * Returns 1 when the assignment emptied (closing is safe), 0 when it
 * did not by KAFKA_UNSUBSCRIBE_MS.
 */
#define KAFKA_UNSUBSCRIBE_MS	10000

static int
unsubscribe_first(struct kafka_consumer *c)
{
	rd_kafka_topic_partition_list_t *parts;
	rd_kafka_message_t *m;
	rd_kafka_resp_err_t err;
	int64_t deadline;
	int held;

	if (rd_kafka_version() >= 0x020400ff || !c->coop)
		return 1;
	if ((err = rd_kafka_unsubscribe(c->rk)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("kafka: unsubscribe: %s", rd_kafka_err2str(err));
		return 0;
	}
	deadline = util_mono_ms() + KAFKA_UNSUBSCRIBE_MS;
	for (;;) {
		parts = NULL;
		if (rd_kafka_assignment(c->rk, &parts) !=
		    RD_KAFKA_RESP_ERR_NO_ERROR)
			return 0;
		held = parts->cnt;
		rd_kafka_topic_partition_list_destroy(parts);
		if (held == 0)
			return 1;
		if (util_mono_ms() >= deadline)
			return 0;
		if ((m = rd_kafka_consumer_poll(c->rk, 100)) != NULL)
			rd_kafka_message_destroy(m);
	}
}

/* Leaves c's handle open (see close_is_safe()): the process is exiting. */
static void
consumer_abandon(struct kafka_consumer *c)
{
	abandoned_keep(c->rk);
	/* c stays too: it is the opaque the handle's threads read. */
}

/*
 * rd_kafka_consumer_close() can wait for ever: with librdkafka 2.0.2 an
 * eager revocation's rd_kafka_assign(), called from the close, was seen
 * waiting for a reply that never came after one broker of three was
 * killed, and the worker was still running a minute after SIGTERM.  So
 * the close runs on a thread of its own, and the caller waits for it at
 * most KAFKA_CLOSE_MS (a close takes well under a second when the group
 * answers, about 5 s when the coordinator does not).  Past that
 * the handle is left to the process's exit, as when the assignment does
 * not empty: what was done is committed before the close, and the group
 * hands the partitions out again after its session timeout.  The close
 * calls no revocation hook (kafka_consumer_on_revoke()): its caller
 * settled its outputs before closing and may free what the hook uses
 * while a close it left still runs; the revocation still commits what
 * is done.  A closing left is kept reachable, as its thread may still
 * end and write to it.
 */
#define KAFKA_CLOSE_MS		10000

struct closing {
	rd_kafka_t		*rk;
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;
	int			 done;
	rd_kafka_resp_err_t	 err;
};

static void *
close_main(void *arg)
{
	struct closing *cl = arg;
	rd_kafka_resp_err_t err;

	err = rd_kafka_consumer_close(cl->rk);
	pthread_mutex_lock(&cl->mu);
	cl->err = err;
	cl->done = 1;
	pthread_cond_signal(&cl->cv);
	pthread_mutex_unlock(&cl->mu);
	return NULL;
}

/*
 * Closes c's handle within ms: 0 and *err when the close ended, -1 when
 * it did not (c is then left; see above).  Without a thread it closes
 * in line.
 */
static int
close_within(struct kafka_consumer *c, int64_t ms, rd_kafka_resp_err_t *err)
{
	struct closing *cl;
	struct timespec ts;
	pthread_t t;
	int done, e = 0;

	atomic_store(&c->closing, 1);
	if ((cl = calloc(1, sizeof(*cl))) == NULL)
		goto in_line;
	cl->rk = c->rk;
	pthread_mutex_init(&cl->mu, NULL);
	if (util_cond_init_monotonic(&cl->cv) != 0)
		goto no_thread;
	if (pthread_create(&t, NULL, close_main, cl) != 0) {
		pthread_cond_destroy(&cl->cv);
		goto no_thread;
	}
	ts = util_time_in(CLOCK_MONOTONIC, ms);
	pthread_mutex_lock(&cl->mu);
	while (!cl->done && e != ETIMEDOUT)
		e = pthread_cond_timedwait(&cl->cv, &cl->mu, &ts);
	done = cl->done;
	pthread_mutex_unlock(&cl->mu);
	if (!done) {
		pthread_detach(t);
		abandoned_keep(cl);
		return -1;
	}
	pthread_join(t, NULL);
	*err = cl->err;
	pthread_cond_destroy(&cl->cv);
	pthread_mutex_destroy(&cl->mu);
	free(cl);
	return 0;

no_thread:
	pthread_mutex_destroy(&cl->mu);
	free(cl);
in_line:
	*err = rd_kafka_consumer_close(c->rk);
	return 0;
}

int
kafka_consumer_close(struct kafka_consumer *c)
{
	rd_kafka_resp_err_t err;
	char reason[512];
	int rc = 0;

	if (c == NULL)
		return 0;
	kick_stop(c);
	if (!close_is_safe(c)) {
		/*
		 * The process is about to exit: leaving the handle is better
		 * than an abort.  The group drops the member after its
		 * session timeout.
		 */
		log_debug("kafka: consumer never assigned; leaving the group "
		    "to its session timeout (librdkafka %s)",
		    rd_kafka_version_str());
		consumer_abandon(c);
		return 0;
	}
	/* With no broker a synchronous commit could only wait. */
	if (rd_kafka_fatal_error(c->rk, reason, sizeof(reason)) == 0 &&
	    !kafka_unreachable(c->rk) && kafka_consumer_commit(c) == -1)
		rc = -1;
	if (rd_kafka_fatal_error(c->rk, NULL, 0) == 0 &&
	    !kafka_unreachable(c->rk) && !unsubscribe_first(c)) {
		/* What was done is committed: the group redelivers the rest. */
		log_warn("kafka: partitions still assigned %d s after "
		    "unsubscribing; leaving the group to its session timeout "
		    "(librdkafka %s)", KAFKA_UNSUBSCRIBE_MS / 1000,
		    rd_kafka_version_str());
		consumer_abandon(c);
		return rc;
	}
	if (close_within(c, KAFKA_CLOSE_MS, &err) == -1) {
		log_warn("kafka: consumer still closing after %d s; leaving the "
		    "group to its session timeout (librdkafka %s)",
		    KAFKA_CLOSE_MS / 1000, rd_kafka_version_str());
		consumer_abandon(c);
		return rc;
	}
	/* After a fatal error it says so again: the caller reported it. */
	if (err == RD_KAFKA_RESP_ERR__FATAL)
		log_debug("kafka: close: %s", rd_kafka_err2str(err));
	else if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("kafka: close: %s", rd_kafka_err2str(err));
		rc = -1;
	}
	rd_kafka_destroy(c->rk);
	consumer_free(c);
	return rc;
}
