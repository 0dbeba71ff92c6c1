/*
 * topic-admin - creates orderflow's six topics, lists and describes
 * topics, deletes them, shows consumer-group lag and waits for a broker,
 * through librdkafka's Admin API; and registers the flow's Avro schemas in
 * a schema registry and shows its subjects (schemas).
 *
 * Data (an aligned table, or JSON lines with -J) goes to stdout, logs to
 * stderr.  Every request to Kafka is bounded by -m seconds: an unreachable
 * broker costs one line on stderr and exit status 4, never a hang and
 * never librdkafka's own log lines (those appear with -v).  The schemas
 * commands talk to the registry only (registry.c, each request bounded by
 * REGISTRY_TIMEOUT_MS) and open no Kafka client: a registry that does not
 * answer is exit status 1, as 4 means Kafka.
 *
 * The rows are printed by table.c.  What remains stays one file, longer
 * than most: its subcommands are short flows over one admin handle (or
 * one registry client) and share the bounded request, the retry while a
 * coordinator moves and the one way out (ta_exit(), check_interrupt()),
 * which a split would have to export.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <librdkafka/rdkafka.h>

#include "exitcode.h"
#include "flow.h"
#include "kafka.h"
#include "log.h"
#include "opt.h"
#include "registry.h"
#include "schemas.h"
#include "table.h"
#include "util.h"

#define DEF_PARTITIONS	6
#define DEF_TIMEOUT_S	10
#define DLQ_RETENTION	"1209600000"	/* 14 days in ms */
#define SLICE_MS	500		/* longest wait between SIGINT checks */
#define WAIT_POLL_MS	200		/* wait: pause between two rounds */
#define SUBJECT_SUFFIX	"-value"	/* TopicNameStrategy: TOPIC-value */
#define SCHEMA_COMPAT	"BACKWARD"	/* the level the flow's subjects get */
#define SCHEMA_MAXFILE	(1024 * 1024)	/* longest schema file read */

enum {
	OPT_DRY_RUN = OPT_CMD_FIRST,
	OPT_YES,
	OPT_SCHEMA_REGISTRY
};

/* Options that only some commands take, to reject them elsewhere. */
enum {
	GIVEN_P = 1 << 0,
	GIVEN_R = 1 << 1,
	GIVEN_T = 1 << 2,
	GIVEN_DRY_RUN = 1 << 3,
	GIVEN_YES = 1 << 4,
	GIVEN_G = 1 << 5,
	GIVEN_SR = 1 << 6	/* also: the command talks to the registry */
};

struct ta {
	struct opt_kafka		 o;
	rd_kafka_t			*rk;
	rd_kafka_queue_t		*q;
	const rd_kafka_metadata_t	*md;
	int				 json;
	int				 timeout_s;
	int				 given;
	long long			 partitions;
	long long			 replication;
	const char			**topics;	/* -t */
	size_t				 ntopics;
	const char			*group;		/* -G */
	const char			*registry_url;	/* --schema-registry */
	struct registry			*reg;
	int				 curl;	/* curl_global_init() done */
};

struct cmd {
	const char	*name;
	int		(*fn)(struct ta *, int, char **);
	int		 minargs;
	int		 maxargs;	/* -1: any number */
	int		 allowed;	/* GIVEN_* this command takes */
};

static struct ta ta;

/* The topics to work on: -t's, else the six of the flow under the prefix. */
static const char *const *
topic_names(struct ta *t, size_t *n)
{
	static const char *prefixed[FLOW_NTOPICS];
	size_t i;

	if (t->ntopics != 0) {
		*n = t->ntopics;
		return t->topics;
	}
	for (i = 0; i < FLOW_NTOPICS; i++)
		prefixed[i] = opt_topic(&t->o, flow_topics[i]);
	*n = FLOW_NTOPICS;
	return prefixed;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: %s [-hJqVv] [-b brokers] [-F file] [-G group] "
	    "[-m seconds]\n"
	    "           [-X name=value] [--log-format format] "
	    "[--topic-prefix prefix]\n"
	    "           command [arg ...]\n"
	    "       %s create [--dry-run] [-p partitions] [-r replication] "
	    "[-t topic]\n"
	    "       %s list\n"
	    "       %s describe topic ...\n"
	    "       %s delete --yes topic ...\n"
	    "       %s lag [group ...]\n"
	    "       %s wait [-t topic]\n"
	    "       %s schemas [--schema-registry url]\n"
	    "       %s schemas show [--schema-registry url] [subject ...]\n"
	    "       %s schemas register [--schema-registry url] subject "
	    "file\n",
	    log_progname(), log_progname(), log_progname(), log_progname(),
	    log_progname(), log_progname(), log_progname(), log_progname(),
	    log_progname(), log_progname());
}

/* Releases librdkafka (and its threads) and what the command holds. */
static void
ta_release(struct ta *t)
{
	if (t->md != NULL)
		rd_kafka_metadata_destroy(t->md);
	if (t->q != NULL)
		rd_kafka_queue_destroy(t->q);
	if (t->rk != NULL)
		kafka_destroy(t->rk);
	t->md = NULL;
	t->q = NULL;
	t->rk = NULL;
	registry_free(t->reg);
	t->reg = NULL;
	if (t->curl)
		curl_global_cleanup();
	t->curl = 0;
	free(t->topics);
	t->topics = NULL;
	opt_free(&t->o);
}

/*
 * Every way out but a signal: checks that stdout was really written; a
 * failed write turns success into failure.
 */
static void __attribute__((noreturn))
ta_exit(struct ta *t, int code)
{
	ta_release(t);
	if (util_stdout_flush() == -1 && code == OF_EXIT_OK)
		code = OF_EXIT_FAIL;
	exit(code);
}

/*
 * Called wherever the command waits.  A command interrupted by SIGINT,
 * SIGTERM or SIGHUP cleans up and dies by that signal, as the shell
 * expects; rows not yet printed are lost.
 */
static void
check_interrupt(struct ta *t)
{
	int sig = util_signal_caught();

	if (sig == 0)
		return;
	log_debug("interrupted");
	ta_release(t);
	fflush(stdout);
	signal(sig, SIG_DFL);
	raise(sig);
	exit(OF_EXIT_FAIL);
}

static void
pause_ms(struct ta *t, long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);	/* EINTR: the signal is checked next */
	check_interrupt(t);
}

static int
is_timeout(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR__TIMED_OUT ||
	    err == RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE ||
	    err == RD_KAFKA_RESP_ERR__TRANSPORT ||
	    err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
	    err == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT;
}

/* The one line an unreachable broker costs, then exit 4. */
static void __attribute__((noreturn))
unreachable(struct ta *t)
{
	rd_kafka_resp_err_t auth_err;

	/* Error callbacks wait in the main queue until served. */
	rd_kafka_poll(t->rk, 0);
	if ((auth_err = kafka_auth_error(t->rk)) != 0)
		log_error("%s: broker unreachable after %d s: %s",
		    t->o.brokers, t->timeout_s, rd_kafka_err2str(auth_err));
	else
		log_error("%s: broker unreachable after %d s", t->o.brokers,
		    t->timeout_s);
	ta_exit(t, OF_EXIT_KAFKA);
}

/* A request that failed as a whole: 4 if Kafka did not answer, else 1. */
static void __attribute__((noreturn))
request_failed(struct ta *t, const char *what, rd_kafka_resp_err_t err,
    const char *errstr)
{
	if (is_timeout(err)) {
		log_error("%s: no answer from %s within %d s", what,
		    t->o.brokers, t->timeout_s);
		ta_exit(t, OF_EXIT_KAFKA);
	}
	log_error("%s: %s", what, errstr != NULL ? errstr :
	    rd_kafka_err2str(err));
	ta_exit(t, OF_EXIT_FAIL);
}

