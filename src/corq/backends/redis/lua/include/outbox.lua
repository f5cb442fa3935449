--[[
outbox: the ends workflows must take in. A job of a workflow (its record's `workflow` is
set) or one a workflow watches (`notify` 1) notes its end in its queue's outbox in the
same script as the end itself; settle_workflows takes the ends in from there.

note_end(outbox_key, id, at_ms, workflow, notify): when `workflow` is set (not false or
'') or `notify` is '1', ZADD the entry at `at_ms` (the ender's clock); returns true if so.
An entry is outbox_member(id, workflow): the workflow travels with the id, so an end whose
record is gone or damaged by the time it is settled still reaches its workflow.
outbox_member(id, workflow): msgpack [id, workflow or ''] (the same job ending again after
a retry of its dead letter gets the same member: only its score moves).
note_end_of(outbox_key, key, id, at_ms): the same with both fields read from the record
at `key` (a key that is not a hash notes nothing: settle could not route it).
kept_ms(ttl_ms, keep_ms, workflow, notify): how long an ended record is kept: `ttl_ms`,
or `keep_ms` when longer for a record some workflow reads (its children may start long
after); a ttl <= 0 (kept for ever) stays so.
]]
local function watched_end(workflow, notify)
  return (workflow and workflow ~= '') or notify == '1'
end

local function outbox_member(id, workflow)
  return cmsgpack.pack({id, workflow or ''})
end

local function note_end(outbox_key, id, at_ms, workflow, notify)
  if watched_end(workflow, notify) then
    redis.call('ZADD', outbox_key, at_ms, outbox_member(id, workflow))
    return true
  end
  return false
end

local function note_end_of(outbox_key, key, id, at_ms)
  local f = redis.pcall('HMGET', key, 'workflow', 'notify')
  if f.err then
    return false
  end
  return note_end(outbox_key, id, at_ms, f[1], f[2])
end

local function kept_ms(ttl_ms, keep_ms, workflow, notify)
  if ttl_ms > 0 and keep_ms > ttl_ms and watched_end(workflow, notify) then
    return keep_ms
  end
  return ttl_ms
end
