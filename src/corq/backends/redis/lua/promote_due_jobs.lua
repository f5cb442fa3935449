--[[
promote_due_jobs: move delayed jobs of one queue whose time has come to the ready set.

Scheduled jobs and failed jobs waiting for a retry both become queued, with a new score
(priority, then the order of promotion); flagged suspects go back among the suspects. At
most `batch` per call: the caller repeats while more may be due. A damaged record goes to
the dead letters and the rest go on. Each promoted job wakes a worker (the wake include:
handed to an idle holder, else a wake token, the wake list capped).

KEYS[1] delayed        ZSET  delayed job ids by run_at_ms
KEYS[2] ready          ZSET  ready job ids by score
KEYS[3] seq            STR   counter behind the FIFO part of ready scores
KEYS[4] wake           LIST  wake tokens
KEYS[5] suspects       ZSET  where a promoted suspect goes
KEYS[6] dead           ZSET  dead job ids by finished_at_ms
KEYS[7] outbox         ZSET  ended workflow jobs (a damaged one buried here ends)
KEYS[8]  rules           HASH  task -> its encoded rules
KEYS[9]  groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[10] parked          SET   groups and keys at their concurrency
KEYS[11] throttled       ZSET  groups and keys over a rate -> when due
KEYS[12] active          HASH  running counts per task and lane
KEYS[13] tat             HASH  GCRA theoretical arrival times
KEYS[14] flow            HASH  counters (expired, dropped, laned, turn)
KEYS[15] expiring        ZSET  job id -> start_by_ms
KEYS[16] workers         ZSET  holder id -> lease deadline (hand-overs go to live holders)
KEYS[17] idle            ZSET  idle holders waiting to be handed a job (the wake include)
KEYS[18] unique          HASH  unique key -> job holding it (an end frees it)
KEYS[19] unique_kept     ZSET  unique keys kept after their job's end
KEYS[20] cooldown        HASH  cooldown key -> '<until>:<job id>'
KEYS[21] cooldown_until  ZSET  cooldown key -> until
KEYS[22]       events          STREAM the queue's lifecycle events (the events include)
ARGV[1] job_prefix     a record's key is job_prefix .. id
ARGV[2] done_prefix    a job's done channel is done_prefix .. id
ARGV[3] now_ms         the caller's clock, or '' for the broker's; run_at_ms <= now is due
ARGV[4] batch          most jobs to promote (and dead letters to trim) in this call
ARGV[5] priority_min   lowest valid priority
ARGV[6] priority_max   highest valid priority (for the ready score)
ARGV[7] wake_cap       longest the wake list may grow
ARGV[8] dead_max       most dead letters kept (0: no limit)
ARGV[9] dead_ttl_ms    longest a dead letter is kept (0: no limit)
ARGV[10] lane_prefix   a lane's jobs are lane_prefix .. lane
ARGV[11] keys_prefix   a task's rotation of keys is keys_prefix .. task
ARGV[12] held_prefix     a holder's held set is held_prefix .. holder
ARGV[13] inbox_prefix    a holder's inbox is inbox_prefix .. holder
ARGV[14] queue           the queue's name (handed out with each job)
A promoted job goes back to its lane (the record's); with throttled lanes or deadlines
(one EXISTS) the jobs past their deadline end expired first and the throttled lanes due
are restored; the earliest time returned is then the earlier of the delayed head and the
next throttled lane. At most `batch` unique keys whose window after their job's end has
closed, and as many closed cooldown windows, are pruned (the unique include; one EXISTS
when there are none), and the next one due counts among the earliest times, so the
promoter comes back for it.

Returns: {promoted count, earliest run_at_ms left in the delayed set or nil, 1 when more
may be due (call again) else 0}.
]]
--- @include "now"
--- @include "keys"
--- @include "wake"
--- @include "promote"
--- @include "unique"
--- @include "delayed"
--- @include "limits"
--- @include "events"
local delayed_key = KEYS[1]
local ready_key = KEYS[2]
local seq_key = KEYS[3]
local wake_key = KEYS[4]
local suspects_key = KEYS[5]
local dead_key = KEYS[6]
local outbox_key = KEYS[7]
local job_prefix = ARGV[1]
local done_prefix = ARGV[2]
local now_ms = resolve_now(ARGV[3])
local batch = tonumber(ARGV[4])
local priority_min = tonumber(ARGV[5])
local priority_max = tonumber(ARGV[6])
local wake_cap = tonumber(ARGV[7])
local dead_max = tonumber(ARGV[8])
local dead_ttl_ms = tonumber(ARGV[9])
local rules_key = KEYS[8]
local groups_key = KEYS[9]
local parked_key = KEYS[10]
local throttled_key = KEYS[11]
local active_key = KEYS[12]
local tat_key = KEYS[13]
local flow_key = KEYS[14]
local expiring_key = KEYS[15]
local lane_prefix = ARGV[10]
local keys_prefix = ARGV[11]
local workers_key = KEYS[16]
local idle_key = KEYS[17]
local unique_key = KEYS[18]
local unique_kept_key = KEYS[19]
local cooldown_key = KEYS[20]
local cooldown_until_key = KEYS[21]
local events_key = KEYS[22]
local held_prefix = ARGV[12]
local inbox_prefix = ARGV[13]
local queue = ARGV[14]

local q = {
  ready = ready_key, delayed = delayed_key, suspects = suspects_key, seq = seq_key,
  dead = dead_key, outbox = outbox_key, job_prefix = job_prefix, done_prefix = done_prefix, batch = batch,
  priority_min = priority_min, priority_max = priority_max, dead_max = dead_max,
  dead_ttl_ms = dead_ttl_ms, rules = rules_key, groups = groups_key, parked = parked_key,
  throttled = throttled_key, active = active_key, tat = tat_key, flow = flow_key,
  expiring = expiring_key, lane_prefix = lane_prefix, keys_prefix = keys_prefix,
}
q.events = events_key
q.unique, q.unique_kept = unique_key, unique_kept_key
q.cooldown, q.cooldown_until = cooldown_key, cooldown_until_key

expect_types({delayed_key, 'zset', ready_key, 'zset', seq_key, 'string', wake_key, 'list',
  suspects_key, 'zset', dead_key, 'zset', outbox_key, 'zset'})
local pruning = redis.call('EXISTS', unique_kept_key, cooldown_until_key) > 0
if pruning then
  expect_types({unique_key, 'hash', unique_kept_key, 'zset', cooldown_key, 'hash',
    cooldown_until_key, 'zset'})
end

local flowing = redis.call('EXISTS', throttled_key, expiring_key) > 0
local restored = 0
if flowing then
  expect_types({rules_key, 'hash', groups_key, 'zset', parked_key, 'set', throttled_key, 'zset',
    active_key, 'hash', tat_key, 'hash', flow_key, 'hash', expiring_key, 'zset'})
  expire_due(q, now_ms, batch)
  restored = restore_due(q, now_ms, batch)
end
local promoted, buried, more = promote_due(q, now_ms, batch)
if buried > 0 then
  trim_dead(q, now_ms)
end
with_handover(q, workers_key, idle_key, held_prefix, inbox_prefix, queue, now_ms, wake_key,
  wake_cap)
wake_ready(q, promoted + restored)

local first_due = delayed_head(delayed_key)
if flowing then
  first_due = earlier(first_due, throttled_head(q))
end
if pruning then
  first_due = earlier(first_due, prune_unique(q, now_ms, batch))
end
return {promoted, first_due or false, more and 1 or 0}
