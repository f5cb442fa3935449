--[[
release_workflow_jobs: apply what workflows decided to jobs of one queue (idempotent).

Only a job whose record still says waiting and names the deciding workflow moves, so a
replay changes nothing: 'r' queues it (with a ready score: priority, then FIFO; it is
handed to an idle holder or brings a wake token, the wake include) or, when its run_at_ms is still ahead of now, schedules it (delayed; a wake when it
is the new head); 'u' .. error ends it upstream_failed and 'c' .. error cancelled, each an
end itself: finished now, its record kept keep_ms, its waiters woken, and noted in the
outbox only when another workflow watches it (its own took it in when deciding), and its
unique key freed (the unique include). A record
that cannot be released (no valid priority or run_at_ms) goes to the dead letters (an end
its workflow takes in from the outbox); one that is gone or not a hash is reported, for
the caller to take in as dead.

KEYS[1] ready           ZSET  ready job ids by score
KEYS[2] delayed         ZSET  delayed job ids by run_at_ms
KEYS[3] seq             STR   counter behind the FIFO part of ready scores
KEYS[4] wake            LIST  wake tokens
KEYS[5] outbox          ZSET  ended workflow jobs -> end time
KEYS[6] waiting         SET   ids of jobs waiting for their parents
KEYS[7] dead            ZSET  dead job ids by finished_at_ms
KEYS[8]  rules           HASH  task -> its encoded rules
KEYS[9]  groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[10] parked          SET   groups and keys at their concurrency
KEYS[11] throttled       ZSET  groups and keys over a rate -> when due
KEYS[12] active          HASH  running counts per task and lane
KEYS[13] tat             HASH  GCRA theoretical arrival times
KEYS[14] flow            HASH  counters (expired, dropped, laned, turn)
KEYS[15] expiring        ZSET  job id -> start_by_ms
KEYS[16] workers         ZSET  holder id -> lease deadline (hand-overs go to live holders)
KEYS[17] idle            ZSET  idle holders waiting to be handed a job (the wake include)
KEYS[18] unique          HASH  unique key -> job holding it (an end frees it)
KEYS[19] unique_kept     ZSET  unique keys kept after their job's end
KEYS[20]       events          STREAM the queue's lifecycle events (the events include)
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] done_prefix     a job's done channel is done_prefix .. id
ARGV[3] now_ms          the caller's clock, or '' for the broker's
ARGV[4] priority_min    lowest valid priority
ARGV[5] priority_max    highest valid priority (for the ready score)
ARGV[6] wake_cap        longest the wake list may grow
ARGV[7] keep_ms         how long an ended record is kept (WORKFLOW_KEEP_MS)
ARGV[8] batch           most dead letters to trim
ARGV[9] dead_max        most dead letters kept (0: no limit)
ARGV[10] dead_ttl_ms    longest a dead letter is kept (0: no limit)
ARGV[11] lane_prefix     a lane's jobs are lane_prefix .. lane
ARGV[12] keys_prefix     a task's rotation of keys is keys_prefix .. task
ARGV[13] held_prefix     a holder's held set is held_prefix .. holder
ARGV[14] inbox_prefix    a holder's inbox is inbox_prefix .. holder
ARGV[15] queue           the queue's name (handed out with each job)
ARGV[16..] three per job: id, workflow, decision ('r', 'u' .. error, 'c' .. error)

A released job is first made ready here: it gets its lane from the queue's rules then (the
limits include's lane_for; a queue without rules: one EXISTS) and joins the expiry index;
one already past its start_by_ms ends expired instead (an end its own workflow takes in
from the outbox, so its dependents end upstream_failed).
Returns: {how many ends were noted in the outbox (for the caller to settle this queue
too), then the ids that could not be read (gone or not a hash)}.
]]
--- @include "now"
--- @include "keys"
--- @include "record"
--- @include "dead"
--- @include "score"
--- @include "wake"
--- @include "delayed"
--- @include "limits"
--- @include "events"
local ready_key = KEYS[1]
local delayed_key = KEYS[2]
local seq_key = KEYS[3]
local wake_key = KEYS[4]
local outbox_key = KEYS[5]
local waiting_key = KEYS[6]
local dead_key = KEYS[7]
local job_prefix = ARGV[1]
local done_prefix = ARGV[2]
local now_ms = resolve_now(ARGV[3])
local priority_min = tonumber(ARGV[4])
local priority_max = tonumber(ARGV[5])
local wake_cap = tonumber(ARGV[6])
local keep_ms = tonumber(ARGV[7])
local batch = tonumber(ARGV[8])
local dead_max = tonumber(ARGV[9])
local dead_ttl_ms = tonumber(ARGV[10])
local rules_key = KEYS[8]
local groups_key = KEYS[9]
local parked_key = KEYS[10]
local throttled_key = KEYS[11]
local active_key = KEYS[12]
local tat_key = KEYS[13]
local flow_key = KEYS[14]
local expiring_key = KEYS[15]
local lane_prefix = ARGV[11]
local keys_prefix = ARGV[12]
local workers_key = KEYS[16]
local idle_key = KEYS[17]
local unique_key = KEYS[18]
local unique_kept_key = KEYS[19]
local events_key = KEYS[20]
local held_prefix = ARGV[13]
local inbox_prefix = ARGV[14]
local queue = ARGV[15]
local FIRST = 16

