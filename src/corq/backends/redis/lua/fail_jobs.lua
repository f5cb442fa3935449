--[[
fail_jobs: record failed attempts of one worker in one queue (fenced).

A job is failed only while its record says running, held by this worker, under the given
fence; otherwise nothing changes for it. The error and traceback are stored; failures
grows by one when the attempt counted. With a retry time the job becomes failed and waits
in the delayed set until then; without one it becomes dead: it joins the dead letters
(scored by finished_at_ms, never expiring) and its id is published on its done channel.
A retry due before everything already delayed pushes one wake token (capped), so an idle
worker claims and learns the new next_due_ms.

KEYS[1] held            SET   ids this worker holds in the queue
KEYS[2] delayed         ZSET  delayed job ids by run_at_ms
KEYS[3] dead            ZSET  dead job ids by finished_at_ms
KEYS[4] wake            LIST  wake tokens
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] done_prefix     a job's done channel is done_prefix .. id
ARGV[3] worker_id       the failing worker
ARGV[4] wake_cap        longest the wake list may grow
ARGV[5..] seven per job: id, fence, counted (1/0), error, traceback ('' for none),
          retry_at_ms ('' for none: dead), finished_at_ms

Returns: one integer per job, in order: 1 recorded, 0 refused by the fence check.
]]
local held_key = KEYS[1]
local delayed_key = KEYS[2]
local dead_key = KEYS[3]
local wake_key = KEYS[4]
local job_prefix = ARGV[1]
local done_prefix = ARGV[2]
local worker_id = ARGV[3]
local wake_cap = tonumber(ARGV[4])
local FIRST, WIDTH = 5, 7

local old_head = redis.call('ZRANGE', delayed_key, 0, 0, 'WITHSCORES')[2]
local earliest_retry = nil

local out = {}
for at = FIRST, #ARGV, WIDTH do
  local id, fence, counted = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local traceback, retry_at, finished_at = ARGV[at + 4], ARGV[at + 5], ARGV[at + 6]
  local key = job_prefix .. id
  local f = redis.call('HMGET', key, 'status', 'worker_id', 'fence')
  if f[1] == 'running' and f[2] == worker_id and tonumber(f[3]) == tonumber(fence) then
    if counted == '1' then
      redis.call('HINCRBY', key, 'failures', 1)
    end
    redis.call('HSET', key, 'error', ARGV[at + 3])
    if traceback == '' then
      redis.call('HDEL', key, 'traceback')
    else
      redis.call('HSET', key, 'traceback', traceback)
    end
    redis.call('SREM', held_key, id)
    if retry_at ~= '' then
      redis.call('HSET', key, 'status', 'failed', 'run_at_ms', retry_at)
      redis.call('ZADD', delayed_key, retry_at, id)
      if not earliest_retry or tonumber(retry_at) < earliest_retry then
        earliest_retry = tonumber(retry_at)
      end
    else
      redis.call('HSET', key, 'status', 'dead', 'finished_at_ms', finished_at)
      redis.call('ZADD', dead_key, finished_at, id)
      redis.call('PUBLISH', done_prefix .. id, id)
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end

if earliest_retry and (not old_head or earliest_retry < tonumber(old_head)) then
  if redis.call('LLEN', wake_key) < wake_cap then
    redis.call('RPUSH', wake_key, '1')
  end
end
return out
