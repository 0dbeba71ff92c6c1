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

#include "codec.h"
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
	size_t		 topic;		/* index in run.topics */
	int32_t		 partition;
	int64_t		 start;		/* the first offset to look at */
	int64_t		 end;		/* the high watermark at start: stop */
	int64_t		 sent;		/* last offset committed in the background */
	int		 done;		/* every record below end was seen */
};

/* One run of the command: its options, Kafka handles, partitions, counts. */
struct run {
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
	struct run	*run;
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
add_topic(struct run *run, const char *name)
{
	size_t i;

	for (i = 0; i < run->ntopics; i++)
		if (strcmp(run->topics[i].name, name) == 0)
			return;
	run->topics = reallocarray(run->topics, run->ntopics + 1,
	    sizeof(*run->topics));
	if (run->topics == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	memset(&run->topics[run->ntopics], 0, sizeof(*run->topics));
	run->topics[run->ntopics++].name = name;
}

static void
parse_options(struct run *run, int argc, char **argv)
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
			run->lockfile = optarg;
			break;
		case 't':
			add_topic(run, optarg);
			break;
		case OPT_DRY_RUN:
			run->dry_run = 1;
			break;
		case OPT_KIND:
			run->kind = optarg;
			break;
		case OPT_MAX:
			run->max = opt_number("--max", optarg, 1, 1000000000);
			break;
		case OPT_MAX_REPLAYS:
			run->max_replays = opt_number("--max-replays", optarg,
			    1, 1000000);
			break;
		case OPT_RATE:
			run->rate = opt_number("--rate", optarg, 1, 1000000);
			break;
		case OPT_SINCE:
			run->since = when("--since", optarg);
			break;
		case OPT_TO:
			run->to = optarg;
			break;
		case OPT_TYPE:
			run->type = optarg;
			break;
		case OPT_UNTIL:
			run->until = when("--until", optarg);
			break;
		default:
			if (!opt_common(&run->o, ch, optarg)) {
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
	if (run->since > run->until) {
		log_error("--since is after --until: nothing could match");
		usage();
		exit(OF_EXIT_USAGE);
	}
	if ((run->to != NULL && *run->to == '\0') ||
	    (run->lockfile != NULL && *run->lockfile == '\0')) {
		log_error("--to and -l take a non-empty name");
		usage();
		exit(OF_EXIT_USAGE);
	}
	if (run->ntopics == 0)
		for (i = 0; i < FLOW_NDLQ; i++)
			add_topic(run, opt_topic(&run->o, flow_dlq_topics[i]));
}

/*
 * flock(2) on the lock file, held until exit; the file is never removed
 * (removing it would let two runs lock two different files).  Exits 5
 * when another run holds it.
 */
static int
lock(struct run *run)
{
	static char def[PATH_MAX];
	int fd;

	if (run->lockfile == NULL) {
		snprintf(def, sizeof(def), "%s/lock", opt_state_dir(&run->o));
		run->lockfile = def;
		if (util_mkdir_p(opt_state_dir(&run->o), 0700) == -1)
			log_fatal(OF_EXIT_FAIL, "%s: %s",
			    opt_state_dir(&run->o), strerror(errno));
	}
	if ((fd = util_lock(run->lockfile)) == -1) {
		if (errno == EWOULDBLOCK)
			log_fatal(OF_EXIT_BUSY, "%s: another run holds the lock",
			    run->lockfile);
		log_fatal(OF_EXIT_FAIL, "%s: %s", run->lockfile,
		    strerror(errno));
	}
	return fd;
}

static size_t
topic_index(const struct run *run, const char *name)
{
	size_t i;

	for (i = 0; i < run->ntopics; i++)
		if (strcmp(run->topics[i].name, name) == 0)
			return i;
	return (size_t)-1;
}

static struct part *
part_find(struct run *run, const char *topic, int32_t partition)
{
	size_t i, t;

	if ((t = topic_index(run, topic)) == (size_t)-1)
		return NULL;
	for (i = 0; i < run->nparts; i++)
		if (run->parts[i].topic == t &&
		    run->parts[i].partition == partition)
			return &run->parts[i];
	return NULL;
}

/* The partitions of every topic; a topic that does not exist is an error. */
static int
plan_parts(struct run *run, rd_kafka_t *rk)
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
		if (topic_index(run, md->topics[j].topic) != (size_t)-1)
			n += md->topics[j].partition_cnt;
	run->parts = util_xcalloc(n, sizeof(*run->parts));
	for (i = 0; i < run->ntopics; i++) {
		for (j = 0, mt = NULL; j < md->topic_cnt && mt == NULL; j++)
			if (strcmp(md->topics[j].topic,
			    run->topics[i].name) == 0)
				mt = &md->topics[j];
		if (mt == NULL || mt->err != RD_KAFKA_RESP_ERR_NO_ERROR ||
		    mt->partition_cnt == 0) {
			log_error("%s: %s", run->topics[i].name, mt == NULL ?
			    "no such topic" : rd_kafka_err2str(mt->err));
			missing++;
			continue;
		}
		for (k = 0; k < mt->partition_cnt; k++) {
			run->parts[run->nparts].topic = i;
			run->parts[run->nparts++].partition =
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
plan(struct run *run)
{
	rd_kafka_t *rk = run->rk;
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	struct part *pt;
	int64_t lo, hi, committed;
	size_t i;
	int rc;

	if ((rc = plan_parts(run, rk)) != OF_EXIT_OK)
		return rc;
	l = rd_kafka_topic_partition_list_new((int)run->nparts);
	for (i = 0; i < run->nparts; i++)
		rd_kafka_topic_partition_list_add(l,
		    run->topics[run->parts[i].topic].name,
		    run->parts[i].partition);
	if ((err = kafka_committed(rk, l, REQUEST_MS)) !=
	    RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("cannot read the offsets of group %s: %s",
		    run->o.group, rd_kafka_err2str(err));
		rd_kafka_topic_partition_list_destroy(l);
		return OF_EXIT_KAFKA;
	}
	for (i = 0; i < run->nparts; i++) {
		pt = &run->parts[i];
		committed = l->elems[i].offset;	/* < 0: none */
		err = kafka_watermarks(rk, run->topics[pt->topic].name,
		    pt->partition, &lo, &hi, REQUEST_MS);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			log_error("%s [%d]: cannot read the watermarks: %s",
			    run->topics[pt->topic].name, (int)pt->partition,
			    rd_kafka_err2str(err));
			rd_kafka_topic_partition_list_destroy(l);
			return OF_EXIT_KAFKA;
		}
		pt->start = committed > lo ? committed : lo;
		pt->sent = pt->start;
		pt->end = hi;
		pt->done = pt->start >= pt->end;
		if (!pt->done)
			run->work += pt->end - pt->start;
		log_debug("%s [%d]: offsets %" PRId64 " to %" PRId64,
		    run->topics[pt->topic].name, (int)pt->partition, pt->start,
		    pt->end);
	}
	rd_kafka_topic_partition_list_destroy(l);
	return OF_EXIT_OK;
}

static int
all_done(const struct run *run)
{
	size_t i;

	for (i = 0; i < run->nparts; i++)
		if (!run->parts[i].done)
			return 0;
	return 1;
}

/* Stops fetching a finished partition: what comes after is the next run's. */
static void
part_finish(struct run *run, struct part *pt)
{
	rd_kafka_topic_partition_list_t *l;

	if (pt->done)
		return;
	pt->done = 1;
	l = kafka_one_partition(run->topics[pt->topic].name, pt->partition,
	    RD_KAFKA_OFFSET_INVALID);
	rd_kafka_pause_partitions(run->rk, l);
	rd_kafka_topic_partition_list_destroy(l);
}

/* Consumes every partition with work from its start offset. */
static int
assign(struct run *run)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	size_t i;

	l = rd_kafka_topic_partition_list_new((int)run->nparts);
	for (i = 0; i < run->nparts; i++)
		if (!run->parts[i].done)
			rd_kafka_topic_partition_list_add(l,
			    run->topics[run->parts[i].topic].name,
			    run->parts[i].partition)->offset =
			    run->parts[i].start;
	err = rd_kafka_assign(run->rk, l);
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
commit(struct run *run, int sync)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	struct part *pt;
	int64_t next;
	size_t i;
	int j;

	l = rd_kafka_topic_partition_list_new((int)run->nparts);
	for (i = 0; i < run->nparts; i++) {
		pt = &run->parts[i];
		if (offtrack_committable(run->track,
		    run->topics[pt->topic].name, pt->partition, &next) &&
		    next > (sync ? pt->start : pt->sent)) {
			rd_kafka_topic_partition_list_add(l,
			    run->topics[pt->topic].name,
			    pt->partition)->offset = next;
			pt->sent = next;
		}
	}
	if (l->cnt == 0) {
		rd_kafka_topic_partition_list_destroy(l);
		return 0;
	}
	err = rd_kafka_commit(run->rk, l, !sync);
	for (j = 0; sync && err == RD_KAFKA_RESP_ERR_NO_ERROR && j < l->cnt;
	    j++)
		err = l->elems[j].err;
	rd_kafka_topic_partition_list_destroy(l);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("kafka: cannot commit the offsets of group %s: %s",
		    run->o.group, rd_kafka_err2str(err));
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

/* Type s is T, or T.vN for any version N. */
static int
type_is(const char *s, const char *want)
{
	size_t n = strlen(want);

	if (strcmp(s, want) == 0)
		return 1;
	return strncmp(s, want, n) == 0 && s[n] == '.' && s[n + 1] == 'v' &&
	    s[n + 2] != '\0' &&
	    strspn(s + n + 2, "0123456789") == strlen(s + n + 2);
}

/*
 * --type T matches type T, and T.vN for any version N: the JSON event's
 * type, or an Avro record's ce_type header (orderflow(7), FORMATS).
 */
static int
type_matches(const char *want, const rd_kafka_message_t *m,
    const rd_kafka_headers_t *h)
{
	const cJSON *t;
	cJSON *j;
	char type[EVENT_TYPE_MAX + 1];
	int ok = 0;

	if (codec_is_avro(h))
		return kafka_header_get_str(h, FLOW_H_CE_TYPE, type,
		    sizeof(type)) >= 0 && type_is(type, want);
	if (m->payload == NULL || (j = cJSON_ParseWithLength(m->payload,
	    m->len)) == NULL)
		return 0;
	t = cJSON_GetObjectItemCaseSensitive(j, "type");
	if (cJSON_IsString(t))
		ok = type_is(t->valuestring, want);
	cJSON_Delete(j);
	return ok;
}

/* Whether the record passes --kind, --type, --since and --until. */
static int
selected(const struct run *run, const rd_kafka_message_t *m,
    const rd_kafka_headers_t *h)
{
	char kind[64];
	int64_t ts;

	if (run->kind != NULL && (kafka_header_get_str(h, FLOW_H_ERROR_KIND,
	    kind, sizeof(kind)) < 0 || strcmp(kind, run->kind) != 0))
		return 0;
	if (run->since != INT64_MIN || run->until != INT64_MAX) {
		ts = rd_kafka_message_timestamp(m, NULL);
		if (ts < 0 || ts < run->since || ts >= run->until)
			return 0;
	}
	if (run->type != NULL && !type_matches(run->type, m, h))
		return 0;
	return 1;
}

static void
count(struct run *run, size_t topic, enum outcome what)
{
	run->topics[topic].n.n[what]++;
	run->total.n[what]++;
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
	struct run *run = f->run;
	const char *topic = run->topics[f->topic].name;

	(void)partition;
	(void)offset;
	run->activity = util_mono_ms();
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		count(run, f->topic, REPLAYED);
		offtrack_done(run->track, topic, f->partition, f->offset);
	} else {
		count(run, f->topic, FAILED);
		log_error("%s [%d] offset %" PRId64 ": replay not acknowledged:"
		    " %s", topic, (int)f->partition, f->offset,
		    rd_kafka_err2str(err));
	}
	free(f);
}

/* --rate: waits for the next replay's turn, serving deliveries. */
static int
pace(struct run *run)
{
	int64_t now;
	double due;

	if (run->rate == 0)
		return 0;
	now = util_mono_ms();
	due = run->next_due > now ? run->next_due : now;
	while (!util_signal_caught() && (now = util_mono_ms()) < due)
		kafka_poll(run->p, due - now < POLL_MS ? (int)(due - now) + 1 :
		    POLL_MS);
	run->next_due = due + 1000.0 / run->rate;
	return util_signal_caught() ? -1 : 0;
}

static void
replay(struct run *run, const rd_kafka_message_t *m, size_t topic,
    const char *target, rd_kafka_headers_t *hdrs)
{
	struct inflight *f;
	rd_kafka_resp_err_t err;
	char why[512];

	if (pace(run) == -1) {
		/* Tracked and not done: never committed past. */
		rd_kafka_headers_destroy(hdrs);
		return;
	}
	f = util_xcalloc(1, sizeof(*f));
	f->run = run;
	f->topic = topic;
	f->partition = m->partition;
	f->offset = m->offset;
	err = kafka_produce(run->p, target, m->key, m->key_len, m->payload,
	    m->len, hdrs, delivered, f);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_debug("%s [%d] offset %" PRId64 ": replayed to %s",
		    run->topics[topic].name, (int)m->partition, m->offset,
		    target);
		return;
	}
	rd_kafka_headers_destroy(hdrs);
	free(f);
	count(run, topic, FAILED);
	log_error("%s [%d] offset %" PRId64 ": cannot replay to %s: %s",
	    run->topics[topic].name, (int)m->partition, m->offset, target,
	    rd_kafka_err2str(err));
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		if (kafka_fatal(kafka_producer_rk(run->p), why, sizeof(why)))
			log_error("kafka: %s", why);
		run->kafka_err = 1;
		run->stop = 1;
	}
}

