/*
 * notify - sends one notification per payment.processed event: a JSON
 * line on standard output (the default), a signed webhook (--webhook) or
 * the standard input of a command (--exec, sendmail-style).
 *
 * The consume, retry and dead-letter machinery is the worker's
 * (worker.h); this file is the handler and its sinks.  The handler checks
 * the idempotency record "notified:<event id>" in the state's Berkeley DB
 * environment, delivers, and only then writes the record.  So a crash
 * between the delivery and the record delivers the notification again,
 * with the same notification id (derived from the event id) for receivers
 * to drop; nothing else repeats one, and nothing is lost: the worker
 * commits an input's offset only after the record committed.
 *
 * Group commit: the store runs on a thread of its own (storeq.h), which
 * writes the records queued at the time in one transaction, committed
 * without a disk flush (it outlives the process, not the machine:
 * STORE_NOSYNC), and flushes the log when nothing is queued after a
 * batch and at least once a second.  A flush per notification held
 * notify to one disk flush per event (about 700 a second on a loaded
 * disk), and a flush with each batch makes the lookups queued behind it
 * wait for the disk.  A crash of the process repeats only the
 * notifications in flight or in a batch not yet committed; a crash of
 * the machine also those recorded since the last flush, never more than
 * a second's.
 *
 * Up to --concurrency notifications are in flight at once (worker.h's
 * start and pump), each waiting for the store or for its delivery:
 * requests through httpq.h, commands as child processes watched from the
 * pump, lines on standard output written in the order their lookups
 * came back.  The worker never has two events of one order in flight,
 * and each is recorded when its delivery ended, so a crash repeats at
 * most the deliveries in flight, each with its notification id.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "codec.h"
#include "event.h"
#include "exitcode.h"
#include "flow.h"
#include "httpq.h"
#include "kafka.h"
#include "log.h"
#include "opt.h"
#include "store.h"
#include "storeq.h"
#include "upkeep.h"
#include "util.h"
#include "worker.h"

#define DEF_BACKOFF_MS		1000
#define DEF_BACKOFF_MAX_MS	60000
#define DEF_MAX_ATTEMPTS	5
#define DEF_TTL_MS		(7LL * 24 * 3600 * 1000)
#define DEF_TIMEOUT_MS		10000
#define CONNECT_TIMEOUT_MS	5000	/* the connection, never above --timeout */
#define MAX_ATTEMPTS_MAX	1000
#define SECRET_MAX		1024	/* bytes of a secret file */
#define SECRET_MIN		24	/* bytes of the key: Standard Webhooks' floor */
#define WHSEC_PREFIX		"whsec_"	/* Standard Webhooks' form */
#define REPORT_MS		10000	/* the -v counters line */
#define IDEM_PREFIX		"notified:"
#define CHANNEL			"email"	/* what the notification is */
#define NOTE_DONE		1	/* the idempotency record's state */

enum {
	OPT_BACKOFF = OPT_CMD_FIRST,
	OPT_BACKOFF_MAX,
	OPT_CONCURRENCY,
	OPT_DEDUP_TTL,
	OPT_DLQ,
	OPT_EXEC,
	OPT_MAX_ATTEMPTS,
	OPT_SECRET_FILE,
	OPT_TIMEOUT,
	OPT_WEBHOOK
};

enum sink {
	SINK_STDOUT,
	SINK_WEBHOOK,
	SINK_EXEC
};

/* One notification, built from a payment.processed event. */
struct note {
	char			 id[EVENT_UUID_LEN + 1];
	const struct event	*ev;
	char			 message[512];
	char			*json;		/* one line, no newline */
	size_t			 len;
	struct log_ctx		 lc;
	char			 trace_id[TRACE_ID_LEN + 1];
};

struct notify {
	struct opt_kafka	 o;
	struct opt_codec	 oc;
	struct codec		*codec;		/* reads either format */
	struct store		*st;
	enum sink		 sink;
	const char		*input;		/* -i: pipe mode */
	const char		*dlq_file;	/* --dlq */
	const char		*url;		/* --webhook */
	const char		*secret_file;	/* --secret-file */
	const char		*cmd;		/* --exec */
	unsigned char		 key[SECRET_MAX];
	size_t			 keylen;
	struct httpq		*hq;		/* the webhook's calls */
	struct ncall		*children;	/* --exec: running */
	int			 concurrency;
	int64_t			 timeout_ms;
	int64_t			 ttl_ms;
	int64_t			 backoff_ms;
	int64_t			 backoff_max_ms;
	int			 max_attempts;
	struct upkeep		 up;		/* the store's upkeep */
	uint64_t		 notified;
	uint64_t		 duplicates;
	int			 failed;	/* exit 1: stdout broke */
	struct storeq		*sq;		/* the store's thread */
	int			 dirty;		/* store thread: to flush */
};

/*
 * One notification being delivered: the event, its notification and its
 * idempotency key, and, while pending, the worker's job and (--exec) the
 * command's process.
 */
