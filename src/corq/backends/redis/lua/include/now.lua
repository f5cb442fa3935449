--[[
now: the time a script works with.

resolve_now(arg): `arg` (an ARGV value, the caller's clock in ms) when it is not empty, else
the broker's own clock (Redis TIME) in ms. Workers on a real clock pass '', so one machine's
wrong clock never moves another's lease. Writing after TIME is safe: scripts are replicated
by their effects (the default since Redis 5, the only mode since 7).

int(x): a time (or any integer) as the exact decimal string to write back.
]]
local function resolve_now(arg)
  if arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Numbers written back go through %d: Redis may print a Lua number as 1e+15.
local function int(x)
  return string.format('%d', x)
end
