#!/usr/bin/env bats
# 20-topic-admin.bats - topic-admin against the real broker in $KAFKA_BROKERS:
# create (twice, dry run, mismatches), list, describe, delete, lag against
# offsets produced with kcat and committed by a kcat -G consumer, wait, an
# unreachable broker, usage errors.

load test_helper

FLOW_TOPICS="order-created order-created-retry order-created-dlq
payment-processed payment-processed-retry payment-processed-dlq"

# topic_exists TOPIC: the broker's metadata lists TOPIC.
topic_exists() {
	kcat -b "$KAFKA_BROKERS" -L -J -m 5 2>/dev/null |
	    jq -e --arg t "$1" 'any(.topics[]; .topic == $t)' >/dev/null
}

topic_gone() {
	! topic_exists "$1"
}

# lag_is GROUP COMMITTED LAG: topic-admin's group total says so.
lag_is() {
	topic-admin -J lag "$1" 2>/dev/null | jq -e -s --argjson c "$2" \
	    --argjson l "$3" \
	    'any(.[]; .topic == null and .committed == $c and .lag == $l)' \
	    >/dev/null
}

# scratch TOPIC...: topics this test makes, deleted after it, failed or not.
scratch_topics=()
scratch() {
	scratch_topics+=("$@")
}

teardown() {
	if [ "${#scratch_topics[@]}" -gt 0 ]; then
		topic-admin delete --yes "${scratch_topics[@]}" \
		    >/dev/null 2>&1 || true
	fi
}

# now_ms: a clock for "how long did that take".
now_ms() {
	date +%s%3N
}

@test "topic-admin: -h prints the usage, -V the version" {
	run --separate-stderr topic-admin -h
	assert_success
	[[ "$stderr" == "usage: topic-admin "* ]] || fail "stderr: $stderr"
	[[ "$stderr" == *"topic-admin delete --yes topic ..."* ]] ||
	    fail "stderr: $stderr"
	run --separate-stderr topic-admin -V
	assert_success
	assert_output --regexp '^topic-admin [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "topic-admin: usage errors exit 2" {
	run --separate-stderr topic-admin
	assert_failure 2
	run --separate-stderr topic-admin frobnicate
	assert_failure 2
	[[ "$stderr" == *"frobnicate: unknown command"* ]] || fail "$stderr"
	run --separate-stderr topic-admin create -p 0
	assert_failure 2
	run --separate-stderr topic-admin create -p many
	assert_failure 2
	run --separate-stderr topic-admin -m 0 list
	assert_failure 2
	run --separate-stderr topic-admin list -p 3
	assert_failure 2
	[[ "$stderr" == *"list: -p does not apply"* ]] || fail "$stderr"
	run --separate-stderr topic-admin describe
	assert_failure 2
	run --separate-stderr topic-admin list extra
	assert_failure 2
}

@test "topic-admin: create twice makes the six topics as asked" {
	local brokers repl minisr
	brokers=$(kcat -b "$KAFKA_BROKERS" -L -J -m 10 | jq '.brokers | length')
	repl=$((brokers < 3 ? brokers : 3))
	minisr=$((repl < 2 ? repl : 2))

	run --separate-stderr topic-admin create
	assert_success
	run --separate-stderr topic-admin -J create
	assert_success
	[ -z "$stderr" ] || fail "warnings on a second create: $stderr"
	printf '%s\n' "$output" | jq -e -s --argjson r "$repl" \
	    --argjson m "$minisr" '
	    length == 6 and all(.[]; .status == "exists" and
	        .partitions == 6 and .replication == $r and
	        .min_insync_replicas == $m and
	        (if (.topic | endswith("-dlq")) then .retention_ms == 1209600000
	         else .retention_ms == null end))'

	# What kcat sees, not only what topic-admin says.
	local t md
	md=$(kcat -b "$KAFKA_BROKERS" -L -J -m 10)
	for t in $FLOW_TOPICS; do
		printf '%s\n' "$md" | jq -e --arg t "$t" --argjson r "$repl" '
		    .topics[] | select(.topic == $t) |
		    (.partitions | length) == 6 and
		    all(.partitions[]; (.replicas | length) == $r)' ||
		    fail "kcat -L: $t is not as asked"
	done
}

