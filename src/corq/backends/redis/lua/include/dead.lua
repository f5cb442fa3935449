--[[
dead: the dead letters of one queue. `q` is a table of the queue's names and bounds: dead,
outbox, job_prefix, done_prefix, dead_max, dead_ttl_ms (0: unbounded), batch, and unique,
unique_kept (the unique include's: a dead job frees its unique key).

add_dead(q, id, at_ms): the job joins the dead letters (scored by when it died) and its
waiters are woken. Its record is the caller's to write.
make_dead(q, id, at_ms, ...): the record says dead, finished at `at_ms`, with the field/value
pairs given after it; then add_dead. A job of a workflow (or watched by one) notes its end
in q.outbox (see the outbox include); its unique key is freed (see the unique include).
bury_damaged(q, id, now_ms, problem, wrong_type): a record a script could not read joins
the dead letters. A hash becomes dead with DAMAGED .. problem as its error; a key of another
type is left as it is (only its id joins, so an operator can see and purge it).
trim_dead(q, now_ms): delete at most q.batch dead letters with their records: those older
than dead_ttl_ms, then the oldest beyond dead_max. Run once per call that added any.
]]
--- @include "now"
--- @include "outbox"
--- @include "unique"
--- @include "events"
local DAMAGED = 'damaged job record: ' -- damaged_error() in corq.backends.base

local function add_dead(q, id, at_ms)
  redis.call('ZADD', q.dead, at_ms, id)
  redis.call('PUBLISH', q.done_prefix .. id, id)
end

local function make_dead(q, id, at_ms, ...)
  local key = q.job_prefix .. id
  redis.call('HSET', key, 'status', 'dead', 'finished_at_ms', at_ms, ...)
  EVENT.note(q, key, id, 'dead', at_ms)
  add_dead(q, id, at_ms)
  note_end_of(q.outbox, key, id, at_ms)
  free_unique_of(q, key, id, at_ms)
end

local function bury_damaged(q, id, now_ms, problem, wrong_type)
  if wrong_type then
    add_dead(q, id, int(now_ms))
  else
    make_dead(q, id, int(now_ms), 'error', DAMAGED .. problem)
  end
end

local function trim_dead(q, now_ms)
  local n = 0
  if q.dead_max > 0 then
    n = math.max(0, redis.call('ZCARD', q.dead) - q.dead_max)
  end
  if q.dead_ttl_ms > 0 then
    local cutoff = int(now_ms - q.dead_ttl_ms)
    local oldest = redis.call('ZRANGE', q.dead, 0, 0, 'WITHSCORES')[2]
    if oldest and tonumber(oldest) < tonumber(cutoff) then
      n = math.max(n, redis.call('ZCOUNT', q.dead, '-inf', '(' .. cutoff))
    end
  end
  n = math.min(n, q.batch)
  if n > 0 then
    for _, id in ipairs(redis.call('ZRANGE', q.dead, 0, n - 1)) do
      redis.call('DEL', q.job_prefix .. id)
    end
    redis.call('ZREMRANGEBYRANK', q.dead, 0, n - 1)
  end
end
