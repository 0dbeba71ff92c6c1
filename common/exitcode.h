/*
 * exitcode.h - the exit statuses every orderflow command shares.
 *
 * The numbers are part of the interface (scripts and cron jobs test them);
 * orderflow(7) and every page's EXIT STATUS list them.  Never renumber.
 */
#ifndef OF_EXITCODE_H
#define OF_EXITCODE_H

enum of_exit {
	OF_EXIT_OK = 0,		/* everything done */
	OF_EXIT_FAIL = 1,	/* an internal or I/O error */
	OF_EXIT_USAGE = 2,	/* a usage error */
	OF_EXIT_REJECTED = 3,	/* some input rejected; the valid rest processed */
	OF_EXIT_KAFKA = 4,	/* Kafka unreachable, or an event not acknowledged */
	OF_EXIT_BUSY = 5	/* another run holds the lock; try again later */
};

#endif
