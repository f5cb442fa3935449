--[[
breaker_outcome: count an attempt's outcome in the task's circuit.

A probe's outcome while half-open decides: success closes the circuit (its failures
forgotten), failure opens it again for reset_ms. A failure while closed joins the failures
(stamped now, each with a new seq): those older than window_ms go, at most `threshold` are
kept, and `threshold` of them open the circuit for reset_ms (opened + 1, opened_at_ms now,
failures the count). Anything else changes nothing: a success while closed, a failure of a
job that started before the circuit opened (open or half-open), a probe outcome after the
circuit was reset (counted as a plain outcome). The failures' ZSET expires a window after
its last failure, so a task that stops failing leaves no list behind.

KEYS[1] state       HASH  the task's circuit
KEYS[2] failures    ZSET  its failures in the window
KEYS[3] tasks       SET   tasks with a circuit
ARGV[1] now_ms      the caller's clock ('' for the broker's)
ARGV[2] task        the task's name (joins tasks)
ARGV[3] ok          1 success, 0 failure
ARGV[4] probe       1 when the attempt ran as the half-open probe
ARGV[5] threshold   failures within the window that open the circuit
ARGV[6] window_ms   the window
ARGV[7] reset_ms    how long the circuit stays open

Returns: the circuit after the outcome: {status, failures (in the window, or that opened
it), opened_at_ms, until_ms ('' for none), opened}.
]]
--- @include "breaker"
local state_key = KEYS[1]
local failures_key = KEYS[2]
local tasks_key = KEYS[3]
local now_arg = ARGV[1]
local task = ARGV[2]
local ok = ARGV[3]
local probe = ARGV[4]
local threshold = tonumber(ARGV[5])
local window_ms = tonumber(ARGV[6])
local reset_ms = tonumber(ARGV[7])

local now = resolve_now(now_arg)
local b = read_breaker(state_key)

local function open_circuit(count)
  b.status, b.opened_at_ms, b.until_ms = 'open', now, now + reset_ms
  b.opened, b.failures = b.opened + 1, count
  redis.call('HSET', state_key, 'status', 'open', 'opened_at_ms', int(now),
    'until_ms', int(b.until_ms), 'opened', int(b.opened), 'failures', int(count))
  redis.call('DEL', failures_key)
  return breaker_reply(b, count)
end

local function in_window()
  return redis.call('ZCOUNT', failures_key, '(' .. int(now - window_ms), '+inf')
end

if b.status == 'half_open' and probe == '1' then
  if ok == '1' then
    b.status, b.until_ms, b.failures = 'closed', nil, 0
    redis.call('HSET', state_key, 'status', 'closed', 'failures', 0)
    redis.call('HDEL', state_key, 'until_ms')
    redis.call('DEL', failures_key)
    return breaker_reply(b, 0)
  end
  return open_circuit(b.failures)
end
if b.status ~= 'closed' then
  return breaker_reply(b, b.failures)
end
if ok == '1' then
  return breaker_reply(b, in_window())
end
redis.call('SADD', tasks_key, task)
local seq = redis.call('HINCRBY', state_key, 'seq', 1)
redis.call('HSET', state_key, 'status', 'closed', 'window_ms', int(window_ms))
redis.call('ZADD', failures_key, int(now), seq)
redis.call('ZREMRANGEBYSCORE', failures_key, '-inf', int(now - window_ms))
local count = redis.call('ZCARD', failures_key)
if count > threshold then
  redis.call('ZREMRANGEBYRANK', failures_key, 0, count - threshold - 1)
  count = threshold
end
if count >= threshold then
  return open_circuit(count)
end
redis.call('PEXPIRE', failures_key, int(window_ms))
return breaker_reply(b, count)
