# Makefile - builds orderflow's commands, the common library, the tests and
# the fuzz targets, and installs commands and pages.
#
#   make              bin/ with -Wall -Wextra (C11 with GNU extensions)
#   make WERROR=1     the same with -Werror: CI and development
#   make SANITIZE=1   the same with AddressSanitizer and UBSan
#   make check        installs missing packages, builds, runs the whole suite
#   make demo         installs what is missing, builds, runs the whole flow on a local broker
#   make bench        installs what is missing, builds, runs the benchmarks (scripts/bench)
#   make deps         installs the Debian packages (prints the command if not root)
#   make fuzz         libFuzzer targets in build/fuzz/ (clang)
#   make install PREFIX=/usr/local DESTDIR=
#
# CFLAGS (default -O2 -g), CPPFLAGS, LDFLAGS and LDLIBS are the user's:
# what is given there is added to what the build cannot do without (the
# language standard, the include paths, the libraries), never replaces
# it.  -Werror is opt-in, so that a newer compiler's new warning does not
# break a user's build.  A package that pkg-config cannot find stops the
# build with pkg-config's own message; deps, clean and check need none.

VERSION = 0.1.0
PREFIX = /usr/local
MANPREFIX = $(PREFIX)/share/man

BIN = topic-admin order-submit pay-process notify order-serve dlq-replay

BINS = $(BIN:%=bin/%)
MAN1 = $(BIN:%=man/man1/%.1)
MAN7 = man/man7/orderflow.7

LIB = build/libcommon.a
LIB_HDR = $(wildcard common/*.h)
# The Avro schemas of schemas/, compiled in as strings (schemas.h).
SCHEMAS = $(wildcard schemas/*.avsc)
LIB_OBJ = $(patsubst %.c,build/%.o,$(wildcard common/*.c)) build/gen/schemas.o
UNIT = $(patsubst test/unit/%.c,build/test/%,$(wildcard test/unit/*.c))
FUZZ = $(patsubst fuzz/%.c,build/fuzz/%,$(wildcard fuzz/*.c))

# Silent here: deps, clean and check must run before the packages are
# there.  pkgcheck (below) makes a missing one an error when building.
PKGS = rdkafka libcjson libcurl libmicrohttpd uuid libcrypto avro-c
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CC = cc
CFLAGS = -O2 -g

WARN = -Wall -Wextra
ifeq ($(WERROR),1)
WARN += -Werror
endif
OF_CFLAGS = -std=gnu11 $(WARN)
OF_CPPFLAGS = -D_GNU_SOURCE -Icommon -DVERSION=\"$(VERSION)\" $(PKG_CFLAGS)
OF_LDFLAGS =
OF_LDLIBS = $(PKG_LIBS) -ldb -lpthread -lm
ifeq ($(SANITIZE),1)
OF_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
OF_LDFLAGS += -fsanitize=address,undefined
endif
ALL_CFLAGS = $(OF_CFLAGS) $(CFLAGS)
ALL_CPPFLAGS = $(OF_CPPFLAGS) $(CPPFLAGS)
ALL_LDFLAGS = $(OF_LDFLAGS) $(LDFLAGS)
ALL_LDLIBS = $(OF_LDLIBS) $(LDLIBS)

FUZZCC = clang
FUZZFLAGS = -std=gnu11 -g -O1 $(WARN) -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined
FUZZTIME = 30

all: $(BINS)

# Every package pkg-config knows, or its complaint and the way out.
pkgcheck:
	@pkg-config --print-errors --exists $(PKGS) || { \
	    echo 'make: packages missing: "make deps" installs them' >&2; \
	    exit 1; }

# Objects are rebuilt whenever the flags change (SANITIZE=1 and back).
FLAGS = $(CC) $(ALL_CFLAGS) $(ALL_CPPFLAGS) $(ALL_LDFLAGS) $(ALL_LDLIBS)
build/flags: pkgcheck FORCE
	@mkdir -p build
	@echo '$(FLAGS)' | cmp -s - $@ || echo '$(FLAGS)' > $@

build/%.o: %.c $(LIB_HDR) build/flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_CPPFLAGS) -c -o $@ $<

# schema_NAME[] for each schemas/NAME.avsc, dots as underscores.
build/gen/schemas.c: $(SCHEMAS) Makefile
	@mkdir -p $(@D)
	@for f in $(SCHEMAS); do \
	    printf 'const char schema_%s[] =\n' \
	        "$$(basename "$$f" .avsc | tr . _)"; \
	    sed 's/\\/\\\\/g; s/"/\\"/g; s/.*/\t"&\\n"/' "$$f"; \
	    printf ';\n'; \
	done > $@.tmp && mv $@.tmp $@

build/gen/schemas.o: build/gen/schemas.c $(LIB_HDR) build/flags
	$(CC) $(ALL_CFLAGS) $(ALL_CPPFLAGS) -include schemas.h -c -o $@ $<

$(LIB): $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $(LIB_OBJ)

bin/%: build/cmd/%.o $(LIB)
	@mkdir -p bin
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIB) $(ALL_LDLIBS)

