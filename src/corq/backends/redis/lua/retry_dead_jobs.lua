--[[
retry_dead_jobs: queue dead jobs of one queue again with a fresh retry budget.

Works on the ids given, or, with a snapshot key, on the next `limit` ids of a snapshot of
the dead letters taken at the first call (so a job that dies again while the caller goes
through thousands is not retried twice). Each job still in the dead letters becomes queued
with failures and deaths back to zero, no death log, no suspect flag (its last error is
kept), a new score (priority, then this order) and one wake token, capped. What cannot be
read in a damaged record is reset (attempt 0, fence 0, priority 0, enqueued_at_ms now,
started_at_ms dropped); a key that is not a hash is not retried (it stays a dead letter,
not counted); an id without a record leaves the dead letters, not counted. Ids not in the
dead letters are skipped. A re-drive (one id) may replace the job's payload in the same
step. Each job queued again wakes a worker (the wake include: handed
to an idle holder, else a wake token, capped).

KEYS[1] dead            ZSET  dead job ids by finished_at_ms
KEYS[2] ready           ZSET  ready job ids by score
KEYS[3] seq             STR   counter behind the FIFO part of ready scores
KEYS[4] wake            LIST  wake tokens
KEYS[5]  rules           HASH  task -> its encoded rules
KEYS[6]  groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[7]  parked          SET   groups and keys at their concurrency
KEYS[8]  throttled       ZSET  groups and keys over a rate -> when due
KEYS[9]  active          HASH  running counts per task and lane
KEYS[10] tat             HASH  GCRA theoretical arrival times
KEYS[11] flow            HASH  counters (expired, dropped, laned, turn)
KEYS[12] expiring        ZSET  job id -> start_by_ms
KEYS[13] workers         ZSET  holder id -> lease deadline (hand-overs go to live holders)
KEYS[14] idle            ZSET  idle holders waiting to be handed a job (the wake include)
KEYS[15] outbox          ZSET  ended workflow jobs (a damaged record met by a hand-over)
KEYS[16] events          STREAM the queue's lifecycle events (the events include)
KEYS[17] snapshot        ZSET  (only without ids) this retry's copy of the dead letters
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] now_ms          the caller's clock, or '' for the broker's (the new run_at_ms)
ARGV[3] priority_min    lowest valid priority
ARGV[4] priority_max    highest valid priority (for the ready score)
ARGV[5] wake_cap        longest the wake list may grow
ARGV[6] limit           with a snapshot: how many of its ids to take in this call
ARGV[7] snapshot_ttl_ms > 0: take the snapshot now (first call), kept this long; else 0
ARGV[8] lane_prefix     a lane's jobs are lane_prefix .. lane
ARGV[9] keys_prefix     a task's rotation of keys is keys_prefix .. task
ARGV[10] done_prefix     a job's done channel is done_prefix .. id
ARGV[11] held_prefix     a holder's held set is held_prefix .. holder
ARGV[12] inbox_prefix    a holder's inbox is inbox_prefix .. holder
ARGV[13] queue           the queue's name (handed out with each job)
ARGV[14] batch           most dead letters to trim
ARGV[15] dead_max        most dead letters kept (0: no limit)
ARGV[16] dead_ttl_ms     longest a dead letter is kept (0: no limit)
ARGV[17] payload         '' to keep each job's payload, or '=' .. the new payload (one id)
ARGV[18..] job ids (none with a snapshot)
A retried job goes back to its own lane (the record's).

Returns: {moved, looked at}; with a snapshot the caller repeats while looked at == limit.
]]
--- @include "now"
--- @include "keys"
--- @include "record"
--- @include "score"
--- @include "wake"
--- @include "lanes"
local dead_key = KEYS[1]
local ready_key = KEYS[2]
local seq_key = KEYS[3]
local wake_key = KEYS[4]
local snapshot_key = KEYS[17]
local job_prefix = ARGV[1]
local now_ms = resolve_now(ARGV[2])
local priority_min = tonumber(ARGV[3])
local priority_max = tonumber(ARGV[4])
local wake_cap = tonumber(ARGV[5])
local limit = tonumber(ARGV[6])
local snapshot_ttl_ms = tonumber(ARGV[7])
local rules_key = KEYS[5]
local groups_key = KEYS[6]
local parked_key = KEYS[7]
local throttled_key = KEYS[8]
local active_key = KEYS[9]
local tat_key = KEYS[10]
local flow_key = KEYS[11]
local expiring_key = KEYS[12]
local lane_prefix = ARGV[8]
local keys_prefix = ARGV[9]
local workers_key = KEYS[13]
local idle_key = KEYS[14]
local outbox_key = KEYS[15]
local events_key = KEYS[16]
local done_prefix = ARGV[10]
local held_prefix = ARGV[11]
local inbox_prefix = ARGV[12]
local queue = ARGV[13]
local batch = tonumber(ARGV[14])
local dead_max = tonumber(ARGV[15])
local dead_ttl_ms = tonumber(ARGV[16])
local new_payload = ARGV[17]
local FIRST_ID = 18

