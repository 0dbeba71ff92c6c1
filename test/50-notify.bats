#!/usr/bin/env bats
# 50-notify.bats - notify against a real broker: one notification per
# payment.processed event, the stdout line, signed webhooks to a local
# receiver (test/fixtures/webhook-receiver) answering 200, 400 or nothing,
# --exec with a failing then a working command, invalid events to the DLQ,
# pipe mode and the whole pipeline of orderflow(7).

load test_helper

FIXTURES="$BATS_TEST_DIRNAME/fixtures"
TRACEPARENT=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01

setup() {
	NOTIFY_PID=
	OTHER_PID=
	RECEIVER_PID=
	OUT="$BATS_TEST_TMPDIR/out"
	ERR="$BATS_TEST_TMPDIR/err"
}

teardown() {
	if [ -n "$RECEIVER_PID" ]; then
		stop_receiver
	fi
	for p in $NOTIFY_PID $OTHER_PID; do
		kill -KILL "$p" 2>/dev/null || true
		{ wait "$p" || true; } 2>/dev/null
	done
	if [ -n "${BATS_TEST_COMPLETED:-}" ]; then
		return 0
	fi
	for f in "$ERR" "$BATS_TEST_TMPDIR/receiver.err"; do
		[ -s "$f" ] && { echo "--- $f"; tail -n 40 "$f"; } >&3
	done
	return 0
}

# payment_event ORDER STATUS AMOUNT [REASON]: a new payment.processed.v1
# event (a fresh id) as one JSON line.
payment_event() {
	jq -cn --arg id "$(cat /proc/sys/kernel/random/uuid)" --arg order "$1" \
	    --arg status "$2" --argjson amount "$3" --arg reason "${4:-}" \
	    --arg tp "$TRACEPARENT" '{
		specversion: "1.0", id: $id, source: "/test/50-notify",
		type: "payment.processed.v1", subject: $order,
		time: "2026-11-26T10:00:00Z",
		datacontenttype: "application/json", traceparent: $tp,
		data: ({order_id: $order, payment_id: ("p-" + $order),
		    status: $status, amount: $amount, currency: "EUR",
		    customer_id: "c-42", email: ($order + "@example.com")} +
		    (if $reason == "" then {} else {reason: $reason} end))
	}'
}

# produce TOPIC VALUE...: each value to the flow's TOPIC, keyed by its
# subject (or "k" when it has none).
produce() {
	local topic="$PREFIX$1" v
	shift
	for v in "$@"; do
		printf '%s|%s\n' \
		    "$(jq -r '.subject // "k"' <<<"$v" 2>/dev/null || echo k)" "$v"
	done | timeout 30 kcat -P -b "$KAFKA_BROKERS" -t "$topic" -K '|' \
	    -H content-type=application/cloudevents+json
}

# records TOPIC: the records of the flow's TOPIC as JSON lines of key,
# payload and headers (an object).
records() {
	timeout 30 kcat -C -b "$KAFKA_BROKERS" -t "$PREFIX$1" -e -J -q |
	    jq -c '{key, payload, headers: ((.headers // []) as $h |
		[range(0; $h | length; 2) | {key: $h[.], value: $h[. + 1]}] |
		from_entries)}'
}

# count_records TOPIC JQ-FILTER N: whether exactly N records pass the filter.
count_records() {
	[ "$(records "$1" | jq -c "select($2)" | wc -l)" -eq "$3" ]
}

# count_at_least TOPIC FILTER N: at least N records match FILTER.
count_at_least() {
	[ "$(records "$1" | jq -c "select($2)" | wc -l)" -ge "$3" ]
}

lines() {
	if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi
}

has_lines() {
	[ "$(lines "$1")" -eq "$2" ]
}

# many_payments N ORDERS: N payment.processed events (fresh ids), the
# i-th for order o-(i % ORDERS), keyed by the order, produced in one go.
many_payments() {
	jq -rn --argjson n "$1" --argjson m "$2" --arg run "$RANDOM$RANDOM" '
	    range(0; $n) | "o-\(. % $m)" as $o | "\($o)|" +
	    ({specversion: "1.0", id: "p-\($run)-\(.)", source: "/test",
	    type: "payment.processed.v1", subject: $o,
	    time: "2026-11-26T10:00:00Z", datacontenttype: "application/json",
	    data: {order_id: $o, payment_id: "p-\($o)", status: "approved",
	    amount: 2500, currency: "EUR", customer_id: "c-1",
	    email: "a@example.com"}} | tojson)' |
	    timeout 30 kcat -P -b "$KAFKA_BROKERS" -t "${PREFIX}payment-processed" -K '|'
}

# has_at_least N: the receiver logged N requests or more.
has_at_least() {
	[ "$(lines "$BATS_TEST_TMPDIR/received")" -ge "$1" ]
}

start_notify() {
	notify -v --state "$ORDERFLOW_STATE/notify" -G "$GROUP" "$@" \
	    >"$OUT" 2>"$ERR" &
	NOTIFY_PID=$!
}

not_running() {
	! kill -0 "$1" 2>/dev/null
}

