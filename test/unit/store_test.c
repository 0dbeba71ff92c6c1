/*
 * store_test.c - unit tests for common/store.c and storeenv.c: table
 * semantics, transactions across tables, threads, and processes
 * SIGKILLed while holding locks or in the middle of a burst of commits;
 * and for common/upkeep.c: its pace, its checkpoints and its rule for a
 * failed store, given a clock.
 *
 * Usage: store_test NAME | all; without an argument it lists the tests.
 * Each test works in its own directory from mkdtemp(3), removed after.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <db.h>

#include "store.h"
#include "upkeep.h"
#include "util.h"
#include "unit.h"

/* An operation that must succeed; names the error when it does not. */
#define OK(expr) do {							\
	int ok_ret_ = (expr);						\
	if (ok_ret_ != 0) {						\
		fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__,	\
		    #expr, store_strerror(ok_ret_));			\
		failures++;						\
	}								\
} while (0)

static char tmpdir[64];
static unsigned gflags;	/* store_open() flags of the idempotency tests */

/*
 * A generation of the store's idempotency records (store.c) is 2^16 ms
 * for TTLs up to that; a TTL of LONG or more fits none.
 */
#define GEN		(INT64_C(1) << 16)
#define LONG		(INT64_C(1) << 37)

static const char *
mkdir_tmp(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/store_test.XXXXXX",
	    base != NULL && strlen(base) < 32 ? base : "/tmp");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	return tmpdir;
}

/* Removes dir and the files (and one level of directories) in it. */
static void
rm_tree(const char *dir)
{
	char path[512];
	struct dirent *de;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path) == -1 && errno == EISDIR)
			rm_tree(path);
	}
	closedir(d);
	rmdir(dir);
}

/* The generation slot (store.c's idem-gN.db) of time ms. */
static int
slot_of(int64_t ms)
{
	return (int)((((uint64_t)ms ^ UINT64_C(1) << 63) / (uint64_t)GEN) % 3);
}

static struct store_idem
idem(const char *outcome, int64_t created, int64_t expires, int state)
{
	struct store_idem r = { created, expires, state, (void *)outcome,
	    outcome != NULL ? strlen(outcome) : 0 };

	return r;
}

/* The JSON of an order, or "" when absent. */
static int
order_is(struct store *s, const char *id, const char *want)
{
	char *json;
	int ret, same;

	if ((ret = store_order_get(s, NULL, id, &json)) != 0)
		return ret == STORE_NOTFOUND && *want == '\0';
	same = strcmp(json, want) == 0;
	free(json);
	return same;
}

static void
test_open(void)
{
	char dir[128];
	struct store *s, *s2;
	struct stat st;
	uint64_t seq1, seq2;

	snprintf(dir, sizeof(dir), "%s/state", mkdir_tmp());
	OK(store_open(&s, dir, 0));
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
	OK(store_order_put(s, NULL, "o-1", "{\"status\":\"pending\"}"));
	OK(store_outbox_append(s, NULL, "e1", 2, 1, &seq1));
	/* DB_REGISTER: one handle per process. */
	CHECK(store_open(&s2, dir, 0) != 0 && s2 == NULL);
	OK(store_checkpoint(s));
	OK(store_close(s));
	OK(store_close(NULL));

	OK(store_open(&s, dir, 0));
	CHECK(order_is(s, "o-1", "{\"status\":\"pending\"}"));
	CHECK(order_is(s, "o-2", ""));
	OK(store_order_put(s, NULL, "o-1", "{\"status\":\"approved\"}"));
	CHECK(order_is(s, "o-1", "{\"status\":\"approved\"}"));
	OK(store_outbox_append(s, NULL, "e2", 2, 2, &seq2));
	CHECK(seq2 > seq1);
	CHECK(store_order_put(s, NULL, "", "{}") == EINVAL);
	OK(store_close(s));
	CHECK(store_open(&s, "/proc/no/such/dir", 0) != 0 && s == NULL);
	rm_tree(dir);
	rm_tree(tmpdir);
}

static void
test_idem(void)
{
	struct store *s;
	struct store_idem r, old;
	const char bin[] = { 'a', '\0', 'b' };
	size_t n, total;
	char key[32];
	int i;

	OK(store_open(&s, mkdir_tmp(), gflags));
	CHECK(store_idem_get(s, NULL, "k1", 100, &r) == STORE_NOTFOUND);
	r = idem("{\"id\":1}", 100, 200, 1);
	OK(store_idem_put(s, NULL, "k1", &r));
	OK(store_idem_get(s, NULL, "k1", 150, &r));
	CHECK(r.created_ms == 100 && r.expires_ms == 200 && r.state == 1);
	CHECK(r.outcome_len == 8 && strcmp(r.outcome, "{\"id\":1}") == 0);
	store_idem_free(&r);
	/* Expired records are absent, before expire() removes them. */
	CHECK(store_idem_get(s, NULL, "k1", 200, &r) == STORE_NOTFOUND);
	CHECK(r.outcome == NULL);

	/* Overwrite, with binary and empty outcomes, a negative state. */
	r = idem(NULL, 1, 1000, -7);
	r.outcome = (void *)bin;
	r.outcome_len = sizeof(bin);
	OK(store_idem_put(s, NULL, "k1", &r));
	OK(store_idem_get(s, NULL, "k1", 999, &r));
	CHECK(r.state == -7 && r.outcome_len == 3 &&
	    memcmp(r.outcome, bin, 3) == 0);
	store_idem_free(&r);
	r = idem(NULL, 1, 1000, 0);
	OK(store_idem_put(s, NULL, "k2", &r));
	OK(store_idem_get(s, NULL, "k2", 5, &r));
	CHECK(r.outcome_len == 0 && r.outcome != NULL);
	store_idem_free(&r);

	/* put_new: absent, present, expired. */
	r = idem("first", 10, 500, 1);
	OK(store_idem_put_new(s, NULL, "k3", &r, 10, NULL));
	r = idem("second", 20, 600, 2);
	CHECK(store_idem_put_new(s, NULL, "k3", &r, 20, &old) == STORE_EXISTS);
	CHECK(old.state == 1 && old.created_ms == 10 &&
	    strcmp(old.outcome, "first") == 0);
	store_idem_free(&old);
	CHECK(store_idem_put_new(s, NULL, "k3", &r, 20, NULL) == STORE_EXISTS);
	OK(store_idem_put_new(s, NULL, "k3", &r, 500, &old));
	CHECK(old.outcome == NULL);
	OK(store_idem_get(s, NULL, "k3", 500, &r));
	CHECK(r.state == 2 && strcmp(r.outcome, "second") == 0);
	store_idem_free(&r);

	/* del */
	OK(store_idem_del(s, NULL, "k3"));
	CHECK(store_idem_del(s, NULL, "k3") == STORE_NOTFOUND);
	CHECK(store_idem_get(s, NULL, "k3", 0, &r) == STORE_NOTFOUND);

	/*
	 * expire in bounded batches: 20 expire at LONG + 1000..1019, 5
	 * never.  Their TTL is longer than any generation, so they are
	 * in idem.db and expire one by one through its index.
	 */
	OK(store_idem_del(s, NULL, "k1"));
	OK(store_idem_del(s, NULL, "k2"));
	for (i = 0; i < 25; i++) {
		snprintf(key, sizeof(key), "e-%02d", i);
		r = idem("x", 0, i < 20 ? LONG + 1000 + i : INT64_MAX, 0);
		OK(store_idem_put(s, NULL, key, &r));
	}
	OK(store_idem_expire(s, NULL, LONG + 999, 100, &n));
	CHECK(n == 0);
	OK(store_idem_expire(s, NULL, LONG + 1004, 100, &n));
	CHECK(n == 5);
	total = 5;
	i = 0;
	do {
		OK(store_idem_expire(s, NULL, LONG + 5000, 7, &n));
		CHECK(n <= 7);
		total += n;
	} while (n == 7 && ++i < 10);
	CHECK(total == 20);
	for (i = 0; i < 25; i++) {
		snprintf(key, sizeof(key), "e-%02d", i);
		/* Absent even at time 0: they were deleted. */
		CHECK((store_idem_get(s, NULL, key, 0, &r) == 0) == (i >= 20));
		store_idem_free(&r);
	}
	OK(store_close(s));
	rm_tree(tmpdir);
}

