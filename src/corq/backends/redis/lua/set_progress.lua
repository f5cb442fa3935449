--[[
set_progress: record how far a running job has got, only for the holder that holds it.

KEYS[1] job           HASH  the job record
KEYS[2]        events          STREAM the queue's lifecycle events (the events include)
ARGV[1] holder        the holder reporting
ARGV[2] fence         the fence of its claim
ARGV[3] progress      0.0 to 1.0
ARGV[4] job_id        the job's id (named in its event)

Returns: 1 when recorded, 0 when the job is not running under that holder and fence (or the
record cannot be read).
]]
--- @include "record"
--- @include "held"
--- @include "events"
local job_key = KEYS[1]
local events_key = KEYS[2]
local holder = ARGV[1]
local fence = ARGV[2]
local progress = ARGV[3]
local job_id = ARGV[4]

local job = read_record(job_key, {'status', 'worker_id', 'fence'}, {})
if not holds(job, holder, fence) then
  return 0
end
redis.call('HSET', job_key, 'progress', progress)
EVENT.note({events = events_key}, job_key, job_id, 'progress', nil,
  progress)
return 1
