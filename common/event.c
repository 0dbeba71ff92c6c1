/*
 * event.c - orders and CloudEvents: parse, check, build, serialise,
 * upcast, derived ids and W3C traceparent.
 *
 * JSON is parsed by cJSON, which keeps every number as a double and so
 * cannot tell 1250 from 1250.0 or 1.25e3.  json_parse() therefore walks
 * the parsed tree and the source text side by side: number literals occur
 * in the text in the same order as number nodes in a pre-order walk of
 * the tree, so the n-th literal is the n-th node.  A node whose literal
 * has a fraction or an exponent gets the value NaN, which JSON cannot
 * write, and every integer check here rejects NaN.  The same pass rejects
 * what cJSON lets through but JSON forbids in strings: control characters
 * and \u0000 (which would silently cut a C string short).
 *
 * It stays one file, longer than most: orders and every event type go
 * through one validator, whose number-aware parser, string rules and
 * error paths (errf(), err_in_item()) every parse and check here shares.
 */
#include <sys/random.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
/*
 * SHA-1 through OpenSSL's low-level interface, deprecated in 3.0 but
 * still built by every distribution: the EVP one costs an allocation
 * and a provider lookup per digest, more than hashing 70 bytes does.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <uuid/uuid.h>

#include "event.h"
#include "flow.h"
#include "jsonmem.h"
#include "util.h"

/*
 * orderflow's namespace for name-based UUIDs (RFC 4122 version 5).  Never
 * change it: every derived id, and so every duplicate check downstream,
 * depends on it.
 */
static const uuid_t event_ns = {
	0x76, 0xd3, 0x21, 0x67, 0x2e, 0xc2, 0x4e, 0x98,
	0xa2, 0x03, 0x30, 0x97, 0xcf, 0x8d, 0x41, 0xda
};

#define PURPOSE_MAX	64
#define LEGACY_SKU	"LEGACY"
#define PRINT_MAX	(64 * 1024 * 1024)	/* the largest event printed */

/*
 * The character classes of the rules, as bits of a table indexed by the
 * byte: a check costs a load, not a call per character.
 */
#define C_IDENT	0x01	/* A-Z a-z 0-9 . _ : - */
#define C_GRAPH	0x02	/* printable ASCII but space */
#define C_PRINT	0x04	/* printable ASCII */
#define C_UPPER	0x08	/* A-Z */

#define C_ID	(C_IDENT | C_GRAPH | C_PRINT)
#define C_GR	(C_GRAPH | C_PRINT)

static const unsigned char cclass[256] = {
	[' '] = C_PRINT,
	['!' ... ','] = C_GR,
	['-' ... '.'] = C_ID,
	['/'] = C_GR,
	['0' ... ':'] = C_ID,
	[';' ... '@'] = C_GR,
	['A' ... 'Z'] = C_ID | C_UPPER,
	['[' ... '^'] = C_GR,
	['_'] = C_ID,
	['`'] = C_GR,
	['a' ... 'z'] = C_ID,
	['{' ... '~'] = C_GR,
};

/* A string rule: 1..max characters of a class, and maybe more checks. */
struct rule {
	size_t	 max;
	unsigned char cls;	/* C_* */
	int	(*extra)(const char *);
	const char *msg;
};

static int	email_ok(const char *);
static int	currency_ok(const char *);

static const struct rule r_order_id = { ORDER_ID_MAX, C_IDENT, NULL,
	"must be 1 to 128 characters of A-Z a-z 0-9 . _ : -" };
static const struct rule r_customer = { ORDER_CUSTOMER_MAX, C_GRAPH, NULL,
	"must be 1 to 128 printable ASCII characters without spaces" };
static const struct rule r_email = { ORDER_EMAIL_MAX, C_GRAPH, email_ok,
	"must be an email address like ana@example.com "
	"(at most 254 characters)" };
static const struct rule r_currency = { 3, C_UPPER, currency_ok,
	"must be 3 capital letters A-Z, e.g. EUR" };
static const struct rule r_sku = { ORDER_SKU_MAX, C_GRAPH, NULL,
	"must be 1 to 64 printable ASCII characters without spaces" };
static const struct rule r_pm = { ORDER_PM_MAX, C_IDENT, NULL,
	"must be 1 to 64 characters of A-Z a-z 0-9 . _ : -" };
static const struct rule r_event_id = { EVENT_ID_MAX, C_GRAPH, NULL,
	"must be 1 to 128 printable ASCII characters without spaces" };
static const struct rule r_source = { EVENT_SOURCE_MAX, C_GRAPH, NULL,
	"must be 1 to 256 printable ASCII characters without spaces" };
static const struct rule r_reason = { EVENT_REASON_MAX, C_PRINT, NULL,
	"must be 1 to 128 printable ASCII characters" };

static const char msg_qty[] = "must be an integer from 1 to 1000";
static const char msg_money[] = "must be an integer number of minor units";

static const struct {
	const char	*type;
	enum event_kind	 kind;
} kinds[] = {
	{ EVENT_TYPE_ORDER_CREATED_V1, EVENT_ORDER_CREATED_V1 },
	{ EVENT_TYPE_ORDER_CREATED_V2, EVENT_ORDER_CREATED_V2 },
	{ EVENT_TYPE_PAYMENT_PROCESSED_V1, EVENT_PAYMENT_PROCESSED_V1 },
};

static const struct {
	const char	*base;
	const char	*versions;
} bases[] = {
	{ "order.created", "v1, v2" },
	{ "payment.processed", "v1" },
};

static int
currency_ok(const char *s)
{
	return strlen(s) == 3;
}

/*
 * Plausible, not RFC 5322: one "@", a local part of 1..64 characters
 * without quotes, brackets or separators, a domain of letters, digits,
 * dots and hyphens that neither starts nor ends with a dot or has two in a
 * row.  No dot is required in the domain.
 */
static int
email_ok(const char *s)
{
	const char *at, *d;

	if ((at = strchr(s, '@')) == NULL || strchr(at + 1, '@') != NULL)
		return 0;
	if (at == s || at - s > 64 || at[1] == '\0')
		return 0;
	if (strpbrk(s, "\"\\()<>[],;:") != NULL)
		return 0;
	for (d = at + 1; *d != '\0'; d++) {
		if (!((*d >= 'A' && *d <= 'Z') || (*d >= 'a' && *d <= 'z') ||
		    (*d >= '0' && *d <= '9') || *d == '-' || *d == '.'))
			return 0;
		if (*d == '.' && (d == at + 1 || d[1] == '\0' || d[1] == '.'))
			return 0;
	}
	return 1;
}

static int
rule_ok(const struct rule *r, const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if (n >= r->max || !(cclass[(unsigned char)s[n]] & r->cls))
			return 0;
	return n > 0 && (r->extra == NULL || r->extra(s));
}

/*
 * Reports a broken rule at path pfx + field; an empty field names the
 * object pfx itself ("items[0]", or "" for the whole input).  Returns -1.
 */
static int __attribute__((format(printf, 4, 5)))
errf(struct event_err *err, const char *pfx, const char *field,
    const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (err == NULL)
		return -1;
	snprintf(err->field, sizeof(err->field), "%s%s", pfx, field);
	n = strlen(err->field);
	if (*field == '\0' && n > 0 && err->field[n - 1] == '.')
		err->field[n - 1] = '\0';
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	if (err->field[0] == '\0')
		snprintf(err->text, sizeof(err->text), "%s", err->msg);
	else
		snprintf(err->text, sizeof(err->text), "%s: %s", err->field,
		    err->msg);
	return -1;
}

