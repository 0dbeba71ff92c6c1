/*
 * storeidem.c - the idempotency records of the store (store.h's
 * store_idem_*): the generation slots, idem.db with its expiry index and
 * outcome.db, and their expiry.  The environment, transactions and the
 * opening of the tables are store.c's.
 *
 * Files in the environment directory (store.c opens them and says how
 * numbers are stored):
 *   idem-g0.db, idem-g1.db, idem-g2.db
 *		 btrees, the generation slots: key -> created_ms, expires_ms,
 *		 state, the outcome inline
 *   idem.db	 btree: the same for records that fit no slot, and every
 *		 record of a store made before the slots; an outcome longer
 *		 than IDEM_INLINE_MAX lives in outcome.db
 *   idem-exp.db btree, a secondary index of idem.db (DB->associate):
 *		 expires_ms -> key, so its expiry walks only expired records
 *   outcome.db	 heap: idem.db's long outcomes
 *   idem-gen.db btree: the generation width and each slot's newest
 *		 generation, apart from meta.db so that emptying a slot,
 *		 which holds them locked, never holds up the outbox
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
 * record.  A lookup tries now's slot, the next one and idem.db (but,
 * with STORE_EXCLUSIVE, not a table found empty at open and not
 * written since): a key is unexpired in at most one of them, since a
 * put removes it from the others.  Records live at least their TTL,
 * and at most about two periods more.  A slot's newest period is recorded (in a transaction
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
 * truncated btree does, so the slots keep outcomes inline, in 4 KiB
 * pages that hold about a dozen records (store.c's GEN_PAGESIZE says
 * why not 16 KiB): splits cost less per insert than a heap append and a
 * second put did.  Short outcomes in idem.db stay inline,
 * where they cost less than the reference and a second lookup.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <db.h>

#include "store.h"
#include "store_local.h"
#include "util.h"

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

#define GEN_WIDTH_MIN	16	/* a generation: 2^16 ms (65 s) ... */
#define GEN_WIDTH_MAX	36	/* ... to 2^36 ms (2.2 years) */
#define GEN_WIDTH_KEY	"width"		/* idem-gen.db: u32 */
#define GEN_SLOT_KEY	"slot."		/* + N: its newest generation */

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
	r->created_ms = store_get_i64(p);
	r->expires_ms = store_get_i64(p + 8);
	state = util_get_be32(p + 16);
	v = state & ~IDEM_APART;	/* 31 bits, sign-extended from bit 30 */
	r->state = (int)(v & 0x40000000 ? v - 0x80000000 : v);
	if (state & IDEM_APART) {
		if (d->size != IDEM_HDR + IDEM_REF)
			return EBADMSG;
		rid->pgno = util_get_be32(p + IDEM_HDR);
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
		r->outcome = store_copy_nul((unsigned char *)d->data + IDEM_HDR,
		    r->outcome_len);
		return r->outcome == NULL ? ENOMEM : 0;
	}
	if (it->heap == NULL)
		return EBADMSG;
	rid_dbt(&k, rid);
	store_dbt_out(&v);
	ret = it->heap->get(it->heap, store_dbtxn(t), &k, &v, flags);
	if (ret == DB_NOTFOUND)
		return EBADMSG;
	if (ret != 0)
		return ret;
	r->outcome_len = v.size;
	r->outcome = store_copy_nul(v.data, v.size);
	free(v.data);
	return r->outcome == NULL ? ENOMEM : 0;
}

/* Whether it may hold records (store.c's itab_probe()). */
static int
itab_used(const struct itab *it)
{
	return __atomic_load_n(&it->used, __ATOMIC_ACQUIRE);
}

