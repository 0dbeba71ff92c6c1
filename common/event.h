/*
 * event.h - orders and the CloudEvents that carry them: the one validator
 * every command uses (order-submit, order-serve, pay-process, notify).
 *
 * Orders are parsed from JSON text and checked against the rules of
 * orderflow(7) ("EVENTS"); events are CloudEvents 1.0 in structured JSON
 * ("Events").  Money is always an int64_t of minor units: a float, a
 * number written with a fraction or an exponent (1250.0, 1.25e3) or a
 * string is rejected wherever money is expected, and no floating point is
 * ever used to compute it.
 *
 * A broken rule is reported in a struct event_err: the JSON path of the
 * offending value ("items[0].qty", "data.currency"; "" for the whole
 * input) and a message ("must be an integer from 1 to 1000"); text joins
 * them as "items[0].qty: must be an integer from 1 to 1000", ready for
 * "order-submit: orders.jsonl:3: %s".  Only the first broken rule is
 * reported.
 *
 * Limits (the ORDER_* and EVENT_* constants below) keep every string
 * bounded, so parsed orders and events live in fixed-size members; only
 * the items of an order are allocated.  Identifiers, SKUs, emails and the
 * like are printable ASCII.  Unknown members of objects are ignored (so
 * producers may add some); a known member given twice is rejected.
 *
 * Nothing here keeps global state of its own and every function may be
 * called from several threads at once, except that cJSON records the
 * position of its last parse error in a global variable (never read here).
 */
#ifndef OF_EVENT_H
#define OF_EVENT_H

#include <stddef.h>
#include <stdint.h>

#define ORDER_ID_MAX		128	/* [A-Za-z0-9._:-] */
#define ORDER_CUSTOMER_MAX	128	/* printable ASCII, no space */
#define ORDER_EMAIL_MAX		254
#define ORDER_SKU_MAX		64	/* printable ASCII, no space */
#define ORDER_PM_MAX		64	/* [A-Za-z0-9._:-] */
#define ORDER_ITEMS_MAX		100
#define ORDER_QTY_MAX		1000
#define ORDER_PRICE_MAX		100000000LL	/* minor units: 1 000 000.00 */
#define ORDER_TOTAL_MAX		(ORDER_ITEMS_MAX * ORDER_QTY_MAX * ORDER_PRICE_MAX)
#define ORDER_PM_DEFAULT	"pm_card_visa"

#define EVENT_UUID_LEN		36	/* a UUID as text, without its NUL */
#define EVENT_ID_MAX		128	/* ids of incoming events: printable */
#define EVENT_SOURCE_MAX	256	/* printable ASCII, no space */
#define EVENT_TYPE_MAX		64
#define EVENT_TIME_MAX		40
#define EVENT_REASON_MAX	128	/* printable ASCII, spaces allowed */

#define TRACEPARENT_LEN		55	/* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define TRACE_ID_LEN		32

/* The Kafka content-type header of every event, and the data's type. */
#define EVENT_CONTENT_TYPE	"application/cloudevents+json"
#define EVENT_DATA_CONTENT_TYPE	"application/json"

#define EVENT_TYPE_ORDER_CREATED_V1	"order.created.v1"
#define EVENT_TYPE_ORDER_CREATED_V2	"order.created.v2"
#define EVENT_TYPE_PAYMENT_PROCESSED_V1	"payment.processed.v1"

/* Purposes for event_derive_id(): one derived id per purpose and cause. */
#define EVENT_PURPOSE_ORDER	"order.created"		/* cause: order id */
#define EVENT_PURPOSE_PAYMENT	"payment.processed"
#define EVENT_PURPOSE_PAYMENT_ID "payment"		/* the payment_id */
#define EVENT_PURPOSE_NOTIFY	"notification"

struct event_err {
	char	field[128];	/* JSON path, "" when about the whole input */
	char	msg[256];
	char	text[400];	/* "field: msg", or msg alone */
};

