--[[
breaker_permit: may a job of the task start now?

Closed (or no circuit): yes, nothing written (one HMGET). Open before until_ms, or half-open
while the probe's permit runs: no, ask again at until_ms. Open after until_ms, or half-open
after the permit lapsed (its worker died or forgot): this caller gets the probe: the circuit
becomes half-open and the permit lapses reset_ms from now.

KEYS[1] state       HASH  the task's circuit
ARGV[1] now_ms      the caller's clock ('' for the broker's)
ARGV[2] reset_ms    how long a probe's permit lasts (the rule's reset)

Returns: {allowed (1/0), probe (1/0), retry_at_ms ('' when allowed)}.
]]
--- @include "breaker"
local state_key = KEYS[1]
local now_arg = ARGV[1]
local reset_ms = tonumber(ARGV[2])

local b = read_breaker(state_key)
if b.status == 'closed' then
  return {1, 0, ''}
end
local now = resolve_now(now_arg)
if b.until_ms and now < b.until_ms then
  return {0, 0, int(b.until_ms)}
end
redis.call('HSET', state_key, 'status', 'half_open', 'until_ms', int(now + reset_ms))
return {1, 1, ''}
