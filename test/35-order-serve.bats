#!/usr/bin/env bats
# 35-order-serve.bats - order-serve driven with curl against a real broker:
# every answer of order-serve(1)'s table, idempotency keys (replay, 422, 409),
# payments changing an order's status, the outbox surviving an unreachable
# broker, SIGTERM and SIGKILL.

load test_helper

setup() {
	SERVE_PID=
	KL_DIR=
}

# Stops what the test started.  A server still running must stop cleanly
# on SIGTERM (exit 0: its outbox drained), and no sanitizer may have
# complained (make SANITIZE=1).
teardown() {
	local rc=0
	if [ -n "$SERVE_PID" ]; then
		stop_serve
		[ "$SERVE_STATUS" -eq 0 ] ||
		    { echo "order-serve exited $SERVE_STATUS"; rc=1; }
	fi
	if [ -n "$KL_DIR" ]; then
		kafka-local --dir "$KL_DIR" stop >/dev/null 2>&1 || true
	fi
	if [ -f "$BATS_TEST_TMPDIR/serve.log" ]; then
		if grep -qE 'Sanitizer|runtime error:' \
		    "$BATS_TEST_TMPDIR/serve.log"; then
			echo "a sanitizer complained"
			rc=1
		fi
		# Shown only when the test failed.
		echo "--- order-serve's log (last lines):"
		tail -n 30 "$BATS_TEST_TMPDIR/serve.log"
	fi
	return "$rc"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_serve [ARGS...]: order-serve on $PORT (picked if unset), logs in
# $BATS_TEST_TMPDIR/serve.log; returns once /healthz answers.
start_serve() {
	: "${PORT:=$(free_port)}"
	URL="http://127.0.0.1:$PORT"
	order-serve --listen "127.0.0.1:$PORT" "$@" \
	    2>>"$BATS_TEST_TMPDIR/serve.log" 3>&- &
	SERVE_PID=$!
	wait_until 30 serve_up
	kill -0 "$SERVE_PID" 2>/dev/null || fail "order-serve exited at start"
	curl -fsS -o /dev/null "$URL/healthz"
}

# True once /healthz answers, or once the server died (no use waiting).
serve_up() {
	! kill -0 "$SERVE_PID" 2>/dev/null ||
	    curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null
}

# stop_serve: SIGTERM, and the exit status in $SERVE_STATUS.
stop_serve() {
	kill -TERM "$SERVE_PID"
	SERVE_STATUS=0
	wait "$SERVE_PID" || SERVE_STATUS=$?
	SERVE_PID=
}

# order_json ID: a valid order (ID is made of [A-Za-z0-9._:-]).
order_json() {
	printf '{"order_id":"%s","customer_id":"c-42","email":"ana@example.com","currency":"EUR","items":[{"sku":"BOOK-1","qty":2,"unit_price":1250}]}' "$1"
}

# post BODY [CURL-ARGS...]: prints the status code; headers and body in
# $BATS_TEST_TMPDIR/h and /b.
post() {
	local body=$1
	shift
	curl -sS -o "$BATS_TEST_TMPDIR/b" -D "$BATS_TEST_TMPDIR/h" \
	    -w '%{http_code}' -H 'Content-Type: application/json' \
	    --data-binary "$body" "$@" "$URL/orders"
}

# Keys of the records on BROKERS' order-created topic, sorted, unique.
topic_keys() {
	kcat -C -b "$1" -t "${PREFIX}order-created" -e -q -f '%k\n' \
	    2>/dev/null | sort -u
}

topic_has_keys() {	# BROKERS FILE-OF-SORTED-KEYS
	[ "$(topic_keys "$1")" = "$(cat "$2")" ]
}

metric() {
	curl -fsS "$URL/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}

metric_is() {
	[ "$(metric "$1")" = "$2" ]
}

status_is() {	# ORDER-ID STATUS
	[ "$(curl -fsS "$URL/orders/$1" | jq -r .status)" = "$2" ]
}

@test "POST /orders: 201 with Location, GET shows it pending, the event is on order-created" {
	new_flow
	start_serve
	local tp=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
	run post "$(order_json o-1001)" -H "traceparent: $tp"
	assert_output 201
	run grep -i '^Location: /orders/o-1001' "$BATS_TEST_TMPDIR/h"
	assert_success
	run jq -r '[.order_id, .status, (.event_id | length)] | @tsv' \
	    "$BATS_TEST_TMPDIR/b"
	assert_output "$(printf 'o-1001\tpending\t36')"
	local event_id
	event_id=$(jq -r .event_id "$BATS_TEST_TMPDIR/b")

	run --separate-stderr curl -sS -w '\n%{http_code}' "$URL/orders/o-1001"
	assert_line --index 1 200
	[ "$(head -n 1 <<<"$output" | jq -r '.status + " " + (.total | tostring)')" = "pending 2500" ]

	echo o-1001 >"$BATS_TEST_TMPDIR/want"
	wait_until 30 topic_has_keys "$KAFKA_BROKERS" "$BATS_TEST_TMPDIR/want"
	run --separate-stderr kcat -C -b "$KAFKA_BROKERS" \
	    -t "${PREFIX}order-created" -e -q -J
	assert_success
	[ "$(jq -r .key <<<"$output")" = o-1001 ]
	[ "$(jq -r '.payload | fromjson | .type' <<<"$output")" = order.created.v2 ]
	[ "$(jq -r '.payload | fromjson | .id' <<<"$output")" = "$event_id" ]
	[ "$(jq -r '.payload | fromjson | .traceparent' <<<"$output")" = "$tp" ]
	jq -e --arg tp "$tp" '.headers == ["content-type",
	    "application/cloudevents+json", "traceparent", $tp]' <<<"$output"
	# One log line for the request, with its order id and trace id.
	run grep -E 'POST /orders 201 .*order_id=o-1001 trace_id=0af7651916cd43dd8448eb211c80319c' \
	    "$BATS_TEST_TMPDIR/serve.log"
	assert_success
	wait_until 10 metric_is order_serve_outbox_depth 0
}

@test "errors: 400 names the field, 413, 415, 405 with Allow, 404; every body is JSON" {
	new_flow
	start_serve
	local bad
	bad=$(order_json o-1 | jq -c '.items[0].qty = 0')
	run post "$bad"
	assert_output 400
	[ "$(jq -r .field "$BATS_TEST_TMPDIR/b")" = "items[0].qty" ]
	[ -n "$(jq -r .error "$BATS_TEST_TMPDIR/b")" ]

	run post '{"customer_id": "c-1", "email": '
	assert_output 400
	jq -e 'has("error") and has("field")' "$BATS_TEST_TMPDIR/b"

	head -c 70000 /dev/zero | tr '\0' ' ' >"$BATS_TEST_TMPDIR/big"
	run post "@$BATS_TEST_TMPDIR/big"
	assert_output 413
	jq -e .error "$BATS_TEST_TMPDIR/b"
	# Chunked, so no Content-Length says it in advance.
	run post "@$BATS_TEST_TMPDIR/big" -H 'Transfer-Encoding: chunked'
	assert_output 413
	jq -e .error "$BATS_TEST_TMPDIR/b"

	for ct in 'Content-Type: text/plain' 'Content-Type:' \
	    'Content-Type: application/jsonx'; do
		run curl -sS -o "$BATS_TEST_TMPDIR/b" -w '%{http_code}' \
		    --data-binary "$(order_json o-2)" -H "$ct" "$URL/orders"
		assert_output 415
		jq -e .error "$BATS_TEST_TMPDIR/b"
	done

	run curl -sS -o "$BATS_TEST_TMPDIR/b" -D "$BATS_TEST_TMPDIR/h" \
	    -w '%{http_code}' -X PUT "$URL/orders"
	assert_output 405
	run grep -i '^Allow: POST' "$BATS_TEST_TMPDIR/h"
	assert_success
	jq -e .error "$BATS_TEST_TMPDIR/b"
	run curl -sS -o "$BATS_TEST_TMPDIR/b" -D "$BATS_TEST_TMPDIR/h" \
	    -w '%{http_code}' -X DELETE "$URL/orders/o-1"
	assert_output 405
	run grep -i '^Allow: GET' "$BATS_TEST_TMPDIR/h"
	assert_success

	for path in /nowhere /orders/no-such-order '/orders/a%20b'; do
		run curl -sS -o "$BATS_TEST_TMPDIR/b" -w '%{http_code}' "$URL$path"
		assert_output 404
		jq -e .error "$BATS_TEST_TMPDIR/b"
	done
	# Nothing was stored or sent.
	[ "$(metric order_serve_committed_orders_total)" = 0 ]
}

@test "errors: 414 and 431 as JSON below libmicrohttpd's own limits" {
	new_flow
	start_serve
	local long
	long=$(head -c 20000 /dev/zero | tr '\0' a)
	run curl -sS -o "$BATS_TEST_TMPDIR/b" -w '%{http_code}' \
	    "$URL/orders/${long:0:9000}"
	assert_output 414
	jq -e '.error == "the URL is longer than 8 KiB"' "$BATS_TEST_TMPDIR/b"
	run curl -sS -o "$BATS_TEST_TMPDIR/b" -w '%{http_code}' \
	    -H "X-Filler: $long" "$URL/healthz"
	assert_output 431
	jq -e '.error == "the header fields are larger than 16 KiB"' \
	    "$BATS_TEST_TMPDIR/b"
	# Past libmicrohttpd's 32 KiB a connection: its own page, as
	# order-serve(1) says.
	run curl -sS -o /dev/null -w '%{http_code}' \
	    -H "X-Filler: $long$long" "$URL/healthz"
	assert_output 431
}

@test "errors: an escaped NUL is no order id; no empty field; a lone surrogate is named" {
	new_flow
	start_serve
	run post "$(order_json h-1)"
	assert_output 201
	for path in '/orders/h-1%00junk' '/orders/h-1%00'; do
		run curl -sS -o "$BATS_TEST_TMPDIR/b" -w '%{http_code}' "$URL$path"
		assert_output 404
		jq -e '.error == "no such resource"' "$BATS_TEST_TMPDIR/b"
	done
	run curl -sS -o /dev/null -w '%{http_code}' "$URL/orders/h-1"
	assert_output 200

	# The whole body is to blame: no "field".
	run post ''
	assert_output 400
	jq -e '.error == "invalid JSON: empty input" and (has("field") | not)' \
	    "$BATS_TEST_TMPDIR/b"
	run post "$(order_json h-2 | sed 's/"c-42"/"c-42\\ud800"/')"
	assert_output 400
	jq -e '.field == "customer_id"' "$BATS_TEST_TMPDIR/b"
	run post "$(order_json h-2 | jq -c '.items[0].qty = 0' |
	    sed 's/"qty":0/"qty":1e400/')"
	assert_output 400
	jq -e '.field == "items[0].qty"' "$BATS_TEST_TMPDIR/b"
}