static void
err_clear(struct event_err *err)
{
	if (err != NULL)
		memset(err, 0, sizeof(*err));
}

/* A cursor over JSON text that cJSON accepted, from number to number. */
struct numscan {
	const char	*p;
	const char	*end;
	const char	*bad;	/* a control character or \u0000 in a string */
};

/* Bytes a string holds as they are: not '"', '\\' nor a control. */
static const unsigned char str_plain[256] = {
	[0x20 ... 0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0xff] = 1
};

/*
 * The bytes of x (little-endian) that are not plain, '"', '\\' or below
 * 0x20, each as its top bit: the tests for a zero byte and for a byte
 * below n (n <= 128) from "Bit Twiddling Hacks".  A borrow can mark a
 * byte above a marked one, never below, so the lowest mark is exact.
 */
static uint64_t
word_special(uint64_t x)
{
	const uint64_t ones = UINT64_C(0x0101010101010101);
	uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');

	return (((q - ones) & ~q) | ((b - ones) & ~b) |
	    ((x - ones * 0x20) & ~x)) & (ones * 0x80);
}

/*
 * The first byte from p on that is not plain, or end.  Most of an event's
 * text is in strings, read here a word at a time: pay-process's scan of
 * a payment's event from 4,300 to 3,500 instructions (callgrind; the
 * strings are short, so not more).
 */
static const unsigned char *
skip_plain(const unsigned char *p, const unsigned char *end)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint64_t x, m;

	for (; end - p >= 8; p += 8) {
		memcpy(&x, p, sizeof(x));
		if ((m = word_special(x)) != 0)
			return p + __builtin_ctzll(m) / 8;
	}
#endif
	while (p < end && str_plain[*p])
		p++;
	return p;
}

/*
 * Skips a string whose opening quote is at p; returns where its closing
 * quote is, or end.  Notes the first control character or \u0000.
 */
static const unsigned char *
numscan_string(struct numscan *s, const unsigned char *p,
    const unsigned char *end)
{
	for (p++; (p = skip_plain(p, end)) < end; p++) {
		if (*p == '"')
			break;
		if (*p == '\\') {
			if (end - p > 1) {
				if (end - p >= 6 && s->bad == NULL &&
				    memcmp(p + 1, "u0000", 5) == 0)
					s->bad = (const char *)p;
				p++;
			}
		} else if (s->bad == NULL)
			s->bad = (const char *)p;
	}
	return p;
}

/*
 * Skips to the next number literal outside strings and past it.  Returns
 * 1 if it was written as an integer, 0 if with a fraction or exponent,
 * -1 at the end of the text.
 */
static int
numscan_next(struct numscan *s)
{
	const unsigned char *p = (const unsigned char *)s->p;
	const unsigned char *end = (const unsigned char *)s->end;
	int integral = 1;

	for (; p < end; p++) {
		if (*p == '"') {
			if ((p = numscan_string(s, p, end)) >= end)
				break;
		} else if (*p == '-' || (*p >= '0' && *p <= '9'))
			break;
	}
	if (p >= end) {
		s->p = s->end;
		return -1;
	}
	for (; p < end; p++) {
		if (*p == '.' || *p == 'e' || *p == 'E')
			integral = 0;
		else if (*p != '+' && *p != '-' && !(*p >= '0' && *p <= '9'))
			break;
	}
	s->p = (const char *)p;
	return integral;
}

/*
 * Scans the whole text: how many numbers in it have a fraction or an
 * exponent.  Most events have none, and then the tree need not be walked.
 */
static int
numscan_fractions(struct numscan *s)
{
	int r, n = 0;

	while ((r = numscan_next(s)) != -1)
		if (r == 0)
			n++;
	return n;
}

static void
mark_fractions(cJSON *item, struct numscan *s)
{
	for (; item != NULL; item = item->next) {
		if (cJSON_IsNumber(item)) {
			if (numscan_next(s) != 1)
				item->valuedouble = NAN;
		} else if (item->child != NULL)
			mark_fractions(item->child, s);
	}
}

/*
 * For json_path_at(): one open object or array on the way to a byte.
 * key is the member being read (keylen bytes, as written), or NULL
 * between members; idx counts an array's elements; done: the member's or
 * element's value has ended.
 */
struct path_frame {
	const char	*key;
	size_t		 keylen;
	int		 idx;
	int		 is_array;
	int		 done;
};

#define PATH_DEPTH	32	/* deeper: the path is not worked out */

/*
 * Writes to path (len bytes) the JSON path ("items[0].sku") of the value
 * that byte off of buf is in, or "" for the whole input; buf is JSON text
 * cJSON read without fault up to off.  A byte in a member's name, or
 * after a value's end, belongs to the object or array around it.
 */
static void
json_path_at(const char *buf, size_t off, char *path, size_t len)
{
	struct path_frame f[PATH_DEPTH], *t = NULL;
	const char *p, *q, *end = buf + off;
	size_t n = 0;
	int d = 0, i, scalar = 0;

	path[0] = '\0';
	for (p = buf; p < end; p++) {
		if (scalar && strchr(" \t\r\n,]}", *p) != NULL && t != NULL)
			t->done = 1;
		scalar = 0;
		switch (*p) {
		case '"':
			for (q = p + 1; q < end && *q != '"'; q++)
				if (*q == '\\')
					q++;
			if (q < end && t != NULL && !t->is_array &&
			    t->key == NULL) {
				t->key = p + 1;
				t->keylen = q - p - 1;
			} else if (q < end && t != NULL)
				t->done = 1;
			p = q;
			break;
		case '{':
		case '[':
			if (d == PATH_DEPTH)
				return;
			t = &f[d++];
			memset(t, 0, sizeof(*t));
			t->is_array = *p == '[';
			break;
		case '}':
		case ']':
			if (d > 0)
				d--;
			t = d > 0 ? &f[d - 1] : NULL;
			if (t != NULL)
				t->done = 1;
			break;
		case ',':
			if (t != NULL && t->is_array)
				t->idx++;
			else if (t != NULL)
				t->key = NULL;
			if (t != NULL)
				t->done = 0;
			break;
		case ' ':
		case '\t':
		case '\r':
		case '\n':
		case ':':
			break;
		default:
			scalar = 1;
			break;
		}
	}
	for (i = 0; i < d && n < len; i++) {
		if (i == d - 1 && f[i].done)
			break;
		if (f[i].is_array)
			n += snprintf(path + n, len - n, "[%d]", f[i].idx);
		else if (f[i].key != NULL)
			n += snprintf(path + n, len - n, "%s%.*s",
			    n > 0 ? "." : "", (int)f[i].keylen, f[i].key);
	}
}

/*
 * When cJSON stopped at a lone UTF-16 surrogate (an escape from \ud800
 * to \udfff that is not half of a pair), names the field it is in and
 * returns -1; returns 0 for any other fault.
 */
static int
lone_surrogate(const char *buf, size_t len, size_t off,
    struct event_err *err)
{
	char field[sizeof(err->field)];
	const char *e = buf + off;

	if (len - off < 6 || e[0] != '\\' || e[1] != 'u' ||
	    (e[2] != 'd' && e[2] != 'D') || e[3] == '\0' ||
	    strchr("89abcdefABCDEF", e[3]) == NULL)
		return 0;
	json_path_at(buf, off, field, sizeof(field));
	errf(err, "", field, "invalid JSON: a lone UTF-16 surrogate "
	    "(\\u%.4s) in a string at byte offset %zu", e + 2, off);
	return -1;
}