static off_t
file_size(const char *dir, const char *name)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/*
 * Fills n records "w-0".."w-(n-1)", put at created, with outcomes of len
 * bytes of c.
 */
static void
fill(struct store *s, int n, size_t len, char c, int64_t created,
    int64_t expires)
{
	struct store_idem r;
	char key[32], *buf;
	int i;

	if ((buf = malloc(len)) == NULL)
		abort();
	memset(buf, c, len);
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "w-%d", i);
		r = idem(NULL, created, expires, 1);
		r.outcome = buf;
		r.outcome_len = len;
		OK(store_idem_put(s, NULL, key, &r));
	}
	free(buf);
}

/*
 * Outcomes longer than the inline limit are kept in outcome.db: the
 * same answers as inline ones, across overwrites both ways, put_new,
 * del, expiry and a reopen, and the space of dropped ones is reused.
 */
static void
test_outcomes(void)
{
	struct store *s;
	struct store_idem r, old;
	char big[3000], mid[100], heap[32];
	int64_t t0, created;
	off_t one, three;
	size_t n;
	int wave;

	memset(big, 'B', sizeof(big));
	memset(mid, 'm', sizeof(mid));
	OK(store_open(&s, mkdir_tmp(), 0));
	r = idem(NULL, 1, 1000, 5);
	r.outcome = big;
	r.outcome_len = sizeof(big);
	OK(store_idem_put(s, NULL, "L", &r));
	OK(store_idem_get(s, NULL, "L", 10, &r));
	CHECK(r.state == 5 && r.created_ms == 1 && r.expires_ms == 1000);
	CHECK(r.outcome_len == sizeof(big) &&
	    memcmp(r.outcome, big, sizeof(big)) == 0 &&
	    ((char *)r.outcome)[sizeof(big)] == '\0');
	store_idem_free(&r);

	/* Long to short to long, with the extreme states. */
	r = idem("short", 2, 1000, -(1 << 30));
	OK(store_idem_put(s, NULL, "L", &r));
	OK(store_idem_get(s, NULL, "L", 10, &r));
	CHECK(r.state == -(1 << 30) && strcmp(r.outcome, "short") == 0);
	store_idem_free(&r);
	r = idem(NULL, 3, 1000, (1 << 30) - 1);
	r.outcome = mid;
	r.outcome_len = sizeof(mid);
	OK(store_idem_put(s, NULL, "L", &r));
	OK(store_idem_get(s, NULL, "L", 10, &r));
	CHECK(r.state == (1 << 30) - 1 && r.created_ms == 3 &&
	    r.outcome_len == sizeof(mid) &&
	    memcmp(r.outcome, mid, sizeof(mid)) == 0);
	store_idem_free(&r);
	r.state = 1 << 30;
	CHECK(store_idem_put(s, NULL, "L", &r) == EINVAL);
	r.state = -(1 << 30) - 1;
	CHECK(store_idem_put_new(s, NULL, "L", &r, 10, NULL) == EINVAL);

	/* put_new hands back the long outcome it kept. */
	r = idem("other", 4, 2000, 1);
	CHECK(store_idem_put_new(s, NULL, "L", &r, 10, &old) == STORE_EXISTS);
	CHECK(old.created_ms == 3 && old.outcome_len == sizeof(mid) &&
	    memcmp(old.outcome, mid, sizeof(mid)) == 0);
	store_idem_free(&old);
	OK(store_idem_put_new(s, NULL, "L", &r, 1000, &old));
	OK(store_idem_get(s, NULL, "L", 1000, &r));
	CHECK(strcmp(r.outcome, "other") == 0);
	store_idem_free(&r);

	/* Survives a reopen; del takes it away. */
	r = idem(NULL, 5, 3000, 2);
	r.outcome = big;
	r.outcome_len = sizeof(big);
	OK(store_idem_put(s, NULL, "L", &r));
	OK(store_close(s));
	OK(store_open(&s, tmpdir, 0));
	OK(store_idem_get(s, NULL, "L", 10, &r));
	CHECK(r.state == 2 && r.outcome_len == sizeof(big) &&
	    memcmp(r.outcome, big, sizeof(big)) == 0);
	store_idem_free(&r);
	OK(store_idem_del(s, NULL, "L"));
	CHECK(store_idem_get(s, NULL, "L", 10, &r) == STORE_NOTFOUND);

	/*
	 * Three waves of 3,000 outcomes in one generation slot: the first
	 * expired with its generation, the second three generations later
	 * (the same slot) and overwritten by the third: the slot stays the
	 * size of one wave.
	 */
	t0 = 10 * GEN;
	snprintf(heap, sizeof(heap), "idem-g%d.db", slot_of(t0));
	one = three = -1;
	for (wave = 0; wave < 3; wave++) {
		created = wave == 0 ? t0 : t0 + 3 * GEN;
		if (wave == 1) {	/* expired; wave 2 overwrites */
			do {
				OK(store_idem_expire(s, NULL, t0 + GEN, 500,
				    &n));
			} while (n == 500);
			CHECK(store_idem_get(s, NULL, "w-0", t0,
			    &r) == STORE_NOTFOUND);
		}
		fill(s, 3000, 700, (char)('a' + wave), created,
		    created + 100 + wave);
		OK(store_checkpoint(s));
		if (wave == 0)
			one = file_size(tmpdir, heap);
		three = file_size(tmpdir, heap);
		OK(store_idem_get(s, NULL, "w-2999", created, &r));
		CHECK(r.outcome_len == 700 &&
		    ((char *)r.outcome)[699] == 'a' + wave);
		store_idem_free(&r);
	}
	CHECK(one > 3000 * 700 && three > 0 && three <= one + one / 10);
	if (three > one + one / 10)
		fprintf(stderr, "%s: %lld bytes after one wave, "
		    "%lld after three\n", heap, (long long)one,
		    (long long)three);
	OK(store_close(s));
	rm_tree(tmpdir);
}

