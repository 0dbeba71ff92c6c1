#!/usr/bin/env bats
# 30-order-submit.bats - order-submit against a real broker: events, keys,
# headers and receipts read back with kcat; rejected lines, hostile input,
# repeated submissions, several files, pipe mode, an unreachable broker,
# signals.

load test_helper

# order ID [QTY]: one valid order line; its total is QTY * 1250 + 99.
order() {
	printf '{"order_id":"%s","customer_id":"c-%s","email":"%s@example.com",' \
	    "$1" "$1" "$1"
	printf '"currency":"EUR","items":[{"sku":"BOOK-1","qty":%s,' "${2:-2}"
	printf '"unit_price":1250},{"sku":"PEN","qty":1,"unit_price":99}],'
	printf '"payment_method":"pm_card_visa"}\n'
}

# consume N: the order-created topic as kcat -J envelopes, one a line,
# sorted by order id; fails unless there are exactly N records.
consume() {
	local out n
	out=$(timeout 30 kcat -C -b "$KAFKA_BROKERS" \
	    -t "${PREFIX}order-created" -e -J -q) || return 1
	n=$(printf '%s' "$out" | grep -c .)
	if [ "$n" -ne "$1" ]; then
		echo "consume: $n records on ${PREFIX}order-created, not $1" >&2
		printf '%s\n' "$out" >&2
		return 1
	fi
	printf '%s\n' "$out" | jq -c -s 'sort_by(.key) | .[]'
}

# count_records: how many records order-created holds now.
count_records() {
	timeout 30 kcat -C -b "$KAFKA_BROKERS" -t "${PREFIX}order-created" \
	    -e -q -f '%o\n' | grep -c .
}

records_at_least() {
	[ "$(count_records)" -ge "$1" ]
}

@test "order-submit: events on order-created with key, headers and CloudEvents attributes" {
	new_flow
	local f="$BATS_TEST_TMPDIR/orders.jsonl" rec ev tp uuid
	uuid='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
	{ order o-1 2; order o-2 3; order o-3 1; } > "$f"
	run --separate-stderr timeout 60 order-submit "$f"
	assert_success
	[ -z "$stderr" ] || fail "stderr: $stderr"

	run consume 3
	assert_success
	local i=0 qty
	for qty in 2 3 1; do
		i=$((i + 1))
		rec=$(sed -n "${i}p" <<<"$output")
		[ "$(jq -r .key <<<"$rec")" = "o-$i" ] || fail "key: $rec"
		# headers: content-type and a valid W3C traceparent
		[ "$(jq -r '.headers | length' <<<"$rec")" = 4 ] ||
		    fail "headers: $rec"
		[ "$(jq -r '.headers[0]' <<<"$rec")" = content-type ] ||
		    fail "headers: $rec"
		[ "$(jq -r '.headers[1]' <<<"$rec")" = \
		    application/cloudevents+json ] || fail "headers: $rec"
		[ "$(jq -r '.headers[2]' <<<"$rec")" = traceparent ] ||
		    fail "headers: $rec"
		tp=$(jq -r '.headers[3]' <<<"$rec")
		[[ "$tp" =~ ^00-[0-9a-f]{32}-[0-9a-f]{16}-01$ ]] ||
		    fail "traceparent: $tp"
		[[ "$tp" != 00-00000000000000000000000000000000-* ]] ||
		    fail "traceparent: all-zero trace id"
		# the CloudEvent
		ev=$(jq -r .payload <<<"$rec")
		[ "$(jq -r .specversion <<<"$ev")" = 1.0 ] || fail "$ev"
		[[ "$(jq -r .id <<<"$ev")" =~ $uuid ]] || fail "id: $ev"
		[ "$(jq -r .source <<<"$ev")" = /orderflow/order-submit ] ||
		    fail "$ev"
		[ "$(jq -r .type <<<"$ev")" = order.created.v2 ] || fail "$ev"
		[[ "$(jq -r .time <<<"$ev")" =~ ^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$ ]] ||
		    fail "time: $ev"
		[ "$(jq -r .subject <<<"$ev")" = "o-$i" ] || fail "$ev"
		[ "$(jq -r .datacontenttype <<<"$ev")" = application/json ] ||
		    fail "$ev"
		[ "$(jq -r .traceparent <<<"$ev")" = "$tp" ] ||
		    fail "traceparent header and attribute differ: $rec"
		[ "$(jq -r .data.order_id <<<"$ev")" = "o-$i" ] || fail "$ev"
		[ "$(jq -r .data.email <<<"$ev")" = "o-$i@example.com" ] ||
		    fail "$ev"
		[ "$(jq -r .data.total <<<"$ev")" = $((qty * 1250 + 99)) ] ||
		    fail "total: $ev"
		[ "$(jq -r '.data.items | length' <<<"$ev")" = 2 ] || fail "$ev"
	done
	# every event has its own id and trace
	[ "$(jq -r '.payload | fromjson | .id' <<<"$output" | sort -u |
	    wc -l)" = 3 ] || fail "event ids not unique"
	[ "$(jq -r '.headers[3]' <<<"$output" | cut -c4-35 | sort -u |
	    wc -l)" = 3 ] || fail "trace ids not unique"
}