@test "--token-file: 401 without the bearer token (JSON, WWW-Authenticate), /healthz open" {
	new_flow
	echo 's3cret-token' >"$BATS_TEST_TMPDIR/token"
	start_serve --token-file "$BATS_TEST_TMPDIR/token"
	run post "$(order_json o-t1)"
	assert_output 401
	jq -e .error "$BATS_TEST_TMPDIR/b"
	run grep -i '^WWW-Authenticate: Bearer' "$BATS_TEST_TMPDIR/h"
	assert_success
	run post "$(order_json o-t1)" -H 'Authorization: Bearer s3cret-tokeX'
	assert_output 401
	run post "$(order_json o-t1)" -H 'Authorization: Bearer s3cret-token2'
	assert_output 401
	run curl -sS -o /dev/null -w '%{http_code}' "$URL/metrics"
	assert_output 401
	run curl -sS -o /dev/null -w '%{http_code}' "$URL/healthz"
	assert_output 200
	run post "$(order_json o-t1)" -H 'Authorization: Bearer s3cret-token'
	assert_output 201
	run curl -sS -o /dev/null -w '%{http_code}' \
	    -H 'Authorization: Bearer s3cret-token' "$URL/orders/o-t1"
	assert_output 200
}

@test "GET /healthz and /metrics: requests by route and status, latency histogram, outbox depth" {
	new_flow
	start_serve
	local h0
	h0=$(metric 'order_serve_requests_total{route="/healthz",status="200"}')
	run curl -sS -w '\n%{http_code}' "$URL/healthz"
	assert_line --index 1 200
	run post "$(order_json o-m1)"
	assert_output 201
	run post '{}'
	assert_output 400
	run --separate-stderr curl -sS -D "$BATS_TEST_TMPDIR/h" "$URL/metrics"
	assert_success
	assert_line 'order_serve_requests_total{route="/orders",status="201"} 1'
	assert_line 'order_serve_requests_total{route="/orders",status="400"} 1'
	assert_line "order_serve_requests_total{route=\"/healthz\",status=\"200\"} $((h0 + 1))"
	assert_line 'order_serve_requests_total{route="/metrics",status="200"} 1'
	assert_line --regexp "^order_serve_request_duration_seconds_bucket\\{le=\"\\+Inf\"\\} $((h0 + 4))\$"
	assert_line '# TYPE order_serve_outbox_depth gauge'
	assert_line --regexp '^order_serve_outbox_depth [01]$'
	assert_line --regexp '^order_serve_outbox_oldest_age_seconds '
	assert_line --regexp '^order_serve_delivery_failures_total 0$'
	run grep -i '^Content-Type: text/plain' "$BATS_TEST_TMPDIR/h"
	assert_success
	wait_until 30 metric_is order_serve_outbox_depth 0
	[ "$(metric order_serve_events_published_total)" = 1 ]
}

