/*
 * offtrack.h - in-order offset tracking for at-least-once consumers.
 *
 * A consumer hands records out in offset order per partition, but their
 * outputs are acknowledged in any order.  The tracker says which offset is
 * safe to commit: every record below it is done (its output acknowledged)
 * or was never seen (compaction gaps, transaction markers), so a commit
 * never passes a record whose output is still unacknowledged.
 *
 * Per (topic, partition) it keeps a window of the records begun and not
 * yet resolved, in offset order: appends are O(1), done is a binary search,
 * and the resolved prefix is dropped as soon as it is done, so memory is
 * proportional to the records in flight.  Pure C, no librdkafka: it is
 * unit tested and can be fuzzed.  Not thread-safe: one thread owns it.
 */
#ifndef OF_OFFTRACK_H
#define OF_OFFTRACK_H

#include <stddef.h>
#include <stdint.h>

struct offtrack;

/* Returns NULL when out of memory. */
struct offtrack	*offtrack_new(void);
void		 offtrack_free(struct offtrack *);

/*
 * Records that processing of offset started (it is pending).  Offsets of a
 * partition normally arrive in increasing order; an offset at or below one
 * already begun means the consumer went back (a seek, an offset reset, a
 * redelivery): the partition is rewound to it first (offtrack_rewind()).
 * Returns 0, or -1 when out of memory or offset < 0.
 */
int	offtrack_begin(struct offtrack *, const char *topic,
	    int32_t partition, int64_t offset);

/*
 * Marks offset done.  Returns 1 when that moved the committable offset, 0
 * when it did not (a lower record is still pending), -1 when the offset is
 * not pending (never begun, already done, or its partition was forgotten or
 * rewound past it): then nothing changes.
 */
int	offtrack_done(struct offtrack *, const char *topic,
	    int32_t partition, int64_t offset);

/*
 * The offset to commit: the lowest pending offset if any is pending, else
 * the highest resolved offset + 1.  Returns 1 and sets *next, or 0 when
 * the partition is unknown (nothing begun since it was last forgotten).
 */
int	offtrack_committable(const struct offtrack *, const char *topic,
	    int32_t partition, int64_t *next);

/*
 * The consumer will deliver offset next again (a seek backwards): records
 * at or above it are dropped (pending or done, they will be delivered and
 * begun again) and the committable offset never exceeds offset until they
 * are.  Records below it keep their state, so one still pending stays
 * protected.  A partition not known yet is created at offset.
 * Returns 0, or -1 when out of memory or offset < 0.
 */
int	offtrack_rewind(struct offtrack *, const char *topic,
	    int32_t partition, int64_t offset);

/* Drops a partition's state (it was revoked or lost). */
void	offtrack_forget_partition(struct offtrack *, const char *topic,
	    int32_t partition);

/*
 * The records of one partition held in its window: from the lowest
 * pending one up to the highest begun, done ones included (what its
 * memory is proportional to).  0 when nothing is pending.
 */
size_t	offtrack_partition_window(const struct offtrack *,
	    const char *topic, int32_t partition);

/* Pending records of one partition, and of all of them. */
size_t	offtrack_partition_pending(const struct offtrack *,
	    const char *topic, int32_t partition);
size_t	offtrack_pending(const struct offtrack *);

#endif