@test "order-submit: one receipt per order, with the partition and offset kcat reads" {
	new_flow 3
	local f="$BATS_TEST_TMPDIR/orders.jsonl" i receipts records
	for i in $(seq 1 20); do order "r-$i"; done > "$f"
	run --separate-stderr timeout 60 order-submit < "$f"
	assert_success
	receipts=$output
	[ "$(grep -c . <<<"$receipts")" = 20 ] || fail "receipts: $receipts"
	# every receipt has exactly these keys, and no error
	run jq -e -s 'all(keys == ["event_id","offset","order_id",
	    "partition","topic"])' <<<"$receipts"
	assert_success
	run jq -r -s --arg t "${PREFIX}order-created" \
	    'map(select(.topic != $t)) | length' <<<"$receipts"
	assert_output 0

	run consume 20
	assert_success
	records=$(jq -c '{order_id: .key, event_id: (.payload | fromjson | .id),
	    partition, offset}' <<<"$output" | sort)
	receipts=$(jq -c '{order_id, event_id, partition, offset}' \
	    <<<"$receipts" | sort)
	[ "$receipts" = "$records" ] ||
	    fail "receipts and records differ: $receipts != $records"
	# the order ids of the input, each once
	[ "$(jq -r .order_id <<<"$receipts" | sort)" = \
	    "$(seq 1 20 | sed 's/^/r-/' | sort)" ] || fail "order ids"
	# more than one partition was used: keys are spread
	[ "$(jq -r .partition <<<"$receipts" | sort -u | wc -l)" -gt 1 ] ||
	    fail "every key on one partition"
}

@test "order-submit: invalid lines are reported with their numbers, exit 3, the valid ones go" {
	new_flow
	local f="$BATS_TEST_TMPDIR/mixed.jsonl"
	{
		order m-1
		order m-2 0
		printf '\n'
		order m-4
		printf '{"order_id":"m-5","customer_id":"c","email":"a@example.com"\n'
		printf '{"order_id":"m-6","customer_id":"c","email":"nope",'
		printf '"currency":"EUR","items":[{"sku":"A","qty":1,"unit_price":1}]}\n'
		printf '{"order_id":"m-7","customer_id":"c","email":"a@example.com",'
		printf '"currency":"EUR","items":[{"sku":"A","qty":1,"unit_price":12.5}]}\n'
		order m-8 1001
		order m-9
	} > "$f"
	run --separate-stderr timeout 60 order-submit "$f"
	assert_failure 3
	local errs
	errs=$(grep -c . <<<"$stderr")
	[ "$errs" = 5 ] || fail "expected 5 errors, got: $stderr"
	[[ "$stderr" == *"order-submit: $f:2: items[0].qty: must be an integer from 1 to 1000"* ]] ||
	    fail "stderr: $stderr"
	[[ "$stderr" == *"order-submit: $f:5: invalid JSON"* ]] ||
	    fail "stderr: $stderr"
	[[ "$stderr" == *"order-submit: $f:6: email: "* ]] ||
	    fail "stderr: $stderr"
	[[ "$stderr" == *"order-submit: $f:7: items[0].unit_price: must be an integer number of minor units"* ]] ||
	    fail "stderr: $stderr"
	[[ "$stderr" == *"order-submit: $f:8: items[0].qty: must be an integer from 1 to 1000"* ]] ||
	    fail "stderr: $stderr"
	# receipts for the valid ones only
	[ "$(jq -r .order_id <<<"$output" | sort | tr '\n' ' ')" = \
	    "m-1 m-4 m-9 " ] || fail "receipts: $output"
	run consume 3
	assert_success
	[ "$(jq -r .key <<<"$output" | tr '\n' ' ')" = "m-1 m-4 m-9 " ] ||
	    fail "records: $output"
}

