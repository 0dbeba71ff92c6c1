/*
 * metrics.c - order-serve's /metrics page: request counters, a latency
 * histogram and single values, as Prometheus text (metrics.h).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "exitcode.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

/* The statuses counted; anything else is counted as "other". */
static const int status_codes[] = {
	200, 201, 400, 401, 404, 405, 409, 413, 415, 422, 500, 503
};
#define NSTATUS	(sizeof(status_codes) / sizeof(status_codes[0]))

/* Latency histogram bounds, in microseconds; +Inf follows. */
static const uint64_t lat_bounds_us[] = {
	500, 1000, 2500, 5000, 10000, 20000, 50000, 100000, 250000, 1000000
};
#define NBUCKET	(sizeof(lat_bounds_us) / sizeof(lat_bounds_us[0]))

struct metrics {
	const char		 *prefix;
	const char *const	 *routes;
	size_t			  nroutes;
	atomic_uint_fast64_t	(*req)[NSTATUS + 1];	/* [nroutes] */
	atomic_uint_fast64_t	  lat[NBUCKET + 1];
	atomic_uint_fast64_t	  lat_sum_us;
};

struct metrics *
metrics_new(const char *prefix, const char *const *routes, size_t nroutes)
{
	struct metrics *m;

	m = util_xcalloc(1, sizeof(*m));
	m->req = util_xcalloc(nroutes, sizeof(*m->req));
	m->prefix = prefix;
	m->routes = routes;
	m->nroutes = nroutes;
	return m;
}

void
metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	free(m->req);
	free(m);
}

static int
status_index(int status)
{
	size_t i;

	for (i = 0; i < NSTATUS; i++)
		if (status_codes[i] == status)
			return (int)i;
	return NSTATUS;
}

void
metrics_request(struct metrics *m, size_t route, int status, int64_t us)
{
	size_t b;

	atomic_fetch_add(&m->req[route][status_index(status)], 1);
	for (b = 0; b < NBUCKET && (uint64_t)us > lat_bounds_us[b]; b++)
		;
	atomic_fetch_add(&m->lat[b], 1);
	atomic_fetch_add(&m->lat_sum_us, (uint64_t)us);
}

static void
page_add(struct metrics_page *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
page_add(struct metrics_page *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(p->text + p->len, p->cap - p->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < p->cap - p->len) {
			p->len += n;
			return;
		}
		p->cap = p->cap * 2 + n;
		if ((p->text = realloc(p->text, p->cap)) == NULL)
			log_fatal(OF_EXIT_FAIL, "out of memory");
	}
}

void
metrics_page(struct metrics *m, struct metrics_page *p)
{
	const char *pf = m->prefix;
	uint64_t v, cum = 0;
	size_t i, k;
	char code[8];

	p->prefix = pf;
	p->len = 0;
	p->cap = 8192;
	p->text = util_xmalloc(p->cap);
	*p->text = '\0';
	page_add(p, "# HELP %s_requests_total HTTP requests answered, by "
	    "route and status.\n# TYPE %s_requests_total counter\n", pf, pf);
	for (i = 0; i < m->nroutes; i++)
		for (k = 0; k <= NSTATUS; k++) {
			if ((v = atomic_load(&m->req[i][k])) == 0)
				continue;
			if (k < NSTATUS)
				snprintf(code, sizeof(code), "%d",
				    status_codes[k]);
			else
				snprintf(code, sizeof(code), "other");
			page_add(p, "%s_requests_total{route=\"%s\","
			    "status=\"%s\"} %" PRIu64 "\n", pf, m->routes[i],
			    code, v);
		}
	page_add(p, "# HELP %s_request_duration_seconds Time from a "
	    "request's headers to its answer.\n"
	    "# TYPE %s_request_duration_seconds histogram\n", pf, pf);
	for (i = 0; i <= NBUCKET; i++) {
		cum += atomic_load(&m->lat[i]);
		if (i < NBUCKET)
			page_add(p, "%s_request_duration_seconds_bucket"
			    "{le=\"%g\"} %" PRIu64 "\n", pf,
			    lat_bounds_us[i] / 1e6, cum);
		else
			page_add(p, "%s_request_duration_seconds_bucket"
			    "{le=\"+Inf\"} %" PRIu64 "\n", pf, cum);
	}
	page_add(p, "%s_request_duration_seconds_sum %.6f\n"
	    "%s_request_duration_seconds_count %" PRIu64 "\n", pf,
	    atomic_load(&m->lat_sum_us) / 1e6, pf, cum);
}

void
metrics_page_value(struct metrics_page *p, const char *name,
    const char *type, const char *help, double v)
{
	page_add(p, "# HELP %s_%s %s\n# TYPE %s_%s %s\n%s_%s %.17g\n",
	    p->prefix, name, help, p->prefix, name, type, p->prefix, name, v);
}
