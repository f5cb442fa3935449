--[[
fail_jobs: record failed attempts of one holder in one queue (fenced).

A job is failed only while its record says running, held by this holder, under the given
fence, with readable failures and deaths; otherwise nothing changes for it (an id whose key
is not a hash leaves the held set). The error and traceback are stored. When the job's own
process died, a death is counted (deaths + 1, the holder joins death_log); otherwise
failures grows by one when the attempt counted. With a retry time the job becomes failed
and waits in the delayed set until then; without one it becomes dead: it joins the dead
letters (scored by finished_at_ms, then trimmed to their bounds) and its id is published on
its done channel.

A snoozed attempt (snoozed '1', with a retry time) is undone instead of counted: the job
becomes scheduled at its retry time in the delayed set, its attempt number goes back by
one, failures and deaths stay, the error is the snooze's reason and the traceback goes; its
slots are freed as by any end of an attempt, and it is no end (no outbox, its unique key
stays held); back at attempt 0, a job with a start_by_ms joins expiring again (it may
expire while it waits).

A retry or snooze due before everything already delayed wakes one worker (the wake
include: a bare wake to an idle holder, else a wake token, capped), so it claims and learns
the new next_due_ms; so does a freed slot of a limited lane (a job waiting for it can
start).

KEYS[1] held            SET   ids this holder holds in the queue
KEYS[2] delayed         ZSET  delayed job ids by run_at_ms
KEYS[3] dead            ZSET  dead job ids by finished_at_ms
KEYS[4] wake            LIST  wake tokens
KEYS[5] outbox          ZSET  ended workflow jobs: a dead one of a workflow joins it
KEYS[6]  rules           HASH  task -> its encoded rules
KEYS[7]  groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[8]  parked          SET   groups and keys at their concurrency
KEYS[9]  throttled       ZSET  groups and keys over a rate -> when due
KEYS[10] active          HASH  running counts per task and lane
KEYS[11] tat             HASH  GCRA theoretical arrival times
KEYS[12] flow            HASH  counters (expired, dropped, laned, turn)
KEYS[13] expiring        ZSET  job id -> start_by_ms
KEYS[14] workers         ZSET  holder id -> lease deadline (hand-overs go to live holders)
KEYS[15] idle            ZSET  idle holders waiting to be handed a job (the wake include)
KEYS[16] unique          HASH  unique key -> job holding it (an end frees it)
KEYS[17] unique_kept     ZSET  unique keys kept after their job's end
KEYS[18]       events          STREAM the queue's lifecycle events (the events include)
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] done_prefix     a job's done channel is done_prefix .. id
ARGV[3] holder          the failing holder
ARGV[4] wake_cap        longest the wake list may grow
ARGV[5] batch           most dead letters to trim in this call
ARGV[6] dead_max        most dead letters kept (0: no limit)
ARGV[7] dead_ttl_ms     longest a dead letter is kept (0: no limit)
ARGV[8] lane_prefix     a lane's jobs are lane_prefix .. lane
ARGV[9] keys_prefix     a task's rotation of keys is keys_prefix .. task
ARGV[10] held_prefix     a holder's held set is held_prefix .. holder
ARGV[11] inbox_prefix    a holder's inbox is inbox_prefix .. holder
ARGV[12..] nine per job: id, fence, counted (1/0), died (1/0), snoozed (1/0), error,
          traceback ('' for none), retry_at_ms ('' for none: dead), finished_at_ms

A failed job of a limited lane frees its slots, to a retry or to the dead letters (the
limits include's free_slots); its retry goes back to its lane when promoted.

Returns: one integer per job, in order: 1 recorded, 0 refused.
]]
--- @include "keys"
--- @include "record"
--- @include "dead"
--- @include "wake"
--- @include "delayed"
--- @include "held"
--- @include "limits"
--- @include "events"
local held_key = KEYS[1]
local delayed_key = KEYS[2]
local dead_key = KEYS[3]
local wake_key = KEYS[4]
local outbox_key = KEYS[5]
local job_prefix = ARGV[1]
local done_prefix = ARGV[2]
local holder = ARGV[3]
local wake_cap = tonumber(ARGV[4])
local batch = tonumber(ARGV[5])
local dead_max = tonumber(ARGV[6])
local dead_ttl_ms = tonumber(ARGV[7])
local rules_key = KEYS[6]
local groups_key = KEYS[7]
local parked_key = KEYS[8]
local throttled_key = KEYS[9]
local active_key = KEYS[10]
local tat_key = KEYS[11]
local flow_key = KEYS[12]
local expiring_key = KEYS[13]
local lane_prefix = ARGV[8]
local keys_prefix = ARGV[9]
local workers_key = KEYS[14]
local idle_key = KEYS[15]
local unique_key = KEYS[16]
local unique_kept_key = KEYS[17]
local events_key = KEYS[18]
local held_prefix = ARGV[10]
local inbox_prefix = ARGV[11]
local FIRST, WIDTH = 12, 9

