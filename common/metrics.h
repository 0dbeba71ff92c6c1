/*
 * metrics.h - the Prometheus text page (format 0.0.4) of order-serve's
 * GET /metrics: HTTP requests counted by route and status, a histogram of
 * their latency, and single values the other modules report (outbox,
 * committer, payment follower).
 *
 * Guarantees: counters only grow; a page shows each counter as one
 * consistent value, though not all of them at the same instant.  Names
 * are "PREFIX_NAME"; a route/status pair no request had is left out.
 *
 * Threads: none of its own.  metrics_request() and metrics_page() may be
 * called from any thread at once (the counters are atomic).
 *
 * Ownership: struct metrics borrows the route names it is given (static
 * strings); a page's text is malloc'd and the caller frees it.
 */
#ifndef OF_METRICS_H
#define OF_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct metrics;

/* A page being written; text is NUL-terminated at every step. */
struct metrics_page {
	char		*text;
	size_t		 len;
	size_t		 cap;
	const char	*prefix;
};

/*
 * Counters for nroutes routes named routes[0..nroutes-1], whose metric
 * names start with prefix (e.g. "order_serve").  Out of memory is fatal.
 */
struct metrics	*metrics_new(const char *prefix, const char *const *routes,
		    size_t nroutes);

/* Counts one request answered status after us microseconds. */
void	metrics_request(struct metrics *, size_t route, int status,
	    int64_t us);

/* Starts a page with the request counters and the latency histogram. */
void	metrics_page(struct metrics *, struct metrics_page *);

/* Adds one value of the given type ("gauge", "counter") to a page. */
void	metrics_page_value(struct metrics_page *, const char *name,
	    const char *type, const char *help, double v);

void	metrics_free(struct metrics *);

#endif /* OF_METRICS_H */
