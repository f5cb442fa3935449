--[[
held: what makes a job the holder's to act on, and what its death adds to the record.

holds(job, holder, fence): true when the record `job` (read with status, worker_id and
fence) says running, under `holder`, claimed with `fence` (an outcome, a release or a
progress report acts only then).
held_at(key, holder, fence): the same check read straight from the record at `key` (no
table: the completion of every job runs it); returns held, whether the key is not a hash at
all, the record's `workflow` and `notify` (where its end must be told, see outbox), and
its `lane` and `limited` (the slots its end frees, see the limits include).
death_log_with(log, holder): the death log (space-separated holders) with `holder` added.
requeue(key, id, lane, score): the job at `key` is queued again, held by no one, at `score`
in `lane` (a ZSET: the suspects): a release, or a reclaim that gives it back.
requeue_ready(q, key, id, job_lane, score): the same into the job's own lane (the record's
`lane`: '' the ready set), through the lanes include's make_ready.
]]
--- @include "lanes"
local function holds(job, holder, fence)
  return job ~= nil and job.status == 'running' and job.worker_id == holder
    and tonumber(job.fence) == tonumber(fence)
end

local function held_at(key, holder, fence)
  local f = redis.pcall('HMGET', key, 'status', 'worker_id', 'fence', 'workflow', 'notify',
    'lane', 'limited')
  if f.err then
    return false, true
  end
  local status, worker_id, job_fence = f[1], f[2], f[3]
  return status == 'running' and worker_id == holder and tonumber(job_fence) == tonumber(fence),
    false, f[4], f[5], f[6], f[7]
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
