# setup_suite.bash - run by bats once around the whole suite: the real
# Kafka broker and the real schema registry every test shares.
#
# Unless $KAFKA_BROKERS names a broker already, setup_suite starts one with
# scripts/kafka-local (one node; $KAFKA_LOCAL_DIR and $KAFKA_LOCAL_PORT are
# honoured) and exports KAFKA_BROKERS.  Likewise, unless
# $SCHEMA_REGISTRY_URL names a registry, it starts one with
# scripts/schema-registry-local ($SCHEMA_REGISTRY_LOCAL_DIR and
# $SCHEMA_REGISTRY_LOCAL_PORT honoured) and exports SCHEMA_REGISTRY_URL.
# A broker or registry that does not start fails the suite: no test is
# skipped for want of one.  teardown_suite stops what setup_suite started,
# and not with ORDERFLOW_KEEP_BROKER=1.

setup_suite() {
	local root was_running=
	root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
	ORDERFLOW_SUITE_BROKER=
	ORDERFLOW_SUITE_REGISTRY=
	setup_suite_registry "$root" || return 1
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

# setup_suite_registry ROOT: $SCHEMA_REGISTRY_URL, or a registry started.
setup_suite_registry() {
	local root=$1 was_running=

	if [ -n "${SCHEMA_REGISTRY_URL:-}" ]; then
		export SCHEMA_REGISTRY_URL
		return 0
	fi
	if "$root/scripts/schema-registry-local" status >/dev/null 2>&1; then
		was_running=1
	fi
	if ! SCHEMA_REGISTRY_URL="$("$root/scripts/schema-registry-local" \
	    start)" || [ -z "$SCHEMA_REGISTRY_URL" ]; then
		echo "setup_suite: scripts/schema-registry-local start failed:" \
		    "the suite needs a real schema registry" >&2
		return 1
	fi
	export SCHEMA_REGISTRY_URL
	[ -n "$was_running" ] ||
	    ORDERFLOW_SUITE_REGISTRY=$root/scripts/schema-registry-local
}

teardown_suite() {
	[ "${ORDERFLOW_KEEP_BROKER:-0}" != 1 ] || return 0
	if [ -n "${ORDERFLOW_SUITE_BROKER:-}" ]; then
		"$ORDERFLOW_SUITE_BROKER" stop
	fi
	if [ -n "${ORDERFLOW_SUITE_REGISTRY:-}" ]; then
		"$ORDERFLOW_SUITE_REGISTRY" stop
	fi
}
