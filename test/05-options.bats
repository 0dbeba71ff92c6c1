#!/usr/bin/env bats
# 05-options.bats - the options every Kafka-facing command shares (common/opt.c
# and common/log.c), exercised through topic-admin.

load test_helper

@test "options: -F reports a malformed line as FILE:LINE and exits 2" {
	local f="$BATS_TEST_TMPDIR/client.properties"
	printf '# a comment\n\nclient.id = demo\nthis line has no equals sign\n' > "$f"
	run --separate-stderr topic-admin -F "$f" list
	assert_failure 2
	[[ "$stderr" == *"topic-admin: $f:4: expected name=value"* ]] ||
	    fail "stderr: $stderr"
}

@test "options: -F reports an unknown property with its FILE:LINE" {
	local f="$BATS_TEST_TMPDIR/client.properties"
	printf 'client.id=demo\nno.such.property=1\n' > "$f"
	run --separate-stderr topic-admin -F "$f" list
	assert_failure 2
	[[ "$stderr" == *"$f:2"*"no.such.property"* ]] || fail "stderr: $stderr"
}

@test "options: -F on a missing file is an error naming it" {
	run --separate-stderr topic-admin -F "$BATS_TEST_TMPDIR/nope" list
	assert_failure
	[[ "$stderr" == *"$BATS_TEST_TMPDIR/nope"* ]] || fail "stderr: $stderr"
}

@test "options: -X without '=' is a usage error" {
	run --separate-stderr topic-admin -X nonsense list
	assert_failure 2
	[[ "$stderr" == *"-X nonsense: expected name=value"* ]] ||
	    fail "stderr: $stderr"
}

@test "options: -V prints the name and version" {
	run --separate-stderr topic-admin -V
	assert_success
	assert_output --regexp '^topic-admin [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "options: an unknown option is a usage error with the usage line" {
	run --separate-stderr topic-admin -Z list
	assert_failure 2
	[[ "$stderr" == *"usage: topic-admin"* ]] || fail "stderr: $stderr"
}

@test "options: --log-format json writes one JSON object a line" {
	run --separate-stderr topic-admin --log-format json -b 127.0.0.1:1 -m 2 list
	assert_failure 4
	[ -n "$stderr" ]
	printf '%s\n' "$stderr" | jq -e -s \
	    'length >= 1 and all(.[]; .prog == "topic-admin" and .level != null and .msg != null and .time != null)'
}

@test "options: --log-format rejects an unknown format" {
	run --separate-stderr topic-admin --log-format xml list
	assert_failure 2
}

@test "options: \$KAFKA_BROKERS is the default and -b overrides it" {
	KAFKA_BROKERS=127.0.0.1:1 run --separate-stderr topic-admin -m 2 list
	assert_failure 4
	[[ "$stderr" == *"127.0.0.1:1"* ]] || fail "stderr: $stderr"
	KAFKA_BROKERS=127.0.0.1:1 run --separate-stderr topic-admin -b "$KAFKA_BROKERS" -m 10 list
	assert_success
}

@test "options: secrets never reach the logs, even with -vv" {
	run --separate-stderr topic-admin -vv -b 127.0.0.1:1 -m 2 \
	    -X sasl.username=ana -X sasl.password=hunter2-secret \
	    -X security.protocol=SASL_PLAINTEXT -X sasl.mechanisms=PLAIN list
	assert_failure 4
	[[ "$stderr" != *hunter2-secret* ]] || fail "password logged: $stderr"
	[[ "$output" != *hunter2-secret* ]] || fail "password printed"
}

# Every property librdkafka flags sensitive, from -X and from -F: the
# private key (a PEM block, blanks and newlines in it), its passphrase and
# path, the inline CA, the keystore's and SASL's credentials.  acks=bogus
# comes last so that each command stops right after applying them.
secret_props() {
	local pem=$'-----BEGIN PRIVATE KEY-----\nMIIEvQ KEYBYTES-secret0\n-----END PRIVATE KEY-----'

	PROPS="$BATS_TEST_TMPDIR/client.properties"
	printf '%s\n' 'ssl.key.password = secret1' 'ssl.ca.pem=secret2' \
	    'sasl.oauthbearer.config=principal=secret3' >"$PROPS"
	SECRET_ARGS=(-X "ssl.key.pem=$pem" -F "$PROPS"
	    -X ssl.key.location=/keys/secret4 -X ssl.keystore.password=secret5
	    -X sasl.username=secret6 -X ssl_key=secret7 -X acks=bogus)
}

@test "options: no sensitive property's value is logged, by any command, with -vv or without" {
	local cmd
	secret_props
	for cmd in pay-process notify order-submit dlq-replay \
	    "order-serve --listen 127.0.0.1:0" "topic-admin list"; do
		for v in -vv -q ""; do
			# shellcheck disable=SC2086
			run --separate-stderr $cmd $v \
			    --state "$BATS_TEST_TMPDIR/state" "${SECRET_ARGS[@]}"
			[ "$status" -eq 2 ] || fail "$cmd $v: status $status: $stderr"
			[[ "$stderr$output" != *secret[0-9]* ]] ||
			    fail "$cmd $v logged a secret: $stderr"
		done
	done
	# A sensitive value librdkafka rejects is named, not shown.
	run --separate-stderr pay-process -X ssl_key=secret7 \
	    --state "$BATS_TEST_TMPDIR/state"
	assert_failure 2
	[[ "$stderr" == *"ssl_key=[redacted]"* ]] || fail "stderr: $stderr"
}

@test "options: a mistyped property name is reported without its value" {
	local cmd
	for cmd in pay-process "order-serve --listen 127.0.0.1:0"; do
		# shellcheck disable=SC2086
		run --separate-stderr $cmd --state "$BATS_TEST_TMPDIR/state" \
		    -X ssl.key.pemm=hunter2-value
		assert_failure 2
		[[ "$stderr" == *"-X: ssl.key.pemm: No such configuration property"* ]] ||
		    fail "$cmd: stderr: $stderr"
		[[ "$stderr" != *hunter2* ]] || fail "$cmd: value echoed: $stderr"
		# shellcheck disable=SC2086
		run --separate-stderr $cmd --state "$BATS_TEST_TMPDIR/state" \
		    -X sasl.password:hunter2-value
		assert_failure 2
		[[ "$stderr" == *"-X: expected name=value"* ]] ||
		    fail "$cmd: stderr: $stderr"
		[[ "$stderr" != *hunter2* ]] || fail "$cmd: value echoed: $stderr"
		# The same line in a -F file: named by FILE:LINE, no value.
		printf '# keys\nssl.key.pemm=hunter2-value\n' \
		    >"$BATS_TEST_TMPDIR/props"
		# shellcheck disable=SC2086
		run --separate-stderr $cmd --state "$BATS_TEST_TMPDIR/state" \
		    -F "$BATS_TEST_TMPDIR/props"
		assert_failure 2
		[[ "$stderr" == *"$BATS_TEST_TMPDIR/props:2: ssl.key.pemm: No such configuration property"* ]] ||
		    fail "$cmd: stderr: $stderr"
		[[ "$stderr" != *hunter2* ]] || fail "$cmd: value echoed: $stderr"
	done
}
