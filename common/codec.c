/*
 * codec.c - events in CloudEvents JSON or in Avro with a schema registry
 * (codec.h): the Confluent wire format, the ce_* headers, and the
 * conversion between an event's JSON data and an Avro datum, driven by
 * the schema.
 *
 * Decoding uses the writer's schema, the one the record's id names, and
 * turns the datum into a cJSON tree; event_parse_tree() then applies the
 * rules of the event's type (ce_type).  So a record written with any
 * schema the registry accepted is read if its data obeys those rules,
 * and v1 and v2 data need no reader schema: the upcast of v1 is
 * event.c's, as for JSON.  Encoding writes the event's fields where
 * they are, through evavro.c's value interface, by our own schemas.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "codec.h"
#include "event.h"
#include "evavro.h"
#include "flow.h"
#include "jsonl.h"
#include "jsonmem.h"
#include "kafka.h"
#include "registry.h"
#include "schemas.h"
#include "util.h"

#define CACHE_MAX	64	/* schema ids decoded with, kept */
#define HDR_MAX		512	/* the longest ce_* value read */
#define DEPTH_MAX	32	/* nesting of a datum converted to JSON */
#define REGISTRY_QUIET_MS 5000	/* after the registry did not answer */

/*
 * A schema ready to read or write with: parsed, and for reading its
 * class and one value to read into (writing goes through evavro.h).
 */
struct avsc {
	int		 id;
	avro_schema_t	 schema;
	avro_value_iface_t *iface;
	avro_value_t	 value;
};

/* A schema registered for writing one kind of event to one topic. */
struct wschema {
	char		*topic;
	enum event_kind	 kind;
	struct avsc	 s;
	struct evavro_map map;		/* the event's fields by the schema's */
};

struct codec {
	enum codec_format fmt;
	struct registry	*reg;		/* NULL: no registry given */
	struct wschema	*w;		/* codec_prepare()'s */
	size_t		 nw;
	struct avsc	 r[CACHE_MAX];	/* decoding, by id; the oldest goes */
	size_t		 nr, next_r;
	char		*wbuf;		/* encoding: grows to the largest */
	size_t		 wcap;
	avro_writer_t	 wr;		/* reused, pointed at each buffer */
	avro_reader_t	 rd;
	int		 curl;		/* curl_global_init() done */
	int64_t		 down_until;	/* the registry failed: quiet till */
	char		 down_why[128];
};

static void
avsc_free(struct avsc *s)
{
	if (s->iface != NULL) {
		avro_value_decref(&s->value);
		avro_value_iface_decref(s->iface);
	}
	if (s->schema != NULL)
		avro_schema_decref(s->schema);
	memset(s, 0, sizeof(*s));
}

/* Parses text into s, with a value to read into; -1 with msg set. */
static int
avsc_init(struct avsc *s, int id, const char *text, int reading, char *msg,
    size_t msglen)
{
	memset(s, 0, sizeof(*s));
	s->id = id;
	if (avro_schema_from_json_length(text, strlen(text), &s->schema) != 0) {
		snprintf(msg, msglen, "schema %d: %s", id, avro_strerror());
		s->schema = NULL;
		return -1;
	}
	if (!reading)
		return 0;
	if ((s->iface = avro_generic_class_from_schema(s->schema)) == NULL ||
	    avro_generic_value_new(s->iface, &s->value) != 0) {
		snprintf(msg, msglen, "schema %d: %s", id, avro_strerror());
		if (s->iface != NULL)
			avro_value_iface_decref(s->iface);
		s->iface = NULL;
		avsc_free(s);
		return -1;
	}
	return 0;
}

struct codec *
codec_new(enum codec_format fmt, const char *registry_url, char *msg,
    size_t msglen)
{
	struct codec *c;

	if (fmt == CODEC_AVRO && (registry_url == NULL || *registry_url == '\0')) {
		snprintf(msg, msglen, "--format avro needs a schema registry "
		    "(-r URL or $SCHEMA_REGISTRY_URL)");
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(msg, msglen, "out of memory");
		return NULL;
	}
	c->fmt = fmt;
	if (registry_url == NULL || *registry_url == '\0')
		return c;
	if ((c->reg = registry_new(registry_url)) == NULL) {
		snprintf(msg, msglen, "%s: %s", registry_url, errno == EINVAL ?
		    "not an http or https URL" : strerror(errno));
		free(c);
		return NULL;
	}
	return c;
}