# await SECONDS COMMAND...: wait_until for a running notify: fails as
# soon as notify has exited instead of waiting out the deadline.
await() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		if not_running "$NOTIFY_PID"; then
			echo "await: notify exited; waiting for: $*" >&2
			return 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "await: timed out after waiting for: $*" >&2
			return 1
		fi
		sleep 0.1
	done
}

# stop_notify: SIGTERM, then its exit status in $status.
stop_notify() {
	kill -TERM "$NOTIFY_PID"
	wait_until 60 not_running "$NOTIFY_PID"
	status=0
	wait "$NOTIFY_PID" || status=$?
	NOTIFY_PID=
}

new_secret() {
	SECRET="$BATS_TEST_TMPDIR/secret"
	printf 'whsec_%s\n' "$(head -c 24 /dev/urandom | base64)" >"$SECRET"
}

# start_receiver [PORT]: the webhook receiver, answering after
# RECEIVER_DELAY_MS (default 0); sets PORT.
start_receiver() {
	rm -f "$BATS_TEST_TMPDIR/port"
	"$FIXTURES/webhook-receiver" --secret-file "$SECRET" \
	    --log "$BATS_TEST_TMPDIR/received" \
	    --port-file "$BATS_TEST_TMPDIR/port" \
	    --status-file "$BATS_TEST_TMPDIR/status" ${1:+--port "$1"} \
	    --delay-ms "${RECEIVER_DELAY_MS:-0}" \
	    2>>"$BATS_TEST_TMPDIR/receiver.err" &
	RECEIVER_PID=$!
	wait_until 10 test -s "$BATS_TEST_TMPDIR/port"
	PORT=$(cat "$BATS_TEST_TMPDIR/port")
}

stop_receiver() {
	kill -TERM "$RECEIVER_PID"
	wait_until 10 not_running "$RECEIVER_PID"
	wait "$RECEIVER_PID" || true
	RECEIVER_PID=
}

# answered STATUS N: whether the receiver answered STATUS N times.
answered() {
	[ -f "$BATS_TEST_TMPDIR/received" ] &&
	    [ "$(jq -s --argjson s "$1" 'map(select(.status == $s)) | length' \
	    "$BATS_TEST_TMPDIR/received")" -eq "$2" ]
}

duplicate_seen() {
	grep -q 'duplicate: notified already' "$ERR"
}

@test "notify: the same event twice gives one notification; the line's fields" {
	new_flow
	GROUP=$(unique_name notify)
	a=$(payment_event o-1001 approved 2500)
	d=$(payment_event o-1002 declined 999 card_declined)
	produce payment-processed "$a" "$a" "$d"
	start_notify
	await 60 has_lines "$OUT" 2
	await 60 duplicate_seen
	stop_notify
	[ "$status" -eq 0 ]
	has_lines "$OUT" 2
	grep -q 'notified=2 duplicates=1 retried=0 dead-lettered=0' "$ERR"

	run jq -s -e --argjson ev "$a" 'map(select(.order_id == "o-1001")) |
	    length == 1 and (.[0] |
	    .event_id == $ev.id and .notification_id != $ev.id and
	    (.notification_id | test("^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-")) and
	    .payment_id == "p-o-1001" and .customer_id == "c-42" and
	    .channel == "email" and .to == "o-1001@example.com" and
	    .status == "approved" and .amount == 2500 and
	    .currency == "EUR" and (has("reason") | not) and
	    .message == "Payment of EUR 25.00 for order o-1001 approved")' "$OUT"
	assert_success
	assert_output true
	run jq -s -e --argjson ev "$d" 'map(select(.order_id == "o-1002")) |
	    length == 1 and (.[0] | .event_id == $ev.id and .status == "declined" and
	    .amount == 999 and .reason == "card_declined" and
	    .message == "Payment of EUR 9.99 for order o-1002 declined: card_declined")' "$OUT"
	assert_success
	assert_output true
}

@test "notify: the record survives a restart; the notification id depends on the event alone" {
	new_flow
	GROUP=$(unique_name notify)
	a=$(payment_event o-2001 approved 100)
	produce payment-processed "$a"
	start_notify
	await 60 has_lines "$OUT" 1
	stop_notify
	[ "$status" -eq 0 ]
	first=$(jq -r .notification_id "$OUT")

	# Another group reads the event again: the same state drops it.
	GROUP=$(unique_name notify)
	start_notify
	await 60 duplicate_seen
	stop_notify
	[ "$status" -eq 0 ]
	has_lines "$OUT" 0
	grep -q 'notified=0 duplicates=1' "$ERR"

	# A fresh state notifies again, with the same notification id.
	GROUP=$(unique_name notify)
	notify -v --state "$BATS_TEST_TMPDIR/fresh" -G "$GROUP" >"$OUT" \
	    2>"$ERR" &
	NOTIFY_PID=$!
	await 60 has_lines "$OUT" 1
	stop_notify
	[ "$status" -eq 0 ]
	[ "$(jq -r .notification_id "$OUT")" = "$first" ]
}

