--[[
watch_jobs: make a workflow watch jobs of one queue that are outside it (its external
parents), or learn that they have ended.

Per job: one that has ended (succeeded, dead, cancelled, upstream_failed; a status no
corq writes reads as dead) is reported with its state and error, and nothing is written
(the caller takes the end in at once); one that has not ended gets the workflow in its
notify set and its record's notify flag, so its end goes to the outbox (and its worker
settles at once). Both happen in this one step, so a job ending at the same moment is
either reported ended or will notify. A key that is not a hash reads as dead (damaged).

KEYS[1..] the jobs' records (HASH), one per job
ARGV[1] notify_prefix   a job's watchers are notify_prefix .. id
ARGV[2] workflow        the watching workflow's id
ARGV[3..] the job ids, in the order of KEYS

Returns: per job, in order: state ('' when there is no such job, 'waiting' when it is
watched now, else its terminal state), error ('' for none).
]]
local notify_prefix = ARGV[1]
local workflow = ARGV[2]
local FIRST = 3

local TERMINAL = {succeeded = true, dead = true, cancelled = true, upstream_failed = true}
local ALIVE = {scheduled = true, waiting = true, queued = true, running = true, failed = true}
local DAMAGED = 'damaged job record: '

local out = {}
for i = 1, #KEYS do
  local key, id = KEYS[i], ARGV[FIRST + i - 1]
  local f = redis.pcall('HMGET', key, 'status', 'error')
  local state, err = '', ''
  if f.err then
    state, err = 'dead', DAMAGED .. 'the key is not a job hash'
  elseif f[1] and TERMINAL[f[1]] then
    state, err = f[1], f[2] or ''
  elseif f[1] and not ALIVE[f[1]] then
    state, err = 'dead', f[2] or ''
  elseif f[1] or redis.call('EXISTS', key) == 1 then
    redis.call('SADD', notify_prefix .. id, workflow)
    redis.call('HSET', key, 'notify', 1)
    state = 'waiting'
  end
  out[#out + 1] = state
  out[#out + 1] = err
end
return out