/*
 * Parses len bytes of JSON: one value, maybe surrounded by whitespace,
 * nested at most CJSON_NESTING_LIMIT deep.  Numbers not written as
 * integers become NaN (see the top of this file).  A syntax error names
 * the member it is in, if any.
 */
static cJSON *
json_parse(const char *buf, size_t len, struct event_err *err)
{
	struct numscan s;
	const char *end = NULL, *p;
	cJSON *root;
	char field[sizeof(err->field)];
	size_t off;

	if (buf == NULL)
		len = 0;
	for (p = buf; p != NULL && p < buf + len && *p != '\0' &&
	    strchr(" \t\r\n", *p) != NULL; p++)
		;
	if (len == 0 || p == buf + len) {
		errf(err, "", "", "invalid JSON: empty input");
		return NULL;
	}
	if ((root = cJSON_ParseWithLengthOpts(buf, len, &end, 0)) == NULL) {
		off = end != NULL && end >= buf ? (size_t)(end - buf) : 0;
		if (off < len && lone_surrogate(buf, len, off, err) == -1)
			return NULL;
		/* cJSON reports a fault at the end as at the last byte. */
		json_path_at(buf, off + 1 == len ? len : off, field,
		    sizeof(field));
		errf(err, "", field, "invalid JSON at byte offset %zu", off);
		return NULL;
	}
	for (p = end; p < buf + len; p++)
		if (*p == '\0' || strchr(" \t\r\n", *p) == NULL) {
			errf(err, "", "", "invalid JSON: trailing data at "
			    "byte offset %zu", (size_t)(p - buf));
			cJSON_Delete(root);
			return NULL;
		}
	s.p = buf;
	s.end = end;
	s.bad = NULL;
	if (numscan_fractions(&s) > 0) {
		s.p = buf;
		mark_fractions(root, &s);
	}
	if (s.bad != NULL) {
		errf(err, "", "", "invalid JSON: control character or \\u0000 "
		    "in a string at byte offset %zu", (size_t)(s.bad - buf));
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

/*
 * The members an object's rules read, found in one pass over it: looking
 * each name up walked every member for each name (pay-process's parse of
 * a payment's event 2,900 instructions, now 1,600).  Other members are
 * left alone (CloudEvents extensions, say).
 * A name that appears more than once is noted, and is an error only when
 * a rule reads it, so the first fault reported is the one the rules meet
 * first, whatever the members' order.
 */
#define FIELDS_MAX	16

struct fields {
	const char *const *names;
	const cJSON	*v[FIELDS_MAX];
	unsigned	 dup;		/* bit k: names[k] more than once */
};

/*
 * The members' names, for each kind of object, in the order our
 * producers write them (event_serialize(), the README's orders), which
 * fields_of() finds them fastest in (util_name_index()).
 */
enum { E_SPECVERSION, E_ID, E_SOURCE, E_TYPE, E_SUBJECT, E_TIME, E_DCT,
	E_TRACEPARENT, E_DATA, E_N };
static const char *const env_names[E_N] = {
	"specversion", "id", "source", "type", "subject", "time",
	"datacontenttype", FLOW_H_TRACEPARENT, "data"
};

/* An order, and order.created.v2's data. */
enum { O_ORDER_ID, O_CUSTOMER_ID, O_EMAIL, O_CURRENCY, O_ITEMS, O_TOTAL,
	O_PM, O_N };
static const char *const order_names[O_N] = {
	"order_id", "customer_id", "email", "currency", "items", "total",
	"payment_method"
};

enum { I_SKU, I_QTY, I_PRICE, I_N };
static const char *const item_names[I_N] = { "sku", "qty", "unit_price" };

/* order.created.v1's data. */
enum { V_ORDER_ID, V_CUSTOMER_ID, V_EMAIL, V_CURRENCY, V_AMOUNT, V_PM,
	V_N };
static const char *const v1_names[V_N] = {
	"order_id", "customer_id", "email", "currency", "amount",
	"payment_method"
};

/* payment.processed.v1's data. */
enum { P_ORDER_ID, P_PAYMENT_ID, P_STATUS, P_AMOUNT, P_CURRENCY, P_REASON,
	P_CUSTOMER_ID, P_EMAIL, P_PM, P_N };
static const char *const payment_names[P_N] = {
	"order_id", "payment_id", "status", "amount", "currency", "reason",
	"customer_id", "email", "payment_method"
};

_Static_assert(E_N <= FIELDS_MAX && O_N <= FIELDS_MAX && I_N <= FIELDS_MAX &&
    V_N <= FIELDS_MAX && P_N <= FIELDS_MAX, "FIELDS_MAX");

/* The members of object obj that names[0..n) has, into f. */
static void
fields_of(const cJSON *obj, const char *const *names, int n,
    struct fields *f)
{
	const cJSON *c;
	int k, next = 0;

	f->names = names;
	f->dup = 0;
	memset(f->v, 0, n * sizeof(f->v[0]));
	cJSON_ArrayForEach(c, obj) {
		if (c->string == NULL ||
		    (k = util_name_index(names, n, next, c->string)) == -1)
			continue;
		next = k + 1;
		if (f->v[k] != NULL)
			f->dup |= 1u << k;
		else
			f->v[k] = c;
	}
}

/* Member k of f into *out (NULL if absent); a duplicate is an error. */
static int
member(const struct fields *f, int k, const char *pfx, const cJSON **out,
    struct event_err *err)
{
	*out = f->v[k];
	if (f->dup & 1u << k)
		return errf(err, pfx, f->names[k], "appears more than once");
	return 0;
}

/*
 * A string member checked against rule r, copied to dst (which holds
 * r->max + 1 bytes).  An optional member absent or null returns 1 with
 * dst "".  Returns 0 or -1.
 */
static int
get_string(const struct fields *f, int k, const char *pfx, int required,
    const struct rule *r, char *dst, struct event_err *err)
{
	const char *name = f->names[k];
	const cJSON *v;

	dst[0] = '\0';
	if (member(f, k, pfx, &v, err) == -1)
		return -1;
	if (v == NULL || (!required && cJSON_IsNull(v))) {
		if (required)
			return errf(err, pfx, name, "is required");
		return 1;
	}
	if (!cJSON_IsString(v) || !rule_ok(r, v->valuestring))
		return errf(err, pfx, name, "%s", r->msg);
	memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
	return 0;
}

/*
 * A required integer member in [min, max]: notint is the message for
 * anything but an integer literal, range for one out of range (NULL:
 * notint followed by "from MIN to MAX", made only when it is needed).
 */
static int
get_int(const struct fields *f, int k, const char *pfx, int64_t min,
    int64_t max, const char *notint, const char *range, int64_t *out,
    struct event_err *err)
{
	const char *name = f->names[k];
	const cJSON *v;
	double d;

	if (member(f, k, pfx, &v, err) == -1)
		return -1;
	if (v == NULL)
		return errf(err, pfx, name, "is required");
	if (!cJSON_IsNumber(v) || isnan(v->valuedouble))
		return errf(err, pfx, name, "%s", notint);
	d = v->valuedouble;
	if (!(d >= (double)min && d <= (double)max)) {
		if (range == NULL)
			return errf(err, pfx, name, "%s from %" PRId64 " to %"
			    PRId64, notint, min, max);
		return errf(err, pfx, name, "%s", range);
	}
	*out = (int64_t)d;
	if ((double)*out != d)
		return errf(err, pfx, name, "%s", notint);
	return 0;
}

static void
random_order_id(char *dst)
{
	char u[EVENT_UUID_LEN + 1];

	event_random_id(u);
	snprintf(dst, ORDER_ID_MAX + 1, "o-%s", u);
}

/*
 * An error found in items[i] with paths relative to the item: the path
 * becomes the whole one.  Made only on the error path: a prefix and a
 * range message formatted for every item, in case, were 5% of
 * order-submit's instructions.
 */
static int
err_in_item(struct event_err *err, const char *pfx, int i)
{
	char path[sizeof(err->field) + 32];
	size_t n;

	if (err == NULL)
		return -1;
	snprintf(path, sizeof(path), "%sitems[%d]%s%s", pfx, i,
	    err->field[0] != '\0' ? "." : "", err->field);
	/* Cut to the field's size, as errf() would. */
	if ((n = strlen(path)) >= sizeof(err->field))
		n = sizeof(err->field) - 1;
	memcpy(err->field, path, n);
	err->field[n] = '\0';
	snprintf(err->text, sizeof(err->text), "%s: %s", err->field, err->msg);
	return -1;
}

static int
items_from_json(const struct fields *f, const char *pfx, struct order *out,
    struct event_err *err)
{
	const cJSON *items, *it;
	struct fields fi;
	int64_t v, sum = 0, line;
	int n, i = 0;

	if (member(f, O_ITEMS, pfx, &items, err) == -1)
		return -1;
	if (items == NULL)
		return errf(err, pfx, "items", "is required");
	n = cJSON_IsArray(items) ? cJSON_GetArraySize(items) : -1;
	if (n < 1 || n > ORDER_ITEMS_MAX)
		return errf(err, pfx, "items", "must be an array of 1 to %d "
		    "items", ORDER_ITEMS_MAX);
	if ((out->items = calloc(n, sizeof(*out->items))) == NULL)
		return errf(err, "", "", "out of memory");
	cJSON_ArrayForEach(it, items) {
		struct order_item *oi = &out->items[i];

		if (!cJSON_IsObject(it)) {
			errf(err, "", "", "must be an object");
			return err_in_item(err, pfx, i);
		}
		fields_of(it, item_names, I_N, &fi);
		if (get_string(&fi, I_SKU, "", 1, &r_sku, oi->sku, err) == -1)
			return err_in_item(err, pfx, i);
		if (get_int(&fi, I_QTY, "", 1, ORDER_QTY_MAX, msg_qty,
		    msg_qty, &v, err) == -1)
			return err_in_item(err, pfx, i);
		oi->qty = (int)v;
		if (get_int(&fi, I_PRICE, "", 0, ORDER_PRICE_MAX,
		    msg_money, NULL, &oi->unit_price, err) == -1)
			return err_in_item(err, pfx, i);
		if (__builtin_mul_overflow(oi->unit_price, (int64_t)oi->qty,
		    &line) || __builtin_add_overflow(sum, line, &sum) ||
		    sum > ORDER_TOTAL_MAX)
			return errf(err, pfx, "items", "total out of range");
		out->nitems = ++i;
	}
	out->total = sum;
	return 0;
}

/*
 * The order rules on object o, paths prefixed with pfx.  In an event
 * (in_event) order_id is required and total must be there and right.
 */
static int
order_from_json(const cJSON *o, const char *pfx, int in_event,
    struct order *out, struct event_err *err)
{
	struct fields f;
	int64_t total;
	int r;

	if (!cJSON_IsObject(o))
		return errf(err, pfx, "", "must be a JSON object");
	fields_of(o, order_names, O_N, &f);
	if ((r = get_string(&f, O_ORDER_ID, pfx, in_event, &r_order_id,
	    out->order_id, err)) == -1)
		return -1;
	if (r == 1) {
		random_order_id(out->order_id);
		out->order_id_generated = 1;
	}
	if (get_string(&f, O_CUSTOMER_ID, pfx, 1, &r_customer,
	    out->customer_id, err) == -1 ||
	    get_string(&f, O_EMAIL, pfx, 1, &r_email, out->email, err) == -1 ||
	    get_string(&f, O_CURRENCY, pfx, 1, &r_currency, out->currency,
	    err) == -1 ||
	    items_from_json(&f, pfx, out, err) == -1 ||
	    (r = get_string(&f, O_PM, pfx, 0, &r_pm,
	    out->payment_method, err)) == -1)
		return -1;
	if (r == 1)
		strcpy(out->payment_method, ORDER_PM_DEFAULT);
	if (!in_event)
		return 0;
	if (get_int(&f, O_TOTAL, pfx, 0, ORDER_TOTAL_MAX, msg_money, NULL,
	    &total, err) == -1)
		return -1;
	if (total != out->total)
		return errf(err, pfx, "total", "must equal the sum of qty * "
		    "unit_price over items (%" PRId64 ")", out->total);
	return 0;
}

int
order_parse(const char *json, size_t len, struct order *out,
    struct event_err *err)
{
	cJSON *root;
	size_t mark;
	int rc;

	memset(out, 0, sizeof(*out));
	err_clear(err);
	mark = jsonmem_begin();
	if ((root = json_parse(json, len, err)) == NULL) {
		jsonmem_end(mark);
		return -1;
	}
	rc = order_from_json(root, "", 0, out, err);
	jsonmem_end_tree(mark, root);
	if (rc == -1)
		order_free(out);
	return rc;
}

void
order_free(struct order *o)
{
	free(o->items);
	o->items = NULL;
	o->nitems = 0;
}

static int
order_copy(struct order *dst, const struct order *src)
{
	*dst = *src;
	dst->items = NULL;
	if (src->nitems == 0)
		return 0;
	if ((dst->items = calloc(src->nitems, sizeof(*dst->items))) == NULL) {
		dst->nitems = 0;
		return -1;
	}
	memcpy(dst->items, src->items, src->nitems * sizeof(*dst->items));
	return 0;
}

static int
v1_from_json(const cJSON *d, const char *pfx, struct order *out,
    struct event_err *err)
{
	struct fields f;
	const cJSON *v;
	int r;

	fields_of(d, v1_names, V_N, &f);
	if (get_string(&f, V_ORDER_ID, pfx, 1, &r_order_id, out->order_id,
	    err) == -1 ||
	    get_string(&f, V_CUSTOMER_ID, pfx, 1, &r_customer,
	    out->customer_id, err) == -1 ||
	    get_string(&f, V_EMAIL, pfx, 1, &r_email, out->email, err) == -1 ||
	    get_string(&f, V_CURRENCY, pfx, 1, &r_currency, out->currency,
	    err) == -1 ||
	    member(&f, V_AMOUNT, pfx, &v, err) == -1)
		return -1;
	if (v == NULL)
		return errf(err, pfx, "amount", "is required");
	if (!cJSON_IsString(v) ||
	    event_parse_amount(v->valuestring, &out->total) == -1)
		return errf(err, pfx, "amount", "must be a decimal string of "
		    "major units, e.g. \"25.00\" (at most 2 decimals, at most "
		    "1000000.00)");
	if ((r = get_string(&f, V_PM, pfx, 0, &r_pm,
	    out->payment_method, err)) == -1)
		return -1;
	if (r == 1)
		strcpy(out->payment_method, ORDER_PM_DEFAULT);
	return 0;
}

static int
payment_from_json(const cJSON *d, const char *pfx, struct event_payment *p,
    struct event_err *err)
{
	struct fields f;
	const cJSON *v;
	int r;

	fields_of(d, payment_names, P_N, &f);
	if (get_string(&f, P_ORDER_ID, pfx, 1, &r_order_id, p->order_id,
	    err) == -1 ||
	    get_string(&f, P_PAYMENT_ID, pfx, 1, &r_order_id, p->payment_id,
	    err) == -1 ||
	    member(&f, P_STATUS, pfx, &v, err) == -1)
		return -1;
	if (v == NULL)
		return errf(err, pfx, "status", "is required");
	if (cJSON_IsString(v) && strcmp(v->valuestring, "approved") == 0)
		p->status = EVENT_PAY_APPROVED;
	else if (cJSON_IsString(v) && strcmp(v->valuestring, "declined") == 0)
		p->status = EVENT_PAY_DECLINED;
	else
		return errf(err, pfx, "status",
		    "must be \"approved\" or \"declined\"");
	if (get_int(&f, P_AMOUNT, pfx, 0, ORDER_TOTAL_MAX, msg_money, NULL,
	    &p->amount, err) == -1 ||
	    get_string(&f, P_CURRENCY, pfx, 1, &r_currency, p->currency,
	    err) == -1 ||
	    (r = get_string(&f, P_REASON, pfx, 0, &r_reason, p->reason,
	    err)) == -1)
		return -1;
	if (p->status == EVENT_PAY_DECLINED && r == 1)
		return errf(err, pfx, "reason", "is required when declined");
	if (p->status == EVENT_PAY_APPROVED)
		p->reason[0] = '\0';
	if (get_string(&f, P_CUSTOMER_ID, pfx, 1, &r_customer,
	    p->customer_id, err) == -1 ||
	    get_string(&f, P_EMAIL, pfx, 1, &r_email, p->email, err) == -1 ||
	    get_string(&f, P_PM, pfx, 0, &r_pm, p->payment_method,
	    err) == -1)
		return -1;
	return 0;
}

/* s made safe to quote in a message: printable, at most 64 characters. */
static void
quote(char *dst, size_t len, const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < len && i < 64; i++)
		dst[i] = (cclass[(unsigned char)s[i]] & C_PRINT) &&
		    s[i] != '"' && s[i] != '\\' ? s[i] : '?';
	dst[i] = '\0';
	if (s[i] != '\0' && i >= 3)
		memcpy(dst + i - 3, "...", 3);
}

static int
type_kind(const char *t, enum event_kind *kind, struct event_err *err)
{
	const char *dot;
	char q[72];
	size_t i, n;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(t, kinds[i].type) == 0) {
			*kind = kinds[i].kind;
			return 0;
		}
	dot = strrchr(t, '.');
	for (i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		n = strlen(bases[i].base);
		if (strcmp(t, bases[i].base) == 0)
			return errf(err, "", "type", "event type %s lacks a "
			    "version (known: %s)", bases[i].base,
			    bases[i].versions);
		if (strncmp(t, bases[i].base, n) == 0 && t + n == dot) {
			quote(q, sizeof(q), dot + 1);
			return errf(err, "", "type", "unsupported version "
			    "\"%s\" of event type %s (known: %s)", q,
			    bases[i].base, bases[i].versions);
		}
	}
	quote(q, sizeof(q), t);
	return errf(err, "", "type", "unknown event type \"%s\" (known: "
	    "order.created.v1, order.created.v2, payment.processed.v1)", q);
}

