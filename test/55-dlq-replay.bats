#!/usr/bin/env bats
# 55-dlq-replay.bats - dlq-replay against the real broker in $KAFKA_BROKERS:
# dead letters put into a flow's DLQ with kcat (headers as the workers
# write them), replayed, and read back from the original topic with kcat.

load test_helper

# dead TOPIC KEY VALUE [NAME=VALUE...]: one dead letter with those headers.
dead() {
	local topic=$1 key=$2 value=$3 h args=()
	shift 3
	for h in "$@"; do
		args+=(-H "$h")
	done
	printf '%s\n' "$value" | kcat -P -b "$KAFKA_BROKERS" -t "$topic" \
	    -k "$key" "${args[@]}"
}

# dead_many TOPIC N TAG [NAME=VALUE...]: N dead letters keyed TAG-i with
# values {"type":"order.created.v2","id":"TAG-i"}.
dead_many() {
	local topic=$1 n=$2 tag=$3 h args=()
	shift 3
	for h in "$@"; do
		args+=(-H "$h")
	done
	seq 1 "$n" | awk -v t="$tag" \
	    '{ printf "%s-%d|{\"type\":\"order.created.v2\",\"id\":\"%s-%d\"}\n",
	    t, $1, t, $1 }' |
	    kcat -P -b "$KAFKA_BROKERS" -t "$topic" -K '|' "${args[@]}"
}

# records TOPIC: every record of TOPIC as JSON lines, headers as an object.
records() {
	timeout 30 kcat -C -b "$KAFKA_BROKERS" -t "$1" -e -J -q |
	    jq -c '.headers as $h | .headers = (if $h == null then {} else
	    [range(0; $h | length; 2) | {key: $h[.], value: $h[. + 1]}] |
	    from_entries end)'
}

# count TOPIC: how many records TOPIC holds.
count() {
	records "$1" | wc -l
}

# end_offsets_at_least TOPIC N: TOPIC's three partitions' end offsets add
# up to N or more (asked of the broker; nothing is consumed).
end_offsets_at_least() {
	local n
	n=$(timeout 10 kcat -Q -b "$KAFKA_BROKERS" -t "$1:0:-1" -t "$1:1:-1" \
	    -t "$1:2:-1" | awk '{ n += $NF } END { print n + 0 }')
	[ "$n" -ge "$2" ]
}

now_ms() {
	date +%s%3N
}

clock_after() {
	[ "$(now_ms)" -gt "$1" ]
}

# rfc3339 MS: epoch milliseconds as RFC 3339 UTC with milliseconds.
rfc3339() {
	printf '%s.%03dZ\n' "$(date -u -d "@$(($1 / 1000))" +%Y-%m-%dT%H:%M:%S)" \
	    $(($1 % 1000))
}

# summary_is JSON KEY VALUE: the summary line's total KEY is VALUE.
summary_is() {
	jq -e --arg k "$2" --argjson v "$3" '.[$k] == $v' <<<"$1" >/dev/null ||
	    fail "summary $1: $2 is not $3"
}

ORIG=orderflow.original.topic
KIND=orderflow.error.kind

setup() {
	held_pid=
	pp_pid=
}

teardown() {
	local p
	for p in $held_pid $pp_pid; do
		kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	return 0
}

# caught_up GROUP: the group committed everything it consumes (lag 0).
caught_up() {
	topic-admin -J lag "$1" 2>/dev/null |
	    jq -e -s 'length > 0 and all(.[] | select(.topic == null);
	    .lag == 0)' >/dev/null
}

@test "dlq-replay: -h prints the usage, -V the version, bad options exit 2" {
	run --separate-stderr dlq-replay -h
	assert_success
	[[ "$stderr" == "usage: dlq-replay "* ]] || fail "stderr: $stderr"
	run --separate-stderr dlq-replay -V
	assert_success
	assert_output --regexp '^dlq-replay [0-9]+\.[0-9]+\.[0-9]+$'
	run --separate-stderr dlq-replay --max 0
	assert_failure 2
	run --separate-stderr dlq-replay --rate fast
	assert_failure 2
	run --separate-stderr dlq-replay --since yesterday
	assert_failure 2
	run --separate-stderr dlq-replay --since 1h --until 2h
	assert_failure 2
	run --separate-stderr dlq-replay extra
	assert_failure 2
}

