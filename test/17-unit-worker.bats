#!/usr/bin/env bats
# 17-unit-worker.bats - runs the unit tests of the worker: common/worker.c,
# route.c and pipe.c.

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
