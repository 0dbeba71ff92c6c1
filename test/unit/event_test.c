/*
 * event_test.c - unit tests for common/event.c: the order rules, events
 * parsed and built, upcasting, derived ids, money and traceparent; and
 * common/jsonmem.c, the memory cJSON gets while event.c works.
 *
 * Usage: event_test [NAME]; without NAME it lists the tests.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <cjson/cJSON.h>
#include <uuid/uuid.h>

#include "event.h"
#include "evavro.h"
#include "evpack.h"
#include "schemas.h"
#include "util.h"
#include "jsonmem.h"
#include "unit.h"

#define ORDER_ERR(json, field, msg)	order_err(__LINE__, json, field, msg)
#define EVENT_ERR(json, field, msg)	event_err(__LINE__, json, field, msg)

static const char good[] =
    "{\"order_id\":\"o-1001\",\"customer_id\":\"c-42\","
    "\"email\":\"ana@example.com\",\"currency\":\"EUR\","
    "\"items\":[{\"sku\":\"BOOK-1\",\"qty\":2,\"unit_price\":1250},"
    "{\"sku\":\"PEN\",\"qty\":3,\"unit_price\":99}],"
    "\"payment_method\":\"pm_card_visa\"}";

/* printf(3) into memory the caller frees. */
static char * __attribute__((format(printf, 1, 2)))
fmt(const char *f, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, f);
	n = vsnprintf(NULL, 0, f, ap);
	va_end(ap);
	if (n < 0 || (s = malloc((size_t)n + 1)) == NULL)
		abort();
	va_start(ap, f);
	vsnprintf(s, (size_t)n + 1, f, ap);
	va_end(ap);
	return s;
}

/* An order of good's customer with the given items array text. */
static char *
with_items(const char *items)
{
	return fmt("{\"customer_id\":\"c-42\",\"email\":\"a@example.com\","
	    "\"currency\":\"EUR\",\"items\":%s}", items);
}

/* An order of one item with the given unit_price text. */
static char *
with_price(const char *price)
{
	char items[128];

	snprintf(items, sizeof(items),
	    "[{\"sku\":\"A\",\"qty\":1,\"unit_price\":%s}]", price);
	return with_items(items);
}

static void
order_err(int line, const char *json, const char *field, const char *msg)
{
	struct order o;
	struct event_err err;
	char text[512];

	if (order_parse(json, strlen(json), &o, &err) != -1) {
		fprintf(stderr, "%s:%d: accepted: %s\n", __FILE__, line, json);
		failures++;
		order_free(&o);
		return;
	}
	if (*field != '\0')
		snprintf(text, sizeof(text), "%s: %s", field, msg);
	else
		snprintf(text, sizeof(text), "%s", msg);
	if (strcmp(err.field, field) != 0 || strcmp(err.msg, msg) != 0 ||
	    strcmp(err.text, text) != 0) {
		fprintf(stderr, "%s:%d: got \"%s\" (field \"%s\"), want "
		    "\"%s\"\n", __FILE__, line, err.text, err.field, text);
		failures++;
	}
	CHECK(o.items == NULL && o.nitems == 0);
	order_free(&o);
}

static void
event_err(int line, const char *json, const char *field, const char *msg)
{
	struct event ev;
	struct event_err err;

	if (event_parse(json, strlen(json), &ev, &err) != -1) {
		fprintf(stderr, "%s:%d: accepted: %s\n", __FILE__, line, json);
		failures++;
	} else if (strcmp(err.field, field) != 0 ||
	    strstr(err.msg, msg) == NULL) {
		fprintf(stderr, "%s:%d: got \"%s\" (field \"%s\"), want "
		    "field \"%s\" and \"%s\"\n", __FILE__, line, err.text,
		    err.field, field, msg);
		failures++;
	}
	CHECK(ev.kind == EVENT_NONE && ev.order.items == NULL);
	event_free(&ev);
}

/* An event envelope of the given type and traceparent around data. */
static char *
envelope_tp(const char *type, const char *subject, const char *tp,
    const char *data)
{
	return fmt("{\"specversion\":\"1.0\",\"id\":\"e-1\","
	    "\"source\":\"/test\",\"type\":\"%s\",\"subject\":\"%s\","
	    "\"time\":\"2026-11-26T10:00:00Z\","
	    "\"datacontenttype\":\"application/json\","
	    "\"traceparent\":\"%s\",\"data\":%s}", type, subject, tp, data);
}

static char *
envelope(const char *type, const char *subject, const char *data)
{
	return envelope_tp(type, subject, "00-4bf92f3577b34da6a3ce929d0e0e4736-"
	    "00f067aa0ba902b7-01", data);
}

static char *
v1_event(const char *amount)
{
	char data[256];

	snprintf(data, sizeof(data), "{\"order_id\":\"o-7\","
	    "\"customer_id\":\"c-1\",\"email\":\"bo@example.com\","
	    "\"currency\":\"USD\",\"amount\":%s}", amount);
	return envelope("order.created.v1", "o-7", data);
}

static void
test_valid(void)
{
	struct order o;
	struct event_err err;

	CHECK(order_parse(good, strlen(good), &o, &err) == 0);
	CHECK(strcmp(o.order_id, "o-1001") == 0 && !o.order_id_generated);
	CHECK(strcmp(o.customer_id, "c-42") == 0);
	CHECK(strcmp(o.email, "ana@example.com") == 0);
	CHECK(strcmp(o.currency, "EUR") == 0);
	CHECK(o.nitems == 2);
	CHECK(o.nitems == 2 && strcmp(o.items[1].sku, "PEN") == 0 &&
	    o.items[1].qty == 3 && o.items[1].unit_price == 99);
	CHECK(o.total == 2 * 1250 + 3 * 99);
	CHECK(strcmp(o.payment_method, "pm_card_visa") == 0);
	CHECK(err.text[0] == '\0');
	order_free(&o);
	order_free(&o);		/* twice is harmless */
}

static void
test_defaults(void)
{
	struct order o;
	char *s;

	s = with_price("0");
	CHECK(order_parse(s, strlen(s), &o, NULL) == 0);
	CHECK(strcmp(o.payment_method, ORDER_PM_DEFAULT) == 0);
	CHECK(o.total == 0);
	order_free(&o);
	free(s);
	/* optional members may be null; unknown members are ignored */
	s = "{\"customer_id\":\"c\",\"email\":\"a@b\",\"currency\":\"JPY\","
	    "\"items\":[{\"sku\":\"X\",\"qty\":1000,\"unit_price\":100000000,"
	    "\"note\":[1.5]}],\"order_id\":null,\"payment_method\":null,"
	    "\"extra\":{\"x\":1e9}}";
	CHECK(order_parse(s, strlen(s), &o, NULL) == 0);
	CHECK(o.total == 100000000000LL && o.order_id_generated);
	order_free(&o);
}

static void
test_rules(void)
{
	char *s, items[8192];
	size_t i, n;

	ORDER_ERR("{\"email\":\"a@b.c\",\"currency\":\"EUR\",\"items\":[]}",
	    "customer_id", "is required");
	ORDER_ERR("{\"customer_id\":\"\",\"email\":\"a@b.c\"}", "customer_id",
	    "must be 1 to 128 printable ASCII characters without spaces");
	ORDER_ERR("{\"customer_id\":42}", "customer_id",
	    "must be 1 to 128 printable ASCII characters without spaces");
	ORDER_ERR("{\"customer_id\":\"c 1\"}", "customer_id",
	    "must be 1 to 128 printable ASCII characters without spaces");
	ORDER_ERR("{\"customer_id\":\"c\"}", "email", "is required");
	ORDER_ERR("{\"customer_id\":\"c\",\"email\":\"ana.example.com\"}",
	    "email", "must be an email address like ana@example.com "
	    "(at most 254 characters)");
	ORDER_ERR("{\"customer_id\":\"c\",\"email\":\"a@b@c\"}", "email",
	    "must be an email address like ana@example.com "
	    "(at most 254 characters)");
	ORDER_ERR("{\"customer_id\":\"c\",\"email\":\"a b@c.d\"}", "email",
	    "must be an email address like ana@example.com "
	    "(at most 254 characters)");
	ORDER_ERR("{\"customer_id\":\"c\",\"email\":\"a@\"}", "email",
	    "must be an email address like ana@example.com "
	    "(at most 254 characters)");
	ORDER_ERR("{\"customer_id\":\"c\",\"email\":\"a@b..c\"}", "email",
	    "must be an email address like ana@example.com "
	    "(at most 254 characters)");
	ORDER_ERR("{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"currency\":"
	    "\"eur\"}", "currency", "must be 3 capital letters A-Z, e.g. EUR");
	ORDER_ERR("{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"currency\":"
	    "\"EURO\"}", "currency", "must be 3 capital letters A-Z, e.g. EUR");
	ORDER_ERR("{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"currency\":"
	    "\"EU\"}", "currency", "must be 3 capital letters A-Z, e.g. EUR");
	ORDER_ERR("{\"customer_id\":\"c\",\"email\":\"a@b.c\"}", "currency",
	    "is required");
	ORDER_ERR("{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"currency\":"
	    "\"EUR\"}", "items", "is required");
	s = with_items("[]");
	ORDER_ERR(s, "items", "must be an array of 1 to 100 items");
	free(s);
	s = with_items("{\"sku\":\"A\"}");
	ORDER_ERR(s, "items", "must be an array of 1 to 100 items");
	free(s);
	for (n = 100; n <= 101; n++) {
		items[0] = '\0';
		for (i = 0; i < n; i++)
			strcat(items, i == 0 ?
			    "[{\"sku\":\"A\",\"qty\":1,\"unit_price\":1}" :
			    ",{\"sku\":\"A\",\"qty\":1,\"unit_price\":1}");
		strcat(items, "]");
		s = with_items(items);
		if (n == 101)
			ORDER_ERR(s, "items",
			    "must be an array of 1 to 100 items");
		else {
			struct order o;

			CHECK(order_parse(s, strlen(s), &o, NULL) == 0 &&
			    o.nitems == 100 && o.total == 100);
			order_free(&o);
		}
		free(s);
	}
	s = with_items("[{\"sku\":\"A\",\"qty\":1,\"unit_price\":1},7]");
	ORDER_ERR(s, "items[1]", "must be an object");
	free(s);
	s = with_items("[{\"qty\":1,\"unit_price\":1}]");
	ORDER_ERR(s, "items[0].sku", "is required");
	free(s);
	s = with_items("[{\"sku\":\"\",\"qty\":1,\"unit_price\":1}]");
	ORDER_ERR(s, "items[0].sku",
	    "must be 1 to 64 printable ASCII characters without spaces");
	free(s);
	s = with_items("[{\"sku\":\"A\",\"unit_price\":1}]");
	ORDER_ERR(s, "items[0].qty", "is required");
	free(s);
	s = with_items("[{\"sku\":\"A\",\"qty\":1}]");
	ORDER_ERR(s, "items[0].unit_price", "is required");
	free(s);
	ORDER_ERR("{\"order_id\":\"o 1\"}", "order_id",
	    "must be 1 to 128 characters of A-Z a-z 0-9 . _ : -");
	ORDER_ERR("{\"order_id\":\"\"}", "order_id",
	    "must be 1 to 128 characters of A-Z a-z 0-9 . _ : -");
	s = with_items("[{\"sku\":\"A\",\"qty\":1,\"unit_price\":1}],"
	    "\"payment_method\":\"pm card\"");
	ORDER_ERR(s, "payment_method",
	    "must be 1 to 64 characters of A-Z a-z 0-9 . _ : -");
	free(s);
}

