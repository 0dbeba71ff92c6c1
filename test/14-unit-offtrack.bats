#!/usr/bin/env bats
# 14-unit-offtrack.bats - runs the unit tests of common/offtrack.c: the
# offset a consumer commits never passes a record still pending.

load test_helper

@test "offtrack: records done in order commit each in turn" {
	run --separate-stderr "$BUILD/test/offtrack_test" inorder
	assert_success
}

@test "offtrack: done out of order never commits past a pending record" {
	run --separate-stderr "$BUILD/test/offtrack_test" outoforder
	assert_success
}

@test "offtrack: offsets never seen (compaction, markers) are skipped" {
	run --separate-stderr "$BUILD/test/offtrack_test" gaps
	assert_success
}

@test "offtrack: thousands of records in flight, finished in random order" {
	run --separate-stderr "$BUILD/test/offtrack_test" thousands
	assert_success
}

@test "offtrack: a forgotten partition starts afresh" {
	run --separate-stderr "$BUILD/test/offtrack_test" forget
	assert_success
}

@test "offtrack: a seek backwards rewinds the partition" {
	run --separate-stderr "$BUILD/test/offtrack_test" rewind
	assert_success
}

@test "offtrack: the window wraps and grows" {
	run --separate-stderr "$BUILD/test/offtrack_test" wrap
	assert_success
}
