--[[
release_jobs: give jobs one holder holds in one queue back to the head of the queue
(fenced; used at shutdown, by reconciliation, and when a job's own process died).

A job is released only while its record says running, held by this holder, under the
given fence, with a readable score, attempt and deaths; otherwise nothing changes for it (an
id whose key is not a hash leaves the held set). A released job is queued again at the
score it had (so ahead of everything that came after it), no longer held by anyone. An
attempt whose task body never started is not counted; when the job's own process died a
death is counted (deaths + 1, the holder joins death_log). It goes among the suspects when
asked to or when it already was one (release_held, the held include). Each released job
wakes a worker (the wake include: handed to an idle holder, else a wake token, capped).

KEYS[1] held            SET   ids this holder holds in the queue
KEYS[2] ready           ZSET  ready job ids by score
KEYS[3] wake            LIST  wake tokens
KEYS[4] suspects        ZSET  suspect job ids by score
KEYS[5]  rules           HASH  task -> its encoded rules
KEYS[6]  groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[7]  parked          SET   groups and keys at their concurrency
KEYS[8]  throttled       ZSET  groups and keys over a rate -> when due
KEYS[9]  active          HASH  running counts per task and lane
KEYS[10] tat             HASH  GCRA theoretical arrival times
KEYS[11] flow            HASH  counters (expired, dropped, laned, turn)
KEYS[12] expiring        ZSET  job id -> start_by_ms
KEYS[13] workers         ZSET  holder id -> lease deadline (hand-overs go to live holders)
KEYS[14] idle            ZSET  idle holders waiting to be handed a job (the wake include)
KEYS[15] dead            ZSET  dead letters (a damaged record met by a hand-over goes there)
KEYS[16] outbox          ZSET  ended workflow jobs (such a buried one ends)
KEYS[17]       events          STREAM the queue's lifecycle events (the events include)
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] holder          the releasing holder
ARGV[3] wake_cap        longest the wake list may grow
ARGV[4] lane_prefix     a lane's jobs are lane_prefix .. lane
ARGV[5] keys_prefix     a task's rotation of keys is keys_prefix .. task
ARGV[6] done_prefix     a job's done channel is done_prefix .. id
ARGV[7] held_prefix     a holder's held set is held_prefix .. holder
ARGV[8] inbox_prefix    a holder's inbox is inbox_prefix .. holder
ARGV[9] queue           the queue's name (handed out with each job)
ARGV[10] batch           most dead letters to trim
ARGV[11] dead_max        most dead letters kept (0: no limit)
ARGV[12] dead_ttl_ms     longest a dead letter is kept (0: no limit)
ARGV[13..] five per job: id, fence, unstarted (1/0), died (1/0), suspect (1/0)

A released job goes back to its own lane (the record's) and frees its slots.

Returns: one integer per job, in order: 1 released, 0 refused.
]]
--- @include "now"
--- @include "keys"
--- @include "record"
--- @include "wake"
--- @include "held"
--- @include "limits"
--- @include "events"
local held_key = KEYS[1]
local ready_key = KEYS[2]
local wake_key = KEYS[3]
local suspects_key = KEYS[4]
local job_prefix = ARGV[1]
local holder = ARGV[2]
local wake_cap = tonumber(ARGV[3])
local rules_key = KEYS[5]
local groups_key = KEYS[6]
local parked_key = KEYS[7]
local throttled_key = KEYS[8]
local active_key = KEYS[9]
local tat_key = KEYS[10]
local flow_key = KEYS[11]
local expiring_key = KEYS[12]
local lane_prefix = ARGV[4]
local keys_prefix = ARGV[5]
local workers_key = KEYS[13]
local idle_key = KEYS[14]
local dead_key = KEYS[15]
local outbox_key = KEYS[16]
local events_key = KEYS[17]
local done_prefix = ARGV[6]
local held_prefix = ARGV[7]
local inbox_prefix = ARGV[8]
local queue = ARGV[9]
local batch = tonumber(ARGV[10])
local dead_max = tonumber(ARGV[11])
local dead_ttl_ms = tonumber(ARGV[12])
local FIRST, WIDTH = 13, 5
local q = {ready = ready_key, suspects = suspects_key, job_prefix = job_prefix,
  wake = wake_key, wake_cap = wake_cap,
  workers = workers_key, idle = idle_key, dead = dead_key, outbox = outbox_key,
  done_prefix = done_prefix, held_prefix = held_prefix, inbox_prefix = inbox_prefix,
  queue = queue, batch = batch, dead_max = dead_max, dead_ttl_ms = dead_ttl_ms}
q.events = events_key
with_flow(q, rules_key, groups_key, parked_key, throttled_key, active_key, tat_key,
  flow_key, expiring_key, lane_prefix, keys_prefix)

expect_types({held_key, 'set', ready_key, 'zset', wake_key, 'list', suspects_key, 'zset',
  idle_key, 'zset'})

-- Give one job back; 1 released, 0 refused.
local function release(at)
  return release_held(q, held_key, holder, ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3],
    ARGV[at + 4])
end

local out = {}
local released = 0
for at = FIRST, #ARGV, WIDTH do
  local ok = release(at)
  out[#out + 1] = ok
  released = released + ok
end
wake_ready(q, released)
return out