@test "order-submit: submitting the same file twice gives the same event ids" {
	new_flow
	local f="$BATS_TEST_TMPDIR/orders.jsonl" first second
	{ order d-1; order d-2; order d-3; } > "$f"
	run --separate-stderr timeout 60 order-submit "$f"
	assert_success
	first=$(jq -r '.order_id + " " + .event_id' <<<"$output" | sort)
	run --separate-stderr timeout 60 order-submit "$f"
	assert_success
	second=$(jq -r '.order_id + " " + .event_id' <<<"$output" | sort)
	[ "$first" = "$second" ] || fail "$first != $second"
	# six records, three distinct event ids, the ones of the receipts
	run consume 6
	assert_success
	[ "$(jq -r '.key + " " + (.payload | fromjson | .id)' <<<"$output" |
	    sort -u)" = "$first" ] || fail "records: $output"
	# an order without an order_id gets a new id each time
	printf '{"customer_id":"c","email":"a@example.com","currency":"EUR",' \
	    > "$f"
	printf '"items":[{"sku":"A","qty":1,"unit_price":1}]}\n' >> "$f"
	run --separate-stderr timeout 60 order-submit -o - "$f"
	assert_success
	first=$(jq -r .id <<<"$output")
	run --separate-stderr timeout 60 order-submit -o - "$f"
	assert_success
	[ "$first" != "$(jq -r .id <<<"$output")" ] ||
	    fail "generated order ids gave the same event id"
}

@test "order-submit: a hostile corpus is rejected line by line, never a crash" {
	new_flow
	local f="$BATS_TEST_TMPDIR/hostile.jsonl"
	{
		order ok-1					# 1
		printf '{"order_id":"x-2","customer_id":"c-1"\n'	# 2 truncated
		head -c 100000 /dev/zero | tr '\0' '['; echo	# 3 deep
		printf '{"order_id":"x-4","customer_id":"c","email":"a@example.com",'
		printf '"currency":"EUR","items":[{"sku":"A","qty":1,"unit_price":1e400}]}\n'
		printf '{"order_id":"x-5","customer_id":"c","email":"a@example.com",'
		printf '"currency":"EUR","items":[{"sku":"A","qty":1,"unit_price":12.50}]}\n'
		printf '{"order_id":"x-6\xff","customer_id":"c"}\n'	# 6 UTF-8
		printf '{"order_id":"x-7",\0"customer_id":"c"}\n'	# 7 NUL
		head -c 2097152 /dev/zero | tr '\0' 'a'; echo	# 8 2 MiB
		printf '\n\n   \t\r\n'				# 9-11 empty
		order ok-12					# 12
		printf '{"order_id":"x-13","customer_id":"c","email":"a@example.com",'
		printf '"currency":"EUR","items":[{"sku":"A","qty":1,'
		printf '"unit_price":99999999999999999999999999}]}\n'
		head -c 100000 /dev/zero | tr '\0' '{'; echo	# 14 deep
		printf '[1,2,3]\n'				# 15
		printf '\xed\xa0\x80\n'				# 16 surrogate
		printf '{"order_id":"x-17"'			# 17 truncated, no newline
	} > "$f"
	printf '\n' >> "$f"
	order ok-18 >> "$f"
	run --separate-stderr timeout 60 order-submit "$f"
	[ "$status" -lt 128 ] || fail "killed by signal $((status - 128))"
	assert_failure 3
	local n bad
	for n in 2 3 4 5 6 7 8 13 14 15 16 17; do
		grep -q "^order-submit: $f:$n: " <<<"$stderr" ||
		    fail "no error for line $n: $stderr"
	done
	bad=$(grep -c "^order-submit: $f:" <<<"$stderr")
	[ "$bad" = 12 ] || fail "expected 12 errors: $stderr"
	grep -qx "order-submit: $f:8: line too long: 2097152 bytes, at most 1048576 allowed" \
	    <<<"$stderr" || fail "line 8: $stderr"
	grep -q "^order-submit: $f:6: invalid UTF-8 at byte offset 16" \
	    <<<"$stderr" || fail "line 6: $stderr"
	grep -qx "order-submit: $f:7: NUL byte at byte offset 18" \
	    <<<"$stderr" || fail "line 7: $stderr"
	grep -qx "order-submit: $f:4: items\[0\].unit_price: must be an integer number of minor units" \
	    <<<"$stderr" || fail "line 4: $stderr"
	[ "$(jq -r .order_id <<<"$output" | sort | tr '\n' ' ')" = \
	    "ok-1 ok-12 ok-18 " ] || fail "receipts: $output"
	run consume 3
	assert_success
	[ "$(jq -r .key <<<"$output" | tr '\n' ' ')" = "ok-1 ok-12 ok-18 " ] ||
	    fail "records: $output"
}