/* The record under key in it as stored; d.data is malloc'd. */
static int
idem_raw(const struct itab *it, struct store_txn *t, const char *key,
    u_int32_t flags, DBT *d)
{
	DBT k;

	store_dbt_in(&k, key, strlen(key));
	store_dbt_out(d);
	return it->db->get(it->db, store_dbtxn(t), &k, d, flags);
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
	ret = it->heap->del(it->heap, store_dbtxn(t), &k, 0);
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

	/*
	 * Marked before the write, so an aborted one leaves it marked.  The
	 * mark is the one field of a table a write changes (it is const
	 * everywhere else), hence the cast.
	 */
	__atomic_store_n(&((struct itab *)it)->used, 1, __ATOMIC_RELEASE);
	memset(&rid, 0, sizeof(rid));
	if (it->heap != NULL && r->outcome_len > IDEM_INLINE_MAX) {
		rid_dbt(&k, &rid);
		store_dbt_in(&d, r->outcome, r->outcome_len);
		if ((ret = it->heap->put(it->heap, store_dbtxn(t), &k, &d,
		    DB_APPEND)) != 0)
			return ret;
		state |= IDEM_APART;
		util_put_be32(buf + IDEM_HDR, rid.pgno);
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
	store_put_i64(buf, r->created_ms);
	store_put_i64(buf + 8, r->expires_ms);
	util_put_be32(buf + 16, state);
	store_dbt_in(&k, key, strlen(key));
	store_dbt_in(&d, buf, len);
	ret = it->db->put(it->db, store_dbtxn(t), &k, &d, flags);
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
	store_dbt_in(&k, GEN_WIDTH_KEY, strlen(GEN_WIDTH_KEY));
	memset(&d, 0, sizeof(d));
	d.data = v;
	d.ulen = sizeof(v);
	d.flags = DB_DBT_USERMEM;
	ret = s->gens->get(s->gens, NULL, &k, &d, DB_READ_COMMITTED);
	if (ret == DB_NOTFOUND)
		return 0;
	if (ret != 0)
		return ret;
	if (d.size != sizeof(v) || util_get_be32(v) < GEN_WIDTH_MIN ||
	    util_get_be32(v) > GEN_WIDTH_MAX)
		return EBADMSG;
	__atomic_store_n(&s->gen_width, (int)util_get_be32(v),
	    __ATOMIC_RELEASE);
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

	util_put_be32(v, (uint32_t)o->seq);
	store_dbt_in(&k, GEN_WIDTH_KEY, strlen(GEN_WIDTH_KEY));
	store_dbt_in(&d, v, sizeof(v));
	ret = s->gens->put(s->gens, store_dbtxn(t), &k, &d, DB_NOOVERWRITE);
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
	store_dbt_in(&k, key, strlen(key));
	memset(&d, 0, sizeof(d));
	d.data = v;
	d.ulen = sizeof(v);
	d.flags = DB_DBT_USERMEM;
	if ((ret = s->gens->get(s->gens, store_dbtxn(t), &k, &d, flags)) != 0)
		return ret;
	if (d.size != sizeof(v))
		return EBADMSG;
	*gen = util_get_be64(v);
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
	util_put_be64(v, o->seq);
	store_dbt_in(&k, key, strlen(key));
	store_dbt_in(&d, v, sizeof(v));
	return s->gens->put(s->gens, store_dbtxn(t), &k, &d, 0);
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
		if (!itab_used(tabs[i]))
			continue;
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
	if (store_check_key(key) != 0)
		return EINVAL;
	return store_in_txn(s, t, idem_get_fn, &o);
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
	store_dbt_in(&k, o->key, strlen(o->key));
	return it->db->del(it->db, store_dbtxn(t), &k, 0);
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
		if (tabs[i] != to && itab_used(tabs[i]) &&
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
	return store_check_key(key) == 0 && rec->state >= IDEM_STATE_MIN &&
	    rec->state <= IDEM_STATE_MAX && rec->outcome_len <= UINT32_MAX;
}

int
store_idem_put(struct store *s, struct store_txn *t, const char *key,
    const struct store_idem *rec)
{
	struct op o = { .key = key, .in = rec };

	if (!idem_put_ok(key, rec))
		return EINVAL;
	return store_in_txn(s, t, idem_put_fn, &o);
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
	return store_in_txn(s, t, idem_put_fn, &o);
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
		store_dbt_in(&k, o->key, strlen(o->key));
		if ((ret = it->db->del(it->db, store_dbtxn(t), &k, 0)) != 0)
			return ret;
		found = 1;
	}
	return found ? 0 : DB_NOTFOUND;
}

int
store_idem_del(struct store *s, struct store_txn *t, const char *key)
{
	struct op o = { .key = key };

	if (store_check_key(key) != 0)
		return EINVAL;
	return store_in_txn(s, t, idem_del_fn, &o);
}

/* Walks idem.db's expiry index from the oldest, deleting through it. */
static int
expire_walk(struct store *s, struct store_txn *t, struct op *o, DBC *c)
{
	DBT k, d;
	int ret, stop;

	for (*o->np = 0; *o->np < o->max; (*o->np)++) {
		store_dbt_out(&k);
		store_dbt_out(&d);
		if ((ret = c->get(c, &k, &d, DB_NEXT | DB_RMW)) != 0)
			return ret == DB_NOTFOUND ? 0 : ret;
		stop = k.size != 8 || store_get_i64(k.data) > o->now_ms;
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
		if ((ret = s->gen[i].db->truncate(s->gen[i].db, store_dbtxn(t),
		    &n, 0)) != 0)
			return ret;
		snprintf(key, sizeof(key), "%s%d", GEN_SLOT_KEY, i);
		store_dbt_in(&k, key, strlen(key));
		if ((ret = s->gens->del(s->gens, store_dbtxn(t), &k, 0)) != 0)
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

	if ((ret = s->idem_exp->cursor(s->idem_exp, store_dbtxn(t), &c,
	    0)) != 0)
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
	return store_in_txn(s, t, idem_expire_fn, &o);
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
