/*
 * codec.h - events on Kafka in either format (orderflow(7), FORMATS):
 * CloudEvents structured JSON, or Avro in the Confluent wire format with
 * the CloudEvents attributes in ce_* headers (binary content mode).
 *
 * Writing: a command chooses one format (--format).  For avro, the
 * schema of each event type it writes (schemas/ in the source tree,
 * compiled in) is registered under the topic's subject ("TOPIC-value",
 * the TopicNameStrategy) by codec_prepare(), before the first record, and
 * its id kept; codec_encode() then never waits for the network.
 *
 * Reading: every consumer takes both formats, told apart by the
 * content-type header (application/avro, else JSON), so both can share a
 * topic during a migration.  An Avro record is decoded with the schema
 * its id names (fetched from the registry once, then cached) into the
 * tree of the CloudEvents JSON of the same event, which the one
 * validator checks as it checks a parsed JSON event: the same rules, the
 * same upcast of v1, the same messages.  Retry and dead-letter records carry the bytes and headers
 * they were read with, whatever the format.
 *
 * Not thread-safe: one codec per thread that encodes or decodes
 * (codec_writer() gives another thread one that writes the same).
 */
#ifndef OF_CODEC_H
#define OF_CODEC_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "event.h"

enum codec_format { CODEC_JSON = 0, CODEC_AVRO };

/* The content-type of an Avro record (CloudEvents binary mode). */
#define CODEC_AVRO_CONTENT_TYPE	"application/avro"
#define CODEC_MAGIC		0	/* the wire format's first byte */
#define CODEC_HEADER_LEN	5	/* magic byte, 4-byte big-endian id */

/* What codec_parse() found wrong. */
enum codec_err {
	CODEC_OK = 0,
	CODEC_INVALID = -1,	/* the record is bad: dead letter, kind invalid */
	CODEC_TRANSIENT = -2,	/* the registry did not answer: try again later */
	CODEC_NOMEM = -3
};

struct codec;

/*
 * A codec writing fmt, with the registry at registry_url (may be NULL:
 * then Avro records can be neither written nor read).  fmt CODEC_AVRO
 * needs a registry.  NULL with msg set on a bad URL or no memory.
 */
struct codec	*codec_new(enum codec_format fmt, const char *registry_url,
		    char *msg, size_t msglen);
void		 codec_free(struct codec *);

/*
 * A codec for another thread that writes what c was prepared to write,
 * under the same schema ids, without asking the registry again.  It reads
 * JSON, but no Avro (it has no registry to fetch schemas from), and can
 * be prepared for nothing more.  NULL with msg set when out of memory.
 */
struct codec	*codec_writer(const struct codec *c, char *msg, size_t msglen);

/* "json" or "avro" into *fmt; -1 for anything else. */
int	codec_format_parse(const char *s, enum codec_format *fmt);

enum codec_format codec_format(const struct codec *);

/*
 * Before writing events of kind to topic: with CODEC_AVRO, registers
 * kind's schema under "topic-value" (or finds it there) and keeps its id.
 * 0, or -1 with msg set: REGISTRY_* in *rerr tells a registry that did
 * not answer (REGISTRY_UNAVAILABLE) from one that refused the schema.
 * Nothing to do with CODEC_JSON.
 */
int	codec_prepare(struct codec *, const char *topic, enum event_kind kind,
	    int *rerr, char *msg, size_t msglen);

/*
 * The Avro record of event ev for topic: ev's fields written by the
 * prepared schema (evavro.h), in the wire format, in *value (malloc'd) and *vlen, and a new
 * header list in *hdrs: content-type application/avro, the ce_*
 * attributes and traceparent (NULL or "": ev's own).  -1 with msg set
 * when ev's kind was not prepared for topic (a JSON codec prepares
 * none: a JSON writer produces event_serialize()'s text with
 * flow_headers_new()), or out of memory.
 */
int	codec_encode_event(struct codec *, const char *topic,
	    const struct event *ev, const char *traceparent, void **value,
	    size_t *vlen, rd_kafka_headers_t **hdrs, char *msg, size_t msglen);

/*
 * codec_encode_event() of an event given as its CloudEvents JSON (json,
 * len bytes: event_serialize()'s output or a stored copy of it), parsed
 * with event_parse() first.  -1 with msg set when json is no event of a
 * kind prepared for topic, or out of memory.
 */
int	codec_encode(struct codec *, const char *topic, const char *json,
	    size_t len, const char *traceparent, void **value, size_t *vlen,
	    rd_kafka_headers_t **hdrs, char *msg, size_t msglen);

/*
 * Puts schema (Avro JSON text) in the reading cache as id's, as if the
 * registry had given it: for the fuzz target and tests, which decode with
 * no registry to ask.  0, or -1 with msg set (not a schema, no memory).
 */
int	codec_cache_schema(struct codec *, int id, const char *schema,
	    char *msg, size_t msglen);

/*
 * Whether a record with headers h (may be NULL) is an Avro one: its
 * content-type is application/avro.
 */
int	codec_is_avro(const rd_kafka_headers_t *h);

/*
 * The event of a record (value, len bytes; headers h).  A JSON record
 * goes to event_parse().  An Avro one is checked against its bytes,
 * decoded with the schema its id names, and turned with its ce_* headers
 * into the cJSON tree of the same CloudEvents JSON, which
 * event_parse_tree() checks: the same rules and messages either way.
 * 0 with *ev filled, or CODEC_INVALID with err set (a decoding failure:
 * no magic byte, an id the registry does not know, bytes that do not
 * decode, no registry given; field ""), CODEC_TRANSIENT (the registry
 * did not answer) or CODEC_NOMEM with err's text set.  *ev is always
 * initialised: event_free() is safe either way.
 */
int	codec_parse(struct codec *, const void *value, size_t len,
	    const rd_kafka_headers_t *h, struct event *ev,
	    struct event_err *err);

#endif
