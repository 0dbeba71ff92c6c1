/*
 * opt.c - the common options of orderflow(7) and librdkafka property files,
 * and what follows from --state: the state directory's lock and the
 * group.instance.id derived from it.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "exitcode.h"
#include "log.h"
#include "opt.h"
#include "util.h"

#ifndef VERSION
#define VERSION "0.0.0"
#endif

/* The characters of a librdkafka property name. */
#define PROP_NAME_CHARS	"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" \
			"0123456789._-"

static void	default_group(struct opt_kafka *);

/* For opt_number() and opt_duration(), which have no opt_kafka. */
static void	(*opt_usage)(void);

void
opt_init(struct opt_kafka *o, void (*usage)(void))
{
	const char *env;

	memset(o, 0, sizeof(*o));
	env = getenv("KAFKA_BROKERS");
	o->brokers = env != NULL && *env != '\0' ? env : "localhost:9092";
	env = getenv("ORDERFLOW_TOPIC_PREFIX");
	o->topic_prefix = env != NULL ? env : "";
	default_group(o);
	o->verbosity = LOG_LEVEL_INFO;
	o->usage = usage;
	opt_usage = usage;
}

/*
 * Separate flows on one cluster (--topic-prefix) get separate consumer
 * groups too, unless -G names one.
 */
static void
default_group(struct opt_kafka *o)
{
	if (o->group != NULL && o->group != o->default_group)
		return;
	free(o->default_group);
	if (asprintf(&o->default_group, "%s%s", o->topic_prefix,
	    log_progname()) == -1)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	o->group = o->default_group;
}

static void __attribute__((noreturn))
arg_error(const char *opt, const char *arg, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_error("%s %s: %s", opt, arg, why);
	if (opt_usage != NULL)
		opt_usage();
	exit(OF_EXIT_USAGE);
}

long long
opt_number(const char *opt, const char *arg, long long min, long long max)
{
	const char *errstr;
	long long v;

	v = util_strtonum(arg, min, max, &errstr);
	if (errstr != NULL)
		arg_error(opt, arg, "%s (%lld to %lld)", errstr, min, max);
	return v;
}

int64_t
opt_duration(const char *opt, const char *arg, int64_t min_ms)
{
	const char *errstr;
	int64_t ms;

	if (util_duration(arg, &ms, &errstr) == -1)
		arg_error(opt, arg, "%s", errstr);
	if (ms < min_ms)
		arg_error(opt, arg, "at least %lldms", (long long)min_ms);
	return ms;
}

static void __attribute__((noreturn))
usage_exit(struct opt_kafka *o)
{
	if (o->usage != NULL)
		o->usage();
	exit(OF_EXIT_USAGE);
}