/* Whether key has an unexpired record at now, in state state. */
static int
live_in(struct store *s, const char *key, int64_t now, int state)
{
	struct store_idem r;
	int ret, same;

	if ((ret = store_idem_get(s, NULL, key, now, &r)) != 0)
		return 0;
	same = r.state == state;
	store_idem_free(&r);
	return same;
}

/*
 * Records expire by generation: a slot is emptied whole once its newest
 * generation has ended, never before any of its records expired; a key
 * moves between idem.db and the slots without a stale copy coming back;
 * put_new sees a live record in the other slot; the width survives a
 * reopen.
 */
static void
test_generations(void)
{
	struct store *s;
	struct store_idem r, old;
	static int64_t exp[3000];
	int64_t t0 = 100 * GEN + 10, t1 = 101 * GEN - 100, now;
	size_t n, total;
	char key[32];
	int i, j;

	OK(store_open(&s, mkdir_tmp(), gflags));
	r = idem("a", t0, t0 + 1000, 1);
	OK(store_idem_put_new(s, NULL, "a", &r, t0, NULL));
	r = idem("b", t1, t1 + 1000, 1);	/* expires in the next one */
	OK(store_idem_put_new(s, NULL, "b", &r, t1, NULL));
	CHECK(live_in(s, "a", t0 + 500, 1) && live_in(s, "b", t1, 1));
	r = idem("b2", t1 + 1, t1 + 1001, 2);
	CHECK(store_idem_put_new(s, NULL, "b", &r, t1 + 1, &old) ==
	    STORE_EXISTS);
	CHECK(old.state == 1 && strcmp(old.outcome, "b") == 0);
	store_idem_free(&old);
	OK(store_close(s));
	OK(store_open(&s, tmpdir, gflags));
	CHECK(live_in(s, "b", t1, 1));

	/* Generation 100 ends: "a" goes with it, "b" stays till 101's. */
	OK(store_idem_expire(s, NULL, 101 * GEN - 1, 100, &n));
	CHECK(n == 0);
	OK(store_idem_expire(s, NULL, 101 * GEN + 5, 100, &n));
	CHECK(n == 1);
	CHECK(store_idem_get(s, NULL, "a", t0, &r) == STORE_NOTFOUND);
	CHECK(live_in(s, "b", 101 * GEN + 5, 1));
	OK(store_idem_expire(s, NULL, 102 * GEN, 100, &n));
	CHECK(n == 1);
	CHECK(store_idem_get(s, NULL, "b", t1, &r) == STORE_NOTFOUND);

	/* From idem.db (a TTL no slot holds) to a slot: no stale copy. */
	now = 200 * GEN;
	r = idem("long", now, now + LONG, 1);
	OK(store_idem_put(s, NULL, "m", &r));
	CHECK(live_in(s, "m", now + 1, 1));
	r = idem("short", now + 1, now + 100, 2);
	OK(store_idem_put(s, NULL, "m", &r));
	CHECK(live_in(s, "m", now + 50, 2));
	CHECK(store_idem_get(s, NULL, "m", now + 200, &r) == STORE_NOTFOUND);
	r = idem("long again", now + 2, now + LONG, 3);
	OK(store_idem_put(s, NULL, "m", &r));
	CHECK(live_in(s, "m", now + 200, 3));

	/* put_new finds a live record in the other slot. */
	now = 300 * GEN;
	r = idem("c", now - 10, now + 500, 1);
	OK(store_idem_put_new(s, NULL, "c", &r, now - 10, NULL));
	r = idem("c2", now - 5, now - 2, 2);
	CHECK(store_idem_put_new(s, NULL, "c", &r, now - 5, NULL) ==
	    STORE_EXISTS);
	CHECK(live_in(s, "c", now + 1, 1));

	/*
	 * 3,000 records over ten generations, TTLs up to one: after every
	 * expiry, each record unexpired is there; in the end all are gone.
	 */
	now = 400 * GEN;
	srandom(7);
	total = 0;
	for (i = 0; i < 3000; i++) {
		now += random() % (GEN / 300);
		exp[i] = now + 1 + random() % GEN;
		snprintf(key, sizeof(key), "r-%d", i);
		r = idem("outcome", now, exp[i], 1);
		OK(store_idem_put_new(s, NULL, key, &r, now, NULL));
		if (i % 100 != 99)
			continue;
		OK(store_idem_expire(s, NULL, now, 100000, &n));
		total += n;
		for (j = 0; j <= i; j++) {
			snprintf(key, sizeof(key), "r-%d", j);
			if (exp[j] > now && !live_in(s, key, now, 1)) {
				fprintf(stderr, "%s gone before %lld\n", key,
				    (long long)exp[j]);
				CHECK(0);
				break;
			}
		}
	}
	/* Each slot in turn leaves now's window, and is emptied. */
	for (i = 1; i <= 6; i++) {
		OK(store_idem_expire(s, NULL, now + i * GEN, 100000, &n));
		total += n;
	}
	CHECK(total == 3000 + 1);	/* and "c" */
	OK(store_close(s));
	rm_tree(tmpdir);
}

