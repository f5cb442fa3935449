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
how many it took. A job past its start_by_ms (never started) ends expired instead, taking
no slot (the flow names of `q` are the limits include's).

take_laned(c, wanted): take up to `wanted` jobs from the queue's rotations (the lanes
include): the best group first (the plain ready set '' gives one job per visit, all it is
asked while it is the only group), inside a ruled group its best key, up to the key's
weight jobs per visit, within the task's and the key's free concurrency; a group or key at
its concurrency is parked, one over a rate throttled until due (with drop, the popped job
ends expired as dropped). A job taken from a limited lane raises its slots (record
`limited` 1). Each visit sends the visited key and group to the back of their bands, or
parks them when the visit brought them to their concurrency.
Returns how many it took. Callers use it when q.groups exists, else take_jobs(q.ready).
take_ready(c, wanted): take up to `wanted` ready jobs under the queue's rules: what a claim
takes after the suspects, and what a hand-over to an idle holder takes (the wake include):
take_laned when the queue's flow is in use (q.groups names a rotation, a throttled set or
an expiry index that exists, or this script put a job in a lane: q.made_laned), else the
plain ready set, so both paths follow the same rules.
]]
--- @include "limits"
--- @include "events"
local CLAIM_FIELDS = fields_of({CLAIMED_FIELDS, CHECKED_FIELDS, {'start_by_ms'}},
  {id = true, queue = true, suspect = true})
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

-- A job past its deadline of first start ends expired here (true), taking no slot.
local function claim_expired(c, id, job)
  if job.start_by_ms and job.start_by_ms < c.now_ms and job.attempt == 0 then
    expire_job(c.q, id, c.now_ms, EXPIRED_ERROR, 'expired')
    return true
  end
  return false
end

-- Hand out one checked job (already in the held set): running, attempt + 1, a new fence.
local function claim_hand_out(c, id, job, suspect)
  if job.start_by_ms then
    redis.call('ZREM', c.q.expiring, id)
  end
  job.id, job.queue, job.suspect = id, c.queue, tonumber(suspect)
  job.attempt, job.fence = job.attempt + 1, job.fence + 1
  redis.call('HSET', c.q.job_prefix .. id, 'status', 'running', 'attempt', int(job.attempt),
    'fence', int(job.fence), 'worker_id', c.holder, 'started_at_ms', c.started_at,
    'isolated', suspect, 'attempt_open', EVENT.open_attempt(int(job.attempt), c.started_at))
  EVENT.emit(c.q, 'started', id, job.task, int(job.attempt), c.holder, nil, c.started_at)
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
      if f and claim_expired(c, popped[i], f) then
        f = nil
      end
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

-- Take up to `room` jobs from one lane of `task`; returns how many, and true when the lane
-- or its group was throttled on the way.
local function take_from_lane(c, task, lane, rule, room)
  local q, taken = c.q, 0
  local lane_key = q.lane_prefix .. lane
  local limited = limited_rule(rule)
  while taken < room do
    local popped = redis.call('ZPOPMIN', lane_key)
    if #popped == 0 then
      break
    end
    laned_add(q, -1)
    local id = popped[1]
    local job = claim_checked(c, id)
    if job and not claim_expired(c, id, job) then
      local ok, member, due = true, nil, nil
      if rule and (rule.r or rule.kr) then
        ok, member, due = admit(q, rule, task, lane, c.now_ms)
      end
      if ok then
        redis.call('SADD', c.held_key, id)
        if limited then
          raise_slots(q, q.job_prefix .. id, task, lane)
        end
        claim_hand_out(c, id, job, '0')
        taken = taken + 1
      elseif rule.drop then
        expire_job(q, id, c.now_ms, DROPPED_ERROR, 'dropped')
      else
        redis.call('ZADD', lane_key, popped[2], id) -- not taken: it stays the lane's head
        laned_add(q, 1)
        hold_back(q, member, due)
        return taken, string.sub(member, 1, 2) == 't:'
      end
    end
  end
  return taken, false
end

-- How many jobs one visit of `lane` may take, or nil after parking what is at its limit.
-- A lane that is the only runnable one of the queue (`sole`) shares with nobody: it gives
-- all that is asked, within its limits, in one visit.
local function visit_room(q, rule, task, lane, wanted, sole)
  if not rule then
    return sole and wanted or 1
  end
  local _, key = lane_parts(lane)
  local room = sole and wanted or math.min(wanted, rule.w[key] or 1)
  if rule.c then
    local free = rule.c - active_count(q, 't:' .. task)
    if free <= 0 then
      hold_back(q, 't:' .. task)
      return nil
    end
    room = math.min(room, free)
  end
  if rule.kc then
    local free = rule.kc - active_count(q, 'k:' .. lane)
    if free <= 0 then
      hold_back(q, 'k:' .. lane)
      rotate_group(q, task)
      return nil
    end
    room = math.min(room, free)
  end
  return room
end

-- One visit of a ruled group: its best key gives up to its room; returns how many.
-- After a visit: a key (group) now at its concurrency is parked at once (an end of one of
-- its running jobs brings it back), else it goes to the back of its band.
local function next_turn_of(q, member, limit, rotate, task, lane)
  if limit and active_count(q, member) >= limit then
    hold_back(q, member)
  else
    rotate(q, task, lane)
  end
end

local function visit_group(c, task, wanted, alone)
  local q = c.q
  local lanes = redis.call('ZRANGE', q.keys_prefix .. task, 0, 1)
  local lane = lanes[1]
  if not lane then
    redis.call('ZREM', q.groups, task)
    return 0
  end
  local rule = rule_of(q, task)
  local room = visit_room(q, rule, task, lane, wanted, alone and lanes[2] == nil)
  if not room then
    return 0
  end
  local taken, group_held = take_from_lane(c, task, lane, rule, room)
  if not group_held then
    if redis.call('ZSCORE', q.keys_prefix .. task, lane) then
      next_turn_of(q, 'k:' .. lane, rule and rule.kc, rotate_key, task, lane)
    end
    next_turn_of(q, 't:' .. task, rule and rule.c, rotate_group, task)
  end
  return taken
end

local function take_laned(c, wanted)
  local q = c.q
  forget_offers(q) -- the rotations change below: later offers must look again
  offer_plain(q)
  local taken, budget = 0, wanted + q.batch
  while taken < wanted and budget > 0 do
    local heads = redis.call('ZRANGE', q.groups, 0, 1)
    local head = heads[1]
    if not head then
      break
    end
    budget = budget - 1
    if head == '' then
      local alone = heads[2] == nil
      taken = taken + take_jobs(c, q.ready, alone and wanted - taken or 1, '0')
      rotate_plain(q)
    else
      taken = taken + visit_group(c, head, wanted - taken, heads[2] == nil)
    end
  end
  return taken
end

-- Whether the queue's flow (lanes, throttles, expiry) is in use: then claims go through it.
local function flow_in_use(q)
  return q.groups ~= nil and (q.made_laned == true
    or redis.call('EXISTS', q.groups, q.throttled, q.expiring) > 0)
end

local function take_ready(c, wanted)
  if flow_in_use(c.q) then
    return take_laned(c, wanted)
  end
  return take_jobs(c, c.q.ready, wanted, '0')
end
