/*
 * unit.h - what every unit test program in test/unit shares: CHECK() and
 * the dispatcher.  Included by exactly one file of each program.
 *
 * A program is a table of named tests and unit_main():
 *
 *	prog_test		lists the names, one a line
 *	prog_test NAME		runs the test NAME
 *	prog_test all		runs every test
 *
 * It exits 0 when every check held, 1 when one failed (each failed check
 * says where on stderr, then "prog_test: N checks failed"), 2 when NAME
 * names no test.
 */
#ifndef OF_UNIT_H
#define OF_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

struct unit_test {
	const char	*name;
	void		(*fn)(void);
};

/* Checks that failed so far; helpers that check more themselves add to it. */
static int failures;

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);	\
		failures++;						\
	}								\
} while (0)

/* A check whose failure makes the rest of the test meaningless. */
#define REQUIRE(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);	\
		exit(1);						\
	}								\
} while (0)

/*
 * A loopback port bound but not listening, so that a connection to it is
 * refused and no one else takes it meanwhile; *fd to close.
 */
static inline int
unit_closed_port(int *fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	REQUIRE((*fd = socket(AF_INET, SOCK_STREAM, 0)) != -1);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE(bind(*fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	REQUIRE(getsockname(*fd, (struct sockaddr *)&sin, &len) == 0);
	return ntohs(sin.sin_port);
}

/*
 * A name no other run or call uses, for a topic, group or subject:
 * PREFIX-WHAT-PID-MS-N.
 */
static inline void
unit_unique(char *buf, size_t len, const char *prefix, const char *what)
{
	static unsigned n;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(buf, len, "%s-%s-%ld-%lld-%u", prefix, what, (long)getpid(),
	    (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, n++);
}

/*
 * Runs fn in a child process (for what exits, or must not touch the
 * parent); returns the child's exit status (0 when fn returned), or 128 +
 * the signal that ended it, or -1 when fork or wait failed.
 */
static inline int
unit_in_child(void (*fn)(void))
{
	pid_t pid;
	int st;

	fflush(NULL);
	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		fn();
		_exit(0);
	}
	if (waitpid(pid, &st, 0) == -1)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* main()'s work, for tests an array of struct unit_test. */
#define unit_main(prog, tests, argc, argv)				\
	unit_run((prog), (tests), sizeof(tests) / sizeof((tests)[0]),	\
	    (argc), (argv))

static int
unit_run(const char *prog, const struct unit_test *tests, size_t n,
    int argc, char *argv[])
{
	size_t i;
	int ran = 0;

	if (argc < 2) {
		for (i = 0; i < n; i++)
			puts(tests[i].name);
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (strcmp(argv[1], "all") != 0 &&
		    strcmp(argv[1], tests[i].name) != 0)
			continue;
		tests[i].fn();
		ran++;
	}
	if (ran == 0) {
		fprintf(stderr, "%s: %s: no such test\n", prog, argv[1]);
		return 2;
	}
	if (failures > 0) {
		fprintf(stderr, "%s: %d checks failed\n", prog, failures);
		return 1;
	}
	return 0;
}

#endif