static int
envelope(const cJSON *root, struct event *ev, struct event_err *err)
{
	const cJSON *v, *data;
	const char *sub;
	struct fields f;

	if (!cJSON_IsObject(root))
		return errf(err, "", "", "must be a JSON object (a CloudEvent)");
	fields_of(root, env_names, E_N, &f);
	if (member(&f, E_SPECVERSION, "", &v, err) == -1)
		return -1;
	if (v == NULL)
		return errf(err, "", "specversion", "is required");
	if (!cJSON_IsString(v) || strcmp(v->valuestring, "1.0") != 0)
		return errf(err, "", "specversion", "must be \"1.0\"");
	if (member(&f, E_TYPE, "", &v, err) == -1)
		return -1;
	if (v == NULL)
		return errf(err, "", "type", "is required");
	if (!cJSON_IsString(v) || strlen(v->valuestring) > EVENT_TYPE_MAX)
		return errf(err, "", "type", "must be an event type such as "
		    "order.created.v2");
	if (type_kind(v->valuestring, &ev->kind, err) == -1)
		return -1;
	strcpy(ev->type, v->valuestring);
	if (get_string(&f, E_ID, "", 1, &r_event_id, ev->id, err) == -1 ||
	    get_string(&f, E_SOURCE, "", 1, &r_source, ev->source,
	    err) == -1 ||
	    get_string(&f, E_SUBJECT, "", 1, &r_order_id, ev->subject,
	    err) == -1 ||
	    member(&f, E_TIME, "", &v, err) == -1)
		return -1;
	if (v == NULL)
		return errf(err, "", "time", "is required");
	if (!cJSON_IsString(v) || strlen(v->valuestring) > EVENT_TIME_MAX ||
	    (ev->time_ms = util_rfc3339_parse(v->valuestring)) < 0)
		return errf(err, "", "time", "must be an RFC 3339 time, e.g. "
		    "2026-11-26T10:00:00Z");
	strcpy(ev->time, v->valuestring);
	if (member(&f, E_DCT, "", &v, err) == -1)
		return -1;
	if (v != NULL && (!cJSON_IsString(v) ||
	    strncmp(v->valuestring, "application/json", 16) != 0 ||
	    (v->valuestring[16] != '\0' && v->valuestring[16] != ';')))
		return errf(err, "", "datacontenttype",
		    "must be \"application/json\"");
	if (member(&f, E_TRACEPARENT, "", &v, err) == -1)
		return -1;
	if (cJSON_IsString(v))
		(void)trace_parse(v->valuestring, ev->traceparent);
	if (member(&f, E_DATA, "", &data, err) == -1)
		return -1;
	if (data == NULL)
		return errf(err, "", "data", "is required");
	if (!cJSON_IsObject(data))
		return errf(err, "", "data", "must be a JSON object");
	switch (ev->kind) {
	case EVENT_ORDER_CREATED_V1:
		if (v1_from_json(data, "data.", &ev->order, err) == -1)
			return -1;
		sub = ev->order.order_id;
		break;
	case EVENT_ORDER_CREATED_V2:
		if (order_from_json(data, "data.", 1, &ev->order, err) == -1)
			return -1;
		sub = ev->order.order_id;
		break;
	default:
		if (payment_from_json(data, "data.", &ev->payment, err) == -1)
			return -1;
		sub = ev->payment.order_id;
		break;
	}
	if (strcmp(ev->subject, sub) != 0)
		return errf(err, "", "subject", "must equal data.order_id");
	return 0;
}

