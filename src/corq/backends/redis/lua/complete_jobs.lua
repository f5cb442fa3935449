--[[
complete_jobs: record successful attempts of one holder in one queue (fenced).

A job is completed only while its record says running, held by this holder, under the
given fence; otherwise nothing changes for it (a damaged record is refused too, and an id
whose key is not a hash leaves the held set). A completed job is succeeded, leaves the
holder's held set, its record expires after result_ttl_ms (never when <= 0; at least
keep_ms for a job of a workflow or one a workflow watches, which also notes its end in the
outbox), its unique key is freed (the unique include), and its id is published on its done channel (waking wait_for_job).

KEYS[1] held            SET   ids this holder holds in the queue
KEYS[2] outbox          ZSET  ended workflow jobs -> end time (finished_at_ms)
KEYS[3]  rules           HASH  task -> its encoded rules
KEYS[4]  groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[5]  parked          SET   groups and keys at their concurrency
KEYS[6]  throttled       ZSET  groups and keys over a rate -> when due
KEYS[7]  active          HASH  running counts per task and lane
KEYS[8]  tat             HASH  GCRA theoretical arrival times
KEYS[9]  flow            HASH  counters (expired, dropped, laned, turn)
KEYS[10] expiring        ZSET  job id -> start_by_ms
KEYS[11] ready           ZSET  ready job ids by score (hand-overs take from it)
KEYS[12] wake            LIST  wake tokens
KEYS[13] workers         ZSET  holder id -> lease deadline (hand-overs go to live holders)
KEYS[14] idle            ZSET  idle holders waiting to be handed a job
KEYS[15] dead            ZSET  dead letters (a damaged record met by a hand-over goes there)
KEYS[16] unique          HASH  unique key -> job holding it (an end frees it)
KEYS[17] unique_kept     ZSET  unique keys kept after their job's end
KEYS[18]       events          STREAM the queue's lifecycle events (the events include)
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] done_prefix     a job's done channel is done_prefix .. id
ARGV[3] holder          the completing holder
ARGV[4] result_ttl_ms   how long the record is kept
ARGV[5] keep_ms         least a workflow job's record is kept (WORKFLOW_KEEP_MS)
ARGV[6] lane_prefix     a lane's jobs are lane_prefix .. lane
ARGV[7] keys_prefix     a task's rotation of keys is keys_prefix .. task
ARGV[8] held_prefix     a holder's held set is held_prefix .. holder
ARGV[9] inbox_prefix    a holder's inbox is inbox_prefix .. holder
ARGV[10] queue          the queue's name (handed out with each job)
ARGV[11] batch          most dead letters to trim
ARGV[12] dead_max       most dead letters kept (0: no limit)
ARGV[13] dead_ttl_ms    longest a dead letter is kept (0: no limit)
ARGV[14] wake_cap       longest the wake list may grow
ARGV[15..] four per job: id, fence, result, finished_at_ms

A completed job of a limited lane frees its slots (the limits include's free_slots), and
each slot freed wakes a worker (the wake include: a job handed to an idle holder, else a
wake token); a plain job wakes no one (nothing waited for its slot).

Returns: one integer per job, in order: 1 completed, 0 refused.
]]
--- @include "keys"
--- @include "held"
--- @include "outbox"
--- @include "limits"
--- @include "unique"
--- @include "wake"
--- @include "events"
local held_key = KEYS[1]
local outbox_key = KEYS[2]
local job_prefix = ARGV[1]
local done_prefix = ARGV[2]
local holder = ARGV[3]
local result_ttl_ms = tonumber(ARGV[4])
local keep_ms = tonumber(ARGV[5])
local rules_key = KEYS[3]
local groups_key = KEYS[4]
local parked_key = KEYS[5]
local throttled_key = KEYS[6]
local active_key = KEYS[7]
local tat_key = KEYS[8]
local flow_key = KEYS[9]
local expiring_key = KEYS[10]
local lane_prefix = ARGV[6]
local keys_prefix = ARGV[7]
local ready_key = KEYS[11]
local wake_key = KEYS[12]
local workers_key = KEYS[13]
local idle_key = KEYS[14]
local dead_key = KEYS[15]
local unique_key = KEYS[16]
local unique_kept_key = KEYS[17]
local events_key = KEYS[18]
local held_prefix = ARGV[8]
local inbox_prefix = ARGV[9]
local queue = ARGV[10]
local batch = tonumber(ARGV[11])
local dead_max = tonumber(ARGV[12])
local dead_ttl_ms = tonumber(ARGV[13])
local wake_cap = tonumber(ARGV[14])
local FIRST, WIDTH = 15, 4
local q = {ready = ready_key, job_prefix = job_prefix, done_prefix = done_prefix,
  outbox = outbox_key, dead = dead_key, batch = batch, dead_max = dead_max,
  dead_ttl_ms = dead_ttl_ms}
q.events = events_key
with_flow(q, rules_key, groups_key, parked_key, throttled_key, active_key, tat_key,
  flow_key, expiring_key, lane_prefix, keys_prefix)
local freed = 0

expect_types({held_key, 'set', outbox_key, 'zset'})
local u = {unique = unique_key, unique_kept = unique_kept_key}

local out = {}
local done = {} -- leave the held set in one SREM per call
for at = FIRST, #ARGV, WIDTH do
  local id, fence = ARGV[at], ARGV[at + 1]
  local key = job_prefix .. id
  local held, wrong_type, workflow, notify, lane, limited, unique, unique_for =
    held_at(key, holder, fence)
  if wrong_type then
    redis.call('SREM', held_key, id)
    out[#out + 1] = 0
  elseif held then
    local finished_at = ARGV[at + 3]
    redis.call('HSET', key, 'status', 'succeeded', 'result', ARGV[at + 2],
      'finished_at_ms', finished_at)
    EVENT.end_attempt(q, key, id, 'succeeded', 'succeeded', finished_at, nil)
    local ttl_ms = kept_ms(result_ttl_ms, keep_ms, workflow, notify)
    if ttl_ms > 0 then
      redis.call('PEXPIRE', key, ttl_ms)
    end
    note_end(outbox_key, id, finished_at, workflow, notify)
    if limited == '1' then
      freed = freed + 1
    end
    free_slots(q, key, lane, limited)
    free_unique(u, id, unique, unique_for, finished_at)
    done[#done + 1] = id
    redis.call('PUBLISH', done_prefix .. id, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
call_chunked('SREM', held_key, done)
if freed > 0 then
  with_handover(q, workers_key, idle_key, held_prefix, inbox_prefix, queue, nil, wake_key,
    wake_cap)
  wake_ready(q, freed)
end
return out
