#!/usr/bin/env bats
# 65-avro.bats - events in Avro with the suite's real schema registry
# ($SCHEMA_REGISTRY_URL, from setup_suite.bash) on the real broker: the
# codec against the registry (codec_test), the whole flow in Avro giving
# what JSON gives for the same orders, the records read by an independent
# decoder (Apache Avro's Java library, avro_decode), a legacy v1 producer,
# JSON and Avro records on one topic, the records the registry cannot
# explain dead-lettered, a registry that does not answer, and the usage
# errors.

load test_helper

PIDS=()

teardown() {
	stop_pids
}

# orders N ID-PREFIX: N orders reaching each rule of the simulator.
orders() {
	jq -nc --argjson n "$1" --arg p "$2" '
	[["pm_card_visa", 2500], ["pm_card_declined", 1200],
	 ["pm_card_visa", 2000000], ["pm_transient_1", 700],
	 ["pm_gateway_error", 300], [null, 999]] as $mix |
	range(1; $n + 1) | . as $i | $mix[$i % ($mix | length)] as [$m, $u] |
	{order_id: "\($p)\($i)", customer_id: "c-\($i % 13)",
	 email: "u\($i)@example.com", currency: (["EUR", "USD"][$i % 2]),
	 items: [{sku: "S-\($i % 5)", qty: 1, unit_price: $u}]} +
	(if $m == null then {} else {payment_method: $m} end)'
}

# notes FILE: "ORDER_ID STATUS REASON AMOUNT NOTIFICATION_ID EVENT_ID", sorted.
notes() {
	jq -r '"\(.order_id) \(.status) \(.reason // "-") \(.amount)" +
	    " \(.notification_id) \(.event_id)"' "$1" | sort
}

# records TOPIC: the prefixed TOPIC as kcat JSON envelopes (headers, key).
records() {
	timeout 60 kcat -C -b "$KAFKA_BROKERS" -t "${PREFIX}$1" -o beginning \
	    -e -q -J -X fetch.wait.max.ms=10
}

# count_at_least TOPIC N: the prefixed TOPIC holds N records or more.
count_at_least() {
	[ "$(records "$1" | wc -l)" -ge "$2" ]
}

# lines_at_least FILE N: FILE has N lines or more.
lines_at_least() {
	[ "$(wc -l < "$1")" -ge "$2" ]
}

# header NAME: the last value of header NAME of each envelope on stdin.
header() {
	jq -r --arg n "$1" '(.headers // []) as $h | [range(0; $h | length; 2) |
	    select($h[.] == $n) | $h[. + 1]] | last // "-"'
}

# run_flow FORMAT DIR ORDERS [FLOW-ARG...]: scripts/flow under a prefix of
# its own (PREFIX); DIR/notes.txt gets notes() of its notifications and
# DIR/summary.json its summary without the time taken.
run_flow() {
	local fmt=$1 w=$2 o=$3

	shift 3
	PREFIX="$(unique_name "$fmt")."
	run --separate-stderr timeout 150 flow -J -d "$w" -t 90 \
	    --topic-prefix "$PREFIX" --backoff 50ms --format "$fmt" "$@" "$o"
	assert_success
	jq -S 'del(.seconds)' <<<"$output" > "$w/summary.json"
	notes "$w/notifications.jsonl" > "$w/notes.txt"
}

# closed_url: a registry URL on a loopback port nothing listens on.
closed_url() {
	echo "http://127.0.0.1:$(kafka_ports 1)/apis/ccompat/v7"
}

@test "avro: the codec against the registry: round trips, v1, refusals, the attributes from the headers, a registry down, money as a float from a schema of someone else's, hostile lengths and counts, options, a writer for another thread" {
	local t

	for t in round-trip v1 invalid attributes json unavailable foreign \
	    hostile options writer; do
		run --separate-stderr "$BUILD/test/codec_test" "$t"
		assert_success
	done
}