@test "dlq-replay: dead letters are replayed once across runs, as they were" {
	new_flow
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"
	local pdlq="${PREFIX}payment-processed-dlq"
	local pp="${PREFIX}payment-processed"
	dead_many "$dlq" 5 a "$ORIG=$oc" "$KIND=exhausted" \
	    orderflow.attempt=9 orderflow.not-before=1700000000000 \
	    orderflow.error.message=gateway traceparent=00-aa-bb-01 x-custom=kept
	dead "$pdlq" p-1 '{"type":"payment.processed.v1","id":"p-1"}' \
	    "$ORIG=$pp" "$KIND=permanent"
	dead "$pdlq" p-2 '{"type":"payment.processed.v1","id":"p-2"}' \
	    "$ORIG=$pp" "$KIND=permanent"

	run --separate-stderr timeout 60 dlq-replay
	assert_success
	summary_is "$output" replayed 7
	summary_is "$output" skipped 0
	summary_is "$output" parked 0
	summary_is "$output" failed 0
	jq -e --arg d "$dlq" --arg p "$pdlq" '.topics[$d].replayed == 5 and
	    .topics[$p].replayed == 2 and (.topics | length) == 2' \
	    <<<"$output" >/dev/null || fail "summary: $output"

	# On the original topic: key, value, other headers; retry state reset.
	records "$oc" >"$BATS_TEST_TMPDIR/oc"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/oc")" -eq 5 ]
	jq -e -s 'length == 5 and all(.[];
	    .payload == ("{\"type\":\"order.created.v2\",\"id\":\"" + .key +
	    "\"}") and
	    .headers["orderflow.replay.count"] == "1" and
	    (.headers | has("orderflow.attempt") | not) and
	    (.headers | has("orderflow.not-before") | not) and
	    .headers["x-custom"] == "kept" and
	    .headers.traceparent == "00-aa-bb-01" and
	    .headers["orderflow.error.kind"] == "exhausted" and
	    .headers["orderflow.error.message"] == "gateway") and
	    ([.[].key] | sort == ["a-1","a-2","a-3","a-4","a-5"])' \
	    "$BATS_TEST_TMPDIR/oc" >/dev/null ||
	    fail "replayed: $(cat "$BATS_TEST_TMPDIR/oc")"
	records "$pp" | jq -e -s 'length == 2 and
	    ([.[].key] | sort == ["p-1","p-2"])' >/dev/null ||
	    fail "payment-processed: $(records "$pp")"

	# The second run finds nothing new.
	run --separate-stderr timeout 60 dlq-replay
	assert_success
	summary_is "$output" replayed 0
	[ "$(count "$oc")" -eq 5 ]
	[ "$(count "$pp")" -eq 2 ]

	# New dead letters only.
	dead_many "$dlq" 2 b "$ORIG=$oc"
	run --separate-stderr timeout 60 dlq-replay
	assert_success
	summary_is "$output" replayed 2
	records "$oc" | jq -e -s '[.[].key] | sort ==
	    ["a-1","a-2","a-3","a-4","a-5","b-1","b-2"]' >/dev/null ||
	    fail "order-created: $(records "$oc")"
}

@test "dlq-replay: stops at the watermarks taken at start; --max-replays parks" {
	new_flow
	local dlq="${PREFIX}order-created-dlq"
	dead_many "$dlq" 3 w "$KIND=exhausted"

	# Replayed into the DLQ itself: a run that did not stop at the
	# start's watermarks would replay its own output again and again.
	local n
	for n in 1 2 3; do
		run --separate-stderr timeout 60 dlq-replay --to "$dlq"
		assert_success
		summary_is "$output" replayed 3
		summary_is "$output" parked 0
		[ "$(count "$dlq")" -eq $((3 + 3 * n)) ]
	done
	records "$dlq" | jq -e -s 'group_by(.key) | length == 3 and
	    all(.[]; [.[].headers["orderflow.replay.count"]] | sort ==
	    [null,"1","2","3"])' >/dev/null || fail "dlq: $(records "$dlq")"

	# Replayed three times already (the default --max-replays): parked.
	run --separate-stderr timeout 60 dlq-replay --to "$dlq"
	assert_success
	summary_is "$output" replayed 0
	summary_is "$output" parked 3
	[ "$(count "$dlq")" -eq 12 ]
	[[ "$stderr" == *"parked"* ]] || fail "stderr: $stderr"
}

