/*
 * dlq-replay - sends dead letters back to the topic they failed on, as a
 * batch job for cron(8).
 *
 * One run: take a lock (another run holding it: exit 5 at once), read the
 * dead-letter topics' high watermarks and consumer group dlq-replay's
 * committed offsets, and consume from those offsets up to the watermarks,
 * so a record that fails again during the run waits for the next run
 * instead of looping.  Each record is replayed (key, value and headers,
 * the retry state reset, orderflow.replay.count + 1), skipped (a filter),
 * or parked (replayed --max-replays times already).  A DLQ offset is
 * committed only once every replay below it was acknowledged by the
 * broker, so a run killed anywhere loses nothing and at worst replays a
 * record twice.  The end is one JSON summary line on stdout.
 *
 * The consumer assigns itself the partitions (rd_kafka_assign()) instead
 * of joining the group as a member: a batch job gains nothing from
 * rebalancing, and a run killed with SIGKILL leaves no member behind to
 * hold up the next run's join for a session timeout.  The group only
 * keeps the offsets; the lock keeps runs on one host apart.  So
 * kafka_consumer_new() (a subscribing member) is not used here; offsets
 * go through the same tracker (offtrack.h) and are committed every
 * second and at the end.
 *
 * Progress is committed over skipped and parked records too: each dead
 * letter is looked at once per group, whatever the filters of that run.
 */
#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>

#include "exitcode.h"
#include "flow.h"
#include "kafka.h"
#include "log.h"
#include "offtrack.h"
#include "opt.h"
#include "util.h"

#define DEF_MAX_REPLAYS	3
#define REQUEST_MS	10000	/* reachability, metadata, offsets, commit */
#define IDLE_MS		30000	/* no record and no delivery with work left */
#define FLUSH_MS	30000	/* the last replays' acknowledgements */
#define COMMIT_MS	1000	/* background commits of what is done */
#define POLL_MS		100
#define PROGRESS_MS	250	/* redraws of the progress line */

enum {
	OPT_DRY_RUN = OPT_CMD_FIRST,
	OPT_KIND,
	OPT_MAX,
	OPT_MAX_REPLAYS,
	OPT_RATE,
	OPT_SINCE,
	OPT_TO,
	OPT_TYPE,
	OPT_UNTIL
};

enum outcome {
	REPLAYED,	/* acknowledged (printed with --dry-run) */
	SKIPPED,	/* a filter, or no target topic */
	PARKED,		/* replayed --max-replays times already */
	FAILED,		/* not acknowledged */
	NOUTCOMES
};

static const char *const outcome_names[NOUTCOMES] = {
	"replayed", "skipped", "parked", "failed"
};

struct counts {
	uint64_t	n[NOUTCOMES];
};

struct topic {
	const char	*name;
	struct counts	 n;
};

/* One partition of a dead-letter topic and this run's share of it. */
struct part {
	size_t		 topic;		/* index in dr.topics */
	int32_t		 partition;
	int64_t		 start;		/* the first offset to look at */
	int64_t		 end;		/* the high watermark at start: stop */
	int64_t		 sent;		/* last offset committed in the background */
	int		 done;		/* every record below end was seen */
};

struct dr {
	struct opt_kafka	 o;
	rd_kafka_t		*rk;		/* the consumer */
	struct offtrack		*track;		/* what may be committed */
	struct kafka_producer	*p;
	struct topic		*topics;
	size_t			 ntopics;
	struct part		*parts;
	size_t			 nparts;
	const char		*lockfile;	/* -l */
	const char		*to;		/* --to */
	const char		*kind;		/* --kind */
	const char		*type;		/* --type */
	int64_t			 since;		/* --since, inclusive */
	int64_t			 until;		/* --until, exclusive */
	long long		 max;		/* --max; 0: no limit */
	long long		 rate;		/* --rate; 0: no limit */
	long long		 max_replays;	/* --max-replays */
	int			 dry_run;
	struct counts		 total;
	uint64_t		 started;	/* replays produced (or printed) */
	uint64_t		 looked;	/* records looked at */
	uint64_t		 work;		/* records below the watermarks */
	double			 next_due;	/* --rate: next replay, mono ms */
	int64_t			 t0;
	int64_t			 activity;	/* last record or delivery */
	int64_t			 commit_ms;	/* last background commit */
	rd_kafka_resp_err_t	 last_err;	/* last consume error logged */
	int64_t			 drawn;		/* progress line */
	int			 tty;
	int			 stop;		/* --max reached or a fatal error */
	int			 kafka_err;	/* exit 4 */
};

