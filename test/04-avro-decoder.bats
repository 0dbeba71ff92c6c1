#!/usr/bin/env bats
# 04-avro-decoder.bats - the suite's independent decoder of Avro records
# (test_helper.bash's avro_decode, test/java/AvroDecode.java: Apache Avro's
# Java library with the schema fetched by id from the registry), checked
# on its own before any orderflow command writes Avro: records of
# schemas/*.avsc encoded here by hand in the Confluent wire format, on the
# suite's broker and registry, come out as the orders they are; and every
# kind of bad record (unknown id, bytes that do not decode, bytes left
# over, bad magic byte, too short, null) makes it fail, with the reason.

load test_helper

# register FILE SUBJECT: registers the Avro schema in FILE under SUBJECT
# with the registry's Confluent-compatible API; prints its id.
register() {
	local body id

	body=$(jq -cn --rawfile s "$1" '{schema: $s}')
	id=$(curl -fsS --max-time 10 -X POST \
	    -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
	    --data "$body" "$SCHEMA_REGISTRY_URL/subjects/$2/versions" |
	    jq -r .id)
	[[ $id =~ ^[0-9]+$ ]] || return 1
	echo "$id"
}

# The Avro binary encoding, written by hand (Avro specification, "Binary
# Encoding"), so that the decoder is checked against the specification
# rather than against another encoder.

# byte N: the byte of value N (0..255).
byte() {
	printf "\\x$(printf %02x "$1")"
}

# avro_long N: int and long, zigzag then a base-128 varint, low group
# first.  The shift after the first group is a logical one.
avro_long() {
	local n=$((($1 << 1) ^ ($1 >> 63)))

	while ((n < 0 || n > 127)); do
		byte $(((n & 127) | 128))
		n=$(((n >> 7) & 0x01ffffffffffffff))
	done
	byte "$n"
}

# avro_string S: its length in bytes as a long, then its UTF-8 bytes.
avro_string() {
	local LC_ALL=C

	avro_long "${#1}"
	printf %s "$1"
}

# wire ID: the Confluent wire format's header: magic byte 0, then ID as a
# 4-byte big-endian integer.
wire() {
	byte 0
	byte $((($1 >> 24) & 255))
	byte $((($1 >> 16) & 255))
	byte $((($1 >> 8) & 255))
	byte $(($1 & 255))
}

# order_v1 ID ORDER_ID: the value of an order.created.v1 record.
order_v1() {
	wire "$1"
	avro_string "$2"
	avro_string c-7
	avro_string zoë@example.com
	avro_string EUR
	avro_string 12.50
	avro_long 1
	avro_string pm_card_visa
}

# order_v2 ID ORDER_ID: the value of an order.created.v2 record with two
# items in one block and a total that needs five varint bytes.
order_v2() {
	wire "$1"
	avro_string "$2"
	avro_string c-9
	avro_string ana@example.com
	avro_string USD
	avro_long 2
	avro_string sku-1
	avro_long 3
	avro_long 41152263004
	avro_string sku-2
	avro_long -1
	avro_long 0
	avro_long 0
	avro_long 123456789012
	avro_long 1
	avro_string pm_card_mastercard
}

# order_v2_empty ID ORDER_ID: an order.created.v2 value with no items and
# no payment_method (the null branch of its union).
order_v2_empty() {
	wire "$1"
	avro_string "$2"
	avro_string c-9
	avro_string ana@example.com
	avro_string USD
	avro_long 0
	avro_long 0
	avro_long 0
}

# produce TOPIC KEY: stdin, whatever its bytes, as one record of TOPIC
# (kcat -P sends each file named as one message; with -K, a key).
produce() {
	local f="$BATS_TEST_TMPDIR/value.$RANDOM$RANDOM"

	cat >"$f"
	kcat -P -b "$KAFKA_BROKERS" -t "$1" -k "$2" "$f"
}

# new_topic: a topic of one partition of this test's own, in $TOPIC.
new_topic() {
	TOPIC=$(unique_name avro)
	topic-admin -q create -p 1 -r 1 -t "$TOPIC" >/dev/null
}

setup() {
	new_topic
	V1=$(register "$ROOT/schemas/order.created.v1.avsc" "$TOPIC-value")
	V2=$(register "$ROOT/schemas/order.created.v2.avsc" "$TOPIC-value")
	[ "$V1" != "$V2" ]
}

@test "avro_decode: hand-written v1 and v2 orders come out as the orders they are, each with its schema id" {
	order_v2 "$V2" o-1 | produce "$TOPIC" o-1
	order_v1 "$V1" o-2 | produce "$TOPIC" o-2
	order_v2_empty "$V2" o-3 | produce "$TOPIC" o-3

	run --separate-stderr avro_decode "$TOPIC"
	assert_success
	assert_equal "$stderr" ""
	assert_equal "${#lines[@]}" 3
	assert_equal "$(jq -c '[.partition, .offset, .key, .schema_id]' \
	    <<<"$output" | paste -sd ' ')" \
	    "[0,0,\"o-1\",$V2] [0,1,\"o-2\",$V1] [0,2,\"o-3\",$V2]"
	assert_equal "$(jq -cS .value <<<"${lines[0]}")" "$(jq -cSn '{
	    order_id: "o-1", customer_id: "c-9", email: "ana@example.com",
	    currency: "USD", items: [
	    {sku: "sku-1", qty: 3, unit_price: 41152263004},
	    {sku: "sku-2", qty: -1, unit_price: 0}],
	    total: 123456789012, payment_method: "pm_card_mastercard"}')"
	assert_equal "$(jq -cS .value <<<"${lines[1]}")" "$(jq -cSn '{
	    order_id: "o-2", customer_id: "c-7", email: "zoë@example.com",
	    currency: "EUR", amount: "12.50", payment_method: "pm_card_visa"}')"
	assert_equal "$(jq -c '.value | [.items, .total, .payment_method]' \
	    <<<"${lines[2]}")" '[[],0,null]'
	# The decoder's fields are the schema's, in the schema's order.
	assert_equal "$(jq -c '.value | keys_unsorted' <<<"${lines[0]}")" \
	    "$(jq -c '[.fields[].name]' "$ROOT/schemas/order.created.v2.avsc")"
}

