--[[
breaker: a task's circuit breaker state, read and written the same way by every breaker
script (see keys.py, the {breakers} slot).

read_breaker(state_key): the circuit as stored: a table with status ('closed' when absent,
unknown or unreadable: a circuit nobody can read holds no job back), until_ms, opened_at_ms
(numbers or nil), opened and failures (numbers, 0 when absent). A key of another type reads
as closed.
breaker_reply(b, failures): the reply of a circuit: status, failures, opened_at_ms,
until_ms ('' for none), opened.
]]
--- @include "now"
local BREAKER_STATUS = {closed = true, open = true, half_open = true}

local function read_breaker(state_key)
  local f = redis.pcall('HMGET', state_key, 'status', 'until_ms', 'opened_at_ms', 'opened',
    'failures')
  if f.err then
    return {status = 'closed', opened = 0, failures = 0}
  end
  local status = f[1]
  if not BREAKER_STATUS[status] then
    status = 'closed'
  end
  return {status = status, until_ms = tonumber(f[2]), opened_at_ms = tonumber(f[3]),
    opened = tonumber(f[4]) or 0, failures = tonumber(f[5]) or 0}
end

local function optional(n)
  if n == nil then
    return ''
  end
  return int(n)
end

local function breaker_reply(b, failures)
  return {b.status, int(failures), optional(b.opened_at_ms), optional(b.until_ms),
    int(b.opened)}
end
