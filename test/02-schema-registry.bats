#!/usr/bin/env bats
# 02-schema-registry.bats - scripts/schema-registry-local: a real Apicurio
# Registry started, answering the Confluent-compatible API (register, fetch
# by id, BACKWARD refusing an incompatible schema), status, a second start,
# stop, and the failures: no Java 21 or later, a port in use, a registry
# that dies while starting.  Every test runs its own registry (own --dir,
# free ports), and teardown_file stops them.  A registry that cannot be
# fetched or started fails the tests: none is skipped for want of one.

load test_helper

setup_file() {
	export SR_DIR="$BATS_FILE_TMPDIR/sr"
	export SR_BAD_DIR="$BATS_FILE_TMPDIR/bad"
	# kafka_ports 2 hands out a P with P and P+1 free: the registry's API
	# and management ports.
	SR_PORT=$(kafka_ports 2)
	export SR_PORT
	SR_BAD_PORT=$(kafka_ports 2 "$SR_PORT")
	export SR_BAD_PORT
	export SR_URL="http://127.0.0.1:$SR_PORT/apis/ccompat/v7"
}

teardown_file() {
	schema-registry-local --dir "$SR_DIR" stop || :
	schema-registry-local --dir "$SR_BAD_DIR" stop || :
}

sr() {
	schema-registry-local --dir "$SR_DIR" --port "$SR_PORT" "$@"
}

# sr_noport: as sr, with no --port.
sr_noport() {
	schema-registry-local --dir "$SR_DIR" "$@"
}

# sr_up: the file's registry started unless it runs; PID is its pid.
sr_up() {
	sr start >/dev/null
	PID=$(cat "$SR_DIR/pid")
}

# registry_procs DIR: the pids of the registries running from DIR.
registry_procs() {
	pgrep -f -- "-Dschema-registry-local.dir=$1 " || :
}

# exited PID: the process is gone, or a zombie nobody has reaped yet.
exited() {
	local st
	st=$(ps -o stat= -p "$1") || return 0
	[[ $st == Z* ]]
}

# api METHOD PATH [JSON]: one request to the registry's Confluent-compatible
# API; prints the body, then the HTTP status on a line of its own.
api() {
	curl -sS --max-time 10 -X "$1" \
	    -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
	    ${3:+--data "$3"} -w '\n%{http_code}\n' "$SR_URL$2"
}

# schema_body FIELDS: the body registering a record "Order" with FIELDS
# (a JSON array of Avro fields).
schema_body() {
	jq -cn --argjson f "$1" \
	    '{schema: ({type: "record", name: "Order",
	    namespace: "orderflow.test", fields: $f} | tojson)}'
}

# stub_java DIR VERSION: DIR/bin/java, a stand-in that answers
# -XshowSettings:properties -version as a JDK of VERSION would.
stub_java() {
	mkdir -p "$1/bin"
	printf '#!/bin/sh\necho "    java.specification.version = %s" >&2\n' \
	    "$2" >"$1/bin/java"
	chmod +x "$1/bin/java"
}

@test "schema-registry-local: --help describes the commands; bad usage exits 2" {
	run --separate-stderr schema-registry-local --help
	assert_success
	assert_output --partial "Exit status"
	assert_output --partial "SCHEMA_REGISTRY_LOCAL_JVM_DIR"
	run --separate-stderr schema-registry-local
	assert_failure 2
	run --separate-stderr schema-registry-local bogus
	assert_failure 2
	run --separate-stderr sr --port 65535 status
	assert_failure 2
	run --separate-stderr sr --prop nokey start
	assert_failure 2
}

@test "schema-registry-local: status of a registry never started exits 3" {
	run --separate-stderr schema-registry-local \
	    --dir "$BATS_TEST_TMPDIR/none" --port "$SR_PORT" status
	assert_failure 3
	assert_output "stopped ($SR_URL)"
}

@test "schema-registry-local: start prints the URL once the Confluent-compatible API answers" {
	run --separate-stderr sr start
	assert_success
	assert_output "$SR_URL"
	run --separate-stderr sr status
	assert_success
	assert_output --regexp "^running, pid [0-9]+, $SR_URL$"
	[ -s "$SR_DIR/registry.log" ]
	run curl -fsS "http://127.0.0.1:$((SR_PORT + 1))/health/ready"
	assert_success
	assert_equal "$(jq -r .status <<<"$output")" UP
}