/* The opaque of one replay's delivery callback. */
struct inflight {
	struct dr	*d;
	size_t		 topic;
	int32_t		 partition;
	int64_t		 offset;
};

/* Replaced on a replay: a fresh first attempt, due now. */
static const char *const reset_headers[] = {
	FLOW_H_ATTEMPT, FLOW_H_NOT_BEFORE, FLOW_H_REPLAY_COUNT, NULL
};

static void
usage(void)
{
	fprintf(stderr,
	    "usage: %s [-hqVv] [--dry-run] [-b brokers] [-F file] [-G group]\n"
	    "           [-l lockfile] [-t topic] [-X name=value] "
	    "[--kind kind]\n"
	    "           [--log-format format] [--max n] [--max-replays n] "
	    "[--rate n]\n"
	    "           [--since time] [--state dir] [--to topic] "
	    "[--topic-prefix prefix]\n"
	    "           [--type type] [--until time]\n", log_progname());
}

static int64_t
when(const char *opt, const char *arg)
{
	const char *errstr;
	int64_t t;

	if (util_time(arg, &t, &errstr) == -1) {
		log_error("%s %s: %s", opt, arg, errstr);
		usage();
		exit(OF_EXIT_USAGE);
	}
	return t;
}

static void
add_topic(struct dr *d, const char *name)
{
	size_t i;

	for (i = 0; i < d->ntopics; i++)
		if (strcmp(d->topics[i].name, name) == 0)
			return;
	d->topics = reallocarray(d->topics, d->ntopics + 1,
	    sizeof(*d->topics));
	if (d->topics == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	memset(&d->topics[d->ntopics], 0, sizeof(*d->topics));
	d->topics[d->ntopics++].name = name;
}

static void
parse_options(struct dr *d, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "kind", required_argument, NULL, OPT_KIND },
		{ "max", required_argument, NULL, OPT_MAX },
		{ "max-replays", required_argument, NULL, OPT_MAX_REPLAYS },
		{ "rate", required_argument, NULL, OPT_RATE },
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "to", required_argument, NULL, OPT_TO },
		{ "type", required_argument, NULL, OPT_TYPE },
		{ "until", required_argument, NULL, OPT_UNTIL },
		OPT_COMMON_LONG,
		{ NULL, 0, NULL, 0 }
	};
	size_t i;
	int ch;

	while ((ch = getopt_long(argc, argv, OPT_COMMON_SHORT "l:t:", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'l':
			d->lockfile = optarg;
			break;
		case 't':
			add_topic(d, optarg);
			break;
		case OPT_DRY_RUN:
			d->dry_run = 1;
			break;
		case OPT_KIND:
			d->kind = optarg;
			break;
		case OPT_MAX:
			d->max = opt_number("--max", optarg, 1, 1000000000);
			break;
		case OPT_MAX_REPLAYS:
			d->max_replays = opt_number("--max-replays", optarg, 1,
			    1000000);
			break;
		case OPT_RATE:
			d->rate = opt_number("--rate", optarg, 1, 1000000);
			break;
		case OPT_SINCE:
			d->since = when("--since", optarg);
			break;
		case OPT_TO:
			d->to = optarg;
			break;
		case OPT_TYPE:
			d->type = optarg;
			break;
		case OPT_UNTIL:
			d->until = when("--until", optarg);
			break;
		default:
			if (!opt_common(&d->o, ch, optarg)) {
				usage();
				exit(OF_EXIT_USAGE);
			}
			break;
		}
	}
	if (optind != argc) {
		log_error("%s: no arguments are taken", argv[optind]);
		usage();
		exit(OF_EXIT_USAGE);
	}
	if (d->since > d->until) {
		log_error("--since is after --until: nothing could match");
		usage();
		exit(OF_EXIT_USAGE);
	}
	if ((d->to != NULL && *d->to == '\0') ||
	    (d->lockfile != NULL && *d->lockfile == '\0')) {
		log_error("--to and -l take a non-empty name");
		usage();
		exit(OF_EXIT_USAGE);
	}
	if (d->ntopics == 0)
		for (i = 0; i < FLOW_NDLQ; i++)
			add_topic(d, opt_topic(&d->o, flow_dlq_topics[i]));
}

/*
 * flock(2) on the lock file, held until exit; the file is never removed
 * (removing it would let two runs lock two different files).  Exits 5
 * when another run holds it.
 */
