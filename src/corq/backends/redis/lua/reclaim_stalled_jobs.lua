--[[
reclaim_stalled_jobs: take back the jobs of holders of one queue whose lease has passed.

Works in bounded steps; the caller repeats until the result says done. Each call first
takes at most `batch` stalled holders out of workers (deadline < now; with ended_only only
those known to be gone: deadline <= 0, a lease ended on purpose, or a departed holder whose
linger passed), so each one's next heartbeat or claim says lost at once, and moves each
one's held set under reclaiming (remembering whether it had departed); such a holder also
leaves the idle list, and the jobs handed to it and still in its inbox go back unstarted
(they never ran: no death, the attempt not counted, reported released; the inbox
include). Then
it takes back at most `batch` of the jobs waiting there. Per job still running under that
holder (and not held again by a new registration of the same id):
- the holder had departed: queued again like a release (old score, no death, attempt and
  suspect flag kept), reported released;
- else a death: deaths + 1, the holder joins death_log; then dead once deaths reach
  backstop_deaths (poison error, waiters woken, reported dead), else a suspect from
  max_deaths - 1 deaths on, else queued again at its old score (the head of the queue).
A damaged record goes to the dead letters (reported dead). Each job queued again wakes a
worker (the wake include: handed to an idle holder, else a wake token, capped).

KEYS[1] workers         ZSET  holder id -> lease deadline
KEYS[2] ready           ZSET  ready job ids by score
KEYS[3] dead            ZSET  dead job ids by finished_at_ms
KEYS[4] wake            LIST  wake tokens
KEYS[5] suspects        ZSET  jobs from max_deaths - 1 deaths on wait here
KEYS[6] departed        SET   holders that deregistered while holding jobs
KEYS[7] reclaiming      HASH  holder -> 1 departed / 0: holders whose jobs are being taken
KEYS[8] outbox          ZSET  ended workflow jobs: one sent to the dead letters joins it
KEYS[9]  rules           HASH  task -> its encoded rules
KEYS[10] groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[11] parked          SET   groups and keys at their concurrency
KEYS[12] throttled       ZSET  groups and keys over a rate -> when due
KEYS[13] active          HASH  running counts per task and lane
KEYS[14] tat             HASH  GCRA theoretical arrival times
KEYS[15] flow            HASH  counters (expired, dropped, laned, turn)
KEYS[16] expiring        ZSET  job id -> start_by_ms
KEYS[17] idle            ZSET  idle holders waiting to be handed a job (the wake include)
KEYS[18] unique          HASH  unique key -> job holding it (an end frees it)
KEYS[19] unique_kept     ZSET  unique keys kept after their job's end
KEYS[20]       events          STREAM the queue's lifecycle events (the events include)
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] held_prefix     a holder's held set is held_prefix .. holder
ARGV[3] reclaim_prefix  the ids still to take back from a holder: reclaim_prefix .. holder
ARGV[4] done_prefix     a job's done channel is done_prefix .. id
ARGV[5] now_ms          the caller's clock, or '' for the broker's
ARGV[6] max_deaths      deaths from which (minus one) a job is a suspect
ARGV[7] backstop        deaths that send a job to the dead letters
ARGV[8] batch           most holders to take and jobs to take back in this call
ARGV[9] wake_cap        longest the wake list may grow
ARGV[10] ended_only     '1': take only ended leases and departed holders past their linger
ARGV[11] dead_max       most dead letters kept (0: no limit)
ARGV[12] dead_ttl_ms    longest a dead letter is kept (0: no limit)
ARGV[13] lane_prefix     a lane's jobs are lane_prefix .. lane
ARGV[14] keys_prefix     a task's rotation of keys is keys_prefix .. task
ARGV[15] inbox_prefix    a holder's inbox is inbox_prefix .. holder
ARGV[16] queue           the queue's name (handed out with each job)
Every job taken back from its holder frees its slots (the limits include's free_slots),
whatever becomes of it, and one queued again goes back to its own lane.

Returns: {done (1 when no stalled holder and nothing to take back is left, else 0), then
one array per job taken back: holder, job id, dead (1/0), released (1/0)}.
]]
--- @include "now"
--- @include "keys"
--- @include "record"
--- @include "dead"
--- @include "wake"
--- @include "held"
--- @include "inbox"
--- @include "limits"
--- @include "events"
local workers_key = KEYS[1]
local ready_key = KEYS[2]
local dead_key = KEYS[3]
local wake_key = KEYS[4]
local suspects_key = KEYS[5]
local departed_key = KEYS[6]
local reclaiming_key = KEYS[7]
local outbox_key = KEYS[8]
local job_prefix = ARGV[1]
local held_prefix = ARGV[2]
local reclaim_prefix = ARGV[3]
local done_prefix = ARGV[4]
local now_ms = resolve_now(ARGV[5])
local max_deaths = tonumber(ARGV[6])
local backstop = tonumber(ARGV[7])
local batch = tonumber(ARGV[8])
local wake_cap = tonumber(ARGV[9])
local ended_only = ARGV[10]
local dead_max = tonumber(ARGV[11])
local dead_ttl_ms = tonumber(ARGV[12])
local rules_key = KEYS[9]
local groups_key = KEYS[10]
local parked_key = KEYS[11]
local throttled_key = KEYS[12]
local active_key = KEYS[13]
local tat_key = KEYS[14]
local flow_key = KEYS[15]
local expiring_key = KEYS[16]
local lane_prefix = ARGV[13]
local keys_prefix = ARGV[14]
local idle_key = KEYS[17]
local unique_key = KEYS[18]
local unique_kept_key = KEYS[19]
local events_key = KEYS[20]
local inbox_prefix = ARGV[15]
local queue = ARGV[16]

