--[[
complete_jobs: record successful attempts of one holder in one queue (fenced).

A job is completed only while its record says running, held by this holder, under the
given fence; otherwise nothing changes for it (a damaged record is refused too, and an id
whose key is not a hash leaves the held set). A completed job is succeeded, leaves the
holder's held set, its record expires after result_ttl_ms (never when <= 0; at least
keep_ms for a job of a workflow or one a workflow watches, which also notes its end in the
outbox), its unique key is freed (see the unique include), and its id is published on its
done channel (waking wait_for_job).

KEYS[1] held            SET   ids this holder holds in the queue
KEYS[2] outbox          ZSET  ended workflow jobs -> end time (finished_at_ms)
KEYS[3] unique          HASH  unique key -> job holding it
KEYS[4] unique_kept     ZSET  unique keys kept after their job's end
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] done_prefix     a job's done channel is done_prefix .. id
ARGV[3] holder          the completing holder
ARGV[4] result_ttl_ms   how long the record is kept
ARGV[5] keep_ms         least a workflow job's record is kept (WORKFLOW_KEEP_MS)
ARGV[6..] four per job: id, fence, result, finished_at_ms

Returns: one integer per job, in order: 1 completed, 0 refused.
]]
--- @include "keys"
--- @include "held"
--- @include "outbox"
--- @include "unique"
local held_key = KEYS[1]
local outbox_key = KEYS[2]
local unique_key = KEYS[3]
local unique_kept_key = KEYS[4]
local job_prefix = ARGV[1]
local done_prefix = ARGV[2]
local holder = ARGV[3]
local result_ttl_ms = tonumber(ARGV[4])
local keep_ms = tonumber(ARGV[5])
local FIRST, WIDTH = 6, 4

expect_types({held_key, 'set', outbox_key, 'zset', unique_key, 'hash', unique_kept_key, 'zset'})
local u = {unique = unique_key, unique_kept = unique_kept_key}

local out = {}
for at = FIRST, #ARGV, WIDTH do
  local id, fence = ARGV[at], ARGV[at + 1]
  local key = job_prefix .. id
  local held, wrong_type, workflow, notify, job_unique, unique_for = held_at(key, holder, fence)
  if wrong_type then
    redis.call('SREM', held_key, id)
    out[#out + 1] = 0
  elseif held then
    local finished_at = ARGV[at + 3]
    redis.call('HSET', key, 'status', 'succeeded', 'result', ARGV[at + 2],
      'finished_at_ms', finished_at)
    local ttl_ms = kept_ms(result_ttl_ms, keep_ms, workflow, notify)
    if ttl_ms > 0 then
      redis.call('PEXPIRE', key, ttl_ms)
    end
    note_end(outbox_key, id, finished_at, workflow, notify)
    free_unique(u, id, job_unique, unique_for, finished_at)
    redis.call('SREM', held_key, id)
    redis.call('PUBLISH', done_prefix .. id, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