int
event_parse(const void *buf, size_t len, struct event *ev,
    struct event_err *err)
{
	cJSON *root;
	size_t mark;
	int rc;

	memset(ev, 0, sizeof(*ev));
	err_clear(err);
	mark = jsonmem_begin();
	if ((root = json_parse(buf, len, err)) == NULL) {
		jsonmem_end(mark);
		return -1;
	}
	rc = envelope(root, ev, err);
	jsonmem_end_tree(mark, root);
	if (rc == -1) {
		event_free(ev);
		ev->kind = EVENT_NONE;
	}
	return rc;
}

int
event_parse_tree(const cJSON *root, struct event *ev, struct event_err *err)
{
	memset(ev, 0, sizeof(*ev));
	err_clear(err);
	if (envelope(root, ev, err) == -1) {
		event_free(ev);
		ev->kind = EVENT_NONE;
		return -1;
	}
	return 0;
}

int
event_upcast_v1(struct event *ev)
{
	struct order_item *it;

	if (ev->kind == EVENT_ORDER_CREATED_V2)
		return 0;
	if (ev->kind != EVENT_ORDER_CREATED_V1) {
		errno = EINVAL;
		return -1;
	}
	if ((it = calloc(1, sizeof(*it))) == NULL)
		return -1;
	strcpy(it->sku, LEGACY_SKU);
	it->qty = 1;
	it->unit_price = ev->order.total;
	free(ev->order.items);
	ev->order.items = it;
	ev->order.nitems = 1;
	if (ev->order.payment_method[0] == '\0')
		strcpy(ev->order.payment_method, ORDER_PM_DEFAULT);
	ev->kind = EVENT_ORDER_CREATED_V2;
	strcpy(ev->type, EVENT_TYPE_ORDER_CREATED_V2);
	return 0;
}