/*
 * One record of a partition below its watermark: replayed, skipped or
 * parked.  With --dry-run nothing is tracked, so nothing is committed.
 */
static void
handle(struct run *run, const rd_kafka_message_t *m, struct part *pt)
{
	const rd_kafka_headers_t *h;
	rd_kafka_headers_t *hdrs;
	const char *target;
	char orig[512];
	int64_t replays = 0;
	int r;

	h = kafka_msg_headers(m);
	if (!selected(run, m, h)) {
		count(run, pt->topic, SKIPPED);
		goto done;
	}
	if ((r = kafka_header_get_int64(h, FLOW_H_REPLAY_COUNT, &replays)) == -2) {
		log_warn("%s [%d] offset %" PRId64 ": bad %s header: taken "
		    "as 0", run->topics[pt->topic].name, (int)m->partition,
		    m->offset, FLOW_H_REPLAY_COUNT);
		replays = 0;
	} else if (r == -1 || replays < 0)
		replays = 0;
	if (replays >= run->max_replays) {
		count(run, pt->topic, PARKED);
		log_info("%s [%d] offset %" PRId64 ": parked: replayed %"
		    PRId64 " times already", run->topics[pt->topic].name,
		    (int)m->partition, m->offset, replays);
		goto done;
	}
	target = run->to;
	if (target == NULL) {
		if (kafka_header_get_str(h, FLOW_H_ORIG_TOPIC, orig,
		    sizeof(orig)) <= 0) {
			count(run, pt->topic, SKIPPED);
			log_warn("%s [%d] offset %" PRId64 ": no %s header "
			    "and no --to: skipped", run->topics[pt->topic].name,
			    (int)m->partition, m->offset, FLOW_H_ORIG_TOPIC);
			goto done;
		}
		target = orig;
	}
	hdrs = kafka_headers_copy_except(h, reset_headers);
	kafka_header_add_int64(hdrs, FLOW_H_REPLAY_COUNT, replays + 1);
	run->started++;
	if (run->dry_run) {
		print_record(m, target, hdrs);
		rd_kafka_headers_destroy(hdrs);
		count(run, pt->topic, REPLAYED);
		return;
	}
	replay(run, m, pt->topic, target, hdrs);
	return;
done:
	if (!run->dry_run)
		offtrack_done(run->track, run->topics[pt->topic].name,
		    m->partition, m->offset);
}