static void
test_qty(void)
{
	static const char *bad[] = {
		"0", "1001", "-1", "1.5", "1.0", "1e0", "\"1\"", "true",
		"null", "[1]", "99999999999999999999999",
	};
	char items[128], *s;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(items, sizeof(items),
		    "[{\"sku\":\"A\",\"qty\":%s,\"unit_price\":1}]", bad[i]);
		s = with_items(items);
		ORDER_ERR(s, "items[0].qty", "must be an integer from 1 to 1000");
		free(s);
	}
	s = with_items("[{\"sku\":\"A\",\"qty\":1,\"unit_price\":1},"
	    "{\"sku\":\"B\",\"qty\":1001,\"unit_price\":1}]");
	ORDER_ERR(s, "items[1].qty", "must be an integer from 1 to 1000");
	free(s);
}

static void
test_money(void)
{
	static const char *notint[] = {
		"12.5", "1250.0", "1e3", "1E3", "1.25e3", "\"1250\"", "1e300",
		"-1e300", "1e400", "-1e400", "true", "null", "{}", "-0.0",
		"0.0",
	};
	static const char *range[] = {
		"-1", "100000001", "99999999999999999999",
		"1000000000000000000000000000000000000000000000000000000000000",
	};
	const char *msg = "must be an integer number of minor units";
	char *s;
	size_t i;

	for (i = 0; i < sizeof(notint) / sizeof(notint[0]); i++) {
		s = with_price(notint[i]);
		ORDER_ERR(s, "items[0].unit_price", msg);
		free(s);
	}
	for (i = 0; i < sizeof(range) / sizeof(range[0]); i++) {
		s = with_price(range[i]);
		ORDER_ERR(s, "items[0].unit_price",
		    "must be an integer number of minor units from 0 to "
		    "100000000");
		free(s);
	}
}

/*
 * A byte of every kind at every place in strings of up to 24 bytes, in
 * a text that has a number with a fraction after them.  bad: an error at
 * its offset; else the string is read on.
 */
