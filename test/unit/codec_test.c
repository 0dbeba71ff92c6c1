/*
 * codec_test.c - tests of common/codec.c against the real schema registry
 * in $SCHEMA_REGISTRY_URL: events of every kind encoded in the wire
 * format and decoded back to the same event, the ce_* headers, JSON
 * records passed through, and each way a record is refused (no magic
 * byte, an unknown schema id, bytes short or left over, no registry) or
 * put off (a registry that does not answer).
 *
 * Usage: codec_test NAME.  Each test writes to topics of its own, so its
 * subjects are new in the shared registry.
 *
 * Also a producer of Avro records for the bats tests, which kcat then
 * sends (a legacy producer of order.created.v1, for one):
 *
 *	codec_test encode TOPIC DIR < EVENTS
 *
 * registers the schema of each event's type under TOPIC-value and writes,
 * for the Nth JSON event line (from 1), DIR/N.value (the wire format),
 * DIR/N.key (its subject) and DIR/N.headers (kcat -H arguments, one
 * "name=value" a line).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <avro.h>
#include <curl/curl.h>

#include "codec.h"
#include "event.h"
#include "flow.h"
#include "kafka.h"
#include "registry.h"
#include "schemas.h"
#include "unit.h"

static const char order_v2[] =
    "{\"specversion\":\"1.0\",\"id\":\"e-1\",\"source\":\"/test\","
    "\"type\":\"order.created.v2\",\"subject\":\"o-1\","
    "\"time\":\"2026-12-06T10:00:00.000Z\","
    "\"datacontenttype\":\"application/json\","
    "\"traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-"
    "b7ad6b7169203331-01\","
    "\"data\":{\"order_id\":\"o-1\",\"customer_id\":\"c-42\","
    "\"email\":\"ana@example.com\",\"currency\":\"EUR\","
    "\"items\":[{\"sku\":\"BOOK-1\",\"qty\":2,\"unit_price\":1250},"
    "{\"sku\":\"PEN\",\"qty\":1,\"unit_price\":99}],\"total\":2599,"
    "\"payment_method\":\"pm_card_visa\"}}";

static const char order_v1[] =
    "{\"specversion\":\"1.0\",\"id\":\"e-2\",\"source\":\"/legacy\","
    "\"type\":\"order.created.v1\",\"subject\":\"o-2\","
    "\"time\":\"2026-12-06T10:00:00Z\","
    "\"data\":{\"order_id\":\"o-2\",\"customer_id\":\"c-7\","
    "\"email\":\"bo@example.com\",\"currency\":\"USD\","
    "\"amount\":\"25.50\",\"payment_method\":\"pm_card_visa\"}}";

static const char pay_declined[] =
    "{\"specversion\":\"1.0\",\"id\":\"e-3\",\"source\":\"/test\","
    "\"type\":\"payment.processed.v1\",\"subject\":\"o-3\","
    "\"time\":\"2026-12-06T10:00:00.000Z\","
    "\"data\":{\"order_id\":\"o-3\",\"payment_id\":\"p-3\","
    "\"status\":\"declined\",\"amount\":2000000,\"currency\":\"EUR\","
    "\"reason\":\"limit_exceeded\",\"customer_id\":\"c-1\","
    "\"email\":\"cy@example.com\"}}";

static const char pay_approved[] =
    "{\"specversion\":\"1.0\",\"id\":\"e-4\",\"source\":\"/test\","
    "\"type\":\"payment.processed.v1\",\"subject\":\"o-4\","
    "\"time\":\"2026-12-06T10:00:00.000Z\","
    "\"data\":{\"order_id\":\"o-4\",\"payment_id\":\"p-4\","
    "\"status\":\"approved\",\"amount\":2500,\"currency\":\"EUR\","
    "\"customer_id\":\"c-1\",\"email\":\"cy@example.com\","
    "\"payment_method\":\"pm_card_amex\"}}";

static const char *url;

static void
topic(char *buf, size_t len, const char *what)
{
	snprintf(buf, len, "codec-test-%s-%ld-%d", what, (long)getpid(),
	    rand());
}

static struct codec *
avro_codec(void)
{
	struct codec *c;
	char msg[256];

	if (url == NULL || *url == '\0') {
		fprintf(stderr, "SCHEMA_REGISTRY_URL is not set: these tests "
		    "need a real schema registry\n");
		exit(1);
	}
	c = codec_new(CODEC_AVRO, url, msg, sizeof(msg));
	if (c == NULL)
		fprintf(stderr, "codec_new: %s\n", msg);
	REQUIRE(c != NULL);
	return c;
}

static void
prepare(struct codec *c, const char *t, enum event_kind kind)
{
	char msg[256];
	int rerr;

	if (codec_prepare(c, t, kind, &rerr, msg, sizeof(msg)) == -1)
		fprintf(stderr, "codec_prepare: %s (%d)\n", msg, rerr);
	REQUIRE(rerr == REGISTRY_OK);
}

/* The record of json, encoded by c for t. */
static void *
encode(struct codec *c, const char *t, const char *json, size_t *len,
    rd_kafka_headers_t **h)
{
	void *v;
	char msg[256];

	if (codec_encode(c, t, json, strlen(json), NULL, &v, len, h, msg,
	    sizeof(msg)) == -1)
		fprintf(stderr, "codec_encode: %s\n", msg);
	REQUIRE(v != NULL && *h != NULL);
	return v;
}

