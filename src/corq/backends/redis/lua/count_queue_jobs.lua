--[[
count_queue_jobs: the counts behind queue_stats for one queue, read in one step.

KEYS[1] ready           ZSET  ready job ids
KEYS[2] delayed         ZSET  delayed job ids
KEYS[3] dead            ZSET  dead job ids
KEYS[4] workers         ZSET  holder id -> lease deadline
KEYS[5] suspects        ZSET  counted with ready
KEYS[6] reclaiming      HASH  holders whose jobs reclaim is still taking back
KEYS[7] flow            HASH  flow-control counters: laned (jobs in lanes) counts as ready
ARGV[1] held_prefix     a holder's held set is held_prefix .. holder
ARGV[2] reclaim_prefix  the ids still to take back from a holder: reclaim_prefix .. holder

Returns: {ready, delayed, dead, workers, in_flight (jobs in every held set, and those
still being taken back)}.
]]
local ready_key = KEYS[1]
local delayed_key = KEYS[2]
local dead_key = KEYS[3]
local workers_key = KEYS[4]
local suspects_key = KEYS[5]
local reclaiming_key = KEYS[6]
local flow_key = KEYS[7]
local held_prefix = ARGV[1]
local reclaim_prefix = ARGV[2]

local in_flight = 0
local workers = redis.call('ZRANGE', workers_key, 0, -1)
for _, holder in ipairs(workers) do
  in_flight = in_flight + redis.call('SCARD', held_prefix .. holder)
end
for _, holder in ipairs(redis.call('HKEYS', reclaiming_key)) do
  in_flight = in_flight + redis.call('SCARD', reclaim_prefix .. holder)
end
return {
  redis.call('ZCARD', ready_key) + redis.call('ZCARD', suspects_key)
    + math.max(0, tonumber(redis.pcall('HGET', flow_key, 'laned')) or 0),
  redis.call('ZCARD', delayed_key),
  redis.call('ZCARD', dead_key),
  #workers,
  in_flight,
}
