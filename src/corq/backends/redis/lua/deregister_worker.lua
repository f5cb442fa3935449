--[[
deregister_worker: remove a worker from one queue after a clean shutdown.

A worker should hold nothing by then. If it still does, its jobs must not be orphaned
(running forever under nobody): its lease is ended instead, so the next
reclaim_stalled_jobs takes them back like those of a dead worker.

KEYS[1] workers         ZSET  worker id -> lease deadline
KEYS[2] held            SET   ids this worker holds in the queue
ARGV[1] worker_id       the worker

Returns: 1 removed, 0 it still held jobs (its lease now ends at 0 for reclaim).
]]
local workers_key = KEYS[1]
local held_key = KEYS[2]
local worker_id = ARGV[1]

if redis.call('SCARD', held_key) > 0 then
  if redis.call('ZSCORE', workers_key, worker_id) then
    redis.call('ZADD', workers_key, 0, worker_id)
  end
  return 0
end
redis.call('ZREM', workers_key, worker_id)
redis.call('DEL', held_key)
return 1
