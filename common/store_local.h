/*
 * store_local.h - what store.c and storeidem.c share and nothing else
 * includes: the store's handles, the arguments of a table operation, and
 * the helpers both use.  Commands see store.h only.
 *
 * Numbers in the tables are big-endian, signed ones with the sign bit
 * flipped, so that byte order is numeric order (see store.c).
 */
#ifndef OF_STORE_LOCAL_H
#define OF_STORE_LOCAL_H

#include <stddef.h>
#include <stdint.h>

#include <db.h>

#include "store.h"

#define IDEM_HDR	20	/* created_ms, expires_ms, state */
#define IDEM_GENS	3	/* generation slots: now's, the next, the */
				/* one being dropped */

struct storeenv;

/* An idempotency table and the heap of its long outcomes, if any. */
struct itab {
	DB	*db;
	DB	*heap;
	int	 used;		/* may hold records (atomic; see itab_used()) */
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

/* The BDB transaction behind t (NULL: none). */
DB_TXN	*store_dbtxn(struct store_txn *t);

void	 store_put_i64(unsigned char *, int64_t);
int64_t	 store_get_i64(const unsigned char *);

/* A DBT over p[0..len), which the caller keeps. */
void	 store_dbt_in(DBT *, const void *p, size_t len);

/* An empty DBT that BDB fills with malloc'd data. */
void	 store_dbt_out(DBT *);

/* A NUL-terminated malloc'd copy of p[0..len); NULL: out of memory. */
void	*store_copy_nul(const void *p, size_t len);

/* 0 if key is a valid key (1 to STORE_KEY_MAX bytes), else EINVAL. */
int	 store_check_key(const char *key);

/*
 * Runs fn(s, t, o) in the caller's transaction t (with DB_RMW reads), or
 * in one of its own through store_run() when t is NULL.
 */
int	 store_in_txn(struct store *, struct store_txn *, store_fn *,
	    struct op *);

#endif
