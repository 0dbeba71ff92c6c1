/*
 * log.c - stderr diagnostics, human or JSON lines.
 *
 * A line is written with a single fwrite of a buffer built first, so lines
 * from several threads never interleave mid-line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "util.h"

static const char *progname = "orderflow";
static int threshold = LOG_LEVEL_INFO;
static enum log_format format = LOG_FORMAT_TEXT;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void
log_init(const char *name)
{
	const char *slash;

	if (name == NULL)
		return;
	slash = strrchr(name, '/');
	progname = slash != NULL ? slash + 1 : name;
}

const char *
log_progname(void)
{
	return progname;
}

void
log_set_level(int level)
{
	if (level < LOG_LEVEL_ERROR)
		level = LOG_LEVEL_ERROR;
	if (level > LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_DEBUG;
	threshold = level;
}

int
log_level(void)
{
	return threshold;
}

int
log_set_format_name(const char *name)
{
	if (strcmp(name, "text") == 0)
		format = LOG_FORMAT_TEXT;
	else if (strcmp(name, "json") == 0)
		format = LOG_FORMAT_JSON;
	else
		return -1;
	return 0;
}

/*
 * The properties librdkafka itself flags sensitive (_RK_SENSITIVE in its
 * rdkafka_conf.c, 2.0.2 and later: the private key, its passphrase and
 * location, the inline CA, the keystore's password, every SASL credential)
 * that the words of log_redact() do not already cover.
 */
static const char *const sensitive[] = {
	"ssl.ca.pem", "ssl.key.location", "ssl.key.pem", "ssl_key", NULL
};

const char *
log_redact(const char *name, const char *value)
{
	const char *const *s;
	size_t n;

	if (name == NULL)
		return value;
	if (strcasestr(name, "password") != NULL ||
	    strcasestr(name, "secret") != NULL ||
	    strcasestr(name, "token") != NULL ||
	    strcasestr(name, "private") != NULL ||
	    strncasecmp(name, "sasl.", 5) == 0)
		return "[redacted]";
	n = strlen(name);
	if (n >= 4 && strcasecmp(name + n - 4, ".pem") == 0)
		return "[redacted]";
	for (s = sensitive; *s != NULL; s++)
		if (strcasecmp(name, *s) == 0)
			return "[redacted]";
	return value;
}

/* One JSON log line, without its newline, to cJSON_free(); NULL if none. */
static char *
json_line(int level, const struct log_ctx *ctx, const char *msg)
{
	cJSON *o;
	char ts[40], *s;

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	util_rfc3339(util_now_ms(), ts, sizeof(ts));
	cJSON_AddStringToObject(o, "time", ts);
	cJSON_AddStringToObject(o, "level", level_names[level]);
	cJSON_AddStringToObject(o, "prog", progname);
	cJSON_AddStringToObject(o, "msg", msg);
	if (ctx != NULL) {
		if (ctx->order_id != NULL)
			cJSON_AddStringToObject(o, "order_id", ctx->order_id);
		if (ctx->event_id != NULL)
			cJSON_AddStringToObject(o, "event_id", ctx->event_id);
		if (ctx->trace_id != NULL)
			cJSON_AddStringToObject(o, "trace_id", ctx->trace_id);
	}
	s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

static void
write_json(int level, const struct log_ctx *ctx, const char *msg)
{
	char *s;
	size_t n;

	if ((s = json_line(level, ctx, msg)) == NULL)
		return;
	n = strlen(s);
	s[n] = '\n';	/* the terminator becomes the newline */
	fwrite(s, 1, n + 1, stderr);
	cJSON_free(s);
}

/* A text log line with its newline in line (len >= 2); its length. */
static size_t
text_line(char *line, size_t len, const struct log_ctx *ctx, const char *msg)
{
	int n;

	n = snprintf(line, len, "%s: %s", progname, msg);
	if (ctx != NULL) {
		if (ctx->order_id != NULL && n < (int)len)
			n += snprintf(line + n, len - n, " order_id=%s",
			    ctx->order_id);
		if (ctx->event_id != NULL && n < (int)len)
			n += snprintf(line + n, len - n, " event_id=%s",
			    ctx->event_id);
		if (ctx->trace_id != NULL && n < (int)len)
			n += snprintf(line + n, len - n, " trace_id=%s",
			    ctx->trace_id);
	}
	if (n >= (int)len - 1)
		n = (int)len - 2;
	line[n++] = '\n';
	return (size_t)n;
}

static void
write_text(const struct log_ctx *ctx, const char *msg)
{
	char line[8192];

	fwrite(line, 1, text_line(line, sizeof(line), ctx, msg), stderr);
}

size_t
log_render(char *buf, size_t len, const char *fmt, ...)
{
	char msg[4096], *s;
	va_list ap;
	size_t n;

	if (len < 2)
		return 0;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (format != LOG_FORMAT_JSON)
		return text_line(buf, len, NULL, msg);
	if ((s = json_line(LOG_LEVEL_ERROR, NULL, msg)) == NULL)
		return 0;
	if ((n = strlen(s)) + 1 >= len)
		n = 0;		/* cut JSON is no JSON */
	else {
		memcpy(buf, s, n);
		buf[n++] = '\n';
	}
	cJSON_free(s);
	return n;
}

void
log_vmsg(int level, const struct log_ctx *ctx, const char *fmt, va_list ap)
{
	char msg[4096];

	if (level > threshold)
		return;
	if (level < LOG_LEVEL_ERROR)
		level = LOG_LEVEL_ERROR;
	if (level > LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_DEBUG;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (format == LOG_FORMAT_JSON)
		write_json(level, ctx, msg);
	else
		write_text(ctx, msg);
}

void
log_msg(int level, const struct log_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, ctx, fmt, ap);
	va_end(ap);
}

void
log_fatal(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_ERROR, NULL, fmt, ap);
	va_end(ap);
	exit(code);
}
