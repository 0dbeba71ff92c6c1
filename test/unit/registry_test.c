/*
 * registry_test.c - tests of common/registry.c against the real schema
 * registry in $SCHEMA_REGISTRY_URL (its Confluent-compatible API):
 * registering and finding the same id again, fetching by id, versions and
 * subjects, compatibility levels, a refusal with the registry's reason,
 * subjects that need escaping, an unreachable registry, and credentials
 * kept out of messages.
 *
 * Usage: registry_test NAME.  Subjects are global in the shared registry:
 * every test makes its own.  Without $SCHEMA_REGISTRY_URL the tests that
 * need a registry fail.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "registry.h"
#include "util.h"
#include "unit.h"

static const char v1[] =
    "{\"type\":\"record\",\"name\":\"Probe\",\"namespace\":\"unit\","
    "\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}";
/* v1 plus a field with a default: BACKWARD allows it. */
static const char v2[] =
    "{\"type\":\"record\",\"name\":\"Probe\",\"namespace\":\"unit\","
    "\"fields\":[{\"name\":\"a\",\"type\":\"int\"},"
    "{\"name\":\"b\",\"type\":\"string\",\"default\":\"\"}]}";
/* v1 plus a field without a default: BACKWARD refuses it. */
static const char v3_bad[] =
    "{\"type\":\"record\",\"name\":\"Probe\",\"namespace\":\"unit\","
    "\"fields\":[{\"name\":\"a\",\"type\":\"int\"},"
    "{\"name\":\"c\",\"type\":\"long\"}]}";

static const char *url;

static struct registry *
reg(void)
{
	struct registry *r;

	if (url == NULL || *url == '\0') {
		fprintf(stderr, "SCHEMA_REGISTRY_URL is not set: these tests "
		    "need a real schema registry\n");
		exit(1);
	}
	REQUIRE((r = registry_new(url)) != NULL);
	return r;
}

/* Whether two schemas' JSON texts are the same JSON. */
static int
same_json(const char *a, const char *b)
{
	cJSON *x = cJSON_Parse(a), *y = cJSON_Parse(b);
	int same = x != NULL && y != NULL && cJSON_Compare(x, y, 1);

	cJSON_Delete(x);
	cJSON_Delete(y);
	return same;
}

static void
test_new(void)
{
	struct registry *r;

	errno = 0;
	CHECK(registry_new("") == NULL && errno == EINVAL);
	errno = 0;
	CHECK(registry_new("ftp://127.0.0.1/") == NULL && errno == EINVAL);
	errno = 0;
	CHECK(registry_new("127.0.0.1:8081") == NULL && errno == EINVAL);
	errno = 0;
	CHECK(registry_new("http://") == NULL && errno == EINVAL);
	errno = 0;
	CHECK(registry_new("http://user:pw@/x") == NULL && errno == EINVAL);

	REQUIRE((r = registry_new("http://127.0.0.1:8081/apis/ccompat/v7/"))
	    != NULL);
	CHECK(strcmp(registry_name(r), "http://127.0.0.1:8081") == 0);
	registry_free(r);
	REQUIRE((r = registry_new("HTTPS://u:p@w@registry.example:443"))
	    != NULL);
	CHECK(strcmp(registry_name(r), "HTTPS://registry.example:443") == 0);
	registry_free(r);
	registry_free(NULL);

	CHECK(strcmp(registry_strerror(REGISTRY_REFUSED),
	    "refused by the registry") == 0);
	CHECK(strcmp(registry_strerror(42), "unknown error") == 0);
}

/* Registering twice gives the same id; versions, subjects, fetch agree. */
static void
test_register(void)
{
	struct registry *r = reg();
	char subject[128], msg[512], **subjects;
	char *schema;
	int id, id2, vid, *versions, found = 0;
	size_t n, i;

	unit_unique(subject, sizeof(subject), "registry-test", "register");
	REQUIRE(registry_register(r, subject, v1, &id, msg, sizeof(msg)) ==
	    REGISTRY_OK);
	CHECK(id >= 0);
	CHECK(registry_register(r, subject, v1, &id2, msg, sizeof(msg)) ==
	    REGISTRY_OK);
	CHECK(id2 == id);

	CHECK(registry_versions(r, subject, &versions, &n, msg,
	    sizeof(msg)) == REGISTRY_OK);
	CHECK(n == 1 && versions[0] == 1);
	free(versions);
	CHECK(registry_version(r, subject, 1, &vid, &schema, msg,
	    sizeof(msg)) == REGISTRY_OK);
	CHECK(vid == id);
	CHECK(same_json(schema, v1));
	free(schema);
	CHECK(registry_version(r, subject, 1, &vid, NULL, msg,
	    sizeof(msg)) == REGISTRY_OK && vid == id);

	CHECK(registry_subjects(r, &subjects, msg, sizeof(msg)) ==
	    REGISTRY_OK);
	for (i = 0; subjects != NULL && subjects[i] != NULL; i++) {
		if (strcmp(subjects[i], subject) == 0)
			found = 1;
		if (i > 0)
			CHECK(strcmp(subjects[i - 1], subjects[i]) < 0);
	}
	CHECK(found);
	registry_strv_free(subjects);
	registry_free(r);
}

