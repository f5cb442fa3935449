--[[
end_leases: end the lease of every other incarnation of one worker in one queue.

A worker process restarted under the same worker id knows its predecessor is dead: every
registration whose holder id starts with `worker_prefix` (the worker id and '~'), except
the caller's own holder, gets deadline 0, so the next reclaim (even one taking only ended
leases) takes its jobs back at once.

KEYS[1] workers         ZSET  holder id -> lease deadline
ARGV[1] worker_prefix   worker id .. '~'
ARGV[2] holder          the caller's own holder (kept)

Returns: how many registrations now have an ended lease.
]]
--- @include "keys"
local workers_key = KEYS[1]
local worker_prefix = ARGV[1]
local holder = ARGV[2]

expect_types({workers_key, 'zset'})
local ended = 0
for _, other in ipairs(redis.call('ZRANGE', workers_key, 0, -1)) do
  if other ~= holder and string.sub(other, 1, #worker_prefix) == worker_prefix then
    redis.call('ZADD', workers_key, 0, other)
    ended = ended + 1
  end
end
return ended
