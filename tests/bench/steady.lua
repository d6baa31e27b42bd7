-- wrk -t1 -c1: a well-behaved client at a fixed rate: GET /<code> (codes
-- from the file named by CODES), then a pause of 1000/GOOD_RATE ms (default
-- GOOD_RATE=100: about 100 requests/s minus the latency).  Each request
-- carries X-Forwarded-For with the next of GOOD_POOL addresses (default 1000,
-- 10.209.0.0 upwards, round robin), so that at 100/s each address sends
-- 100*60/GOOD_POOL requests a minute, well below any per-address limit of the
-- benchmark's rules.  wrk's latency excludes the pause.
local codes = {}
local path = os.getenv("CODES") or "codes.txt"
for line in io.lines(path) do
  if #line > 0 then codes[#codes + 1] = line end
end
if #codes == 0 then error("no codes in " .. path) end

local rate = tonumber(os.getenv("GOOD_RATE") or "100") or 100
local pool = tonumber(os.getenv("GOOD_POOL") or "1000") or 1000
local n = 0

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  n = math.random(pool)
end

function delay()
  return math.floor(1000 / rate)
end

local hdr = {}
request = function()
  n = n + 1
  local i = n % pool
  hdr["X-Forwarded-For"] = string.format("10.209.%d.%d",
    math.floor(i / 256) % 256, i % 256)
  return wrk.format("GET", "/" .. codes[math.random(#codes)], hdr)
end

done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
