#!/usr/bin/env bats
# 10-unit-util.bats - runs the unit tests of common/util.c.

load test_helper

@test "util: strtonum range checks" {
	run --separate-stderr "$BUILD/test/util_test" strtonum
	assert_success
}

@test "util: durations as orderflow(7) writes them" {
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

@test "util: util_xcalloc and util_xstrdup: zeroed, n == 0 not NULL, exit 1 without memory" {
	run --separate-stderr "$BUILD/test/util_test" alloc
	assert_success
}

@test "util: util_xmalloc: usable, 0 bytes not NULL, exit 1 without memory" {
	run --separate-stderr "$BUILD/test/util_test" xmalloc
	assert_success
}

@test "util: util_stdout_flush reports a write that failed, earlier or at the flush" {
	[ -w /dev/full ] || fail "no /dev/full"
	run --separate-stderr "$BUILD/test/util_test" stdout
	assert_success
}

@test "util: util_signals_catch leaves an ignored signal ignored, counts the others" {
	run --separate-stderr "$BUILD/test/util_test" signals
	assert_success
}

@test "util: util_json_bytes: text as itself, anything else as base64" {
	run --separate-stderr "$BUILD/test/util_test" jsonbytes
	assert_success
}

@test "util: util_strlcpy copies as snprintf's %s would, and no further" {
	run --separate-stderr "$BUILD/test/util_test" strlcpy
	assert_success
}

@test "util: util_name_index finds each name from any start, round the end" {
	run --separate-stderr "$BUILD/test/util_test" name_index
	assert_success
}

@test "util: util_cond_init_monotonic's waits end at a deadline on the monotonic clock" {
	run --separate-stderr "$BUILD/test/util_test" cond
	assert_success
}

@test "util: the tests listed are the tests run here" {
	run --separate-stderr "$BUILD/test/util_test"
	assert_success
	assert_output "$(printf '%s\n' alloc xmalloc stdout signals jsonbytes \
	    strtonum duration rfc3339 time cond lock i64toa strlcpy name_index)"
}
