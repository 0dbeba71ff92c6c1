/*
 * store.c - the Berkeley DB 5.3 state of the stateful commands.
 *
 * Files in the environment directory (besides BDB's __db.* regions,
 * __db.register and log.* files):
 *   idem-g0.db, idem-g1.db, idem-g2.db
 *		 btrees, the generation slots: key -> created_ms, expires_ms,
 *		 state, the outcome inline
 *   idem.db	 btree: the same for records that fit no slot, and every
 *		 record of a store made before the slots; an outcome longer
 *		 than IDEM_INLINE_MAX lives in outcome.db
 *   idem-exp.db btree, a secondary index of idem.db (DB->associate):
 *		 expires_ms -> key, so its expiry walks only expired records
 *   outcome.db	 heap: idem.db's long outcomes
 *   orders.db	 btree: order id -> JSON text
 *   outbox.db	 btree: big-endian seq -> appended_ms, data
 *   meta.db	 btree holding the outbox's DB_SEQUENCE
 *   idem-gen.db btree: the generation width and each slot's newest
 *		 generation, apart from meta.db so that emptying a slot,
 *		 which holds them locked, never holds up the outbox
 * Numbers are stored big-endian, signed ones with the sign bit flipped,
 * so that byte order (BDB's default comparison) is numeric order.
 *
 * Idempotency records expire by generation.  Time is cut into periods
 * of 2^w ms, w chosen once per store from the first record's TTL (its
 * power of two at or above, at least 2^16 ms) and kept in idem-gen.db.  A
 * record goes to the slot (generation mod 3) of its expiry's period,
 * which is now's or the next one when the TTL fits the width; a slot
 * whose newest period has ended holds only expired records, and expiry
 * empties it whole (DB->truncate: its pages are freed and reused) in
 * the period after, when it is the one slot neither now's nor the
 * next's.  So
 * an insert costs one put, where an expiry index cost a second one (a
 * quarter of a payment's instructions), and expiry costs nothing per
 * record.  A lookup tries now's slot, the next one and idem.db: a key
 * is unexpired in at most one of them, since a put removes it from the
 * others.  Records live at least their TTL, and at most about two
 * periods more.  A slot's newest period is recorded (in a transaction
 * of its own, committed before a record of that period is written)
 * once per period, and the slot is emptied only in the same
 * transaction that reads it, so a live record is never dropped.  A
 * record that fits no slot (a TTL longer than the width or than
 * 2^36 ms, a time far from now) goes to idem.db and expires through its
 * index, as every record of a store made before the slots does: such a
 * store is read as it is, its old records expire in their time, and new
 * ones go to the slots.  Only a wall clock stepped back by more than a
 * period could hide a record (in a slot not looked at).
 *
 * Why outcomes in idem.db live apart, and in the slots do not: keys
 * arrive in no useful order, so a tree takes its inserts all over.
 * With outcomes inline (a payment event is ~500 bytes) a 4 KiB leaf
 * holds a handful of records, every second or third insert splits one,
 * each split logs whole pages, and a tree many times the cache costs a
 * page read and a page write per insert.  In idem.db a 26-byte
 * reference makes the tree several times smaller and its splits rare;
 * the heap takes the outcomes in arrival order and reuses the space of
 * deleted ones.  But a truncated heap does not reuse its pages (the
 * file grew by a wave each time a slot was emptied, measured), while a
 * truncated btree does, so the slots keep outcomes inline, in 16 KiB
 * pages that hold ~25 records: splits cost less per insert than a heap
 * append and a second put did.  Short outcomes in idem.db stay inline,
 * where they cost less than the reference and a second lookup.
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
#include "storeenv.h"
#include "util.h"

_Static_assert(STORE_NOTFOUND == DB_NOTFOUND, "STORE_NOTFOUND");
_Static_assert(STORE_EXISTS == DB_KEYEXIST, "STORE_EXISTS");
_Static_assert(STORE_DEADLOCK == DB_LOCK_DEADLOCK, "STORE_DEADLOCK");
_Static_assert(STORE_RUNRECOVERY == DB_RUNRECOVERY, "STORE_RUNRECOVERY");
_Static_assert(STORE_NOSYNC == STOREENV_NOSYNC, "STORE_NOSYNC");

#define RETRY_FAILCHK_MS	100
#define OPEN_TRIES		5

#define IDEM_HDR	20	/* created_ms, expires_ms, state */
/*
 * The stored state: the caller's in the low 31 bits (so from -2^30 to
 * 2^30 - 1), and in the top bit whether the outcome is in outcome.db.
 * A record written before outcomes moved out reads the same, unless its
 * state was negative (the commands store 1).
 */
