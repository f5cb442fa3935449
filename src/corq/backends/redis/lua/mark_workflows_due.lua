--[[
mark_workflows_due: note multi-step workflow writes under way, for maintenance to look at
if their writer dies (tend_workflows).

Each member (``<operation>/<workflow id>``) is due at now + delay_ms; its writer removes it
when done.

KEYS[1] tend            ZSET  member -> when maintenance must look at it
ARGV[1] now_ms          the caller's clock, or '' for the broker's
ARGV[2] delay_ms        how long the writer has before maintenance steps in
ARGV[3..] members

Returns: the due time (ms).
]]
--- @include "now"
local tend_key = KEYS[1]
local now_ms = resolve_now(ARGV[1])
local delay_ms = tonumber(ARGV[2])
local FIRST = 3

local due = int(now_ms + delay_ms)
for at = FIRST, #ARGV do
  redis.call('ZADD', tend_key, due, ARGV[at])
end
return tonumber(due)