/* A schema fetched by its id is the schema registered. */
static void
test_fetch(void)
{
	struct registry *r = reg();
	char subject[128], msg[512], *schema = NULL;
	int id;

	unit_unique(subject, sizeof(subject), "registry-test", "fetch");
	REQUIRE(registry_register(r, subject, v2, &id, msg, sizeof(msg)) ==
	    REGISTRY_OK);
	CHECK(registry_schema(r, id, &schema, msg, sizeof(msg)) ==
	    REGISTRY_OK);
	CHECK(schema != NULL && same_json(schema, v2));
	free(schema);
	registry_free(r);
}

/* Unknown ids, subjects and versions are REGISTRY_NOT_FOUND. */
static void
test_unknown(void)
{
	struct registry *r = reg();
	char subject[128], msg[512], *schema = NULL;
	int id, *versions;
	size_t n;

	unit_unique(subject, sizeof(subject), "registry-test", "unknown");
	CHECK(registry_schema(r, INT_MAX - 7, &schema, msg, sizeof(msg)) ==
	    REGISTRY_NOT_FOUND);
	CHECK(schema == NULL);
	CHECK(*msg != '\0');
	CHECK(registry_versions(r, subject, &versions, &n, msg,
	    sizeof(msg)) == REGISTRY_NOT_FOUND);
	REQUIRE(registry_register(r, subject, v1, &id, msg, sizeof(msg)) ==
	    REGISTRY_OK);
	CHECK(registry_version(r, subject, 99, &id, NULL, msg,
	    sizeof(msg)) == REGISTRY_NOT_FOUND);
	registry_free(r);
}

/*
 * BACKWARD set on a subject is what the subject answers; a compatible
 * schema is a new version, an incompatible one REGISTRY_REFUSED with the
 * registry's reason.
 */
static void
test_compat(void)
{
	struct registry *r = reg();
	char subject[128], msg[512], level[32], global[32];
	int id1, id2, id3 = -1, *versions, rc;
	size_t n;

	unit_unique(subject, sizeof(subject), "registry-test", "compat");
	REQUIRE(registry_get_compat(r, NULL, global, sizeof(global), msg,
	    sizeof(msg)) == REGISTRY_OK);
	/* No level of its own, not even known: the global one. */
	rc = registry_get_compat(r, subject, level, sizeof(level), msg,
	    sizeof(msg));
	if (rc != REGISTRY_OK)
		fprintf(stderr, "get_compat(%s): %d: %s\n", subject, rc, msg);
	CHECK(rc == REGISTRY_OK);
	CHECK(rc != REGISTRY_OK || strcmp(level, global) == 0);

	REQUIRE(registry_set_compat(r, subject, "BACKWARD", msg,
	    sizeof(msg)) == REGISTRY_OK);
	CHECK(registry_get_compat(r, subject, level, sizeof(level), msg,
	    sizeof(msg)) == REGISTRY_OK);
	CHECK(strcmp(level, "BACKWARD") == 0);
	CHECK(registry_get_compat(r, subject, level, 4, msg, sizeof(msg)) ==
	    REGISTRY_BAD_REPLY);

	REQUIRE(registry_register(r, subject, v1, &id1, msg, sizeof(msg)) ==
	    REGISTRY_OK);
	CHECK(registry_register(r, subject, v2, &id2, msg, sizeof(msg)) ==
	    REGISTRY_OK);
	CHECK(id2 != id1);
	*msg = '\0';
	CHECK(registry_register(r, subject, v3_bad, &id3, msg, sizeof(msg)) ==
	    REGISTRY_REFUSED);
	CHECK(id3 == -1);
	fprintf(stderr, "refused: %s\n", msg);
	CHECK(strcasestr(msg, "incompatible") != NULL);
	CHECK(registry_versions(r, subject, &versions, &n, msg,
	    sizeof(msg)) == REGISTRY_OK);
	CHECK(n == 2 && versions[0] == 1 && versions[1] == 2);
	free(versions);

	CHECK(registry_set_compat(r, subject, "NO-SUCH-LEVEL", msg,
	    sizeof(msg)) == REGISTRY_REFUSED);
	CHECK(*msg != '\0');
	registry_free(r);
}