/* A record from the consumer: this run's business only below the watermark. */
static void
take(struct run *run, const rd_kafka_message_t *m)
{
	struct part *pt;

	pt = part_find(run, rd_kafka_topic_name(m->rkt), m->partition);
	if (pt == NULL || pt->done)
		return;
	if (m->offset >= pt->end) {
		part_finish(run, pt);
		return;
	}
	if (run->max > 0 && run->started >= (uint64_t)run->max) {
		/* Untracked: the next run starts here. */
		run->stop = 1;
		return;
	}
	run->looked++;
	if (!run->dry_run && offtrack_begin(run->track,
	    run->topics[pt->topic].name, m->partition, m->offset) == -1)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	handle(run, m, pt);
	if (m->offset >= pt->end - 1)
		part_finish(run, pt);
}

static void
draw(struct run *run, int last)
{
	char left[32];
	double rate;
	int64_t now, secs;
	uint64_t todo;

	if (!run->tty)
		return;
	if (last) {
		fputs("\r\033[K", stderr);
		return;
	}
	now = util_mono_ms();
	if (now - run->drawn < PROGRESS_MS)
		return;
	run->drawn = now;
	rate = now > run->t0 ? run->looked * 1000.0 / (now - run->t0) : 0;
	todo = run->work > run->looked ? run->work - run->looked : 0;
	if (rate > 0) {
		secs = (int64_t)(todo / rate);
		snprintf(left, sizeof(left), "%" PRId64 ":%02d", secs / 60,
		    (int)(secs % 60));
	} else
		snprintf(left, sizeof(left), "?");
	fprintf(stderr, "\r%s: %" PRIu64 "/%" PRIu64 " records, %" PRIu64
	    " replayed, %.1f/s, %s left\033[K", log_progname(), run->looked,
	    run->work, run->total.n[REPLAYED], rate, left);
}

