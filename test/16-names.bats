#!/usr/bin/env bats
# 16-names.bats - every topic and header name of the flow is written once,
# in common/flow.h: anywhere else in cmd/ or common/ a string literal that
# spells one fails this test, comments aside.

load test_helper

# names_outside_flow DIR...: prints FILE:LINE: TEXT for each string literal
# naming a topic or header of the flow, outside common/flow.h.  Comments are
# stripped by the preprocessor (-fpreprocessed: no include or macro is
# expanded), so prose may still name them; its line markers give the
# line numbers.
names_outside_flow() {
	local f re
	re='"(order-created|payment-processed)(-retry|-dlq)?"|"-(retry|dlq)"'
	re="$re"'|"orderflow\.[a-z.-]*"|"(content-type|traceparent)(:[^"]*)?"'
	re="$re"'|"ce_[a-z]+"'
	for f in "$@"; do
		[ "$(basename "$f")" = flow.h ] && continue
		cc -fpreprocessed -dD -E "$f" 2>/dev/null | awk -v f="$f" -v re="$re" '
		    /^# [0-9]+ "/ { n = $2 - 1; next }
		    { n++ }
		    $0 ~ re { print f ":" n ": " $0 }' 
	done
}

@test "names: no topic or header name is spelt outside common/flow.h" {
	local files=("$ROOT"/cmd/*.c "$ROOT"/common/*.[ch])
	[ "${#files[@]}" -gt 10 ]
	run names_outside_flow "${files[@]}"
	assert_success
	assert_output ""
}

@test "names: the check finds a name spelt in a source file" {
	local f="$BATS_TEST_TMPDIR/spelt.c"
	printf '%s\n' '/* "order-created" in a comment is prose */' \
	    'static const char *t = "order-created-dlq";' \
	    'static const char *h = "orderflow.attempt";' \
	    'static const char *l = "traceparent: %s";' > "$f"
	run names_outside_flow "$f"
	assert_success
	assert_line --index 0 --partial 'spelt.c:2:'
	assert_line --index 1 --partial 'spelt.c:3:'
	assert_line --index 2 --partial 'spelt.c:4:'
	[ "${#lines[@]}" -eq 3 ]
}
