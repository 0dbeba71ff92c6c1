#!/usr/bin/env bats
# 40-pay-process.bats - pay-process against a real broker: the simulator's
# rules, retries and the DLQ, poison records, idempotency, paused retry
# partitions, a SIGKILL among two instances, an HTTP gateway, pipe mode.

load test_helper

setup() {
	GROUP=$(unique_name g)
	PP_PIDS=()
	GW_PID=
}

teardown() {
	local p
	for p in "${PP_PIDS[@]}" $GW_PID; do
		kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	return 0
}

TP=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01

# mkev ORDER_ID PAYMENT_METHOD [TOTAL] [TYPE]: an order.created.v2 event.
mkev() {
	jq -cn --arg id "$1" --arg pm "$2" --argjson total "${3:-2500}" \
	    --arg type "${4:-order.created.v2}" --arg tp "$TP" \
	    --arg eid "$(cat /proc/sys/kernel/random/uuid)" '{
	    specversion: "1.0", id: $eid, source: "/test", type: $type,
	    subject: $id, time: "2026-01-01T00:00:00Z",
	    datacontenttype: "application/json", traceparent: $tp,
	    data: {order_id: $id, customer_id: "c-1", email: "a@example.com",
	    currency: "EUR", items: [{sku: "S-1", qty: 1, unit_price: $total}],
	    total: $total, payment_method: $pm}}'
}

# produce TOPIC: "key|value" lines from stdin to the flow's TOPIC.
produce() {
	kcat -P -b "$KAFKA_BROKERS" -t "${PREFIX}$1" -K '|'
}

# order ID PM [TOTAL]: produces one order.created event keyed by ID.
order() {
	printf '%s|%s\n' "$1" "$(mkev "$@")" | produce order-created
}

# start_pp [ARG...]: pay-process in the background on this flow.
start_pp() {
	pay-process --state "$ORDERFLOW_STATE" -G "$GROUP" "$@" \
	    2>>"$BATS_TEST_TMPDIR/pp.log" &
	PP_PIDS+=($!)
}

# stop_pp PID: SIGTERM, then its exit status must be 0.
stop_pp() {
	kill -TERM "$1"
	wait "$1"
}

# records TOPIC: the flow's TOPIC as kcat JSON lines, headers as an object.
records() {
	timeout 30 kcat -C -b "$KAFKA_BROKERS" -t "${PREFIX}$1" -e -q -J |
	    jq -c '.headers = ((.headers // []) as $h |
	    [range(0; $h | length; 2) | {($h[.]): $h[. + 1]}] | add // {})'
}

# payments: payment.processed data, one object a line, with id and key.
payments() {
	records payment-processed | jq -c '(.payload | fromjson) as $e |
	    $e.data + {id: $e.id, key: .key, traceparent: $e.traceparent,
	    tp_header: .headers.traceparent, source: $e.source}'
}

# many_orders FROM TO [PREFIX]: orders PREFIX-FROM .. PREFIX-(TO-1)
# (PREFIX "o" by default), one in 7 declined by the simulator, in one go.
many_orders() {
	jq -rn --argjson from "$1" --argjson to "$2" --arg tp "$TP" \
	    --arg p "${3:-o}" --arg run "$RANDOM$RANDOM" '
	    range($from; $to) | "\($p)-\(.)" as $o |
	    (if . % 7 == 0 then "pm_card_declined" else "pm_card_visa" end) as $pm |
	    "\($o)|" + ({specversion: "1.0", id: "e-\($run)-\(.)",
	    source: "/test", type: "order.created.v2", subject: $o,
	    time: "2026-01-01T00:00:00Z", traceparent: $tp,
	    data: {order_id: $o, customer_id: "c-1",
	    email: "a@example.com", currency: "EUR",
	    items: [{sku: "S", qty: 1, unit_price: 100}], total: 100,
	    payment_method: $pm}} | tojson)' | produce order-created
}

# start_gw FAILS [DELAY_MS [HANG_PREFIX]]: the fake gateway; sets GW_URL.
start_gw() {
	"$ROOT/test/fixtures/fake-gateway.py" "$BATS_TEST_TMPDIR/port" \
	    "$BATS_TEST_TMPDIR/gw.log" "$@" &
	GW_PID=$!
	wait_until 10 test -s "$BATS_TEST_TMPDIR/port"
	GW_URL="http://127.0.0.1:$(cat "$BATS_TEST_TMPDIR/port")/payments"
}

# overlaps [KILLED]: calls in the gateway's log that began before the
# previous call with the same Idempotency-Key had ended; with KILLED (an
# epoch time), not those of a killed process's call still running at
# the gateway when the restarted one made it again.
overlaps() {
	jq -s --argjson k "${1:-0}" 'map(select(.end != null)) |
	    group_by(.idempotency_key) | map(sort_by(.start) | . as $a |
	    [range(1; length)] | map(select($a[. - 1].end > $a[.].start and
	    (($a[. - 1].start < $k) == ($a[.].start < $k))))) | flatten |
	    length' "$BATS_TEST_TMPDIR/gw.log"
}

# committed TOPIC PARTITION: the group's committed offset of the flow's
# TOPIC at PARTITION, -1 when none.
committed() {
	local lag

	lag=$(topic-admin -J lag "$GROUP") || return 1
	jq -s --arg t "${PREFIX}$1" --argjson p "$2" 'map(select(.topic ==
	    $t and .partition == $p) | .committed // -1) | max // -1' <<<"$lag"
}

# at_least N TOPIC: TOPIC holds N records or more.
at_least() {
	[ "$(records "$2" | wc -l)" -ge "$1" ]
}

