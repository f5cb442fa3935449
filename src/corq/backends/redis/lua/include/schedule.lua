--[[
schedule: a schedule's record (a HASH in its queue's slot) and its logs, as scripts read
and write them (keys.py gives the fields and the log layouts).

read_schedule(key): the record at `key`, checked: a table with definition, paused
(true/false), last_tick_ms, floor_ms, buffered_tick_ms (nil when none), created_at_ms,
updated_at_ms, fired, skipped, rev and moved_to (nil unless a move is under way); or nil and 'gone' when there is no record; or nil and the problem when it
cannot be read (a key of another type, no definition, a number that is not one).
schedule_reply(key, runs_key): what a script that changed a record replies with: the
record's fields and values (HGETALL), then its latest run entry (or false).
set_definition(key, s, definition, now_ms, reset_ticks): a new definition for the record
`s` (as read_schedule gives it) at `key`; `reset_ticks` ('1') moves last_tick_ms up to now.
Every change of a record (definition, paused state, a move) raises its `rev`, so a writer
that finds a record unchanged can tell whether its last change was ever given a version.
pack_run(tick_ms, job_id, queue, kind, at_ms), pack_skip(first, last, count, reason,
at_ms): a log entry (a msgpack array).
log_entry(list_key, entry, keep): push `entry` at the head of a log, keeping `keep`.
logs_usable(fired_key, runs_key, skips_key): true when each of a schedule's other keys is
missing or of its type (a script checks before it writes: one that fails half-way keeps
its earlier writes).
]]
--- @include "record"
local SCHEDULE_FIELDS = {'paused', 'last_tick_ms', 'floor_ms', 'buffered_tick_ms', 'moved_to',
  'created_at_ms', 'updated_at_ms', 'fired', 'skipped', 'rev', 'definition'}
local SCHEDULE_KINDS = {last_tick_ms = INT_REQUIRED, floor_ms = INT_REQUIRED,
  buffered_tick_ms = INT_OPTIONAL, created_at_ms = INT_REQUIRED, updated_at_ms = INT_REQUIRED,
  fired = COUNT, skipped = COUNT, rev = COUNT}
local DEFINITION_AT = #SCHEDULE_FIELDS

local function read_schedule(key)
  local f = redis.pcall('HMGET', key, unpack(SCHEDULE_FIELDS))
  if f.err then
    return nil, 'the key holds a ' .. redis.call('TYPE', key).ok .. ', not a schedule hash'
  end
  if not f[DEFINITION_AT] then
    if redis.call('EXISTS', key) == 0 then
      return nil, 'gone'
    end
    return nil, 'definition is missing'
  end
  local paused = f[1]
  if paused ~= '0' and paused ~= '1' then
    return nil, 'paused is not 0 or 1: ' .. quote(paused or '')
  end
  local s = {paused = paused == '1', moved_to = f[5] or nil, definition = f[DEFINITION_AT]}
  for i = 2, DEFINITION_AT - 1 do
    local name = SCHEDULE_FIELDS[i]
    local kind = SCHEDULE_KINDS[name]
    if kind then
      local value, problem = check_number(name, f[i], kind)
      if problem then
        return nil, problem
      end
      s[name] = value
    end
  end
  return s
end

local function schedule_reply(key, runs_key)
  return {redis.call('HGETALL', key), redis.call('LINDEX', runs_key, 0) or false}
end

local function set_definition(key, s, definition, now_ms, reset_ticks)
  redis.call('HSET', key, 'definition', definition, 'updated_at_ms', int(now_ms))
  redis.call('HINCRBY', key, 'rev', 1)
  if reset_ticks == '1' and now_ms > s.last_tick_ms then
    redis.call('HSET', key, 'last_tick_ms', int(now_ms))
  end
end

local function pack_run(tick_ms, job_id, queue, kind, at_ms)
  return cmsgpack.pack({tick_ms, job_id, queue, kind, at_ms})
end

local function pack_skip(first, last, count, reason, at_ms)
  return cmsgpack.pack({first, last, count, reason, at_ms})
end

local function logs_usable(fired_key, runs_key, skips_key)
  local function is(key, kind)
    local t = redis.call('TYPE', key).ok
    return t == 'none' or t == kind
  end
  return is(fired_key, 'zset') and is(runs_key, 'list') and is(skips_key, 'list')
end

local function log_entry(list_key, entry, keep)
  redis.call('LPUSH', list_key, entry)
  redis.call('LTRIM', list_key, 0, keep - 1)
end