@test "dlq-replay: a record replayed --max-replays times is parked, not sent" {
	new_flow
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"
	dead "$dlq" o-3 '{"id":"three"}' "$ORIG=$oc" orderflow.replay.count=3
	dead "$dlq" o-2 '{"id":"two"}' "$ORIG=$oc" orderflow.replay.count=2
	dead "$dlq" o-9 '{"id":"nine"}' "$ORIG=$oc" orderflow.replay.count=9

	run --separate-stderr timeout 60 dlq-replay
	assert_success
	summary_is "$output" replayed 1
	summary_is "$output" parked 2
	records "$oc" | jq -e -s 'length == 1 and .[0].key == "o-2" and
	    .[0].headers["orderflow.replay.count"] == "3"' >/dev/null ||
	    fail "order-created: $(records "$oc")"

	# Parked records are committed past: the group does not see them again.
	run --separate-stderr timeout 60 dlq-replay
	assert_success
	summary_is "$output" parked 0

	# Another group, with a higher limit, replays them.
	run --separate-stderr timeout 60 dlq-replay -G more --max-replays 4
	assert_success
	summary_is "$output" replayed 2
	summary_is "$output" parked 1
	records "$oc" | jq -e -s '[.[] | .key + "=" +
	    .headers["orderflow.replay.count"]] | sort ==
	    ["o-2=3","o-2=3","o-3=4"]' >/dev/null ||
	    fail "order-created: $(records "$oc")"
}

@test "dlq-replay: another run holding the lock: exit 5 at once, nothing touched" {
	new_flow
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"
	local lock="$ORDERFLOW_STATE/dlq-replay/lock"
	dead_many "$dlq" 3 l "$ORIG=$oc"
	mkdir -p "${lock%/*}"
	(flock -n 9 && touch "$BATS_TEST_TMPDIR/held" && exec sleep 120) \
	    9>"$lock" &
	held_pid=$!
	wait_until 10 test -e "$BATS_TEST_TMPDIR/held"

	run --separate-stderr timeout 20 dlq-replay
	assert_failure 5
	assert_output ""
	[[ "$stderr" == *"another run holds the lock"* ]] || fail "$stderr"
	# At once: not even a broker that cannot be reached is tried.
	run --separate-stderr timeout 5 dlq-replay -b 127.0.0.1:1
	assert_failure 5
	[ "$(count "$oc")" -eq 0 ]

	# -l names another lock file; the same one is refused.
	run --separate-stderr timeout 20 dlq-replay -l "$lock" --dry-run
	assert_failure 5
	assert_output ""

	kill "$held_pid"
	wait "$held_pid" || true
	held_pid=
	run --separate-stderr timeout 60 dlq-replay
	assert_success
	summary_is "$output" replayed 3
	[ "$(count "$oc")" -eq 3 ]
}

