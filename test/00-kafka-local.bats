#!/usr/bin/env bats
# 00-kafka-local.bats - scripts/kafka-local: start, status, stop, stale pid
# files, errors, and a three-node cluster with a node killed.  Every test
# runs its own instances (own --dir, free ports picked by kafka_ports),
# never the suite's broker.

load test_helper

setup_file() {
	export KL_DIR="$BATS_FILE_TMPDIR/one"
	KL_PORT=$(kafka_ports 1)
	export KL_PORT
	export KL3_DIR="$BATS_FILE_TMPDIR/three"
	KL3_PORT=$(kafka_ports 3 "$KL_PORT")
	export KL3_PORT
	# Nothing listens there: for starts that must fail.
	BAD_PORT=$(kafka_ports 1 "$KL_PORT")
	export BAD_PORT
}

teardown_file() {
	kafka-local --dir "$KL_DIR" stop || :
	kafka-local --dir "$KL3_DIR" stop || :
	kafka-local --dir "$BATS_FILE_TMPDIR/bad" stop || :
}

kl() {
	kafka-local --dir "$KL_DIR" --port "$KL_PORT" "$@"
}

kl3() {
	kafka-local --dir "$KL3_DIR" --port "$KL3_PORT" "$@"
}

# node_procs DIR: the pids of the JVMs running from DIR.
node_procs() {
	pgrep -f "kafka.Kafka $1/node" || :
}

# brokers_in ADDRS: how many brokers a metadata request lists.
brokers_in() {
	kcat -L -b "$1" -m 5 | sed -n 's/^ *\([0-9][0-9]*\) brokers:$/\1/p'
}

has_brokers() {
	[ "$(brokers_in "$1")" = "$2" ]
}

# gone PID: the process has exited (a zombie not yet reaped by whoever
# adopted it counts as gone).
gone() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	[ "${stat%% *}" = Z ]
}

# stderr_has TEXT: the last run's stderr contains TEXT.
stderr_has() {
	[[ $stderr == *"$1"* ]] && return 0
	echo "stderr lacks: $1" >&2
	echo "stderr was: $stderr" >&2
	return 1
}

@test "kafka-local: --help describes the commands; bad usage exits 2" {
	run --separate-stderr kafka-local --help
	assert_success
	assert_output --partial "start-node"
	assert_output --partial "Exit status"
	run --separate-stderr kafka-local
	assert_failure 2
	run --separate-stderr kafka-local bogus
	assert_failure 2
	run --separate-stderr kl start --nodes 0
	assert_failure 2
	run --separate-stderr kl --port notaport status
	assert_failure 2
}

@test "kafka-local: status of an instance never started exits 3" {
	run --separate-stderr kafka-local --dir "$BATS_TEST_TMPDIR/none" status
	assert_failure 3
	assert_output --partial "stopped"
}

@test "kafka-local: start prints the address once kcat -L gets an answer" {
	run --separate-stderr kl start
	assert_success
	assert_output "127.0.0.1:$KL_PORT"
	run kcat -L -b "127.0.0.1:$KL_PORT" -m 5
	assert_success
	assert_output --partial "broker 1 at 127.0.0.1:$KL_PORT"
	run --separate-stderr kl status
	assert_success
	assert_output --regexp "^node 1: running, pid [0-9]+, 127.0.0.1:$KL_PORT$"
	[ -s "$KL_DIR/node1/server.log" ]
}

@test "kafka-local: start when running is a no-op that prints the address" {
	kl start >/dev/null
	pid=$(cat "$KL_DIR/node1/pid")
	run --separate-stderr kl start
	assert_success
	assert_output "127.0.0.1:$KL_PORT"
	assert_equal "$(cat "$KL_DIR/node1/pid")" "$pid"
	assert_equal "$(node_procs "$KL_DIR")" "$pid"
}

@test "kafka-local: stop leaves no process and no pid file; status exits 3" {
	kl start >/dev/null
	pid=$(cat "$KL_DIR/node1/pid")
	run --separate-stderr kl stop
	assert_success
	gone "$pid"
	assert_equal "$(node_procs "$KL_DIR")" ""
	[ ! -e "$KL_DIR/node1/pid" ]
	# Asked to stop, not killed.
	grep -q "Terminating process due to signal SIGTERM" \
	    "$KL_DIR/node1/server.log"
	run --separate-stderr kl status
	assert_failure 3
	assert_output "node 1: stopped (127.0.0.1:$KL_PORT)"
	run kcat -L -b "127.0.0.1:$KL_PORT" -m 1
	assert_failure
	# Stopping what is stopped is fine.
	run --separate-stderr kl stop
	assert_success
}

@test "kafka-local: a stale pid file (process gone, or another program) is ignored" {
	kl stop
	mkdir -p "$KL_DIR/node1"
	sleep 0 &
	dead=$!
	wait "$dead"
	echo "$dead" >"$KL_DIR/node1/pid"
	run --separate-stderr kl status
	assert_failure 3
	[ ! -e "$KL_DIR/node1/pid" ]
	# A live process that is not the broker: this shell.
	echo "$$" >"$KL_DIR/node1/pid"
	run --separate-stderr kl start
	assert_success
	assert_output "127.0.0.1:$KL_PORT"
	pid=$(cat "$KL_DIR/node1/pid")
	[ "$pid" != "$$" ]
	assert_equal "$(node_procs "$KL_DIR")" "$pid"
	kl stop
	kill -0 "$$"
}

