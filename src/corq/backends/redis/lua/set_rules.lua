--[[
set_rules: store tasks' flow-control rules in one queue, and let their held-back lanes be
looked at again under them.

Per task: its encoded rules (flow.py) replace its entry in rules, or '' removes it (no
rules: its lanes drain without limits). Every group or key of those tasks that is parked
or throttled goes back in its rotation, so a raised limit applies from the next claim (a
claim parks or throttles again what is still over a limit). This looks at every held-back
lane of the queue once: an operator's call, never on a claim's path.

KEYS[1]  rules           HASH  task -> its encoded rules
KEYS[2]  groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[3]  parked          SET   groups and keys at their concurrency
KEYS[4]  throttled       ZSET  groups and keys over a rate -> when due
KEYS[5]  active          HASH  running counts per task and lane
KEYS[6]  tat             HASH  GCRA theoretical arrival times
KEYS[7]  flow            HASH  counters (expired, dropped, laned, turn)
KEYS[8]  expiring        ZSET  job id -> start_by_ms
ARGV[1] lane_prefix   a lane's jobs are lane_prefix .. lane
ARGV[2] keys_prefix   a task's rotation of keys is keys_prefix .. task
ARGV[3..] two per task: task, encoded rules or ''

Returns: how many held-back lanes went back in their rotations.
]]
--- @include "keys"
--- @include "limits"
local rules_key = KEYS[1]
local groups_key = KEYS[2]
local parked_key = KEYS[3]
local throttled_key = KEYS[4]
local active_key = KEYS[5]
local tat_key = KEYS[6]
local flow_key = KEYS[7]
local expiring_key = KEYS[8]
local lane_prefix = ARGV[1]
local keys_prefix = ARGV[2]
local FIRST = 3

expect_types({rules_key, 'hash', groups_key, 'zset', parked_key, 'set', throttled_key, 'zset',
  active_key, 'hash', tat_key, 'hash', flow_key, 'hash', expiring_key, 'zset'})
local q = {rules = rules_key, groups = groups_key, parked = parked_key,
  throttled = throttled_key, active = active_key, tat = tat_key, flow = flow_key,
  expiring = expiring_key, lane_prefix = lane_prefix, keys_prefix = keys_prefix}

local changed = {}
for at = FIRST, #ARGV, 2 do
  local task, encoded = ARGV[at], ARGV[at + 1]
  if encoded == '' then
    redis.call('HDEL', rules_key, task)
  else
    redis.call('HSET', rules_key, task, encoded)
  end
  changed[task] = true
end

-- The task a held-back member belongs to.
local function task_of(member)
  local name = string.sub(member, 3)
  if string.sub(member, 1, 2) == 'k:' then
    return (lane_parts(name))
  end
  return name
end

local restored = 0
for _, member in ipairs(redis.call('SMEMBERS', parked_key)) do
  if changed[task_of(member)] then
    unpark(q, member)
    restored = restored + 1
  end
end
for _, member in ipairs(redis.call('ZRANGE', throttled_key, 0, -1)) do
  if changed[task_of(member)] then
    redis.call('ZREM', throttled_key, member)
    restore(q, member)
    restored = restored + 1
  end
end
return restored