static void
strict_lanes(void)
{
	static const struct {
		const char	*b;
		size_t		 len;
		int		 bad;
	} kinds[] = {
		{ "\t", 1, 1 }, { "\x01", 1, 1 }, { "\x1f", 1, 1 },
		{ "", 1, 1 },		/* a NUL byte */
		{ "\\u0000", 6, 1 },
		{ "\\\"", 2, 0 }, { "\\\\", 2, 0 }, { "\\n", 2, 0 },
		{ "\\u0041", 6, 0 }, { "\xc3\xa9", 2, 0 }, { "\x7f", 1, 0 },
		{ " ", 1, 0 }, { "!", 1, 0 }, { "#", 1, 0 }, { "[", 1, 0 },
		{ "]", 1, 0 },
	};
	struct order o;
	struct event_err err;
	char buf[128], want[128];
	size_t i, k, n, m;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		for (k = 0; k < 24; k++) {
			/* {"customer_id":"aaa<byte>bbbbbbbbbb","qty":1.5} */
			n = (size_t)snprintf(buf, sizeof(buf),
			    "{\"customer_id\":\"%.*s", (int)k,
			    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
			memcpy(buf + n, kinds[i].b, kinds[i].len);
			m = n + kinds[i].len;
			m += (size_t)snprintf(buf + m, sizeof(buf) - m,
			    "%.*s\",\"qty\":1.5}", (int)(k % 11),
			    "bbbbbbbbbbb");
			CHECK(order_parse(buf, m, &o, &err) == -1);
			order_free(&o);
			snprintf(want, sizeof(want), "invalid JSON: control "
			    "character or \\u0000 in a string at byte offset "
			    "%zu", n);
			if (kinds[i].bad ? strcmp(err.msg, want) != 0 :
			    strncmp(err.msg, "invalid JSON", 12) == 0) {
				fprintf(stderr, "%s:%d: kind %zu at %zu: %s\n",
				    __FILE__, __LINE__, i, k, err.text);
				failures++;
			}
		}
}

static void
test_strict(void)
{
	char *s;

	strict_lanes();
	ORDER_ERR("", "", "invalid JSON: empty input");
	ORDER_ERR(" \n", "", "invalid JSON: empty input");
	ORDER_ERR("{\"a\":", "a", "invalid JSON at byte offset 4");
	ORDER_ERR("{\"a\":\"x\"", "", "invalid JSON at byte offset 7");
	s = with_items("[{\"sku\":\"A\",\"qty\":1,\"unit_price\":1},"
	    "{\"sku\":\"B\",\"qty\":tru}]");
	ORDER_ERR(s, "items[1].qty", "invalid JSON at byte offset 124");
	free(s);
	ORDER_ERR("{} x", "", "invalid JSON: trailing data at byte offset 3");
	ORDER_ERR("{}{}", "", "invalid JSON: trailing data at byte offset 2");
	ORDER_ERR("[1]", "", "must be a JSON object");
	ORDER_ERR("\"x\"", "", "must be a JSON object");
	ORDER_ERR("{\"customer_id\":\"c\",\"customer_id\":\"d\"}", "customer_id",
	    "appears more than once");
	ORDER_ERR("{\"customer_id\":\"a\tb\"}", "",
	    "invalid JSON: control character or \\u0000 in a string at byte "
	    "offset 17");
	ORDER_ERR("{\"customer_id\":\"a\\u0000b\"}", "",
	    "invalid JSON: control character or \\u0000 in a string at byte "
	    "offset 17");
	/* A lone surrogate names its field; a pair is a character. */
	ORDER_ERR("{\"customer_id\":\"c-42\\ud800\"}", "customer_id",
	    "invalid JSON: a lone UTF-16 surrogate (\\ud800) in a string at "
	    "byte offset 20");
	ORDER_ERR("{\"customer_id\":\"c\",\"email\":\"\\uDC00@b.c\"}",
	    "email", "invalid JSON: a lone UTF-16 surrogate (\\uDC00) in a "
	    "string at byte offset 28");
	s = with_items("[{\"sku\":\"A\",\"qty\":1,\"unit_price\":1},"
	    "{\"sku\":\"B\\ud83d\\u0041\",\"qty\":1,\"unit_price\":1}]");
	ORDER_ERR(s, "items[1].sku", "invalid JSON: a lone UTF-16 surrogate "
	    "(\\ud83d) in a string at byte offset 116");
	free(s);
	s = envelope("order.created.v2", "o-7", "{\"order_id\":\"o-7\","
	    "\"customer_id\":\"c\\ud800\"}");
	EVENT_ERR(s, "data.customer_id", "a lone UTF-16 surrogate (\\ud800)");
	free(s);
	ORDER_ERR("{\"x\\ud800\":1}", "", "invalid JSON: a lone UTF-16 "
	    "surrogate (\\ud800) in a string at byte offset 3");
	s = with_items("[{\"sku\":\"\\ud83d\\ude00\",\"qty\":1,"
	    "\"unit_price\":1}]");
	ORDER_ERR(s, "items[0].sku", "must be 1 to 64 printable ASCII "
	    "characters without spaces");
	free(s);
	/* an escaped backslash before "u0000" is not \u0000 */
	s = with_items("[{\"sku\":\"A\\\\u0000\",\"qty\":1,\"unit_price\":1}]");
	{
		struct order o;

		CHECK(order_parse(s, strlen(s), &o, NULL) == 0);
		CHECK(o.nitems == 1 && strcmp(o.items[0].sku, "A\\u0000") == 0);
		order_free(&o);
	}
	free(s);
	/* a NUL byte ends nothing: the length is what counts */
	{
		struct order o;
		struct event_err err;

		CHECK(order_parse("{}\0{", 4, &o, &err) == -1);
		CHECK(strcmp(err.msg, "invalid JSON: trailing data at byte "
		    "offset 2") == 0);
		CHECK(order_parse("{\"customer_id\":\"a\0b\"}", 21, &o,
		    &err) == -1);
		CHECK(strcmp(err.msg, "invalid JSON: control character or "
		    "\\u0000 in a string at byte offset 17") == 0);

		CHECK(order_parse("{\"a\":1}", 3, &o, &err) == -1);
		CHECK(order_parse(NULL, 0, &o, &err) == -1);
		CHECK(strcmp(err.msg, "invalid JSON: empty input") == 0);
	}
}

static void
test_nesting(void)
{
	size_t n = 100000, depth;
	struct order o;
	struct event ev;
	struct event_err err;
	char *s;

	if ((s = malloc(n + 64)) == NULL)
		abort();
	memset(s, '[', n);
	CHECK(order_parse(s, n, &o, &err) == -1);
	CHECK(strncmp(err.msg, "invalid JSON", 12) == 0);
	CHECK(event_parse(s, n, &ev, &err) == -1);
	memset(s, '{', n);
	CHECK(event_parse(s, n, &ev, &err) == -1);
	/* deep but within cJSON's limit, in an ignored member */
	for (depth = 990; depth <= 1010; depth += 20) {
		char *t, *p;

		if ((t = malloc(2 * depth + 256)) == NULL)
			abort();
		p = t + sprintf(t, "{\"x\":");
		memset(p, '[', depth);
		memset(p + depth, ']', depth);
		strcpy(p + 2 * depth, ",\"customer_id\":\"c\"}");
		CHECK(order_parse(t, strlen(t), &o, &err) == -1);
		if (depth < 1000)
			CHECK(strcmp(err.field, "email") == 0);
		else
			CHECK(strncmp(err.msg, "invalid JSON", 12) == 0);
		free(t);
	}
	free(s);
}

static void
test_generated(void)
{
	struct order a, b;
	struct event ea, eb;
	char *s;

	s = with_price("5");
	CHECK(order_parse(s, strlen(s), &a, NULL) == 0);
	CHECK(order_parse(s, strlen(s), &b, NULL) == 0);
	CHECK(a.order_id_generated && b.order_id_generated);
	CHECK(strncmp(a.order_id, "o-", 2) == 0 &&
	    strlen(a.order_id) == 2 + EVENT_UUID_LEN);
	CHECK(strcmp(a.order_id, b.order_id) != 0);
	CHECK(event_order_created(&ea, &a, "/t", NULL) == 0);
	CHECK(event_order_created(&eb, &b, "/t", NULL) == 0);
	CHECK(strcmp(ea.id, eb.id) != 0);
	CHECK(strcmp(ea.subject, a.order_id) == 0);
	event_free(&ea);
	event_free(&eb);
	order_free(&a);
	order_free(&b);
	free(s);
}

static void
test_sameid(void)
{
	struct order o, o2;
	struct event a, b, c, back;
	struct event_err err;
	char *js, *js2, tp[TRACEPARENT_LEN + 1];
	size_t len;

	CHECK(order_parse(good, strlen(good), &o, NULL) == 0);
	CHECK(order_parse(good, strlen(good), &o2, NULL) == 0);
	trace_generate(tp);
	CHECK(event_order_created(&a, &o, "/orderflow/order-submit", tp) == 0);
	CHECK(event_order_created(&b, &o2, "/orderflow/order-serve",
	    NULL) == 0);
	CHECK(strcmp(a.id, b.id) == 0);
	CHECK(strlen(a.id) == EVENT_UUID_LEN && a.id[14] == '5');
	CHECK(strcmp(a.traceparent, tp) == 0);
	CHECK(trace_valid(b.traceparent) && strcmp(b.traceparent, tp) != 0);
	CHECK(a.kind == EVENT_ORDER_CREATED_V2);
	CHECK(strcmp(a.type, "order.created.v2") == 0);
	CHECK(strcmp(a.subject, "o-1001") == 0);
	CHECK(a.time_ms > 0 && strlen(a.time) == 24);
	strcpy(o2.order_id, "o-1002");
	CHECK(event_order_created(&c, &o2, "/t", NULL) == 0);
	CHECK(strcmp(a.id, c.id) != 0);
	event_free(&c);
	CHECK(event_order_created(&c, &o2, "", NULL) == -1 && errno == EINVAL);
	CHECK(event_order_created(&c, &o2, "/t", "00-bad") == -1);

	js = event_serialize(&a, &len);
	CHECK(js != NULL && len == strlen(js) && strchr(js, '\n') == NULL);
	CHECK(strstr(js, "\"specversion\":\"1.0\"") != NULL);
	CHECK(strstr(js, "\"datacontenttype\":\"application/json\"") != NULL);
	CHECK(strstr(js, "\"total\":2797") != NULL);
	CHECK(strstr(js, "\"unit_price\":1250") != NULL);
	CHECK(event_parse(js, len, &back, &err) == 0);
	if (err.text[0] != '\0')
		fprintf(stderr, "%s\n%s\n", js, err.text);
	CHECK(back.kind == EVENT_ORDER_CREATED_V2);
	CHECK(strcmp(back.id, a.id) == 0 && strcmp(back.time, a.time) == 0);
	CHECK(strcmp(back.traceparent, tp) == 0);
	CHECK(back.order.total == 2797 && back.order.nitems == 2);
	CHECK(strcmp(back.order.email, "ana@example.com") == 0);
	CHECK(strcmp(back.order.payment_method, "pm_card_visa") == 0);
	js2 = event_serialize(&back, NULL);
	CHECK(js2 != NULL && strcmp(js, js2) == 0);
	free(js);
	free(js2);
	event_free(&back);
	event_free(&a);
	event_free(&b);
	order_free(&o);
	order_free(&o2);
}

static void
test_derive(void)
{
	char a[EVENT_UUID_LEN + 1], b[EVENT_UUID_LEN + 1];
	char c[EVENT_UUID_LEN + 1], d[EVENT_UUID_LEN + 1];
	char longid[EVENT_ID_MAX + 2];

	CHECK(event_derive_id("e-1", EVENT_PURPOSE_PAYMENT, a) == 0);
	CHECK(event_derive_id("e-1", EVENT_PURPOSE_PAYMENT, b) == 0);
	CHECK(event_derive_id("e-1", EVENT_PURPOSE_NOTIFY, c) == 0);
	CHECK(event_derive_id("e-2", EVENT_PURPOSE_PAYMENT, d) == 0);
	CHECK(strcmp(a, b) == 0);
	CHECK(strcmp(a, c) != 0 && strcmp(a, d) != 0);
	CHECK(strlen(a) == EVENT_UUID_LEN && a[14] == '5');
	CHECK(strchr("89ab", a[19]) != NULL);
	/* fixed for ever: a change breaks every duplicate check */
	CHECK(strcmp(a, "9a76ff46-259e-5106-8a89-fc05ba4da4c1") == 0 ||
	    (fprintf(stderr, "derived %s\n", a), 0));
	/* purpose and cause are kept apart: "a" "bc" is not "ab" "c" */
	CHECK(event_derive_id("bc", "a", a) == 0);
	CHECK(event_derive_id("c", "ab", b) == 0 && strcmp(a, b) != 0);
	CHECK(event_derive_id("", "ab", b) == -1 && errno == EINVAL);
	CHECK(event_derive_id("x", "", b) == -1);
	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	CHECK(event_derive_id(longid, "p", b) == -1);
	longid[EVENT_ID_MAX] = '\0';
	CHECK(event_derive_id(longid, "p", b) == 0);
	event_random_id(a);
	event_random_id(b);
	CHECK(strcmp(a, b) != 0 && a[14] == '4');
}

/*
 * event_derive_id() against libuuid's uuid_generate_sha1() in the same
 * namespace, for causes of every length (one to three SHA-1 blocks) and
 * every purpose: the ids the commands derived before must not change.
 */
static void
test_derive_libuuid(void)
{
	static const uuid_t ns = {
		0x76, 0xd3, 0x21, 0x67, 0x2e, 0xc2, 0x4e, 0x98,
		0xa2, 0x03, 0x30, 0x97, 0xcf, 0x8d, 0x41, 0xda
	};
	static const char *purposes[] = { EVENT_PURPOSE_ORDER,
	    EVENT_PURPOSE_PAYMENT, EVENT_PURPOSE_PAYMENT_ID,
	    EVENT_PURPOSE_NOTIFY, "x" };
	char name[64 + 1 + EVENT_ID_MAX], cause[256];
	char got[EVENT_UUID_LEN + 1], want[EVENT_UUID_LEN + 1];
	size_t i, len, plen;
	uuid_t u;

	for (i = 0; i < sizeof(purposes) / sizeof(purposes[0]); i++) {
		for (len = 1; len <= EVENT_ID_MAX; len++) {
			snprintf(cause, sizeof(cause), "%zu-%s", len * 7919,
			    "0123456789abcdefghijklmnopqrstuvwxyz0123456789"
			    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghij"
			    "klmnopqrstuvwxyz-_.:0123456789ABCDEFGHIJKLMN");
			cause[len] = '\0';
			plen = strlen(purposes[i]);
			memcpy(name, purposes[i], plen + 1);
			memcpy(name + plen + 1, cause, len);
			uuid_generate_sha1(u, ns, name, plen + 1 + len);
			uuid_unparse_lower(u, want);
			CHECK(event_derive_id(cause, purposes[i], got) == 0);
			if (strcmp(got, want) != 0) {
				fprintf(stderr, "%s %s: %s, libuuid %s\n",
				    purposes[i], cause, got, want);
				CHECK(strcmp(got, want) == 0);
			}
		}
	}
}

/*
 * event_uuid_bytes() against what evpack did before it: libuuid's
 * uuid_parse(), the text taken only when uuid_unparse_lower() gives it
 * back.  Random UUIDs, and each with one byte changed at every place.
 */
static int
uuid_oracle(const char *s, uuid_t u)
{
	char back[EVENT_UUID_LEN + 1];

	if (strnlen(s, EVENT_UUID_LEN + 1) != EVENT_UUID_LEN ||
	    uuid_parse(s, u) == -1)
		return -1;
	uuid_unparse_lower(u, back);
	return strcmp(back, s) == 0 ? 0 : -1;
}

static void
test_uuid_bytes(void)
{
	static const char subst[] = { '0', '9', 'a', 'f', 'g', 'A', 'F', '-',
	    '{', ' ', 'x', (char)0x80, '\0' };
	char text[EVENT_UUID_LEN + 2], t[EVENT_UUID_LEN + 2];
	unsigned char got[16];
	size_t i, j, k, ok = 0, bad = 0;
	uuid_t u, want;
	int a, b;

	for (i = 0; i < 200; i++) {
		uuid_generate_random(u);
		uuid_unparse_lower(u, text);
		CHECK(event_uuid_bytes(text, got) == 0 &&
		    memcmp(got, u, 16) == 0);
		for (j = 0; j <= EVENT_UUID_LEN; j++) {
			for (k = 0; k < sizeof(subst); k++) {
				memcpy(t, text, sizeof(text));
				t[j] = subst[k];
				if (j == EVENT_UUID_LEN)
					t[j + 1] = '\0';
				a = event_uuid_bytes(t, got);
				b = uuid_oracle(t, want);
				if (a != b) {
					fprintf(stderr, "%s: %d, libuuid %d\n",
					    t, a, b);
					CHECK(a == b);
				}
				if (a == 0) {
					CHECK(memcmp(got, want, 16) == 0);
					ok++;
				} else
					bad++;
			}
		}
	}
	CHECK(ok > 1000 && bad > 1000);
	CHECK(event_uuid_bytes("", got) == -1);
	CHECK(event_uuid_bytes("urn:uuid:00000000-0000-0000-0000-000000000000",
	    got) == -1);
	CHECK(event_uuid_bytes("00000000-0000-0000-0000-000000000000", got) ==
	    0 && got[0] == 0 && got[15] == 0);
}

static void
test_amount(void)
{
	static const struct {
		const char	*s;
		int64_t		 minor;
	} ok[] = {
		{ "25.00", 2500 }, { "0.10", 10 }, { "19.99", 1999 },
		{ "0", 0 }, { "25", 2500 }, { "25.5", 2550 }, { "0.01", 1 },
		{ "1000000", 100000000 }, { "1000000.00", 100000000 },
		{ "999999.99", 99999999 },
	};
	static const char *bad[] = {
		"1.234", "-1", "abc", "1e3", "", ".5", "5.", "+1", " 1", "1 ",
		"1,00", "0x10", "1000000.01", "1000001", "999999999999",
		"1234567890123", "NaN", "inf",
	};
	int64_t m;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		m = -1;
		if (event_parse_amount(ok[i].s, &m) != 0 || m != ok[i].minor) {
			fprintf(stderr, "%s:%d: \"%s\" gave %lld\n", __FILE__,
			    __LINE__, ok[i].s, (long long)m);
			failures++;
		}
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (event_parse_amount(bad[i], &m) != -1) {
			fprintf(stderr, "%s:%d: \"%s\" accepted\n", __FILE__,
			    __LINE__, bad[i]);
			failures++;
		}
}

static void
test_upcast(void)
{
	static const struct {
		const char	*amount;
		int64_t		 minor;
	} ok[] = {
		{ "\"25.00\"", 2500 }, { "\"0.10\"", 10 }, { "\"19.99\"", 1999 },
		{ "\"1000000.00\"", 100000000 },
	};
	static const char *bad[] = {
		"\"1.234\"", "\"-1\"", "\"abc\"", "\"1e3\"", "25.00", "2500",
		"null", "\"1000000.01\"",
	};
	struct event ev, back;
	char *s, *js;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		s = v1_event(ok[i].amount);
		CHECK(event_parse(s, strlen(s), &ev, NULL) == 0);
		CHECK(ev.kind == EVENT_ORDER_CREATED_V1);
		CHECK(ev.order.total == ok[i].minor && ev.order.nitems == 0);
		/* a v1 event serialises as v1 */
		js = event_serialize(&ev, NULL);
		CHECK(js != NULL && strstr(js, "\"type\":\"order.created.v1\""));
		CHECK(event_parse(js, strlen(js), &back, NULL) == 0 &&
		    back.order.total == ok[i].minor);
		free(js);
		CHECK(event_upcast_v1(&ev) == 0);
		CHECK(ev.kind == EVENT_ORDER_CREATED_V2);
		CHECK(strcmp(ev.type, "order.created.v2") == 0);
		CHECK(ev.order.total == ok[i].minor && ev.order.nitems == 1);
		CHECK(strcmp(ev.order.items[0].sku, "LEGACY") == 0);
		CHECK(ev.order.items[0].qty == 1);
		CHECK(ev.order.items[0].unit_price == ok[i].minor);
		CHECK(strcmp(ev.order.payment_method, "pm_card_visa") == 0);
		CHECK(strcmp(ev.order.email, "bo@example.com") == 0);
		CHECK(strcmp(ev.id, "e-1") == 0 && strcmp(ev.subject, "o-7") == 0);
		CHECK(event_upcast_v1(&ev) == 0 && ev.order.nitems == 1);
		/* the upcast event is a valid v2 event */
		js = event_serialize(&ev, NULL);
		event_free(&back);
		CHECK(js != NULL && event_parse(js, strlen(js), &back,
		    NULL) == 0 && back.kind == EVENT_ORDER_CREATED_V2 &&
		    back.order.total == ok[i].minor);
		free(js);
		event_free(&back);
		event_free(&ev);
		free(s);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s = v1_event(bad[i]);
		EVENT_ERR(s, "data.amount", "must be a decimal string of major "
		    "units, e.g. \"25.00\"");
		free(s);
	}
	ev.kind = EVENT_PAYMENT_PROCESSED_V1;
	CHECK(event_upcast_v1(&ev) == -1 && errno == EINVAL);
}

