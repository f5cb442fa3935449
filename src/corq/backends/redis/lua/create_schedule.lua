--[[
create_schedule: the record of a new schedule, in its queue's slot (the second step of a
create: the index names this queue already).

A new schedule is not paused and its watermark is now, so only later ticks fire. A record
marked moved_to (what is left of a move away from this queue) is replaced, with its fired
ticks and logs; any other key there means the schedule exists, and nothing is written.

KEYS[1] record          HASH  the schedule's record
KEYS[2] fired           ZSET  its fired ticks
KEYS[3] runs            LIST  its runs
KEYS[4] skips           LIST  its skips
ARGV[1] definition      opaque bytes
ARGV[2] now_ms          the caller's clock, or '' for the broker's

Returns: false when a record exists; otherwise the new record as schedule_reply gives it.
]]
--- @include "now"
--- @include "keys"
--- @include "schedule"
local record_key = KEYS[1]
local fired_key = KEYS[2]
local runs_key = KEYS[3]
local skips_key = KEYS[4]
local definition = ARGV[1]
local now_ms = resolve_now(ARGV[2])

expect_types({fired_key, 'zset', runs_key, 'list', skips_key, 'list'})
local kind = redis.call('TYPE', record_key).ok
if kind ~= 'none' and not (kind == 'hash' and redis.call('HEXISTS', record_key, 'moved_to') == 1) then
  return false
end
redis.call('DEL', record_key, fired_key, runs_key, skips_key)
local now = int(now_ms)
redis.call('HSET', record_key, 'definition', definition, 'paused', '0', 'last_tick_ms', now,
  'floor_ms', '0', 'created_at_ms', now, 'updated_at_ms', now, 'fired', '0', 'skipped', '0',
  'rev', '1')
return schedule_reply(record_key, runs_key)
