--[[
set_schedule_paused: pause or resume a schedule (the record step; the caller then notes
the change).

Pausing keeps the reason. Resuming clears it, moves last_tick_ms up to now (the ticks of
the pause are not caught up) and records the skip the caller counted, if any. Asking for
the state it is in changes nothing.

KEYS[1] record          HASH  the schedule's record
KEYS[2] runs            LIST  its runs (for the reply)
KEYS[3] skips           LIST  its skips
ARGV[1] paused          1 to pause, 0 to resume
ARGV[2] reason          why it is paused ('' for none)
ARGV[3] now_ms          the caller's clock, or '' for the broker's
ARGV[4] log_keep        entries a log keeps
ARGV[5] has_skip        1 when a skip follows, else 0 (and the next five are '')
ARGV[6] skip_first      first tick passed over
ARGV[7] skip_last       last tick passed over
ARGV[8] skip_count      how many
ARGV[9] skip_reason     why
ARGV[10] skip_at        when recorded

Returns: as update_schedule ({'updated' or 'same', record}, {'gone'}, {'moved', queue},
{'damaged', problem}).
]]
--- @include "now"
--- @include "keys"
--- @include "schedule"
local record_key = KEYS[1]
local runs_key = KEYS[2]
local skips_key = KEYS[3]
local paused = ARGV[1]
local reason = ARGV[2]
local now_ms = resolve_now(ARGV[3])
local log_keep = tonumber(ARGV[4])
local has_skip = ARGV[5]
local skip_first = ARGV[6]
local skip_last = ARGV[7]
local skip_count = ARGV[8]
local skip_reason = ARGV[9]
local skip_at = ARGV[10]

expect_types({runs_key, 'list', skips_key, 'list'})
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
if s.paused == (paused == '1') then
  return {'same', schedule_reply(record_key, runs_key)}
end
redis.call('HSET', record_key, 'paused', paused, 'updated_at_ms', int(now_ms))
redis.call('HINCRBY', record_key, 'rev', 1)
if paused == '1' and reason ~= '' then
  redis.call('HSET', record_key, 'reason', reason)
else
  redis.call('HDEL', record_key, 'reason')
end
if paused == '0' then
  if now_ms > s.last_tick_ms then
    redis.call('HSET', record_key, 'last_tick_ms', int(now_ms))
  end
  if has_skip == '1' then
    local entry = pack_skip(tonumber(skip_first), tonumber(skip_last), tonumber(skip_count),
      skip_reason, tonumber(skip_at))
    log_entry(skips_key, entry, log_keep)
    redis.call('HINCRBY', record_key, 'skipped', skip_count)
  end
end
return {'updated', schedule_reply(record_key, runs_key)}