#define IDEM_APART	UINT32_C(0x80000000)
#define IDEM_STATE_MIN	(-(1 << 30))
#define IDEM_STATE_MAX	((1 << 30) - 1)
#define IDEM_REF	6	/* after the header: heap pgno, indx */
#define IDEM_INLINE_MAX	64	/* longer outcomes go to outcome.db */
#define HEAP_REGION_PAGES	256	/* outcome.db's regions: 1 MiB */
#define OUTBOX_HDR	8	/* appended_ms */

#define IDEM_GENS	3	/* generation slots: now's, the next, the */
				/* one being dropped */
#define GEN_WIDTH_MIN	16	/* a generation: 2^16 ms (65 s) ... */
#define GEN_WIDTH_MAX	36	/* ... to 2^36 ms (2.2 years) */
#define GEN_PAGESIZE	16384	/* a slot's pages hold ~25 records */
#define GEN_WIDTH_KEY	"width"		/* idem-gen.db: u32 */
#define GEN_SLOT_KEY	"slot."		/* + N: its newest generation */

/* An idempotency table and the heap of its long outcomes, if any. */
struct itab {
	DB	*db;
	DB	*heap;
};

struct store {
	struct storeenv	*env;
	struct itab	 gen[IDEM_GENS];	/* idem-gN.db, no heap */
	int		 gen_width;	/* log2 of a generation's ms, 0: unset */
	uint64_t	 gen_ready[IDEM_GENS];	/* generation + 1 recorded */
	struct itab	 lng;		/* idem.db, outcome.db */
	DB		*idem_exp;
	DB		*orders;
	DB		*outbox;
	DB		*meta;
	DB		*gens;		/* the width, each slot's generation */
	DB_SEQUENCE	*seq;
};

/* The arguments of every table operation, run by a store_fn. */
struct op {
	const char		*key;
	const void		*data;
	size_t			 len;
	int64_t			 now_ms;
	uint64_t		 seq;
	size_t			 max;
	u_int32_t		 rmw;	/* DB_RMW inside a caller's txn */
	const struct store_idem	*in;
	struct store_idem	*idem;
	struct store_outbox_rec	*rec;
	char			**json;
	uint64_t		*seqp;
	size_t			*np;
	int64_t			*msp;
};

static DB_TXN *
dbtxn(struct store_txn *t)
{
	return (DB_TXN *)t;
}

/* Numbers in byte order: big-endian, signed ones with the sign flipped. */
static void
put_u64(unsigned char *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = v & 0xff;
}

static uint64_t
get_u64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void
put_u32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static uint32_t
get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static void
put_i64(unsigned char *p, int64_t v)
{
	put_u64(p, (uint64_t)v ^ (UINT64_C(1) << 63));
}

static int64_t
get_i64(const unsigned char *p)
{
	return (int64_t)(get_u64(p) ^ (UINT64_C(1) << 63));
}

static void
dbt_in(DBT *d, const void *p, size_t len)
{
	memset(d, 0, sizeof(*d));
	d->data = (void *)(uintptr_t)p;
	d->size = (u_int32_t)len;
}

static void
dbt_out(DBT *d)
{
	memset(d, 0, sizeof(*d));
	d->flags = DB_DBT_MALLOC;
}

/* A NUL-terminated malloc'd copy of p[0..len). */
static void *
copy_nul(const void *p, size_t len)
{
	char *c;

	if ((c = malloc(len + 1)) == NULL)
		return NULL;
	memcpy(c, p, len);
	c[len] = '\0';
	return c;
}

static int
check_key(const char *key)
{
	size_t len;

	if (key == NULL)
		return EINVAL;
	len = strlen(key);
	return len == 0 || len > STORE_KEY_MAX ? EINVAL : 0;
}

