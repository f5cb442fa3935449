--[[
reclaim_stalled_jobs: take back the jobs of workers of one queue whose lease has passed.

Works through at most `limit` held jobs per call, so Redis is never blocked for long; the
caller repeats until the result says done. For every job still running under a stalled
worker: deaths + 1 and the worker id joins death_log. A job that was claimed isolated
(alone) and now has max_deaths deaths is a poison job: dead letters, its id published on
its done channel. One with at least max_deaths - 1 deaths becomes a suspect (the suspects
set; it will run only alone). Any other is queued again at its old score (the head of the
queue). One wake token per job queued again, capped. A stalled worker stays registered until its held set is empty; then it is
removed (its next heartbeat finds it lost) and its held set deleted.

KEYS[1] workers         ZSET  worker id -> lease deadline
KEYS[2] ready           ZSET  ready job ids by score
KEYS[3] dead            ZSET  dead job ids by finished_at_ms
KEYS[4] wake            LIST  wake tokens
KEYS[5] suspects        ZSET  jobs at max_deaths - 1 deaths wait here to run alone
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] held_prefix     a worker's held set is held_prefix .. worker id
ARGV[3] done_prefix     a job's done channel is done_prefix .. id
ARGV[4] now_ms          the caller's clock; leases with deadline < now_ms have passed
ARGV[5] max_deaths      deaths that make a poison job
ARGV[6] limit           most held jobs to look at in this call
ARGV[7] wake_cap        longest the wake list may grow

Returns: {done (1 when no stalled worker is left, else 0), then three per reclaimed job:
worker id, job id, dead (1 when it became a poison job, else 0)}.
]]
local workers_key = KEYS[1]
local ready_key = KEYS[2]
local dead_key = KEYS[3]
local wake_key = KEYS[4]
local suspects_key = KEYS[5]
local job_prefix = ARGV[1]
local held_prefix = ARGV[2]
local done_prefix = ARGV[3]
local now_ms = ARGV[4]
local max_deaths = tonumber(ARGV[5])
local limit = tonumber(ARGV[6])
local wake_cap = tonumber(ARGV[7])

local out = {0}
local requeued = 0

local function reclaim(worker, id)
  local key = job_prefix .. id
  local f = redis.call('HMGET', key, 'status', 'worker_id', 'deaths', 'death_log', 'score',
    'isolated')
  if f[1] ~= 'running' or f[2] ~= worker then
    return
  end
  local deaths = tonumber(f[3] or '0') + 1
  local log = worker
  if f[4] and f[4] ~= '' then
    log = f[4] .. ' ' .. worker
  end
  -- Poison only when it died running alone: then nothing else can have killed the worker.
  local poisoned = deaths >= max_deaths and f[6] == '1'
  if poisoned then
    local error = string.format(
      'poison job: its worker died %d times while running it (workers: %s)', deaths, log)
    redis.call('HSET', key, 'status', 'dead', 'deaths', string.format('%d', deaths),
      'death_log', log, 'error', error, 'finished_at_ms', now_ms)
    redis.call('HDEL', key, 'traceback')
    redis.call('ZADD', dead_key, now_ms, id)
    redis.call('PUBLISH', done_prefix .. id, id)
  elseif deaths >= max_deaths - 1 then
    -- A suspect: from now on it runs only alone, on an idle worker.
    redis.call('HSET', key, 'status', 'queued', 'deaths', string.format('%d', deaths),
      'death_log', log, 'suspect', '1')
    redis.call('HDEL', key, 'worker_id')
    redis.call('ZADD', suspects_key, f[5], id)
    requeued = requeued + 1
  else
    redis.call('HSET', key, 'status', 'queued', 'deaths', string.format('%d', deaths),
      'death_log', log, 'suspect', '0')
    redis.call('HDEL', key, 'worker_id')
    redis.call('ZADD', ready_key, f[5], id)
    requeued = requeued + 1
  end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3] = worker, id, poisoned and 1 or 0
end

local budget = limit
while budget > 0 do
  local stalled = redis.call('ZRANGEBYSCORE', workers_key, '-inf', '(' .. now_ms, 'LIMIT', 0, 1)
  if #stalled == 0 then
    out[1] = 1
    break
  end
  local worker = stalled[1]
  local held_key = held_prefix .. worker
  local ids = redis.call('SPOP', held_key, budget)
  budget = budget - #ids
  for _, id in ipairs(ids) do
    reclaim(worker, id)
  end
  if redis.call('SCARD', held_key) == 0 then
    redis.call('ZREM', workers_key, worker)
    redis.call('DEL', held_key)
  end
end

local tokens = math.min(requeued, wake_cap - redis.call('LLEN', wake_key))
for _ = 1, tokens do
  redis.call('RPUSH', wake_key, '1')
end
return out
