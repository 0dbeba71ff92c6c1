#!/usr/bin/env bats
# 21-schemas.bats - topic-admin's schemas commands against the suite's real
# schema registry ($SCHEMA_REGISTRY_URL): the flow's schemas registered
# under BACKWARD subjects (twice to no harm), shown, a schema file
# registered or refused with the registry's reason, no registry given, an
# unreachable one.  Subjects are global in the shared registry: every test
# has its own topic prefix, hence its own subjects.  The schemas commands
# need no broker: the tests give an unreachable one.

load test_helper

setup() {
	PREFIX="$(unique_name s)."
	export ORDERFLOW_TOPIC_PREFIX="$PREFIX"
	export KAFKA_BROKERS=127.0.0.1:1
	ORDERS="${PREFIX}order-created-value"
	PAYMENTS="${PREFIX}payment-processed-value"
}

# api PATH: GET PATH of the registry's API, straight with curl; the body.
api() {
	curl -sS --fail --max-time 10 "$SCHEMA_REGISTRY_URL$1"
}

# urlenc TEXT: TEXT as a URL's path segment.
urlenc() {
	jq -rn --arg s "$1" '$s | @uri'
}

# v3_bad FILE: order.created v2 with a field without a default, which
# BACKWARD refuses.
v3_bad() {
	jq '.fields += [{name: "note", type: "string"}]' \
	    "$ROOT/schemas/order.created.v2.avsc" >"$1"
}

# same_schema ID FILE: the registry's schema ID is FILE's, as JSON.
same_schema() {
	api "/schemas/ids/$1" | jq -e --slurpfile f "$2" \
	    '(.schema | fromjson) == $f[0]' >/dev/null
}

@test "schemas: registers order.created v1, v2 and payment.processed v1 under BACKWARD subjects" {
	run --separate-stderr topic-admin -J schemas
	assert_success
	[ "${#lines[@]}" -eq 3 ] || fail "output: $output"
	echo "$output" | jq -e -s --arg o "$ORDERS" --arg p "$PAYMENTS" '
	    length == 3 and
	    .[0].subject == $o and .[0].version == 1 and
	    .[1].subject == $o and .[1].version == 2 and
	    .[2].subject == $p and .[2].version == 1 and
	    all(.[]; .compatibility == "BACKWARD" and (.id | type) == "number")
	    and .[0].id != .[1].id' >/dev/null || fail "output: $output"

	# The registry's own view: the levels, and the schemas behind the ids.
	local ids
	ids=($(echo "$output" | jq .id))
	run api "/config/$(urlenc "$ORDERS")"
	assert_output --partial '"BACKWARD"'
	run api "/config/$(urlenc "$PAYMENTS")"
	assert_output --partial '"BACKWARD"'
	same_schema "${ids[0]}" "$ROOT/schemas/order.created.v1.avsc" ||
	    fail "id ${ids[0]} is not order.created v1"
	same_schema "${ids[1]}" "$ROOT/schemas/order.created.v2.avsc" ||
	    fail "id ${ids[1]} is not order.created v2"
	same_schema "${ids[2]}" "$ROOT/schemas/payment.processed.v1.avsc" ||
	    fail "id ${ids[2]} is not payment.processed v1"
}

@test "schemas: a second run changes nothing: the same versions and ids" {
	local first
	run --separate-stderr topic-admin -J schemas
	assert_success
	first=$output
	run --separate-stderr topic-admin -J schemas
	assert_success
	assert_output "$first"
	run api "/subjects/$(urlenc "$ORDERS")/versions"
	assert_output '[1,2]'
}

@test "schemas: the table, and show with the prefix, named subjects, none" {
	run --separate-stderr topic-admin schemas
	assert_success
	assert_line --index 0 --regexp '^SUBJECT +COMPATIBILITY +VERSION +ID$'
	assert_line --index 1 --regexp "^$ORDERS +BACKWARD +1 +[0-9]+$"
	assert_line --index 2 --regexp "^$ORDERS +BACKWARD +2 +[0-9]+$"
	assert_line --index 3 --regexp "^$PAYMENTS +BACKWARD +1 +[0-9]+$"
	[ "${#lines[@]}" -eq 4 ] || fail "output: $output"

	# Without a subject: those starting with the prefix, no other test's.
	local all=$output
	run --separate-stderr topic-admin schemas show
	assert_success
	assert_output "$all"

	run --separate-stderr topic-admin -J schemas show "$PAYMENTS"
	assert_success
	echo "$output" | jq -e --arg p "$PAYMENTS" \
	    '.subject == $p and .version == 1' >/dev/null ||
	    fail "output: $output"
	[ "${#lines[@]}" -eq 1 ] || fail "output: $output"

	# A subject named that has no version: an error, the others shown.
	run --separate-stderr topic-admin -J schemas show "${PREFIX}nope" \
	    "$PAYMENTS"
	assert_failure 1
	[[ "$stderr" == *"${PREFIX}nope: no such subject"* ]] ||
	    fail "stderr: $stderr"
	[ "${#lines[@]}" -eq 1 ] || fail "output: $output"

	ORDERFLOW_TOPIC_PREFIX="$(unique_name none)." run --separate-stderr \
	    topic-admin schemas show
	assert_success
	assert_output ""
}

@test "schemas register: an incompatible order.created is refused with exit 1 and the registry's reason" {
	run --separate-stderr topic-admin schemas
	assert_success
	v3_bad "$BATS_TEST_TMPDIR/v3.avsc"
	run --separate-stderr topic-admin schemas register "$ORDERS" \
	    "$BATS_TEST_TMPDIR/v3.avsc"
	assert_failure 1
	assert_output ""
	[[ "$stderr" == *"topic-admin: $ORDERS: refused by the registry: "* ]] ||
	    fail "stderr: $stderr"
	# Apicurio's reason names the incompatible field.
	[[ "$stderr" == *[Ii]ncompatible*note* ]] || fail "stderr: $stderr"
	run api "/subjects/$(urlenc "$ORDERS")/versions"
	assert_output '[1,2]'
}