static int
db_open_paged(DB_ENV *env, DB **dbp, const char *file, DBTYPE type,
    u_int32_t dbflags, u_int32_t pagesize)
{
	DB *db;
	int ret;

	*dbp = NULL;
	if ((ret = db_create(&db, env, 0)) != 0)
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
db_open(DB_ENV *env, DB **dbp, const char *file, DBTYPE type,
    u_int32_t dbflags)
{
	return db_open_paged(env, dbp, file, type, dbflags, 0);
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

	if ((ret = db_sequence_create(&seq, s->meta, 0)) != 0)
		return ret;
	dbt_in(&key, "outbox.seq", strlen("outbox.seq"));
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

/* The generation slots, idem-gN.db: outcomes inline (see the top). */
static int
gens_open(struct store *s)
{
	DB_ENV *e = storeenv_db(s->env);
	char name[32];
	int i, ret;

	for (i = 0; i < IDEM_GENS; i++) {
		snprintf(name, sizeof(name), "idem-g%d.db", i);
		if ((ret = db_open_paged(e, &s->gen[i].db, name, DB_BTREE, 0,
		    GEN_PAGESIZE)) != 0)
			return ret;
	}
	return 0;
}

static int
tables_open(struct store *s)
{
	DB_ENV *e = storeenv_db(s->env);
	int ret;

	if ((ret = db_open(e, &s->lng.db, "idem.db", DB_BTREE, 0)) != 0 ||
	    (ret = db_open(e, &s->idem_exp, "idem-exp.db", DB_BTREE,
	    DB_DUPSORT)) != 0 ||
	    (ret = s->lng.db->associate(s->lng.db, NULL, s->idem_exp,
	    idem_exp_key, DB_CREATE)) != 0 ||
	    (ret = db_open(e, &s->lng.heap, "outcome.db", DB_HEAP, 0)) != 0 ||
	    (ret = gens_open(s)) != 0 ||
	    (ret = db_open(e, &s->orders, "orders.db", DB_BTREE, 0)) != 0 ||
	    (ret = db_open(e, &s->outbox, "outbox.db", DB_BTREE, 0)) != 0 ||
	    (ret = db_open(e, &s->meta, "meta.db", DB_BTREE, 0)) != 0 ||
	    (ret = db_open(e, &s->gens, "idem-gen.db", DB_BTREE, 0)) != 0 ||
	    (ret = seq_open(s)) != 0)
		tables_close(s);
	return ret;
}

static int
retryable(int ret)
{
	return ret == DB_LOCK_DEADLOCK || ret == DB_LOCK_NOTGRANTED;
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
	/* Two processes creating the tables at once may deadlock. */
	for (i = 0; (ret = tables_open(s)) != 0 && retryable(ret) &&
	    i < OPEN_TRIES; i++)
		backoff(i + 1);
	if (ret != 0)
		log_error("store: %s: %s", dir, db_strerror(ret));
	else if ((ret = storeenv_watch(s->env)) != 0)
		tables_close(s);
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
	return storeenv_txn_commit(dbtxn(t));
}

int
store_txn_abort(struct store_txn *t)
{
	return storeenv_txn_abort(dbtxn(t));
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
static int
in_txn(struct store *s, struct store_txn *t, store_fn *fn, struct op *o)
{
	int ret;

	if (t == NULL)
		return store_run(s, fn, o);
	o->rmw = DB_RMW;
	ret = fn(s, t, o);
	return retryable(ret) ? DB_LOCK_DEADLOCK : ret;
}

/* Idempotency records. */

static void
rid_dbt(DBT *k, DB_HEAP_RID *rid)
{
	memset(k, 0, sizeof(*k));
	k->data = rid;
	k->size = DB_HEAP_RID_SZ;
	k->ulen = sizeof(*rid);
	k->flags = DB_DBT_USERMEM;
}

/*
 * Decodes a record of an idempotency table but for its outcome, which
 * is either inline (rid->pgno 0, since a heap's page 0 is its meta page;
 * the r->outcome_len bytes after the header) or where the table's heap
 * keeps it.
 */
static int
idem_decode(const DBT *d, struct store_idem *r, DB_HEAP_RID *rid)
{
	const unsigned char *p = d->data;
	uint32_t state;
	int64_t v;

	memset(r, 0, sizeof(*r));
	memset(rid, 0, sizeof(*rid));
	if (d->size < IDEM_HDR)
		return EBADMSG;
	r->created_ms = get_i64(p);
	r->expires_ms = get_i64(p + 8);
	state = get_u32(p + 16);
	v = state & ~IDEM_APART;	/* 31 bits, sign-extended from bit 30 */
	r->state = (int)(v & 0x40000000 ? v - 0x80000000 : v);
	if (state & IDEM_APART) {
		if (d->size != IDEM_HDR + IDEM_REF)
			return EBADMSG;
		rid->pgno = get_u32(p + IDEM_HDR);
		rid->indx = (db_indx_t)(p[IDEM_HDR + 4] << 8 |
		    p[IDEM_HDR + 5]);
		return rid->pgno == 0 ? EBADMSG : 0;
	}
	r->outcome_len = d->size - IDEM_HDR;
	return 0;
}

/*
 * Copies the outcome of the decoded record d to r.  A reference to
 * nothing is damage, never "no record": that answer would let a payment
 * be made twice.
 */
static int
idem_outcome(const struct itab *it, struct store_txn *t, const DBT *d,
    DB_HEAP_RID *rid, u_int32_t flags, struct store_idem *r)
{
	DBT k, v;
	int ret;

	if (rid->pgno == 0) {
		r->outcome = copy_nul((unsigned char *)d->data + IDEM_HDR,
		    r->outcome_len);
		return r->outcome == NULL ? ENOMEM : 0;
	}
	if (it->heap == NULL)
		return EBADMSG;
	rid_dbt(&k, rid);
	dbt_out(&v);
	ret = it->heap->get(it->heap, dbtxn(t), &k, &v, flags);
	if (ret == DB_NOTFOUND)
		return EBADMSG;
	if (ret != 0)
		return ret;
	r->outcome_len = v.size;
	r->outcome = copy_nul(v.data, v.size);
	free(v.data);
	return r->outcome == NULL ? ENOMEM : 0;
}

/* The record under key in it as stored; d.data is malloc'd. */
static int
idem_raw(const struct itab *it, struct store_txn *t, const char *key,
    u_int32_t flags, DBT *d)
{
	DBT k;

	dbt_in(&k, key, strlen(key));
	dbt_out(d);
	return it->db->get(it->db, dbtxn(t), &k, d, flags);
}

static int
idem_read(const struct itab *it, struct store_txn *t, const char *key,
    u_int32_t flags, struct store_idem *r)
{
	DB_HEAP_RID rid;
	DBT d;
	int ret;

	if ((ret = idem_raw(it, t, key, flags, &d)) != 0)
		return ret;
	if ((ret = idem_decode(&d, r, &rid)) == 0)
		ret = idem_outcome(it, t, &d, &rid, flags, r);
	free(d.data);
	if (ret != 0)
		store_idem_free(r);
	return ret;
}

/* Deletes the outcome kept apart at rid, if any (pgno 0: none). */
static int
outcome_del(const struct itab *it, struct store_txn *t, DB_HEAP_RID *rid)
{
	DBT k;
	int ret;

	if (rid->pgno == 0 || it->heap == NULL)
		return 0;
	rid_dbt(&k, rid);
	ret = it->heap->del(it->heap, dbtxn(t), &k, 0);
	return ret == DB_NOTFOUND ? 0 : ret;
}

/* Deletes the outcome that the stored record d keeps apart, if any. */
static int
outcome_del_of(const struct itab *it, struct store_txn *t, const DBT *d)
{
	struct store_idem r;
	DB_HEAP_RID rid;
	int ret;

	if ((ret = idem_decode(d, &r, &rid)) != 0)
		return ret;
	return outcome_del(it, t, &rid);
}

/*
 * Writes a record under key in it (put flags: 0 or DB_NOOVERWRITE).  A
 * long outcome goes to the heap first; when DB_NOOVERWRITE finds a
 * record, that outcome is taken back and DB_KEYEXIST returned.
 */
static int
idem_write(const struct itab *it, struct store_txn *t, const char *key,
    const struct store_idem *r, u_int32_t flags)
{
	unsigned char ref[IDEM_HDR + IDEM_REF], *buf = ref;
	uint32_t state = (uint32_t)r->state & ~IDEM_APART;
	DB_HEAP_RID rid;
	size_t len;
	DBT k, d;
	int ret;

	memset(&rid, 0, sizeof(rid));
	if (it->heap != NULL && r->outcome_len > IDEM_INLINE_MAX) {
		rid_dbt(&k, &rid);
		dbt_in(&d, r->outcome, r->outcome_len);
		if ((ret = it->heap->put(it->heap, dbtxn(t), &k, &d,
		    DB_APPEND)) != 0)
			return ret;
		state |= IDEM_APART;
		put_u32(buf + IDEM_HDR, rid.pgno);
		buf[IDEM_HDR + 4] = (unsigned char)(rid.indx >> 8);
		buf[IDEM_HDR + 5] = (unsigned char)rid.indx;
		len = IDEM_HDR + IDEM_REF;
	} else {
		len = IDEM_HDR + r->outcome_len;
		if (len > sizeof(ref) && (buf = malloc(len)) == NULL)
			return ENOMEM;
		if (r->outcome_len > 0)
			memcpy(buf + IDEM_HDR, r->outcome, r->outcome_len);
	}
	put_i64(buf, r->created_ms);
	put_i64(buf + 8, r->expires_ms);
	put_u32(buf + 16, state);
	dbt_in(&k, key, strlen(key));
	dbt_in(&d, buf, len);
	ret = it->db->put(it->db, dbtxn(t), &k, &d, flags);
	if (buf != ref)
		free(buf);
	if (ret == DB_KEYEXIST) {
		int t_ret = outcome_del(it, t, &rid);

		return t_ret != 0 ? t_ret : DB_KEYEXIST;
	}
	return ret;
}

/*
 * Generations.
 *
 * A time's generation is its 2^width ms period: the top bits of the
 * time in byte order (sign flipped).  The width is the store's, set
 * once, from the first record put that fits (see gen_place()), and kept
 * in idem-gen.db.
 */

static uint64_t
gen_of(const struct store *s, int64_t ms)
{
	return ((uint64_t)ms ^ (UINT64_C(1) << 63)) >> s->gen_width;
}

/* The width, read from idem-gen.db (another process may have set it). */
static int
gen_width_load(struct store *s)
{
	unsigned char v[4];
	DBT k, d;
	int ret;

	if (__atomic_load_n(&s->gen_width, __ATOMIC_ACQUIRE) != 0)
		return 0;
	dbt_in(&k, GEN_WIDTH_KEY, strlen(GEN_WIDTH_KEY));
	memset(&d, 0, sizeof(d));
	d.data = v;
	d.ulen = sizeof(v);
	d.flags = DB_DBT_USERMEM;
	ret = s->gens->get(s->gens, NULL, &k, &d, DB_READ_COMMITTED);
	if (ret == DB_NOTFOUND)
		return 0;
	if (ret != 0)
		return ret;
	if (d.size != sizeof(v) || get_u32(v) < GEN_WIDTH_MIN ||
	    get_u32(v) > GEN_WIDTH_MAX)
		return EBADMSG;
	__atomic_store_n(&s->gen_width, (int)get_u32(v), __ATOMIC_RELEASE);
	return 0;
}

/* Sets the width to o->seq unless one is set: in its own transaction. */
static int
gen_width_set_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	unsigned char v[4];
	DBT k, d;
	int ret;

	put_u32(v, (uint32_t)o->seq);
	dbt_in(&k, GEN_WIDTH_KEY, strlen(GEN_WIDTH_KEY));
	dbt_in(&d, v, sizeof(v));
	ret = s->gens->put(s->gens, dbtxn(t), &k, &d, DB_NOOVERWRITE);
	return ret == DB_KEYEXIST ? 0 : ret;
}

/* The generation recorded as slot i's newest; DB_NOTFOUND: none. */
static int
gen_slot_get(struct store *s, struct store_txn *t, int i, u_int32_t flags,
    uint64_t *gen)
{
	unsigned char v[8];
	char key[sizeof(GEN_SLOT_KEY) + 8];
	DBT k, d;
	int ret;

	snprintf(key, sizeof(key), "%s%d", GEN_SLOT_KEY, i);
	dbt_in(&k, key, strlen(key));
	memset(&d, 0, sizeof(d));
	d.data = v;
	d.ulen = sizeof(v);
	d.flags = DB_DBT_USERMEM;
	if ((ret = s->gens->get(s->gens, dbtxn(t), &k, &d, flags)) != 0)
		return ret;
	if (d.size != sizeof(v))
		return EBADMSG;
	*gen = get_u64(v);
	return 0;
}

/* Records generation o->seq as slot o->max's newest if it is newer. */
static int
gen_slot_set_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	unsigned char v[8];
	char key[sizeof(GEN_SLOT_KEY) + 8];
	uint64_t cur;
	DBT k, d;
	int ret;

	ret = gen_slot_get(s, t, (int)o->max, DB_RMW, &cur);
	if (ret != 0 && ret != DB_NOTFOUND)
		return ret;
	if (ret == 0 && cur >= o->seq)
		return 0;
	snprintf(key, sizeof(key), "%s%d", GEN_SLOT_KEY, (int)o->max);
	put_u64(v, o->seq);
	dbt_in(&k, key, strlen(key));
	dbt_in(&d, v, sizeof(v));
	return s->gens->put(s->gens, dbtxn(t), &k, &d, 0);
}

/*
 * Makes slot gen % IDEM_GENS ready for records of generation gen: its
 * recorded newest generation is at least gen, committed (in a
 * transaction of its own) before any such record is written, so that
 * expiry never takes a slot that may hold a live record.  Known slots
 * cost nothing: a slot changes generation once a period.
 */
static int
gen_slot_ready(struct store *s, uint64_t gen)
{
	int i = (int)(gen % IDEM_GENS);
	struct op o = { .seq = gen, .max = (size_t)i };
	int ret;

	if (__atomic_load_n(&s->gen_ready[i], __ATOMIC_ACQUIRE) == gen + 1)
		return 0;
	if ((ret = store_run(s, gen_slot_set_fn, &o)) != 0)
		return ret;
	__atomic_store_n(&s->gen_ready[i], gen + 1, __ATOMIC_RELEASE);
	return 0;
}

/*
 * The tables a record may be in at time now: the slots of now's
 * generation and the next (when the width is known), then idem.db.
 * Returns how many, in tabs.
 */
static int
gen_tables(struct store *s, int64_t now, const struct itab *tabs[3])
{
	uint64_t g;
	int n = 0;

	if (s->gen_width != 0) {
		g = gen_of(s, now);
		tabs[n++] = &s->gen[(g + 1) % IDEM_GENS];
		tabs[n++] = &s->gen[g % IDEM_GENS];
	}
	tabs[n++] = &s->lng;
	return n;
}

/* The smallest width of a generation that holds ttl_ms, or 0: none. */
static int
gen_width_for(int64_t created_ms, int64_t expires_ms)
{
	uint64_t ttl;
	int w;

	if (expires_ms <= created_ms)
		return GEN_WIDTH_MIN;
	ttl = (uint64_t)expires_ms - (uint64_t)created_ms;
	for (w = GEN_WIDTH_MIN; w <= GEN_WIDTH_MAX; w++)
		if (ttl <= UINT64_C(1) << w)
			return w;
	return 0;
}

/*
 * Where a record put at time now goes: the slot of its expiry's
 * generation when that is now's or the next, else idem.db, with its
 * expiry index (a TTL longer than the width, or a clock far off).  A
 * record expired already goes to now's slot, where it is as absent as
 * anywhere.  Sets the width from the first record that fits.
 */
static int
gen_place(struct store *s, int64_t now, const struct store_idem *r,
    const struct itab **to)
{
	struct op o = { 0 };
	uint64_t g, ge;
	int ret, w;

	*to = &s->lng;
	if ((ret = gen_width_load(s)) != 0)
		return ret;
	if (s->gen_width == 0) {
		if ((w = gen_width_for(r->created_ms, r->expires_ms)) == 0)
			return 0;
		o.seq = (uint64_t)w;
		if ((ret = store_run(s, gen_width_set_fn, &o)) != 0 ||
		    (ret = gen_width_load(s)) != 0)
			return ret;
		if (s->gen_width == 0)
			return EBADMSG;
	}
	g = gen_of(s, now);
	ge = gen_of(s, r->expires_ms);
	if (ge > g + 1)
		return 0;
	if (ge < g)
		ge = g;
	if ((ret = gen_slot_ready(s, ge)) != 0)
		return ret;
	*to = &s->gen[ge % IDEM_GENS];
	return 0;
}

/*
 * The one record a key has in tabs, unexpired at now: the key is in at
 * most one table unexpired (puts remove it from the others).
 */
static int
idem_get_fn(struct store *s, struct store_txn *t, void *arg)
{
	const struct itab *tabs[3];
	struct op *o = arg;
	int i, n, ret;

	if ((ret = gen_width_load(s)) != 0)
		return ret;
	n = gen_tables(s, o->now_ms, tabs);
	for (i = 0; i < n; i++) {
		ret = idem_read(tabs[i], t, o->key, o->rmw, o->idem);
		if (ret == DB_NOTFOUND)
			continue;
		if (ret != 0)
			return ret;
		if (o->idem->expires_ms > o->now_ms)
			return 0;
		store_idem_free(o->idem);
	}
	return DB_NOTFOUND;
}

int
store_idem_get(struct store *s, struct store_txn *t, const char *key,
    int64_t now_ms, struct store_idem *rec)
{
	struct op o = { .key = key, .now_ms = now_ms, .idem = rec };

	memset(rec, 0, sizeof(*rec));
	if (check_key(key) != 0)
		return EINVAL;
	return in_txn(s, t, idem_get_fn, &o);
}

/*
 * The record under key in it, found by a put: with o->now_ms > 0
 * (put_new) an unexpired one gives DB_KEYEXIST, copied to o->idem when
 * that is not NULL; any other is deleted, and 0 returned.
 */
static int
idem_displace(struct store_txn *t, const struct itab *it, struct op *o)
{
	struct store_idem old;
	DB_HEAP_RID rid;
	DBT k, d;
	int ret;

	if ((ret = idem_raw(it, t, o->key, DB_RMW, &d)) != 0)
		return ret == DB_NOTFOUND ? 0 : ret;
	ret = idem_decode(&d, &old, &rid);
	if (ret == 0 && o->now_ms > 0 && old.expires_ms > o->now_ms) {
		if (o->idem != NULL && (ret = idem_outcome(it, t, &d, &rid,
		    DB_RMW, &old)) == 0) {
			*o->idem = old;
			old.outcome = NULL;
		}
		ret = ret == 0 ? DB_KEYEXIST : ret;
	} else if (ret == 0)
		ret = outcome_del(it, t, &rid);
	else if (o->now_ms == 0)
		ret = 0;	/* a plain put replaces even a damaged record */
	store_idem_free(&old);
	free(d.data);
	if (ret != 0)
		return ret;
	dbt_in(&k, o->key, strlen(o->key));
	return it->db->del(it->db, dbtxn(t), &k, 0);
}

/*
 * Puts o->in under o->key.  With o->now_ms > 0 only in place of nothing
 * or of an expired record: an unexpired one gives DB_KEYEXIST, and is
 * copied to o->idem when that is not NULL.  The usual case, a key never
 * seen, costs one insert (DB_NOOVERWRITE finds a record in the same
 * table) and a look into each other table the key could be in.
 */
static int
idem_put_fn(struct store *s, struct store_txn *t, void *arg)
{
	const struct itab *tabs[3], *to;
	struct op *o = arg;
	int64_t now = o->now_ms > 0 ? o->now_ms : o->in->created_ms;
	int i, n, ret;

	if ((ret = gen_place(s, now, o->in, &to)) != 0)
		return ret;
	n = gen_tables(s, now, tabs);
	for (i = 0; i < n; i++)
		if (tabs[i] != to &&
		    (ret = idem_displace(t, tabs[i], o)) != 0)
			return ret;
	ret = idem_write(to, t, o->key, o->in, DB_NOOVERWRITE);
	if (ret != DB_KEYEXIST)
		return ret;
	if ((ret = idem_displace(t, to, o)) != 0)
		return ret;
	return idem_write(to, t, o->key, o->in, 0);
}

/* Whether key and rec can be stored (store.h: the state's range). */
static int
idem_put_ok(const char *key, const struct store_idem *rec)
{
	return check_key(key) == 0 && rec->state >= IDEM_STATE_MIN &&
	    rec->state <= IDEM_STATE_MAX && rec->outcome_len <= UINT32_MAX;
}

int
store_idem_put(struct store *s, struct store_txn *t, const char *key,
    const struct store_idem *rec)
{
	struct op o = { .key = key, .in = rec };

	if (!idem_put_ok(key, rec))
		return EINVAL;
	return in_txn(s, t, idem_put_fn, &o);
}

int
store_idem_put_new(struct store *s, struct store_txn *t, const char *key,
    const struct store_idem *rec, int64_t now_ms, struct store_idem *old)
{
	struct op o = { .key = key, .in = rec, .now_ms = now_ms, .idem = old };

	if (old != NULL)
		memset(old, 0, sizeof(*old));
	if (!idem_put_ok(key, rec) || now_ms <= 0)
		return EINVAL;
	return in_txn(s, t, idem_put_fn, &o);
}

/* Deletes key from every table: its slots and idem.db. */
static int
idem_del_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	const struct itab *it;
	int found = 0, i, ret;
	DBT k, d;

	for (i = 0; i <= IDEM_GENS; i++) {
		it = i < IDEM_GENS ? &s->gen[i] : &s->lng;
		if ((ret = idem_raw(it, t, o->key, DB_RMW, &d)) == DB_NOTFOUND)
			continue;
		if (ret != 0)
			return ret;
		ret = outcome_del_of(it, t, &d);
		free(d.data);
		if (ret != 0)
			return ret;
		dbt_in(&k, o->key, strlen(o->key));
		if ((ret = it->db->del(it->db, dbtxn(t), &k, 0)) != 0)
			return ret;
		found = 1;
	}
	return found ? 0 : DB_NOTFOUND;
}

