--[[
note_schedule_change: the last step of a change of a schedule (created, updated, paused,
resumed, moved): raise the change counter and give the schedule that version.

It runs after the record was written, so a reader that saw version v has seen every record
written by the changes up to v. A move's third step also points the index at the new
queue. A name the index no longer holds (removed meanwhile) keeps its tombstone. The
record's rev it announces is kept (never lowered), so a writer that finds the record as it
wants it can tell whether a crash came between its record step and this one.

KEYS[1] index           HASH  schedule name -> queue
KEYS[2] changes         ZSET  schedule name -> version of its last change
KEYS[3] version         STR   the change counter
KEYS[4] removed         ZSET  removed schedule name -> when (tombstones)
KEYS[5] announced       HASH  schedule name -> the record's rev its last version announced
ARGV[1] name            the schedule
ARGV[2] queue           the queue the index must name now (a move), or '' to leave it
ARGV[3] now_ms          the caller's clock, or '' for the broker's
ARGV[4] rev             the record's rev this change wrote

Returns: the new version.
]]
--- @include "now"
--- @include "keys"
local index_key = KEYS[1]
local changes_key = KEYS[2]
local version_key = KEYS[3]
local removed_key = KEYS[4]
local announced_key = KEYS[5]
local name = ARGV[1]
local queue = ARGV[2]
local now_ms = resolve_now(ARGV[3])
local rev = tonumber(ARGV[4])

expect_types({index_key, 'hash', changes_key, 'zset', version_key, 'string',
  removed_key, 'zset', announced_key, 'hash'})
if queue ~= '' then
  redis.call('HSET', index_key, name, queue)
end
local version = redis.call('INCR', version_key)
redis.call('ZADD', changes_key, version, name)
if redis.call('HEXISTS', index_key, name) == 1 then
  redis.call('ZREM', removed_key, name)
else
  redis.call('ZADD', removed_key, int(now_ms), name)
end
if rev > (tonumber(redis.call('HGET', announced_key, name)) or 0) then
  redis.call('HSET', announced_key, name, int(rev))
end
return version
