/*
 * flow.h - the names the flow is built from: its topics and the headers
 * its events carry on Kafka.  Every command takes them from here, so a
 * misspelt name does not compile (test/16-names.bats fails if one is
 * written as a string literal anywhere else in cmd/ or common/).
 *
 * Topics: orderflow(7), TOPICS.  Each topic name here is the one of the
 * contract; opt_topic() puts --topic-prefix in front of it.  Retry and
 * dead-letter topics are their main topic's name plus FLOW_RETRY_SUFFIX or
 * FLOW_DLQ_SUFFIX, and the macros below are built that way.
 *
 * Headers: orderflow(7), HEADERS.  Values are UTF-8 strings; numbers are
 * written in decimal.
 */
#ifndef OF_FLOW_H
#define OF_FLOW_H

#include <librdkafka/rdkafka.h>

#define FLOW_RETRY_SUFFIX	"-retry"
#define FLOW_DLQ_SUFFIX		"-dlq"

#define FLOW_TOPIC_ORDERS	"order-created"
#define FLOW_TOPIC_ORDERS_RETRY	FLOW_TOPIC_ORDERS FLOW_RETRY_SUFFIX
#define FLOW_TOPIC_ORDERS_DLQ	FLOW_TOPIC_ORDERS FLOW_DLQ_SUFFIX
#define FLOW_TOPIC_PAYMENTS	"payment-processed"
#define FLOW_TOPIC_PAYMENTS_RETRY FLOW_TOPIC_PAYMENTS FLOW_RETRY_SUFFIX
#define FLOW_TOPIC_PAYMENTS_DLQ	FLOW_TOPIC_PAYMENTS FLOW_DLQ_SUFFIX

/* Every event: its CloudEvents content type and W3C trace context. */
#define FLOW_H_CONTENT_TYPE	"content-type"
/*
 * The W3C trace context.  The same name serves the Kafka header, the HTTP
 * header of order-serve and the CloudEvents attribute (distributed
 * tracing extension), as their specifications name it.
 */
#define FLOW_H_TRACEPARENT	"traceparent"

/*
 * An Avro event (codec.h): CloudEvents' Kafka binding in binary content
 * mode carries the attributes as ce_* headers; content-type is the data's.
 */
#define FLOW_H_CE_SPECVERSION	"ce_specversion"
#define FLOW_H_CE_ID		"ce_id"
#define FLOW_H_CE_SOURCE	"ce_source"
#define FLOW_H_CE_TYPE		"ce_type"
#define FLOW_H_CE_SUBJECT	"ce_subject"
#define FLOW_H_CE_TIME		"ce_time"
#define FLOW_H_CE_TRACEPARENT	"ce_traceparent"

/* Retries and dead letters (written by pay-process, notify, dlq-replay). */
#define FLOW_H_ATTEMPT		"orderflow.attempt"
#define FLOW_H_NOT_BEFORE	"orderflow.not-before"
#define FLOW_H_ORIG_TOPIC	"orderflow.original.topic"
#define FLOW_H_ORIG_PARTITION	"orderflow.original.partition"
#define FLOW_H_ORIG_OFFSET	"orderflow.original.offset"
/* Pipe mode: the length of a line too long, of which the value is a head. */
#define FLOW_H_ORIG_LENGTH	"orderflow.original.length"
#define FLOW_H_ERROR_KIND	"orderflow.error.kind"
#define FLOW_H_ERROR_MESSAGE	"orderflow.error.message"
#define FLOW_H_REPLAY_COUNT	"orderflow.replay.count"

/* The six topics of the flow, main topics first; FLOW_NTOPICS of them. */
#define FLOW_NTOPICS	6
extern const char *const flow_topics[FLOW_NTOPICS];

/* The two dead-letter topics, the ones dlq-replay reads by default. */
#define FLOW_NDLQ	2
extern const char *const flow_dlq_topics[FLOW_NDLQ];

/* Whether topic (prefixed or not) names a dead-letter topic. */
int	flow_is_dlq(const char *topic);

/*
 * The headers every event the flow produces starts with: content-type
 * (CloudEvents structured mode) and, when traceparent is neither NULL
 * nor empty, traceparent.  Returns a new list, or NULL when out of memory.
 */
rd_kafka_headers_t *flow_headers_new(const char *traceparent);

#endif
