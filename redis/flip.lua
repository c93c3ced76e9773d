-- flip.lua — the atomic deferred-match flip: resolve an install to at most one click, and a
-- click to at most one install, however many devices race for it; remember the answer so a
-- retried install gets the same one.
--
-- KEYS[1]  the install's remembered answer   <p>:{t:<tenant>}:install:<install_id>
-- KEYS[2]  the fingerprint of the install    <p>:{t:<tenant>}:fp:<platform>:<ip_hash>
--          (a sorted set: member = "<click id hex>|<click facts JSON>", score = click time in ms)
-- ARGV[1]  the install's time, ms since the epoch (clicks after it never match)
-- ARGV[2]  fingerprint window, ms (0: fingerprinting off)
-- ARGV[3]  install id
-- ARGV[4]  claim key prefix                  <p>:{t:<tenant>}:claim:
--          (claims are keyed per click and share the tenant's hash tag, so every key this
--          script touches is in one Redis Cluster slot)
-- ARGV[5]  claim lifetime, ms (the click lookback: a claim outlives every match it could block)
-- ARGV[6]  answer lifetime, ms (how long a retry gets the same answer)
-- ARGV[7]  the current time, ms: fingerprints older than it minus the window are pruned
--          (not relative to ARGV[1], which a client may date in the past or future)
-- ARGV[8…] explicit candidates in preference order, "<how>:<click hex>" with how = click_id |
--          referrer (checked for age by the caller)
--
-- Returns  {"remembered", how, click}   a retry: the first answer ("none" and "" if none)
--          {"claimed", how, click}      this install won the click
--          where click is the click id in hex for explicit candidates and the whole
--          fingerprint member (id and facts) for fingerprint matches
--          {"none"}                         no claimable click
--
-- Example  EVALSHA <sha> 2 sluice:{t:t_1}:install:dev-1 sluice:{t:t_1}:fp:ios:123 \
--            1795305600000 7200000 dev-1 sluice:{t:t_1}:claim: 604800000 2592000000 \
--            1795305600000 click_id:0190a1b2c3d47e5f8a9b0c1d2e3f4a5b
local answer = redis.call('GET', KEYS[1])
if answer then
  local how, click = string.match(answer, '^([^:]*):(.*)$')
  return {'remembered', how, click}
end

local install = ARGV[3]
local function claim(click)
  return redis.call('SET', ARGV[4] .. click, install, 'NX', 'PX', ARGV[5])
end
local function remember(how, click)
  redis.call('SET', KEYS[1], how .. ':' .. click, 'PX', ARGV[6])
end

for i = 8, #ARGV do
  local how, click = string.match(ARGV[i], '^([%a_]+):(%x+)$')
  if how and claim(click) then
    remember(how, click)
    return {'claimed', how, click}
  end
end

if ARGV[2] ~= '0' then
  local window = tonumber(ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[7]) - window))
  local now = tonumber(ARGV[1])
  local oldest = now - window
  -- Newest first: the click closest to the install is the likeliest cause.
  for _, member in ipairs(redis.call('ZREVRANGEBYSCORE', KEYS[2], now, oldest)) do
    if claim(string.sub(member, 1, 32)) then
      redis.call('ZREM', KEYS[2], member)
      remember('fingerprint', member)
      return {'claimed', 'fingerprint', member}
    end
  end
end

remember('none', '')
return {'none'}
