/*
 * outbox.c - order-serve's outbox relay: publishes what the committer
 * read from the outbox and reports back what the broker acknowledged
 * (outbox.h).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "committer.h"
#include "event.h"
#include "exitcode.h"
#include "flow.h"
#include "kafka.h"
#include "log.h"
#include "outbox.h"
#include "util.h"

struct outbox {
	struct outbox_conf	 conf;
	pthread_t		 thr;
	atomic_int		 stop;		/* 1 drain, 2 stop now */
	atomic_int		 idle;		/* nothing to publish */
	atomic_int		 failed;	/* fatal Kafka error */
	atomic_uint_fast64_t	 published;
	atomic_uint_fast64_t	 delivery_failures;
	atomic_uint_fast64_t	 held;
	/* The relay thread's own. */
	struct committer_rec	*retry;		/* failed, produced again */
						/* later */
	size_t			 in_flight;	/* produced, no delivery */
						/* report yet */
	size_t			 waiting;	/* in retry */
};

struct relay_dr {
	struct outbox		*ob;
	struct committer_rec	*rec;
};

static void
retry_later(struct outbox *ob, struct committer_rec *r)
{
	r->retry_at = util_mono_ms() + OUTBOX_RETRY_MS;
	r->next = ob->retry;
	ob->retry = r;
	ob->waiting++;
}

static void
relay_dr_cb(void *opaque, rd_kafka_resp_err_t err, int32_t partition,
    int64_t offset)
{
	struct relay_dr *d = opaque;
	struct outbox *ob = d->ob;
	struct committer_rec *r = d->rec;

	(void)partition;
	(void)offset;
	free(d);
	ob->in_flight--;
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		atomic_fetch_add(&ob->published, 1);
		committer_ack(ob->conf.cm, r->seq);
		committer_rec_free(r);
		return;
	}
	atomic_fetch_add(&ob->delivery_failures, 1);
	log_msg(LOG_LEVEL_WARN, &(struct log_ctx){ .order_id = r->key },
	    "outbox record %" PRIu64 " not delivered: %s; kept, sent again",
	    r->seq, rd_kafka_err2str(err));
	retry_later(ob, r);
}

/* Produces one record; on an error it waits in the retry list. */
static void
relay_produce(struct outbox *ob, struct committer_rec *r)
{
	struct relay_dr *d;
	rd_kafka_headers_t *h;
	rd_kafka_resp_err_t err;
	char why[256];
	void *rec = NULL;
	size_t reclen;

	d = util_xmalloc(sizeof(*d));
	d->ob = ob;
	d->rec = r;
	if (ob->conf.codec == NULL) {
		if ((h = flow_headers_new(r->tp)) == NULL)
			log_fatal(OF_EXIT_FAIL, "out of memory");
	} else if (codec_encode(ob->conf.codec, ob->conf.topic, r->event,
	    r->event_len, r->tp, &rec, &reclen, &h, why, sizeof(why)) == -1)
		/* The outbox holds the events this process built. */
		log_fatal(OF_EXIT_FAIL, "outbox record %" PRIu64 ": cannot "
		    "encode it: %s", r->seq, why);
	err = kafka_produce(ob->conf.prod, ob->conf.topic, r->key,
	    strlen(r->key), rec != NULL ? rec : r->event,
	    rec != NULL ? reclen : r->event_len, h, relay_dr_cb, d);
	free(rec);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		ob->in_flight++;
		return;
	}
	rd_kafka_headers_destroy(h);
	free(d);
	atomic_fetch_add(&ob->delivery_failures, 1);
	log_warn("outbox record %" PRIu64 ": %s; sent again later", r->seq,
	    rd_kafka_err2str(err));
	retry_later(ob, r);
}

static void
relay_retry_due(struct outbox *ob)
{
	struct committer_rec **rp, *r;
	int64_t now = util_mono_ms();

	for (rp = &ob->retry; (r = *rp) != NULL;) {
		if (r->retry_at > now) {
			rp = &r->next;
			continue;
		}
		*rp = r->next;
		ob->waiting--;
		relay_produce(ob, r);
	}
}

/* Takes the records read for it and says how many more it can take. */
static struct committer_rec *
relay_take(struct outbox *ob, int64_t wait_ms)
{
	struct committer_rec *list;
	size_t busy = ob->in_flight + ob->waiting;
	int idle;

	list = committer_records(ob->conf.cm, wait_ms, &busy, &idle);
	atomic_store(&ob->idle, idle);
	atomic_store(&ob->held, busy);
	return list;
}

static void *
relay_main(void *arg)
{
	struct outbox *ob = arg;
	struct committer_rec *list, *next;
	char reason[512];
	int stop;

	while ((stop = atomic_load(&ob->stop)) != 2) {
		if (stop == 1 && atomic_load(&ob->idle))
			break;
		list = relay_take(ob, ob->in_flight > 0 ? 0 : 50);
		for (; list != NULL; list = next) {
			next = list->next;
			relay_produce(ob, list);
		}
		relay_retry_due(ob);
		kafka_poll(ob->conf.prod, ob->in_flight > 0 ? 5 : 0);
		if (kafka_fatal(kafka_producer_rk(ob->conf.prod), reason,
		    sizeof(reason))) {
			log_error("kafka: %s", reason);
			atomic_store(&ob->failed, 1);
			ob->conf.fatal();
			break;
		}
	}
	/* What is still unacknowledged stays in the outbox. */
	if (ob->in_flight > 0)
		kafka_flush(ob->conf.prod, 1000);
	kafka_producer_destroy(ob->conf.prod);
	ob->conf.prod = NULL;
	committer_rec_list_free(ob->retry);
	ob->retry = NULL;
	committer_records_drop(ob->conf.cm);
	return NULL;
}

struct outbox *
outbox_start(const struct outbox_conf *conf)
{
	struct outbox *ob;

	ob = util_xcalloc(1, sizeof(*ob));
	ob->conf = *conf;
	if (pthread_create(&ob->thr, NULL, relay_main, ob) != 0) {
		free(ob);
		return NULL;
	}
	return ob;
}

int
outbox_idle(struct outbox *ob)
{
	return atomic_load(&ob->idle);
}

int
outbox_failed(struct outbox *ob)
{
	return atomic_load(&ob->failed);
}

void
outbox_drain(struct outbox *ob)
{
	atomic_store(&ob->stop, 1);
}

void
outbox_stop(struct outbox *ob)
{
	atomic_store(&ob->stop, 2);
	pthread_join(ob->thr, NULL);
}

void
outbox_stats(struct outbox *ob, uint64_t *published, uint64_t *failures,
    uint64_t *in_flight)
{
	*published = atomic_load(&ob->published);
	*failures = atomic_load(&ob->delivery_failures);
	*in_flight = atomic_load(&ob->held);
}

void
outbox_free(struct outbox *ob)
{
	free(ob);
}
