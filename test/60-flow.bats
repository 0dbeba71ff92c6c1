#!/usr/bin/env bats
# 60-flow.bats - the whole flow end to end on the real broker: orders
# through order-submit and order-serve, paid by pay-process, notified by
# notify, each outcome compared with what the simulator's rules of pay-process(1)
# predict (computed here, independently of the commands); the broker-less
# pipe mode giving the same notifications; the trace from POST /orders to
# the notification; scripts/flow and its summary; the systemd units.

load test_helper

BACKOFF=50ms
MAX_ATTEMPTS=5
LIMIT=1000000

# Processes a test started itself; teardown stops whichever still run.
PIDS=()

teardown() {
	stop_pids
}

# gen_orders N ID-PREFIX: N orders, one a line, with a deterministic mix of
# payment methods and totals that reaches every rule of the simulator and
# its edges (the limit itself, one over it, the last attempt).
gen_orders() {
	jq -nc --argjson n "$1" --arg p "$2" '
	[ ["pm_card_visa",       [[1, 2500]]],
	  ["pm_card_mastercard", [[3, 1250], [1, 99]]],
	  ["pm_card_declined",   [[1, 2500]]],
	  ["pm_card_visa",       [[4, 250000]]],
	  ["pm_card_visa",       [[1, 1000000], [1, 1]]],
	  ["pm_card_amex",       [[2, 1000000]]],
	  [null,                 [[2, 700]]],
	  ["pm_transient_1",     [[1, 500]]],
	  ["pm_transient_2",     [[1, 500]]],
	  ["pm_gateway_error",   [[1, 500]]],
	  ["pm_transient_4",     [[1, 500]]],
	  ["pm_transient_5",     [[1, 500]]],
	  ["pm_card_visa",       [[1000, 1000]]],
	  ["pm_card_declined",   [[1, 100]]],
	  ["pm_card_visa",       [[7, 333]]],
	  ["pm_transient_9",     [[1, 100]]] ] as $mix |
	range(1; $n + 1) | . as $i | $mix[$i % ($mix | length)] as [$m, $it] |
	{order_id: "\($p)\($i)", customer_id: "c-\($i % 37)",
	 email: "u\($i)@example.com", currency: (["EUR", "USD"][$i % 2]),
	 items: [$it | to_entries[] |
	    {sku: "S-\(.key)", qty: .value[0], unit_price: .value[1]}]} +
	(if $m == null then {} else {payment_method: $m} end)'
}

# expected < ORDERS: per order "ORDER_ID OUTCOME AMOUNT" by the rules of
# pay-process(1): pm_card_declined declined; pm_gateway_error a permanent dead
# letter; pm_transient_N failing N attempts (approved if an attempt is
# left, else an exhausted dead letter); pm_card_* (the default) approved
# unless the total is above the limit.
expected() {
	jq -r --argjson max "$MAX_ATTEMPTS" --argjson limit "$LIMIT" '
	(.payment_method // "pm_card_visa") as $m |
	([.items[] | .qty * .unit_price] | add) as $t |
	(if $m == "pm_card_declined" then "declined:card_declined"
	 elif $m == "pm_gateway_error" then "dlq:permanent"
	 elif ($m | test("^pm_transient_[1-9]$")) then
		(if ($m | ltrimstr("pm_transient_") | tonumber) < $max
		 then "approved" else "dlq:exhausted" end)
	 elif ($m | startswith("pm_card_")) then
		(if $t > $limit then "declined:limit_exceeded" else "approved" end)
	 else error("no rule for \($m)") end) as $o |
	"\(.order_id) \($o) \(if ($o | startswith("dlq")) then "-" else $t end)"' |
	    sort
}

# The retry records the rules predict: min(N, attempts - 1) per
# pm_transient_N order.
expected_retries() {
	jq -s --argjson max "$MAX_ATTEMPTS" '[.[] | .payment_method // "" |
	    select(test("^pm_transient_[1-9]$")) |
	    ltrimstr("pm_transient_") | tonumber |
	    [., $max - 1] | min] | add // 0'
}

# outcomes NOTIFICATIONS DLQ-LINES: "ORDER_ID OUTCOME AMOUNT", one line
# per notification (repeats kept: there must be none) and one per distinct
# dead letter (repeats in a topic are allowed).  DLQ-LINES holds
# "ORDER_ID KIND" lines.
outcomes() {
	{
		jq -r '"\(.order_id) \(.status)\(if .status == "declined"
		    then ":" + .reason else "" end) \(.amount)"' "$1"
		sort -u "$2" | awk '{ print $1, "dlq:" $2, "-" }'
	} | sort
}

