-- POSTs one signed webhook body over and over; prints a JSON summary on stderr.
local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local sig = os.getenv("WRK_SIGNATURE")
if sig and #sig > 0 then wrk.headers["X-Hub-Signature-256"] = sig end

done = function(summary, latency, requests)
  local e = summary.errors
  io.stderr:write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