int
store_idem_del(struct store *s, struct store_txn *t, const char *key)
{
	struct op o = { .key = key };

	if (check_key(key) != 0)
		return EINVAL;
	return in_txn(s, t, idem_del_fn, &o);
}

/* Walks idem.db's expiry index from the oldest, deleting through it. */
static int
expire_walk(struct store *s, struct store_txn *t, struct op *o, DBC *c)
{
	DBT k, d;
	int ret, stop;

	for (*o->np = 0; *o->np < o->max; (*o->np)++) {
		dbt_out(&k);
		dbt_out(&d);
		if ((ret = c->get(c, &k, &d, DB_NEXT | DB_RMW)) != 0)
			return ret == DB_NOTFOUND ? 0 : ret;
		stop = k.size != 8 || get_i64(k.data) > o->now_ms;
		ret = stop ? 0 : outcome_del_of(&s->lng, t, &d);
		free(k.data);
		free(d.data);
		if (stop || ret != 0)
			return ret;
		if ((ret = c->del(c, 0)) != 0)
			return ret;
	}
	return 0;
}

/*
 * Empties the slot outside now's window (now's generation and the next)
 * if its newest generation has ended (so all its records have expired),
 * adding how many records it held to *o->np.  A slot in the window is
 * left alone even when it holds only expired records: lookups use it,
 * and DB->truncate() fails on a handle another thread has a cursor on.
 */
