/*
 * registry.c - a client of a schema registry's Confluent-compatible REST
 * API (registry.h).
 *
 * Each call is one request on an easy handle of its own, made and
 * cleaned up in the call: the calls are rare (a producer registers its
 * schemas once, a consumer fetches each id once), so keeping connections
 * alive is not worth shared state between threads.
 *
 * Statuses map to errors once, in reg_status(): 2xx is an answer; 404 is
 * REGISTRY_NOT_FOUND; 408, 429 and 5xx, like a failed transfer, are
 * REGISTRY_UNAVAILABLE (the same request may succeed later); any other
 * 4xx is REGISTRY_REFUSED (409 incompatible, 422 invalid, 401/403 not
 * allowed), with the reply's "message" as its reason.
 *
 * Messages say what failed without the registry's name, which callers
 * add from registry_name(); libcurl's detailed message is used only for a
 * URL without userinfo.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "registry.h"
#include "util.h"

#define REG_CTYPE	"application/vnd.schemaregistry.v1+json"
#define REG_MAXREPLY	(16 * 1024 * 1024)	/* a schema is a few KiB */

struct registry {
	char	*url;		/* the base, without a trailing slash */
	char	*name;		/* scheme://host[:port] */
	char	*userinfo;	/* "user:password" of the URL, or NULL */
};

/* A reply's body as it arrives. */
struct reg_buf {
	char	*data;
	size_t	 len;
	size_t	 cap;
	int	 overflow;	/* longer than REG_MAXREPLY */
	int	 nomem;
};

static void
reg_msg(char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;

	if (msglen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, msglen, fmt, ap);
	va_end(ap);
}

/* Whether url starts with scheme followed by "://", in any case. */
static int
reg_scheme(const char *url, const char *scheme)
{
	size_t n = strlen(scheme);

	return strncasecmp(url, scheme, n) == 0 &&
	    strncmp(url + n, "://", 3) == 0;
}

/*
 * Splits the authority of url (scheme checked already) into the name
 * (scheme://host[:port]) and the userinfo before its last '@'.
 */
static int
reg_split(struct registry *r, const char *url)
{
	const char *auth, *end, *at, *p;

	auth = strstr(url, "://") + 3;
	end = auth + strcspn(auth, "/?#");
	at = NULL;
	for (p = auth; p < end; p++)
		if (*p == '@')
			at = p;
	if (at == NULL ? end == auth : end == at + 1)
		return -1;	/* no host */
	if (at != NULL &&
	    (r->userinfo = strndup(auth, (size_t)(at - auth))) == NULL)
		return -2;
	if (asprintf(&r->name, "%.*s%.*s", (int)(auth - url), url,
	    (int)(end - (at != NULL ? at + 1 : auth)),
	    at != NULL ? at + 1 : auth) == -1) {
		r->name = NULL;
		return -2;
	}
	return 0;
}

struct registry *
registry_new(const char *url)
{
	struct registry *r;
	size_t n;
	int rc;

	if (url == NULL || *url == '\0' ||
	    (!reg_scheme(url, "http") && !reg_scheme(url, "https"))) {
		errno = EINVAL;
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	if ((rc = reg_split(r, url)) != 0 ||
	    (r->url = strdup(url)) == NULL) {
		registry_free(r);
		errno = rc == -1 ? EINVAL : ENOMEM;
		return NULL;
	}
	n = strlen(r->url);
	while (n > 0 && r->url[n - 1] == '/')
		r->url[--n] = '\0';
	return r;
}

void
registry_free(struct registry *r)
{
	if (r == NULL)
		return;
	free(r->url);
	free(r->name);
	free(r->userinfo);
	free(r);
}

const char *
registry_name(const struct registry *r)
{
	return r->name;
}

static size_t
reg_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct reg_buf *b = arg;
	size_t n = size * nmemb;

	/* 0 ends the transfer. */
	switch (util_buf_append(&b->data, &b->len, &b->cap, ptr, n, 4096,
	    REG_MAXREPLY)) {
	case 0:
		return n;
	case -1:
		b->overflow = 1;
		return 0;
	default:
		b->nomem = 1;
		return 0;
	}
}

/*
 * The base URL followed by parts[] (NULL-terminated): the odd ones are
 * path segments from the caller (a subject), escaped; the even ones are
 * the API's own, as they are.  NULL when out of memory.
 */
