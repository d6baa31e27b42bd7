-- wrk: GET /<code> from many client addresses: every request carries
-- X-Forwarded-For with one of ADDRS addresses (default 10000, 10.100.0.0
-- upwards), drawn at random independently of the code, which is drawn from
-- the file named by CODES (one code per line).  The gateway must trust the
-- sender (TRUSTED_PROXIES=127.0.0.1) for the header to count.
local codes = {}
local path = os.getenv("CODES") or "codes.txt"
for line in io.lines(path) do
  if #line > 0 then codes[#codes + 1] = line end
end
if #codes == 0 then error("no codes in " .. path) end

local addrs = {}
for i = 0, (tonumber(os.getenv("ADDRS") or "10000") or 10000) - 1 do
  addrs[#addrs + 1] = string.format("10.100.%d.%d", math.floor(i / 256) % 256,
    i % 256)
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

local hdr = {}
request = function()
  hdr["X-Forwarded-For"] = addrs[math.random(#addrs)]
  return wrk.format("GET", "/" .. codes[math.random(#codes)], hdr)
end

done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
