--[[
promote: move due delayed jobs to where they wait to run. `q` is the queue's table as for
dead.lua, plus delayed, ready, suspects, seq, priority_min, priority_max, and the lanes
include's names (a job goes back to its record's lane).

promote_due(q, now_ms, limit): at most `limit` delayed jobs due by now_ms become queued
with a fresh score (priority, then order of promotion), among the suspects when flagged so.
A damaged record (no valid priority, or not a hash) goes to the dead letters instead, a
vanished one is dropped; the rest go on. Returns the number promoted, the number buried,
and whether more may be due (`limit` were taken).
]]
--- @include "keys"
--- @include "record"
--- @include "score"
--- @include "dead"
--- @include "lanes"
--- @include "events"
local PROMOTE_FIELDS = {'priority', 'suspect', 'lane', 'status', 'task', 'attempt'}
local PROMOTE_KINDS = {priority = INT_REQUIRED}

local function promotable(q, key)
  local job, problem, wrong_type = read_record(key, PROMOTE_FIELDS, PROMOTE_KINDS)
  if job and (job.priority < q.priority_min or job.priority > q.priority_max) then
    return nil, 'priority is out of range: ' .. quote(int(job.priority)), false
  end
  return job, problem, wrong_type
end

local function promote_due(q, now_ms, limit)
  local due = redis.call('ZRANGEBYSCORE', q.delayed, '-inf', int(now_ms), 'LIMIT', 0, limit)
  if #due == 0 then
    return 0, 0, false
  end
  local seq = redis.call('INCRBY', q.seq, #due) - #due
  local promoted, buried = 0, 0
  for _, id in ipairs(due) do
    local key = q.job_prefix .. id
    local job, problem, wrong_type = promotable(q, key)
    if job then
      seq = seq + 1
      local score = ready_score(q.priority_max, job.priority, seq)
      redis.call('HSET', key, 'status', 'queued', 'score', score)
      if job.status == 'failed' then
        EVENT.emit(q, 'retried', id, job.task, job.attempt, nil, nil, now_ms)
      end
      if job.suspect == '1' then
        redis.call('ZADD', q.suspects, score, id)
      else
        make_ready(q, id, score, job.lane)
      end
      promoted = promoted + 1
    elseif problem then
      bury_damaged(q, id, now_ms, problem, wrong_type)
      buried = buried + 1
    end
  end
  call_chunked('ZREM', q.delayed, due)
  return promoted, buried, #due == limit
end
