--[[
release_jobs: give jobs one holder holds in one queue back to the head of the queue
(fenced; used at shutdown, by reconciliation, and when a job's own process died).

A job is released only while its record says running, held by this holder, under the
given fence, with a readable score, attempt and deaths; otherwise nothing changes for it (an
id whose key is not a hash leaves the held set). A released job is queued again at the
score it had (so ahead of everything that came after it), no longer held by anyone. An
attempt whose task body never started is not counted; when the job's own process died a
death is counted (deaths + 1, the holder joins death_log). It goes among the suspects when
asked to or when it already was one. One wake token per released job, capped.

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
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] holder          the releasing holder
ARGV[3] wake_cap        longest the wake list may grow
ARGV[4] lane_prefix     a lane's jobs are lane_prefix .. lane
ARGV[5] keys_prefix     a task's rotation of keys is keys_prefix .. task
ARGV[6..] five per job: id, fence, unstarted (1/0), died (1/0), suspect (1/0)

A released job goes back to its own lane (the record's) and frees its slots.

Returns: one integer per job, in order: 1 released, 0 refused.
]]
--- @include "now"
--- @include "keys"
--- @include "record"
--- @include "wake"
--- @include "held"
--- @include "limits"
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
local FIRST, WIDTH = 6, 5
local q = {ready = ready_key}
with_flow(q, rules_key, groups_key, parked_key, throttled_key, active_key, tat_key,
  flow_key, expiring_key, lane_prefix, keys_prefix)

local RELEASE_FIELDS = {'status', 'worker_id', 'fence', 'score', 'suspect', 'attempt',
  'deaths', 'death_log', 'lane', 'limited'}
local RELEASE_KINDS = {score = SCORE, attempt = COUNT, deaths = COUNT}

expect_types({held_key, 'set', ready_key, 'zset', wake_key, 'list', suspects_key, 'zset'})

-- Give one job back; 1 released, 0 refused.
local function release(at)
  local id, fence, unstarted = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local died, suspect = ARGV[at + 3], ARGV[at + 4]
  local key = job_prefix .. id
  local job, _, wrong_type = read_record(key, RELEASE_FIELDS, RELEASE_KINDS)
  if wrong_type then
    redis.call('SREM', held_key, id)
  end
  if not holds(job, holder, fence) then
    return 0
  end
  if unstarted == '1' then
    redis.call('HSET', key, 'attempt', int(math.max(0, job.attempt - 1)))
  end
  if died == '1' then
    redis.call('HSET', key, 'deaths', int(job.deaths + 1),
      'death_log', death_log_with(job.death_log, holder))
  end
  if suspect == '1' then
    redis.call('HSET', key, 'suspect', '1')
  end
  free_slots(q, key, job.lane, job.limited)
  if suspect == '1' or job.suspect == '1' then
    requeue(key, id, suspects_key, job.score)
  else
    requeue_ready(q, key, id, job.lane, job.score)
  end
  redis.call('SREM', held_key, id)
  return 1
end

local out = {}
local released = 0
for at = FIRST, #ARGV, WIDTH do
  local ok = release(at)
  out[#out + 1] = ok
  released = released + ok
end
push_wakes(wake_key, released, wake_cap)
return out