void
codec_free(struct codec *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->nw; i++) {
		free(c->w[i].topic);
		avsc_free(&c->w[i].s);
	}
	free(c->w);
	for (i = 0; i < c->nr; i++)
		avsc_free(&c->r[i]);
	registry_free(c->reg);
	if (c->curl)
		curl_global_cleanup();
	free(c->wbuf);
	if (c->wr != NULL)
		avro_writer_free(c->wr);
	if (c->rd != NULL)
		avro_reader_free(c->rd);
	free(c);
}

int
codec_format_parse(const char *s, enum codec_format *fmt)
{
	if (strcmp(s, "json") == 0)
		*fmt = CODEC_JSON;
	else if (strcmp(s, "avro") == 0)
		*fmt = CODEC_AVRO;
	else
		return -1;
	return 0;
}

enum codec_format
codec_format(const struct codec *c)
{
	return c->fmt;
}

/*
 * libcurl initialised at the first request, not before: a command that
 * is given a registry but only meets JSON never loads it (TLS libraries
 * and all: some MiB of resident memory).  Counted by libcurl, which a
 * command may use for itself too; thread-safe since curl 7.84.
 */
static int
curl_ready(struct codec *c, char *msg, size_t msglen)
{
	if (!c->curl) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			snprintf(msg, msglen, "cannot initialise libcurl");
			return -1;
		}
		c->curl = 1;
	}
	return 0;
}

/*
 * Writing.
 */

static const char *
kind_schema(enum event_kind kind)
{
	switch (kind) {
	case EVENT_ORDER_CREATED_V1:
		return schema_order_created_v1;
	case EVENT_ORDER_CREATED_V2:
		return schema_order_created_v2;
	case EVENT_PAYMENT_PROCESSED_V1:
		return schema_payment_processed_v1;
	default:
		return NULL;
	}
}

static struct wschema *
wschema_find(struct codec *c, const char *topic, enum event_kind kind)
{
	size_t i;

	for (i = 0; i < c->nw; i++)
		if (c->w[i].kind == kind && strcmp(c->w[i].topic, topic) == 0)
			return &c->w[i];
	return NULL;
}

/* w for writing kind to topic under schema id; -1 with msg set. */
static int
wschema_init(struct wschema *w, const char *topic, enum event_kind kind,
    int id, char *msg, size_t msglen)
{
	char why[256];

	if ((w->topic = strdup(topic)) == NULL) {
		snprintf(msg, msglen, "out of memory");
		return -1;
	}
	if (avsc_init(&w->s, id, kind_schema(kind), 0, msg, msglen) == -1) {
		free(w->topic);
		return -1;
	}
	if (evavro_map_init(&w->map, w->s.schema, kind, why,
	    sizeof(why)) == -1) {
		snprintf(msg, msglen, "schema for %s: %s",
		    event_kind_type(kind), why);
		avsc_free(&w->s);
		free(w->topic);
		return -1;
	}
	w->kind = kind;
	return 0;
}

int
codec_prepare(struct codec *c, const char *topic, enum event_kind kind,
    int *rerr, char *msg, size_t msglen)
{
	struct wschema *w;
	const char *text;
	char subject[512];
	int id, ret;

	*rerr = REGISTRY_OK;
	if (c->fmt != CODEC_AVRO || wschema_find(c, topic, kind) != NULL)
		return 0;
	if ((text = kind_schema(kind)) == NULL) {
		snprintf(msg, msglen, "no schema for events of this kind");
		return -1;
	}
	if (c->reg == NULL) {
		snprintf(msg, msglen, "no schema registry to register with");
		return -1;
	}
	snprintf(subject, sizeof(subject), "%s-value", topic);
	if (curl_ready(c, msg, msglen) == -1)
		return -1;
	if ((ret = registry_register(c->reg, subject, text, &id, msg,
	    msglen)) != REGISTRY_OK) {
		*rerr = ret;
		return -1;
	}
	if ((w = realloc(c->w, (c->nw + 1) * sizeof(*w))) == NULL) {
		snprintf(msg, msglen, "out of memory");
		return -1;
	}
	c->w = w;
	if (wschema_init(&c->w[c->nw], topic, kind, id, msg, msglen) == -1)
		return -1;
	c->nw++;
	return 0;
}