struct order_item {
	char	sku[ORDER_SKU_MAX + 1];
	int	qty;			/* 1..ORDER_QTY_MAX */
	int64_t	unit_price;		/* minor units, 0..ORDER_PRICE_MAX */
};

struct order {
	char	order_id[ORDER_ID_MAX + 1];
	char	customer_id[ORDER_CUSTOMER_MAX + 1];
	char	email[ORDER_EMAIL_MAX + 1];
	char	currency[4];		/* 3 capital letters */
	char	payment_method[ORDER_PM_MAX + 1];
	struct order_item *items;	/* allocated; order_free() */
	size_t	nitems;			/* 1..ORDER_ITEMS_MAX; 0 in a v1 event */
	int64_t	total;			/* sum of qty * unit_price, minor units */
	int	order_id_generated;	/* the order had no order_id */
};

enum event_kind {
	EVENT_NONE = 0,
	EVENT_ORDER_CREATED_V1,
	EVENT_ORDER_CREATED_V2,
	EVENT_PAYMENT_PROCESSED_V1
};

enum event_pay_status {
	EVENT_PAY_APPROVED = 1,
	EVENT_PAY_DECLINED = 2
};

/* The data of payment.processed.v1; customer_id and email: who to notify. */
struct event_payment {
	char	order_id[ORDER_ID_MAX + 1];
	char	payment_id[ORDER_ID_MAX + 1];	/* same rules as an order id */
	enum event_pay_status status;
	int64_t	amount;			/* minor units, 0..ORDER_TOTAL_MAX */
	char	currency[4];
	char	reason[EVENT_REASON_MAX + 1];	/* "" unless declined */
	char	customer_id[ORDER_CUSTOMER_MAX + 1];
	char	email[ORDER_EMAIL_MAX + 1];
	char	payment_method[ORDER_PM_MAX + 1];	/* optional, may be "" */
};

/*
 * An event, parsed or built.  For order.created.* the data is in order;
 * for payment.processed.v1 in payment.  An order.created.v1 event has no
 * items: order.total holds its amount and order.payment_method the
 * default until event_upcast_v1() turns it into a v2 event.
 */
struct event {
	enum event_kind kind;
	char	id[EVENT_ID_MAX + 1];
	char	source[EVENT_SOURCE_MAX + 1];
	char	type[EVENT_TYPE_MAX + 1];
	char	subject[ORDER_ID_MAX + 1];	/* the order id */
	char	time[EVENT_TIME_MAX + 1];	/* RFC 3339 as received */
	int64_t	time_ms;			/* the same, epoch milliseconds */
	char	traceparent[TRACEPARENT_LEN + 1];	/* "" if none */
	struct order order;
	struct event_payment payment;
};

/*
 * Parses and checks an order (orderflow(7), "EVENTS") from len bytes of JSON.
 * Returns 0 with *out filled (order_id generated as "o-" and a random UUID
 * when absent, payment_method defaulted, total computed), or -1 with *err
 * set.  *out is always initialised: order_free() is safe either way.
 */
int	 order_parse(const char *json, size_t len, struct order *out,
	    struct event_err *err);
void	 order_free(struct order *);

/*
 * Parses and checks an incoming event of any kind consumers accept:
 * the CloudEvents envelope (specversion "1.0", id, source, type, subject,
 * time RFC 3339, datacontenttype "application/json" if present, data an
 * object) and its data by type:
 *
 *   order.created.v1	 order_id, customer_id, email, currency, amount (a
 *			 decimal string of major units: "25", "25.5", "25.00";
 *			 see event_parse_amount()); payment_method optional
 *   order.created.v2	 the order rules with order_id required, plus total
 *			 (which must equal the sum of qty * unit_price)
 *   payment.processed.v1 order_id, payment_id, status approved|declined,
 *			 amount (minor units), currency, reason (required when
 *			 declined), customer_id, email; payment_method optional
 *
 * subject must equal data.order_id.  An unknown type, or a known type in
 * an unknown version, is an error whose message says so (field "type"):
 * callers send every failure here to the DLQ as kind invalid.  A missing
 * or malformed traceparent is not an error (W3C Trace Context says to
 * start a new trace): ev->traceparent is then "".  One of a later version
 * is carried on as version 00 (trace_parse()).  Returns 0 or -1;
 * *ev is always initialised and event_free() is safe either way.
 */
