-- post-orders.lua - a wrk script for scripts/bench: POST /orders with a
-- valid order whose order_id is unique across threads and runs, so every
-- request is a new order that order-serve must store durably (no 409).
--
-- usage: BENCH_RUN=ID [BENCH_THREAD_RATE=N] wrk -s post-orders.lua \
--            http://HOST:PORT/orders
--
-- BENCH_RUN makes the ids unique across runs on one state directory.
--
-- Without BENCH_THREAD_RATE each connection sends its next request as
-- soon as the answer to the last one came (closed loop: as fast as the
-- server goes), and the percentiles are wrk's own.  With it, each wrk
-- thread sends N requests a second on a fixed schedule, on whichever of
-- its connections is free (open loop).  wrk times a request from when it
-- is sent, which hides the wait of a request sent after its time because
-- every connection was busy; so in this mode the script times each
-- request itself, from its time on the schedule (or from its sending, if
-- it went out early: wrk's timers count whole milliseconds) to its
-- answer, matched by the order id the answer carries.  late5ms counts the
-- requests sent more than 5 ms after their time, timed the answers so
-- timed (all but those under way when the run ended).
--
-- done() prints one line for scripts/bench:
--   result requests N seconds S rps R p50_ms A p99_ms B non2xx N sockerr N
--   late5ms N timed N

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

local rate = tonumber(os.getenv("BENCH_THREAD_RATE") or "")
local now_ms, due, due_head, due_tail, next_due, start_of
late5ms, lat = 0, {}

if rate then
	local ffi = require("ffi")
	ffi.cdef[[
	typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
	int clock_gettime(int, bench_timespec *);
	]]
	local ts = ffi.new("bench_timespec")
	now_ms = function()
		ffi.C.clock_gettime(1, ts)	-- CLOCK_MONOTONIC
		return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) / 1e6
	end
	-- due[] holds the times delay() handed out, in order; request()
	-- runs when a timer fired and takes the oldest time outstanding.
	-- Timers that fire together may run in any order, but then their
	-- requests go out together too, so the figures are the same.
	due, due_head, due_tail, start_of = {}, 1, 0, {}

	function delay()
		local t = now_ms()
		next_due = next_due or t
		due_tail = due_tail + 1
		due[due_tail] = next_due
		next_due = next_due + 1000 / rate
		return math.max(0, math.floor(due[due_tail] - t))
	end

	function response(status, headers, body)
		local id = body:match('"order_id":"w[^"]*%-(%d+)"')
		local t0 = id and start_of[tonumber(id)]
		if t0 then
			start_of[tonumber(id)] = nil
			lat[#lat + 1] = now_ms() - t0
		end
	end
end

-- The start of request n's latency in the open loop.  wrk may also ask
-- for a request outside the schedule (when it starts a thread), which
-- finds no time in due[] and is timed from its sending.
local function note_start()
	local t, d = now_ms(), due[due_head]
	if d then
		due[due_head] = nil
		due_head = due_head + 1
	else
		d = t
	end
	if t - d > 5 then
		late5ms = late5ms + 1
	end
	start_of[n] = math.min(t, d)
end

function request()
	n = n + 1
	if rate then
		note_start()
	end
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
	local p50, p99 = latency:percentile(50) / 1000,
	    latency:percentile(99) / 1000
	local late, all = 0, {}
	if rate then
		for _, t in ipairs(threads) do
			late = late + t:get("late5ms")
			for _, v in ipairs(t:get("lat")) do
				all[#all + 1] = v
			end
		end
		table.sort(all)
		p50 = all[math.max(1, math.ceil(#all * 0.50))] or -1
		p99 = all[math.max(1, math.ceil(#all * 0.99))] or -1
	end
	io.write(string.format("result requests %d seconds %.3f rps %.1f " ..
	    "p50_ms %.3f p99_ms %.3f non2xx %d sockerr %d late5ms %d " ..
	    "timed %d\n",
	    summary.requests, secs, summary.requests / secs, p50, p99,
	    e.status, e.connect + e.read + e.write + e.timeout, late, #all))
end