struct ncall {
	struct notify		*n;
	struct worker_job	*job;
	struct event		 ev;
	struct note		 nt;
	char			 key[sizeof(IDEM_PREFIX) + EVENT_ID_MAX];
	struct storeq_req	 req;		/* the lookup, the record */
	int64_t			 now_ms;	/* the request's time */
	int			 seen;		/* delivered before */
	pid_t			 pid;
	int64_t			 deadline;	/* monotonic ms */
	struct ncall		*next;		/* in children */
};

extern char **environ;

static struct notify nf;

static void
usage(void)
{
	fprintf(stderr,
	    "usage: %s [-hqVv] [-b brokers] [-F file] [-G group] [-i file] "
	    "[-r url]\n"
	    "           [-X name=value] [--backoff duration] "
	    "[--backoff-max duration]\n"
	    "           [--concurrency n] [--dedup-ttl duration] [--dlq file]\n"
	    "           [--exec command] [--format format] "
	    "[--log-format format]\n"
	    "           [--max-attempts n] [--secret-file file] [--state dir] "
	    "[--timeout duration]\n"
	    "           [--topic-prefix prefix] [--webhook url]\n",
	    log_progname());
}

static void __attribute__((noreturn))
usage_error(const char *fmt, const char *arg)
{
	log_error(fmt, arg);
	usage();
	exit(OF_EXIT_USAGE);
}

/*
 * Stops the worker as SIGTERM does: it finishes what is in flight,
 * commits and returns.  For a failure that retrying cannot cure
 * (standard output gone; the store's are upkeep.h's): the input that met
 * it goes to the retry topic and notify exits 1.
 */
static void
notify_stop(struct notify *n)
{
	n->failed = 1;
	worker_stop();
}

/* Sinks. */

static enum worker_outcome
sink_stdout(struct notify *n, const struct note *nt, char *why,
    size_t whylen)
{
	if (fwrite(nt->json, 1, nt->len, stdout) != nt->len ||
	    putchar('\n') == EOF || fflush(stdout) == EOF || ferror(stdout)) {
		snprintf(why, whylen, "standard output: %s", strerror(errno));
		log_msg(LOG_LEVEL_ERROR, &nt->lc, "%s: stopping", why);
		notify_stop(n);
		return WORKER_TRANSIENT;
	}
	return WORKER_DONE;
}

/*
 * The Standard Webhooks signature: base64 of HMAC-SHA256 over
 * "id.timestamp.body" with the secret's key.  out gets at least 45 bytes.
 */
static int
webhook_sign(const struct notify *n, const char *id, const char *ts,
    const char *body, size_t len, char *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t idlen = strlen(id), tslen = strlen(ts), mlen;
	unsigned char *msg;
	int rc = -1;

	mlen = idlen + 1 + tslen + 1 + len;
	if ((msg = malloc(mlen)) == NULL)
		return -1;
	memcpy(msg, id, idlen);
	msg[idlen] = '.';
	memcpy(msg + idlen + 1, ts, tslen);
	msg[idlen + 1 + tslen] = '.';
	memcpy(msg + idlen + tslen + 2, body, len);
	if (HMAC(EVP_sha256(), n->key, (int)n->keylen, msg, mlen, mac,
	    &maclen) != NULL && maclen == 32) {
		EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen);
		rc = 0;
	}
	free(msg);
	return rc;
}

/* The request's headers; NULL when out of memory. */
static struct curl_slist *
webhook_headers(const struct note *nt, const char *ts, const char *sig)
{
	struct curl_slist *h = NULL;

	/* "Expect:" (empty): no "100 Continue" round trip. */
	if (httpq_header(&h, "Content-Type: %s",
	    EVENT_DATA_CONTENT_TYPE) == -1 ||
	    httpq_header(&h, "webhook-id: %s", nt->id) == -1 ||
	    httpq_header(&h, "webhook-timestamp: %s", ts) == -1 ||
	    httpq_header(&h, "webhook-signature: v1,%s", sig) == -1 ||
	    httpq_header(&h, "Expect:") == -1 ||
	    (nt->ev->traceparent[0] != '\0' && httpq_header(&h, "%s: %s",
	    FLOW_H_TRACEPARENT, nt->ev->traceparent) == -1))
		return NULL;
	return h;
}

static void	note_finish(struct ncall *, enum worker_outcome,
		    const char *why);

/*
 * A webhook call ended.  2xx: delivered.  A transport error (timeout,
 * refused connection, reset, TLS), 429 and 5xx: transient.  Any other
 * answer (other 4xx, and 1xx or 3xx: redirects are not followed):
 * permanent.  The URL is never logged: it may hold credentials.
 */
static void
webhook_done(void *arg, const struct httpq_result *res)
{
	struct ncall *c = arg;
	enum worker_outcome r;
	char why[512];

	if (res->res != CURLE_OK) {
		snprintf(why, sizeof(why), "webhook: %s", res->error);
		r = WORKER_TRANSIENT;
	} else if (res->code >= 200 && res->code <= 299) {
		log_msg(LOG_LEVEL_DEBUG, &c->nt.lc, "webhook: HTTP %ld",
		    res->code);
		why[0] = '\0';
		r = WORKER_DONE;
	} else {
		snprintf(why, sizeof(why), "webhook: HTTP %ld", res->code);
		r = res->code == 429 || res->code >= 500 ? WORKER_TRANSIENT :
		    WORKER_PERMANENT;
	}
	note_finish(c, r, why);
}

