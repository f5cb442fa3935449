--[[
touch_queues: note queue names as used now in the registry of queues.

Registers new names and moves known ones to now (never back in time). A registry left as a
SET by an older corq is first turned into the ZSET, its names noted as used now, so a
migration prunes nothing at once. With no names it only migrates.

KEYS[1] queues          ZSET  queue name -> last used (ms)
ARGV[1] now_ms          the caller's clock, or '' for the broker's
ARGV[2..] queue names

Returns: how many names the registry holds.
]]
--- @include "now"
--- @include "keys"
local queues_key = KEYS[1]
local now_ms = resolve_now(ARGV[1])
local FIRST = 2

local function zadd_now(names, first)
  local args = {}
  for i = first, #names do
    args[#args + 1] = int(now_ms)
    args[#args + 1] = names[i]
    if #args >= 2 * CHUNK then
      redis.call('ZADD', queues_key, 'GT', unpack(args))
      args = {}
    end
  end
  if #args > 0 then
    redis.call('ZADD', queues_key, 'GT', unpack(args))
  end
end

if redis.call('TYPE', queues_key).ok == 'set' then
  local old = redis.call('SMEMBERS', queues_key)
  redis.call('DEL', queues_key)
  zadd_now(old, 1)
end
expect_types({queues_key, 'zset'})
zadd_now(ARGV, FIRST)
return redis.call('ZCARD', queues_key)