/*
 * group: open a consumer handle with a consumer group of its own, never
 * joined, for lag.  librdkafka (2.0.2 here; upstream issue 5040)
 * handles NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE in the answer to
 * ListConsumerGroupOffsets by asking the handle's own group to look up its
 * coordinator again; a handle without a group has none, and its thread
 * dereferences NULL: SIGSEGV, with no sanitizer report as librdkafka's
 * threads block signals.  Brokers answer so while group coordinators load
 * or move, e.g. in the first seconds after a broker starts.
 */
static void
admin_open(struct ta *t, int group)
{
	char err[1024];

	/* Admin requests only: neither handle produces nor joins a group. */
	if ((t->rk = kafka_admin_new(&t->o, group ? log_progname() : NULL,
	    NULL, err, sizeof(err))) == NULL) {
		log_error("%s", err);
		ta_exit(t, OF_EXIT_USAGE);
	}
	t->q = rd_kafka_queue_new(t->rk);
}

/* One metadata request of at most ms; replaces t->md on success. */
static rd_kafka_resp_err_t
metadata_try(struct ta *t, int ms)
{
	const rd_kafka_metadata_t *md;
	rd_kafka_resp_err_t err;

	err = rd_kafka_metadata(t->rk, 1, NULL, &md, ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return err;
	if (t->md != NULL)
		rd_kafka_metadata_destroy(t->md);
	t->md = md;
	return err;
}

/* Metadata for all topics, or exit 4 once -m seconds have passed. */
static const rd_kafka_metadata_t *
metadata_get(struct ta *t)
{
	int64_t deadline = util_mono_ms() + t->timeout_s * 1000LL, left;
	rd_kafka_resp_err_t err;

	while ((left = deadline - util_mono_ms()) > 0) {
		err = metadata_try(t, left < SLICE_MS ? (int)left : SLICE_MS);
		check_interrupt(t);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return t->md;
		if (!is_timeout(err))
			request_failed(t, "metadata", err, NULL);
	}
	unreachable(t);
}

static const rd_kafka_metadata_topic_t *
topic_find(const rd_kafka_metadata_t *md, const char *name)
{
	int i;

	for (i = 0; i < md->topic_cnt; i++)
		if (strcmp(md->topics[i].topic, name) == 0)
			return &md->topics[i];
	return NULL;
}

static rd_kafka_AdminOptions_t *
admin_options(struct ta *t, rd_kafka_admin_op_t op)
{
	rd_kafka_AdminOptions_t *ao;
	char err[512];
	int ms = t->timeout_s * 1000;

	ao = rd_kafka_AdminOptions_new(t->rk, op);
	if (rd_kafka_AdminOptions_set_request_timeout(ao, ms, err,
	    sizeof(err)) != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_fatal(OF_EXIT_FAIL, "request timeout: %s", err);
	if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS ||
	    op == RD_KAFKA_ADMIN_OP_DELETETOPICS)
		rd_kafka_AdminOptions_set_operation_timeout(ao, ms, err,
		    sizeof(err));
	return ao;
}

/*
 * Waits for the result of the admin request just sent on t->q; its request
 * timeout bounds the wait.  Returns the event, or NULL with *err and
 * errstr set when the request failed as a whole.
 */
static rd_kafka_event_t *
admin_try(struct ta *t, rd_kafka_AdminOptions_t *ao, rd_kafka_resp_err_t *err,
    char *errstr, size_t len)
{
	rd_kafka_event_t *ev;

	while ((ev = rd_kafka_queue_poll(t->q, SLICE_MS)) == NULL)
		check_interrupt(t);
	rd_kafka_AdminOptions_destroy(ao);
	if ((*err = rd_kafka_event_error(ev)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errstr, len, "%s", rd_kafka_event_error_string(ev));
		rd_kafka_event_destroy(ev);
		return NULL;
	}
	return ev;
}

/* admin_try(), a request-level error ending the command. */
static rd_kafka_event_t *
admin_wait(struct ta *t, rd_kafka_AdminOptions_t *ao, const char *what)
{
	rd_kafka_event_t *ev;
	rd_kafka_resp_err_t err;
	char errstr[512];

	if ((ev = admin_try(t, ao, &err, errstr, sizeof(errstr))) == NULL)
		request_failed(t, what, err, errstr);
	return ev;
}

/* DescribeConfigs for topics; the caller destroys the event. */
static rd_kafka_event_t *
configs_describe(struct ta *t, const char *const *names, size_t n)
{
	rd_kafka_ConfigResource_t **res;
	rd_kafka_AdminOptions_t *ao;
	rd_kafka_event_t *ev;
	size_t i;

	res = util_xcalloc(n, sizeof(*res));
	for (i = 0; i < n; i++)
		res[i] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC,
		    names[i]);
	ao = admin_options(t, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
	rd_kafka_DescribeConfigs(t->rk, res, n, ao, t->q);
	rd_kafka_ConfigResource_destroy_array(res, n);
	free(res);
	ev = admin_wait(t, ao, "describe configs");
	return ev;
}

/* The configs of one topic in a DescribeConfigs result, or NULL. */
static const rd_kafka_ConfigEntry_t **
configs_of(rd_kafka_event_t *ev, const char *topic, size_t *cnt)
{
	const rd_kafka_DescribeConfigs_result_t *res;
	const rd_kafka_ConfigResource_t **rs;
	size_t i, n;

	*cnt = 0;
	if (ev == NULL ||
	    (res = rd_kafka_event_DescribeConfigs_result(ev)) == NULL)
		return NULL;
	rs = rd_kafka_DescribeConfigs_result_resources(res, &n);
	for (i = 0; i < n; i++) {
		if (strcmp(rd_kafka_ConfigResource_name(rs[i]), topic) != 0)
			continue;
		if (rd_kafka_ConfigResource_error(rs[i]) != 0) {
			log_warn("%s: configs: %s", topic,
			    rd_kafka_ConfigResource_error_string(rs[i]));
			return NULL;
		}
		return rd_kafka_ConfigResource_configs(rs[i], cnt);
	}
	return NULL;
}

/* A topic's config value; NULL if absent, *dflt set if the default. */
static const char *
config_value(rd_kafka_event_t *ev, const char *topic, const char *name,
    int *dflt)
{
	const rd_kafka_ConfigEntry_t **ce;
	size_t i, n;

	*dflt = 1;
	ce = configs_of(ev, topic, &n);
	for (i = 0; i < n; i++) {
		if (strcmp(rd_kafka_ConfigEntry_name(ce[i]), name) != 0)
			continue;
		*dflt = rd_kafka_ConfigEntry_source(ce[i]) ==
		    RD_KAFKA_CONFIG_SOURCE_DEFAULT_CONFIG;
		return rd_kafka_ConfigEntry_value(ce[i]);
	}
	return NULL;
}

/* What create found or did for one topic, as its row shows it. */
struct plan {
	const char	*name;
	int		 exists;
	long long	 parts;
	long long	 repl;
	char		 minisr[32];
	char		 retention[32];	/* "" is the broker's default */
	const char	*status;
};

static const struct table_col create_cols[] = {
	{ "TOPIC", "topic", TABLE_STR },
	{ "PARTITIONS", "partitions", TABLE_INT },
	{ "REPLICATION", "replication", TABLE_INT },
	{ "MIN.ISR", "min_insync_replicas", TABLE_INT },
	{ "RETENTION.MS", "retention_ms", TABLE_INT },
	{ "STATUS", "status", TABLE_STR }
};

/*
 * Compares an existing topic with what create asks for.  Every difference
 * is a warning; a partition count or replication factor that differs from
 * an explicit -p or -r also makes the exit status 1.
 */
static int
create_check(struct ta *t, struct plan *p, const struct plan *want)
{
	int rc = OF_EXIT_OK, differs = 0;

	if (p->parts != want->parts) {
		log_warn("%s: exists with %lld partitions, not %lld", p->name,
		    p->parts, want->parts);
		differs = 1;
		if (t->given & GIVEN_P)
			rc = OF_EXIT_FAIL;
	}
	if (p->repl != want->repl) {
		log_warn("%s: exists with replication factor %lld, not %lld",
		    p->name, p->repl, want->repl);
		differs = 1;
		if (t->given & GIVEN_R)
			rc = OF_EXIT_FAIL;
	}
	if (strcmp(p->minisr, want->minisr) != 0) {
		log_warn("%s: exists with min.insync.replicas %s, not %s",
		    p->name, *p->minisr ? p->minisr : "unknown", want->minisr);
		differs = 1;
	}
	if (*want->retention != '\0' &&
	    strcmp(p->retention, want->retention) != 0) {
		log_warn("%s: exists with retention.ms %s, not %s", p->name,
		    *p->retention ? p->retention : "default", want->retention);
		differs = 1;
	}
	p->status = differs ? "differs" : "exists";
	return rc;
}

/* Fills p from the cluster's view of an existing topic. */
static void
create_actual(struct plan *p, const rd_kafka_metadata_topic_t *mt,
    rd_kafka_event_t *cfg)
{
	const char *v;
	int dflt;

	p->exists = 1;
	p->parts = mt->partition_cnt;
	p->repl = mt->partition_cnt > 0 ? mt->partitions[0].replica_cnt : 0;
	if ((v = config_value(cfg, p->name, "min.insync.replicas",
	    &dflt)) != NULL)
		snprintf(p->minisr, sizeof(p->minisr), "%s", v);
	v = config_value(cfg, p->name, "retention.ms", &dflt);
	if (v != NULL && !dflt)
		snprintf(p->retention, sizeof(p->retention), "%s", v);
}

static void
create_want(struct plan *w, const char *name, long long parts, long long repl)
{
	memset(w, 0, sizeof(*w));
	w->name = name;
	w->parts = parts;
	w->repl = repl;
	table_fmt_ll(w->minisr, sizeof(w->minisr), repl < 2 ? repl : 2);
	if (flow_is_dlq(name))
		snprintf(w->retention, sizeof(w->retention), "%s",
		    DLQ_RETENTION);
}

static rd_kafka_NewTopic_t *
create_newtopic(const struct plan *w)
{
	rd_kafka_NewTopic_t *nt;
	char err[512];

	if ((nt = rd_kafka_NewTopic_new(w->name, (int)w->parts, (int)w->repl,
	    err, sizeof(err))) == NULL)
		log_fatal(OF_EXIT_USAGE, "%s: %s", w->name, err);
	if (rd_kafka_NewTopic_set_config(nt, "min.insync.replicas",
	    w->minisr) != 0 || (*w->retention != '\0' &&
	    rd_kafka_NewTopic_set_config(nt, "retention.ms",
	    w->retention) != 0))
		log_fatal(OF_EXIT_FAIL, "%s: cannot set configs", w->name);
	return nt;
}

/*
 * CreateTopics for every plan not yet existing; sets each one's status.
 * A dry run asks the broker to validate only, so it still catches what
 * the broker would refuse (a replication factor above the brokers).
 */
static int
create_missing(struct ta *t, struct plan *p, size_t n)
{
	rd_kafka_NewTopic_t **nt;
	rd_kafka_AdminOptions_t *ao;
	rd_kafka_event_t *ev;
	const rd_kafka_topic_result_t **tr;
	char errstr[512];
	size_t i, j, cnt = 0;
	int rc = OF_EXIT_OK;

	nt = util_xcalloc(n, sizeof(*nt));
	for (i = 0; i < n; i++)
		if (!p[i].exists)
			nt[cnt++] = create_newtopic(&p[i]);
	ao = admin_options(t, RD_KAFKA_ADMIN_OP_CREATETOPICS);
	if ((t->given & GIVEN_DRY_RUN) &&
	    rd_kafka_AdminOptions_set_validate_only(ao, 1, errstr,
	    sizeof(errstr)) != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_fatal(OF_EXIT_FAIL, "--dry-run: %s", errstr);
	rd_kafka_CreateTopics(t->rk, nt, cnt, ao, t->q);
	rd_kafka_NewTopic_destroy_array(nt, cnt);
	free(nt);
	ev = admin_wait(t, ao, "create");
	tr = rd_kafka_CreateTopics_result_topics(
	    rd_kafka_event_CreateTopics_result(ev), &cnt);
	for (i = 0; i < cnt; i++) {
		const char *name = rd_kafka_topic_result_name(tr[i]);
		rd_kafka_resp_err_t err = rd_kafka_topic_result_error(tr[i]);

		for (j = 0; j < n && strcmp(p[j].name, name) != 0; j++)
			continue;
		if (j == n)
			continue;
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			p[j].status = (t->given & GIVEN_DRY_RUN) ?
			    "would-create" : "created";
		else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
			p[j].status = "exists";
		else {
			log_error("%s: %s", name,
			    rd_kafka_topic_result_error_string(tr[i]));
			p[j].status = "failed";
			if (is_timeout(err))
				rc = OF_EXIT_KAFKA;
			else if (rc == OF_EXIT_OK)
				rc = OF_EXIT_FAIL;
		}
	}
	rd_kafka_event_destroy(ev);
	return rc;
}

static void
create_print(struct ta *t, const struct plan *p, size_t n)
{
	struct table out;
	char parts[32], repl[32];
	const char *v[6];
	size_t i;

	table_init(&out, create_cols, 6, t->json);
	for (i = 0; i < n; i++) {
		table_fmt_ll(parts, sizeof(parts), p[i].parts);
		table_fmt_ll(repl, sizeof(repl), p[i].repl);
		v[0] = p[i].name;
		v[1] = parts;
		v[2] = repl;
		v[3] = *p[i].minisr ? p[i].minisr : NULL;
		v[4] = *p[i].retention ? p[i].retention : NULL;
		v[5] = p[i].status;
		table_row(&out, v);
	}
	table_end(&out);
}

/* Existing topics are read back (metadata, DescribeConfigs) and compared. */
static int
create_existing(struct ta *t, struct plan *p, size_t n)
{
	const rd_kafka_metadata_topic_t *mt;
	const char **names;
	rd_kafka_event_t *cfg = NULL;
	struct plan want;
	size_t i, nexist = 0;
	int rc = OF_EXIT_OK, r;

	names = util_xcalloc(n, sizeof(*names));
	for (i = 0; i < n; i++)
		if (topic_find(t->md, p[i].name) != NULL)
			names[nexist++] = p[i].name;
	if (nexist > 0)
		cfg = configs_describe(t, names, nexist);
	for (i = 0; i < n; i++) {
		if ((mt = topic_find(t->md, p[i].name)) == NULL)
			continue;
		want = p[i];
		memset(p[i].minisr, 0, sizeof(p[i].minisr));
		memset(p[i].retention, 0, sizeof(p[i].retention));
		create_actual(&p[i], mt, cfg);
		if ((r = create_check(t, &p[i], &want)) != OF_EXIT_OK)
			rc = r;
	}
	if (cfg != NULL)
		rd_kafka_event_destroy(cfg);
	free(names);
	return rc;
}

/* A topic is ready when it has partitions that all have a leader. */
static int
topic_ready(const rd_kafka_metadata_t *md, const char *name)
{
	const rd_kafka_metadata_topic_t *mt;
	int i;

	if ((mt = topic_find(md, name)) == NULL || mt->err != 0 ||
	    mt->partition_cnt == 0)
		return 0;
	for (i = 0; i < mt->partition_cnt; i++)
		if (mt->partitions[i].err != 0 || mt->partitions[i].leader < 0)
			return 0;
	return 1;
}

/* The topics of names not ready, comma-separated in buf; 0 if none. */
static size_t
wait_missing(struct ta *t, const char *const *names, size_t n, char *buf,
    size_t len)
{
	size_t i, off = 0, missing = 0;

	buf[0] = '\0';
	for (i = 0; i < n; i++) {
		if (topic_ready(t->md, names[i]))
			continue;
		missing++;
		if (off < len)
			off += snprintf(buf + off, len - off, "%s%s",
			    off ? ", " : "", names[i]);
	}
	return missing;
}

/*
 * Until the n topics of names are ready or -m seconds have passed: 0, or
 * 1 with those not ready in missing.  *answered: whether a broker answered.
 */
static int
wait_ready(struct ta *t, const char *const *names, size_t n, char *missing,
    size_t len, int *answered)
{
	int64_t deadline = util_mono_ms() + t->timeout_s * 1000LL, left;

	*answered = 0;
	snprintf(missing, len, "no answer");
	while ((left = deadline - util_mono_ms()) > 0) {
		if (metadata_try(t, left < SLICE_MS ? (int)left :
		    SLICE_MS) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			*answered = 1;
			if (wait_missing(t, names, n, missing, len) == 0)
				return 0;
			left = deadline - util_mono_ms();
			pause_ms(t, left < WAIT_POLL_MS ? left : WAIT_POLL_MS);
		}
		check_interrupt(t);
	}
	return 1;
}

/*
 * The controller answers once a new topic is in its log; the brokers learn
 * of it when they have read that far, which a busy broker (one that has
 * just started, say) may take seconds to do.  Until then a command using
 * the topic is told it does not exist, so create returns only when every
 * broker answering has it.
 */
static int
create_settle(struct ta *t, const struct plan *p, size_t n)
{
	const char **names;
	char missing[1024];
	size_t i, cnt = 0;
	int answered, rc = OF_EXIT_OK;

	names = util_xcalloc(n, sizeof(*names));
	for (i = 0; i < n; i++)
		if (strcmp(p[i].status, "created") == 0)
			names[cnt++] = p[i].name;
	if (cnt > 0 && wait_ready(t, names, cnt, missing, sizeof(missing),
	    &answered) != 0) {
		log_error("created, but not ready after %d s: %s",
		    t->timeout_s, missing);
		rc = OF_EXIT_KAFKA;
	}
	free(names);
	return rc;
}

static int
cmd_create(struct ta *t, int argc, char **argv)
{
	size_t i, n, missing = 0;
	const char *const *names = topic_names(t, &n);
	long long repl = t->replication;
	struct plan *p;
	int rc, r;

	(void)argc;
	(void)argv;
	metadata_get(t);
	if (repl == 0)
		repl = t->md->broker_cnt < 3 ? t->md->broker_cnt : 3;
	if (repl < 1)
		repl = 1;
	p = util_xcalloc(n, sizeof(*p));
	for (i = 0; i < n; i++) {
		create_want(&p[i], names[i], t->partitions, repl);
		p[i].status = "failed";	/* unless the broker says otherwise */
	}
	rc = create_existing(t, p, n);
	for (i = 0; i < n; i++)
		missing += !p[i].exists;
	if (missing > 0 && (r = create_missing(t, p, n)) != OF_EXIT_OK)
		rc = r;
	if (missing > 0 && (r = create_settle(t, p, n)) != OF_EXIT_OK)
		rc = r;
	create_print(t, p, n);
	free(p);
	return rc;
}

static int
topic_cmp(const void *a, const void *b)
{
	const rd_kafka_metadata_topic_t *const *x = a, *const *y = b;

	return strcmp((*x)->topic, (*y)->topic);
}

static int
cmd_list(struct ta *t, int argc, char **argv)
{
	static const struct table_col cols[] = {
		{ "TOPIC", "topic", TABLE_STR },
		{ "PARTITIONS", "partitions", TABLE_INT },
		{ "REPLICATION", "replication", TABLE_INT }
	};
	const rd_kafka_metadata_topic_t **tp;
	const rd_kafka_metadata_t *md;
	struct table out;
	char parts[32], repl[32];
	const char *v[3];
	int i;

	(void)argc;
	(void)argv;
	md = metadata_get(t);
	tp = util_xcalloc(md->topic_cnt, sizeof(*tp));
	for (i = 0; i < md->topic_cnt; i++)
		tp[i] = &md->topics[i];
	qsort(tp, md->topic_cnt, sizeof(*tp), topic_cmp);
	table_init(&out, cols, 3, t->json);
	for (i = 0; i < md->topic_cnt; i++) {
		table_fmt_ll(parts, sizeof(parts), tp[i]->partition_cnt);
		table_fmt_ll(repl, sizeof(repl), tp[i]->partition_cnt > 0 ?
		    tp[i]->partitions[0].replica_cnt : 0);
		v[0] = tp[i]->topic;
		v[1] = parts;
		v[2] = repl;
		table_row(&out, v);
	}
	table_end(&out);
	free(tp);
	return OF_EXIT_OK;
}

static int
part_cmp(const void *a, const void *b)
{
	const rd_kafka_metadata_partition_t *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static void
describe_partitions(struct table *out, const rd_kafka_metadata_topic_t *mt)
{
	rd_kafka_metadata_partition_t *pa;
	char id[32], leader[32], repl[1024], isr[1024];
	const char *v[5];
	int i;

	if (mt->err != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_warn("%s: %s", mt->topic, rd_kafka_err2str(mt->err));
	pa = util_xcalloc(mt->partition_cnt, sizeof(*pa));
	memcpy(pa, mt->partitions, mt->partition_cnt * sizeof(*pa));
	qsort(pa, mt->partition_cnt, sizeof(*pa), part_cmp);
	for (i = 0; i < mt->partition_cnt; i++) {
		table_fmt_ll(id, sizeof(id), pa[i].id);
		table_fmt_ll(leader, sizeof(leader), pa[i].leader);
		table_fmt_ids(repl, sizeof(repl), pa[i].replicas,
		    pa[i].replica_cnt);
		table_fmt_ids(isr, sizeof(isr), pa[i].isrs, pa[i].isr_cnt);
		v[0] = mt->topic;
		v[1] = id;
		v[2] = pa[i].leader >= 0 ? leader : NULL;
		v[3] = repl;
		v[4] = isr;
		table_row(out, v);
	}
	free(pa);
}

/* Non-default configs: every source but DEFAULT_CONFIG. */
static void
describe_configs(struct table *out, rd_kafka_event_t *ev, const char *topic)
{
	const rd_kafka_ConfigEntry_t **ce;
	const char *v[4];
	size_t i, n;

	ce = configs_of(ev, topic, &n);
	for (i = 0; i < n; i++) {
		rd_kafka_ConfigSource_t src;

		src = rd_kafka_ConfigEntry_source(ce[i]);

		if (src == RD_KAFKA_CONFIG_SOURCE_DEFAULT_CONFIG)
			continue;
		v[0] = topic;
		v[1] = rd_kafka_ConfigEntry_name(ce[i]);
		v[2] = rd_kafka_ConfigEntry_is_sensitive(ce[i]) ?
		    "[sensitive]" : rd_kafka_ConfigEntry_value(ce[i]);
		v[3] = rd_kafka_ConfigSource_name(src);
		table_row(out, v);
	}
}

static int
cmd_describe(struct ta *t, int argc, char **argv)
{
	static const struct table_col pcols[] = {
		{ "TOPIC", "topic", TABLE_STR },
		{ "PARTITION", "partition", TABLE_INT },
		{ "LEADER", "leader", TABLE_INT },
		{ "REPLICAS", "replicas", TABLE_LIST },
		{ "ISR", "isr", TABLE_LIST }
	};
	static const struct table_col ccols[] = {
		{ "TOPIC", "topic", TABLE_STR },
		{ "CONFIG", "config", TABLE_STR },
		{ "VALUE", "value", TABLE_STR },
		{ "SOURCE", "source", TABLE_STR }
	};
	const rd_kafka_metadata_topic_t *mt;
	const char **found;
	rd_kafka_event_t *cfg = NULL;
	struct table out;
	size_t n = 0, i;
	int rc = OF_EXIT_OK, a;

	metadata_get(t);
	found = util_xcalloc(argc, sizeof(*found));
	table_init(&out, pcols, 5, t->json);
	for (a = 0; a < argc; a++) {
		for (i = 0; i < n && strcmp(found[i], argv[a]) != 0; i++)
			continue;
		if (i < n)
			continue;	/* named twice */
		if ((mt = topic_find(t->md, argv[a])) == NULL) {
			log_error("%s: no such topic", argv[a]);
			rc = OF_EXIT_FAIL;
			continue;
		}
		describe_partitions(&out, mt);
		found[n++] = argv[a];
	}
	table_end(&out);
	if (n > 0)
		cfg = configs_describe(t, found, n);
	table_init(&out, ccols, 4, t->json);
	for (i = 0; i < n; i++)
		describe_configs(&out, cfg, found[i]);
	table_end(&out);
	if (cfg != NULL)
		rd_kafka_event_destroy(cfg);
	free(found);
	return rc;
}

static int
cmd_delete(struct ta *t, int argc, char **argv)
{
	static const struct table_col cols[] = {
		{ "TOPIC", "topic", TABLE_STR },
		{ "STATUS", "status", TABLE_STR }
	};
	rd_kafka_DeleteTopic_t **dt;
	rd_kafka_AdminOptions_t *ao;
	rd_kafka_event_t *ev;
	const rd_kafka_topic_result_t **tr;
	struct table out;
	const char *v[2];
	size_t i, cnt;
	int rc = OF_EXIT_OK;

	metadata_get(t);
	dt = util_xcalloc(argc, sizeof(*dt));
	for (i = 0; i < (size_t)argc; i++)
		dt[i] = rd_kafka_DeleteTopic_new(argv[i]);
	ao = admin_options(t, RD_KAFKA_ADMIN_OP_DELETETOPICS);
	rd_kafka_DeleteTopics(t->rk, dt, argc, ao, t->q);
	rd_kafka_DeleteTopic_destroy_array(dt, argc);
	free(dt);
	ev = admin_wait(t, ao, "delete");
	tr = rd_kafka_DeleteTopics_result_topics(
	    rd_kafka_event_DeleteTopics_result(ev), &cnt);
	table_init(&out, cols, 2, t->json);
	for (i = 0; i < cnt; i++) {
		rd_kafka_resp_err_t err = rd_kafka_topic_result_error(tr[i]);

		v[0] = rd_kafka_topic_result_name(tr[i]);
		v[1] = err == RD_KAFKA_RESP_ERR_NO_ERROR ? "deleted" : "failed";
		if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
			log_error("%s: no such topic", v[0]);
		else if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			log_error("%s: %s", v[0],
			    rd_kafka_topic_result_error_string(tr[i]));
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			rc = is_timeout(err) ? OF_EXIT_KAFKA : OF_EXIT_FAIL;
		table_row(&out, v);
	}
	table_end(&out);
	rd_kafka_event_destroy(ev);
	return rc;
}

static const struct table_col lag_cols[] = {
	{ "GROUP", "group", TABLE_STR },
	{ "TOPIC", "topic", TABLE_STR },
	{ "PARTITION", "partition", TABLE_INT },
	{ "COMMITTED", "committed", TABLE_INT },
	{ "HIGH", "high", TABLE_INT },
	{ "LAG", "lag", TABLE_INT }
};

struct lag_sum {
	long long	committed;
	long long	high;
	long long	lag;
	int		unknown;	/* a watermark unknown: no high, no lag */
};

/* A partition row, or a total row when part is "total". */
static void
lag_row(struct table *out, const char *group, const char *topic,
    const char *part, long long committed, long long high, long long lag)
{
	char c[32], h[32], l[32];
	const char *v[6];

	table_fmt_ll(c, sizeof(c), committed);
	table_fmt_ll(h, sizeof(h), high);
	table_fmt_ll(l, sizeof(l), lag);
	v[0] = group;
	v[1] = topic;
	v[2] = part;
	v[3] = committed >= 0 ? c : NULL;
	v[4] = high >= 0 ? h : NULL;
	v[5] = lag >= 0 ? l : NULL;
	table_row(out, v);
}

/* High watermark of one partition, -1 if unknown (warned). */
static long long
lag_high(struct ta *t, const char *topic, int32_t part)
{
	rd_kafka_resp_err_t err;
	int64_t lo, hi;

	err = kafka_watermarks(t->rk, topic, part, &lo, &hi,
	    t->timeout_s * 1000);
	check_interrupt(t);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return hi;
	if (is_timeout(err))
		request_failed(t, "watermarks", err, NULL);
	log_warn("%s [%d]: %s", topic, (int)part, rd_kafka_err2str(err));
	return -1;
}

static void
lag_partition(struct ta *t, struct table *out, const char *group,
    const rd_kafka_topic_partition_t *tp, struct lag_sum *sum)
{
	long long high, committed = tp->offset, lag = -1;
	char part[32];

	high = lag_high(t, tp->topic, tp->partition);
	if (committed >= 0)
		sum->committed += committed;
	if (committed >= 0 && high >= 0) {
		lag = high > committed ? high - committed : 0;
		sum->high += high;
		sum->lag += lag;
	} else
		sum->unknown = 1;
	table_fmt_ll(part, sizeof(part), tp->partition);
	lag_row(out, group, tp->topic, part, committed, high, lag);
}

/* A total row: a total over a partition of unknown lag is unknown too. */
static void
lag_total(struct table *out, const char *group, const char *topic,
    const struct lag_sum *sum)
{
	lag_row(out, group, topic, "total", sum->committed,
	    sum->unknown ? -1 : sum->high, sum->unknown ? -1 : sum->lag);
}

/* Rows of one group's committed partitions, sorted, with totals. */
static void
lag_rows(struct ta *t, struct table *out, const char *group,
    rd_kafka_topic_partition_list_t *pl)
{
	struct lag_sum topic = { 0, 0, 0, 0 }, all = { 0, 0, 0, 0 };
	int i;

	rd_kafka_topic_partition_list_sort(pl, NULL, NULL);
	for (i = 0; i < pl->cnt; i++) {
		lag_partition(t, out, group, &pl->elems[i], &topic);
		if (i + 1 < pl->cnt &&
		    strcmp(pl->elems[i].topic, pl->elems[i + 1].topic) == 0)
			continue;
		lag_total(out, group, pl->elems[i].topic, &topic);
		all.committed += topic.committed;
		all.high += topic.high;
		all.lag += topic.lag;
		all.unknown |= topic.unknown;
		memset(&topic, 0, sizeof(topic));
	}
	if (pl->cnt > 0)
		lag_total(out, group, NULL, &all);
}

/*
 * The group's committed offsets.  While its coordinator loads or moves
 * (the first seconds after a broker starts, a failover) it is asked again
 * until -m has passed since the first try.
 */
static rd_kafka_event_t *
lag_offsets(struct ta *t, const char *group)
{
	rd_kafka_ListConsumerGroupOffsets_t *req;
	rd_kafka_AdminOptions_t *ao;
	rd_kafka_event_t *ev;
	rd_kafka_resp_err_t err;
	int64_t deadline, left;
	char errstr[512];

	deadline = util_mono_ms() + (int64_t)t->timeout_s * 1000;
	for (;;) {
		req = rd_kafka_ListConsumerGroupOffsets_new(group, NULL);
		ao = admin_options(t,
		    RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
		rd_kafka_ListConsumerGroupOffsets(t->rk, &req, 1, ao, t->q);
		rd_kafka_ListConsumerGroupOffsets_destroy(req);
		if ((ev = admin_try(t, ao, &err, errstr, sizeof(errstr))) !=
		    NULL)
			return ev;
		if (!kafka_coordinator_moving(err))
			request_failed(t, group, err, errstr);
		left = deadline - util_mono_ms();
		if (left <= WAIT_POLL_MS) {
			log_error("%s: %s, still after %d s", group,
			    rd_kafka_err2str(err), t->timeout_s);
			ta_exit(t, OF_EXIT_FAIL);
		}
		log_debug("%s: %s: asking again", group, rd_kafka_err2str(err));
		pause_ms(t, WAIT_POLL_MS);
	}
}

/*
 * ListConsumerGroupOffsets for one group: every committed partition.  A
 * group without offsets is worth a warning only when it was named.
 */
static int
lag_group(struct ta *t, struct table *out, const char *group, int named)
{
	rd_kafka_event_t *ev;
	const rd_kafka_group_result_t **gr;
	const rd_kafka_error_t *gerr;
	rd_kafka_topic_partition_list_t *pl;
	size_t n;
	int rc = OF_EXIT_OK;

	ev = lag_offsets(t, group);
	gr = rd_kafka_ListConsumerGroupOffsets_result_groups(
	    rd_kafka_event_ListConsumerGroupOffsets_result(ev), &n);
	if (n != 1) {
		log_error("%s: no answer for the group", group);
		rc = OF_EXIT_FAIL;
	} else if ((gerr = rd_kafka_group_result_error(gr[0])) != NULL) {
		log_error("%s: %s", group, rd_kafka_error_string(gerr));
		rc = OF_EXIT_FAIL;
	} else {
		pl = rd_kafka_topic_partition_list_copy(
		    rd_kafka_group_result_partitions(gr[0]));
		if (pl->cnt == 0 && named)
			log_warn("%s: no committed offsets", group);
		lag_rows(t, out, group, pl);
		rd_kafka_topic_partition_list_destroy(pl);
	}
	rd_kafka_event_destroy(ev);
	return rc;
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every group the cluster lists, sorted; the caller frees each and all. */
static char **
lag_all_groups(struct ta *t, size_t *n)
{
	rd_kafka_AdminOptions_t *ao;
	rd_kafka_event_t *ev;
	const rd_kafka_ListConsumerGroups_result_t *res;
	const rd_kafka_ConsumerGroupListing_t **gl;
	const rd_kafka_error_t **errs;
	char **names;
	size_t i, nerr;

	ao = admin_options(t, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS);
	rd_kafka_ListConsumerGroups(t->rk, ao, t->q);
	ev = admin_wait(t, ao, "list groups");
	res = rd_kafka_event_ListConsumerGroups_result(ev);
	errs = rd_kafka_ListConsumerGroups_result_errors(res, &nerr);
	for (i = 0; i < nerr; i++)
		log_warn("list groups: %s", rd_kafka_error_string(errs[i]));
	gl = rd_kafka_ListConsumerGroups_result_valid(res, n);
	names = util_xcalloc(*n, sizeof(*names));
	for (i = 0; i < *n; i++)
		names[i] = util_xstrdup(
		    rd_kafka_ConsumerGroupListing_group_id(gl[i]));
	qsort(names, *n, sizeof(*names), str_cmp);
	rd_kafka_event_destroy(ev);
	return names;
}

static int
cmd_lag(struct ta *t, int argc, char **argv)
{
	struct table out;
	char **all = NULL;
	size_t i, n = 0;
	int rc = OF_EXIT_OK, r;

	metadata_get(t);
	if (argc == 0 && t->group == NULL)
		all = lag_all_groups(t, &n);
	table_init(&out, lag_cols, 6, t->json);
	if (t->group != NULL && (r = lag_group(t, &out, t->group, 1)) != 0)
		rc = r;
	for (i = 0; i < (size_t)argc; i++)
		if ((r = lag_group(t, &out, argv[i], 1)) != OF_EXIT_OK)
			rc = r;
	for (i = 0; i < n; i++) {
		if ((r = lag_group(t, &out, all[i], 0)) != OF_EXIT_OK)
			rc = r;
		free(all[i]);
	}
	table_end(&out);
	free(all);
	return rc;
}

static int
cmd_wait(struct ta *t, int argc, char **argv)
{
	const char *const *names;
	char missing[1024];
	size_t n;
	int answered;

	(void)argc;
	(void)argv;
	names = topic_names(t, &n);
	if (wait_ready(t, names, n, missing, sizeof(missing), &answered) == 0)
		return OF_EXIT_OK;
	if (!answered)
		unreachable(t);
	log_error("topics not ready after %d s: %s", t->timeout_s, missing);
	return OF_EXIT_KAFKA;
}

/*
 * schemas: the flow's Avro schemas in the registry.  Subjects follow the
 * TopicNameStrategy (TOPIC-value), topics named as everywhere else
 * (--topic-prefix).  A registry call that fails ends the command with
 * exit status 1 (a registry that does not answer, or one that refuses,
 * leaves nothing worth going on with); only a subject named to show that
 * has no version lets the others still be shown.
 */

static const struct table_col schema_cols[] = {
	{ "SUBJECT", "subject", TABLE_STR },
	{ "COMPATIBILITY", "compatibility", TABLE_STR },
	{ "VERSION", "version", TABLE_INT },
	{ "ID", "id", TABLE_INT }
};

/* The flow's schemas: each topic's, in the order they are registered. */
static const struct {
	const char	*topic;
	const char	*schemas[3];
} flow_schemas[] = {
	{ FLOW_TOPIC_ORDERS, { schema_order_created_v1,
	    schema_order_created_v2, NULL } },
	{ FLOW_TOPIC_PAYMENTS, { schema_payment_processed_v1, NULL } }
};
#define NFLOW_SCHEMAS	(sizeof(flow_schemas) / sizeof(flow_schemas[0]))

/*
 * The registry client, from --schema-registry, else $SCHEMA_REGISTRY_URL;
 * neither, or a URL that is not http(s), is a usage error.
 */
static void
schemas_open(struct ta *t)
{
	const char *url = t->registry_url;

	if (url == NULL)
		url = getenv("SCHEMA_REGISTRY_URL");
	if (url == NULL || *url == '\0') {
		log_error("no schema registry: give --schema-registry or set "
		    "SCHEMA_REGISTRY_URL");
		usage();
		ta_exit(t, OF_EXIT_USAGE);
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		log_fatal(OF_EXIT_FAIL, "curl_global_init failed");
	t->curl = 1;
	/* The URL is not repeated: it may hold credentials. */
	if ((t->reg = registry_new(url)) == NULL && errno == EINVAL) {
		log_error("--schema-registry: not an http or https URL");
		usage();
		ta_exit(t, OF_EXIT_USAGE);
	}
	if (t->reg == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
}

/*
 * A registry call that failed: one line on stderr (the registry's reason
 * for a refusal), exit 1.  what names what was asked for.
 */
static void __attribute__((noreturn))
schemas_fail(struct ta *t, const char *what, int err, const char *msg)
{
	if (err == REGISTRY_UNAVAILABLE)
		log_error("%s: %s: %s", registry_name(t->reg),
		    registry_strerror(err), msg);
	else
		log_error("%s: %s: %s", what, registry_strerror(err), msg);
	ta_exit(t, OF_EXIT_FAIL);
}

/* TOPIC-value of one of the flow's topics, prefix included, in buf. */
static const char *
schemas_subject(struct ta *t, const char *topic, char *buf, size_t len)
{
	if ((size_t)snprintf(buf, len, "%s" SUBJECT_SUFFIX,
	    opt_topic(&t->o, topic)) >= len)
		log_fatal(OF_EXIT_USAGE, "--topic-prefix: too long");
	return buf;
}

/*
 * One row for each version of subject.  NOT_FOUND when it has none (it
 * is no subject then), any other failure ends the command.
 */
static int
schemas_rows(struct ta *t, struct table *out, const char *subject)
{
	char msg[1024], level[64], ver[32], idbuf[32];
	const char *v[4];
	int *versions, rc, id;
	size_t i, n;

	rc = registry_versions(t->reg, subject, &versions, &n, msg,
	    sizeof(msg));
	check_interrupt(t);
	if (rc == REGISTRY_NOT_FOUND)
		return rc;
	if (rc != REGISTRY_OK)
		schemas_fail(t, subject, rc, msg);
	rc = registry_get_compat(t->reg, subject, level, sizeof(level), msg,
	    sizeof(msg));
	check_interrupt(t);
	if (rc != REGISTRY_OK) {
		free(versions);
		schemas_fail(t, subject, rc, msg);
	}
	for (i = 0; i < n; i++) {
		rc = registry_version(t->reg, subject, versions[i], &id, NULL,
		    msg, sizeof(msg));
		check_interrupt(t);
		if (rc == REGISTRY_NOT_FOUND)
			continue;	/* deleted meanwhile */
		if (rc != REGISTRY_OK) {
			free(versions);
			schemas_fail(t, subject, rc, msg);
		}
		table_fmt_ll(ver, sizeof(ver), versions[i]);
		table_fmt_ll(idbuf, sizeof(idbuf), id);
		v[0] = subject;
		v[1] = level;
		v[2] = ver;
		v[3] = idbuf;
		table_row(out, v);
	}
	free(versions);
	return REGISTRY_OK;
}

/* The rows of the subjects named; one without versions is an error. */
static int
schemas_show_named(struct ta *t, const char *const *subjects, size_t n)
{
	struct table out;
	size_t i;
	int rc = OF_EXIT_OK;

	table_init(&out, schema_cols, 4, t->json);
	for (i = 0; i < n; i++) {
		if (schemas_rows(t, &out, subjects[i]) == REGISTRY_OK)
			continue;
		log_error("%s: no such subject", subjects[i]);
		rc = OF_EXIT_FAIL;
	}
	table_end(&out);
	return rc;
}

/*
 * Registers the flow's schemas, each topic's subject first set to
 * BACKWARD so that the registry checks every later version against them,
 * then shows the subjects.  The registry answers the id it has for a
 * schema registered already, so a second run changes nothing.
 */
static int
cmd_schemas(struct ta *t, int argc, char **argv)
{
	char subjects[NFLOW_SCHEMAS][512], msg[1024];
	const char *names[NFLOW_SCHEMAS];
	const char *const *schema;
	size_t i;
	int rc, id;

	(void)argc;
	(void)argv;
	for (i = 0; i < NFLOW_SCHEMAS; i++) {
		names[i] = schemas_subject(t, flow_schemas[i].topic,
		    subjects[i], sizeof(subjects[i]));
		rc = registry_set_compat(t->reg, names[i], SCHEMA_COMPAT, msg,
		    sizeof(msg));
		check_interrupt(t);
		if (rc != REGISTRY_OK)
			schemas_fail(t, names[i], rc, msg);
		for (schema = flow_schemas[i].schemas; *schema != NULL;
		    schema++) {
			rc = registry_register(t->reg, names[i], *schema, &id,
			    msg, sizeof(msg));
			check_interrupt(t);
			if (rc != REGISTRY_OK)
				schemas_fail(t, names[i], rc, msg);
			log_debug("%s: schema id %d", names[i], id);
		}
	}
	return schemas_show_named(t, names, NFLOW_SCHEMAS);
}

/*
 * The subjects named, else every subject of the registry that starts
 * with the topic prefix (all of them without one).
 */
static int
cmd_schemas_show(struct ta *t, int argc, char **argv)
{
	struct table out;
	char msg[1024], **all;
	size_t i, plen = strlen(t->o.topic_prefix);
	int rc;

	if (argc > 0)
		return schemas_show_named(t, (const char *const *)argv,
		    (size_t)argc);
	rc = registry_subjects(t->reg, &all, msg, sizeof(msg));
	check_interrupt(t);
	if (rc != REGISTRY_OK)
		schemas_fail(t, "subjects", rc, msg);
	table_init(&out, schema_cols, 4, t->json);
	for (i = 0; all[i] != NULL; i++)
		if (strncmp(all[i], t->o.topic_prefix, plen) == 0)
			(void)schemas_rows(t, &out, all[i]);
	table_end(&out);
	registry_strv_free(all);
	return OF_EXIT_OK;
}

/* The contents of path ("-": standard input), or NULL with errno set. */
static char *
read_text(const char *path)
{
	FILE *f;
	char *buf;
	size_t n;
	int e;

	if (strcmp(path, "-") == 0)
		f = stdin;
	else if ((f = fopen(path, "r")) == NULL)
		return NULL;
	buf = util_xmalloc(SCHEMA_MAXFILE + 1);
	n = fread(buf, 1, SCHEMA_MAXFILE + 1, f);
	e = ferror(f) ? errno : n > SCHEMA_MAXFILE ? EFBIG : 0;
	if (f != stdin)
		fclose(f);
	if (e != 0) {
		free(buf);
		errno = e;
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/*
 * Registers the schema in file under subject.  A subject without a
 * version yet is set to BACKWARD first, as the flow's are; one with
 * versions keeps the level it has (someone chose it).  "Without a
 * version" rather than "without a level of its own": Confluent's
 * registry and Apicurio answer GET /config/SUBJECT differently.
 */
static int
cmd_schemas_register(struct ta *t, int argc, char **argv)
{
	const char *subject = argv[0], *path = argv[1];
	char msg[1024], *text;
	int *versions, rc, id;
	size_t n;

	(void)argc;
	if ((text = read_text(path)) == NULL) {
		log_error("%s: %s", path, errno == EFBIG ?
		    "longer than 1 MiB" : strerror(errno));
		return OF_EXIT_FAIL;
	}
	rc = registry_versions(t->reg, subject, &versions, &n, msg,
	    sizeof(msg));
	check_interrupt(t);
	if (rc == REGISTRY_NOT_FOUND) {
		rc = registry_set_compat(t->reg, subject, SCHEMA_COMPAT, msg,
		    sizeof(msg));
		check_interrupt(t);
	} else if (rc == REGISTRY_OK)
		free(versions);
	if (rc != REGISTRY_OK) {
		free(text);
		schemas_fail(t, subject, rc, msg);
	}
	rc = registry_register(t->reg, subject, text, &id, msg, sizeof(msg));
	free(text);
	check_interrupt(t);
	if (rc != REGISTRY_OK)
		schemas_fail(t, subject, rc, msg);
	log_debug("%s: schema id %d", subject, id);
	return schemas_show_named(t, &subject, 1);
}

static const struct cmd cmds[] = {
	{ "create", cmd_create, 0, 0, GIVEN_P | GIVEN_R | GIVEN_T |
	    GIVEN_DRY_RUN },
	{ "delete", cmd_delete, 1, -1, GIVEN_YES },
	{ "describe", cmd_describe, 1, -1, 0 },
	{ "lag", cmd_lag, 0, -1, GIVEN_G },
	{ "list", cmd_list, 0, 0, 0 },
	{ "schemas", cmd_schemas, 0, 0, GIVEN_SR },
	{ "schemas register", cmd_schemas_register, 2, 2, GIVEN_SR },
	{ "schemas show", cmd_schemas_show, 0, -1, GIVEN_SR },
	{ "wait", cmd_wait, 0, 0, GIVEN_T }
};
#define NCMDS	(sizeof(cmds) / sizeof(cmds[0]))

static void
add_topic(struct ta *t, const char *name)
{
	const char **p;

	if (*name == '\0') {
		log_error("-t: the topic name is empty");
		usage();
		exit(OF_EXIT_USAGE);
	}
	if ((p = realloc(t->topics, (t->ntopics + 1) * sizeof(*p))) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	t->topics = p;
	t->topics[t->ntopics++] = name;
}

static void
parse_options(struct ta *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		OPT_COMMON_LONG,
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "schema-registry", required_argument, NULL,
		    OPT_SCHEMA_REGISTRY },
		{ "yes", no_argument, NULL, OPT_YES },
		{ NULL, 0, NULL, 0 }
	};
	int ch;

	while ((ch = getopt_long(argc, argv, OPT_COMMON_SHORT "Jm:p:r:t:",
	    longopts, NULL)) != -1) {
		switch (ch) {
		case 'G':
			opt_common(&t->o, ch, optarg);
			t->group = t->o.group;
			t->given |= GIVEN_G;
			break;
		case 'J':
			t->json = 1;
			break;
		case 'm':
			t->timeout_s = opt_number("-m", optarg, 1, 86400);
			break;
		case 'p':
			t->partitions = opt_number("-p", optarg, 1, 100000);
			t->given |= GIVEN_P;
			break;
		case 'r':
			t->replication = opt_number("-r", optarg, 1, 32767);
			t->given |= GIVEN_R;
			break;
		case 't':
			add_topic(t, optarg);
			t->given |= GIVEN_T;
			break;
		case OPT_DRY_RUN:
			t->given |= GIVEN_DRY_RUN;
			break;
		case OPT_SCHEMA_REGISTRY:
			t->registry_url = optarg;
			t->given |= GIVEN_SR;
			break;
		case OPT_YES:
			t->given |= GIVEN_YES;
			break;
		default:
			if (opt_common(&t->o, ch, optarg) == 0) {
				usage();
				exit(OF_EXIT_USAGE);
			}
			break;
		}
	}
}

/*
 * How many of the words of argv (argc of them) spell c's name, whose
 * words are separated by one space ("schemas show"); 0 if they do not.
 */
static int
cmd_words(const struct cmd *c, int argc, char **argv)
{
	const char *p = c->name, *sp;
	size_t len;
	int w;

	for (w = 0; w < argc; w++) {
		sp = strchr(p, ' ');
		len = sp != NULL ? (size_t)(sp - p) : strlen(p);
		if (strncmp(argv[w], p, len) != 0 || argv[w][len] != '\0')
			return 0;
		if (sp == NULL)
			return w + 1;
		p = sp + 1;
	}
	return 0;
}

/* Whether some command's name is c's followed by more words. */
static int
cmd_has_sub(const struct cmd *c)
{
	size_t i, len = strlen(c->name);

	for (i = 0; i < NCMDS; i++)
		if (strncmp(cmds[i].name, c->name, len) == 0 &&
		    cmds[i].name[len] == ' ')
			return 1;
	return 0;
}

/*
 * The command named by the first words of argv (the longest name that
 * matches), with its argument count and options checked; *words gets how
 * many words its name took.
 */
static const struct cmd *
find_cmd(struct ta *t, int argc, char **argv, int *words)
{
	static const char *const names[] = { "-p", "-r", "-t", "--dry-run",
	    "--yes", "-G", "--schema-registry" };
	const struct cmd *c = NULL;
	size_t i;
	int w;

	if (argc < 1) {
		usage();
		exit(OF_EXIT_USAGE);
	}
	*words = 0;
	for (i = 0; i < NCMDS; i++)
		if ((w = cmd_words(&cmds[i], argc, argv)) > *words) {
			c = &cmds[i];
			*words = w;
		}
	if (c == NULL)
		log_error("%s: unknown command", argv[0]);
	else if (argc > *words && c->maxargs == 0 && cmd_has_sub(c))
		log_error("%s %s: unknown command", c->name, argv[*words]);
	else if (argc - *words < c->minargs ||
	    (c->maxargs >= 0 && argc - *words > c->maxargs))
		log_error("%s: wrong number of arguments", c->name);
	else if (c->fn == cmd_delete && !(t->given & GIVEN_YES))
		log_error("delete: refusing to delete without --yes");
	else {
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if ((t->given & ~c->allowed) & (1 << i))
				break;
		if (i == sizeof(names) / sizeof(names[0]))
			return c;
		log_error("%s: %s does not apply", c->name, names[i]);
	}
	usage();
	exit(OF_EXIT_USAGE);
}

int
main(int argc, char **argv)
{
	/* Those ignored already stay so (a background job's SIGINT). */
	static const int stop_signals[] = { SIGINT, SIGHUP, SIGTERM, 0 };
	struct ta *t = &ta;
	const struct cmd *c;
	int rc, words;

	log_init(argv[0]);
	opt_init(&t->o, usage);
	t->timeout_s = DEF_TIMEOUT_S;
	t->partitions = DEF_PARTITIONS;
	parse_options(t, argc, argv);
	argc -= optind;
	argv += optind;
	c = find_cmd(t, argc, argv, &words);
	util_signals_catch(stop_signals, 0, NULL);
	/* The schemas commands need the registry, and no broker. */
	if (c->allowed & GIVEN_SR)
		schemas_open(t);
	else
		admin_open(t, c->fn == cmd_lag);
	rc = c->fn(t, argc - words, argv + words);
	ta_exit(t, rc);
}
