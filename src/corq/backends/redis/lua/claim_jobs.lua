--[[
claim_jobs: hand up to `count` ready jobs of one queue to a registered worker.

Checks the worker is still registered (else claims nothing and reports it lost), renews
its lease, promotes delayed jobs whose time has come, then pops the best-scored ready jobs:
each becomes running under the worker with attempt + 1 and a new fence, and joins the
worker's held set. If ready jobs remain and no wake token is pending, one is pushed so
another idle worker comes to help (chain wake-up).

KEYS[1] workers        ZSET  worker id -> lease deadline
KEYS[2] ready          ZSET  ready job ids by score
KEYS[3] delayed        ZSET  delayed job ids by run_at_ms
KEYS[4] seq            STR   counter behind the FIFO part of ready scores
KEYS[5] wake           LIST  wake tokens
KEYS[6] held           SET   ids this worker holds in the queue
KEYS[7] suspects       ZSET  suspect job ids by score: only an idle worker takes one, alone
ARGV[1] job_prefix     a record's key is job_prefix .. id
ARGV[2] worker_id      the claiming worker
ARGV[3] count          most jobs to claim
ARGV[4] lease_ms       lease length from now
ARGV[5] now_ms         the caller's clock
ARGV[6] promote_limit  most delayed jobs to promote in this call
ARGV[7] priority_max   highest priority; score = (priority_max - priority) * 2^44 + seq
ARGV[8] idle           '1' when the worker runs nothing at all: it may take a suspect

Returns: {1} when the worker is not registered; otherwise {0, next_due_ms or nil,
suspects still waiting, 1 if this claim is one isolated suspect else 0, then ten per job: id, task, payload, attempt, failures, deaths, fence, enqueued_at_ms,
run_at_ms, priority}.
]]
local workers_key = KEYS[1]
local ready_key = KEYS[2]
local delayed_key = KEYS[3]
local seq_key = KEYS[4]
local wake_key = KEYS[5]
local held_key = KEYS[6]
local suspects_key = KEYS[7]
local job_prefix = ARGV[1]
local worker_id = ARGV[2]
local count = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])
local now_ms = ARGV[5]
local promote_limit = tonumber(ARGV[6])
local priority_max = tonumber(ARGV[7])
local idle_flag = ARGV[8]
local idle = idle_flag == '1'
local BAND = 17592186044416 -- 2^44
local CHUNK = 1000 -- arguments per unpack(), well below Lua's stack limit

local function int(x)
  return string.format('%d', x)
end

local function call_chunked(command, key, items)
  for first = 1, #items, CHUNK do
    redis.call(command, key, unpack(items, first, math.min(first + CHUNK - 1, #items)))
  end
end

if not redis.call('ZSCORE', workers_key, worker_id) then
  return {1}
end
redis.call('ZADD', workers_key, int(tonumber(now_ms) + lease_ms), worker_id)

-- Promote due delayed jobs (kept in step with promote_due_jobs.lua).
local due = redis.call('ZRANGEBYSCORE', delayed_key, '-inf', now_ms, 'LIMIT', 0, promote_limit)
if #due > 0 then
  local seq = redis.call('INCRBY', seq_key, #due) - #due
  for _, id in ipairs(due) do
    local key = job_prefix .. id
    local f = redis.call('HMGET', key, 'priority', 'suspect')
    if f[1] then
      seq = seq + 1
      local score = int((priority_max - tonumber(f[1])) * BAND + seq)
      redis.call('HSET', key, 'status', 'queued', 'score', score)
      redis.call('ZADD', f[2] == '1' and suspects_key or ready_key, score, id)
    end
  end
  call_chunked('ZREM', delayed_key, due)
end

local out = {0, false, 0, 0}
local claimed = {}
-- An idle worker takes one suspect alone (isolated) before anything else.
local isolated = idle and count > 0 and redis.call('ZCARD', suspects_key) > 0
if isolated then
  out[4] = 1
end
if count > 0 then
  local popped
  if isolated then
    popped = redis.call('ZPOPMIN', suspects_key, 1)
  else
    popped = redis.call('ZPOPMIN', ready_key, count)
  end
  for i = 1, #popped, 2 do
    local id = popped[i]
    local key = job_prefix .. id
    local f = redis.call('HMGET', key, 'task', 'payload', 'attempt', 'failures', 'deaths',
      'fence', 'enqueued_at_ms', 'run_at_ms', 'priority')
    if not f[1] and redis.call('EXISTS', key) == 1 then
      -- A damaged record (no task name) is still handed out, so the worker sends it to
      -- the dead letters with a clear error instead of it vanishing from the queue.
      f[1] = ''
    end
    if f[1] then
      local attempt = int(tonumber(f[3] or '0') + 1)
      local fence = int(tonumber(f[6] or '0') + 1)
      redis.call('HSET', key, 'status', 'running', 'attempt', attempt, 'fence', fence,
        'worker_id', worker_id, 'started_at_ms', now_ms, 'isolated', isolated and '1' or '0')
      claimed[#claimed + 1] = id
      local n = #out
      out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, f[1], f[2] or '', attempt
      out[n + 5], out[n + 6], out[n + 7] = f[4] or '0', f[5] or '0', fence
      out[n + 8], out[n + 9], out[n + 10] = f[7] or '0', f[8] or '0', f[9] or '0'
    end
  end
  call_chunked('SADD', held_key, claimed)
end

if redis.call('LLEN', wake_key) == 0 and redis.call('ZCARD', ready_key) > 0 then
  redis.call('RPUSH', wake_key, '1')
end

local first_due = redis.call('ZRANGE', delayed_key, 0, 0, 'WITHSCORES')
if #first_due > 0 then
  out[2] = first_due[2]
end
out[3] = redis.call('ZCARD', suspects_key)
return out
