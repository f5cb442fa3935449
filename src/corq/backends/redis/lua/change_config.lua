--[[
change_config: set fields of one runtime configuration entry, with their history, in one
step (the {config} slot).

Per field: its new JSON text (flag '1') or its removal (flag '0'); a field already at that
value is left alone. When any field changed, the version goes up by one and each change
is added to the history under the new version (cmsgpack [version, at_ms, who, scope, name,
field, old or false, new or false], scored by the version), which is trimmed to `keep`
changes (the oldest go).

KEYS[1] entries   HASH  scope \x1f name \x1f field -> JSON text
KEYS[2] version   STR   the configuration's version
KEYS[3] history   ZSET  cmsgpack change -> its version
ARGV[1] scope     the entry's scope (queue, task, strike)
ARGV[2] name      the entry's name
ARGV[3] who       who makes the change
ARGV[4] now_ms    the caller's clock, or '' for the broker's
ARGV[5] keep      most changes the history keeps
ARGV[6..] three per field: field, '1' set / '0' remove, value ('' when removed)

Returns: the version after the call (unchanged when nothing changed).
]]
--- @include "now"
--- @include "keys"
local entries_key = KEYS[1]
local version_key = KEYS[2]
local history_key = KEYS[3]
local scope = ARGV[1]
local name = ARGV[2]
local who = ARGV[3]
local now_ms = resolve_now(ARGV[4])
local keep = tonumber(ARGV[5])
local FIRST = 6
local SEP = '\031'

expect_types({entries_key, 'hash', version_key, 'string', history_key, 'zset'})

local version = tonumber(redis.call('GET', version_key) or '0') or 0
local changes = {}
for at = FIRST, #ARGV, 3 do
  local field, set, value = ARGV[at], ARGV[at + 1] == '1', ARGV[at + 2]
  local entry = scope .. SEP .. name .. SEP .. field
  local old = redis.call('HGET', entries_key, entry)
  local new = set and value or false
  if old ~= new then
    if set then
      redis.call('HSET', entries_key, entry, value)
    else
      redis.call('HDEL', entries_key, entry)
    end
    changes[#changes + 1] = {field, old, new}
  end
end
if #changes == 0 then
  return version
end
version = version + 1
redis.call('SET', version_key, int(version))
for _, change in ipairs(changes) do
  local record = cmsgpack.pack({version, now_ms, who, scope, name, change[1], change[2],
    change[3]})
  redis.call('ZADD', history_key, version, record)
end
local extra = redis.call('ZCARD', history_key) - keep
if extra > 0 then
  redis.call('ZREMRANGEBYRANK', history_key, 0, extra - 1)
end
return version