static int
lock(struct dr *d)
{
	static char def[PATH_MAX];
	int fd;

	if (d->lockfile == NULL) {
		snprintf(def, sizeof(def), "%s/lock", opt_state_dir(&d->o));
		d->lockfile = def;
		if (util_mkdir_p(opt_state_dir(&d->o), 0700) == -1)
			log_fatal(OF_EXIT_FAIL, "%s: %s", opt_state_dir(&d->o),
			    strerror(errno));
	}
	if ((fd = util_lock(d->lockfile)) == -1) {
		if (errno == EWOULDBLOCK)
			log_fatal(OF_EXIT_BUSY, "%s: another run holds the lock",
			    d->lockfile);
		log_fatal(OF_EXIT_FAIL, "%s: %s", d->lockfile, strerror(errno));
	}
	return fd;
}

static size_t
topic_index(const struct dr *d, const char *name)
{
	size_t i;

	for (i = 0; i < d->ntopics; i++)
		if (strcmp(d->topics[i].name, name) == 0)
			return i;
	return (size_t)-1;
}

static struct part *
part_find(struct dr *d, const char *topic, int32_t partition)
{
	size_t i, t;

	if ((t = topic_index(d, topic)) == (size_t)-1)
		return NULL;
	for (i = 0; i < d->nparts; i++)
		if (d->parts[i].topic == t && d->parts[i].partition == partition)
			return &d->parts[i];
	return NULL;
}

/* The partitions of every topic; a topic that does not exist is an error. */
static int
plan_parts(struct dr *d, rd_kafka_t *rk)
{
	const struct rd_kafka_metadata *md;
	const struct rd_kafka_metadata_topic *mt;
	rd_kafka_resp_err_t err;
	size_t i, n = 0;
	int j, k, missing = 0;

	err = rd_kafka_metadata(rk, 1, NULL, &md, REQUEST_MS);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("cannot list the topics: %s", rd_kafka_err2str(err));
		return OF_EXIT_KAFKA;
	}
	for (j = 0; j < md->topic_cnt; j++)
		if (topic_index(d, md->topics[j].topic) != (size_t)-1)
			n += md->topics[j].partition_cnt;
	d->parts = util_xcalloc(n, sizeof(*d->parts));
	for (i = 0; i < d->ntopics; i++) {
		for (j = 0, mt = NULL; j < md->topic_cnt && mt == NULL; j++)
			if (strcmp(md->topics[j].topic, d->topics[i].name) == 0)
				mt = &md->topics[j];
		if (mt == NULL || mt->err != RD_KAFKA_RESP_ERR_NO_ERROR ||
		    mt->partition_cnt == 0) {
			log_error("%s: %s", d->topics[i].name, mt == NULL ?
			    "no such topic" : rd_kafka_err2str(mt->err));
			missing++;
			continue;
		}
		for (k = 0; k < mt->partition_cnt; k++) {
			d->parts[d->nparts].topic = i;
			d->parts[d->nparts++].partition =
			    mt->partitions[k].id;
		}
	}
	rd_kafka_metadata_destroy(md);
	return missing > 0 ? OF_EXIT_FAIL : OF_EXIT_OK;
}

/*
 * This run's share of each partition: from the group's committed offset
 * (or the low watermark, which is where auto.offset.reset=earliest starts)
 * to the high watermark now.
 */
static int
plan(struct dr *d)
{
	rd_kafka_t *rk = d->rk;
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	struct part *pt;
	int64_t lo, hi, committed;
	size_t i;
	int rc;

	if ((rc = plan_parts(d, rk)) != OF_EXIT_OK)
		return rc;
	l = rd_kafka_topic_partition_list_new((int)d->nparts);
	for (i = 0; i < d->nparts; i++)
		rd_kafka_topic_partition_list_add(l,
		    d->topics[d->parts[i].topic].name, d->parts[i].partition);
	if ((err = kafka_committed(rk, l, REQUEST_MS)) !=
	    RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("cannot read the offsets of group %s: %s",
		    d->o.group, rd_kafka_err2str(err));
		rd_kafka_topic_partition_list_destroy(l);
		return OF_EXIT_KAFKA;
	}
	for (i = 0; i < d->nparts; i++) {
		pt = &d->parts[i];
		committed = l->elems[i].offset;	/* < 0: none */
		err = rd_kafka_query_watermark_offsets(rk,
		    d->topics[pt->topic].name, pt->partition, &lo, &hi,
		    REQUEST_MS);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			log_error("%s [%d]: cannot read the watermarks: %s",
			    d->topics[pt->topic].name, (int)pt->partition,
			    rd_kafka_err2str(err));
			rd_kafka_topic_partition_list_destroy(l);
			return OF_EXIT_KAFKA;
		}
		pt->start = committed > lo ? committed : lo;
		pt->sent = pt->start;
		pt->end = hi;
		pt->done = pt->start >= pt->end;
		if (!pt->done)
			d->work += pt->end - pt->start;
		log_debug("%s [%d]: offsets %" PRId64 " to %" PRId64,
		    d->topics[pt->topic].name, (int)pt->partition, pt->start,
		    pt->end);
	}
	rd_kafka_topic_partition_list_destroy(l);
	return OF_EXIT_OK;
}