static void
test_types(void)
{
	const char *data = "{\"order_id\":\"o-7\"}";
	char *s;

	s = envelope("order.created.v3", "o-7", data);
	EVENT_ERR(s, "type", "unsupported version \"v3\" of event type "
	    "order.created (known: v1, v2)");
	free(s);
	s = envelope("payment.processed.v2", "o-7", data);
	EVENT_ERR(s, "type", "unsupported version \"v2\" of event type "
	    "payment.processed (known: v1)");
	free(s);
	s = envelope("order.created", "o-7", data);
	EVENT_ERR(s, "type", "event type order.created lacks a version");
	free(s);
	s = envelope("order.cancelled.v1", "o-7", data);
	EVENT_ERR(s, "type", "unknown event type \"order.cancelled.v1\"");
	free(s);
	s = envelope("x\\u0001y", "o-7", data);
	EVENT_ERR(s, "type", "unknown event type \"x?y\"");
	free(s);
	EVENT_ERR("{\"specversion\":\"1.0\",\"type\":7}", "type",
	    "must be an event type such as order.created.v2");
	EVENT_ERR("{\"specversion\":\"1.0\"}", "type", "is required");
	EVENT_ERR("{\"type\":\"order.created.v2\"}", "specversion",
	    "is required");
	EVENT_ERR("{\"specversion\":\"0.3\"}", "specversion",
	    "must be \"1.0\"");
	EVENT_ERR("[]", "", "must be a JSON object (a CloudEvent)");
	EVENT_ERR("not json", "", "invalid JSON at byte offset");
}

/*
 * A member named twice is an error only where a rule reads it, and the
 * rules meet faults in their own order, whatever the members' order.
 */
static void
test_duplicates(void)
{
	struct event ev;
	struct event_err err;
	struct order o;
	char *s, *d, *e;

	ORDER_ERR("{\"email\":\"a@example.com\",\"email\":\"b@example.com\","
	    "\"customer_id\":\"c 1\"}", "customer_id", "must be 1 to 128 "
	    "printable ASCII characters without spaces");
	ORDER_ERR("{\"currency\":\"EUR\",\"email\":\"a@example.com\","
	    "\"customer_id\":\"c-1\",\"email\":\"a@example.com\"}", "email",
	    "appears more than once");
	s = with_items("[{\"sku\":\"A\",\"qty\":1,\"unit_price\":1},"
	    "{\"qty\":1,\"sku\":\"B\",\"qty\":2,\"unit_price\":1}]");
	ORDER_ERR(s, "items[1].qty", "appears more than once");
	free(s);
	/* Read by no rule of an order: left alone, as any other member. */
	s = fmt("{\"total\":1,\"total\":2,\"x\":1,\"x\":2,%s", good + 1);
	CHECK(order_parse(s, strlen(s), &o, &err) == 0);
	order_free(&o);
	free(s);

	d = fmt("{\"order_id\":\"o-1\",\"customer_id\":\"c-1\","
	    "\"email\":\"a@example.com\",\"currency\":\"EUR\","
	    "\"items\":[{\"sku\":\"A\",\"qty\":1,\"unit_price\":5}],"
	    "\"total\":5,\"status\":\"x\",\"status\":\"y\"}");
	s = envelope("order.created.v2", "o-1", d);
	CHECK(event_parse(s, strlen(s), &ev, &err) == 0);
	event_free(&ev);
	free(s);
	/* The envelope's rules come before data's. */
	e = envelope("order.created.v2", "o-1", d);
	s = fmt("{\"time\":\"2026-11-26T10:00:00Z\",%s", e + 1);
	EVENT_ERR(s, "time", "appears more than once");
	free(s);
	s = fmt("{\"data\":{},%s", e + 1);
	EVENT_ERR(s, "data", "appears more than once");
	free(s);
	free(e);
	free(d);
	d = fmt("{\"order_id\":\"o-1\",\"payment_id\":\"p-1\","
	    "\"status\":\"approved\",\"amount\":5,\"amount\":5,"
	    "\"currency\":\"EUR\",\"customer_id\":\"c-1\","
	    "\"email\":\"a@example.com\"}");
	s = envelope("payment.processed.v1", "o-1", d);
	EVENT_ERR(s, "data.amount", "appears more than once");
	free(s);
	free(d);
}

static void
test_envelope(void)
{
	static const char *attrs[] = { "id", "source", "subject", "time",
	    "data" };
	const char *v2 = "{\"order_id\":\"o-7\",\"customer_id\":\"c\","
	    "\"email\":\"a@b.c\",\"currency\":\"EUR\",\"items\":[{\"sku\":"
	    "\"A\",\"qty\":2,\"unit_price\":150}],\"total\":300}";
	struct event ev;
	char *s, *p, *q, key[32];
	size_t i;

	s = envelope("order.created.v2", "o-7", v2);
	CHECK(event_parse(s, strlen(s), &ev, NULL) == 0);
	CHECK(ev.kind == EVENT_ORDER_CREATED_V2 && ev.order.total == 300);
	CHECK(strcmp(ev.order.payment_method, ORDER_PM_DEFAULT) == 0);
	CHECK(strcmp(ev.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-"
	    "00f067aa0ba902b7-01") == 0);
	CHECK(ev.time_ms == 1795687200000LL);
	event_free(&ev);
	/* each required attribute missing in turn */
	for (i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
		snprintf(key, sizeof(key), "\"%s\":", attrs[i]);
		CHECK((p = strstr(s, key)) != NULL);
		if (p == NULL)
			continue;
		p[1] = 'X';
		EVENT_ERR(s, attrs[i], "is required");
		p[1] = attrs[i][0];
	}
	free(s);
	s = envelope("order.created.v2", "o-8", v2);
	EVENT_ERR(s, "subject", "must equal data.order_id");
	free(s);
	s = envelope("order.created.v2", "o-7", "[]");
	EVENT_ERR(s, "data", "must be a JSON object");
	free(s);
	s = envelope("order.created.v2", "o-7", "{\"order_id\":\"o-7\","
	    "\"customer_id\":\"c\",\"email\":\"a@b.c\",\"currency\":\"EUR\","
	    "\"items\":[{\"sku\":\"A\",\"qty\":0,\"unit_price\":1}]}");
	EVENT_ERR(s, "data.items[0].qty", "must be an integer from 1 to 1000");
	free(s);
	s = envelope("order.created.v2", "o-7", "{\"customer_id\":\"c\"}");
	EVENT_ERR(s, "data.order_id", "is required");
	free(s);
	s = envelope("order.created.v2", "o-7", "{\"order_id\":\"o-7\","
	    "\"customer_id\":\"c\",\"email\":\"a@b.c\",\"currency\":\"EUR\","
	    "\"items\":[{\"sku\":\"A\",\"qty\":2,\"unit_price\":150}]}");
	EVENT_ERR(s, "data.total", "is required");
	free(s);
	s = envelope("order.created.v2", "o-7", "{\"order_id\":\"o-7\","
	    "\"customer_id\":\"c\",\"email\":\"a@b.c\",\"currency\":\"EUR\","
	    "\"items\":[{\"sku\":\"A\",\"qty\":2,\"unit_price\":150}],"
	    "\"total\":301}");
	EVENT_ERR(s, "data.total", "must equal the sum of qty * unit_price "
	    "over items (300)");
	free(s);
	s = envelope("order.created.v2", "o-7", "{\"order_id\":\"o-7\","
	    "\"customer_id\":\"c\",\"email\":\"a@b.c\",\"currency\":\"EUR\","
	    "\"items\":[{\"sku\":\"A\",\"qty\":2,\"unit_price\":150}],"
	    "\"total\":300.0}");
	EVENT_ERR(s, "data.total", "must be an integer number of minor units");
	free(s);
	/* a bad time, a bad datacontenttype, a bad traceparent (ignored) */
	s = envelope("order.created.v2", "o-7", v2);
	p = strstr(s, "2026-11-26T10");
	p[5] = '1';
	p[6] = '3';
	EVENT_ERR(s, "time", "must be an RFC 3339 time");
	p[5] = '1';
	p[6] = '1';
	q = strstr(s, "application/json");
	q[0] = 'A';
	EVENT_ERR(s, "datacontenttype", "must be \"application/json\"");
	q[0] = 'a';
	p = strstr(s, "00-4bf9");
	p[0] = 'f';
	p[1] = 'f';
	CHECK(event_parse(s, strlen(s), &ev, NULL) == 0 &&
	    ev.traceparent[0] == '\0');
	event_free(&ev);
	free(s);
	/*
	 * W3C versioning: a later version is carried on as 00, the fields
	 * it adds dropped; 00 with more fields is invalid.
	 */
	for (i = 0; i < 3; i++) {
		s = envelope_tp("order.created.v2", "o-7", i == 0 ?
		    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" :
		    i == 1 ? "7e-4bf92f3577b34da6a3ce929d0e0e4736-"
		    "00f067aa0ba902b7-03-f00" : "00-4bf92f3577b34da6a3ce929d0e0e"
		    "4736-00f067aa0ba902b7-01-f00", v2);
		CHECK(event_parse(s, strlen(s), &ev, NULL) == 0);
		CHECK(strcmp(ev.traceparent, i == 2 ? "" : "00-4bf92f3577b34da6a3"
		    "ce929d0e0e4736-00f067aa0ba902b7-01") == 0);
		event_free(&ev);
		free(s);
	}
}