@test "dlq-replay: --dry-run prints what it would replay and commits nothing" {
	new_flow
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"
	dead "$dlq" k-1 '{"type":"order.created.v2","id":"one"}' "$ORIG=$oc" \
	    "$KIND=transient" orderflow.attempt=5 x-custom=yes
	printf 'bin\377\376\n' | kcat -P -b "$KAFKA_BROKERS" -t "$dlq" -k k-2 \
	    -H "$ORIG=$oc"

	run --separate-stderr timeout 60 dlq-replay --dry-run
	assert_success
	[ "${#lines[@]}" -eq 3 ] || fail "output: $output"
	jq -e -s --arg d "$dlq" --arg o "$oc" '
	    (.[0:2] | sort_by(.key)) as $r |
	    $r[0].topic == $d and $r[0].to == $o and
	    ($r[0].partition | type) == "number" and $r[0].offset == 0 and
	    $r[0].key == "k-1" and
	    $r[0].value == "{\"type\":\"order.created.v2\",\"id\":\"one\"}" and
	    $r[0].headers == {"orderflow.original.topic": $o,
	    "orderflow.error.kind": "transient", "x-custom": "yes",
	    "orderflow.replay.count": "1"} and
	    $r[1].key == "k-2" and ($r[1] | has("value") | not) and
	    $r[1].value_base64 == "Ymlu//4="' <<<"$output" >/dev/null ||
	    fail "output: $output"
	jq -e -s --arg d "$dlq" '(.[2] | del(.topics)) == {"replayed":2,
	    "skipped":0,"parked":0,"failed":0,"dry_run":true} and
	    .[2].topics[$d].replayed == 2' <<<"$output" >/dev/null ||
	    fail "output: $output"
	[ "$(count "$oc")" -eq 0 ]

	# Nothing was committed: a real run replays everything.
	run --separate-stderr timeout 60 dlq-replay
	assert_success
	summary_is "$output" replayed 2
	[ "$(count "$oc")" -eq 2 ]
	# The value that is not text went back byte for byte.
	[ "$(timeout 30 kcat -C -b "$KAFKA_BROKERS" -t "$oc" -e -q \
	    -f '%k:%s\n' | grep -a '^k-2:' | od -An -tx1 | tr -d ' \n')" = \
	    "6b2d323a62696efffe0a" ]
}

@test "dlq-replay: --kind selects; skipped records are committed past" {
	new_flow
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"
	dead_many "$dlq" 2 t "$ORIG=$oc" "$KIND=transient"
	dead_many "$dlq" 3 e "$ORIG=$oc" "$KIND=exhausted"
	dead_many "$dlq" 1 i "$ORIG=$oc" "$KIND=invalid"
	dead_many "$dlq" 1 n "$ORIG=$oc"

	run --separate-stderr timeout 60 dlq-replay --kind exhausted
	assert_success
	summary_is "$output" replayed 3
	summary_is "$output" skipped 4
	records "$oc" | jq -e -s '[.[].key] | sort == ["e-1","e-2","e-3"]' \
	    >/dev/null || fail "order-created: $(records "$oc")"

	# Each dead letter is looked at once per group, whatever the filter.
	run --separate-stderr timeout 60 dlq-replay
	assert_success
	summary_is "$output" replayed 0
	summary_is "$output" skipped 0

	# A new group starts over.
	run --separate-stderr timeout 60 dlq-replay -G again --kind transient
	assert_success
	summary_is "$output" replayed 2
	summary_is "$output" skipped 5
}

@test "dlq-replay: --type matches the CloudEvents type, with or without version" {
	new_flow
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"
	dead "$dlq" v1 '{"type":"order.created.v1","id":"1"}' "$ORIG=$oc"
	dead "$dlq" v2 '{"type":"order.created.v2","id":"2"}' "$ORIG=$oc"
	dead "$dlq" pp '{"type":"payment.processed.v1","id":"3"}' "$ORIG=$oc"
	dead "$dlq" ocx '{"type":"order.createdx.v1","id":"4"}' "$ORIG=$oc"
	dead "$dlq" raw 'order.created.v2' "$ORIG=$oc"

	run --separate-stderr timeout 60 dlq-replay --dry-run --type order.created
	assert_success
	jq -e -s '[.[] | select(has("key")) | .key] | sort == ["v1","v2"]' \
	    <<<"$output" >/dev/null || fail "output: $output"
	run --separate-stderr timeout 60 dlq-replay --dry-run \
	    --type order.created.v1
	assert_success
	jq -e -s '[.[] | select(has("key")) | .key] == ["v1"]' \
	    <<<"$output" >/dev/null || fail "output: $output"

	run --separate-stderr timeout 60 dlq-replay --type order.created.v2
	assert_success
	summary_is "$output" replayed 1
	summary_is "$output" skipped 4
	records "$oc" | jq -e -s 'length == 1 and .[0].key == "v2"' \
	    >/dev/null || fail "order-created: $(records "$oc")"
}

