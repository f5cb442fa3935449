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

local q = {job_prefix = job_prefix, ready = ready_key, suspects = suspects_key}

expect_types({held_key, 'set', ready_key, 'zset', wake_key, 'list', suspects_key, 'zset'})

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
push_wakes(wake_key, released, wake_cap)
return out
