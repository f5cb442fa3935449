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
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] holder          the releasing holder
ARGV[3] wake_cap        longest the wake list may grow
ARGV[4..] five per job: id, fence, unstarted (1/0), died (1/0), suspect (1/0)

Returns: one integer per job, in order: 1 released, 0 refused.
]]
--- @include "now"
--- @include "keys"
--- @include "record"
--- @include "wake"
--- @include "held"
local held_key = KEYS[1]
local ready_key = KEYS[2]
local wake_key = KEYS[3]
local suspects_key = KEYS[4]
local job_prefix = ARGV[1]
local holder = ARGV[2]
local wake_cap = tonumber(ARGV[3])
local FIRST, WIDTH = 4, 5

local RELEASE_FIELDS = {'status', 'worker_id', 'fence', 'score', 'suspect', 'attempt',
  'deaths', 'death_log'}
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
  local lane = (suspect == '1' or job.suspect == '1') and suspects_key or ready_key
  requeue(key, id, lane, job.score)
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