@test "Idempotency-Key: the same body replays the first answer, nothing twice; another body 422" {
	new_flow
	start_serve
	local key first
	key=$(unique_name key)
	run post "$(order_json o-i1)" -H "Idempotency-Key: $key"
	assert_output 201
	first=$(cat "$BATS_TEST_TMPDIR/b")
	run post "$(order_json o-i1)" -H "Idempotency-Key: $key"
	assert_output 201
	[ "$(cat "$BATS_TEST_TMPDIR/b")" = "$first" ]
	run grep -i '^Location: /orders/o-i1' "$BATS_TEST_TMPDIR/h"
	assert_success

	# No order_id: each request would generate one, the replay keeps the first.
	local key2 anon
	key2=$(unique_name key)
	anon=$(order_json x | jq -c 'del(.order_id)')
	run post "$anon" -H "Idempotency-Key: $key2"
	assert_output 201
	first=$(cat "$BATS_TEST_TMPDIR/b")
	run post "$anon" -H "Idempotency-Key: $key2"
	assert_output 201
	[ "$(cat "$BATS_TEST_TMPDIR/b")" = "$first" ]

	run post "$(order_json o-i2)" -H "Idempotency-Key: $key"
	assert_output 422
	[ "$(jq -r .field "$BATS_TEST_TMPDIR/b")" = Idempotency-Key ]
	run curl -sS -o /dev/null -w '%{http_code}' "$URL/orders/o-i2"
	assert_output 404

	# Exactly one event for each order, after everything went out.
	wait_until 30 metric_is order_serve_outbox_depth 0
	[ "$(metric order_serve_committed_orders_total)" = 2 ]
	run --separate-stderr kcat -C -b "$KAFKA_BROKERS" \
	    -t "${PREFIX}order-created" -e -q -f '%k\n'
	assert_success
	[ "${#lines[@]}" -eq 2 ]
	assert_line o-i1
}

