/*
 * evavro.c - an event seen through avro-c's value interface (evavro.h).
 * Each Avro type written has an interface of its own here, with only
 * the getters avro_value_write() and avro_value_sizeof() call; a value's
 * self points into the event (a string, a long, the order for its items,
 * one item) or at the record being written (the status enum).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "evavro.h"

/* What a schema field is written from. */
enum slot {
	S_NONE, S_ORDER_ID, S_CUSTOMER_ID, S_EMAIL, S_CURRENCY,
	S_PAYMENT_METHOD, S_AMOUNT_TEXT, S_AMOUNT, S_ITEMS, S_TOTAL,
	S_PAYMENT_ID, S_STATUS, S_REASON
};

/* The Avro type a slot is written as. */
enum vtype { T_STR, T_OPT, T_LONG, T_ITEMS, T_ENUM };

#define K(kind)	(1u << (kind))
#define K_V1	K(EVENT_ORDER_CREATED_V1)
#define K_V2	K(EVENT_ORDER_CREATED_V2)
#define K_PAY	K(EVENT_PAYMENT_PROCESSED_V1)
#define K_ALL	(K_V1 | K_V2 | K_PAY)

/* Each field our schemas have, by kind: all are required. */
static const struct spec {
	const char	*name;
	enum slot	 slot;
	enum vtype	 type;
	unsigned	 kinds;
} specs[] = {
	{ "order_id", S_ORDER_ID, T_STR, K_ALL },
	{ "customer_id", S_CUSTOMER_ID, T_STR, K_ALL },
	{ "email", S_EMAIL, T_STR, K_ALL },
	{ "currency", S_CURRENCY, T_STR, K_ALL },
	{ "payment_method", S_PAYMENT_METHOD, T_OPT, K_ALL },
	{ "amount", S_AMOUNT_TEXT, T_STR, K_V1 },
	{ "amount", S_AMOUNT, T_LONG, K_PAY },
	{ "items", S_ITEMS, T_ITEMS, K_V2 },
	{ "total", S_TOTAL, T_LONG, K_V2 },
	{ "payment_id", S_PAYMENT_ID, T_STR, K_PAY },
	{ "status", S_STATUS, T_ENUM, K_PAY },
	{ "reason", S_REASON, T_OPT, K_PAY },
};

#define NSPECS	(sizeof(specs) / sizeof(specs[0]))

static const char *const type_names[] = {
	[T_STR] = "a string", [T_OPT] = "[\"null\", \"string\"]",
	[T_LONG] = "a long", [T_ITEMS] = "an array of items",
	[T_ENUM] = "an enum of approved and declined"
};

/*
 * The interfaces.  avro_value_t's self is not const, though nothing here
 * writes through it.
 */
#define SELF(p)	((void *)(uintptr_t)(p))

static avro_value_iface_t str_iface, opt_iface, null_iface, long_iface,
    int_iface, items_iface, item_iface, enum_iface, rec_iface;

/* Each interface's get_type(): its type, whatever the value. */
#define TYPE_FN(fn, type)						\
	static avro_type_t						\
	fn(const avro_value_iface_t *i, const void *self)		\
	{								\
		(void)i, (void)self;					\
		return (type);						\
	}

TYPE_FN(str_type, AVRO_STRING)
TYPE_FN(opt_type, AVRO_UNION)
TYPE_FN(null_type, AVRO_NULL)
TYPE_FN(long_type, AVRO_INT64)
TYPE_FN(int_type, AVRO_INT32)
TYPE_FN(items_type, AVRO_ARRAY)
TYPE_FN(rec_type, AVRO_RECORD)
TYPE_FN(enum_type, AVRO_ENUM)

/* The size counts the NUL, as avro-c's strings do. */
static int
str_get(const avro_value_iface_t *i, const void *self, const char **str,
    size_t *size)
{
	(void)i;
	*str = self;
	*size = strlen(self) + 1;
	return 0;
}

/* ["null", "string"]: null for NULL or "". */
static int
opt_disc(const avro_value_iface_t *i, const void *self, int *out)
{
	const char *s = self;

	(void)i;
	*out = s != NULL && *s != '\0';
	return 0;
}

static int
opt_branch(const avro_value_iface_t *i, const void *self, avro_value_t *b)
{
	const char *s = self;

	(void)i;
	b->iface = s != NULL && *s != '\0' ? &str_iface : &null_iface;
	b->self = SELF(s);
	return 0;
}

static int
null_get(const avro_value_iface_t *i, const void *self)
{
	(void)i, (void)self;
	return 0;
}

