--[[
cancel_job: cancel one job that has not started (scheduled, queued, or failed and waiting
for a retry).

The job leaves the ready and delayed sets, becomes cancelled with finished_at_ms, its
record expires after ttl_ms and its id is published on its done channel. A job in any
other state is left alone.

KEYS[1] job             HASH  the job record
KEYS[2] ready           ZSET  ready job ids by score
KEYS[3] delayed         ZSET  delayed job ids by run_at_ms
KEYS[4] suspects    ZSET  suspects (a waiting suspect can be cancelled too)
ARGV[1] job_id          the job
ARGV[2] done_channel    the job's done channel
ARGV[3] now_ms          the caller's clock
ARGV[4] ttl_ms          how long the cancelled record is kept

Returns: 1 cancelled, 0 not cancellable (or no such job).
]]
local job_key = KEYS[1]
local ready_key = KEYS[2]
local delayed_key = KEYS[3]
local suspects_key = KEYS[4]
local job_id = ARGV[1]
local done_channel = ARGV[2]
local now_ms = ARGV[3]
local ttl_ms = ARGV[4]

local status = redis.call('HGET', job_key, 'status')
if status ~= 'scheduled' and status ~= 'queued' and status ~= 'failed' then
  return 0
end
redis.call('ZREM', ready_key, job_id)
redis.call('ZREM', delayed_key, job_id)
redis.call('ZREM', suspects_key, job_id)
redis.call('HSET', job_key, 'status', 'cancelled', 'finished_at_ms', now_ms)
redis.call('PEXPIRE', job_key, ttl_ms)
redis.call('PUBLISH', done_channel, job_id)
return 1
