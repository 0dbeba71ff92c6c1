/*
 * orderdoc.c - the JSON documents order-serve keeps for an order
 * (orderdoc.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "event.h"
#include "exitcode.h"
#include "log.h"
#include "orderdoc.h"
#include "util.h"

/* Prints and frees o; out of memory is fatal. */
static char *
doc_print(cJSON *o)
{
	char *s;

	if (o == NULL || (s = cJSON_PrintUnformatted(o)) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	cJSON_Delete(o);
	return s;
}

char *
orderdoc_error(const char *msg, const char *field)
{
	cJSON *o;

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "error", msg);
	if (field != NULL && *field != '\0')
		cJSON_AddStringToObject(o, "field", field);
	return doc_print(o);
}

static char *
doc_created(const char *order_id, const char *event_id)
{
	cJSON *o;

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "order_id", order_id);
	cJSON_AddStringToObject(o, "event_id", event_id);
	cJSON_AddStringToObject(o, "status", "pending");
	return doc_print(o);
}

/* The order as stored and as GET /orders/ID shows it. */
static char *
doc_order(const struct order *ord, const char *event_id, int64_t now_ms)
{
	cJSON *o, *items, *it;
	char ts[40];
	size_t i;

	util_rfc3339(now_ms, ts, sizeof(ts));
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "order_id", ord->order_id);
	cJSON_AddStringToObject(o, "status", "pending");
	cJSON_AddStringToObject(o, "event_id", event_id);
	cJSON_AddStringToObject(o, "customer_id", ord->customer_id);
	cJSON_AddStringToObject(o, "email", ord->email);
	cJSON_AddStringToObject(o, "currency", ord->currency);
	cJSON_AddNumberToObject(o, "total", (double)ord->total);
	cJSON_AddStringToObject(o, "payment_method", ord->payment_method);
	items = cJSON_AddArrayToObject(o, "items");
	for (i = 0; i < ord->nitems; i++) {
		it = cJSON_CreateObject();
		cJSON_AddStringToObject(it, "sku", ord->items[i].sku);
		cJSON_AddNumberToObject(it, "qty", ord->items[i].qty);
		cJSON_AddNumberToObject(it, "unit_price",
		    (double)ord->items[i].unit_price);
		cJSON_AddItemToArray(items, it);
	}
	cJSON_AddStringToObject(o, "created_at", ts);
	return doc_print(o);
}

/* What a replay of an idempotency key answers, with the body's hash. */
static char *
doc_outcome(const char *fingerprint, int status, const char *order_id,
    const char *body)
{
	cJSON *o;

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "fingerprint", fingerprint);
	cJSON_AddNumberToObject(o, "status", status);
	cJSON_AddStringToObject(o, "order_id", order_id);
	cJSON_AddStringToObject(o, "body", body);
	return doc_print(o);
}

int
orderdoc_replay(const char *outcome, size_t outcome_len, const char *fp,
    char **body)
{
	const cJSON *ofp, *st, *ob;
	cJSON *o;
	int status;

	o = cJSON_ParseWithLength(outcome, outcome_len);
	ofp = cJSON_GetObjectItemCaseSensitive(o, "fingerprint");
	st = cJSON_GetObjectItemCaseSensitive(o, "status");
	ob = cJSON_GetObjectItemCaseSensitive(o, "body");
	if (!cJSON_IsString(ofp) || !cJSON_IsNumber(st) ||
	    !cJSON_IsString(ob)) {
		status = 500;
		*body = orderdoc_error("stored answer unreadable", NULL);
	} else if (strcmp(ofp->valuestring, fp) != 0) {
		status = 422;
		*body = orderdoc_error("Idempotency-Key already used with a "
		    "different body", "Idempotency-Key");
	} else {
		status = st->valueint;
		*body = util_xstrdup(ob->valuestring);
	}
	cJSON_Delete(o);
	return status;
}

static int
hex_sha256(const void *p, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen, i;

	if (EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL) != 1)
		return -1;
	for (i = 0; i < mdlen && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

int
orderdoc_build(struct orderdoc *d, const char *source,
    const char *traceparent, const char *body, size_t len, int keyed,
    int64_t now_ms)
{
	size_t elen;

	if (event_order_created(&d->ev, &d->ord, source, traceparent) == -1 ||
	    (d->event_json = event_serialize(&d->ev, &elen)) == NULL)
		return -1;
	if (asprintf(&d->outbox, "%s\n%s\n%s", d->ord.order_id,
	    traceparent, d->event_json) == -1) {
		d->outbox = NULL;
		return -1;
	}
	d->order_json = doc_order(&d->ord, d->ev.id, now_ms);
	d->created = doc_created(d->ord.order_id, d->ev.id);
	if (keyed) {
		if (hex_sha256(body, len, d->fp) == -1)
			return -1;
		d->outcome = doc_outcome(d->fp, 201, d->ord.order_id,
		    d->created);
	}
	return 0;
}

void
orderdoc_free(struct orderdoc *d)
{
	order_free(&d->ord);
	event_free(&d->ev);
	free(d->event_json);
	free(d->outbox);
	free(d->order_json);
	free(d->created);
	free(d->outcome);
}

static void
set_str(cJSON *o, const char *name, const char *v)
{
	cJSON_DeleteItemFromObjectCaseSensitive(o, name);
	cJSON_AddStringToObject(o, name, v);
}

char *
orderdoc_paid(const char *order_json, enum event_pay_status status,
    const char *payment_id, const char *reason, const char *time)
{
	cJSON *o;

	if ((o = cJSON_Parse(order_json)) == NULL)
		return NULL;
	set_str(o, "status", event_pay_status_name(status));
	set_str(o, "payment_id", payment_id);
	if (status == EVENT_PAY_DECLINED)
		set_str(o, "reason", reason);
	else
		cJSON_DeleteItemFromObjectCaseSensitive(o, "reason");
	set_str(o, "updated_at", time);
	return doc_print(o);
}