static void
check_header(const rd_kafka_headers_t *h, const char *name, const char *want)
{
	char buf[256];

	CHECK(kafka_header_get_str(h, name, buf, sizeof(buf)) >= 0);
	if (strcmp(buf, want) != 0) {
		fprintf(stderr, "header %s: \"%s\", want \"%s\"\n", name, buf,
		    want);
		failures++;
	}
}

/* Encoded and decoded: the same event as json parsed, byte for byte. */
static void
round_trip(struct codec *c, const char *t, const char *json)
{
	struct event want, got;
	struct event_err err;
	rd_kafka_headers_t *h;
	char *a, *b;
	void *v;
	size_t len;

	v = encode(c, t, json, &len, &h);
	CHECK(((unsigned char *)v)[0] == CODEC_MAGIC);
	CHECK(codec_is_avro(h));
	REQUIRE(event_parse(json, strlen(json), &want, &err) == 0);
	if (codec_parse(c, v, len, h, &got, &err) != CODEC_OK)
		fprintf(stderr, "codec_parse: %s\n", err.text);
	REQUIRE(got.kind == want.kind);
	check_header(h, FLOW_H_CE_ID, want.id);
	check_header(h, FLOW_H_CE_TYPE, want.type);
	check_header(h, FLOW_H_CE_SUBJECT, want.subject);
	check_header(h, FLOW_H_CE_SPECVERSION, "1.0");
	a = event_serialize(&want, NULL);
	b = event_serialize(&got, NULL);
	REQUIRE(a != NULL && b != NULL);
	if (strcmp(a, b) != 0) {
		fprintf(stderr, "decoded:\n%s\nwant:\n%s\n", b, a);
		failures++;
	}
	free(a);
	free(b);
	event_free(&want);
	event_free(&got);
	rd_kafka_headers_destroy(h);
	free(v);
}

static void
test_round_trip(void)
{
	struct codec *c = avro_codec();
	char t1[128], t2[128];

	topic(t1, sizeof(t1), "orders");
	topic(t2, sizeof(t2), "payments");
	prepare(c, t1, EVENT_ORDER_CREATED_V2);
	prepare(c, t2, EVENT_PAYMENT_PROCESSED_V1);
	round_trip(c, t1, order_v2);
	round_trip(c, t2, pay_declined);
	round_trip(c, t2, pay_approved);
	codec_free(c);
}