@test "avro: 300 orders through the flow in Avro give the notifications JSON gives, ids and all; the records carry the CloudEvents attributes as ce_* headers" {
	local w=$BATS_TEST_TMPDIR

	orders 300 "av-" > "$w/orders.jsonl"
	run_flow json "$w/json" "$w/orders.jsonl"
	run_flow avro "$w/avro" "$w/orders.jsonl"
	# 250 notified (one in six is a permanent dead letter)
	[ "$(wc -l < "$w/json/notes.txt")" -eq 250 ]
	run diff "$w/json/notes.txt" "$w/avro/notes.txt"
	assert_success
	run diff "$w/json/summary.json" "$w/avro/summary.json"
	assert_success
	# Every record the avro flow wrote is Avro, with its attributes.
	for t in order-created payment-processed order-created-retry \
	    order-created-dlq; do
		records "$t" > "$w/$t.json"
		[ -s "$w/$t.json" ]
		run header content-type < "$w/$t.json"
		assert_equal "$(sort -u <<<"$output")" application/avro
	done
	run jq -r '(.headers // []) as $h | [range(0; $h | length; 2) |
	    $h[.]] | map(select(startswith("ce_"))) | sort | join(" ")' \
	    "$w/payment-processed.json"
	assert_equal "$(sort -u <<<"$output")" \
	    "ce_id ce_source ce_specversion ce_subject ce_time ce_type"
	# the trace goes on: each payment carries its order's trace id
	jq -r '"\(.key) " + ((.headers // []) as $h | [range(0; $h | length;
	    2) | select($h[.] == "traceparent") | $h[. + 1]] | last |
	    split("-")[1])' "$w/order-created.json" | sort -u > "$w/oc.trace"
	jq -r '"\(.key) " + ((.headers // []) as $h | [range(0; $h | length;
	    2) | select($h[.] == "traceparent") | $h[. + 1]] | last |
	    split("-")[1])' "$w/payment-processed.json" | sort -u > "$w/pp.trace"
	[ "$(wc -l < "$w/pp.trace")" -eq 250 ]
	run comm -13 "$w/oc.trace" "$w/pp.trace"
	assert_output ''
	# the event ids of the notifications are the records' ce_id
	header ce_id < "$w/payment-processed.json" | sort -u > "$w/ce_ids"
	awk '{ print $6 }' "$w/avro/notes.txt" | sort -u > "$w/note_ids"
	run comm -3 "$w/ce_ids" "$w/note_ids"
	assert_output ''
}

@test "avro: an independent decoder (Apache Avro for Java, schemas by id from the registry) reads the records order-submit and pay-process wrote" {
	local w=$BATS_TEST_TMPDIR

	orders 60 "dec-" > "$w/orders.jsonl"
	run_flow avro "$w/avro" "$w/orders.jsonl"
	run --separate-stderr avro_decode "${PREFIX}order-created"
	assert_success
	# each order's data, as the Java decoder reads it, is the order
	jq -c '{order_id, customer_id, email, currency,
	    payment_method: (.payment_method // "pm_card_visa"),
	    items, total: ([.items[] | .qty * .unit_price] | add)}' \
	    "$w/orders.jsonl" | jq -S -c . | sort > "$w/want"
	jq -S -c '.value' <<<"$output" | sort > "$w/got"
	run diff "$w/want" "$w/got"
	assert_success
	run --separate-stderr avro_decode "${PREFIX}payment-processed"
	assert_success
	jq -r '.value | "\(.order_id) \(.status) \(.reason // "-") \(.amount)"' \
	    <<<"$output" | sort > "$w/got"
	awk '{ print $1, $2, $3, $4 }' "$w/avro/notes.txt" > "$w/want"
	run diff "$w/want" "$w/got"
	assert_success
}

# serve_port LOG: the port order-serve says it listens on.
serve_port() {
	sed -n 's/.*listening on .*(port \([0-9][0-9]*\)).*/\1/p' "$1" |
	    head -n 1
}

serve_listening() {
	[ -n "$(serve_port "$1")" ]
}

# status_is URL STATUS: the order's status at URL is STATUS.
status_is() {
	[ "$(curl -fsS "$1" | jq -r .status)" = "$2" ]
}