local FIELDS = {'priority', 'attempt', 'fence', 'enqueued_at_ms', 'started_at_ms', 'lane'}
local AS_TEXT = {} -- each is checked on its own: what cannot be read is reset

expect_types({dead_key, 'zset', ready_key, 'zset', seq_key, 'string', wake_key, 'list',
  idle_key, 'zset'})
local q = {ready = ready_key, job_prefix = job_prefix, dead = dead_key, outbox = outbox_key,
  done_prefix = done_prefix, batch = batch, dead_max = dead_max, dead_ttl_ms = dead_ttl_ms}
q.events = events_key
with_flow(q, rules_key, groups_key, parked_key, throttled_key, active_key, tat_key,
  flow_key, expiring_key, lane_prefix, keys_prefix)
with_handover(q, workers_key, idle_key, held_prefix, inbox_prefix, queue, now_ms, wake_key,
  wake_cap)

local ids = {}
if snapshot_key then
  expect_types({snapshot_key, 'zset'})
  if snapshot_ttl_ms > 0 then
    redis.call('COPY', dead_key, snapshot_key)
    redis.call('PEXPIRE', snapshot_key, snapshot_ttl_ms)
  end
  local popped = redis.call('ZPOPMIN', snapshot_key, limit)
  for i = 1, #popped, 2 do
    ids[#ids + 1] = popped[i]
  end
else
  for i = FIRST_ID, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
end

-- A number of a dead record as retry_dead keeps it, or `default` when it cannot be read.
local function kept(name, value, kind, default)
  local n = check_number(name, value, kind)
  return n or default
end

-- Queue one dead job again; 1 moved, 0 not.
local function retry(id)
  if not redis.call('ZSCORE', dead_key, id) then
    return 0
  end
  local key = job_prefix .. id
  local job, _, wrong_type = read_record(key, FIELDS, AS_TEXT)
  if wrong_type then
    return 0 -- not a job record: it stays listed and purgeable
  end
  redis.call('ZREM', dead_key, id)
  if not job then
    return 0 -- the record is gone
  end
  local priority = kept('priority', job.priority, INT, 0)
  if priority < priority_min or priority > priority_max then
    priority = 0
  end
  local score = ready_score(priority_max, priority, redis.call('INCR', seq_key))
  redis.call('HSET', key, 'status', 'queued', 'score', score, 'failures', '0', 'deaths', '0',
    'run_at_ms', int(now_ms), 'priority', int(priority),
    'attempt', int(kept('attempt', job.attempt, COUNT, 0)),
    'fence', int(kept('fence', job.fence, COUNT, 0)),
    'enqueued_at_ms', int(kept('enqueued_at_ms', job.enqueued_at_ms, INT, now_ms)))
  redis.call('HDEL', key, 'death_log', 'finished_at_ms', 'worker_id', 'suspect', 'isolated',
    'progress', 'limited')
  if job.started_at_ms and not check_number('started_at_ms', job.started_at_ms, INT) then
    redis.call('HDEL', key, 'started_at_ms')
  end
  if new_payload ~= '' then
    redis.call('HSET', key, 'payload', string.sub(new_payload, 2))
  end
  EVENT.note(q, key, id, 'retried', now_ms)
  make_ready(q, id, score, job.lane)
  return 1
end

local moved = 0
for _, id in ipairs(ids) do
  moved = moved + retry(id)
end
wake_ready(q, moved)
return {moved, #ids}
