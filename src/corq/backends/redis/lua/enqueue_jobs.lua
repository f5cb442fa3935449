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
ARGV[1] job_prefix    a record's key is job_prefix .. id
ARGV[2] priority_max  highest priority (for the ready score)
ARGV[3] wake_cap      longest the wake list may grow
ARGV[4..] per job, the values of NEW_FIELDS (see the fields include), in that order

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
local FIRST = 4

expect_types({ready_key, 'zset', delayed_key, 'zset', seq_key, 'string', wake_key, 'list'})

local q = {
  ready = ready_key, delayed = delayed_key, seq = seq_key, wake = wake_key,
  job_prefix = job_prefix, priority_max = priority_max, wake_cap = wake_cap,
}
return enqueue_new(q, ARGV, FIRST, (#ARGV - FIRST + 1) / NEW_WIDTH)
