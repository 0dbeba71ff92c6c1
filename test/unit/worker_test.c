/*
 * worker_test.c - unit tests for the worker (common/worker.c, route.c,
 * pipe.c): the backoff schedule, pipe mode's heap of retries, and pipe
 * mode (in-process retries, dead letters as JSON lines, the tick)
 * driven by a handler that scripts its outcomes.
 *
 * Usage: worker_test [NAME]; without NAME it lists the tests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "exitcode.h"
#include "log.h"
#include "opt.h"
#include "pipe.h"
#include "util.h"
#include "worker.h"
#include "unit.h"

static void
test_backoff(void)
{
	struct worker_config cf;
	int64_t d, lo, hi, first = -1;
	int a, i, varied = 0;

	memset(&cf, 0, sizeof(cf));
	cf.backoff_ms = 1000;
	cf.backoff_max_ms = 60000;
	CHECK(worker_backoff(&cf, 0) == 0);
	CHECK(worker_backoff(&cf, 1) == 0);
	/* 1 s, 2 s, 4 s, ... capped at 60 s; jitter in [d/2, d]. */
	for (a = 2; a <= 12; a++) {
		hi = 1000LL << (a - 2);
		if (hi > 60000)
			hi = 60000;
		lo = hi / 2;
		for (i = 0; i < 200; i++) {
			d = worker_backoff(&cf, a);
			CHECK(d >= lo && d <= hi);
			if (a == 2 && first == -1)
				first = d;
			else if (a == 2 && d != first)
				varied = 1;
		}
	}
	CHECK(varied);
	/* Huge attempts neither overflow nor pass the cap. */
	d = worker_backoff(&cf, 1000000);
	CHECK(d >= 30000 && d <= 60000);
	cf.backoff_max_ms = INT64_MAX;
	d = worker_backoff(&cf, 200);
	CHECK(d >= INT64_MAX / 2 - 1);
	/* No backoff at all. */
	cf.backoff_ms = 0;
	CHECK(worker_backoff(&cf, 3) == 0);
}

/*
 * The heap of retries: records come out due first, whatever the order
 * they went in, ties included; what is left is freed.
 */
static void
test_heap(void)
{
	struct pipe_retries q = { 0 };
	struct pipe_retry r;
	int64_t last = -1;
	int i, n = 0, inorder = 1;

	for (i = 0; i < 1000; i++) {
		memset(&r, 0, sizeof(r));
		r.due_ms = (i * 7919) % 251;
		r.lineno = i;
		if ((r.value = strdup("\"x\"")) == NULL)
			abort();
		CHECK(pipe_retries_push(&q, &r) == 0);
	}
	CHECK(q.t.n == 1000);
	while (q.t.n > 10) {
		r = pipe_retries_pop(&q);
		inorder &= r.due_ms >= last;
		last = r.due_ms;
		free(r.value);
		n++;
	}
	CHECK(n == 990 && inorder);
	pipe_retries_free(&q);
	CHECK(q.t.n == 0 && q.t.h == NULL);
}

/*
 * Pipe mode.  The handler's script is the line itself: "ok", "flaky N"
 * (transient on attempts 1..N), "always" (always transient), "perm",
 * "invalid".
 */
struct script {
	int	calls;
	int	ticks;
	int	finals;
};

static enum worker_outcome
scripted(void *ctx, const struct worker_input *in, struct worker_output *out,
    char *why, size_t whylen)
{
	struct script *s = ctx;
	char line[64];
	int n;

	s->calls++;
	snprintf(line, sizeof(line), "%.*s", (int)in->len,
	    (const char *)in->value);
	if (strcmp(line, "\"perm\"") == 0) {
		snprintf(why, whylen, "no way");
		return WORKER_PERMANENT;
	}
	if (strcmp(line, "\"invalid\"") == 0) {
		snprintf(why, whylen, "bad input");
		return WORKER_INVALID;
	}
	if (strcmp(line, "\"always\"") == 0 ||
	    (sscanf(line, "\"flaky %d\"", &n) == 1 && in->attempt <= n)) {
		snprintf(why, whylen, "try again (attempt %d)", in->attempt);
		return WORKER_TRANSIENT;
	}
	if (asprintf(&out->value, "{\"line\":%lld,\"attempt\":%d}",
	    (long long)in->offset, in->attempt) == -1)
		out->value = NULL;
	out->key = NULL;
	return WORKER_DONE;
}

