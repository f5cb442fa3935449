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
ARGV[2] priority_max  highest priority (for the ready score)
ARGV[3] wake_cap      longest the wake list may grow
ARGV[4..] per job, the values of NEW_FIELDS (see the fields include), in that order

Each record gets the NEW fields (bar optional ones, without a default, sent as '': unset),
the counters (fields of kind count) the producer does not set at their defaults, and its
status (and score when ready).

Returns: one integer per job, in order: 1 created, 0 the id already existed.
]]
--- @include "keys"
--- @include "record"
--- @include "score"
--- @include "wake"
--- @include "delayed"
local ready_key = KEYS[1]
local delayed_key = KEYS[2]
local seq_key = KEYS[3]
local wake_key = KEYS[4]
local job_prefix = ARGV[1]
local priority_max = tonumber(ARGV[2])
local wake_cap = tonumber(ARGV[3])
local FIRST = 4
local WIDTH = #NEW_FIELDS
-- Where each NEW value sits among a job's values: ARGV[at + AT.name].
local AT = positions(NEW_FIELDS)
for name, i in pairs(AT) do
  AT[name] = i - 1
end
local AT_ID, AT_RUN, AT_ENQUEUED = AT.id, AT.run_at_ms, AT.enqueued_at_ms

expect_types({ready_key, 'zset', delayed_key, 'zset', seq_key, 'string', wake_key, 'list'})

-- HSET arguments of one record: the NEW fields, the counters at their defaults, then the
-- status (and the score); one table, refilled for each job.
local record = {}
for i, name in ipairs(NEW_FIELDS) do
  record[2 * i - 1], record[2 * i] = name, ''
end
for _, part in ipairs(NEW_COUNTERS) do
  record[#record + 1] = part
end
local COUNTERS_AT = #record
-- NEW fields without a default: the producer may leave them unset ('').
local OPTIONAL = {}
for _, name in ipairs(NEW_FIELDS) do
  if FIELD_DEFAULT[name] == nil then
    OPTIONAL[#OPTIONAL + 1] = name
  end
end

local count = (#ARGV - FIRST + 1) / WIDTH
local created = {}
local seen = {}
local new_ready = 0

-- Pass 1: which ids are new (also within this batch), and how many go to ready.
for i = 1, count do
  local at = FIRST + (i - 1) * WIDTH
  local id = ARGV[at + AT_ID]
  if seen[id] or redis.call('EXISTS', job_prefix .. id) == 1 then
    created[i] = 0
  else
    seen[id] = true
    created[i] = 1
    if tonumber(ARGV[at + AT_RUN]) <= tonumber(ARGV[at + AT_ENQUEUED]) then
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
local old_head = delayed_head(delayed_key)
local earliest_delayed = nil
for i = 1, count do
  if created[i] == 1 then
    local at = FIRST + (i - 1) * WIDTH
    for k = 0, WIDTH - 1 do
      record[2 * k + 2] = ARGV[at + k]
    end
    local id, run_at = ARGV[at + AT_ID], ARGV[at + AT_RUN]
    local key = job_prefix .. id
    local n = COUNTERS_AT
    if tonumber(run_at) > tonumber(ARGV[at + AT_ENQUEUED]) then
      record[n + 1], record[n + 2] = 'status', 'scheduled'
      redis.call('HSET', key, unpack(record, 1, n + 2))
      redis.call('ZADD', delayed_key, run_at, id)
      earliest_delayed = earlier(earliest_delayed, tonumber(run_at))
    else
      seq = seq + 1
      local score = ready_score(priority_max, tonumber(ARGV[at + AT.priority]), seq)
      record[n + 1], record[n + 2], record[n + 3], record[n + 4] = 'status', 'queued', 'score', score
      redis.call('HSET', key, unpack(record, 1, n + 4))
      redis.call('ZADD', ready_key, score, id)
    end
    for _, name in ipairs(OPTIONAL) do
      if ARGV[at + AT[name]] == '' then
        redis.call('HDEL', key, name)
      end
    end
  end
end

local wanted = new_ready
if is_new_head(earliest_delayed, old_head) then
  wanted = wanted + 1
end
push_wakes(wake_key, wanted, wake_cap)

return created
