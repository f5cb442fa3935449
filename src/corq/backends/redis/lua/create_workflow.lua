--[[
create_workflow: begin a new workflow: its meta, state creating (nothing of it runs yet).

An existing workflow is left as it is and its state is returned: 'creating' (a creation
that died half-way: the caller finishes it) or 'live'. The jobs, their edges and counts
are written next (add_workflow_nodes), then the jobs' records, then open_workflow.

KEYS[1] meta            HASH  the workflow's state and counts
ARGV[1] kind            what built it (chain, group, chord, batch, depends, dag)
ARGV[2] shape           what its result is (one, list)
ARGV[3] outputs         the jobs whose results make its result: msgpack, an array of
                        (job id, queue) arrays
ARGV[4] created_at_ms   when the producer made it
ARGV[5] open            '1' for an open batch (takes more jobs until closed), else '0'

Returns: 'new' when created, else the existing workflow's state.
]]
local meta_key = KEYS[1]
local kind = ARGV[1]
local shape = ARGV[2]
local outputs = ARGV[3]
local created_at_ms = ARGV[4]
local open = ARGV[5]

local state = redis.pcall('HGET', meta_key, 'state')
if type(state) == 'table' and state.err then
  return redis.error_reply('WRONGTYPE ' .. meta_key .. ' is not a workflow hash')
end
if state then
  return state
end
redis.call('HSET', meta_key, 'state', 'creating', 'open', open, 'kind', kind, 'shape', shape,
  'outputs', outputs, 'created_at_ms', created_at_ms, 'total', 0, 'members', 0, 'ended', 0)
return 'new'