@test "dlq-replay: --type matches an Avro record by its ce_type header, and replays its bytes unchanged" {
	new_flow
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"
	local ct=content-type=application/avro
	# binary values whose bytes say nothing of the type
	dead "$dlq" av2 $'\x01\x02avro' "$ORIG=$oc" "$ct" ce_type=order.created.v2
	dead "$dlq" apay $'\x01\x03avro' "$ORIG=$oc" "$ct" \
	    ce_type=payment.processed.v1
	# ce_type on a JSON record is not its type
	dead "$dlq" json '{"type":"payment.processed.v1","id":"5"}' \
	    "$ORIG=$oc" ce_type=order.created.v2

	run --separate-stderr timeout 60 dlq-replay --dry-run --type order.created
	assert_success
	jq -e -s '[.[] | select(has("key")) | .key] == ["av2"]' \
	    <<<"$output" >/dev/null || fail "output: $output"
	run --separate-stderr timeout 60 dlq-replay --type order.created
	assert_success
	summary_is "$output" replayed 1
	summary_is "$output" skipped 2
	run bash -c "kcat -C -b '$KAFKA_BROKERS' -t '$oc' -o beginning -e -q \
	    -f '%k %s\n' | od -c | head -n 1"
	assert_output --partial "a   v   2     001 002   a   v   r   o"
}

@test "dlq-replay: --since and --until select by the record's time" {
	new_flow
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"
	local end1 t
	dead_many "$dlq" 3 old "$ORIG=$oc"
	end1=$(now_ms)
	wait_until 10 clock_after "$end1"
	t=$(now_ms)
	wait_until 10 clock_after "$t"
	dead_many "$dlq" 2 new "$ORIG=$oc"

	run --separate-stderr timeout 60 dlq-replay --since "$(rfc3339 "$t")"
	assert_success
	summary_is "$output" replayed 2
	summary_is "$output" skipped 3
	records "$oc" | jq -e -s '[.[].key] | sort == ["new-1","new-2"]' \
	    >/dev/null || fail "order-created: $(records "$oc")"

	run --separate-stderr timeout 60 dlq-replay -G older \
	    --until "$(rfc3339 "$t")"
	assert_success
	summary_is "$output" replayed 3
	summary_is "$output" skipped 2

	# A duration means that long ago.
	run --separate-stderr timeout 60 dlq-replay -G recent --dry-run \
	    --since 1h
	assert_success
	summary_is "$(tail -n 1 <<<"$output")" replayed 5
	run --separate-stderr timeout 60 dlq-replay -G future --dry-run \
	    --since "$(rfc3339 $(( $(now_ms) + 3600000 )))"
	assert_success
	summary_is "$output" replayed 0
	summary_is "$output" skipped 5
}

@test "dlq-replay: without an original topic and --to, skipped with a warning" {
	new_flow
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"
	dead "$dlq" lost '{"id":"lost"}' "$KIND=invalid"
	dead "$dlq" ok '{"id":"ok"}' "$ORIG=$oc"

	run --separate-stderr timeout 60 dlq-replay
	assert_success
	summary_is "$output" replayed 1
	summary_is "$output" skipped 1
	[[ "$stderr" == *"no orderflow.original.topic header"* ]] ||
	    fail "stderr: $stderr"

	run --separate-stderr timeout 60 dlq-replay -G manual --to "$oc" \
	    --kind invalid
	assert_success
	summary_is "$output" replayed 1
	records "$oc" | jq -e -s '[.[].key] | sort == ["lost","ok"]' \
	    >/dev/null || fail "order-created: $(records "$oc")"
}

@test "dlq-replay: --max replays at most N, the rest waits for the next run" {
	new_flow
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"
	dead_many "$dlq" 5 m "$ORIG=$oc"

	run --separate-stderr timeout 60 dlq-replay --max 2
	assert_success
	summary_is "$output" replayed 2
	[ "$(count "$oc")" -eq 2 ]
	run --separate-stderr timeout 60 dlq-replay
	assert_success
	summary_is "$output" replayed 3
	records "$oc" | jq -e -s '[.[].key] | sort ==
	    ["m-1","m-2","m-3","m-4","m-5"]' >/dev/null ||
	    fail "order-created: $(records "$oc")"
}