@test "notify: restarted after SIGKILL on its state, it consumes again within 15 s" {
	new_flow
	GROUP=$(unique_name notify)
	# Longer than the bound: only static membership (by default, the
	# same group.instance.id from the same state directory) can meet it.
	kx=(-X session.timeout.ms=30000)
	produce payment-processed "$(payment_event o-2101 approved 100)"
	start_notify "${kx[@]}"
	await 60 has_lines "$OUT" 1
	kill -KILL "$NOTIFY_PID"
	wait "$NOTIFY_PID" || true
	t0=$(date +%s%3N)
	start_notify "${kx[@]}"
	produce payment-processed "$(payment_event o-2102 approved 100)"
	await 15 has_lines "$OUT" 1
	took=$(($(date +%s%3N) - t0))
	echo "restart to first notification: $took ms"
	[ "$took" -lt 15000 ]
	stop_notify
	[ "$status" -eq 0 ]
	[ "$(jq -r .order_id "$OUT")" = o-2102 ]
}

@test "notify: two instances with their own state, one killed with SIGKILL and restarted: one notification id per payment" {
	new_flow 6
	GROUP=$(unique_name notify)
	n=1000
	# A session longer than the restart takes, however slow the machine:
	# the killed instance's partitions wait for it, not for the other.
	kx=(-X session.timeout.ms=30000 -X heartbeat.interval.ms=1000)
	# payments FROM TO: events for orders o-FROM .. o-(TO-1).
	payments() {
		jq -rn --argjson from "$1" --argjson to "$2" --arg run "$RANDOM$RANDOM" \
		    --arg tp "$TRACEPARENT" '
		    range($from; $to) | "o-\(.)" as $o | "\($o)|" + ({specversion: "1.0",
		    id: "e-\($run)-\(.)", source: "/test/50-notify",
		    type: "payment.processed.v1", subject: $o,
		    time: "2026-11-26T10:00:00Z", datacontenttype: "application/json",
		    traceparent: $tp, data: {order_id: $o, payment_id: "p-\($o)",
		    status: "approved", amount: 100, currency: "EUR",
		    customer_id: "c-42", email: "a@example.com"}} | tojson)' |
		    timeout 60 kcat -P -b "$KAFKA_BROKERS" -t "${PREFIX}payment-processed" -K '|'
	}
	payments 0 $((n / 2))
	# As on two hosts: each instance has a state directory of its own.
	start_one() {
		notify --state "$ORDERFLOW_STATE/$1" -G "$GROUP" "${kx[@]}" \
		    >"$BATS_TEST_TMPDIR/notes.$1.$2" \
		    2>"$BATS_TEST_TMPDIR/err.$1.$2" &
	}
	assigned() { grep -q 'kafka: assigned [1-9]' "$BATS_TEST_TMPDIR/err.$1"; }
	notified() {
		cat "$BATS_TEST_TMPDIR"/notes.* | jq -R -r 'fromjson? | .order_id' |
		    sort -u | wc -l
	}
	at_least_notified() { [ "$(notified)" -ge "$1" ]; }
	start_one a 1
	OTHER_PID=$!
	start_one b 1
	NOTIFY_PID=$!
	wait_until 60 at_least_notified $((n / 4))
	kill -KILL "$OTHER_PID"
	wait "$OTHER_PID" || true
	# The restarted instance, on its state, takes its partitions back
	# (which may be the retry topic's only: the assignor need not split
	# each topic) while the second half comes.
	start_one a 2
	OTHER_PID=$!
	payments $((n / 2)) "$n"
	wait_until 120 at_least_notified "$n"
	wait_until 60 assigned a.2
	for p in "$OTHER_PID" "$NOTIFY_PID"; do
		kill -TERM "$p"
		st=0
		wait "$p" || st=$?
		[ "$st" = 0 ] || { cat "$BATS_TEST_TMPDIR"/err.*; false; }
	done
	NOTIFY_PID= OTHER_PID=
	# Complete lines only (the SIGKILL may have cut one): every payment
	# has one notification id, its own, whichever instance sent it, and
	# as often as it was sent.
	cat "$BATS_TEST_TMPDIR"/notes.* | jq -R -c 'fromjson?' |
	    jq -r '"\(.order_id) \(.notification_id) \(.event_id)"' |
	    sort -u >"$BATS_TEST_TMPDIR/ids"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/ids")" -eq "$n" ]
	[ "$(cut -d' ' -f1 "$BATS_TEST_TMPDIR/ids" | sort -u | wc -l)" -eq "$n" ]
	[ "$(cut -d' ' -f2 "$BATS_TEST_TMPDIR/ids" | sort -u | wc -l)" -eq "$n" ]
}

@test "notify: a second process on one state directory exits 5" {
	new_flow
	GROUP=$(unique_name notify)
	start_notify
	await 30 grep -q 'assigned' "$ERR"
	msg="notify: $ORDERFLOW_STATE/notify: another notify uses this state directory"
	run --separate-stderr notify --state "$ORDERFLOW_STATE/notify" -G "$GROUP"
	[ "$status" -eq 5 ]
	[ "$stderr" = "$msg" ]
	run --separate-stderr notify --state "$ORDERFLOW_STATE/notify" -i - \
	    <<<"$(payment_event o-2201 approved 100)"
	[ "$status" -eq 5 ]
	[ "$stderr" = "$msg" ]
	[ -z "$output" ]
	stop_notify
	[ "$status" -eq 0 ]
}

