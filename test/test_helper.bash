# test_helper.bash - loaded by every test file: paths, bats libraries, unique
# names and waiting for a condition with a deadline (never a fixed sleep).

bats_require_minimum_version 1.5.0

ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
export PATH="$ROOT/bin:$ROOT/scripts:$PATH"
BUILD="$ROOT/build"

for lib in bats-support bats-assert; do
	for dir in /usr/lib/bats /usr/lib /usr/local/lib/bats /usr/local/lib; do
		if [ -f "$dir/$lib/load.bash" ]; then
			load "$dir/$lib/load.bash"
			break
		fi
	done
done

# Bootstrap servers of the suite's broker (set by setup_suite.bash).
: "${KAFKA_BROKERS:=127.0.0.1:9092}"
export KAFKA_BROKERS

# unique_name PREFIX: a topic or group name no other test uses.
unique_name() {
	printf '%s-%s-%s-%s\n' "$1" "$$" "${BATS_TEST_NUMBER:-0}" "$RANDOM$RANDOM"
}

# wait_until SECONDS COMMAND...: runs COMMAND until it succeeds or the
# deadline passes; returns 1 on timeout.
wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "wait_until: timed out after waiting for: $*" >&2
			return 1
		fi
		sleep 0.1
	done
}

# new_flow [PARTITIONS]: gives this test its own flow: a unique topic
# prefix (ORDERFLOW_TOPIC_PREFIX, which every command reads) with the six
# topics created under it, and its own state directory (ORDERFLOW_STATE).
new_flow() {
	PREFIX="$(unique_name t)."
	export ORDERFLOW_TOPIC_PREFIX="$PREFIX"
	export ORDERFLOW_STATE="$BATS_TEST_TMPDIR/state"
	topic-admin -q create -p "${1:-3}" -r 1 >/dev/null
}
