/*
 * opt_test.c - unit tests for what common/opt.c derives from --state: the
 * state directory's lock and the group.instance.id.
 *
 * Usage: opt_test [NAME]; without NAME it lists the tests.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "exitcode.h"
#include "log.h"
#include "opt.h"
#include "unit.h"

static void
usage(void)
{
	fputs("usage: opt_test [NAME]\n", stderr);
}

/* Whether id is "HOST-HASH" within Kafka's rules for the id. */
static int
well_formed(const char *id)
{
	size_t i, n = strlen(id);

	if (n > 249 || n < 18 || id[n - 17] != '-')
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '.' &&
		    id[i] != '_' && id[i] != '-')
			return 0;
	for (i = n - 16; i < n; i++)
		if (!isxdigit((unsigned char)id[i]) ||
		    isupper((unsigned char)id[i]))
			return 0;
	return 1;
}

/*
 * One directory, however named, gives one id; another, another; one
 * that does not exist, none.
 */
static void
test_instance(void)
{
	char dir[] = "/tmp/opt_test.XXXXXX", other[PATH_MAX],
	    dot[PATH_MAX], cwd[PATH_MAX], gone[PATH_MAX];
	char *a, *b, *c, *d;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(other, sizeof(other), "%s/other", dir);
	snprintf(dot, sizeof(dot), "%s/./other/", dir);
	snprintf(gone, sizeof(gone), "%s/gone", dir);
	CHECK(mkdir(other, 0700) == 0);
	a = opt_instance_id(other);
	b = opt_instance_id(dot);
	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	CHECK(chdir(dir) == 0);
	c = opt_instance_id("other");
	CHECK(chdir(cwd) == 0);
	d = opt_instance_id(dir);
	CHECK(a != NULL && b != NULL && c != NULL && d != NULL);
	CHECK(well_formed(a) && well_formed(d));
	CHECK(strcmp(a, b) == 0 && strcmp(a, c) == 0);
	CHECK(strcmp(a, d) != 0);
	/* The same host part in front of both. */
	CHECK(strncmp(a, d, strlen(a) - 16) == 0);
	CHECK(opt_instance_id(gone) == NULL);
	if (!well_formed(a))
		fprintf(stderr, "id: %s\n", a);
	free(a);
	free(b);
	free(c);
	free(d);
	rmdir(other);
	rmdir(dir);
}

static const char *lock_dir;

/* In a child process: lock_dir's lock, or exit OF_EXIT_BUSY. */
static void
lock_child(void)
{
	struct opt_kafka o;

	opt_init(&o, usage);
	o.state = lock_dir;
	opt_lock_state(&o);
}

/* The lock: created with its directory, exclusive, released at exit. */
static void
test_lock(void)
{
	char dir[] = "/tmp/opt_test.XXXXXX", sub[64], path[PATH_MAX];
	struct opt_kafka o;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(sub, sizeof(sub), "%s/a/b", dir);
	lock_dir = sub;
	/* Free while nobody holds it, also right after a holder exited. */
	CHECK(unit_in_child(lock_child) == 0);
	CHECK(unit_in_child(lock_child) == 0);
	opt_init(&o, usage);
	o.state = sub;
	opt_lock_state(&o);
	snprintf(path, sizeof(path), "%s/lock", sub);
	CHECK(access(path, F_OK) == 0);
	CHECK(unit_in_child(lock_child) == OF_EXIT_BUSY);
	lock_dir = dir;
	CHECK(unit_in_child(lock_child) == 0);
	opt_free(&o);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock", dir);
	unlink(path);
	rmdir(sub);
	snprintf(path, sizeof(path), "%s/a", dir);
	rmdir(path);
	rmdir(dir);
}

static const struct unit_test tests[] = {
	{ "instance", test_instance },
	{ "lock", test_lock },
};

int
main(int argc, char *argv[])
{
	log_init("opt_test");
	return unit_main("opt_test", tests, argc, argv);
}
