--[[
count_queue_jobs: the counts behind queue_stats for one queue, read in one step.

KEYS[1] ready           ZSET  ready job ids
KEYS[2] delayed         ZSET  delayed job ids
KEYS[3] dead            ZSET  dead job ids
KEYS[4] workers         ZSET  holder id -> lease deadline
KEYS[5] suspects        ZSET  counted with ready
KEYS[6] reclaiming      HASH  holders whose jobs reclaim is still taking back
KEYS[7] flow            HASH  flow-control counters: laned (jobs in lanes) counts as ready
KEYS[8] waiting         SET   jobs waiting for their workflow parents
KEYS[9] rules           HASH  task -> rules: the tasks whose lanes are looked at
KEYS[10] parked         SET   t:<task> / k:<lane> at their concurrency
KEYS[11] throttled      ZSET  t:<task> / k:<lane> waiting for a rate limit
ARGV[1] held_prefix     a holder's held set is held_prefix .. holder
ARGV[2] reclaim_prefix  the ids still to take back from a holder: reclaim_prefix .. holder
ARGV[3] job_prefix      a job's record is job_prefix .. id
ARGV[4] lane_prefix     a lane's ZSET is lane_prefix .. lane
ARGV[5] keys_prefix     a task's rotation of lanes is keys_prefix .. task
ARGV[6] scan            most delayed jobs whose status is looked at
ARGV[7] lanes_max       most lanes whose heads are looked at

Returns: {ready, delayed, dead, workers, in_flight (jobs in every held set, and those
still being taken back), waiting, retrying (delayed jobs with status failed, among the
`scan` soonest due), oldest_ready_ms (when the oldest head of a priority band, of the
suspects or of a lane became ready: max(enqueued_at_ms, run_at_ms); -1 when none)}.
]]
local ready_key = KEYS[1]
local delayed_key = KEYS[2]
local dead_key = KEYS[3]
local workers_key = KEYS[4]
local suspects_key = KEYS[5]
local reclaiming_key = KEYS[6]
local flow_key = KEYS[7]
local waiting_key = KEYS[8]
local rules_key = KEYS[9]
local parked_key = KEYS[10]
local throttled_key = KEYS[11]
local held_prefix = ARGV[1]
local reclaim_prefix = ARGV[2]
local job_prefix = ARGV[3]
local lane_prefix = ARGV[4]
local keys_prefix = ARGV[5]
local scan = tonumber(ARGV[6])
local lanes_max = tonumber(ARGV[7])
local BAND = 17592186044416 -- 2^44, as in the score include

local in_flight = 0
local workers = redis.call('ZRANGE', workers_key, 0, -1)
for _, holder in ipairs(workers) do
  in_flight = in_flight + redis.call('SCARD', held_prefix .. holder)
end
for _, holder in ipairs(redis.call('HKEYS', reclaiming_key)) do
  in_flight = in_flight + redis.call('SCARD', reclaim_prefix .. holder)
end

local retrying = 0
for _, id in ipairs(redis.call('ZRANGE', delayed_key, 0, scan - 1)) do
  if redis.pcall('HGET', job_prefix .. id, 'status') == 'failed' then
    retrying = retrying + 1
  end
end

-- When a job became ready by its record; nil for a record that cannot say.
local oldest = nil
local function consider(id)
  local times = redis.pcall('HMGET', job_prefix .. id, 'enqueued_at_ms', 'run_at_ms')
  if type(times) ~= 'table' then
    return
  end
  local enqueued, run_at = tonumber(times[1]), tonumber(times[2])
  local at = enqueued and run_at and math.max(enqueued, run_at) or enqueued or run_at
  if at and (oldest == nil or at < oldest) then
    oldest = at
  end
end

-- The head of every priority band (the sequence grows as jobs are made ready).
local function band_heads(key)
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  while head[1] do
    consider(head[1])
    local next_band = (math.floor(tonumber(head[2]) / BAND) + 1) * BAND
    head = redis.call('ZRANGE', key, string.format('%d', next_band), '+inf', 'BYSCORE',
      'LIMIT', 0, 1, 'WITHSCORES')
  end
end

band_heads(ready_key)
band_heads(suspects_key)

local laned = math.max(0, tonumber(redis.pcall('HGET', flow_key, 'laned')) or 0)
if laned > 0 then
  local lanes, seen = {}, {}
  local function add(lane)
    if #lanes < lanes_max and not seen[lane] then
      seen[lane] = true
      lanes[#lanes + 1] = lane
    end
  end
  local function add_members(members)
    for _, member in ipairs(members) do
      if string.sub(member, 1, 2) == 'k:' then
        add(string.sub(member, 3))
      end
    end
  end
  for _, task in ipairs(redis.call('HKEYS', rules_key)) do
    for _, lane in ipairs(redis.call('ZRANGE', keys_prefix .. task, 0, lanes_max - 1)) do
      add(lane)
    end
  end
  add_members(redis.call('SRANDMEMBER', parked_key, lanes_max))
  add_members(redis.call('ZRANGE', throttled_key, 0, lanes_max - 1))
  for _, lane in ipairs(lanes) do
    band_heads(lane_prefix .. lane)
  end
end

return {
  redis.call('ZCARD', ready_key) + redis.call('ZCARD', suspects_key) + laned,
  redis.call('ZCARD', delayed_key),
  redis.call('ZCARD', dead_key),
  #workers,
  in_flight,
  redis.call('SCARD', waiting_key),
  retrying,
  oldest or -1,
}