# dlq_topic TOPIC: "ORDER_ID KIND" for each record of the prefixed TOPIC.
dlq_topic() {
	timeout 60 kcat -C -b "$KAFKA_BROKERS" -t "${PREFIX}$1" -o beginning \
	    -e -q -J -X fetch.wait.max.ms=10 |
	    jq -r '(.headers // []) as $h | [range(0; $h | length; 2) |
		select($h[.] == "orderflow.error.kind") | $h[. + 1]] as $k |
		"\(.key) \($k | last)"'
}

# pipe_flow ORDERS DIR: the broker-less flow over ORDERS, with its own
# state: notifications in DIR/notes.jsonl, dead letters in DIR/dlq.txt.
pipe_flow() {
	mkdir -p "$2"
	ORDERFLOW_STATE=$2/state timeout 120 bash -c '
	    set -o pipefail
	    order-submit -o - < "$1" |
		pay-process -i - -o - --backoff "$3" --dlq "$2/dead.jsonl" |
		notify -i - > "$2/notes.jsonl"' _ "$1" "$2" "$BACKOFF" \
	    2> "$2/stderr" || { cat "$2/stderr" >&2; return 1; }
	touch "$2/dead.jsonl"
	jq -r '"\(.value | fromjson | .subject) \(.headers["orderflow.error.kind"])"' \
	    "$2/dead.jsonl" > "$2/dlq.txt"
}

# ids NOTIFICATIONS: "ORDER_ID STATUS NOTIFICATION_ID EVENT_ID", sorted.
ids() {
	jq -r '"\(.order_id) \(.status) \(.notification_id) \(.event_id)"' "$1" |
	    sort
}

# check_flow ORDERS WORKDIR: the broker flow's outcomes (scripts/flow -d
# WORKDIR ran) are those predicted, one notification per notified order;
# the pipe mode over the same orders gives the same notifications, with
# the same ids.
check_flow() {
	local orders=$1 w=$2

	expected < "$orders" > "$w/expected.txt"
	{ dlq_topic order-created-dlq; dlq_topic payment-processed-dlq; } \
	    > "$w/dlq.txt"
	outcomes "$w/notifications.jsonl" "$w/dlq.txt" > "$w/actual.txt"
	run diff "$w/expected.txt" "$w/actual.txt"
	assert_success
	# exactly one notification per notified order, and nothing else
	run bash -c "jq -r .order_id '$w/notifications.jsonl' | sort | uniq -d"
	assert_output ''

	pipe_flow "$orders" "$w/pipe"
	outcomes "$w/pipe/notes.jsonl" "$w/pipe/dlq.txt" > "$w/pipe/actual.txt"
	run diff "$w/expected.txt" "$w/pipe/actual.txt"
	assert_success
	ids "$w/notifications.jsonl" > "$w/ids.txt"
	ids "$w/pipe/notes.jsonl" > "$w/pipe/ids.txt"
	run diff "$w/ids.txt" "$w/pipe/ids.txt"
	assert_success
}

# check_summary JSON ORDERS: scripts/flow -J's counts are the predicted ones.
check_summary() {
	local e=$BATS_TEST_TMPDIR/expected-counts

	expected < "$2" > "$e"
	run jq -n --argjson s "$1" --argjson retries "$(expected_retries < "$2")" \
	    --argjson retried "$(jq -s '[.[] | .payment_method // "" |
		select(test("^pm_transient_[1-9]$"))] | length' "$2")" \
	    --rawfile e "$e" '
	    ($e | split("\n") | map(select(. != "") | split(" ")[1])) as $o |
	    def n(f): [$o[] | select(f)] | length;
	    def by(p): [$o[] | select(startswith(p)) | ltrimstr(p)] |
		group_by(.) | map({(.[0]): length}) | add // {};
	    {orders: ($o | length), accepted: ($o | length), rejected: 0,
	     unsent: 0, approved: n(. == "approved"),
	     declined: n(startswith("declined")),
	     dead_lettered: n(startswith("dlq")),
	     notifications: n(startswith("dlq") | not), missing: 0,
	     retried: $retried, retry_records: $retries,
	     declined_reasons: by("declined:"), dead_letter_kinds: by("dlq:")}
	    as $want |
	    $want | to_entries[] | select($s[.key] != .value) |
	    "\(.key): want \(.value), got \($s[.key])"'
	assert_success
	assert_output ''
}

