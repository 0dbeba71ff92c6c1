/*
 * flow.c - the topic list and the standard headers of flow.h.
 */
#include <string.h>

#include "event.h"
#include "flow.h"
#include "kafka.h"

const char *const flow_topics[FLOW_NTOPICS] = {
	FLOW_TOPIC_ORDERS, FLOW_TOPIC_ORDERS_RETRY, FLOW_TOPIC_ORDERS_DLQ,
	FLOW_TOPIC_PAYMENTS, FLOW_TOPIC_PAYMENTS_RETRY, FLOW_TOPIC_PAYMENTS_DLQ
};

const char *const flow_dlq_topics[FLOW_NDLQ] = {
	FLOW_TOPIC_ORDERS_DLQ, FLOW_TOPIC_PAYMENTS_DLQ
};

int
flow_is_dlq(const char *topic)
{
	size_t n = strlen(topic), k = strlen(FLOW_DLQ_SUFFIX);

	return n >= k && strcmp(topic + n - k, FLOW_DLQ_SUFFIX) == 0;
}

rd_kafka_headers_t *
flow_headers_new(const char *traceparent)
{
	rd_kafka_headers_t *h;

	if ((h = rd_kafka_headers_new(2)) == NULL)
		return NULL;
	if (kafka_header_add_str(h, FLOW_H_CONTENT_TYPE, EVENT_CONTENT_TYPE) != 0 ||
	    (traceparent != NULL && *traceparent != '\0' &&
	    kafka_header_add_str(h, FLOW_H_TRACEPARENT, traceparent) != 0)) {
		rd_kafka_headers_destroy(h);
		return NULL;
	}
	return h;
}