/* The attributes every built event shares; 0, or -1 with errno EINVAL. */
static int
stamp(struct event *ev, enum event_kind kind, const char *source,
    const char *subject, const char *traceparent)
{
	if (source == NULL || !rule_ok(&r_source, source) ||
	    !rule_ok(&r_order_id, subject) ||
	    (traceparent != NULL && !trace_valid(traceparent))) {
		errno = EINVAL;
		return -1;
	}
	ev->kind = kind;
	strcpy(ev->type, event_kind_type(kind));
	strcpy(ev->source, source);
	strcpy(ev->subject, subject);
	ev->time_ms = util_now_ms();
	util_rfc3339(ev->time_ms, ev->time, sizeof(ev->time));
	if (traceparent != NULL)
		strcpy(ev->traceparent, traceparent);
	else
		trace_generate(ev->traceparent);
	return 0;
}

int
event_order_created(struct event *ev, const struct order *o,
    const char *source, const char *traceparent)
{
	memset(ev, 0, sizeof(*ev));
	if (stamp(ev, EVENT_ORDER_CREATED_V2, source, o->order_id,
	    traceparent) == -1 ||
	    event_derive_id(o->order_id, EVENT_PURPOSE_ORDER, ev->id) == -1)
		return -1;
	return order_copy(&ev->order, o);
}

int
event_payment_processed(struct event *ev, const struct event *cause,
    enum event_pay_status status, const char *reason,
    const char *payment_id, const char *source)
{
	struct event_payment *p = &ev->payment;
	const struct order *o = &cause->order;
	char u[EVENT_UUID_LEN + 1];

	memset(ev, 0, sizeof(*ev));
	if ((cause->kind != EVENT_ORDER_CREATED_V1 &&
	    cause->kind != EVENT_ORDER_CREATED_V2) ||
	    (status != EVENT_PAY_APPROVED && status != EVENT_PAY_DECLINED) ||
	    (status == EVENT_PAY_DECLINED &&
	    (reason == NULL || !rule_ok(&r_reason, reason))) ||
	    (payment_id != NULL && !rule_ok(&r_order_id, payment_id))) {
		errno = EINVAL;
		return -1;
	}
	if (stamp(ev, EVENT_PAYMENT_PROCESSED_V1, source, o->order_id,
	    cause->traceparent[0] != '\0' ? cause->traceparent : NULL) == -1 ||
	    event_derive_id(cause->id, EVENT_PURPOSE_PAYMENT, ev->id) == -1)
		return -1;
	if (payment_id == NULL) {
		if (event_derive_id(cause->id, EVENT_PURPOSE_PAYMENT_ID, u) == -1)
			return -1;
		snprintf(p->payment_id, sizeof(p->payment_id), "p-%s", u);
	} else
		strcpy(p->payment_id, payment_id);
	strcpy(p->order_id, o->order_id);
	p->status = status;
	p->amount = o->total;
	strcpy(p->currency, o->currency);
	if (status == EVENT_PAY_DECLINED)
		strcpy(p->reason, reason);
	strcpy(p->customer_id, o->customer_id);
	strcpy(p->email, o->email);
	strcpy(p->payment_method, o->payment_method);
	return 0;
}

/*
 * Events are written straight into text, without a cJSON tree: building
 * and printing one cost a sixth of a consumer's instructions.  The text
 * is byte for byte what cJSON_PrintUnformatted() wrote (members in the
 * same order, strings escaped as cJSON escapes them: \" \\ \b \f \n \r
 * \t, other controls as \u00xx, every other byte as it is);
 * test/unit/event_test.c compares the two over many events.
 */
struct out {
	char	*p;
	size_t	 len;
	size_t	 cap;
	int	 fail;
};

/* Room for n more bytes and a NUL; sets o->fail when there is none. */
static int
out_room(struct out *o, size_t n)
{
	size_t cap;
	char *p;

	if (o->fail)
		return 0;
	if (o->len + n < o->cap)
		return 1;
	for (cap = o->cap > 0 ? o->cap : 1024; o->len + n >= cap; cap *= 2)
		if (cap > PRINT_MAX) {
			o->fail = 1;
			return 0;
		}
	if ((p = realloc(o->p, cap)) == NULL) {
		o->fail = 1;
		return 0;
	}
	o->p = p;
	o->cap = cap;
	return 1;
}

static void
out_raw(struct out *o, const char *s, size_t n)
{
	if (!out_room(o, n))
		return;
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

/*
 * s as a JSON string, escaped as cJSON escapes it.  Room for the worst
 * case (6 bytes a byte) is made first, so that runs of plain bytes, all
 * of most strings, go in with one memcpy().
 */
static void
out_str(struct out *o, const char *s)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s, *run;
	size_t len = strlen(s);
	char *d;

	if (!out_room(o, 6 * len + 2))
		return;
	d = o->p + o->len;
	*d++ = '"';
	for (;;) {
		for (run = p; str_plain[*p]; p++)
			;
		memcpy(d, run, (size_t)(p - run));
		d += p - run;
		if (*p == '\0')
			break;
		*d++ = '\\';
		switch (*p) {
		case '"':
		case '\\':
			*d++ = (char)*p;
			break;
		case '\b':
			*d++ = 'b';
			break;
		case '\f':
			*d++ = 'f';
			break;
		case '\n':
			*d++ = 'n';
			break;
		case '\r':
			*d++ = 'r';
			break;
		case '\t':
			*d++ = 't';
			break;
		default:
			memcpy(d, "u00", 3);
			d[3] = digits[*p >> 4];
			d[4] = digits[*p & 0xf];
			d += 5;
			break;
		}
		p++;
	}
	*d++ = '"';
	o->len = (size_t)(d - o->p);
}

/*
 * A member's name with its quotes, its colon and, unless it is its
 * object's first, the comma before it, as one literal: the names are
 * ours and need no escaping, so they go in with one memcpy().
 */
#define NAME(name)	",\"" name "\":"
#define FIRST(name)	"\"" name "\":"

#define out_lit(o, lit)	out_raw((o), (lit), sizeof(lit) - 1)

static void
put_str(struct out *o, const char *name, size_t namelen, const char *s)
{
	out_raw(o, name, namelen);
	out_str(o, s);
}

