#!/usr/bin/env bats
# 12-unit-jsonl.bats - runs the unit tests of common/jsonl.c, the JSON-lines
# reader, one subtest each (build/test/jsonl_test NAME).

load test_helper

# jsonl NAME: runs one subtest; its complaints are shown if it fails.
jsonl() {
	run --separate-stderr "$BUILD/test/jsonl_test" "$1"
	[ -z "$stderr" ] || printf '%s\n' "$stderr"
	assert_success
	[ -z "$stderr" ]
}

@test "jsonl: the tests listed are the tests run here" {
	run --separate-stderr "$BUILD/test/jsonl_test"
	assert_success
	assert_output "$(printf '%s\n' lines empty nofinalnl crlf toolong nul \
	    badutf8 goodutf8 garbage chunks pipe readerr name bom pieces rejected)"
}

@test "jsonl: lines returned in order with their numbers" {
	jsonl lines
}

@test "jsonl: empty and blank lines skipped but counted" {
	jsonl empty
}

@test "jsonl: a last line without a newline is still read" {
	jsonl nofinalnl
}

@test "jsonl: CRLF line ends tolerated" {
	jsonl crlf
}

@test "jsonl: a 2 MiB line rejected, the next read with its number" {
	jsonl toolong
}

@test "jsonl: NUL bytes rejected with their offset" {
	jsonl nul
}

@test "jsonl: invalid UTF-8 rejected with offset and reason" {
	jsonl badutf8
}

@test "jsonl: valid 2-, 3- and 4-byte UTF-8 accepted" {
	jsonl goodutf8
}

@test "jsonl: a stream of garbage bytes is framed, never crashes" {
	jsonl garbage
}

@test "jsonl: input arriving a few bytes at a time" {
	jsonl chunks
}

@test "jsonl: reading from a pipe fed in small writes" {
	jsonl pipe
}

@test "jsonl: a read error is reported and sticks" {
	jsonl readerr
}

@test "jsonl: display names, stdin and files opened by name" {
	jsonl name
}

@test "jsonl: a byte order mark at the start is dropped" {
	jsonl bom
}

@test "jsonl: lines longer than one read, kept exact, checked at every offset" {
	jsonl pieces
}

@test "jsonl: a rejected line's bytes are kept for its dead letter, a long one's head" {
	jsonl rejected
}

@test "jsonl: an unknown subtest is a usage error" {
	run --separate-stderr "$BUILD/test/jsonl_test" nosuchtest
	assert_failure 2
	[[ "$stderr" == *"no such test"* ]]
}