$(UNIT:build/test/%=build/test/unit/%.o): test/unit/unit.h

build/test/%: build/test/unit/%.o $(LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIB) $(ALL_LDLIBS)

unit: $(UNIT)

deps:
	scripts/deps

check:
	@scripts/deps --if-missing
	@$(MAKE) --no-print-directory all unit
	@scripts/run-tests

demo:
	@scripts/deps --if-missing
	@$(MAKE) --no-print-directory all
	@scripts/demo

bench:
	@scripts/deps --if-missing
	@$(MAKE) --no-print-directory all
	@scripts/bench

lint:
	mandoc -Tlint -Wwarning $(MAN1) $(MAN7)

build/fuzz/%: fuzz/%.c $(wildcard common/*.c) build/gen/schemas.c $(LIB_HDR) \
    | pkgcheck
	@mkdir -p $(@D)
	$(FUZZCC) $(FUZZFLAGS) $(ALL_CPPFLAGS) -o $@ $< $(wildcard common/*.c) \
	    build/gen/schemas.c $(ALL_LDLIBS)

fuzz: $(FUZZ)

fuzz-run: $(FUZZ)
	@for f in $(FUZZ); do \
	    n=$$(basename $$f); mkdir -p build/fuzz/corpus/$$n; \
	    echo "fuzz: $$n for $(FUZZTIME)s"; \
	    $$f -max_total_time=$(FUZZTIME) -max_len=4096 -print_final_stats=1 \
	        -artifact_prefix=build/fuzz/$$n- build/fuzz/corpus/$$n \
	        $$([ -d fuzz/seeds/$$n ] && echo fuzz/seeds/$$n) \
	        > build/fuzz/$$n.log 2>&1 || \
	        { tail -n 40 build/fuzz/$$n.log; exit 1; }; \
	    grep -E '^stat::number_of_executed_units' build/fuzz/$$n.log; \
	done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANPREFIX)/man1 \
	    $(DESTDIR)$(MANPREFIX)/man7
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(MAN1) $(DESTDIR)$(MANPREFIX)/man1/
	install -m 644 $(MAN7) $(DESTDIR)$(MANPREFIX)/man7/

uninstall:
	rm -f $(BIN:%=$(DESTDIR)$(PREFIX)/bin/%) \
	    $(BIN:%=$(DESTDIR)$(MANPREFIX)/man1/%.1) \
	    $(DESTDIR)$(MANPREFIX)/man7/orderflow.7

clean:
	rm -rf bin build

.PHONY: all bench check clean demo deps fuzz fuzz-run install lint pkgcheck \
	uninstall unit FORCE
.PRECIOUS: build/%.o build/test/unit/%.o