/*
 * The prepared schemas again, from the text compiled in, for the ids
 * the registry gave: nothing is shared with c, so each thread reads and
 * writes its own values, writer and buffer.
 */
struct codec *
codec_writer(const struct codec *c, char *msg, size_t msglen)
{
	struct codec *d;
	size_t i;

	if ((d = calloc(1, sizeof(*d))) == NULL ||
	    (c->nw > 0 && (d->w = calloc(c->nw, sizeof(*d->w))) == NULL)) {
		free(d);
		snprintf(msg, msglen, "out of memory");
		return NULL;
	}
	d->fmt = c->fmt;
	for (i = 0; i < c->nw; i++) {
		if (wschema_init(&d->w[i], c->w[i].topic, c->w[i].kind,
		    c->w[i].s.id, msg, msglen) == -1) {
			codec_free(d);
			return NULL;
		}
		d->nw++;
	}
	return d;
}

/* The ce_* headers and content-type of Avro event ev. */
static rd_kafka_headers_t *
avro_headers(const struct event *ev, const char *traceparent)
{
	rd_kafka_headers_t *h;

	if (traceparent == NULL || *traceparent == '\0')
		traceparent = ev->traceparent;
	if ((h = rd_kafka_headers_new(10)) == NULL)
		return NULL;
	if (kafka_header_add_str(h, FLOW_H_CONTENT_TYPE,
	    CODEC_AVRO_CONTENT_TYPE) != 0 ||
	    kafka_header_add_str(h, FLOW_H_CE_SPECVERSION, "1.0") != 0 ||
	    kafka_header_add_str(h, FLOW_H_CE_ID, ev->id) != 0 ||
	    kafka_header_add_str(h, FLOW_H_CE_SOURCE, ev->source) != 0 ||
	    kafka_header_add_str(h, FLOW_H_CE_TYPE,
	    event_kind_type(ev->kind)) != 0 ||
	    kafka_header_add_str(h, FLOW_H_CE_SUBJECT, ev->subject) != 0 ||
	    kafka_header_add_str(h, FLOW_H_CE_TIME, ev->time) != 0 ||
	    (*traceparent != '\0' &&
	    kafka_header_add_str(h, FLOW_H_TRACEPARENT, traceparent) != 0)) {
		rd_kafka_headers_destroy(h);
		return NULL;
	}
	return h;
}

/* Writes datum v into c's buffer from off; its length, or -1 (no room). */
static int64_t
write_at(struct codec *c, avro_value_t *v, size_t off)
{
	if (c->wr == NULL) {
		if ((c->wr = avro_writer_memory(c->wbuf + off,
		    (int64_t)(c->wcap - off))) == NULL)
			return -1;
	} else
		avro_writer_memory_set_dest(c->wr, c->wbuf + off,
		    (int64_t)(c->wcap - off));
	return avro_value_write(c->wr, v) == 0 ? avro_writer_tell(c->wr) : -1;
}

/*
 * The wire format of datum v, written with schema id, in a new buffer.
 * The datum goes into c's buffer first: asking its size first would walk
 * it twice.  One that does not fit grows the buffer to its size.
 */
static int
wire_encode(struct codec *c, avro_value_t *v, int id, void **out,
    size_t *outlen)
{
	unsigned char *buf;
	size_t size;
	int64_t n;
	char *nb;

	if (c->wcap == 0 || (n = write_at(c, v, CODEC_HEADER_LEN)) < 0) {
		if (avro_value_sizeof(v, &size) != 0 ||
		    (nb = realloc(c->wbuf, CODEC_HEADER_LEN + size + 1024)) ==
		    NULL)
			return -1;
		c->wbuf = nb;
		c->wcap = CODEC_HEADER_LEN + size + 1024;
		if ((n = write_at(c, v, CODEC_HEADER_LEN)) < 0)
			return -1;
	}
	if ((buf = malloc(CODEC_HEADER_LEN + (size_t)n)) == NULL)
		return -1;
	buf[0] = CODEC_MAGIC;
	util_put_be32(buf + 1, (uint32_t)id);
	memcpy(buf + CODEC_HEADER_LEN, c->wbuf + CODEC_HEADER_LEN, (size_t)n);
	*out = buf;
	*outlen = CODEC_HEADER_LEN + (size_t)n;
	return 0;
}