@test "Idempotency-Key: 409 while a request with the same key is in flight" {
	new_flow
	start_serve
	local key
	key=$(unique_name key)
	# A slow client: headers sent, the body only begun.
	exec 5<>"/dev/tcp/127.0.0.1/$PORT"
	printf 'POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nIdempotency-Key: %s\r\nContent-Length: 400\r\n\r\n{"customer_id":' \
	    "$key" >&5
	wait_until 10 metric_is order_serve_idempotency_keys_in_flight 1
	run post "$(order_json o-f1)" -H "Idempotency-Key: $key"
	assert_output 409
	[ "$(jq -r .field "$BATS_TEST_TMPDIR/b")" = Idempotency-Key ]
	run curl -sS -o /dev/null -w '%{http_code}' "$URL/orders/o-f1"
	assert_output 404
	# Once the slow request is gone, the key is free again.
	exec 5>&-
	wait_until 10 metric_is order_serve_idempotency_keys_in_flight 0
	run post "$(order_json o-f1)" -H "Idempotency-Key: $key"
	assert_output 201
}

@test "Idempotency-Key: the RFC 8941 string \"k-1\" is the same key as the bare k-1; a malformed one is 400" {
	new_flow
	start_serve
	local key bad
	# same_answer BODY KEY AGAIN: 201 with KEY, the same answer with AGAIN.
	same_answer() {
		local first
		[ "$(post "$1" -H "Idempotency-Key: $2")" = 201 ] || return 1
		first=$(cat "$BATS_TEST_TMPDIR/b")
		[ "$(post "$1" -H "Idempotency-Key: $3")" = 201 ] &&
		    [ "$(cat "$BATS_TEST_TMPDIR/b")" = "$first" ]
	}
	key=$(unique_name key)
	same_answer "$(order_json o-s1)" "\"$key\"" "$key"
	same_answer "$(order_json o-s1)" "$key" "   \"$key\"  "
	run post "$(order_json o-s3)" -H "Idempotency-Key: \"$key\""
	assert_output 422
	# Escapes: "a\"b\\c" is the key a"b\c.
	same_answer "$(order_json o-s2)" "\"$key-a\\\"b\\\\c\"" "$key-a\"b\\c"
	for bad in '"open' '"bad\escape"' '"k";p=1' '""' '"k" x' \
	    "\"$(printf 'k%.0s' $(seq 256))\""; do
		run post "$(order_json o-s4)" -H "Idempotency-Key: $bad"
		assert_output 400
		[ "$(jq -r .field "$BATS_TEST_TMPDIR/b")" = Idempotency-Key ]
	done
	run curl -sS -o /dev/null -w '%{http_code}' "$URL/orders/o-s4"
	assert_output 404
	wait_until 30 metric_is order_serve_outbox_depth 0
	[ "$(metric order_serve_committed_orders_total)" = 2 ]
}

