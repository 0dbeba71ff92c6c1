#!/usr/bin/env python3
# tool.py - the helpers of scripts/bench that bash does badly: orders,
# paced feeding, time-stamping lines as they arrive, latency percentiles,
# the rate of the calls an HTTP peer logged.
#
# usage: tool.py orders COUNT PREFIX [--rate N --secs S --sent FILE]
#        tool.py stamp
#        tool.py latency SENT NOTES [--skip N]
#        tool.py calls LOG KEY
#        tool.py ports COUNT
#
# orders   COUNT orders as JSON lines on stdout, order ids PREFIX0,
#          PREFIX1, ...  With --rate, N orders a second for S seconds
#          (COUNT is then ignored) on a fixed schedule: order i is written
#          at start + i/N, each line flushed, and "ORDER_ID\tEPOCH_SECONDS"
#          of the moment it was written goes to FILE.  A feeder that falls
#          behind catches up at once, never skips.
# stamp    copies stdin to stdout, each line prefixed with the wall-clock
#          time it was read ("EPOCH_SECONDS\tLINE"), flushed line by line.
# latency  joins SENT (from orders --rate) with NOTES (notify's stdout
#          through stamp) on the order id and prints one line:
#          "sent N notified N missing N p50 MS p99 MS max MS warmup N
#          warmup_max MS" (milliseconds from the order's writing to its
#          notification's arrival).  With --skip, the first N orders
#          written are a warm-up: they must be notified too, but the
#          percentiles and max are of the others, and warmup_max of them.
# calls    reads LOG, the JSON lines of test/fixtures/fake-gateway.py or
#          webhook-receiver (each call's start and end, epoch seconds),
#          and prints one line: "calls N keys K ok N rate R overlaps O
#          max_in_flight M": N calls of K distinct values of the field
#          KEY, N answered 200, R = N / (last end - first start) calls a
#          second, O calls that started before an earlier call with the
#          same KEY had ended (which ordering per key forbids), M the most
#          calls under way at once.  Calls never answered are left out.
# ports    the first of COUNT consecutive TCP ports on 127.0.0.1 that are
#          free now (each one bound and released), for a server that takes
#          a port and the ones after it and cannot be given port 0.  Free
#          now, not reserved: another program may take one before the
#          server does, which the server then reports.
import json
import socket
import sys
import time


def orders(argv):
    count, prefix = int(argv[0]), argv[1]
    rate = secs = 0.0
    sent = None
    i = 2
    while i < len(argv):
        if argv[i] == "--rate":
            rate = float(argv[i + 1])
        elif argv[i] == "--secs":
            secs = float(argv[i + 1])
        elif argv[i] == "--sent":
            sent = open(argv[i + 1], "w")
        else:
            sys.exit("tool.py orders: unknown argument " + argv[i])
        i += 2
    out = sys.stdout.buffer
    methods = ("pm_card_visa", "pm_card_mastercard", "pm_card_amex")

    def line(n):
        o = {
            "order_id": "%s%d" % (prefix, n),
            "customer_id": "c-%d" % (n % 997),
            "email": "c%d@example.com" % (n % 997),
            "currency": "EUR",
            "items": [
                {"sku": "BOOK-%d" % (n % 50), "qty": 1 + n % 3,
                 "unit_price": 1250},
                {"sku": "MUG-%d" % (n % 7), "qty": 1, "unit_price": 899},
            ],
            "payment_method": methods[n % len(methods)],
        }
        return (json.dumps(o, separators=(",", ":")) + "\n").encode()

    if rate <= 0:
        for n in range(count):
            out.write(line(n))
        out.flush()
        return
    total = int(rate * secs)
    start = time.monotonic()
    for n in range(total):
        due = start + n / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        b = line(n)
        t = time.time()
        out.write(b)
        out.flush()
        sent.write("%s%d\t%.6f\n" % (prefix, n, t))
    sent.close()
    out.close()


def stamp():
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        b = inp.readline()
        if not b:
            break
        out.write(b"%.6f\t" % time.time() + b)
        out.flush()


def pct(sorted_ms, p):
    # nearest rank
    if not sorted_ms:
        return float("nan")
    k = max(0, min(len(sorted_ms) - 1, int(-(-p * len(sorted_ms) // 100)) - 1))
    return sorted_ms[k]


def latency(argv):
    sent = {}
    warm = set()
    skip = int(argv[3]) if len(argv) > 3 and argv[2] == "--skip" else 0
    with open(argv[0]) as f:
        for i, ln in enumerate(f):
            oid, t = ln.rstrip("\n").split("\t")
            sent[oid] = float(t)
            if i < skip:
                warm.add(oid)
    got = {}
    with open(argv[1]) as f:
        for ln in f:
            t, _, body = ln.partition("\t")
            try:
                oid = json.loads(body).get("order_id")
            except ValueError:
                continue
            if oid in sent and oid not in got:
                got[oid] = float(t)
    lat = sorted((got[o] - sent[o]) * 1000.0 for o in got if o not in warm)
    wlat = [(got[o] - sent[o]) * 1000.0 for o in got if o in warm]
    print("sent %d notified %d missing %d p50 %.1f p99 %.1f max %.1f "
          "warmup %d warmup_max %.1f" % (
              len(sent), len(got), len(sent) - len(got), pct(lat, 50),
              pct(lat, 99), lat[-1] if lat else float("nan"), len(warm),
              max(wlat) if wlat else 0.0))


def calls(argv):
    log, field = argv[0], argv[1]
    recs = []
    with open(log) as f:
        for ln in f:
            try:
                recs.append(json.loads(ln))
            except ValueError:
                continue
    done = [r for r in recs if r.get("end") is not None]
    ok = sum(1 for r in done if r.get("status") == 200)
    span = (max(r["end"] for r in done) - min(r["start"] for r in done)
            if done else 0.0)
    by_key = {}
    for r in done:
        by_key.setdefault(r.get(field), []).append((r["start"], r["end"]))
    overlaps = 0
    for spans in by_key.values():
        spans.sort()
        last_end = spans[0][1]
        for start, end in spans[1:]:
            if start < last_end:
                overlaps += 1
            last_end = max(last_end, end)
    # Ends sort before starts at the same instant: back to back is not
    # at once.
    edges = sorted([(r["start"], 1) for r in done] +
                   [(r["end"], -1) for r in done], key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, d in edges:
        now += d
        peak = max(peak, now)
    print("calls %d keys %d ok %d rate %.0f overlaps %d max_in_flight %d" % (
        len(done), len(by_key), ok, len(done) / span if span > 0 else 0.0,
        overlaps, peak))


def ports(argv):
    count = int(argv[0])
    for _ in range(100):
        held = []
        try:
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
            if first + count - 1 > 65535:
                continue
            for p in range(first + 1, first + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        print(first)
        return
    sys.exit("tool.py ports: no %d free ports in a row" % count)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: tool.py orders|stamp|latency|calls|ports")
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "orders":
        orders(argv)
    elif cmd == "stamp":
        stamp()
    elif cmd == "latency":
        latency(argv)
    elif cmd == "calls":
        calls(argv)
    elif cmd == "ports":
        ports(argv)
    else:
        sys.exit("tool.py: unknown command " + cmd)


if __name__ == "__main__":
    main()