# refused_on STATE ORDER WHY: notify in pipe mode on STATE, given a
# payment of ORDER, exits 1 with nothing on stdout and WHY on stderr.
refused_on() {
	run --separate-stderr timeout 30 notify --state "$1" -i - \
	    <<<"$(payment_event "$2" approved 100)"
	assert_failure 1
	assert_output ""
	[[ "$stderr" == *"$3"* ]] || fail "stderr: $stderr"
}

# The check is the store's, shared with pay-process (test/40 has every
# case): here that notify makes it, in both modes.
@test "notify: a state directory others can write, or a symbolic link in it: refused with exit 1" {
	local st=$BATS_TEST_TMPDIR/nst victim=$BATS_TEST_TMPDIR/victim
	mkdir -m 0777 "$st"
	chmod 0777 "$st"
	refused_on "$st" o-st1 \
	    "notify: store: $st: writable by group or others (mode 0777); refusing"
	run --separate-stderr timeout 30 notify --state "$st" -b 127.0.0.1:1 \
	    -G "$(unique_name notify)"
	assert_failure 1
	[[ "$stderr" == *"notify: store: $st: writable by group or others"* ]] ||
	    fail "stderr: $stderr"

	chmod 0700 "$st"
	run --separate-stderr timeout 30 notify --state "$st" -i - \
	    <<<"$(payment_event o-st1 approved 100)"
	assert_success
	echo precious >"$victim"
	mv "$st/log.0000000001" "$BATS_TEST_TMPDIR/log"
	ln -s "$victim" "$st/log.0000000001"
	refused_on "$st" o-st2 \
	    "notify: store: $st/log.0000000001: a symbolic link in the state directory; refusing"
	[ "$(cat "$victim")" = precious ]
}

@test "notify: --webhook POSTs the notification with a valid Standard Webhooks signature" {
	new_flow
	GROUP=$(unique_name notify)
	new_secret
	start_receiver
	a=$(payment_event o-3001 approved 2500)
	produce payment-processed "$a"
	start_notify --webhook "http://127.0.0.1:$PORT/hooks" \
	    --secret-file "$SECRET"
	await 60 has_lines "$BATS_TEST_TMPDIR/received" 1
	stop_notify
	[ "$status" -eq 0 ]
	has_lines "$OUT" 0
	has_lines "$BATS_TEST_TMPDIR/received" 1
	now=$(date +%s)
	run jq -e --argjson ev "$a" --arg tp "$TRACEPARENT" --argjson now "$now" \
	    '.valid == true and .status == 200 and
	    .id == .body.notification_id and .body.event_id == $ev.id and
	    .body.order_id == "o-3001" and .body.to == "o-3001@example.com" and
	    .body.message == "Payment of EUR 25.00 for order o-3001 approved" and
	    (.signature | startswith("v1,")) and
	    (.timestamp | tonumber) <= $now and
	    (.timestamp | tonumber) > $now - 120 and
	    .content_type == "application/json" and .traceparent == $tp' \
	    "$BATS_TEST_TMPDIR/received"
	assert_success
	assert_output true
	# The secret never reaches the logs (grep exits 1, not 2 for no log).
	secret=$(cut -c7- "$SECRET")
	[ -n "$secret" ]
	[ -s "$ERR" ]
	run grep -F -- "$secret" "$ERR"
	assert_failure 1
}

@test "notify: a raw secret signs too, and a wrong one does not verify" {
	new_flow
	GROUP=$(unique_name notify)
	SECRET="$BATS_TEST_TMPDIR/secret"
	printf 'not-base64 raw secret, 24 bytes or more\n' >"$SECRET"
	start_receiver
	printf 'another secret, 24 bytes or more\n' >"$BATS_TEST_TMPDIR/wrong"
	produce payment-processed "$(payment_event o-3101 approved 1)" \
	    "$(payment_event o-3102 approved 2)"
	start_notify --webhook "http://127.0.0.1:$PORT/" \
	    --secret-file "$SECRET"
	await 60 has_lines "$BATS_TEST_TMPDIR/received" 2
	stop_notify
	[ "$status" -eq 0 ]
	run jq -s -e 'length == 2 and all(.valid)' "$BATS_TEST_TMPDIR/received"
	assert_success

	: >"$BATS_TEST_TMPDIR/received"
	GROUP=$(unique_name notify)
	notify -v --state "$BATS_TEST_TMPDIR/fresh" -G "$GROUP" \
	    --webhook "http://127.0.0.1:$PORT/" \
	    --secret-file "$BATS_TEST_TMPDIR/wrong" >"$OUT" 2>"$ERR" &
	NOTIFY_PID=$!
	await 60 has_lines "$BATS_TEST_TMPDIR/received" 2
	stop_notify
	run jq -s -e 'length == 2 and all(.valid | not)' \
	    "$BATS_TEST_TMPDIR/received"
	assert_success
}