/* POSTs the notification: pending until webhook_done(). */
static enum worker_outcome
sink_webhook(struct notify *n, struct ncall *c, char *why, size_t whylen)
{
	struct curl_slist *h;
	char ts[24], sig[64], *body;

	snprintf(ts, sizeof(ts), "%lld", (long long)(util_now_ms() / 1000));
	if (webhook_sign(n, c->nt.id, ts, c->nt.json, c->nt.len, sig) == -1 ||
	    (h = webhook_headers(&c->nt, ts, sig)) == NULL) {
		snprintf(why, whylen, "webhook: cannot sign the request");
		return WORKER_TRANSIENT;
	}
	if ((body = malloc(c->nt.len)) == NULL) {
		curl_slist_free_all(h);
		snprintf(why, whylen, "webhook: out of memory");
		return WORKER_TRANSIENT;
	}
	memcpy(body, c->nt.json, c->nt.len);
	if (httpq_post(n->hq, body, c->nt.len, h, webhook_done, c) == -1) {
		snprintf(why, whylen, "webhook: out of memory");
		return WORKER_TRANSIENT;
	}
	return WORKER_PENDING;
}

/*
 * The command's environment: notify's own without NOTIFY_* variables,
 * then the notification's.  NULL when out of memory.
 */
static char **
exec_env(const struct note *nt)
{
	const struct event_payment *p = &nt->ev->payment;
	const char *vars[][2] = {
		{ "NOTIFY_ID", nt->id },
		{ "NOTIFY_EVENT_ID", nt->ev->id },
		{ "NOTIFY_ORDER_ID", p->order_id },
		{ "NOTIFY_PAYMENT_ID", p->payment_id },
		{ "NOTIFY_CUSTOMER_ID", p->customer_id },
		{ "NOTIFY_CHANNEL", CHANNEL },
		{ "NOTIFY_TO", p->email },
		{ "NOTIFY_STATUS", event_pay_status_name(p->status) },
		{ "NOTIFY_REASON", p->reason },
		{ "NOTIFY_MESSAGE", nt->message },
		{ "NOTIFY_TRACEPARENT", nt->ev->traceparent }
	};
	const size_t nvars = sizeof(vars) / sizeof(vars[0]);
	size_t i, k = 0, nenv = 0;
	char **env;

	while (environ[nenv] != NULL)
		nenv++;
	if ((env = calloc(nenv + nvars + 1, sizeof(*env))) == NULL)
		return NULL;
	for (i = 0; i < nvars; i++)
		if (asprintf(&env[k++], "%s=%s", vars[i][0], vars[i][1]) ==
		    -1) {
			env[--k] = NULL;
			goto fail;
		}
	/* Ours are allocated, the inherited ones are not: see exec_env_free. */
	for (i = 0; i < nenv; i++)
		if (strncmp(environ[i], "NOTIFY_", 7) != 0)
			env[k++] = environ[i];
	return env;
fail:
	for (i = 0; i < k; i++)
		free(env[i]);
	free(env);
	return NULL;
}

static void
exec_env_free(char **env)
{
	size_t i;

	for (i = 0; env[i] != NULL && strncmp(env[i], "NOTIFY_", 7) == 0;
	    i++)
		free(env[i]);
	free(env);
}

/*
 * Starts /bin/sh -c CMD in a process group of its own (so that a timeout
 * kills everything it started), with default signal dispositions and
 * mask, no descriptor of notify's but the three standard ones, and rd as
 * its standard input.  Returns the pid, or -1 with errno set.
 */
static pid_t
exec_spawn(const struct notify *n, int rd, char **env)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, dflt;
	char *argv[] = { "sh", "-c", (char *)n->cmd, NULL };
	pid_t pid;
	int r;

	sigemptyset(&none);
	sigemptyset(&dflt);
	sigaddset(&dflt, SIGPIPE);
	sigaddset(&dflt, SIGINT);
	sigaddset(&dflt, SIGTERM);
	sigaddset(&dflt, SIGHUP);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	if ((r = posix_spawn_file_actions_adddup2(&fa, rd, 0)) != 0 ||
	    (r = posix_spawn_file_actions_addclosefrom_np(&fa, 3)) != 0 ||
	    (r = posix_spawnattr_setpgroup(&at, 0)) != 0 ||
	    (r = posix_spawnattr_setsigmask(&at, &none)) != 0 ||
	    (r = posix_spawnattr_setsigdefault(&at, &dflt)) != 0 ||
	    (r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP |
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) != 0)
		pid = -1;
	else if ((r = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, env)) != 0)
		pid = -1;
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (pid == -1)
		errno = r;
	return pid;
}

/* Writes all of buf unless the command stops reading; never blocks. */
static void
exec_feed(int fd, const char *buf, size_t len)
{
	ssize_t w;

	while (len > 0) {
		if ((w = write(fd, buf, len)) == -1) {
			if (errno == EINTR)
				continue;
			return;		/* EPIPE, EAGAIN: its status tells */
		}
		buf += w;
		len -= (size_t)w;
	}
}