/* Integers are written as such, never through a double. */
static void
put_int(struct out *o, const char *name, size_t namelen, int64_t v)
{
	char buf[UTIL_I64_LEN + 1];

	out_raw(o, name, namelen);
	util_i64toa(v, buf);
	out_raw(o, buf, strlen(buf));
}

#define PUT_STR(o, name, s)	put_str((o), NAME(name), \
	sizeof(NAME(name)) - 1, (s))
#define PUT_INT(o, name, v)	put_int((o), NAME(name), \
	sizeof(NAME(name)) - 1, (v))

static void
put_items(struct out *o, const struct order *ord)
{
	size_t i;

	out_lit(o, NAME("items") "[");
	for (i = 0; i < ord->nitems; i++) {
		if (i == 0)
			out_lit(o, "{" FIRST("sku"));
		else
			out_lit(o, ",{" FIRST("sku"));
		out_str(o, ord->items[i].sku);
		PUT_INT(o, "qty", ord->items[i].qty);
		PUT_INT(o, "unit_price", ord->items[i].unit_price);
		out_lit(o, "}");
	}
	out_lit(o, "]");
}

static void
put_data(struct out *o, const struct event *ev)
{
	const struct event_payment *p = &ev->payment;
	const struct order *ord = &ev->order;
	char amount[32];

	out_lit(o, NAME("data") "{" FIRST("order_id"));
	if (ev->kind == EVENT_PAYMENT_PROCESSED_V1) {
		out_str(o, p->order_id);
		PUT_STR(o, "payment_id", p->payment_id);
		PUT_STR(o, "status", event_pay_status_name(p->status));
		PUT_INT(o, "amount", p->amount);
		PUT_STR(o, "currency", p->currency);
		if (p->status == EVENT_PAY_DECLINED)
			PUT_STR(o, "reason", p->reason);
		PUT_STR(o, "customer_id", p->customer_id);
		PUT_STR(o, "email", p->email);
		if (p->payment_method[0] != '\0')
			PUT_STR(o, "payment_method", p->payment_method);
	} else {
		out_str(o, ord->order_id);
		PUT_STR(o, "customer_id", ord->customer_id);
		PUT_STR(o, "email", ord->email);
		PUT_STR(o, "currency", ord->currency);
		if (ev->kind == EVENT_ORDER_CREATED_V1) {
			event_format_money(ord->total, ord->currency, amount,
			    sizeof(amount));
			PUT_STR(o, "amount", amount);
		} else {
			put_items(o, ord);
			PUT_INT(o, "total", ord->total);
		}
		PUT_STR(o, "payment_method", ord->payment_method);
	}
	out_lit(o, "}");
}

/* ev's text into o (event_serialize()); -1 with errno as it says. */
static int
serialize(const struct event *ev, struct out *o)
{
	if (ev->kind == EVENT_NONE) {
		errno = EINVAL;
		return -1;
	}
	out_lit(o, "{" FIRST("specversion") "\"1.0\"");
	PUT_STR(o, "id", ev->id);
	PUT_STR(o, "source", ev->source);
	PUT_STR(o, "type", event_kind_type(ev->kind));
	PUT_STR(o, "subject", ev->subject);
	PUT_STR(o, "time", ev->time);
	out_lit(o, NAME("datacontenttype") "\"" EVENT_DATA_CONTENT_TYPE "\"");
	if (ev->traceparent[0] != '\0')
		PUT_STR(o, FLOW_H_TRACEPARENT, ev->traceparent);
	put_data(o, ev);
	out_lit(o, "}");
	if (o->fail) {
		errno = ENOMEM;
		return -1;
	}
	o->p[o->len] = '\0';
	return 0;
}

char *
event_serialize(const struct event *ev, size_t *lenp)
{
	struct out o = { NULL, 0, 0, 0 };

	if (serialize(ev, &o) == -1) {
		free(o.p);
		return NULL;
	}
	if (lenp != NULL)
		*lenp = o.len;
	return o.p;
}

int
event_serialize_buf(const struct event *ev, char **buf, size_t *cap,
    size_t *lenp)
{
	struct out o = { *buf, 0, *buf != NULL ? *cap : 0, 0 };
	int r;

	r = serialize(ev, &o);
	*buf = o.p;
	*cap = o.cap;
	if (r == 0 && lenp != NULL)
		*lenp = o.len;
	return r;
}

void
event_free(struct event *ev)
{
	order_free(&ev->order);
}

const char *
event_kind_type(enum event_kind kind)
{
	size_t i;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (kinds[i].kind == kind)
			return kinds[i].type;
	return "";
}

const char *
event_pay_status_name(enum event_pay_status status)
{
	return status == EVENT_PAY_APPROVED ? "approved" : "declined";
}

/* A UUID's 16 bytes as text, lower case: 8-4-4-4-12 hex digits. */
static void
uuid_text(const unsigned char u[16], char out[EVENT_UUID_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	char *o = out;
	int i;

	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = digits[u[i] >> 4];
		*o++ = digits[u[i] & 0xf];
	}
	*o = '\0';
}

/* Lower-case hex digits: 1 for '0', 3 (bit 1: not zero) for the others. */
static const unsigned char lower_hex[256] = {
	['0'] = 1, ['1' ... '9'] = 3, ['a' ... 'f'] = 3
};

/* The value of a lower-case hex digit (lower_hex[] says it is one). */
static int
nibble(char c)
{
	return c <= '9' ? c - '0' : c - 'a' + 10;
}

/*
 * The inverse of uuid_text(), for its form only.  libuuid's uuid_parse()
 * takes other forms too and cost 2,300 instructions a call through
 * strtoul(), a seventh of pay-process's store thread with the round trip
 * that had to reject them; test/unit/event_test.c compares the two.
 */
int
event_uuid_bytes(const char *s, unsigned char out[16])
{
	int i;

	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10) {
			if (*s++ != '-')
				return -1;
		}
		if (!lower_hex[(unsigned char)s[0]] ||
		    !lower_hex[(unsigned char)s[1]])
			return -1;
		out[i] = (unsigned char)(nibble(s[0]) << 4 | nibble(s[1]));
		s += 2;
	}
	return *s == '\0' ? 0 : -1;
}

/*
 * RFC 4122 (4.3) version 5: the first 16 bytes of SHA-1(namespace,
 * name), with the version (5) in the top nibble of byte 6 and the
 * variant (10) in the top bits of byte 8; libuuid's
 * uuid_generate_sha1() gives the same bytes (test/unit/event_test.c
 * checks), at a third of its cost.
 */
static void
uuid_v5(const unsigned char ns[16], const void *name, size_t len,
    unsigned char out[16])
{
	unsigned char md[SHA_DIGEST_LENGTH];
	SHA_CTX c;

	SHA1_Init(&c);
	SHA1_Update(&c, ns, 16);
	SHA1_Update(&c, name, len);
	SHA1_Final(md, &c);
	memcpy(out, md, 16);
	out[6] = (out[6] & 0x0f) | 0x50;
	out[8] = (out[8] & 0x3f) | 0x80;
}

int
event_derive_id(const char *cause_id, const char *purpose,
    char out[EVENT_UUID_LEN + 1])
{
	char name[PURPOSE_MAX + 1 + EVENT_ID_MAX];
	unsigned char u[16];
	size_t plen, clen;

	plen = strnlen(purpose, PURPOSE_MAX + 1);
	clen = strnlen(cause_id, EVENT_ID_MAX + 1);
	if (plen == 0 || plen > PURPOSE_MAX || clen == 0 ||
	    clen > EVENT_ID_MAX) {
		errno = EINVAL;
		return -1;
	}
	/* purpose NUL cause: no two (purpose, cause) pairs give one name */
	memcpy(name, purpose, plen + 1);
	memcpy(name + plen + 1, cause_id, clen);
	uuid_v5(event_ns, name, plen + 1 + clen, u);
	uuid_text(u, out);
	return 0;
}

