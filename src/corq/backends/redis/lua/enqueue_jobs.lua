--[[
enqueue_jobs: store a batch of new jobs of one queue, atomically.

A job whose run_at_ms is later than its enqueued_at_ms waits in the delayed set
(status scheduled); any other job goes to the ready set (status queued) with a score
that orders it by priority, then FIFO. An id that already has a key is left untouched.
Idle workers are woken with one wake token per ready job created, plus one when a new
delayed job is due before everything already delayed (so a worker claims, learns the new
next_due_ms and sets its timer); the wake list is capped. The caller has checked ids and
priorities; queue keys of the wrong type refuse the whole call before anything is written.

KEYS[1] ready         ZSET  ready job ids by score
KEYS[2] delayed       ZSET  delayed job ids by run_at_ms
KEYS[3] seq           STR   counter behind the FIFO part of ready scores
KEYS[4] wake          LIST  wake tokens idle workers block on
ARGV[1] job_prefix    a record's key is job_prefix .. id
ARGV[2] queue         queue name, stored in each record
ARGV[3] priority_max  highest priority (for the ready score)
ARGV[4] wake_cap      longest the wake list may grow
ARGV[5..] six per job: id, task, payload, priority, enqueued_at_ms, run_at_ms

Returns: one integer per job, in order: 1 created, 0 the id already existed.
]]
--- @include "keys"
--- @include "score"
--- @include "wake"
local ready_key = KEYS[1]
local delayed_key = KEYS[2]
local seq_key = KEYS[3]
local wake_key = KEYS[4]
local job_prefix = ARGV[1]
local queue = ARGV[2]
local priority_max = tonumber(ARGV[3])
local wake_cap = tonumber(ARGV[4])
local FIRST, WIDTH = 5, 6

expect_types({ready_key, 'zset', delayed_key, 'zset', seq_key, 'string', wake_key, 'list'})

local count = (#ARGV - FIRST + 1) / WIDTH
local created = {}
local seen = {}
local new_ready = 0

-- Pass 1: which ids are new (also within this batch), and how many go to ready.
for i = 1, count do
  local at = FIRST + (i - 1) * WIDTH
  local id = ARGV[at]
  if seen[id] or redis.call('EXISTS', job_prefix .. id) == 1 then
    created[i] = 0
  else
    seen[id] = true
    created[i] = 1
    if tonumber(ARGV[at + 5]) <= tonumber(ARGV[at + 4]) then
      new_ready = new_ready + 1
    end
  end
end

-- One INCRBY reserves the FIFO numbers of every ready job of the batch.
local seq = 0
if new_ready > 0 then
  seq = redis.call('INCRBY', seq_key, new_ready) - new_ready
end

-- Pass 2: write the records and index them.
local old_head = redis.call('ZRANGE', delayed_key, 0, 0, 'WITHSCORES')[2]
local earliest_delayed = nil
for i = 1, count do
  if created[i] == 1 then
    local at = FIRST + (i - 1) * WIDTH
    local id, priority = ARGV[at], ARGV[at + 3]
    local enqueued_at, run_at = ARGV[at + 4], ARGV[at + 5]
    local key = job_prefix .. id
    if tonumber(run_at) > tonumber(enqueued_at) then
      redis.call('HSET', key, 'id', id, 'task', ARGV[at + 1], 'queue', queue,
        'payload', ARGV[at + 2], 'priority', priority, 'attempt', '0', 'failures', '0',
        'deaths', '0', 'fence', '0', 'enqueued_at_ms', enqueued_at, 'run_at_ms', run_at,
        'status', 'scheduled')
      redis.call('ZADD', delayed_key, run_at, id)
      if not earliest_delayed or tonumber(run_at) < earliest_delayed then
        earliest_delayed = tonumber(run_at)
      end
    else
      seq = seq + 1
      local score = ready_score(priority_max, tonumber(priority), seq)
      redis.call('HSET', key, 'id', id, 'task', ARGV[at + 1], 'queue', queue,
        'payload', ARGV[at + 2], 'priority', priority, 'attempt', '0', 'failures', '0',
        'deaths', '0', 'fence', '0', 'enqueued_at_ms', enqueued_at, 'run_at_ms', run_at,
        'status', 'queued', 'score', score)
      redis.call('ZADD', ready_key, score, id)
    end
  end
end

local wanted = new_ready
if earliest_delayed and (not old_head or earliest_delayed < tonumber(old_head)) then
  wanted = wanted + 1
end
push_wakes(wake_key, wanted, wake_cap)

return created