/*
 * Starts the command with the notification as a line on its standard
 * input: pending until exec_reap() sees it end.  Its standard output and
 * error are notify's.
 */
static enum worker_outcome
sink_exec(struct notify *n, struct ncall *c, char *why, size_t whylen)
{
	const struct note *nt = &c->nt;
	char **env, *line;
	int fd[2], r;
	pid_t pid;

	if ((line = malloc(nt->len + 1)) == NULL ||
	    (env = exec_env(nt)) == NULL) {
		free(line);
		snprintf(why, whylen, "exec: out of memory");
		return WORKER_TRANSIENT;
	}
	memcpy(line, nt->json, nt->len);
	line[nt->len] = '\n';
	fflush(stdout);
	if (pipe2(fd, O_CLOEXEC) == -1) {
		snprintf(why, whylen, "exec: pipe: %s", strerror(errno));
		free(line);
		exec_env_free(env);
		return WORKER_TRANSIENT;
	}
	pid = exec_spawn(n, fd[0], env);
	r = errno;
	close(fd[0]);
	exec_env_free(env);
	if (pid == -1) {
		close(fd[1]);
		free(line);
		snprintf(why, whylen, "exec: /bin/sh: %s", strerror(r));
		return WORKER_TRANSIENT;
	}
	/* A line far below the pipe's capacity: O_NONBLOCK is a safeguard. */
	fcntl(fd[1], F_SETFL, O_NONBLOCK);
	exec_feed(fd[1], line, nt->len + 1);
	close(fd[1]);
	free(line);
	c->pid = pid;
	c->deadline = util_mono_ms() + n->timeout_ms;
	c->next = n->children;
	n->children = c;
	return WORKER_PENDING;
}

/* The command of c ended with status: delivered on exit status 0. */
static void
exec_ended(struct ncall *c, int status)
{
	char why[128];

	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		note_finish(c, WORKER_DONE, NULL);
		return;
	}
	if (WIFEXITED(status))
		snprintf(why, sizeof(why), "exec: exit status %d",
		    WEXITSTATUS(status));
	else
		snprintf(why, sizeof(why), "exec: killed by signal %d",
		    WTERMSIG(status));
	note_finish(c, WORKER_TRANSIENT, why);
}

/*
 * The commands that ended, and those past --timeout, which are killed
 * with their process group (transient).  Polled from the worker's pump
 * rather than caught with SIGCHLD: no handler races with the worker's;
 * the pump waits at most wait_ms (a few) between two looks.
 */
static void
exec_reap(struct notify *n, int wait_ms)
{
	struct ncall **pp, *c;
	struct timespec ts;
	char why[128];
	int64_t now;
	int status, any = 0;
	pid_t pid;

	for (pp = &n->children; (c = *pp) != NULL;) {
		if ((pid = waitpid(c->pid, &status, WNOHANG)) == 0 &&
		    util_mono_ms() < c->deadline) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		any = 1;
		if (pid == c->pid) {
			exec_ended(c, status);
			continue;
		}
		now = util_mono_ms();
		if (pid == 0 && now >= c->deadline) {
			kill(-c->pid, SIGKILL);
			while (waitpid(c->pid, &status, 0) == -1 &&
			    errno == EINTR)
				;
			snprintf(why, sizeof(why), "exec: still running after "
			    "%lldms: killed", (long long)n->timeout_ms);
		} else
			snprintf(why, sizeof(why), "exec: waitpid: %s",
			    strerror(errno));
		note_finish(c, WORKER_TRANSIENT, why);
	}
	if (!any && n->children != NULL && wait_ms > 0) {
		ts.tv_sec = 0;
		ts.tv_nsec = (long)wait_ms * 1000000L;
		nanosleep(&ts, NULL);
	}
}

/* The notification. */

static void
put_str(cJSON *o, const char *name, const char *s, int *fail)
{
	if (cJSON_AddStringToObject(o, name, s) == NULL)
		*fail = 1;
}

/*
 * Builds the notification of a parsed payment.processed event.  The JSON
 * depends on the event alone, so a redelivery is byte for byte the same.
 */
static int
note_build(struct note *nt, const struct event *ev)
{
	const struct event_payment *p = &ev->payment;
	char money[32], amount[24];
	cJSON *o;
	int fail = 0;

	memset(nt, 0, sizeof(*nt));
	nt->ev = ev;
	nt->lc.event_id = ev->id;
	nt->lc.order_id = p->order_id;
	if (trace_id_of(ev->traceparent, nt->trace_id) == 0)
		nt->lc.trace_id = nt->trace_id;
	if (event_derive_id(ev->id, EVENT_PURPOSE_NOTIFY, nt->id) == -1)
		return -1;
	event_format_money(p->amount, p->currency, money, sizeof(money));
	if (p->status == EVENT_PAY_DECLINED)
		snprintf(nt->message, sizeof(nt->message), "Payment of %s %s "
		    "for order %s declined: %s", p->currency, money,
		    p->order_id, p->reason);
	else
		snprintf(nt->message, sizeof(nt->message), "Payment of %s %s "
		    "for order %s approved", p->currency, money, p->order_id);
	if ((o = cJSON_CreateObject()) == NULL)
		return -1;
	put_str(o, "notification_id", nt->id, &fail);
	put_str(o, "event_id", ev->id, &fail);
	put_str(o, "order_id", p->order_id, &fail);
	put_str(o, "payment_id", p->payment_id, &fail);
	put_str(o, "customer_id", p->customer_id, &fail);
	put_str(o, "channel", CHANNEL, &fail);
	put_str(o, "to", p->email, &fail);
	put_str(o, "status", event_pay_status_name(p->status), &fail);
	/* Money is an integer of minor units, never through a double. */
	snprintf(amount, sizeof(amount), "%lld", (long long)p->amount);
	if (cJSON_AddRawToObject(o, "amount", amount) == NULL)
		fail = 1;
	put_str(o, "currency", p->currency, &fail);
	if (p->status == EVENT_PAY_DECLINED)
		put_str(o, "reason", p->reason, &fail);
	put_str(o, "message", nt->message, &fail);
	if (!fail)
		nt->json = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (nt->json == NULL)
		return -1;
	nt->len = strlen(nt->json);
	return 0;
}

