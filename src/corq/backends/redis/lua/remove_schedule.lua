--[[
remove_schedule: delete a schedule's record with its fired ticks and logs (the first step
of a removal, and the last of a move, for what is left in the old queue).

KEYS[1] record          HASH  the schedule's record
KEYS[2] fired           ZSET  its fired ticks
KEYS[3] runs            LIST  its runs
KEYS[4] skips           LIST  its skips
ARGV[1] moved_only      1: delete only a record marked moved_to (a move's leftover), else 0

Returns: 1 when a record was deleted, 0 when there was none (or it was not a leftover).
]]
local record_key = KEYS[1]
local fired_key = KEYS[2]
local runs_key = KEYS[3]
local skips_key = KEYS[4]
local moved_only = ARGV[1]

local kind = redis.call('TYPE', record_key).ok
if moved_only == '1' then
  if kind ~= 'hash' or redis.call('HEXISTS', record_key, 'moved_to') == 0 then
    return 0
  end
end
redis.call('DEL', record_key, fired_key, runs_key, skips_key)
return kind == 'none' and 0 or 1
