-- Sends each pre-signed webhook of WRK_BODIES_FILE ("signature<TAB>body" per line) once,
-- split across threads, then stops; counts answers other than 200.
local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

local reqs = {}
local idx = 0
bad = 0

function init(args)
  local n = tonumber(os.getenv("WRK_THREADS"))
  local i = 0
  for line in io.lines(os.getenv("WRK_BODIES_FILE")) do
    if i % n == tid then
      local tab = line:find("\t", 1, true)
      reqs[#reqs + 1] = wrk.format("POST", "/webhooks/whatsapp",
        { ["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = line:sub(1, tab - 1) },
        line:sub(tab + 1))
    end
    i = i + 1
  end
  -- wrk calls request() once on thread 0 to verify the script before any connection:
  -- give it a copy to consume, so every body is really sent.
  if tid == 0 and #reqs > 0 then table.insert(reqs, 1, reqs[1]) end
end

function request()
  idx = idx + 1
  if idx <= #reqs then return reqs[idx] end
  -- Stopping at once could drop the last write still queued on a connection: repeat the
  -- last body (a redelivery, harmless by design) on every connection first, then stop.
  if idx > #reqs + 100 then wrk.thread:stop() end
  return reqs[#reqs]
end

function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  io.stderr:write(string.format('WRK_JSON {"requests":%d,"non200":%d,"p99_us":%d}\n', summary.requests, b, latency:percentile(99)))
end