local q = {dead = dead_key, outbox = outbox_key, job_prefix = job_prefix, done_prefix = done_prefix, batch = batch,
  dead_max = dead_max, dead_ttl_ms = dead_ttl_ms, ready = ready_key}
q.events = events_key
with_flow(q, rules_key, groups_key, parked_key, throttled_key, active_key, tat_key,
  flow_key, expiring_key, lane_prefix, keys_prefix)
q.unique, q.unique_kept = unique_key, unique_kept_key
q.suspects = suspects_key
with_handover(q, workers_key, idle_key, held_prefix, inbox_prefix, queue, now_ms, wake_key,
  wake_cap)
local RECLAIM_FIELDS = {'status', 'worker_id', 'deaths', 'death_log', 'score', 'suspect',
  'lane', 'limited'}
local AS_TEXT = {} -- deaths and score are checked once the record is known to be the holder's

expect_types({workers_key, 'zset', ready_key, 'zset', dead_key, 'zset', wake_key, 'list',
  suspects_key, 'zset', departed_key, 'set', reclaiming_key, 'hash', outbox_key, 'zset',
  idle_key, 'zset'})

local out = {0}
local requeued, buried = 0, 0

-- At most `limit` holders whose jobs must be taken back now.
local function stalled_holders(limit)
  if ended_only ~= '1' then
    return redis.call('ZRANGEBYSCORE', workers_key, '-inf', '(' .. int(now_ms), 'LIMIT', 0, limit)
  end
  local holders = redis.call('ZRANGEBYSCORE', workers_key, '-inf', 0, 'LIMIT', 0, limit)
  for _, holder in ipairs(redis.call('SMEMBERS', departed_key)) do
    if #holders >= limit then
      break
    end
    local deadline = tonumber(redis.call('ZSCORE', workers_key, holder))
    if deadline and deadline > 0 and deadline < now_ms then
      holders[#holders + 1] = holder
    end
  end
  return holders
end

-- Take a stalled holder out of workers; its held ids wait under reclaiming.
local function unregister(holder)
  local departed = redis.call('SREM', departed_key, holder)
  redis.call('ZREM', workers_key, holder)
  local held = held_prefix .. holder
  local held_type = redis.call('TYPE', held).ok
  if held_type ~= 'set' then
    if held_type == 'none' then
      give_back_inbox(q, holder, held) -- only bare wakes can wait there: nothing is held
    else
      redis.call('ZREM', idle_key, holder)
    end
    return -- holds nothing (a key of another type is not ours to drain)
  end
  for _, id in ipairs(give_back_inbox(q, holder, held)) do
    requeued = requeued + 1
    out[#out + 1] = {holder, id, 0, 1}
  end
  if redis.call('EXISTS', held) == 0 then
    return -- the inbox held all it held
  end
  local drain = reclaim_prefix .. holder
  local drain_type = redis.call('TYPE', drain).ok
  if drain_type == 'set' then -- the same id stalled again while still being drained
    redis.call('SUNIONSTORE', drain, drain, held)
    redis.call('DEL', held)
  else
    if drain_type ~= 'none' then
      redis.call('DEL', drain)
    end
    redis.call('RENAME', held, drain)
  end
  redis.call('HSET', reclaiming_key, holder, departed)
end

local function report(holder, id, dead, released)
  out[#out + 1] = {holder, id, dead, released}
end

-- Queued again: among the suspects (`suspect`), else in the job's own lane.
local function give_back(key, id, job_lane, score, suspect)
  if suspect then
    requeue(key, id, suspects_key, score)
  else
    requeue_ready(q, key, id, job_lane, score)
  end
  requeued = requeued + 1
end

-- A death while `holder` ran it: counted, then dead, a suspect, or queued again.
local function count_death(key, id, holder, deaths, log, score, job_lane)
  if deaths < backstop then
    EVENT.end_attempt(q, key, id, 'released', 'lost', now_ms, 'its worker was lost: ' .. holder)
  end
  if deaths >= backstop then
    local message = string.format(
      'poison job: its worker died %d times while running it (workers: %s)', deaths, log)
    EVENT.end_attempt(q, key, id, nil, 'lost', now_ms, message)
    redis.call('HDEL', key, 'traceback')
    make_dead(q, id, int(now_ms), 'deaths', int(deaths), 'death_log', log, 'error', message)
    buried = buried + 1
    report(holder, id, 1, 0)
  elseif deaths >= max_deaths - 1 then
    redis.call('HSET', key, 'deaths', int(deaths), 'death_log', log, 'suspect', '1')
    give_back(key, id, job_lane, score, true)
    report(holder, id, 0, 0)
  else
    redis.call('HSET', key, 'deaths', int(deaths), 'death_log', log, 'suspect', '0')
    give_back(key, id, job_lane, score, false)
    report(holder, id, 0, 0)
  end
end

local function take_back(holder, id, departed)
  local key = job_prefix .. id
  local job, problem, wrong_type = read_record(key, RECLAIM_FIELDS, AS_TEXT)
  local deaths, score
  if job then
    if job.status ~= 'running' or job.worker_id ~= holder
        or redis.call('SISMEMBER', held_prefix .. holder, id) == 1 then
      return -- finished meanwhile, or held by a new registration of this holder id
    end
    deaths, problem = check_number('deaths', job.deaths, COUNT)
    if deaths then
      score, problem = check_number('score', job.score, SCORE)
    end
    wrong_type = false
  end
  if not score then
    if problem then
      bury_damaged(q, id, now_ms, problem, wrong_type)
      buried = buried + 1
      report(holder, id, 1, 0)
    end
    return
  end
  free_slots(q, key, job.lane, job.limited)
  if departed then
    EVENT.end_attempt(q, key, id, 'released', 'released', now_ms, nil)
    give_back(key, id, job.lane, score, job.suspect == '1')
    report(holder, id, 0, 1)
    return
  end
  count_death(key, id, holder, deaths + 1, death_log_with(job.death_log, holder), score,
    job.lane)
end

-- Step 1: every stalled holder (up to batch) is unregistered before any job moves.
for _, holder in ipairs(stalled_holders(batch)) do
  unregister(holder)
end

-- Step 2: take back at most batch jobs of unregistered holders.
local budget = batch
local entries = redis.call('HGETALL', reclaiming_key)
for i = 1, #entries, 2 do
  if budget <= 0 then
    break
  end
  local holder, departed = entries[i], entries[i + 1] == '1'
  local drain = reclaim_prefix .. holder
  local ids = redis.call('SPOP', drain, budget)
  budget = budget - #ids
  for _, id in ipairs(ids) do
    take_back(holder, id, departed)
  end
  if redis.call('SCARD', drain) == 0 then
    redis.call('HDEL', reclaiming_key, holder)
  end
end

if buried > 0 then
  trim_dead(q, now_ms)
end
wake_ready(q, requeued)
if #stalled_holders(1) == 0 and redis.call('HLEN', reclaiming_key) == 0 then
  out[1] = 1
end
return out
