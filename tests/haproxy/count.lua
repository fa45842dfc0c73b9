-- count.lua - wrk script for the churn test: counts non-2xx answers per thread (by status) and
-- prints one RESULT line with the totals and wrk's own socket error counters.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   non2xx = 0
   codes = {}
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      codes[status] = (codes[status] or 0) + 1
   end
end

function done(summary, latency, requests)
   local n, all = 0, {}
   for _, t in ipairs(threads) do
      n = n + t:get("non2xx")
      for k, v in pairs(t:get("codes")) do
         all[k] = (all[k] or 0) + v
      end
   end
   local list = ""
   for k, v in pairs(all) do
      list = list .. k .. ":" .. v .. ","
   end
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d connect=%d read=%d write=%d timeout=%d status=%d non2xx=%d p99_ms=%.1f max_ms=%.1f codes=%s\n",
      summary.requests, e.connect, e.read, e.write, e.timeout, e.status, n,
      latency:percentile(99) / 1000.0, latency.max / 1000.0, list))
end