static int
expire_slots(struct store *s, struct store_txn *t, struct op *o)
{
	char key[sizeof(GEN_SLOT_KEY) + 8];
	u_int32_t n;
	uint64_t g;
	DBT k;
	int i, ret;

	if ((ret = gen_width_load(s)) != 0 || s->gen_width == 0)
		return ret;
	for (i = 0; i < IDEM_GENS; i++) {
		if ((uint64_t)i == gen_of(s, o->now_ms) % IDEM_GENS ||
		    (uint64_t)i == (gen_of(s, o->now_ms) + 1) % IDEM_GENS)
			continue;
		ret = gen_slot_get(s, t, i, DB_RMW, &g);
		if (ret == DB_NOTFOUND)
			continue;
		if (ret != 0)
			return ret;
		if (g >= gen_of(s, o->now_ms))
			continue;
		if ((ret = s->gen[i].db->truncate(s->gen[i].db, dbtxn(t), &n,
		    0)) != 0)
			return ret;
		snprintf(key, sizeof(key), "%s%d", GEN_SLOT_KEY, i);
		dbt_in(&k, key, strlen(key));
		if ((ret = s->gens->del(s->gens, dbtxn(t), &k, 0)) != 0)
			return ret;
		__atomic_store_n(&s->gen_ready[i], 0, __ATOMIC_RELEASE);
		*o->np += n;
	}
	return 0;
}

