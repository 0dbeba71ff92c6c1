/*
 * store.c - the Berkeley DB 5.3 state of the stateful commands: the
 * environment's tables, transactions, orders and the outbox.  The
 * idempotency records (idem*.db, outcome.db) are storeidem.c's.
 *
 * Files in the environment directory (besides BDB's __db.* regions,
 * __db.register and log.* files, and the idempotency tables that
 * storeidem.c describes):
 *   orders.db	 btree: order id -> JSON text
 *   outbox.db	 btree: big-endian seq -> appended_ms, data
 *   meta.db	 btree holding the outbox's DB_SEQUENCE
 * Numbers are stored big-endian, signed ones with the sign bit flipped,
 * so that byte order (BDB's default comparison) is numeric order.
 *
 * The outbox takes numbers from a DB_SEQUENCE without a cache, each
 * increment its own small non-syncing transaction, rather than from a
 * RECNO's DB_APPEND or a sequence inside the caller's transaction: those
 * hold a write lock on the last page or on the counter until commit, so
 * concurrent appenders would wait for each other's log flush and lose
 * group commit.  The price is gaps (an abort wastes its number) and
 * numbers allocated in an order slightly different from commit order
 * (see store.h).  An increment is durable as soon as any later commit
 * is, since the log is flushed in order, so a number is never reused.
 *
 * The environment under the tables (recovery, the failchk watchdog, the
 * stall monitor, how other processes' deaths are survived) is
 * storeenv.c's.  Deadlocks between live transactions are broken by the
 * detector that runs on every lock conflict; store_run() retries.
 */
#include <sys/syscall.h>
#include <sys/types.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <db.h>

#include "log.h"
#include "store.h"
#include "store_local.h"
#include "storeenv.h"
#include "util.h"

_Static_assert(STORE_NOTFOUND == DB_NOTFOUND, "STORE_NOTFOUND");
_Static_assert(STORE_EXISTS == DB_KEYEXIST, "STORE_EXISTS");
_Static_assert(STORE_DEADLOCK == DB_LOCK_DEADLOCK, "STORE_DEADLOCK");
_Static_assert(STORE_RUNRECOVERY == DB_RUNRECOVERY, "STORE_RUNRECOVERY");
_Static_assert(STORE_NOSYNC == STOREENV_NOSYNC, "STORE_NOSYNC");
_Static_assert(STORE_SMALLCACHE == STOREENV_SMALLCACHE, "STORE_SMALLCACHE");
_Static_assert(STORE_EXCLUSIVE == STOREENV_EXCLUSIVE, "STORE_EXCLUSIVE");

#define RETRY_FAILCHK_MS	100
#define OPEN_TRIES		5

#define HEAP_REGION_PAGES	256	/* outcome.db's regions: 1 MiB */
#define OUTBOX_HDR	8	/* appended_ms */
/*
 * A slot's pages: 4 KiB hold about a dozen payment records.  Under random
 * order ids a slot outgrows the cache and each insert reads and writes a
 * page it misses; a miss moves a quarter of what it did with 16 KiB
 * pages, and the relay over random ids went from 46,500-58,300 to
 * 56,400-62,100 events a second (numbered ids: no change past the noise;
 * scripts/bench.d/FINDINGS.md).  Slots made before keep their size.
 */
#define GEN_PAGESIZE	4096

DB_TXN *
store_dbtxn(struct store_txn *t)
{
	return (DB_TXN *)t;
}

/*
 * Numbers in byte order: big-endian (util_put_be32(), util_put_be64()),
 * signed ones with the sign flipped.
 */
void
store_put_i64(unsigned char *p, int64_t v)
{
	util_put_be64(p, (uint64_t)v ^ (UINT64_C(1) << 63));
}

int64_t
store_get_i64(const unsigned char *p)
{
	return (int64_t)(util_get_be64(p) ^ (UINT64_C(1) << 63));
}

void
store_dbt_in(DBT *d, const void *p, size_t len)
{
	memset(d, 0, sizeof(*d));
	d->data = (void *)(uintptr_t)p;
	d->size = (u_int32_t)len;
}

void
store_dbt_out(DBT *d)
{
	memset(d, 0, sizeof(*d));
	d->flags = DB_DBT_MALLOC;
}