int
codec_encode_event(struct codec *c, const char *topic, const struct event *ev,
    const char *traceparent, void **value, size_t *vlen,
    rd_kafka_headers_t **hdrs, char *msg, size_t msglen)
{
	struct evavro_rec rec;
	struct wschema *w;
	avro_value_t v;

	*value = NULL;
	*hdrs = NULL;
	/* JSON prepares nothing: no writer writes through here in JSON. */
	if ((w = wschema_find(c, topic, ev->kind)) == NULL) {
		snprintf(msg, msglen, "%s: no schema prepared for %s events",
		    topic, event_kind_type(ev->kind));
		return -1;
	}
	if (evavro_value(&w->map, ev, &rec, &v) == -1 ||
	    wire_encode(c, &v, w->s.id, value, vlen) == -1) {
		snprintf(msg, msglen, "cannot encode: %s", avro_strerror());
		return -1;
	}
	if ((*hdrs = avro_headers(ev, traceparent)) == NULL) {
		free(*value);
		*value = NULL;
		snprintf(msg, msglen, "out of memory");
		return -1;
	}
	return 0;
}

int
codec_encode(struct codec *c, const char *topic, const char *json,
    size_t len, const char *traceparent, void **value, size_t *vlen,
    rd_kafka_headers_t **hdrs, char *msg, size_t msglen)
{
	struct event ev;
	struct event_err err;
	int rc;

	*value = NULL;
	*hdrs = NULL;
	if (event_parse(json, len, &ev, &err) == -1) {
		snprintf(msg, msglen, "not an event: %s", err.text);
		event_free(&ev);
		return -1;
	}
	rc = codec_encode_event(c, topic, &ev, traceparent, value, vlen, hdrs,
	    msg, msglen);
	event_free(&ev);
	return rc;
}

/*
 * Reading.
 */

int
codec_is_avro(const rd_kafka_headers_t *h)
{
	char ct[64];
	size_t n = strlen(CODEC_AVRO_CONTENT_TYPE);

	if (kafka_header_get_str(h, FLOW_H_CONTENT_TYPE, ct, sizeof(ct)) < 0)
		return 0;
	return strncmp(ct, CODEC_AVRO_CONTENT_TYPE, n) == 0 &&
	    (ct[n] == '\0' || ct[n] == ';');
}

/* A free slot of the reading cache: a new one, else the oldest's. */
static struct avsc *
cache_slot(struct codec *c)
{
	struct avsc *s;

	if (c->nr < CACHE_MAX)
		return &c->r[c->nr++];
	s = &c->r[c->next_r];
	c->next_r = (c->next_r + 1) % CACHE_MAX;
	avsc_free(s);
	return s;
}

/* Gives back the slot cache_slot() handed out, when it was not filled. */
static void
cache_unslot(struct codec *c, struct avsc *s)
{
	*s = c->r[--c->nr];
	memset(&c->r[c->nr], 0, sizeof(c->r[c->nr]));
	c->next_r = 0;
}

int
codec_cache_schema(struct codec *c, int id, const char *schema, char *msg,
    size_t msglen)
{
	struct avsc *s = cache_slot(c);

	if (avsc_init(s, id, schema, 1, msg, msglen) == -1) {
		cache_unslot(c, s);
		return -1;
	}
	return 0;
}

