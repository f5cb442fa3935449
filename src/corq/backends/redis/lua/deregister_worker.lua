--[[
deregister_worker: remove one holder from one queue after a shutdown.

A holder that holds nothing is removed and its held set deleted. One that still holds jobs
(a thread that outlived the grace period) must not orphan them: it stays registered but
departed, its lease ending linger_ms from now (at once with no linger: deadline 0, an
ended lease), after which reclaim_stalled_jobs gives its jobs back without a death.

KEYS[1] workers         ZSET  holder id -> lease deadline
KEYS[2] held            SET   ids this holder holds in the queue
KEYS[3] departed        SET   holders that deregistered while holding jobs
ARGV[1] holder          the holder
ARGV[2] now_ms          the caller's clock, or '' for the broker's
ARGV[3] linger_ms       how long a departed holder's jobs may still finish

Returns: 1 removed, 0 departed (it still holds jobs), -1 it was not registered.
]]
--- @include "now"
--- @include "keys"
local workers_key = KEYS[1]
local held_key = KEYS[2]
local departed_key = KEYS[3]
local holder = ARGV[1]
local now_ms = resolve_now(ARGV[2])
local linger_ms = tonumber(ARGV[3])

expect_types({workers_key, 'zset', held_key, 'set', departed_key, 'set'})
if redis.call('SCARD', held_key) == 0 then
  local removed = redis.call('ZREM', workers_key, holder)
  redis.call('DEL', held_key)
  redis.call('SREM', departed_key, holder)
  return removed == 1 and 1 or -1
end
if not redis.call('ZSCORE', workers_key, holder) then
  return -1 -- being reclaimed already: its jobs are on their way back
end
local deadline = linger_ms > 0 and int(now_ms + linger_ms) or '0'
redis.call('ZADD', workers_key, deadline, holder)
redis.call('SADD', departed_key, holder)
return 0