@test "dlq-replay: --rate paces replays; a terminal gets a progress line" {
	new_flow
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"
	local t0 t1
	dead_many "$dlq" 10 r "$ORIG=$oc"

	t0=$(now_ms)
	# script(1) gives it a terminal and writes what it shows to a file.
	run --separate-stderr timeout 60 script -qefc "dlq-replay --rate 5" \
	    "$BATS_TEST_TMPDIR/tty"
	t1=$(now_ms)
	assert_success
	# Ten replays at five a second: the tenth is due 1.8 s after the first.
	[ $((t1 - t0)) -ge 1800 ] || fail "took $((t1 - t0)) ms"
	[ "$(count "$oc")" -eq 10 ]
	grep -q $'\r''dlq-replay: [0-9]*/10 records, [0-9]* replayed, .*/s, .* left' \
	    "$BATS_TEST_TMPDIR/tty" || fail "terminal: $(cat -v "$BATS_TEST_TMPDIR/tty")"

	# Not a terminal: no progress line.
	dead_many "$dlq" 3 s "$ORIG=$oc"
	run --separate-stderr timeout 60 dlq-replay --rate 5
	assert_success
	[[ "$stderr" != *"records, "* ]] || fail "stderr: $stderr"
}

@test "dlq-replay: killed with SIGKILL mid-run, the next run loses nothing" {
	new_flow
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"
	local pid
	dead_many "$dlq" 200 k "$ORIG=$oc"

	dlq-replay --rate 10 >"$BATS_TEST_TMPDIR/out1" \
	    2>"$BATS_TEST_TMPDIR/err1" &
	pid=$!
	# Long enough for a few background commits (one a second).
	wait_until 60 end_offsets_at_least "$oc" 40 ||
	    fail "not 40 replays on $oc after 60 s: $(timeout 10 kcat -Q \
	    -b "$KAFKA_BROKERS" -t "$oc:0:-1" -t "$oc:1:-1" -t "$oc:2:-1" 2>&1)
dlq-replay said: $(cat "$BATS_TEST_TMPDIR/err1")"
	kill -KILL "$pid" || fail "ended by itself: $(cat "$BATS_TEST_TMPDIR/err1")"
	wait "$pid" || true
	[ ! -s "$BATS_TEST_TMPDIR/out1" ] || fail "the run ended by itself"
	[ "$(count "$oc")" -lt 200 ] || fail "the run was not killed mid-way"

	run --separate-stderr timeout 120 dlq-replay
	assert_success
	summary_is "$output" failed 0
	# Progress was kept: the second run did not start over.
	jq -e '.replayed < 200 and .replayed > 0' <<<"$output" >/dev/null ||
	    fail "summary: $output"
	records "$oc" | jq -r .payload | sort -u >"$BATS_TEST_TMPDIR/replayed"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/replayed")" -eq 200 ] ||
	    fail "$(wc -l <"$BATS_TEST_TMPDIR/replayed") distinct records replayed"
	seq 1 200 | awk '{ printf "{\"type\":\"order.created.v2\",\"id\":\"k-%d\"}\n", $1 }' |
	    sort | diff - "$BATS_TEST_TMPDIR/replayed"
}

# changed FIXTURE N ARGS...: dlq-replay ARGS with the LD_PRELOAD fixture
# test/fixtures/FIXTURE.c changing the first N answers of a request.
changed() {
	local fixture=$1 n=$2

	shift 2
	MOVING_COUNT=$n preloaded "$fixture" timeout 60 dlq-replay "$@"
}

# asks_again FIXTURE MESSAGE: with the first 4 answers changed by
# FIXTURE, a run asks again and replays everything; with every answer
# changed past its 10 s, it exits 4 saying MESSAGE and replays nothing.
asks_again() {
	local fixture=$1 msg=$2
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"

	# A first run, for offsets committed to read.
	dead_many "$dlq" 6 m "$ORIG=$oc"
	run --separate-stderr timeout 60 dlq-replay -t "$dlq"
	assert_success
	summary_is "$output" replayed 6

	dead_many "$dlq" 6 n "$ORIG=$oc"
	run --separate-stderr changed "$fixture" 4 -t "$dlq"
	assert_success
	summary_is "$output" replayed 6
	[[ "$stderr" == *"$fixture: 4 answers changed"* ]] ||
	    fail "stderr: $stderr"
	[ "$(count "$oc")" -eq 12 ]

	dead_many "$dlq" 2 o "$ORIG=$oc"
	run --separate-stderr changed "$fixture" 1000000 -t "$dlq"
	assert_failure 4
	assert_output ""
	[[ "$stderr" == *"$msg"* ]] || fail "stderr: $stderr"
	[ "$(count "$oc")" -eq 12 ]
}