static int
all_done(const struct dr *d)
{
	size_t i;

	for (i = 0; i < d->nparts; i++)
		if (!d->parts[i].done)
			return 0;
	return 1;
}

/* Stops fetching a finished partition: what comes after is the next run's. */
static void
part_finish(struct dr *d, struct part *pt)
{
	rd_kafka_topic_partition_list_t *l;

	if (pt->done)
		return;
	pt->done = 1;
	l = kafka_one_partition(d->topics[pt->topic].name, pt->partition,
	    RD_KAFKA_OFFSET_INVALID);
	rd_kafka_pause_partitions(d->rk, l);
	rd_kafka_topic_partition_list_destroy(l);
}

/* Consumes every partition with work from its start offset. */
static int
assign(struct dr *d)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	size_t i;

	l = rd_kafka_topic_partition_list_new((int)d->nparts);
	for (i = 0; i < d->nparts; i++)
		if (!d->parts[i].done)
			rd_kafka_topic_partition_list_add(l,
			    d->topics[d->parts[i].topic].name,
			    d->parts[i].partition)->offset = d->parts[i].start;
	err = rd_kafka_assign(d->rk, l);
	rd_kafka_topic_partition_list_destroy(l);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("kafka: assign: %s", rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

/*
 * Commits, for each partition, the tracker's committable offset: in the
 * background (async) only when it moved since the last one sent, at the
 * end (sync) whenever it is past where the run started, and checked.
 * Returns 0 or -1 (logged).
 */
static int
commit(struct dr *d, int sync)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	struct part *pt;
	int64_t next;
	size_t i;
	int j;

	l = rd_kafka_topic_partition_list_new((int)d->nparts);
	for (i = 0; i < d->nparts; i++) {
		pt = &d->parts[i];
		if (offtrack_committable(d->track, d->topics[pt->topic].name,
		    pt->partition, &next) &&
		    next > (sync ? pt->start : pt->sent)) {
			rd_kafka_topic_partition_list_add(l,
			    d->topics[pt->topic].name, pt->partition)->offset =
			    next;
			pt->sent = next;
		}
	}
	if (l->cnt == 0) {
		rd_kafka_topic_partition_list_destroy(l);
		return 0;
	}
	err = rd_kafka_commit(d->rk, l, !sync);
	for (j = 0; sync && err == RD_KAFKA_RESP_ERR_NO_ERROR && j < l->cnt;
	    j++)
		err = l->elems[j].err;
	rd_kafka_topic_partition_list_destroy(l);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("kafka: cannot commit the offsets of group %s: %s",
		    d->o.group, rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

/* A JSON string of p, or of its base64 encoding when it is not text. */
static cJSON *
json_bytes(const void *p, size_t len, int *base64)
{
	char *s;
	cJSON *j;

	if ((s = util_json_bytes(p, len, base64)) == NULL ||
	    (j = cJSON_CreateString(s)) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	free(s);
	return j;
}

/* Sets obj[name] = v; the last of several headers of one name wins. */
static void
json_set(cJSON *obj, const char *name, cJSON *v)
{
	if (cJSON_GetObjectItemCaseSensitive(obj, name) != NULL)
		cJSON_ReplaceItemInObjectCaseSensitive(obj, name, v);
	else
		cJSON_AddItemToObject(obj, name, v);
}

/*
 * --dry-run: one JSON line a record that would be replayed, with the
 * headers it would be replayed with.  key, value and header values that
 * are not UTF-8 text go in key_base64, value_base64 and headers_base64.
 */
static void
print_record(const rd_kafka_message_t *m, const char *target,
    const rd_kafka_headers_t *h)
{
	cJSON *o, *hj, *hb, *v;
	const char *name;
	const void *val;
	char ts[32], *s;
	int64_t t;
	size_t i, sz;
	int b64;

	if ((o = cJSON_CreateObject()) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	cJSON_AddStringToObject(o, "topic", rd_kafka_topic_name(m->rkt));
	cJSON_AddNumberToObject(o, "partition", m->partition);
	cJSON_AddNumberToObject(o, "offset", (double)m->offset);
	if ((t = rd_kafka_message_timestamp(m, NULL)) >= 0) {
		util_rfc3339(t, ts, sizeof(ts));
		cJSON_AddStringToObject(o, "timestamp", ts);
	}
	cJSON_AddStringToObject(o, "to", target);
	if (m->key == NULL)
		cJSON_AddNullToObject(o, "key");
	else {
		v = json_bytes(m->key, m->key_len, &b64);
		cJSON_AddItemToObject(o, b64 ? "key_base64" : "key", v);
	}
	hj = cJSON_AddObjectToObject(o, "headers");
	hb = NULL;
	for (i = 0; h != NULL && rd_kafka_header_get_all(h, i, &name, &val,
	    &sz) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
		if (val == NULL) {
			json_set(hj, name, cJSON_CreateNull());
			continue;
		}
		v = json_bytes(val, sz, &b64);
		if (b64 && hb == NULL)
			hb = cJSON_AddObjectToObject(o, "headers_base64");
		json_set(b64 ? hb : hj, name, v);
	}
	if (m->payload == NULL)
		cJSON_AddNullToObject(o, "value");
	else {
		v = json_bytes(m->payload, m->len, &b64);
		cJSON_AddItemToObject(o, b64 ? "value_base64" : "value", v);
	}
	if ((s = cJSON_PrintUnformatted(o)) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	puts(s);
	free(s);
	cJSON_Delete(o);
}

/* --type T matches type T, and T.vN for any version N. */
static int
type_matches(const char *want, const rd_kafka_message_t *m)
{
	const cJSON *t;
	cJSON *j;
	const char *s;
	size_t n;
	int ok = 0;

	if (m->payload == NULL || (j = cJSON_ParseWithLength(m->payload,
	    m->len)) == NULL)
		return 0;
	t = cJSON_GetObjectItemCaseSensitive(j, "type");
	if (cJSON_IsString(t)) {
		s = t->valuestring;
		n = strlen(want);
		if (strcmp(s, want) == 0)
			ok = 1;
		else if (strncmp(s, want, n) == 0 && s[n] == '.' &&
		    s[n + 1] == 'v' && s[n + 2] != '\0' &&
		    strspn(s + n + 2, "0123456789") == strlen(s + n + 2))
			ok = 1;
	}
	cJSON_Delete(j);
	return ok;
}

/* Whether the record passes --kind, --type, --since and --until. */
static int
selected(const struct dr *d, const rd_kafka_message_t *m,
    const rd_kafka_headers_t *h)
{
	char kind[64];
	int64_t ts;

	if (d->kind != NULL && (kafka_header_get_str(h, FLOW_H_ERROR_KIND, kind,
	    sizeof(kind)) < 0 || strcmp(kind, d->kind) != 0))
		return 0;
	if (d->since != INT64_MIN || d->until != INT64_MAX) {
		ts = rd_kafka_message_timestamp(m, NULL);
		if (ts < 0 || ts < d->since || ts >= d->until)
			return 0;
	}
	if (d->type != NULL && !type_matches(d->type, m))
		return 0;
	return 1;
}

static void
count(struct dr *d, size_t topic, enum outcome what)
{
	d->topics[topic].n.n[what]++;
	d->total.n[what]++;
}

/*
 * The replay's acknowledgement: only now may the DLQ offset be committed.
 * A replay that failed stays pending, so no commit passes it and the next
 * run tries it again.
 */
static void
delivered(void *opaque, rd_kafka_resp_err_t err, int32_t partition,
    int64_t offset)
{
	struct inflight *f = opaque;
	struct dr *d = f->d;
	const char *topic = d->topics[f->topic].name;

	(void)partition;
	(void)offset;
	d->activity = util_mono_ms();
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		count(d, f->topic, REPLAYED);
		offtrack_done(d->track, topic, f->partition, f->offset);
	} else {
		count(d, f->topic, FAILED);
		log_error("%s [%d] offset %" PRId64 ": replay not acknowledged:"
		    " %s", topic, (int)f->partition, f->offset,
		    rd_kafka_err2str(err));
	}
	free(f);
}

/* --rate: waits for the next replay's turn, serving deliveries. */
static int
pace(struct dr *d)
{
	int64_t now;
	double due;

	if (d->rate == 0)
		return 0;
	now = util_mono_ms();
	due = d->next_due > now ? d->next_due : now;
	while (!util_signal_caught() && (now = util_mono_ms()) < due)
		kafka_poll(d->p, due - now < POLL_MS ? (int)(due - now) + 1 :
		    POLL_MS);
	d->next_due = due + 1000.0 / d->rate;
	return util_signal_caught() ? -1 : 0;
}

static void
replay(struct dr *d, const rd_kafka_message_t *m, size_t topic,
    const char *target, rd_kafka_headers_t *hdrs)
{
	struct inflight *f;
	rd_kafka_resp_err_t err;
	char why[512];

	if (pace(d) == -1) {
		/* Tracked and not done: never committed past. */
		rd_kafka_headers_destroy(hdrs);
		return;
	}
	f = util_xcalloc(1, sizeof(*f));
	f->d = d;
	f->topic = topic;
	f->partition = m->partition;
	f->offset = m->offset;
	err = kafka_produce(d->p, target, m->key, m->key_len, m->payload,
	    m->len, hdrs, delivered, f);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_debug("%s [%d] offset %" PRId64 ": replayed to %s",
		    d->topics[topic].name, (int)m->partition, m->offset,
		    target);
		return;
	}
	rd_kafka_headers_destroy(hdrs);
	free(f);
	count(d, topic, FAILED);
	log_error("%s [%d] offset %" PRId64 ": cannot replay to %s: %s",
	    d->topics[topic].name, (int)m->partition, m->offset, target,
	    rd_kafka_err2str(err));
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		if (kafka_fatal(kafka_producer_rk(d->p), why, sizeof(why)))
			log_error("kafka: %s", why);
		d->kafka_err = 1;
		d->stop = 1;
	}
}

/*
 * One record of a partition below its watermark: replayed, skipped or
 * parked.  With --dry-run nothing is tracked, so nothing is committed.
 */
static void
handle(struct dr *d, const rd_kafka_message_t *m, struct part *pt)
{
	const rd_kafka_headers_t *h;
	rd_kafka_headers_t *hdrs;
	const char *target;
	char orig[512];
	int64_t replays = 0;
	int r;

	h = kafka_msg_headers(m);
	if (!selected(d, m, h)) {
		count(d, pt->topic, SKIPPED);
		goto done;
	}
	if ((r = kafka_header_get_int64(h, FLOW_H_REPLAY_COUNT, &replays)) == -2) {
		log_warn("%s [%d] offset %" PRId64 ": bad %s header: taken "
		    "as 0", d->topics[pt->topic].name, (int)m->partition,
		    m->offset, FLOW_H_REPLAY_COUNT);
		replays = 0;
	} else if (r == -1 || replays < 0)
		replays = 0;
	if (replays >= d->max_replays) {
		count(d, pt->topic, PARKED);
		log_info("%s [%d] offset %" PRId64 ": parked: replayed %"
		    PRId64 " times already", d->topics[pt->topic].name,
		    (int)m->partition, m->offset, replays);
		goto done;
	}
	target = d->to;
	if (target == NULL) {
		if (kafka_header_get_str(h, FLOW_H_ORIG_TOPIC, orig,
		    sizeof(orig)) <= 0) {
			count(d, pt->topic, SKIPPED);
			log_warn("%s [%d] offset %" PRId64 ": no %s header "
			    "and no --to: skipped", d->topics[pt->topic].name,
			    (int)m->partition, m->offset, FLOW_H_ORIG_TOPIC);
			goto done;
		}
		target = orig;
	}
	hdrs = kafka_headers_copy_except(h, reset_headers);
	kafka_header_add_int64(hdrs, FLOW_H_REPLAY_COUNT, replays + 1);
	d->started++;
	if (d->dry_run) {
		print_record(m, target, hdrs);
		rd_kafka_headers_destroy(hdrs);
		count(d, pt->topic, REPLAYED);
		return;
	}
	replay(d, m, pt->topic, target, hdrs);
	return;
done:
	if (!d->dry_run)
		offtrack_done(d->track, d->topics[pt->topic].name,
		    m->partition, m->offset);
}

/* A record from the consumer: this run's business only below the watermark. */
static void
take(struct dr *d, const rd_kafka_message_t *m)
{
	struct part *pt;

	pt = part_find(d, rd_kafka_topic_name(m->rkt), m->partition);
	if (pt == NULL || pt->done)
		return;
	if (m->offset >= pt->end) {
		part_finish(d, pt);
		return;
	}
	if (d->max > 0 && d->started >= (uint64_t)d->max) {
		/* Untracked: the next run starts here. */
		d->stop = 1;
		return;
	}
	d->looked++;
	if (!d->dry_run && offtrack_begin(d->track, d->topics[pt->topic].name,
	    m->partition, m->offset) == -1)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	handle(d, m, pt);
	if (m->offset >= pt->end - 1)
		part_finish(d, pt);
}

static void
draw(struct dr *d, int last)
{
	char left[32];
	double rate;
	int64_t now, secs;
	uint64_t todo;

	if (!d->tty)
		return;
	if (last) {
		fputs("\r\033[K", stderr);
		return;
	}
	now = util_mono_ms();
	if (now - d->drawn < PROGRESS_MS)
		return;
	d->drawn = now;
	rate = now > d->t0 ? d->looked * 1000.0 / (now - d->t0) : 0;
	todo = d->work > d->looked ? d->work - d->looked : 0;
	if (rate > 0) {
		secs = (int64_t)(todo / rate);
		snprintf(left, sizeof(left), "%" PRId64 ":%02d", secs / 60,
		    (int)(secs % 60));
	} else
		snprintf(left, sizeof(left), "?");
	fprintf(stderr, "\r%s: %" PRIu64 "/%" PRIu64 " records, %" PRIu64
	    " replayed, %.1f/s, %s left\033[K", log_progname(), d->looked,
	    d->work, d->total.n[REPLAYED], rate, left);
}

/* A record, or an event: the end of a partition, an error. */
static void
message(struct dr *d, const rd_kafka_message_t *m)
{
	struct part *pt;
	char why[512];

	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		d->activity = util_mono_ms();
		d->last_err = RD_KAFKA_RESP_ERR_NO_ERROR;
		take(d, m);
		return;
	}
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		/* Past end - 1 even if the last offsets hold no record. */
		d->activity = util_mono_ms();
		if (m->rkt != NULL && (pt = part_find(d,
		    rd_kafka_topic_name(m->rkt), m->partition)) != NULL &&
		    m->offset >= pt->end)
			part_finish(d, pt);
		return;
	}
	if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
		if (kafka_fatal(d->rk, why, sizeof(why)))
			log_error("kafka: %s", why);
		d->kafka_err = 1;
		d->stop = 1;
		return;
	}
	/* The same error again and again is logged once. */
	if (m->err != d->last_err)
		log_warn("kafka: consume%s%s: %s", m->rkt != NULL ? " " : "",
		    m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : "",
		    rd_kafka_message_errstr(m));
	d->last_err = m->err;
}