@test "topic-admin: describe shows partitions and non-default configs" {
	topic-admin create >/dev/null
	run --separate-stderr topic-admin -J describe order-created-dlq
	assert_success
	printf '%s\n' "$output" | jq -e -s '
	    ([.[] | select(.partition != null)] | length) == 6 and
	    all(.[] | select(.partition != null);
	        .topic == "order-created-dlq" and .leader >= 0 and
	        (.replicas | length) >= 1 and (.isr | length) >= 1) and
	    any(.[]; .config == "retention.ms" and .value == "1209600000") and
	    any(.[]; .config == "min.insync.replicas") and
	    all(.[] | select(.config != null); .source != "DEFAULT_CONFIG")'

	run --separate-stderr topic-admin describe order-created
	assert_success
	assert_line --index 0 \
	    --regexp '^TOPIC +PARTITION +LEADER +REPLICAS +ISR$'
	assert_line --regexp '^order-created +5 +[0-9]+ +[0-9,]+ +[0-9,]+$'
	assert_line --regexp \
	    '^order-created +min\.insync\.replicas +[0-9]+ +DYNAMIC_TOPIC'
}

@test "topic-admin: describe of a missing topic exits 1 and names it" {
	local t
	t=$(unique_name nosuch)
	run --separate-stderr topic-admin describe "$t"
	assert_failure 1
	[[ "$stderr" == *"$t: no such topic"* ]] || fail "stderr: $stderr"
}

@test "topic-admin: create --dry-run creates nothing" {
	local t
	t=$(unique_name dry)
	run --separate-stderr topic-admin -J create --dry-run -t "$t" -p 2
	assert_success
	printf '%s\n' "$output" | jq -e --arg t "$t" \
	    '.topic == $t and .status == "would-create" and .partitions == 2'
	topic_gone "$t" || fail "--dry-run created $t"
	run --separate-stderr topic-admin -m 2 wait -t "$t"
	assert_failure 4
}

@test "topic-admin: create --dry-run reports what the broker would refuse" {
	local t
	t=$(unique_name dry-refused)
	run --separate-stderr topic-admin create --dry-run -t "$t" -r 1000
	assert_failure 1
	assert_line --regexp "^$t +6 +1000 +2 +- +failed$"
	[[ "$stderr" == "topic-admin: $t: "* ]] || fail "stderr: $stderr"
	topic_gone "$t" || fail "--dry-run created $t"
}

@test "topic-admin: a mismatch warns, and fails only for an explicit -p" {
	local t
	t=$(unique_name mismatch)
	scratch "$t"
	topic-admin create -t "$t" -p 2 >/dev/null
	run --separate-stderr topic-admin create -t "$t"
	assert_success
	assert_line --regexp "^$t +2 +.* differs$"
	[[ "$stderr" == "topic-admin: $t: exists with 2 partitions, not 6" ]] ||
	    fail "stderr: $stderr"
	run --separate-stderr topic-admin create -t "$t" -p 3
	assert_failure 1
	[[ "$stderr" == *"$t: exists with 2 partitions, not 3"* ]] ||
	    fail "stderr: $stderr"
}

@test "topic-admin: list shows the topics with partitions and replication" {
	local t
	t=$(unique_name list)
	scratch "$t"
	topic-admin create -t "$t" -p 3 >/dev/null
	run --separate-stderr topic-admin list
	assert_success
	assert_line --index 0 --regexp '^TOPIC +PARTITIONS +REPLICATION$'
	assert_line --regexp "^$t +3 +[0-9]+$"
	run --separate-stderr topic-admin -J list
	assert_success
	printf '%s\n' "$output" | jq -e -s --arg t "$t" \
	    'any(.[]; .topic == $t and .partitions == 3 and .replication >= 1)'
}

@test "topic-admin: delete refuses without --yes, deletes with it" {
	local t
	t=$(unique_name delete)
	scratch "$t"
	topic-admin create -t "$t" -p 1 >/dev/null
	run --separate-stderr topic-admin delete "$t"
	assert_failure 2
	[[ "$stderr" == *"refusing to delete without --yes"* ]] ||
	    fail "stderr: $stderr"
	topic_exists "$t" || fail "$t deleted without --yes"
	run --separate-stderr topic-admin delete "$t" --yes
	assert_success
	assert_line --regexp "^$t +deleted$"
	wait_until 30 topic_gone "$t"
	run --separate-stderr topic-admin delete --yes "$t"
	assert_failure 1
	[[ "$stderr" == *"$t: no such topic"* ]] || fail "stderr: $stderr"
}

# lag_leader_moving N ARGS...: topic-admin ARGS, the first N answers to its
# reading of a watermark saying the partition's leader is moving
# (test/fixtures/leader-moving.c).
lag_leader_moving() {
	local n=$1

	shift
	MOVING_COUNT=$n preloaded leader-moving topic-admin "$@"
}

