#!/usr/bin/env bats
# 18-unit-serve.bats - runs the unit tests of order-serve's modules that
# need neither a broker nor a store: common/keyset.c, the idempotency keys
# in progress, and common/orderdoc.c, the JSON documents of an order.

load test_helper

@test "keyset: a key is refused while held, byte for byte, free once deleted" {
	run --separate-stderr "$BUILD/test/serve_test" keyset
	assert_success
}

@test "keyset: more keys than buckets, deleted from the middle of chains" {
	run --separate-stderr "$BUILD/test/serve_test" keyset_many
	assert_success
}

@test "keyset: threads contending for one key never hold it together" {
	run --separate-stderr "$BUILD/test/serve_test" keyset_threads
	assert_success
}

@test "orderdoc: the stored order, the answer 201 and the outbox record" {
	run --separate-stderr "$BUILD/test/serve_test" build
	assert_success
}

@test "orderdoc: keyed, the body's SHA-256 and the outcome a replay answers" {
	run --separate-stderr "$BUILD/test/serve_test" build_keyed
	assert_success
}

@test "orderdoc: a replay answers the first answer, 422 another body, 500 unreadable" {
	run --separate-stderr "$BUILD/test/serve_test" replay
	assert_success
}

@test "orderdoc: a payment sets status, payment_id, updated_at, reason only when declined" {
	run --separate-stderr "$BUILD/test/serve_test" paid
	assert_success
}

@test "orderdoc: an error answer's body, with and without its field" {
	run --separate-stderr "$BUILD/test/serve_test" error
	assert_success
}

@test "serve: the tests listed are the tests run here" {
	run --separate-stderr "$BUILD/test/serve_test"
	assert_success
	assert_output "$(printf '%s\n' keyset keyset_many keyset_threads build \
	    build_keyed replay paid error)"
}