@test "traceparent: a later version is carried on as version 00, with its trace id" {
	new_flow
	start_serve
	local t=4bf92f3577b34da6a3ce929d0e0e4736 p=00f067aa0ba902b7
	run post "$(order_json o-t1)" -H "traceparent: 01-$t-$p-01-future-field"
	assert_output 201
	run grep -i "^traceparent: 00-$t-$p-01"$'\r'"\$" "$BATS_TEST_TMPDIR/h"
	assert_success
	wait_until 30 metric_is order_serve_outbox_depth 0
	run --separate-stderr kcat -C -b "$KAFKA_BROKERS" \
	    -t "${PREFIX}order-created" -e -q -f '%h %s\n'
	assert_success
	[[ "$output" == *"traceparent=00-$t-$p-01 "* ]] || fail "record: $output"
	[ "$(cut -d' ' -f2- <<<"$output" | jq -r .traceparent)" = "00-$t-$p-01" ]
}

@test "slow and half-open clients time out and do not block others" {
	new_flow
	start_serve --idle-timeout 1s
	exec 5<>"/dev/tcp/127.0.0.1/$PORT"
	printf 'POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\n' >&5
	run curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$URL/healthz"
	assert_output 200
	# The server closes the idle connection: cat sees the end.
	run timeout 10 cat <&5
	assert_success
	exec 5<&-
}

@test "the status goes pending -> approved after a payment.processed event" {
	new_flow
	start_serve -G "$(unique_name order-serve)"
	run post "$(order_json o-p1)"
	assert_output 201
	status_is o-p1 pending
	local ev
	ev=$(jq -nc --arg id o-p1 --arg eid "$(cat /proc/sys/kernel/random/uuid)" \
	    '{specversion: "1.0", id: $eid, source: "/test/pay-process",
	    type: "payment.processed.v1", subject: $id,
	    time: "2026-11-26T10:00:00Z", datacontenttype: "application/json",
	    data: {order_id: $id, payment_id: "p-1", status: "approved",
	    amount: 2500, currency: "EUR", customer_id: "c-42",
	    email: "ana@example.com", payment_method: "pm_card_visa"}}')
	printf '%s\n' "$ev" | kcat -P -b "$KAFKA_BROKERS" \
	    -t "${PREFIX}payment-processed" -k o-p1
	wait_until 60 status_is o-p1 approved
	[ "$(curl -fsS "$URL/orders/o-p1" | jq -r .payment_id)" = p-1 ]
	# The same event again changes nothing.
	printf '%s\n' "$ev" | kcat -P -b "$KAFKA_BROKERS" \
	    -t "${PREFIX}payment-processed" -k o-p1
	wait_until 30 metric_is order_serve_payments_applied_total 2
	status_is o-p1 approved
}