@test "notify: the receiver down, then up: delivered once, after a retry" {
	new_flow
	GROUP=$(unique_name notify)
	new_secret
	start_receiver
	stop_receiver		# PORT is known, and nothing listens on it
	: >"$BATS_TEST_TMPDIR/received"
	a=$(payment_event o-4001 approved 2500)
	produce payment-processed "$a"
	start_notify --webhook "http://127.0.0.1:$PORT/hooks" \
	    --secret-file "$SECRET" --backoff 2s --max-attempts 10
	await 60 count_records payment-processed-retry \
	    '.headers["orderflow.attempt"] == "2"' 1
	has_lines "$BATS_TEST_TMPDIR/received" 0
	start_receiver "$PORT"
	await 60 has_lines "$BATS_TEST_TMPDIR/received" 1
	stop_notify
	[ "$status" -eq 0 ]
	has_lines "$BATS_TEST_TMPDIR/received" 1
	run jq -e '.valid and .status == 200 and .body.order_id == "o-4001"' \
	    "$BATS_TEST_TMPDIR/received"
	assert_success
	r=$(records payment-processed-retry |
	    jq -c 'select(.headers["orderflow.attempt"] == "2")')
	run jq -e --arg v "$a" --arg t "${PREFIX}payment-processed" \
	    '.payload == $v and .key == "o-4001" and
	    .headers["orderflow.error.kind"] == "transient" and
	    .headers["orderflow.original.topic"] == $t and
	    (.headers["orderflow.error.message"] | startswith("webhook: "))' \
	    <<<"$r"
	assert_success
	count_records payment-processed-dlq true 0
	grep -q 'notified=1 duplicates=0' "$ERR"
}

@test "notify: a 400 from the webhook goes to the DLQ as permanent" {
	new_flow
	GROUP=$(unique_name notify)
	new_secret
	echo 400 >"$BATS_TEST_TMPDIR/status"
	start_receiver
	a=$(payment_event o-5001 declined 700 card_declined)
	produce payment-processed "$a"
	start_notify --webhook "http://127.0.0.1:$PORT/hooks" \
	    --secret-file "$SECRET"
	await 60 count_records payment-processed-dlq true 1
	stop_notify
	[ "$status" -eq 0 ]
	r=$(records payment-processed-dlq)
	run jq -e --arg v "$a" --arg t "${PREFIX}payment-processed" \
	    '.payload == $v and .key == "o-5001" and
	    .headers["orderflow.error.kind"] == "permanent" and
	    .headers["orderflow.error.message"] == "webhook: HTTP 400" and
	    .headers["orderflow.original.topic"] == $t and
	    (.headers["orderflow.original.partition"] | test("^[0-9]+$")) and
	    .headers["orderflow.original.offset"] == "0"' <<<"$r"
	assert_success
	has_lines "$BATS_TEST_TMPDIR/received" 1
	run jq -e '.status == 400 and .valid' "$BATS_TEST_TMPDIR/received"
	assert_success
	count_records payment-processed-retry true 0
	grep -q 'notified=0 duplicates=0 retried=0 dead-lettered=1' "$ERR"
}

@test "notify: 503 is transient; delivered once the receiver answers 200" {
	new_flow
	GROUP=$(unique_name notify)
	new_secret
	echo 503 >"$BATS_TEST_TMPDIR/status"
	start_receiver
	produce payment-processed "$(payment_event o-5101 approved 1)"
	# Attempts enough that they cannot run out before the switch to 200,
	# however slowly the machine gets there.
	start_notify --webhook "http://127.0.0.1:$PORT/" \
	    --secret-file "$SECRET" --backoff 1s --backoff-max 2s \
	    --max-attempts 1000
	await 60 count_at_least payment-processed-retry \
	    '.headers["orderflow.error.message"] == "webhook: HTTP 503"' 1
	echo 200 >"$BATS_TEST_TMPDIR/status"
	await 60 answered 200 1
	stop_notify
	[ "$status" -eq 0 ]
	run jq -s -e 'map(select(.status == 200)) | length == 1 and
	    (.[0].id == .[-1].id)' "$BATS_TEST_TMPDIR/received"
	assert_success
}

@test "notify: --exec with a failing command, then a working one: retried, delivered once" {
	new_flow
	GROUP=$(unique_name notify)
	dir="$BATS_TEST_TMPDIR/exec"
	mkdir "$dir"
	touch "$dir/fail"
	a=$(payment_event o-6001 approved 4200)
	produce payment-processed "$a"
	start_notify --exec "'$FIXTURES/exec-sink' '$dir'" --backoff 1s
	await 60 count_records payment-processed-retry \
	    '.headers["orderflow.attempt"] == "2" and
	    .headers["orderflow.error.message"] == "exec: exit status 1"' 1
	has_lines "$dir/received" 0
	rm "$dir/fail"
	await 60 has_lines "$dir/received" 1
	stop_notify
	[ "$status" -eq 0 ]
	has_lines "$dir/received" 1
	[ "$(lines "$dir/attempts")" -ge 2 ]
	run jq -e --argjson ev "$a" '.event_id == $ev.id and
	    .message == "Payment of EUR 42.00 for order o-6001 approved"' \
	    "$dir/received"
	assert_success
	id=$(jq -r .notification_id "$dir/received")
	run cat "$dir/env"
	assert_output "o-6001 o-6001@example.com $id"
	has_lines "$OUT" 0
	grep -q 'notified=1 duplicates=0' "$ERR"
}