static void
test_payment(void)
{
	struct order o;
	struct event cause, a, b, back;
	struct event_err err;
	char *js, *s;

	CHECK(order_parse(good, strlen(good), &o, NULL) == 0);
	CHECK(event_order_created(&cause, &o, "/orderflow/order-submit",
	    NULL) == 0);
	CHECK(event_payment_processed(&a, &cause, EVENT_PAY_APPROVED, NULL,
	    NULL, "/orderflow/pay-process") == 0);
	CHECK(event_payment_processed(&b, &cause, EVENT_PAY_APPROVED, NULL,
	    NULL, "/orderflow/pay-process") == 0);
	CHECK(strcmp(a.id, b.id) == 0 && strcmp(a.id, cause.id) != 0);
	CHECK(strcmp(a.payment.payment_id, b.payment.payment_id) == 0);
	CHECK(strncmp(a.payment.payment_id, "p-", 2) == 0);
	CHECK(strcmp(a.traceparent, cause.traceparent) == 0);
	CHECK(strcmp(a.subject, "o-1001") == 0);
	CHECK(a.kind == EVENT_PAYMENT_PROCESSED_V1);
	CHECK(a.payment.amount == 2797 && a.payment.reason[0] == '\0');
	CHECK(strcmp(a.payment.email, "ana@example.com") == 0);
	CHECK(strcmp(a.payment.customer_id, "c-42") == 0);
	js = event_serialize(&a, NULL);
	CHECK(js != NULL && strstr(js, "\"status\":\"approved\"") != NULL);
	CHECK(js != NULL && strstr(js, "\"reason\"") == NULL);
	CHECK(event_parse(js, strlen(js), &back, &err) == 0);
	CHECK(back.kind == EVENT_PAYMENT_PROCESSED_V1);
	CHECK(back.payment.status == EVENT_PAY_APPROVED);
	CHECK(strcmp(back.payment.payment_id, a.payment.payment_id) == 0);
	CHECK(strcmp(back.id, a.id) == 0 && back.payment.amount == 2797);
	free(js);
	event_free(&back);

	CHECK(event_payment_processed(&b, &cause, EVENT_PAY_DECLINED,
	    "card_declined", "pay-9", "/p") == 0);
	CHECK(strcmp(a.id, b.id) == 0);	/* one outcome per cause */
	js = event_serialize(&b, NULL);
	CHECK(js != NULL && strstr(js, "\"reason\":\"card_declined\"") != NULL);
	CHECK(event_parse(js, strlen(js), &back, &err) == 0);
	CHECK(back.payment.status == EVENT_PAY_DECLINED);
	CHECK(strcmp(back.payment.reason, "card_declined") == 0);
	CHECK(strcmp(back.payment.payment_id, "pay-9") == 0);
	free(js);
	event_free(&back);
	event_free(&b);
	event_free(&a);
	CHECK(event_payment_processed(&b, &cause, EVENT_PAY_DECLINED, NULL,
	    NULL, "/p") == -1 && errno == EINVAL);
	CHECK(event_payment_processed(&b, &a, EVENT_PAY_APPROVED, NULL, NULL,
	    "/p") == -1 && errno == EINVAL);

	s = envelope("payment.processed.v1", "o-7", "{\"order_id\":\"o-7\","
	    "\"payment_id\":\"p-1\",\"status\":\"declined\",\"amount\":5,"
	    "\"currency\":\"EUR\",\"customer_id\":\"c\",\"email\":\"a@b\"}");
	EVENT_ERR(s, "data.reason", "is required when declined");
	free(s);
	s = envelope("payment.processed.v1", "o-7", "{\"order_id\":\"o-7\","
	    "\"payment_id\":\"p-1\",\"status\":\"ok\"}");
	EVENT_ERR(s, "data.status", "must be \"approved\" or \"declined\"");
	free(s);
	s = envelope("payment.processed.v1", "o-7", "{\"order_id\":\"o-7\","
	    "\"payment_id\":\"p-1\",\"status\":\"approved\",\"amount\":\"5\"}");
	EVENT_ERR(s, "data.amount", "must be an integer number of minor units");
	free(s);
	event_free(&cause);
	order_free(&o);
}

/*
 * The text cJSON_PrintUnformatted() makes of an event, members in the
 * order event_serialize() writes them: what it wrote when it built a
 * cJSON tree, which its text must stay equal to, byte for byte.
 */
static void
ref_int(cJSON *o, const char *name, int64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld", (long long)v);
	cJSON_AddRawToObject(o, name, buf);
}

static char *
ref_serialize(const struct event *ev)
{
	const struct event_payment *p = &ev->payment;
	const struct order *o = &ev->order;
	cJSON *root, *d, *items, *it;
	char amount[32], *s;
	size_t i;

	root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "specversion", "1.0");
	cJSON_AddStringToObject(root, "id", ev->id);
	cJSON_AddStringToObject(root, "source", ev->source);
	cJSON_AddStringToObject(root, "type", event_kind_type(ev->kind));
	cJSON_AddStringToObject(root, "subject", ev->subject);
	cJSON_AddStringToObject(root, "time", ev->time);
	cJSON_AddStringToObject(root, "datacontenttype", "application/json");
	if (ev->traceparent[0] != '\0')
		cJSON_AddStringToObject(root, "traceparent", ev->traceparent);
	d = cJSON_AddObjectToObject(root, "data");
	if (ev->kind == EVENT_PAYMENT_PROCESSED_V1) {
		cJSON_AddStringToObject(d, "order_id", p->order_id);
		cJSON_AddStringToObject(d, "payment_id", p->payment_id);
		cJSON_AddStringToObject(d, "status",
		    event_pay_status_name(p->status));
		ref_int(d, "amount", p->amount);
		cJSON_AddStringToObject(d, "currency", p->currency);
		if (p->status == EVENT_PAY_DECLINED)
			cJSON_AddStringToObject(d, "reason", p->reason);
		cJSON_AddStringToObject(d, "customer_id", p->customer_id);
		cJSON_AddStringToObject(d, "email", p->email);
		if (p->payment_method[0] != '\0')
			cJSON_AddStringToObject(d, "payment_method",
			    p->payment_method);
	} else {
		cJSON_AddStringToObject(d, "order_id", o->order_id);
		cJSON_AddStringToObject(d, "customer_id", o->customer_id);
		cJSON_AddStringToObject(d, "email", o->email);
		cJSON_AddStringToObject(d, "currency", o->currency);
		if (ev->kind == EVENT_ORDER_CREATED_V1) {
			event_format_money(o->total, o->currency, amount,
			    sizeof(amount));
			cJSON_AddStringToObject(d, "amount", amount);
		} else {
			items = cJSON_AddArrayToObject(d, "items");
			for (i = 0; i < o->nitems; i++) {
				it = cJSON_CreateObject();
				cJSON_AddItemToArray(items, it);
				cJSON_AddStringToObject(it, "sku",
				    o->items[i].sku);
				ref_int(it, "qty", o->items[i].qty);
				ref_int(it, "unit_price",
				    o->items[i].unit_price);
			}
			ref_int(d, "total", o->total);
		}
		cJSON_AddStringToObject(d, "payment_method", o->payment_method);
	}
	s = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return s;
}

/*
 * event_serialize(ev) is ref_serialize(ev), byte for byte; so is
 * event_serialize_buf() into one buffer kept from call to call, which
 * starts too small and sees longer and shorter texts in turn.
 */
static void
same_text(const struct event *ev)
{
	static char *buf;
	static size_t cap;
	char *got, *want;
	size_t len, blen = 0;

	if (buf == NULL && (buf = malloc(cap = 16)) == NULL)
		abort();
	got = event_serialize(ev, &len);
	want = ref_serialize(ev);
	CHECK(got != NULL && want != NULL);
	if (got != NULL && want != NULL && (strcmp(got, want) != 0 ||
	    len != strlen(want))) {
		fprintf(stderr, "serialised:\n%s\ncJSON:\n%s\n", got, want);
		CHECK(0);
	}
	CHECK(event_serialize_buf(ev, &buf, &cap, &blen) == 0);
	CHECK(want != NULL && blen == strlen(want) && cap > blen &&
	    strcmp(buf, want) == 0);
	free(got);
	cJSON_free(want);
}

/* o with i % ORDER_ITEMS_MAX + 1 items, their skus prefix and a number. */
static void
many_items(struct order *o, int i, const char *prefix)
{
	size_t c;

	free(o->items);
	o->nitems = (size_t)(i % ORDER_ITEMS_MAX) + 1;
	if ((o->items = calloc(o->nitems, sizeof(*o->items))) == NULL)
		abort();
	for (c = 0; c < o->nitems; c++) {
		snprintf(o->items[c].sku, sizeof(o->items[c].sku), "%s%d",
		    prefix, (int)c * i);
		o->items[c].qty = (int)c + 1;
		o->items[c].unit_price = (int64_t)c * 99991 % ORDER_PRICE_MAX;
	}
	o->total = ORDER_TOTAL_MAX - i;
}

/*
 * Events of every kind and shape, with every byte from 1 to 255 in
 * their strings (the rules allow fewer, the text must not care), as
 * cJSON wrote them.
 */
