--[[
move_schedule_in: the second step of moving a schedule: create its record in the new
queue's slot with the state the first step took (and the new definition).

When the record is there already (a move that stopped after this step), its state is the
newer one (steps may have fired here since): only the definition is set, as
update_schedule does. A record marked moved_to (left by a move away from this queue) is
replaced; any other key there is refused.

KEYS[1] record          HASH  the schedule's record in the new queue
KEYS[2] fired           ZSET  its fired ticks
KEYS[3] runs            LIST  its runs
KEYS[4] skips           LIST  its skips
ARGV[1] definition      the new definition
ARGV[2] now_ms          the caller's clock, or '' for the broker's
ARGV[3] reset_ticks     1 to move last_tick_ms up to now, else 0
ARGV[4] paused          the state taken: 0/1
ARGV[5] reason          '' for none
ARGV[6] last_tick_ms
ARGV[7] floor_ms
ARGV[8] buffered_tick_ms  '' for none
ARGV[9] created_at_ms
ARGV[10] fired_count
ARGV[11] skipped_count
ARGV[12] rev            the record's rev (the new record's is one more)
ARGV[13] n_fired        how many fired ticks follow
ARGV[14..] the fired ticks, then a count and the runs (newest first), then a count and
the skips (newest first)

Returns: {'created' or 'existed', the record as schedule_reply gives it}; {'damaged',
problem} when another key is in the way.
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
local reset_ticks = ARGV[3]
local paused = ARGV[4]
local reason = ARGV[5]
local last_tick_ms = tonumber(ARGV[6])
local floor_ms = ARGV[7]
local buffered_tick_ms = ARGV[8]
local created_at_ms = ARGV[9]
local fired_count = ARGV[10]
local skipped_count = ARGV[11]
local rev = tonumber(ARGV[12])
local n_fired = tonumber(ARGV[13])
local FIRST = 14

expect_types({fired_key, 'zset', runs_key, 'list', skips_key, 'list'})

local s, problem = read_schedule(record_key)
if s and not s.moved_to then
  set_definition(record_key, s, definition, now_ms, reset_ticks)
  return {'existed', schedule_reply(record_key, runs_key)}
elseif not s and problem ~= 'gone' then
  return {'damaged', problem}
end
redis.call('DEL', record_key, fired_key, runs_key, skips_key)

-- The `n` values from `at` on, after their count; returns them and where the next count is.
local function take(at, n)
  local out = {}
  for i = 1, n do
    out[i] = ARGV[at + i - 1]
  end
  return out, at + n
end

local ticks, at = take(FIRST, n_fired)
local runs
runs, at = take(at + 1, tonumber(ARGV[at]))
local skips = take(at + 1, tonumber(ARGV[at]))
if reset_ticks == '1' and now_ms > last_tick_ms then
  last_tick_ms = now_ms
end
redis.call('HSET', record_key, 'definition', definition, 'paused', paused, 'last_tick_ms',
  int(last_tick_ms), 'floor_ms', floor_ms, 'created_at_ms', created_at_ms, 'updated_at_ms',
  int(now_ms), 'fired', fired_count, 'skipped', skipped_count, 'rev', int(rev + 1))
if reason ~= '' then
  redis.call('HSET', record_key, 'reason', reason)
end
if buffered_tick_ms ~= '' then
  redis.call('HSET', record_key, 'buffered_tick_ms', buffered_tick_ms)
end
local pairs_ = {}
for _, tick in ipairs(ticks) do
  pairs_[#pairs_ + 1] = tick
  pairs_[#pairs_ + 1] = tick
end
call_chunked('ZADD', fired_key, pairs_)
call_chunked('RPUSH', runs_key, runs)
call_chunked('RPUSH', skips_key, skips)
return {'created', schedule_reply(record_key, runs_key)}
