--[[
forget_queues: remove queue names from the registry, unless used again meanwhile.

A name goes only while its last use is still before cutoff_ms (a producer or worker that
touched it since keeps it).

KEYS[1] queues          ZSET  queue name -> last used (ms)
ARGV[1] cutoff_ms       names last used before this go
ARGV[2..] queue names

Returns: the names removed.
]]
--- @include "keys"
local queues_key = KEYS[1]
local cutoff_ms = tonumber(ARGV[1])
local FIRST = 2

expect_types({queues_key, 'zset'})
local removed = {}
for i = FIRST, #ARGV do
  local last_used = redis.call('ZSCORE', queues_key, ARGV[i])
  if last_used and tonumber(last_used) < cutoff_ms then
    redis.call('ZREM', queues_key, ARGV[i])
    removed[#removed + 1] = ARGV[i]
  end
end
return removed