@test "notify: --exec past --timeout is killed and retried until exhausted" {
	new_flow
	GROUP=$(unique_name notify)
	produce payment-processed "$(payment_event o-6101 approved 1)"
	nap="300.$RANDOM"	# a command line no other process has
	start_notify --exec "sleep $nap" --timeout 300ms --max-attempts 2 \
	    --backoff 100ms
	await 60 count_records payment-processed-dlq \
	    '.headers["orderflow.error.kind"] == "exhausted"' 1
	stop_notify
	[ "$status" -eq 0 ]
	count_records payment-processed-dlq \
	    '.headers["orderflow.error.message"] ==
	    "attempt 2 of 2 failed: exec: still running after 300ms: killed"' 1
	run pgrep -f -x "sleep $nap"
	assert_failure
}

@test "notify: invalid events go to the DLQ as invalid and notify goes on" {
	new_flow
	GROUP=$(unique_name notify)
	order=$(jq -cn '{specversion: "1.0", id: "e-1", source: "/t",
	    type: "order.created.v2", subject: "o-7001",
	    time: "2026-11-26T10:00:00Z", data: {order_id: "o-7001",
	    customer_id: "c", email: "a@b.c", currency: "EUR",
	    items: [{sku: "S", qty: 1, unit_price: 1}], total: 1,
	    payment_method: "pm_card_visa"}}')
	produce payment-processed 'not json at all' "$order" \
	    "$(payment_event o-7002 approved 5)"
	start_notify
	await 60 has_lines "$OUT" 1
	await 60 count_records payment-processed-dlq \
	    '.headers["orderflow.error.kind"] == "invalid"' 2
	stop_notify
	[ "$status" -eq 0 ]
	count_records payment-processed-dlq \
	    '.payload == "not json at all"' 1
	count_records payment-processed-dlq \
	    '(.headers["orderflow.error.message"] | test("order.created.v2"))' 1
	run jq -r .order_id "$OUT"
	assert_output o-7002
}

@test "notify -i -: payment events on stdin, one line per payment, dead letters to --dlq" {
	a=$(payment_event o-8001 approved 2500)
	d=$(payment_event o-8002 declined 100 limit_exceeded)
	run --separate-stderr bash -c 'printf "%s\n" "$1" "$1" "$2" "{}" |
	    timeout 60 notify -i - --state "$3" --dlq "$4"' _ "$a" "$d" \
	    "$BATS_TEST_TMPDIR/state" "$BATS_TEST_TMPDIR/dlq"
	# line 4 was not a payment event: rejected, the rest processed
	assert_failure 3
	assert_regex "$stderr" '(^|'$'\n'')notify: stdin:4: dead letter \(invalid\)'
	[ "${#lines[@]}" -eq 2 ]
	run jq -r '.message' <<<"$output"
	assert_output "Payment of EUR 25.00 for order o-8001 approved
Payment of EUR 1.00 for order o-8002 declined: limit_exceeded"
	has_lines "$BATS_TEST_TMPDIR/dlq" 1
	run grep -c invalid "$BATS_TEST_TMPDIR/dlq"
	assert_output 1
}

@test "notify: standard output failing: exit 1, the event not recorded" {
	a=$(payment_event o-8101 approved 2500)
	run --separate-stderr bash -c 'printf "%s\n" "$1" |
	    timeout 60 notify -i - --state "$2" >/dev/full' _ "$a" \
	    "$BATS_TEST_TMPDIR/state"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"standard output: No space left on device"* ]]
	# Not delivered, so not recorded: a working stdout gets it.
	run --separate-stderr bash -c 'printf "%s\n" "$1" |
	    timeout 60 notify -i - --state "$2"' _ "$a" \
	    "$BATS_TEST_TMPDIR/state"
	assert_success
	run jq -r .order_id <<<"$output"
	assert_output o-8101
	run --separate-stderr bash -c 'printf "%s\n" "$1" |
	    timeout 60 notify -i - --state "$2" >&-' _ "$a" \
	    "$BATS_TEST_TMPDIR/state2"
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"standard output is closed"* ]]
}

@test "notify -i -: the whole pipeline prints one notification per valid order" {
	[ -x "$ROOT/bin/order-submit" ] || fail "bin/order-submit is not built"
	[ -x "$ROOT/bin/pay-process" ] || fail "bin/pay-process is not built"
	export ORDERFLOW_STATE="$BATS_TEST_TMPDIR/state"
	cat >"$BATS_TEST_TMPDIR/orders.jsonl" <<-'EOF'
	{"order_id":"o-1001","customer_id":"c-42","email":"ana@example.com","currency":"EUR","items":[{"sku":"BOOK-1","qty":2,"unit_price":1250}],"payment_method":"pm_card_visa"}
	{"order_id":"o-1002","customer_id":"c-43","email":"bo@example.com","currency":"EUR","items":[{"sku":"PEN","qty":1,"unit_price":300}],"payment_method":"pm_card_declined"}
	{"order_id":"o-1003","customer_id":"c-44","email":"cy@example.com","currency":"USD","items":[{"sku":"MUG","qty":3,"unit_price":1000}]}
	{"order_id":"o-1004","customer_id":"c-45","currency":"EUR","items":[]}
	EOF
	run --separate-stderr bash -c 'order-submit -o - <"$1" |
	    timeout 60 pay-process -i - -o - | timeout 60 notify -i -' _ \
	    "$BATS_TEST_TMPDIR/orders.jsonl"
	assert_success
	[ "${#lines[@]}" -eq 3 ]
	run jq -r '[.order_id, .to, .status, .message] | join(" | ")' <<<"$output"
	assert_output --partial "o-1001 | ana@example.com | approved | Payment of EUR 25.00 for order o-1001 approved"
	assert_output --partial "o-1002 | bo@example.com | declined | Payment of EUR 3.00 for order o-1002 declined: card_declined"
	assert_output --partial "o-1003 | cy@example.com | approved | Payment of USD 30.00 for order o-1003 approved"
}

