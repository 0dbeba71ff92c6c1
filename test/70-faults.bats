#!/usr/bin/env bats
# 70-faults.bats - the whole flow under faults, each test on a Kafka of its
# own (scripts/kafka-local in the test's directory on free loopback ports;
# the suite's broker is never touched, and every process a test started is
# gone when it ends, passed or failed):
#
# - ORDERFLOW_FAULT_ORDERS orders while two pay-process and two notify
#   instances (each with a --state directory of its own, as on separate
#   hosts: one process per state directory) are killed with SIGKILL and
#   restarted at random moments on their state, and the broker is
#   stopped and started once;
# - ORDERFLOW_FAULT_CLUSTER_ORDERS orders through a three-node cluster
#   (replication 3, min.insync.replicas 2) losing one node mid-run;
# - a full disk under each stateful command's --state (a small tmpfs:
#   these tests need root, as CI has, and fail rather than skip without
#   it): pay-process and notify in pipe mode, order-serve with its broker.
#
# In the end every order has exactly one payment outcome, the one the
# simulator's rules of pay-process(1) predict, and exactly one distinct
# notification id, none missing.  Repeats are allowed in the topics, not
# in the effects: a payment recorded twice, or a notification delivered
# again other than by the one SIGKILL between delivery and record that
# notify(1) documents, fails.  Each test prints its counts.
#
# Sizes, for a longer soak by hand (the defaults keep `make check` short):
#   ORDERFLOW_FAULT_ORDERS          orders of the kill test (5000)
#   ORDERFLOW_FAULT_KILLS           SIGKILLs among its workers (16)
#   ORDERFLOW_FAULT_CLUSTER_ORDERS  orders of the cluster test (2000)
#   ORDERFLOW_FAULT_DEADLINE        seconds a test may take (420)

load test_helper

FAULT_ORDERS=${ORDERFLOW_FAULT_ORDERS:-5000}
FAULT_KILLS=${ORDERFLOW_FAULT_KILLS:-16}
CLUSTER_ORDERS=${ORDERFLOW_FAULT_CLUSTER_ORDERS:-2000}
DEADLINE=${ORDERFLOW_FAULT_DEADLINE:-420}
# The deadline bounds the run; the workers' shutdown and the checks come
# after it.  A test still going 180 s past it is ended by bats (and its
# teardown run), so no wait, wherever it is, can hold up the suite.
BATS_TEST_TIMEOUT=$((DEADLINE + 180))

# A process that waits on a Berkeley DB mutex a killed one died holding
# exits with status 1 after this long (orderflow(7), STATE), and is
# restarted; sooner than the default 30 s, to keep the test short.
export ORDERFLOW_STORE_STALL_MS=10000

# A killed consumer's partitions move after its session timeout: the
# broker's smallest, rather than librdkafka's 45 s.
KX=(-X session.timeout.ms=6000 -X heartbeat.interval.ms=1000)
WORKER_OPTS=(--backoff 50ms --backoff-max 1s --max-attempts 10)

setup() {
	W=$BATS_TEST_TMPDIR
	KDIR=
	SLOTS=()
	declare -gA KIND=() PID=() INC=()
	EXITS=()
	MOUNTS=()
	SERVE_PID=
	DEADLINE_AT=$((SECONDS + DEADLINE))
	T0=$SECONDS
	NOTE_AT=$((SECONDS + 60))
	mkdir -p "$W/log" "$W/notes" "$W/receipts"
	# Under AddressSanitizer (make SANITIZE=1): a worker whose store a
	# peer's death broke cannot close its Berkeley DB handles (every
	# call on a panicked environment fails), so one that reopened its
	# store leaves the library's allocations behind.  Those, allocated
	# inside libdb, are not reported here; the project's own still are.
	{
		if [ -f "$ROOT/test/lsan.supp" ]; then
			cat "$ROOT/test/lsan.supp"
		fi
		echo 'leak:libdb-'
	} >"$W/lsan.supp"
	export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$W/lsan.supp:print_suppressions=0"
}