@test "avro: order-serve publishes Avro from its outbox and follows Avro payments: GET /orders/ID turns approved and declined" {
	local w=$BATS_TEST_TMPDIR port

	new_flow 3
	order-serve --format avro --listen 127.0.0.1:0 2> "$w/serve.log" &
	PIDS+=($!)
	wait_until 30 serve_listening "$w/serve.log"
	port=$(serve_port "$w/serve.log")
	pay-process --format avro -X group.instance.id= 2> "$w/pp.log" &
	PIDS+=($!)
	# srv-1 declined (card), srv-2 declined (limit), srv-3 approved
	orders 3 "srv-" > "$w/orders.jsonl"
	while read -r o; do
		run curl -fsS -H 'Content-Type: application/json' -d "$o" \
		    "http://127.0.0.1:$port/orders"
		assert_success
	done < "$w/orders.jsonl"
	wait_until 60 status_is "http://127.0.0.1:$port/orders/srv-3" approved
	wait_until 60 status_is "http://127.0.0.1:$port/orders/srv-1" declined
	wait_until 60 status_is "http://127.0.0.1:$port/orders/srv-2" declined
	records order-created > "$w/oc.json"
	[ "$(wc -l < "$w/oc.json")" -eq 3 ]
	[ "$(header content-type < "$w/oc.json" | sort -u)" = application/avro ]
	run --separate-stderr avro_decode "${PREFIX}order-created"
	assert_success
	assert_equal "$(jq -r .value.order_id <<<"$output" | sort | xargs)" \
	    "srv-1 srv-2 srv-3"
}

@test "avro: through order-serve the flow in Avro gives the notifications JSON gives" {
	local w=$BATS_TEST_TMPDIR

	orders 48 "srv-" > "$w/orders.jsonl"
	run_flow json "$w/json" "$w/orders.jsonl" --http
	run_flow avro "$w/avro" "$w/orders.jsonl" --http
	run diff "$w/json/notes.txt" "$w/avro/notes.txt"
	assert_success
	records order-created > "$w/oc.json"
	[ "$(header content-type < "$w/oc.json" | sort -u)" = application/avro ]
}

# produce_encoded DIR TOPIC: the records codec_test encode wrote to DIR,
# in order, to the prefixed TOPIC, each with its key and headers.
produce_encoded() {
	local n=1 args h

	while [ -e "$1/$n.value" ]; do
		args=()
		while IFS= read -r h; do
			args+=(-H "$h")
		done < "$1/$n.headers"
		timeout 60 kcat -P -b "$KAFKA_BROKERS" -t "${PREFIX}$2" \
		    -k "$(cat "$1/$n.key")" "${args[@]}" "$1/$n.value" ||
		    return 1
		n=$((n + 1))
	done
}

# legacy_events N: order.created.v1 events (amount in major units as a
# decimal string, no items) as a legacy producer writes them.
legacy_events() {
	jq -nc --argjson n "$1" 'range(1; $n + 1) | . as $i |
	    {specversion: "1.0", id: "legacy-\($i)", source: "/legacy/shop",
	     type: "order.created.v1", subject: "lg-\($i)",
	     time: "2026-12-06T10:00:00Z",
	     data: ({order_id: "lg-\($i)", customer_id: "c-\($i)",
	       email: "l\($i)@example.com", currency: "EUR",
	       amount: "\($i * 10).50"} +
	       (if $i % 2 == 0 then {payment_method: "pm_card_declined"}
	        else {} end))}'
}

@test "avro: a legacy producer's order.created.v1 in Avro (schemas registered by topic-admin, BACKWARD) is paid by pay-process as v2; v1 after v2 is refused by the registry" {
	local w=$BATS_TEST_TMPDIR

	new_flow 3
	run --separate-stderr topic-admin schemas
	assert_success
	legacy_events 4 > "$w/v1.jsonl"
	mkdir "$w/enc"
	run --separate-stderr "$BUILD/test/codec_test" encode \
	    "${PREFIX}order-created" "$w/enc" < "$w/v1.jsonl"
	assert_success
	produce_encoded "$w/enc" order-created
	pay-process --format avro -X group.instance.id= 2> "$w/pp.log" &
	PIDS+=($!)
	wait_until 60 count_at_least payment-processed 4 ||
	    { cat "$w/pp.log"; false; }
	# amounts from the v1 decimal strings, in minor units
	run --separate-stderr avro_decode "${PREFIX}payment-processed"
	assert_success
	run jq -r '.value | "\(.order_id) \(.status) \(.amount)"' <<<"$output"
	assert_equal "$(sort <<<"$output" | xargs)" \
	    "lg-1 approved 1050 lg-2 declined 2050 lg-3 approved 3050 lg-4 declined 4050"
	run records order-created-dlq
	assert_output ''

	# The reverse: on a subject whose latest schema is v2, under
	# BACKWARD, v1 cannot read v2's data (it has no amount): refused.
	new_flow 3
	run --separate-stderr topic-admin schemas register \
	    "${PREFIX}order-created-value" "$ROOT/schemas/order.created.v2.avsc"
	assert_success
	run --separate-stderr "$BUILD/test/codec_test" encode \
	    "${PREFIX}order-created" "$w/enc" < "$w/v1.jsonl"
	assert_failure
	[[ $stderr == *[Ii]ncompatible* ]] || fail "stderr: $stderr"
}