static void
scripted_report(void *ctx, const struct worker_stats *st, int final)
{
	struct script *s = ctx;

	(void)st;
	if (final)
		s->finals++;
}

static void
scripted_tick(void *ctx)
{
	((struct script *)ctx)->ticks++;
}

static char *
slurp(const char *path)
{
	FILE *fp;
	char *buf;
	long n;

	if ((fp = fopen(path, "r")) == NULL)
		return strdup("");
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	buf = calloc(1, n + 1);
	if (buf != NULL && fread(buf, 1, n, fp) != (size_t)n)
		buf[0] = '\0';
	fclose(fp);
	return buf;
}

/* The header of the dead letter from line lineno. */
static const char *
dlq_header(cJSON *lines[], int n, int lineno, const char *name)
{
	const cJSON *h, *v;
	char want[16];
	int i;

	snprintf(want, sizeof(want), "%d", lineno);
	for (i = 0; i < n; i++) {
		h = cJSON_GetObjectItem(lines[i], "headers");
		v = cJSON_GetObjectItem(h, "orderflow.original.offset");
		if (cJSON_IsString(v) && strcmp(v->valuestring, want) == 0) {
			v = cJSON_GetObjectItem(h, name);
			return cJSON_IsString(v) ? v->valuestring : NULL;
		}
	}
	return NULL;
}

/* Pipe mode from in to standard output, 3 attempts. */
static void
pipe_config(struct worker_config *cf, const char *in)
{
	memset(cf, 0, sizeof(*cf));
	cf->in_topic = "order-created";
	cf->retry_topic = "order-created-retry";
	cf->dlq_topic = "order-created-dlq";
	cf->input = in;
	cf->output = "-";
	cf->max_attempts = 3;
}

static void
test_pipe(void)
{
	char in[] = "/tmp/worker_test.in.XXXXXX";
	char outp[] = "/tmp/worker_test.out.XXXXXX";
	char dlq[] = "/tmp/worker_test.dlq.XXXXXX";
	struct worker_config cf;
	struct worker_stats st;
	struct opt_kafka o;
	struct script s = { 0 };
	cJSON *dl[8];
	char *out, *dead, *line, *save;
	int fd, rc, n = 0;
	int64_t t0;
	FILE *fp;

	CHECK((fd = mkstemp(in)) != -1);
	fp = fdopen(fd, "w");
	fputs("\"ok\"\n\"flaky 2\"\n\"perm\"\n\xff\xfe\n\"invalid\"\n"
	    "\"always\"\n\"ok\"\n", fp);
	fclose(fp);
	close(mkstemp(outp));
	close(mkstemp(dlq));
	CHECK(freopen(outp, "w", stdout) != NULL);

	opt_init(&o, NULL);
	pipe_config(&cf, in);
	cf.dlq_file = dlq;
	cf.backoff_ms = 50;
	cf.backoff_max_ms = 1000;
	cf.handle = scripted;
	cf.ctx = &s;
	cf.report = scripted_report;
	cf.tick = scripted_tick;
	t0 = util_mono_ms();
	rc = worker_run(&cf, &o, &st);
	fflush(stdout);
	/* Lines 4 and 5 were invalid: rejected, the rest processed. */
	CHECK(rc == OF_EXIT_REJECTED);
	/* flaky 2 waited 25..50 then 50..100 ms; always the same. */
	CHECK(util_mono_ms() - t0 >= 75);
	CHECK(s.finals == 1 && s.ticks >= 1);
	/* 7 lines (1 rejected by the reader), 2 + 2 retries. */
	CHECK(s.calls == 6 + 4);
	CHECK(st.processed == 11 && st.done == 3 && st.retried == 4 &&
	    st.dead_lettered == 4 && st.failed == 0);

	out = slurp(outp);
	CHECK(strstr(out, "{\"line\":1,\"attempt\":1}\n") != NULL);
	CHECK(strstr(out, "{\"line\":2,\"attempt\":3}\n") != NULL);
	CHECK(strstr(out, "{\"line\":7,\"attempt\":1}\n") != NULL);
	free(out);

	dead = slurp(dlq);
	for (line = strtok_r(dead, "\n", &save); line != NULL && n < 8;
	    line = strtok_r(NULL, "\n", &save))
		CHECK((dl[n++] = cJSON_Parse(line)) != NULL);
	CHECK(n == 4);
	if (n == 4) {
		CHECK(strcmp(dlq_header(dl, n, 3, "orderflow.error.kind"),
		    "permanent") == 0);
		CHECK(strcmp(dlq_header(dl, n, 3, "orderflow.error.message"),
		    "no way") == 0);
		CHECK(strcmp(dlq_header(dl, n, 4, "orderflow.error.kind"),
		    "invalid") == 0);
		CHECK(strcmp(dlq_header(dl, n, 5, "orderflow.error.kind"),
		    "invalid") == 0);
		CHECK(strcmp(dlq_header(dl, n, 6, "orderflow.error.kind"),
		    "exhausted") == 0);
		CHECK(strcmp(dlq_header(dl, n, 6, "orderflow.attempt"),
		    "3") == 0);
		CHECK(strcmp(dlq_header(dl, n, 6, "orderflow.original.topic"),
		    "-") == 0);
		CHECK(strstr(dlq_header(dl, n, 6, "orderflow.error.message"),
		    "attempt 3 of 3 failed: try again (attempt 3)") != NULL);
	}
	while (n > 0)
		cJSON_Delete(dl[--n]);
	free(dead);
	/* The rejected line: its bytes in base64, the reader's reason. */
	dead = slurp(dlq);
	CHECK(strstr(dead, "\"value_base64\":\"//4=\"") != NULL);
	CHECK(strstr(dead, "\"value\":null") == NULL);
	CHECK(strstr(dead, "UTF-8") != NULL);
	CHECK(strstr(dead, "\"value\":\"\\\"perm\\\"\"") != NULL);
	free(dead);
	unlink(in);
	unlink(outp);
	unlink(dlq);
	opt_free(&o);
}