static int
idem_expire_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	DBC *c;
	int ret, t_ret;

	if ((ret = s->idem_exp->cursor(s->idem_exp, dbtxn(t), &c, 0)) != 0)
		return ret;
	ret = expire_walk(s, t, o, c);
	if ((t_ret = c->close(c)) != 0 && ret == 0)
		ret = t_ret;
	if (ret != 0 || *o->np == o->max)
		return ret;
	return expire_slots(s, t, o);
}

int
store_idem_expire(struct store *s, struct store_txn *t, int64_t now_ms,
    size_t max, size_t *n)
{
	struct op o = { .now_ms = now_ms, .max = max, .np = n };

	*n = 0;
	return in_txn(s, t, idem_expire_fn, &o);
}

void
store_idem_free(struct store_idem *r)
{
	if (r == NULL)
		return;
	free(r->outcome);
	r->outcome = NULL;
	r->outcome_len = 0;
}

/* Orders. */

static int
order_get_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	DBT k, d;
	int ret;

	dbt_in(&k, o->key, strlen(o->key));
	dbt_out(&d);
	if ((ret = s->orders->get(s->orders, dbtxn(t), &k, &d, o->rmw)) != 0)
		return ret;
	*o->json = copy_nul(d.data, d.size);
	free(d.data);
	return *o->json == NULL ? ENOMEM : 0;
}

