-- idempotency.lua — take a request's ids (event ids, conversion idempotency keys) in one
-- atomic step: each id is taken by at most one request however many race for it, and an id
-- whose request died before its rows were durable can be taken again.
--
-- Ids live in one set per tenant, namespace and generation (a generation is one key
-- lifetime, 30 days): an id is a duplicate while it is in the current or the previous
-- generation's set, so it is remembered for at least one lifetime and at most two. A set
-- member costs Redis a third of the memory and CPU of a key with its own expiry, and a whole
-- batch is three commands, not one per id.
--
-- The request that took ids is listed in a per-tenant sorted set of requests in flight
-- (score = when it took them) and its ids are kept in a record (msgpack) until its rows are
-- durable, when Sluice removes both. A request still listed after the pending window never
-- finished (its node died): an id in its record is taken over, so the sender's retry is
-- stored.
--
-- KEYS[1]  the tenant's requests in flight        <p>:{t:<tenant>}:idem:inflight
-- KEYS[2]  the current generation's ids           <p>:{t:<tenant>}:idem:<namespace>:g<n>
-- KEYS[3]  the previous generation's ids          <p>:{t:<tenant>}:idem:<namespace>:g<n-1>
-- KEYS[4]  this request's record                  <p>:{t:<tenant>}:idem:request:<request>
--          (all hash-tagged by tenant: one Redis Cluster slot; the records of dead
--          requests, read on takeover, are in the same slot)
-- ARGV[1]  this request's id (random hex)
-- ARGV[2]  the current time, ms
-- ARGV[3]  pending window, ms (how long a request may take to make its rows durable)
-- ARGV[4]  id lifetime, ms (30 days)
-- ARGV[5]  when the current generation's set expires (end of the next generation), ms
-- ARGV[6…] the ids
--
-- Returns  an array with one entry per id: 1 taken by this request, 0 a duplicate (held by
--          a finished request, or by one still within its window)
--
-- Example  EVALSHA <sha> 4 sluice:{t:t_1}:idem:inflight sluice:{t:t_1}:idem:event:g681 \
--            sluice:{t:t_1}:idem:event:g680 sluice:{t:t_1}:idem:request:9f2c0a… \
--            9f2c0a… 1765305600000 120000 2592000000 1767052800000 <16 bytes> <16 bytes>
local request, now, pending, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local FIRST, CHUNK = 6, 1000 -- Lua's unpack is bounded by its C stack: calls go in chunks

-- Membership of ids[first..last] in `set` (0/1 each), appended to `into`.
local function members(set, ids, first, last, into)
  for from = first, last, CHUNK do
    local got = redis.call('SMISMEMBER', set, unpack(ids, from, math.min(from + CHUNK - 1, last)))
    for _, v in ipairs(got) do into[#into + 1] = v end
  end
  return into
end

local n = #ARGV - FIRST + 1
local current = members(KEYS[2], ARGV, FIRST, #ARGV, {})
local previous = redis.call('EXISTS', KEYS[3]) == 1 and members(KEYS[3], ARGV, FIRST, #ARGV, {})
local out, taken, held = {}, {}, {}
for i = 1, n do
  if current[i] == 1 or (previous and previous[i] == 1) then
    out[i] = 0
    held[ARGV[FIRST + i - 1]] = i
  else
    out[i] = 1
    taken[#taken + 1] = ARGV[FIRST + i - 1]
  end
end

-- Held ids are duplicates unless a request that never finished holds them.
if next(held) then
  local records = string.sub(KEYS[4], 1, #KEYS[4] - #request)
  for _, owner in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - pending)) do
    local record = records .. owner
    local blob = redis.call('GET', record)
    local theirs = blob and cmsgpack.unpack(blob) or {}
    local kept = {}
    for _, id in ipairs(theirs) do
      local i = held[id]
      if i then
        out[i] = 1
        taken[#taken + 1] = id
        held[id] = nil
      else
        kept[#kept + 1] = id
      end
    end
    if #kept == 0 then
      redis.call('ZREM', KEYS[1], owner)
      redis.call('DEL', record)
    elseif #kept < #theirs then
      redis.call('SET', record, cmsgpack.pack(kept), 'KEEPTTL')
    end
  end
end

if #taken > 0 then
  for from = 1, #taken, CHUNK do
    redis.call('SADD', KEYS[2], unpack(taken, from, math.min(from + CHUNK - 1, #taken)))
  end
  redis.call('PEXPIREAT', KEYS[2], ARGV[5])
  redis.call('ZADD', KEYS[1], now, request)
  -- Requests that died longer ago than an id lives hold nothing any more.
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
  redis.call('SET', KEYS[4], cmsgpack.pack(taken), 'PX', ttl)
end
return out
