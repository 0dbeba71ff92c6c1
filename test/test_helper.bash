# test_helper.bash - loaded by every test file: paths, bats libraries, unique
# names and waiting for a condition with a deadline (never a fixed sleep).

bats_require_minimum_version 1.5.0

ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
export PATH="$ROOT/bin:$ROOT/scripts:$PATH"
BUILD="$ROOT/build"

for lib in bats-support bats-assert; do
	for dir in /usr/lib/bats /usr/lib /usr/local/lib/bats /usr/local/lib; do
		if [ -f "$dir/$lib/load.bash" ]; then
			load "$dir/$lib/load.bash"
			break
		fi
	done
done

# bats-assert's assert_success, but a failure shows the command's standard
# error as well: after run --separate-stderr that is where $stderr holds
# what our commands say about why they failed.
assert_success() {
	: "${output?}"
	: "${status?}"
	(( status == 0 )) && return 0
	batslib_print_kv_single_or_multi 6 status "$status" output "$output" \
	    stderr "${stderr-}" | batslib_decorate 'command failed' | fail
}

# preloaded FIXTURE COMMAND...: COMMAND with test/fixtures/FIXTURE.c built
# (once a test) and put in front of librdkafka by LD_PRELOAD, ASan told
# not to mind that it comes first.
preloaded() {
	local so="$BATS_TEST_TMPDIR/$1.so" src="$BATS_TEST_DIRNAME/fixtures/$1.c"

	shift
	[ -e "$so" ] || cc -shared -fPIC -o "$so" "$src" -ldl -lrdkafka ||
	    return 99
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
	    LD_PRELOAD="$so" "$@"
}

# Bootstrap servers of the suite's broker (set by setup_suite.bash).
: "${KAFKA_BROKERS:=127.0.0.1:9092}"
export KAFKA_BROKERS

# unique_name PREFIX: a topic or group name no other test uses.
unique_name() {
	printf '%s-%s-%s-%s\n' "$1" "$$" "${BATS_TEST_NUMBER:-0}" "$RANDOM$RANDOM"
}

# wait_until SECONDS COMMAND...: runs COMMAND until it succeeds or the
# deadline passes; returns 1 on timeout.
wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "wait_until: timed out after waiting for: $*" >&2
			return 1
		fi
		sleep 0.1
	done
}