static int
long_get(const avro_value_iface_t *i, const void *self, int64_t *out)
{
	(void)i;
	*out = *(const int64_t *)self;
	return 0;
}

static int
int_get(const avro_value_iface_t *i, const void *self, int32_t *out)
{
	(void)i;
	*out = *(const int *)self;
	return 0;
}

/* The items: self is the order. */
static int
items_size(const avro_value_iface_t *i, const void *self, size_t *size)
{
	(void)i;
	*size = ((const struct order *)self)->nitems;
	return 0;
}

static int
items_at(const avro_value_iface_t *i, const void *self, size_t index,
    avro_value_t *child, const char **name)
{
	const struct order *o = self;

	(void)i;
	if (index >= o->nitems)
		return EINVAL;
	child->iface = &item_iface;
	child->self = SELF(&o->items[index]);
	if (name != NULL)
		*name = NULL;
	return 0;
}

/* One item: sku, qty and unit_price, in that order (map_init checks). */
static int
item_size(const avro_value_iface_t *i, const void *self, size_t *size)
{
	(void)i, (void)self;
	*size = 3;
	return 0;
}

static int
item_at(const avro_value_iface_t *i, const void *self, size_t index,
    avro_value_t *child, const char **name)
{
	const struct order_item *it = self;

	(void)i;
	switch (index) {
	case 0:
		child->iface = &str_iface;
		child->self = SELF(it->sku);
		break;
	case 1:
		child->iface = &int_iface;
		child->self = SELF(&it->qty);
		break;
	case 2:
		child->iface = &long_iface;
		child->self = SELF(&it->unit_price);
		break;
	default:
		return EINVAL;
	}
	if (name != NULL)
		*name = NULL;
	return 0;
}

/* The status: self is the record being written. */
static int
enum_get(const avro_value_iface_t *i, const void *self, int *out)
{
	const struct evavro_rec *r = self;

	(void)i;
	*out = r->map->sym[r->ev->payment.status == EVENT_PAY_DECLINED];
	return 0;
}

/* The text a string or optional slot is written from; NULL: null. */
static const char *
text_of(const struct evavro_rec *r, enum slot s)
{
	const struct event_payment *p = &r->ev->payment;
	const struct order *o = &r->ev->order;
	int pay = r->ev->kind == EVENT_PAYMENT_PROCESSED_V1;

	switch (s) {
	case S_ORDER_ID:
		return pay ? p->order_id : o->order_id;
	case S_CUSTOMER_ID:
		return pay ? p->customer_id : o->customer_id;
	case S_EMAIL:
		return pay ? p->email : o->email;
	case S_CURRENCY:
		return pay ? p->currency : o->currency;
	case S_PAYMENT_METHOD:
		return pay ? p->payment_method : o->payment_method;
	case S_AMOUNT_TEXT:
		return r->amount;
	case S_PAYMENT_ID:
		return p->payment_id;
	case S_REASON:
		return p->status == EVENT_PAY_DECLINED ? p->reason : NULL;
	default:
		return NULL;
	}
}

/* The event's record: self is the struct evavro_rec. */
static int
rec_size(const avro_value_iface_t *i, const void *self, size_t *size)
{
	(void)i;
	*size = ((const struct evavro_rec *)self)->map->n;
	return 0;
}

static int
rec_at(const avro_value_iface_t *i, const void *self, size_t index,
    avro_value_t *child, const char **name)
{
	const struct evavro_rec *r = self;
	enum slot s;

	(void)i;
	if (index >= r->map->n)
		return EINVAL;
	switch ((s = r->map->slot[index])) {
	case S_ITEMS:
		child->iface = &items_iface;
		child->self = SELF(&r->ev->order);
		break;
	case S_TOTAL:
		child->iface = &long_iface;
		child->self = SELF(&r->ev->order.total);
		break;
	case S_AMOUNT:
		child->iface = &long_iface;
		child->self = SELF(&r->ev->payment.amount);
		break;
	case S_STATUS:
		child->iface = &enum_iface;
		child->self = SELF(r);
		break;
	case S_PAYMENT_METHOD:
	case S_REASON:
		child->iface = &opt_iface;
		child->self = SELF(text_of(r, s));
		break;
	default:
		child->iface = &str_iface;
		child->self = SELF(text_of(r, s));
		break;
	}
	if (name != NULL)
		*name = NULL;
	return 0;
}

