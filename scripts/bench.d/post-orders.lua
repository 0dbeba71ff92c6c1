-- post-orders.lua - a wrk script for scripts/bench: POST /orders with a
-- valid order whose order_id is unique across threads and runs, so every
-- request is a new order that order-serve must store durably (no 409).
--
-- usage: BENCH_RUN=ID wrk -s post-orders.lua http://HOST:PORT/orders
--
-- BENCH_RUN makes the ids unique across runs on one state directory.
-- done() prints one line for scripts/bench:
--   result requests N seconds S rps R p50_ms A p99_ms B non2xx N sockerr N

local threads = {}
local run = os.getenv("BENCH_RUN") or tostring(os.time())

function setup(thread)
	thread:set("tid", #threads + 1)
	table.insert(threads, thread)
end

function init(args)
	n = 0
	prefix = "w" .. run .. "-" .. tid .. "-"
	wrk.method = "POST"
	wrk.headers["Content-Type"] = "application/json"
end

function request()
	n = n + 1
	local body = '{"order_id":"' .. prefix .. n .. '",' ..
	    '"customer_id":"c-' .. (n % 997) .. '",' ..
	    '"email":"c' .. (n % 997) .. '@example.com","currency":"EUR",' ..
	    '"items":[{"sku":"BOOK-' .. (n % 50) .. '","qty":1,' ..
	    '"unit_price":1250},{"sku":"MUG-1","qty":2,"unit_price":899}],' ..
	    '"payment_method":"pm_card_visa"}'
	return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
	local e = summary.errors
	local secs = summary.duration / 1e6
	io.write(string.format("result requests %d seconds %.3f rps %.1f " ..
	    "p50_ms %.3f p99_ms %.3f non2xx %d sockerr %d\n",
	    summary.requests, secs, summary.requests / secs,
	    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
	    e.status, e.connect + e.read + e.write + e.timeout))
end
