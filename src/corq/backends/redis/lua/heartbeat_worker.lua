--[[
heartbeat_worker: renew one worker's lease in one queue, unless it was reclaimed.

A worker that is no longer registered (its lease passed and reclaim_stalled_jobs removed
it) is not added back: its jobs went to others, so it must learn it lost them.

KEYS[1] workers         ZSET  worker id -> lease deadline
ARGV[1] worker_id       the worker
ARGV[2] deadline_ms     the new lease deadline (now + lease)

Returns: 1 renewed, 0 the worker was not registered (lost).
]]
local workers_key = KEYS[1]
local worker_id = ARGV[1]
local deadline_ms = ARGV[2]

if not redis.call('ZSCORE', workers_key, worker_id) then
  return 0
end
redis.call('ZADD', workers_key, deadline_ms, worker_id)
return 1