static char *
reg_url(CURL *easy, const struct registry *r, const char *const *parts)
{
	char *url, *esc, *p;
	const char *part;
	size_t len, plen, i;

	len = strlen(r->url);
	if ((url = strdup(r->url)) == NULL)
		return NULL;
	for (i = 0; parts[i] != NULL; i++) {
		esc = NULL;
		if (i % 2 == 1 &&
		    (esc = curl_easy_escape(easy, parts[i], 0)) == NULL)
			break;
		part = esc != NULL ? esc : parts[i];
		plen = strlen(part);
		p = realloc(url, len + plen + 1);
		if (p != NULL) {
			url = p;
			memcpy(url + len, part, plen + 1);
			len += plen;
		}
		curl_free(esc);
		if (p == NULL)
			break;
	}
	if (parts[i] != NULL) {
		free(url);
		return NULL;
	}
	return url;
}

/* The error for an HTTP status other than 2xx. */
static int
reg_status(long status)
{
	if (status == 404)
		return REGISTRY_NOT_FOUND;
	if (status == 408 || status == 429 || status >= 500)
		return REGISTRY_UNAVAILABLE;
	if (status >= 400)
		return REGISTRY_REFUSED;
	return REGISTRY_BAD_REPLY;
}

/* A failed transfer's error, and its message free of the userinfo. */
static int
reg_curl_error(const struct registry *r, CURLcode cc, const char *err,
    char *msg, size_t msglen)
{
	if (cc == CURLE_OUT_OF_MEMORY) {
		reg_msg(msg, msglen, "out of memory");
		return REGISTRY_NOMEM;
	}
	/* libcurl's detail may name the URL: not with credentials in it. */
	if (*err == '\0' || r->userinfo != NULL)
		err = curl_easy_strerror(cc);
	reg_msg(msg, msglen, "%s", err);
	return REGISTRY_UNAVAILABLE;
}

/*
 * The message of a reply other than 2xx: the registry's "message", else
 * the status.
 */
static void
reg_reason(long status, const struct reg_buf *b, char *msg, size_t msglen)
{
	cJSON *j, *m;

	j = b->data != NULL ? cJSON_ParseWithLength(b->data, b->len) : NULL;
	m = cJSON_GetObjectItemCaseSensitive(j, "message");
	if (cJSON_IsString(m) && *m->valuestring != '\0')
		reg_msg(msg, msglen, "%s", m->valuestring);
	else
		reg_msg(msg, msglen, "HTTP status %ld", status);
	cJSON_Delete(j);
}

/*
 * One request: method on the URL of parts (see reg_url()), with body
 * (NULL: none) as JSON.  On REGISTRY_OK, *reply is the 2xx reply's JSON,
 * to cJSON_Delete().
 */
static int
reg_call(const struct registry *r, const char *method,
    const char *const *parts, const cJSON *body, cJSON **reply, char *msg,
    size_t msglen)
{
	CURL *easy;
	CURLcode cc;
	struct curl_slist *hdrs = NULL, *h;
	struct reg_buf b = { NULL, 0, 0, 0, 0 };
	char err[CURL_ERROR_SIZE] = "", *url = NULL, *text = NULL;
	long status = 0;
	int rc = REGISTRY_NOMEM;

	*reply = NULL;
	if ((easy = curl_easy_init()) == NULL ||
	    (url = reg_url(easy, r, parts)) == NULL)
		goto out;
	h = curl_slist_append(NULL, "Accept: " REG_CTYPE ", application/json");
	if ((hdrs = h) == NULL)
		goto out;
	if (body != NULL) {
		if ((text = cJSON_PrintUnformatted(body)) == NULL ||
		    (h = curl_slist_append(hdrs, "Content-Type: " REG_CTYPE)) ==
		    NULL || (h = curl_slist_append(h, "Expect:")) == NULL)
			goto out;
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, text);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)strlen(text));
	}
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)REGISTRY_TIMEOUT_MS);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, reg_write);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, err);
	cc = curl_easy_perform(easy);
	if (b.nomem)
		goto out;
	if (b.overflow) {
		reg_msg(msg, msglen, "%s: a reply of more than %d bytes",
		    method, REG_MAXREPLY);
		rc = REGISTRY_BAD_REPLY;
	} else if (cc != CURLE_OK)
		rc = reg_curl_error(r, cc, err, msg, msglen);
	else if (curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status),
	    status < 200 || status > 299) {
		rc = reg_status(status);
		reg_reason(status, &b, msg, msglen);
	} else if (b.data == NULL ||
	    (*reply = cJSON_ParseWithLength(b.data, b.len)) == NULL) {
		reg_msg(msg, msglen, "%s: a reply that is not JSON", method);
		rc = REGISTRY_BAD_REPLY;
	} else
		rc = REGISTRY_OK;