static void
test_serialize_cjson(void)
{
	struct order o;
	struct event cause, ev;
	char odd[256];
	int i, n;

	for (i = 0; i < 255; i++)
		odd[i] = (char)(i + 1);
	odd[255] = '\0';
	CHECK(order_parse(good, strlen(good), &o, NULL) == 0);
	for (i = 0; i < 400; i++) {
		n = i % 7;
		CHECK(event_order_created(&cause, &o, "/orderflow/order-submit",
		    NULL) == 0);
		if (n == 1)
			cause.traceparent[0] = '\0';
		if (n == 2)
			many_items(&cause.order, i, "SKU-\"\\");
		if (n == 3) {
			cause.kind = EVENT_ORDER_CREATED_V1;
			cause.order.total = -i * 12345;
		}
		if (n == 4) {
			/* every byte but NUL, a window of it at a time */
			snprintf(cause.order.customer_id,
			    sizeof(cause.order.customer_id), "%s",
			    odd + (i * 37) % 128);
			memcpy(cause.order.email, odd,
			    sizeof(cause.order.email) - 1);
			cause.order.email[sizeof(cause.order.email) - 1] = '\0';
			snprintf(cause.source, sizeof(cause.source), "%s",
			    odd + 128);
		}
		same_text(&cause);
		CHECK(event_payment_processed(&ev, &cause, i % 2 ?
		    EVENT_PAY_DECLINED : EVENT_PAY_APPROVED,
		    "card \"declined\" \\ by issuer", i % 3 ? NULL : "p-given",
		    "/orderflow/pay-process") == 0);
		if (n == 5)
			ev.payment.payment_method[0] = '\0';
		if (n == 6)
			ev.payment.amount = INT64_MIN + i;
		if (n == 4)
			snprintf(ev.payment.reason, sizeof(ev.payment.reason),
			    "%s", odd + (i % 200));
		same_text(&ev);
		event_free(&ev);
		event_free(&cause);
	}
	order_free(&o);
}

/*
 * evavro against the generic datum it replaced: the same event written
 * through avro-c's generic values, each field set by name, gives the
 * same bytes, and avro_value_sizeof() agrees.
 */
static avro_schema_t avro_schemas[4];

static avro_schema_t
avro_schema_of(enum event_kind kind)
{
	const char *text = kind == EVENT_ORDER_CREATED_V1 ?
	    schema_order_created_v1 : kind == EVENT_ORDER_CREATED_V2 ?
	    schema_order_created_v2 : schema_payment_processed_v1;

	if (avro_schemas[kind] == NULL)
		CHECK(avro_schema_from_json_length(text, strlen(text),
		    &avro_schemas[kind]) == 0);
	return avro_schemas[kind];
}

static void
ref_str(avro_value_t *rec, const char *name, const char *v)
{
	avro_value_t f;

	CHECK(avro_value_get_by_name(rec, name, &f, NULL) == 0 &&
	    avro_value_set_string(&f, v) == 0);
}

static void
ref_long(avro_value_t *rec, const char *name, int64_t v)
{
	avro_value_t f;

	CHECK(avro_value_get_by_name(rec, name, &f, NULL) == 0 &&
	    avro_value_set_long(&f, v) == 0);
}

static void
ref_opt(avro_value_t *rec, const char *name, const char *v)
{
	avro_value_t f, b;

	CHECK(avro_value_get_by_name(rec, name, &f, NULL) == 0);
	if (v == NULL || *v == '\0')
		CHECK(avro_value_set_branch(&f, 0, &b) == 0 &&
		    avro_value_set_null(&b) == 0);
	else
		CHECK(avro_value_set_branch(&f, 1, &b) == 0 &&
		    avro_value_set_string(&b, v) == 0);
}

static void
ref_avro(avro_value_t *rec, const struct event *ev)
{
	const struct event_payment *p = &ev->payment;
	const struct order *o = &ev->order;
	avro_value_t f, it, x;
	char amount[32];
	size_t i;

	if (ev->kind == EVENT_PAYMENT_PROCESSED_V1) {
		CHECK(avro_value_get_by_name(rec, "status", &f, NULL) == 0 &&
		    avro_value_set_enum(&f, avro_schema_enum_get_by_name(
		    avro_value_get_schema(&f),
		    event_pay_status_name(p->status))) == 0);
		ref_str(rec, "order_id", p->order_id);
		ref_str(rec, "payment_id", p->payment_id);
		ref_long(rec, "amount", p->amount);
		ref_str(rec, "currency", p->currency);
		ref_opt(rec, "reason", p->status == EVENT_PAY_DECLINED ?
		    p->reason : NULL);
		ref_str(rec, "customer_id", p->customer_id);
		ref_str(rec, "email", p->email);
		ref_opt(rec, "payment_method", p->payment_method);
		return;
	}
	ref_str(rec, "order_id", o->order_id);
	ref_str(rec, "customer_id", o->customer_id);
	ref_str(rec, "email", o->email);
	ref_str(rec, "currency", o->currency);
	ref_opt(rec, "payment_method", o->payment_method);
	if (ev->kind == EVENT_ORDER_CREATED_V1) {
		event_format_money(o->total, o->currency, amount,
		    sizeof(amount));
		ref_str(rec, "amount", amount);
		return;
	}
	CHECK(avro_value_get_by_name(rec, "items", &f, NULL) == 0);
	for (i = 0; i < o->nitems; i++)
		CHECK(avro_value_append(&f, &it, NULL) == 0 &&
		    avro_value_get_by_name(&it, "sku", &x, NULL) == 0 &&
		    avro_value_set_string(&x, o->items[i].sku) == 0 &&
		    avro_value_get_by_name(&it, "qty", &x, NULL) == 0 &&
		    avro_value_set_int(&x, o->items[i].qty) == 0 &&
		    avro_value_get_by_name(&it, "unit_price", &x, NULL) == 0 &&
		    avro_value_set_long(&x, o->items[i].unit_price) == 0);
	ref_long(rec, "total", o->total);
}

/* v written into buf (cap bytes); its length, or -1. */
static int64_t
datum_bytes(avro_value_t *v, char *buf, size_t cap)
{
	avro_writer_t w = avro_writer_memory(buf, (int64_t)cap);
	int64_t n;

	n = avro_value_write(w, v) == 0 ? avro_writer_tell(w) : -1;
	avro_writer_free(w);
	return n;
}

static void
same_avro(const struct event *ev)
{
	static char a[64 * 1024], b[64 * 1024];
	avro_schema_t schema = avro_schema_of(ev->kind);
	avro_value_iface_t *iface;
	struct evavro_map m;
	struct evavro_rec rec;
	avro_value_t ref, v;
	char msg[256];
	int64_t na, nb;
	size_t size;

	CHECK(evavro_map_init(&m, schema, ev->kind, msg, sizeof(msg)) == 0);
	CHECK(evavro_value(&m, ev, &rec, &v) == 0);
	CHECK((iface = avro_generic_class_from_schema(schema)) != NULL &&
	    avro_generic_value_new(iface, &ref) == 0);
	ref_avro(&ref, ev);
	na = datum_bytes(&v, a, sizeof(a));
	nb = datum_bytes(&ref, b, sizeof(b));
	if (na < 0 || na != nb || memcmp(a, b, (size_t)na) != 0) {
		fprintf(stderr, "%s %s: evavro %lld bytes, generic %lld\n",
		    ev->type, ev->subject, (long long)na, (long long)nb);
		CHECK(na == nb && na > 0 && memcmp(a, b, (size_t)na) == 0);
	}
	CHECK(avro_value_sizeof(&v, &size) == 0 && (int64_t)size == na);
	avro_value_decref(&ref);
	avro_value_iface_decref(iface);
}

/* evavro_map_init() of schema text (which it frees) for kind. */
static int
map_of(enum event_kind kind, char *text, char *msg, size_t len)
{
	struct evavro_map m;
	avro_schema_t s;
	int rc = -2;

	if (avro_schema_from_json_length(text, strlen(text), &s) == 0) {
		rc = evavro_map_init(&m, s, kind, msg, len);
		avro_schema_decref(s);
	}
	CHECK(rc != -2);
	free(text);
	return rc;
}

static void
test_evavro(void)
{
	static const char head[] = "{\"type\":\"record\",\"name\":\"P\","
	    "\"fields\":[";
	struct order o;
	struct event cause, ev;
	struct evavro_map m;
	struct evavro_rec rec;
	avro_value_t v;
	char msg[256];
	int i, n;

	CHECK(order_parse(good, strlen(good), &o, NULL) == 0);
	for (i = 0; i < 200; i++) {
		n = i % 6;
		CHECK(event_order_created(&cause, &o, "/orderflow/order-submit",
		    NULL) == 0);
		if (n == 1)
			cause.order.payment_method[0] = '\0';
		if (n == 2)
			many_items(&cause.order, i, "SKU-\xc3\xa9-");
		if (n == 3) {
			cause.kind = EVENT_ORDER_CREATED_V1;
			cause.order.total = -i * 12345;
		}
		same_avro(&cause);
		CHECK(event_payment_processed(&ev, &cause, i % 2 ?
		    EVENT_PAY_DECLINED : EVENT_PAY_APPROVED,
		    "card declined by issuer", i % 3 ? NULL : "p-given",
		    "/orderflow/pay-process") == 0);
		if (n == 4)
			ev.payment.payment_method[0] = '\0';
		if (n == 5)
			ev.payment.amount = INT64_MIN + i;
		same_avro(&ev);
		/* a map is for one kind */
		CHECK(evavro_map_init(&m, avro_schema_of(ev.kind),
		    ev.kind, msg, sizeof(msg)) == 0);
		CHECK(evavro_value(&m, &cause, &rec, &v) == -1 &&
		    errno == EINVAL);
		event_free(&ev);
		event_free(&cause);
	}
	order_free(&o);

	/* Schemas that do not fit the kind are refused, saying why. */
	CHECK(evavro_map_init(&m, avro_schema_of(EVENT_ORDER_CREATED_V2),
	    EVENT_ORDER_CREATED_V1, msg, sizeof(msg)) == -1 &&
	    strstr(msg, "field items") != NULL);
	CHECK(map_of(EVENT_ORDER_CREATED_V1, fmt("%s%s", head,
	    "{\"name\":\"order_id\",\"type\":\"string\"}]}"), msg,
	    sizeof(msg)) == -1 && strstr(msg, "no field customer_id") != NULL);
	CHECK(map_of(EVENT_ORDER_CREATED_V1, fmt("%s%s", head,
	    "{\"name\":\"order_id\",\"type\":\"long\"}]}"), msg,
	    sizeof(msg)) == -1 &&
	    strstr(msg, "field order_id: not a string") != NULL);
	CHECK(map_of(EVENT_PAYMENT_PROCESSED_V1, fmt("%s%s", head,
	    "{\"name\":\"status\",\"type\":{\"type\":\"enum\","
	    "\"name\":\"S\",\"symbols\":[\"approved\"]}}]}"), msg,
	    sizeof(msg)) == -1 && strstr(msg, "field status") != NULL);
	CHECK(map_of(EVENT_ORDER_CREATED_V2, fmt("%s%s", head,
	    "{\"name\":\"items\",\"type\":{\"type\":\"array\","
	    "\"items\":{\"type\":\"record\",\"name\":\"I\",\"fields\":["
	    "{\"name\":\"sku\",\"type\":\"string\"},"
	    "{\"name\":\"qty\",\"type\":\"long\"},"
	    "{\"name\":\"unit_price\",\"type\":\"long\"}]}}}]}"), msg,
	    sizeof(msg)) == -1 && strstr(msg, "field items") != NULL);
	CHECK(map_of(EVENT_ORDER_CREATED_V1, fmt("%s%s", head,
	    "{\"name\":\"payment_method\",\"type\":[\"string\","
	    "\"null\"]}]}"), msg, sizeof(msg)) == -1 &&
	    strstr(msg, "field payment_method") != NULL);
	for (i = 1; i < 4; i++)
		if (avro_schemas[i] != NULL) {
			avro_schema_decref(avro_schemas[i]);
			avro_schemas[i] = NULL;
		}
}

