--[[
wake: wake tokens for idle workers, who BLPOP the queue's wake list.

push_wakes(wake_key, wanted, wake_cap): push up to `wanted` tokens in one RPUSH, never
letting the list grow past `wake_cap` (a burst must not leave thousands of stale tokens).
chain_wake(wake_key, ready_key): one token when ready jobs remain and none is pending, so a
claim that left work behind brings another idle worker to help (chain wake-up).
]]
local function push_wakes(wake_key, wanted, wake_cap)
  local n = math.min(wanted, wake_cap - redis.call('LLEN', wake_key))
  if n > 0 then
    local tokens = {}
    for i = 1, n do
      tokens[i] = '1'
    end
    redis.call('RPUSH', wake_key, unpack(tokens))
  end
end

local function chain_wake(wake_key, ready_key)
  if redis.call('LLEN', wake_key) == 0 and redis.call('ZCARD', ready_key) > 0 then
    redis.call('RPUSH', wake_key, '1')
  end
end
