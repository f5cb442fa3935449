--[[
list_worker_info: remove the facts past their deadline, then return every worker's facts.

At most 1,000 expired workers are removed per call (the next call removes more); a fact
whose deadline is missing from expiry (written half by another program) is kept.

KEYS[1] info            HASH  worker id -> its facts (JSON)
KEYS[2] expiry          ZSET  worker id -> when its facts are removed (ms)
ARGV[1] now_ms          the caller's clock, or '' for the broker's

Returns: {now_ms, the flat HGETALL of info after the removal: [worker id, facts, ...]}.
]]
--- @include "now"
local info_key = KEYS[1]
local expiry_key = KEYS[2]
local now_ms = resolve_now(ARGV[1])

local due = redis.call('ZRANGEBYSCORE', expiry_key, '-inf', int(now_ms), 'LIMIT', 0, 1000)
if #due > 0 then
  redis.call('HDEL', info_key, unpack(due))
  redis.call('ZREM', expiry_key, unpack(due))
end
return {int(now_ms), redis.call('HGETALL', info_key)}
