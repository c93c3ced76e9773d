-- bind_user.lua — bind a user to a reported install, so the user's conversions attribute to
-- the install's click. With a publishable key (which every app ships, so anyone may hold it)
-- the first binding stands: a user bound to another install stays bound, or anyone could
-- take a user's conversions by binding it to an install they control. With the secret key a
-- binding may be replaced, and each replacement is logged.
--
-- KEYS[1]  the install's attribution          <p>:{t:<tenant>}:attr:<install>
-- KEYS[2]  the user's binding                 <p>:{t:<tenant>}:user:<user>
-- KEYS[3]  the tenant's rebinding log          <p>:{t:<tenant>}:rebinds   (the newest 1,000)
-- ARGV[1]  the install id
-- ARGV[2]  1 when the caller may rebind (secret key), else 0
-- ARGV[3]  the user id (for the log)
-- ARGV[4]  the current time, RFC 3339 (for the log)
--
-- Returns  {"unknown_install", ""} — no such install has been reported;
--          {"bound", previous}     — bound now (previous = the install it replaced, or "");
--          {"taken", current}      — refused: bound to another install, and no right to rebind
--
-- Example  EVALSHA <sha> 3 sluice:{t:t_1}:attr:i1 sluice:{t:t_1}:user:u1
--          sluice:{t:t_1}:rebinds i1 0 u1 2026-12-04T10:00:00.000Z  → {"bound", ""}

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unknown_install', ''}
end
local current = redis.call('GET', KEYS[2])
if not current or current == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1])
  return {'bound', ''}
end
if ARGV[2] ~= '1' then
  return {'taken', current}
end
redis.call('SET', KEYS[2], ARGV[1])
local entry = cjson.encode({user_id = ARGV[3], from = current, to = ARGV[1], at = ARGV[4]})
redis.call('LPUSH', KEYS[3], entry)
redis.call('LTRIM', KEYS[3], 0, 999)
return {'bound', current}
