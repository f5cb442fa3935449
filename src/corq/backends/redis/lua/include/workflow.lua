--[[
workflow: one workflow's dependency state, kept in its own slot, and the engine every
workflow script shares to take ends in and decide what they release.

new_workflow(keys, now_ms, keep_ms, batch): the table `w` the functions below take: the
workflow's keys (`keys` has meta, order, nodes, pending, todo, applied, callbacks, failed,
watched, adding, deferred, and the prefixes parents and children, to which a job id is
appended), its state and open flag as meta holds them (state nil: no such workflow),
the time, how long ended keys are kept, the cap of the failed list, and the work list.

A node's value in `nodes` is msgpack [queue, task, callback event or '']. A todo value is
'r' (release), 'u' .. error (upstream_failed) or 'c' .. error (cancelled: a callback that
is not needed). An applied value is state .. ':' .. error (cut).

take_end(w, id, state, error, quiet): take the end of job `id` (of the workflow or
external to it) in once: count it (a node: ended, by state, members' counts and failed
list, first failure unless `quiet`), keep its edge lists keep_ms more, and for each child
not ended yet: on a satisfied edge (it succeeded, or the edge allows failure) one parent
less pending, a child at 0 released; else the child is decided upstream_failed naming this
parent, and its own end taken in through the work list.
decide(w, id, value): note a decision in todo (or, for a job of an addition not committed
yet, a failure in deferred: the commit decides); an end decided here joins the work list.
settle_inside(w): take in the work list's ends and decide the batch callbacks the counts
allow (not while creating or open), until nothing more changes.
finish_if_done(w): when every job has ended and no more can come (live, not open), the
workflow is finished: finished_at_ms, and its keys expire after keep_ms. True if it was.
put_todo(w, out): append each todo entry as id, queue, value (an entry of no node dropped).
upstream_error(parent, state, error): the error of a child whose parent ended badly.
cut_text(s, n): `s` cut to at most n bytes (then '...'), never inside a UTF-8 sequence.
]]
local TERMINAL_END = {succeeded = true, dead = true, cancelled = true, upstream_failed = true,
  expired = true}
local FAILED_END = {dead = true, cancelled = true, upstream_failed = true, expired = true}
-- Bytes of a parent's error kept in a child's: a failed chain of 1,000 links must not make
-- errors grow without bound.
local CAUSE_BYTES = 1000
local NOT_NEEDED_SUCCESS = 'not needed: not every member of the batch succeeded'
local NOT_NEEDED_FAILURE = 'not needed: no member of the batch ended dead'

local function cut_text(s, n)
  if not s or #s <= n then
    return s or ''
  end
  local at = n
  while at > 0 do
    local b = string.byte(s, at + 1)
    if b < 0x80 or b >= 0xC0 then
      break
    end
    at = at - 1
  end
  return string.sub(s, 1, at) .. '...'
end

local function upstream_error(parent, state, err)
  local text = 'upstream_failed: ' .. parent .. ' ended ' .. state
  if err and err ~= '' then
    text = text .. ': ' .. cut_text(err, CAUSE_BYTES)
  end
  return text
end

local function new_workflow(keys, now_ms, keep_ms, batch)
  local w = {now_ms = now_ms, keep_ms = keep_ms, batch = batch, work = {}, at = 1}
  for name, key in pairs(keys) do
    w[name] = key
  end
  local m = redis.call('HMGET', keys.meta, 'state', 'open')
  w.state, w.open = m[1], m[2]
  return w
end

