#!/usr/bin/env bats
# 17-unit-worker.bats - runs the unit tests of the worker: common/worker.c,
# route.c, pipe.c and inflight.c, and of keyq.c, its per-key queues.

load test_helper

@test "worker: the backoff schedule, capped, with jitter" {
	run --separate-stderr "$BUILD/test/worker_test" backoff
	assert_success
}

@test "worker: pipe mode's retries come out of their heap due first" {
	run --separate-stderr "$BUILD/test/worker_test" heap
	assert_success
}

@test "worker: pipe mode retries in-process and writes dead letters" {
	run --separate-stderr "$BUILD/test/worker_test" pipe
	assert_success
}

@test "worker: pipe mode hands 1,000 lines, some of 300 KiB, over in order" {
	run --separate-stderr "$BUILD/test/worker_test" ring
	assert_success
}

@test "worker: records in flight at once, one per key at a time, in order" {
	run --separate-stderr "$BUILD/test/worker_test" async
	assert_success
}

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