/* A record, or an event: the end of a partition, an error. */
static void
message(struct run *run, const rd_kafka_message_t *m)
{
	struct part *pt;
	char why[512];

	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		run->activity = util_mono_ms();
		run->last_err = RD_KAFKA_RESP_ERR_NO_ERROR;
		take(run, m);
		return;
	}
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		/* Past end - 1 even if the last offsets hold no record. */
		run->activity = util_mono_ms();
		if (m->rkt != NULL && (pt = part_find(run,
		    rd_kafka_topic_name(m->rkt), m->partition)) != NULL &&
		    m->offset >= pt->end)
			part_finish(run, pt);
		return;
	}
	if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
		if (kafka_fatal(run->rk, why, sizeof(why)))
			log_error("kafka: %s", why);
		run->kafka_err = 1;
		run->stop = 1;
		return;
	}
	/* The same error again and again is logged once. */
	if (m->err != run->last_err)
		log_warn("kafka: consume%s%s: %s", m->rkt != NULL ? " " : "",
		    m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : "",
		    rd_kafka_message_errstr(m));
	run->last_err = m->err;
}

static void
consume(struct run *run)
{
	rd_kafka_message_t *m;
	int64_t now;
	char why[512];

	run->t0 = run->activity = run->commit_ms = util_mono_ms();
	while (!util_signal_caught() && !run->stop && !all_done(run)) {
		if (run->p != NULL)
			kafka_poll(run->p, 0);
		if ((m = rd_kafka_consumer_poll(run->rk, POLL_MS)) != NULL) {
			message(run, m);
			rd_kafka_message_destroy(m);
		}
		if (run->p != NULL &&
		    kafka_fatal(kafka_producer_rk(run->p), why, sizeof(why))) {
			log_error("kafka: %s", why);
			run->kafka_err = 1;
			break;
		}
		now = util_mono_ms();
		if (!run->dry_run && now - run->commit_ms >= COMMIT_MS) {
			run->commit_ms = now;
			(void)commit(run, 0);	/* the last one is checked */
		}
		if (now - run->activity >= IDLE_MS) {
			log_error("no record for %d s below the watermarks: "
			    "giving up", IDLE_MS / 1000);
			run->kafka_err = 1;
			break;
		}
		draw(run, 0);
	}
	draw(run, 1);
	if (util_signal_caught())
		log_info("interrupted: the rest waits for the next run");
	else if (run->max > 0 && run->started >= (uint64_t)run->max)
		log_info("--max %lld reached: the rest waits for the next run",
		    run->max);
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
summary(const struct run *run)
{
	cJSON *o, *t;
	char *s;
	size_t i;

	o = counts_json(&run->total);
	if (run->dry_run)
		cJSON_AddTrueToObject(o, "dry_run");
	t = cJSON_AddObjectToObject(o, "topics");
	for (i = 0; i < run->ntopics; i++)
		cJSON_AddItemToObject(t, run->topics[i].name,
		    counts_json(&run->topics[i].n));
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
open_kafka(struct run *run)
{
	rd_kafka_resp_err_t err;
	char buf[512];

	if ((run->track = offtrack_new()) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	if ((run->rk = kafka_assigned_new(&run->o, consumer_defaults, buf,
	    sizeof(buf))) == NULL) {
		log_error("%s", buf);
		return OF_EXIT_USAGE;
	}
	if ((err = kafka_wait_reachable(run->rk, REQUEST_MS)) !=
	    RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("Kafka unreachable at %s: %s", run->o.brokers,
		    rd_kafka_err2str(err));
		return OF_EXIT_KAFKA;
	}
	if (!run->dry_run && (run->p = kafka_producer_new(&run->o, buf,
	    sizeof(buf))) == NULL) {
		log_error("%s", buf);
		return OF_EXIT_USAGE;
	}
	return plan(run);
}

/*
 * Waits for the last acknowledgements (their callbacks mark records
 * done), purges what is still queued (counted as failed), commits what
 * is done, and closes.
 */
static void
close_kafka(struct run *run)
{
	int left;

	if (run->p != NULL) {
		if ((left = kafka_flush(run->p, FLUSH_MS)) > 0) {
			log_error("%d replay(s) not acknowledged within %d s",
			    left, FLUSH_MS / 1000);
			run->kafka_err = 1;
		}
		kafka_producer_destroy(run->p);
		run->p = NULL;
	}
	if (run->rk != NULL) {
		if (!run->dry_run && commit(run, 1) == -1) {
			log_error("progress not committed: the next run "
			    "replays these records again");
			run->kafka_err = 1;
		}
		rd_kafka_consumer_close(run->rk);
		kafka_destroy(run->rk);
		run->rk = NULL;
	}
	offtrack_free(run->track);
	run->track = NULL;
}

int
main(int argc, char **argv)
{
	static const int stop_signals[] = { SIGINT, SIGTERM, 0 };
	static struct run run;
	int rc, lockfd;

	log_init(argv[0]);
	opt_init(&run.o, usage);
	run.max_replays = DEF_MAX_REPLAYS;
	run.since = INT64_MIN;
	run.until = INT64_MAX;
	parse_options(&run, argc, argv);

	lockfd = lock(&run);
	util_signals_catch(stop_signals, 0, NULL);
	run.tty = isatty(STDERR_FILENO) && log_level() >= LOG_LEVEL_INFO;

	if ((rc = open_kafka(&run)) == OF_EXIT_OK) {
		if (!all_done(&run) && assign(&run) == 0)
			consume(&run);
		else if (!all_done(&run))
			run.kafka_err = 1;
		close_kafka(&run);
		summary(&run);
		rc = run.kafka_err || run.total.n[FAILED] > 0 ? OF_EXIT_KAFKA :
		    OF_EXIT_OK;
	} else
		close_kafka(&run);
	if (util_stdout_flush() == -1)
		rc = OF_EXIT_FAIL;
	close(lockfd);
	free(run.topics);
	free(run.parts);
	opt_free(&run.o);
	return rc;
}