# port_busy PORT: something accepts connections on 127.0.0.1:PORT.
port_busy() {
	(exec 4<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# kafka_ports NODES [AVOID]: a port P below the ephemeral range for a
# kafka-local of NODES nodes: nothing listens on its client ports P.. nor
# on its controllers' P+100..; AVOID is a P already handed out, whose
# ranges are kept clear too.  Free when picked, not reserved: a program
# that takes one meanwhile gets kafka-local's "already in use".
kafka_ports() {
	local n=$1 avoid=${2:-} p i try ok

	for ((try = 0; try < 50; try++)); do
		p=$((20000 + RANDOM % 12000))
		if [ -n "$avoid" ] && [ "$p" -gt $((avoid - 200)) ] &&
		    [ "$p" -lt $((avoid + 200)) ]; then
			continue
		fi
		ok=1
		for ((i = 0; i < n; i++)); do
			if port_busy $((p + i)) || port_busy $((p + 100 + i)); then
				ok=0
				break
			fi
		done
		if [ "$ok" = 1 ]; then
			echo "$p"
			return 0
		fi
	done
	echo "kafka_ports: no free ports for $n node(s)" >&2
	return 1
}

# new_flow [PARTITIONS]: gives this test its own flow: a unique topic
# prefix (ORDERFLOW_TOPIC_PREFIX, which every command reads) with the six
# topics created under it, and its own state directory (ORDERFLOW_STATE).
new_flow() {
	PREFIX="$(unique_name t)."
	export ORDERFLOW_TOPIC_PREFIX="$PREFIX"
	export ORDERFLOW_STATE="$BATS_TEST_TMPDIR/state"
	topic-admin -q create -p "${1:-3}" -r 1 >/dev/null
}

# avro_decode TOPIC [KCAT-ARG...]: every record of TOPIC, from the
# beginning to the end of each partition, read by an independent decoder:
# test/java/AvroDecode.java, Apache Avro's Java library with each schema
# fetched by its id from $SCHEMA_REGISTRY_URL.  Prints one JSON object a
# record, {"partition", "offset", "key", "schema_id", "value"} with value
# the datum in plain JSON (see the top of AvroDecode.java).  Fails when
# kcat fails or a record is no wire-format Avro that decodes (bad magic
# byte, unknown id, bytes that do not decode or are left over, a null
# value): the reason on stderr, the records before it on stdout.
# KCAT-ARGs go to kcat -C after ours (-p, -o, -c, -X); never -f, -J or -Z,
# which would change the framing kcat hands the decoder.  One JVM a call,
# about 1.5 s to start.
avro_decode() {
	local topic=$1 java cp rc

	shift
	java=$(avro_java) && cp=$(avro_classpath) || return 1
	# -f: see AvroDecode.java; each length comes before its bytes, so
	# binary values pass unharmed (kcat -J would copy them into JSON
	# strings unescaped).
	kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q \
	    -f '%p %o %K %k%R%s' "$@" |
	    "$java" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$cp" \
	    "$ROOT/test/java/AvroDecode.java" -r "$SCHEMA_REGISTRY_URL"
	rc=("${PIPESTATUS[@]}")
	if [ "${rc[0]}" != 0 ]; then
		echo "avro_decode: kcat exited ${rc[0]} reading $topic" >&2
		return 1
	fi
	return "${rc[1]}"
}

# avro_java: the java that runs AvroDecode.java: $JAVA_HOME's, else the one
# on PATH, as scripts/deps has it.  Avro 1.12 and the source-file launcher
# need Java 11; the default JDK here (17) is enough.
avro_java() {
	local java=${JAVA_HOME:+$JAVA_HOME/bin/}java v

	v=$("$java" -XshowSettings:properties -version 2>&1 |
	    sed -n 's/^ *java\.specification\.version = //p')
	if ! [[ $v =~ ^[0-9]+$ ]] || [ "$v" -lt 11 ]; then
		echo "avro_java: $java is not Java 11 or later (${v:-no" \
		    "version}): set JAVA_HOME to a newer JDK" >&2
		return 1
	fi
	echo "$java"
}

# avro_classpath: the jars AvroDecode.java needs, from the registry's
# application (scripts/schema-registry-local fetch: already cached when the
# suite's registry runs; .ci/run fetches it).  Only these, not all of
# lib/main: Avro needs Jackson and slf4j-api at run time (commons-compress
# only for its container files), and the application's other jars bring an
# slf4j binding that cannot start outside Quarkus.
avro_classpath() {
	local app jar cp= name

	app=$(schema-registry-local fetch) || return 1
	for name in org.apache.avro.avro com.fasterxml.jackson.core.jackson-core \
	    com.fasterxml.jackson.core.jackson-databind \
	    com.fasterxml.jackson.core.jackson-annotations org.slf4j.slf4j-api; do
		jar=$(compgen -G "$app/lib/main/$name-[0-9]*.jar" | head -n 1)
		if [ -z "$jar" ]; then
			echo "avro_classpath: no $name jar in $app/lib/main" >&2
			return 1
		fi
		cp=${cp:+$cp:}$jar
	done
	echo "$cp"
}

# stop_pids: SIGTERM to every process in PIDS (those a test started in
# the background), then waits up to 30 s for each before SIGKILL; for a
# test file's teardown.
stop_pids() {
	local pid

	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || :
	done
	for pid in "${PIDS[@]}"; do
		timeout 30 tail --pid="$pid" -f /dev/null 2>/dev/null || :
		kill -KILL "$pid" 2>/dev/null || :
	done
}
