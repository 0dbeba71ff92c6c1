#!/usr/bin/env bats
# 05-options.bats - the options every Kafka-facing command shares (common/opt.c
# and common/log.c), exercised through topic-admin.

load test_helper

@test "options: -F reports a malformed line as FILE:LINE and exits 2" {
	local f="$BATS_TEST_TMPDIR/client.properties"
	printf '# a comment\n\nclient.id = demo\nthis line has no equals sign\n' > "$f"
	run --separate-stderr topic-admin -F "$f" list
	assert_failure 2
	[[ "$stderr" == *"topic-admin: $f:4: expected name=value"* ]] ||
	    fail "stderr: $stderr"
}

@test "options: -F reports an unknown property with its FILE:LINE" {
	local f="$BATS_TEST_TMPDIR/client.properties"
	printf 'client.id=demo\nno.such.property=1\n' > "$f"
	run --separate-stderr topic-admin -F "$f" list
	assert_failure 2
	[[ "$stderr" == *"$f:2"*"no.such.property"* ]] || fail "stderr: $stderr"
}

@test "options: -F on a missing file is an error naming it" {
	run --separate-stderr topic-admin -F "$BATS_TEST_TMPDIR/nope" list
	assert_failure
	[[ "$stderr" == *"$BATS_TEST_TMPDIR/nope"* ]] || fail "stderr: $stderr"
}

@test "options: -X without '=' is a usage error" {
	run --separate-stderr topic-admin -X nonsense list
	assert_failure 2
	[[ "$stderr" == *"-X nonsense: expected name=value"* ]] ||
	    fail "stderr: $stderr"
}

@test "options: -V prints the name and version" {
	run --separate-stderr topic-admin -V
	assert_success
	assert_output --regexp '^topic-admin [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "options: an unknown option is a usage error with the usage line" {
	run --separate-stderr topic-admin -Z list
	assert_failure 2
	[[ "$stderr" == *"usage: topic-admin"* ]] || fail "stderr: $stderr"
}

@test "options: --log-format json writes one JSON object a line" {
	run --separate-stderr topic-admin --log-format json -b 127.0.0.1:1 -m 2 list
	assert_failure 4
	[ -n "$stderr" ]
	printf '%s\n' "$stderr" | jq -e -s \
	    'length >= 1 and all(.[]; .prog == "topic-admin" and .level != null and .msg != null and .time != null)'
}

@test "options: --log-format rejects an unknown format" {
	run --separate-stderr topic-admin --log-format xml list
	assert_failure 2
}

@test "options: \$KAFKA_BROKERS is the default and -b overrides it" {
	KAFKA_BROKERS=127.0.0.1:1 run --separate-stderr topic-admin -m 2 list
	assert_failure 4
	[[ "$stderr" == *"127.0.0.1:1"* ]] || fail "stderr: $stderr"
	KAFKA_BROKERS=127.0.0.1:1 run --separate-stderr topic-admin -b "$KAFKA_BROKERS" -m 10 list
	assert_success
}

@test "options: secrets never reach the logs, even with -vv" {
	run --separate-stderr topic-admin -vv -b 127.0.0.1:1 -m 2 \
	    -X sasl.username=ana -X sasl.password=hunter2-secret \
	    -X security.protocol=SASL_PLAINTEXT -X sasl.mechanisms=PLAIN list
	assert_failure 4
	[[ "$stderr" != *hunter2-secret* ]] || fail "password logged: $stderr"
	[[ "$output" != *hunter2-secret* ]] || fail "password printed"
}