@test "order-submit: several files, standard input as -, names in errors" {
	new_flow
	local a="$BATS_TEST_TMPDIR/a.jsonl" b="$BATS_TEST_TMPDIR/b.jsonl"
	{ order a-1; order a-2 0; } > "$a"
	{ printf 'garbage\n'; order b-2; } > "$b"
	run --separate-stderr timeout 60 order-submit "$a" - "$b" \
	    < <(order s-1; order s-2 5000)
	assert_failure 3
	[[ "$stderr" == *"order-submit: $a:2: items[0].qty: must be an integer from 1 to 1000"* ]] ||
	    fail "stderr: $stderr"
	[[ "$stderr" == *"order-submit: stdin:2: items[0].qty: must be an integer from 1 to 1000"* ]] ||
	    fail "stderr: $stderr"
	[[ "$stderr" == *"order-submit: $b:1: invalid JSON"* ]] ||
	    fail "stderr: $stderr"
	[ "$(grep -c . <<<"$stderr")" = 3 ] || fail "stderr: $stderr"
	run consume 3
	assert_success
	[ "$(jq -r .key <<<"$output" | tr '\n' ' ')" = "a-1 b-2 s-1 " ] ||
	    fail "records: $output"
}

@test "order-submit: a missing file is an error naming it; the others still go" {
	new_flow
	local a="$BATS_TEST_TMPDIR/a.jsonl" missing="$BATS_TEST_TMPDIR/nope.jsonl"
	order f-1 > "$a"
	run --separate-stderr timeout 60 order-submit "$missing" "$a"
	assert_failure 1
	[[ "$stderr" == "order-submit: $missing: No such file or directory"* ]] ||
	    fail "stderr: $stderr"
	[ "$(jq -r .order_id <<<"$output")" = f-1 ] || fail "receipts: $output"
	run consume 1
	assert_success
}

@test "order-submit: pipe mode writes the events, needs no broker" {
	local f="$BATS_TEST_TMPDIR/orders.jsonl"
	{ order p-1; order p-2 4; } > "$f"
	run --separate-stderr timeout 30 order-submit -b 127.0.0.1:1 -o - "$f"
	assert_success
	[ -z "$stderr" ] || fail "stderr: $stderr"
	[ "$(grep -c . <<<"$output")" = 2 ] || fail "output: $output"
	run jq -r -s 'map(.specversion + " " + .type + " " + .subject + " " +
	    (.data.total | tostring) + " " + .source) | .[]' <<<"$output"
	assert_success
	assert_output "1.0 order.created.v2 p-1 2599 /orderflow/order-submit
1.0 order.created.v2 p-2 5099 /orderflow/order-submit"

	# the same ids as a real submission would give, from stdin, and exit 3
	# with a bad line in between
	run --separate-stderr timeout 30 order-submit -b 127.0.0.1:1 -o - \
	    < <(order p-1; echo '{'; order p-2 4)
	assert_failure 3
	[ "$(grep -c . <<<"$output")" = 2 ] || fail "output: $output"
	[[ "$stderr" == "order-submit: stdin:2: invalid JSON"* ]] ||
	    fail "stderr: $stderr"
	run order-submit -o stdout "$f"
	assert_failure 2
}

@test "order-submit: pipe mode refuses a bad -X or -F property with exit 2, as Kafka mode does" {
	local f="$BATS_TEST_TMPDIR/orders.jsonl" props="$BATS_TEST_TMPDIR/client.properties"
	order p-1 >"$f"
	run --separate-stderr timeout 30 order-submit -b 127.0.0.1:1 -o - \
	    -X foo.bar=1 "$f"
	assert_failure 2
	assert_output ""
	# The name, never the value: a mistyped name may hold a secret.
	[[ "$stderr" == *'-X: foo.bar: No such configuration property'* ]] ||
	    fail "stderr: $stderr"
	printf 'client.id=demo\nacks=sometimes\n' >"$props"
	run --separate-stderr timeout 30 order-submit -b 127.0.0.1:1 -o - \
	    -F "$props" "$f"
	assert_failure 2
	assert_output ""
	[[ "$stderr" == *"$props:2"*acks* ]] || fail "stderr: $stderr"
	# A good one is taken.
	run --separate-stderr timeout 30 order-submit -b 127.0.0.1:1 -o - \
	    -X client.id=demo "$f"
	assert_success
	[ "$(jq -r .subject <<<"$output")" = p-1 ]
}