/* The schema of id, from the cache or the registry. */
static int
reader_schema(struct codec *c, int id, struct avsc **sp, char *why,
    size_t whylen)
{
	struct avsc *s;
	char *text, msg[200];
	size_t i;
	int ret;

	for (i = 0; i < c->nr; i++)
		if (c->r[i].id == id) {
			*sp = &c->r[i];
			return CODEC_OK;
		}
	if (c->reg == NULL) {
		snprintf(why, whylen, "an Avro record, and no schema registry "
		    "to read it with (-r URL or $SCHEMA_REGISTRY_URL)");
		return CODEC_INVALID;
	}
	/*
	 * A registry that did not answer is not asked again for a while:
	 * each call may wait REGISTRY_TIMEOUT_MS, on the consuming thread.
	 */
	if (util_mono_ms() < c->down_until) {
		snprintf(why, whylen, "schema id %d: the registry did not "
		    "answer a moment ago (%s); not asked again before %d ms",
		    id, c->down_why, REGISTRY_QUIET_MS);
		return CODEC_TRANSIENT;
	}
	if (curl_ready(c, why, whylen) == -1)
		return CODEC_NOMEM;
	if ((ret = registry_schema(c->reg, id, &text, msg, sizeof(msg))) !=
	    REGISTRY_OK) {
		snprintf(why, whylen, "schema id %d: %s", id, msg);
		if (ret == REGISTRY_UNAVAILABLE || ret == REGISTRY_BAD_REPLY) {
			c->down_until = util_mono_ms() + REGISTRY_QUIET_MS;
			snprintf(c->down_why, sizeof(c->down_why), "%.120s", msg);
		}
		return ret == REGISTRY_NOT_FOUND || ret == REGISTRY_REFUSED ?
		    CODEC_INVALID : ret == REGISTRY_NOMEM ? CODEC_NOMEM :
		    CODEC_TRANSIENT;
	}
	s = cache_slot(c);
	ret = avsc_init(s, id, text, 1, why, whylen);
	free(text);
	if (ret == -1) {
		cache_unslot(c, s);
		return CODEC_INVALID;
	}
	*sp = s;
	return CODEC_OK;
}

static cJSON	*avro_to_json(avro_value_t *v, int depth);

static cJSON *
record_to_json(avro_value_t *v, int depth)
{
	avro_value_t field;
	const char *fname;
	cJSON *o, *m;
	size_t i, n;

	if (avro_value_get_size(v, &n) != 0 || (o = cJSON_CreateObject()) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if (avro_value_get_by_index(v, i, &field, &fname) != 0)
			goto fail;
		/* A null union member is left out, as event.c expects. */
		if (avro_value_get_type(&field) == AVRO_UNION) {
			avro_value_t b;

			if (avro_value_get_current_branch(&field, &b) != 0)
				goto fail;
			if (avro_value_get_type(&b) == AVRO_NULL)
				continue;
		}
		if ((m = avro_to_json(&field, depth + 1)) == NULL)
			goto fail;
		/* The name is the schema's, which outlives the tree. */
		cJSON_AddItemToObjectCS(o, fname, m);
	}
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}

static cJSON *
array_to_json(avro_value_t *v, int depth)
{
	avro_value_t e;
	cJSON *a, *m;
	size_t i, n;

	if (avro_value_get_size(v, &n) != 0 || (a = cJSON_CreateArray()) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if (avro_value_get_by_index(v, i, &e, NULL) != 0 ||
		    (m = avro_to_json(&e, depth + 1)) == NULL) {
			cJSON_Delete(a);
			return NULL;
		}
		cJSON_AddItemToArray(a, m);
	}
	return a;
}

/*
 * An integer as event.c reads one: exact in a double, else NaN ("not an
 * integer"), so that no rounding can bring a value into range.
 */
static cJSON *
int_json(int64_t n)
{
	if (n > INT64_C(1) << 53 || n < -(INT64_C(1) << 53))
		return cJSON_CreateNumber(NAN);
	return cJSON_CreateNumber((double)n);
}

/*
 * A string as JSON text may hold one: UTF-8, no control characters.  Not
 * copied: the datum holds it until the next record is read, and the tree
 * is gone by then (codec_parse()).
 */
static cJSON *
str_json(const char *s, size_t size)
{
	size_t i;

	if (size == 0)
		return NULL;
	for (i = 0; i < size - 1; i++)
		if ((unsigned char)s[i] < 0x20)
			return NULL;
	if (jsonl_utf8_check(s, size - 1, NULL) != 0)
		return NULL;
	return cJSON_CreateStringReference(s);
}

/*
 * The JSON of datum v: records as objects, longs and ints as integers,
 * enums as their symbol, a union as its branch.  Floating point is NaN,
 * which event.c takes for "not an integer", as it takes 1250.0 in JSON
 * text: money is never a float.  Bytes, fixed, maps and strings that
 * JSON text could not hold: NULL, as for no memory.
 */
