#!/usr/bin/env bats
# 15-kafka.bats - common/kafka.c against the suite's real broker
# ($KAFKA_BROKERS): idempotent producer, group consumer, offset commits
# that never pass a record still pending, rebalancing, failures.

load test_helper

@test "kafka: header helpers (last occurrence, numbers, copy except)" {
	run --separate-stderr "$BUILD/test/kafka_test" headers
	assert_success
}

@test "kafka: -X overrides defaults; a bad property names where it came from" {
	run --separate-stderr "$BUILD/test/kafka_test" config
	assert_success
}

@test "kafka: librdkafka's lines: one level mapping, no secret value" {
	run --separate-stderr "$BUILD/test/kafka_test" logging
	assert_success
	[[ "$stderr" == *"sasl.username = [redacted]"* ]] ||
	    fail "stderr: $stderr"
	! grep -q hunter2 <<<"$stderr" || fail "stderr: $stderr"
}

@test "kafka: every produced message gets a delivery callback with an offset" {
	run --separate-stderr "$BUILD/test/kafka_test" produce
	assert_success
}

@test "kafka: commits stop at a record whose output is unacknowledged" {
	run --separate-stderr "$BUILD/test/kafka_test" consume
	assert_success
}

@test "kafka: pause, seek back and resume redeliver a record, commit waits" {
	run --separate-stderr "$BUILD/test/kafka_test" seek
	assert_success
}

@test "kafka: a close that does not end is left after 10 s, saying so (mock coordinator)" {
	run --separate-stderr "$BUILD/test/kafka_test" close-stuck
	assert_success
}

@test "kafka: a cooperative rebalance commits what is done on revocation" {
	run --separate-stderr "$BUILD/test/kafka_test" rebalance
	assert_success
}

@test "kafka: an eager rebalance (the default, range) commits what is done on revocation" {
	run --separate-stderr "$BUILD/test/kafka_test" rebalance-eager
	assert_success
}

@test "kafka: a full producer queue waits for room instead of failing" {
	run --separate-stderr "$BUILD/test/kafka_test" queuefull
	assert_success
}

@test "kafka: records held back go out in order, whole, when released; one held at destroy gets its callback" {
	run --separate-stderr "$BUILD/test/kafka_test" hold
	assert_success
}

@test "kafka: an unreachable broker fails within the deadline, logged once" {
	run --separate-stderr "$BUILD/test/kafka_test" unreachable
	assert_success
	# One warning per client, not one per reconnect.
	[ "$(grep -c 'no broker reachable' <<<"$stderr")" -eq 2 ] ||
	    fail "stderr: $stderr"
	! grep -q 'Connection refused' <<<"$stderr" || fail "stderr: $stderr"
}

@test "kafka: a fatal error is reported with its reason and stops producing" {
	run --separate-stderr "$BUILD/test/kafka_test" fatal
	assert_success
	[[ "$stderr" == *"kafka_test made this up"* ]] || fail "stderr: $stderr"
}
