--[[
update_schedule: a new definition for a schedule, keeping its firing state (the record
step of an update in place; the caller then notes the change).

A definition equal to the stored one changes nothing. `reset_ticks` (the rule changed)
moves last_tick_ms up to now, so the new rule does not catch up ticks from before it.

KEYS[1] record          HASH  the schedule's record
KEYS[2] runs            LIST  its runs (for the reply)
ARGV[1] definition      opaque bytes
ARGV[2] now_ms          the caller's clock, or '' for the broker's
ARGV[3] reset_ticks     1 to move last_tick_ms up to now, else 0

Returns: {'updated' or 'same', the record as schedule_reply gives it}; {'gone'} when there
is no record; {'moved', queue} when it is marked moved to `queue`; {'damaged', problem}.
]]
--- @include "now"
--- @include "keys"
--- @include "schedule"
local record_key = KEYS[1]
local runs_key = KEYS[2]
local definition = ARGV[1]
local now_ms = resolve_now(ARGV[2])
local reset_ticks = ARGV[3]

expect_types({runs_key, 'list'})
local s, problem = read_schedule(record_key)
if not s then
  if problem == 'gone' then
    return {'gone'}
  end
  return {'damaged', problem}
end
if s.moved_to then
  return {'moved', s.moved_to}
end
if s.definition == definition then
  return {'same', schedule_reply(record_key, runs_key)}
end
set_definition(record_key, s, definition, now_ms, reset_ticks)
return {'updated', schedule_reply(record_key, runs_key)}