/*
 * Writes under key, straight into idem.db of the closed store in dir, a
 * record in the format from before long outcomes moved out: created_ms,
 * expires_ms (big-endian, sign bit flipped), state, the outcome inline.
 */
static int
put_old_format(const char *dir, const char *key, int64_t created,
    int64_t expires, uint32_t state, const char *outcome)
{
	unsigned char rec[1024];
	uint64_t v[2] = { (uint64_t)created, (uint64_t)expires };
	size_t len = strlen(outcome);
	DB_ENV *env;
	DB *db = NULL;
	DBT k, d;
	int i, j, ret;

	if (20 + len > sizeof(rec))
		return EINVAL;
	for (i = 0; i < 2; i++)
		for (j = 0; j < 8; j++)
			rec[i * 8 + j] = (unsigned char)
			    ((v[i] ^ UINT64_C(1) << 63) >> (56 - 8 * j));
	for (j = 0; j < 4; j++)
		rec[16 + j] = (unsigned char)(state >> (24 - 8 * j));
	memcpy(rec + 20, outcome, len);
	memset(&k, 0, sizeof(k));
	memset(&d, 0, sizeof(d));
	k.data = (void *)(uintptr_t)key;
	k.size = (u_int32_t)strlen(key);
	d.data = rec;
	d.size = (u_int32_t)(20 + len);
	if ((ret = db_env_create(&env, 0)) != 0)
		return ret;
	if ((ret = env->open(env, dir, DB_CREATE | DB_INIT_TXN |
	    DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL | DB_RECOVER,
	    0600)) == 0 && (ret = db_create(&db, env, 0)) == 0 &&
	    (ret = db->open(db, NULL, "idem.db", NULL, DB_BTREE,
	    DB_AUTO_COMMIT, 0)) == 0)
		ret = db->put(db, NULL, &k, &d, DB_AUTO_COMMIT);
	if (db != NULL)
		(void)db->close(db, 0);
	(void)env->close(env, 0);
	/* Its regions lack what the store configures: let it make its own. */
	if (ret == 0 && (ret = db_env_create(&env, 0)) == 0)
		ret = env->remove(env, dir, 0);
	return ret;
}