@test "avro_decode: an empty topic is no error; kcat's arguments pick records" {
	run --separate-stderr avro_decode "$TOPIC"
	assert_success
	assert_output ""
	for i in 1 2 3; do
		order_v1 "$V1" "o-$i" | produce "$TOPIC" "o-$i"
	done
	run --separate-stderr avro_decode "$TOPIC" -o 1 -c 1
	assert_success
	assert_equal "$(jq -c '[.offset, .value.order_id]' <<<"$output")" \
	    '[1,"o-2"]'
}

# bad_case N WHY: the good record at offset 2N and the bad one after it,
# decoded in one run: the good one printed, then exit 1 naming the bad
# one's offset and WHY (a regular expression).
bad_case() {
	run --separate-stderr avro_decode "$TOPIC" -o $((2 * $1)) -c 2
	assert_failure 1
	assert_equal "$(jq -c '[.offset, .value.order_id]' <<<"$output")" \
	    "[$((2 * $1)),\"good-$1\"]"
	assert_regex "$stderr" \
	    "^AvroDecode: partition 0 offset $((2 * $1 + 1)): $2"
}

@test "avro_decode: each kind of bad record fails the run with its reason" {
	local n=0 unknown=2147483000

	good() {
		order_v1 "$V1" "good-$n" | produce "$TOPIC" "good-$n"
		n=$((n + 1))
	}
	# An id the registry never handed out.
	good
	order_v1 "$unknown" bad | produce "$TOPIC" bad
	# Garbage after a good header: a string length of -1.
	good
	{ wire "$V2"; byte 1; byte 0xff; byte 0xff; } | produce "$TOPIC" bad
	# A whole datum, then a byte too many.
	good
	{ order_v1 "$V1" bad; byte 0; } | produce "$TOPIC" bad
	# The datum cut short.
	good
	order_v2 "$V2" bad | head -c 20 | produce "$TOPIC" bad
	# Not the wire format: JSON, and a magic byte of 1.
	good
	printf '{"order_id": "bad"}' | produce "$TOPIC" bad
	good
	{ byte 1; order_v1 "$V1" bad | tail -c +2; } | produce "$TOPIC" bad
	# Shorter than the header.
	good
	wire "$V1" | head -c 4 | produce "$TOPIC" bad
	# A null value (a tombstone).
	good
	printf 'bad:\n' | kcat -P -b "$KAFKA_BROKERS" -t "$TOPIC" -Z -K:

	bad_case 0 "schema id $unknown is unknown to the registry: .*404"
	bad_case 1 "schema id $V2: the datum \\(3 bytes\\) does not decode: "
	bad_case 2 "schema id $V1: 1 of [0-9]+ bytes left over after the datum"
	bad_case 3 "schema id $V2: the datum \\(15 bytes\\) does not decode: "
	bad_case 4 "magic byte 0x7b, not 0"
	bad_case 5 "magic byte 0x01, not 0"
	bad_case 6 "4 bytes: shorter than the wire format's 5-byte header"
	bad_case 7 "null value \\(a tombstone\\), not an Avro record"
	# And the whole topic stops at the first bad record.
	run --separate-stderr avro_decode "$TOPIC"
	assert_failure 1
	assert_equal "${#lines[@]}" 1
}

@test "avro_decode: a registry that does not answer, or a topic that does not exist, fails the run" {
	order_v1 "$V1" o-1 | produce "$TOPIC" o-1
	port=$(kafka_ports 1)
	SCHEMA_REGISTRY_URL="http://127.0.0.1:$port/apis/ccompat/v7" \
	    run --separate-stderr avro_decode "$TOPIC"
	assert_failure 1
	assert_output ""
	assert_regex "$stderr" \
	    "offset 0: schema id $V1: GET http://127.0.0.1:$port/apis/ccompat/v7/schemas/ids/$V1: .*ConnectException"
	run --separate-stderr avro_decode "$(unique_name avro-none)"
	assert_failure
	assert_regex "$stderr" "avro_decode: kcat exited 1 reading"
}

@test "AvroDecode.java: input that is not kcat's framing fails; no registry is a usage error" {
	java=$(avro_java)
	cp=$(avro_classpath)
	printf '0 0 -1 \0\0' >"$BATS_TEST_TMPDIR/in"
	run --separate-stderr "$java" -cp "$cp" \
	    "$ROOT/test/java/AvroDecode.java" -r "$SCHEMA_REGISTRY_URL" \
	    <"$BATS_TEST_TMPDIR/in"
	assert_failure 1
	assert_regex "$stderr" "offset 0: the input ends inside a record"
	SCHEMA_REGISTRY_URL= run --separate-stderr "$java" -cp "$cp" \
	    "$ROOT/test/java/AvroDecode.java"
	assert_failure 2
	assert_regex "$stderr" "no registry"
}
