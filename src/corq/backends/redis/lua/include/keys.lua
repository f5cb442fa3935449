--[[
keys: what scripts do to the queue's own keys, safely.

expect_types(list): `list` is {key, type, key, type, ...}; each key must be missing or of
that Redis type ('zset', 'set', 'list', 'hash', 'string'). Otherwise the script stops with a
WRONGTYPE error naming the key before anything is written, so the caller gets one clear
refusal and never a half-done call.

call_chunked(command, key, items): `command key item...` over many items, CHUNK at a time
(unpack() of thousands of values would overflow Lua's stack).
]]
local CHUNK = 1000

local function expect_types(list)
  for i = 1, #list, 2 do
    local kind = redis.call('TYPE', list[i]).ok
    if kind ~= 'none' and kind ~= list[i + 1] then
      error({err = 'WRONGTYPE ' .. list[i] .. ' holds a ' .. kind .. ', not a ' .. list[i + 1]})
    end
  end
end

local function call_chunked(command, key, items)
  for first = 1, #items, CHUNK do
    redis.call(command, key, unpack(items, first, math.min(first + CHUNK - 1, #items)))
  end
end
