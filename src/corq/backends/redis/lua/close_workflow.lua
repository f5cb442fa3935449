--[[
close_workflow: close an open batch: it takes no more jobs, and its callbacks may be
decided from now on (at once when every member has ended).



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

Returns: {1 if it was open and is now closed else 0, state ('gone', 'creating' or 'live'), 1 if
it finished now else 0, then (live only) every todo entry as job id, queue, decision}.
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

if not w.state then
  return {0, 'gone', 0}
end
local closed = 0
if w.open == '1' then
  redis.call('HSET', meta_key, 'open', '0')
  w.open = '0'
  closed = 1
end
settle_inside(w)
local out = {closed, w.state, finish_if_done(w) and 1 or 0}
if w.state == 'live' then
  put_todo(w, out)
end
return out