out:
	if (rc == REGISTRY_NOMEM)
		reg_msg(msg, msglen, "out of memory");
	cJSON_free(text);
	curl_slist_free_all(hdrs);
	free(url);
	free(b.data);
	if (easy != NULL)
		curl_easy_cleanup(easy);
	return rc;
}

/* A non-negative integer member of j, or -1. */
static int
reg_int(const cJSON *j, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
	double d;

	if (!cJSON_IsNumber(v))
		return -1;
	d = v->valuedouble;
	if (d < 0 || d > INT_MAX || d != (int)d)
		return -1;
	return (int)d;
}

/* A string member of j, or NULL. */
static const char *
reg_str(const cJSON *j, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int
reg_bad(cJSON *reply, const char *what, char *msg, size_t msglen)
{
	cJSON_Delete(reply);
	reg_msg(msg, msglen, "a reply without %s", what);
	return REGISTRY_BAD_REPLY;
}

int
registry_register(struct registry *r, const char *subject,
    const char *schema, int *id, char *msg, size_t msglen)
{
	const char *const path[] = { "/subjects/", subject, "/versions",
	    NULL };
	cJSON *body, *reply;
	int rc;

	if ((body = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(body, "schema", schema) == NULL) {
		cJSON_Delete(body);
		reg_msg(msg, msglen, "out of memory");
		return REGISTRY_NOMEM;
	}
	rc = reg_call(r, "POST", path, body, &reply, msg, msglen);
	cJSON_Delete(body);
	if (rc != REGISTRY_OK)
		return rc;
	if ((*id = reg_int(reply, "id")) < 0)
		return reg_bad(reply, "an id", msg, msglen);
	cJSON_Delete(reply);
	return REGISTRY_OK;
}

/* The string member name of reply into *out (to free()), reply deleted. */
static int
reg_take_str(cJSON *reply, const char *name, char **out, char *msg,
    size_t msglen)
{
	const char *s;

	if ((s = reg_str(reply, name)) == NULL)
		return reg_bad(reply, name, msg, msglen);
	*out = strdup(s);
	cJSON_Delete(reply);
	if (*out == NULL) {
		reg_msg(msg, msglen, "out of memory");
		return REGISTRY_NOMEM;
	}
	return REGISTRY_OK;
}

int
registry_schema(struct registry *r, int id, char **schema, char *msg,
    size_t msglen)
{
	char ids[16];
	const char *const path[] = { "/schemas/ids/", ids, NULL };
	cJSON *reply;
	int rc;

	snprintf(ids, sizeof(ids), "%d", id);
	rc = reg_call(r, "GET", path, NULL, &reply, msg, msglen);
	if (rc != REGISTRY_OK)
		return rc;
	return reg_take_str(reply, "schema", schema, msg, msglen);
}

int
registry_set_compat(struct registry *r, const char *subject,
    const char *level, char *msg, size_t msglen)
{
	const char *const path[] = { "/config/", subject, NULL };
	const char *const global[] = { "/config", NULL };
	cJSON *body, *reply;
	int rc;

	if ((body = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(body, "compatibility", level) == NULL) {
		cJSON_Delete(body);
		reg_msg(msg, msglen, "out of memory");
		return REGISTRY_NOMEM;
	}
	rc = reg_call(r, "PUT", subject != NULL ? path : global, body, &reply,
	    msg, msglen);
	cJSON_Delete(body);
	cJSON_Delete(reply);
	return rc;
}

/*
 * GET /config/{subject} answers the subject's own level; Confluent's
 * registry answers 404 for a subject without one, Apicurio's the global
 * level (and 404 for a subject it does not know).  Either 404 falls back
 * to GET /config.  The level is "compatibilityLevel" in the reply
 * (Confluent's GET), or "compatibility" (its PUT, and some versions).
 */
int
registry_get_compat(struct registry *r, const char *subject, char *level,
    size_t levellen, char *msg, size_t msglen)
{
	const char *const path[] = { "/config/", subject, NULL };
	const char *const global[] = { "/config", NULL };
	cJSON *reply;
	const char *s;
	int rc = REGISTRY_NOT_FOUND;

	if (subject != NULL)
		rc = reg_call(r, "GET", path, NULL, &reply, msg, msglen);
	if (rc == REGISTRY_NOT_FOUND)
		rc = reg_call(r, "GET", global, NULL, &reply, msg, msglen);
	if (rc != REGISTRY_OK)
		return rc;
	if ((s = reg_str(reply, "compatibilityLevel")) == NULL &&
	    (s = reg_str(reply, "compatibility")) == NULL)
		return reg_bad(reply, "a compatibility level", msg, msglen);
	if (strlen(s) >= levellen) {
		cJSON_Delete(reply);
		reg_msg(msg, msglen, "a compatibility level too long");
		return REGISTRY_BAD_REPLY;
	}
	memcpy(level, s, strlen(s) + 1);
	cJSON_Delete(reply);
	return REGISTRY_OK;
}

void
registry_strv_free(char **v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

static int
reg_strcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
registry_subjects(struct registry *r, char ***subjects, char *msg,
    size_t msglen)
{
	const char *const path[] = { "/subjects", NULL };
	cJSON *reply, *e;
	char **v;
	size_t n = 0;
	int rc;

	*subjects = NULL;
	rc = reg_call(r, "GET", path, NULL, &reply, msg, msglen);
	if (rc != REGISTRY_OK)
		return rc;
	if (!cJSON_IsArray(reply))
		return reg_bad(reply, "an array of subjects", msg, msglen);
	if ((v = calloc((size_t)cJSON_GetArraySize(reply) + 1,
	    sizeof(*v))) == NULL)
		goto nomem;
	cJSON_ArrayForEach(e, reply) {
		if (!cJSON_IsString(e)) {
			registry_strv_free(v);
			return reg_bad(reply, "an array of subjects", msg,
			    msglen);
		}
		if ((v[n++] = strdup(e->valuestring)) == NULL) {
			registry_strv_free(v);
			goto nomem;
		}
	}
	cJSON_Delete(reply);
	qsort(v, n, sizeof(*v), reg_strcmp);
	*subjects = v;
	return REGISTRY_OK;
nomem:
	cJSON_Delete(reply);
	reg_msg(msg, msglen, "out of memory");
	return REGISTRY_NOMEM;
}

static int
reg_intcmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return x < y ? -1 : x > y;
}

int
registry_versions(struct registry *r, const char *subject, int **versions,
    size_t *n, char *msg, size_t msglen)
{
	const char *const path[] = { "/subjects/", subject, "/versions",
	    NULL };
	cJSON *reply, *e;
	int *v, rc;

	*versions = NULL;
	*n = 0;
	rc = reg_call(r, "GET", path, NULL, &reply, msg, msglen);
	if (rc != REGISTRY_OK)
		return rc;
	if (!cJSON_IsArray(reply))
		return reg_bad(reply, "an array of versions", msg, msglen);
	/* One more than needed: calloc(0) may be NULL. */
	if ((v = calloc((size_t)cJSON_GetArraySize(reply) + 1,
	    sizeof(*v))) == NULL) {
		cJSON_Delete(reply);
		reg_msg(msg, msglen, "out of memory");
		return REGISTRY_NOMEM;
	}
	cJSON_ArrayForEach(e, reply) {
		if (!cJSON_IsNumber(e) || e->valuedouble < 0 ||
		    e->valuedouble > INT_MAX ||
		    e->valuedouble != (int)e->valuedouble) {
			free(v);
			return reg_bad(reply, "an array of versions", msg,
			    msglen);
		}
		v[(*n)++] = (int)e->valuedouble;
	}
	cJSON_Delete(reply);
	qsort(v, *n, sizeof(*v), reg_intcmp);
	*versions = v;
	return REGISTRY_OK;
}

int
registry_version(struct registry *r, const char *subject, int version,
    int *id, char **schema, char *msg, size_t msglen)
{
	char vs[16];
	const char *const path[] = { "/subjects/", subject, "/versions/", vs,
	    NULL };
	cJSON *reply;
	int rc;

	snprintf(vs, sizeof(vs), "%d", version);
	rc = reg_call(r, "GET", path, NULL, &reply, msg, msglen);
	if (rc != REGISTRY_OK)
		return rc;
	if ((*id = reg_int(reply, "id")) < 0)
		return reg_bad(reply, "an id", msg, msglen);
	if (schema == NULL) {
		cJSON_Delete(reply);
		return REGISTRY_OK;
	}
	return reg_take_str(reply, "schema", schema, msg, msglen);
}

const char *
registry_strerror(int err)
{
	switch (err) {
	case REGISTRY_OK:
		return "success";
	case REGISTRY_UNAVAILABLE:
		return "registry unavailable";
	case REGISTRY_NOT_FOUND:
		return "not found";
	case REGISTRY_REFUSED:
		return "refused by the registry";
	case REGISTRY_NOMEM:
		return "out of memory";
	case REGISTRY_BAD_REPLY:
		return "a reply the API does not allow";
	}
	return "unknown error";
}
