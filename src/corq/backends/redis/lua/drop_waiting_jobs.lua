--[[
drop_waiting_jobs: delete jobs of one queue that a workflow wrote but never released (its
creation, or an addition to it, died half-way and is being dropped).

A record is deleted only while it still says waiting and belongs to that workflow (a job
of the same id that is not the workflow's, or one cancelled meanwhile, stays).

KEYS[1] waiting       SET   ids of the queue's jobs waiting for their parents
ARGV[1] job_prefix    a record's key is job_prefix .. id
ARGV[2] workflow      the workflow being dropped
ARGV[3..] job ids

Returns: how many records were deleted.
]]
local waiting_key = KEYS[1]
local job_prefix = ARGV[1]
local workflow = ARGV[2]
local FIRST = 3

local dropped = 0
for at = FIRST, #ARGV do
  local id = ARGV[at]
  local key = job_prefix .. id
  local f = redis.pcall('HMGET', key, 'status', 'workflow')
  if not f.err and f[1] == 'waiting' and f[2] == workflow then
    redis.call('DEL', key)
    redis.call('SREM', waiting_key, id)
    dropped = dropped + 1
  end
end
return dropped