@test "1,000 orders through order-submit: one notification each, as the rules predict; pipe mode gives the same" {
	new_flow 3
	local w=$BATS_TEST_TMPDIR/w

	gen_orders 1000 "s-" > "$BATS_TEST_TMPDIR/orders.jsonl"
	run --separate-stderr timeout 150 flow -J -d "$w" -t 90 \
	    --backoff "$BACKOFF" --max-attempts "$MAX_ATTEMPTS" \
	    "$BATS_TEST_TMPDIR/orders.jsonl"
	echo "$stderr"
	assert_success
	check_summary "$output" "$BATS_TEST_TMPDIR/orders.jsonl"
	run jq -r .order_id "$w/receipts.jsonl"
	assert_equal "${#lines[@]}" 1000
	check_flow "$BATS_TEST_TMPDIR/orders.jsonl" "$w"
}

@test "two hosts, simulated: two pay-process and two notify with their own state, one of each killed with SIGKILL mid-run: one payment event id and one notification id per order, nothing lost" {
	new_flow 6
	local w=$BATS_TEST_TMPDIR/w n=2000 half pp nt
	local -a kx=(-X session.timeout.ms=6000 -X heartbeat.interval.ms=1000)
	local -a wx=(--backoff "$BACKOFF" --max-attempts "$MAX_ATTEMPTS")

	mkdir -p "$w/notes"
	gen_orders "$n" "h-" >"$w/orders.jsonl"
	half=$((n / 2))
	head -n "$half" "$w/orders.jsonl" >"$w/first.jsonl"
	tail -n +"$((half + 1))" "$w/orders.jsonl" >"$w/second.jsonl"
	expected <"$w/orders.jsonl" >"$w/expected.txt"
	# A host each: its own state directory; the groups are the
	# commands' own (the topic prefix and the command's name).
	start_host() {
		pay-process --state "$w/state/pp.$1" "${wx[@]}" "${kx[@]}" \
		    </dev/null >/dev/null 2>>"$w/pp.$1.err" &
		PIDS+=($!)
		notify --state "$w/state/nt.$1" "${wx[@]}" "${kx[@]}" \
		    </dev/null >"$w/notes/$1.jsonl" 2>>"$w/nt.$1.err" &
		PIDS+=($!)
	}
	notified() {
		cat "$w"/notes/*.jsonl | jq -R -r 'fromjson? | .order_id' |
		    sort -u | wc -l
	}
	at_least_notified() { [ "$(notified)" -ge "$1" ]; }
	# has_share FILE: the process logging to FILE has partitions.
	has_share() { grep -q 'kafka: assigned [1-9]' "$1"; }
	start_host a
	start_host b
	pp=${PIDS[0]} nt=${PIDS[1]}
	# Each host has its share before the orders come: both work.
	for f in pp.a pp.b nt.a nt.b; do
		wait_until 60 has_share "$w/$f.err"
	done
	timeout 120 order-submit -q -m 60s "$w/first.jsonl" >/dev/null
	wait_until 120 at_least_notified $((half / 2))
	# Host a's two processes die mid-run and do not come back: b takes
	# their partitions once their sessions ran out, without their state.
	kill -KILL "$pp" "$nt"
	wait "$pp" || :
	wait "$nt" || :
	timeout 120 order-submit -q -m 60s "$w/second.jsonl" >/dev/null
	# Every order the rules give a payment is notified, and every one
	# they give a dead letter is in the DLQ (an exhausted order may
	# still be waiting for its last retry when the last one is notified).
	want=$(grep -vc ' dlq:' "$w/expected.txt")
	dead=$(grep -c ' dlq:' "$w/expected.txt")
	dead_letters() { dlq_topic order-created-dlq | sort -u | wc -l; }
	at_least_dead() { [ "$(dead_letters)" -ge "$1" ]; }
	wait_until 180 at_least_notified "$want"
	wait_until 180 at_least_dead "$dead"
	for p in "${PIDS[2]}" "${PIDS[3]}"; do
		kill -TERM "$p"
		st=0
		wait "$p" || st=$?
		[ "$st" = 0 ] || { cat "$w"/*.err; false; }
	done
	PIDS=()

	# payment-processed, repeats and all: "ORDER_ID EVENT_ID OUTCOME
	# AMOUNT"; a repeat (b redoing what a had not committed) is the same
	# event again, with its id.
	timeout 60 kcat -C -b "$KAFKA_BROKERS" -t "${PREFIX}payment-processed" \
	    -o beginning -e -q -X fetch.wait.max.ms=10 |
	    jq -r '.id as $id | .data | "\(.order_id) \($id) \(.status)\(if
	    .status == "declined" then ":" + .reason else "" end) \(.amount)"' |
	    sort -u >"$w/payments.txt"
	run --separate-stderr bash -c "cut -d' ' -f1 '$w/payments.txt' | sort | uniq -d"
	assert_output ''
	# Complete notification lines (a SIGKILL may cut one): one
	# notification id per order, for its payment's event.
	cat "$w"/notes/*.jsonl | jq -R -c 'fromjson?' >"$w/notifications.jsonl"
	jq -r '"\(.order_id) \(.notification_id) \(.event_id)"' \
	    "$w/notifications.jsonl" | sort -u >"$w/ids.txt"
	run --separate-stderr bash -c "cut -d' ' -f1 '$w/ids.txt' | sort | uniq -d"
	assert_output ''
	[ "$(cut -d' ' -f2 "$w/ids.txt" | sort -u | wc -l)" -eq "$want" ]
	run --separate-stderr diff <(cut -d' ' -f1,3 "$w/ids.txt" | sort) \
	    <(cut -d' ' -f1,2 "$w/payments.txt" | sort)
	assert_success
	# Nothing lost: every order has the outcome its rules give, paid and
	# notified, or in the dead-letter topic.
	{ dlq_topic order-created-dlq; dlq_topic payment-processed-dlq; } \
	    >"$w/dlq.txt"
	jq -s -c 'group_by(.order_id) | map(.[0]) | .[]' \
	    "$w/notifications.jsonl" >"$w/notes.distinct"
	outcomes "$w/notes.distinct" "$w/dlq.txt" >"$w/actual.txt"
	run --separate-stderr diff "$w/expected.txt" "$w/actual.txt"
	assert_success
	run --separate-stderr diff <(grep -v ' dlq:' "$w/expected.txt") \
	    <(cut -d' ' -f1,3,4 "$w/payments.txt" | sort)
	assert_success
	# The survivors took the dead ones' share over: assigned partitions
	# again after the kill.
	[ "$(grep -c 'kafka: assigned [1-9]' "$w/pp.b.err")" -ge 2 ]
	[ "$(grep -c 'kafka: assigned [1-9]' "$w/nt.b.err")" -ge 2 ]
	echo "notifications: $(wc -l <"$w/notifications.jsonl") lines" \
	    "for $want orders"
}

@test "200 orders through order-serve: one notification each, as the rules predict; pipe mode gives the same" {
	new_flow 3
	local w=$BATS_TEST_TMPDIR/w

	gen_orders 200 "h-" > "$BATS_TEST_TMPDIR/orders.jsonl"
	run --separate-stderr timeout 150 flow -J --http -d "$w" -t 90 \
	    --backoff "$BACKOFF" --max-attempts "$MAX_ATTEMPTS" \
	    "$BATS_TEST_TMPDIR/orders.jsonl"
	echo "$stderr"
	assert_success
	check_summary "$output" "$BATS_TEST_TMPDIR/orders.jsonl"
	# every answer was a 201 naming its order
	run awk '$1 != 201' "$w/http/codes.txt"
	assert_output ''
	run jq -r .order_id "$w"/http/*.json
	assert_equal "${#lines[@]}" 200
	check_flow "$BATS_TEST_TMPDIR/orders.jsonl" "$w"
}

# trace_of FILE ORDER_ID: the distinct trace ids of FILE's JSON log lines
# about ORDER_ID ("none" for a line without one).
trace_of() {
	jq -r --arg o "$2" 'select(.order_id == $o) | .trace_id // "none"' "$1" |
	    sort -u
}

# header_of TOPIC ORDER_ID NAME: header NAME of TOPIC's records keyed
# ORDER_ID, then the value's traceparent, one a line, distinct.
traceparents_in() {
	timeout 60 kcat -C -b "$KAFKA_BROKERS" -t "${PREFIX}$1" -o beginning \
	    -e -q -J -X fetch.wait.max.ms=10 |
	    jq -r --arg o "$2" 'select(.key == $o) | (.headers // []) as $h |
		([range(0; $h | length; 2) | select($h[.] == "traceparent") |
		  "header " + $h[. + 1]] | if . == [] then ["header none"] else . end)[],
		"value " + ((.payload | fromjson | .traceparent) // "none")' |
	    sort -u
}

@test "the traceparent given to POST /orders is in the order's events and in every JSON log line about it, through to its notification" {
	new_flow 3
	local d=$BATS_TEST_TMPDIR port="" o tp tid i st
	local -A trace=(
	    [tr-visa]=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
	    [tr-transient]=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
	    [tr-declined]=00-a1b2c3d4e5f60718293a4b5c6d7e8f90-1122334455667788-01
	    [tr-gateway]=00-fedcba98765432100123456789abcdef-0102030405060708-00)
	local -A method=([tr-visa]=pm_card_visa [tr-transient]=pm_transient_2
	    [tr-declined]=pm_card_declined [tr-gateway]=pm_gateway_error)

	pay-process -v --log-format json --backoff "$BACKOFF" 2> "$d/pay.log" &
	PIDS+=($!)
	notify -v --log-format json > "$d/notes.jsonl" 2> "$d/notify.log" &
	PIDS+=($!)
	order-serve -v --log-format json --listen 127.0.0.1:0 2> "$d/serve.log" &
	PIDS+=($!)
	get_port() {
		port=$(sed -n 's/.*listening on .*(port \([0-9][0-9]*\)).*/\1/p' \
		    "$d/serve.log")
		[ -n "$port" ]
	}
	wait_until 20 get_port
	wait_until 20 curl -fs -o /dev/null "http://127.0.0.1:$port/healthz"

	for o in "${!trace[@]}"; do
		run curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
		    -H 'Content-Type: application/json' \
		    -H "traceparent: ${trace[$o]}" \
		    --data "{\"order_id\":\"$o\",\"customer_id\":\"c-1\",\"email\":\"t@example.com\",\"currency\":\"EUR\",\"items\":[{\"sku\":\"T\",\"qty\":1,\"unit_price\":990}],\"payment_method\":\"${method[$o]}\"}" \
		    "http://127.0.0.1:$port/orders"
		assert_output 201
	done
	notified() {
		[ "$(jq -r .order_id "$d/notes.jsonl" | sort -u | wc -l)" -ge 3 ] &&
		    dlq_topic order-created-dlq | grep -q '^tr-gateway '
	}
	wait_until 60 notified
	for i in "${!PIDS[@]}"; do
		kill -TERM "${PIDS[$i]}"
		st=0
		wait "${PIDS[$i]}" || st=$?
		assert_equal "$st" 0
	done
	PIDS=()

	run jq -r .order_id "$d/notes.jsonl"
	assert_equal "$(printf '%s\n' "${lines[@]}" | sort | tr '\n' ' ')" \
	    "tr-declined tr-transient tr-visa "
	for o in "${!trace[@]}"; do
		tp=${trace[$o]}
		tid=${tp:3:32}
		# the events: the order's, its retries or dead letter, its payment
		run traceparents_in order-created "$o"
		assert_output "$(printf 'header %s\nvalue %s' "$tp" "$tp")"
		case $o in
		tr-gateway)
			run traceparents_in order-created-dlq "$o"
			assert_output "$(printf 'header %s\nvalue %s' "$tp" "$tp")"
			;;
		*)
			run traceparents_in payment-processed "$o"
			assert_output "$(printf 'header %s\nvalue %s' "$tp" "$tp")"
			;;
		esac
		if [ "$o" = tr-transient ]; then
			run traceparents_in order-created-retry "$o"
			assert_output "$(printf 'header %s\nvalue %s' "$tp" "$tp")"
		fi
		# the logs: each command said something about the order, and
		# every line about it carries its trace id
		for f in serve pay notify; do
			[ "$o" = tr-gateway ] && [ "$f" = notify ] && continue
			run trace_of "$d/$f.log" "$o"
			echo "$f.log, order $o:"
			assert_output "$tid"
		done
	done
}