/*
 * The store, on its own thread (storeq.h): the lookup of an event's
 * record and the record of its delivery are requests, run with the
 * others queued at the time in one transaction, each committed before it
 * comes back; the log is flushed when nothing is queued and once a
 * second.
 */

/*
 * A batch failed: upkeep.h's rule (orderflow(7), STATE) reopens the store
 * (STORE_RUNRECOVERY), goes on (STORE_DEADLOCK) or stops notify, which
 * then exits 1; on the store's thread.
 */
static void
store_batch_failed(void *arg, int err)
{
	struct notify *n = arg;

	(void)upkeep_failed(&n->up, err, NULL);
}

/* Store thread: the records committed since the last flush, on disk. */
static void
store_flush_dirty(void *arg)
{
	struct notify *n = arg;
	int r;

	if (!n->dirty || n->st == NULL)
		return;
	n->dirty = 0;
	if ((r = store_flush(n->st)) != 0) {
		log_error("the records of the last notifications may not be "
		    "on disk: a repeat of their events after a crash of the "
		    "machine would be notified again");
		(void)upkeep_failed(&n->up, r, NULL);
	}
}

/* The flush, failchk, expiry and checkpoints (upkeep.h), once a second. */
static void
store_tick(void *arg)
{
	struct notify *n = arg;

	store_flush_dirty(n);
	upkeep_tick(&n->up);
}

static void
store_wake(void *arg)
{
	struct notify *n = arg;

	if (n->hq != NULL)
		httpq_wakeup(n->hq);
}

/* Store thread: whether the notification was delivered already. */
static int
seen_body(struct store *s, struct store_txn *t, struct storeq_req *req)
{
	struct ncall *c = req->arg;
	struct store_idem rec;
	int r;

	c->seen = 0;
	r = store_idem_get(s, t, c->key, c->now_ms, &rec);
	if (r == STORE_NOTFOUND)
		return 0;
	if (r != 0)
		return r;
	store_idem_free(&rec);
	c->seen = 1;
	return 0;
}

/* Store thread: the record of the delivery. */
static int
record_body(struct store *s, struct store_txn *t, struct storeq_req *req)
{
	struct ncall *c = req->arg;
	struct store_idem rec;

	memset(&rec, 0, sizeof(rec));
	rec.created_ms = c->now_ms;
	rec.expires_ms = c->now_ms + c->n->ttl_ms;
	rec.state = NOTE_DONE;
	rec.outcome = c->nt.id;
	rec.outcome_len = strlen(c->nt.id);
	c->n->dirty = 1;
	return store_idem_put(s, t, c->key, &rec);
}

static void
store_submit(struct ncall *c, storeq_body_fn *body, storeq_done_fn *done)
{
	c->now_ms = util_now_ms();
	storeq_call(c->n->sq, &c->req, body, done, c);
}

static void
note_release(struct ncall *c)
{
	free(c->nt.json);
	event_free(&c->ev);
	free(c);
}

/* The outcome of c: the worker has it, c is gone. */
static void
note_complete(struct ncall *c, enum worker_outcome r, const char *why)
{
	worker_complete(c->job, r, NULL, why);
	note_release(c);
}

/*
 * The delivery's record came back.  A failure here cannot be retried
 * without delivering again, so the input counts as done; a failure other
 * than a deadlock stops notify (exit 1, upkeep.h) rather than run on
 * without its memory of what it sent.
 */
static void
recorded(struct storeq_req *req, int err)
{
	struct ncall *c = req->arg;

	if (err != 0)
		log_msg(LOG_LEVEL_ERROR, &c->nt.lc, "delivered but not "
		    "recorded: %s: a repeat of this event would be notified "
		    "again", store_strerror(err));
	c->n->notified++;
	log_msg(LOG_LEVEL_DEBUG, &c->nt.lc, "notified %s", c->nt.id);
	note_complete(c, WORKER_DONE, "");
}

/* A delivery ended: delivered, it is recorded, else its outcome stands. */
static void
note_finish(struct ncall *c, enum worker_outcome r, const char *why)
{
	if (r == WORKER_DONE)
		store_submit(c, record_body, recorded);
	else
		note_complete(c, r, why);
}