@test "schema-registry-local: an Avro schema registered under TOPIC-value comes back by id" {
	sr start >/dev/null
	subject="$(unique_name orders)-value"
	v1=$(schema_body '[{"name": "order_id", "type": "string"}]')
	run api POST "/subjects/$subject/versions" "$v1"
	assert_success
	assert_equal "${lines[1]}" 200
	id=$(jq -r .id <<<"${lines[0]}")
	[[ $id =~ ^[0-9]+$ ]]
	run api GET "/schemas/ids/$id"
	assert_success
	assert_equal "${lines[1]}" 200
	assert_equal "$(jq -c '.schema | fromjson' <<<"${lines[0]}")" \
	    "$(jq -c '.schema | fromjson' <<<"$v1")"
	# The same schema again is the same id, not a new version.
	run api POST "/subjects/$subject/versions" "$v1"
	assert_equal "$(jq -r .id <<<"${lines[0]}")" "$id"
	run api GET "/subjects/$subject/versions"
	assert_equal "${lines[0]}" "[1]"
	run api GET "/schemas/ids/999999"
	assert_equal "${lines[1]}" 404
}

@test "schema-registry-local: under BACKWARD an incompatible schema is refused, a compatible one accepted" {
	sr start >/dev/null
	subject="$(unique_name orders)-value"
	v1=$(schema_body '[{"name": "order_id", "type": "string"}]')
	# A new field without a default: v2 readers cannot read v1 records.
	bad=$(schema_body '[{"name": "order_id", "type": "string"},
	    {"name": "amount", "type": "long"}]')
	good=$(schema_body '[{"name": "order_id", "type": "string"},
	    {"name": "amount", "type": "long", "default": 0}]')
	run api POST "/subjects/$subject/versions" "$v1"
	assert_equal "${lines[1]}" 200
	# Apicurio's default is NONE, unlike Confluent's: set it.
	run api PUT "/config/$subject" '{"compatibility": "BACKWARD"}'
	assert_equal "${lines[1]}" 200
	run api GET "/config/$subject"
	assert_equal "$(jq -r .compatibilityLevel <<<"${lines[0]}")" BACKWARD

	run api POST "/compatibility/subjects/$subject/versions/latest" "$bad"
	assert_equal "${lines[1]}" 200
	assert_equal "$(jq -r .is_compatible <<<"${lines[0]}")" false
	run api POST "/subjects/$subject/versions" "$bad"
	assert_equal "${lines[1]}" 409
	assert_equal "$(jq -r .error_code <<<"${lines[0]}")" 409
	assert_regex "$(jq -r .message <<<"${lines[0]}")" "[Ii]ncompatible"
	run api GET "/subjects/$subject/versions"
	assert_equal "${lines[0]}" "[1]"

	run api POST "/compatibility/subjects/$subject/versions/latest" "$good"
	assert_equal "$(jq -r .is_compatible <<<"${lines[0]}")" true
	run api POST "/subjects/$subject/versions" "$good"
	assert_equal "${lines[1]}" 200
	run api GET "/subjects/$subject/versions"
	assert_equal "${lines[0]}" "[1,2]"
}

@test "schema-registry-local: start on a running registry prints the URL again and starts nothing" {
	sr_up
	# Without --port: the port the directory ran last.
	for again in sr sr_noport; do
		run --separate-stderr "$again" start
		assert_success
		assert_output "$SR_URL"
		assert_equal "$(cat "$SR_DIR/pid")" "$PID"
	done
	assert_equal "$(registry_procs "$SR_DIR")" "$PID"
	run --separate-stderr schema-registry-local --dir "$SR_DIR" \
	    --port "$SR_BAD_PORT" start
	assert_failure 1
	assert_output ""
	assert_regex "$stderr" "runs a registry on port $SR_PORT; run 'schema-registry-local stop' first"
	assert_equal "$(registry_procs "$SR_DIR")" "$PID"
}

@test "schema-registry-local: start on a running registry that does not answer fails and leaves it be" {
	sr_up
	kill -STOP "$PID"
	run --separate-stderr sr --timeout 1 start
	kill -CONT "$PID"
	assert_failure 1
	assert_output ""
	assert_regex "$stderr" "no answer from $SR_URL within 1s"
	assert_equal "$(registry_procs "$SR_DIR")" "$PID"
	assert_equal "$(cat "$SR_DIR/pid")" "$PID"
	run --separate-stderr sr start
	assert_success
	assert_output "$SR_URL"
}

@test "schema-registry-local: stop leaves no process, no pid file, nothing listening" {
	sr_up
	run --separate-stderr sr stop
	assert_success
	exited "$PID"
	assert_equal "$(registry_procs "$SR_DIR")" ""
	[ ! -e "$SR_DIR/pid" ]
	# Asked to stop, not killed.
	grep -q "apicurio-registry-app stopped in" "$SR_DIR/registry.log"
	run --separate-stderr sr status
	assert_failure 3
	assert_output "stopped ($SR_URL)"
	run curl -sS --max-time 5 "$SR_URL/subjects"
	assert_failure
	run --separate-stderr sr stop
	assert_success
}

