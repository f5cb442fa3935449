--[[
commit_workflow_addition: make the jobs of an addition to an open batch part of it: they may run.

Each job of the addition, in order, joins order and leaves adding; then each is decided
as a created job is: a callback joins callbacks, a failure decided meanwhile (deferred) is
taken in, a job whose parents have all ended on satisfied edges (a root, too) is released.
The addition's list is deleted. An addition being dropped (meta field drop:<token>), or
one already committed, is left alone.


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
ARGV[6] token           the addition's token (its list is addition:<token>)

Returns: {1 committed now / 0 not (gone, dropped or done), then every todo entry as job id,
queue, decision (see apply_workflow_ends)}.
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

if w.state ~= 'live' or redis.call('HEXISTS', meta_key, 'drop:' .. token) == 1 then
  return {0}
end
local ids = redis.call('LRANGE', addition_key, 0, -1)
if #ids == 0 then
  local out = {0}
  put_todo(w, out)
  return out
end
for _, id in ipairs(ids) do
  redis.call('RPUSH', order_key, id)
  redis.call('HDEL', adding_key, id)
end
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', nodes_key, id)
  if raw and redis.call('HEXISTS', applied_key, id) == 0 then
    local callback = cmsgpack.unpack(raw)[3]
    local failure = redis.call('HGET', deferred_key, id)
    if failure then
      redis.call('HDEL', deferred_key, id)
      decide(w, id, failure)
    elseif callback ~= '' then
      redis.call('HSET', callbacks_key, id, callback)
    elseif (tonumber(redis.call('HGET', pending_key, id)) or 0) <= 0 then
      decide(w, id, 'r')
    end
  end
end
redis.call('DEL', addition_key)
settle_inside(w)
local out = {1}
put_todo(w, out)
return out