/* A NUL-terminated malloc'd copy of p[0..len). */
void *
store_copy_nul(const void *p, size_t len)
{
	char *c;

	if ((c = malloc(len + 1)) == NULL)
		return NULL;
	memcpy(c, p, len);
	c[len] = '\0';
	return c;
}

int
store_check_key(const char *key)
{
	size_t len;

	if (key == NULL)
		return EINVAL;
	len = strlen(key);
	return len == 0 || len > STORE_KEY_MAX ? EINVAL : 0;
}

static int
db_open_paged(struct store *s, DB **dbp, const char *file, DBTYPE type,
    u_int32_t dbflags, u_int32_t pagesize)
{
	DB *db;
	int ret;

	*dbp = NULL;
	storeenv_opening(s->env, file);
	if ((ret = db_create(&db, storeenv_db(s->env), 0)) != 0)
		return ret;
	if (pagesize != 0 && (ret = db->set_pagesize(db, pagesize)) != 0) {
		(void)db->close(db, 0);
		return ret;
	}
	/*
	 * A heap reuses the space of deleted records only once its
	 * current region (by default all the pages one bitmap page
	 * tracks, 64 MiB) is full; small regions keep it near the size
	 * of what it holds.
	 */
	if (type == DB_HEAP &&
	    (ret = db->set_heap_regionsize(db, HEAP_REGION_PAGES)) != 0) {
		(void)db->close(db, 0);
		return ret;
	}
	if ((dbflags == 0 || (ret = db->set_flags(db, dbflags)) == 0) &&
	    (ret = db->open(db, NULL, file, NULL, type,
	    DB_CREATE | DB_THREAD | DB_AUTO_COMMIT, 0600)) == 0) {
		*dbp = db;
		return 0;
	}
	(void)db->close(db, 0);
	return ret;
}

static int
db_open(struct store *s, DB **dbp, const char *file, DBTYPE type,
    u_int32_t dbflags)
{
	return db_open_paged(s, dbp, file, type, dbflags, 0);
}

/* The secondary key of an idempotency record: its expires_ms. */
static int
idem_exp_key(DB *sec, const DBT *key, const DBT *data, DBT *result)
{
	(void)sec;
	(void)key;
	if (data->size < IDEM_HDR)
		return DB_DONOTINDEX;
	memset(result, 0, sizeof(*result));
	result->data = (unsigned char *)data->data + 8;
	result->size = 8;
	return 0;
}

static int
seq_open(struct store *s)
{
	DB_SEQUENCE *seq;
	DBT key;
	int ret;

	storeenv_opening(s->env, "meta.db");
	if ((ret = db_sequence_create(&seq, s->meta, 0)) != 0)
		return ret;
	store_dbt_in(&key, "outbox.seq", strlen("outbox.seq"));
	if ((ret = seq->initial_value(seq, 1)) == 0 &&
	    (ret = seq->open(seq, NULL, &key, DB_CREATE | DB_THREAD)) == 0) {
		s->seq = seq;
		return 0;
	}
	(void)seq->close(seq, 0);
	return ret;
}

static DB_SEQUENCE *abandoned[64];

static void
tables_close(struct store *s)
{
	size_t i;

	/*
	 * In a panicked environment the sequence's close fails and frees
	 * nothing, and the handles it leads to (the tables, the environment)
	 * stay allocated: a few tens of KiB each time a store broken by
	 * another process's death is reopened.  They are kept reachable so
	 * that a leak checker (LeakSanitizer) tells them from real leaks.
	 */
	if (s->seq != NULL && s->seq->close(s->seq, 0) != 0)
		for (i = 0; i < sizeof(abandoned) / sizeof(abandoned[0]); i++)
			if (abandoned[i] == NULL) {
				abandoned[i] = s->seq;
				break;
			}
	if (s->idem_exp != NULL)
		(void)s->idem_exp->close(s->idem_exp, 0);
	if (s->lng.db != NULL)
		(void)s->lng.db->close(s->lng.db, 0);
	if (s->lng.heap != NULL)
		(void)s->lng.heap->close(s->lng.heap, 0);
	for (i = 0; i < IDEM_GENS; i++) {
		if (s->gen[i].db != NULL)
			(void)s->gen[i].db->close(s->gen[i].db, 0);
		s->gen[i].db = NULL;
	}
	if (s->orders != NULL)
		(void)s->orders->close(s->orders, 0);
	if (s->outbox != NULL)
		(void)s->outbox->close(s->outbox, 0);
	if (s->meta != NULL)
		(void)s->meta->close(s->meta, 0);
	if (s->gens != NULL)
		(void)s->gens->close(s->gens, 0);
	s->seq = NULL;
	s->lng.db = s->idem_exp = s->lng.heap = NULL;
	s->orders = s->outbox = s->meta = s->gens = NULL;
}

