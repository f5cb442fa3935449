--[[
wake: how the steps that make jobs ready bring idle workers in.

Two kinds of waiting worker. One listed idle (claim_jobs with idle, see claim_jobs.lua)
waits on its inbox: a job is claimed for it here, under the claim include's rules, and
pushed there (await_jobs pops it: one round trip to start a job). One that BLPOPs the
queue's wake list (wait_for_jobs: older callers) gets a wake token and claims.

`h` is the queue's table: the claim include's (ready, job_prefix, dead, outbox,
done_prefix, batch, dead_max, dead_ttl_ms), plus workers and idle (keys), held_prefix and
inbox_prefix (a holder's held set and inbox are the prefix .. holder), queue (its name),
now_ms (nil: the broker's clock, read only when a holder is served), wake (the wake list)
and wake_cap. A script that lists no idle holders may leave idle nil: then only tokens.

wake_ready(h, wanted): `wanted` jobs were made ready. Each of up to `wanted` idle holders
still registered (lease not passed) is unlisted and handed one job claimed for it; when
no job can be admitted for one, it gets a bare wake marker instead (it claims itself and
learns why) and the hand-over stops. Tokens go to the wake list for the jobs no idle
holder took, never letting it grow past wake_cap (a burst must not leave thousands of
stale tokens).
wake_one(h): one worker must claim now (a new delayed head: it learns the new
next_due_ms): a marker to one idle holder, else one token.
chain_wake(h, took, runnable): after a claim: while ready jobs remain (`runnable`, a ZSET:
the ready set, or the rotation of groups when the queue's flow is in use), idle holders
get them when
the claim took some (a job enqueued by a step that hands nothing over; a claim that took
nothing found them all held back by the rules, and handing over would only wake holders
in turn for nothing), and one token is pushed when none is pending, so another worker
waiting on the wake list comes to help.
push_wakes(wake_key, wanted, wake_cap): the tokens alone.
pack_handed(values): one inbox entry: the flat claim reply of one job (CLAIMED_FIELDS
values in order): a header of their byte lengths, space separated, a newline, then the
values back to back (text and payload bytes alike; replies.handed reads it).
unpack_handed(entry): the values of an entry (as text); nil for a bare marker.
with_handover(h, workers, idle, held_prefix, inbox_prefix, queue, now_ms, wake, wake_cap):
`h` with the hand-over names set (a script binds its KEYS/ARGV, then calls this).
WAKE_MARKER: the bare marker: an empty entry.
]]
--- @include "now"
--- @include "keys"
--- @include "record"
--- @include "dead"
--- @include "claim"
local WAKE_MARKER = ''

local function with_handover(h, workers, idle, held_prefix, inbox_prefix, queue, now_ms, wake,
    wake_cap)
  h.workers, h.idle, h.held_prefix, h.inbox_prefix = workers, idle, held_prefix, inbox_prefix
  h.queue, h.now_ms, h.wake, h.wake_cap = queue, now_ms, wake, wake_cap
  return h
end

local function push_wakes(wake_key, wanted, wake_cap)
  local n = math.min(wanted, wake_cap - redis.call('LLEN', wake_key))
  if n > 0 then
    local tokens = {}
    for i = 1, n do
      tokens[i] = '1'
    end
    redis.call('RPUSH', wake_key, unpack(tokens))
  end
end

local function pack_handed(values)
  local lengths, parts = {}, {}
  for i = 1, #values do
    local v = values[i]
    if type(v) == 'number' then
      v = v % 1 == 0 and string.format('%d', v) or string.format('%.17g', v)
    end
    parts[i], lengths[i] = v, #v
  end
  return table.concat(lengths, ' ') .. '\n' .. table.concat(parts)
end

local function unpack_handed(entry)
  if entry == WAKE_MARKER then
    return nil
  end
  local newline = string.find(entry, '\n', 1, true)
  local values, at = {}, newline + 1
  for length in string.gmatch(string.sub(entry, 1, newline - 1), '%d+') do
    local n = tonumber(length)
    values[#values + 1] = string.sub(entry, at, at + n - 1)
    at = at + n
  end
  return values
end

local function handover_now(h)
  if not h.now_ms then
    h.now_ms = resolve_now('')
  end
  return h.now_ms
end

-- The next listed holder still registered whose held set and inbox are usable (the rest
-- are unlisted on the way), or nil.
local function next_idle(h)
  while true do
    local popped = redis.call('ZPOPMIN', h.idle)
    if #popped == 0 then
      return nil
    end
    local holder = popped[1]
    local deadline = tonumber(redis.call('ZSCORE', h.workers, holder))
    if deadline and deadline > handover_now(h) then
      local held_type = redis.call('TYPE', h.held_prefix .. holder).ok
      local inbox_type = redis.call('TYPE', h.inbox_prefix .. holder).ok
      if (held_type == 'set' or held_type == 'none')
          and (inbox_type == 'list' or inbox_type == 'none') then
        return holder
      end
    end
  end
end

-- Hand one job (or a marker) to each of up to `wanted` idle holders; how many were served.
local function hand_over(h, wanted)
  if not h.idle then
    return 0
  end
  local served, buried = 0, 0
  while served < wanted do
    local holder = next_idle(h)
    if not holder then
      break
    end
    served = served + 1
    local out = {}
    local c = claim_context(h, holder, h.held_prefix .. holder, h.queue, h.now_ms, out)
    local taken = take_ready(c, 1)
    buried = buried + c.buried
    redis.call('RPUSH', h.inbox_prefix .. holder, taken > 0 and pack_handed(out) or WAKE_MARKER)
    if taken == 0 then
      break
    end
  end
  if buried > 0 then
    trim_dead(h, h.now_ms)
  end
  return served
end

local function wake_ready(h, wanted)
  if wanted > 0 then
    push_wakes(h.wake, wanted - hand_over(h, wanted), h.wake_cap)
  end
end

local function wake_one(h)
  if h.idle then
    local holder = next_idle(h)
    if holder then
      redis.call('RPUSH', h.inbox_prefix .. holder, WAKE_MARKER)
      return
    end
  end
  push_wakes(h.wake, 1, h.wake_cap)
end

local function chain_wake(h, took, runnable)
  local ready = redis.call('ZCARD', runnable)
  if ready > 0 and took then
    ready = ready - hand_over(h, math.min(ready, h.batch))
  end
  if ready > 0 and redis.call('LLEN', h.wake) == 0 then
    redis.call('RPUSH', h.wake, '1')
  end
end
