--[[
purge_dead_jobs: delete dead jobs of one queue for good.

Each job still in the dead letters loses its record (whatever its type: a damaged one too)
and its place there. Ids not in the dead letters are skipped (a live job is never deleted by
this).

KEYS[1] dead            ZSET  dead job ids by finished_at_ms
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] limit           with no ids: how many of the oldest dead jobs to take
ARGV[3..] job ids; none means the `limit` oldest dead jobs

Returns: {purged, looked at}; with no ids the caller repeats while looked at == limit.
]]
--- @include "keys"
local dead_key = KEYS[1]
local job_prefix = ARGV[1]
local limit = tonumber(ARGV[2])

expect_types({dead_key, 'zset'})
local ids = {}
if #ARGV >= 3 then
  for i = 3, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
else
  ids = redis.call('ZRANGE', dead_key, 0, limit - 1)
end

local purged = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', dead_key, id) == 1 then
    redis.call('DEL', job_prefix .. id)
    purged = purged + 1
  end
end
return {purged, #ids}
