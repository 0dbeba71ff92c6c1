#!/usr/bin/env bats
# 13-unit-event.bats - runs the unit tests of common/event.c, the one
# validator of orders and events, and of common/evpack.c and
# common/evavro.c, one subtest each (build/test/event_test NAME).

load test_helper

# event NAME: runs one subtest; its complaints are shown if it fails.
event() {
	run --separate-stderr "$BUILD/test/event_test" "$1"
	[ -z "$stderr" ] || printf '%s\n' "$stderr"
	assert_success
	[ -z "$stderr" ]
}

@test "event: the tests listed are the tests run here" {
	run --separate-stderr "$BUILD/test/event_test"
	assert_success
	assert_output "$(printf '%s\n' valid defaults rules qty money strict \
	    nesting generated sameid derive derive_libuuid uuid_bytes amount \
	    upcast types duplicates envelope payment serialize_cjson evpack evavro format \
	    trace trace_parse jsonmem)"
}

@test "event: a valid order parsed, total computed" {
	event valid
}

@test "event: order_id and payment_method optional, unknown members ignored" {
	event defaults
}

@test "event: each order rule broken names its field and rule" {
	event rules
}

@test "event: qty 0, 1001, 1.0, a string and the like rejected" {
	event qty
}

@test "event: money as a float, an exponent, a string or out of range rejected" {
	event money
}

@test "event: invalid JSON, trailing data, duplicate keys, NUL and control characters" {
	event strict
}

@test "event: 100000 nested brackets rejected without a crash" {
	event nesting
}

@test "event: an order without order_id gets a generated one" {
	event generated
}

@test "event: the same order twice gives the same event id; round trip" {
	event sameid
}

@test "event: derived ids stable, distinct per purpose and cause" {
	event derive
}

@test "event: events serialised byte for byte as cJSON printed them" {
	event serialize_cjson
}

@test "event: derived ids equal libuuid's name-based UUIDs" {
	event derive_libuuid
}

@test "event: a UUID's text read into its bytes as libuuid reads the same text" {
	event uuid_bytes
}

@test "event: v1 amounts into minor units exactly, malformed ones rejected" {
	event amount
}

@test "event: order.created.v1 upcast to v2" {
	event upcast
}

@test "event: unknown type or version rejected with a clear message" {
	event types
}

@test "event: a member named twice is refused where a rule reads it" {
	event duplicates
}

@test "event: CloudEvents envelope and v2 data checked" {
	event envelope
}

@test "event: payment.processed built with a derived id, parsed back" {
	event payment
}

@test "evpack: a payment event in either recorded form reads back to the same JSON; form 2 is half the size; damage refused" {
	event evpack
}

@test "evavro: events written through it give the bytes of avro-c's generic values; schemas that do not fit refused" {
	event evavro
}

@test "event: money formatted as major units" {
	event format
}

@test "event: traceparent generated, validated, trace id extracted" {
	event trace
}

@test "event: traceparent of a later version parsed and carried on as 00, 00 with more fields refused" {
	event trace_parse
}

@test "event: cJSON's arena: scopes nest, big blocks fall back, threads free theirs" {
	event jsonmem
}

@test "event: an unknown subtest is a usage error" {
	run --separate-stderr "$BUILD/test/event_test" nosuchtest
	assert_failure 2
	[[ "$stderr" == *"no such test"* ]]
}