@test "notify: a webhook secret under 24 bytes exits 2; one others can read is warned about" {
	local s="$BATS_TEST_TMPDIR/s" empty="$BATS_TEST_TMPDIR/empty.jsonl"

	: >"$empty"
	# 3 bytes after whsec_'s base64, then 23 raw bytes: refused.
	for secret in whsec_YWJj 12345678901234567890123 \
	    "whsec_$(head -c 23 /dev/urandom | base64)"; do
		printf '%s\n' "$secret" >"$s"
		chmod 600 "$s"
		run --separate-stderr notify --webhook http://127.0.0.1:9/ \
		    --secret-file "$s" -i "$empty" --state "$BATS_TEST_TMPDIR/st"
		[ "$status" -eq 2 ] || fail "$secret: status $status"
		[[ "$stderr" == *"$s: the secret is shorter than 24 bytes"* ]] ||
		    fail "stderr: $stderr"
		[[ "$stderr" != *"$secret"* ]] || fail "secret logged: $stderr"
	done
	# 24 bytes, either way, are enough; only the owner reads the file.
	for secret in 123456789012345678901234 \
	    "whsec_$(head -c 24 /dev/urandom | base64)"; do
		printf '%s\n' "$secret" >"$s"
		chmod 600 "$s"
		run --separate-stderr notify --webhook http://127.0.0.1:9/ \
		    --secret-file "$s" -i "$empty" --state "$BATS_TEST_TMPDIR/st"
		assert_success
		[[ "$stderr" != *"readable by other users"* ]] ||
		    fail "stderr: $stderr"
	done
	chmod 640 "$s"
	run --separate-stderr notify --webhook http://127.0.0.1:9/ \
	    --secret-file "$s" -i "$empty" --state "$BATS_TEST_TMPDIR/st"
	assert_success
	[[ "$stderr" == *"--secret-file $s: readable by other users (mode 0640)"* ]] ||
	    fail "stderr: $stderr"
}

@test "notify: usage errors exit 2" {
	run --separate-stderr notify --webhook http://127.0.0.1:9/
	[ "$status" -eq 2 ]
	[[ "$stderr" == *"--webhook needs --secret-file"* ]]
	printf 'x\n' >"$BATS_TEST_TMPDIR/s"
	run --separate-stderr notify --webhook http://127.0.0.1:9/ \
	    --secret-file "$BATS_TEST_TMPDIR/s" --exec cat
	[ "$status" -eq 2 ]
	run --separate-stderr notify --webhook ftp://127.0.0.1/ \
	    --secret-file "$BATS_TEST_TMPDIR/s"
	[ "$status" -eq 2 ]
	printf 'whsec_!!!!\n' >"$BATS_TEST_TMPDIR/bad"
	run --separate-stderr notify --webhook http://127.0.0.1:9/ \
	    --secret-file "$BATS_TEST_TMPDIR/bad" --state "$BATS_TEST_TMPDIR/st"
	[ "$status" -eq 2 ]
	[[ "$stderr" != *'!!!!'* ]]
	run --separate-stderr notify -i "$BATS_TEST_TMPDIR/none.jsonl" \
	    --state "$BATS_TEST_TMPDIR/st"
	[ "$status" -eq 1 ]
	run --separate-stderr notify --dlq x
	[ "$status" -eq 2 ]
	run --separate-stderr notify --backoff 5s --backoff-max 1s
	[ "$status" -eq 2 ]
}

@test "notify -i: a bad -X or -F property exits 2 in pipe mode too" {
	local props="$BATS_TEST_TMPDIR/client.properties"
	run --separate-stderr timeout 30 notify -b 127.0.0.1:1 -i - \
	    --state "$BATS_TEST_TMPDIR/st" -X foo.bar=1 </dev/null
	[ "$status" -eq 2 ]
	[[ "$stderr" == *'-X: foo.bar: No such configuration property'* ]]
	[ ! -e "$BATS_TEST_TMPDIR/st" ]
	printf '# client\nfetch.wait.max.ms=soon\n' >"$props"
	run --separate-stderr timeout 30 notify -b 127.0.0.1:1 -i - \
	    --state "$BATS_TEST_TMPDIR/st" -F "$props" </dev/null
	[ "$status" -eq 2 ]
	[[ "$stderr" == *"$props:2"*fetch.wait.max.ms* ]]
	run --separate-stderr timeout 30 notify -b 127.0.0.1:1 -i - \
	    --state "$BATS_TEST_TMPDIR/st" -X client.id=demo </dev/null
	[ "$status" -eq 0 ]
}

