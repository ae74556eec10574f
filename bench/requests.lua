-- Cycles through pre-built requests (one per line: "path<TAB>body"), so every
-- request is a distinct WeChat message and no retry de-duplication can shortcut it.
local reqs = {}
local idx = 0

function init(args)
  local f = assert(io.open(os.getenv("BENCH_REQUESTS"), "r"))
  for line in f:lines() do
    local path, body = line:match("^(.-)\t(.*)$")
    reqs[#reqs + 1] = wrk.format("POST", path, {["Content-Type"] = "text/xml"}, body)
  end
  f:close()
  idx = math.random(#reqs)
end

function request()
  idx = idx % #reqs + 1
  return reqs[idx]
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format(
    "RESULT {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, \"non2xx\": %d, \"socket_errors\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
