/*
 * evavro.h - an event seen through avro-c's value interface, so that
 * avro_value_write() reads its fields where they are, in struct event,
 * instead of from a generic datum they were first copied into.  Filling
 * and resetting a generic datum cost an Avro order about 2,100
 * instructions, a twentieth of order-submit's.
 *
 * A map ties each field of one of our writer schemas (schemas/) to the
 * event's field it is written from, checked once against the schema's
 * types; the value it gives is read-only and valid while the event and
 * the record it was made in are.
 */
#ifndef OF_EVAVRO_H
#define OF_EVAVRO_H

#include <stddef.h>

#include <avro.h>

#include "event.h"

#define EVAVRO_FIELDS_MAX	16

struct evavro_map {
	enum event_kind	 kind;
	size_t		 n;			/* the schema's fields */
	unsigned char	 slot[EVAVRO_FIELDS_MAX];	/* each field's source */
	int		 sym[3];	/* the status enum's symbol by status */
};

/* One record being written: what avro_value_write() walks. */
struct evavro_rec {
	const struct evavro_map	*map;
	const struct event	*ev;
	char			 amount[32];	/* v1's amount as text */
};

/*
 * Maps schema, a record schema for events of kind.  Every field must be
 * one the kind has, of the type our schemas give it (a string, a long,
 * ["null", "string"], the items' array of sku, qty and unit_price, the
 * status enum with "approved" and "declined"), and every field the kind
 * writes must be there.  0, or -1 with msg set.
 */
int	 evavro_map_init(struct evavro_map *m, avro_schema_t schema,
	    enum event_kind kind, char *msg, size_t msglen);

/*
 * Points *out at ev as a record of m's schema, in rec.  -1 with errno
 * EINVAL if ev is not of m's kind.
 */
int	 evavro_value(const struct evavro_map *m, const struct event *ev,
	    struct evavro_rec *rec, avro_value_t *out);

#endif
