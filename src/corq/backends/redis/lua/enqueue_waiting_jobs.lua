--[[
enqueue_waiting_jobs: store new jobs of one queue that wait for their parents (the jobs of
a workflow), atomically.

Each record is written as enqueue_jobs writes it, with status waiting; the job is in no
lane (nothing can claim or promote it) and wakes no worker: the workflow's release step
queues or schedules it once its parents allow, or ends it upstream_failed. An id that
already has a key is left untouched.

KEYS[1] waiting       SET   ids of the queue's jobs waiting for their parents
KEYS[2]        events          STREAM the queue's lifecycle events (the events include)
ARGV[1] job_prefix    a record's key is job_prefix .. id
ARGV[2..] per job, the values of NEW_FIELDS (see the fields include), in that order

Returns: one integer per job, in order: 1 created, 0 the id already existed.
]]
--- @include "keys"
--- @include "enqueue"
--- @include "events"
local waiting_key = KEYS[1]
local events_key = KEYS[2]
local job_prefix = ARGV[1]
local FIRST = 2

expect_types({waiting_key, 'set'})

local q = {waiting = waiting_key, job_prefix = job_prefix, events = events_key}
return enqueue_waiting(q, ARGV, FIRST, (#ARGV - FIRST + 1) / NEW_WIDTH)