/*
 * ev in evpack.h's form 2 (cause may be NULL): read back, it serializes
 * to the same JSON text; every shorter prefix, and the form with a byte
 * more, is refused.  Returns the form's length.
 */
static size_t
evpack_same(const struct event *ev, const struct evpack_cause *cause)
{
	unsigned char buf[EVPACK_MAX + 1];
	struct event back;
	char *a, *b;
	size_t i, n;

	n = evpack_encode(ev, cause, buf);
	CHECK(n > 0 && n <= EVPACK_MAX && evpack_is(buf, n) &&
	    buf[0] == EVPACK_MAGIC2);
	CHECK(evpack_decode(buf, n, &back) == 0);
	a = event_serialize(ev, NULL);
	b = event_serialize(&back, NULL);
	CHECK(a != NULL && b != NULL && strcmp(a, b) == 0);
	CHECK(back.time_ms == ev->time_ms &&
	    back.kind == EVENT_PAYMENT_PROCESSED_V1);
	free(a);
	free(b);
	for (i = 0; i < n; i++)
		CHECK(evpack_decode(buf, i, &back) == -1 && errno == EBADMSG);
	buf[n] = 'x';
	CHECK(evpack_decode(buf, n + 1, &back) == -1);
	return n;
}

/* Damages byte off of ev's form 2 to v: refused. */
static void
evpack_damaged(const struct event *ev, const struct evpack_cause *cause,
    size_t off, unsigned char v)
{
	unsigned char buf[EVPACK_MAX];
	struct event back;
	size_t n;

	n = evpack_encode(ev, cause, buf);
	CHECK(off < n);
	buf[off] = v;
	CHECK(evpack_decode(buf, n, &back) == -1 && errno == EBADMSG);
}

/*
 * ev in form 1, as pay-process wrote it before form 2 (evpack.h): every
 * string with a 2-byte length.  Written here from the form's definition.
 */
static size_t
evpack_form1(const struct event *ev, unsigned char *buf)
{
	const char *s[] = { ev->id, ev->source, ev->subject, ev->time,
	    ev->traceparent, ev->payment.order_id, ev->payment.payment_id,
	    ev->payment.currency, ev->payment.reason,
	    ev->payment.customer_id, ev->payment.email,
	    ev->payment.payment_method };
	size_t i, n, len = 0;
	int j;

	buf[len++] = EVPACK_MAGIC;
	buf[len++] = (unsigned char)ev->payment.status;
	for (j = 56; j >= 0; j -= 8)
		buf[len++] = (unsigned char)((uint64_t)ev->payment.amount >> j);
	for (i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		n = strlen(s[i]);
		buf[len++] = (unsigned char)(n >> 8);
		buf[len++] = (unsigned char)n;
		memcpy(buf + len, s[i], n);
		len += n;
	}
	return len;
}

static void
test_evpack(void)
{
	unsigned char buf[EVPACK_MAX];
	struct order o;
	struct event cause, ev, back;
	struct evpack_cause derived, given;
	const char *json = "{\"specversion\":\"1.0\"}";
	size_t n, off;

	CHECK(order_parse(good, strlen(good), &o, NULL) == 0);
	CHECK(event_order_created(&cause, &o, "/orderflow/order-submit",
	    NULL) == 0);
	derived.id = given.id = cause.id;
	derived.payment_id_derived = 1;
	given.payment_id_derived = 0;
	errno = 0;
	CHECK(evpack_encode(&cause, NULL, buf) == 0 && errno == EINVAL);
	CHECK(!evpack_is(json, strlen(json)) && !evpack_is(json, 0));

	/*
	 * pay-process's payment: the ids derived from the cause, its source,
	 * its own time and the order's traceparent all in short form; the
	 * strings left are the order id, the currency, the (empty) reason,
	 * the customer, the email and the payment method, each after a
	 * 1-byte length.
	 */
	CHECK(event_payment_processed(&ev, &cause, EVENT_PAY_APPROVED, NULL,
	    NULL, EVPACK_SOURCE) == 0);
	n = evpack_same(&ev, &derived);
	CHECK(n == 11 + 16 + 8 + 25 + 1 + strlen("o-1001") + 1 + 3 + 1 +
	    1 + strlen("c-42") + 1 + strlen("ana@example.com") + 1 +
	    strlen("pm_card_visa"));
	CHECK(n < evpack_form1(&ev, buf) / 2);
	/* Nothing vouched for, or a cause that is no UUID: ids kept. */
	CHECK(evpack_same(&ev, NULL) == n - 16 + 1 + 36 + 1 + 38);
	given.id = "order-event-7";
	CHECK(evpack_same(&ev, &given) == n - 16 + 1 + 36 + 1 + 38);
	given.id = "6BA7B810-9DAD-11D1-80B4-00C04FD430C8";	/* not lower */
	CHECK(evpack_same(&ev, &given) == n - 16 + 1 + 36 + 1 + 38);
	given.id = cause.id;
	/* A source, a time or a traceparent of another form: as text. */
	snprintf(ev.source, sizeof(ev.source), "/elsewhere");
	CHECK(evpack_same(&ev, &derived) == n + 2 + strlen("/elsewhere"));
	snprintf(ev.source, sizeof(ev.source), "%s", EVPACK_SOURCE);
	snprintf(ev.time, sizeof(ev.time), "2026-11-26T10:00:00+00:00");
	ev.time_ms = util_rfc3339_parse(ev.time);
	CHECK(evpack_same(&ev, &derived) == n - 8 + 1 + strlen(ev.time));
	ev.traceparent[0] = '\0';
	CHECK(evpack_same(&ev, &derived) == n - 8 + 1 + strlen(ev.time) -
	    25 + 1);
	ev.payment.payment_method[0] = '\0';
	evpack_same(&ev, &derived);
	/* A declined payment with a gateway's id: the id derived alone. */
	CHECK(event_payment_processed(&ev, &cause, EVENT_PAY_DECLINED,
	    "card \"declined\" \\ by issuer", "p-given",
	    EVPACK_SOURCE) == 0);
	evpack_same(&ev, &given);
	CHECK(evpack_decode(buf, evpack_encode(&ev, &given, buf),
	    &back) == 0 && strcmp(back.payment.payment_id, "p-given") == 0 &&
	    strcmp(back.id, ev.id) == 0);
	/* Every string at its limit. */
	memset(ev.id, 'i', EVENT_ID_MAX);
	memset(ev.source, 's', EVENT_SOURCE_MAX);
	memset(ev.subject, 'o', ORDER_ID_MAX);
	memset(ev.payment.order_id, 'o', ORDER_ID_MAX);
	memset(ev.payment.payment_id, 'p', ORDER_ID_MAX);
	memset(ev.payment.reason, 'r', EVENT_REASON_MAX);
	memset(ev.payment.customer_id, 'c', ORDER_CUSTOMER_MAX);
	memset(ev.payment.email, 'e', ORDER_EMAIL_MAX);
	memset(ev.payment.payment_method, 'm', ORDER_PM_MAX);
	ev.payment.amount = ORDER_TOTAL_MAX;
	evpack_same(&ev, NULL);
	memset(ev.subject, 'S', ORDER_ID_MAX);
	evpack_same(&ev, NULL);
	CHECK(evpack_form1(&ev, buf) <= EVPACK_MAX);

	/* Form 1, as written before form 2, reads back the same. */
	CHECK(event_payment_processed(&ev, &cause, EVENT_PAY_APPROVED, NULL,
	    NULL, EVPACK_SOURCE) == 0);
	{
		char *want = event_serialize(&ev, NULL), *got;

		n = evpack_form1(&ev, buf);
		CHECK(evpack_is(buf, n) && evpack_decode(buf, n, &back) == 0);
		got = event_serialize(&back, NULL);
		CHECK(want != NULL && got != NULL && strcmp(want, got) == 0);
		free(got);
		CHECK(evpack_decode(buf, n - 1, &back) == -1);
		free(want);
	}

	/*
	 * The magic, the status, the amount, the flags (one unknown; the
	 * payment id derived with no cause), the order id's length, a NUL.
	 */
	evpack_damaged(&ev, &derived, 0, '{');
	evpack_damaged(&ev, &derived, 1, 3);
	evpack_damaged(&ev, &derived, 2, 0xff);
	evpack_damaged(&ev, &derived, 10, 0x7f);
	evpack_damaged(&ev, NULL, 10, 0x02 | 0x04);
	evpack_damaged(&ev, &derived, 11 + 16, 0x01);	/* past year 9999 */
	off = 11 + 16 + 8 + 25;			/* the order id's length */
	evpack_damaged(&ev, &derived, off, 0xff);
	evpack_damaged(&ev, &derived, off + 1, '\0');
	/* The time in form 1, its text unreadable. */
	n = evpack_form1(&ev, buf);
	off = 10 + 2 + strlen(ev.id) + 2 + strlen(ev.source) + 2 +
	    strlen(ev.subject) + 2;
	buf[off] = 'x';
	CHECK(evpack_decode(buf, n, &back) == -1 && errno == EBADMSG);

	/* As JSON text: the form serialized; an older JSON record as is. */
	{
		char *want = event_serialize(&ev, NULL), *got;

		n = evpack_encode(&ev, &derived, buf);
		got = evpack_text(buf, n);
		CHECK(want != NULL && got != NULL && strcmp(want, got) == 0);
		free(got);
		got = evpack_text(want, strlen(want));
		CHECK(got != NULL && got != want && strcmp(want, got) == 0);
		free(got);
		errno = 0;
		CHECK(evpack_text(buf, n - 1) == NULL && errno == EBADMSG);
		free(want);
	}
	event_free(&ev);
	event_free(&cause);
	order_free(&o);
}