# not_events_logged N: order-serve logged N records of payment-processed
# that are not events.
not_events_logged() {
	[ "$(grep -c 'not an event' "$BATS_TEST_TMPDIR/serve.log")" -ge "$1" ]
}

@test "payments_applied_total: a batch without payments adds nothing" {
	new_flow
	start_serve -G "$(unique_name order-serve)"
	run post "$(order_json o-p2)"
	assert_output 201
	jq -nc --arg id o-p2 --arg eid "$(cat /proc/sys/kernel/random/uuid)" \
	    '{specversion: "1.0", id: $eid, source: "/test/pay-process",
	    type: "payment.processed.v1", subject: $id,
	    time: "2026-11-26T10:00:00Z", datacontenttype: "application/json",
	    data: {order_id: $id, payment_id: "p-2", status: "declined",
	    reason: "card_declined", amount: 2500, currency: "EUR",
	    customer_id: "c-42", email: "ana@example.com",
	    payment_method: "pm_card_visa"}}' |
	    kcat -P -b "$KAFKA_BROKERS" -t "${PREFIX}payment-processed" -k o-p2
	wait_until 60 status_is o-p2 declined
	wait_until 30 metric_is order_serve_payments_applied_total 1
	# Two batches of records that are not payments, one after the
	# other: once the second is logged, the first was counted.
	echo 'garbage 1' | kcat -P -b "$KAFKA_BROKERS" \
	    -t "${PREFIX}payment-processed" -k o-p2
	wait_until 30 not_events_logged 1
	echo 'garbage 2' | kcat -P -b "$KAFKA_BROKERS" \
	    -t "${PREFIX}payment-processed" -k o-p2
	wait_until 30 not_events_logged 2
	run metric order_serve_payments_applied_total
	assert_output 1
}

@test "broker unreachable: orders accepted, kept over SIGTERM (exit 4), all published once it is back" {
	new_flow
	local kport i
	kport=$(kafka_ports 1)
	KL_DIR="$BATS_TEST_TMPDIR/kafka"
	start_serve -b "127.0.0.1:$kport" --drain-timeout 1s \
	    -X message.timeout.ms=600000
	for i in 1 2 3; do
		run post "$(order_json "o-d$i")"
		assert_output 201
	done
	[ "$(metric order_serve_outbox_depth)" = 3 ]
	stop_serve
	[ "$SERVE_STATUS" -eq 4 ]
	run grep 'stay in the outbox' "$BATS_TEST_TMPDIR/serve.log"
	assert_success

	# The next start publishes them, and takes new ones while still down.
	start_serve -b "127.0.0.1:$kport"
	for i in 4 5; do
		run post "$(order_json "o-d$i")"
		assert_output 201
	done
	[ "$(metric order_serve_outbox_depth)" = 5 ]
	printf 'o-d%s\n' 1 2 3 4 5 | sort >"$BATS_TEST_TMPDIR/want"
	kafka-local --dir "$KL_DIR" --port "$kport" start >/dev/null
	# a broker that comes back has the topics (none is made by its use)
	topic-admin -q -b "127.0.0.1:$kport" create >/dev/null
	wait_until 90 topic_has_keys "127.0.0.1:$kport" "$BATS_TEST_TMPDIR/want"
	wait_until 10 metric_is order_serve_outbox_depth 0
	stop_serve
	[ "$SERVE_STATUS" -eq 0 ]
}

