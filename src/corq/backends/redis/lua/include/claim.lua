--[[
claim: taking jobs for a holder (needs the record, dead and keys includes). Shared by
claim_jobs and every step that hands jobs straight to an idle holder.

claim_context(q, holder, held_key, queue, now_ms, out): the state one claim step shares:
`q` the queue table of the dead include (plus ready, suspects, batch), the holder, its held
set, the queue's name, the time, and `out`, the flat reply each job is appended to
(put_claimed). `c.buried` counts the damaged records buried on the way.

take_jobs(c, lane, wanted, suspect): take up to `wanted` jobs from the ZSET `lane`, best
score first, a popped chunk at a time: check every record, add the good ids to the held set,
then mark each running (attempt + 1, a new fence, the holder, started now, isolated =
`suspect` '1'/'0'), so a record never says running outside its holder's held set. A
damaged record (a number that is not one, a key that is not a hash, an id that is not
UTF-8) goes to the dead letters and takes no slot; a vanished one is dropped; a claim looks
at no more than `wanted` + batch ids, so it stays short whatever the lane holds. Returns
how many it took.
take_ready(c, wanted): take up to `wanted` ready jobs under the queue's rules: what a claim
takes after the suspects, and what a hand-over to an idle holder takes (the wake include).
Lanes and limits extend this one function, so both paths follow them.
]]
local CLAIM_FIELDS = fields_of({CLAIMED_FIELDS, CHECKED_FIELDS}, {id = true, queue = true,
  suspect = true})
local CLAIM_KINDS = record_kinds(CLAIM_FIELDS, {priority = INT_REQUIRED})

local function claim_context(q, holder, held_key, queue, now_ms, out)
  return {q = q, holder = holder, held_key = held_key, queue = queue, now_ms = now_ms,
    started_at = int(now_ms), out = out, buried = 0}
end

-- The record of a popped job, checked; nil (buried when damaged) if it cannot be handed out.
local function claim_checked(c, id)
  local job, problem, wrong_type = read_record(c.q.job_prefix .. id, CLAIM_FIELDS, CLAIM_KINDS)
  if job and not valid_utf8(id) then
    job, problem, wrong_type = nil, 'the job id is not valid UTF-8', false
  end
  if not job and problem then
    bury_damaged(c.q, id, c.now_ms, problem, wrong_type)
    c.buried = c.buried + 1
  end
  return job
end

-- Hand out one checked job (already in the held set): running, attempt + 1, a new fence.
local function claim_hand_out(c, id, job, suspect)
  job.id, job.queue, job.suspect = id, c.queue, tonumber(suspect)
  job.attempt, job.fence = job.attempt + 1, job.fence + 1
  redis.call('HSET', c.q.job_prefix .. id, 'status', 'running', 'attempt', int(job.attempt),
    'fence', int(job.fence), 'worker_id', c.holder, 'started_at_ms', c.started_at,
    'isolated', suspect)
  put_claimed(c.out, job)
end

local function take_jobs(c, lane, wanted, suspect)
  local taken, budget = 0, wanted + c.q.batch
  while taken < wanted and budget > 0 do
    local popped = redis.call('ZPOPMIN', lane, math.min(wanted - taken, budget))
    if #popped == 0 then
      break
    end
    budget = budget - #popped / 2
    local ids, records = {}, {}
    for i = 1, #popped, 2 do
      local f = claim_checked(c, popped[i])
      if f then
        local n = #ids + 1
        ids[n], records[n] = popped[i], f
      end
    end
    call_chunked('SADD', c.held_key, ids)
    for k = 1, #ids do
      claim_hand_out(c, ids[k], records[k], suspect)
    end
    taken = taken + #ids
  end
  return taken
end

local function take_ready(c, wanted)
  return take_jobs(c, c.q.ready, wanted, '0')
end
