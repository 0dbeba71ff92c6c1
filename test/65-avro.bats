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
	local pid

	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || :
	done
	for pid in "${PIDS[@]}"; do
		timeout 30 tail --pid="$pid" -f /dev/null 2>/dev/null || :
		kill -KILL "$pid" 2>/dev/null || :
	done
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

@test "avro: the codec against the registry: round trips, v1, refusals, a registry down, options" {
	local t

	for t in round-trip v1 invalid json unavailable options; do
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
	    "ce_id ce_source ce_specversion ce_subject ce_time ce_traceparent ce_type"
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
