--[[
move_schedule_out: the first step of moving a schedule to another queue: mark its record
moved_to that queue and return its whole state, atomically. From then on every step
against this queue gets GONE, so no tick fires here after the state was taken.

A record already marked moved to the same queue (a move that stopped after this step)
returns its state again, so the move can be finished.

KEYS[1] record          HASH  the schedule's record
KEYS[2] fired           ZSET  its fired ticks
KEYS[3] runs            LIST  its runs
KEYS[4] skips           LIST  its skips
ARGV[1] target          the queue it moves to

Returns: {'moving', the record's fields and values (HGETALL), fired ticks (ascending),
runs, skips (newest first, as stored)}; {'gone'}; {'moved', queue} when it is marked moved
to another queue; {'damaged', problem}.
]]
--- @include "keys"
--- @include "schedule"
local record_key = KEYS[1]
local fired_key = KEYS[2]
local runs_key = KEYS[3]
local skips_key = KEYS[4]
local target = ARGV[1]

expect_types({fired_key, 'zset', runs_key, 'list', skips_key, 'list'})
local s, problem = read_schedule(record_key)
if not s then
  if problem == 'gone' then
    return {'gone'}
  end
  return {'damaged', problem}
end
if s.moved_to and s.moved_to ~= target then
  return {'moved', s.moved_to}
end
redis.call('HSET', record_key, 'moved_to', target)
return {'moving', redis.call('HGETALL', record_key), redis.call('ZRANGE', fired_key, 0, -1),
  redis.call('LRANGE', runs_key, 0, -1), redis.call('LRANGE', skips_key, 0, -1)}
