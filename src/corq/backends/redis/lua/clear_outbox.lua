--[[
clear_outbox: remove settled ends from one queue's outbox.

Per entry: the watchers that took the end in leave the job's notify set; the entry leaves
the outbox only if its score is the one it was read with (a job that ended again since,
after a retry of its dead letter, keeps its new end).

KEYS[1] outbox          ZSET  ended jobs (msgpack [id, workflow]) -> when noted
ARGV[1] notify_prefix   a job's watchers are notify_prefix .. id
ARGV[2..] per entry: the entry, its score as read, the job id, the number of watchers,
          then those watchers

Returns: how many entries left the outbox.
]]
local outbox_key = KEYS[1]
local notify_prefix = ARGV[1]

local removed = 0
local at = 2
while at <= #ARGV do
  local entry, score, id, n = ARGV[at], ARGV[at + 1], ARGV[at + 2], tonumber(ARGV[at + 3])
  if n > 0 then
    redis.call('SREM', notify_prefix .. id, unpack(ARGV, at + 4, at + 3 + n))
  end
  local now = redis.call('ZSCORE', outbox_key, entry)
  if now and tonumber(now) == tonumber(score) then
    redis.call('ZREM', outbox_key, entry)
    removed = removed + 1
  end
  at = at + 4 + n
end
return removed