/*
 * The lookup came back: a duplicate is done; anything else is delivered
 * through the sink (standard output at once; a webhook call or a command
 * pending until note_finish()).
 */
static void
looked_up(struct storeq_req *req, int err)
{
	struct ncall *c = req->arg;
	struct notify *n = c->n;
	enum worker_outcome r;
	char why[512];

	if (err != 0) {
		snprintf(why, sizeof(why), "state: cannot read %s: %s", c->key,
		    store_strerror(err));
		note_complete(c, WORKER_TRANSIENT, why);
		return;
	}
	if (c->seen) {
		log_msg(LOG_LEVEL_DEBUG, &c->nt.lc, "duplicate: notified "
		    "already");
		n->duplicates++;
		note_complete(c, WORKER_DONE, "");
		return;
	}
	why[0] = '\0';
	if (n->sink == SINK_STDOUT)
		r = sink_stdout(n, &c->nt, why, sizeof(why));
	else if (n->sink == SINK_WEBHOOK)
		r = sink_webhook(n, c, why, sizeof(why));
	else
		r = sink_exec(n, c, why, sizeof(why));
	if (r != WORKER_PENDING)
		note_finish(c, r, why);
}

/*
 * Parses the input into c, builds its notification and looks for its
 * record: pending until looked_up(), or an outcome at once (an invalid
 * event, no memory).  The worker never has two events of one order in
 * flight, so the record read is still the truth when the delivery ends.
 */
static enum worker_outcome
start(void *ctx, struct worker_job *job, const struct worker_input *in,
    struct worker_output *out, char *why, size_t whylen)
{
	struct notify *n = ctx;
	struct event_err err;
	struct ncall *c;
	enum worker_outcome r = WORKER_INVALID;
	int ret;

	(void)out;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(why, whylen, "out of memory");
		return WORKER_TRANSIENT;
	}
	c->n = n;
	c->job = job;
	if ((ret = codec_parse(n->codec, in->value, in->len, in->headers,
	    &c->ev, &err)) != CODEC_OK) {
		snprintf(why, whylen, "%s", err.text);
		if (ret != CODEC_INVALID)
			r = WORKER_TRANSIENT;
	} else if (c->ev.kind != EVENT_PAYMENT_PROCESSED_V1)
		snprintf(why, whylen, "type: %s is not %s", c->ev.type,
		    EVENT_TYPE_PAYMENT_PROCESSED_V1);
	else if (note_build(&c->nt, &c->ev) == -1) {
		snprintf(why, whylen, "cannot build the notification: %s",
		    strerror(errno));
		r = WORKER_TRANSIENT;
	} else {
		snprintf(c->key, sizeof(c->key), IDEM_PREFIX "%s", c->ev.id);
		store_submit(c, seen_body, looked_up);
		return WORKER_PENDING;
	}
	note_release(c);
	return r;
}

/*
 * The worker's wait: on the store's answers, the webhook's calls (whose
 * wait the store thread's wake cuts short) or the commands running.
 */
static void
pump(void *ctx, int wait_ms)
{
	struct notify *n = ctx;

	if (storeq_collect(n->sq, 0) > 0)
		wait_ms = 0;
	if (n->hq != NULL)
		httpq_run(n->hq, wait_ms);
	else if (storeq_pending(n->sq) > 0) {
		exec_reap(n, 0);
		storeq_collect(n->sq, wait_ms);
		return;
	} else
		exec_reap(n, wait_ms);
	storeq_collect(n->sq, 0);
}

/* The counters: a line every REPORT_MS with -v, and the summary at exit. */
static void
report(void *ctx, const struct worker_stats *s, int final)
{
	struct notify *n = ctx;

	log_info("%snotified=%llu duplicates=%llu retried=%llu "
	    "dead-lettered=%llu", final ? "done: " : "",
	    (unsigned long long)n->notified,
	    (unsigned long long)n->duplicates,
	    (unsigned long long)s->retried,
	    (unsigned long long)s->dead_lettered);
}

/*
 * Reads the webhook secret: "whsec_" and base64 (Standard Webhooks'
 * form) is decoded; anything else is the key's bytes as written.  A
 * trailing newline is not part of it.  The secret is never logged.  A
 * key shorter than SECRET_MIN bytes is a usage error; a file that others
 * than its owner may read is used, with a warning (a deployment may
 * share it with a group on purpose).
 */