@test "schemas register: a new subject is set to BACKWARD; a compatible version is added" {
	local s="${PREFIX}custom-value"
	run --separate-stderr topic-admin -J schemas register "$s" \
	    "$ROOT/schemas/order.created.v1.avsc"
	assert_success
	echo "$output" | jq -e --arg s "$s" '.subject == $s and .version == 1
	    and .compatibility == "BACKWARD"' >/dev/null ||
	    fail "output: $output"
	# Standard input, "-": v2 reads v1's data.
	run --separate-stderr topic-admin -J schemas register "$s" - \
	    <"$ROOT/schemas/order.created.v2.avsc"
	assert_success
	[ "${#lines[@]}" -eq 2 ] || fail "output: $output"
	echo "${lines[1]}" | jq -e '.version == 2' >/dev/null ||
	    fail "output: $output"
	v3_bad "$BATS_TEST_TMPDIR/v3.avsc"
	run --separate-stderr topic-admin schemas register "$s" \
	    "$BATS_TEST_TMPDIR/v3.avsc"
	assert_failure 1
}

@test "schemas register: a subject with versions keeps its level" {
	local s="${PREFIX}free-value" body
	body=$(jq -c '{schema: tojson}' "$ROOT/schemas/order.created.v2.avsc")
	curl -sS --fail --max-time 10 -X POST \
	    -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
	    --data "$body" \
	    "$SCHEMA_REGISTRY_URL/subjects/$(urlenc "$s")/versions" >/dev/null
	curl -sS --fail --max-time 10 -X PUT \
	    -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
	    --data '{"compatibility": "NONE"}' \
	    "$SCHEMA_REGISTRY_URL/config/$(urlenc "$s")" >/dev/null
	v3_bad "$BATS_TEST_TMPDIR/v3.avsc"
	run --separate-stderr topic-admin -J schemas register "$s" \
	    "$BATS_TEST_TMPDIR/v3.avsc"
	assert_success
	[ "${#lines[@]}" -eq 2 ] || fail "output: $output"
	echo "${lines[1]}" | jq -e '.version == 2 and .compatibility == "NONE"' \
	    >/dev/null || fail "output: $output"
}

@test "schemas register: a file that cannot be read, or is not a schema, is exit 1" {
	run --separate-stderr topic-admin schemas register "$ORDERS" \
	    "$BATS_TEST_TMPDIR/nope.avsc"
	assert_failure 1
	[[ "$stderr" == *"nope.avsc: No such file or directory"* ]] ||
	    fail "stderr: $stderr"
	echo 'not a schema' >"$BATS_TEST_TMPDIR/junk.avsc"
	run --separate-stderr topic-admin schemas register "$ORDERS" \
	    "$BATS_TEST_TMPDIR/junk.avsc"
	assert_failure 1
	[[ "$stderr" == *"$ORDERS: refused by the registry: "?* ]] ||
	    fail "stderr: $stderr"
}

@test "schemas: no registry is a usage error (exit 2), so is a URL not http(s)" {
	SCHEMA_REGISTRY_URL= run --separate-stderr topic-admin schemas
	assert_failure 2
	[[ "$stderr" == *"no schema registry: give --schema-registry or set SCHEMA_REGISTRY_URL"* ]] ||
	    fail "stderr: $stderr"
	unset SCHEMA_REGISTRY_URL
	run --separate-stderr topic-admin schemas show
	assert_failure 2
	run --separate-stderr topic-admin --schema-registry \
	    ftp://user:s3cret@127.0.0.1/ schemas
	assert_failure 2
	[[ "$stderr" == *"--schema-registry: not an http or https URL"* ]] ||
	    fail "stderr: $stderr"
	[[ "$stderr" != *s3cret* ]] || fail "stderr: $stderr"
}

@test "schemas: usage errors exit 2" {
	run --separate-stderr topic-admin schemas nonsense
	assert_failure 2
	[[ "$stderr" == *"schemas nonsense: unknown command"* ]] ||
	    fail "stderr: $stderr"
	run --separate-stderr topic-admin schemas register "$ORDERS"
	assert_failure 2
	[[ "$stderr" == *"schemas register: wrong number of arguments"* ]] ||
	    fail "stderr: $stderr"
	run --separate-stderr topic-admin schemas show -p 3
	assert_failure 2
	[[ "$stderr" == *"schemas show: -p does not apply"* ]] ||
	    fail "stderr: $stderr"
	run --separate-stderr topic-admin --schema-registry \
	    "$SCHEMA_REGISTRY_URL" list
	assert_failure 2
	[[ "$stderr" == *"list: --schema-registry does not apply"* ]] ||
	    fail "stderr: $stderr"
}

@test "schemas: an unreachable registry is exit 1 at once, named without its credentials" {
	local t0=$SECONDS
	run --separate-stderr topic-admin --schema-registry \
	    http://user:s3cret@127.0.0.1:1/apis/ccompat/v7 schemas
	assert_failure 1
	assert_output ""
	[[ "$stderr" == *"topic-admin: http://127.0.0.1:1: registry unavailable: "* ]] ||
	    fail "stderr: $stderr"
	[[ "$stderr" != *s3cret* ]] || fail "stderr: $stderr"
	[ $((SECONDS - t0)) -lt 5 ] || fail "took $((SECONDS - t0)) s"
	SCHEMA_REGISTRY_URL=http://127.0.0.1:1 run --separate-stderr \
	    topic-admin schemas show
	assert_failure 1
}
