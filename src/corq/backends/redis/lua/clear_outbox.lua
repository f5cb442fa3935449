--[[
clear_outbox: remove settled ends from one queue's outbox.

Per entry: the watchers that took the end in leave the job's notify set; the entry leaves
the outbox only if its score is the one it was read with (a job that ended again since,
after a retry of its dead letter, keeps its new entry).

KEYS[1] outbox          ZSET  ended job ids -> when their end was noted
ARGV[1] notify_prefix   a job's watchers are notify_prefix .. id
ARGV[2..] per entry: id, score as read, the number of watchers, then those watchers

Returns: how many entries left the outbox.
]]
local outbox_key = KEYS[1]
local notify_prefix = ARGV[1]

local removed = 0
local at = 2
while at <= #ARGV do
  local id, score, n = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
  if n > 0 then
    redis.call('SREM', notify_prefix .. id, unpack(ARGV, at + 3, at + 2 + n))
  end
  local now = redis.call('ZSCORE', outbox_key, id)
  if now and tonumber(now) == tonumber(score) then
    redis.call('ZREM', outbox_key, id)
    removed = removed + 1
  end
  at = at + 3 + n
end
return removed
