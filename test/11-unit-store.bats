#!/usr/bin/env bats
# 11-unit-store.bats - runs the unit tests of common/store.c and
# storeenv.c (Berkeley DB state: tables, transactions, threads, processes
# killed mid-transaction), of common/upkeep.c (the workers' upkeep) and of
# common/storeq.c (group commit on a store thread).

load test_helper

@test "store: lists its tests" {
	run --separate-stderr "$BUILD/test/store_test"
	assert_success
	assert_line killlocks
}

@test "store: open, close, reopen" {
	run --separate-stderr "$BUILD/test/store_test" open
	assert_success
}

@test "store: idempotency records: get, put, put-if-absent, expiry" {
	run --separate-stderr "$BUILD/test/store_test" idem
	assert_success
}

@test "store: long outcomes kept apart: overwrite, put-if-absent, del, reopen, space reused" {
	run --separate-stderr "$BUILD/test/store_test" outcomes
	assert_success
}

@test "store: records expire by generation, whole slots, never before their time" {
	run --separate-stderr "$BUILD/test/store_test" generations
	assert_success
}

@test "store: idempotency records in the format from before outcome.db still read" {
	run --separate-stderr "$BUILD/test/store_test" legacy
	assert_success
}

@test "store: the idempotency tests again with STORE_EXCLUSIVE, which skips tables found empty" {
	run --separate-stderr "$BUILD/test/store_test" exclusive
	assert_success
}

@test "store: a table ending in part of a page (a full disk) opens with STORE_EXCLUSIVE, every record there" {
	run --separate-stderr "$BUILD/test/store_test" partial-page
	assert_success
	assert_regex "$stderr" 'not a whole number of 4096-byte pages'
}

@test "store: one transaction over three tables, committed or aborted" {
	run --separate-stderr "$BUILD/test/store_test" txn
	assert_success
}

@test "store: outbox order, delete, stats" {
	run --separate-stderr "$BUILD/test/store_test" outbox
	assert_success
}

@test "store: threads committing at once" {
	run --separate-stderr "$BUILD/test/store_test" threads
	assert_success
}

@test "store: a process killed holding locks does not wedge another" {
	run --separate-stderr timeout 60 "$BUILD/test/store_test" killlocks
	assert_success
}

@test "store: commits survive a SIGKILL in a burst, and recovery" {
	run --separate-stderr timeout 120 "$BUILD/test/store_test" killburst
	assert_success
}

@test "store: a process wedged by one killed inside the library ends instead of hanging" {
	run --separate-stderr timeout 300 "$BUILD/test/store_test" wedge
	grep -E '^(wedge|observer):|store_test\.c:' <<<"$stderr" |
	    sed 's/^/# /' >&3 || :
	assert_success
}

@test "upkeep: expiry pace, checkpoint period, the rule for a failed store" {
	run --separate-stderr "$BUILD/test/store_test" upkeep
	assert_success
}

@test "store: an unknown test name is an error" {
	run --separate-stderr "$BUILD/test/store_test" nosuch
	assert_failure 2
}

@test "storeq: a request comes back only once its batch committed" {
	run --separate-stderr "$BUILD/test/storeq_test" commit
	assert_success
}

@test "storeq: a failed batch comes back whole, nothing of it stored" {
	run --separate-stderr "$BUILD/test/storeq_test" abort
	assert_success
}

@test "storeq: a deadlock runs the batch again" {
	run --separate-stderr "$BUILD/test/storeq_test" deadlock
	assert_success
}

@test "storeq: the upkeep tick runs while idle" {
	run --separate-stderr "$BUILD/test/storeq_test" tick
	assert_success
}

@test "storeq: stopping runs what was queued" {
	run --separate-stderr "$BUILD/test/storeq_test" stop
	assert_success
}

@test "storeq: the idle hook runs after a batch that left nothing queued" {
	run --separate-stderr "$BUILD/test/storeq_test" idle
	assert_success
}
