--[[
unindex_schedule: the last step of removing a schedule (its record is gone): drop it from
the index, raise the change counter and leave a tombstone, so readers of changes learn of
the removal; tombstones older than keep_ms are trimmed (at most `batch`).

The index entry is dropped only while it still names `queue` (the queue whose record the
caller deleted): a schedule created again elsewhere meanwhile is left alone.

KEYS[1] index           HASH  schedule name -> queue
KEYS[2] changes         ZSET  schedule name -> version of its last change
KEYS[3] version         STR   the change counter
KEYS[4] removed         ZSET  removed schedule name -> when (tombstones)
KEYS[5] announced       HASH  schedule name -> the record's rev its last version announced
ARGV[1] name            the schedule
ARGV[2] queue           the queue the caller deleted its record from
ARGV[3] now_ms          the caller's clock, or '' for the broker's
ARGV[4] keep_ms         how long tombstones are kept
ARGV[5] batch           most tombstones trimmed

Returns: the new version, or 0 when the index did not name `queue` (nothing changed).
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
local keep_ms = tonumber(ARGV[4])
local batch = tonumber(ARGV[5])

expect_types({index_key, 'hash', changes_key, 'zset', version_key, 'string',
  removed_key, 'zset', announced_key, 'hash'})
if redis.call('HGET', index_key, name) ~= queue then
  return 0
end
redis.call('HDEL', index_key, name)
redis.call('HDEL', announced_key, name)
local version = redis.call('INCR', version_key)
redis.call('ZADD', changes_key, version, name)
redis.call('ZADD', removed_key, int(now_ms), name)
local old = redis.call('ZRANGEBYSCORE', removed_key, '-inf', '(' .. int(now_ms - keep_ms),
  'LIMIT', 0, batch)
for _, gone in ipairs(old) do
  if redis.call('HEXISTS', index_key, gone) == 0 then
    redis.call('ZREM', changes_key, gone)
  end
end
call_chunked('ZREM', removed_key, old)
return version
