--[[
cancel_job: cancel one job that has not started (scheduled, waiting for its parents,
queued, or failed and waiting for a retry).

The job leaves the ready, delayed, suspects and waiting sets, becomes cancelled with
finished_at_ms, its record expires after ttl_ms (at least keep_ms for a job some workflow
reads) and its id is published on its done channel. A job of a workflow, or one a workflow
watches, notes its end in the outbox (its dependents are failed by the settle that
follows). Its unique key is freed (see the unique include). A job in any other state, or a key that is not a job hash, is left alone.

KEYS[1] job             HASH  the job record
KEYS[2] ready           ZSET  ready job ids by score
KEYS[3] delayed         ZSET  delayed job ids by run_at_ms
KEYS[4] suspects        ZSET  suspects (a waiting suspect can be cancelled too)
KEYS[5] outbox          ZSET  ended workflow jobs -> end time
KEYS[6] waiting         SET   ids of jobs waiting for their parents
KEYS[7] unique          HASH  unique key -> job holding it (an end frees it)
KEYS[8] unique_kept     ZSET  unique keys kept after their job's end
ARGV[1] job_id          the job
ARGV[2] done_channel    the job's done channel
ARGV[3] now_ms          the caller's clock, or '' for the broker's
ARGV[4] ttl_ms          how long the cancelled record is kept
ARGV[5] keep_ms         least a workflow job's record is kept (WORKFLOW_KEEP_MS)

Returns: 1 cancelled, 0 not cancellable (or no such job).
]]
--- @include "now"
--- @include "keys"
--- @include "outbox"
--- @include "unique"
local job_key = KEYS[1]
local ready_key = KEYS[2]
local delayed_key = KEYS[3]
local suspects_key = KEYS[4]
local outbox_key = KEYS[5]
local waiting_key = KEYS[6]
local unique_key = KEYS[7]
local unique_kept_key = KEYS[8]
local job_id = ARGV[1]
local done_channel = ARGV[2]
local now_ms = resolve_now(ARGV[3])
local ttl_ms = tonumber(ARGV[4])
local keep_ms = tonumber(ARGV[5])

local CANCELLABLE = {scheduled = true, waiting = true, queued = true, failed = true}

expect_types({ready_key, 'zset', delayed_key, 'zset', suspects_key, 'zset', outbox_key, 'zset',
  waiting_key, 'set', unique_key, 'hash', unique_kept_key, 'zset'})
local f = redis.pcall('HMGET', job_key, 'status', 'workflow', 'notify', 'unique_key',
  'unique_for_ms')
if f.err or not CANCELLABLE[f[1]] then
  return 0 -- also when the key is not a hash
end
local workflow, notify = f[2], f[3]
redis.call('ZREM', ready_key, job_id)
redis.call('ZREM', delayed_key, job_id)
redis.call('ZREM', suspects_key, job_id)
redis.call('SREM', waiting_key, job_id)
redis.call('HSET', job_key, 'status', 'cancelled', 'finished_at_ms', int(now_ms))
redis.call('PEXPIRE', job_key, kept_ms(ttl_ms, keep_ms, workflow, notify))
redis.call('PUBLISH', done_channel, job_id)
note_end(outbox_key, job_id, int(now_ms), workflow, notify)
free_unique({unique = unique_key, unique_kept = unique_kept_key}, job_id, f[4], f[5], int(now_ms))
return 1
