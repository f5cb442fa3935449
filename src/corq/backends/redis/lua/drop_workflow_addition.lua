--[[
drop_workflow_addition: take back the jobs of an addition to a batch that was never
committed (its caller died half-way), in bounded steps.

Phase 'freeze' marks the addition as being dropped (meta field drop:<token>), so a late
commit refuses it; it answers whether there is anything to drop. The caller then deletes
the jobs' waiting records (it reads them from the addition's list), and phase 'drop' takes
at most `batch` jobs off the list per call: each is removed from nodes, pending, deferred,
adding and its parents' children lists, its edge lists deleted, the total (and members)
one less; a job whose end was taken in meanwhile (cancelled while waiting) stays, ordered.
When the list is empty the mark is removed.


KEYS[1] meta            HASH  state, open, counts, outputs, times, first failure
KEYS[2] order           LIST  job ids in the order added
KEYS[3] nodes           HASH  job id -> msgpack [queue, task, callback]
KEYS[4] pending         HASH  job id -> parents not yet ended (satisfied)
KEYS[5] todo            HASH  job id -> decision not yet released
KEYS[6] applied         HASH  job id -> state:error of each end taken in
KEYS[7] callbacks       HASH  callback id -> event, while undecided
KEYS[8] failed          LIST  members that ended failed, in order (capped)
KEYS[9] watched         HASH  external parent id -> its queue
KEYS[10] adding         HASH  job id -> 1 while its addition is not committed
KEYS[11] deferred       HASH  job id of an addition -> failure decided before the commit
KEYS[12] addition      LIST  the ids of this addition, in order
ARGV[1] parents_prefix  a job's parents (edge order) are parents_prefix .. id
ARGV[2] children_prefix a job's children are children_prefix .. id
ARGV[3] now_ms          the caller's clock, or '' for the broker's
ARGV[4] keep_ms         how long ended keys are kept (WORKFLOW_KEEP_MS)
ARGV[5] batch           most member ids the failed list keeps
ARGV[6] token           the addition's token
ARGV[7] phase           'freeze' or 'drop'

Returns: freeze: 1 when there is an uncommitted addition to drop, else 0. drop: 1 when more is
left (call again), 0 when done.
]]
--- @include "now"
--- @include "workflow"
local meta_key = KEYS[1]
local order_key = KEYS[2]
local nodes_key = KEYS[3]
local pending_key = KEYS[4]
local todo_key = KEYS[5]
local applied_key = KEYS[6]
local callbacks_key = KEYS[7]
local failed_key = KEYS[8]
local watched_key = KEYS[9]
local adding_key = KEYS[10]
local deferred_key = KEYS[11]
local addition_key = KEYS[12]
local parents_prefix = ARGV[1]
local children_prefix = ARGV[2]
local now_ms = resolve_now(ARGV[3])
local keep_ms = tonumber(ARGV[4])
local batch = tonumber(ARGV[5])

local w = new_workflow({meta = meta_key, order = order_key, nodes = nodes_key,
  pending = pending_key, todo = todo_key, applied = applied_key, callbacks = callbacks_key,
  failed = failed_key, watched = watched_key, adding = adding_key, deferred = deferred_key,
  parents = parents_prefix, children = children_prefix}, now_ms, keep_ms, batch)
local token = ARGV[6]
local phase = ARGV[7]

local mark = 'drop:' .. token
if phase == 'freeze' then
  if not w.state or redis.call('LLEN', addition_key) == 0 then
    return 0
  end
  redis.call('HSET', meta_key, mark, 1)
  return 1
end

local function forget(id)
  local parents_key = parents_prefix .. id
  for _, entry in ipairs(redis.call('LRANGE', parents_key, 0, -1)) do
    local edge = cmsgpack.unpack(entry)
    redis.call('LREM', children_prefix .. edge[1], 1, (edge[3] == 1 and '1' or '0') .. id)
  end
  local raw = redis.call('HGET', nodes_key, id)
  local callback = raw and cmsgpack.unpack(raw)[3] or ''
  redis.call('DEL', parents_key, children_prefix .. id)
  redis.call('HDEL', nodes_key, id)
  redis.call('HDEL', pending_key, id)
  redis.call('HDEL', deferred_key, id)
  if raw then
    redis.call('HINCRBY', meta_key, 'total', -1)
    if callback == '' then
      redis.call('HINCRBY', meta_key, 'members', -1)
    end
  end
end

local ids = redis.call('LPOP', addition_key, batch)
for _, id in ipairs(ids or {}) do
  if redis.call('HDEL', adding_key, id) == 1 then
    if redis.call('HEXISTS', applied_key, id) == 1 then
      redis.call('RPUSH', order_key, id)
    else
      forget(id)
    end
  end
end
if redis.call('LLEN', addition_key) > 0 then
  return 1
end
redis.call('HDEL', meta_key, mark)
return 0
