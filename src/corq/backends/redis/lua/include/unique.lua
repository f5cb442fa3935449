--[[
unique: what the end of a job does to its unique key, and the pruning of kept keys and
cooldown windows. `u` is a table of the queue's names: unique (HASH unique key -> job id),
unique_kept (ZSET unique key -> when its window after the end closes), and, for pruning,
cooldown (HASH cooldown key -> '<until>:<job id>'), cooldown_until (ZSET cooldown key ->
until) and job_prefix. A script that does not pass u.unique frees nothing.

free_unique(u, id, unique_key, unique_for_ms, at_ms): job `id` ended at `at_ms`. When its
unique key (false or '' for none) still maps to it, the key is freed at once
(unique_for_ms 0 or unreadable) or kept until at_ms + unique_for_ms (indexed in
unique_kept). A mapping to another job (a later one took the key) is left alone. A key of
the wrong type frees nothing (never fails the end that calls it), so end scripts need not
type-check these keys.
free_unique_of(u, key, id, at_ms): the same, its fields read from the record at `key`
(nothing when it is not a hash).
prune_unique(u, now_ms, limit): at most `limit` kept keys whose window has closed leave
unique (unless a live job has taken the key since), and at most `limit` closed cooldown
windows leave cooldown. Returns the earliest time more pruning falls due, or nil.
]]
--- @include "now"
local function free_unique(u, id, unique_key, unique_for_ms, at_ms)
  if not u.unique or not unique_key or unique_key == '' then
    return
  end
  if redis.pcall('HGET', u.unique, unique_key) ~= id then
    return -- another job's, none, or the map is not a hash (the end goes on)
  end
  local for_ms = tonumber(unique_for_ms) or 0
  if for_ms > 0 then
    redis.pcall('ZADD', u.unique_kept, int(tonumber(at_ms) + for_ms), unique_key)
  else
    redis.call('HDEL', u.unique, unique_key)
  end
end

local function free_unique_of(u, key, id, at_ms)
  if not u.unique then
    return
  end
  local f = redis.pcall('HMGET', key, 'unique_key', 'unique_for_ms')
  if not f.err then
    free_unique(u, id, f[1], f[2], at_ms)
  end
end

-- The pruning steps (in a table: scripts have at most 200 locals, includes share them).
local uq = {}

-- A kept key leaves unique unless the job it maps to is live again (another job took
-- the key after the window: the ZSET entry is then stale) or its own window is still open.
uq.ENDED = {succeeded = true, dead = true, cancelled = true, expired = true,
  upstream_failed = true}

function uq.prune_kept(u, now_ms, limit)
  local due = redis.call('ZRANGEBYSCORE', u.unique_kept, '-inf', int(now_ms), 'LIMIT', 0,
    limit)
  for _, unique_key in ipairs(due) do
    local id = redis.call('HGET', u.unique, unique_key)
    if id then
      local f = redis.pcall('HMGET', u.job_prefix .. id, 'status', 'finished_at_ms',
        'unique_for_ms')
      local closes = (not f.err) and (tonumber(f[2]) or 0) + (tonumber(f[3]) or 0) or 0
      if f.err or not f[1] or (uq.ENDED[f[1]] and closes <= now_ms) then
        redis.call('HDEL', u.unique, unique_key)
      end
    end
  end
  if #due > 0 then
    redis.call('ZREM', u.unique_kept, unpack(due))
  end
end

function uq.prune_cooldowns(u, now_ms, limit)
  local due = redis.call('ZRANGEBYSCORE', u.cooldown_until, '-inf', int(now_ms), 'LIMIT',
    0, limit)
  for _, cooldown_key in ipairs(due) do
    local value = redis.call('HGET', u.cooldown, cooldown_key)
    local until_ms = value and tonumber(string.match(value, '^(%d+):'))
    if value and (not until_ms or until_ms <= now_ms) then
      redis.call('HDEL', u.cooldown, cooldown_key)
    end
  end
  if #due > 0 then
    redis.call('ZREM', u.cooldown_until, unpack(due))
  end
end

function uq.first_score(zset)
  return tonumber(redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')[2])
end

local function prune_unique(u, now_ms, limit)
  uq.prune_kept(u, now_ms, limit)
  uq.prune_cooldowns(u, now_ms, limit)
  local kept, cooled = uq.first_score(u.unique_kept), uq.first_score(u.cooldown_until)
  if kept and cooled then
    return math.min(kept, cooled)
  end
  return kept or cooled
end
