--[[
heartbeat_worker: renew one holder's lease in one queue, unless it was reclaimed.

A holder that is no longer registered (its lease passed and reclaim_stalled_jobs took it
out, even if its jobs are still being taken back) is not added back: its jobs go to others,
so it must learn it lost them.

KEYS[1] workers         ZSET  holder id -> lease deadline
ARGV[1] holder          the holder
ARGV[2] now_ms          the caller's clock, or '' for the broker's
ARGV[3] lease_ms        lease length from now

Returns: 1 renewed, 0 the holder was not registered (lost).
]]
--- @include "now"
local workers_key = KEYS[1]
local holder = ARGV[1]
local now_ms = resolve_now(ARGV[2])
local lease_ms = tonumber(ARGV[3])

if not redis.call('ZSCORE', workers_key, holder) then
  return 0
end
redis.call('ZADD', workers_key, int(now_ms + lease_ms), holder)
return 1