# wire FILE ID BYTES...: a wire-format value: magic byte, ID, then BYTES
# (printf escapes).
wire() {
	local f=$1 id=$2

	shift 2
	printf "\\x00\\x$(printf %02x $((id >> 24 & 255)))\\x$(printf %02x \
	    $((id >> 16 & 255)))\\x$(printf %02x $((id >> 8 & 255)))\\x$(printf \
	    %02x $((id & 255)))" > "$f"
	printf "$@" >> "$f"
}

# dlq_message KEY: orderflow.error.message of the envelopes on stdin keyed KEY.
dlq_message() {
	jq -c --arg k "$1" 'select(.key == $k)' | header orderflow.error.message
}

# avro_headers NAME KEY: the headers file NAME.headers of an Avro record.
avro_headers() {
	printf '%s\n' content-type=application/avro ce_specversion=1.0 \
	    "ce_id=bad-$2" ce_source=/test ce_type=order.created.v2 \
	    "ce_subject=$2" ce_time=2026-12-06T10:00:00Z > "$1.headers"
	printf '%s' "$2" > "$1.key"
}

@test "avro: an unknown schema id, bytes that do not decode and a missing magic byte are dead-lettered as invalid, with the reason and the bytes as they came" {
	local w=$BATS_TEST_TMPDIR id n

	new_flow 1
	run --separate-stderr topic-admin schemas
	assert_success
	id=$(curl -fsS "$SCHEMA_REGISTRY_URL/subjects/${PREFIX}order-created-value/versions/latest" |
	    jq -r .id)
	mkdir "$w/bad"
	wire "$w/bad/1.value" 2147483646 'whatever'
	avro_headers "$w/bad/1" unknown-id
	# a string length of 63 with 3 bytes behind it
	wire "$w/bad/2.value" "$id" '\x7eabc'
	avro_headers "$w/bad/2" undecodable
	printf 'not the wire format' > "$w/bad/3.value"
	avro_headers "$w/bad/3" no-magic
	produce_encoded "$w/bad" order-created
	pay-process -X group.instance.id= 2> "$w/pp.log" &
	PIDS+=($!)
	wait_until 60 count_at_least order-created-dlq 3 ||
	    { cat "$w/pp.log"; false; }
	records order-created-dlq > "$w/dlq.json"
	run header orderflow.error.kind < "$w/dlq.json"
	assert_equal "$(sort -u <<<"$output")" invalid
	run jq -r '.key' "$w/dlq.json"
	assert_equal "$(sort <<<"$output" | xargs)" "no-magic undecodable unknown-id"
	run dlq_message unknown-id < "$w/dlq.json"
	assert_output --partial "schema id 2147483646"
	run dlq_message undecodable < "$w/dlq.json"
	assert_output --partial "do not decode"
	run dlq_message no-magic < "$w/dlq.json"
	assert_output --partial "magic byte"
	# each dead letter holds the bytes it was read with, headers and all
	for n in 1 2 3; do
		timeout 30 kcat -C -b "$KAFKA_BROKERS" -t "${PREFIX}order-created-dlq" \
		    -o $((n - 1)) -c 1 -e -q -f '%s' > "$w/dlq.$n"
		cmp "$w/dlq.$n" "$w/bad/$n.value"
	done
	[ "$(header ce_type < "$w/dlq.json" | sort -u)" = order.created.v2 ]
	run records payment-processed
	assert_output ''
}