static void
test_format(void)
{
	char buf[32];

	event_format_money(2500, "EUR", buf, sizeof(buf));
	CHECK(strcmp(buf, "25.00") == 0);
	event_format_money(5, "EUR", buf, sizeof(buf));
	CHECK(strcmp(buf, "0.05") == 0);
	event_format_money(-50, "EUR", buf, sizeof(buf));
	CHECK(strcmp(buf, "-0.50") == 0);
	event_format_money(0, "EUR", buf, sizeof(buf));
	CHECK(strcmp(buf, "0.00") == 0);
	event_format_money(INT64_MIN, "EUR", buf, sizeof(buf));
	CHECK(strcmp(buf, "-92233720368547758.08") == 0);
	CHECK(event_format_money(123456, "EUR", buf, 4) == 7 &&
	    strcmp(buf, "123") == 0);
}

static void
test_trace(void)
{
	static const char *bad[] = {
		"", "00", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
		"0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7--1",
		"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
	};
	char a[TRACEPARENT_LEN + 1], b[TRACEPARENT_LEN + 1];
	char id[TRACE_ID_LEN + 1];
	size_t i;

	CHECK(trace_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-"
	    "00f067aa0ba902b7-01"));
	CHECK(trace_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-"
	    "00f067aa0ba902b7-00"));
	/* Version 00 is what orderflow carries: trace_parse() turns others. */
	CHECK(!trace_valid("01-4bf92f3577b34da6a3ce929d0e0e4736-"
	    "00f067aa0ba902b7-01"));
	CHECK(!trace_valid(NULL));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (trace_valid(bad[i])) {
			fprintf(stderr, "%s:%d: valid: %s\n", __FILE__,
			    __LINE__, bad[i]);
			failures++;
		}
	for (i = 0; i < 100; i++) {
		trace_generate(a);
		trace_generate(b);
		CHECK(trace_valid(a) && trace_valid(b));
		CHECK(strcmp(a, b) != 0);
		CHECK(strncmp(a, "00-", 3) == 0 &&
		    strcmp(a + 52, "-01") == 0);
	}
	CHECK(trace_id_of(a, id) == 0 && strlen(id) == TRACE_ID_LEN &&
	    strncmp(id, a + 3, TRACE_ID_LEN) == 0);
	CHECK(trace_id_of("00-4bf92f3577b34da6a3ce929d0e0e4736-"
	    "00f067aa0ba902b7-01", id) == 0 &&
	    strcmp(id, "4bf92f3577b34da6a3ce929d0e0e4736") == 0);
	CHECK(trace_id_of(bad[5], id) == -1);
}

/* W3C Trace Context, "Versioning of traceparent". */
static void
test_trace_parse(void)
{
	static const char *bad[] = {
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
		"01-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"1-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-a",
		"01-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
		"", "01",
	};
	static const struct {
		const char	*in;
		const char	*out;
	} good[] = {
		{ "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
		{ "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
		  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00" },
		{ "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
		{ "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-"
		  "what-the-future-will-be-like",
		  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
		{ "fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe-",
		  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00" },
		{ "02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02",
		  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00" },
	};
	char out[TRACEPARENT_LEN + 1];
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		memset(out, 'x', sizeof(out));
		if (trace_parse(good[i].in, out) != 0 ||
		    strcmp(out, good[i].out) != 0 || !trace_valid(out)) {
			fprintf(stderr, "%s:%d: %s: got \"%s\"\n", __FILE__,
			    __LINE__, good[i].in, out);
			failures++;
		}
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(out, 'x', sizeof(out));
		if (trace_parse(bad[i], out) != -1 || out[0] != '\0') {
			fprintf(stderr, "%s:%d: parsed: %s\n", __FILE__,
			    __LINE__, bad[i]);
			failures++;
		}
	}
	CHECK(trace_parse(NULL, out) == -1 && out[0] == '\0');
}

/* Parses and builds in a thread of its own, which then exits. */
static void *
jsonmem_thread(void *arg)
{
	struct order o;
	struct event_err err;
	int *ok = arg;

	*ok = order_parse(good, strlen(good), &o, &err) == 0 &&
	    jsonmem_used() == 0;
	order_free(&o);
	return NULL;
}

/* 100 items whose SKUs are 64 quotes each, written \" in JSON. */
static void
big_event(void)
{
	struct order o;
	struct event ev, back;
	struct event_err err;
	char *s;
	size_t i, len = 0;

	memset(&o, 0, sizeof(o));
	strcpy(o.order_id, "o-big");
	strcpy(o.customer_id, "c-1");
	strcpy(o.email, "ana@example.com");
	strcpy(o.currency, "EUR");
	strcpy(o.payment_method, "pm_card_visa");
	if ((o.items = calloc(ORDER_ITEMS_MAX, sizeof(*o.items))) == NULL)
		abort();
	o.nitems = ORDER_ITEMS_MAX;
	for (i = 0; i < o.nitems; i++) {
		memset(o.items[i].sku, '"', ORDER_SKU_MAX);
		o.items[i].qty = 1;
		o.items[i].unit_price = 1;
	}
	o.total = ORDER_ITEMS_MAX;
	CHECK(event_order_created(&ev, &o, "/test", NULL) == 0);
	s = event_serialize(&ev, &len);
	CHECK(s != NULL && len > 16384 && strlen(s) == len);
	CHECK(s != NULL && event_parse(s, len, &back, &err) == 0);
	CHECK(back.order.nitems == ORDER_ITEMS_MAX &&
	    strcmp(back.order.items[99].sku, o.items[99].sku) == 0);
	CHECK(jsonmem_used() == 0);
	event_free(&back);
	event_free(&ev);
	order_free(&o);
	free(s);
}

static void
test_jsonmem(void)
{
	struct order o;
	struct event ev;
	struct event_err err;
	cJSON *before, *a, *b, *big;
	size_t m1, m2, used;
	pthread_t th;
	char *s, *t;
	int ok = 0;

	/* Made outside a scope, freed inside one: plain malloc and free. */
	before = cJSON_CreateString("before");
	m1 = jsonmem_begin();
	CHECK(m1 == 0);
	a = cJSON_CreateObject();
	CHECK(a != NULL && jsonmem_used() > m1);
	cJSON_Delete(before);
	/* Nested: the inner end takes back only what the inner made. */
	used = jsonmem_used();
	m2 = jsonmem_begin();
	CHECK(m2 == used);
	b = cJSON_CreateString("inner");
	CHECK(b != NULL && jsonmem_used() > m2);
	cJSON_Delete(b);
	jsonmem_end(m2);
	CHECK(jsonmem_used() == used);
	/* Too big for the arena: malloc, freed by cJSON_free() alike. */
	big = cJSON_CreateString("x");
	if ((s = malloc(JSONMEM_ARENA + 1)) == NULL)
		abort();
	memset(s, 'y', JSONMEM_ARENA);
	s[JSONMEM_ARENA] = '\0';
	CHECK(big != NULL && cJSON_SetValuestring(big, s) != NULL);
	CHECK(jsonmem_used() < JSONMEM_ARENA);
	CHECK(cJSON_AddItemToObject(a, "big", big));
	t = cJSON_PrintUnformatted(a);
	CHECK(t != NULL && strlen(t) == JSONMEM_ARENA + 10);
	cJSON_free(t);
	free(s);
	cJSON_Delete(a);
	jsonmem_end(m1);
	CHECK(jsonmem_used() == 0);

	/*
	 * A tree made whole in a scope goes with it, unwalked; one with a
	 * block from malloc is deleted (LeakSanitizer would say otherwise).
	 */
	m1 = jsonmem_begin();
	a = cJSON_CreateObject();
	CHECK(a != NULL && cJSON_AddStringToObject(a, "k", "v") != NULL);
	CHECK(jsonmem_used() > m1);
	jsonmem_end_tree(m1, a);
	CHECK(jsonmem_used() == 0);
	m1 = jsonmem_begin();
	a = cJSON_CreateObject();
	if ((s = malloc(JSONMEM_ARENA + 1)) == NULL)
		abort();
	memset(s, 'z', JSONMEM_ARENA);
	s[JSONMEM_ARENA] = '\0';
	CHECK(a != NULL && cJSON_AddStringToObject(a, "big", s) != NULL);
	free(s);
	m2 = jsonmem_begin();
	b = cJSON_CreateString("inner, made after the spill");
	jsonmem_end_tree(m2, b);
	CHECK(jsonmem_used() == m2);
	jsonmem_end_tree(m1, a);
	CHECK(jsonmem_used() == 0);
	jsonmem_end_tree(jsonmem_begin(), NULL);
	CHECK(jsonmem_used() == 0);

	/* event.c's own scopes are closed when it returns. */
	CHECK(order_parse(good, strlen(good), &o, &err) == 0);
	CHECK(jsonmem_used() == 0);
	CHECK(event_order_created(&ev, &o, "/test", NULL) == 0);
	s = event_serialize(&ev, NULL);
	CHECK(s != NULL && jsonmem_used() == 0);
	event_free(&ev);
	CHECK(s != NULL && event_parse(s, strlen(s), &ev, &err) == 0);
	CHECK(jsonmem_used() == 0 && strcmp(ev.subject, "o-1001") == 0);
	event_free(&ev);
	free(s);
	order_free(&o);
	/* The largest events print past the 16 KiB buffer, outside cJSON. */
	big_event();
	/* A thread's arena goes with it (LeakSanitizer would say). */
	CHECK(pthread_create(&th, NULL, jsonmem_thread, &ok) == 0);
	CHECK(pthread_join(th, NULL) == 0 && ok);
}

static const struct unit_test tests[] = {
	{ "valid", test_valid },
	{ "defaults", test_defaults },
	{ "rules", test_rules },
	{ "qty", test_qty },
	{ "money", test_money },
	{ "strict", test_strict },
	{ "nesting", test_nesting },
	{ "generated", test_generated },
	{ "sameid", test_sameid },
	{ "derive", test_derive },
	{ "derive_libuuid", test_derive_libuuid },
	{ "uuid_bytes", test_uuid_bytes },
	{ "amount", test_amount },
	{ "upcast", test_upcast },
	{ "types", test_types },
	{ "duplicates", test_duplicates },
	{ "envelope", test_envelope },
	{ "payment", test_payment },
	{ "serialize_cjson", test_serialize_cjson },
	{ "evpack", test_evpack },
	{ "evavro", test_evavro },
	{ "format", test_format },
	{ "trace", test_trace },
	{ "trace_parse", test_trace_parse },
	{ "jsonmem", test_jsonmem },
};

int
main(int argc, char *argv[])
{
	return unit_main("event_test", tests, argc, argv);
}
