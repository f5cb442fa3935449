--[[
count_queue_jobs: the counts behind queue_stats for one queue, read in one step.

KEYS[1] ready           ZSET  ready job ids
KEYS[2] delayed         ZSET  delayed job ids
KEYS[3] dead            ZSET  dead job ids
KEYS[4] workers         ZSET  worker id -> lease deadline
KEYS[5] suspects      ZSET  counted with ready
ARGV[1] held_prefix     a worker's held set is held_prefix .. worker id

Returns: {ready, delayed, dead, workers, in_flight (jobs in every worker's held set)}.
]]
local ready_key = KEYS[1]
local delayed_key = KEYS[2]
local dead_key = KEYS[3]
local workers_key = KEYS[4]
local suspects_key = KEYS[5]
local held_prefix = ARGV[1]

local in_flight = 0
local workers = redis.call('ZRANGE', workers_key, 0, -1)
for _, worker in ipairs(workers) do
  in_flight = in_flight + redis.call('SCARD', held_prefix .. worker)
end
return {
  redis.call('ZCARD', ready_key) + redis.call('ZCARD', suspects_key),
  redis.call('ZCARD', delayed_key),
  redis.call('ZCARD', dead_key),
  #workers,
  in_flight,
}
