--[[
cancel_job: cancel one job that has not started (scheduled, waiting for its parents,
queued, or failed and waiting for a retry).

The job leaves the ready, delayed, suspects and waiting sets, becomes cancelled with
finished_at_ms, its record expires after ttl_ms (at least keep_ms for a job some workflow
reads) and its id is published on its done channel. A job of a workflow, or one a workflow
watches, notes its end in the outbox (its dependents are failed by the settle that
follows). A job in any other state, or a key that is not a job hash, is left alone.

KEYS[1] job             HASH  the job record
KEYS[2] ready           ZSET  ready job ids by score
KEYS[3] delayed         ZSET  delayed job ids by run_at_ms
KEYS[4] suspects        ZSET  suspects (a waiting suspect can be cancelled too)
KEYS[5] outbox          ZSET  ended workflow jobs -> end time
KEYS[6] waiting         SET   ids of jobs waiting for their parents
KEYS[7]  rules           HASH  task -> its encoded rules
KEYS[8]  groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[9]  parked          SET   groups and keys at their concurrency
KEYS[10] throttled       ZSET  groups and keys over a rate -> when due
KEYS[11] active          HASH  running counts per task and lane
KEYS[12] tat             HASH  GCRA theoretical arrival times
KEYS[13] flow            HASH  counters (expired, dropped, laned, turn)
KEYS[14] expiring        ZSET  job id -> start_by_ms
KEYS[15] unique          HASH  unique key -> job holding it (an end frees it)
KEYS[16] unique_kept     ZSET  unique keys kept after their job's end
KEYS[17]       events          STREAM the queue's lifecycle events (the events include)
ARGV[1] job_id          the job
ARGV[2] done_channel    the job's done channel
ARGV[3] now_ms          the caller's clock, or '' for the broker's
ARGV[4] ttl_ms          how long the cancelled record is kept
ARGV[5] keep_ms         least a workflow job's record is kept (WORKFLOW_KEEP_MS)
ARGV[6] lane_prefix     a lane's jobs are lane_prefix .. lane
ARGV[7] keys_prefix     a task's rotation of keys is keys_prefix .. task
A queued job is taken out of its own lane (the record's), and out of the expiry index.

Returns: 1 cancelled, 0 not cancellable (or no such job).
]]
--- @include "now"
--- @include "keys"
--- @include "outbox"
--- @include "limits"
--- @include "unique"
--- @include "events"
local job_key = KEYS[1]
local ready_key = KEYS[2]
local delayed_key = KEYS[3]
local suspects_key = KEYS[4]
local outbox_key = KEYS[5]
local waiting_key = KEYS[6]
local job_id = ARGV[1]
local done_channel = ARGV[2]
local now_ms = resolve_now(ARGV[3])
local ttl_ms = tonumber(ARGV[4])
local keep_ms = tonumber(ARGV[5])
local rules_key = KEYS[7]
local groups_key = KEYS[8]
local parked_key = KEYS[9]
local throttled_key = KEYS[10]
local active_key = KEYS[11]
local tat_key = KEYS[12]
local flow_key = KEYS[13]
local expiring_key = KEYS[14]
local unique_key = KEYS[15]
local unique_kept_key = KEYS[16]
local events_key = KEYS[17]
local lane_prefix = ARGV[6]
local keys_prefix = ARGV[7]
local q = {ready = ready_key}
q.events = events_key
with_flow(q, rules_key, groups_key, parked_key, throttled_key, active_key, tat_key,
  flow_key, expiring_key, lane_prefix, keys_prefix)

local CANCELLABLE = {scheduled = true, waiting = true, queued = true, failed = true}

expect_types({ready_key, 'zset', delayed_key, 'zset', suspects_key, 'zset', outbox_key, 'zset',
  waiting_key, 'set'})
local f = redis.pcall('HMGET', job_key, 'status', 'workflow', 'notify', 'lane', 'unique_key',
  'unique_for_ms')
if f.err or not CANCELLABLE[f[1]] then
  return 0 -- also when the key is not a hash
end
local workflow, notify = f[2], f[3]
take_out(q, job_id, f[4])
redis.call('ZREM', expiring_key, job_id)
redis.call('ZREM', delayed_key, job_id)
redis.call('ZREM', suspects_key, job_id)
redis.call('SREM', waiting_key, job_id)
redis.call('HSET', job_key, 'status', 'cancelled', 'finished_at_ms', int(now_ms))
EVENT.note(q, job_key, job_id, 'cancelled', now_ms, '')
redis.call('PEXPIRE', job_key, kept_ms(ttl_ms, keep_ms, workflow, notify))
redis.call('PUBLISH', done_channel, job_id)
note_end(outbox_key, job_id, int(now_ms), workflow, notify)
free_unique({unique = unique_key, unique_kept = unique_kept_key}, job_id, f[5], f[6], int(now_ms))
return 1
