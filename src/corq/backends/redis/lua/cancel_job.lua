--[[
cancel_job: cancel one job that has not started (scheduled, queued, or failed and waiting
for a retry).

The job leaves the ready, delayed and suspects sets, becomes cancelled with
finished_at_ms, its record expires after ttl_ms and its id is published on its done
channel. A job in any other state, or a key that is not a job hash, is left alone.

KEYS[1] job             HASH  the job record
KEYS[2] ready           ZSET  ready job ids by score
KEYS[3] delayed         ZSET  delayed job ids by run_at_ms
KEYS[4] suspects        ZSET  suspects (a waiting suspect can be cancelled too)
ARGV[1] job_id          the job
ARGV[2] done_channel    the job's done channel
ARGV[3] now_ms          the caller's clock, or '' for the broker's
ARGV[4] ttl_ms          how long the cancelled record is kept

Returns: 1 cancelled, 0 not cancellable (or no such job).
]]
--- @include "now"
--- @include "keys"
local job_key = KEYS[1]
local ready_key = KEYS[2]
local delayed_key = KEYS[3]
local suspects_key = KEYS[4]
local job_id = ARGV[1]
local done_channel = ARGV[2]
local now_ms = resolve_now(ARGV[3])
local ttl_ms = ARGV[4]

expect_types({ready_key, 'zset', delayed_key, 'zset', suspects_key, 'zset'})
local status = redis.pcall('HGET', job_key, 'status')
if status ~= 'scheduled' and status ~= 'queued' and status ~= 'failed' then
  return 0 -- also when the key is not a hash (pcall gave an error value)
end
redis.call('ZREM', ready_key, job_id)
redis.call('ZREM', delayed_key, job_id)
redis.call('ZREM', suspects_key, job_id)
redis.call('HSET', job_key, 'status', 'cancelled', 'finished_at_ms', int(now_ms))
redis.call('PEXPIRE', job_key, ttl_ms)
redis.call('PUBLISH', done_channel, job_id)
return 1
