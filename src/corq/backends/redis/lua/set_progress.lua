--[[
set_progress: record how far a running job has got, only for the worker that holds it.

KEYS[1] job           HASH  the job record
ARGV[1] worker_id     the worker reporting
ARGV[2] fence         the fence of its claim
ARGV[3] progress      0.0 to 1.0

Returns: 1 when recorded, 0 when the job is not running under that worker and fence.
]]
local job_key = KEYS[1]
local worker_id = ARGV[1]
local fence = ARGV[2]
local progress = ARGV[3]

local f = redis.call('HMGET', job_key, 'status', 'worker_id', 'fence')
if f[1] ~= 'running' or f[2] ~= worker_id or tonumber(f[3]) ~= tonumber(fence) then
  return 0
end
redis.call('HSET', job_key, 'progress', progress)
return 1
