-- key_revoke.lua — revoke one of a tenant's API keys, unless it is the tenant's last active
-- secret key (a tenant must always keep a way in). Atomic, so two revocations racing for
-- the last two secret keys cannot both succeed.
--
-- KEYS[1]  the tenant's keys                      <p>:{t:<tenant>}:keys
--          (hash: key id → JSON {id, kind, prefix, hash, created_at, revoked_at?})
-- ARGV[1]  the key id
-- ARGV[2]  the current time, RFC 3339
--
-- Returns  {status, hash}: status is "revoked" (now), "already" (earlier: revoking is
--          idempotent), "missing" (no such key) or "last_secret" (refused); hash is the
--          key's SHA-256 (hex) for the first two, so the caller deletes its lookup record.
--
-- Example  EVALSHA <sha> 1 sluice:{t:t_1}:keys key_3f2a9c1b0e7d 2026-12-04T10:00:00.000Z
--          → {"revoked", "3f2a9c1b0e7d…"}

local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return {'missing', ''}
end
local key = cjson.decode(raw)
local function active(k)
  return k.revoked_at == nil or k.revoked_at == cjson.null
end
if not active(key) then
  return {'already', key.hash}
end
if key.kind == 'secret' then
  local others = 0
  for _, value in ipairs(redis.call('HVALS', KEYS[1])) do
    local other = cjson.decode(value)
    if other.kind == 'secret' and other.id ~= key.id and active(other) then
      others = others + 1
    end
  end
  if others == 0 then
    return {'last_secret', ''}
  end
end
key.revoked_at = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(key))
return {'revoked', key.hash}