@test "pay-process: the simulator's rules" {
	new_flow
	start_pp --limit 5000
	order o-visa pm_card_visa 2500
	order o-mc pm_card_mastercard 5000
	order o-declined pm_card_declined 2500
	order o-limit pm_card_visa 5001
	wait_until 30 at_least 4 payment-processed
	stop_pp "${PP_PIDS[0]}"
	run --separate-stderr payments
	assert_success
	[ "${#lines[@]}" -eq 4 ]
	st() { jq -r --arg o "$1" 'select(.order_id == $o) |
	    "\(.status) \(.reason // "-") \(.amount) \(.key)"' <<<"$output"; }
	[ "$(st o-visa)" = "approved - 2500 o-visa" ]
	[ "$(st o-mc)" = "approved - 5000 o-mc" ]
	[ "$(st o-declined)" = "declined card_declined 2500 o-declined" ]
	[ "$(st o-limit)" = "declined limit_exceeded 5001 o-limit" ]
	# The traceparent is carried, as an attribute and as a header.
	[ "$(jq -r '"\(.traceparent) \(.tp_header)"' <<<"$output" | sort -u)" = \
	    "$TP $TP" ]
	[ "$(jq -r .source <<<"$output" | sort -u)" = /orderflow/pay-process ]
	# Nothing failed, and SIGTERM left every offset committed.
	[ -z "$(records order-created-dlq)" ]
	[ -z "$(records order-created-retry)" ]
	run topic-admin -J lag "$GROUP"
	assert_success
	[ "$(jq -s 'map(select(.topic == null)) | .[0] | "\(.committed) \(.lag)"' \
	    <<<"$output")" = '"4 0"' ]
	grep -q 'summary: processed=4 approved=2 declined=2 retried=0 dead-lettered=0 duplicates=0' \
	    "$BATS_TEST_TMPDIR/pp.log"
}

@test "pay-process: the output's id is derived from the input event's id" {
	new_flow
	ev=$(mkev o-derived pm_card_visa)
	printf 'o-derived|%s\n' "$ev" | produce order-created
	start_pp
	wait_until 30 at_least 1 payment-processed
	stop_pp "${PP_PIDS[0]}"
	id=$(payments | jq -r .id)
	# The same event through pipe mode with a fresh state: the same id.
	run --separate-stderr pay-process --state "$BATS_TEST_TMPDIR/other" \
	    -i - -o - <<<"$ev"
	assert_success
	[ "$(jq -r .id <<<"$output")" = "$id" ]
	[ "$id" != "$(jq -r .id <<<"$ev")" ]
}

@test "pay-process: an event read from a pipe that stays open reaches Kafka without waiting for more" {
	new_flow
	mkfifo "$BATS_TEST_TMPDIR/in"
	pay-process --state "$ORDERFLOW_STATE" -i "$BATS_TEST_TMPDIR/in" \
	    2>>"$BATS_TEST_TMPDIR/pp.log" &
	pid=$!
	exec {fd}>"$BATS_TEST_TMPDIR/in"
	mkev o-pipe-open pm_card_visa >&"$fd"
	# The input is still open: nothing else will come to push it out.
	wait_until 30 at_least 1 payment-processed
	exec {fd}>&-
	wait "$pid"
	[ "$(payments | jq -r .order_id)" = o-pipe-open ]
}

@test "pay-process: pm_transient_2 is paid after exactly two retries" {
	new_flow
	start_pp --backoff 100ms
	t0=$(($(date +%s%3N) - 1))
	order o-tr pm_transient_2
	wait_until 30 at_least 1 payment-processed
	stop_pp "${PP_PIDS[0]}"
	[ "$(payments | jq -r '"\(.order_id) \(.status)"')" = "o-tr approved" ]
	in=$(records order-created | jq -c '{topic, partition, offset}')
	run --separate-stderr records order-created-retry
	assert_success
	[ "${#lines[@]}" -eq 2 ]
	for a in 2 3; do
		r=$(jq -c --arg a "$a" 'select(.headers["orderflow.attempt"] == $a)' \
		    <<<"$output")
		[ -n "$r" ]
		[ "$(jq -r .key <<<"$r")" = o-tr ]
		[ "$(jq -r '.payload | fromjson | .data.order_id' <<<"$r")" = o-tr ]
		[ "$(jq -r '.headers["orderflow.error.kind"]' <<<"$r")" = transient ]
		[ "$(jq -r '.headers["orderflow.not-before"] | tonumber' <<<"$r")" -gt "$t0" ]
		[ "$(jq -c '.headers | {topic: .["orderflow.original.topic"],
		    partition: (.["orderflow.original.partition"] | tonumber),
		    offset: (.["orderflow.original.offset"] | tonumber)}' <<<"$r")" = "$in" ]
		jq -e '.headers["orderflow.error.message"] | test("transient")' <<<"$r"
	done
	[ -z "$(records order-created-dlq)" ]
	grep -q 'summary: processed=3 approved=1 declined=0 retried=2 dead-lettered=0' \
	    "$BATS_TEST_TMPDIR/pp.log"
}

@test "pay-process: pm_gateway_error is permanent, attempts run out exhausted" {
	new_flow
	start_pp --backoff 100ms --max-attempts 2
	order o-gw pm_gateway_error
	order o-ex pm_transient_9
	wait_until 30 at_least 2 order-created-dlq
	stop_pp "${PP_PIDS[0]}"
	[ -z "$(records payment-processed)" ]
	run --separate-stderr records order-created-dlq
	assert_success
	[ "${#lines[@]}" -eq 2 ]
	gw=$(jq -c 'select(.key == "o-gw")' <<<"$output")
	in=$(records order-created | jq -c 'select(.key == "o-gw") |
	    {topic, partition, offset}')
	[ "$(jq -r '.headers | "\(.["orderflow.error.kind"]) \(.["orderflow.attempt"])"' \
	    <<<"$gw")" = "permanent 1" ]
	[ "$(jq -c '.headers | {topic: .["orderflow.original.topic"],
	    partition: (.["orderflow.original.partition"] | tonumber),
	    offset: (.["orderflow.original.offset"] | tonumber)}' <<<"$gw")" = "$in" ]
	jq -e '.headers["orderflow.error.message"] | test("gateway error")' <<<"$gw"
	[ "$(jq -r '.payload | fromjson | .data.order_id' <<<"$gw")" = o-gw ]
	ex=$(jq -c 'select(.key == "o-ex")' <<<"$output")
	[ "$(jq -r '.headers | "\(.["orderflow.error.kind"]) \(.["orderflow.attempt"])"' \
	    <<<"$ex")" = "exhausted 2" ]
	# Exhausted after the retry topic: the original place is kept.
	[ "$(jq -r '.headers["orderflow.original.topic"]' <<<"$ex")" = \
	    "${PREFIX}order-created" ]
	jq -e '.headers["orderflow.error.message"] | test("attempt 2 of 2")' <<<"$ex"
}

@test "pay-process: poison records go to the DLQ as invalid, the worker goes on" {
	new_flow
	# One key for all, so they share a partition and come in this order.
	k=o-after
	{
		printf '%s|\xff\xfenot json at all\n' "$k"
		printf '%s|\n' "$k"
		printf '%s|%s\n' "$k" "$(mkev "$k" pm_card_visa 2500 order.shipped.v1)"
		printf '%s|%s\n' "$k" "$(mkev "$k" pm_card_visa 2500 order.created.v3)"
		printf '%s|%s\n' "$k" "$(mkev "$k" pm_card_visa | jq -c 'del(.data.email)')"
	} | produce order-created
	head -c 921600 /dev/zero | tr '\0' x >"$BATS_TEST_TMPDIR/x"
	mkev "$k" pm_card_visa | jq -c --rawfile big "$BATS_TEST_TMPDIR/x" \
	    '.data.customer_id = $big' >"$BATS_TEST_TMPDIR/big.json"
	[ "$(stat -c %s "$BATS_TEST_TMPDIR/big.json")" -gt 921600 ]
	kcat -P -b "$KAFKA_BROKERS" -t "${PREFIX}order-created" -k "$k" \
	    "$BATS_TEST_TMPDIR/big.json"
	order "$k" pm_card_visa
	start_pp
	wait_until 30 at_least 1 payment-processed
	wait_until 30 at_least 6 order-created-dlq
	stop_pp "${PP_PIDS[0]}"
	[ "$(payments | jq -r '"\(.order_id) \(.status)"')" = "$k approved" ]
	run --separate-stderr records order-created-dlq
	assert_success
	[ "${#lines[@]}" -eq 6 ]
	[ "$(jq -r '.headers["orderflow.error.kind"]' <<<"$output" | sort -u)" = invalid ]
	msgs=$(jq -r '"\(.headers["orderflow.original.offset"]) \(.headers["orderflow.error.message"])"' \
	    <<<"$output" | sort -n)
	echo "$msgs"
	grep -q '^0 .*JSON' <<<"$msgs"
	grep -q '^1 empty value$' <<<"$msgs"
	grep -q '^2 .*order.shipped.v1' <<<"$msgs"
	grep -q '^3 .*version "v3"' <<<"$msgs"
	grep -q '^4 .*email' <<<"$msgs"
	grep -q '^5 .*customer_id' <<<"$msgs"
	# The values are kept as they were: the big one whole.
	[ "$(jq -r 'select(.headers["orderflow.original.offset"] == "5") |
	    .payload | length' <<<"$output")" -eq "$(stat -c %s "$BATS_TEST_TMPDIR/big.json")" ]
}

@test "pay-process: an order.created.v1 event is upcast and paid" {
	new_flow
	ev=$(jq -cn --arg tp "$TP" '{specversion: "1.0", id: "legacy-1",
	    source: "/legacy", type: "order.created.v1", subject: "o-v1",
	    time: "2026-01-01T00:00:00Z", traceparent: $tp,
	    data: {order_id: "o-v1", customer_id: "c-1", email: "a@example.com",
	    currency: "EUR", amount: "25.50"}}')
	printf 'o-v1|%s\n' "$ev" | produce order-created
	start_pp
	wait_until 30 at_least 1 payment-processed
	stop_pp "${PP_PIDS[0]}"
	[ "$(payments | jq -r '"\(.order_id) \(.status) \(.amount) \(.currency)"')" = \
	    "o-v1 approved 2550 EUR" ]
}

@test "pay-process: a repeat sends the recorded event byte for byte, from a process started again too" {
	st=$BATS_TEST_TMPDIR/st
	ok=$(mkev o-same pm_card_visa)
	no=$(mkev o-same-no pm_card_declined)
	run --separate-stderr pay-process --state "$st" -i - -o - \
	    <<<"$(printf '%s\n' "$ok" "$no" "$ok" "$no")"
	assert_success
	[ "${#lines[@]}" -eq 4 ]
	assert_equal "${lines[2]}" "${lines[0]}"
	assert_equal "${lines[3]}" "${lines[1]}"
	[ "$(jq -r .data.status <<<"${lines[1]}")" = declined ]
	first=("${lines[@]}")
	# Another event of each order, read by a new process: the same two.
	run --separate-stderr pay-process --state "$st" -i - -o - \
	    <<<"$(printf '%s\n' "$(mkev o-same pm_card_visa 9999)" "$no")"
	assert_success
	assert_regex "$stderr" 'processed=2 approved=0 declined=0 .*duplicates=2'
	assert_equal "${lines[0]}" "${first[0]}"
	assert_equal "${lines[1]}" "${first[1]}"
}

@test "pay-process: one payment per order id, however often it comes" {
	new_flow
	ev=$(mkev o-dup pm_card_visa)
	{
		printf 'o-dup|%s\n' "$ev" "$ev"
		printf 'o-dup|%s\n' "$(mkev o-dup pm_card_visa 9999)"
	} | produce order-created
	start_pp
	wait_until 30 at_least 3 payment-processed
	stop_pp "${PP_PIDS[0]}"
	run --separate-stderr payments
	[ "${#lines[@]}" -eq 3 ]
	[ "$(jq -r '"\(.id) \(.payment_id) \(.amount)"' <<<"$output" | sort -u | wc -l)" -eq 1 ]
	[ "$(jq -r .amount <<<"${lines[0]}")" -eq 2500 ]
	grep -q 'summary: processed=3 approved=1 declined=0 retried=0 dead-lettered=0 duplicates=2' \
	    "$BATS_TEST_TMPDIR/pp.log"
	# A new group reads everything again: the state, not the offsets,
	# keeps the repeats out.
	GROUP=$(unique_name g)
	start_pp
	wait_until 30 at_least 6 payment-processed
	stop_pp "${PP_PIDS[1]}"
	[ "$(payments | jq -r .id | sort -u | wc -l)" -eq 1 ]
}

@test "pay-process: a retry not yet due holds back only its own partition" {
	new_flow 3
	now=$(date +%s%3N)
	printf 'o-late|%s\n' "$(mkev o-late pm_card_visa)" |
	    kcat -P -b "$KAFKA_BROKERS" -t "${PREFIX}order-created-retry" -p 0 \
	    -K '|' -H orderflow.attempt=2 -H "orderflow.not-before=$((now + 30000))"
	printf 'o-due|%s\n' "$(mkev o-due pm_card_visa)" |
	    kcat -P -b "$KAFKA_BROKERS" -t "${PREFIX}order-created-retry" -p 1 \
	    -K '|' -H orderflow.attempt=2 -H "orderflow.not-before=$((now - 1000))"
	for i in 1 2 3 4 5 6; do
		order "o-$i" pm_card_visa
	done
	[ "$(records order-created | jq -r .partition | sort -u | wc -l)" -ge 2 ]
	start_pp
	# Well before the late one is due, everything else is paid.
	wait_until 15 at_least 7 payment-processed
	[ "$(($(date +%s%3N) - now))" -lt 25000 ]
	stop_pp "${PP_PIDS[0]}"
	run --separate-stderr payments
	[ "${#lines[@]}" -eq 7 ]
	[ -z "$(jq -r 'select(.order_id == "o-late")' <<<"$output")" ]
	jq -s -e 'any(.order_id == "o-due")' <<<"$output"
	# The late record's offset was not committed: it is still to do.
	run topic-admin -J lag "$GROUP"
	assert_success
	[ "$(jq -r --arg t "${PREFIX}order-created-retry" \
	    'select(.topic == $t and .partition == 0) | .committed' <<<"$output")" -le 0 ]
}

@test "pay-process: two instances, one killed with SIGKILL and restarted" {
	new_flow 6
	n=2000
	kx=(-X session.timeout.ms=6000 -X heartbeat.interval.ms=1000)
	# One process per state directory: each instance has its own, as
	# on two hosts; the restarted one comes back on the killed one's.
	sa=(--state "$ORDERFLOW_STATE/a")
	sb=(--state "$ORDERFLOW_STATE/b")
	many_orders 0 $((n / 2))
	start_pp "${kx[@]}" "${sa[@]}"
	start_pp "${kx[@]}" "${sb[@]}"
	# Killed while it works: the second half comes after.
	wait_until 60 at_least $((n / 4)) payment-processed
	kill -KILL "${PP_PIDS[0]}"
	wait "${PP_PIDS[0]}" || true
	many_orders $((n / 2)) "$n"
	start_pp "${kx[@]}" "${sa[@]}"
	distinct() {
		[ "$(payments | jq -r .order_id | sort -u | wc -l)" -ge "$n" ]
	}
	wait_until 120 distinct
	# The survivors stop on SIGTERM with status 0 (they share no store,
	# so the killed one cannot have wedged either).
	rss=$(awk '/^VmHWM/ { print $2 }' "/proc/${PP_PIDS[1]}/status")
	for p in "${PP_PIDS[1]}" "${PP_PIDS[2]}"; do
		kill -TERM "$p"
		st=0
		wait "$p" || st=$?
		if [ "$st" != 0 ]; then
			echo "pay-process $p ended with status $st"
			cat "$BATS_TEST_TMPDIR/pp.log"
			false
		fi
	done
	[ -n "$rss" ]
	payments >"$BATS_TEST_TMPDIR/payments"
	# One outcome per order, one event id per order, n ids in all.
	[ "$(jq -r .order_id "$BATS_TEST_TMPDIR/payments" | sort -u | wc -l)" -eq "$n" ]
	[ "$(jq -r .id "$BATS_TEST_TMPDIR/payments" | sort -u | wc -l)" -eq "$n" ]
	[ "$(jq -r '"\(.order_id) \(.id) \(.status) \(.payment_id)"' \
	    "$BATS_TEST_TMPDIR/payments" | sort -u | wc -l)" -eq "$n" ]
	[ "$(jq -r 'select(.status == "declined") | .order_id' \
	    "$BATS_TEST_TMPDIR/payments" | sort -u | wc -l)" -eq $(((n + 6) / 7)) ]
	[ -z "$(records order-created-dlq)" ]
	# Under 32 MiB resident (not measurable under AddressSanitizer).
	echo "VmHWM ${rss} kB"
	if ! nm "$ROOT/bin/pay-process" | grep -q __asan_init; then
		[ "$rss" -lt 32768 ]
	fi
}

@test "pay-process: restarted after SIGKILL on its state, it consumes again within 15 s" {
	new_flow
	# A session timeout longer than the bound: only static membership
	# (by default, the same group.instance.id from the same state
	# directory) gets the partitions back in time; a new dynamic member
	# would wait for the killed one's session to expire.
	kx=(-X session.timeout.ms=30000)
	start_pp "${kx[@]}"
	order o-before pm_card_visa
	wait_until 30 at_least 1 payment-processed
	kill -KILL "${PP_PIDS[0]}"
	wait "${PP_PIDS[0]}" || true
	t0=$(date +%s%3N)
	start_pp "${kx[@]}"
	order o-after pm_card_visa
	wait_until 15 at_least 2 payment-processed
	took=$(($(date +%s%3N) - t0))
	echo "restart to first payment: $took ms"
	[ "$took" -lt 15000 ]
	stop_pp "${PP_PIDS[1]}"
	# o-before's offset may not have been committed before the kill: then
	# it is redelivered and its stored outcome emitted again, with the
	# same event id (at least once, one effect).
	[ "$(payments | jq -r .order_id | sort -u | tr '\n' ' ')" = "o-after o-before " ]
	[ "$(payments | jq -r '"\(.order_id) \(.id)"' | sort -u | wc -l)" -eq 2 ]
}

@test "pay-process: fenced by a member that took its group.instance.id, it joins again and goes on; fenced again at once, it exits 4" {
	new_flow 3
	log=$BATS_TEST_TMPDIR/pp.log
	start_pp -v
	order o-1 pm_card_visa
	wait_until 30 at_least 1 payment-processed
	# The default id, derived from the host and the state directory.
	id=$(sed -n 's/^pay-process: worker default: group.instance.id=//p' "$log")
	[ -n "$id" ]
	# fence: a consumer joins the group with pay-process's id, which
	# fences the member that had it.
	fence() {
		kcat -b "$KAFKA_BROKERS" -X "group.instance.id=$id" \
		    -X partition.assignment.strategy=range \
		    -G "$GROUP" "${PREFIX}order-created" \
		    "${PREFIX}order-created-retry" \
		    >/dev/null 2>>"$BATS_TEST_TMPDIR/kcat.err" &
		KCAT_PID=$!
		PP_PIDS+=("$KCAT_PID")
	}
	joined() {
		[ "$(grep -c 'kafka: assigned' "$log")" -ge "$1" ]
	}
	fence
	wait_until 30 grep -q 'FENCED_INSTANCE_ID.*joining the group again' "$log"
	# pay-process's new member fences kcat in turn and has the
	# partitions again.
	wait_until 30 joined 2
	kill -KILL "$KCAT_PID"
	wait "$KCAT_PID" || true
	kill -0 "${PP_PIDS[0]}"
	order o-2 pm_card_visa
	wait_until 30 at_least 2 payment-processed
	[ "$(payments | jq -r .order_id | sort -u | tr '\n' ' ')" = "o-1 o-2 " ]
	# Fenced again within a minute: another live member has the id;
	# pay-process stops as on any other fatal error.
	fence
	st=0
	wait_until 60 eval '! kill -0 "${PP_PIDS[0]}" 2>/dev/null'
	wait "${PP_PIDS[0]}" || st=$?
	[ "$st" -eq 4 ]
	grep -q 'fenced again .* another member of the group has this group.instance.id' "$log"
}

@test "pay-process: a second process on one state directory exits 5" {
	new_flow
	start_pp
	wait_until 30 grep -q 'assigned' "$BATS_TEST_TMPDIR/pp.log"
	msg="pay-process: $ORDERFLOW_STATE: another pay-process uses this state directory"
	run --separate-stderr pay-process --state "$ORDERFLOW_STATE" -G "$GROUP"
	assert_failure 5
	assert_equal "$stderr" "$msg"
	# Pipe mode too, before it reads anything.
	run --separate-stderr pay-process --state "$ORDERFLOW_STATE" -i - -o - \
	    <<<"$(mkev o-pipe pm_card_visa)"
	assert_failure 5
	assert_equal "$stderr" "$msg"
	[ -z "$output" ]
	# Another state directory is another process's.
	run --separate-stderr pay-process --state "$BATS_TEST_TMPDIR/other" \
	    -i - -o - <<<"$(mkev o-pipe pm_card_visa)"
	assert_success
	stop_pp "${PP_PIDS[0]}"
}

# refused ARG...: pay-process in pipe mode on $ORDERFLOW_STATE refuses
# to start (exit 1, nothing processed), saying ARGs (patterns) in stderr.
refused() {
	local want

	run --separate-stderr timeout 30 pay-process -b 127.0.0.1:1 \
	    --state "$ORDERFLOW_STATE" -i - -o - <<<"$(mkev o-st pm_card_visa)"
	assert_failure 1
	[ -z "$output" ]
	for want in "$@"; do
		assert_regex "$stderr" "$want"
	done
}

@test "pay-process: a state directory, or a file in it, that another user owns or can write, or a symbolic link there: refused" {
	export ORDERFLOW_STATE="$BATS_TEST_TMPDIR/state"
	local st=$ORDERFLOW_STATE victim=$BATS_TEST_TMPDIR/victim

	getent passwd nobody >/dev/null || fail "no user nobody"
	[ "$(id -u)" -eq 0 ] || fail "the ownership cases need root"
	mkdir -m 0777 "$st"
	chmod 0777 "$st"
	refused "pay-process: store: $st: writable by group or others \(mode 0777\); refusing"
	chmod 0700 "$st"
	chown nobody "$st"
	refused "pay-process: store: $st: owned by uid $(id -u nobody), not by this user"
	chown "$(id -u)" "$st"

	# A working state, then files planted in it.
	run --separate-stderr pay-process --state "$st" -i - -o - \
	    <<<"$(mkev o-ok pm_card_visa)"
	assert_success
	echo precious >"$victim"
	touch "$st/planted"
	chmod 0666 "$st/planted"
	refused "pay-process: store: $st/planted: writable by group or others"
	chmod 0600 "$st/planted"
	chown nobody "$st/planted"
	refused "pay-process: store: $st/planted: owned by uid"
	rm -f "$st/planted"
	# A link where the log goes: as root, the log was written over the
	# link's target.
	mv "$st/log.0000000001" "$BATS_TEST_TMPDIR/log"
	ln -s "$victim" "$st/log.0000000001"
	refused "pay-process: store: $st/log.0000000001: a symbolic link in the state directory; refusing"
	rm "$st/log.0000000001"
	mv "$st/__db.001" "$BATS_TEST_TMPDIR/region"
	ln -s "$victim" "$st/__db.001"
	refused "pay-process: store: $st/__db.001: a symbolic link"
	rm "$st/__db.001"
	# The lock file is opened before the store: not followed either.
	mv "$st/lock" "$BATS_TEST_TMPDIR/lock"
	ln -s "$BATS_TEST_TMPDIR/new-file" "$st/lock"
	refused "pay-process: $st/lock: Too many levels of symbolic links"
	[ ! -e "$BATS_TEST_TMPDIR/new-file" ]
	[ "$(cat "$victim")" = precious ]
	rm "$st/lock"
	mv "$BATS_TEST_TMPDIR/lock" "$st/lock"
	mv "$BATS_TEST_TMPDIR/region" "$st/__db.001"
	mv "$BATS_TEST_TMPDIR/log" "$st/log.0000000001"
	# Put right, it works again, with the state it had: o-ok is a
	# duplicate.
	run --separate-stderr pay-process --state "$st" -i - -o - \
	    <<<"$(mkev o-ok pm_card_visa)"
	assert_success
	assert_regex "$stderr" 'duplicates=1'
}

@test "pay-process: --gateway, 503 twice then 200, one Idempotency-Key" {
	new_flow
	start_gw 2
	start_pp --backoff 100ms --gateway "$GW_URL"
	order o-gw-1 pm_card_visa 4200
	wait_until 30 at_least 1 payment-processed
	stop_pp "${PP_PIDS[0]}"
	[ "$(payments | jq -r '"\(.order_id) \(.status) \(.payment_id)"')" = \
	    "o-gw-1 approved gw-o-gw-1" ]
	[ "$(records order-created-retry | wc -l)" -eq 2 ]
	run --separate-stderr jq -r '"\(.idempotency_key) \(.status)"' \
	    "$BATS_TEST_TMPDIR/gw.log"
	assert_output "o-gw-1 503
o-gw-1 503
o-gw-1 200"
	[ "$(jq -c '.body' "$BATS_TEST_TMPDIR/gw.log" | sort -u)" = \
	    '{"order_id":"o-gw-1","amount":4200,"currency":"EUR","payment_method":"pm_card_visa"}' ]
}

@test "pay-process: pipe mode retries in-process and writes dead letters to --dlq" {
	export ORDERFLOW_STATE="$BATS_TEST_TMPDIR/state"
	{
		mkev p-visa pm_card_visa
		mkev p-tr pm_transient_2
		mkev p-gw pm_gateway_error
		echo '{"not": "an event"}'
		mkev p-ex pm_transient_9
		mkev p-dec pm_card_declined
	} >"$BATS_TEST_TMPDIR/in.jsonl"
	run --separate-stderr timeout 30 pay-process -b 127.0.0.1:1 -i - -o - \
	    --backoff 100ms --max-attempts 3 --dlq "$BATS_TEST_TMPDIR/dlq.jsonl" \
	    <"$BATS_TEST_TMPDIR/in.jsonl"
	# line 4 was not an event: rejected, the rest processed
	assert_failure 3
	assert_regex "$stderr" '(^|'$'\n'')pay-process: stdin:4: dead letter \(invalid\)'
	[ "$(jq -r '"\(.data.order_id) \(.data.status)"' <<<"$output" | sort)" = \
	    "p-dec declined
p-tr approved
p-visa approved" ]
	run --separate-stderr jq -r '"\(.headers["orderflow.original.offset"]) \(.headers["orderflow.error.kind"]) \(.headers["orderflow.attempt"])"' \
	    "$BATS_TEST_TMPDIR/dlq.jsonl"
	assert_success
	[ "$(sort <<<"$output")" = "3 permanent 1
4 invalid 1
5 exhausted 3" ]
	[ "$(jq -r 'select(.headers["orderflow.original.offset"] == "4") | .value' \
	    "$BATS_TEST_TMPDIR/dlq.jsonl")" = '{"not": "an event"}' ]
	[ "$(jq -r '.topic' "$BATS_TEST_TMPDIR/dlq.jsonl" | sort -u)" = order-created-dlq ]
}

@test "pay-process: pipe mode's dead letters carry the rejected bytes, a long line's head and length" {
	export ORDERFLOW_STATE="$BATS_TEST_TMPDIR/state"
	{
		printf '{"a":"\xff\xfe"}\n'
		printf '{"a":"x\0y"}\n'
		printf '{"long":"'
		head -c 1200000 /dev/zero | tr '\0' x
		printf '"}\n'
		mkev p-visa pm_card_visa
	} >"$BATS_TEST_TMPDIR/in.jsonl"
	run --separate-stderr timeout 30 pay-process -b 127.0.0.1:1 -i - -o - \
	    --dlq "$BATS_TEST_TMPDIR/dlq.jsonl" <"$BATS_TEST_TMPDIR/in.jsonl"
	assert_failure 3
	[ "$(jq -r .data.order_id <<<"$output")" = p-visa ]
	dl() {	# LINE-NUMBER: that line's dead letter
		jq -c --arg n "$1" 'select(.headers["orderflow.original.offset"] == $n)' \
		    "$BATS_TEST_TMPDIR/dlq.jsonl"
	}
	[ "$(dl 1 | jq -r .value_base64)" = "$(printf '{"a":"\xff\xfe"}' | base64)" ]
	dl 1 | jq -e '.value == null and .headers["orderflow.original.length"] == null'
	[ "$(dl 2 | jq -r .value_base64)" = "$(printf '{"a":"x\0y"}' | base64)" ]
	# Too long: its first 1024 bytes and its length.
	dl 3 | jq -e --arg head "{\"long\":\"$(head -c 1015 /dev/zero | tr '\0' x)" '
	    .value == $head and .headers["orderflow.original.length"] == "1200011" and
	    .headers["orderflow.error.kind"] == "invalid" and
	    (.headers["orderflow.error.message"] | test("line too long: 1200011 bytes"))'
}

@test "pay-process: pipe mode refuses a bad -X or -F property with exit 2" {
	local props="$BATS_TEST_TMPDIR/client.properties"
	mkev p-visa pm_card_visa >"$BATS_TEST_TMPDIR/in.jsonl"
	run --separate-stderr timeout 30 pay-process -b 127.0.0.1:1 -i - -o - \
	    --state "$BATS_TEST_TMPDIR/st" -X foo.bar=1 <"$BATS_TEST_TMPDIR/in.jsonl"
	assert_failure 2
	assert_output ""
	[[ "$stderr" == *'-X: foo.bar: No such configuration property'* ]]
	[ ! -e "$BATS_TEST_TMPDIR/st" ]
	printf 'security.protocol=carrier-pigeon\n' >"$props"
	run --separate-stderr timeout 30 pay-process -b 127.0.0.1:1 -i - -o - \
	    --state "$BATS_TEST_TMPDIR/st" -F "$props" <"$BATS_TEST_TMPDIR/in.jsonl"
	assert_failure 2
	[[ "$stderr" == *"$props:1"*security.protocol* ]]
	run --separate-stderr timeout 30 pay-process -b 127.0.0.1:1 -i - -o - \
	    --state "$BATS_TEST_TMPDIR/st" -X client.id=demo <"$BATS_TEST_TMPDIR/in.jsonl"
	assert_success
	[ "$(jq -r .data.order_id <<<"$output")" = p-visa ]
}

@test "pay-process: a traceparent of a later version is carried on as version 00" {
	export ORDERFLOW_STATE="$BATS_TEST_TMPDIR/state"
	local t=4bf92f3577b34da6a3ce929d0e0e4736 p=00f067aa0ba902b7
	{
		TP="01-$t-$p-01" mkev p-1 pm_card_visa
		TP="cc-$t-$p-03-and-more" mkev p-2 pm_card_visa
		TP="00-$t-$p-01-and-more" mkev p-3 pm_card_visa
	} >"$BATS_TEST_TMPDIR/in.jsonl"
	run --separate-stderr timeout 30 pay-process -b 127.0.0.1:1 -i - -o - \
	    <"$BATS_TEST_TMPDIR/in.jsonl"
	assert_success
	[ "$(jq -r 'select(.subject != "p-3") | .traceparent' <<<"$output" | sort -u)" = \
	    "00-$t-$p-01" ]
	# Version 00 with more fields is invalid: a new trace.
	run jq -r 'select(.subject == "p-3") | .traceparent' <<<"$output"
	assert_output --regexp '^00-[0-9a-f]{32}-[0-9a-f]{16}-01$'
	refute_output --partial "$t"
}

@test "pay-process: the pipeline order-submit | pay-process | jq" {
	export ORDERFLOW_STATE="$BATS_TEST_TMPDIR/state"
	printf '%s\n' \
	    '{"order_id":"s-1","customer_id":"c-1","email":"a@example.com","currency":"EUR","items":[{"sku":"B","qty":2,"unit_price":1250}],"payment_method":"pm_transient_1"}' \
	    '{"order_id":"s-2","customer_id":"c-2","email":"b@example.com","currency":"EUR","items":[{"sku":"B","qty":1,"unit_price":100}],"payment_method":"pm_gateway_error"}' \
	    >"$BATS_TEST_TMPDIR/orders.jsonl"
	run --separate-stderr bash -c 'order-submit -o - <"$1" |
	    pay-process -i - -o - --backoff 100ms 2>"$2"' _ \
	    "$BATS_TEST_TMPDIR/orders.jsonl" "$BATS_TEST_TMPDIR/err"
	assert_success
	[ "$(jq -r '"\(.data.order_id) \(.data.status) \(.data.amount)"' <<<"$output")" = \
	    "s-1 approved 2500" ]
	# Without --dlq the dead letter is a JSON line on standard error.
	grep '^{' "$BATS_TEST_TMPDIR/err" | jq -e 'select(.key == null and
	    .headers["orderflow.error.kind"] == "permanent" and
	    (.value | fromjson | .data.order_id) == "s-2")'
}

@test "pay-process: 2,000 orders at --concurrency 256, a 100 ms gateway: each paid once, one call per key at a time" {
	new_flow 6
	n=2000
	start_gw 0 100
	many_orders 0 "$n"
	# A second event for 200 of them: it waits for the first and finds
	# the payment recorded, so it never reaches the gateway.
	many_orders 0 200
	start_pp --concurrency 256 --gateway "$GW_URL"
	distinct() {
		[ "$(payments | jq -r .order_id | sort -u | wc -l)" -ge "$n" ]
	}
	wait_until 120 distinct
	wait_until 30 at_least $((n + 200)) payment-processed
	stop_pp "${PP_PIDS[0]}"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/gw.log")" -eq "$n" ]
	[ "$(jq -r .idempotency_key "$BATS_TEST_TMPDIR/gw.log" | sort -u |
	    wc -l)" -eq "$n" ]
	[ "$(overlaps)" -eq 0 ]
	run --separate-stderr payments
	[ "${#lines[@]}" -eq $((n + 200)) ]
	# One payment per order: a repeat carries the same event id.
	[ "$(jq -r '"\(.order_id) \(.id)"' <<<"$output" | sort -u | wc -l)" -eq "$n" ]
	[ "$(jq -r 'select(.status == "approved") | .payment_id' <<<"$output" |
	    grep -vc '^gw-')" -eq 0 ]
	grep -q "summary: processed=$((n + 200)) approved=$n declined=0 .* duplicates=200" \
	    "$BATS_TEST_TMPDIR/pp.log"
	[ -z "$(records order-created-dlq)" ]
	[ -z "$(records order-created-retry)" ]
}

@test "pay-process: a gateway that never answers some orders: the others flow, those retry after the timeout" {
	new_flow 3
	start_gw 0 0 o-hang
	many_orders 0 5 o-hang
	many_orders 0 300
	start_pp --gateway "$GW_URL" --gateway-timeout 5s --backoff 30s
	started=$SECONDS
	wait_until 60 at_least 300 payment-processed
	# All paid while the stuck calls were still waiting for an answer.
	[ -z "$(records order-created-retry)" ] ||
	    [ "$((SECONDS - started))" -ge 5 ]
	wait_until 60 at_least 5 order-created-retry
	stop_pp "${PP_PIDS[0]}"
	[ "$(records order-created-retry | jq -r .key | sort -u | tr '\n' ' ')" = \
	    "o-hang-0 o-hang-1 o-hang-2 o-hang-3 o-hang-4 " ]
	records order-created-retry | jq -e -s 'all(.headers["orderflow.error.message"] |
	    test("gateway: .*[Tt]imeout|timed out"))'
	[ -z "$(payments | jq -r 'select(.order_id | startswith("o-hang"))')" ]
	[ "$(jq -s 'map(select(.status == null)) | length' \
	    "$BATS_TEST_TMPDIR/gw.log")" -eq 5 ]
}

@test "pay-process: a retry due in 30 s does not hold back the records behind it in its partition" {
	new_flow 1
	now=$(date +%s%3N)
	{
		printf 'o-late|%s\n' "$(mkev o-late pm_card_visa)"
		printf 'o-next|%s\n' "$(mkev o-next pm_card_visa)"
	} | kcat -P -b "$KAFKA_BROKERS" -t "${PREFIX}order-created-retry" -p 0 \
	    -K '|' -H orderflow.attempt=2 -H "orderflow.not-before=$((now + 30000))"
	# Behind it in the same partition: one due already.
	printf 'o-due|%s\n' "$(mkev o-due pm_card_visa)" |
	    kcat -P -b "$KAFKA_BROKERS" -t "${PREFIX}order-created-retry" -p 0 \
	    -K '|' -H orderflow.attempt=2 -H "orderflow.not-before=$((now - 1000))"
	order o-main pm_card_visa
	start_pp
	wait_until 15 at_least 2 payment-processed
	[ "$(($(date +%s%3N) - now))" -lt 25000 ]
	run --separate-stderr payments
	[ "$(jq -r .order_id <<<"$output" | sort | tr '\n' ' ')" = "o-due o-main " ]
	stop_pp "${PP_PIDS[0]}"
	# The late ones' offsets held the commit point back, even at exit.
	c=$(committed order-created-retry 0)
	[ "$c" -le 0 ]
}

@test "pay-process: a partition whose window of unfinished records reaches its bound pauses alone" {
	new_flow 2
	# The bound is WORKER_WINDOW_MAX (worker.h), 20000 records: a retry
	# due in 10 minutes at the head of order-created-retry [0] holds the
	# window open while the 25,000 records behind it are done.  The
	# pause is seen in the -v log; that it holds is seen in what was
	# paid, and that it is that partition's alone, in an order on
	# another topic paid meanwhile.
	bound=20000
	n=25000
	now=$(date +%s%3N)
	retry_p0() {
		kcat -P -b "$KAFKA_BROKERS" -t "${PREFIX}order-created-retry" \
		    -p 0 -K '|' -H orderflow.attempt=2 \
		    -H "orderflow.not-before=$1"
	}
	printf 'o-late|%s\n' "$(mkev o-late pm_card_visa)" | retry_p0 $((now + 600000))
	jq -rn --argjson n "$n" --arg tp "$TP" --arg run "$RANDOM$RANDOM" '
	    range(0; $n) | "w-\(.)" as $o | "\($o)|" + ({specversion: "1.0",
	    id: "e-\($run)-\(.)", source: "/test", type: "order.created.v2",
	    subject: $o, time: "2026-01-01T00:00:00Z", traceparent: $tp,
	    data: {order_id: $o, customer_id: "c-1", email: "a@example.com",
	    currency: "EUR", items: [{sku: "S", qty: 1, unit_price: 100}],
	    total: 100, payment_method: "pm_card_visa"}} | tojson)' |
	    retry_p0 $((now - 1000))
	log=$BATS_TEST_TMPDIR/pp.log
	# A retry waits at most --backoff-max: one of 10 minutes needs more.
	start_pp -v --backoff-max 20m
	wait_until 120 grep -q "order-created-retry \\[0\\]: $bound records unfinished: partition paused" "$log"
	# Another partition goes on.
	order o-other pm_card_visa
	paid_other() {
		payments | jq -e -s 'any(.order_id == "o-other")' >/dev/null
	}
	wait_until 30 paid_other
	# The paused partition stopped within its window: of the records
	# behind the late one, at most bound - 1 were read, so paid.
	paid=$(payments | jq -r 'select(.order_id | startswith("w-")) |
	    .order_id' | sort -u | wc -l)
	echo "paid behind the late record: $paid of $n"
	[ "$paid" -le $((bound - 1)) ]
	[ "$paid" -ge $((bound / 2)) ]
	kill -0 "${PP_PIDS[0]}"
	stop_pp "${PP_PIDS[0]}"
	# Nothing of that partition was committed past the late record.
	c=$(committed order-created-retry 0)
	[ "$c" -le 0 ]
}

@test "pay-process: a retry's not-before a century ahead, garbage or negative waits at most --backoff-max" {
	new_flow 1
	now=$(date +%s%3N)
	# retry NAME NOT-BEFORE: a retry record in partition 0.
	retry() {
		printf '%s|%s\n' "$1" "$(mkev "$1" pm_card_visa)" |
		    kcat -P -b "$KAFKA_BROKERS" -t "${PREFIX}order-created-retry" \
		    -p 0 -K '|' -H orderflow.attempt=2 -H "orderflow.not-before=$2"
	}
	retry o-century $((now + 3153600000000))
	retry o-max 9223372036854775807
	retry o-garbage 12ab
	retry o-negative -5
	# Behind them in the same partition: one due already.
	retry o-due $((now - 1000))
	start_pp --backoff 100ms --backoff-max 2s
	wait_until 20 at_least 5 payment-processed
	run --separate-stderr payments
	[ "$(jq -r .order_id <<<"$output" | sort | tr '\n' ' ')" = \
	    "o-century o-due o-garbage o-max o-negative " ]
	stop_pp "${PP_PIDS[0]}"
	grep -q 'orderflow.not-before 9223372036854775807 is more than --backoff-max (2000 ms) ahead: due in 2000 ms instead' \
	    "$BATS_TEST_TMPDIR/pp.log"
}

@test "pay-process: SIGKILL with hundreds of gateway calls in flight, then a restart: each order paid once" {
	new_flow 6
	n=1000
	# Calls of 2 s: the second 256 start (from the records held ready)
	# as the first end, and are in flight for 2 s after.
	start_gw 0 2000
	many_orders 0 "$n"
	start_pp --concurrency 256 --gateway "$GW_URL"
	ended() {
		[ "$(wc -l <"$BATS_TEST_TMPDIR/gw.log")" -ge 256 ]
	}
	wait_until 60 ended
	kill -KILL "${PP_PIDS[0]}"
	wait "${PP_PIDS[0]}" || true
	killed=$(date +%s.%N)
	start_pp --concurrency 256 --gateway "$GW_URL"
	distinct() {
		[ "$(payments | jq -r .order_id | sort -u | wc -l)" -ge "$n" ]
	}
	wait_until 120 distinct
	stop_pp "${PP_PIDS[1]}"
	# One outcome per order: repeats carry the same event id.
	run --separate-stderr payments
	[ "$(jq -r '"\(.order_id) \(.id) \(.payment_id)"' <<<"$output" |
	    sort -u | wc -l)" -eq "$n" ]
	# The gateway saw a key again only after the kill, and never two
	# calls at once from one process (a call of the killed one may still
	# run at the gateway when the restarted one makes it again: a real
	# gateway answers 409, a transient failure, for a key in flight).
	[ "$(overlaps "$killed")" -eq 0 ]
	[ "$(jq -s --argjson k "$killed" 'group_by(.idempotency_key) |
	    map(select(length > 1) | sort_by(.start) | .[1:] |
	    map(select(.start < $k))) | flatten | length' \
	    "$BATS_TEST_TMPDIR/gw.log")" -eq 0 ]
	[ "$(jq -r .idempotency_key "$BATS_TEST_TMPDIR/gw.log" | sort -u |
	    wc -l)" -eq "$n" ]
	# Calls were in flight at the kill: they were made again.
	[ "$(wc -l <"$BATS_TEST_TMPDIR/gw.log")" -gt "$n" ]
	[ -z "$(records order-created-dlq)" ]
}

@test "pay-process: damaged region files are made again at the next start, the state kept" {
	local st="$BATS_TEST_TMPDIR/state" ev="$BATS_TEST_TMPDIR/ev.jsonl" f
	mkev o-reg1 pm_card_visa >"$ev"
	run --separate-stderr pay-process -i "$ev" -o - --state "$st"
	assert_success
	# A damaged __db.002 crashed the open (SIGSEGV), __db.003 failed it.
	for f in "$st"/__db.0[0-9][0-9]; do
		head -c 8192 /dev/urandom |
		    dd of="$f" conv=notrunc status=none
	done
	run --separate-stderr pay-process -i "$ev" -o - --state "$st"
	assert_success
	[[ "$stderr" == *"duplicates=1"* ]] || fail "stderr: $stderr"
	[ "${#lines[@]}" -eq 1 ] || fail "output: $output"
}

# region_sigbus ARGS...: pay-process ARGS, the first region file it maps
# cut to nothing, so that Berkeley DB's first touch of it is a SIGBUS
# (test/fixtures/region-sigbus.c).  Under ASan the handler the command
# installs must be let in.
region_sigbus() {
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}allow_user_segv_handler=1 \
	    preloaded region-sigbus pay-process "$@"
}

# A region that Berkeley DB grows while it opens the state (recovery)
# is past the space reserved for it afterwards: on a full disk, a SIGBUS.
@test "pay-process: a bus error while the state opens is exit 1 naming the state directory, not a signal" {
	local st="$BATS_TEST_TMPDIR/state" ev="$BATS_TEST_TMPDIR/ev.jsonl"
	mkev o-bus1 pm_card_visa >"$ev"
	run --separate-stderr region_sigbus -i "$ev" -o - --state "$st"
	assert_failure 1
	assert_output ""
	[[ "$stderr" == *"pay-process: store: $st: a bus error while Berkeley DB opened its regions there: the disk is probably full; free space there and start again"* ]] ||
	    fail "stderr: $stderr"
	# The line prepared before the fault is in the log's format.
	run --separate-stderr region_sigbus --log-format json -i "$ev" -o - \
	    --state "$BATS_TEST_TMPDIR/state2"
	assert_failure 1
	jq -e -s --arg st "$BATS_TEST_TMPDIR/state2" 'length == 1 and
	    .[0].level == "error" and .[0].prog == "pay-process" and
	    (.[0].msg | startswith("store: \($st): a bus error"))' \
	    <<<"$stderr" >/dev/null || fail "stderr: $stderr"

	# The next start opens the state again and pays the order once.
	run --separate-stderr pay-process -i "$ev" -o - --state "$st"
	assert_success
	printf '%s\n' "$output" | jq -e -s 'length == 1 and
	    .[0].data.order_id == "o-bus1" and .[0].data.status == "approved"' \
	    >/dev/null || fail "output: $output"
}

@test "pay-process: a damaged state file is reported as damage, once, with what to do" {
	local st="$BATS_TEST_TMPDIR/state" ev="$BATS_TEST_TMPDIR/ev.jsonl"
	mkev o-d1 pm_card_visa >"$ev"
	run --separate-stderr pay-process -i "$ev" -o - --state "$st"
	assert_success
	cp -a "$st" "$BATS_TEST_TMPDIR/good"
	# Random bytes over the first two pages.  Whatever they are, the
	# table is named as damaged: by the check of its first page before
	# recovery, or by Berkeley DB, which reads such a page as encrypted.
	head -c 8192 /dev/urandom |
	    dd of="$st/idem.db" conv=notrunc status=none
	run --separate-stderr pay-process -i "$ev" -o - --state "$st"
	assert_failure 1
	[[ "$stderr" == *"store: $st: "*": the state is damaged"*"restore it from a backup, or move it aside"* ]] ||
	    fail "stderr: $stderr"
	[ "$(grep -c 'Encrypted database' <<<"$stderr")" -le 1 ] ||
	    fail "repeated: $stderr"

	# The same with the byte that marks a page as encrypted zero (one
	# page in 256 of random bytes): recovery used to meet it first and
	# fail with no word of the file ("Recovery function ... failed",
	# DB_RUNRECOVERY).
	rm -rf "$st"
	cp -a "$BATS_TEST_TMPDIR/good" "$st"
	head -c 8192 /dev/urandom >"$BATS_TEST_TMPDIR/page"
	printf '\0' | dd of="$BATS_TEST_TMPDIR/page" bs=1 seek=24 \
	    conv=notrunc status=none
	dd if="$BATS_TEST_TMPDIR/page" of="$st/idem.db" conv=notrunc \
	    status=none
	run --separate-stderr pay-process -i "$ev" -o - --state "$st"
	assert_failure 1
	[[ "$stderr" == *"store: $st/idem.db: unexpected file type or format"*"(damaged state)"* ]] ||
	    fail "stderr: $stderr"
	[[ "$stderr" == *"store: $st: "*": the state is damaged"*"restore it from a backup, or move it aside"* ]] ||
	    fail "stderr: $stderr"
	[[ "$stderr" != *"DB_RUNRECOVERY"* ]] || fail "stderr: $stderr"
}

# A page that names itself as its child: an inner btree page (type 3 at
# level 2) whose one entry points to page 1, in pages of $2 bytes.
self_child_page() {
	local f=$1 ps=$2 e
	e=$(printf '\\%03o\\%03o' $(((ps - 12) % 256)) $(((ps - 12) / 256)))
	head -c "$ps" /dev/zero >"$f"
	printf '\001\000\000\000' |
	    dd of="$f" bs=1 seek=8 conv=notrunc status=none
	printf "\\001\\000$e\\002\\003$e" |
	    dd of="$f" bs=1 seek=20 conv=notrunc status=none
	printf '\000\000\001\000\001\000\000\000' |
	    dd of="$f" bs=1 seek=$((ps - 12)) conv=notrunc status=none
}

# A table's root that names itself as its child: Berkeley DB waits for
# ever on the page's latch, which it holds itself.  In a slot (idem-g0.db)
# that hung the open, silent and deaf to SIGTERM; in idem-gen.db, the
# first payment, until the stall monitor blamed a dead process's mutex
# (and a root of no known type there kept a thread busy for ever).  The
# open now reads every table under the monitor's watch.
@test "pay-process: a damaged page that hangs the open is exit 1 naming the file, within the stall time" {
	local st="$BATS_TEST_TMPDIR/state" ev="$BATS_TEST_TMPDIR/ev.jsonl"
	local page="$BATS_TEST_TMPDIR/page" t ps
	mkev o-d2 pm_card_visa >"$ev"
	run --separate-stderr pay-process -i "$ev" -o - --state "$st"
	assert_success
	cp -a "$st" "$BATS_TEST_TMPDIR/good"
	for t in idem-g0.db idem-gen.db; do
		rm -rf "$st"
		cp -a "$BATS_TEST_TMPDIR/good" "$st"
		# The page size, from the table's first page.
		ps=$(od -An -tu4 -j20 -N4 "$st/$t" | tr -d ' ')
		self_child_page "$page" "$ps"
		dd if="$page" of="$st/$t" bs="$ps" seek=1 conv=notrunc \
		    status=none
		run --separate-stderr env ORDERFLOW_STORE_STALL_MS=1000 \
		    timeout -s KILL 60 pay-process -i "$ev" -o - --state "$st"
		assert_failure 1
		assert_output ""
		[[ "$stderr" == *"pay-process: store: $st/$t: opening it has made no progress for 1000 ms"*"check the file with db_verify(1)"* ]] ||
		    fail "$t: stderr: $stderr"
	done
}

# deep_damage FILE HOW: changes the last leaf of the btree FILE, the one a
# key after all others leads to, as HOW says: "loop" makes it and the leaf
# before it inner pages that name each other as their child, "type" gives
# it a page type Berkeley DB does not know.  The root must be an inner page
# of at least two children.
deep_damage() {
	python3 - "$1" "$2" <<'PY'
import struct, sys
fn, how = sys.argv[1], sys.argv[2]
b = bytearray(open(fn, "rb").read())
ps = struct.unpack_from("<I", b, 20)[0]
root = b[ps:2 * ps]
n, typ = struct.unpack_from("<H", root, 20)[0], root[25]
assert typ == 3 and n >= 2, "the root is not an inner page of two children"
kids = [struct.unpack_from("<I", root,
    struct.unpack_from("<H", root, 26 + 2 * i)[0] + 4)[0] for i in range(n)]
def inner(pg, child):
    p = bytearray(ps)
    struct.pack_into("<IIIHHBB", p, 8, pg, 0, 0, 1, ps - 12, 2, 3)
    struct.pack_into("<H", p, 26, ps - 12)
    struct.pack_into("<HBBII", p, ps - 12, 0, 1, 0, child, 0)
    b[pg * ps:(pg + 1) * ps] = p
if how == "loop":
    inner(kids[-1], kids[-2])
    inner(kids[-2], kids[-1])
else:
    b[kids[-1] * ps + 25] = 99
open(fn, "wb").write(b)
PY
}

# Damage deeper than the open reads shows when a record leads there, as an
# error: the worker reopens the state, which recovery cannot mend, and the
# record goes to the dead letter topic when its attempts run out, while a
# record that leads elsewhere is paid (here a repeat, answered from its
# record).  The first error is marked as damage; the reopen says what to do.
@test "pay-process: a damaged page deep in a table fails only the records that lead there, and says so" {
	local st="$BATS_TEST_TMPDIR/state" ev="$BATS_TEST_TMPDIR/ev.jsonl"
	local in="$BATS_TEST_TMPDIR/in.jsonl" slot how i
	for ((i = 100; i < 400; i++)); do
		mkev "o-deep$i" pm_card_visa
	done >"$ev"
	run --separate-stderr pay-process -i "$ev" -o - --state "$st"
	assert_success
	cp -a "$st" "$BATS_TEST_TMPDIR/good"
	# The slot of this period holds the 300 records: the largest.
	slot=$(ls -S "$st"/idem-g[0-9].db | head -n 1)
	{ head -n 1 "$ev"; mkev o-deep999 pm_card_visa; } >"$in"
	for how in loop type; do
		rm -rf "$st"
		cp -a "$BATS_TEST_TMPDIR/good" "$st"
		deep_damage "$slot" "$how" || fail "$how: cannot damage $slot"
		rm -f "$BATS_TEST_TMPDIR/dlq.jsonl"
		# One record at a time: a record in the same store batch as
		# the damaged one would fail with it.
		run --separate-stderr timeout -s KILL 60 pay-process \
		    --concurrency 1 --backoff 10ms --max-attempts 2 -i "$in" \
		    -o - --state "$st" --dlq "$BATS_TEST_TMPDIR/dlq.jsonl"
		assert_success
		printf '%s\n' "$output" | jq -e -s 'length == 1 and
		    .[0].data.order_id == "o-deep100" and
		    .[0].data.status == "approved"' >/dev/null ||
		    fail "$how: output: $output"
		jq -e -s 'length == 1 and .[0].topic == "order-created-dlq" and
		    .[0].headers["orderflow.error.kind"] == "exhausted" and
		    (.[0].value | fromjson | .subject) == "o-deep999"' \
		    "$BATS_TEST_TMPDIR/dlq.jsonl" >/dev/null ||
		    fail "$how: dead letters: $(cat "$BATS_TEST_TMPDIR/dlq.jsonl")"
		[ "$(grep -c '(damaged state)' <<<"$stderr")" -eq 1 ] ||
		    fail "$how: stderr: $stderr"
		[[ "$stderr" == *"reopening it, which recovers it; recovery does not mend a damaged page"*"db_verify(1)"*"restore it from a backup"* ]] ||
		    fail "$how: stderr: $stderr"
	done
}
