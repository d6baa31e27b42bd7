-- wrk: POST /api/v1/urls with a distinct long URL per request.
local counter = 0
local threads = {}

setup = function(thread)
  thread:set("tid", #threads)
  threads[#threads + 1] = thread
end

init = function(args)
  tid = tid or 0
  math.randomseed(os.time() + tid)
  salt = math.random(1, 1e9)
end

request = function()
  counter = counter + 1
  local body = string.format(
    '{"long_url":"https://example.com/bench/%d/%d/%d"}', salt, tid, counter)
  return wrk.format("POST", "/api/v1/urls",
    {["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
