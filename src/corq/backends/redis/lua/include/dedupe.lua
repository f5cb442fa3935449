--[[
dedupe: the enqueue of jobs that carry flow-control directives (a unique key, debounce,
cooldown), one job after the other so a job sees those written before it in the same call.
Included by the enqueue include, after its layout of a job's values (NEW_WIDTH, ENQ_AT).
`q` is the enqueue's table of names (its lanes and limits names included: a holder leaves
its lane with take_out, a replaced one is made ready again there, a cancelled running one
frees its slots) plus unique, unique_kept, cooldown, cooldown_until, suspects, waiting
(keys), cancel_ttl_ms and keep_ms; flow, outbox, held_prefix and done_prefix it has.

read_rules(values, first, n): the `n` directives sent from values[first] on, six values
each: the job's place in the call (1-based), on_duplicate (keep, replace, cancel),
window_ms, debounce_ms, max_wait_ms, cooldown_ms ('' for none). Returns place -> rule.
admit_new(q, values, first, count, rules, write): the `count` jobs from values[first] on,
in order, each through id (taken: exists) -> cooldown (open: dropped, counted in q.flow
'cooled') -> uniqueness -> write(q, values, at, seq) for a job written (the enqueue
include's write_new). Returns the replies (1 created, 0 exists, {outcome, job id}, or
{'created', job id, the running holder a cancel fenced off: its worker must be told}), how
many jobs were written ready, and the earliest time a job was delayed to (or nil).

Uniqueness: the key maps (q.unique) to a job that holds it when that job's record names
the key and it is live (scheduled, waiting, queued, running, failed awaiting a retry) or
ended less than its unique_for_ms ago; any other mapping (gone, not a hash, another key,
ended) counts as free. A holder that has ended (within its window) is always 'existing'.
A live holder: debounce moves one that is scheduled or queued to run at now + debounce_ms
(capped at its enqueued_at_ms + max_wait_ms) with the new payload ('debounced'; a holder
that has started is left alone and the new job is written, taking the key); else keep:
'existing'; replace: a scheduled or queued holder gets the new payload and priority,
keeping its place ('replaced'), any other stays ('existing'); cancel: the holder ends
cancelled (a running one is fenced off and leaves its holder's held set) and the new job
is written. A written job takes the key (its unique_for_ms the rule's window_ms). A holder
taken out of where it waits leaves the expiry index too when it ends (cancel).

Cooldown: the key is 'u:' .. unique key, or 't:' .. task. A window open at now (before
its until) drops the job, naming the job that opened it; any other call (bar an id that
exists) opens the window until now + cooldown_ms, naming the job it was answered with.
]]
--- @include "now"
--- @include "score"
--- @include "outbox"
--- @include "delayed"
--- @include "limits"
local RULE_WIDTH = 6
-- The steps of admit_new (in a table: scripts have at most 200 locals, includes share them).
local dd = {}
dd.UNSTARTED = {scheduled = true, queued = true}
dd.HOLDER_FIELDS = {'status', 'unique_key', 'unique_for_ms', 'finished_at_ms',
  'enqueued_at_ms', 'score', 'suspect', 'worker_id', 'workflow', 'notify', 'lane', 'limited'}
dd.HOLDER_LIVE = {scheduled = true, waiting = true, queued = true, running = true,
  failed = true}

function dd.optional_ms(value)
  if value == '' then
    return nil
  end
  return tonumber(value)
end

local function read_rules(values, first, n)
  local rules = {}
  for k = 0, n - 1 do
    local at = first + k * RULE_WIDTH
    rules[tonumber(values[at])] = {
      on_duplicate = values[at + 1], window_ms = tonumber(values[at + 2]),
      debounce_ms = dd.optional_ms(values[at + 3]), max_wait_ms = dd.optional_ms(values[at + 4]),
      cooldown_ms = dd.optional_ms(values[at + 5]),
    }
  end
  return rules
end

-- The job holding `unique_key` at `now` (its id and record), or nil: the key is free.
function dd.holder_of(q, unique_key, now)
  local id = redis.call('HGET', q.unique, unique_key)
  if not id then
    return nil
  end
  local f = redis.pcall('HMGET', q.job_prefix .. id, unpack(dd.HOLDER_FIELDS))
  if f.err or f[2] ~= unique_key then
    return nil -- not a hash, gone, or a mapping this record does not own
  end
  local job = {}
  for i, name in ipairs(dd.HOLDER_FIELDS) do
    job[name] = f[i]
  end
  if dd.HOLDER_LIVE[job.status] then
    return id, job
  end
  local closes = (tonumber(job.finished_at_ms) or 0) + (tonumber(job.unique_for_ms) or 0)
  if tonumber(job.unique_for_ms) and tonumber(job.unique_for_ms) > 0 and now < closes then
    return id, job
  end
  return nil
end

-- A queued holder leaves where it waits (its lane, or the suspects).
function dd.leave_ready(q, id, job)
  take_out(q, id, job.lane)
  redis.call('ZREM', q.suspects, id)
end

-- Debounce: the holder (scheduled or queued) runs at `run_at` with the new payload.
-- Returns the time it was delayed to, or nil when it stays due.
function dd.debounce_holder(q, id, job, payload, run_at, now)
  local key = q.job_prefix .. id
  redis.call('HSET', key, 'payload', payload)
  if run_at <= now and job.status == 'queued' then
    return nil -- capped by max_wait at a time already passed: it stays where it is
  end
  if job.status == 'queued' then
    dd.leave_ready(q, id, job)
    redis.call('HSET', key, 'status', 'scheduled')
  end
  redis.call('HSET', key, 'run_at_ms', int(run_at))
  redis.call('ZADD', q.delayed, int(run_at), id)
  return run_at
end

-- Replace: the holder (scheduled or queued) takes the new payload and priority; a queued
-- one keeps its FIFO place (the seq part of its score) in its new priority band.
function dd.replace_holder(q, id, job, payload, priority)
  local key = q.job_prefix .. id
  redis.call('HSET', key, 'payload', payload, 'priority', priority)
  local score = tonumber(job.score)
  if job.status == 'queued' and score then
    local new_score = ready_score(q.priority_max, tonumber(priority), score % SCORE_BAND)
    redis.call('HSET', key, 'score', new_score)
    if redis.call('ZADD', q.suspects, 'XX', 'CH', new_score, id) == 0 and
        take_out(q, id, job.lane) == 1 then
      make_ready(q, id, new_score, job.lane) -- its lane's rotation sees the new priority
    end
  end
end

-- Cancel: the holder ends cancelled at `now`, as cancel_job ends it; a running one is
-- fenced off (its outcome is refused) and leaves its holder's held set.
function dd.cancel_holder(q, id, job, now)
  local key = q.job_prefix .. id
  if job.status == 'running' then
    redis.call('HINCRBY', key, 'fence', 1)
    if job.worker_id then
      redis.call('SREM', q.held_prefix .. job.worker_id, id)
    end
    free_slots(q, key, job.lane, job.limited)
  else
    dd.leave_ready(q, id, job)
    redis.call('ZREM', q.delayed, id)
    redis.call('SREM', q.waiting, id)
  end
  if q.expiring then
    redis.call('ZREM', q.expiring, id)
  end
  redis.call('HSET', key, 'status', 'cancelled', 'finished_at_ms', int(now))
  redis.call('PEXPIRE', key, kept_ms(q.cancel_ttl_ms, q.keep_ms, job.workflow, job.notify))
  redis.call('PUBLISH', q.done_prefix .. id, id)
  note_end(q.outbox, id, int(now), job.workflow, job.notify)
end

function dd.cooldown_key(values, at)
  local unique_key = values[at + ENQ_AT.unique_key]
  if unique_key ~= '' then
    return 'u:' .. unique_key
  end
  return 't:' .. values[at + ENQ_AT.task]
end

-- The job that opened the cooldown window open at `now` for `ckey`, or nil.
function dd.cooled_by(q, ckey, now)
  local value = redis.call('HGET', q.cooldown, ckey)
  if not value then
    return nil
  end
  local until_ms, id = string.match(value, '^(%d+):(.*)$')
  if until_ms and now < tonumber(until_ms) then
    return id
  end
  return nil
end

function dd.open_cooldown(q, ckey, until_ms, id)
  redis.call('HSET', q.cooldown, ckey, int(until_ms) .. ':' .. id)
  redis.call('ZADD', q.cooldown_until, int(until_ms), ckey)
end

-- What uniqueness does with the job at `at` whose key `unique_key` is held by `holder`:
-- an outcome naming the holder, or 'write' (the new job is written, taking the key), and
-- the time a debounced holder was delayed to.
function dd.duplicate(q, values, at, rule, holder, job, now)
  if not dd.HOLDER_LIVE[job.status] then
    return 'existing'
  end
  local payload = values[at + ENQ_AT.payload]
  if rule.debounce_ms then
    if not dd.UNSTARTED[job.status] then
      return 'write'
    end
    local run_at = now + rule.debounce_ms
    if rule.max_wait_ms then
      run_at = math.min(run_at, (tonumber(job.enqueued_at_ms) or now) + rule.max_wait_ms)
    end
    return 'debounced', dd.debounce_holder(q, holder, job, payload, run_at, now)
  elseif rule.on_duplicate == 'replace' and dd.UNSTARTED[job.status] then
    dd.replace_holder(q, holder, job, payload, values[at + ENQ_AT.priority])
    return 'replaced'
  elseif rule.on_duplicate == 'cancel' then
    local was_running = job.status == 'running'
    dd.cancel_holder(q, holder, job, now)
    return 'write', nil, was_running and holder or nil
  end
  return 'existing'
end

local function admit_new(q, values, first, count, rules, write)
  local seq = redis.call('INCRBY', q.seq, count) - count -- numbers to spare are harmless
  local out, woken, earliest = {}, 0, nil
  for i = 1, count do
    local at = first + (i - 1) * NEW_WIDTH
    local id = values[at + ENQ_AT.id]
    local rule = rules[i]
    local now = tonumber(values[at + ENQ_AT.enqueued_at_ms])
    local unique_key = values[at + ENQ_AT.unique_key]
    local ckey = rule and rule.cooldown_ms and dd.cooldown_key(values, at)
    local outcome, named, delayed_to, stopped = 'write', id, nil, nil
    if redis.call('EXISTS', q.job_prefix .. id) == 1 then
      outcome = 'exists'
    elseif ckey and dd.cooled_by(q, ckey, now) then
      outcome, named = 'dropped', dd.cooled_by(q, ckey, now)
      redis.call('HINCRBY', q.flow, 'cooled', 1)
    elseif unique_key ~= '' then
      local holder, job = dd.holder_of(q, unique_key, now)
      if holder then
        outcome, delayed_to, stopped = dd.duplicate(q, values, at, rule or {}, holder, job,
          now)
        if outcome ~= 'write' then
          named = holder
        end
      end
    end
    if outcome == 'write' then
      seq = seq + 1
      delayed_to = write(q, values, at, seq)
      if not delayed_to then
        woken = woken + 1
      end
      if unique_key ~= '' then
        redis.call('HSET', q.unique, unique_key, id)
        if rule and rule.window_ms > 0 then
          redis.call('HSET', q.job_prefix .. id, 'unique_for_ms', int(rule.window_ms))
        end
      end
      outcome = 'created'
    end
    earliest = earlier(earliest, delayed_to)
    if ckey and outcome ~= 'exists' and outcome ~= 'dropped' then
      dd.open_cooldown(q, ckey, now + rule.cooldown_ms, named)
    end
    if outcome == 'created' and stopped then
      out[i] = {outcome, id, stopped}
    elseif outcome == 'created' then
      out[i] = 1
    elseif outcome == 'exists' then
      out[i] = 0
    else
      out[i] = {outcome, named}
    end
  end
  return out, woken, earliest
end
