--[[
forget_worker_info: drop a worker's facts (it stopped cleanly).

KEYS[1] info            HASH  worker id -> its facts (JSON)
KEYS[2] expiry          ZSET  worker id -> when its facts are removed (ms)
ARGV[1] worker_id

Returns: 1 if the worker had facts, else 0.
]]
local info_key = KEYS[1]
local expiry_key = KEYS[2]
local worker_id = ARGV[1]

redis.call('ZREM', expiry_key, worker_id)
return redis.call('HDEL', info_key, worker_id)
