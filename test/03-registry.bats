#!/usr/bin/env bats
# 03-registry.bats - common/registry.c, the schema registry's client,
# against the suite's real registry ($SCHEMA_REGISTRY_URL, which
# setup_suite.bash exports): register, fetch by id, versions, subjects,
# compatibility levels and refusals.  Each test uses subjects of its own:
# subjects are global in the shared registry.  Without a registry the
# tests fail; none is skipped.

load test_helper

@test "registry: URLs checked, the name without credentials or path" {
	run --separate-stderr "$BUILD/test/registry_test" new
	assert_success
}

@test "registry: registering a schema twice gives the same id; versions and subjects list it" {
	run --separate-stderr "$BUILD/test/registry_test" register
	assert_success
}

@test "registry: a schema fetched by its id is the schema registered" {
	run --separate-stderr "$BUILD/test/registry_test" fetch
	assert_success
}

@test "registry: an unknown id, subject or version is REGISTRY_NOT_FOUND" {
	run --separate-stderr "$BUILD/test/registry_test" unknown
	assert_success
}

@test "registry: under BACKWARD an incompatible schema is REGISTRY_REFUSED with the registry's reason" {
	run --separate-stderr "$BUILD/test/registry_test" compat
	assert_success
	[[ "$stderr" == *"refused: "*[Ii]ncompatible* ]] || fail "stderr: $stderr"
}

@test "registry: what is not a schema is REGISTRY_REFUSED with a reason" {
	run --separate-stderr "$BUILD/test/registry_test" invalid
	assert_success
}

@test "registry: subjects with '/', '?', '#', '%' and spaces are escaped" {
	run --separate-stderr "$BUILD/test/registry_test" escape
	assert_success
}

@test "registry: a closed port is REGISTRY_UNAVAILABLE at once" {
	run --separate-stderr "$BUILD/test/registry_test" unavailable
	assert_success
}

@test "registry: the URL's credentials appear in no message" {
	run --separate-stderr "$BUILD/test/registry_test" userinfo
	assert_success
}

@test "registry: without SCHEMA_REGISTRY_URL the tests fail, never pass" {
	SCHEMA_REGISTRY_URL= run --separate-stderr \
	    "$BUILD/test/registry_test" register
	assert_failure
	[[ "$stderr" == *"SCHEMA_REGISTRY_URL is not set"* ]] ||
	    fail "stderr: $stderr"
}

@test "registry: the tests listed are the tests run here" {
	run --separate-stderr "$BUILD/test/registry_test"
	assert_success
	assert_output "$(printf '%s\n' new register fetch unknown compat \
	    invalid escape unavailable userinfo)"
}