teardown() {
	local s p

	for s in "${SLOTS[@]}"; do
		p=${PID[$s]:-}
		[ -n "$p" ] || continue
		kill -KILL "$p" 2>/dev/null || :
		{ wait "$p" || :; } 2>/dev/null
	done
	if [ -n "$SERVE_PID" ]; then
		kill -KILL "$SERVE_PID" 2>/dev/null || :
		{ wait "$SERVE_PID" || :; } 2>/dev/null
	fi
	for p in "${MOUNTS[@]}"; do
		umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || :
	done
	if [ -n "$KDIR" ]; then
		kafka-local --dir "$KDIR" --timeout 30 stop 2>/dev/null || :
		# Whatever survived a failed stop.
		for p in $(cat "$KDIR"/node*/pid 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null || :
		done
	fi
	if [ -z "${BATS_TEST_COMPLETED:-}" ]; then
		for p in "$W"/log/*.err; do
			[ -s "$p" ] || continue
			echo "--- $p (errors and warnings, last 15)"
			grep -E 'error|warn|fatal|state:' "$p" | tail -n 15
		done >&3
	fi
	return 0
}

# start_kafka NODES: a cluster of NODES in $W/kafka on free ports below
# the ephemeral range (kafka_ports); sets KDIR and exports KAFKA_BROKERS.
# A port taken meanwhile means another try.
start_kafka() {
	local n=$1 p try

	KDIR=$W/kafka
	for try in 1 2 3 4 5; do
		p=$(kafka_ports "$n") || continue
		if KAFKA_BROKERS=$(kafka-local --dir "$KDIR" --port "$p" \
		    --timeout 120 --heap 384m start --nodes "$n" --fresh \
		    3>&-); then
			export KAFKA_BROKERS
			KPORT=$p
			return 0
		fi
	done
	echo "start_kafka: no cluster of $n node(s) started" >&2
	return 1
}

# new_faulty_flow PARTITIONS REPLICATION: this test's topics on its own
# cluster, with a unique prefix; the create's rows in $W/topics.json.
new_faulty_flow() {
	PREFIX="$(unique_name f)."
	export ORDERFLOW_TOPIC_PREFIX="$PREFIX"
	topic-admin -J -m 60 create -p "$1" -r "$2" >"$W/topics.json"
	topic-admin -m 60 wait
}

# gen_orders N ID-PREFIX: N orders whose payment methods end in an outcome
# by pay-process(1)'s rules: approved (at once, or after 1 to 3 transient
# failures) or declined (card_declined, limit_exceeded); none in a DLQ.
gen_orders() {
	jq -nc --argjson n "$1" --arg p "$2" '
	[ ["pm_card_visa", 2500], ["pm_card_mastercard", 1250],
	  ["pm_card_declined", 990], ["pm_card_amex", 1000001],
	  [null, 700], ["pm_transient_1", 500], ["pm_transient_2", 510],
	  ["pm_transient_3", 520] ] as $mix |
	range(0; $n) | . as $i | $mix[$i % ($mix | length)] as [$m, $price] |
	{order_id: "\($p)\($i)", customer_id: "c-\($i % 41)",
	 email: "u\($i)@example.com", currency: "EUR",
	 items: [{sku: "S-\($i % 5)", qty: 1, unit_price: $price}]} +
	(if $m == null then {} else {payment_method: $m} end)'
}

# expected < ORDERS: "ORDER_ID STATUS REASON AMOUNT" by the rules (the
# default limit 1000000), sorted.
expected() {
	jq -r '(.payment_method // "pm_card_visa") as $m |
	    ([.items[] | .qty * .unit_price] | add) as $t |
	    (if $m == "pm_card_declined" then "declined card_declined"
	     elif ($m | startswith("pm_transient_")) then "approved -"
	     elif $t > 1000000 then "declined limit_exceeded"
	     else "approved -" end) as $o |
	    "\(.order_id) \($o) \($t)"' | sort
}

# submit FILE NAME: order-submit FILE; every order must be acknowledged.
submit() {
	local n

	timeout 120 order-submit -q -m 60s "$1" >"$W/receipts/$2.jsonl" \
	    2>>"$W/log/submit.err" 3>&- ||
	    { echo "order-submit $1 failed" >&2; return 1; }
	n=$(jq -s '[.[] | select(.offset != null and .error == null)] |
	    length' "$W/receipts/$2.jsonl")
	[ "$n" -eq "$(wc -l <"$1")" ] ||
	    { echo "order-submit $1: $n acknowledged" >&2; return 1; }
}

# add_worker SLOT pp|nt: a slot for one instance of pay-process or notify.
add_worker() {
	SLOTS+=("$1")
	KIND[$1]=$2
	INC[$1]=0
	start_worker "$1"
}

# start_worker SLOT: the slot's next incarnation, with its own log and,
# for notify, its own notification file (the stdout sink): a line cut by
# a SIGKILL cannot run into the next incarnation's first.  Each slot has
# a state directory of its own, which every incarnation reuses (and so
# its default group.instance.id: a restart gets the slot's partitions
# back at once).
start_worker() {
	local s=$1 i

	i=$((INC[$s] + 1))
	INC[$s]=$i
	case ${KIND[$s]} in
	pp)
		pay-process -v --state "$W/state/$s" \
		    "${WORKER_OPTS[@]}" "${KX[@]}" \
		    2>"$W/log/$s.$i.err" </dev/null >/dev/null 3>&- &
		;;
	nt)
		notify -v --state "$W/state/$s" \
		    "${WORKER_OPTS[@]}" "${KX[@]}" \
		    >"$W/notes/$s.$i.jsonl" 2>"$W/log/$s.$i.err" </dev/null 3>&- &
		;;
	esac
	PID[$s]=$!
}

# kill_worker SLOT: SIGKILL, reaped.
kill_worker() {
	kill -KILL "${PID[$1]}" 2>/dev/null || :
	{ wait "${PID[$1]}" || :; } 2>/dev/null
}

# running PID: not exited (a zombie not yet reaped has exited).
running() {
	local st

	st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	st=${st##*) }
	[ "${st%% *}" != Z ]
}

# supervise: restarts a worker that exited by itself, as systemd's
# Restart=on-failure would, noting "SLOT.INCARNATION:STATUS" in EXITS.
supervise() {
	local s st

	for s in "${SLOTS[@]}"; do
		running "${PID[$s]}" && continue
		st=0
		wait "${PID[$s]}" || st=$?
		EXITS+=("$s.${INC[$s]}:$st")
		start_worker "$s"
	done
}

# catching_term PID: the process has its SIGTERM handler installed
# (bit 15 of SigCgt), or has exited.  A worker restarted a moment ago may
# not have reached main() yet, and a SIGTERM then would kill it, which is
# what SIGTERM does to any process, not a fault of the worker.
catching_term() {
	local key mask

	running "$1" || return 0
	while read -r key mask; do
		[ "$key" = SigCgt: ] && return $(((0x$mask & 0x4000) == 0))
	done <"/proc/$1/status"
	return 1
}

# stop_workers: SIGTERM to every worker, once it catches it; each must
# exit 0 within 60 s (one that does not is reported where it is, and
# teardown kills it).
stop_workers() {
	local s st bad=0 until=$((SECONDS + 60))

	for s in "${SLOTS[@]}"; do
		while ! catching_term "${PID[$s]}"; do
			[ "$SECONDS" -lt "$until" ] ||
			    { echo "$s: no SIGTERM handler after 60s" >&2; bad=1; break; }
			sleep 0.05
		done
		kill -TERM "${PID[$s]}" 2>/dev/null || :
	done
	until=$((SECONDS + 60))
	for s in "${SLOTS[@]}"; do
		while running "${PID[$s]}" && [ "$SECONDS" -lt "$until" ]; do
			sleep 0.05
		done
		if running "${PID[$s]}"; then
			echo "$s.${INC[$s]}: still running 60s after SIGTERM" >&2
			stuck_report >&2
			bad=1
			continue
		fi
		st=0
		wait "${PID[$s]}" || st=$?
		if [ "$st" != 0 ]; then
			echo "$s.${INC[$s]} exited $st on SIGTERM" >&2
			bad=1
		fi
	done
	# teardown kills what is left
	[ "$bad" = 1 ] || SLOTS=()
	return "$bad"
}

# check_exits: a worker may end by itself only as orderflow(7) says: a
# process wedged by a peer that died inside Berkeley DB, status 1; or,
# with librdkafka before 2.3.0, a producer's out-of-order sequence after
# a broker node died, as a fatal error or as the error of the records it
# failed, status 4; each saying so (and the supervisor restarted it).
check_exits() {
	local e slot st old=0

	pkg-config --atleast-version=2.3.0 rdkafka || old=1
	for e in "${EXITS[@]}"; do
		slot=${e%%:*}
		st=${e#*:}
		[ "$st" = 1 ] && grep -q 'Berkeley DB has made no progress' \
		    "$W/log/$slot.err" && continue
		[ "$st" = 4 ] && [ "$old" = 1 ] && grep -q \
		    -e 'kafka: fatal error: .*(OUT_OF_ORDER_SEQUENCE_NUMBER)' \
		    -e 'not acknowledged: .*out of order sequence number' \
		    "$W/log/$slot.err" && continue
		tail -n 30 "$W/log/$slot.err" >&2
		fail "worker $slot exited by itself with status $st"
	done
}

# exits_of pp|nt: how many times workers of that kind ended by themselves.
exits_of() {
	printf '%s\n' "${EXITS[@]}" | grep -c "^$1" || :
}

# progress_note TEXT: every 60 s, where the test is, on the TAP stream
# (a test that never ends then says how far it got).
progress_note() {
	[ "$SECONDS" -ge "$NOTE_AT" ] || return 0
	NOTE_AT=$((SECONDS + 60))
	echo "# $((SECONDS - T0))s: $*" >&3
}

# run_until N: supervises the workers until N orders are notified, or
# fails at the test's deadline.
run_until() {
	local progress

	while :; do
		supervise
		progress=$(notified)
		[ "$progress" -ge "$1" ] && return 0
		progress_note "$progress of $1 orders notified"
		if [ "$SECONDS" -ge "$DEADLINE_AT" ]; then
			stuck_report >"$W/stuck.txt" 2>&1
			cat "$W/stuck.txt" >&3
			fail "after ${DEADLINE}s: $progress of $1 orders notified"
		fi
		sleep 0.2
	done
}

# stuck_report: where each worker is, for a test that ran out of time: its
# kernel wait channel and, where gdb is installed, its threads' stacks.
stuck_report() {
	local s p

	for s in "${SLOTS[@]}"; do
		p=${PID[$s]}
		echo "--- $s.${INC[$s]} (pid $p): $(cat "/proc/$p/wchan" 2>/dev/null)"
		command -v gdb >/dev/null || continue
		# the program's own threads, not librdkafka's
		timeout 20 gdb -p "$p" -batch -ex 'thread apply all bt' \
		    2>/dev/null | awk '/^Thread / { keep = !/"rdk:/ }
		    keep && /^(Thread|#)/' | head -n 80
	done
	topic-admin lag 2>&1
}

# notified: how many distinct orders have a notification.
notified() {
	cat "$W"/notes/*.jsonl 2>/dev/null | grep -o '"order_id":"[^"]*"' |
	    sort -u | wc -l
}

# records TOPIC: the flow's TOPIC as kcat JSON lines.
records() {
	timeout 120 kcat -C -b "$KAFKA_BROKERS" -t "${PREFIX}$1" -o beginning \
	    -e -q -J -X fetch.wait.max.ms=10
}

# check_outcomes ORDERS PP_DEATHS NT_DEATHS: the payments in the topic,
# the payments recorded (pay-process's logs) and the notifications
# delivered (notify's files), each against the orders, given how many
# times each command died (SIGKILL or exit 1); the counts go to fd 3.
check_outcomes() {
	local orders=$1 pp_deaths=$2 nt_deaths=$3 n s

	n=$(wc -l <"$orders")
	expected <"$orders" >"$W/expected.txt"

	# payment-processed: "ORDER_ID EVENT_ID STATUS REASON AMOUNT
	# PAYMENT_ID" a record, repeats and all.
	records payment-processed | jq -r '.payload | fromjson |
	    "\(.data.order_id) \(.id) \(.data.status) \(.data.reason // "-")" +
	    " \(.data.amount) \(.data.payment_id)"' >"$W/payments.txt"
	sort -u "$W/payments.txt" >"$W/payments.distinct"
	# one outcome per order (one event id, status, payment id) ...
	run --separate-stderr awk '{ print $1 }' "$W/payments.distinct"
	assert_equal "$(printf '%s\n' "${lines[@]}" | sort | uniq -d)" ''
	# ... for every order, the one its rules give, and nothing else
	awk '{ print $1, $3, $4, $5 }' "$W/payments.distinct" | sort \
	    >"$W/paid.txt"
	run --separate-stderr diff "$W/expected.txt" "$W/paid.txt"
	assert_success

	# The effect of pay-process: a payment recorded for the first time
	# ("order ID: approved|declined ..."); at most one per order in each
	# state directory (slot), whichever incarnation.  Another slot's
	# state does not know it, and records it again if the partition
	# moved there before its offset was committed: the derived event id
	# (above) keeps the payment single downstream, as the gateway's
	# Idempotency-Key would.  A death after a batch's commit and before
	# its log lines leaves its orders without one (up to a batch each
	# death); their events were not produced either (the line comes
	# first), so they come again, and the slot that finds the record
	# says "order ID was paid before".  Every order has one line or the
	# other.
	for s in $(cd "$W/log" && ls pp*.err | sed 's/\..*//' | sort -u); do
		cat "$W/log/$s".*.err | sed -n \
		    's/^pay-process: order \([^ ]*\): \(approved\|declined\).*/\1/p' |
		    sort >"$W/charged.$s.txt"
		run --separate-stderr uniq -d "$W/charged.$s.txt"
		assert_output ''
		cat "$W/log/$s".*.err | sed -n \
		    's/^pay-process: order \([^ ]*\) was paid before: .*/\1/p' \
		    >"$W/repeated.$s.txt"
	done
	sort -u "$W"/charged.pp*.txt >"$W/charged.txt"
	CROSS_CHARGED=$(($(cat "$W"/charged.pp*.txt | wc -l) -
	    $(wc -l <"$W/charged.txt")))
	UNLOGGED=$(sort -u "$W"/repeated.pp*.txt | comm -23 - "$W/charged.txt" |
	    wc -l)
	awk '{ print $1 }' "$W/expected.txt" | sort -u >"$W/ordered.txt"
	run --separate-stderr comm -23 "$W/ordered.txt" \
	    <(sort -u "$W/charged.txt" "$W"/repeated.pp*.txt)
	assert_output ''
	[ "$UNLOGGED" -eq 0 ] || [ "$pp_deaths" -gt 0 ] ||
	    fail "$UNLOGGED payments without their log line, pay-process never died"

	# notify's files: complete JSON lines only (a SIGKILL may cut one,
	# whose event is then handled again).
	cat "$W"/notes/*.jsonl | jq -R -c 'fromjson? // "torn"' \
	    >"$W/notes.all"
	grep -v '^"torn"$' "$W/notes.all" | jq -r '"\(.order_id)" +
	    " \(.notification_id) \(.status) \(.reason // "-") \(.amount)" +
	    " \(.event_id)"' >"$W/notes.txt"
	sort -u "$W/notes.txt" >"$W/notes.distinct"
	# one distinct notification per order ...
	run --separate-stderr awk '{ print $1 }' "$W/notes.distinct"
	assert_equal "$(printf '%s\n' "${lines[@]}" | sort | uniq -d)" ''
	# ... for every order, saying what its payment was, for its event
	awk '{ print $1, $3, $4, $5 }' "$W/notes.distinct" | sort \
	    >"$W/notified.txt"
	run --separate-stderr diff "$W/expected.txt" "$W/notified.txt"
	assert_success
	run --separate-stderr diff <(awk '{ print $1, $6 }' "$W/notes.distinct" | sort) \
	    <(awk '{ print $1, $2 }' "$W/payments.distinct" | sort)
	assert_success
	# A notification goes out again after a death of notify: each slot
	# has a state directory of its own (as on hosts of their own), so
	# the member that takes the dead one's partitions redoes them from
	# their last commit without the dead one's records.  What makes that
	# safe, and is checked above: every repeat carries its order's one
	# notification id.  With no death, nothing is sent twice.
	NOTE_REPEATS=$(($(wc -l <"$W/notes.txt") -
	    $(wc -l <"$W/notes.distinct")))
	NOTE_TORN=$(grep -c '^"torn"$' "$W/notes.all" || :)
	[ "$nt_deaths" -gt 0 ] || [ "$NOTE_REPEATS" -eq 0 ] ||
	    fail "$NOTE_REPEATS notifications sent again, notify never died"
	[ "$NOTE_TORN" -le "$nt_deaths" ] ||
	    fail "$NOTE_TORN torn notification lines, notify died $nt_deaths times"

	# Nothing dead-lettered.
	run --separate-stderr records order-created-dlq
	assert_output ''
	run --separate-stderr records payment-processed-dlq
	assert_output ''

	RETRIES=$(records order-created-retry | wc -l)
	STATE_RETRIES=$(records order-created-retry |
	    jq -r '(.headers // []) as $h | [range(0; $h | length; 2) |
		select($h[.] == "orderflow.error.message") | $h[. + 1] |
		select(startswith("state:"))] | length' |
	    awk '{ s += $1 } END { print s + 0 }')
	{
		echo "# orders $n: payment-processed" \
		    "$(wc -l <"$W/payments.txt") records," \
		    "$(wc -l <"$W/payments.distinct") distinct;" \
		    "approved $(grep -c ' approved ' "$W/paid.txt" || :)," \
		    "declined $(grep -c ' declined ' "$W/paid.txt" || :)"
		echo "# payments recorded $(wc -l <"$W/charged.txt")" \
		    "with their log line ($UNLOGGED more found recorded" \
		    "by a later delivery; $CROSS_CHARGED again in another" \
		    "slot's state), retry records $RETRIES" \
		    "($STATE_RETRIES after a state error)"
		echo "# notifications: $(wc -l <"$W/notes.txt") lines," \
		    "$(wc -l <"$W/notes.distinct") distinct ids," \
		    "$NOTE_REPEATS sent again, $NOTE_TORN torn"
	} >&3
}

@test "faults: ORDERFLOW_FAULT_ORDERS (default 5000) orders, workers killed with SIGKILL at random, the broker stopped and started: one outcome and one notification each" {
	local n=$FAULT_ORDERS chunk rounds=10 sub=0 k=0 progress s t0
	local -a at=()
	local -A kills=([pp]=0 [nt]=0)
	local bounced=0

	t0=$SECONDS
	start_kafka 1
	new_faulty_flow 6 1
	gen_orders "$n" "f$RANDOM-" >"$W/orders.jsonl"
	chunk=$(((n + rounds - 1) / rounds))
	split -d -a 3 -l "$chunk" "$W/orders.jsonl" "$W/chunk."

	add_worker pp1 pp
	add_worker pp2 pp
	add_worker nt1 nt
	add_worker nt2 nt

	# The moments of the kills: random points of the progress (orders
	# notified), sorted.
	mapfile -t at < <(for ((s = 0; s < FAULT_KILLS; s++)); do
		echo $((RANDOM * 32768 + RANDOM))
	done | awk -v n="$n" '{ print int($1 % int(n * 0.95)) }' | sort -n)

	# Orders go in a chunk at a time, two chunks ahead of the
	# notifications; workers die at their moments; the broker is stopped
	# and started once half the orders are notified.
	while :; do
		progress=$(notified)
		while [ "$sub" -lt "$rounds" ] &&
		    [ "$progress" -ge $(((sub - 1) * chunk)) ]; do
			submit "$(printf '%s/chunk.%03d' "$W" "$sub")" "$sub"
			sub=$((sub + 1))
		done
		while [ "$k" -lt "${#at[@]}" ] && [ "$progress" -ge "${at[$k]}" ]; do
			s=${SLOTS[$((RANDOM % ${#SLOTS[@]}))]}
			kill_worker "$s"
			kills[${KIND[$s]}]=$((kills[${KIND[$s]}] + 1))
			start_worker "$s"
			k=$((k + 1))
		done
		if [ "$bounced" = 0 ] && [ "$progress" -ge $((n / 2)) ]; then
			kafka-local --dir "$KDIR" --timeout 60 stop 3>&-
			# its port again, whatever $KAFKA_LOCAL_PORT says
			kafka-local --dir "$KDIR" --port "$KPORT" --heap 384m \
			    --timeout 120 start >/dev/null 3>&-
			bounced=1
		fi
		supervise
		[ "$progress" -ge "$n" ] && [ "$sub" -eq "$rounds" ] && break
		progress_note "$progress of $n orders notified; $sub of" \
		    "$rounds chunks submitted, $k of ${#at[@]} kills," \
		    "broker stopped and started $bounced time(s)"
		if [ "$SECONDS" -ge "$DEADLINE_AT" ]; then
			stuck_report >"$W/stuck.txt" 2>&1
			cat "$W/stuck.txt" >&3
			fail "after ${DEADLINE}s: $progress of $n orders notified"
		fi
		sleep 0.2
	done
	echo "stopping the workers after $((SECONDS - T0))s" >&2
	stop_workers

	{
		echo "# $((SECONDS - t0))s; SIGKILLs: pay-process ${kills[pp]}," \
		    "notify ${kills[nt]}; broker stopped and started $bounced time(s)"
		echo "# exited by themselves (slot.incarnation:status):" \
		    "${EXITS[*]:-none}"
	} >&3
	check_exits
	echo "reading the topics after $((SECONDS - T0))s" >&2
	check_outcomes "$W/orders.jsonl" $((kills[pp] + $(exits_of pp))) \
	    $((kills[nt] + $(exits_of nt)))
	[ "$k" -eq "${#at[@]}" ]
	[ "$bounced" = 1 ]
}

@test "faults: ORDERFLOW_FAULT_CLUSTER_ORDERS (default 2000) orders through three nodes (replication 3, min.insync.replicas 2), one killed mid-run: nothing lost" {
	local n=$CLUSTER_ORDERS half victim t0

	t0=$SECONDS
	start_kafka 3
	new_faulty_flow 6 3
	# the six topics as asked
	run --separate-stderr jq -r '"\(.replication) \(.min_insync_replicas)"' "$W/topics.json"
	assert_equal "${#lines[@]}" 6
	assert_equal "$(printf '%s\n' "${lines[@]}" | sort -u)" "3 2"

	gen_orders "$n" "k$RANDOM-" >"$W/orders.jsonl"
	half=$((n / 2))
	head -n "$half" "$W/orders.jsonl" >"$W/first.jsonl"
	tail -n +"$((half + 1))" "$W/orders.jsonl" >"$W/second.jsonl"

	add_worker pp1 pp
	add_worker pp2 pp
	add_worker nt1 nt
	submit "$W/first.jsonl" first
	# A node dies once a quarter of the orders are notified: leaders,
	# the group coordinator or the controller may move, and the second
	# half is written to the two left.
	run_until $((n / 4))
	victim=$((RANDOM % 3 + 1))
	kafka-local --dir "$KDIR" kill "$victim" 3>&-
	submit "$W/second.jsonl" second
	run_until "$n"
	run --separate-stderr kafka-local --dir "$KDIR" status
	assert_line --regexp "^node $victim: stopped"
	echo "stopping the workers after $((SECONDS - T0))s" >&2
	stop_workers

	{
		echo "# $((SECONDS - t0))s; node $victim of 3 killed after" \
		    "$((n / 4)) notifications"
		echo "# exited by themselves (slot.incarnation:status):" \
		    "${EXITS[*]:-none}"
	} >&3
	check_exits
	echo "reading the topics after $((SECONDS - T0))s" >&2
	check_outcomes "$W/orders.jsonl" "$(exits_of pp)" "$(exits_of nt)"
}

# small_disk DIR SIZE: a tmpfs of SIZE on DIR (made), unmounted by the
# teardown.  Mounting needs root, which CI has: without it the test fails
# here, loudly, rather than being skipped.
small_disk() {
	mkdir -p "$1"
	mount -t tmpfs -o "size=$2,mode=0700" tmpfs "$1" ||
	    fail "cannot mount a tmpfs on $1 (the disk-full tests need root)"
	MOUNTS+=("$1")
}

# order_events N: N order.created events, one a line, order ids d-0 ...
order_events() {
	jq -cn --argjson n "$1" 'range(0; $n) | {specversion: "1.0",
	    id: "e-\(.)", source: "/test/70", type: "order.created.v2",
	    subject: "d-\(.)", time: "2026-01-01T00:00:00Z",
	    data: {order_id: "d-\(.)", customer_id: "c-1",
	    email: "a@example.com", currency: "EUR",
	    items: [{sku: "S", qty: 1, unit_price: 100}], total: 100,
	    payment_method: "pm_card_visa"}}'
}

# payment_events N: N payment.processed events, one a line, order ids d-0 ...
payment_events() {
	jq -cn --argjson n "$1" 'range(0; $n) | {specversion: "1.0",
	    id: "p-\(.)", source: "/test/70", type: "payment.processed.v1",
	    subject: "d-\(.)", time: "2026-01-01T00:00:00Z",
	    data: {order_id: "d-\(.)", payment_id: "pay-\(.)",
	    status: "approved", amount: 100, currency: "EUR",
	    customer_id: "c-1", email: "a@example.com"}}'
}

# disk_full_pipe CMD JQ-ID EVENTS [ARG...]: CMD (pay-process or notify) in
# pipe mode, with ARGs, on a state directory on a small disk, EVENTS the
# input file:
# - 2 MiB, too small for Berkeley DB's regions: exit 1 at the start,
#   the state directory named, never a signal (it was SIGBUS inside the
#   library, status 135);
# - room for the regions but not for the input: exit 1 when the disk
#   fills, again no signal;
# - space back: everything is done, and no order has two different
#   outcomes (JQ-ID, on an output line, names the order and its outcome
#   id) over the three runs; each order has one.
disk_full_pipe() {
	local cmd=$1 id=$2 in=$3 d=$W/disk st=$W/disk/state n

	shift 3
	n=$(wc -l <"$in")
	small_disk "$d" 2m
	run --separate-stderr "$cmd" --state "$st" -i - "$@" <"$in"
	[ "$status" -eq 1 ] || fail "a 2 MiB disk: status $status, not 1"
	assert_regex "$stderr" "(^|"$'\n'")$cmd: $st: No space left on device($|"$'\n'")"
	printf '%s\n' "$output" >"$W/out.1"

	mount -o remount,size=11m "$d" || fail "cannot grow the tmpfs"
	run --separate-stderr "$cmd" --state "$st" -i - "$@" <"$in"
	[ "$status" -eq 1 ] || fail "an 11 MiB disk: status $status, not 1"
	assert_regex "$stderr" "(^|"$'\n'")$cmd: $st: No space left on device($|"$'\n'")"
	printf '%s\n' "$output" >"$W/out.2"
	[ "$(grep -c . "$W/out.2")" -gt 0 ] ||
	    fail "the disk filled before anything was done"

	mount -o remount,size=256m "$d" || fail "cannot grow the tmpfs"
	run --separate-stderr "$cmd" --state "$st" -i - "$@" <"$in"
	assert_success
	printf '%s\n' "$output" >"$W/out.3"
	echo "# $cmd: $(grep -c . "$W/out.2") done before the disk filled," \
	    "$(grep -c . "$W/out.3") after" >&3
	run --separate-stderr jq -r "$id" "$W/out.1" "$W/out.2" "$W/out.3"
	assert_success
	[ "$(sort -u <<<"$output" | wc -l)" -eq "$n" ] ||
	    fail "$(sort -u <<<"$output" | wc -l) outcomes for $n orders"
	[ "$(sort -u <<<"$output" | cut -d' ' -f1 | sort -u | wc -l)" -eq "$n" ]
}

@test "faults: a full disk under pay-process's state (pipe mode): exit 1 naming the state directory, never a signal; with space back each order paid once" {
	order_events 20000 >"$W/in.jsonl"
	disk_full_pipe pay-process '"\(.data.order_id) \(.id)"' \
	    "$W/in.jsonl" -o -
}

@test "faults: a full disk under notify's state (pipe mode): exit 1 naming the state directory, never a signal; with space back each order notified under one id" {
	payment_events 20000 >"$W/in.jsonl"
	disk_full_pipe notify '"\(.order_id) \(.notification_id)"' \
	    "$W/in.jsonl"
}

# serve_post N PREFIX: POSTs orders PREFIX-1 .. PREFIX-N to order-serve,
# one status code a line on stdout.
serve_post() {
	local i

	for ((i = 1; i <= $1; i++)); do
		curl -sS -o /dev/null -w '%{http_code}\n' \
		    -H 'Content-Type: application/json' --data-binary \
		    '{"order_id":"'"$2-$i"'","customer_id":"c-1","email":"a@example.com","currency":"EUR","items":[{"sku":"S","qty":1,"unit_price":100}]}' \
		    "http://127.0.0.1:$SERVE_PORT/orders"
	done
}

serve_up() {
	curl -fsS -o /dev/null "http://127.0.0.1:$SERVE_PORT/healthz" \
	    2>/dev/null
}

# start_serve_on STATE: order-serve on a free port; logs in $W/log.
start_serve_on() {
	SERVE_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	order-serve --listen "127.0.0.1:$SERVE_PORT" --state "$1" \
	    --drain-timeout 3s 2>>"$W/log/serve.err" 3>&- &
	SERVE_PID=$!
	wait_until 60 serve_up || fail "order-serve did not start"
}

topic_keys() {
	kcat -C -b "$KAFKA_BROKERS" -t "${PREFIX}order-created" -e -q \
	    -f '%k\n' 2>/dev/null | sort -u
}

@test "faults: a full disk under order-serve's state: SIGTERM ends it within --drain-timeout, the accepted orders counted in the outbox and published at the next start" {
	local d=$W/disk st=$W/disk/state t0 st_code

	start_kafka 1
	new_faulty_flow 3 1
	# Too small for Berkeley DB's regions: exit 1 at the start.
	small_disk "$d" 2m
	run --separate-stderr timeout 60 order-serve --listen 127.0.0.1:0 \
	    --state "$st"
	[ "$status" -eq 1 ] || fail "a 2 MiB disk: status $status, not 1"
	assert_regex "$stderr" "(^|"$'\n'")order-serve: $st: No space left on device($|"$'\n'")"

	mount -o remount,size=32m "$d" || fail "cannot grow the tmpfs"
	start_serve_on "$st"
	serve_post 20 a >"$W/codes.a"
	[ "$(sort -u "$W/codes.a")" = 201 ]
	# The disk fills: the acknowledged records cannot leave the outbox,
	# new orders are refused or accepted while their batch still fits.
	dd if=/dev/zero of="$d/filler" bs=64k 2>/dev/null || :
	serve_post 20 b >"$W/codes.b"
	grep -qv 201 "$W/codes.b" || fail "the full disk took every order"
	[ "$(grep -v 201 "$W/codes.b" | sort -u)" = 503 ] ||
	    fail "refused with $(grep -v 201 "$W/codes.b" | sort -u | tr '\n' ' '), not 503"
	t0=$SECONDS
	kill -TERM "$SERVE_PID"
	# --drain-timeout 3s, and a second to close.
	wait_until 10 eval '! running "$SERVE_PID"' ||
	    fail "still running $((SECONDS - t0)) s after SIGTERM"
	st_code=0
	wait "$SERVE_PID" || st_code=$?
	SERVE_PID=
	echo "# stopped in $((SECONDS - t0)) s with status $st_code" >&3
	[ "$st_code" -eq 1 ] || [ "$st_code" -eq 4 ] ||
	    fail "status $st_code, not 1 or 4"
	grep -Eq "order-serve: [0-9]+ accepted order\(s\) stay in the outbox" \
	    "$W/log/serve.err" || fail "no count of the orders in the outbox"

	# Space back: the next start publishes what stayed; every order
	# that was answered 201 is on the topic.
	rm -f "$d/filler"
	start_serve_on "$st"
	{
		for i in $(seq 1 20); do echo "a-$i"; done
		paste -d' ' <(seq 1 20) "$W/codes.b" |
		    awk '$2 == 201 { print "b-" $1 }'
	} | sort >"$W/accepted"
	wait_until 60 bash -c '[ "$(kcat -C -b "$1" -t "$2" -e -q -f "%k\n" 2>/dev/null | sort -u)" = "$(cat "$3")" ]' _ \
	    "$KAFKA_BROKERS" "${PREFIX}order-created" "$W/accepted" ||
	    fail "the accepted orders are not all on the topic: $(topic_keys | tr '\n' ' ')"
	kill -TERM "$SERVE_PID"
	st_code=0
	wait "$SERVE_PID" || st_code=$?
	SERVE_PID=
	[ "$st_code" -eq 0 ]
}
