/*
 * kafka_test.c - tests of common/kafka.c against the real broker in
 * $KAFKA_BROKERS: deliveries with offsets, commits that stop at a pending
 * record, seek/pause/resume, a full queue, an unreachable broker, fatal
 * errors, and the header helpers and log routing (those need no broker).
 *
 * Usage: kafka_test NAME.  Every test makes its own topics and group.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kafka.h"
#include "log.h"
#include "opt.h"
#include "util.h"
#include "unit.h"

#define NPART	3

static const char *brokers;

static void
opts(struct opt_kafka *o, const char *b, const char *group)
{
	opt_init(o, NULL);
	o->brokers = b;
	o->group = group;
}

/* Creates topic with nparts partitions through the Admin API. */
static void
create_topic(const char *topic, int nparts)
{
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_NewTopic_t *nt;
	rd_kafka_queue_t *q;
	rd_kafka_event_t *ev;
	const rd_kafka_CreateTopics_result_t *res;
	const rd_kafka_topic_result_t **tr;
	char err[512];
	size_t n;

	conf = rd_kafka_conf_new();
	REQUIRE(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err,
	    sizeof(err)) == RD_KAFKA_CONF_OK);
	REQUIRE((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err,
	    sizeof(err))) != NULL);
	REQUIRE((nt = rd_kafka_NewTopic_new(topic, nparts, 1, err,
	    sizeof(err))) != NULL);
	q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	REQUIRE((ev = rd_kafka_queue_poll(q, 30000)) != NULL);
	REQUIRE(rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR_NO_ERROR);
	REQUIRE((res = rd_kafka_event_CreateTopics_result(ev)) != NULL);
	tr = rd_kafka_CreateTopics_result_topics(res, &n);
	REQUIRE(n == 1);
	if (rd_kafka_topic_result_error(tr[0]) != RD_KAFKA_RESP_ERR_NO_ERROR)
		fprintf(stderr, "create %s: %s\n", topic,
		    rd_kafka_topic_result_error_string(tr[0]));
	REQUIRE(rd_kafka_topic_result_error(tr[0]) ==
	    RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_event_destroy(ev);
	rd_kafka_NewTopic_destroy(nt);
	rd_kafka_queue_destroy(q);
	rd_kafka_destroy(rk);
}

struct dr_rec {
	int			called;
	rd_kafka_resp_err_t	err;
	int32_t			partition;
	int64_t			offset;
};

static void
record_cb(void *opaque, rd_kafka_resp_err_t err, int32_t partition,
    int64_t offset)
{
	struct dr_rec *r = opaque;

	r->called++;
	r->err = err;
	r->partition = partition;
	r->offset = offset;
}

/*
 * Produces n messages "v-I" keyed "k-I" with headers to topic; checks that
 * every one was acknowledged with an offset, and counts them per partition.
 */
static void
produce_n(const char *topic, int n, int64_t *count, int nparts)
{
	struct opt_kafka o;
	struct kafka_producer *p;
	struct dr_rec *recs;
	rd_kafka_headers_t *h;
	char err[512], key[32], val[32];
	int i, j;

	opts(&o, brokers, NULL);
	REQUIRE((p = kafka_producer_new(&o, err, sizeof(err))) != NULL);
	REQUIRE((recs = calloc(n, sizeof(*recs))) != NULL);
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "k-%d", i);
		snprintf(val, sizeof(val), "v-%d", i);
		h = rd_kafka_headers_new(4);
		CHECK(kafka_header_add_str(h, "content-type",
		    "application/cloudevents+json") == 0);
		CHECK(kafka_header_add_int64(h, "orderflow.attempt", 0) == 0);
		CHECK(kafka_header_add_int64(h, "orderflow.attempt", i) == 0);
		CHECK(kafka_produce(p, topic, key, strlen(key), val,
		    strlen(val), h, record_cb, &recs[i]) == 0);
	}
	CHECK(kafka_flush(p, 30000) == 0);
	for (j = 0; j < nparts; j++)
		count[j] = 0;
	for (i = 0; i < n; i++) {
		CHECK(recs[i].called == 1);
		CHECK(recs[i].err == RD_KAFKA_RESP_ERR_NO_ERROR);
		CHECK(recs[i].offset >= 0);
		REQUIRE(recs[i].partition >= 0 && recs[i].partition < nparts);
		count[recs[i].partition]++;
	}
	/* Offsets in a partition are 0..count-1, each once. */
	for (j = 0; j < nparts; j++) {
		int64_t sum = 0;

		for (i = 0; i < n; i++)
			if (recs[i].partition == j) {
				CHECK(recs[i].offset < count[j]);
				sum += recs[i].offset;
			}
		CHECK(sum == count[j] * (count[j] - 1) / 2);
	}
	free(recs);
	kafka_producer_destroy(p);
	opt_free(&o);
}