@test "topic-admin: lag against offsets committed by a kcat -G consumer" {
	local t g
	t=$(unique_name lag)
	scratch "$t"
	g=$(unique_name lag-group)
	topic-admin create -t "$t" -p 1 >/dev/null
	seq 1 10 | kcat -P -b "$KAFKA_BROKERS" -t "$t"
	# kcat -G commits what it consumed when it closes.
	run kcat -b "$KAFKA_BROKERS" -G "$g" -o beginning -c 4 -e -q "$t"
	assert_success
	assert_output "$(seq 1 4)"
	wait_until 30 lag_is "$g" 4 6

	run --separate-stderr topic-admin -J lag "$g"
	assert_success
	printf '%s\n' "$output" | jq -e -s --arg t "$t" --arg g "$g" '
	    length == 3 and
	    .[0] == {group: $g, topic: $t, partition: 0, committed: 4,
	        high: 10, lag: 6} and
	    .[1] == {group: $g, topic: $t, committed: 4, high: 10, lag: 6} and
	    .[2] == {group: $g, committed: 4, high: 10, lag: 6}'

	run --separate-stderr topic-admin lag -G "$g"
	assert_success
	assert_line --index 0 \
	    --regexp '^GROUP +TOPIC +PARTITION +COMMITTED +HIGH +LAG$'
	assert_line --regexp "^$g +$t +0 +4 +10 +6$"
	assert_line --regexp "^$g +$t +total +4 +10 +6$"

	# The partition's leader moving: its watermark is asked for again.
	run --separate-stderr lag_leader_moving 3 lag "$g"
	assert_success
	assert_line --regexp "^$g +$t +0 +4 +10 +6$"
	assert_equal "$stderr" "leader-moving: 3 answers changed"
	# Still moving after -m: a warning, and no high or lag in the totals.
	run --separate-stderr lag_leader_moving 1000000 -m 1 lag "$g"
	assert_success
	assert_line --regexp "^$g +$t +0 +4 +- +-$"
	assert_line --regexp "^$g +$t +total +4 +- +-$"
	assert_line --regexp "^$g +- +total +4 +- +-$"
	[[ "$stderr" == *"$t [0]: Broker: Not leader for partition"* ]] ||
	    fail "stderr: $stderr"

	# Without a group: every group, this one among them.
	run --separate-stderr topic-admin -J lag
	assert_success
	printf '%s\n' "$output" | jq -e -s --arg g "$g" \
	    'any(.[]; .group == $g and .partition == 0 and .lag == 6)'
}

# lag_coordinator_error CODE COUNT: lag against librdkafka's mock cluster
# whose group coordinator answers CODE to the first COUNT requests
# (test/fixtures/coordinator-error.c).
lag_coordinator_error() {
	COORD_ERR=$1 COORD_ERR_COUNT=$2 preloaded coordinator-error \
	    topic-admin -X test.mock.num.brokers=1 -m 2 lag some-group
}

# Brokers answer so while group coordinators load or move (the first
# seconds after a start, a failover).  librdkafka then looks up the
# coordinator of the handle's own consumer group: a handle without one
# crashed (SIGSEGV), so lag opens one with a group it never joins.
@test "topic-admin: lag asks again while the group coordinator loads or moves" {
	# NOT_COORDINATOR once, then the answer
	run --separate-stderr lag_coordinator_error 16 1
	assert_success
	assert_equal "$stderr" "topic-admin: some-group: no committed offsets"
	# COORDINATOR_NOT_AVAILABLE for longer than -m: exit 1, saying so
	run --separate-stderr lag_coordinator_error 15 1000
	assert_failure 1
	assert_equal "$stderr" "topic-admin: some-group: Broker: Coordinator not available, still after 2 s"
}

@test "topic-admin: wait returns once the topics exist, exits 4 when not" {
	local t
	t=$(unique_name wait)
	topic-admin create >/dev/null
	run --separate-stderr topic-admin wait
	assert_success
	assert_output ""
	run --separate-stderr topic-admin -m 2 wait -t "$t"
	assert_failure 4
	[ "${#stderr_lines[@]}" -eq 1 ] || fail "stderr: $stderr"
	[[ "$stderr" == *"not ready after 2 s: $t" ]] || fail "stderr: $stderr"
}

# create_lagging TOPIC COUNT [OPTION...]: topic-admin create -t TOPIC,
# the first COUNT metadata answers after its CreateTopics leaving TOPIC
# out (test/fixtures/metadata-lag.c).
create_lagging() {
	local t=$1 n=$2

	shift 2
	LAG_TOPIC=$t LAG_COUNT=$n preloaded metadata-lag \
	    topic-admin "$@" create -t "$t"
}

# A broker knows of a new topic once it has read the controller's log that
# far, which a busy one takes seconds to do: until then commands are told
# the topic does not exist.
@test "topic-admin: create returns once the brokers know the new topics" {
	local t
	t=$(unique_name settle)
	run --separate-stderr create_lagging "$t" 3
	assert_success
	assert_line --regexp "^$t +6 +1 +1 +- +created$"
	assert_equal "$stderr" "metadata-lag: 3 answers without $t"
	# never known within -m: exit 4, saying which
	t=$(unique_name settle)
	run --separate-stderr create_lagging "$t" 1000000 -m 2
	assert_failure 4
	assert_line --regexp "^$t +6 +1 +1 +- +created$"
	assert_equal "${stderr_lines[0]}" \
	    "topic-admin: created, but not ready after 2 s: $t"
}

