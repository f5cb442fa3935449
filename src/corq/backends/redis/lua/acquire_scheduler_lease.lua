--[[
acquire_scheduler_lease: take or renew the scheduler leadership.

The holder that has it (a lease holds while now <= its deadline) renews it: a new deadline, the same fence.
When nobody has it, or the lease passed, `holder` takes it with a new fence (the counter
raised), so the steps of a deposed leader are refused from the new one's first write. A
fence or deadline that is not a number counts as passed.

KEYS[1] leader          HASH  holder, fence, deadline_ms
KEYS[2] fence           STR   counter behind the fences
ARGV[1] holder          who asks
ARGV[2] lease_ms        how long the lease lasts from now
ARGV[3] now_ms          the caller's clock, or '' for the broker's

Returns: {fence, deadline_ms} when `holder` has the lease now; {} when another has it.
]]
--- @include "now"
--- @include "keys"
local leader_key = KEYS[1]
local fence_key = KEYS[2]
local holder = ARGV[1]
local lease_ms = tonumber(ARGV[2])
local now_ms = resolve_now(ARGV[3])

expect_types({leader_key, 'hash', fence_key, 'string'})
local current = redis.call('HMGET', leader_key, 'holder', 'fence', 'deadline_ms')
local deadline = int(now_ms + lease_ms)
local fence, until_ms = tonumber(current[2]), tonumber(current[3])
local held = current[1] and fence and until_ms and until_ms >= now_ms
if held and current[1] == holder then
  redis.call('HSET', leader_key, 'deadline_ms', deadline)
  return {fence, tonumber(deadline)}
elseif held then
  return {}
end
fence = redis.call('INCR', fence_key)
redis.call('HSET', leader_key, 'holder', holder, 'fence', fence, 'deadline_ms', deadline)
return {fence, tonumber(deadline)}
