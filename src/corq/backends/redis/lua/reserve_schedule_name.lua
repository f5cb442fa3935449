--[[
reserve_schedule_name: the first step of creating a schedule: point the index at the queue
its record is about to be created in.

The name is taken when the index lacks it, or when it names `stale`: the queue the caller
found no record in (an index entry without a record is absent: a create that crashed
before its record was written). Readers ignore the entry until the record exists.

KEYS[1] index           HASH  schedule name -> queue
ARGV[1] name            the schedule
ARGV[2] queue           where its record will be
ARGV[3] stale           the index's queue for it that the caller found empty, or ''

Returns: '' when reserved; otherwise the queue the index names for it.
]]
--- @include "keys"
local index_key = KEYS[1]
local name = ARGV[1]
local queue = ARGV[2]
local stale = ARGV[3]

expect_types({index_key, 'hash'})
local current = redis.call('HGET', index_key, name)
if current and current ~= stale then
  return current
end
redis.call('HSET', index_key, name, queue)
return ''
