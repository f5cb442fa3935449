--[[
adopt_ready_jobs: move ready jobs of tasks that just gained rules from the plain ready set
into their lanes, one bounded step (a task's limit set at runtime holds the jobs already
queued too, not only the later ones).

Walks the ready set by score after `cursor`, at most `batch` ids: each job of one of the
tasks whose rules are now stored moves to the lane its rules give it (the record's `lane`
written, the lane offered to its rotations, with its ready score: priority and FIFO kept).
A record that is not a hash stays where it is (the claim buries it).

KEYS[1]  ready           ZSET  ready job ids by score
KEYS[2]  rules           HASH  task -> its encoded rules
KEYS[3]  groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[4]  parked          SET   groups and keys at their concurrency
KEYS[5]  throttled       ZSET  groups and keys over a rate -> when due
KEYS[6]  active          HASH  running counts per task and lane
KEYS[7]  tat             HASH  GCRA theoretical arrival times
KEYS[8]  flow            HASH  counters (expired, dropped, laned, turn)
KEYS[9]  expiring        ZSET  job id -> start_by_ms
ARGV[1] job_prefix    a record's key is job_prefix .. id
ARGV[2] lane_prefix   a lane's jobs are lane_prefix .. lane
ARGV[3] keys_prefix   a task's rotation of keys is keys_prefix .. task
ARGV[4] cursor        the ready score to walk on after ('' from the start)
ARGV[5] batch         most ids looked at
ARGV[6..] the tasks whose jobs move

Returns: {jobs moved, the score to walk on after, or false when the walk is done}.
]]
--- @include "keys"
--- @include "limits"
local ready_key = KEYS[1]
local rules_key = KEYS[2]
local groups_key = KEYS[3]
local parked_key = KEYS[4]
local throttled_key = KEYS[5]
local active_key = KEYS[6]
local tat_key = KEYS[7]
local flow_key = KEYS[8]
local expiring_key = KEYS[9]
local job_prefix = ARGV[1]
local lane_prefix = ARGV[2]
local keys_prefix = ARGV[3]
local cursor = ARGV[4]
local batch = tonumber(ARGV[5])
local FIRST = 6

expect_types({ready_key, 'zset', rules_key, 'hash', groups_key, 'zset', parked_key, 'set',
  throttled_key, 'zset', active_key, 'hash', tat_key, 'hash', flow_key, 'hash',
  expiring_key, 'zset'})
local q = with_flow({ready = ready_key, job_prefix = job_prefix}, rules_key, groups_key,
  parked_key, throttled_key, active_key, tat_key, flow_key, expiring_key, lane_prefix,
  keys_prefix)

local tasks = {}
for at = FIRST, #ARGV do
  tasks[ARGV[at]] = true
end

local low = cursor == '' and '-inf' or '(' .. cursor
local page = redis.call('ZRANGEBYSCORE', ready_key, low, '+inf', 'WITHSCORES', 'LIMIT', 0, batch)
local moved = 0
for i = 1, #page, 2 do
  local id, score = page[i], page[i + 1]
  local key = job_prefix .. id
  if redis.call('TYPE', key).ok == 'hash' then
    local fields = redis.call('HMGET', key, 'task', 'key')
    local task = fields[1]
    if task and tasks[task] then
      local lane = lane_for(q, task, fields[2] or '')
      if lane ~= '' then
        redis.call('ZREM', ready_key, id)
        redis.call('HSET', key, 'lane', lane)
        make_ready(q, id, score, lane)
        moved = moved + 1
      end
    end
  end
end
if #page < 2 * batch then
  return {moved, false}
end
return {moved, page[#page]}