/* What is not a schema is refused with the registry's reason. */
static void
test_invalid(void)
{
	struct registry *r = reg();
	char subject[128], msg[512] = "";
	int id;

	unit_unique(subject, sizeof(subject), "registry-test", "invalid");
	CHECK(registry_register(r, subject, "{\"type\": \"no-such-type\"}",
	    &id, msg, sizeof(msg)) == REGISTRY_REFUSED);
	CHECK(*msg != '\0');
	fprintf(stderr, "refused: %s\n", msg);
	registry_free(r);
}

/* Subjects are path segments: '/', '?', '#', '%' and spaces escaped. */
static void
test_escape(void)
{
	struct registry *r = reg();
	char base[128], subject[160], msg[512], **subjects;
	int id, vid, *versions, found = 0;
	size_t n, i;

	unit_unique(base, sizeof(base), "registry-test", "escape");
	snprintf(subject, sizeof(subject), "%s a/b?c#d%%2F", base);
	REQUIRE(registry_register(r, subject, v1, &id, msg, sizeof(msg)) ==
	    REGISTRY_OK);
	CHECK(registry_version(r, subject, 1, &vid, NULL, msg,
	    sizeof(msg)) == REGISTRY_OK && vid == id);
	CHECK(registry_versions(r, subject, &versions, &n, msg,
	    sizeof(msg)) == REGISTRY_OK && n == 1);
	free(versions);
	CHECK(registry_subjects(r, &subjects, msg, sizeof(msg)) ==
	    REGISTRY_OK);
	for (i = 0; subjects != NULL && subjects[i] != NULL; i++)
		if (strcmp(subjects[i], subject) == 0)
			found = 1;
	CHECK(found);
	registry_strv_free(subjects);
	registry_free(r);
}

/* A closed port: REGISTRY_UNAVAILABLE at once, not after the timeout. */
static void
test_unavailable(void)
{
	struct registry *r;
	char u[128], msg[512] = "", *schema = NULL;
	int fd, id;
	int64_t t0;

	snprintf(u, sizeof(u), "http://127.0.0.1:%d/apis/ccompat/v7",
	    unit_closed_port(&fd));
	REQUIRE((r = registry_new(u)) != NULL);
	t0 = util_mono_ms();
	CHECK(registry_schema(r, 1, &schema, msg, sizeof(msg)) ==
	    REGISTRY_UNAVAILABLE);
	CHECK(registry_register(r, "s", v1, &id, msg, sizeof(msg)) ==
	    REGISTRY_UNAVAILABLE);
	CHECK(util_mono_ms() - t0 < 2000);
	CHECK(*msg != '\0');
	fprintf(stderr, "unavailable: %s\n", msg);
	registry_free(r);
	close(fd);
}

/* The URL's credentials appear in no message, nor in the name. */
static void
test_userinfo(void)
{
	struct registry *r;
	char u[512], msg[512] = "", *schema = NULL;
	const char *host;
	int fd;

	registry_free(reg());	/* only to fail without a registry */
	REQUIRE((host = strstr(url, "://")) != NULL);
	snprintf(u, sizeof(u), "%.*shunter:s3cret@%s", (int)(host + 3 - url),
	    url, host + 3);
	REQUIRE((r = registry_new(u)) != NULL);
	CHECK(strstr(registry_name(r), "s3cret") == NULL);
	CHECK(strstr(registry_name(r), "hunter") == NULL);
	CHECK(registry_schema(r, INT_MAX - 7, &schema, msg, sizeof(msg)) ==
	    REGISTRY_NOT_FOUND);
	CHECK(strstr(msg, "s3cret") == NULL);
	registry_free(r);

	snprintf(u, sizeof(u), "http://hunter:s3cret@127.0.0.1:%d/",
	    unit_closed_port(&fd));
	REQUIRE((r = registry_new(u)) != NULL);
	CHECK(registry_schema(r, 1, &schema, msg, sizeof(msg)) ==
	    REGISTRY_UNAVAILABLE);
	CHECK(*msg != '\0' && strstr(msg, "s3cret") == NULL &&
	    strstr(msg, "hunter") == NULL);
	registry_free(r);
	close(fd);
}

static const struct unit_test tests[] = {
	{ "new", test_new },
	{ "register", test_register },
	{ "fetch", test_fetch },
	{ "unknown", test_unknown },
	{ "compat", test_compat },
	{ "invalid", test_invalid },
	{ "escape", test_escape },
	{ "unavailable", test_unavailable },
	{ "userinfo", test_userinfo },
};

int
main(int argc, char *argv[])
{
	REQUIRE(curl_global_init(CURL_GLOBAL_DEFAULT) == 0);
	url = getenv("SCHEMA_REGISTRY_URL");
	return unit_main("registry_test", tests, argc, argv);
}