@test "notify: a retry's not-before a century ahead, garbage or negative waits at most --backoff-max" {
	new_flow 1
	GROUP=$(unique_name notify)
	now=$(date +%s%3N)
	# retry NAME NOT-BEFORE: a retry record in partition 0.
	retry() {
		printf '%s|%s\n' "$1" "$(payment_event "$1" approved 100)" |
		    timeout 30 kcat -P -b "$KAFKA_BROKERS" \
		    -t "${PREFIX}payment-processed-retry" -p 0 -K '|' \
		    -H orderflow.attempt=2 -H "orderflow.not-before=$2"
	}
	retry o-far $((now + 3153600000000))
	retry o-max 9223372036854775807
	retry o-garbage 12ab
	retry o-negative -5
	# Behind them in the same partition: one due already.
	retry o-due $((now - 1000))
	start_notify --backoff 100ms --backoff-max 2s
	await 30 has_lines "$OUT" 5
	stop_notify
	[ "$status" -eq 0 ]
	[ "$(jq -r .order_id "$OUT" | sort | tr '\n' ' ')" = \
	    "o-due o-far o-garbage o-max o-negative " ]
	grep -q 'orderflow.not-before 9223372036854775807 is more than --backoff-max (2000 ms) ahead: due in 2000 ms instead' \
	    "$ERR"
}

@test "notify: --webhook at --concurrency 256, a 100 ms receiver: each delivered once, one per order at a time" {
	new_flow 6
	GROUP=$(unique_name notify)
	new_secret
	RECEIVER_DELAY_MS=100 start_receiver
	n=1000
	# Two payment events for each of n / 2 orders, keyed by the order.
	many_payments "$n" $((n / 2))
	start_notify --concurrency 256 --webhook "http://127.0.0.1:$PORT/hooks" \
	    --secret-file "$SECRET"
	await 120 has_lines "$BATS_TEST_TMPDIR/received" "$n"
	stop_notify
	[ "$status" -eq 0 ]
	has_lines "$BATS_TEST_TMPDIR/received" "$n"
	[ "$(jq -r .id "$BATS_TEST_TMPDIR/received" | sort -u | wc -l)" -eq "$n" ]
	[ "$(jq -s 'all(.valid and .status == 200)' \
	    "$BATS_TEST_TMPDIR/received")" = true ]
	# The two of an order never overlapped.
	[ "$(jq -s 'group_by(.body.order_id) | map(sort_by(.start) | . as $a |
	    [range(1; length)] | map(select($a[. - 1].end > $a[.].start))) |
	    flatten | length' "$BATS_TEST_TMPDIR/received")" -eq 0 ]
	grep -q "done: notified=$n duplicates=0 retried=0 dead-lettered=0" "$ERR"
}

@test "notify -i -: --exec runs the commands side by side, each once" {
	export ORDERFLOW_STATE="$BATS_TEST_TMPDIR/state"
	for i in 1 2 3 4 5 6 7 8; do
		payment_event "o-x$i" approved 100
	done >"$BATS_TEST_TMPDIR/in.jsonl"
	# Each command waits until all 8 have started: one at a time never ends.
	run --separate-stderr timeout 60 notify -b 127.0.0.1:1 -i - \
	    --timeout 20s --exec "echo >>'$BATS_TEST_TMPDIR/started';
	    until [ \$(wc -l <'$BATS_TEST_TMPDIR/started') -ge 8 ]; do
	    sleep 0.05; done; cat >>'$BATS_TEST_TMPDIR/got'" \
	    <"$BATS_TEST_TMPDIR/in.jsonl"
	assert_success
	[ "$(jq -r .order_id "$BATS_TEST_TMPDIR/got" | sort | tr '\n' ' ')" = \
	    "o-x1 o-x2 o-x3 o-x4 o-x5 o-x6 o-x7 o-x8 " ]
}

@test "notify: SIGKILL with hundreds of webhooks in flight, then a restart: each delivered, one id each" {
	new_flow 6
	GROUP=$(unique_name notify)
	new_secret
	RECEIVER_DELAY_MS=200 start_receiver
	n=600
	many_payments "$n" "$n"
	hook=(--concurrency 256 --webhook "http://127.0.0.1:$PORT/hooks"
	    --secret-file "$SECRET")
	start_notify "${hook[@]}"
	await 60 has_at_least 200
	kill -KILL "$NOTIFY_PID"
	wait "$NOTIFY_PID" || true
	killed=$(date +%s.%N)
	start_notify "${hook[@]}"
	all_ids() {
		[ "$(jq -r .id "$BATS_TEST_TMPDIR/received" | sort -u |
		    wc -l)" -ge "$n" ]
	}
	await 120 all_ids
	stop_notify
	[ "$status" -eq 0 ]
	# One notification id per event; a repeat only of one in flight.
	[ "$(jq -r '"\(.body.event_id) \(.id)"' "$BATS_TEST_TMPDIR/received" |
	    sort -u | wc -l)" -eq "$n" ]
	[ "$(jq -s --argjson k "$killed" 'group_by(.id) |
	    map(select(length > 1) | sort_by(.start) | .[1:] |
	    map(select(.start < $k))) | flatten | length' \
	    "$BATS_TEST_TMPDIR/received")" -eq 0 ]
	[ "$(wc -l <"$BATS_TEST_TMPDIR/received")" -gt "$n" ]
}