@test "kafka-local: data survive a restart; --fresh wipes them" {
	topic=$(unique_name kl)
	kl start >/dev/null
	# topics are not created by their first use
	topic-admin -q -b "127.0.0.1:$KL_PORT" create -p 1 -t "$topic" >/dev/null
	echo hello | kcat -P -b "127.0.0.1:$KL_PORT" -t "$topic"
	kl stop
	kl start >/dev/null
	run kcat -C -b "127.0.0.1:$KL_PORT" -t "$topic" -e -q
	assert_success
	assert_output "hello"
	run --separate-stderr kl start --fresh
	assert_failure 1
	stderr_has "stop"
	kl stop
	run --separate-stderr kl start --fresh
	assert_success
	run kcat -L -b "127.0.0.1:$KL_PORT" -t "$topic" -m 5
	assert_success
	assert_output --partial "topic \"$topic\" with 0 partitions"
	refute_output --partial "topic \"$topic\" with 1 partitions"
	kl stop
}

@test "kafka-local: kill 1 SIGKILLs the node; start brings it back" {
	kl start >/dev/null
	pid=$(cat "$KL_DIR/node1/pid")
	run --separate-stderr kl kill 1
	assert_success
	gone "$pid"
	run --separate-stderr kl status
	assert_failure 3
	run --separate-stderr kl kill 1
	assert_failure 1
	run --separate-stderr kl kill 2
	assert_failure 1
	run --separate-stderr kl start
	assert_success
	assert_output "127.0.0.1:$KL_PORT"
	kl stop
}

@test "kafka-local: a port in use fails start at once with a clear error" {
	port=$(kafka_ports 1 "$KL_PORT")
	nc -lk 127.0.0.1 "$port" </dev/null >/dev/null 2>&1 3>&- &
	nc_pid=$!
	wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
	run --separate-stderr kafka-local --dir "$BATS_TEST_TMPDIR/busy" \
	    --port "$port" start
	kill "$nc_pid" 2>/dev/null || :
	assert_failure 1
	assert_output ""
	stderr_has "127.0.0.1:$port is already in use"
	assert_equal "$(node_procs "$BATS_TEST_TMPDIR/busy")" ""
}

@test "kafka-local: a broker that dies while starting fails with its log" {
	run --separate-stderr kafka-local --dir "$BATS_FILE_TMPDIR/bad" \
	    --port "$BAD_PORT" start --prop authorizer.class.name=orderflow.NoSuch
	assert_failure 1
	assert_output ""
	stderr_has "node 1 exited while starting"
	stderr_has "ClassNotFoundException: orderflow.NoSuch"
	assert_equal "$(node_procs "$BATS_FILE_TMPDIR/bad")" ""
	[ ! -e "$BATS_FILE_TMPDIR/bad/node1/pid" ]
}

@test "kafka-local: start gives up at its deadline and leaves nothing running" {
	run --separate-stderr kafka-local --dir "$BATS_FILE_TMPDIR/bad" \
	    --port "$BAD_PORT" --timeout 1 start
	assert_failure 1
	assert_output ""
	stderr_has "no answer from 127.0.0.1:$BAD_PORT within 1s"
	stderr_has "tail of $BATS_FILE_TMPDIR/bad/node1/server.log"
	assert_equal "$(node_procs "$BATS_FILE_TMPDIR/bad")" ""
	[ ! -e "$BATS_FILE_TMPDIR/bad/node1/pid" ]
}

@test "kafka-local: --nodes 3 runs a cluster that survives a killed node" {
	run --separate-stderr kl3 start --nodes 3
	assert_success
	assert_output "127.0.0.1:$KL3_PORT,127.0.0.1:$((KL3_PORT + 1)),127.0.0.1:$((KL3_PORT + 2))"
	assert_equal "$(brokers_in "$output")" 3
	run --separate-stderr kl3 status
	assert_success
	assert_equal "${#lines[@]}" 3

	pid2=$(cat "$KL3_DIR/node2/pid")
	kl3 kill 2
	gone "$pid2"
	run --separate-stderr kl3 status
	assert_failure 1
	assert_line --index 1 "node 2: stopped (127.0.0.1:$((KL3_PORT + 1)))"
	run kcat -L -b "127.0.0.1:$KL3_PORT" -m 5
	assert_success

	run --separate-stderr kl3 start-node 2
	assert_success
	assert_output "127.0.0.1:$((KL3_PORT + 1))"
	wait_until 30 has_brokers "127.0.0.1:$((KL3_PORT + 1))" 3

	run --separate-stderr kl3 stop
	assert_success
	assert_equal "$(node_procs "$KL3_DIR")" ""
	run --separate-stderr kl3 status
	assert_failure 3
}
