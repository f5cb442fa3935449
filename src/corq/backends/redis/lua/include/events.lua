--[[
events: the queue's lifecycle events and each job's attempt history (docs/design.md,
"Events and attempt history"). `q.events` is the queue's stream (a key; nil: the script
writes no events); EVENTS_MAX (the events_bound include) caps it, 0 writes none.

EVENT.emit(q, kind, id, task, attempt, worker, detail, at_ms): one XADD ... MAXLEN ~ of the
event (detail: its first line, 200 characters at most; at_ms nil: the stream id's time).
EVENT.note(q, key, id, kind, at_ms, detail): the same for the record at `key`, whose task,
attempt and worker it reads (one HMGET; nothing for a record that is not a hash); without a
`detail`, the record's error is the detail of an end.
EVENT.open_attempt(n, at_ms): the value of the record's attempt_open a claim writes
('<n>:<started ms>': no encoding on the claim's path; its worker is the record's).
EVENT.end_attempt(q, key, id, kind, outcome, at_ms, detail): the step that ends the running
attempt of the record at `key`: its attempt_open joins attempt_log (the last
100 kept) with the end, `outcome` and `detail`, and event `kind` is emitted
(nil: none, the caller emits another). Call it before the record's worker_id is removed.
]]
--- @include "events_bound"
-- One table, so the include costs its scripts two locals (a script has 200 at most).
local EVENT = {DETAIL_CHARS = 200, ATTEMPTS_KEPT = 100}

function EVENT.short(detail)
  if not detail or detail == '' then
    return ''
  end
  return string.sub(string.match(detail, '^[^\n]*'), 1, EVENT.DETAIL_CHARS)
end

function EVENT.emit(q, kind, id, task, attempt, worker, detail, at_ms)
  if EVENTS_MAX <= 0 or not q.events then
    return
  end
  local at = at_ms or ''
  if type(at) == 'number' then
    at = string.format('%d', at)
  end
  if worker or detail then -- the plain case (a new job) writes fewer fields
    redis.call('XADD', q.events, 'MAXLEN', '~', EVENTS_MAX, '*', 'k', kind, 'j', id,
      't', task or '', 'a', attempt or '0', 'at', at, 'w', worker or '', 'd', EVENT.short(detail))
  else
    redis.call('XADD', q.events, 'MAXLEN', '~', EVENTS_MAX, '*', 'k', kind, 'j', id,
      't', task or '', 'a', attempt or '0', 'at', at)
  end
end

function EVENT.note(q, key, id, kind, at_ms, detail)
  if EVENTS_MAX <= 0 or not q.events then
    return
  end
  local f = redis.pcall('HMGET', key, 'task', 'attempt', 'worker_id', 'error')
  if not f.err then
    EVENT.emit(q, kind, id, f[1], f[2], f[3], detail or (kind ~= 'retried' and f[4]), at_ms)
  end
end

function EVENT.open_attempt(n, at_ms)
  return n .. ':' .. at_ms
end

function EVENT.closed_log(log, open, worker, at_ms, outcome, detail)
  local n, start = string.match(open, '^(%d+):(%d+)$')
  local line = cjson.encode({tonumber(n), worker or '', tonumber(start), tonumber(at_ms) or 0,
    outcome, EVENT.short(detail)})
  if not log or log == '' then
    return line
  end
  local _, lines = string.gsub(log, '\n', '\n')
  if lines + 1 >= EVENT.ATTEMPTS_KEPT then
    log = string.sub(log, (string.find(log, '\n', 1, true) or #log) + 1)
  end
  return log .. '\n' .. line
end

function EVENT.end_attempt(q, key, id, kind, outcome, at_ms, detail)
  local f = redis.pcall('HMGET', key, 'attempt_open', 'attempt_log', 'task', 'attempt',
    'worker_id')
  if f.err then
    return
  end
  if f[1] and f[1] ~= '' then
    local ok, log = pcall(EVENT.closed_log, f[2], f[1], f[5], at_ms, outcome, detail)
    if ok then
      redis.call('HSET', key, 'attempt_open', '', 'attempt_log', log)
    end
  end
  if kind then
    EVENT.emit(q, kind, id, f[3], f[4], f[5], detail, at_ms)
  end
end