static const char *const gen_files[IDEM_GENS] = {
	"idem-g0.db", "idem-g1.db", "idem-g2.db"
};

/* The generation slots, idem-gN.db: outcomes inline (see the top). */
static int
gens_open(struct store *s)
{
	int i, ret;

	for (i = 0; i < IDEM_GENS; i++)
		if ((ret = db_open_paged(s, &s->gen[i].db, gen_files[i],
		    DB_BTREE, 0, GEN_PAGESIZE)) != 0)
			return ret;
	return 0;
}

static int
retryable(int ret)
{
	return ret == DB_LOCK_DEADLOCK || ret == DB_LOCK_NOTGRANTED;
}

/*
 * Reads a table's first record, or finds none (*empty): its root and the
 * pages down to its first leaf, read during the open, under its watch
 * (store_open()).  A damaged one can make Berkeley DB wait for ever; the
 * watch then ends the process naming the table, where a later call would
 * hang it silently.
 */
static int
table_first(struct store *s, DB *db, const char *file, int *empty)
{
	DB_ENV *e = storeenv_db(s->env);
	DB_TXN *t;
	DBC *c;
	DBT k, d;
	int ret, t_ret;

	storeenv_opening(s->env, file);
	*empty = 0;
	/* Not waiting for another process's write lock: it can read it. */
	if ((ret = e->txn_begin(e, NULL, &t, DB_TXN_NOWAIT)) != 0)
		return ret;
	if ((ret = db->cursor(db, t, &c, 0)) != 0) {
		(void)t->abort(t);
		return ret;
	}
	memset(&k, 0, sizeof(k));
	memset(&d, 0, sizeof(d));
	k.flags = d.flags = DB_DBT_PARTIAL | DB_DBT_USERMEM;
	ret = c->get(c, &k, &d, DB_FIRST);
	if (ret == DB_NOTFOUND)
		*empty = 1;
	/* A record, whether or not it fit the empty buffers. */
	if (ret == DB_NOTFOUND || ret == DB_BUFFER_SMALL || retryable(ret))
		ret = 0;
	if ((t_ret = c->close(c)) != 0 && ret == 0)
		ret = t_ret;
	if ((t_ret = t->abort(t)) != 0 && ret == 0)
		ret = t_ret;
	return ret;
}

/*
 * Whether it may hold records: with STORE_EXCLUSIVE, a table found empty
 * now stays empty until this store writes to it (idem_write() marks it
 * first), so lookups skip it.  A put_new then costs one insert where it
 * cost an insert and two lookups (the other slot of now's window and
 * idem.db, which a store made since the slots never writes): 9,000 of
 * the 34,000 instructions of pay-process's record, measured.  Without
 * the flag another process may write to it at any time.
 */
static int
itab_probe(struct store *s, struct itab *it, const char *file,
    unsigned flags)
{
	int empty, ret;

	it->used = 1;
	if ((ret = table_first(s, it->db, file, &empty)) == 0 && empty &&
	    (flags & STORE_EXCLUSIVE))
		it->used = 0;
	return ret;
}

/*
 * Reads the first record of every table (see table_first()) but
 * idem-exp.db, read before its association.
 */
static int
tables_probe(struct store *s, unsigned flags)
{
	const struct {
		DB		*db;
		const char	*file;
	} other[] = {
		{ s->lng.heap, "outcome.db" },
		{ s->orders, "orders.db" }, { s->outbox, "outbox.db" },
		{ s->meta, "meta.db" }, { s->gens, "idem-gen.db" },
	};
	size_t i;
	int empty, ret;

	for (i = 0; i < IDEM_GENS; i++)
		if ((ret = itab_probe(s, &s->gen[i], gen_files[i],
		    flags)) != 0)
			return ret;
	if ((ret = itab_probe(s, &s->lng, "idem.db", flags)) != 0)
		return ret;
	for (i = 0; i < sizeof(other) / sizeof(other[0]); i++)
		if ((ret = table_first(s, other[i].db, other[i].file,
		    &empty)) != 0)
			return ret;
	return 0;
}

