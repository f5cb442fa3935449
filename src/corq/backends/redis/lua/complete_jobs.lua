--[[
complete_jobs: record successful attempts of one holder in one queue (fenced).

A job is completed only while its record says running, held by this holder, under the
given fence; otherwise nothing changes for it (a damaged record is refused too, and an id
whose key is not a hash leaves the held set). A completed job is succeeded, leaves the
holder's held set, its record expires after result_ttl_ms (never when <= 0), and its id
is published on its done channel (waking wait_for_job).

KEYS[1] held            SET   ids this holder holds in the queue
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] done_prefix     a job's done channel is done_prefix .. id
ARGV[3] holder          the completing holder
ARGV[4] result_ttl_ms   how long the record is kept
ARGV[5..] four per job: id, fence, result, finished_at_ms

Returns: one integer per job, in order: 1 completed, 0 refused.
]]
--- @include "keys"
--- @include "held"
local held_key = KEYS[1]
local job_prefix = ARGV[1]
local done_prefix = ARGV[2]
local holder = ARGV[3]
local result_ttl_ms = tonumber(ARGV[4])
local FIRST, WIDTH = 5, 4

expect_types({held_key, 'set'})

local out = {}
for at = FIRST, #ARGV, WIDTH do
  local id, fence = ARGV[at], ARGV[at + 1]
  local key = job_prefix .. id
  local held, wrong_type = held_at(key, holder, fence)
  if wrong_type then
    redis.call('SREM', held_key, id)
    out[#out + 1] = 0
  elseif held then
    redis.call('HSET', key, 'status', 'succeeded', 'result', ARGV[at + 2],
      'finished_at_ms', ARGV[at + 3])
    if result_ttl_ms > 0 then
      redis.call('PEXPIRE', key, result_ttl_ms)
    end
    redis.call('SREM', held_key, id)
    redis.call('PUBLISH', done_prefix .. id, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