static void
secret_load(struct notify *n)
{
	char buf[SECRET_MAX + 2];
	const char *b64;
	size_t len, blen;
	struct stat st;
	FILE *f;
	int k;

	if ((f = fopen(n->secret_file, "r")) == NULL)
		log_fatal(OF_EXIT_FAIL, "%s: %s", n->secret_file,
		    strerror(errno));
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)))
		log_warn("--secret-file %s: readable by other users (mode "
		    "%04o); chmod go-rwx it", n->secret_file,
		    (unsigned)(st.st_mode & 07777));
	len = fread(buf, 1, sizeof(buf) - 1, f);
	if (ferror(f))
		log_fatal(OF_EXIT_FAIL, "%s: %s", n->secret_file,
		    strerror(errno));
	fclose(f);
	if (len > SECRET_MAX)
		usage_error("--secret-file %s: longer than 1024 bytes",
		    n->secret_file);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	buf[len] = '\0';
	if (strncmp(buf, WHSEC_PREFIX, strlen(WHSEC_PREFIX)) == 0) {
		b64 = buf + strlen(WHSEC_PREFIX);
		blen = len - strlen(WHSEC_PREFIX);
		if (blen == 0 || blen % 4 != 0 || (k = EVP_DecodeBlock(n->key,
		    (const unsigned char *)b64, (int)blen)) <= 0)
			usage_error("--secret-file %s: not valid base64 after "
			    WHSEC_PREFIX, n->secret_file);
		/* EVP_DecodeBlock counts the padding's bytes too. */
		for (; blen > 0 && b64[blen - 1] == '='; blen--)
			k--;
		n->keylen = (size_t)k;
	} else {
		memcpy(n->key, buf, len);
		n->keylen = len;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	if (n->keylen == 0)
		usage_error("--secret-file %s: the secret is empty",
		    n->secret_file);
	if (n->keylen < SECRET_MIN)
		usage_error("--secret-file %s: the secret is shorter than 24 "
		    "bytes (after decoding whsec_'s base64)", n->secret_file);
}

