--[[
lanes: where a ready job waits, and the two rotations claims visit lanes in (see
docs/design.md, "Flow control", "Lanes"). `q` is the queue's table with ready, job_prefix
and the flow names: groups, parked, throttled, flow (keys), lane_prefix, keys_prefix.

A lane is `<task>\x1f<key>` ('' is the plain ready set, q.ready); its jobs wait in the ZSET
lane_prefix .. lane with their ready scores. The rotation of groups (q.groups: each ruled
task with a runnable lane, and '' for the plain ready set while lanes exist) and, per
task, the rotation of its keys (keys_prefix .. task: lane -> score) are scored
band(head priority) * 2^44 + turn (HINCRBY flow turn), lowest first: a higher head
priority is visited first, and a visited lane goes to the back of its band. A member held
back (in q.parked, or in q.throttled until its due time) is in no rotation: 't:' .. task
for a group, 'k:' .. lane for a key.

make_ready(q, id, score, lane): THE way a job becomes ready (enqueue, promotion, release,
reclaim, retries, workflow release): ZADD into its lane (the record's `lane` field) and
offer that lane to its rotations unless held back (each lane and group once per band in a
call, remembered in q.offered; a claim forgets it: forget_offers(q)). Returns 1 when the
id was added; a job put in a lane sets q.made_laned (the caller's claim then visits the
rotations).
take_out(q, id, lane): the removal counterpart (cancel, expiry): ZREM from its lane; a
lane left empty leaves its rotation. Returns 1 when the id was there.
lane_parts(lane): task, key. held_back(q, member): parked or throttled.
rotate_key(q, task, lane) / rotate_group(q, task): after a visit (or an unpark), put the
key (group) at the back of its head's band, or out of its rotation when it has no head.
offer_group(q, task): a group not held back joins (or keeps a better band in) the
rotation. offer_plain(q) / rotate_plain(q): the same for the plain ready set ('').
hold_back(q, member, due): take a group or key out of its rotation, parked (due nil) or
throttled until `due`. unpark(q, member): a parked member back in its rotation (O(1)).
restore_due(q, now_ms, limit): throttled members due by now back in their rotations.
laned_add(q, n): the count of jobs in lanes (FlowStats.laned, QueueStats.ready).
with_flow(q, rules, groups, parked, throttled, active, tat, flow, expiring, lane_prefix,
keys_prefix): `q` with the flow names set (a script binds its KEYS/ARGV, then calls this).
]]
--- @include "score"
local LANE_SEP = '\031'

local function with_flow(q, rules, groups, parked, throttled, active, tat, flow, expiring,
    lane_prefix, keys_prefix)
  q.rules, q.groups, q.parked, q.throttled = rules, groups, parked, throttled
  q.active, q.tat, q.flow, q.expiring = active, tat, flow, expiring
  q.lane_prefix, q.keys_prefix = lane_prefix, keys_prefix
  return q
end

local function lane_parts(lane)
  local at = string.find(lane, LANE_SEP, 1, true)
  if not at then
    return lane, ''
  end
  return string.sub(lane, 1, at - 1), string.sub(lane, at + 1)
end

local function band_of(score)
  return math.floor(tonumber(score) / SCORE_BAND)
end

-- The band of the best member of a ZSET, or nil when it is empty.
local function head_band(zset)
  local head = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')[2]
  return head and band_of(head)
end

local function turn_score(q, band)
  return string.format('%d', band * SCORE_BAND + redis.call('HINCRBY', q.flow, 'turn', 1))
end

local function laned_add(q, n)
  if n ~= 0 then
    redis.call('HINCRBY', q.flow, 'laned', n)
  end
end

local function held_back(q, member)
  return redis.call('SISMEMBER', q.parked, member) == 1
    or redis.call('ZSCORE', q.throttled, member) ~= false
end

local function rotate_group(q, task)
  local band = head_band(q.keys_prefix .. task)
  if band then
    redis.call('ZADD', q.groups, turn_score(q, band), task)
  else
    redis.call('ZREM', q.groups, task)
  end
end

local function offer_group(q, task)
  if held_back(q, 't:' .. task) then
    return
  end
  local band = head_band(q.keys_prefix .. task)
  if band then
    redis.call('ZADD', q.groups, 'LT', turn_score(q, band), task)
  end
end

local function rotate_key(q, task, lane)
  local band = head_band(q.lane_prefix .. lane)
  if band then
    redis.call('ZADD', q.keys_prefix .. task, turn_score(q, band), lane)
  else
    redis.call('ZREM', q.keys_prefix .. task, lane)
  end
end

local function offer_plain(q)
  local band = head_band(q.ready)
  if band then
    redis.call('ZADD', q.groups, 'LT', turn_score(q, band), '')
  end
end

local function rotate_plain(q)
  local band = head_band(q.ready)
  if band then
    redis.call('ZADD', q.groups, turn_score(q, band), '')
  else
    redis.call('ZREM', q.groups, '')
  end
end

-- Offer `lane` (a job of band `band` just joined it) to its rotations, once per band in
-- a call: a step making many jobs ready checks each lane and group once, not per job.
local function offer_lane(q, task, lane, band)
  local offered = q.offered
  if not offered then
    offered = {lanes = {}, groups = {}}
    q.offered = offered
  end
  local known = offered.lanes[lane]
  if known and known <= band then
    return
  end
  offered.lanes[lane] = band
  if held_back(q, 'k:' .. lane) then
    return
  end
  redis.call('ZADD', q.keys_prefix .. task, 'LT', turn_score(q, band), lane)
  local group = offered.groups[task]
  if not group or band < group then
    offered.groups[task] = band
    offer_group(q, task)
  end
end

local function make_ready(q, id, score, lane)
  if not lane or lane == '' then
    return redis.call('ZADD', q.ready, score, id)
  end
  local added = redis.call('ZADD', q.lane_prefix .. lane, score, id)
  laned_add(q, added)
  q.made_laned = true
  offer_lane(q, (lane_parts(lane)), lane, band_of(score))
  return added
end

local function forget_offers(q)
  q.offered = nil
end

local function take_out(q, id, lane)
  if not lane or lane == '' then
    return redis.call('ZREM', q.ready, id)
  end
  local lane_key = q.lane_prefix .. lane
  local removed = redis.call('ZREM', lane_key, id)
  laned_add(q, -removed)
  if removed == 1 and redis.call('EXISTS', lane_key) == 0 then
    local task = lane_parts(lane)
    redis.call('ZREM', q.keys_prefix .. task, lane)
    if redis.call('EXISTS', q.keys_prefix .. task) == 0 then
      redis.call('ZREM', q.groups, task)
    end
  end
  return removed
end

local function hold_back(q, member, due)
  local task, lane = string.sub(member, 3), nil
  if string.sub(member, 1, 2) == 'k:' then
    lane = task
    task = lane_parts(lane)
    redis.call('ZREM', q.keys_prefix .. task, lane)
  else
    redis.call('ZREM', q.groups, task)
  end
  if due then
    redis.call('ZADD', q.throttled, string.format('%d', due), member)
  else
    redis.call('SADD', q.parked, member)
  end
end

-- A member no longer held back goes back in its rotation.
local function restore(q, member)
  local name = string.sub(member, 3)
  if string.sub(member, 1, 2) == 'k:' then
    local task = lane_parts(name)
    rotate_key(q, task, name)
    offer_group(q, task)
  else
    rotate_group(q, name)
  end
end

local function unpark(q, member)
  if redis.call('SREM', q.parked, member) == 1 then
    restore(q, member)
  end
end

local function restore_due(q, now_ms, limit)
  local due = redis.call('ZRANGEBYSCORE', q.throttled, '-inf', string.format('%d', now_ms),
    'LIMIT', 0, limit)
  for _, member in ipairs(due) do
    redis.call('ZREM', q.throttled, member)
    restore(q, member)
  end
  return #due
end