# A broker answers "not coordinator" or "loading" while it starts or takes
# over __consumer_offsets; a partition read as committing nothing would be
# replayed from its start again.
@test "dlq-replay: asks again while the group's coordinator moves, until its deadline" {
	new_flow
	asks_again committed-moving "cannot read the offsets of group"
}

# A broker answers "not leader" for a while after a topic is created or a
# broker restarts; librdkafka gives that answer back at once.
@test "dlq-replay: asks again while a partition's leader moves, until its deadline" {
	new_flow
	asks_again leader-moving "cannot read the watermarks"
}

@test "dlq-replay: Kafka unreachable exits 4; a missing topic exits 1" {
	new_flow
	run --separate-stderr timeout 60 dlq-replay -b 127.0.0.1:1
	assert_failure 4
	assert_output ""
	[[ "$stderr" == *"Kafka unreachable"* ]] || fail "stderr: $stderr"

	run --separate-stderr timeout 60 dlq-replay -t "$(unique_name nosuch)"
	assert_failure 1
	[[ "$stderr" == *"no such topic"* ]] || fail "stderr: $stderr"
}

@test "dlq-replay: an exhausted pm_transient_9 order, replayed once the cause is gone, is paid once" {
	new_flow
	local dlq="${PREFIX}order-created-dlq" oc="${PREFIX}order-created"
	local pp="${PREFIX}payment-processed" g
	g=$(unique_name pay)
	printf '%s\n' '{"order_id":"o-t9","customer_id":"c-1","email":"a@example.com","currency":"EUR","items":[{"sku":"B-1","qty":1,"unit_price":2500}],"payment_method":"pm_transient_9"}' |
	    timeout 30 order-submit >/dev/null

	# Three attempts for an order whose first nine fail: exhausted.
	pay-process -G "$g" --max-attempts 3 --backoff 10ms --backoff-max 20ms \
	    2>>"$BATS_TEST_TMPDIR/pp.log" &
	pp_pid=$!
	wait_until 60 end_offsets_at_least "$dlq" 1
	kill -TERM "$pp_pid"
	wait "$pp_pid"
	pp_pid=
	records "$dlq" | jq -e -s 'length == 1 and .[0].key == "o-t9" and
	    .[0].headers["orderflow.error.kind"] == "exhausted"' >/dev/null ||
	    fail "dlq: $(records "$dlq")"
	[ "$(count "$pp")" -eq 0 ]

	# The cause goes away: the simulator fails attempts 1 to 9, so a
	# budget of ten attempts lets the replay, at attempt 1 again, through.
	pay-process -G "$g" --max-attempts 10 --backoff 10ms --backoff-max 20ms \
	    2>>"$BATS_TEST_TMPDIR/pp.log" &
	pp_pid=$!
	run --separate-stderr timeout 60 dlq-replay
	assert_success
	summary_is "$output" replayed 1
	wait_until 60 end_offsets_at_least "$pp" 1

	# The same dead letter replayed again (another group of dlq-replay):
	# pay-process drops the repeat instead of charging twice.
	run --separate-stderr timeout 60 dlq-replay -G again
	assert_success
	summary_is "$output" replayed 1
	[ "$(count "$oc")" -eq 3 ]
	wait_until 60 caught_up "$g"
	kill -TERM "$pp_pid"
	wait "$pp_pid"
	pp_pid=
	records "$pp" | jq -e -s 'length >= 1 and
	    ([.[].payload | fromjson | .id] | unique | length) == 1 and
	    all(.[].payload | fromjson; .data.order_id == "o-t9" and
	    .data.status == "approved")' >/dev/null ||
	    fail "payment-processed: $(records "$pp")"
	# One charge: the second pay-process approved once, dropped one repeat.
	grep 'summary:' "$BATS_TEST_TMPDIR/pp.log" | tail -n 1 |
	    grep -q ' approved=1 .* duplicates=1$' ||
	    fail "pay-process: $(grep 'summary:' "$BATS_TEST_TMPDIR/pp.log")"
}