/* A v1 record decodes as v1, and upcasts as a JSON one does. */
static void
test_v1(void)
{
	struct codec *c = avro_codec();
	struct event ev;
	struct event_err err;
	rd_kafka_headers_t *h;
	char t[128];
	void *v;
	size_t len;

	topic(t, sizeof(t), "v1");
	prepare(c, t, EVENT_ORDER_CREATED_V1);
	round_trip(c, t, order_v1);
	v = encode(c, t, order_v1, &len, &h);
	REQUIRE(codec_parse(c, v, len, h, &ev, &err) == CODEC_OK);
	CHECK(ev.kind == EVENT_ORDER_CREATED_V1);
	CHECK(event_upcast_v1(&ev) == 0);
	CHECK(ev.kind == EVENT_ORDER_CREATED_V2);
	CHECK(ev.order.total == 2550);
	event_free(&ev);
	rd_kafka_headers_destroy(h);
	free(v);
	codec_free(c);
}

/* What decodes and what does not, and why. */
static int
parse_err(struct codec *c, const void *v, size_t len,
    const rd_kafka_headers_t *h, const char *want)
{
	struct event ev;
	struct event_err err;
	int ret;

	ret = codec_parse(c, v, len, h, &ev, &err);
	event_free(&ev);
	if (want != NULL && strstr(err.text, want) == NULL) {
		fprintf(stderr, "error \"%s\", want one with \"%s\"\n",
		    err.text, want);
		failures++;
	}
	return ret;
}

static void
test_invalid(void)
{
	struct codec *c = avro_codec(), *nor;
	rd_kafka_headers_t *h;
	char t[128], msg[256];
	unsigned char *v, *w;
	size_t len;

	topic(t, sizeof(t), "invalid");
	prepare(c, t, EVENT_ORDER_CREATED_V2);
	v = encode(c, t, order_v2, &len, &h);
	REQUIRE(parse_err(c, v, len, h, NULL) == CODEC_OK);

	/* Short by a byte: the last string does not decode. */
	CHECK(parse_err(c, v, len - 1, h, "do not decode") == CODEC_INVALID);
	/* A byte over. */
	REQUIRE((w = malloc(len + 1)) != NULL);
	memcpy(w, v, len);
	w[len] = 0;
	CHECK(parse_err(c, w, len + 1, h, "do not decode") == CODEC_INVALID);
	/* No magic byte, or too short to hold an id. */
	w[0] = 1;
	CHECK(parse_err(c, w, len, h, "magic byte") == CODEC_INVALID);
	CHECK(parse_err(c, v, 3, h, "magic byte") == CODEC_INVALID);
	/* An id no registry has given. */
	memcpy(w, v, len);
	w[1] = 0x7f;
	w[2] = w[3] = w[4] = 0xfe;
	CHECK(parse_err(c, w, len, h, "schema id 2147417854") ==
	    CODEC_INVALID);
	/* Without a registry an Avro record cannot be read. */
	REQUIRE((nor = codec_new(CODEC_JSON, NULL, msg, sizeof(msg))) != NULL);
	CHECK(parse_err(nor, v, len, h, "no schema registry") ==
	    CODEC_INVALID);
	codec_free(nor);
	free(w);
	free(v);
	rd_kafka_headers_destroy(h);
	codec_free(c);
}

/*
 * The CloudEvents attributes come from the headers, the last of a name
 * counting; the binding's ce_traceparent is taken before the W3C header.
 */
