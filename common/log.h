/*
 * log.h - diagnostics on stderr for every orderflow command.
 *
 * Data goes to stdout; everything here goes to stderr.  Two formats: human
 * lines ("prog: message key=value ...") and, with --log-format json, one JSON
 * object a line.  Lines can carry the event id, order id and trace id they
 * are about, so one order can be followed through the logs of every command.
 * Values whose names look secret are never printed (see log_redact()).
 */
#ifndef OF_LOG_H
#define OF_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN = 1,
	LOG_LEVEL_INFO = 2,	/* default threshold: -q lowers it, -v raises it */
	LOG_LEVEL_DEBUG = 3
};

enum log_format {
	LOG_FORMAT_TEXT,
	LOG_FORMAT_JSON
};

/* What a log line is about; any member may be NULL. */
struct log_ctx {
	const char *event_id;
	const char *order_id;
	const char *trace_id;
};

void		 log_init(const char *progname);
const char	*log_progname(void);
void		 log_set_level(int level);
int		 log_level(void);
int		 log_set_format_name(const char *name);	/* "text" | "json"; -1 if unknown */

void		 log_msg(int level, const struct log_ctx *ctx, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));
void		 log_vmsg(int level, const struct log_ctx *ctx, const char *fmt, va_list ap)
		    __attribute__((format(printf, 3, 0)));

#define log_error(...)	log_msg(LOG_LEVEL_ERROR, NULL, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_LEVEL_WARN, NULL, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define log_debug(...)	log_msg(LOG_LEVEL_DEBUG, NULL, __VA_ARGS__)

/* Log at error level and exit with status code (an enum of_exit). */
void		 log_fatal(int code, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3), noreturn));

/*
 * log_render() writes to buf the error line that log_error() would write
 * now, newline included, for a signal handler to write(2) later; returns
 * its length, 0 when it does not fit.  A JSON line carries the time it
 * was rendered.
 */
size_t		 log_render(char *buf, size_t len, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));

/*
 * Returns "[redacted]" when a property named name holds a secret, value
 * otherwise.  Secrets are: every property librdkafka flags sensitive
 * (ssl.key.pem, ssl.key.password, ssl.key.location, ssl_key, ssl.ca.pem,
 * ssl.keystore.password, sasl.username, sasl.password and every other
 * sasl.* property), any name ending in ".pem", and any name containing
 * "password", "secret", "token" or "private".  Case does not matter.
 */
const char	*log_redact(const char *name, const char *value);

#endif