@test "schema-registry-local: a stale pid file (process gone, or another program) is ignored" {
	sr stop
	# A process that has exited, and a live one that is not the registry
	# (this shell): status then exits 3, stop 0 ("not running"), and
	# neither keeps the file.
	for stale in "$(sh -c 'echo $$')" "$$"; do
		for try in status:3 stop:0; do
			echo "$stale" >"$SR_DIR/pid"
			run --separate-stderr sr "${try%:*}"
			assert_equal "$status" "${try#*:}"
			[ ! -e "$SR_DIR/pid" ]
		done
		assert_equal "$stderr" "schema-registry-local: not running"
	done
	kill -0 "$$"
}

@test "schema-registry-local: with no Java 21 or later, start fails naming what it tried" {
	stub_java "$BATS_TEST_TMPDIR/home17" 17
	stub_java "$BATS_TEST_TMPDIR/jvm/jdk-17" 17
	stub_java "$BATS_TEST_TMPDIR/jvm/jdk-11" 11
	stub_java "$BATS_TEST_TMPDIR/path" 17
	JAVA_HOME="$BATS_TEST_TMPDIR/home17" \
	    SCHEMA_REGISTRY_LOCAL_JVM_DIR="$BATS_TEST_TMPDIR/jvm" \
	    PATH="$BATS_TEST_TMPDIR/path/bin:$PATH" \
	    run --separate-stderr schema-registry-local \
	    --dir "$BATS_TEST_TMPDIR/nojava" --port "$SR_BAD_PORT" start
	assert_failure 1
	assert_output ""
	assert_regex "$stderr" "needs Java 21 or later, and none was found"
	assert_regex "$stderr" "home17/bin/java from \\\$JAVA_HOME: Java 17"
	assert_regex "$stderr" "jvm/jdk-11/bin/java: Java 11"
	assert_regex "$stderr" "jvm/jdk-17/bin/java: Java 17"
	assert_regex "$stderr" "path/bin/java on PATH: Java 17"
	assert_equal "$(registry_procs "$BATS_TEST_TMPDIR/nojava")" ""
	[ ! -e "$BATS_TEST_TMPDIR/nojava/pid" ]
}

@test "schema-registry-local: a JAVA_HOME older than 21 is passed over for a newer JDK in the JVM directory" {
	sr_up
	jdk=$(dirname "$(dirname "$(readlink -f "/proc/$PID/exe")")")
	sr stop
	stub_java "$BATS_TEST_TMPDIR/home17" 17
	stub_java "$BATS_TEST_TMPDIR/jvm/jdk-17" 17
	ln -s "$jdk" "$BATS_TEST_TMPDIR/jvm/newer"
	JAVA_HOME="$BATS_TEST_TMPDIR/home17" \
	    SCHEMA_REGISTRY_LOCAL_JVM_DIR="$BATS_TEST_TMPDIR/jvm" \
	    run --separate-stderr sr start
	assert_success
	assert_output "$SR_URL"
	assert_regex "$stderr" "$BATS_TEST_TMPDIR/jvm/newer/bin/java"
	pid=$(cat "$SR_DIR/pid")
	assert_equal "$(readlink -f "/proc/$pid/exe")" "$(readlink -f "$jdk/bin/java")"
	sr stop
}

@test "schema-registry-local: a port in use fails start at once with a clear error" {
	nc -lk 127.0.0.1 "$((SR_BAD_PORT + 1))" </dev/null >/dev/null 2>&1 3>&- &
	nc_pid=$!
	wait_until 10 port_busy "$((SR_BAD_PORT + 1))"
	run --separate-stderr schema-registry-local \
	    --dir "$BATS_TEST_TMPDIR/busy" --port "$SR_BAD_PORT" start
	kill "$nc_pid" 2>/dev/null || :
	assert_failure 1
	assert_output ""
	assert_regex "$stderr" "127.0.0.1:$((SR_BAD_PORT + 1)) is already in use"
	assert_equal "$(registry_procs "$BATS_TEST_TMPDIR/busy")" ""
}

@test "schema-registry-local: a registry that dies while starting fails with its error" {
	run --separate-stderr schema-registry-local --dir "$SR_BAD_DIR" \
	    --port "$SR_BAD_PORT" start --prop apicurio.storage.kind=orderflow-nosuch
	assert_failure 1
	assert_output ""
	assert_regex "$stderr" "the registry exited while starting"
	assert_regex "$stderr" "Caused by: .*orderflow-nosuch"
	assert_equal "$(registry_procs "$SR_BAD_DIR")" ""
	[ ! -e "$SR_BAD_DIR/pid" ]
}

@test "schema-registry-local: start gives up at its deadline and leaves nothing running" {
	run --separate-stderr schema-registry-local --dir "$SR_BAD_DIR" \
	    --port "$SR_BAD_PORT" --timeout 1 start
	assert_failure 1
	assert_output ""
	assert_regex "$stderr" "no answer from http://127.0.0.1:$SR_BAD_PORT/apis/ccompat/v7 within 1s"
	assert_equal "$(registry_procs "$SR_BAD_DIR")" ""
	[ ! -e "$SR_BAD_DIR/pid" ]
}