void
event_random_id(char out[EVENT_UUID_LEN + 1])
{
	uuid_t u;

	uuid_generate_random(u);
	uuid_unparse_lower(u, out);
}

int
event_format_money(int64_t minor, const char *currency, char *buf,
    size_t len)
{
	uint64_t m = minor < 0 ? -(uint64_t)minor : (uint64_t)minor;

	(void)currency;
	return snprintf(buf, len, "%s%" PRIu64 ".%02" PRIu64,
	    minor < 0 ? "-" : "", m / 100, m % 100);
}

int
event_parse_amount(const char *s, int64_t *minor)
{
	int64_t whole = 0, frac = 0;
	int nd = 0, nf = 0;

	for (; *s >= '0' && *s <= '9'; s++) {
		if (++nd > 12)
			return -1;
		whole = whole * 10 + (*s - '0');
	}
	if (nd == 0)
		return -1;
	if (*s == '.') {
		for (s++; *s >= '0' && *s <= '9'; s++) {
			if (++nf > 2)
				return -1;
			frac = frac * 10 + (*s - '0');
		}
		if (nf == 0)
			return -1;
		if (nf == 1)
			frac *= 10;
	}
	if (*s != '\0' || whole * 100 + frac > ORDER_PRICE_MAX)
		return -1;
	*minor = whole * 100 + frac;
	return 0;
}

/*
 * Random bytes from the kernel; libuuid's random UUIDs (which use the same
 * source) if getrandom(2) fails, at the cost of 6 fixed bits in 128.
 */
static void
fill_random(unsigned char *buf, size_t len)
{
	size_t got = 0, n;
	ssize_t r;
	uuid_t u;

	while (got < len) {
		r = getrandom(buf + got, len - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	while (got < len) {
		uuid_generate_random(u);
		n = len - got < sizeof(u) ? len - got : sizeof(u);
		memcpy(buf + got, u, n);
		got += n;
	}
}

static void
random_bytes(unsigned char *buf, size_t len)
{
	/*
	 * Trace and span ids are asked for in small pieces, once per event:
	 * a per-thread pool filled by one getrandom(2) call serves many of
	 * them, and each byte is wiped once handed out.  A process that forks
	 * after drawing from it must not generate ids in the child.
	 */
	static __thread unsigned char pool[2048];
	static __thread size_t avail;
	size_t n;

	if (len > sizeof(pool)) {
		fill_random(buf, len);
		return;
	}
	if (avail < len) {
		fill_random(pool, sizeof(pool));
		avail = sizeof(pool);
	}
	n = sizeof(pool) - avail;
	memcpy(buf, pool + n, len);
	explicit_bzero(pool + n, len);
	avail -= len;
}

static int
all_zero(const unsigned char *p, size_t len)
{
	while (len-- > 0)
		if (*p++ != 0)
			return 0;
	return 1;
}

static void
hex(char *dst, const unsigned char *p, size_t len)
{
	static const char digits[] = "0123456789abcdef";

	for (; len > 0; len--, p++) {
		*dst++ = digits[*p >> 4];
		*dst++ = digits[*p & 0xf];
	}
}

void
trace_from_bytes(const unsigned char in[TRACEPARENT_BYTES],
    char out[TRACEPARENT_LEN + 1])
{
	memcpy(out, "00-", 3);
	hex(out + 3, in, 16);
	out[35] = '-';
	hex(out + 36, in + 16, 8);
	out[52] = '-';
	hex(out + 53, in + 24, 1);
	out[TRACEPARENT_LEN] = '\0';
}

void
trace_generate(char out[TRACEPARENT_LEN + 1])
{
	unsigned char b[TRACEPARENT_BYTES];

	do
		random_bytes(b, 16);
	while (all_zero(b, 16));
	do
		random_bytes(b + 16, 8);
	while (all_zero(b + 16, 8));
	b[24] = 0x01;
	trace_from_bytes(b, out);
}

/*
 * Whether s[from..to) is lower-case hex, and not all zeros.  Every byte
 * is read, without a branch: half the instructions of stopping at the
 * first fault, and a traceparent is checked up to four times a payment.
 */
static int
hex_nonzero(const char *s, int from, int to)
{
	unsigned all = 1, any = 0, c;
	int i;

	for (i = from; i < to; i++) {
		c = lower_hex[(unsigned char)s[i]];
		all &= c;
		any |= c;
	}
	return all && (any & 2);
}

/* s's first 55 characters: ids and flags as in version 00, any version. */
static int
trace_fields(const char *s)
{
	if (s[2] != '-' || s[35] != '-' || s[52] != '-')
		return 0;
	if (!lower_hex[(unsigned char)s[53]] ||
	    !lower_hex[(unsigned char)s[54]])
		return 0;
	return hex_nonzero(s, 3, 35) && hex_nonzero(s, 36, 52);
}

int
trace_valid(const char *s)
{
	return s != NULL && strnlen(s, TRACEPARENT_LEN + 1) == TRACEPARENT_LEN &&
	    s[0] == '0' && s[1] == '0' && trace_fields(s);
}

int
trace_to_bytes(const char *s, unsigned char out[TRACEPARENT_BYTES])
{
	static const int from[TRACEPARENT_BYTES] = {
		3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33,
		36, 38, 40, 42, 44, 46, 48, 50, 53
	};
	size_t i;

	if (!trace_valid(s))
		return -1;
	for (i = 0; i < TRACEPARENT_BYTES; i++)
		out[i] = (unsigned char)(nibble(s[from[i]]) << 4 |
		    nibble(s[from[i] + 1]));
	return 0;
}

int
trace_parse(const char *s, char out[TRACEPARENT_LEN + 1])
{
	size_t n;

	out[0] = '\0';
	if (s == NULL)
		return -1;
	if (trace_valid(s)) {
		memcpy(out, s, TRACEPARENT_LEN + 1);
		return 0;
	}
	/* A later version: 00's fields first, its own after a "-". */
	n = strnlen(s, TRACEPARENT_LEN + 1);
	if (n < TRACEPARENT_LEN || (s[0] == '0' && s[1] == '0') ||
	    !lower_hex[(unsigned char)s[0]] ||
	    !lower_hex[(unsigned char)s[1]] || (s[0] == 'f' && s[1] == 'f') ||
	    (n > TRACEPARENT_LEN && s[TRACEPARENT_LEN] != '-') ||
	    !trace_fields(s))
		return -1;
	memcpy(out, "00", 2);
	memcpy(out + 2, s + 2, TRACEPARENT_LEN - 4);
	/* The sampled bit: the last hex digit's lowest bit. */
	memcpy(out + TRACEPARENT_LEN - 2, strchr("13579bdf",
	    s[TRACEPARENT_LEN - 1]) != NULL ? "01" : "00", 3);
	return 0;
}

int
trace_id_of(const char *traceparent, char out[TRACE_ID_LEN + 1])
{
	if (!trace_valid(traceparent))
		return -1;
	memcpy(out, traceparent + 3, TRACE_ID_LEN);
	out[TRACE_ID_LEN] = '\0';
	return 0;
}
