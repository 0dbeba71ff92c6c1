# Makefile - builds orderflow's commands, the common library, the tests and
# the fuzz targets, and installs commands and pages.
#
#   make              bin/ with -Wall -Wextra -Werror
#   make SANITIZE=1   the same with AddressSanitizer and UBSan
#   make check        installs missing packages, builds, runs the whole suite
#   make demo         installs what is missing, builds, runs the whole flow on a local broker
#   make bench        installs what is missing, builds, runs the benchmarks (scripts/bench)
#   make deps         installs the Debian packages (prints the command if not root)
#   make fuzz         libFuzzer targets in build/fuzz/ (clang)
#   make install PREFIX=/usr/local DESTDIR=

VERSION = 0.1.0
PREFIX = /usr/local
MANPREFIX = $(PREFIX)/share/man

BIN = topic-admin order-submit pay-process notify order-serve dlq-replay

BINS = $(BIN:%=bin/%)
MAN1 = $(BIN:%=man/man1/%.1)
MAN7 = man/man7/orderflow.7

LIB = build/libcommon.a
LIB_HDR = $(wildcard common/*.h)
LIB_OBJ = $(patsubst %.c,build/%.o,$(wildcard common/*.c))
UNIT = $(patsubst test/unit/%.c,build/test/%,$(wildcard test/unit/*.c))
FUZZ = $(patsubst fuzz/%.c,build/fuzz/%,$(wildcard fuzz/*.c))

PKGS = rdkafka libcjson libcurl libmicrohttpd uuid libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CC = cc
CFLAGS = -std=gnu11 -O2 -g -Wall -Wextra -Werror
CPPFLAGS = -D_GNU_SOURCE -Icommon -DVERSION=\"$(VERSION)\" $(PKG_CFLAGS)
LDLIBS = $(PKG_LIBS) -ldb -lpthread -lm
ifeq ($(SANITIZE),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

FUZZCC = clang
FUZZFLAGS = -std=gnu11 -g -O1 -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined
FUZZTIME = 30

all: $(BINS)

# Objects are rebuilt whenever the flags change (SANITIZE=1 and back).
build/flags: FORCE
	@mkdir -p build
	@echo '$(CC) $(CFLAGS) $(CPPFLAGS) $(LDFLAGS) $(LDLIBS)' | \
	    cmp -s - $@ || echo '$(CC) $(CFLAGS) $(CPPFLAGS) $(LDFLAGS) $(LDLIBS)' > $@

build/%.o: %.c $(LIB_HDR) build/flags
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(CPPFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $(LIB_OBJ)

bin/%: build/cmd/%.o $(LIB)
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(UNIT:build/test/%=build/test/unit/%.o): test/unit/unit.h

build/test/%: build/test/unit/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

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

build/fuzz/%: fuzz/%.c $(wildcard common/*.c) $(LIB_HDR)
	@mkdir -p $(@D)
	$(FUZZCC) $(FUZZFLAGS) $(CPPFLAGS) -o $@ $< $(wildcard common/*.c) $(LDLIBS)

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
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANPREFIX)/man1 \
	    $(DESTDIR)$(MANPREFIX)/man7
	cp -f $(BINS) $(DESTDIR)$(PREFIX)/bin/
	cp -f $(MAN1) $(DESTDIR)$(MANPREFIX)/man1/
	cp -f $(MAN7) $(DESTDIR)$(MANPREFIX)/man7/

uninstall:
	rm -f $(BIN:%=$(DESTDIR)$(PREFIX)/bin/%) \
	    $(BIN:%=$(DESTDIR)$(MANPREFIX)/man1/%.1) \
	    $(DESTDIR)$(MANPREFIX)/man7/orderflow.7

clean:
	rm -rf bin build

.PHONY: all bench check clean demo deps fuzz fuzz-run install lint uninstall unit FORCE
.PRECIOUS: build/%.o build/test/unit/%.o