@test "scripts/flow runs the sample orders and prints the summary of what happened" {
	new_flow 3
	run --separate-stderr timeout 120 flow -d "$BATS_TEST_TMPDIR/w" \
	    --backoff "$BACKOFF" < "$ROOT/scripts/orders.sample.jsonl"
	echo "$stderr"
	assert_success
	assert_line --regexp '^orders +7  \(7 accepted, 0 rejected\)$'
	assert_line --regexp '^approved +4$'
	assert_line --regexp '^declined +2  \(card_declined 1, limit_exceeded 1\)$'
	assert_line --regexp '^retried +1  \(2 retry records\)$'
	assert_line --regexp '^dead-lettered +1  \(permanent 1\)$'
	assert_line --regexp '^notifications +6$'
	refute_line --regexp '^missing'
	# the counts are those of the outputs: the sample shows every path
	expected < "$ROOT/scripts/orders.sample.jsonl" > "$BATS_TEST_TMPDIR/e"
	run awk '{ print $2 }' "$BATS_TEST_TMPDIR/e"
	assert_output "$(printf '%s\n' approved approved approved \
	    declined:card_declined declined:limit_exceeded approved dlq:permanent)"
	run jq -r '.payment_method // "-"' "$ROOT/scripts/orders.sample.jsonl"
	assert_line pm_transient_2
}

