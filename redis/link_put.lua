-- link_put.lua — store one link in the catalog and announce it on the change feed, in one
-- step: every change has a version (contiguous: 1, 2, 3, …) and a feed entry carrying it, so
-- a node reading the feed can tell a complete run of changes from one with a gap.
--
-- KEYS[1]  the catalog                 <p>:{links}:all      (hash: code → link JSON)
-- KEYS[2]  the catalog version         <p>:{links}:version  (integer)
-- KEYS[3]  the change feed             <p>:{links}:feed     (stream of {v, id})
-- ARGV[1]  the link code
-- ARGV[2]  the link, JSON
-- ARGV[3]  "create" (only if the code was never taken) or "update"
-- ARGV[4]  how many entries the feed keeps (approximately; older ones are trimmed)
--
-- Returns  the change's version, or 0 when "create" found the code taken.
--
-- Example  EVALSHA <sha> 3 sluice:{links}:all sluice:{links}:version sluice:{links}:feed
--          spring '{"id":"spring",…}' create 1000000   → 42

if ARGV[3] == 'create' then
  if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
    return 0
  end
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local version = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'v', version, 'id', ARGV[1])
return version
