--[[
reset_breaker: close a task's circuit by hand: its state and failures are deleted (the next
failure starts a new count).

KEYS[1] state       HASH  the task's circuit
KEYS[2] failures    ZSET  its failures in the window
KEYS[3] tasks       SET   tasks with a circuit
ARGV[1] task        the task's name

Returns: 1 when the task had a circuit, else 0.
]]
local state_key = KEYS[1]
local failures_key = KEYS[2]
local tasks_key = KEYS[3]
local task = ARGV[1]

local had = redis.call('SREM', tasks_key, task) + redis.call('DEL', state_key, failures_key)
if had > 0 then
  return 1
end
return 0
