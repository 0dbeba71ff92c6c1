# setup_suite.bash - run by bats once around the whole suite: the real
# Kafka broker every test shares.
#
# Unless $KAFKA_BROKERS names a broker already, setup_suite starts one with
# scripts/kafka-local (one node; $KAFKA_LOCAL_DIR and $KAFKA_LOCAL_PORT are
# honoured) and exports KAFKA_BROKERS.  A broker that does not start fails
# the suite: no test is skipped for want of one.  teardown_suite stops the
# broker only if setup_suite started it, and not with ORDERFLOW_KEEP_BROKER=1.

setup_suite() {
	local root was_running=
	root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
	ORDERFLOW_SUITE_BROKER=
	if [ -n "${KAFKA_BROKERS:-}" ]; then
		export KAFKA_BROKERS
		return 0
	fi
	# Running already (started by hand): use it and leave it running.
	if "$root/scripts/kafka-local" status >/dev/null 2>&1; then
		was_running=1
	fi
	if ! KAFKA_BROKERS="$("$root/scripts/kafka-local" start --nodes 1)" ||
	    [ -z "$KAFKA_BROKERS" ]; then
		echo "setup_suite: scripts/kafka-local start failed:" \
		    "the suite needs a real broker" >&2
		return 1
	fi
	export KAFKA_BROKERS
	[ -n "$was_running" ] || ORDERFLOW_SUITE_BROKER=$root/scripts/kafka-local
}

teardown_suite() {
	if [ -n "${ORDERFLOW_SUITE_BROKER:-}" ] &&
	    [ "${ORDERFLOW_KEEP_BROKER:-0}" != 1 ]; then
		"$ORDERFLOW_SUITE_BROKER" stop
	fi
}
