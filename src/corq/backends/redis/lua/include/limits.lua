--[[
limits: the rules a queue stores, the running counts and rates they limit, and expiry (see
docs/design.md, "Flow control", "Counters and rates"). `q` is the lanes include's table
plus rules, active, tat, expiring (keys) and, for expiry, delayed, suspects, outbox,
done_prefix.

rule_of(q, task): the task's rules decoded from q.rules (cached in q for the call), or
false when it has none or its value is damaged (a damaged rule limits nothing: its lanes
drain, and the next set_rules writes it again; so does one that is not active). Fields: c (concurrency), kc (key
concurrency), keyed, r and kr (rates: {count, period_ms}), drop (over_limit drop),
w (key -> weight).
lane_for(q, task, key): the lane a new job of `task` waits in: '' without rules, else
`<task>\x1f<key>` ('' key for a task without a key function).
limited_rule(rule): true when its jobs hold concurrency slots.
active_count(q, name): the running count 't:' .. task or 'k:' .. lane.
admit(q, rule, task, lane, now_ms): GCRA for the task's and the key's rates: true (and the
new theoretical arrival times written) when both admit a start at now_ms; else false, the
member to throttle ('t:' .. task or 'k:' .. lane) and when it is due.
raise_slots(q, key, task, lane): a start takes a slot of the task and of its key (counts
+1, the record `key` says limited 1).
free_slots(q, key, lane, limited): THE end step of every attempt (complete, fail, release,
reclaim, cancel): when `limited` is '1' (the record's flag, read by the caller), lower both
counts once, clear the flag and unpark the group and the key (O(1)); else nothing.
index_expiry(q, id, start_by): a job with a deadline joins q.expiring.
expire_job(q, id, now_ms, error, counter): the job (not started) ends expired: finished now,
its error, kept EXPIRED_TTL_MS, waiters woken, its end noted in the outbox (a workflow's
dependents then end upstream_failed), its unique key freed (the unique include, when q has
unique), counted in flow[counter] ('expired' or 'dropped').
The caller has taken it out of wherever it waited.
expire_due(q, now_ms, limit): at most `limit` jobs of q.expiring past their deadline that
have not started (scheduled or queued) end expired, taken out of the delayed set, the
suspects or their lane; others just leave the index. Returns how many ended.
promote_flow(q, now_ms, limit): the promotion's flow step: expiry, then throttled lanes due.
throttled_head(q): when the next throttled lane is due, or nil.
]]
--- @include "lanes"
--- @include "outbox"
--- @include "unique"
--- @include "events"
local EXPIRED_TTL_MS = 7 * 24 * 3600 * 1000 -- as long as a workflow job's record is kept
local EXPIRED_ERROR = 'expired: not started by its deadline'
local DROPPED_ERROR = 'expired: dropped over its rate limit'

local function positive(v)
  return type(v) == 'number' and v >= 1 and v % 1 == 0
end

-- A decoded rule, checked: nil when any field is not what set_rules writes.
local function checked_rule(raw)
  if type(raw) ~= 'table' then
    return nil
  end
  local rule = {keyed = raw.k == 1, drop = raw.d == 1, w = {}}
  for _, name in ipairs({'c', 'kc'}) do
    if raw[name] ~= nil then
      if not positive(raw[name]) then
        return nil
      end
      rule[name] = raw[name]
    end
  end
  for _, name in ipairs({'r', 'kr'}) do
    local rate = raw[name]
    if rate ~= nil then
      if type(rate) ~= 'table' or not positive(rate[1]) or not positive(rate[2]) then
        return nil
      end
      rule[name] = {rate[1], rate[2]}
    end
  end
  if raw.w ~= nil then
    if type(raw.w) ~= 'table' then
      return nil
    end
    for key, weight in pairs(raw.w) do
      if type(key) ~= 'string' or not positive(weight) then
        return nil
      end
      rule.w[key] = weight
    end
  end
  if not (rule.c or rule.keyed or rule.r or rule.drop) then
    return nil -- set_rules stores active rules only
  end
  return rule
end

local function rule_of(q, task)
  q.rule_cache = q.rule_cache or {}
  local rule = q.rule_cache[task]
  if rule == nil then
    local value = redis.call('HGET', q.rules, task)
    rule = false
    if value then
      local ok, raw = pcall(cjson.decode, value)
      rule = ok and checked_rule(raw) or false
    end
    q.rule_cache[task] = rule
  end
  return rule
end

local function lane_for(q, task, key)
  local rule = rule_of(q, task)
  if not rule then
    return ''
  end
  return task .. LANE_SEP .. ((rule.keyed and key) or '')
end

local function limited_rule(rule)
  return rule and (rule.c ~= nil or rule.kc ~= nil)
end

local function active_count(q, name)
  return tonumber(redis.call('HGET', q.active, name)) or 0
end

-- One GCRA limit: admitted and the new tat, or refused and when a start is allowed.
local function gcra(q, name, rate, now_ms)
  local count, period = rate[1], rate[2]
  local interval = period / count
  local tat = tonumber(redis.call('HGET', q.tat, name)) or now_ms
  local allowed_at = tat - (period - interval)
  if allowed_at <= now_ms then
    return true, math.max(tat, now_ms) + interval
  end
  return false, math.ceil(allowed_at)
end

local function admit(q, rule, task, lane, now_ms)
  local task_tat, key_tat
  if rule.r then
    local ok, at = gcra(q, 't:' .. task, rule.r, now_ms)
    if not ok then
      return false, 't:' .. task, at
    end
    task_tat = at
  end
  if rule.kr then
    local ok, at = gcra(q, 'k:' .. lane, rule.kr, now_ms)
    if not ok then
      return false, 'k:' .. lane, at
    end
    key_tat = at
  end
  if task_tat then
    redis.call('HSET', q.tat, 't:' .. task, string.format('%.17g', task_tat))
  end
  if key_tat then
    redis.call('HSET', q.tat, 'k:' .. lane, string.format('%.17g', key_tat))
  end
  return true
end

local function raise_slots(q, key, task, lane)
  redis.call('HINCRBY', q.active, 't:' .. task, 1)
  redis.call('HINCRBY', q.active, 'k:' .. lane, 1)
  redis.call('HSET', key, 'limited', '1')
end

local function lower(q, name)
  if redis.call('HINCRBY', q.active, name, -1) <= 0 then
    redis.call('HDEL', q.active, name)
  end
end

local function free_slots(q, key, lane, limited)
  if limited ~= '1' or not lane or lane == '' then
    return
  end
  local task = lane_parts(lane)
  lower(q, 't:' .. task)
  lower(q, 'k:' .. lane)
  redis.call('HSET', key, 'limited', '0')
  unpark(q, 't:' .. task)
  unpark(q, 'k:' .. lane)
end

local function index_expiry(q, id, start_by)
  if start_by and start_by ~= '' then
    redis.call('ZADD', q.expiring, start_by, id)
  end
end

local function expire_job(q, id, now_ms, error, counter)
  local key = q.job_prefix .. id
  local now_text = string.format('%d', now_ms)
  redis.call('HSET', key, 'status', 'expired', 'error', error, 'finished_at_ms', now_text)
  EVENT.note(q, key, id, 'expired', now_text, error)
  redis.call('PEXPIRE', key, EXPIRED_TTL_MS)
  redis.call('PUBLISH', q.done_prefix .. id, id)
  note_end_of(q.outbox, key, id, now_text)
  free_unique_of(q, key, id, now_text)
  redis.call('HINCRBY', q.flow, counter, 1)
  redis.call('ZREM', q.expiring, id)
end

local NOT_STARTED = {scheduled = true, queued = true}

local function expire_due(q, now_ms, limit)
  local due = redis.call('ZRANGEBYSCORE', q.expiring, '-inf', '(' .. string.format('%d', now_ms),
    'LIMIT', 0, limit)
  local ended = 0
  for _, id in ipairs(due) do
    local f = redis.pcall('HMGET', q.job_prefix .. id, 'status', 'lane', 'attempt')
    if not f.err and NOT_STARTED[f[1]] and (f[3] == false or f[3] == '0') then
      redis.call('ZREM', q.delayed, id)
      redis.call('ZREM', q.suspects, id)
      take_out(q, id, f[2])
      expire_job(q, id, now_ms, EXPIRED_ERROR, 'expired')
      ended = ended + 1
    else
      redis.call('ZREM', q.expiring, id)
    end
  end
  return ended
end

local function promote_flow(q, now_ms, limit)
  local ended = expire_due(q, now_ms, limit)
  restore_due(q, now_ms, limit)
  return ended
end

local function throttled_head(q)
  local head = redis.call('ZRANGE', q.throttled, 0, 0, 'WITHSCORES')[2]
  return head and tonumber(head)
end