/*
 * An empty idem-exp.db is filled from idem.db (DB_CREATE), which the
 * association reads under idem.db's name; the index is read first, under
 * its own, so that damage to it is named right (table_first()).
 */
static int
idem_exp_associate(struct store *s)
{
	int empty, ret;

	if ((ret = table_first(s, s->idem_exp, "idem-exp.db", &empty)) != 0)
		return ret;
	storeenv_opening(s->env, "idem.db");
	return s->lng.db->associate(s->lng.db, NULL, s->idem_exp,
	    idem_exp_key, DB_CREATE);
}

static int
tables_open(struct store *s)
{
	int ret;

	if ((ret = db_open(s, &s->lng.db, "idem.db", DB_BTREE, 0)) != 0 ||
	    (ret = db_open(s, &s->idem_exp, "idem-exp.db", DB_BTREE,
	    DB_DUPSORT)) != 0 ||
	    (ret = idem_exp_associate(s)) != 0 ||
	    (ret = db_open(s, &s->lng.heap, "outcome.db", DB_HEAP, 0)) != 0 ||
	    (ret = gens_open(s)) != 0 ||
	    (ret = db_open(s, &s->orders, "orders.db", DB_BTREE, 0)) != 0 ||
	    (ret = db_open(s, &s->outbox, "outbox.db", DB_BTREE, 0)) != 0 ||
	    (ret = db_open(s, &s->meta, "meta.db", DB_BTREE, 0)) != 0 ||
	    (ret = db_open(s, &s->gens, "idem-gen.db", DB_BTREE, 0)) != 0 ||
	    (ret = seq_open(s)) != 0)
		tables_close(s);
	return ret;
}