static cJSON *
avro_to_json(avro_value_t *v, int depth)
{
	const char *s;
	size_t size;
	int32_t i32;
	int64_t i64;
	int b, sym;
	avro_value_t br;

	if (depth > DEPTH_MAX)
		return NULL;
	switch (avro_value_get_type(v)) {
	case AVRO_RECORD:
		return record_to_json(v, depth);
	case AVRO_ARRAY:
		return array_to_json(v, depth);
	case AVRO_UNION:
		if (avro_value_get_current_branch(v, &br) != 0)
			return NULL;
		return avro_to_json(&br, depth + 1);
	case AVRO_NULL:
		return cJSON_CreateNull();
	case AVRO_STRING:
		if (avro_value_get_string(v, &s, &size) != 0)
			return NULL;
		return str_json(s, size);
	case AVRO_ENUM:
		if (avro_value_get_enum(v, &sym) != 0 ||
		    (s = avro_schema_enum_get(avro_value_get_schema(v), sym)) ==
		    NULL)
			return NULL;
		return cJSON_CreateStringReference(s);	/* the schema's */
	case AVRO_INT32:
		return avro_value_get_int(v, &i32) == 0 ? int_json(i32) : NULL;
	case AVRO_INT64:
		return avro_value_get_long(v, &i64) == 0 ? int_json(i64) : NULL;
	case AVRO_BOOLEAN:
		return avro_value_get_boolean(v, &b) == 0 ?
		    cJSON_CreateBool(b) : NULL;
	case AVRO_DOUBLE:
	case AVRO_FLOAT:
		return cJSON_CreateNumber(NAN);
	default:
		return NULL;
	}
}

/*
 * The guard in front of avro-c's decoding.  avro-c trusts a record's
 * lengths: a negative one makes its skip run backwards (an array can
 * then loop for ever) and its read ask malloc for nearly 2^64 bytes, and
 * a length beyond the record's end is allocated before the bytes are
 * found missing, and leaked.  So a datum is walked first, as the
 * writer's schema lays it out, and every length, count, union branch and
 * enum symbol checked against the bytes there are; avro-c decodes only a
 * datum that fits its bytes exactly.  The walk allocates nothing, and
 * visits at most CHECK_BUDGET values, so that a block of a million
 * zero-byte items costs no more than a refusal.
 */
#define CHECK_BUDGET	100000

struct cursor {
	const unsigned char *p, *end;
	long		 budget;
};

/* A zig-zag varint, at most 10 bytes. */
static int
cur_long(struct cursor *c, int64_t *v)
{
	uint64_t u = 0;
	int shift;

	for (shift = 0; shift < 70; shift += 7) {
		if (c->p == c->end)
			return -1;
		u |= (uint64_t)(*c->p & 0x7f) << shift;
		if ((*c->p++ & 0x80) == 0) {
			*v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
			return 0;
		}
	}
	return -1;
}

static int
cur_skip(struct cursor *c, int64_t n)
{
	if (n < 0 || n > c->end - c->p)
		return -1;
	c->p += n;
	return 0;
}

static int	check_datum(struct cursor *c, avro_schema_t s, int depth);

/* An array's or a map's blocks of items. */
static int
check_blocks(struct cursor *c, avro_schema_t items, int map, int depth)
{
	int64_t n, size, i;

	for (;;) {
		if (cur_long(c, &n) == -1)
			return -1;
		if (n == 0)
			return 0;
		if (n < 0) {
			/* -n items, then the block's size in bytes */
			if (n == INT64_MIN || cur_long(c, &size) == -1 ||
			    size < 0)
				return -1;
			n = -n;
		}
		if (n > c->budget)
			return -1;
		for (i = 0; i < n; i++)
			if ((map && (cur_long(c, &size) == -1 ||
			    cur_skip(c, size) == -1)) ||
			    check_datum(c, items, depth + 1) == -1)
				return -1;
	}
}

