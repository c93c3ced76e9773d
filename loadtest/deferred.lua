-- wrk script: POST /v1/attribution/deferred with a unique install id per request, from a
-- spread of client IPs (X-Forwarded-For; the peer 127.0.0.1 is a trusted proxy), so every
-- call is a first call that runs the whole resolution and the atomic flip.
-- Usage: wrk -s loadtest/deferred.lua -c 64 -d 10s URL   (env SLUICE_PK = publishable key)
local counter = 0
local thread_id = 0
local key = os.getenv("SLUICE_PK") or ""
-- Distinguishes runs: without it a later run's ids would repeat an earlier one's (wrk's random
-- numbers start from the same seed), and every call would be a retry.
local run = os.getenv("SLUICE_RUN") or ""

function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
end

function request()
  counter = counter + 1
  local ip = string.format("198.18.%d.%d", (counter / 250) % 250, counter % 250 + 1)
  local body = string.format('{"install_id":"lt-%s-%d-%d-%d","platform":"ios"}', run, tid, counter, math.random(1, 1e9))
  wrk.headers["X-Forwarded-For"] = ip
  return wrk.format(nil, nil, nil, body)
end

local bad = 0
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
