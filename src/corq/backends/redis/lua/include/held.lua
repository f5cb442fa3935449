--[[
held: what makes a job the holder's to act on, and what its death adds to the record.

holds(job, holder, fence): true when the record `job` (read with status, worker_id and
fence) says running, under `holder`, claimed with `fence` (an outcome, a release or a
progress report acts only then).
death_log_with(log, holder): the death log (space-separated holders) with `holder` added.
requeue(key, id, lane, score): the job at `key` is queued again, held by no one, at `score`
in `lane` (the ready set or the suspects): a release, or a reclaim that gives it back.
]]
local function holds(job, holder, fence)
  return job ~= nil and job.status == 'running' and job.worker_id == holder
    and tonumber(job.fence) == tonumber(fence)
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