static void
consume(struct dr *d)
{
	rd_kafka_message_t *m;
	int64_t now;
	char why[512];

	d->t0 = d->activity = d->commit_ms = util_mono_ms();
	while (!util_signal_caught() && !d->stop && !all_done(d)) {
		if (d->p != NULL)
			kafka_poll(d->p, 0);
		if ((m = rd_kafka_consumer_poll(d->rk, POLL_MS)) != NULL) {
			message(d, m);
			rd_kafka_message_destroy(m);
		}
		if (d->p != NULL &&
		    kafka_fatal(kafka_producer_rk(d->p), why, sizeof(why))) {
			log_error("kafka: %s", why);
			d->kafka_err = 1;
			break;
		}
		now = util_mono_ms();
		if (!d->dry_run && now - d->commit_ms >= COMMIT_MS) {
			d->commit_ms = now;
			(void)commit(d, 0);	/* the last one is checked */
		}
		if (now - d->activity >= IDLE_MS) {
			log_error("no record for %d s below the watermarks: "
			    "giving up", IDLE_MS / 1000);
			d->kafka_err = 1;
			break;
		}
		draw(d, 0);
	}
	draw(d, 1);
	if (util_signal_caught())
		log_info("interrupted: the rest waits for the next run");
	else if (d->max > 0 && d->started >= (uint64_t)d->max)
		log_info("--max %lld reached: the rest waits for the next run",
		    d->max);
}

