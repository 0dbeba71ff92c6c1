/*
 * event_fuzz.c - libFuzzer target for common/event.c, the validator of
 * orders and events.
 *
 * Every input goes to both order_parse() and event_parse().  Besides not
 * crashing, leaking or tripping UBSan, every outcome is checked: a
 * rejection has a message and its text is "field: msg" (or msg alone); an
 * accepted order obeys the rules (bounded items, total the sum) and its
 * order.created.v2 event serialises and parses back to the same order; an
 * accepted event serialises to JSON that parses back and serialises to
 * the very same bytes, a v1 event upcasts to a v2 event with the same
 * total, and an order event yields a payment.processed event that parses.
 * A payment event in evpack.h's form reads back as the same JSON text; any
 * input that decodes as that form encodes back to the same bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "evpack.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check_err(const struct event_err *err)
{
	char want[sizeof(err->text)];

	if (err->msg[0] == '\0')
		abort();
	if (err->field[0] != '\0')
		snprintf(want, sizeof(want), "%s: %s", err->field, err->msg);
	else
		snprintf(want, sizeof(want), "%s", err->msg);
	if (strcmp(want, err->text) != 0)
		abort();
}

static void
check_order(const struct order *o)
{
	int64_t sum = 0;
	size_t i;

	if (o->nitems < 1 || o->nitems > ORDER_ITEMS_MAX ||
	    o->order_id[0] == '\0' || o->customer_id[0] == '\0' ||
	    strchr(o->email, '@') == NULL || strlen(o->currency) != 3 ||
	    o->payment_method[0] == '\0')
		abort();
	for (i = 0; i < o->nitems; i++) {
		if (o->items[i].qty < 1 || o->items[i].qty > ORDER_QTY_MAX ||
		    o->items[i].unit_price < 0 ||
		    o->items[i].unit_price > ORDER_PRICE_MAX ||
		    o->items[i].sku[0] == '\0')
			abort();
		sum += o->items[i].qty * o->items[i].unit_price;
	}
	if (sum != o->total)
		abort();
}

static int
same_order(const struct order *a, const struct order *b)
{
	return strcmp(a->order_id, b->order_id) == 0 &&
	    strcmp(a->customer_id, b->customer_id) == 0 &&
	    strcmp(a->email, b->email) == 0 &&
	    strcmp(a->currency, b->currency) == 0 &&
	    strcmp(a->payment_method, b->payment_method) == 0 &&
	    a->total == b->total && a->nitems == b->nitems &&
	    (a->nitems == 0 ||
	    memcmp(a->items, b->items, a->nitems * sizeof(*a->items)) == 0);
}

/* ev serialises, parses back equal, and serialises again to the same. */
static void
round_trip(const struct event *ev)
{
	struct event back;
	struct event_err err;
	char *js, *js2;
	size_t len;

	if ((js = event_serialize(ev, &len)) == NULL)
		abort();
	if (event_parse(js, len, &back, &err) != 0) {
		fprintf(stderr, "%s\n%s\n", js, err.text);
		abort();
	}
	if (back.kind != ev->kind || strcmp(back.id, ev->id) != 0 ||
	    strcmp(back.subject, ev->subject) != 0 ||
	    strcmp(back.traceparent, ev->traceparent) != 0 ||
	    back.time_ms != ev->time_ms)
		abort();
	if (ev->kind != EVENT_PAYMENT_PROCESSED_V1 &&
	    !same_order(&ev->order, &back.order))
		abort();
	if ((js2 = event_serialize(&back, NULL)) == NULL ||
	    strcmp(js, js2) != 0)
		abort();
	free(js);
	free(js2);
	event_free(&back);
}

/* ev, a payment event, in evpack.h's form 2: the same JSON text back. */
static void
pack_trip(const struct event *ev)
{
	unsigned char buf[EVPACK_MAX];
	char *js, *back;
	size_t n;

	if ((n = evpack_encode(ev, NULL, buf)) == 0 || n > EVPACK_MAX ||
	    (js = event_serialize(ev, NULL)) == NULL ||
	    (back = evpack_text(buf, n)) == NULL || strcmp(js, back) != 0)
		abort();
	free(js);
	free(back);
}

/*
 * Bytes that decode, in either form: written again in form 2 and read
 * back, the same JSON text.
 */
static void
fuzz_evpack(const uint8_t *data, size_t size)
{
	struct event ev;

	if (evpack_decode(data, size, &ev) == -1)
		return;
	pack_trip(&ev);
}

static void
fuzz_order(const uint8_t *data, size_t size)
{
	struct order o;
	struct event ev;
	struct event_err err;

	if (order_parse((const char *)data, size, &o, &err) == -1) {
		check_err(&err);
		if (o.items != NULL)
			abort();
		return;
	}
	check_order(&o);
	if (event_order_created(&ev, &o, "/fuzz", NULL) != 0)
		abort();
	round_trip(&ev);
	event_free(&ev);
	order_free(&o);
}

static void
fuzz_event(const uint8_t *data, size_t size)
{
	struct event ev, pay;
	struct event_err err;

	if (event_parse(data, size, &ev, &err) == -1) {
		check_err(&err);
		if (ev.kind != EVENT_NONE || ev.order.items != NULL)
			abort();
		return;
	}
	round_trip(&ev);
	if (ev.kind == EVENT_PAYMENT_PROCESSED_V1)
		pack_trip(&ev);
	if (ev.kind == EVENT_ORDER_CREATED_V2)
		check_order(&ev.order);
	if (ev.kind == EVENT_ORDER_CREATED_V1) {
		if (event_upcast_v1(&ev) != 0)
			abort();
		check_order(&ev.order);
		round_trip(&ev);
	}
	if (ev.kind == EVENT_ORDER_CREATED_V2) {
		if (event_payment_processed(&pay, &ev, EVENT_PAY_DECLINED,
		    "limit_exceeded", NULL, "/fuzz") != 0 ||
		    pay.payment.amount != ev.order.total)
			abort();
		round_trip(&pay);
		pack_trip(&pay);
		event_free(&pay);
	}
	event_free(&ev);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_order(data, size);
	fuzz_event(data, size);
	fuzz_evpack(data, size);
	return 0;
}