/*
 * Many lines through the reader's ring, some so long that a few of them
 * fill its byte bound: each processed once, in input order.
 */
static void
test_ring(void)
{
	char in[] = "/tmp/worker_test.in.XXXXXX";
	char outp[] = "/tmp/worker_test.out.XXXXXX";
	struct worker_config cf;
	struct worker_stats st;
	struct opt_kafka o;
	struct script s = { 0 };
	char *out, *line, *save, want[64], *big;
	int fd, i, n = 0, inorder = 1;
	const int lines = 1000, bigsize = 300 * 1024;
	FILE *fp;

	if ((big = malloc(bigsize + 1)) == NULL)
		abort();
	memset(big, 'x', bigsize);
	big[0] = big[bigsize - 1] = '"';
	big[bigsize] = '\0';
	CHECK((fd = mkstemp(in)) != -1);
	fp = fdopen(fd, "w");
	for (i = 1; i <= lines; i++)
		fprintf(fp, "%s\n", i % 50 == 0 ? big : "\"ok\"");
	fclose(fp);
	close(mkstemp(outp));
	CHECK(freopen(outp, "w", stdout) != NULL);

	opt_init(&o, NULL);
	pipe_config(&cf, in);
	cf.handle = scripted;
	cf.ctx = &s;
	CHECK(worker_run(&cf, &o, &st) == OF_EXIT_OK);
	fflush(stdout);
	CHECK(s.calls == lines && st.done == (uint64_t)lines);

	out = slurp(outp);
	for (line = strtok_r(out, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		snprintf(want, sizeof(want), "{\"line\":%d,\"attempt\":1}",
		    ++n);
		inorder &= strcmp(line, want) == 0;
	}
	CHECK(n == lines && inorder);
	free(out);
	free(big);
	unlink(in);
	unlink(outp);
	opt_free(&o);
}

/*
 * Asynchronous handling in pipe mode: each line {"subject":"kK","n":N}
 * is started and left pending; the pump, when the worker would wait,
 * completes the newest half of those pending, so completions come out of
 * order.  At most concurrency
 * are pending, never two of one subject, and each subject's lines are
 * handled in input order.
 */
#define ASYNC_KEYS	20
#define ASYNC_LINES	400
#define ASYNC_CONC	16

struct async {
	struct worker_job *job[ASYNC_CONC + 1];
	int	 key[ASYNC_CONC + 1];
	int	 n[ASYNC_CONC + 1];
	int	 npending;
	int	 maxpending;
	int	 busy[ASYNC_KEYS];
	int	 last[ASYNC_KEYS];
	int	 overlaps;
	int	 disorder;
};

static enum worker_outcome
async_start(void *ctx, struct worker_job *job, const struct worker_input *in,
    struct worker_output *out, char *why, size_t whylen)
{
	struct async *a = ctx;
	char line[64];
	int k, n;

	(void)out;
	snprintf(line, sizeof(line), "%.*s", (int)in->len,
	    (const char *)in->value);
	if (sscanf(line, "{\"subject\":\"k%d\",\"n\":%d}", &k, &n) != 2 ||
	    k < 0 || k >= ASYNC_KEYS || a->npending > ASYNC_CONC) {
		snprintf(why, whylen, "unexpected");
		return WORKER_PERMANENT;
	}
	if (a->busy[k])
		a->overlaps++;
	a->busy[k] = 1;
	a->job[a->npending] = job;
	a->key[a->npending] = k;
	a->n[a->npending] = n;
	if (++a->npending > a->maxpending)
		a->maxpending = a->npending;
	return WORKER_PENDING;
}

static void
async_pump(void *ctx, int wait_ms)
{
	struct async *a = ctx;
	struct worker_output out;
	int i, k, end = a->npending / 2;

	/* Calls "end" only when the worker would wait for them. */
	if (wait_ms == 0)
		return;
	for (i = a->npending - 1; i >= end; i--) {
		k = a->key[i];
		a->busy[k] = 0;
		if (a->n[i] < a->last[k])
			a->disorder++;
		a->last[k] = a->n[i];
		a->npending--;
		memset(&out, 0, sizeof(out));
		if (asprintf(&out.value, "{\"n\":%d}", a->n[i]) == -1)
			out.value = NULL;
		worker_complete(a->job[i], WORKER_DONE, &out, NULL);
	}
}

static void
test_async(void)
{
	char in[] = "/tmp/worker_test.in.XXXXXX";
	char outp[] = "/tmp/worker_test.out.XXXXXX";
	struct worker_config cf;
	struct worker_stats st;
	struct opt_kafka o;
	struct async a;
	char *out, *p;
	int fd, i, lines = 0;
	FILE *fp;

	memset(&a, 0, sizeof(a));
	for (i = 0; i < ASYNC_KEYS; i++)
		a.last[i] = -1;
	CHECK((fd = mkstemp(in)) != -1);
	fp = fdopen(fd, "w");
	for (i = 0; i < ASYNC_LINES; i++)
		fprintf(fp, "{\"subject\":\"k%d\",\"n\":%d}\n",
		    (i * 7) % ASYNC_KEYS, i);
	fclose(fp);
	close(mkstemp(outp));
	CHECK(freopen(outp, "w", stdout) != NULL);
	opt_init(&o, NULL);
	pipe_config(&cf, in);
	cf.start = async_start;
	cf.pump = async_pump;
	cf.concurrency = ASYNC_CONC;
	cf.ctx = &a;
	CHECK(worker_run(&cf, &o, &st) == OF_EXIT_OK);
	fflush(stdout);
	CHECK(st.processed == ASYNC_LINES && st.done == ASYNC_LINES);
	CHECK(a.npending == 0 && a.overlaps == 0 && a.disorder == 0);
	CHECK(a.maxpending > 1 && a.maxpending <= ASYNC_CONC);
	out = slurp(outp);
	for (p = out; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	CHECK(lines == ASYNC_LINES);
	free(out);
	unlink(in);
	unlink(outp);
	opt_free(&o);
}

static const struct unit_test tests[] = {
	{ "backoff", test_backoff },
	{ "heap", test_heap },
	{ "pipe", test_pipe },
	{ "ring", test_ring },
	{ "async", test_async },
};

int
main(int argc, char *argv[])
{
	log_init("worker_test");
	return unit_main("worker_test", tests, argc, argv);
}