int	 event_parse(const void *buf, size_t len, struct event *ev,
	    struct event_err *err);

/*
 * event_parse() of an event already a cJSON tree (codec.c's, decoded from
 * Avro): the same rules and messages.  Numbers must be integers held
 * exactly in valuedouble (a NaN is "not an integer", as a number written
 * with a fraction is in JSON text); strings must hold no control
 * characters.  root is only read.
 */
struct cJSON;
int	 event_parse_tree(const struct cJSON *root, struct event *ev,
	    struct event_err *err);

/*
 * Turns a parsed order.created.v1 event into order.created.v2 in place:
 * type and kind become v2, total stays the amount (exact minor units), and
 * the order gets one item {"sku":"LEGACY","qty":1,"unit_price":total};
 * payment_method stays as given or the default.  id, source, subject,
 * time and traceparent are kept.  A v2 event is left as is.  Returns 0,
 * or -1 with errno EINVAL (not an order event) or ENOMEM.
 */
int	 event_upcast_v1(struct event *ev);

/*
 * Builds the order.created.v2 event of a parsed order, stamped now.  Its
 * id is derived from the order id (EVENT_PURPOSE_ORDER): submitting the
 * same order twice yields the same event id, so downstream drops the
 * repeat; a generated order id is random, so its event id is as unique as
 * a random one, and rebuilding the event of a stored order gives the same
 * id again.  source is e.g. "/orderflow/order-submit".  traceparent is
 * carried, or generated when NULL.  Returns 0, or -1 with errno EINVAL (a
 * bad source or traceparent) or ENOMEM.
 */
int	 event_order_created(struct event *ev, const struct order *o,
	    const char *source, const char *traceparent);

/*
 * Builds the payment.processed.v1 event answering cause (an order.created
 * event, v1 or v2), stamped now: id derived from cause->id
 * (EVENT_PURPOSE_PAYMENT), subject the order id, the traceparent carried
 * (generated if cause had none), amount the order's total, who to notify
 * from the order.  reason is required when declined and ignored when
 * approved.  payment_id NULL means "p-" and a UUID derived from cause->id
 * (EVENT_PURPOSE_PAYMENT_ID).  Returns 0, or -1 with errno EINVAL or
 * ENOMEM.
 */
int	 event_payment_processed(struct event *ev, const struct event *cause,
	    enum event_pay_status status, const char *reason,
	    const char *payment_id, const char *source);

/*
 * The event as compact JSON (one line, no newline), to free(); *lenp gets
 * its length unless lenp is NULL.  Every kind serialises (a v1 event with
 * amount written back by event_format_money()), and event_parse() of the
 * result gives the event back.  NULL with errno ENOMEM, or EINVAL for an
 * event of no kind.
 */
char	*event_serialize(const struct event *ev, size_t *lenp);

/*
 * The same text into *buf, a buffer of *cap bytes kept by the caller
 * from one event to the next (NULL and 0 at first; free() it at the
 * end): grown with realloc(3) when too small, *buf and *cap updated
 * either way.  0, or -1 with errno as above (*buf then holds no text).
 */
int	 event_serialize_buf(const struct event *ev, char **buf,
	    size_t *cap, size_t *lenp);

/* Frees what a parsed or built event holds (not ev itself). */
void	 event_free(struct event *ev);

/* "order.created.v2" etc. for a kind; "" for EVENT_NONE. */
const char *event_kind_type(enum event_kind);

