--[[
promote_due_jobs: move delayed jobs of one queue whose time has come to the ready set.

Scheduled jobs and failed jobs waiting for a retry both become queued, with a new score
(priority, then the order of promotion). One wake token per promoted job, the wake list
capped.

KEYS[1] delayed        ZSET  delayed job ids by run_at_ms
KEYS[2] ready          ZSET  ready job ids by score
KEYS[3] seq            STR   counter behind the FIFO part of ready scores
KEYS[4] wake           LIST  wake tokens
KEYS[5] suspects      ZSET  where a promoted suspect goes (it must run alone)
ARGV[1] job_prefix     a record's key is job_prefix .. id
ARGV[2] now_ms         the caller's clock; jobs with run_at_ms <= now_ms are due
ARGV[3] limit          most jobs to promote in this call
ARGV[4] priority_max   highest priority; score = (priority_max - priority) * 2^44 + seq
ARGV[5] wake_cap       longest the wake list may grow

Returns: {promoted count, earliest run_at_ms left in the delayed set or nil}.
]]
local delayed_key = KEYS[1]
local ready_key = KEYS[2]
local seq_key = KEYS[3]
local wake_key = KEYS[4]
local suspects_key = KEYS[5]
local job_prefix = ARGV[1]
local now_ms = ARGV[2]
local limit = tonumber(ARGV[3])
local priority_max = tonumber(ARGV[4])
local wake_cap = tonumber(ARGV[5])
local BAND = 17592186044416 -- 2^44
local CHUNK = 1000 -- arguments per unpack(), well below Lua's stack limit

local function int(x)
  return string.format('%d', x)
end

-- Kept in step with the promotion step of claim_jobs.lua.
local due = redis.call('ZRANGEBYSCORE', delayed_key, '-inf', now_ms, 'LIMIT', 0, limit)
local promoted = 0
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
      promoted = promoted + 1
    end
  end
  for first = 1, #due, CHUNK do
    redis.call('ZREM', delayed_key, unpack(due, first, math.min(first + CHUNK - 1, #due)))
  end
end

local tokens = math.min(promoted, wake_cap - redis.call('LLEN', wake_key))
for _ = 1, tokens do
  redis.call('RPUSH', wake_key, '1')
end

local first_due = redis.call('ZRANGE', delayed_key, 0, 0, 'WITHSCORES')
return {promoted, first_due[2] or false}
