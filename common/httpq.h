/*
 * httpq.h - many HTTP POSTs to one URL at once, on the caller's thread:
 * libcurl's multi interface, driven from the worker's loop.
 *
 * pay-process's gateway and notify's webhook post one request a record.
 * Each call runs on a pooled easy handle (reused, so its connection is
 * kept alive and reused by the next call); none has a thread of its own.
 * httpq_run() does the transfers that can go on, waits at most wait_ms
 * on the sockets, and calls the done callback of every call that ended.
 * A call never takes longer than timeout_ms from httpq_post(), queueing
 * included: then it ends with CURLE_OPERATION_TIMEDOUT.
 *
 * Not thread-safe: one thread posts and runs.  curl_global_init() must
 * have been called.
 */
#ifndef OF_HTTPQ_H
#define OF_HTTPQ_H

#include <stddef.h>

#include <curl/curl.h>

struct httpq;

#define HTTPQ_REPLY_MAX	65536	/* a longer reply fails its call */

/* How a call ended, for its done callback. */
struct httpq_result {
	CURLcode	 res;		/* CURLE_OK: code holds the status */
	long		 code;		/* HTTP status, 0 without a reply */
	const char	*reply;		/* the body, NUL-terminated */
	size_t		 len;
	const char	*error;		/* res != CURLE_OK: why, never the URL */
};

/* Called from httpq_run() once per call, which is then forgotten. */
typedef void httpq_done_fn(void *arg, const struct httpq_result *);

/*
 * A queue of calls to url, each taking at most timeout_ms, of which
 * connecting at most connect_timeout_ms (capped at timeout_ms), keeping
 * up to max_conns connections open for the next calls.  Returns NULL
 * when out of memory or when libcurl refuses the setup.
 */
struct httpq	*httpq_new(const char *url, long timeout_ms,
		    long connect_timeout_ms, const char *user_agent,
		    long max_conns);

/*
 * Frees the queue.  Calls still in flight are abandoned without their
 * callbacks: drain with httpq_run() first.
 */
void	httpq_free(struct httpq *);

/*
 * Appends a header line, formatted as printf(3) ("Name: value"), to *list.
 * Returns 0; or -1 when out of memory, having freed the whole list and
 * set *list to NULL, so that a caller can chain appends with || and
 * return NULL on the first failure.
 */
int	httpq_header(struct curl_slist **list, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/*
 * Starts a POST of body (len bytes, which the queue frees) with headers
 * (a list the queue frees; may be NULL).  done(arg, ...) follows from
 * httpq_run().  Returns 0, or -1 when out of memory (body and headers
 * are freed, done is never called).
 */
int	httpq_post(struct httpq *, char *body, size_t len,
	    struct curl_slist *headers, httpq_done_fn *done, void *arg);

/*
 * Moves the calls in flight on: transfers what can go, waits up to
 * wait_ms for a socket when nothing ended (0: does not wait), and calls
 * done for every call that ended.  Returns the calls still in flight.
 */
int	httpq_run(struct httpq *, int wait_ms);

/*
 * Cuts short the wait of an httpq_run() under way, or makes the next one
 * return at once; the only call that is safe from another thread.
 */
void	httpq_wakeup(struct httpq *);
/* Calls posted and not yet ended. */
int	httpq_inflight(const struct httpq *);

#endif
