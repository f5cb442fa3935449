--[[
set_queue_paused: close or open one queue's claims (the queue's half of a pause or resume;
the configuration's half is change_config, see docs/design.md "Runtime configuration").

Pausing sets the flag (to the configuration version that paused it) that claim_jobs
checks, then unlists every idle holder and pushes a bare wake into its inbox: its await
returns, its next claim finds the queue paused, and with no holder listed no hand-over
(which serves only listed holders) can start a job of the queue. Resuming deletes the flag
and pushes a wake token per registered holder (capped), so the waiting workers claim.

KEYS[1] paused    STR   the flag (absent: the queue is open)
KEYS[2] idle      ZSET  idle holders waiting to be handed a job
KEYS[3] wake      LIST  wake tokens
KEYS[4] workers   ZSET  holder id -> lease deadline
ARGV[1] inbox_prefix  a holder's inbox is inbox_prefix .. holder
ARGV[2] paused        '1' pause, '0' resume
ARGV[3] version       the configuration version of the change
ARGV[4] wake_cap      longest the wake list may grow

Returns: how many holders were woken.
]]
--- @include "keys"
local paused_key = KEYS[1]
local idle_key = KEYS[2]
local wake_key = KEYS[3]
local workers_key = KEYS[4]
local inbox_prefix = ARGV[1]
local paused = ARGV[2]
local version = ARGV[3]
local wake_cap = tonumber(ARGV[4])

expect_types({paused_key, 'string', idle_key, 'zset', wake_key, 'list', workers_key, 'zset'})

local woken = 0
if paused == '1' then
  redis.call('SET', paused_key, version)
  for _, holder in ipairs(redis.call('ZRANGE', idle_key, 0, -1)) do
    local inbox = inbox_prefix .. holder
    local inbox_type = redis.call('TYPE', inbox).ok
    if inbox_type == 'list' or inbox_type == 'none' then
      redis.call('RPUSH', inbox, '')
      woken = woken + 1
    end
  end
  redis.call('DEL', idle_key, wake_key) -- pending tokens would only wake workers for nothing
else
  redis.call('DEL', paused_key)
  local n = math.min(redis.call('ZCARD', workers_key), wake_cap - redis.call('LLEN', wake_key))
  for _ = 1, n do
    redis.call('RPUSH', wake_key, '1')
  end
  woken = math.max(n, 0)
end
return woken
