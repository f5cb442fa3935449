--[[
cancel_job: cancel one job that has not ended (scheduled, waiting for its parents,
queued, failed and waiting for a retry, or running).

A running job is fenced off: its fence moves on and it leaves its holder's held set (the
holder's outcome, release or progress is refused, and reclaim no longer sees it), its
limit slots are freed (each slot freed hands a job to an idle holder or pushes a wake
token, as complete_jobs does) and worker_id keeps the holder (the caller tells that
worker to stop it). Any other job leaves the ready, delayed, suspects and waiting sets, becomes cancelled with
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
KEYS[17] wake            LIST  wake tokens
KEYS[18] workers         ZSET  holder id -> lease deadline (hand-overs go to live holders)
KEYS[19] idle            ZSET  idle holders waiting to be handed a job
KEYS[20] dead            ZSET  dead letters (a damaged record met by a hand-over goes there)
KEYS[21] events          STREAM the queue's lifecycle events (the events include)
ARGV[1] job_id          the job
ARGV[2] done_channel    the job's done channel
ARGV[3] now_ms          the caller's clock, or '' for the broker's
ARGV[4] ttl_ms          how long the cancelled record is kept
ARGV[5] keep_ms         least a workflow job's record is kept (WORKFLOW_KEEP_MS)
ARGV[6] lane_prefix     a lane's jobs are lane_prefix .. lane
ARGV[7] keys_prefix     a task's rotation of keys is keys_prefix .. task
ARGV[8] job_prefix      a record's key is job_prefix .. id
ARGV[9] done_prefix     a job's done channel is done_prefix .. id
ARGV[10] held_prefix    a holder's held set is held_prefix .. holder
ARGV[11] inbox_prefix   a holder's inbox is inbox_prefix .. holder
ARGV[12] queue          the queue's name (handed out with each job)
ARGV[13] batch          most dead letters to trim
ARGV[14] dead_max       most dead letters kept (0: no limit)
ARGV[15] dead_ttl_ms    longest a dead letter is kept (0: no limit)
ARGV[16] wake_cap       longest the wake list may grow
A queued job is taken out of its own lane (the record's), and out of the expiry index.

Returns: 1 cancelled, 0 not cancellable (or no such job).
]]
--- @include "now"
--- @include "keys"
--- @include "outbox"
--- @include "limits"
--- @include "unique"
--- @include "wake"
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
local events_key = KEYS[21]
local lane_prefix = ARGV[6]
local keys_prefix = ARGV[7]
local wake_key = KEYS[17]
local workers_key = KEYS[18]
local idle_key = KEYS[19]
local dead_key = KEYS[20]
local job_prefix = ARGV[8]
local done_prefix = ARGV[9]
local held_prefix = ARGV[10]
local inbox_prefix = ARGV[11]
local queue = ARGV[12]
local batch = tonumber(ARGV[13])
local dead_max = tonumber(ARGV[14])
local dead_ttl_ms = tonumber(ARGV[15])
local wake_cap = tonumber(ARGV[16])
local q = {ready = ready_key, job_prefix = job_prefix, done_prefix = done_prefix,
  outbox = outbox_key, dead = dead_key, batch = batch, dead_max = dead_max,
  dead_ttl_ms = dead_ttl_ms}
q.events = events_key
with_flow(q, rules_key, groups_key, parked_key, throttled_key, active_key, tat_key,
  flow_key, expiring_key, lane_prefix, keys_prefix)

local CANCELLABLE = {scheduled = true, waiting = true, queued = true, failed = true,
  running = true}

expect_types({ready_key, 'zset', delayed_key, 'zset', suspects_key, 'zset', outbox_key, 'zset',
  waiting_key, 'set'})
local f = redis.pcall('HMGET', job_key, 'status', 'workflow', 'notify', 'lane', 'unique_key',
  'unique_for_ms', 'worker_id', 'limited')
if f.err or not CANCELLABLE[f[1]] then
  return 0 -- also when the key is not a hash
end
local workflow, notify = f[2], f[3]
local freed = false
if f[1] == 'running' then
  redis.call('HINCRBY', job_key, 'fence', 1)
  if f[7] then
    redis.call('SREM', held_prefix .. f[7], job_id)
  end
  freed = f[8] == '1'
  free_slots(q, job_key, f[4], f[8])
else
  take_out(q, job_id, f[4])
  redis.call('ZREM', delayed_key, job_id)
  redis.call('ZREM', suspects_key, job_id)
  redis.call('SREM', waiting_key, job_id)
end
redis.call('ZREM', expiring_key, job_id)
redis.call('HSET', job_key, 'status', 'cancelled', 'finished_at_ms', int(now_ms))
if f[1] == 'running' then
  EVENT.end_attempt(q, job_key, job_id, 'cancelled', 'cancelled', now_ms, '')
else
  EVENT.note(q, job_key, job_id, 'cancelled', now_ms, '')
end
redis.call('PEXPIRE', job_key, kept_ms(ttl_ms, keep_ms, workflow, notify))
redis.call('PUBLISH', done_channel, job_id)
note_end(outbox_key, job_id, int(now_ms), workflow, notify)
free_unique({unique = unique_key, unique_kept = unique_kept_key}, job_id, f[5], f[6], int(now_ms))
if freed then
  with_handover(q, workers_key, idle_key, held_prefix, inbox_prefix, queue, nil, wake_key,
    wake_cap)
  wake_ready(q, 1)
end
return 1