/* "approved" or "declined". */
const char *event_pay_status_name(enum event_pay_status);

/*
 * A name-based (version 5, SHA-1) UUID from the id of the event that
 * caused the new one and what the new one is for (EVENT_PURPOSE_*), in a
 * namespace of orderflow's own: the same input always yields the same id,
 * and each purpose a different one.  Returns 0, or -1 with errno EINVAL
 * when cause_id is empty or longer than EVENT_ID_MAX, or purpose empty or
 * longer than 64.
 */
int	 event_derive_id(const char *cause_id, const char *purpose,
	    char out[EVENT_UUID_LEN + 1]);

/* A random (version 4) UUID, lower case. */
void	 event_random_id(char out[EVENT_UUID_LEN + 1]);

/*
 * The 16 bytes of a UUID written as this module and libuuid's
 * uuid_unparse_lower() write one: 8-4-4-4-12 lower-case hex digits and
 * nothing after them.  0, or -1 for any other text (upper case, braces,
 * a "urn:uuid:" prefix, another length), which has no such bytes here.
 */
int	 event_uuid_bytes(const char *s, unsigned char out[16]);

/*
 * Money for people: minor units as a decimal of major units, "25.00",
 * "-0.50".  Every currency gets two decimals for now (JPY or BHD would
 * need 0 or 3); currency is taken so that callers need not change when
 * that is fixed.  Returns what snprintf(3) returns.
 */
int	 event_format_money(int64_t minor, const char *currency, char *buf,
	    size_t len);

/*
 * A v1 amount: a decimal string of major units, digits with optionally a
 * point and one or two more ("25", "25.5", "25.00"), into minor units,
 * exactly (no floating point), at most ORDER_PRICE_MAX: the upcast makes
 * the amount the price of one item, which a v2 order bounds so.  No sign,
 * exponent, spaces or third decimal.  Returns 0 or -1.
 */
int	 event_parse_amount(const char *s, int64_t *minor);

/*
 * W3C Trace Context: a new traceparent "00-<trace id>-<span id>-01" with
 * random ids, never all zeros.
 */
void	 trace_generate(char out[TRACEPARENT_LEN + 1]);

/*
 * Whether s is a traceparent orderflow carries: exactly 55 characters,
 * version 00, then trace id, parent id and flags in lower-case hex, all
 * separated by "-", neither id all zeros.  orderflow writes version 00
 * only, the one it knows.
 */
int	 trace_valid(const char *s);

/*
 * A traceparent received (an HTTP header, a CloudEvents attribute, a
 * Kafka header) as orderflow carries it on, by W3C Trace Context,
 * "Versioning of traceparent": version 00 must be trace_valid(), with
 * nothing after its flags.  A higher version (lower-case hex, not ff) is
 * parsed with the layout of 00: its first 55 characters must be one,
 * followed by the end or by "-" and fields of its own, which are
 * dropped; of its flags only the sampled bit is kept.  Stores in out the
 * version-00 traceparent of the same trace id and parent id and returns
 * 0; returns -1 with out "" when s is NULL or does not parse, and the
 * caller starts a new trace.
 */
int	 trace_parse(const char *s, char out[TRACEPARENT_LEN + 1]);

/*
 * A trace_valid() traceparent as the bytes of its trace id, parent id and
 * flags (TRACEPARENT_BYTES), and back: 0, or -1 when s is not valid.
 */
#define TRACEPARENT_BYTES	(16 + 8 + 1)
int	 trace_to_bytes(const char *s, unsigned char out[TRACEPARENT_BYTES]);
void	 trace_from_bytes(const unsigned char in[TRACEPARENT_BYTES],
	    char out[TRACEPARENT_LEN + 1]);

/* The 32-hex trace id of a valid traceparent, for logs; 0 or -1. */
int	 trace_id_of(const char *traceparent, char out[TRACE_ID_LEN + 1]);

#endif