static int
check_datum(struct cursor *c, avro_schema_t s, int depth)
{
	int64_t v;
	size_t i, n;

	if (depth > DEPTH_MAX || --c->budget < 0)
		return -1;
	switch (avro_typeof(s)) {
	case AVRO_NULL:
		return 0;
	case AVRO_BOOLEAN:
		return cur_skip(c, 1);
	case AVRO_INT32:
		return cur_long(c, &v) == 0 && v >= INT32_MIN &&
		    v <= INT32_MAX ? 0 : -1;
	case AVRO_INT64:
		return cur_long(c, &v);
	case AVRO_FLOAT:
		return cur_skip(c, 4);
	case AVRO_DOUBLE:
		return cur_skip(c, 8);
	case AVRO_STRING:
	case AVRO_BYTES:
		return cur_long(c, &v) == 0 ? cur_skip(c, v) : -1;
	case AVRO_FIXED:
		return cur_skip(c, avro_schema_fixed_size(s));
	case AVRO_ENUM:
		return cur_long(c, &v) == 0 && v >= 0 &&
		    v < avro_schema_enum_number_of_symbols(s) ? 0 : -1;
	case AVRO_UNION:
		if (cur_long(c, &v) == -1 || v < 0 ||
		    (uint64_t)v >= avro_schema_union_size(s))
			return -1;
		return check_datum(c, avro_schema_union_branch(s, (int)v),
		    depth + 1);
	case AVRO_RECORD:
		n = avro_schema_record_size(s);
		for (i = 0; i < n; i++)
			if (check_datum(c, avro_schema_record_field_get_by_index(
			    s, (int)i), depth + 1) == -1)
				return -1;
		return 0;
	case AVRO_ARRAY:
		return check_blocks(c, avro_schema_array_items(s), 0, depth);
	case AVRO_MAP:
		return check_blocks(c, avro_schema_map_values(s), 1, depth);
	case AVRO_LINK:
		return check_datum(c, avro_schema_link_target(s), depth + 1);
	default:
		return -1;
	}
}

/* c's reader, pointed at len bytes at p; NULL when out of memory. */
static avro_reader_t
reader_at(struct codec *c, const unsigned char *p, size_t len)
{
	if (c->rd == NULL)
		return c->rd = avro_reader_memory((const char *)p, (int64_t)len);
	avro_reader_memory_set_source(c->rd, (const char *)p, (int64_t)len);
	return c->rd;
}

/* Reads the datum of a wire-format record into s's value. */
static int
wire_decode(struct codec *c, struct avsc *s, const unsigned char *p,
    size_t len, char *why, size_t whylen)
{
	struct cursor cur = { p, p + len, CHECK_BUDGET };

	avro_value_reset(&s->value);
	if (check_datum(&cur, s->schema, 0) == -1) {
		snprintf(why, whylen, "the bytes do not decode with schema "
		    "id %d: a length, count or index beyond the record, or "
		    "too many values", s->id);
		return CODEC_INVALID;
	}
	if (cur.p != cur.end) {
		snprintf(why, whylen, "the bytes do not decode with schema "
		    "id %d: %zu bytes where its datum takes %zu", s->id, len,
		    (size_t)(cur.p - p));
		return CODEC_INVALID;
	}
	if (reader_at(c, p, len) == NULL) {
		snprintf(why, whylen, "out of memory");
		return CODEC_NOMEM;
	}
	if (avro_value_read(c->rd, &s->value) != 0) {
		snprintf(why, whylen, "the bytes do not decode with schema "
		    "id %d: %s", s->id, avro_strerror());
		return CODEC_INVALID;
	}
	return CODEC_OK;
}

/*
 * The CloudEvents attributes a record's headers carry, in the order our
 * producers write them, which is the order they are looked for in.  The
 * binding's ce_traceparent, when a record has it, is taken before the
 * W3C header.
 */
static const struct {
	const char *hdr, *attr;
} ce_attrs[] = {
	{ FLOW_H_CE_SPECVERSION, "specversion" },
	{ FLOW_H_CE_ID, "id" },
	{ FLOW_H_CE_SOURCE, "source" },
	{ FLOW_H_CE_TYPE, "type" },
	{ FLOW_H_CE_SUBJECT, "subject" },
	{ FLOW_H_CE_TIME, "time" },
	{ FLOW_H_TRACEPARENT, FLOW_H_TRACEPARENT },
	{ FLOW_H_CE_TRACEPARENT, FLOW_H_TRACEPARENT }
};
#define CE_ATTRS	(sizeof(ce_attrs) / sizeof(ce_attrs[0]))
#define CE_W3C_TP	(CE_ATTRS - 2)	/* read only without the next */
#define CE_BINDING_TP	(CE_ATTRS - 1)

