--[[
inbox: the jobs handed to an idle holder that it has not taken yet (await_jobs pops them).
`h` is the wake include's table (job_prefix, ready, suspects, idle, inbox_prefix).

give_back_inbox(h, holder, held_key): the holder leaves the idle list, and every job
waiting in its inbox is given back unstarted (release_held: queued again at its old
score, the attempt not counted, out of the held set); the inbox is deleted. Used when the
holder deregisters and when a reclaim takes it out (its jobs never started, so no death).
Returns the ids of the jobs that went back (the caller wakes others for them).
]]
--- @include "held"
--- @include "wake"
local HANDED_AT = positions(CLAIMED_FIELDS)

local function give_back_inbox(h, holder, held_key)
  redis.call('ZREM', h.idle, holder)
  local inbox = h.inbox_prefix .. holder
  local given = {}
  if redis.call('TYPE', inbox).ok ~= 'list' then
    return given
  end
  for _, entry in ipairs(redis.call('LRANGE', inbox, 0, -1)) do
    local values = unpack_handed(entry)
    if values then
      local id, fence = values[HANDED_AT.id], values[HANDED_AT.fence]
      if release_held(h, held_key, holder, id, fence, '1', '0', '0') == 1 then
        given[#given + 1] = id
      end
    end
  end
  redis.call('DEL', inbox)
  return given
end
