/*
 * storeq_test.c - unit tests of common/storeq.c: a request comes back
 * only once its batch committed, a failed batch comes back whole with
 * nothing of it stored, a deadlock runs the batch again, requests queued
 * while a batch commits share the next one, the tick runs while idle,
 * and stopping runs what was queued.
 *
 * Each test works in its own directory from mkdtemp(3), removed after.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "storeq.h"
#include "util.h"
#include "unit.h"

#define WAIT_MS		10000	/* the longest a test waits for a batch */

static char tmpdir[64];

static void
rm_tree(const char *dir)
{
	char path[512];
	struct dirent *e;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static struct store *
open_store(void)
{
	struct store *s = NULL;

	snprintf(tmpdir, sizeof(tmpdir), "%s/storeq_test.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	if (store_open(&s, tmpdir, STORE_NOSYNC) != 0) {
		fprintf(stderr, "cannot open a store in %s\n", tmpdir);
		exit(1);
	}
	return s;
}

static void
close_store(struct store *s)
{
	CHECK(store_close(s) == 0);
	rm_tree(tmpdir);
}

/* A request: put key, or fail with fail_with; and what came back. */
struct req {
	struct storeq_req	 r;
	struct store		**sp;
	char			 key[32];
	int			 fail_with;	/* the body's error, once */
	int			 runs;		/* bodies run */
	int			 back;		/* done called */
	int			 err;		/* done's */
	int			 visible;	/* done: committed, seen outside */
	volatile int		*gate;		/* body waits while *gate */
};

static int
put_body(struct store *s, struct store_txn *t, struct storeq_req *sr)
{
	struct req *q = sr->arg;
	struct store_idem rec = { util_now_ms(), util_now_ms() + 3600000, 1,
	    (void *)"outcome", 7 };
	int e;

	q->runs++;
	while (q->gate != NULL && __atomic_load_n(q->gate, __ATOMIC_ACQUIRE))
		usleep(1000);
	if (q->fail_with != 0) {
		e = q->fail_with;
		if (e == STORE_DEADLOCK)
			q->fail_with = 0;	/* once */
		return e;
	}
	return store_idem_put(s, t, q->key, &rec);
}

/* Whether key is stored, read outside any batch. */
static int
stored(struct store *s, const char *key)
{
	struct store_idem rec;

	if (store_idem_get(s, NULL, key, util_now_ms(), &rec) != 0)
		return 0;
	store_idem_free(&rec);
	return 1;
}

static void
req_done(struct storeq_req *sr, int err)
{
	struct req *q = sr->arg;

	q->back++;
	q->err = err;
	q->visible = stored(*q->sp, q->key);
}

static void
req_init(struct req *q, struct store **sp, const char *fmt, int i)
{
	memset(q, 0, sizeof(*q));
	q->sp = sp;
	snprintf(q->key, sizeof(q->key), fmt, i);
	q->r.body = put_body;
	q->r.done = req_done;
	q->r.arg = q;
}

/* Collects until n requests came back or WAIT_MS passed. */
static size_t
collect(struct storeq *sq, size_t n)
{
	int64_t end = util_mono_ms() + WAIT_MS;
	size_t got = 0;

	while (got < n && util_mono_ms() < end)
		got += storeq_collect(sq, 50);
	return got;
}

/* What the failed hook saw. */
static int failed_calls, failed_err;

static void
on_failed(void *arg, int err)
{
	(void)arg;
	failed_calls++;
	failed_err = err;
}

/* 300 requests: each back once, committed and visible when it is. */
static void
test_commit(void)
{
	struct store *s = open_store();
	struct storeq *sq;
	static struct req q[300];
	size_t i;

	CHECK((sq = storeq_start(&s, NULL)) != NULL);
	for (i = 0; i < 300; i++) {
		req_init(&q[i], &s, "c-%d", (int)i);
		storeq_submit(sq, &q[i].r);
	}
	CHECK(collect(sq, 300) == 300);
	CHECK(storeq_pending(sq) == 0);
	for (i = 0; i < 300; i++)
		CHECK(q[i].back == 1 && q[i].err == 0 && q[i].visible);
	/* At most STOREQ_BATCH_MAX a transaction. */
	CHECK(storeq_batches(sq) >= 300 / STOREQ_BATCH_MAX + 1);
	storeq_stop(sq);
	close_store(s);
}

/*
 * While a batch is held open, three requests queue; they share the next
 * batch, whose second body fails: all three come back with its error,
 * none stored, the failed hook called once.
 */
static void
test_abort(void)
{
	struct storeq_hooks h = { NULL, on_failed, NULL, NULL };
	struct store *s = open_store();
	struct storeq *sq;
	struct req hold, q[3];
	volatile int gate = 1;
	unsigned long before;
	int i;

	failed_calls = 0;
	CHECK((sq = storeq_start(&s, &h)) != NULL);
	req_init(&hold, &s, "hold-%d", 0);
	hold.gate = &gate;
	storeq_submit(sq, &hold.r);
	while (__atomic_load_n(&hold.runs, __ATOMIC_ACQUIRE) == 0)
		usleep(1000);
	for (i = 0; i < 3; i++) {
		req_init(&q[i], &s, "a-%d", i);
		storeq_submit(sq, &q[i].r);
	}
	q[1].fail_with = EIO;
	before = storeq_batches(sq);
	__atomic_store_n(&gate, 0, __ATOMIC_RELEASE);
	CHECK(collect(sq, 4) == 4);
	CHECK(hold.err == 0 && hold.visible);
	CHECK(storeq_batches(sq) == before + 2);
	for (i = 0; i < 3; i++) {
		CHECK(q[i].back == 1 && q[i].err == EIO);
		CHECK(!stored(s, q[i].key));
	}
	CHECK(q[2].runs == 0);		/* the batch stopped at the failure */
	CHECK(failed_calls == 1 && failed_err == EIO);
	storeq_stop(sq);
	close_store(s);
}

/* A deadlock runs the whole batch again; it then commits. */
static void
test_deadlock(void)
{
	struct store *s = open_store();
	struct storeq *sq;
	struct req q;

	CHECK((sq = storeq_start(&s, NULL)) != NULL);
	req_init(&q, &s, "d-%d", 0);
	q.fail_with = STORE_DEADLOCK;
	storeq_submit(sq, &q.r);
	CHECK(collect(sq, 1) == 1);
	CHECK(q.runs == 2 && q.err == 0 && q.visible);
	storeq_stop(sq);
	close_store(s);
}

static int ticks;

static void
on_tick(void *arg)
{
	(void)arg;
	__atomic_add_fetch(&ticks, 1, __ATOMIC_RELAXED);
}

/* The tick runs about once a second with nothing queued. */
static void
test_tick(void)
{
	struct storeq_hooks h = { on_tick, NULL, NULL, NULL };
	struct store *s = open_store();
	struct storeq *sq;
	int64_t end = util_mono_ms() + WAIT_MS;

	ticks = 0;
	CHECK((sq = storeq_start(&s, &h)) != NULL);
	while (__atomic_load_n(&ticks, __ATOMIC_RELAXED) < 2 &&
	    util_mono_ms() < end)
		usleep(10000);
	CHECK(ticks >= 2);
	storeq_stop(sq);
	close_store(s);
}

/* Stopping runs what was queued (its callbacks are abandoned). */
static void
test_stop(void)
{
	struct store *s = open_store();
	struct storeq *sq;
	static struct req q[50];
	int i;

	CHECK((sq = storeq_start(&s, NULL)) != NULL);
	for (i = 0; i < 50; i++) {
		req_init(&q[i], &s, "s-%d", i);
		storeq_submit(sq, &q[i].r);
	}
	storeq_stop(sq);
	for (i = 0; i < 50; i++)
		CHECK(q[i].back == 0 && stored(s, q[i].key));
	close_store(s);
}

static const struct unit_test tests[] = {
	{ "commit", test_commit },
	{ "abort", test_abort },
	{ "deadlock", test_deadlock },
	{ "tick", test_tick },
	{ "stop", test_stop }
};

int
main(int argc, char *argv[])
{
	return unit_main("storeq_test", tests, argc, argv);
}