/* Records written before long outcomes moved out read as they did. */
static void
test_legacy(void)
{
	struct store *s;
	struct store_idem r;
	char old[201], big[300];

	memset(old, 'o', sizeof(old) - 1);
	old[sizeof(old) - 1] = '\0';
	memset(big, 'n', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	OK(store_open(&s, mkdir_tmp(), gflags));
	OK(store_close(s));
	OK(put_old_format(tmpdir, "old", 5, 1000, 1, old));
	OK(put_old_format(tmpdir, "old-short", 6, 1000, 1, "{}"));
	OK(store_open(&s, tmpdir, gflags));
	OK(store_idem_get(s, NULL, "old", 10, &r));
	CHECK(r.created_ms == 5 && r.expires_ms == 1000 && r.state == 1 &&
	    r.outcome_len == 200 && strcmp(r.outcome, old) == 0);
	store_idem_free(&r);
	OK(store_idem_get(s, NULL, "old-short", 10, &r));
	CHECK(r.created_ms == 6 && r.state == 1 && strcmp(r.outcome, "{}") == 0);
	store_idem_free(&r);
	CHECK(store_idem_get(s, NULL, "old", 1000, &r) == STORE_NOTFOUND);
	/* put_new sees an old record, though new ones go to the slots. */
	r = idem("new", 10, 500, 2);
	CHECK(store_idem_put_new(s, NULL, "old-short", &r, 10, NULL) ==
	    STORE_EXISTS);
	OK(store_idem_put_new(s, NULL, "new", &r, 10, NULL));
	CHECK(live_in(s, "new", 20, 2) && live_in(s, "old-short", 20, 1));
	/* Overwritten in the new format, and deleted. */
	r = idem(big, 7, 2000, 1);
	OK(store_idem_put(s, NULL, "old", &r));
	OK(store_idem_get(s, NULL, "old", 10, &r));
	CHECK(r.created_ms == 7 && strcmp(r.outcome, big) == 0);
	store_idem_free(&r);
	OK(store_idem_del(s, NULL, "old-short"));
	CHECK(store_idem_get(s, NULL, "old-short", 10, &r) == STORE_NOTFOUND);
	OK(store_close(s));
	rm_tree(tmpdir);
}

/* One transaction over the three tables, as order-serve will do it. */
static int
create_order(struct store *s, struct store_txn *t, const char *id,
    int64_t now, uint64_t *seq)
{
	struct store_idem r = idem(id, now, now + 1000, 1);
	char key[64];
	int ret;

	snprintf(key, sizeof(key), "idem-%s", id);
	if ((ret = store_order_put(s, t, id, "{\"status\":\"pending\"}")) ||
	    (ret = store_outbox_append(s, t, id, strlen(id), now, seq)) ||
	    (ret = store_idem_put_new(s, t, key, &r, now, NULL)))
		return ret;
	return 0;
}

static void
test_txn(void)
{
	struct store *s;
	struct store_txn *t;
	struct store_outbox_rec rec;
	struct store_idem r;
	uint64_t seq, depth;
	int64_t oldest;

	OK(store_open(&s, mkdir_tmp(), 0));
	OK(store_txn_begin(s, &t));
	OK(create_order(s, t, "o-1", 100, &seq));
	OK(store_txn_commit(t));
	CHECK(order_is(s, "o-1", "{\"status\":\"pending\"}"));
	OK(store_idem_get(s, NULL, "idem-o-1", 100, &r));
	CHECK(strcmp(r.outcome, "o-1") == 0);
	store_idem_free(&r);
	OK(store_outbox_first(s, NULL, 0, &rec));
	CHECK(rec.seq == seq && strcmp(rec.data, "o-1") == 0);
	store_outbox_free(&rec);

	OK(store_txn_begin(s, &t));
	OK(create_order(s, t, "o-2", 200, &seq));
	/* The transaction sees its own writes. */
	OK(store_idem_get(s, t, "idem-o-2", 200, &r));
	store_idem_free(&r);
	OK(store_txn_abort(t));
	CHECK(order_is(s, "o-2", ""));
	CHECK(store_idem_get(s, NULL, "idem-o-2", 200, &r) == STORE_NOTFOUND);
	CHECK(store_outbox_first(s, NULL, seq - 1, &rec) == STORE_NOTFOUND);
	OK(store_outbox_stats(s, NULL, &depth, &oldest));
	CHECK(depth == 1 && oldest == 100);

	/* A repeated key fails the transaction as a whole. */
	OK(store_txn_begin(s, &t));
	CHECK(create_order(s, t, "o-1", 300, &seq) == STORE_EXISTS);
	OK(store_txn_abort(t));
	OK(store_outbox_stats(s, NULL, &depth, &oldest));
	CHECK(depth == 1);
	OK(store_close(s));
	rm_tree(tmpdir);
}

static void
test_outbox(void)
{
	struct store *s;
	struct store_outbox_rec rec;
	uint64_t seq[5], depth;
	int64_t oldest;
	char data[16];
	int i;

	OK(store_open(&s, mkdir_tmp(), 0));
	CHECK(store_outbox_first(s, NULL, 0, &rec) == STORE_NOTFOUND);
	OK(store_outbox_stats(s, NULL, &depth, &oldest));
	CHECK(depth == 0 && oldest == 0);
	for (i = 0; i < 5; i++) {
		snprintf(data, sizeof(data), "event-%d", i);
		OK(store_outbox_append(s, NULL, data, strlen(data),
		    1000 + i, &seq[i]));
		CHECK(i == 0 || seq[i] > seq[i - 1]);
	}
	CHECK(seq[0] == 1);
	OK(store_outbox_first(s, NULL, 0, &rec));
	CHECK(rec.seq == seq[0] && rec.appended_ms == 1000 &&
	    rec.len == 7 && strcmp(rec.data, "event-0") == 0);
	store_outbox_free(&rec);
	OK(store_outbox_first(s, NULL, seq[0], &rec));
	CHECK(rec.seq == seq[1] && strcmp(rec.data, "event-1") == 0);
	store_outbox_free(&rec);
	OK(store_outbox_del(s, NULL, seq[1]));
	CHECK(store_outbox_del(s, NULL, seq[1]) == STORE_NOTFOUND);
	OK(store_outbox_first(s, NULL, seq[0], &rec));
	CHECK(rec.seq == seq[2]);
	store_outbox_free(&rec);
	OK(store_outbox_stats(s, NULL, &depth, &oldest));
	CHECK(depth == 4 && oldest == 1000);
	OK(store_outbox_del(s, NULL, seq[0]));
	OK(store_outbox_stats(s, NULL, &depth, &oldest));
	CHECK(depth == 3 && oldest == 1002);
	CHECK(store_outbox_first(s, NULL, seq[4], &rec) == STORE_NOTFOUND);
	CHECK(store_outbox_first(s, NULL, UINT64_MAX, &rec) == STORE_NOTFOUND);
	for (i = 2; i < 5; i++)
		OK(store_outbox_del(s, NULL, seq[i]));
	OK(store_outbox_stats(s, NULL, &depth, &oldest));
	CHECK(depth == 0 && oldest == 0);
	/* Numbers are never reused, across a reopen too. */
	OK(store_close(s));
	OK(store_open(&s, tmpdir, 0));
	OK(store_outbox_append(s, NULL, "", 0, 5, &seq[0]));
	CHECK(seq[0] > seq[4]);
	OK(store_outbox_first(s, NULL, 0, &rec));
	CHECK(rec.len == 0 && rec.data != NULL && *(char *)rec.data == '\0');
	store_outbox_free(&rec);
	OK(store_close(s));
	rm_tree(tmpdir);
}

/* Threads committing at once, contending on one hot order. */
#define NTHREADS	8
#define NTXN		50

struct worker {
	struct store	*s;
	int		 id;
	int		 n;
	int		 errors;
};

static int
worker_txn(struct store *s, struct store_txn *t, void *arg)
{
	struct worker *w = arg;
	uint64_t seq;
	char *json, id[32];
	int ret;

	snprintf(id, sizeof(id), "o-%d-%d", w->id, w->n);
	if ((ret = store_order_get(s, t, "hot", &json)) != 0 &&
	    ret != STORE_NOTFOUND)
		return ret;
	free(json);
	if ((ret = create_order(s, t, id, 1, &seq)) != 0)
		return ret;
	return store_order_put(s, t, "hot", id);
}

static void *
worker(void *arg)
{
	struct worker *w = arg;
	int ret;

	for (w->n = 0; w->n < NTXN; w->n++)
		if ((ret = store_run(w->s, worker_txn, w)) != 0) {
			fprintf(stderr, "worker %d: %s\n", w->id,
			    store_strerror(ret));
			w->errors++;
		}
	return NULL;
}

static void
test_threads(void)
{
	struct worker w[NTHREADS];
	pthread_t th[NTHREADS];
	struct store *s;
	uint64_t depth;
	int64_t oldest;
	int i;

	OK(store_open(&s, mkdir_tmp(), STORE_NOSYNC));
	for (i = 0; i < NTHREADS; i++) {
		w[i].s = s;
		w[i].id = i;
		w[i].errors = 0;
		CHECK(pthread_create(&th[i], NULL, worker, &w[i]) == 0);
	}
	for (i = 0; i < NTHREADS; i++) {
		CHECK(pthread_join(th[i], NULL) == 0);
		CHECK(w[i].errors == 0);
	}
	OK(store_outbox_stats(s, NULL, &depth, &oldest));
	CHECK(depth == NTHREADS * NTXN);
	OK(store_close(s));
	rm_tree(tmpdir);
}

/* Reads exactly len bytes within timeout_ms; 0 at EOF, -1 on timeout. */
static ssize_t
read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		if (poll(&p, 1, timeout_ms) != 1)
			return -1;
		if ((n = read(fd, (char *)buf + got, len - got)) <= 0)
			return n == 0 ? (ssize_t)got : -1;
		got += n;
	}
	return got;
}