/* Sleeps a random time below 2^n ms (at most 256 ms). */
static void
backoff(int n)
{
	static __thread unsigned int seed;
	struct timespec ts;
	long ms;

	if (seed == 0)
		seed = (unsigned int)syscall(SYS_gettid) ^
		    (unsigned int)util_mono_ms();
	ms = rand_r(&seed) % (1L << (n < 8 ? n : 8)) + 1;
	ts.tv_sec = 0;
	ts.tv_nsec = ms * 1000000;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

int
store_open(struct store **sp, const char *dir, unsigned flags)
{
	struct store *s;
	int ret, i;

	*sp = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return ENOMEM;
	if ((ret = storeenv_open(&s->env, dir, flags)) != 0) {
		free(s);
		return ret;
	}
	/*
	 * Watched from before the tables open: a damaged page can hang the
	 * open (storeenv.h).  Two processes creating the tables at once
	 * may deadlock.
	 */
	if ((ret = storeenv_watch(s->env)) == 0) {
		for (i = 0; (ret = tables_open(s)) != 0 && retryable(ret) &&
		    i < OPEN_TRIES; i++)
			backoff(i + 1);
		if (ret == 0 && (ret = tables_probe(s, flags)) != 0)
			tables_close(s);
		if (ret != 0)
			log_error("store: %s/%s: %s%s", dir,
			    storeenv_opening_file(s->env),
			    db_strerror(ret), storeenv_damage_hint(ret));
		storeenv_opening(s->env, NULL);
	}
	if (ret != 0) {
		(void)storeenv_close(s->env);
		free(s);
		return ret;
	}
	*sp = s;
	return 0;
}

int
store_close(struct store *s)
{
	int ret, t_ret;

	if (s == NULL)
		return 0;
	storeenv_unwatch(s->env);
	ret = storeenv_checkpoint(s->env);
	tables_close(s);
	if ((t_ret = storeenv_close(s->env)) != 0 && ret == 0)
		ret = t_ret;
	free(s);
	return ret;
}

int
store_checkpoint(struct store *s)
{
	int ret;

	if ((ret = storeenv_failchk(s->env, 0)) != 0)
		return ret;
	return storeenv_checkpoint(s->env);
}

int
store_flush(struct store *s)
{
	return storeenv_flush(s->env);
}

int
store_failchk(struct store *s)
{
	return storeenv_failchk(s->env, 0);
}

const char *
store_damage_hint(void)
{
	return storeenv_damage_hint(0);
}

const char *
store_strerror(int err)
{
	return db_strerror(err);
}

int
store_txn_begin(struct store *s, struct store_txn **tp)
{
	DB_TXN *t;
	int ret;

	ret = storeenv_txn_begin(s->env, &t);
	*tp = (struct store_txn *)t;
	return ret;
}

int
store_txn_commit(struct store_txn *t)
{
	return storeenv_txn_commit(store_dbtxn(t));
}

int
store_txn_abort(struct store_txn *t)
{
	return storeenv_txn_abort(store_dbtxn(t));
}

static int
run_once(struct store *s, store_fn *fn, void *arg)
{
	struct store_txn *t;
	int ret;

	if ((ret = store_txn_begin(s, &t)) != 0)
		return ret;
	if ((ret = fn(s, t, arg)) != 0) {
		(void)store_txn_abort(t);
		return ret;
	}
	return store_txn_commit(t);
}

int
store_run(struct store *s, store_fn *fn, void *arg)
{
	int ret, i;

	for (i = 0; i < STORE_RUN_TRIES; i++) {
		if (i > 0) {
			if ((ret = storeenv_failchk(s->env,
			    RETRY_FAILCHK_MS)) != 0)
				return ret;
			backoff(i);
		}
		if (!retryable(ret = run_once(s, fn, arg)))
			return ret;
	}
	return DB_LOCK_DEADLOCK;
}

/*
 * Runs a table operation in the caller's transaction, or in one of its
 * own (with retries) when there is none.
 */
int
store_in_txn(struct store *s, struct store_txn *t, store_fn *fn, struct op *o)
{
	int ret;

	if (t == NULL)
		return store_run(s, fn, o);
	o->rmw = DB_RMW;
	ret = fn(s, t, o);
	return retryable(ret) ? DB_LOCK_DEADLOCK : ret;
}

/* Orders. */

static int
order_get_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	DBT k, d;
	int ret;

	store_dbt_in(&k, o->key, strlen(o->key));
	store_dbt_out(&d);
	if ((ret = s->orders->get(s->orders, store_dbtxn(t), &k, &d,
	    o->rmw)) != 0)
		return ret;
	*o->json = store_copy_nul(d.data, d.size);
	free(d.data);
	return *o->json == NULL ? ENOMEM : 0;
}

int
store_order_get(struct store *s, struct store_txn *t, const char *order_id,
    char **json)
{
	struct op o = { .key = order_id, .json = json };

	*json = NULL;
	if (store_check_key(order_id) != 0)
		return EINVAL;
	return store_in_txn(s, t, order_get_fn, &o);
}

static int
order_put_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	DBT k, d;

	store_dbt_in(&k, o->key, strlen(o->key));
	store_dbt_in(&d, o->data, o->len);
	return s->orders->put(s->orders, store_dbtxn(t), &k, &d, 0);
}

int
store_order_put(struct store *s, struct store_txn *t, const char *order_id,
    const char *json)
{
	struct op o = { .key = order_id, .data = json };

	if (store_check_key(order_id) != 0 || json == NULL ||
	    (o.len = strlen(json)) > UINT32_MAX)
		return EINVAL;
	return store_in_txn(s, t, order_put_fn, &o);
}

/* The outbox. */

static int
outbox_append_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	unsigned char kb[8], *buf;
	db_seq_t v;
	DBT k, d;
	int ret;

	/* Its own transaction: the counter is never locked until commit. */
	if ((ret = s->seq->get(s->seq, NULL, 1, &v, DB_TXN_NOSYNC)) != 0)
		return ret;
	if ((buf = malloc(OUTBOX_HDR + o->len)) == NULL)
		return ENOMEM;
	store_put_i64(buf, o->now_ms);
	if (o->len > 0)
		memcpy(buf + OUTBOX_HDR, o->data, o->len);
	util_put_be64(kb, (uint64_t)v);
	store_dbt_in(&k, kb, sizeof(kb));
	store_dbt_in(&d, buf, OUTBOX_HDR + o->len);
	ret = s->outbox->put(s->outbox, store_dbtxn(t), &k, &d, DB_NOOVERWRITE);
	free(buf);
	if (ret == 0)
		*o->seqp = (uint64_t)v;
	return ret;
}

