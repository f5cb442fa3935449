--[[
release_jobs: give jobs one worker holds in one queue back to the head of the queue
(fenced; used at shutdown).

A job is released only while its record says running, held by this worker, under the
given fence; otherwise nothing changes for it. A released job is queued again at the score
it had (so ahead of everything that came after it), no longer held by anyone; an attempt
whose task body never started is not counted. One wake token per released job, capped.

KEYS[1] held            SET   ids this worker holds in the queue
KEYS[2] ready           ZSET  ready job ids by score
KEYS[3] wake            LIST  wake tokens
KEYS[4] suspects      ZSET  suspect job ids by score (released suspects go back there)
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] worker_id       the releasing worker
ARGV[3] wake_cap        longest the wake list may grow
ARGV[4..] three per job: id, fence, unstarted (1/0)

Returns: one integer per job, in order: 1 released, 0 refused by the fence check.
]]
local held_key = KEYS[1]
local ready_key = KEYS[2]
local wake_key = KEYS[3]
local suspects_key = KEYS[4]
local job_prefix = ARGV[1]
local worker_id = ARGV[2]
local wake_cap = tonumber(ARGV[3])
local FIRST, WIDTH = 4, 3

local out = {}
local released = 0
for at = FIRST, #ARGV, WIDTH do
  local id, fence, unstarted = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local key = job_prefix .. id
  local f = redis.call('HMGET', key, 'status', 'worker_id', 'fence', 'score', 'suspect')
  if f[1] == 'running' and f[2] == worker_id and tonumber(f[3]) == tonumber(fence) then
    if unstarted == '1' then
      redis.call('HINCRBY', key, 'attempt', -1)
    end
    redis.call('HSET', key, 'status', 'queued')
    redis.call('HDEL', key, 'worker_id')
    -- A suspect goes back among the suspects: it still must run alone.
    redis.call('ZADD', f[5] == '1' and suspects_key or ready_key, f[4], id)
    redis.call('SREM', held_key, id)
    released = released + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end

local tokens = math.min(released, wake_cap - redis.call('LLEN', wake_key))
for _ = 1, tokens do
  redis.call('RPUSH', wake_key, '1')
end
return out