local q = {dead = dead_key, outbox = outbox_key, job_prefix = job_prefix, done_prefix = done_prefix, batch = batch,
  dead_max = dead_max, dead_ttl_ms = dead_ttl_ms}
q.events = events_key
with_flow(q, rules_key, groups_key, parked_key, throttled_key, active_key, tat_key,
  flow_key, expiring_key, lane_prefix, keys_prefix)
q.unique, q.unique_kept = unique_key, unique_kept_key
local FAIL_FIELDS = {'status', 'worker_id', 'fence', 'failures', 'deaths', 'death_log', 'lane',
  'limited'}
local FAIL_KINDS = {failures = COUNT, deaths = COUNT}

expect_types({held_key, 'set', delayed_key, 'zset', dead_key, 'zset', wake_key, 'list',
  outbox_key, 'zset'})

local old_head = delayed_head(delayed_key)
local earliest_retry = nil
local died_now = false
local latest_death = 0
local freed_slot = false

-- A snooze: the attempt did not happen (read here only: the common failure never pays).
local function undo_attempt(key, id)
  local f = redis.call('HMGET', key, 'attempt', 'start_by_ms')
  local attempt = math.max(0, (tonumber(f[1]) or 1) - 1)
  redis.call('HSET', key, 'attempt', int(attempt))
  if attempt == 0 then
    index_expiry(q, id, f[2])
  end
end

-- The outcome of one failure; 1 recorded, 0 refused.
local function fail(at)
  local id, fence, counted, died = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local error, traceback = ARGV[at + 5], ARGV[at + 6]
  local retry_at, finished_at = ARGV[at + 7], ARGV[at + 8]
  local snoozed = ARGV[at + 4] == '1' and retry_at ~= ''
  local key = job_prefix .. id
  local job, _, wrong_type = read_record(key, FAIL_FIELDS, FAIL_KINDS)
  if wrong_type then
    redis.call('SREM', held_key, id)
  end
  if not holds(job, holder, fence) then
    return 0
  end
  if snoozed then
    undo_attempt(key, id)
  elseif died == '1' then
    redis.call('HSET', key, 'deaths', int(job.deaths + 1),
      'death_log', death_log_with(job.death_log, holder))
  elseif counted == '1' then
    redis.call('HSET', key, 'failures', int(job.failures + 1))
  end
  redis.call('HSET', key, 'error', error)
  if traceback == '' then
    redis.call('HDEL', key, 'traceback')
  else
    redis.call('HSET', key, 'traceback', traceback)
  end
  redis.call('SREM', held_key, id)
  if job.limited == '1' then
    freed_slot = true
  end
  free_slots(q, key, job.lane, job.limited)
  if retry_at ~= '' then
    local ended = snoozed and 'snoozed' or 'failed'
    EVENT.end_attempt(q, key, id, ended, ended, finished_at, error)
    redis.call('HSET', key, 'status', snoozed and 'scheduled' or 'failed',
      'run_at_ms', retry_at)
    redis.call('ZADD', delayed_key, retry_at, id)
    earliest_retry = earlier(earliest_retry, tonumber(retry_at))
  else
    EVENT.end_attempt(q, key, id, nil, 'dead', finished_at, error)
    make_dead(q, id, finished_at)
    died_now = true
    latest_death = math.max(latest_death, tonumber(finished_at))
  end
  return 1
end

local out = {}
for at = FIRST, #ARGV, WIDTH do
  out[#out + 1] = fail(at)
end

if died_now then
  trim_dead(q, latest_death)
end
if freed_slot or is_new_head(earliest_retry, old_head) then
  with_handover(q, workers_key, idle_key, held_prefix, inbox_prefix, nil, nil, wake_key,
    wake_cap)
  wake_one(q)
end
return out
