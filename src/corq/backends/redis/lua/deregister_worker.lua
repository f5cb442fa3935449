--[[
deregister_worker: remove one holder from one queue after a shutdown.

First the holder leaves the idle list and the jobs handed to it that it never took (its
inbox) go back unstarted (the inbox include), waking other workers for them (the wake
include). Then a holder that holds nothing is removed and its held set deleted. One that
still holds jobs (a thread that outlived the grace period) must not orphan them: it stays
registered but departed, its lease ending linger_ms from now (at once with no linger:
deadline 0, an ended lease), after which reclaim_stalled_jobs gives its jobs back without
a death.

KEYS[1] workers         ZSET  holder id -> lease deadline
KEYS[2] held            SET   ids this holder holds in the queue
KEYS[3] departed        SET   holders that deregistered while holding jobs
KEYS[4] idle            ZSET  idle holders waiting to be handed a job
KEYS[5] ready           ZSET  ready job ids by score (inbox jobs go back here)
KEYS[6] suspects        ZSET  suspect job ids by score
KEYS[7] wake            LIST  wake tokens
KEYS[8] dead            ZSET  dead letters (a damaged record met by a hand-over goes there)
KEYS[9] outbox          ZSET  ended workflow jobs (such a buried one ends)
KEYS[10] rules          HASH  task -> its encoded rules (an inbox job goes back to its lane)
KEYS[11] groups         ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[12] parked         SET   groups and keys at their concurrency
KEYS[13] throttled      ZSET  groups and keys over a rate -> when due
KEYS[14] active         HASH  running counts per task and lane (its slots are freed)
KEYS[15] tat            HASH  GCRA theoretical arrival times
KEYS[16] flow           HASH  counters (expired, dropped, laned, turn)
KEYS[17] expiring       ZSET  job id -> start_by_ms
KEYS[18]       events          STREAM the queue's lifecycle events (the events include)
ARGV[1] holder          the holder
ARGV[2] now_ms          the caller's clock, or '' for the broker's
ARGV[3] linger_ms       how long a departed holder's jobs may still finish
ARGV[4] job_prefix      a record's key is job_prefix .. id
ARGV[5] done_prefix     a job's done channel is done_prefix .. id
ARGV[6] held_prefix     a holder's held set is held_prefix .. holder
ARGV[7] inbox_prefix    a holder's inbox is inbox_prefix .. holder
ARGV[8] queue           the queue's name (handed out with each job)
ARGV[9] batch           most dead letters to trim
ARGV[10] dead_max       most dead letters kept (0: no limit)
ARGV[11] dead_ttl_ms    longest a dead letter is kept (0: no limit)
ARGV[12] wake_cap       longest the wake list may grow
ARGV[13] lane_prefix    a lane's jobs are lane_prefix .. lane
ARGV[14] keys_prefix    a task's rotation of keys is keys_prefix .. task

Returns: 1 removed, 0 departed (it still holds jobs), -1 it was not registered.
]]
--- @include "now"
--- @include "keys"
--- @include "inbox"
--- @include "events"
local workers_key = KEYS[1]
local held_key = KEYS[2]
local departed_key = KEYS[3]
local idle_key = KEYS[4]
local ready_key = KEYS[5]
local suspects_key = KEYS[6]
local wake_key = KEYS[7]
local dead_key = KEYS[8]
local outbox_key = KEYS[9]
local holder = ARGV[1]
local now_ms = resolve_now(ARGV[2])
local linger_ms = tonumber(ARGV[3])
local job_prefix = ARGV[4]
local done_prefix = ARGV[5]
local held_prefix = ARGV[6]
local inbox_prefix = ARGV[7]
local queue = ARGV[8]
local batch = tonumber(ARGV[9])
local dead_max = tonumber(ARGV[10])
local dead_ttl_ms = tonumber(ARGV[11])
local wake_cap = tonumber(ARGV[12])
local rules_key = KEYS[10]
local groups_key = KEYS[11]
local parked_key = KEYS[12]
local throttled_key = KEYS[13]
local active_key = KEYS[14]
local tat_key = KEYS[15]
local flow_key = KEYS[16]
local expiring_key = KEYS[17]
local events_key = KEYS[18]
local lane_prefix = ARGV[13]
local keys_prefix = ARGV[14]

local h = {job_prefix = job_prefix, ready = ready_key, suspects = suspects_key,
  dead = dead_key, outbox = outbox_key, done_prefix = done_prefix, batch = batch,
  dead_max = dead_max, dead_ttl_ms = dead_ttl_ms, events = events_key}
with_flow(h, rules_key, groups_key, parked_key, throttled_key, active_key, tat_key,
  flow_key, expiring_key, lane_prefix, keys_prefix)
with_handover(h, workers_key, idle_key, held_prefix, inbox_prefix, queue, now_ms, wake_key,
  wake_cap)

expect_types({workers_key, 'zset', held_key, 'set', departed_key, 'set', idle_key, 'zset',
  ready_key, 'zset', suspects_key, 'zset', wake_key, 'list'})
wake_ready(h, #give_back_inbox(h, holder, held_key))

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
