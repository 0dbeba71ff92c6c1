/*
 * upkeep.c - the upkeep of a worker's store: checkpoints, expiry and the
 * failure rule of upkeep.h, where the policy and its reasons are.
 */
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "store.h"
#include "upkeep.h"
#include "util.h"
#include "worker.h"

void
upkeep_init(struct upkeep *u, struct store **sp, const char *dir,
    unsigned flags)
{
	u->sp = sp;
	u->dir = dir;
	u->flags = flags;
	u->clock = util_mono_ms;
	u->next_checkpoint = u->clock() + UPKEEP_CHECKPOINT_MS;
	u->failed = 0;
	u->expired = 0;
	u->checkpoints = 0;
}

static int
stop(struct upkeep *u)
{
	u->failed = 1;
	worker_stop();
	return -1;
}

int
upkeep_failed(struct upkeep *u, int err, const struct log_ctx *lc)
{
	const char *hint;
	int ret;

	if (err == STORE_DEADLOCK) {
		log_msg(LOG_LEVEL_WARN, lc, "%s: %s: trying again later",
		    u->dir, store_strerror(err));
		return 0;
	}
	if (err != STORE_RUNRECOVERY) {
		log_msg(LOG_LEVEL_ERROR, lc, "%s: %s: stopping", u->dir,
		    store_strerror(err));
		return stop(u);
	}
	hint = store_damage_hint();
	log_msg(LOG_LEVEL_WARN, lc,
	    "%s: %s: reopening it, which recovers it%s%s", u->dir,
	    store_strerror(err), *hint != '\0' ? "; recovery does not mend "
	    "a damaged page: each record that leads to one fails again, and "
	    "its input goes to the dead letter topic once its attempts run "
	    "out" : "", hint);
	(void)store_close(*u->sp);
	*u->sp = NULL;
	if ((ret = store_open(u->sp, u->dir, u->flags)) != 0) {
		log_error("%s: reopening: %s: stopping", u->dir,
		    store_strerror(ret));
		*u->sp = NULL;
		return stop(u);
	}
	return 0;
}

/*
 * Whether another batch runs: the last one was full (more are due) and
 * the tick's slice, begun at start, is not spent.
 */
static int
expire_more(size_t n, int64_t start, int64_t now)
{
	return n == UPKEEP_EXPIRE_BATCH && now - start < UPKEEP_EXPIRE_SLICE_MS;
}

/* Expires what is due, within the slice; -1 when the store failed. */
static int
expire(struct upkeep *u)
{
	int64_t start = u->clock();
	uint64_t total = 0;
	size_t n;
	int ret;

	do {
		ret = store_idem_expire(*u->sp, NULL, util_now_ms(),
		    UPKEEP_EXPIRE_BATCH, &n);
		if (ret != 0)
			break;
		total += n;
	} while (expire_more(n, start, u->clock()));
	u->expired += total;
	if (total > 0)
		log_debug("%s: %llu idempotency record(s) expired", u->dir,
		    (unsigned long long)total);
	return ret != 0 && upkeep_failed(u, ret, NULL) != 0 ? -1 : 0;
}

void
upkeep_tick(struct upkeep *u)
{
	int ret;

	if (*u->sp == NULL || u->failed)
		return;
	if ((ret = store_failchk(*u->sp)) == STORE_RUNRECOVERY) {
		(void)upkeep_failed(u, ret, NULL);
		return;
	}
	if (expire(u) == -1 || *u->sp == NULL)
		return;
	if (u->clock() < u->next_checkpoint)
		return;
	if ((ret = store_checkpoint(*u->sp)) != 0)
		(void)upkeep_failed(u, ret, NULL);
	else
		u->checkpoints++;
	u->next_checkpoint = u->clock() + UPKEEP_CHECKPOINT_MS;
}
