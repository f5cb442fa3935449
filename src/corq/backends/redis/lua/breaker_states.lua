--[[
breaker_states: the circuits of some tasks, as stored.

A closed circuit's failures are those within its last window (window_ms, as the last
failure recorded it); an open or half-open one's, those that opened it. A task without a
circuit reads as closed with nothing counted.

KEYS[2i-1] state       HASH  task i's circuit
KEYS[2i]   failures    ZSET  its failures in the window
ARGV[1] now_ms         the caller's clock ('' for the broker's)

Returns: per task, in order: {status, failures, opened_at_ms, until_ms ('' for none),
opened}.
]]
--- @include "breaker"
local now_arg = ARGV[1]

local now = resolve_now(now_arg)
local out = {}
for i = 1, #KEYS, 2 do
  local state_key, failures_key = KEYS[i], KEYS[i + 1]
  local b = read_breaker(state_key)
  local failures = b.failures
  if b.status == 'closed' then
    local window = tonumber(redis.pcall('HGET', state_key, 'window_ms')) or 0
    failures = 0
    if redis.call('TYPE', failures_key).ok == 'zset' then
      failures = redis.call('ZCOUNT', failures_key, '(' .. int(now - window), '+inf')
    end
  end
  out[#out + 1] = breaker_reply(b, failures)
end
return out