@test "topic-admin: an unreachable broker exits 4 with one line, in time" {
	local t0 t1
	t0=$(now_ms)
	run --separate-stderr topic-admin -b 127.0.0.1:1 -m 3 list
	t1=$(now_ms)
	assert_failure 4
	assert_output ""
	[ "${#stderr_lines[@]}" -eq 1 ] || fail "stderr: $stderr"
	local want="topic-admin: 127.0.0.1:1: broker unreachable after 3 s"
	[ "$stderr" = "$want" ] ||
	    fail "stderr: $stderr"
	[ $((t1 - t0)) -lt 8000 ] || fail "took $((t1 - t0)) ms"
	[ $((t1 - t0)) -ge 2500 ] || fail "gave up after $((t1 - t0)) ms"
}

@test "topic-admin: a TLS or SASL mismatch is named in the one line" {
	# the suite's broker speaks plaintext without SASL
	run --separate-stderr topic-admin -X security.protocol=ssl -m 2 list
	assert_failure 4
	assert_equal "$stderr" "topic-admin: $KAFKA_BROKERS: broker unreachable after 2 s: Local: SSL error"
	run --separate-stderr topic-admin -X security.protocol=sasl_plaintext \
	    -X sasl.mechanism=PLAIN -X sasl.username=u -X sasl.password=p \
	    -m 2 list
	assert_failure 4
	assert_equal "$stderr" "topic-admin: $KAFKA_BROKERS: broker unreachable after 2 s: Local: Authentication failure"
}

@test "topic-admin: the default timeout gives up in under 15 s" {
	local t0 t1
	t0=$(now_ms)
	run --separate-stderr topic-admin -b 127.0.0.1:1 list
	t1=$(now_ms)
	assert_failure 4
	[ "${#stderr_lines[@]}" -eq 1 ] || fail "stderr: $stderr"
	[ $((t1 - t0)) -lt 15000 ] || fail "took $((t1 - t0)) ms"
}

@test "topic-admin: -v shows librdkafka's connection errors" {
	run --separate-stderr topic-admin -v -b 127.0.0.1:1 -m 2 wait
	assert_failure 4
	[ "${#stderr_lines[@]}" -gt 1 ] || fail "stderr: $stderr"
	[[ "$stderr" == *"Connection refused"* ]] || fail "stderr: $stderr"
}

@test "topic-admin: a failed write to stdout is an error" {
	[ -w /dev/full ] || fail "no /dev/full"
	run --separate-stderr bash -c 'topic-admin list > /dev/full'
	assert_failure 1
	[[ "$stderr" == *"stdout"* ]] || fail "stderr: $stderr"
}

@test "topic-admin: SIGTERM stops a wait at once" {
	local pid t0 t1 status=0 log="$BATS_TEST_TMPDIR/stderr"
	t0=$(now_ms)
	topic-admin -v -b 127.0.0.1:1 -m 30 wait 2>"$log" &
	pid=$!
	# librdkafka's first line: the handler is in place, the wait begun.
	wait_until 10 grep -q "Connection refused" "$log"
	kill -TERM "$pid"
	wait "$pid" || status=$?
	t1=$(now_ms)
	[ "$status" -eq 143 ] || fail "status $status"
	[ $((t1 - t0)) -lt 10000 ] || fail "took $((t1 - t0)) ms"
}

@test "topic-admin: --topic-prefix and \$ORDERFLOW_TOPIC_PREFIX name the topics" {
	local p t
	p="$(unique_name pfx)."
	for t in $FLOW_TOPICS; do scratch "$p$t"; done
	run --separate-stderr topic-admin --topic-prefix "$p" -J create -p 2 -r 1
	assert_success
	[ "$(printf '%s\n' "$output" | jq -r .topic | sort | tr '\n' ' ')" = \
	    "$(for t in $FLOW_TOPICS; do echo "$p$t"; done | sort | tr '\n' ' ')" ]
	wait_until 30 topic_exists "${p}payment-processed-dlq"
	ORDERFLOW_TOPIC_PREFIX="$p" run --separate-stderr topic-admin -J wait -m 20
	assert_success
	ORDERFLOW_TOPIC_PREFIX="$p" run --separate-stderr topic-admin -J create -p 2 -r 1
	assert_success
	[ "$(printf '%s\n' "$output" | jq -r .status | sort -u)" = exists ]
}