static void
test_attributes(void)
{
	static const char tp_w3c[] =
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
	static const char tp_ce[] =
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	struct codec *c = avro_codec();
	struct event ev;
	struct event_err err;
	rd_kafka_headers_t *h;
	char t[128], big[600];
	void *v;
	size_t len;

	topic(t, sizeof(t), "attributes");
	prepare(c, t, EVENT_ORDER_CREATED_V2);
	v = encode(c, t, order_v2, &len, &h);
	REQUIRE(codec_parse(c, v, len, h, &ev, &err) == CODEC_OK);
	CHECK(strcmp(ev.traceparent, tp_w3c) == 0);
	CHECK(strcmp(ev.id, "e-1") == 0);
	event_free(&ev);

	REQUIRE(kafka_header_add_str(h, FLOW_H_CE_TRACEPARENT, tp_ce) == 0);
	REQUIRE(kafka_header_add_str(h, FLOW_H_CE_ID, "e-9") == 0);
	REQUIRE(codec_parse(c, v, len, h, &ev, &err) == CODEC_OK);
	CHECK(strcmp(ev.traceparent, tp_ce) == 0);
	CHECK(strcmp(ev.id, "e-9") == 0);
	event_free(&ev);

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	REQUIRE(kafka_header_add_str(h, FLOW_H_CE_SOURCE, big) == 0);
	CHECK(parse_err(c, v, len, h, "header ce_source: too long") ==
	    CODEC_INVALID);
	rd_kafka_headers_destroy(h);
	free(v);
	codec_free(c);
}

/* A JSON record: as it is, whatever the codec writes. */
static void
test_json(void)
{
	struct codec *c = avro_codec();
	struct event ev;
	struct event_err err;
	rd_kafka_headers_t *h;

	REQUIRE((h = flow_headers_new(NULL)) != NULL);
	CHECK(!codec_is_avro(h));
	CHECK(!codec_is_avro(NULL));
	CHECK(codec_parse(c, order_v2, strlen(order_v2), h, &ev, &err) ==
	    CODEC_OK);
	CHECK(ev.kind == EVENT_ORDER_CREATED_V2);
	event_free(&ev);
	/* No headers at all (pipe mode): JSON. */
	CHECK(codec_parse(c, order_v2, strlen(order_v2), NULL, &ev, &err) ==
	    CODEC_OK);
	event_free(&ev);
	/* Not JSON, not Avro: invalid, as before. */
	CHECK(codec_parse(c, "\x00\x01", 2, h, &ev, &err) == CODEC_INVALID);
	event_free(&ev);
	rd_kafka_headers_destroy(h);
	codec_free(c);
}

/* A registry that does not answer puts a record off; it never refuses it. */
static void
test_unavailable(void)
{
	struct codec *c = avro_codec(), *down;
	rd_kafka_headers_t *h;
	char t[128], msg[256], u[128];
	void *v;
	size_t len;
	int fd, rerr;

	topic(t, sizeof(t), "down");
	prepare(c, t, EVENT_ORDER_CREATED_V2);
	v = encode(c, t, order_v2, &len, &h);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/apis/ccompat/v7",
	    unit_closed_port(&fd));
	REQUIRE((down = codec_new(CODEC_AVRO, u, msg, sizeof(msg))) != NULL);
	CHECK(parse_err(down, v, len, h, "schema id") == CODEC_TRANSIENT);
	/* not asked again at once: each call could wait for its timeout */
	CHECK(parse_err(down, v, len, h, "not asked again") ==
	    CODEC_TRANSIENT);
	CHECK(codec_prepare(down, t, EVENT_ORDER_CREATED_V2, &rerr, msg,
	    sizeof(msg)) == -1 && rerr == REGISTRY_UNAVAILABLE);
	/* Not prepared: nothing to encode with. */
	free(v);
	rd_kafka_headers_destroy(h);
	CHECK(codec_encode(down, t, order_v2, strlen(order_v2), NULL, &v,
	    &len, &h, msg, sizeof(msg)) == -1 && v == NULL && h == NULL);
	close(fd);
	codec_free(down);
	codec_free(c);
}

/*
 * A datum of a schema of someone else's, for the order.created.v2 type:
 * total a double, and a customer id of raw; written with avro-c.
 */
