--[[
drop_workflow: delete a workflow left creating (its creation died half-way), in
bounded steps.

Only a workflow still creating is touched. Each call deletes the edge lists of at most
`batch` jobs taken off order, then of at most `batch` watched external parents; once both
are empty, the workflow's own keys. The caller deletes the jobs' waiting records before the
first call (it reads them from order), so a drop that dies half-way is finished by the next.


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
ARGV[1] parents_prefix  a job's parents (edge order) are parents_prefix .. id
ARGV[2] children_prefix a job's children are children_prefix .. id
ARGV[3] now_ms          the caller's clock, or '' for the broker's
ARGV[4] keep_ms         how long ended keys are kept (WORKFLOW_KEEP_MS)
ARGV[5] batch           most member ids the failed list keeps

Returns: 1 when more is left (call again), 0 when the workflow is gone, -1 when it is not
creating (nothing deleted).
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
local parents_prefix = ARGV[1]
local children_prefix = ARGV[2]
local now_ms = resolve_now(ARGV[3])
local keep_ms = tonumber(ARGV[4])
local batch = tonumber(ARGV[5])

local w = new_workflow({meta = meta_key, order = order_key, nodes = nodes_key,
  pending = pending_key, todo = todo_key, applied = applied_key, callbacks = callbacks_key,
  failed = failed_key, watched = watched_key, adding = adding_key, deferred = deferred_key,
  parents = parents_prefix, children = children_prefix}, now_ms, keep_ms, batch)

if w.state ~= 'creating' then
  return w.state and -1 or 0
end
local ids = redis.call('LPOP', order_key, batch)
if ids then
  for _, id in ipairs(ids) do
    redis.call('DEL', parents_prefix .. id, children_prefix .. id)
  end
  if #ids == batch then
    return 1
  end
end
local scan = redis.call('HSCAN', watched_key, 0, 'COUNT', batch)[2]
for i = 1, #scan, 2 do
  redis.call('DEL', children_prefix .. scan[i])
  redis.call('HDEL', watched_key, scan[i])
end
if redis.call('HLEN', watched_key) > 0 then
  return 1
end
redis.call('DEL', order_key, nodes_key, pending_key, todo_key, applied_key, callbacks_key,
  failed_key, watched_key, adding_key, deferred_key, meta_key)
return 0