static void
webhook_init(struct notify *n)
{
	CURLU *u;
	char *scheme = NULL;
	int ok;

	if ((u = curl_url()) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	ok = curl_url_set(u, CURLUPART_URL, n->url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
	curl_free(scheme);
	curl_url_cleanup(u);
	if (!ok)
		usage_error("--webhook: %s", "not an http or https URL");
	secret_load(n);
	n->hq = httpq_new(n->url, (long)n->timeout_ms, CONNECT_TIMEOUT_MS,
	    "orderflow-notify/" VERSION, n->concurrency);
	if (n->hq == NULL)
		log_fatal(OF_EXIT_FAIL, "libcurl: cannot initialise");
}

static void
parse_options(struct notify *n, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "backoff", required_argument, NULL, OPT_BACKOFF },
		{ "backoff-max", required_argument, NULL, OPT_BACKOFF_MAX },
		{ "concurrency", required_argument, NULL, OPT_CONCURRENCY },
		{ "dedup-ttl", required_argument, NULL, OPT_DEDUP_TTL },
		{ "dlq", required_argument, NULL, OPT_DLQ },
		{ "exec", required_argument, NULL, OPT_EXEC },
		{ "max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS },
		{ "secret-file", required_argument, NULL, OPT_SECRET_FILE },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "webhook", required_argument, NULL, OPT_WEBHOOK },
		OPT_COMMON_LONG,
		OPT_CODEC_LONG,
		{ NULL, 0, NULL, 0 }
	};
	int ch;

	while ((ch = getopt_long(argc, argv, OPT_COMMON_SHORT OPT_CODEC_SHORT
	    "i:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'i':
			n->input = optarg;
			break;
		case OPT_BACKOFF:
			n->backoff_ms = opt_duration("--backoff", optarg, 1);
			break;
		case OPT_BACKOFF_MAX:
			n->backoff_max_ms = opt_duration("--backoff-max",
			    optarg, 1);
			break;
		case OPT_CONCURRENCY:
			n->concurrency = (int)opt_number("--concurrency",
			    optarg, 1, WORKER_CONCURRENCY_MAX);
			break;
		case OPT_DEDUP_TTL:
			n->ttl_ms = opt_duration("--dedup-ttl", optarg, 1);
			break;
		case OPT_DLQ:
			n->dlq_file = optarg;
			break;
		case OPT_EXEC:
			if (*optarg == '\0')
				usage_error("--exec: %s", "the command is empty");
			n->cmd = optarg;
			break;
		case OPT_MAX_ATTEMPTS:
			n->max_attempts = (int)opt_number("--max-attempts",
			    optarg, 1, MAX_ATTEMPTS_MAX);
			break;
		case OPT_SECRET_FILE:
			n->secret_file = optarg;
			break;
		case OPT_TIMEOUT:
			n->timeout_ms = opt_duration("--timeout", optarg, 1);
			break;
		case OPT_WEBHOOK:
			n->url = optarg;
			break;
		default:
			if (!opt_codec(&n->oc, ch, optarg) &&
			    !opt_common(&n->o, ch, optarg)) {
				usage();
				exit(OF_EXIT_USAGE);
			}
			break;
		}
	}
	if (optind != argc)
		usage_error("unexpected argument %s", argv[optind]);
	if (n->url != NULL && n->cmd != NULL)
		usage_error("%s", "--webhook and --exec exclude each other");
	if (n->url != NULL && n->secret_file == NULL)
		usage_error("%s", "--webhook needs --secret-file");
	if (n->url == NULL && n->secret_file != NULL)
		usage_error("%s", "--secret-file goes with --webhook");
	if (n->dlq_file != NULL && n->input == NULL)
		usage_error("%s", "--dlq goes with -i");
	if (n->backoff_max_ms < n->backoff_ms)
		usage_error("%s", "--backoff-max is below --backoff");
	/* Kafka mode checks them as it makes its clients. */
	if (n->input != NULL)
		kafka_conf_check(&n->o);
	/* Nothing is written in a format: avro only asks for a registry. */
	n->codec = opt_codec_new(&n->oc, n->input != NULL);
	n->sink = n->url != NULL ? SINK_WEBHOOK : n->cmd != NULL ?
	    SINK_EXEC : SINK_STDOUT;
}

/*
 * Descriptors 0 to 2 must be open before any file is: the store's files
 * opened as descriptor 1 would receive the notifications.  A closed
 * standard output is an error when the notifications go there.
 */
static void
std_fds(const struct notify *n)
{
	int fd;

	for (fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		if (fd == 1 && n->sink == SINK_STDOUT)
			log_fatal(OF_EXIT_FAIL, "standard output is closed");
		if (open("/dev/null", O_RDWR) != fd)
			log_fatal(OF_EXIT_FAIL, "/dev/null: %s",
			    strerror(errno));
	}
}

int
main(int argc, char **argv)
{
	struct notify *n = &nf;
	struct storeq_hooks hooks = { .tick = store_tick,
	    .failed = store_batch_failed, .wake = store_wake,
	    .idle = store_flush_dirty, .arg = &nf };
	struct worker_config wc;
	struct worker_stats ws;
	int r, rc;

	log_init(argv[0]);
	worker_catch_signals();
	opt_init(&n->o, usage);
	opt_codec_init(&n->oc);
	n->backoff_ms = DEF_BACKOFF_MS;
	n->backoff_max_ms = DEF_BACKOFF_MAX_MS;
	n->max_attempts = DEF_MAX_ATTEMPTS;
	n->ttl_ms = DEF_TTL_MS;
	n->timeout_ms = DEF_TIMEOUT_MS;
	n->concurrency = WORKER_CONCURRENCY;
	parse_options(n, argc, argv);
	std_fds(n);

	/* A command that quits early, a webhook that hangs up: EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		log_fatal(OF_EXIT_FAIL, "curl_global_init failed");
	if (n->sink == SINK_WEBHOOK)
		webhook_init(n);
	opt_lock_state(&n->o);
	if ((r = store_open(&n->st, opt_state_dir(&n->o),
	    STORE_NOSYNC | STORE_SMALLCACHE | STORE_EXCLUSIVE)) != 0)
		log_fatal(OF_EXIT_FAIL, "%s: %s", opt_state_dir(&n->o),
		    store_strerror(r));
	upkeep_init(&n->up, &n->st, opt_state_dir(&n->o),
	    STORE_NOSYNC | STORE_SMALLCACHE | STORE_EXCLUSIVE);
	if ((n->sq = storeq_start(&n->st, &hooks)) == NULL)
		log_fatal(OF_EXIT_FAIL, "cannot start the store's thread: %s",
		    strerror(errno));

	memset(&wc, 0, sizeof(wc));
	wc.in_topic = opt_topic(&n->o, FLOW_TOPIC_PAYMENTS);
	wc.retry_topic = opt_topic(&n->o, FLOW_TOPIC_PAYMENTS_RETRY);
	wc.dlq_topic = opt_topic(&n->o, FLOW_TOPIC_PAYMENTS_DLQ);
	wc.input = n->input;
	/* Pipe mode: dead letters to --dlq (no output is ever emitted). */
	wc.output = n->input != NULL ? "-" : NULL;
	wc.dlq_file = n->dlq_file;
	wc.max_attempts = n->max_attempts;
	wc.backoff_ms = n->backoff_ms;
	wc.backoff_max_ms = n->backoff_max_ms;
	wc.report_ms = log_level() >= LOG_LEVEL_DEBUG ? REPORT_MS : 0;
	wc.start = start;
	wc.pump = pump;
	wc.concurrency = n->concurrency;
	wc.ctx = n;
	wc.report = report;
	memset(&ws, 0, sizeof(ws));
	rc = worker_run(&wc, &n->o, &ws);
	storeq_stop(n->sq);
	store_flush_dirty(n);

	if ((n->failed || n->up.failed) &&
	    (rc == OF_EXIT_OK || rc == OF_EXIT_REJECTED))
		rc = OF_EXIT_FAIL;
	/*
	 * A store broken by another process's death since the last tick
	 * cannot close cleanly, but every record committed is in the log,
	 * which the next open recovers: not a failure of this run.
	 */
	if (n->st != NULL && (r = store_close(n->st)) != 0) {
		if (r == STORE_RUNRECOVERY)
			log_warn("%s: %s: the next open recovers it",
			    opt_state_dir(&n->o), store_strerror(r));
		else {
			log_error("%s: %s", opt_state_dir(&n->o),
			    store_strerror(r));
			if (rc == OF_EXIT_OK || rc == OF_EXIT_REJECTED)
				rc = OF_EXIT_FAIL;
		}
	}
	httpq_free(n->hq);
	curl_global_cleanup();
	OPENSSL_cleanse(n->key, sizeof(n->key));
	codec_free(n->codec);
	if ((rc == OF_EXIT_OK || rc == OF_EXIT_REJECTED) &&
	    util_stdout_flush() == -1)
		rc = OF_EXIT_FAIL;
	opt_free(&n->o);
	return rc;
}
