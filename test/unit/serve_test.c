/*
 * serve_test.c - unit tests for order-serve's modules that need neither a
 * broker nor a store: common/keyset.c, the idempotency keys in progress,
 * and common/orderdoc.c, the JSON documents kept for an order.
 *
 * Usage: serve_test [NAME]; without NAME it lists the tests.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "event.h"
#include "keyset.h"
#include "log.h"
#include "orderdoc.h"
#include "unit.h"
#include "util.h"

#define SOURCE		"/orderflow/order-serve"
#define TRACEPARENT	\
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define NOW_MS		1795687200123LL	/* 2026-11-26T10:00:00.123Z */

static const char good[] =
    "{\"order_id\":\"o-1001\",\"customer_id\":\"c-42\","
    "\"email\":\"ana@example.com\",\"currency\":\"EUR\","
    "\"items\":[{\"sku\":\"BOOK-1\",\"qty\":2,\"unit_price\":1250},"
    "{\"sku\":\"PEN\",\"qty\":3,\"unit_price\":99}]}";

/* sha256sum of good. */
static const char good_sha256[] =
    "6f6f07a7ee2689e49ab93cfef34af82fddba2bc7b426487143883ab31bc8bfd8";

/* Added once, refused while held, free again once deleted. */
static void
test_keyset(void)
{
	struct keyset *ks;

	ks = keyset_new();
	CHECK(keyset_count(ks) == 0);
	CHECK(keyset_add(ks, "key-1") == 0);
	CHECK(keyset_add(ks, "key-1") == -1);
	CHECK(keyset_count(ks) == 1);
	keyset_del(ks, "key-1");
	CHECK(keyset_count(ks) == 0);
	CHECK(keyset_add(ks, "key-1") == 0);
	/* A key not held is no error, and leaves the others. */
	keyset_del(ks, "key-2");
	CHECK(keyset_count(ks) == 1);
	CHECK(keyset_add(ks, "key-1") == -1);
	/* Byte for byte: case, prefixes and the empty key are other keys. */
	CHECK(keyset_add(ks, "KEY-1") == 0);
	CHECK(keyset_add(ks, "key-") == 0);
	CHECK(keyset_add(ks, "key-10") == 0);
	CHECK(keyset_add(ks, "") == 0);
	CHECK(keyset_add(ks, "") == -1);
	CHECK(keyset_count(ks) == 5);
	keyset_del(ks, "key-");
	CHECK(keyset_add(ks, "key-1") == -1);
	CHECK(keyset_add(ks, "key-10") == -1);
	CHECK(keyset_count(ks) == 4);
	/* Freed with keys still held. */
	keyset_free(ks);
}

/* More keys than buckets: chains, and a delete in the middle of one. */
static void
test_keyset_many(void)
{
	struct keyset *ks;
	char key[32];
	int i, refused = 0;

	ks = keyset_new();
	for (i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "idem-%d", i);
		CHECK(keyset_add(ks, key) == 0);
	}
	CHECK(keyset_count(ks) == 5000);
	for (i = 0; i < 5000; i += 2) {
		snprintf(key, sizeof(key), "idem-%d", i);
		keyset_del(ks, key);
	}
	CHECK(keyset_count(ks) == 2500);
	for (i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "idem-%d", i);
		if (keyset_add(ks, key) == -1)
			refused++;
	}
	CHECK(refused == 2500);
	CHECK(keyset_count(ks) == 5000);
	keyset_free(ks);
}

#define NTHREADS	4
#define ROUNDS		20000

struct contender {
	struct keyset	*ks;
	atomic_int	*holders;
	int		 id;
	int		 won;
	int		 overlap;
};

/*
 * Takes the shared key whenever it can, and its own keys besides: the
 * shared one is never held by two threads at once.
 */
static void *
contend(void *arg)
{
	struct contender *c = arg;
	char key[32];
	int i;

	for (i = 0; i < ROUNDS; i++) {
		if (keyset_add(c->ks, "shared") == 0) {
			if (atomic_fetch_add(c->holders, 1) != 0)
				c->overlap++;
			c->won++;
			atomic_fetch_sub(c->holders, 1);
			keyset_del(c->ks, "shared");
		}
		if (i % 100 == 0) {
			snprintf(key, sizeof(key), "t%d-%d", c->id, i);
			if (keyset_add(c->ks, key) != 0)
				c->overlap++;
		}
	}
	return NULL;
}

static void
test_keyset_threads(void)
{
	struct contender c[NTHREADS];
	pthread_t t[NTHREADS];
	struct keyset *ks;
	atomic_int holders = 0;
	int i, won = 0;

	ks = keyset_new();
	for (i = 0; i < NTHREADS; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].ks = ks;
		c[i].holders = &holders;
		c[i].id = i;
		CHECK(pthread_create(&t[i], NULL, contend, &c[i]) == 0);
	}
	for (i = 0; i < NTHREADS; i++) {
		pthread_join(t[i], NULL);
		CHECK(c[i].overlap == 0);
		won += c[i].won;
	}
	CHECK(won > 0);	/* the first add of all finds the key free */
	CHECK(keyset_count(ks) == NTHREADS * (ROUNDS / 100));
	keyset_free(ks);
}

