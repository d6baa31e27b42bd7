-- wrk: POST /api/v1/notifications as an operator (TOKEN: a role=admin
-- token), a push to one of 1000 users without a device, scheduled a day
-- ahead (send_at) so that the queues are empty for the delivery part.
local counter = 0
local threads = {}

setup = function(thread)
  thread:set("tid", #threads)
  threads[#threads + 1] = thread
end

init = function(args)
  tid = tid or 0
  token = os.getenv("TOKEN") or ""
  send_at = os.time() + 86400
end

request = function()
  counter = counter + 1
  local body = string.format(
    '{"user":"acc%d","type":"bench.push","title":"bench %d/%d",' ..
    '"body":"a notification of the benchmark","channels":["push"],' ..
    '"priority":"normal","send_at":%d}', counter % 1000, tid, counter, send_at)
  return wrk.format("POST", "/api/v1/notifications",
    {["Content-Type"] = "application/json",
     ["Authorization"] = "Bearer " .. token}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