static void *
foreign(int *idp, double total, const char *customer, size_t *len)
{
	static const char schema[] =
	    "{\"type\":\"record\",\"name\":\"Foreign\",\"fields\":["
	    "{\"name\":\"order_id\",\"type\":\"string\"},"
	    "{\"name\":\"customer_id\",\"type\":\"string\"},"
	    "{\"name\":\"email\",\"type\":\"string\"},"
	    "{\"name\":\"currency\",\"type\":\"string\"},"
	    "{\"name\":\"items\",\"type\":{\"type\":\"array\",\"items\":"
	    "{\"type\":\"record\",\"name\":\"I\",\"fields\":["
	    "{\"name\":\"sku\",\"type\":\"string\"},"
	    "{\"name\":\"qty\",\"type\":\"int\"},"
	    "{\"name\":\"unit_price\",\"type\":\"long\"}]}}},"
	    "{\"name\":\"total\",\"type\":\"double\"}]}";
	struct registry *r;
	avro_schema_t sc;
	avro_value_iface_t *cls;
	avro_value_t v, f, it;
	avro_writer_t wr;
	char subject[128], msg[256], *buf;
	size_t size;

	REQUIRE((r = registry_new(url)) != NULL);
	topic(subject, sizeof(subject), "foreign");
	REQUIRE(registry_register(r, subject, schema, idp, msg,
	    sizeof(msg)) == REGISTRY_OK);
	registry_free(r);
	REQUIRE(avro_schema_from_json_length(schema, strlen(schema), &sc) == 0);
	REQUIRE((cls = avro_generic_class_from_schema(sc)) != NULL);
	REQUIRE(avro_generic_value_new(cls, &v) == 0);
	REQUIRE(avro_value_get_by_name(&v, "order_id", &f, NULL) == 0 &&
	    avro_value_set_string(&f, "o-1") == 0);
	REQUIRE(avro_value_get_by_name(&v, "customer_id", &f, NULL) == 0 &&
	    avro_value_set_string(&f, customer) == 0);
	REQUIRE(avro_value_get_by_name(&v, "email", &f, NULL) == 0 &&
	    avro_value_set_string(&f, "ana@example.com") == 0);
	REQUIRE(avro_value_get_by_name(&v, "currency", &f, NULL) == 0 &&
	    avro_value_set_string(&f, "EUR") == 0);
	REQUIRE(avro_value_get_by_name(&v, "items", &f, NULL) == 0 &&
	    avro_value_append(&f, &it, NULL) == 0);
	REQUIRE(avro_value_get_by_name(&it, "sku", &f, NULL) == 0 &&
	    avro_value_set_string(&f, "B") == 0);
	REQUIRE(avro_value_get_by_name(&it, "qty", &f, NULL) == 0 &&
	    avro_value_set_int(&f, 1) == 0);
	REQUIRE(avro_value_get_by_name(&it, "unit_price", &f, NULL) == 0 &&
	    avro_value_set_long(&f, 1250) == 0);
	REQUIRE(avro_value_get_by_name(&v, "total", &f, NULL) == 0 &&
	    avro_value_set_double(&f, total) == 0);
	REQUIRE(avro_value_sizeof(&v, &size) == 0);
	REQUIRE((buf = malloc(CODEC_HEADER_LEN + size)) != NULL);
	buf[0] = CODEC_MAGIC;
	buf[1] = (char)((unsigned)*idp >> 24);
	buf[2] = (char)((unsigned)*idp >> 16);
	buf[3] = (char)((unsigned)*idp >> 8);
	buf[4] = (char)*idp;
	REQUIRE((wr = avro_writer_memory(buf + CODEC_HEADER_LEN,
	    (int64_t)size)) != NULL && avro_value_write(wr, &v) == 0);
	avro_writer_free(wr);
	avro_value_decref(&v);
	avro_value_iface_decref(cls);
	avro_schema_decref(sc);
	*len = CODEC_HEADER_LEN + size;
	return buf;
}

/*
 * Money as a float is refused as it is in JSON text (1250.0), whatever
 * the writer's schema; so is a string JSON could not hold.
 */