/* Adds attr from a header's value v (sz bytes), if the record has it. */
static int
attr_from_header(cJSON *ev, const char *name, const void *v, size_t sz,
    const char *attr, char *why, size_t whylen)
{
	char buf[HDR_MAX];
	cJSON *item;
	int n;

	if ((n = kafka_header_str(v, sz, buf, sizeof(buf))) == -1)
		return CODEC_OK;
	if (n < 0) {
		snprintf(why, whylen, "header %s: too long or holds a NUL",
		    name);
		return CODEC_INVALID;
	}
	/* attr is ce_attrs[]'s, which outlives the tree: not copied. */
	if ((item = cJSON_CreateString(buf)) == NULL)
		return CODEC_NOMEM;
	if (!cJSON_AddItemToObjectCS(ev, attr, item)) {
		cJSON_Delete(item);
		return CODEC_NOMEM;
	}
	return CODEC_OK;
}

/*
 * The CloudEvents tree of the ce_* headers and data (taken, always).  The
 * headers are read in one pass: looking each name up would walk them all
 * for each of the eight.
 */
static int
envelope(const rd_kafka_headers_t *h, cJSON *data, cJSON **root, char *why,
    size_t whylen)
{
	const char *names[CE_ATTRS];
	const void *vals[CE_ATTRS];
	size_t sizes[CE_ATTRS], i;
	cJSON *ev;
	int ret;

	if ((ev = cJSON_CreateObject()) == NULL) {
		cJSON_Delete(data);
		snprintf(why, whylen, "out of memory");
		return CODEC_NOMEM;
	}
	cJSON_AddItemToObject(ev, "data", data);
	for (i = 0; i < CE_ATTRS; i++)
		names[i] = ce_attrs[i].hdr;
	kafka_headers_find(h, names, CE_ATTRS, vals, sizes);
	if (vals[CE_BINDING_TP] != NULL)
		vals[CE_W3C_TP] = NULL;
	for (i = 0; i < CE_ATTRS; i++)
		if ((ret = attr_from_header(ev, names[i], vals[i], sizes[i],
		    ce_attrs[i].attr, why, whylen)) != CODEC_OK) {
			cJSON_Delete(ev);
			return ret;
		}
	*root = ev;
	return CODEC_OK;
}

/* An Avro record as the cJSON tree of its CloudEvents JSON. */
static int
decode_tree(struct codec *c, const void *value, size_t len,
    const rd_kafka_headers_t *h, cJSON **root, char *why, size_t whylen)
{
	const unsigned char *p = value;
	struct avsc *s;
	cJSON *data;
	int id, ret;

	*root = NULL;
	if (p == NULL || len < CODEC_HEADER_LEN || p[0] != CODEC_MAGIC) {
		snprintf(why, whylen, "an Avro record without the wire "
		    "format's magic byte and schema id");
		return CODEC_INVALID;
	}
	id = (int)util_get_be32(p + 1);
	if ((ret = reader_schema(c, id, &s, why, whylen)) != CODEC_OK)
		return ret;
	if ((ret = wire_decode(c, s, p + CODEC_HEADER_LEN,
	    len - CODEC_HEADER_LEN, why, whylen)) != CODEC_OK)
		return ret;
	if (avro_value_get_type(&s->value) != AVRO_RECORD ||
	    (data = avro_to_json(&s->value, 0)) == NULL) {
		snprintf(why, whylen, "schema id %d: its datum is no event's "
		    "data (a record of UTF-8 strings without control "
		    "characters, numbers, enums, arrays and unions)", id);
		return CODEC_INVALID;
	}
	return envelope(h, data, root, why, whylen);
}

int
codec_parse(struct codec *c, const void *value, size_t len,
    const rd_kafka_headers_t *h, struct event *ev, struct event_err *err)
{
	cJSON *root;
	size_t mark;
	int ret;

	if (!codec_is_avro(h))
		return event_parse(value != NULL ? value : "", len, ev, err) ==
		    0 ? CODEC_OK : CODEC_INVALID;
	memset(err, 0, sizeof(*err));
	/* The tree lives and dies in the thread's arena (jsonmem.h). */
	mark = jsonmem_begin();
	if ((ret = decode_tree(c, value, len, h, &root, err->msg,
	    sizeof(err->msg))) != CODEC_OK) {
		jsonmem_end(mark);
		memset(ev, 0, sizeof(*ev));
		snprintf(err->text, sizeof(err->text), "%s", err->msg);
		return ret;
	}
	ret = event_parse_tree(root, ev, err) == 0 ? CODEC_OK : CODEC_INVALID;
	jsonmem_end_tree(mark, root);
	return ret;
}