@test "scripts/flow counts rejected lines, exits 3, and stops at its deadline with exit 1, leaving nothing running" {
	new_flow 3
	local w=$BATS_TEST_TMPDIR/w pid pids

	{
		head -n 1 "$ROOT/scripts/orders.sample.jsonl"
		echo '{"order_id":"bad-1","customer_id":"c","email":"e@example.com","currency":"eur","items":[]}'
	} > "$BATS_TEST_TMPDIR/mixed.jsonl"
	run --separate-stderr timeout 120 flow -J -d "$w" \
	    "$BATS_TEST_TMPDIR/mixed.jsonl"
	assert_failure 3
	assert_equal "$(jq -c '[.orders, .accepted, .rejected, .approved]' \
	    <<<"$output")" '[2,1,1,1]'
	[[ $stderr == *mixed.jsonl:2:* ]]

	# a retry due in a minute cannot settle within a 3 s deadline
	echo '{"order_id":"slow-1","customer_id":"c","email":"e@example.com","currency":"EUR","items":[{"sku":"S","qty":1,"unit_price":1}],"payment_method":"pm_transient_1"}' \
	    > "$BATS_TEST_TMPDIR/slow.jsonl"
	run --separate-stderr timeout 120 flow -J -d "$w.2" -t 3 \
	    --backoff 1m "$BATS_TEST_TMPDIR/slow.jsonl"
	assert_failure 1
	assert_equal "$(jq -c '[.accepted, .missing, .retried]' <<<"$output")" \
	    '[1,1,1]'
	[[ $stderr == *"deadline: 1 of 1 order(s)"* ]]
	# pay-process and notify, both gone
	pids=$(sed -n 's/.*started .* (pid \([0-9]*\))$/\1/p' <<<"$stderr")
	assert_equal "$(wc -w <<<"$pids")" 2
	for pid in $pids; do
		run kill -0 "$pid"
		assert_failure 1
	done
}