static void
test_foreign(void)
{
	struct codec *c = avro_codec();
	rd_kafka_headers_t *h;
	char t[128];
	void *v, *enc;
	size_t len, elen;
	int id;

	/* the headers of a genuine v2 record */
	topic(t, sizeof(t), "foreign-h");
	prepare(c, t, EVENT_ORDER_CREATED_V2);
	enc = encode(c, t, order_v2, &elen, &h);
	free(enc);
	v = foreign(&id, 1250.0, "c-42", &len);
	CHECK(parse_err(c, v, len, h, "total: must be an integer") ==
	    CODEC_INVALID);
	free(v);
	v = foreign(&id, 1250.0, "c-\001", &len);
	CHECK(parse_err(c, v, len, h, "no event's data") == CODEC_INVALID);
	free(v);
	v = foreign(&id, 1250.0, "c-\xff", &len);
	CHECK(parse_err(c, v, len, h, "no event's data") == CODEC_INVALID);
	free(v);
	rd_kafka_headers_destroy(h);
	codec_free(c);
}

/*
 * Hostile lengths and counts, refused before avro-c sees them: a
 * negative string length (avro-c would ask malloc for nearly 2^64 bytes),
 * one far past the record's end (it would allocate it, then leak it), a
 * block of 2^40 zero-byte items (it would loop on them), a union branch
 * and an enum symbol out of range.
 */
static void
test_hostile(void)
{
	static const char nulls[] =
	    "{\"type\":\"record\",\"name\":\"N\",\"fields\":["
	    "{\"name\":\"a\",\"type\":{\"type\":\"array\","
	    "\"items\":\"null\"}}]}";
	struct codec *c;
	rd_kafka_headers_t *h;
	char msg[256];
	unsigned char w[64];
	size_t n;

	REQUIRE((c = codec_new(CODEC_JSON, NULL, msg, sizeof(msg))) != NULL);
	REQUIRE(codec_cache_schema(c, 7, schema_order_created_v2, msg,
	    sizeof(msg)) == 0);
	REQUIRE(codec_cache_schema(c, 8, nulls, msg, sizeof(msg)) == 0);
	REQUIRE(codec_cache_schema(c, 9, schema_payment_processed_v1, msg,
	    sizeof(msg)) == 0);
	REQUIRE((h = rd_kafka_headers_new(2)) != NULL);
	REQUIRE(kafka_header_add_str(h, FLOW_H_CONTENT_TYPE,
	    CODEC_AVRO_CONTENT_TYPE) == 0);
	memset(w, 0, sizeof(w));
	w[4] = 7;
	/* order_id's length -33 */
	w[5] = 0x41;
	CHECK(parse_err(c, w, 16, h, "beyond the record") == CODEC_INVALID);
	/* order_id's length 2^30, the record 16 bytes */
	w[5] = 0x80; w[6] = 0x80; w[7] = 0x80; w[8] = 0x80; w[9] = 0x08;
	CHECK(parse_err(c, w, 16, h, "beyond the record") == CODEC_INVALID);
	/* 2^40 nulls in one block */
	memset(w, 0, sizeof(w));
	w[4] = 8;
	n = 5;
	w[n++] = 0x80; w[n++] = 0x80; w[n++] = 0x80; w[n++] = 0x80;
	w[n++] = 0x80; w[n++] = 0x40;
	w[n++] = 0;
	CHECK(parse_err(c, w, n, h, "too many values") == CODEC_INVALID);
	/* payment: four strings, status symbol 5 of 2 */
	memset(w, 0, sizeof(w));
	w[4] = 9;
	n = 5 + 2;	/* order_id, payment_id: "" */
	w[n++] = 10;
	CHECK(parse_err(c, w, 20, h, "beyond the record") == CODEC_INVALID);
	/* ... symbol 1, then reason's union branch 3 of 2 */
	memset(w, 0, sizeof(w));
	w[4] = 9;
	n = 5 + 2;
	w[n++] = 2;		/* declined */
	w[n++] = 0;		/* amount 0 */
	w[n++] = 0;		/* currency "" */
	w[n++] = 6;		/* reason: branch 3 */
	CHECK(parse_err(c, w, n + 8, h, "beyond the record") ==
	    CODEC_INVALID);
	rd_kafka_headers_destroy(h);
	codec_free(c);
}