int
store_order_get(struct store *s, struct store_txn *t, const char *order_id,
    char **json)
{
	struct op o = { .key = order_id, .json = json };

	*json = NULL;
	if (check_key(order_id) != 0)
		return EINVAL;
	return in_txn(s, t, order_get_fn, &o);
}

static int
order_put_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	DBT k, d;

	dbt_in(&k, o->key, strlen(o->key));
	dbt_in(&d, o->data, o->len);
	return s->orders->put(s->orders, dbtxn(t), &k, &d, 0);
}

int
store_order_put(struct store *s, struct store_txn *t, const char *order_id,
    const char *json)
{
	struct op o = { .key = order_id, .data = json };

	if (check_key(order_id) != 0 || json == NULL ||
	    (o.len = strlen(json)) > UINT32_MAX)
		return EINVAL;
	return in_txn(s, t, order_put_fn, &o);
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
	put_i64(buf, o->now_ms);
	if (o->len > 0)
		memcpy(buf + OUTBOX_HDR, o->data, o->len);
	put_u64(kb, (uint64_t)v);
	dbt_in(&k, kb, sizeof(kb));
	dbt_in(&d, buf, OUTBOX_HDR + o->len);
	ret = s->outbox->put(s->outbox, dbtxn(t), &k, &d, DB_NOOVERWRITE);
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
	return in_txn(s, t, outbox_append_fn, &o);
}

