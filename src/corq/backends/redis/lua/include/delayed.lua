--[[
delayed: the head of a queue's delayed set, which tells workers when to claim next.

delayed_head(delayed_key): the earliest run_at_ms waiting in the delayed set, or nil.
earlier(a, b): the smaller of two times, either of which may be nil.
is_new_head(earliest, old_head): true when `earliest` (the earliest time a call delayed a
job to, or nil) comes before `old_head` (the head before the call, or nil): then a worker
must be woken, to claim and learn the new next_due_ms.
]]
local function delayed_head(delayed_key)
  local head = redis.call('ZRANGE', delayed_key, 0, 0, 'WITHSCORES')[2]
  return head and tonumber(head)
end

local function earlier(a, b)
  if not a or (b and b < a) then
    return b
  end
  return a
end

local function is_new_head(earliest, old_head)
  return earliest ~= nil and (old_head == nil or earliest < old_head)
end