/* The child: takes a write lock on "k" in an open transaction, waits. */
static void
lock_holder(const char *dir, int fd)
{
	struct store *s;
	struct store_txn *t;

	if (store_open(&s, dir, 0) != 0 || store_txn_begin(s, &t) != 0 ||
	    store_order_put(s, t, "k", "child") != 0)
		_exit(1);
	if (write(fd, "!", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

static void
test_killlocks(void)
{
	struct store *s;
	int fds[2], status;
	int64_t t0, ms;
	pid_t pid;
	char c;

	mkdir_tmp();
	OK(store_open(&s, tmpdir, 0));
	OK(store_order_put(s, NULL, "k", "parent-0"));
	CHECK(pipe(fds) == 0);
	if ((pid = fork()) == 0) {
		close(fds[0]);
		lock_holder(tmpdir, fds[1]);
	}
	close(fds[1]);
	CHECK(read_full(fds[0], &c, 1, 30000) == 1);
	close(fds[0]);
	kill(pid, SIGKILL);
	CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));

	/* The dead child's lock goes away within a bounded time. */
	t0 = util_mono_ms();
	OK(store_order_put(s, NULL, "k", "parent-1"));
	ms = util_mono_ms() - t0;
	CHECK(ms < 10000);
	fprintf(stderr, "killlocks: write after the kill took %lld ms\n",
	    (long long)ms);
	CHECK(order_is(s, "k", "parent-1"));
	OK(store_close(s));

	/* Reopening finds the dead process (DB_REGISTER) and copes. */
	OK(store_open(&s, tmpdir, 0));
	CHECK(order_is(s, "k", "parent-1"));
	OK(store_order_put(s, NULL, "k", "parent-2"));
	OK(store_close(s));
	rm_tree(tmpdir);
}

struct burst_arg {
	uint64_t	 n;
	uint64_t	*seq;
};

/* A long outcome that names its order. */
static void
burst_outcome(char *buf, size_t size, const char *id)
{
	size_t n;

	n = (size_t)snprintf(buf, size, "%s:", id);
	memset(buf + n, 'o', size - n - 1);
	buf[size - 1] = '\0';
}

static int
burst_txn(struct store *s, struct store_txn *t, void *arg)
{
	struct burst_arg *b = arg;
	struct store_idem r;
	char id[32], key[40], outcome[200];
	int ret;

	snprintf(id, sizeof(id), "b-%llu", (unsigned long long)b->n);
	if ((ret = create_order(s, t, id, (int64_t)b->n, b->seq)) != 0)
		return ret;
	/* And an outcome long enough to be kept in outcome.db. */
	snprintf(key, sizeof(key), "long-%s", id);
	burst_outcome(outcome, sizeof(outcome), id);
	r = idem(outcome, 1, INT64_MAX, 1);
	return store_idem_put(s, t, key, &r);
}

/* The child: commits forever, reporting (n, seq) after each commit. */
static void
burster(const char *dir, int fd, uint64_t first)
{
	struct store *s;
	struct burst_arg b;
	uint64_t msg[2];

	if (store_open(&s, dir, 0) != 0)
		_exit(1);
	b.seq = &msg[1];
	for (b.n = first;; b.n++) {
		if (store_run(s, burst_txn, &b) != 0)
			_exit(1);
		msg[0] = b.n;
		if (write(fd, msg, sizeof(msg)) != sizeof(msg))
			_exit(1);
	}
}

/* Everything the child said it committed is there after recovery. */
static void
burst_check(const uint64_t (*got)[2], size_t n)
{
	struct store_outbox_rec rec;
	struct store_idem r;
	struct store *s;
	char id[32], key[40], outcome[200];
	size_t i, bad = 0;

	OK(store_open(&s, tmpdir, 0));
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "b-%llu", (unsigned long long)got[i][0]);
		if (!order_is(s, id, "{\"status\":\"pending\"}"))
			bad++;
		snprintf(key, sizeof(key), "long-%s", id);
		burst_outcome(outcome, sizeof(outcome), id);
		if (store_idem_get(s, NULL, key, 2, &r) != 0 ||
		    strcmp(r.outcome, outcome) != 0)
			bad++;
		store_idem_free(&r);
		if (store_outbox_first(s, NULL, got[i][1] - 1, &rec) != 0 ||
		    rec.seq != got[i][1] || strcmp(rec.data, id) != 0)
			bad++;
		store_outbox_free(&rec);
	}
	if (bad > 0)
		fprintf(stderr, "burst: %zu of %zu commits lost\n", bad, n);
	CHECK(bad == 0);
	OK(store_order_put(s, NULL, "after", "{}"));
	OK(store_close(s));
}

/* Starts a burster from first; *fd reads its reports. */
static pid_t
spawn_burster(uint64_t first, int *fd)
{
	int fds[2];
	pid_t pid;

	CHECK(pipe(fds) == 0);
	if ((pid = fork()) == 0) {
		close(fds[0]);
		burster(tmpdir, fds[1], first);
	}
	close(fds[1]);
	*fd = fds[0];
	return pid;
}

static size_t
burst_round(uint64_t first, size_t kill_after, uint64_t (*got)[2],
    size_t max)
{
	size_t n = 0;
	int fd, status;
	pid_t pid;

	pid = spawn_burster(first, &fd);
	while (n < max && read_full(fd, got[n], sizeof(got[n]), 30000) ==
	    sizeof(got[n])) {
		if (++n == kill_after)
			kill(pid, SIGKILL);
	}
	close(fd);
	kill(pid, SIGKILL);
	CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
	CHECK(n >= kill_after);
	return n;
}

static void
test_killburst(void)
{
	static uint64_t got[4][4096][2];
	size_t n[4];
	int round;

	mkdir_tmp();
	for (round = 0; round < 4; round++) {
		n[round] = burst_round(100000 * (round + 1), 50 + 37 * round,
		    got[round], 4096);
		fprintf(stderr, "killburst: round %d: %zu commits reported\n",
		    round, n[round]);
		burst_check((const uint64_t (*)[2])got[round], n[round]);
	}
	/* Earlier rounds survived the later recoveries. */
	for (round = 0; round < 4; round++)
		burst_check((const uint64_t (*)[2])got[round], n[round]);
	rm_tree(tmpdir);
}

/*
 * The observer: commits for ever, reopening the store when it says
 * STORE_RUNRECOVERY (as the commands do); one byte on fd per commit.
 */
