--[[
find_dead_jobs: one bounded window of a queue's dead letters, newest first, filtered.

Walks the dead letters by death time (newest first; equal times by id, descending) from a
cursor, looking at no more than `window` of them, and keeps those that match: the task
equal to `task`, the stored error holding `needle` (both lowered, ASCII letters only), the
death time in [since, until). The cursor is the (score, id) of the last dead letter looked
at; a cursor whose job left the dead letters meanwhile still resumes at its place (its
rank is found among the equal scores by a binary search, comparing bytes). A key that is
not a hash has no task: it matches no task filter, and is returned unjudged for the caller
to compare its error as it reads; an id without a record is skipped. Writes nothing.

KEYS[1] dead            ZSET  dead job ids by died_at_ms
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] after_score     the cursor's death time, or '' to start at the newest (or at until)
ARGV[3] after_id        the cursor's id (with after_score)
ARGV[4] since_ms        oldest death time wanted (inclusive), or ''
ARGV[5] until_ms        newest death time wanted (exclusive), or ''
ARGV[6] task            the task wanted, or '' for any
ARGV[7] needle          lowered text the error must hold, or '' for any
ARGV[8] limit           most matches returned
ARGV[9] window          most dead letters looked at

Returns: {cursor score, cursor id, id, judged, id, judged, ...}: the cursor is '' '' when
the walk reached the end; judged is 1 when the record matched here, 0 when it is no hash
and the caller must judge its error.
]]
--- @include "keys"
local dead_key = KEYS[1]
local job_prefix = ARGV[1]
local after_score = ARGV[2]
local after_id = ARGV[3]
local since_ms = tonumber(ARGV[4])
local until_ms = tonumber(ARGV[5])
local task = ARGV[6]
local needle = ARGV[7]
local limit = tonumber(ARGV[8])
local window = tonumber(ARGV[9])

expect_types({dead_key, 'zset'})

-- a < b comparing bytes (Lua's own < follows the server's collation locale).
local function bytes_less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

-- The reverse rank the walk starts at.
local function start_rank()
  if after_score ~= '' then
    local first = redis.call('ZCOUNT', dead_key, '(' .. after_score, '+inf')
    local lo, hi = first, first + redis.call('ZCOUNT', dead_key, after_score, after_score)
    -- Equal scores run in descending id order: find the first id below the cursor's.
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local member = redis.call('ZREVRANGE', dead_key, mid, mid)[1]
      if bytes_less(member, after_id) then
        hi = mid
      else
        lo = mid + 1
      end
    end
    return lo
  end
  if until_ms then
    return redis.call('ZCOUNT', dead_key, until_ms, '+inf')
  end
  return 0
end

-- 1 matched, 0 for the caller to judge, nil no match. One HMGET a dead letter: a key of
-- another type makes it fail (caught), a missing one answers nothing (then EXISTS tells).
local function judge(id)
  local key = job_prefix .. id
  local stored = redis.pcall('HMGET', key, 'task', 'error')
  if stored.err then
    if task ~= '' then
      return nil
    end
    return 0
  end
  if not stored[1] and not stored[2] and redis.call('EXISTS', key) == 0 then
    return nil
  end
  if task ~= '' and stored[1] ~= task then
    return nil
  end
  if needle ~= '' then
    local error_text = stored[2]
    if not error_text or not string.find(string.lower(error_text), needle, 1, true) then
      return nil
    end
  end
  return 1
end

local start = start_rank()
local entries = redis.call('ZREVRANGE', dead_key, start, start + window - 1, 'WITHSCORES')
local reply = {'', ''}
local ended = #entries < 2 * window
for i = 1, #entries, 2 do
  local id, score = entries[i], entries[i + 1]
  if since_ms and tonumber(score) < since_ms then
    ended = true
    break
  end
  local verdict = judge(id)
  if verdict then
    reply[#reply + 1] = id
    reply[#reply + 1] = verdict
  end
  reply[1], reply[2] = score, id
  if (#reply - 2) / 2 >= limit then
    ended = false
    break
  end
end
if ended then
  reply[1], reply[2] = '', ''
end
return reply