int
opt_prop_add(struct opt_kafka *o, const char *nv, const char *where)
{
	const char *eq;
	struct opt_prop *p;

	if ((eq = strchr(nv, '=')) == NULL || eq == nv)
		return -1;
	p = realloc(o->props, (o->nprops + 1) * sizeof(*p));
	if (p == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	o->props = p;
	p = &o->props[o->nprops++];
	p->name = util_xstrdup(nv);
	p->name[eq - nv] = '\0';
	p->value = util_xstrdup(eq + 1);
	p->where = util_xstrdup(where);
	return 0;
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Reads -F's file; errors name FILE:LINE and exit 2 (1 if unreadable). */
static void
props_file(struct opt_kafka *o, const char *path)
{
	FILE *fp;
	char *line = NULL, *s, where[4096];
	size_t cap = 0;
	long lineno = 0;

	if ((fp = fopen(path, "r")) == NULL)
		log_fatal(OF_EXIT_FAIL, "%s: %s", path, strerror(errno));
	while (getline(&line, &cap, fp) != -1) {
		lineno++;
		s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		snprintf(where, sizeof(where), "%s:%ld", path, lineno);
		if (opt_prop_add(o, s, where) == -1) {
			log_error("%s: expected name=value", where);
			exit(OF_EXIT_USAGE);
		}
		/* "name = value" is common in hand-written files */
		{
			struct opt_prop *p = &o->props[o->nprops - 1];
			char *n = trim(p->name), *v = trim(p->value);

			memmove(p->name, n, strlen(n) + 1);
			memmove(p->value, v, strlen(v) + 1);
		}
	}
	if (ferror(fp))
		log_fatal(OF_EXIT_FAIL, "%s: %s", path, strerror(errno));
	free(line);
	fclose(fp);
}

int
opt_common(struct opt_kafka *o, int ch, const char *arg)
{
	switch (ch) {
	case 'b':
		o->brokers = arg;
		break;
	case 'F':
		props_file(o, arg);
		break;
	case 'G':
		if (*arg == '\0') {
			log_error("-G: the group name is empty");
			usage_exit(o);
		}
		o->group = arg;
		break;
	case 'h':
		if (o->usage != NULL)
			o->usage();
		exit(OF_EXIT_OK);
	case 'q':
		log_set_level(--o->verbosity);
		break;
	case 'V':
		printf("%s %s\n", log_progname(), VERSION);
		exit(util_stdout_flush() == 0 ? OF_EXIT_OK : OF_EXIT_FAIL);
	case 'v':
		log_set_level(++o->verbosity);
		break;
	case 'X':
		if (opt_prop_add(o, arg, "-X") == -1) {
			/* Echoed only when it looks like a name, not name:value. */
			if (arg[strspn(arg, PROP_NAME_CHARS)] == '\0')
				log_error("-X %s: expected name=value", arg);
			else
				log_error("-X: expected name=value");
			usage_exit(o);
		}
		break;
	case OPT_LOG_FORMAT:
		if (log_set_format_name(arg) == -1) {
			log_error("--log-format: %s: expected text or json", arg);
			usage_exit(o);
		}
		break;
	case OPT_STATE:
		o->state = arg;
		break;
	case OPT_TOPIC_PREFIX:
		o->topic_prefix = arg;
		default_group(o);
		break;
	case '?':
	case ':':
		usage_exit(o);
	default:
		return 0;
	}
	return 1;
}

/*
 * Replaces every copy of value in s (a string in len bytes) by
 * "[redacted]", as far as len allows: librdkafka's message about a bad
 * value may quote it in any form.
 */
static void
scrub(char *s, size_t len, const char *value)
{
	char out[512];
	const char *p, *from = s;
	size_t n = strlen(value), k = 0;

	if (n == 0 || len > sizeof(out))
		return;
	while ((p = strstr(from, value)) != NULL) {
		k += snprintf(out + k, sizeof(out) - k, "%.*s[redacted]",
		    (int)(p - from), from);
		if (k >= sizeof(out))
			k = sizeof(out) - 1;
		from = p + n;
	}
	snprintf(out + k, sizeof(out) - k, "%s", from);
	snprintf(s, len, "%s", out);
}

int
opt_apply(const struct opt_kafka *o, rd_kafka_conf_t *conf, char *err,
    size_t errlen)
{
	char kerr[512];
	size_t i;

	if (rd_kafka_conf_set(conf, "bootstrap.servers", o->brokers, kerr,
	    sizeof(kerr)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "-b %s: %s", o->brokers, kerr);
		return -1;
	}
	for (i = 0; i < o->nprops; i++) {
		const struct opt_prop *p = &o->props[i];

		switch (rd_kafka_conf_set(conf, p->name, p->value, kerr,
		    sizeof(kerr))) {
		case RD_KAFKA_CONF_OK:
			break;
		case RD_KAFKA_CONF_UNKNOWN:
			/* A mistyped name may hide a secret's value. */
			snprintf(err, errlen, "%s: %s: %s", p->where, p->name,
			    kerr);
			return -1;
		default:
			if (log_redact(p->name, NULL) != NULL)
				scrub(kerr, sizeof(kerr), p->value);
			snprintf(err, errlen, "%s: %s=%s: %s", p->where,
			    p->name, log_redact(p->name, p->value), kerr);
			return -1;
		}
		log_debug("%s: %s=%s", p->where, p->name,
		    log_redact(p->name, p->value));
	}
	return 0;
}

const char *
opt_state_dir(struct opt_kafka *o)
{
	static char buf[4096];
	const char *base;

	if (o->state != NULL)
		return o->state;
	base = getenv("ORDERFLOW_STATE");
	if (base == NULL || *base == '\0')
		base = "./var";
	snprintf(buf, sizeof(buf), "%s/%s", base, log_progname());
	o->state = buf;
	return buf;
}

void
opt_lock_state(struct opt_kafka *o)
{
	const char *dir = opt_state_dir(o);
	char path[PATH_MAX];

	if (util_mkdir_p(dir, 0700) == -1)
		log_fatal(OF_EXIT_FAIL, "%s: %s", dir, strerror(errno));
	if ((size_t)snprintf(path, sizeof(path), "%s/lock", dir) >=
	    sizeof(path))
		log_fatal(OF_EXIT_FAIL, "%s: path too long", dir);
	/* The descriptor stays open, unused, until the process ends. */
	if (util_lock(path) == -1) {
		if (errno == EWOULDBLOCK)
			log_fatal(OF_EXIT_BUSY, "%s: another %s uses this "
			    "state directory", dir, log_progname());
		log_fatal(OF_EXIT_FAIL, "%s: %s", path, strerror(errno));
	}
}

/*
 * Kafka takes [A-Za-z0-9._-] in a group.instance.id, up to 249 bytes:
 * "HOST-HASH" stays within both.
 */
#define INSTANCE_HOST_MAX	64

char *
opt_instance_id(const char *dir)
{
	char host[256], abs[PATH_MAX], *id;
	const unsigned char *c;
	uint64_t h = 0xcbf29ce484222325ULL;	/* FNV-1a, 64 bits */
	size_t i;

	if (realpath(dir, abs) == NULL)
		return NULL;
	for (c = (const unsigned char *)abs; *c != '\0'; c++)
		h = (h ^ *c) * 0x100000001b3ULL;
	if (gethostname(host, sizeof(host)) == -1 || host[0] == '\0')
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	host[INSTANCE_HOST_MAX] = '\0';
	for (i = 0; host[i] != '\0'; i++)
		if (!isalnum((unsigned char)host[i]) && host[i] != '.' &&
		    host[i] != '_' && host[i] != '-')
			host[i] = '_';
	if (asprintf(&id, "%s-%016llx", host, (unsigned long long)h) == -1)
		return NULL;
	return id;
}

const char *
opt_topic(struct opt_kafka *o, const char *name)
{
	char **t, *s;
	size_t i;

	for (i = 0; i < o->ntopics; i++)
		if (strcmp(o->topics[i] + strlen(o->topic_prefix), name) == 0)
			return o->topics[i];
	if (asprintf(&s, "%s%s", o->topic_prefix, name) == -1 ||
	    (t = realloc(o->topics, (o->ntopics + 1) * sizeof(*t))) == NULL)
		log_fatal(OF_EXIT_FAIL, "out of memory");
	o->topics = t;
	o->topics[o->ntopics++] = s;
	return s;
}

void
opt_free(struct opt_kafka *o)
{
	size_t i;

	for (i = 0; i < o->ntopics; i++)
		free(o->topics[i]);
	free(o->topics);
	o->topics = NULL;
	o->ntopics = 0;
	if (o->group == o->default_group)
		o->group = NULL;
	free(o->default_group);
	o->default_group = NULL;

	for (i = 0; i < o->nprops; i++) {
		free(o->props[i].name);
		free(o->props[i].value);
		free(o->props[i].where);
	}
	free(o->props);
	o->props = NULL;
	o->nprops = 0;
}

void
opt_codec_init(struct opt_codec *oc)
{
	const char *url = getenv("SCHEMA_REGISTRY_URL");

	oc->format = CODEC_JSON;
	oc->registry = url != NULL && *url != '\0' ? url : NULL;
}

int
opt_codec(struct opt_codec *oc, int ch, const char *arg)
{
	enum codec_format fmt;

	switch (ch) {
	case OPT_FORMAT:
		if (codec_format_parse(arg, &fmt) == -1)
			arg_error("--format", arg, "json or avro");
		oc->format = fmt;
		return 1;
	case 'r':
		oc->registry = *arg != '\0' ? arg : NULL;
		return 1;
	default:
		return 0;
	}
}

void
opt_codec_prepare(struct codec *c, const char *topic, int kind,
    const char *what)
{
	char msg[512];
	int rerr;

	if (codec_prepare(c, topic, (enum event_kind)kind, &rerr, msg,
	    sizeof(msg)) == -1)
		log_fatal(OF_EXIT_FAIL, "schema registry: %s-value: %s: %s",
		    topic, msg, what);
}

struct codec *
opt_codec_new(const struct opt_codec *oc, int pipe)
{
	struct codec *c;
	char msg[512];

	if (oc->format == CODEC_AVRO && pipe) {
		log_error("--format avro: Avro records are written to Kafka "
		    "only; pipe mode (-i -, -o -) carries JSON");
		if (opt_usage != NULL)
			opt_usage();
		exit(OF_EXIT_USAGE);
	}
	if ((c = codec_new(oc->format, oc->registry, msg, sizeof(msg))) ==
	    NULL) {
		log_error("%s", msg);
		if (opt_usage != NULL)
			opt_usage();
		exit(OF_EXIT_USAGE);
	}
	return c;
}
