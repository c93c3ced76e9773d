-- idempotency.lua — take a request's idempotency keys (event ids, conversion idempotency
-- keys) in one atomic step: each key is taken by at most one request however many race for
-- it, and a key whose request died before its rows were durable can be taken again.
--
-- Sluice first tries every key with a plain pipelined `SET NX` (after listing the request in
-- flight) and sends only the keys already held through this script, which decides them
-- atomically; the script is also correct for any set of keys on its own.
--
-- Each key holds the id of the request that took it. The request is listed in a per-tenant
-- sorted set of requests in flight (score = when it took its keys) until its rows are
-- durable, when Sluice removes it (ZREM: one command per request, not per key). A key whose
-- request is still listed after the pending window belongs to a request that never finished
-- (its node died): the key is taken over, so the sender's retry is stored.
--
-- KEYS[1]  the tenant's requests in flight   <p>:{t:<tenant>}:idem:inflight
-- KEYS[2…] the idempotency keys              <p>:{t:<tenant>}:idem:<namespace>:<id>
--          (all hash-tagged by tenant: one Redis Cluster slot)
-- ARGV[1]  this request's id (random hex)
-- ARGV[2]  the current time, ms
-- ARGV[3]  pending window, ms (how long a request may take to make its rows durable)
-- ARGV[4]  key lifetime, ms (30 days)
--
-- Returns  an array with one entry per key in KEYS[2…]: 1 taken by this request, 0 a
--          duplicate (held by a finished request, or one still within its window)
--
-- Example  EVALSHA <sha> 3 sluice:{t:t_1}:idem:inflight sluice:{t:t_1}:idem:event:55… \
--            sluice:{t:t_1}:idem:event:66… 9f2c0a… 1795305600000 120000 2592000000
local request, now, pending, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local out = {}
local took = false
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], request, 'NX', 'PX', ttl) then
    out[i - 1] = 1
    took = true
  else
    local owner = redis.call('GET', KEYS[i])
    local since = owner and redis.call('ZSCORE', KEYS[1], owner)
    if since and tonumber(since) < now - pending then
      redis.call('SET', KEYS[i], request, 'PX', ttl)
      out[i - 1] = 1
      took = true
    else
      out[i - 1] = 0
    end
  end
end
if took then
  redis.call('ZADD', KEYS[1], now, request)
  -- Requests that died longer ago than a key lives hold nothing any more.
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ttl))
end
return out
