-- wrk script: POST one fixed body, count every response by HTTP status, report JSON.
--
--   wrk -t1 -c64 -d15s --latency -s post.lua URL -- BODY_FILE [CONTENT_TYPE
--       [HEADER_LENGTH [HEADERS_FILE]]]
--
-- CONTENT_TYPE defaults to application/json; "-" sends no Content-Type header at all (as
-- tritonclient.http does; wrk itself adds only Host and Content-Length). HEADER_LENGTH, when
-- not "-", is sent as Inference-Header-Content-Length (V2 binary tensor data). HEADERS_FILE
-- holds more headers, one "Name: value" a line, sent with every request (Authorization:
-- a credential is read from a file, never passed on wrk's command line).
--
-- wrk itself only counts statuses above 399 and reports no status histogram, so each
-- thread counts the statuses it sees; done() (run once, after all threads) adds them up
-- and prints one line, "WRK_JSON {...}", that benchmarks/loadgen.py parses. Anything
-- outside 2xx counts as an error there, as do wrk's socket errors and timeouts.

local threads = {}
counts = {}  -- global: done() reads each thread's copy with thread:get("counts")

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local path = args[1]
   if path == nil then
      error("usage: wrk ... -s post.lua URL -- BODY_FILE [CONTENT_TYPE|- [HEADER_LENGTH|- " ..
            "[HEADERS_FILE]]]")
   end
   local file = assert(io.open(path, "rb"))
   wrk.method = "POST"
   wrk.body = file:read("*a")
   file:close()
   local content_type = args[2] or "application/json"
   if content_type ~= "-" then
      wrk.headers["Content-Type"] = content_type
   end
   if args[3] ~= nil and args[3] ~= "-" then  -- V2 binary tensor data: the JSON header's length
      wrk.headers["Inference-Header-Content-Length"] = args[3]
   end
   if args[4] ~= nil then
      local headers = assert(io.open(args[4], "rb"))
      for line in headers:lines() do
         local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
         if name ~= nil then
            wrk.headers[name] = value
         elseif line:match("%S") then
            error("HEADERS_FILE: a line is not 'Name: value'")  -- never echoes the line
         end
      end
      headers:close()
   end
end

function response(status, headers, body)
   counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
   local statuses, parts, non2xx = {}, {}, 0
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("counts") or {}) do
         statuses[status] = (statuses[status] or 0) + n
      end
   end
   for status, n in pairs(statuses) do
      table.insert(parts, string.format('"%d": %d', status, n))
      if status < 200 or status > 299 then
         non2xx = non2xx + n
      end
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, ' ..
      '"non2xx": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d, ' ..
      '"statuses": {%s}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean,
      non2xx, e.connect, e.read, e.write, e.timeout,
      table.concat(parts, ", ")))
end
