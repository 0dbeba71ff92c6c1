/*
 * payfollow.c - order-serve's payment follower: payment-processed into
 * the status of stored orders (payfollow.h).
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "event.h"
#include "kafka.h"
#include "log.h"
#include "orderdoc.h"
#include "payfollow.h"
#include "store.h"
#include "util.h"

#define CONSUME_BATCH		256

struct payment_upd {
	char	order_id[ORDER_ID_MAX + 1];
	char	payment_id[ORDER_ID_MAX + 1];
	char	reason[EVENT_REASON_MAX + 1];
	char	time[EVENT_TIME_MAX + 1];
	enum event_pay_status status;
};

struct payments {
	struct payment_upd	 u[CONSUME_BATCH];
	size_t			 n;
	size_t			 applied;
};

struct payfollow {
	struct kafka_consumer	*cons;
	const char		*topic;
	struct store		*st;
	struct codec		*codec;
	int			(*running)(void);
	atomic_uint_fast64_t	 applied;
	struct payments		 p;
};

/* Sets the outcome (again: a replayed event changes nothing new). */
static int
payment_apply(struct store *s, struct store_txn *t,
    const struct payment_upd *u, size_t *applied)
{
	char *json, *paid;
	int ret;

	if ((ret = store_order_get(s, t, u->order_id, &json)) ==
	    STORE_NOTFOUND)
		return 0;	/* not taken here (order-submit's) */
	if (ret != 0)
		return ret;
	paid = orderdoc_paid(json, u->status, u->payment_id, u->reason,
	    u->time);
	free(json);
	if (paid == NULL)
		return 0;
	ret = store_order_put(s, t, u->order_id, paid);
	free(paid);
	if (ret == 0)
		(*applied)++;
	return ret;
}

static int
payments_fn(struct store *s, struct store_txn *t, void *arg)
{
	struct payments *p = arg;
	size_t i;
	int ret;

	p->applied = 0;
	for (i = 0; i < p->n; i++)
		if ((ret = payment_apply(s, t, &p->u[i], &p->applied)) != 0)
			return ret;
	return 0;
}

/*
 * Takes a message into the batch; anything but a payment is passed over.
 * -1: stopped while waiting for the registry, the message not taken.
 */
static int
payment_add(struct payfollow *pf, const rd_kafka_message_t *m)
{
	struct payments *p = &pf->p;
	struct event ev;
	struct event_err err;
	struct payment_upd *u;
	int ret, tries = 0;

	/* An Avro record waits for the registry: its outcome must not be lost. */
	while ((ret = codec_parse(pf->codec, m->payload, m->len,
	    kafka_msg_headers(m), &ev, &err)) == CODEC_TRANSIENT ||
	    ret == CODEC_NOMEM) {
		if (tries++ == 0)
			log_warn("%s [%d] offset %" PRId64 ": %s; trying again "
			    "every 500 ms", rd_kafka_topic_name(m->rkt),
			    (int)m->partition, m->offset, err.text);
		event_free(&ev);
		if (!pf->running())
			return -1;
		util_sleep_ms(500);
	}
	if (ret != CODEC_OK) {
		log_warn("%s [%d] offset %" PRId64 ": not an event: %s",
		    rd_kafka_topic_name(m->rkt), (int)m->partition, m->offset,
		    err.text);
		event_free(&ev);
		return 0;
	}
	if (ev.kind == EVENT_PAYMENT_PROCESSED_V1) {
		u = &p->u[p->n++];
		snprintf(u->order_id, sizeof(u->order_id), "%s",
		    ev.payment.order_id);
		snprintf(u->payment_id, sizeof(u->payment_id), "%s",
		    ev.payment.payment_id);
		snprintf(u->reason, sizeof(u->reason), "%s",
		    ev.payment.reason);
		snprintf(u->time, sizeof(u->time), "%s", ev.time);
		u->status = ev.payment.status;
	}
	event_free(&ev);
	return 0;
}

struct payfollow *
payfollow_open(const struct opt_kafka *o, const char *topic,
    struct store *st, struct codec *codec, int (*running)(void), char *err,
    size_t errlen)
{
	struct payfollow *pf;
	const char *topics[2];

	pf = util_xcalloc(1, sizeof(*pf));
	topics[0] = topic;
	topics[1] = NULL;
	if ((pf->cons = kafka_consumer_new(o, topics, err, errlen)) == NULL) {
		free(pf);
		return NULL;
	}
	pf->topic = topic;
	pf->st = st;
	pf->codec = codec;
	pf->running = running;
	return pf;
}

int
payfollow_poll(struct payfollow *pf)
{
	struct payments *p = &pf->p;
	rd_kafka_message_t *msgs[CONSUME_BATCH];
	char reason[512];
	size_t n = 0, i;
	int ret = 0, stopped = 0;

	/* A batch without payments runs no transaction to reset applied. */
	p->n = 0;
	p->applied = 0;
	while (n < CONSUME_BATCH && (msgs[n] =
	    kafka_consumer_poll(pf->cons, n == 0 ? 100 : 0)) != NULL) {
		kafka_consumer_track(pf->cons, msgs[n]);
		if (payment_add(pf, msgs[n++]) == -1) {
			stopped = 1;
			break;
		}
	}
	if (n == 0)
		return kafka_fatal(kafka_consumer_rk(pf->cons), reason,
		    sizeof(reason)) ? (log_error("kafka: %s", reason), -1) : 0;
	while (p->n > 0 && (ret = store_run(pf->st, payments_fn, p)) != 0) {
		log_error("store: payments: %s", store_strerror(ret));
		if (!pf->running() || ret == STORE_RUNRECOVERY)
			break;
		util_sleep_ms(500);
	}
	atomic_fetch_add(&pf->applied, p->applied);
	for (i = 0; i < n; i++) {
		if (!stopped && (p->n == 0 || ret == 0))
			kafka_consumer_done(pf->cons,
			    rd_kafka_topic_name(msgs[i]->rkt),
			    msgs[i]->partition, msgs[i]->offset);
		rd_kafka_message_destroy(msgs[i]);
	}
	return 0;
}

uint64_t
payfollow_applied(struct payfollow *pf)
{
	return atomic_load(&pf->applied);
}

void
payfollow_close(struct payfollow *pf)
{
	if (pf == NULL)
		return;
	if (kafka_consumer_close(pf->cons) == -1)
		log_warn("kafka: the last offsets of %s were not committed",
		    pf->topic);
	free(pf);
}