static int
outbox_decode(const DBT *k, const DBT *d, struct store_outbox_rec *r)
{
	if (k->size != 8 || d->size < OUTBOX_HDR)
		return EBADMSG;
	r->seq = get_u64(k->data);
	r->appended_ms = get_i64(d->data);
	r->len = d->size - OUTBOX_HDR;
	r->data = copy_nul((unsigned char *)d->data + OUTBOX_HDR, r->len);
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

	if ((ret = s->outbox->cursor(s->outbox, dbtxn(t), &c, cflags)) != 0)
		return ret;
	memset(&k, 0, sizeof(k));
	k.data = kb;
	k.size = k.ulen = 8;
	k.flags = DB_DBT_USERMEM;
	dbt_out(&d);
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

	put_u64(kb, o->seq + 1);
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
	return in_txn(s, t, outbox_first_fn, &o);
}

static int
outbox_del_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct op *o = arg;
	unsigned char kb[8];
	DBT k;

	put_u64(kb, o->seq);
	dbt_in(&k, kb, sizeof(kb));
	return s->outbox->del(s->outbox, dbtxn(t), &k, 0);
}

int
store_outbox_del(struct store *s, struct store_txn *t, uint64_t seq)
{
	struct op o = { .seq = seq };

	return in_txn(s, t, outbox_del_fn, &o);
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

	if ((ret = s->outbox->stat(s->outbox, dbtxn(t), &st,
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
	return in_txn(s, t, outbox_stats_fn, &o);
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