@test "avro: JSON and Avro orders on one topic are all paid and notified, whatever format each worker writes" {
	local w=$BATS_TEST_TMPDIR

	new_flow 3
	orders 40 "mix-" > "$w/orders.jsonl"
	head -n 20 "$w/orders.jsonl" > "$w/json.jsonl"
	tail -n 20 "$w/orders.jsonl" > "$w/avro.jsonl"
	run --separate-stderr order-submit "$w/json.jsonl"
	assert_success
	run --separate-stderr order-submit --format avro "$w/avro.jsonl"
	assert_success
	records order-created > "$w/oc.json"
	assert_equal "$(header content-type < "$w/oc.json" | sort | uniq -c |
	    awk '{ print $1, $2 }' | xargs)" \
	    "20 application/avro 20 application/cloudevents+json"
	pay-process --backoff 50ms -X group.instance.id= 2> "$w/pp.log" &
	PIDS+=($!)
	notify --backoff 50ms -X group.instance.id= > "$w/notes.jsonl" \
	    2> "$w/nt.log" &
	PIDS+=($!)
	# 7 of them (4, 10, ..., 40) are permanent dead letters
	wait_until 90 lines_at_least "$w/notes.jsonl" 33 ||
	    { cat "$w/pp.log" "$w/nt.log"; false; }
	wait_until 30 count_at_least order-created-dlq 7
	run jq -r .order_id "$w/notes.jsonl"
	assert_equal "$(sort -u <<<"$output" | wc -l)" 33
	[ "$(records order-created-dlq | wc -l)" -eq 7 ]
	[ "$(header orderflow.error.kind < <(records order-created-dlq) |
	    sort -u)" = permanent ]
	# pay-process wrote JSON (its --format), whatever it read
	[ "$(header content-type < <(records payment-processed) | sort -u)" = \
	    application/cloudevents+json ]
}

@test "avro: a registry that does not answer: producers stop before reading (status 1); a consumer retries an Avro record and never calls it invalid" {
	local w=$BATS_TEST_TMPDIR down

	new_flow 1
	down=$(closed_url)
	orders 2 "down-" > "$w/orders.jsonl"
	run --separate-stderr order-submit --format avro -r "$down" \
	    "$w/orders.jsonl"
	assert_failure 1
	assert_output ''
	[[ $stderr == *"schema registry"*"nothing is sent"* ]] ||
	    fail "stderr: $stderr"
	run --separate-stderr timeout 30 pay-process --format avro -r "$down" \
	    -X group.instance.id=
	assert_failure 1
	[[ $stderr == *"schema registry"* ]] || fail "stderr: $stderr"
	run --separate-stderr timeout 30 order-serve --format avro -r "$down" \
	    --listen 127.0.0.1:0
	assert_failure 1

	# An Avro order, and a worker whose registry is down: transient
	# failures, then exhausted; never invalid.
	run --separate-stderr order-submit --format avro "$w/orders.jsonl"
	assert_success
	pay-process -r "$down" --backoff 50ms --max-attempts 3 \
	    -X group.instance.id= 2> "$w/pp.log" &
	PIDS+=($!)
	wait_until 60 count_at_least order-created-dlq 2 ||
	    { cat "$w/pp.log"; false; }
	[ "$(header orderflow.error.kind < <(records order-created-dlq) |
	    sort -u)" = exhausted ]
	[ "$(records order-created-retry | wc -l)" -eq 4 ]
	[ "$(header orderflow.error.kind < <(records order-created-retry) |
	    sort -u)" = transient ]
	records order-created-retry | header orderflow.error.message |
	    grep -q 'schema id'
}

@test "avro: usage errors: Avro in pipe mode, Avro without a registry, an unknown format" {
	run --separate-stderr order-submit -o - --format avro < /dev/null
	assert_failure 2
	[[ $stderr == *"pipe mode"* ]] || fail "stderr: $stderr"
	run --separate-stderr pay-process -i - -o - --format avro < /dev/null
	assert_failure 2
	run --separate-stderr notify -i - --format avro < /dev/null
	assert_failure 2
	run --separate-stderr env -u SCHEMA_REGISTRY_URL order-submit \
	    --format avro < /dev/null
	assert_failure 2
	[[ $stderr == *"schema registry"* ]] || fail "stderr: $stderr"
	run --separate-stderr pay-process --format xml
	assert_failure 2
	run --separate-stderr order-serve -r ftp://127.0.0.1/x
	assert_failure 2
}
