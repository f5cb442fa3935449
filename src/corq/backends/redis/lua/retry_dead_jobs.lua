--[[
retry_dead_jobs: queue dead jobs of one queue again with a fresh retry budget.

Each job still in the dead letters becomes queued with failures and deaths back to zero
(its last error is kept), gets a new score (priority, then this order) and one wake token,
capped. Ids not in the dead letters are skipped.

KEYS[1] dead            ZSET  dead job ids by finished_at_ms
KEYS[2] ready           ZSET  ready job ids by score
KEYS[3] seq             STR   counter behind the FIFO part of ready scores
KEYS[4] wake            LIST  wake tokens
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] now_ms          the caller's clock (the jobs' new run_at_ms)
ARGV[3] priority_max    highest priority; score = (priority_max - priority) * 2^44 + seq
ARGV[4] wake_cap        longest the wake list may grow
ARGV[5] limit           with no ids: how many of the oldest dead jobs to take
ARGV[6..] job ids; none means the `limit` oldest dead jobs

Returns: {moved, looked at}; with no ids the caller repeats while looked at == limit.
]]
local dead_key = KEYS[1]
local ready_key = KEYS[2]
local seq_key = KEYS[3]
local wake_key = KEYS[4]
local job_prefix = ARGV[1]
local now_ms = ARGV[2]
local priority_max = tonumber(ARGV[3])
local wake_cap = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local BAND = 17592186044416 -- 2^44

local ids = {}
if #ARGV >= 6 then
  for i = 6, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
else
  ids = redis.call('ZRANGE', dead_key, 0, limit - 1)
end

local moved = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', dead_key, id) == 1 then
    local key = job_prefix .. id
    local priority = redis.call('HGET', key, 'priority')
    if priority then
      local seq = redis.call('INCR', seq_key)
      local score = string.format('%d', (priority_max - tonumber(priority)) * BAND + seq)
      redis.call('HSET', key, 'status', 'queued', 'score', score, 'failures', '0',
        'deaths', '0', 'run_at_ms', now_ms)
      redis.call('HDEL', key, 'death_log', 'finished_at_ms', 'worker_id', 'suspect', 'isolated')
      redis.call('ZADD', ready_key, score, id)
      moved = moved + 1
    end
  end
end

local tokens = math.min(moved, wake_cap - redis.call('LLEN', wake_key))
for _ = 1, tokens do
  redis.call('RPUSH', wake_key, '1')
end
return {moved, #ids}
