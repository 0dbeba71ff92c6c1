/*
 * opt.h - the options every Kafka-facing command takes (orderflow(7), kcat
 * style): -b BROKERS, -X name=value, -F FILE, -G GROUP, -q, -v, -h, -V,
 * --log-format text|json and --state DIR.
 *
 * A command lists OPT_COMMON_SHORT and OPT_COMMON_LONG in its own getopt
 * tables and hands every option it does not know itself to opt_common().
 * --topic-prefix PREFIX (default $ORDERFLOW_TOPIC_PREFIX) puts PREFIX in
 * front of every topic name of flow.h the command reads or writes.
 * -X and -F properties are kept in the order given and applied in that
 * order by opt_apply(), after bootstrap.servers from -b.  --state names
 * the state directory, which one process uses at a time
 * (opt_lock_state()) and from which a worker's group.instance.id is
 * derived (opt_instance_id()).
 */
#ifndef OF_OPT_H
#define OF_OPT_H

#include <getopt.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#define OPT_COMMON_SHORT	"b:F:G:hqVvX:"

enum opt_long_id {
	OPT_LOG_FORMAT = 256,
	OPT_STATE,
	OPT_TOPIC_PREFIX,
	OPT_FORMAT,
	OPT_CMD_FIRST = 300	/* commands number their own long options from here */
};

#define OPT_COMMON_LONG \
	{ "log-format", required_argument, NULL, OPT_LOG_FORMAT }, \
	{ "state", required_argument, NULL, OPT_STATE }, \
	{ "topic-prefix", required_argument, NULL, OPT_TOPIC_PREFIX }

/*
 * The options of every command that writes or reads events (codec.h):
 * --format json|avro and -r URL / --schema-registry URL (default
 * $SCHEMA_REGISTRY_URL).  A command lists these too and hands them to
 * opt_codec().
 */
#define OPT_CODEC_SHORT		"r:"
#define OPT_CODEC_LONG \
	{ "format", required_argument, NULL, OPT_FORMAT }, \
	{ "schema-registry", required_argument, NULL, 'r' }

struct opt_codec {
	int		 format;	/* enum codec_format */
	const char	*registry;	/* -r, else $SCHEMA_REGISTRY_URL, else NULL */
};

struct opt_prop {
	char	*name;
	char	*value;
	char	*where;		/* "-X" or "FILE:LINE", for error messages */
};

struct opt_kafka {
	const char	*brokers;	/* -b, else $KAFKA_BROKERS, else localhost:9092 */
	const char	*group;		/* -G, else the topic prefix + the command's name */
	const char	*state;		/* --state, else ${ORDERFLOW_STATE:-./var}/COMMAND */
	const char	*topic_prefix;	/* --topic-prefix, else $ORDERFLOW_TOPIC_PREFIX, else "" */
	int		 verbosity;	/* LOG_LEVEL_INFO -q... +v... */
	struct opt_prop	*props;
	size_t		 nprops;
	char		**topics;	/* opt_topic()'s names */
	char		*default_group;	/* prefix + command name, when no -G */
	size_t		 ntopics;
	void		(*usage)(void);	/* prints the usage line to stderr */
};

/* Defaults from the environment; usage is called on a usage error, then exit 2. */
void	opt_init(struct opt_kafka *, void (*usage)(void));

/*
 * An option's argument as a number in [min, max], or as a duration
 * (util_duration) of at least min_ms; anything else is a usage error that
 * names the option (the usage given to opt_init, exit 2).
 */
long long	opt_number(const char *opt, const char *arg, long long min,
		    long long max);
int64_t		opt_duration(const char *opt, const char *arg, int64_t min_ms);

/*
 * Handles one common option.  Returns 1 if ch was one; exits with the
 * contract's status on a bad value (2), -h (0), -V (0) or an unknown
 * option (2).  Anything else returns 0 only for ch values it does not know
 * and that are not '?': the caller then decides.
 */
int	opt_common(struct opt_kafka *, int ch, const char *arg);

/* Adds "name=value" (as -X does); returns -1 if it has no '='. */
int	opt_prop_add(struct opt_kafka *, const char *nv, const char *where);

/*
 * Applies bootstrap.servers and every property, in order, to conf.
 * Returns 0, or -1 with a message naming the property and where it came
 * from in err.
 */
int	opt_apply(const struct opt_kafka *, rd_kafka_conf_t *conf, char *err,
	    size_t errlen);

/* The state directory: --state, else ${ORDERFLOW_STATE:-./var}/PROGNAME. */
const char *opt_state_dir(struct opt_kafka *);

/*
 * One process per state directory: creates it (mode 0700) and takes an
 * exclusive lock on its file "lock" (util_lock()), held until the process
 * ends, however it ends: a restart after SIGKILL finds it free.  Exits
 * OF_EXIT_BUSY with "DIR: another PROGNAME uses this state directory"
 * when another process holds it, OF_EXIT_FAIL on any other error.
 */
void	opt_lock_state(struct opt_kafka *);

/*
 * The group.instance.id a worker on state directory dir takes by default
 * (static group membership, worker.h): "HOST-HASH", the host name
 * (characters outside [A-Za-z0-9._-] as '_', at most 64) and 16 hex
 * digits of the 64-bit FNV-1a hash of dir's real path (realpath(3): one
 * directory however it is named).  One process locks a state directory
 * (opt_lock_state()), so no two live members on one host share the id,
 * and a process restarted on the same state takes the same one.  Returns
 * a string to free, or NULL with errno set (dir cannot be resolved, or
 * out of memory).
 */
char	*opt_instance_id(const char *dir);

/*
 * The name of one of the flow's topics (flow.h) with the topic prefix in front
 * ("staging." + "order-created"): one cluster can hold several separate
 * flows.  The string lives until opt_free().
 */
const char *opt_topic(struct opt_kafka *, const char *name);

/* Defaults: json, the registry from the environment. */
void	opt_codec_init(struct opt_codec *);

/*
 * Handles --format or -r; returns 1 if ch was one, 0 otherwise.  A format
 * other than json or avro is a usage error (exit 2).
 */
int	opt_codec(struct opt_codec *, int ch, const char *arg);

/*
 * The command's codec.  Usage errors (exit 2): avro in pipe mode (pipe
 * not 0: Avro is for Kafka only, orderflow(7) FORMATS), avro with no
 * registry, a registry URL that is not http(s).
 */
struct codec *opt_codec_new(const struct opt_codec *, int pipe);

/*
 * Before writing events of kind to topic with --format avro: the schema
 * registered or found (codec_prepare()), else status 1 with "schema
 * registry: TOPIC-value: WHY: " and then what (what was not done, e.g.
 * "nothing is sent").  Nothing to do in JSON.
 */
void	opt_codec_prepare(struct codec *, const char *topic, int kind,
	    const char *what);

/* Frees the property list. */
void	opt_free(struct opt_kafka *);

#endif
