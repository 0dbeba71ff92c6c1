#!/usr/bin/env bats
# 90-man.bats - every manual page is lint-clean, and every command has one
# whose SYNOPSIS matches the usage line the command prints.

load test_helper

@test "every page is lint-clean under mandoc -Tlint" {
	local pages=("$ROOT"/man/man1/*.1 "$ROOT"/man/man7/*.7)
	[ -e "${pages[0]}" ]
	run --separate-stderr mandoc -Tlint -Wwarning "${pages[@]}"
	assert_success
	assert_output ""
	[ -z "$stderr" ]
}

@test "every command in the Makefile's BIN has a page and a binary" {
	local bin n=0
	for bin in $(sed -n 's/^BIN = //p' "$ROOT/Makefile"); do
		[ -f "$ROOT/man/man1/$bin.1" ] || fail "no man/man1/$bin.1"
		[ -x "$ROOT/bin/$bin" ] || fail "no bin/$bin"
		n=$((n + 1))
	done
	[ "$n" -gt 0 ]
}

@test "each usage line matches its page's SYNOPSIS" {
	local bin usage synopsis
	for bin in $(sed -n 's/^BIN = //p' "$ROOT/Makefile"); do
		run --separate-stderr "$ROOT/bin/$bin" -h
		assert_success
		usage=$(printf '%s\n' "$stderr" "$output" |
		    sed -n '/^usage:/,$p' | sed 's/^usage: *//' |
		    tr -s ' \n' ' ' | sed 's/^ //; s/ $//')
		[ -n "$usage" ] || fail "$bin -h prints no usage line"
		synopsis=$(MANWIDTH=1000 mandoc -Tascii -O width=1000 \
		    "$ROOT/man/man1/$bin.1" | col -b |
		    awk '/^SYNOPSIS/{s=1;next} /^[A-Z]/{s=0} s' |
		    tr -s ' \n' ' ' | sed 's/^ //; s/ $//')
		[ "$usage" = "$synopsis" ] ||
		    fail "$bin: usage \"$usage\" != SYNOPSIS \"$synopsis\""
	done
}