static void
observer(const char *dir, int fd)
{
	struct store *s;
	struct burst_arg b;
	uint64_t seq;
	int ret;

	if (store_open(&s, dir, 0) != 0)
		_exit(2);
	b.seq = &seq;
	for (b.n = (uint64_t)getpid() * 1000000000;; b.n++) {
		if ((ret = store_run(s, burst_txn, &b)) == STORE_RUNRECOVERY) {
			store_close(s);
			if ((ret = store_open(&s, dir, 0)) != 0) {
				fprintf(stderr, "observer: reopening: %s\n",
				    store_strerror(ret));
				_exit(2);
			}
		} else if (ret != 0 && ret != STORE_DEADLOCK) {
			fprintf(stderr, "observer: %s\n", store_strerror(ret));
			_exit(3);
		}
		if (write(fd, "c", 1) != 1)
			_exit(4);
	}
}

/*
 * Drains fd for up to ms; 1 when something came, 0 when nothing did, -1
 * at end of file (the writer is gone).
 */
static int
progress(int fd, int ms)
{
	char buf[4096];
	ssize_t n;

	if (read_full(fd, buf, 1, ms) != 1)
		return poll(&(struct pollfd){ .fd = fd, .events = POLLIN }, 1,
		    0) == 1 ? -1 : 0;
	while (poll(&(struct pollfd){ .fd = fd, .events = POLLIN }, 1, 0) ==
	    1 && (n = read(fd, buf, sizeof(buf))) > 0)
		;
	return 1;
}

static pid_t
spawn_observer(int *fd)
{
	int fds[2];
	pid_t pid;

	CHECK(pipe(fds) == 0);
	if ((pid = fork()) == 0) {
		close(fds[0]);
		observer(tmpdir, fds[1]);
	}
	close(fds[1]);
	*fd = fds[0];
	return pid;
}

/*
 * A burster killed after kill_after commits.  It may end by itself before
 * that, with status 1, when a process killed earlier wedged it; but it
 * never hangs.
 */
static void
burst_kill(uint64_t first, size_t kill_after)
{
	uint64_t msg[2];
	size_t n = 0;
	int fd, status;
	pid_t pid;

	pid = spawn_burster(first, &fd);
	while (n < kill_after &&
	    read_full(fd, msg, sizeof(msg), 15000) == sizeof(msg))
		n++;
	close(fd);
	kill(pid, SIGKILL);
	CHECK(waitpid(pid, &status, 0) == pid);
	if (n < kill_after) {
		fprintf(stderr, "wedge: a burster ended after %zu commits, "
		    "status %d\n", n, WIFEXITED(status) ?
		    WEXITSTATUS(status) : -WTERMSIG(status));
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
	}
}

/*
 * Processes killed in a burst of commits, some inside the library holding
 * a region mutex, while another process commits in the same environment:
 * the other one either keeps committing or, wedged on a dead mutex, ends
 * with status 1 within the stall time; it never hangs.  A new one opens
 * the environment (recovery) and commits.
 */
static void
test_wedge(void)
{
	int round, ofd, status, kept = 0, ended = 0, p;
	pid_t obs;

	mkdir_tmp();
	setenv("ORDERFLOW_STORE_STALL_MS", "2000", 1);
	obs = spawn_observer(&ofd);
	CHECK(progress(ofd, 30000) == 1);
	for (round = 0; round < 12 && failures == 0; round++) {
		burst_kill(1000000 * (round + 1), 20 + 7 * round);
		/* The observer's fate shows within the stall time and a tick. */
		if ((p = progress(ofd, 15000)) == 1) {
			kept++;
			continue;
		}
		if (p == 0) {
			fprintf(stderr, "wedge: round %d: the observer is "
			    "wedged\n", round);
			CHECK(p != 0);
			break;
		}
		if (waitpid(obs, &status, 0) != obs)
			CHECK(!"the observer is waited for");
		else if (!WIFEXITED(status) || WEXITSTATUS(status) != 1) {
			fprintf(stderr, "wedge: round %d: the observer ended "
			    "with %s %d, not status 1\n", round,
			    WIFEXITED(status) ? "status" : "signal",
			    WIFEXITED(status) ? WEXITSTATUS(status) :
			    WTERMSIG(status));
			CHECK(!"a wedged observer ends with status 1");
		}
		ended++;
		close(ofd);
		obs = spawn_observer(&ofd);
		if (progress(ofd, 30000) != 1) {
			CHECK(waitpid(obs, &status, WNOHANG) == obs);
			fprintf(stderr, "wedge: round %d: a new observer "
			    "ended with status %d\n", round,
			    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			CHECK(!"a new observer commits");
			obs = spawn_observer(&ofd);
		}
	}
	fprintf(stderr, "wedge: the observer kept committing %d times, "
	    "ended wedged %d times\n", kept, ended);
	kill(obs, SIGKILL);
	(void)waitpid(obs, &status, 0);
	close(ofd);
	unsetenv("ORDERFLOW_STORE_STALL_MS");
	rm_tree(tmpdir);
}

/* upkeep's clock in the tests: fake_ms, which each reading advances. */
static int64_t	fake_ms, fake_step;

static int64_t
fake_clock(void)
{
	int64_t now = fake_ms;

	fake_ms += fake_step;
	return now;
}

/* Puts n records, expired long ago, under keys prefix-0 ... */
/*
 * Puts n records expired long ago: in a generation slot, or with
 * in_index in idem.db (a TTL no slot holds), which expires them through
 * its index, a batch at a time.
 */
static void
put_expired(struct store *s, const char *prefix, int n, int in_index)
{
	/* Four generations back: the slot outside now's window. */
	int64_t at = util_now_ms() - 4 * GEN;
	struct store_idem r = in_index ? idem("outcome", 1, LONG, 1) :
	    idem("outcome", at, at + 1, 1);
	char key[64];
	int i;

	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "%s-%d", prefix, i);
		OK(store_idem_put(s, NULL, key, &r));
	}
}

static int
present(struct store *s, const char *key)
{
	struct store_idem r;
	int ret;

	if ((ret = store_idem_get(s, NULL, key, util_now_ms(), &r)) != 0)
		return 0;
	store_idem_free(&r);
	return 1;
}