local function push(w, id, state, err, quiet)
  w.work[#w.work + 1] = {id, state, err, quiet}
end

local function decide(w, id, value)
  local kind = string.sub(value, 1, 1)
  if redis.call('HEXISTS', w.adding, id) == 1 then
    if kind ~= 'r' then
      redis.call('HSET', w.deferred, id, value)
    end
    return
  end
  redis.call('HSET', w.todo, id, value)
  if kind == 'u' then
    push(w, id, 'upstream_failed', string.sub(value, 2), false)
  elseif kind == 'c' then
    push(w, id, 'cancelled', string.sub(value, 2), true)
  end
end

local function count_end(w, id, node, state, err, quiet)
  local meta = w.meta
  redis.call('HINCRBY', meta, 'ended', 1)
  redis.call('HINCRBY', meta, 'c:' .. state, 1)
  local failed = FAILED_END[state]
  if node[3] == '' then
    redis.call('HINCRBY', meta, 'm:ended', 1)
    redis.call('HINCRBY', meta, 'm:' .. state, 1)
    if failed then
      redis.call('HINCRBY', meta, 'm:failed', 1)
      if redis.call('LLEN', w.failed) < w.batch then
        redis.call('RPUSH', w.failed, id)
      end
    end
  else
    redis.call('HDEL', w.callbacks, id)
  end
  if failed and not quiet and redis.call('HSETNX', meta, 'first_failure', id) == 1 then
    redis.call('HSET', meta, 'first_error', err)
  end
end

local function take_end(w, id, state, err, quiet)
  if not TERMINAL_END[state] or redis.call('HEXISTS', w.applied, id) == 1 then
    return
  end
  err = err or ''
  redis.call('HSET', w.applied, id, state .. ':' .. cut_text(err, CAUSE_BYTES))
  local raw = redis.call('HGET', w.nodes, id)
  if raw then
    count_end(w, id, cmsgpack.unpack(raw), state, err, quiet)
    redis.call('PEXPIRE', w.parents .. id, w.keep_ms)
  end
  local kids_key = w.children .. id
  local kids = redis.call('LRANGE', kids_key, 0, -1)
  if #kids == 0 then
    return
  end
  redis.call('PEXPIRE', kids_key, w.keep_ms)
  local cause = nil
  for _, entry in ipairs(kids) do
    local kid = string.sub(entry, 2)
    if redis.call('HEXISTS', w.applied, kid) == 0 and redis.call('HEXISTS', w.nodes, kid) == 1 then
      if state == 'succeeded' or string.sub(entry, 1, 1) == '1' then
        if redis.call('HINCRBY', w.pending, kid, -1) <= 0 then
          decide(w, kid, 'r')
        end
      else
        cause = cause or upstream_error(id, state, err)
        decide(w, kid, 'u' .. cause)
      end
    end
  end
end

local function member_counts(w)
  local m = redis.call('HMGET', w.meta, 'members', 'm:ended', 'm:succeeded', 'm:dead')
  return tonumber(m[1]) or 0, tonumber(m[2]) or 0, tonumber(m[3]) or 0, tonumber(m[4]) or 0
end

local function callback_decision(event, members, ended, succeeded, dead)
  if event == 'success' then
    if succeeded >= members then
      return 'r'
    elseif ended >= members then
      return 'c' .. NOT_NEEDED_SUCCESS
    end
  elseif event == 'complete' then
    if ended >= members then
      return 'r'
    end
  elseif event == 'failure' then
    if dead > 0 then
      return 'r'
    elseif ended >= members then
      return 'c' .. NOT_NEEDED_FAILURE
    end
  end
  return nil
end

local function decide_callbacks(w)
  if w.state ~= 'live' or w.open == '1' then
    return
  end
  local callbacks = redis.call('HGETALL', w.callbacks)
  if #callbacks == 0 then
    return
  end
  local members, ended, succeeded, dead = member_counts(w)
  for i = 1, #callbacks, 2 do
    local value = callback_decision(callbacks[i + 1], members, ended, succeeded, dead)
    if value then
      redis.call('HDEL', w.callbacks, callbacks[i])
      decide(w, callbacks[i], value)
    end
  end
end

local function settle_inside(w)
  while true do
    while w.at <= #w.work do
      local e = w.work[w.at]
      w.at = w.at + 1
      take_end(w, e[1], e[2], e[3], e[4])
    end
    decide_callbacks(w)
    if w.at > #w.work then
      return
    end
  end
end

local function finish_if_done(w)
  if w.state ~= 'live' or w.open == '1' then
    return false
  end
  local m = redis.call('HMGET', w.meta, 'ended', 'total', 'finished_at_ms')
  if m[3] or (tonumber(m[1]) or 0) < (tonumber(m[2]) or 0) then
    return false
  end
  redis.call('HSET', w.meta, 'finished_at_ms', string.format('%d', w.now_ms))
  for _, key in ipairs({w.meta, w.order, w.nodes, w.pending, w.todo, w.applied, w.callbacks,
      w.failed, w.watched, w.adding, w.deferred}) do
    redis.call('PEXPIRE', key, w.keep_ms)
  end
  return true
end

local function put_todo(w, out)
  local todo = redis.call('HGETALL', w.todo)
  for i = 1, #todo, 2 do
    local raw = redis.call('HGET', w.nodes, todo[i])
    if raw then
      local n = #out
      out[n + 1], out[n + 2], out[n + 3] = todo[i], cmsgpack.unpack(raw)[1], todo[i + 1]
    else
      redis.call('HDEL', w.todo, todo[i])
    end
  end
end