# load_worker N: posts 30 orders, one line "ORDER-ID STATUS" each; after
# the first failure the rest are not sent (status 000 too).
# The check is the store's, shared with pay-process (test/40 has every
# case): here that order-serve makes it before it serves.
@test "order-serve: a state directory others can write, or a symbolic link in it: refused with exit 1" {
	new_flow
	local st=$BATS_TEST_TMPDIR/sst victim=$BATS_TEST_TMPDIR/victim
	mkdir -m 0777 "$st"
	chmod 0777 "$st"
	run --separate-stderr timeout 30 order-serve --state "$st" \
	    --listen "127.0.0.1:$(free_port)"
	assert_failure 1
	assert_output ""
	[[ "$stderr" == *"order-serve: store: $st: writable by group or others (mode 0777); refusing"* ]] ||
	    fail "stderr: $stderr"

	chmod 0700 "$st"
	ORDERFLOW_STATE=$st PORT= start_serve --state "$st"
	stop_serve
	assert_equal "$SERVE_STATUS" 0
	echo precious >"$victim"
	mv "$st/log.0000000001" "$BATS_TEST_TMPDIR/log"
	ln -s "$victim" "$st/log.0000000001"
	run --separate-stderr timeout 30 order-serve --state "$st" \
	    --listen "127.0.0.1:$(free_port)"
	assert_failure 1
	[[ "$stderr" == *"order-serve: store: $st/log.0000000001: a symbolic link in the state directory; refusing"* ]] ||
	    fail "stderr: $stderr"
	[ "$(cat "$victim")" = precious ]
}

@test "one order-serve per state directory: a second one exits 5, another directory is free" {
	new_flow
	start_serve
	# (timeout: without the lock it would serve on)
	run --separate-stderr timeout 30 order-serve \
	    --listen "127.0.0.1:$(free_port)"
	assert_failure 5
	assert_equal "$stderr" "order-serve: $ORDERFLOW_STATE/order-serve: another order-serve uses this state directory"
	# the first one goes on
	run post "$(order_json o-lock-1)"
	assert_output 201
	# and a directory of its own is not locked: that one starts
	local first=$SERVE_PID
	ORDERFLOW_STATE=$BATS_TEST_TMPDIR/state2 PORT= start_serve
	stop_serve
	assert_equal "$SERVE_STATUS" 0
	SERVE_PID=$first
}

load_worker() {
	local i id code=201
	for i in $(seq 1 30); do
		id="o-k$1-$i"
		if [ "$code" = 201 ]; then
			code=$(curl -sS -o /dev/null -w '%{http_code}' \
			    --max-time 10 -H 'Content-Type: application/json' \
			    -H "Idempotency-Key: key-$id" \
			    --data-binary "$(order_json "$id")" "$URL/orders" \
			    2>/dev/null) || true
			code=${code:-000}
			echo "$id $code"
		else
			echo "$id 000"
		fi
	done >"$BATS_TEST_TMPDIR/load.$1"
}

count_201() {
	[ "$(cat "$BATS_TEST_TMPDIR"/load.* 2>/dev/null | grep -c ' 201$')" -ge "$1" ]
}

@test "SIGKILL under load, restart: the 201 order ids are exactly those on the topic" {
	new_flow
	start_serve
	local w pids=() id code
	for w in 1 2 3 4; do
		load_worker "$w" 3>&- &
		pids+=($!)
	done
	wait_until 60 count_201 20
	kill -KILL "$SERVE_PID"
	wait "$SERVE_PID" || true
	SERVE_PID=
	wait "${pids[@]}"
	cat "$BATS_TEST_TMPDIR"/load.* >"$BATS_TEST_TMPDIR/all"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/all")" -eq 120 ]
	start_serve
	# What the killed process had acknowledged with 201 goes out first.
	awk '$2 == 201 { print $1 }' "$BATS_TEST_TMPDIR/all" | sort \
	    >"$BATS_TEST_TMPDIR/acked"
	wait_until 30 metric_is order_serve_outbox_depth 0
	run comm -23 "$BATS_TEST_TMPDIR/acked" <(topic_keys "$KAFKA_BROKERS")
	assert_output ""
	# A client that got no answer asks again with the same key.
	while read -r id code; do
		if [ "$code" != 201 ]; then
			code=$(post "$(order_json "$id")" \
			    -H "Idempotency-Key: key-$id")
		fi
		[ "$code" = 201 ] || fail "$id: $code"
		echo "$id"
	done <"$BATS_TEST_TMPDIR/all" | sort -u >"$BATS_TEST_TMPDIR/want"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/want")" -eq 120 ]
	wait_until 60 topic_has_keys "$KAFKA_BROKERS" "$BATS_TEST_TMPDIR/want"
	wait_until 10 metric_is order_serve_outbox_depth 0
	stop_serve
	[ "$SERVE_STATUS" -eq 0 ]
}