@test "scripts/flow stops everything it started when it is sent SIGTERM" {
	new_flow 3
	local w=$BATS_TEST_TMPDIR/w pid pids st

	echo '{"order_id":"term-1","customer_id":"c","email":"e@example.com","currency":"EUR","items":[{"sku":"S","qty":1,"unit_price":1}],"payment_method":"pm_transient_1"}' |
	    flow -d "$w" --backoff 10m > "$w.out" 2> "$w.err" &
	pid=$!
	PIDS+=("$pid")
	waiting() { grep -q 'waiting for their notifications' "$w.err"; }
	wait_until 60 waiting
	pids=$(sed -n 's/.*started .* (pid \([0-9]*\))$/\1/p' "$w.err")
	assert_equal "$(wc -w <<<"$pids")" 2
	kill -TERM "$pid"
	st=0
	wait "$pid" || st=$?
	assert_equal "$st" 143
	for pid in $pids; do
		run kill -0 "$pid"
		assert_failure
	done
	PIDS=()
}

@test "the systemd units of scripts/systemd pass systemd-analyze verify" {
	local u d=$BATS_TEST_TMPDIR/units

	command -v systemd-analyze >/dev/null ||
	    fail "systemd-analyze not found: install systemd"
	mkdir -p "$d"
	# the units name the installed binaries; point them at bin/
	for u in order-serve pay-process notify; do
		sed "s|/usr/local/bin/|$ROOT/bin/|" \
		    "$ROOT/scripts/systemd/$u.service" > "$d/$u.service"
		grep -q '^Restart=on-failure$' "$d/$u.service"
		grep -q '^KillSignal=SIGTERM$' "$d/$u.service"
		grep -q '^EnvironmentFile=/etc/orderflow/env$' "$d/$u.service"
		grep -q "^ExecStart=$ROOT/bin/$u --state /var/lib/orderflow/$u " \
		    "$d/$u.service"
	done
	run systemd-analyze verify --man=no "$d"/*.service
	assert_success
	assert_output ''
}
