--[[
list_held_jobs: one step through the jobs one holder holds in one queue (SSCAN).

Each id of this step whose record says running under this holder is listed with its fence.
An id whose record says otherwise (finished, taken back, gone) leaves the held set. A
record running under this holder that scripts could not read later (a CHECKED field, see the
fields include, that does not read as its kind; a missing fence, priority or score; an id
that is not UTF-8) or a key that is not a hash goes to the dead letters (timed by the
broker's clock) and leaves the held set.

KEYS[1] held            SET   ids this holder holds in the queue
KEYS[2] dead            ZSET  dead job ids by finished_at_ms
KEYS[3] outbox          ZSET  ended workflow jobs (a damaged one buried here ends)
KEYS[4] unique          HASH  unique key -> job holding it (an end frees it)
KEYS[5] unique_kept     ZSET  unique keys kept after their job's end
KEYS[6]        events          STREAM the queue's lifecycle events (the events include)
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] done_prefix     a job's done channel is done_prefix .. id
ARGV[3] holder          the holder
ARGV[4] cursor          SSCAN cursor ('0' to start)
ARGV[5] batch           SSCAN COUNT hint; also most dead letters to trim
ARGV[6] dead_max        most dead letters kept (0: no limit)
ARGV[7] dead_ttl_ms     longest a dead letter is kept (0: no limit)

Returns: {next cursor ('0' when done), then one array per job held: id, fence}.
]]
--- @include "now"
--- @include "keys"
--- @include "record"
--- @include "dead"
--- @include "events"
local held_key = KEYS[1]
local dead_key = KEYS[2]
local outbox_key = KEYS[3]
local unique_key = KEYS[4]
local unique_kept_key = KEYS[5]
local events_key = KEYS[6]
local job_prefix = ARGV[1]
local done_prefix = ARGV[2]
local holder = ARGV[3]
local cursor = ARGV[4]
local batch = tonumber(ARGV[5])
local dead_max = tonumber(ARGV[6])
local dead_ttl_ms = tonumber(ARGV[7])

local q = {dead = dead_key, outbox = outbox_key, job_prefix = job_prefix, done_prefix = done_prefix, batch = batch,
  dead_max = dead_max, dead_ttl_ms = dead_ttl_ms}
q.events = events_key
q.unique, q.unique_kept = unique_key, unique_kept_key
-- Checked once the record is known to be this holder's: what later scripts must read.
local CHECKS = fields_of({CHECKED_FIELDS, {'score'}}, {})
local KINDS = record_kinds(CHECKS, {fence = INT_REQUIRED, priority = INT_REQUIRED,
  score = SCORE})
local FIELDS = fields_of({{'status', 'worker_id'}, CHECKS}, {})
local AS_TEXT = {}

expect_types({held_key, 'set', dead_key, 'zset', outbox_key, 'zset'})

local now_ms = nil
local buried = 0

-- The problem that makes a record this holder runs unusable, if any.
local function problem_of(id, job)
  for _, name in ipairs(CHECKS) do
    local kind = KINDS[name]
    if CHECKED_KIND[kind] then
      local value, problem = check_number(name, job[name], kind)
      if value == nil then
        return problem
      end
    end
  end
  if not valid_utf8(id) then
    return 'the job id is not valid UTF-8'
  end
  return nil
end

local function bury(id, problem, wrong_type)
  now_ms = now_ms or resolve_now('')
  bury_damaged(q, id, now_ms, problem, wrong_type)
  buried = buried + 1
  redis.call('SREM', held_key, id)
end

local step = redis.call('SSCAN', held_key, cursor, 'COUNT', batch)
local out = {step[1]}
for _, id in ipairs(step[2]) do
  local job, problem, wrong_type = read_record(job_prefix .. id, FIELDS, AS_TEXT)
  if wrong_type then
    bury(id, problem, true)
  elseif not job or job.status ~= 'running' or job.worker_id ~= holder then
    redis.call('SREM', held_key, id)
  else
    problem = problem_of(id, job)
    if problem then
      bury(id, problem, false)
    else
      out[#out + 1] = {id, tonumber(job.fence)}
    end
  end
end
if buried > 0 then
  trim_dead(q, now_ms)
end
return out
