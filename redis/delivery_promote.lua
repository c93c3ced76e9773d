-- delivery_promote.lua — move delivery jobs whose retry time has come from the retry set back
-- into the delivery stream, atomically (a job is in exactly one of the two; two nodes
-- promoting at once cannot both move it).
--
-- KEYS[1]  retry set        <p>:{delivery}:retry   (sorted set: member = job JSON, score = due ms)
-- KEYS[2]  delivery stream  <p>:{delivery}:queue   (field "job" = job JSON)
-- ARGV[1]  now, ms
-- ARGV[2]  at most this many jobs per call
--
-- Returns  how many jobs were moved
--
-- Example  EVALSHA <sha> 2 sluice:{delivery}:retry sluice:{delivery}:queue 1795305600000 100
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, job in ipairs(due) do
  redis.call('ZREM', KEYS[1], job)
  redis.call('XADD', KEYS[2], '*', 'job', job)
end
return #due
