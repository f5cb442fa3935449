--[[
publish_worker_info: store a worker's facts, replacing its last ones, until a deadline.

KEYS[1] info            HASH  worker id -> its facts (JSON)
KEYS[2] expiry          ZSET  worker id -> when its facts are removed (ms)
ARGV[1] worker_id
ARGV[2] facts           the encoded WorkerInfo
ARGV[3] expires_at_ms   its heartbeat plus the ttl it asks for

Returns: 1.
]]
local info_key = KEYS[1]
local expiry_key = KEYS[2]
local worker_id = ARGV[1]
local facts = ARGV[2]
local expires_at_ms = ARGV[3]

redis.call('HSET', info_key, worker_id, facts)
redis.call('ZADD', expiry_key, expires_at_ms, worker_id)
return 1
