#!/usr/bin/env bats
# 10-unit-util.bats - runs the unit tests of common/util.c.

load test_helper

@test "util: strtonum range checks" {
	run --separate-stderr "$BUILD/test/util_test" strtonum
	assert_success
}

@test "util: durations as CONTRACT writes them" {
	run --separate-stderr "$BUILD/test/util_test" duration
	assert_success
}

@test "util: RFC 3339 parsing and formatting" {
	run --separate-stderr "$BUILD/test/util_test" rfc3339
	assert_success
}

@test "util: times as RFC 3339 or a duration ago" {
	run --separate-stderr "$BUILD/test/util_test" time
	assert_success
}

@test "util: util_lock is exclusive until the holder closes it" {
	run --separate-stderr "$BUILD/test/util_test" lock
	assert_success
}

@test "util: integers in decimal as snprintf writes them, INT64_MIN too" {
	run --separate-stderr "$BUILD/test/util_test" i64toa
	assert_success
}
