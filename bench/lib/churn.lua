-- churn.lua - wrk script for `bench/run churn`: counts responses by class in every thread
-- and prints one JSON line (prefixed "RESULT ") with the totals, socket errors and latency
-- percentiles when wrk is done.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   n2xx = 0
   n3xx = 0
   n4xx = 0
   n5xx = 0
   nother = 0
end

function response(status, headers, body)
   if status >= 200 and status < 300 then n2xx = n2xx + 1
   elseif status >= 300 and status < 400 then n3xx = n3xx + 1
   elseif status >= 400 and status < 500 then n4xx = n4xx + 1
   elseif status >= 500 and status < 600 then n5xx = n5xx + 1
   else nother = nother + 1 end
end

function done(summary, latency, requests)
   local c = {n2xx = 0, n3xx = 0, n4xx = 0, n5xx = 0, nother = 0}
   for _, t in ipairs(threads) do
      for k, _ in pairs(c) do c[k] = c[k] + (t:get(k) or 0) end
   end
   local e = summary.errors
   io.write(string.format(
      'RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
      '"write": %d, "timeout": %d, "status_errors": %d, "n2xx": %d, "n3xx": %d, "n4xx": %d, ' ..
      '"n5xx": %d, "nother": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
      '"mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.timeout,
      e.status, c.n2xx, c.n3xx, c.n4xx, c.n5xx, c.nother,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean))
end
