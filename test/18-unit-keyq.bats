#!/usr/bin/env bats
# 18-unit-keyq.bats - runs the unit tests of common/keyq.c: records of one
# key are handed out one at a time, in order; other keys never wait.

load test_helper

@test "keyq: one key's items come out one at a time, in order" {
	run --separate-stderr "$BUILD/test/keyq_test" fifo
	assert_success
}

@test "keyq: distinct keys (NUL bytes, empty) never wait for each other" {
	run --separate-stderr "$BUILD/test/keyq_test" keys
	assert_success
}

@test "keyq: thousands of keys finished in any order keep each key's order" {
	run --separate-stderr "$BUILD/test/keyq_test" many
	assert_success
}