local q = {dead = dead_key, outbox = outbox_key, job_prefix = job_prefix,
  done_prefix = done_prefix, batch = batch, dead_max = dead_max, dead_ttl_ms = dead_ttl_ms,
  ready = ready_key, delayed = delayed_key}
q.events = events_key
with_flow(q, rules_key, groups_key, parked_key, throttled_key, active_key, tat_key,
  flow_key, expiring_key, lane_prefix, keys_prefix)
q.unique, q.unique_kept = unique_key, unique_kept_key
with_handover(q, workers_key, idle_key, held_prefix, inbox_prefix, queue, now_ms, wake_key,
  wake_cap)
local ruled = redis.call('EXISTS', rules_key) == 1
local RELEASE_FIELDS = {'status', 'workflow', 'notify', 'priority', 'run_at_ms', 'task', 'key',
  'start_by_ms', 'unique_key', 'unique_for_ms'}
local AS_TEXT = {}

expect_types({ready_key, 'zset', delayed_key, 'zset', seq_key, 'string', wake_key, 'list',
  outbox_key, 'zset', waiting_key, 'set', dead_key, 'zset', idle_key, 'zset'})

local old_head = delayed_head(delayed_key)
local earliest_delayed = nil
local queued, noted, buried = 0, 0, 0
local out = {0}
local now_text = int(now_ms)

-- The record's priority and run time, or nil and the problem.
local function timing(job)
  local priority, problem = check_number('priority', job.priority, INT_REQUIRED)
  if priority and (priority < priority_min or priority > priority_max) then
    return nil, nil, 'priority is out of range: ' .. quote(int(priority))
  end
  local run_at
  if priority then
    run_at, problem = check_number('run_at_ms', job.run_at_ms, INT_REQUIRED)
  end
  return priority, run_at, problem
end

-- The lane a released job waits in, written into its record ('' without rules).
local function released_lane(key, job)
  local lane = ruled and lane_for(q, job.task or '', job.key) or ''
  if lane ~= '' then
    redis.call('HSET', key, 'lane', lane)
  end
  return lane
end

local function release(key, id, job)
  local priority, run_at, problem = timing(job)
  local start_by = job.start_by_ms and tonumber(job.start_by_ms)
  if run_at and start_by and start_by < now_ms then
    expire_job(q, id, now_ms, EXPIRED_ERROR, 'expired')
    noted = noted + 1
    return
  end
  if run_at then
    index_expiry(q, id, job.start_by_ms)
  end
  if not run_at then
    bury_damaged(q, id, now_ms, problem, false) -- notes its end in the outbox
    buried, noted = buried + 1, noted + 1
  elseif run_at > now_ms then
    redis.call('HSET', key, 'status', 'scheduled')
    released_lane(key, job)
    redis.call('ZADD', delayed_key, int(run_at), id)
    earliest_delayed = earlier(earliest_delayed, run_at)
  else
    local seq = redis.call('INCR', seq_key)
    local score = ready_score(priority_max, priority, seq)
    redis.call('HSET', key, 'status', 'queued', 'score', score)
    make_ready(q, id, score, released_lane(key, job))
    queued = queued + 1
  end
end

local function finish(key, id, job, state, err)
  redis.call('HSET', key, 'status', state, 'error', err, 'finished_at_ms', now_text)
  EVENT.note(q, key, id, state, now_text, err)
  redis.call('PEXPIRE', key, keep_ms)
  redis.call('PUBLISH', done_prefix .. id, id)
  if note_end(outbox_key, id, now_text, false, job.notify) then
    noted = noted + 1
  end
  free_unique(q, id, job.unique_key, job.unique_for_ms, now_text)
end

for at = FIRST, #ARGV, 3 do
  local id, workflow, decision = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local key = job_prefix .. id
  local job, _, wrong_type = read_record(key, RELEASE_FIELDS, AS_TEXT)
  if not job then
    out[#out + 1] = id -- gone, or not a hash (its end cannot be noted here)
    if wrong_type then
      redis.call('SREM', waiting_key, id)
    end
  elseif job.status == 'waiting' and job.workflow == workflow then
    redis.call('SREM', waiting_key, id)
    local kind = string.sub(decision, 1, 1)
    if kind == 'r' then
      release(key, id, job)
    elseif kind == 'u' then
      finish(key, id, job, 'upstream_failed', string.sub(decision, 2))
    else
      finish(key, id, job, 'cancelled', string.sub(decision, 2))
    end
  end
end

if buried > 0 then
  trim_dead(q, now_ms)
end
wake_ready(q, queued)
if is_new_head(earliest_delayed, old_head) then
  wake_one(q)
end
out[1] = noted
return out
