/*
 * opt_test.c - unit tests for what common/opt.c derives from --state: the
 * state directory's lock.
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
	{ "lock", test_lock },
};

int
main(int argc, char *argv[])
{
	log_init("opt_test");
	return unit_main("opt_test", tests, argc, argv);
}