/* The string member name of o, or "" when there is none. */
static const char *
str_of(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(v) ? v->valuestring : "";
}

static double
num_of(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static int
build(struct orderdoc *d, const char *body, const char *tp, int keyed)
{
	struct event_err err;

	memset(d, 0, sizeof(*d));
	if (order_parse(body, strlen(body), &d->ord, &err) == -1) {
		fprintf(stderr, "order_parse: %s\n", err.text);
		return -1;
	}
	return orderdoc_build(d, SOURCE, tp, body, strlen(body), keyed,
	    NOW_MS);
}

/* The stored order, the answer 201 and the outbox record, unkeyed. */
static void
test_build(void)
{
	struct orderdoc d;
	struct event ev;
	struct event_err err;
	cJSON *o, *items;
	char want[128];
	size_t n;

	CHECK(build(&d, good, TRACEPARENT, 0) == 0);
	CHECK(d.outcome == NULL && *d.fp == '\0');
	CHECK(strlen(d.ev.id) > 0);

	o = cJSON_Parse(d.order_json);
	CHECK(o != NULL);
	CHECK(strcmp(str_of(o, "order_id"), "o-1001") == 0);
	CHECK(strcmp(str_of(o, "status"), "pending") == 0);
	CHECK(strcmp(str_of(o, "event_id"), d.ev.id) == 0);
	CHECK(strcmp(str_of(o, "customer_id"), "c-42") == 0);
	CHECK(strcmp(str_of(o, "email"), "ana@example.com") == 0);
	CHECK(strcmp(str_of(o, "currency"), "EUR") == 0);
	CHECK(num_of(o, "total") == 2797);
	CHECK(strcmp(str_of(o, "payment_method"), d.ord.payment_method) == 0);
	CHECK(strcmp(str_of(o, "created_at"), "2026-11-26T10:00:00.123Z") ==
	    0);
	CHECK(cJSON_GetObjectItemCaseSensitive(o, "payment_id") == NULL);
	items = cJSON_GetObjectItemCaseSensitive(o, "items");
	CHECK(cJSON_GetArraySize(items) == 2);
	CHECK(strcmp(str_of(cJSON_GetArrayItem(items, 1), "sku"), "PEN") == 0);
	CHECK(num_of(cJSON_GetArrayItem(items, 1), "qty") == 3);
	CHECK(num_of(cJSON_GetArrayItem(items, 1), "unit_price") == 99);
	cJSON_Delete(o);

	o = cJSON_Parse(d.created);
	CHECK(o != NULL && cJSON_GetArraySize(o) == 3);
	CHECK(strcmp(str_of(o, "order_id"), "o-1001") == 0);
	CHECK(strcmp(str_of(o, "event_id"), d.ev.id) == 0);
	CHECK(strcmp(str_of(o, "status"), "pending") == 0);
	cJSON_Delete(o);

	/* "ORDER_ID\nTRACEPARENT\nEVENT", the event as order-created has it. */
	snprintf(want, sizeof(want), "o-1001\n%s\n", TRACEPARENT);
	n = strlen(want);
	CHECK(strncmp(d.outbox, want, n) == 0);
	CHECK(strcmp(d.outbox + n, d.event_json) == 0);
	CHECK(event_parse(d.event_json, strlen(d.event_json), &ev, &err) == 0);
	CHECK(ev.kind == EVENT_ORDER_CREATED_V2);
	CHECK(strcmp(ev.id, d.ev.id) == 0);
	CHECK(strcmp(ev.subject, "o-1001") == 0);
	CHECK(strcmp(ev.source, SOURCE) == 0);
	CHECK(ev.order.total == 2797 && ev.order.nitems == 2);
	event_free(&ev);
	orderdoc_free(&d);
}

/* The same order gives the same event id; keyed, the body's hash. */
static void
test_build_keyed(void)
{
	struct orderdoc d, again;
	cJSON *o;

	CHECK(build(&d, good, TRACEPARENT, 1) == 0);
	CHECK(strcmp(d.fp, good_sha256) == 0);
	CHECK(d.outcome != NULL);
	o = cJSON_Parse(d.outcome);
	CHECK(o != NULL);
	CHECK(strcmp(str_of(o, "fingerprint"), good_sha256) == 0);
	CHECK(num_of(o, "status") == 201);
	CHECK(strcmp(str_of(o, "order_id"), "o-1001") == 0);
	CHECK(strcmp(str_of(o, "body"), d.created) == 0);
	cJSON_Delete(o);

	CHECK(build(&again, good, TRACEPARENT, 1) == 0);
	CHECK(strcmp(again.ev.id, d.ev.id) == 0);
	CHECK(strcmp(again.outcome, d.outcome) == 0);
	orderdoc_free(&again);
	orderdoc_free(&d);
}

/* A replay: the first answer again, 422 for another body, 500 unreadable. */
static void
test_replay(void)
{
	struct orderdoc d;
	char *body;
	cJSON *o;

	CHECK(build(&d, good, TRACEPARENT, 1) == 0);
	CHECK(orderdoc_replay(d.outcome, strlen(d.outcome), good_sha256,
	    &body) == 201);
	CHECK(strcmp(body, d.created) == 0);
	free(body);

	CHECK(orderdoc_replay(d.outcome, strlen(d.outcome),
	    "0000000000000000000000000000000000000000000000000000000000000000",
	    &body) == 422);
	o = cJSON_Parse(body);
	CHECK(strcmp(str_of(o, "field"), "Idempotency-Key") == 0);
	CHECK(strstr(str_of(o, "error"), "different body") != NULL);
	cJSON_Delete(o);
	free(body);

	/* Only the outcome_len bytes given count. */
	CHECK(orderdoc_replay(d.outcome, strlen(d.outcome) - 1, good_sha256,
	    &body) == 500);
	o = cJSON_Parse(body);
	CHECK(strcmp(str_of(o, "error"), "stored answer unreadable") == 0);
	CHECK(cJSON_GetObjectItemCaseSensitive(o, "field") == NULL);
	cJSON_Delete(o);
	free(body);
	CHECK(orderdoc_replay("{\"status\":201}", 14, good_sha256, &body) ==
	    500);
	free(body);
	orderdoc_free(&d);
}

/* A payment's outcome on the stored order; the same one again, the same. */
static void
test_paid(void)
{
	struct orderdoc d;
	char *ok, *again, *no, *back;
	cJSON *o;

	CHECK(build(&d, good, TRACEPARENT, 0) == 0);
	ok = orderdoc_paid(d.order_json, EVENT_PAY_APPROVED, "p-1",
	    "ignored", "2026-11-26T10:00:01Z");
	o = cJSON_Parse(ok);
	CHECK(o != NULL);
	CHECK(strcmp(str_of(o, "status"), "approved") == 0);
	CHECK(strcmp(str_of(o, "payment_id"), "p-1") == 0);
	CHECK(strcmp(str_of(o, "updated_at"), "2026-11-26T10:00:01Z") == 0);
	CHECK(cJSON_GetObjectItemCaseSensitive(o, "reason") == NULL);
	/* The rest is kept. */
	CHECK(strcmp(str_of(o, "event_id"), d.ev.id) == 0);
	CHECK(strcmp(str_of(o, "created_at"), "2026-11-26T10:00:00.123Z") ==
	    0);
	CHECK(num_of(o, "total") == 2797);
	cJSON_Delete(o);
	again = orderdoc_paid(ok, EVENT_PAY_APPROVED, "p-1", "",
	    "2026-11-26T10:00:01Z");
	CHECK(strcmp(again, ok) == 0);

	no = orderdoc_paid(d.order_json, EVENT_PAY_DECLINED, "p-2",
	    "card_declined", "2026-11-26T10:00:02Z");
	o = cJSON_Parse(no);
	CHECK(strcmp(str_of(o, "status"), "declined") == 0);
	CHECK(strcmp(str_of(o, "reason"), "card_declined") == 0);
	cJSON_Delete(o);
	/* Approved after declined: the reason goes. */
	back = orderdoc_paid(no, EVENT_PAY_APPROVED, "p-1", "",
	    "2026-11-26T10:00:01Z");
	CHECK(strcmp(back, ok) == 0);

	CHECK(orderdoc_paid("not json", EVENT_PAY_APPROVED, "p-1", "",
	    "2026-11-26T10:00:01Z") == NULL);
	free(ok);
	free(again);
	free(no);
	free(back);
	orderdoc_free(&d);
}

/* An error answer's body, with and without the field. */
static void
test_error(void)
{
	char *s;

	s = orderdoc_error("no such resource", NULL);
	CHECK(strcmp(s, "{\"error\":\"no such resource\"}") == 0);
	free(s);
	s = orderdoc_error("must be \"EUR\"", "currency");
	CHECK(strcmp(s, "{\"error\":\"must be \\\"EUR\\\"\","
	    "\"field\":\"currency\"}") == 0);
	free(s);
}

static const struct unit_test tests[] = {
	{ "keyset", test_keyset },
	{ "keyset_many", test_keyset_many },
	{ "keyset_threads", test_keyset_threads },
	{ "build", test_build },
	{ "build_keyed", test_build_keyed },
	{ "replay", test_replay },
	{ "paid", test_paid },
	{ "error", test_error },
};

int
main(int argc, char *argv[])
{
	log_init("serve_test");
	return unit_main("serve_test", tests, argc, argv);
}