static cJSON *
counts_json(const struct counts *n)
{
	cJSON *o;
	int i;

	if ((o = cJSON_CreateObject()) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	for (i = 0; i < NOUTCOMES; i++)
		cJSON_AddNumberToObject(o, outcome_names[i], (double)n->n[i]);
	return o;
}

static void
summary(const struct dr *d)
{
	cJSON *o, *t;
	char *s;
	size_t i;

	o = counts_json(&d->total);
	if (d->dry_run)
		cJSON_AddTrueToObject(o, "dry_run");
	t = cJSON_AddObjectToObject(o, "topics");
	for (i = 0; i < d->ntopics; i++)
		cJSON_AddItemToObject(t, d->topics[i].name,
		    counts_json(&d->topics[i].n));
	if ((s = cJSON_PrintUnformatted(o)) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	puts(s);
	free(s);
	cJSON_Delete(o);
}

/*
 * The consumer's own defaults (kafka_assigned_new()): it never joins group
 * o.group, assigns itself partitions and commits explicit offsets.  -X
 * comes last and wins; enable.auto.commit=true would not commit anything
 * anyway, since no offset is ever stored.
 */
static const char *const consumer_defaults[] = {
	"enable.auto.commit", "false",
	"enable.auto.offset.store", "false",
	"auto.offset.reset", "earliest",
	"enable.partition.eof", "true",
	"log.connection.close", "false",
	NULL
};

/* Kafka handles, then the plan; OF_EXIT_OK or why not. */
static int
open_kafka(struct dr *d)
{
	rd_kafka_resp_err_t err;
	char buf[512];

	if ((d->track = offtrack_new()) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	if ((d->rk = kafka_assigned_new(&d->o, consumer_defaults, buf,
	    sizeof(buf))) == NULL) {
		log_error("%s", buf);
		return OF_EXIT_USAGE;
	}
	if ((err = kafka_wait_reachable(d->rk, REQUEST_MS)) !=
	    RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("Kafka unreachable at %s: %s", d->o.brokers,
		    rd_kafka_err2str(err));
		return OF_EXIT_KAFKA;
	}
	if (!d->dry_run && (d->p = kafka_producer_new(&d->o, buf,
	    sizeof(buf))) == NULL) {
		log_error("%s", buf);
		return OF_EXIT_USAGE;
	}
	return plan(d);
}

/*
 * Waits for the last acknowledgements (their callbacks mark records
 * done), purges what is still queued (counted as failed), commits what
 * is done, and closes.
 */
static void
close_kafka(struct dr *d)
{
	int left;

	if (d->p != NULL) {
		if ((left = kafka_flush(d->p, FLUSH_MS)) > 0) {
			log_error("%d replay(s) not acknowledged within %d s",
			    left, FLUSH_MS / 1000);
			d->kafka_err = 1;
		}
		kafka_producer_destroy(d->p);
		d->p = NULL;
	}
	if (d->rk != NULL) {
		if (!d->dry_run && commit(d, 1) == -1) {
			log_error("progress not committed: the next run "
			    "replays these records again");
			d->kafka_err = 1;
		}
		rd_kafka_consumer_close(d->rk);
		kafka_destroy(d->rk);
		d->rk = NULL;
	}
	offtrack_free(d->track);
	d->track = NULL;
}

int
main(int argc, char **argv)
{
	static const int stop_signals[] = { SIGINT, SIGTERM, 0 };
	static struct dr d;
	int rc, lockfd;

	log_init(argv[0]);
	opt_init(&d.o, usage);
	d.max_replays = DEF_MAX_REPLAYS;
	d.since = INT64_MIN;
	d.until = INT64_MAX;
	parse_options(&d, argc, argv);

	lockfd = lock(&d);
	util_signals_catch(stop_signals, 0, NULL);
	d.tty = isatty(STDERR_FILENO) && log_level() >= LOG_LEVEL_INFO;

	if ((rc = open_kafka(&d)) == OF_EXIT_OK) {
		if (!all_done(&d) && assign(&d) == 0)
			consume(&d);
		else if (!all_done(&d))
			d.kafka_err = 1;
		close_kafka(&d);
		summary(&d);
		rc = d.kafka_err || d.total.n[FAILED] > 0 ? OF_EXIT_KAFKA :
		    OF_EXIT_OK;
	} else
		close_kafka(&d);
	if (util_stdout_flush() == -1)
		rc = OF_EXIT_FAIL;
	close(lockfd);
	free(d.topics);
	free(d.parts);
	opt_free(&d.o);
	return rc;
}