/* The group's committed offsets of topic's partitions 0..nparts-1. */
static void
committed(const char *group, const char *topic, int nparts, int64_t *off)
{
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_topic_partition_list_t *l;
	char err[512];
	int i;

	conf = rd_kafka_conf_new();
	REQUIRE(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err,
	    sizeof(err)) == RD_KAFKA_CONF_OK);
	REQUIRE(rd_kafka_conf_set(conf, "group.id", group, err,
	    sizeof(err)) == RD_KAFKA_CONF_OK);
	REQUIRE((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err,
	    sizeof(err))) != NULL);
	l = rd_kafka_topic_partition_list_new(nparts);
	for (i = 0; i < nparts; i++)
		rd_kafka_topic_partition_list_add(l, topic, i);
	REQUIRE(rd_kafka_committed(rk, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
	for (i = 0; i < nparts; i++) {
		CHECK(l->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR);
		off[i] = l->elems[i].offset;
	}
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_destroy(rk);
}

static void
test_headers(void)
{
	rd_kafka_headers_t *h, *c;
	const char *drop[] = { "orderflow.attempt", "gone", NULL };
	const char *names[] = { "a", "A", "null", "nul" };
	const char *back[] = { "nul", "big", "num", "long", "a" };
	const void *vals[5];
	size_t sizes[5];
	char buf[16];
	int64_t v;
	const char *name;
	const void *val;
	size_t sz;

	h = rd_kafka_headers_new(2);
	CHECK(kafka_header_add_str(h, "a", "one") == 0);
	CHECK(kafka_header_add_int64(h, "orderflow.attempt", 1) == 0);
	CHECK(kafka_header_add_str(h, "a", "two") == 0);
	CHECK(kafka_header_add_int64(h, "orderflow.attempt", -42) == 0);
	CHECK(kafka_header_add_str(h, "long", "0123456789abcdef") == 0);
	CHECK(kafka_header_add_str(h, "num", "12x") == 0);
	CHECK(kafka_header_add_str(h, "big", "99999999999999999999") == 0);
	CHECK(rd_kafka_header_add(h, "nul", -1, "a\0b", 3) == 0);
	CHECK(rd_kafka_header_add(h, "null", -1, NULL, 0) == 0);

	CHECK(kafka_header_get_str(h, "a", buf, sizeof(buf)) == 3);
	CHECK(strcmp(buf, "two") == 0);			/* the last one */
	CHECK(kafka_header_get_str(h, "A", buf, sizeof(buf)) == -1);
	CHECK(kafka_header_get_str(h, "absent", buf, sizeof(buf)) == -1);
	CHECK(kafka_header_get_str(NULL, "a", buf, sizeof(buf)) == -1);
	CHECK(kafka_header_get_str(h, "null", buf, sizeof(buf)) == -1);
	CHECK(kafka_header_get_str(h, "long", buf, sizeof(buf)) == -2);
	CHECK(buf[0] == '\0');
	CHECK(kafka_header_get_str(h, "nul", buf, sizeof(buf)) == -2);
	CHECK(kafka_header_get_int64(h, "orderflow.attempt", &v) == 0);
	CHECK(v == -42);
	CHECK(kafka_header_get_int64(h, "num", &v) == -2);
	CHECK(kafka_header_get_int64(h, "big", &v) == -2);
	CHECK(kafka_header_get_int64(h, "absent", &v) == -1);

	/* One pass finds what one lookup each would, the last occurrence. */
	kafka_headers_find(h, names, 4, vals, sizes);
	CHECK(vals[0] != NULL && sizes[0] == 3 &&
	    memcmp(vals[0], "two", 3) == 0);
	CHECK(vals[1] == NULL && sizes[1] == 0);	/* absent */
	CHECK(vals[2] == NULL);				/* a null value */
	CHECK(vals[3] != NULL && sizes[3] == 3 &&
	    memcmp(vals[3], "a\0b", 3) == 0);
	/* Names in any order: here the headers' own, backwards. */
	kafka_headers_find(h, back, 5, vals, sizes);
	CHECK(vals[0] != NULL && sizes[0] == 3 &&
	    memcmp(vals[0], "a\0b", 3) == 0);
	CHECK(vals[1] != NULL && sizes[1] == 20 &&
	    memcmp(vals[1], "99999999999999999999", 20) == 0);
	CHECK(vals[2] != NULL && sizes[2] == 3 &&
	    memcmp(vals[2], "12x", 3) == 0);
	CHECK(vals[3] != NULL && sizes[3] == 16);
	CHECK(vals[4] != NULL && sizes[4] == 3 &&
	    memcmp(vals[4], "two", 3) == 0);
	kafka_headers_find(NULL, names, 4, vals, sizes);
	CHECK(vals[0] == NULL && vals[3] == NULL);

	c = kafka_headers_copy_except(h, drop);
	CHECK(rd_kafka_header_cnt(c) == rd_kafka_header_cnt(h) - 2);
	CHECK(kafka_header_get_str(c, "orderflow.attempt", buf,
	    sizeof(buf)) == -1);
	CHECK(kafka_header_get_str(c, "a", buf, sizeof(buf)) == 3);
	CHECK(strcmp(buf, "two") == 0);
	/* Order and null values are kept. */
	CHECK(rd_kafka_header_get_all(c, 0, &name, &val, &sz) == 0);
	CHECK(strcmp(name, "a") == 0 && sz == 3 && memcmp(val, "one", 3) == 0);
	CHECK(rd_kafka_header_get_last(c, "null", &val, &sz) == 0);
	CHECK(val == NULL);
	rd_kafka_headers_destroy(c);

	c = kafka_headers_copy_except(h, NULL);
	CHECK(rd_kafka_header_cnt(c) == rd_kafka_header_cnt(h));
	rd_kafka_headers_destroy(c);
	c = kafka_headers_copy_except(NULL, drop);
	CHECK(rd_kafka_header_cnt(c) == 0);
	rd_kafka_headers_destroy(c);
	rd_kafka_headers_destroy(h);
}

static void
test_produce(void)
{
	char topic[128];
	int64_t count[NPART];

	unit_unique(topic, sizeof(topic), "kafka-test", "produce");
	create_topic(topic, NPART);
	produce_n(topic, 60, count, NPART);
	CHECK(count[0] + count[1] + count[2] == 60);
}

/* What a consumed record's output delivery must mark done. */
struct source {
	struct kafka_consumer	*c;
	char			 topic[128];
	int32_t			 partition;
	int64_t			 offset;
};

static void
source_done(void *opaque, rd_kafka_resp_err_t err, int32_t partition,
    int64_t offset)
{
	struct source *s = opaque;

	(void)partition;
	CHECK(err == RD_KAFKA_RESP_ERR_NO_ERROR && offset >= 0);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		CHECK(kafka_consumer_done(s->c, s->topic, s->partition,
		    s->offset) == 0);
	free(s);
}

/*
 * The flow of every consuming command: each record's output is produced
 * and the record is done when that output is acknowledged.  Partition 0's
 * offset 3 never is: the group's commit must stop there.
 */
static void
test_consume(void)
{
	struct opt_kafka o;
	struct kafka_consumer *c;
	struct kafka_producer *p;
	struct source *s;
	rd_kafka_message_t *m;
	const char *topics[2];
	char in[128], out[128], group[128], err[512], buf[64];
	int64_t count[NPART], off[NPART], deadline, v;
	int got = 0, i, n = 60;

	unit_unique(in, sizeof(in), "kafka-test", "in");
	unit_unique(out, sizeof(out), "kafka-test", "out");
	unit_unique(group, sizeof(group), "kafka-test", "group");
	create_topic(in, NPART);
	create_topic(out, 1);
	produce_n(in, n, count, NPART);
	REQUIRE(count[0] >= 5);

	opts(&o, brokers, group);
	REQUIRE((p = kafka_producer_new(&o, err, sizeof(err))) != NULL);
	topics[0] = in;
	topics[1] = NULL;
	REQUIRE((c = kafka_consumer_new(&o, topics, err, sizeof(err))) != NULL);
	CHECK(kafka_wait_reachable(kafka_consumer_rk(c), 10000) == 0);
	deadline = util_mono_ms() + 60000;
	while (got < n && util_mono_ms() < deadline) {
		kafka_poll(p, 0);
		if ((m = kafka_consumer_poll(c, 200)) == NULL)
			continue;
		got++;
		CHECK(kafka_header_get_str(kafka_msg_headers(m),
		    "content-type", buf, sizeof(buf)) > 0);
		CHECK(strcmp(buf, "application/cloudevents+json") == 0);
		CHECK(kafka_header_get_int64(kafka_msg_headers(m),
		    "orderflow.attempt", &v) == 0);
		snprintf(buf, sizeof(buf), "v-%" PRId64, v);
		CHECK(m->len == strlen(buf) && memcmp(m->payload, buf,
		    m->len) == 0);
		CHECK(kafka_consumer_track(c, m) == 0);
		if (m->partition != 0 || m->offset != 3) {
			REQUIRE((s = malloc(sizeof(*s))) != NULL);
			s->c = c;
			snprintf(s->topic, sizeof(s->topic), "%s", in);
			s->partition = m->partition;
			s->offset = m->offset;
			CHECK(kafka_produce(p, out, m->key, m->key_len,
			    m->payload, m->len, NULL, source_done, s) == 0);
		}
		rd_kafka_message_destroy(m);
	}
	CHECK(got == n);
	CHECK(kafka_flush(p, 30000) == 0);
	CHECK(kafka_consumer_pending(c) == 1);
	CHECK(kafka_consumer_close(c) == 0);
	kafka_producer_destroy(p);

	committed(group, in, NPART, off);
	for (i = 0; i < NPART; i++)
		fprintf(stderr, "partition %d: %" PRId64 " records, "
		    "committed %" PRId64 "\n", i, count[i], off[i]);
	CHECK(off[0] == 3);
	CHECK(off[1] == count[1]);
	CHECK(off[2] == count[2]);
	opt_free(&o);
}

static void
count_revoke(void *opaque)
{
	(*(int *)opaque)++;
}

static int
assigned(struct kafka_consumer *c, rd_kafka_topic_partition_list_t **l)
{
	int n;

	if (*l != NULL)
		rd_kafka_topic_partition_list_destroy(*l);
	*l = NULL;
	REQUIRE(rd_kafka_assignment(kafka_consumer_rk(c), l) == 0);
	n = (*l)->cnt;
	return n;
}

/*
 * A second member joins.  With cooperative-sticky (coop) only some
 * partitions move; with the default, eager range, all are revoked and
 * handed out again.  Either way what is revoked commits what is done,
 * never past the pending record.  Background commits are made rare so
 * that the commit seen is the one made on revocation.
 */
static void
rebalance(int coop)
{
	enum { N = 40, P = 4 };
	struct opt_kafka o;
	struct kafka_consumer *a, *b;
	rd_kafka_message_t *m;
	rd_kafka_topic_partition_list_t *la = NULL, *lb = NULL;
	const char *topics[2];
	char topic[128], group[128], err[512];
	int64_t count[P], off[P], deadline;
	int got = 0, revokes = 0, i, j, moved;

	unit_unique(topic, sizeof(topic), "kafka-test", "rebalance");
	unit_unique(group, sizeof(group), "kafka-test", "group");
	create_topic(topic, P);
	produce_n(topic, N, count, P);
	REQUIRE(count[0] >= 2);

	opts(&o, brokers, group);
	REQUIRE(opt_prop_add(&o, "auto.commit.interval.ms=600000", "-X") == 0);
	if (coop)
		REQUIRE(opt_prop_add(&o,
		    "partition.assignment.strategy=cooperative-sticky", "-X") ==
		    0);
	topics[0] = topic;
	topics[1] = NULL;
	REQUIRE((a = kafka_consumer_new(&o, topics, err, sizeof(err))) != NULL);
	kafka_consumer_on_revoke(a, count_revoke, &revokes);
	deadline = util_mono_ms() + 60000;
	while (got < N && util_mono_ms() < deadline) {
		if ((m = kafka_consumer_poll(a, 200)) == NULL)
			continue;
		got++;
		CHECK(kafka_consumer_track(a, m) == 0);
		if (m->partition != 0 || m->offset != 1)
			CHECK(kafka_consumer_done(a, topic, m->partition,
			    m->offset) == 0);
		rd_kafka_message_destroy(m);
	}
	CHECK(got == N);
	CHECK(strcmp(rd_kafka_rebalance_protocol(kafka_consumer_rk(a)),
	    coop ? "COOPERATIVE" : "EAGER") == 0);
	CHECK(assigned(a, &la) == P);

	REQUIRE((b = kafka_consumer_new(&o, topics, err, sizeof(err))) != NULL);
	deadline = util_mono_ms() + 60000;
	while ((assigned(a, &la) + assigned(b, &lb) != P || lb->cnt == 0) &&
	    util_mono_ms() < deadline) {
		/*
		 * Whoever gets partition 0 starts from its commit, which
		 * stopped at the pending record: that record and those after
		 * it on partition 0 come again, nothing else.  a read them
		 * all, and keeps partition 0 as it was unless revoked
		 * eagerly.
		 */
		if ((m = kafka_consumer_poll(a, 100)) != NULL) {
			CHECK(!coop && m->partition == 0 && m->offset >= 1);
			rd_kafka_message_destroy(m);
		}
		if ((m = kafka_consumer_poll(b, 100)) != NULL) {
			CHECK(m->partition == 0 && m->offset >= 1);
			rd_kafka_message_destroy(m);
		}
	}
	CHECK(la->cnt > 0 && lb->cnt > 0 && la->cnt + lb->cnt == P);
	CHECK(revokes > 0);
	/*
	 * a kept its pending record unless its partition moved; an eager
	 * revocation forgets them all.
	 */
	moved = 1;
	for (i = 0; i < la->cnt; i++)
		if (la->elems[i].partition == 0)
			moved = 0;
	CHECK(kafka_consumer_pending(a) == (size_t)(coop && !moved));
	committed(group, topic, P, off);
	for (j = 0; j < lb->cnt; j++) {
		i = lb->elems[j].partition;
		fprintf(stderr, "moved partition %d: %" PRId64 " records, "
		    "committed %" PRId64 "\n", i, count[i], off[i]);
		CHECK(off[i] == (i == 0 ? 1 : count[i]));
	}
	rd_kafka_topic_partition_list_destroy(la);
	rd_kafka_topic_partition_list_destroy(lb);
	CHECK(kafka_consumer_close(b) == 0);
	CHECK(kafka_consumer_close(a) == 0);
	committed(group, topic, P, off);
	CHECK(off[0] == 1);
	for (i = 1; i < P; i++)
		CHECK(off[i] == count[i]);
	opt_free(&o);
}

static void
test_rebalance(void)
{
	rebalance(1);
}

static void
test_rebalance_eager(void)
{
	rebalance(0);
}

/* Polls for up to ms; returns the first message, NULL if none came. */
static rd_kafka_message_t *
poll_for(struct kafka_consumer *c, int ms)
{
	rd_kafka_message_t *m;
	int64_t deadline;

	deadline = util_mono_ms() + ms;
	while (util_mono_ms() < deadline)
		if ((m = kafka_consumer_poll(c, 100)) != NULL)
			return m;
	return NULL;
}

/*
 * A record not due yet: pause, seek back to it, resume later and get it
 * again.  Meanwhile nothing at or past it is committed.
 */
static void
test_seek(void)
{
	struct opt_kafka o;
	struct kafka_consumer *c;
	rd_kafka_message_t *m;
	const char *topics[2];
	char topic[128], group[128], err[512];
	int64_t count[1], off[1], want = 0;
	int seeked = 0;

	unit_unique(topic, sizeof(topic), "kafka-test", "seek");
	unit_unique(group, sizeof(group), "kafka-test", "group");
	create_topic(topic, 1);
	produce_n(topic, 10, count, 1);

	opts(&o, brokers, group);
	topics[0] = topic;
	topics[1] = NULL;
	REQUIRE((c = kafka_consumer_new(&o, topics, err, sizeof(err))) != NULL);
	while (want < 10 && (m = poll_for(c, 30000)) != NULL) {
		CHECK(m->partition == 0 && m->offset == want);
		if (m->offset == 5 && !seeked) {
			seeked = 1;
			CHECK(kafka_consumer_pause(c, topic, 0) == 0);
			CHECK(kafka_consumer_seek(c, topic, 0, 5) == 0);
			rd_kafka_message_destroy(m);
			/* Paused: nothing comes. */
			m = poll_for(c, 1000);
			CHECK(m == NULL);
			if (m != NULL)
				rd_kafka_message_destroy(m);
			CHECK(kafka_consumer_commit(c) == 0);
			committed(group, topic, 1, off);
			CHECK(off[0] == 5);
			CHECK(kafka_consumer_resume(c, topic, 0) == 0);
			continue;
		}
		CHECK(kafka_consumer_track(c, m) == 0);
		CHECK(kafka_consumer_done(c, topic, 0, m->offset) == 0);
		want = m->offset + 1;
		rd_kafka_message_destroy(m);
	}
	CHECK(want == 10);
	CHECK(kafka_consumer_pending(c) == 0);
	CHECK(kafka_consumer_close(c) == 0);
	committed(group, topic, 1, off);
	CHECK(off[0] == 10);
	opt_free(&o);
}

/* A queue of 5 messages: producing 300 waits for room, never fails. */
static void
test_queuefull(void)
{
	struct opt_kafka o;
	struct kafka_producer *p;
	struct dr_rec recs[300];
	char topic[128], err[512];
	size_t i;

	unit_unique(topic, sizeof(topic), "kafka-test", "full");
	create_topic(topic, 1);
	opts(&o, brokers, NULL);
	REQUIRE(opt_prop_add(&o, "queue.buffering.max.messages=5", "-X") == 0);
	REQUIRE((p = kafka_producer_new(&o, err, sizeof(err))) != NULL);
	memset(recs, 0, sizeof(recs));
	for (i = 0; i < 300; i++)
		CHECK(kafka_produce(p, topic, NULL, 0, "x", 1, NULL, record_cb,
		    &recs[i]) == 0);
	CHECK(kafka_flush(p, 30000) == 0);
	for (i = 0; i < 300; i++)
		CHECK(recs[i].called == 1 && recs[i].err == 0 &&
		    recs[i].offset == (int64_t)i);
	kafka_producer_destroy(p);
	opt_free(&o);
}

/*
 * The value size of test_hold()'s message i: ten held at once fill more
 * than one of kafka.c's chunks, and the last is too large for one.
 */
static size_t
hold_vlen(size_t i)
{
	return i == 24 ? 40000 : (i % 10) * 1700 + i;
}

/*
 * Held back (kafka_producer_hold()): nothing reaches librdkafka until max
 * are held, a tick finds the first old enough or starved, or a flush; then
 * every message goes in the order produced, key, value and headers as
 * given; a message still held at destroy gets its callback.
 */
static void
test_hold(void)
{
	struct opt_kafka o;
	struct kafka_producer *p;
	struct kafka_consumer *c;
	rd_kafka_message_t *m;
	rd_kafka_headers_t *h;
	struct dr_rec recs[27];
	struct kafka_dr drs[25];
	const char *topics[2];
	static char val[40000];
	char topic[128], group[128], err[512], key[16];
	const void *hv;
	size_t hlen, i, got = 0;
	int64_t deadline;

	unit_unique(topic, sizeof(topic), "kafka-test", "hold");
	unit_unique(group, sizeof(group), "kafka-test", "group");
	create_topic(topic, 1);
	opts(&o, brokers, group);
	REQUIRE((p = kafka_producer_new(&o, err, sizeof(err))) != NULL);
	kafka_producer_hold(p, 60000, 10);
	memset(recs, 0, sizeof(recs));
	for (i = 0; i < 25; i++) {
		snprintf(key, sizeof(key), "k-%zu", i);
		memset(val, 'a' + (int)(i % 26), sizeof(val));
		h = rd_kafka_headers_new(1);
		kafka_header_add_int64(h, "n", (int64_t)i);
		/* Message 7 has no key; odd ones bring their own dr. */
		drs[i].cb = record_cb;
		drs[i].opaque = &recs[i];
		CHECK((i % 2 == 0 ? kafka_produce(p, topic, i == 7 ? NULL :
		    key, strlen(key), val, hold_vlen(i), h, record_cb,
		    &recs[i]) : kafka_produce_dr(p, topic, i == 7 ? NULL : key,
		    strlen(key), val, hold_vlen(i), h, &drs[i])) == 0);
	}
	/* 20 went at the tenth and the twentieth; 5 are held. */
	CHECK(rd_kafka_outq_len(kafka_producer_rk(p)) <= 20);
	deadline = util_mono_ms() + 30000;
	while (recs[19].called == 0 && util_mono_ms() < deadline) {
		kafka_producer_tick(p, 0);
		kafka_poll(p, 100);
	}
	CHECK(recs[19].called == 1 && recs[19].offset == 19);
	for (i = 20; i < 25; i++)
		CHECK(recs[i].called == 0);
	kafka_producer_tick(p, 1);
	CHECK(kafka_flush(p, 30000) == 0);
	for (i = 0; i < 25; i++)
		CHECK(recs[i].called == 1 && recs[i].err == 0 &&
		    recs[i].offset == (int64_t)i);
	/* Held at destroy: its callback, purged; so is one of its own dr. */
	h = rd_kafka_headers_new(1);
	CHECK(kafka_produce(p, topic, "k", 1, "v", 1, h, record_cb,
	    &recs[25]) == 0);
	drs[0].cb = record_cb;
	drs[0].opaque = &recs[26];
	h = rd_kafka_headers_new(1);
	CHECK(kafka_produce_dr(p, topic, "k", 1, "v", 1, h, &drs[0]) == 0);
	kafka_producer_destroy(p);
	CHECK(recs[25].called == 1 &&
	    recs[25].err == RD_KAFKA_RESP_ERR__PURGE_QUEUE);
	CHECK(recs[26].called == 1 &&
	    recs[26].err == RD_KAFKA_RESP_ERR__PURGE_QUEUE);

	topics[0] = topic;
	topics[1] = NULL;
	REQUIRE((c = kafka_consumer_new(&o, topics, err, sizeof(err))) != NULL);
	while (got < 25 && (m = poll_for(c, 30000)) != NULL) {
		i = (size_t)m->offset;
		snprintf(key, sizeof(key), "k-%zu", i);
		CHECK(i == got);
		if (i == 7)
			CHECK(m->key == NULL && m->key_len == 0);
		else
			CHECK(m->key_len == strlen(key) &&
			    memcmp(m->key, key, m->key_len) == 0);
		CHECK(m->len == hold_vlen(i) && (m->len == 0 ||
		    ((const char *)m->payload)[m->len - 1] ==
		    'a' + (int)(i % 26)));
		snprintf(key, sizeof(key), "%zu", i);
		CHECK(rd_kafka_message_headers(m, &h) == 0 &&
		    rd_kafka_header_get_last(h, "n", &hv, &hlen) == 0 &&
		    hlen == strlen(key) && memcmp(hv, key, hlen) == 0);
		got++;
		rd_kafka_message_destroy(m);
	}
	CHECK(got == 25);
	CHECK(kafka_consumer_close(c) == 0);
	opt_free(&o);
}

/* Nothing listens on port 1: fail within the deadline, never hang. */
static void
test_unreachable(void)
{
	struct opt_kafka o;
	struct kafka_producer *p;
	struct kafka_consumer *c;
	struct dr_rec rec;
	const char *topics[] = { "kafka-test-unreachable", NULL };
	char err[512];
	int64_t t0, dt, deadline;

	opts(&o, "127.0.0.1:1", "kafka-test-unreachable");
	REQUIRE((p = kafka_producer_new(&o, err, sizeof(err))) != NULL);
	t0 = util_mono_ms();
	CHECK(kafka_wait_reachable(kafka_producer_rk(p), 2000) != 0);
	dt = util_mono_ms() - t0;
	fprintf(stderr, "kafka_wait_reachable failed after %" PRId64 " ms\n",
	    dt);
	CHECK(dt >= 1500 && dt < 4000);
	deadline = util_mono_ms() + 10000;
	while (!kafka_unreachable(kafka_producer_rk(p)) &&
	    util_mono_ms() < deadline)
		kafka_poll(p, 100);
	CHECK(kafka_unreachable(kafka_producer_rk(p)));

	/* Destroying reports what was never delivered. */
	memset(&rec, 0, sizeof(rec));
	CHECK(kafka_produce(p, "t", NULL, 0, "x", 1, NULL, record_cb,
	    &rec) == 0);
	CHECK(kafka_flush(p, 100) == 1);
	kafka_producer_destroy(p);
	CHECK(rec.called == 1 && rec.err != 0 && rec.offset == -1);

	REQUIRE((c = kafka_consumer_new(&o, topics, err, sizeof(err))) != NULL);
	t0 = util_mono_ms();
	CHECK(kafka_wait_reachable(kafka_consumer_rk(c), 1000) != 0);
	CHECK(util_mono_ms() - t0 < 3000);
	t0 = util_mono_ms();
	kafka_consumer_close(c);
	CHECK(util_mono_ms() - t0 < 10000);
	opt_free(&o);
}

/* A fatal error is seen by kafka_fatal() and stops producing. */
static void
test_fatal(void)
{
	struct opt_kafka o;
	struct kafka_producer *p;
	char err[512], reason[512];
	int64_t deadline;

	opts(&o, brokers, NULL);
	REQUIRE((p = kafka_producer_new(&o, err, sizeof(err))) != NULL);
	CHECK(kafka_fatal(kafka_producer_rk(p), reason, sizeof(reason)) == 0);
	CHECK(rd_kafka_test_fatal_error(kafka_producer_rk(p),
	    RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
	    "kafka_test made this up") == 0);
	deadline = util_mono_ms() + 5000;
	while (!kafka_fatal(kafka_producer_rk(p), reason, sizeof(reason)) &&
	    util_mono_ms() < deadline)
		kafka_poll(p, 100);
	CHECK(kafka_fatal(kafka_producer_rk(p), reason, sizeof(reason)) == 1);
	fprintf(stderr, "fatal: %s\n", reason);
	CHECK(strstr(reason, "kafka_test made this up") != NULL);
	CHECK(kafka_produce(p, "t", NULL, 0, "x", 1, NULL, NULL, NULL) ==
	    RD_KAFKA_RESP_ERR__FATAL);
	kafka_producer_destroy(p);
	opt_free(&o);
}

/* A -X property overrides a default; a bad one is an error naming it. */
static void
test_config(void)
{
	struct opt_kafka o;
	struct kafka_producer *p;
	const char *topics[] = { "t", NULL };
	char err[512];

	opts(&o, brokers, "g");
	REQUIRE(opt_prop_add(&o, "linger.ms=50", "-X") == 0);
	REQUIRE((p = kafka_producer_new(&o, err, sizeof(err))) != NULL);
	kafka_producer_destroy(p);
	REQUIRE(opt_prop_add(&o, "no.such.thing=1", "f.properties:3") == 0);
	CHECK(kafka_producer_new(&o, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "f.properties:3") != NULL);
	CHECK(kafka_consumer_new(&o, topics, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "no.such.thing") != NULL);
	opt_free(&o);
	opts(&o, brokers, "g");
	topics[0] = NULL;
	CHECK(kafka_consumer_new(&o, topics, err, sizeof(err)) == NULL);
	opt_free(&o);
}

/*
 * stderr goes to a temporary file between capture_start() and
 * capture_end(), which returns what was written there and writes it to
 * stderr as well.
 */
static FILE *captured;
static int saved_stderr = -1;

static void
capture_start(void)
{
	fflush(stderr);
	REQUIRE((captured = tmpfile()) != NULL);
	REQUIRE((saved_stderr = dup(STDERR_FILENO)) != -1);
	REQUIRE(dup2(fileno(captured), STDERR_FILENO) != -1);
}

static const char *
capture_end(void)
{
	static char buf[16384];
	size_t n;

	fflush(stderr);
	REQUIRE(dup2(saved_stderr, STDERR_FILENO) != -1);
	close(saved_stderr);
	rewind(captured);
	n = fread(buf, 1, sizeof(buf) - 1, captured);
	buf[n] = '\0';
	fclose(captured);
	fputs(buf, stderr);
	return buf;
}

/*
 * A close that does not end is left after a bounded time instead of
 * holding the process.  librdkafka's mock cluster (fault injection only)
 * answers the commit made on revocation, inside the close, after 60 s,
 * as a coordinator that stopped answering would; kafka_consumer_close()
 * must return after about 10 s instead, and say that it left the group.
 */
#define APIKEY_OFFSET_COMMIT	8

static void
test_close_stuck(void)
{
	struct opt_kafka o;
	struct kafka_consumer *c;
	struct kafka_producer *p;
	rd_kafka_mock_cluster_t *mc;
	rd_kafka_message_t *m = NULL;
	rd_kafka_topic_partition_list_t *l = NULL;
	const char *topics[2];
	char topic[128], group[128], err[512];
	int64_t t, deadline;

	unit_unique(topic, sizeof(topic), "kafka-test", "close");
	unit_unique(group, sizeof(group), "kafka-test", "group");
	opts(&o, "127.0.0.1:1", group);
	REQUIRE(opt_prop_add(&o, "test.mock.num.brokers=1", "-X") == 0);
	REQUIRE(opt_prop_add(&o, "topic.metadata.refresh.interval.ms=500",
	    "-X") == 0);
	REQUIRE(opt_prop_add(&o, "auto.commit.interval.ms=600000", "-X") ==
	    0);
	topics[0] = topic;
	topics[1] = NULL;
	REQUIRE((c = kafka_consumer_new(&o, topics, err, sizeof(err))) != NULL);
	REQUIRE((mc = rd_kafka_handle_mock_cluster(kafka_consumer_rk(c))) !=
	    NULL);
	REQUIRE(rd_kafka_mock_topic_create(mc, topic, 1, 1) == 0);
	deadline = util_mono_ms() + 30000;
	while (assigned(c, &l) == 0 && util_mono_ms() < deadline)
		kafka_consumer_poll(c, 100);
	REQUIRE(l->cnt == 1);
	rd_kafka_topic_partition_list_destroy(l);

	/* One record, done: the revocation commits it. */
	opt_free(&o);
	opts(&o, rd_kafka_mock_cluster_bootstraps(mc), NULL);
	REQUIRE((p = kafka_producer_new(&o, err, sizeof(err))) != NULL);
	REQUIRE(kafka_produce(p, topic, "k", 1, "v", 1, NULL, NULL, NULL) ==
	    0);
	CHECK(kafka_flush(p, 10000) == 0);
	kafka_producer_destroy(p);
	deadline = util_mono_ms() + 30000;
	while (m == NULL && util_mono_ms() < deadline)
		m = kafka_consumer_poll(c, 100);
	REQUIRE(m != NULL);
	CHECK(kafka_consumer_track(c, m) == 0);
	CHECK(kafka_consumer_done(c, topic, m->partition, m->offset) == 0);
	rd_kafka_message_destroy(m);

	/* The close's own commit first, at once; the revocation's late. */
	REQUIRE(rd_kafka_mock_broker_push_request_error_rtts(mc, 1,
	    APIKEY_OFFSET_COMMIT, 2, RD_KAFKA_RESP_ERR_NO_ERROR, 0,
	    RD_KAFKA_RESP_ERR_NO_ERROR, 60000) == 0);
	capture_start();
	t = util_mono_ms();
	CHECK(kafka_consumer_close(c) == 0);
	t = util_mono_ms() - t;
	CHECK(strstr(capture_end(), "still closing after 10 s") != NULL);
	fprintf(stderr, "close returned after %" PRId64 " ms\n", t);
	CHECK(t >= 9000 && t < 30000);
	opt_free(&o);
}

/* kafka_log_cb(rk, level, fac, line) at our level threshold, as written. */
static const char *
log_line(rd_kafka_t *rk, int level, const char *fac, const char *line)
{
	capture_start();
	kafka_log_cb(rk, level, fac, line);
	return capture_end();
}

/*
 * librdkafka's lines: one level mapping, and no secret value in a line or
 * error message, whichever form it takes; a quiet handle's lines are
 * debug lines.
 */
static void
test_logging(void)
{
	static const struct {
		int		 syslog;
		const char	*fac;
		const char	*level;
	} levels[] = {
		{ 0, "BROKER", "error" }, { 3, "BROKER", "error" },
		{ 4, "BROKER", "warn" }, { 5, "BROKER", "info" },
		{ 6, "BROKER", "info" }, { 7, "BROKER", "debug" },
		{ 3, "FAIL", "debug" }, { 2, "FATAL", "debug" },
	};
	static const struct {
		const char	*line;
		const char	*want;
	} secrets[] = {
		{ "  sasl.password = hunter2",
		  "kafka: CONF:   sasl.password = [redacted]\n" },
		{ "  sasl.username = hunter2 with blanks",
		  "kafka: CONF:   sasl.username = [redacted]\n" },
		{ "Invalid value \"hunter2\" for configuration property "
		  "\"sasl.password\"",
		  "kafka: CONF: Invalid value \"[redacted]\" for configuration "
		  "property \"sasl.password\"\n" },
		{ "retrying with sasl.password=hunter2, as configured",
		  "kafka: CONF: retrying with sasl.password=[redacted], as "
		  "configured\n" },
		{ "[thrd:app]:   ssl.key.password = hunter2 with blanks",
		  "kafka: CONF: [thrd:app]:   ssl.key.password = [redacted]\n" },
		{ "set ssl.key.password=\"hunter2 x\" (ok)",
		  "kafka: CONF: set ssl.key.password=[redacted] (ok)\n" },
		{ "set ssl.key.pem=-----BEGIN PRIVATE KEY-----\nMII hunter2\n"
		  "-----END PRIVATE KEY----- (ok)",
		  "kafka: CONF: set ssl.key.pem=[redacted] (ok)\n" },
		{ "Invalid value \"hunter2\" for configuration property "
		  "\"ssl.key.location\"",
		  "kafka: CONF: Invalid value \"[redacted]\" for configuration "
		  "property \"ssl.key.location\"\n" },
		{ "  ssl.ca.pem = hunter2", "kafka: CONF:   ssl.ca.pem = "
		  "[redacted]\n" },
		{ "-X: ssl_key=[redacted]: not settable",
		  "kafka: CONF: -X: ssl_key=[redacted]: not settable\n" },
		{ "  bootstrap.servers = 127.0.0.1:9092",
		  "kafka: CONF:   bootstrap.servers = 127.0.0.1:9092\n" },
	};
	struct opt_kafka o;
	struct kafka_producer *p;
	rd_kafka_t *rk;
	const char *out;
	char want[64], err[512];
	size_t i;

	REQUIRE(log_set_format_name("json") == 0);
	log_set_level(LOG_LEVEL_DEBUG);
	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		out = log_line(NULL, levels[i].syslog, levels[i].fac, "a line");
		snprintf(want, sizeof(want), "\"level\":\"%s\"",
		    levels[i].level);
		CHECK(strstr(out, want) != NULL);
		snprintf(want, sizeof(want), "kafka: %s: a line",
		    levels[i].fac);
		CHECK(strstr(out, want) != NULL);
	}
	log_set_level(LOG_LEVEL_WARN);
	CHECK(*log_line(NULL, 6, "BROKER", "a line") == '\0');
	CHECK(*log_line(NULL, 4, "BROKER", "a line") != '\0');

	REQUIRE(log_set_format_name("text") == 0);
	for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		out = log_line(NULL, 4, "CONF", secrets[i].line);
		CHECK(strstr(out, "hunter2") == NULL);
		CHECK(strcmp(out + strlen("kafka_test: "), secrets[i].want) ==
		    0);
	}

	/* librdkafka's own configuration dump, and a quiet handle. */
	opts(&o, "127.0.0.1:1", "kafka-test-logging");
	REQUIRE(opt_prop_add(&o, "debug=conf", "-X") == 0);
	REQUIRE(opt_prop_add(&o, "sasl.username=hunter2 with blanks",
	    "-X") == 0);
	log_set_level(LOG_LEVEL_DEBUG);
	capture_start();
	p = kafka_producer_new(&o, err, sizeof(err));
	kafka_producer_destroy(p);
	out = capture_end();
	CHECK(p != NULL);
	CHECK(strstr(out, "sasl.username = [redacted]") != NULL);
	CHECK(strstr(out, "hunter2") == NULL);
	opt_free(&o);
	opts(&o, "127.0.0.1:1", NULL);
	REQUIRE((rk = kafka_admin_new(&o, NULL, NULL, err,
	    sizeof(err))) != NULL);
	REQUIRE(log_set_format_name("json") == 0);
	CHECK(strstr(log_line(rk, 3, "BROKER", "a line"),
	    "\"level\":\"debug\"") != NULL);
	kafka_destroy(rk);
	opt_free(&o);
	REQUIRE(log_set_format_name("text") == 0);
	log_set_level(LOG_LEVEL_INFO);
}

static const struct unit_test tests[] = {
	{ "headers", test_headers },
	{ "config", test_config },
	{ "logging", test_logging },
	{ "unreachable", test_unreachable },
	{ "fatal", test_fatal },
	{ "produce", test_produce },
	{ "consume", test_consume },
	{ "seek", test_seek },
	{ "close-stuck", test_close_stuck },
	{ "rebalance", test_rebalance },
	{ "rebalance-eager", test_rebalance_eager },
	{ "queuefull", test_queuefull },
	{ "hold", test_hold },
};

int
main(int argc, char *argv[])
{
	log_init("kafka_test");
	if ((brokers = getenv("KAFKA_BROKERS")) == NULL || *brokers == '\0')
		brokers = "127.0.0.1:9092";
	return unit_main("kafka_test", tests, argc, argv);
}
