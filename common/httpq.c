/*
 * httpq.c - concurrent POSTs over libcurl's multi interface (httpq.h).
 *
 * Easy handles are pooled: a call takes one from the free list (or makes
 * one), and gives it back when it ends with its options kept, so setting
 * up a call is a few curl_easy_setopt() calls.  The multi handle's
 * connection cache keeps up to max_conns connections alive for the next
 * calls.  The pool never holds more handles than calls were ever in
 * flight at once, which the worker bounds by its concurrency.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpq.h"
#include "util.h"

struct httpq_call {
	struct httpq_call *next;	/* in the free or the active list */
	struct httpq_call *prev;	/* in the active list */
	struct httpq	*q;
	CURL		*easy;
	char		*body;
	struct curl_slist *headers;
	httpq_done_fn	*done;
	void		*arg;
	char		*reply;
	size_t		 len;
	size_t		 cap;
	int		 overflow;
	char		 err[CURL_ERROR_SIZE];
};

struct httpq_config {
	char		*url;
	long		 timeout_ms;
	long		 connect_timeout_ms;
	char		*user_agent;
	long		 max_conns;
};

struct httpq {
	CURLM		*multi;
	struct httpq_config cf;
	struct httpq_call *free;
	struct httpq_call *active;	/* in flight */
	int		 inflight;
};

/* Keeps the reply, up to reply_max bytes; a longer one fails the call. */
static size_t
httpq_write(char *data, size_t size, size_t n, void *arg)
{
	struct httpq_call *c = arg;
	size_t len = size * n;

	switch (util_buf_append(&c->reply, &c->len, &c->cap, data, len, 1024,
	    HTTPQ_REPLY_MAX)) {
	case 0:
		return len;
	case -1:
		c->overflow = 1;
		return 0;
	default:
		return 0;
	}
}

struct httpq *
httpq_new(const char *url, long timeout_ms, long connect_timeout_ms,
    const char *user_agent, long max_conns)
{
	struct httpq *q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->cf.url = strdup(url);
	q->cf.user_agent = strdup(user_agent != NULL ? user_agent : "");
	q->cf.timeout_ms = timeout_ms;
	q->cf.connect_timeout_ms = connect_timeout_ms < timeout_ms ?
	    connect_timeout_ms : timeout_ms;
	q->cf.max_conns = max_conns > 1 ? max_conns : 1;
	if (q->cf.url == NULL || q->cf.user_agent == NULL ||
	    (q->multi = curl_multi_init()) == NULL) {
		free(q->cf.url);
		free(q->cf.user_agent);
		free(q);
		return NULL;
	}
	curl_multi_setopt(q->multi, CURLMOPT_MAXCONNECTS, q->cf.max_conns);
	return q;
}

static void
httpq_call_free(struct httpq_call *c)
{
	curl_easy_cleanup(c->easy);
	free(c->reply);
	free(c);
}

void
httpq_free(struct httpq *q)
{
	struct httpq_call *c;

	if (q == NULL)
		return;
	while ((c = q->active) != NULL) {
		q->active = c->next;
		curl_multi_remove_handle(q->multi, c->easy);
		free(c->body);
		curl_slist_free_all(c->headers);
		httpq_call_free(c);
	}
	while ((c = q->free) != NULL) {
		q->free = c->next;
		httpq_call_free(c);
	}
	curl_multi_cleanup(q->multi);
	free(q->cf.url);
	free(q->cf.user_agent);
	free(q);
}

/* A pooled call, or a new one with the options every call shares. */
static struct httpq_call *
httpq_take(struct httpq *q)
{
	struct httpq_call *c;

	if ((c = q->free) != NULL) {
		q->free = c->next;
		return c;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->easy = curl_easy_init()) == NULL) {
		free(c);
		return NULL;
	}
	c->q = q;
	curl_easy_setopt(c->easy, CURLOPT_URL, q->cf.url);
	curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, q->cf.timeout_ms);
	curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS,
	    q->cf.connect_timeout_ms);
	if (*q->cf.user_agent != '\0')
		curl_easy_setopt(c->easy, CURLOPT_USERAGENT, q->cf.user_agent);
	curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, httpq_write);
	curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->err);
	curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
	return c;
}

int
httpq_post(struct httpq *q, char *body, size_t len,
    struct curl_slist *headers, httpq_done_fn *done, void *arg)
{
	struct httpq_call *c;

	if ((c = httpq_take(q)) == NULL) {
		free(body);
		curl_slist_free_all(headers);
		return -1;
	}
	c->body = body;
	c->headers = headers;
	c->done = done;
	c->arg = arg;
	c->len = 0;
	c->overflow = 0;
	c->err[0] = '\0';
	curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)len);
	if (curl_multi_add_handle(q->multi, c->easy) != CURLM_OK) {
		c->body = NULL;
		c->headers = NULL;
		free(body);
		curl_slist_free_all(headers);
		c->next = q->free;
		q->free = c;
		return -1;
	}
	c->prev = NULL;
	c->next = q->active;
	if (q->active != NULL)
		q->active->prev = c;
	q->active = c;
	q->inflight++;
	return 0;
}

/* One call ended: its callback, then its handle back to the pool. */
static void
httpq_end(struct httpq *q, CURL *easy, CURLcode res)
{
	struct httpq_result r;
	struct httpq_call *c;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
	curl_multi_remove_handle(q->multi, easy);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		q->active = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	q->inflight--;
	memset(&r, 0, sizeof(r));
	r.res = res;
	if (res == CURLE_OK)
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.code);
	r.reply = c->reply != NULL ? c->reply : "";
	r.len = c->reply != NULL ? c->len : 0;
	if (c->reply != NULL)
		c->reply[c->len] = '\0';
	r.error = c->overflow ? "the reply is too long" : c->err[0] != '\0' ?
	    c->err : curl_easy_strerror(res);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(c->headers);
	free(c->body);
	c->headers = NULL;
	c->body = NULL;
	c->done(c->arg, &r);
	c->next = q->free;
	q->free = c;
}

/* Calls the callbacks of the calls that ended; returns how many. */
static int
httpq_reap(struct httpq *q)
{
	CURLMsg *m;
	int left, n = 0;

	while ((m = curl_multi_info_read(q->multi, &left)) != NULL)
		if (m->msg == CURLMSG_DONE) {
			httpq_end(q, m->easy_handle, m->data.result);
			n++;
		}
	return n;
}

void
httpq_wakeup(struct httpq *q)
{
	(void)curl_multi_wakeup(q->multi);
}

int
httpq_run(struct httpq *q, int wait_ms)
{
	int running;

	if (q->inflight == 0)
		return 0;
	curl_multi_perform(q->multi, &running);
	if (httpq_reap(q) == 0 && wait_ms > 0 && q->inflight > 0) {
		curl_multi_poll(q->multi, NULL, 0, wait_ms, NULL);
		curl_multi_perform(q->multi, &running);
		httpq_reap(q);
	}
	return q->inflight;
}

int
httpq_inflight(const struct httpq *q)
{
	return q->inflight;
}

int
httpq_header(struct curl_slist **list, const char *fmt, ...)
{
	struct curl_slist *n = NULL;
	va_list ap;
	char *line;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (r != -1) {
		n = curl_slist_append(*list, line);
		free(line);
	}
	if (n == NULL) {
		curl_slist_free_all(*list);
		*list = NULL;
		return -1;
	}
	*list = n;
	return 0;
}
