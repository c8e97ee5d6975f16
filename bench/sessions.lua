-- wrk script: every request carries the next of N session cookies, so the server sees N users.
-- Usage: wrk ... -s bench/sessions.lua <url> -- <tokens file> <cookie name>
-- Requests are formatted once in init(): the load generator spends its core on sending.

local prepared = {}
local next_index = 0
local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  local path, cookie = args[1], args[2]
  for token in io.lines(path) do
    if #token > 0 then
      prepared[#prepared + 1] = wrk.format("GET", wrk.path, { ["Cookie"] = cookie .. "=" .. token })
    end
  end
  -- threads start at different sessions
  next_index = ((thread_id or 0) * 7919) % #prepared
end

function request()
  next_index = next_index % #prepared + 1
  return prepared[next_index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d},"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,' ..
    '"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
