#!/usr/bin/env bats
# 19-unit-opt.bats - runs the unit tests of what common/opt.c derives from
# --state: the state directory's lock and the group.instance.id.

load test_helper

@test "opt: one group.instance.id per state directory, however it is named" {
	run --separate-stderr "$BUILD/test/opt_test" instance
	assert_success
}

@test "opt: the state directory's lock is exclusive and released at exit" {
	run --separate-stderr "$BUILD/test/opt_test" lock
	assert_success
}
