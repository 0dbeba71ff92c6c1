/*
 * codec_fuzz.c - libFuzzer target for the Avro side of common/codec.c:
 * a record's bytes, decoded with the project's own schemas, as a hostile
 * producer may write them.
 *
 * The first byte of an input picks the schema and type (order.created v1
 * or v2, payment.processed v1); the rest is the datum, behind the wire
 * format's magic byte and that schema's id.  The schemas are put in the
 * codec's cache (codec_cache_schema()), so no registry is asked.  Besides
 * not crashing, leaking or tripping UBSan (avro-c's decoding included),
 * every outcome is checked: a refusal is CODEC_INVALID with a message;
 * an event accepted is of the type its header says and serialises to
 * JSON that event_parse() accepts as the same kind.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "event.h"
#include "flow.h"
#include "kafka.h"
#include "schemas.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct codec *codec;
static rd_kafka_headers_t *hdrs[3];

static const struct {
	const char	*schema;
	const char	*type;
	enum event_kind	 kind;
} kinds[3] = {
	{ schema_order_created_v1, EVENT_TYPE_ORDER_CREATED_V1,
	    EVENT_ORDER_CREATED_V1 },
	{ schema_order_created_v2, EVENT_TYPE_ORDER_CREATED_V2,
	    EVENT_ORDER_CREATED_V2 },
	{ schema_payment_processed_v1, EVENT_TYPE_PAYMENT_PROCESSED_V1,
	    EVENT_PAYMENT_PROCESSED_V1 }
};

/* At exit: what init() made, freed, so that the leak check sees none. */
static void
fini(void)
{
	size_t i;

	codec_free(codec);
	for (i = 0; i < 3; i++)
		rd_kafka_headers_destroy(hdrs[i]);
}

static void
init(void)
{
	char msg[256];
	size_t i;

	if ((codec = codec_new(CODEC_JSON, NULL, msg, sizeof(msg))) == NULL)
		abort();
	for (i = 0; i < 3; i++) {
		if (codec_cache_schema(codec, (int)i + 1, kinds[i].schema, msg,
		    sizeof(msg)) == -1)
			abort();
		if ((hdrs[i] = rd_kafka_headers_new(8)) == NULL ||
		    kafka_header_add_str(hdrs[i], FLOW_H_CONTENT_TYPE,
		    CODEC_AVRO_CONTENT_TYPE) != 0 ||
		    kafka_header_add_str(hdrs[i], FLOW_H_CE_SPECVERSION,
		    "1.0") != 0 ||
		    kafka_header_add_str(hdrs[i], FLOW_H_CE_ID, "f-1") != 0 ||
		    kafka_header_add_str(hdrs[i], FLOW_H_CE_SOURCE, "/fuzz") !=
		    0 ||
		    kafka_header_add_str(hdrs[i], FLOW_H_CE_TYPE,
		    kinds[i].type) != 0 ||
		    kafka_header_add_str(hdrs[i], FLOW_H_CE_SUBJECT, "o-1") !=
		    0 ||
		    kafka_header_add_str(hdrs[i], FLOW_H_CE_TIME,
		    "2026-12-06T10:00:00Z") != 0)
			abort();
	}
	atexit(fini);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct event ev, back;
	struct event_err err;
	unsigned char *wire;
	size_t k;
	char *json;
	int ret;

	if (codec == NULL)
		init();
	if (size < 1)
		return 0;
	k = data[0] % 3;
	if ((wire = malloc(CODEC_HEADER_LEN + size - 1)) == NULL)
		abort();
	wire[0] = CODEC_MAGIC;
	wire[1] = wire[2] = wire[3] = 0;
	wire[4] = (unsigned char)(k + 1);
	memcpy(wire + CODEC_HEADER_LEN, data + 1, size - 1);
	ret = codec_parse(codec, wire, CODEC_HEADER_LEN + size - 1, hdrs[k],
	    &ev, &err);
	if (ret == CODEC_OK) {
		if (ev.kind != kinds[k].kind)
			abort();
		if ((json = event_serialize(&ev, NULL)) == NULL)
			abort();
		if (event_parse(json, strlen(json), &back, &err) == -1 ||
		    back.kind != ev.kind)
			abort();
		event_free(&back);
		free(json);
	} else if (ret != CODEC_INVALID || err.text[0] == '\0')
		abort();
	event_free(&ev);
	free(wire);
	return 0;
}