int
store_outbox_append(struct store *s, struct store_txn *t, const void *data,
    size_t len, int64_t now_ms, uint64_t *seq)
{
	struct op o = { .data = data, .len = len, .now_ms = now_ms,
	    .seqp = seq };

	*seq = 0;
	if ((data == NULL && len > 0) || len > UINT32_MAX - OUTBOX_HDR)
		return EINVAL;
	return store_in_txn(s, t, outbox_append_fn, &o);
}

static int
outbox_decode(const DBT *k, const DBT *d, struct store_outbox_rec *r)
{
	if (k->size != 8 || d->size < OUTBOX_HDR)
		return EBADMSG;
	r->seq = util_get_be64(k->data);
	r->appended_ms = store_get_i64(d->data);
	r->len = d->size - OUTBOX_HDR;
	r->data = store_copy_nul((unsigned char *)d->data + OUTBOX_HDR, r->len);
	return r->data == NULL ? ENOMEM : 0;
}

/* The first record at or after key kb, read through cursor flags. */
static int
outbox_seek(struct store *s, struct store_txn *t, u_int32_t cflags,
    u_int32_t flags, unsigned char kb[8], struct store_outbox_rec *r)
{
	DBC *c;
	DBT k, d;
	int ret, t_ret;

	if ((ret = s->outbox->cursor(s->outbox, store_dbtxn(t), &c,
	    cflags)) != 0)
		return ret;
	memset(&k, 0, sizeof(k));
	k.data = kb;
	k.size = k.ulen = 8;
	k.flags = DB_DBT_USERMEM;
	store_dbt_out(&d);
	if ((ret = c->get(c, &k, &d, flags)) == 0) {
		ret = outbox_decode(&k, &d, r);
		free(d.data);
	}
	if ((t_ret = c->close(c)) != 0 && ret == 0)
		ret = t_ret;
	return ret;
}

static int
outbox_first_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	unsigned char kb[8];

	util_put_be64(kb, o->seq + 1);
	return outbox_seek(s, t, 0, DB_SET_RANGE | o->rmw, kb, o->rec);
}

int
store_outbox_first(struct store *s, struct store_txn *t, uint64_t after,
    struct store_outbox_rec *rec)
{
	struct op o = { .seq = after, .rec = rec };

	memset(rec, 0, sizeof(*rec));
	if (after == UINT64_MAX)
		return DB_NOTFOUND;
	return store_in_txn(s, t, outbox_first_fn, &o);
}

static int
outbox_del_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	unsigned char kb[8];
	DBT k;

	util_put_be64(kb, o->seq);
	store_dbt_in(&k, kb, sizeof(kb));
	return s->outbox->del(s->outbox, store_dbtxn(t), &k, 0);
}

int
store_outbox_del(struct store *s, struct store_txn *t, uint64_t seq)
{
	struct op o = { .seq = seq };

	return store_in_txn(s, t, outbox_del_fn, &o);
}

/* Read committed: statistics never hold up appenders. */
static int
outbox_stats_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	struct store_outbox_rec r;
	DB_BTREE_STAT *st;
	unsigned char kb[8];
	int ret;

	if ((ret = s->outbox->stat(s->outbox, store_dbtxn(t), &st,
	    DB_READ_COMMITTED)) != 0)
		return ret;
	*o->seqp = st->bt_nkeys;
	free(st);
	*o->msp = 0;
	memset(&r, 0, sizeof(r));
	ret = outbox_seek(s, t, DB_READ_COMMITTED, DB_FIRST, kb, &r);
	if (ret == 0)
		*o->msp = r.appended_ms;
	store_outbox_free(&r);
	return ret == DB_NOTFOUND ? 0 : ret;
}

int
store_outbox_stats(struct store *s, struct store_txn *t, uint64_t *depth,
    int64_t *oldest_ms)
{
	struct op o = { .seqp = depth, .msp = oldest_ms };

	*depth = 0;
	*oldest_ms = 0;
	return store_in_txn(s, t, outbox_stats_fn, &o);
}

void
store_outbox_free(struct store_outbox_rec *r)
{
	if (r == NULL)
		return;
	free(r->data);
	r->data = NULL;
	r->len = 0;
}
