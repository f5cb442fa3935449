--[[
register_worker: add (or add again) one holder to one queue with a fresh lease.

A holder registering again is no longer departed. Its held set is its own: the ids of an
earlier registration of the same id that reclaim is still taking back wait elsewhere.

KEYS[1] workers         ZSET  holder id -> lease deadline
KEYS[2] departed        SET   holders that deregistered while holding jobs
ARGV[1] holder          the holder
ARGV[2] now_ms          the caller's clock, or '' for the broker's
ARGV[3] lease_ms        lease length from now

Returns: the lease deadline (ms).
]]
--- @include "now"
--- @include "keys"
local workers_key = KEYS[1]
local departed_key = KEYS[2]
local holder = ARGV[1]
local now_ms = resolve_now(ARGV[2])
local lease_ms = tonumber(ARGV[3])

expect_types({workers_key, 'zset', departed_key, 'set'})
local deadline = int(now_ms + lease_ms)
redis.call('ZADD', workers_key, deadline, holder)
redis.call('SREM', departed_key, holder)
return tonumber(deadline)