/* The writer thread's half of test_writer(): encodes as a pay-process does. */
static void *
writer_main(void *arg)
{
	struct codec *d = ((void **)arg)[0];
	const char *t = ((void **)arg)[1];
	const unsigned char *want = ((void **)arg)[2];
	size_t wlen = *(size_t *)((void **)arg)[3], len;
	rd_kafka_headers_t *h;
	void *v;
	int i, bad = 0;

	for (i = 0; i < 2000; i++) {
		v = encode(d, t, pay_approved, &len, &h);
		bad += len != wlen || memcmp(v, want, len) != 0;
		rd_kafka_headers_destroy(h);
		free(v);
	}
	return (void *)(intptr_t)bad;
}

/*
 * codec_writer(): the same records and headers as the codec it copies,
 * under the same ids, from another thread while that codec decodes; it
 * neither registers nor reads Avro itself.
 */
static void
test_writer(void)
{
	static const char *const evs[] = { order_v2, pay_declined,
	    pay_approved };
	struct codec *c = avro_codec(), *d;
	struct event ev;
	struct event_err err;
	rd_kafka_headers_t *h1, *h2;
	pthread_t th;
	void *v1, *v2, *arg[4], *res;
	size_t l1, l2, i;
	char t1[128], t2[128], t3[128], msg[256], a[256], b[256];
	const char *names[] = { FLOW_H_CONTENT_TYPE, FLOW_H_CE_ID,
	    FLOW_H_CE_TYPE, FLOW_H_CE_SOURCE, FLOW_H_CE_SUBJECT,
	    FLOW_H_CE_TIME, FLOW_H_CE_SPECVERSION };
	int rerr, bad = 0;
	size_t k;

	topic(t1, sizeof(t1), "orders");
	topic(t2, sizeof(t2), "payments");
	topic(t3, sizeof(t3), "other");
	prepare(c, t1, EVENT_ORDER_CREATED_V2);
	prepare(c, t2, EVENT_PAYMENT_PROCESSED_V1);
	d = codec_writer(c, msg, sizeof(msg));
	REQUIRE(d != NULL);
	CHECK(codec_format(d) == CODEC_AVRO);
	for (i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
		const char *t = i == 0 ? t1 : t2;

		v1 = encode(c, t, evs[i], &l1, &h1);
		v2 = encode(d, t, evs[i], &l2, &h2);
		CHECK(l1 == l2 && memcmp(v1, v2, l1) == 0);
		for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
			CHECK(kafka_header_get_str(h1, names[k], a,
			    sizeof(a)) >= 0);
			CHECK(kafka_header_get_str(h2, names[k], b,
			    sizeof(b)) >= 0 && strcmp(a, b) == 0);
		}
		/* d reads no Avro: it has no registry to ask. */
		CHECK(codec_parse(d, v2, l2, h2, &ev, &err) != CODEC_OK);
		event_free(&ev);
		rd_kafka_headers_destroy(h1);
		rd_kafka_headers_destroy(h2);
		free(v1);
		free(v2);
	}
	CHECK(codec_prepare(d, t3, EVENT_ORDER_CREATED_V2, &rerr, msg,
	    sizeof(msg)) == -1 && strstr(msg, "registry") != NULL);
	CHECK(codec_encode(d, t3, order_v2, strlen(order_v2), NULL, &v1, &l1,
	    &h1, msg, sizeof(msg)) == -1 && v1 == NULL && h1 == NULL);

	/* d writing on a thread while c decodes on this one. */
	v1 = encode(c, t2, pay_approved, &l1, &h1);
	arg[0] = d;
	arg[1] = t2;
	arg[2] = v1;
	arg[3] = &l1;
	REQUIRE(pthread_create(&th, NULL, writer_main, arg) == 0);
	for (i = 0; i < 2000; i++) {
		if (codec_parse(c, v1, l1, h1, &ev, &err) != CODEC_OK ||
		    strcmp(ev.subject, "o-4") != 0)
			bad++;
		event_free(&ev);
	}
	REQUIRE(pthread_join(th, &res) == 0);
	CHECK(bad == 0 && res == NULL);
	rd_kafka_headers_destroy(h1);
	free(v1);
	codec_free(d);
	codec_free(c);
}

