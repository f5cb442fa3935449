--[[
held: what makes a job the holder's to act on, and what its death adds to the record.

holds(job, holder, fence): true when the record `job` (read with status, worker_id and
fence) says running, under `holder`, claimed with `fence` (an outcome, a release or a
progress report acts only then).
held_at(key, holder, fence): the same check read straight from the record at `key` (no
table: the completion of every job runs it); returns held, whether the key is not a hash at
all, the record's `workflow` and `notify` (where its end must be told, see outbox), its
`lane` and `limited` (the slots its end frees, see the limits include), and its
`unique_key` and `unique_for_ms` (what its end frees, see the unique include).
death_log_with(log, holder): the death log (space-separated holders) with `holder` added.
requeue(key, id, lane, score): the job at `key` is queued again, held by no one, at `score`
in `lane` (a ZSET: the suspects): a release, or a reclaim that gives it back.
requeue_ready(q, key, id, job_lane, score): the same into the job's own lane (the record's
`lane`: '' the ready set), through the lanes include's make_ready.
release_held(q, held_key, holder, id, fence, unstarted, died, suspect): give one held job
back (release_jobs, and the jobs of an inbox nobody took): only while its record says
running under `holder` with `fence`, with a readable score, attempt and deaths. Its slots
are freed (the limits include), and it is queued again at its old score (the head of its
lane), among the suspects when `suspect` is '1' or it was one; `unstarted` '1' does not
count the attempt, `died` '1' counts a death. `q` holds job_prefix, ready, suspects and
the flow names (with_flow). Returns 1 released, 0 refused (an id whose key is not a hash
leaves the held set).
]]
--- @include "now"
--- @include "record"
--- @include "lanes"
--- @include "limits"
--- @include "events"
local function holds(job, holder, fence)
  return job ~= nil and job.status == 'running' and job.worker_id == holder
    and tonumber(job.fence) == tonumber(fence)
end

local function held_at(key, holder, fence)
  local f = redis.pcall('HMGET', key, 'status', 'worker_id', 'fence', 'workflow', 'notify',
    'lane', 'limited', 'unique_key', 'unique_for_ms')
  if f.err then
    return false, true
  end
  local status, worker_id, job_fence = f[1], f[2], f[3]
  return status == 'running' and worker_id == holder and tonumber(job_fence) == tonumber(fence),
    false, f[4], f[5], f[6], f[7], f[8], f[9]
end

local function death_log_with(log, holder)
  if log and log ~= '' then
    return log .. ' ' .. holder
  end
  return holder
end

local function requeue(key, id, lane, score)
  redis.call('HSET', key, 'status', 'queued')
  redis.call('HDEL', key, 'worker_id')
  redis.call('ZADD', lane, score, id)
end

local function requeue_ready(q, key, id, job_lane, score)
  redis.call('HSET', key, 'status', 'queued')
  redis.call('HDEL', key, 'worker_id')
  make_ready(q, id, score, job_lane)
end

local RELEASE_FIELDS = {'status', 'worker_id', 'fence', 'score', 'suspect', 'attempt',
  'deaths', 'death_log', 'lane', 'limited'}
local RELEASE_KINDS = {score = SCORE, attempt = COUNT, deaths = COUNT}

local function release_held(q, held_key, holder, id, fence, unstarted, died, suspect)
  local key = q.job_prefix .. id
  local job, _, wrong_type = read_record(key, RELEASE_FIELDS, RELEASE_KINDS)
  if wrong_type then
    redis.call('SREM', held_key, id)
  end
  if not holds(job, holder, fence) then
    return 0
  end
  if unstarted == '1' then
    redis.call('HSET', key, 'attempt', int(math.max(0, job.attempt - 1)))
  end
  if died == '1' then
    redis.call('HSET', key, 'deaths', int(job.deaths + 1),
      'death_log', death_log_with(job.death_log, holder))
  end
  if suspect == '1' then
    redis.call('HSET', key, 'suspect', '1')
  end
  free_slots(q, key, job.lane, job.limited)
  EVENT.end_attempt(q, key, id, 'released', died == '1' and 'lost' or 'released',
    q.now_ms or resolve_now(''), nil)
  if suspect == '1' or job.suspect == '1' then
    requeue(key, id, q.suspects, job.score)
  else
    requeue_ready(q, key, id, job.lane, job.score)
  end
  redis.call('SREM', held_key, id)
  return 1
end
