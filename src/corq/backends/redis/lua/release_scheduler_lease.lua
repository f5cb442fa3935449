--[[
release_scheduler_lease: give the scheduler leadership up (at shutdown), so a standby
takes it at its next try instead of waiting for the lease to pass.

KEYS[1] leader          HASH  holder, fence, deadline_ms
ARGV[1] holder          who gives it up

Returns: 1 released; 0 when `holder` did not have it (nothing changed).
]]
--- @include "keys"
local leader_key = KEYS[1]
local holder = ARGV[1]

expect_types({leader_key, 'hash'})
if redis.call('HGET', leader_key, 'holder') ~= holder then
  return 0
end
redis.call('DEL', leader_key)
return 1