static void
test_options(void)
{
	enum codec_format f;
	char msg[256];

	CHECK(codec_format_parse("avro", &f) == 0 && f == CODEC_AVRO);
	CHECK(codec_format_parse("json", &f) == 0 && f == CODEC_JSON);
	CHECK(codec_format_parse("Avro", &f) == -1);
	CHECK(codec_new(CODEC_AVRO, NULL, msg, sizeof(msg)) == NULL &&
	    strstr(msg, "registry") != NULL);
	CHECK(codec_new(CODEC_AVRO, "ftp://x", msg, sizeof(msg)) == NULL);
}

static const struct unit_test tests[] = {
	{ "round-trip", test_round_trip },
	{ "v1", test_v1 },
	{ "invalid", test_invalid },
	{ "attributes", test_attributes },
	{ "json", test_json },
	{ "unavailable", test_unavailable },
	{ "foreign", test_foreign },
	{ "hostile", test_hostile },
	{ "options", test_options },
	{ "writer", test_writer },
};

/* Writes len bytes of p to DIR/N.ext. */
static void
put_file(const char *dir, int n, const char *ext, const void *p, size_t len)
{
	char path[4096];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%d.%s", dir, n, ext);
	REQUIRE((fp = fopen(path, "w")) != NULL);
	REQUIRE(fwrite(p, 1, len, fp) == len && fclose(fp) == 0);
}

/* codec_test encode TOPIC DIR < EVENTS: see the top of this file. */
static int
encode_events(const char *t, const char *dir)
{
	struct codec *c = avro_codec();
	struct event ev;
	struct event_err err;
	rd_kafka_headers_t *h;
	const char *name;
	const void *hv;
	char *line = NULL, *hl = NULL;
	size_t cap = 0, len, i, hsz, hlen = 0;
	ssize_t n;
	void *v;
	int k = 0;
	FILE *hf;

	while ((n = getline(&line, &cap, stdin)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (event_parse(line, (size_t)n, &ev, &err) == -1) {
			fprintf(stderr, "line %d: %s\n", k + 1, err.text);
			return 1;
		}
		prepare(c, t, ev.kind);
		v = encode(c, t, line, &len, &h);
		k++;
		put_file(dir, k, "value", v, len);
		put_file(dir, k, "key", ev.subject, strlen(ev.subject));
		REQUIRE((hf = open_memstream(&hl, &hlen)) != NULL);
		for (i = 0; rd_kafka_header_get_all(h, i, &name, &hv, &hsz) ==
		    RD_KAFKA_RESP_ERR_NO_ERROR; i++)
			fprintf(hf, "%s=%.*s\n", name, (int)hsz,
			    (const char *)hv);
		REQUIRE(fclose(hf) == 0);
		put_file(dir, k, "headers", hl, hlen);
		free(hl);
		hl = NULL;
		rd_kafka_headers_destroy(h);
		free(v);
		event_free(&ev);
	}
	free(line);
	codec_free(c);
	return 0;
}

int
main(int argc, char *argv[])
{
	REQUIRE(curl_global_init(CURL_GLOBAL_DEFAULT) == 0);
	srand((unsigned)getpid());
	url = getenv("SCHEMA_REGISTRY_URL");
	if (argc == 4 && strcmp(argv[1], "encode") == 0)
		return encode_events(argv[2], argv[3]);
	return unit_main("codec_test", tests, argc, argv);
}