static avro_value_iface_t str_iface = {
	.get_type = str_type, .get_string = str_get
};
static avro_value_iface_t opt_iface = {
	.get_type = opt_type, .get_discriminant = opt_disc,
	.get_current_branch = opt_branch
};
static avro_value_iface_t null_iface = {
	.get_type = null_type, .get_null = null_get
};
static avro_value_iface_t long_iface = {
	.get_type = long_type, .get_long = long_get
};
static avro_value_iface_t int_iface = {
	.get_type = int_type, .get_int = int_get
};
static avro_value_iface_t items_iface = {
	.get_type = items_type, .get_size = items_size,
	.get_by_index = items_at
};
static avro_value_iface_t item_iface = {
	.get_type = rec_type, .get_size = item_size, .get_by_index = item_at
};
static avro_value_iface_t enum_iface = {
	.get_type = enum_type, .get_enum = enum_get
};
static avro_value_iface_t rec_iface = {
	.get_type = rec_type, .get_size = rec_size, .get_by_index = rec_at
};

/*
 * Checking a schema.
 */

/* Field i of record rec is named name and of type t. */
static int
field_is(avro_schema_t rec, int i, const char *name, avro_type_t t)
{
	avro_schema_t f = avro_schema_record_field_get_by_index(rec, i);

	return f != NULL && avro_typeof(f) == t &&
	    strcmp(avro_schema_record_field_name(rec, i), name) == 0;
}

static int
type_ok(struct evavro_map *m, avro_schema_t f, enum vtype t)
{
	avro_schema_t it;

	switch (t) {
	case T_STR:
		return is_avro_string(f);
	case T_LONG:
		return is_avro_int64(f);
	case T_OPT:
		return is_avro_union(f) && avro_schema_union_size(f) == 2 &&
		    is_avro_null(avro_schema_union_branch(f, 0)) &&
		    is_avro_string(avro_schema_union_branch(f, 1));
	case T_ITEMS:
		if (!is_avro_array(f))
			return 0;
		it = avro_schema_array_items(f);
		return is_avro_record(it) &&
		    avro_schema_record_size(it) == 3 &&
		    field_is(it, 0, "sku", AVRO_STRING) &&
		    field_is(it, 1, "qty", AVRO_INT32) &&
		    field_is(it, 2, "unit_price", AVRO_INT64);
	case T_ENUM:
		if (!is_avro_enum(f))
			return 0;
		m->sym[0] = avro_schema_enum_get_by_name(f, "approved");
		m->sym[1] = avro_schema_enum_get_by_name(f, "declined");
		return m->sym[0] >= 0 && m->sym[1] >= 0;
	}
	return 0;
}

int
evavro_map_init(struct evavro_map *m, avro_schema_t schema,
    enum event_kind kind, char *msg, size_t msglen)
{
	const struct spec *sp;
	unsigned char seen[NSPECS] = { 0 };
	const char *name;
	size_t i, j;

	memset(m, 0, sizeof(*m));
	m->kind = kind;
	if (!is_avro_record(schema) ||
	    (m->n = avro_schema_record_size(schema)) > EVAVRO_FIELDS_MAX) {
		snprintf(msg, msglen, "not a record of at most %d fields",
		    EVAVRO_FIELDS_MAX);
		return -1;
	}
	for (i = 0; i < m->n; i++) {
		name = avro_schema_record_field_name(schema, (int)i);
		for (j = 0, sp = NULL; j < NSPECS; j++)
			if ((specs[j].kinds & K(kind)) &&
			    strcmp(specs[j].name, name) == 0)
				sp = &specs[j];
		if (sp == NULL) {
			snprintf(msg, msglen, "field %s: not one of %s events",
			    name, event_kind_type(kind));
			return -1;
		}
		if (!type_ok(m, avro_schema_record_field_get_by_index(schema,
		    (int)i), sp->type)) {
			snprintf(msg, msglen, "field %s: not %s", name,
			    type_names[sp->type]);
			return -1;
		}
		m->slot[i] = (unsigned char)sp->slot;
		seen[sp - specs] = 1;
	}
	for (j = 0; j < NSPECS; j++)
		if ((specs[j].kinds & K(kind)) && !seen[j]) {
			snprintf(msg, msglen, "no field %s", specs[j].name);
			return -1;
		}
	return 0;
}

int
evavro_value(const struct evavro_map *m, const struct event *ev,
    struct evavro_rec *rec, avro_value_t *out)
{
	if (ev->kind != m->kind) {
		errno = EINVAL;
		return -1;
	}
	rec->map = m;
	rec->ev = ev;
	rec->amount[0] = '\0';
	if (ev->kind == EVENT_ORDER_CREATED_V1 &&
	    event_format_money(ev->order.total, ev->order.currency,
	    rec->amount, sizeof(rec->amount)) < 0) {
		errno = EINVAL;
		return -1;
	}
	out->iface = &rec_iface;
	out->self = rec;
	return 0;
}
