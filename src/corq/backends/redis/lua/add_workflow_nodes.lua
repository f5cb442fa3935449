--[[
add_workflow_nodes: write jobs into a workflow's graph: nodes, edges, pending counts.

Each job is written whole or not at all, and one already among the nodes is left alone
(a retry writes nothing twice). A node: its value in nodes, the workflow's total (and
members, for a job that is not a callback) one more, its edges in edge order in its
parents list, itself in each parent's children list (with the edge's allow_failed flag),
each external parent in watched, and its count of parents not yet ended in pending (a
parent that has ended already counts at once: satisfied, or the job is decided
upstream_failed).

Mode 'create' (the workflow is creating): the job joins order, a root is decided 'r' and
a callback joins callbacks (nothing runs before open_workflow). Mode 'add' (the workflow is
live and open): the job joins the addition's list and adding, and the commit
(commit_workflow_addition) decides and orders it; failures decided meanwhile wait in
deferred.


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
KEYS[12] addition      LIST  (mode 'add') the ids of this addition, in order
ARGV[1] parents_prefix  a job's parents (edge order) are parents_prefix .. id
ARGV[2] children_prefix a job's children are children_prefix .. id
ARGV[3] now_ms          the caller's clock, or '' for the broker's
ARGV[4] keep_ms         how long ended keys are kept (WORKFLOW_KEEP_MS)
ARGV[5] batch           most member ids the failed list keeps
ARGV[6] mode            'create' or 'add'
ARGV[7..] one per job: a msgpack array of its id, queue, task, callback event ('' for
          none) and its parents in edge order, each an array of parent, queue,
          allow_failed (1/0) and external (1/0: not a job of the workflow)

Returns: the number of jobs written (0 for each that was there already), or -1 when the
workflow is not in the state the mode needs (nothing written).
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
local mode = ARGV[6]

if mode == 'create' and w.state ~= 'creating' then
  return -1
elseif mode == 'add' and (w.state ~= 'live' or w.open ~= '1') then
  return -1
end

-- How the job's parents stand: how many have not ended, and the first failure among the
-- ended ones its edge does not allow (nil if none).
local function parents_state(id, parents)
  local pending, cause = 0, nil
  local parents_key = parents_prefix .. id
  for _, p in ipairs(parents) do
    local parent, queue, allow, external = p[1], p[2], p[3], p[4]
    redis.call('RPUSH', parents_key, cmsgpack.pack({parent, queue, allow}))
    redis.call('RPUSH', children_prefix .. parent, (allow == 1 and '1' or '0') .. id)
    if external == 1 then
      redis.call('HSET', watched_key, parent, queue)
    end
    local done = redis.call('HGET', applied_key, parent)
    if not done then
      pending = pending + 1
    elseif not cause and allow ~= 1 then
      local sep = string.find(done, ':', 1, true)
      local state = string.sub(done, 1, sep - 1)
      if state ~= 'succeeded' then
        cause = upstream_error(parent, state, string.sub(done, sep + 1))
      end
    end
  end
  return pending, cause
end

local written = 0
for at = 7, #ARGV do
  local job = cmsgpack.unpack(ARGV[at])
  local id, callback, parents = job[1], job[4], job[5]
  if redis.call('HEXISTS', nodes_key, id) == 0 then
    written = written + 1
    redis.call('HSET', nodes_key, id, cmsgpack.pack({job[2], job[3], callback}))
    redis.call('HINCRBY', meta_key, 'total', 1)
    if callback == '' then
      redis.call('HINCRBY', meta_key, 'members', 1)
    end
    if mode == 'create' then
      redis.call('RPUSH', order_key, id)
    else
      redis.call('RPUSH', addition_key, id)
      redis.call('HSET', adding_key, id, 1)
    end
    local pending, cause = parents_state(id, parents)
    if #parents > 0 then
      redis.call('HSET', pending_key, id, pending)
    end
    if cause then
      decide(w, id, 'u' .. cause)
    elseif mode == 'create' and callback ~= '' then
      redis.call('HSET', callbacks_key, id, callback)
    elseif mode == 'create' and pending == 0 then
      decide(w, id, 'r')
    end
  end
end
settle_inside(w)
return written
