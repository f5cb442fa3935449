--[[
enqueue_jobs: store a batch of new jobs of one queue, atomically.

A job whose run_at_ms is later than its enqueued_at_ms waits in the delayed set
(status scheduled); any other job goes to the ready set (status queued) with a score
that orders it by priority, then FIFO. An id that already has a key is left untouched.
Idle workers are woken with one wake token per ready job created, plus one when a new
delayed job is due before everything already delayed (so a worker claims, learns the new
next_due_ms and sets its timer); the wake list is capped. The caller has checked ids and
priorities; queue keys of the wrong type refuse the whole call before anything is written.
The writing is the enqueue include's (advance_schedules enqueues the same way).

KEYS[1] ready         ZSET  ready job ids by score
KEYS[2] delayed       ZSET  delayed job ids by run_at_ms
KEYS[3] seq           STR   counter behind the FIFO part of ready scores
KEYS[4] wake          LIST  wake tokens idle workers block on
KEYS[5]  rules           HASH  task -> its encoded rules
KEYS[6]  groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[7]  parked          SET   groups and keys at their concurrency
KEYS[8]  throttled       ZSET  groups and keys over a rate -> when due
KEYS[9]  active          HASH  running counts per task and lane
KEYS[10] tat             HASH  GCRA theoretical arrival times
KEYS[11] flow            HASH  counters (expired, dropped, laned, turn)
KEYS[12] expiring        ZSET  job id -> start_by_ms
ARGV[1] job_prefix    a record's key is job_prefix .. id
ARGV[2] priority_max  highest priority (for the ready score)
ARGV[3] wake_cap      longest the wake list may grow
ARGV[4] lane_prefix   a lane's jobs are lane_prefix .. lane
ARGV[5] keys_prefix   a task's rotation of keys is keys_prefix .. task
ARGV[6..] per job, the values of NEW_FIELDS (see the fields include), in that order

Each record gets the NEW fields (bar optional ones, without a default, sent as '': not
written), the counters (fields of kind count) the producer does not set at their defaults,
and its status (and score when ready).

Returns: one integer per job, in order: 1 created, 0 the id already existed.
]]
--- @include "keys"
--- @include "enqueue"
local ready_key = KEYS[1]
local delayed_key = KEYS[2]
local seq_key = KEYS[3]
local wake_key = KEYS[4]
local job_prefix = ARGV[1]
local priority_max = tonumber(ARGV[2])
local wake_cap = tonumber(ARGV[3])
local rules_key = KEYS[5]
local groups_key = KEYS[6]
local parked_key = KEYS[7]
local throttled_key = KEYS[8]
local active_key = KEYS[9]
local tat_key = KEYS[10]
local flow_key = KEYS[11]
local expiring_key = KEYS[12]
local lane_prefix = ARGV[4]
local keys_prefix = ARGV[5]
local FIRST = 6

expect_types({ready_key, 'zset', delayed_key, 'zset', seq_key, 'string', wake_key, 'list'})

local q = {
  ready = ready_key, delayed = delayed_key, seq = seq_key, wake = wake_key,
  job_prefix = job_prefix, priority_max = priority_max, wake_cap = wake_cap,
  rules = rules_key, groups = groups_key, parked = parked_key, throttled = throttled_key,
  active = active_key, tat = tat_key, flow = flow_key, expiring = expiring_key,
  lane_prefix = lane_prefix, keys_prefix = keys_prefix,
}
return enqueue_new(q, ARGV, FIRST, (#ARGV - FIRST + 1) / NEW_WIDTH)
