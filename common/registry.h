/*
 * registry.h - a client of a schema registry's Confluent-compatible REST
 * API (Confluent Schema Registry; Apicurio Registry's /apis/ccompat/v7):
 * registering Avro schemas under subjects, fetching a schema by its id,
 * subjects' compatibility levels and versions.
 *
 * The base URL is the API's root, as scripts/schema-registry-local start
 * prints it ("http://127.0.0.1:8081/apis/ccompat/v7"); a trailing slash
 * is ignored.  Each call is one blocking HTTP request (libcurl's easy
 * interface) of at most REGISTRY_TIMEOUT_MS; callers cache what they get
 * (a schema id never changes its schema).
 *
 * Every call returns REGISTRY_OK or one of the errors below, with a
 * message in msg (msglen bytes, may be 0) that says what failed: the
 * registry's own "message" for a refusal ("Schema being registered is
 * incompatible with an earlier schema ..."), else the HTTP status or
 * libcurl's error.  Never the URL's credentials: a URL with userinfo is
 * used as given, but messages name the registry by host only.
 *
 * Thread-safe: calls share nothing but the struct's configuration (each
 * uses an easy handle of its own).  curl_global_init() must have been
 * called.
 */
#ifndef OF_REGISTRY_H
#define OF_REGISTRY_H

#include <stddef.h>

#define REGISTRY_TIMEOUT_MS	10000

enum registry_err {
	REGISTRY_OK = 0,
	REGISTRY_UNAVAILABLE = -1,	/* unreachable, timed out, 5xx: try later */
	REGISTRY_NOT_FOUND = -2,	/* 404: no such schema id, subject, version */
	REGISTRY_REFUSED = -3,		/* 409/422 and other 4xx: incompatible, invalid */
	REGISTRY_NOMEM = -4,
	REGISTRY_BAD_REPLY = -5		/* a 2xx reply that is not what the API says */
};

struct registry;

/*
 * A client of the API at url (http or https).  NULL with errno EINVAL
 * when url is empty or not http(s), ENOMEM when out of memory.
 */
struct registry	*registry_new(const char *url);
void		 registry_free(struct registry *);

/* The URL as given, for messages: scheme, host and port only. */
const char	*registry_name(const struct registry *);

/*
 * Registers schema (an Avro schema as JSON text) under subject, or finds
 * it registered already (the registry answers the same id for the same
 * schema): *id gets its global id.  An incompatible or invalid schema is
 * REGISTRY_REFUSED with the registry's reason in msg.
 */
int	registry_register(struct registry *, const char *subject,
	    const char *schema, int *id, char *msg, size_t msglen);

/*
 * The schema whose global id is id, as the registry returns it (JSON
 * text), in *schema to free().  REGISTRY_NOT_FOUND for an id the registry
 * does not know.
 */
int	registry_schema(struct registry *, int id, char **schema, char *msg,
	    size_t msglen);

/*
 * Sets subject's compatibility level ("BACKWARD", "NONE", ...), or the
 * global one when subject is NULL.
 */
int	registry_set_compat(struct registry *, const char *subject,
	    const char *level, char *msg, size_t msglen);

/*
 * subject's compatibility level into level (at least 32 bytes): its own,
 * else the global one.
 */
int	registry_get_compat(struct registry *, const char *subject,
	    char *level, size_t levellen, char *msg, size_t msglen);

/* The subjects, sorted, as a NULL-terminated array: registry_strv_free(). */
int	registry_subjects(struct registry *, char ***subjects, char *msg,
	    size_t msglen);
void	registry_strv_free(char **);

/*
 * The versions of subject, ascending, in *versions (to free()), *n of
 * them.  REGISTRY_NOT_FOUND for an unknown subject.
 */
int	registry_versions(struct registry *, const char *subject,
	    int **versions, size_t *n, char *msg, size_t msglen);

/*
 * Version version of subject: its global id in *id and, unless schema is
 * NULL, its schema text in *schema (to free()).
 */
int	registry_version(struct registry *, const char *subject, int version,
	    int *id, char **schema, char *msg, size_t msglen);

/* A message for an error ("unavailable", "not found", ...). */
const char	*registry_strerror(int err);

#endif