@test "order-submit: an unreachable broker gives exit 4 quickly and an error receipt per order" {
	local f="$BATS_TEST_TMPDIR/orders.jsonl" start
	{ order u-1; order u-2 0; order u-3; } > "$f"
	start=$SECONDS
	run --separate-stderr timeout 30 order-submit -b 127.0.0.1:1 "$f"
	assert_failure 4
	[ $((SECONDS - start)) -le 15 ] || fail "took $((SECONDS - start)) s"
	[[ "$stderr" == "order-submit: 127.0.0.1:1: no broker reachable within"* ]] ||
	    fail "stderr: $stderr"
	[ "$(grep -c 'no broker reachable' <<<"$stderr")" = 1 ] ||
	    fail "stderr: $stderr"
	[[ "$stderr" == *"order-submit: $f:2: items[0].qty: must be an integer from 1 to 1000"* ]] ||
	    fail "stderr: $stderr"
	run jq -r -s 'map(.order_id + " " + .error) | .[]' <<<"$output"
	assert_output "u-1 not sent: broker unreachable
u-3 not sent: broker unreachable"
}

@test "order-submit: SIGTERM stops reading, what was sent gets its receipts" {
	new_flow
	local fifo="$BATS_TEST_TMPDIR/in" out="$BATS_TEST_TMPDIR/out" pid rc=0
	mkfifo "$fifo"
	# the writer keeps the fifo open, so only the signal ends the input
	( order t-1; order t-2; exec sleep 60 ) > "$fifo" 3>&- &
	local writer=$!
	order-submit "$fifo" > "$out" 2> "$BATS_TEST_TMPDIR/err" 3>&- &
	pid=$!
	wait_until 30 records_at_least 2
	kill -TERM "$pid"
	timeout 30 tail --pid="$pid" -f /dev/null || rc=$?
	kill "$writer" 2>/dev/null || true
	[ "$rc" = 0 ] || fail "order-submit did not exit after SIGTERM"
	wait "$pid" || rc=$?
	[ "$rc" = 143 ] || fail "exit status $rc, not death by SIGTERM"
	[ "$(jq -r .order_id "$out" | sort | tr '\n' ' ')" = "t-1 t-2 " ] ||
	    fail "receipts: $(cat "$out")"
	run jq -r -s 'map(select(.offset >= 0)) | length' "$out"
	assert_output 2
}

@test "order-submit: a bad -m is a usage error" {
	run --separate-stderr order-submit -m 5x -o - /dev/null
	assert_failure 2
	[[ "$stderr" == *"usage: order-submit"* ]] || fail "stderr: $stderr"
	run --separate-stderr order-submit -m 0s -o - /dev/null
	assert_failure 2
	run --separate-stderr order-submit -m 2s -o - /dev/null
	assert_success
}

@test "order-submit: events the broker refuses get error receipts and exit 4" {
	new_flow
	local f="$BATS_TEST_TMPDIR/orders.jsonl"
	{ order e-1; order e-2; } > "$f"
	# a topic name Kafka refuses: every delivery fails
	run --separate-stderr timeout 60 order-submit \
	    --topic-prefix "${PREFIX}no space/" "$f"
	assert_failure 4
	[[ "$stderr" == *"order-submit: 2 of 2 events not delivered"* ]] ||
	    fail "stderr: $stderr"
	run jq -r -s 'map(.order_id + " " + (.error | startswith("not delivered: ") |
	    tostring) + " " + (has("offset") | tostring)) | sort | .[]' <<<"$output"
	assert_output "e-1 true false
e-2 true false"
}

@test "order-submit: events not acknowledged by the -m deadline get error receipts and exit 4" {
	new_flow
	local f="$BATS_TEST_TMPDIR/orders.jsonl" start
	{ order w-1; order w-2; order w-3; } > "$f"
	# a topic that does not exist and may not be created: deliveries wait
	start=$SECONDS
	run --separate-stderr timeout 60 order-submit -m 2s \
	    -X allow.auto.create.topics=false --topic-prefix "${PREFIX}absent." "$f"
	assert_failure 4
	[ $((SECONDS - start)) -le 15 ] || fail "took $((SECONDS - start)) s"
	[[ "$stderr" == *"order-submit: 3 events not acknowledged by the deadline"* ]] ||
	    fail "stderr: $stderr"
	run jq -r -s 'map(.order_id + " " + (.error | startswith(
	    "not acknowledged by the deadline") | tostring)) | sort | .[]' \
	    <<<"$output"
	assert_output "w-1 true
w-2 true
w-3 true"
}
