--[[
prune_queue: clear what is left of one queue that holds nothing, before its name is forgotten.

A queue holds nothing when it has no ready, delayed, suspect, dead or waiting job, no end
waiting in its outbox, no registered holder and no holder whose jobs are still being taken
back (running jobs are always held by one of those), and no unique key or cooldown window
kept open after its job (promotion prunes those, so the queue must stay known). Then its
FIFO counter, wake tokens, departed set, idle list, what is left of its unique and
cooldown maps, and its events stream (the history of jobs it no longer holds) are deleted
too.

KEYS[1] ready           ZSET  ready job ids
KEYS[2] delayed         ZSET  delayed job ids
KEYS[3] suspects        ZSET  suspect job ids
KEYS[4] dead            ZSET  dead job ids
KEYS[5] workers         ZSET  holder id -> lease deadline
KEYS[6] reclaiming      HASH  holders whose jobs reclaim is still taking back
KEYS[7] seq             STR   FIFO counter
KEYS[8] wake            LIST  wake tokens
KEYS[9] departed        SET   departed holders
KEYS[10] waiting        SET   ids of jobs waiting for their parents
KEYS[11] outbox         ZSET  ended workflow jobs not settled yet
KEYS[12] idle           ZSET  idle holders (none registered: stale)
KEYS[13] unique         HASH  unique key -> job holding it
KEYS[14] unique_kept    ZSET  unique keys kept after their job's end
KEYS[15] cooldown       HASH  cooldown key -> '<until>:<job id>'
KEYS[16] cooldown_until ZSET  cooldown key -> until
KEYS[17] events         STREAM the queue's lifecycle events

Returns: 1 when the queue held nothing (and was cleared), else 0.
]]
local ready_key = KEYS[1]
local delayed_key = KEYS[2]
local suspects_key = KEYS[3]
local dead_key = KEYS[4]
local workers_key = KEYS[5]
local reclaiming_key = KEYS[6]
local seq_key = KEYS[7]
local wake_key = KEYS[8]
local departed_key = KEYS[9]
local waiting_key = KEYS[10]
local outbox_key = KEYS[11]
local idle_key = KEYS[12]
local unique_key = KEYS[13]
local unique_kept_key = KEYS[14]
local cooldown_key = KEYS[15]
local cooldown_until_key = KEYS[16]
local events_key = KEYS[17]

if redis.call('EXISTS', ready_key, delayed_key, suspects_key, dead_key, workers_key,
    reclaiming_key, waiting_key, outbox_key, unique_kept_key, cooldown_until_key) > 0 then
  return 0
end
redis.call('DEL', seq_key, wake_key, departed_key, idle_key, unique_key, cooldown_key,
  events_key)
return 1