static void
test_upkeep(void)
{
	char dir[128];
	struct store *s;
	struct store_idem live = idem("live", 1, INT64_MAX, 1);
	struct upkeep u;
	uint64_t n;

	snprintf(dir, sizeof(dir), "%s/state", mkdir_tmp());
	OK(store_open(&s, dir, STORE_NOSYNC));
	OK(store_idem_put(s, NULL, "live", &live));
	upkeep_init(&u, &s, dir, STORE_NOSYNC);
	u.clock = fake_clock;
	fake_ms = 1000;
	fake_step = 0;
	u.next_checkpoint = fake_ms + UPKEEP_CHECKPOINT_MS;

	/* A fast store: a backlog goes in one tick, batch after batch. */
	put_expired(s, "a", 2 * UPKEEP_EXPIRE_BATCH + 200, 1);
	upkeep_tick(&u);
	CHECK(u.expired == 2 * UPKEEP_EXPIRE_BATCH + 200);
	CHECK(present(s, "live"));
	CHECK(u.checkpoints == 0 && !u.failed);

	/* A slow one: the tick stops once its slice is spent. */
	put_expired(s, "b", 2 * UPKEEP_EXPIRE_BATCH + 200, 1);
	n = u.expired;
	fake_step = UPKEEP_EXPIRE_SLICE_MS * 3 / 5;
	upkeep_tick(&u);
	CHECK(u.expired - n == 2 * UPKEEP_EXPIRE_BATCH);
	upkeep_tick(&u);
	CHECK(u.expired - n == 2 * UPKEEP_EXPIRE_BATCH + 200);
	upkeep_tick(&u);
	CHECK(u.expired - n == 2 * UPKEEP_EXPIRE_BATCH + 200);
	CHECK(present(s, "live"));

	/* A generation slot goes whole, however many it holds. */
	put_expired(s, "g", 3 * UPKEEP_EXPIRE_BATCH, 0);
	n = u.expired;
	upkeep_tick(&u);
	CHECK(u.expired - n == 3 * UPKEEP_EXPIRE_BATCH);
	CHECK(!present(s, "g-0") && present(s, "live"));

	/* A checkpoint every UPKEEP_CHECKPOINT_MS. */
	fake_step = 0;
	fake_ms = u.next_checkpoint - 1;
	upkeep_tick(&u);
	CHECK(u.checkpoints == 0);
	fake_ms = u.next_checkpoint;
	upkeep_tick(&u);
	CHECK(u.checkpoints == 1);
	CHECK(u.next_checkpoint == fake_ms + UPKEEP_CHECKPOINT_MS);
	upkeep_tick(&u);
	CHECK(u.checkpoints == 1);

	/* A deadlock fails the operation only; recovery reopens. */
	CHECK(upkeep_failed(&u, STORE_DEADLOCK, NULL) == 0);
	CHECK(!u.failed && s != NULL);
	CHECK(upkeep_failed(&u, STORE_RUNRECOVERY, NULL) == 0);
	CHECK(!u.failed && s != NULL && present(s, "live"));

	/* Anything else stops, and the upkeep with it. */
	CHECK(upkeep_failed(&u, EIO, NULL) == -1);
	CHECK(u.failed && s != NULL);
	put_expired(s, "c", 10, 0);
	n = u.expired;
	upkeep_tick(&u);
	CHECK(u.expired == n);

	/* So does a reopen that fails. */
	upkeep_init(&u, &s, "/proc/no/such/dir", STORE_NOSYNC);
	CHECK(upkeep_failed(&u, STORE_RUNRECOVERY, NULL) == -1);
	CHECK(u.failed && s == NULL);
	upkeep_tick(&u);
	rm_tree(dir);
	rm_tree(tmpdir);
}

/* The largest idem-gN.db of tmpdir into path; its size. */
static off_t
largest_slot(char *path, size_t len)
{
	struct stat st;
	char p[128];
	off_t best = -1;
	int i;

	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/idem-g%d.db", tmpdir, i);
		if (stat(p, &st) == 0 && st.st_size > best) {
			best = st.st_size;
			snprintf(path, len, "%s", p);
		}
	}
	return best;
}

/*
 * A table file ending in part of a page, as a write cut short by a full
 * disk leaves it: without STORE_EXCLUSIVE the store cannot open (Berkeley
 * DB refuses the file); with it the part is cut off and every record
 * committed is there.
 */
static void
test_partial_page(void)
{
	struct store *s;
	struct store_idem r;
	char key[32], path[128];
	off_t size;
	FILE *f;
	int i;

	OK(store_open(&s, mkdir_tmp(), STORE_EXCLUSIVE));
	for (i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "k-%d", i);
		r = idem(key, 1000, 2000, 1);
		OK(store_idem_put_new(s, NULL, key, &r, 1000, NULL));
	}
	OK(store_close(s));
	REQUIRE((size = largest_slot(path, sizeof(path))) > 0);
	REQUIRE((f = fopen(path, "a")) != NULL);
	fputs("a page cut short", f);
	CHECK(fclose(f) == 0);
	CHECK(store_open(&s, tmpdir, 0) != 0);
	OK(store_open(&s, tmpdir, STORE_EXCLUSIVE));
	CHECK(largest_slot(path, sizeof(path)) == size);
	for (i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "k-%d", i);
		CHECK(live_in(s, key, 1500, 1));
	}
	OK(store_close(s));
	rm_tree(tmpdir);
}

/*
 * The idempotency tests again as the commands open their stores: with
 * STORE_EXCLUSIVE, tables found empty at open are skipped until written.
 */
static void
test_exclusive(void)
{
	gflags = STORE_EXCLUSIVE;
	test_idem();
	test_generations();
	test_legacy();
	gflags = 0;
}

static const struct unit_test tests[] = {
	{ "open", test_open },
	{ "idem", test_idem },
	{ "outcomes", test_outcomes },
	{ "generations", test_generations },
	{ "legacy", test_legacy },
	{ "exclusive", test_exclusive },
	{ "partial-page", test_partial_page },
	{ "txn", test_txn },
	{ "outbox", test_outbox },
	{ "threads", test_threads },
	{ "killlocks", test_killlocks },
	{ "killburst", test_killburst },
	{ "wedge", test_wedge },
	{ "upkeep", test_upkeep },
};

int
main(int argc, char *argv[])
{
	return unit_main("store_test", tests, argc, argv);
}
