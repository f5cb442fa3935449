--[[
record: read a job record without ever failing, so a damaged one costs only itself.

read_record(key, fields, kinds): HMGET `fields` through redis.pcall (a key of another type
is an error value, not a script error) and check each field against its kind, kinds[name]:
INT (an integer, converted; missing reads 0), COUNT (the same, never negative: attempt,
failures, deaths, fence), INT_REQUIRED, INT_OPTIONAL (an integer when present; missing or
'' reads nil), SCORE (any finite number, as exact text ZADD takes back); a field of any
other kind (or none) is text, kept as is. Returns the record as a
table keyed by field name; or nil and nothing when the key does not exist; or nil, a
problem (for damaged_error) and true when the key is not a hash, false when a field is
damaged.

record_kinds(fields, overrides): a kinds table for read_record: each field's kind as
record.py declares it (FIELD_KIND; INT_OPTIONAL for an int without a default), or
overrides[name] where given (e.g. INT_REQUIRED for a field a script cannot act without).
fields_of(lists, except): the names in any of `lists`, each once, in the order first met,
bar those `except` (a set: name -> true) holds.
positions(names): name -> place in `names` (1-based), to address values sent in that order.
check_number(name, value, kind): one field checked as read_record does: its value as the
kind wants it, or nil and the problem (for a script that checks some fields only after it
knows the record is one it acts on).
quote(value): a stored value fit for an error message (long ones cut).
valid_utf8(s): true when `s` is valid UTF-8 (ids handed to Python must decode).
]]
--- @include "fields"
-- INT and COUNT are record.py's names for those kinds; the other two are the scripts' own.
local INT, COUNT, INT_REQUIRED, INT_OPTIONAL, SCORE = 'int', 'count', 'int!', 'int?', 'score'
-- The kinds read_record checks (any other is text).
local CHECKED_KIND = {[INT] = true, [COUNT] = true, [INT_REQUIRED] = true,
  [INT_OPTIONAL] = true, [SCORE] = true}
local MAX_EXACT = 9007199254740992 -- 2^53: beyond it doubles skip integers
local QUOTE_BYTES = 40

local function quote(value)
  if #value > QUOTE_BYTES then
    value = string.sub(value, 1, QUOTE_BYTES) .. '...'
  end
  return "'" .. value .. "'"
end

local function wrong_type_problem(key)
  return 'the key holds a ' .. redis.call('TYPE', key).ok .. ', not a job hash'
end

local floor = math.floor

-- The field as its kind wants it, or nil and the problem.
local function check_number(name, value, kind)
  if not value or (value == '' and kind == INT_OPTIONAL) then
    if kind == INT or kind == COUNT then
      return 0
    elseif kind == INT_OPTIONAL then
      return nil
    end
    return nil, name .. ' is missing'
  end
  local n = tonumber(value)
  if kind == SCORE then
    if n == nil or n ~= n or n == math.huge or n == -math.huge then
      return nil, name .. ' is not a number: ' .. quote(value)
    end
    -- Canonical text: Lua reads ' 7 ' or '0x10', ZADD does not; %.17g keeps every bit.
    if n % 1 == 0 and n < MAX_EXACT and n > -MAX_EXACT then
      return string.format('%d', n)
    end
    return string.format('%.17g', n)
  end
  -- floor(nan) is nan, which equals nothing; infinities fail the range check.
  if n == nil or n ~= floor(n) or n >= MAX_EXACT or n <= -MAX_EXACT then
    return nil, name .. ' is not an integer: ' .. quote(value)
  end
  if kind == COUNT and n < 0 then
    return nil, name .. ' is negative: ' .. quote(value)
  end
  return n
end

local function record_kinds(fields, overrides)
  local kinds = {}
  for _, name in ipairs(fields) do
    local kind = FIELD_KIND[name]
    if kind == INT and FIELD_DEFAULT[name] == nil then
      kind = INT_OPTIONAL
    end
    kinds[name] = (overrides and overrides[name]) or kind
  end
  return kinds
end

local function fields_of(lists, except)
  local out, seen = {}, {}
  for _, list in ipairs(lists) do
    for _, name in ipairs(list) do
      if not seen[name] and not except[name] then
        seen[name] = true
        out[#out + 1] = name
      end
    end
  end
  return out
end

local function positions(names)
  local at = {}
  for i, name in ipairs(names) do
    at[name] = i
  end
  return at
end

local function read_record(key, fields, kinds)
  local f = redis.pcall('HMGET', key, unpack(fields))
  if f.err then
    return nil, wrong_type_problem(key), true
  end
  local any, problem = false, nil
  local record = {}
  for i = 1, #fields do
    local name, value = fields[i], f[i]
    local kind = kinds[name]
    if value then
      any = true
    end
    if CHECKED_KIND[kind] and not problem then
      -- Inline fast paths for '0' (most counters of most jobs: an interned string, so
      -- one pointer compare) and for a well-formed integer; this runs for every job claimed.
      if value == '0' and kind ~= SCORE then
        value = 0
      else
        local n = value and kind ~= SCORE and tonumber(value)
        if n and n % 1 == 0 and n < MAX_EXACT and n > -MAX_EXACT and (n >= 0 or kind ~= COUNT) then
          value = n
        else
          value, problem = check_number(name, value, kind)
        end
      end
    end
    if value then -- HMGET gives false for a missing field: the record gives nil
      record[name] = value
    end
  end
  if not any and redis.call('EXISTS', key) == 0 then
    return nil
  end
  if problem then
    return nil, problem, false
  end
  return record
end

local function valid_utf8(s)
  if not string.find(s, '[\128-\255]') then
    return true -- plain ASCII, the usual case
  end
  local i, n = 1, #s
  while i <= n do
    local c = string.byte(s, i)
    local len, lo, hi = 1, 0, 0
    if c >= 0xC2 and c <= 0xDF then
      len, lo, hi = 2, 0x80, 0xBF
    elseif c == 0xE0 then
      len, lo, hi = 3, 0xA0, 0xBF
    elseif c == 0xED then
      len, lo, hi = 3, 0x80, 0x9F -- no UTF-16 surrogates
    elseif c >= 0xE1 and c <= 0xEF then
      len, lo, hi = 3, 0x80, 0xBF
    elseif c == 0xF0 then
      len, lo, hi = 4, 0x90, 0xBF
    elseif c >= 0xF1 and c <= 0xF3 then
      len, lo, hi = 4, 0x80, 0xBF
    elseif c == 0xF4 then
      len, lo, hi = 4, 0x80, 0x8F
    elseif c >= 0x80 then
      return false
    end
    if len > 1 then
      if i + len - 1 > n then
        return false
      end
      local c2 = string.byte(s, i + 1)
      if c2 < lo or c2 > hi then
        return false
      end
      for j = i + 2, i + len - 1 do
        local cj = string.byte(s, j)
        if cj < 0x80 or cj > 0xBF then
          return false
        end
      end
    end
    i = i + len
  end
  return true
end
