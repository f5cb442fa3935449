--[[
take_outbox: read a batch of the ends waiting in one queue's outbox, with what settling
them needs (nothing is removed: clear_outbox does that once they are settled).

The oldest `batch` entries (with older_than_ms > 0, only those noted at or before
now - older_than_ms). Per entry: the entry itself and its score (clear_outbox removes it
only if unchanged), the job's id, its state as its record says now, its error, its
workflow (as the entry names it, else as the record does; '' for none) and the workflows
watching it (its notify set). A state that is not terminal (a dead job retried since) is
reported as it is: the caller applies nothing for it. A status no corq writes reads as
dead; a key that is not a hash as dead with a damaged error; a record that is gone as ''
(the caller takes it in as dead: its workflow is still known from the entry).

KEYS[1] outbox          ZSET  ended jobs (msgpack [id, workflow]) -> when noted
ARGV[1] job_prefix      a record's key is job_prefix .. id
ARGV[2] notify_prefix   a job's watchers are notify_prefix .. id
ARGV[3] now_ms          the caller's clock, or '' for the broker's
ARGV[4] older_than_ms   0: every entry; else only those noted at least this long ago
ARGV[5] batch           most entries to read

Returns: per entry, flat: entry, score, id, state, error, workflow, the number of
watchers, then the watchers.
]]
--- @include "now"
--- @include "keys"
local outbox_key = KEYS[1]
local job_prefix = ARGV[1]
local notify_prefix = ARGV[2]
local now_arg = ARGV[3]
local older_than_ms = tonumber(ARGV[4])
local batch = tonumber(ARGV[5])

local KNOWN = {succeeded = true, dead = true, cancelled = true, upstream_failed = true,
  expired = true, scheduled = true, waiting = true, queued = true, running = true, failed = true}
local DAMAGED = 'damaged job record: '

expect_types({outbox_key, 'zset'})

local entries
if older_than_ms > 0 then
  local cutoff = int(resolve_now(now_arg) - older_than_ms)
  entries = redis.call('ZRANGEBYSCORE', outbox_key, '-inf', cutoff, 'WITHSCORES', 'LIMIT', 0,
    batch)
else
  entries = redis.call('ZRANGE', outbox_key, 0, batch - 1, 'WITHSCORES')
end

-- The job id and workflow an entry names (an entry another program wrote: the id alone).
local function named(entry)
  local ok, m = pcall(cmsgpack.unpack, entry)
  if ok and type(m) == 'table' and type(m[1]) == 'string' and type(m[2]) == 'string' then
    return m[1], m[2]
  end
  return entry, ''
end

local out = {}
for i = 1, #entries, 2 do
  local id, workflow = named(entries[i])
  local f = redis.pcall('HMGET', job_prefix .. id, 'status', 'error', 'workflow')
  local state, err = '', ''
  if f.err then
    state, err = 'dead', DAMAGED .. 'the key is not a job hash'
  elseif f[1] then
    state, err = f[1], f[2] or ''
    if not KNOWN[state] then
      state = 'dead'
    end
    if workflow == '' then
      workflow = f[3] or ''
    end
  end
  local watchers = redis.pcall('SMEMBERS', notify_prefix .. id)
  if watchers.err then
    watchers = {}
  end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = entries[i], entries[i + 1], id,
    state, err
  out[n + 6], out[n + 7] = workflow, #watchers
  for _, watcher in ipairs(watchers) do
    out[#out + 1] = watcher
  end
end
return out
