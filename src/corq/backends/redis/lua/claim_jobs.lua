--[[
claim_jobs: hand up to `count` jobs of one queue to a registered holder.

Checks the holder is still registered (else claims nothing and reports it lost), renews
its lease, promotes delayed jobs whose time has come (at most `batch`), then pops first up
to `suspects` suspects (best score first; run in a sandbox, record flag isolated 1), then
the best-scored ready jobs up to `count` in all (isolated 0). Each becomes running under
the holder with attempt + 1 and a new fence, and joins the holder's held set as soon as it
is popped and checked, before it is marked running (the claim include). A record with no
task is handed out with task '' (the worker dead-letters it). If ready jobs remain, idle
holders are handed them (when this claim took some) and, when no wake token is pending,
one is pushed so another waiting worker comes to help (chain wake-up, the wake include).

A paused queue (KEYS[21] exists) hands nothing out: the claim renews the lease and
promotes, takes no job, lists no idle holder and wakes nobody (no chain wake either, or
waiting workers would wake each other in turn).

With `idle` '1', a claim that takes nothing lists the holder in `idle` (the next step that
makes a job ready hands one to it, see the wake include), unless its inbox already holds
something (await_jobs returns that at once). A claim that takes something unlists it.

KEYS[1] workers        ZSET  holder id -> lease deadline
KEYS[2] ready          ZSET  ready job ids by score
KEYS[3] delayed        ZSET  delayed job ids by run_at_ms
KEYS[4] seq            STR   counter behind the FIFO part of ready scores
KEYS[5] wake           LIST  wake tokens
KEYS[6] held           SET   ids this holder holds in the queue
KEYS[7] suspects       ZSET  suspect job ids by score
KEYS[8] dead           ZSET  dead job ids by finished_at_ms
KEYS[9] outbox         ZSET  ended workflow jobs (a damaged one buried here ends)
KEYS[10] rules           HASH  task -> its encoded rules
KEYS[11] groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[12] parked          SET   groups and keys at their concurrency
KEYS[13] throttled       ZSET  groups and keys over a rate -> when due
KEYS[14] active          HASH  running counts per task and lane
KEYS[15] tat             HASH  GCRA theoretical arrival times
KEYS[16] flow            HASH  counters (expired, dropped, laned, turn)
KEYS[17] expiring        ZSET  job id -> start_by_ms
KEYS[18] idle            ZSET  idle holders waiting to be handed a job
KEYS[19] unique          HASH  unique key -> job holding it (an end frees it)
KEYS[20] unique_kept     ZSET  unique keys kept after their job's end
KEYS[21] paused          STR   set while the queue is paused (set_queue_paused)
KEYS[22] events          STREAM the queue's lifecycle events (the events include)
ARGV[1] job_prefix     a record's key is job_prefix .. id
ARGV[2] done_prefix    a job's done channel is done_prefix .. id
ARGV[3] holder         the claiming holder
ARGV[4] count          most jobs to claim
ARGV[5] suspects       most of them to take from the suspects
ARGV[6] lease_ms       lease length from now
ARGV[7] now_ms         the caller's clock, or '' for the broker's
ARGV[8] batch          most jobs to claim, delayed jobs to promote, dead letters to trim
ARGV[9] priority_min   lowest valid priority
ARGV[10] priority_max  highest valid priority (for the ready score)
ARGV[11] dead_max      most dead letters kept (0: no limit)
ARGV[12] dead_ttl_ms   longest a dead letter is kept (0: no limit)
ARGV[13] queue         the queue's name (handed out with each job)
ARGV[14] lane_prefix   a lane's jobs are lane_prefix .. lane
ARGV[15] keys_prefix   a task's rotation of keys is keys_prefix .. task
ARGV[16] held_prefix   a holder's held set is held_prefix .. holder (hand-overs)
ARGV[17] inbox_prefix  a holder's inbox is inbox_prefix .. holder
ARGV[18] idle          '1': list the holder idle when nothing is taken

Flow control costs a queue without it one EXISTS: with lanes, throttled lanes or deadlines,
promotion also ends the jobs past their deadline and restores the throttled lanes due, and
the ready jobs come from the rotations (take_laned); next_due_ms is then the earlier of the
delayed head and the next throttled lane.

A claim reads each record's CLAIMED and CHECKED fields (see the fields include) with their
kinds, bar those it sets itself (id, queue, suspect); a priority is required.

Returns: {1} when the holder is not registered; otherwise {0, next_due_ms or nil, suspects
still waiting, 1 when the holder is listed idle (or has an inbox to take) else 0, then per job the values of CLAIMED_FIELDS in that order (flat: nested tables
cost a claim ~15% more); numbers as integers, suspect 1/0, a missing text as its default}.
]]
--- @include "now"
--- @include "keys"
--- @include "record"
--- @include "dead"
--- @include "promote"
--- @include "wake"
--- @include "delayed"
--- @include "claim"
--- @include "events"
local workers_key = KEYS[1]
local ready_key = KEYS[2]
local delayed_key = KEYS[3]
local seq_key = KEYS[4]
local wake_key = KEYS[5]
local held_key = KEYS[6]
local suspects_key = KEYS[7]
local dead_key = KEYS[8]
local outbox_key = KEYS[9]
local job_prefix = ARGV[1]
local done_prefix = ARGV[2]
local holder = ARGV[3]
local count = tonumber(ARGV[4])
local suspects_wanted = tonumber(ARGV[5])
local lease_ms = tonumber(ARGV[6])
local now_ms = resolve_now(ARGV[7])
local batch = tonumber(ARGV[8])
local priority_min = tonumber(ARGV[9])
local priority_max = tonumber(ARGV[10])
local dead_max = tonumber(ARGV[11])
local dead_ttl_ms = tonumber(ARGV[12])
local queue = ARGV[13]
local rules_key = KEYS[10]
local groups_key = KEYS[11]
local parked_key = KEYS[12]
local throttled_key = KEYS[13]
local active_key = KEYS[14]
local tat_key = KEYS[15]
local flow_key = KEYS[16]
local expiring_key = KEYS[17]
local lane_prefix = ARGV[14]
local keys_prefix = ARGV[15]
local idle_key = KEYS[18]
local unique_key = KEYS[19]
local unique_kept_key = KEYS[20]
local events_key = KEYS[22]
local held_prefix = ARGV[16]
local inbox_prefix = ARGV[17]
local idle = ARGV[18]
local paused_key = KEYS[21]

local q = {
  ready = ready_key, delayed = delayed_key, suspects = suspects_key, seq = seq_key,
  dead = dead_key, outbox = outbox_key, job_prefix = job_prefix, done_prefix = done_prefix, batch = batch,
  priority_min = priority_min, priority_max = priority_max, dead_max = dead_max,
  dead_ttl_ms = dead_ttl_ms, rules = rules_key, groups = groups_key, parked = parked_key,
  throttled = throttled_key, active = active_key, tat = tat_key, flow = flow_key,
  expiring = expiring_key, lane_prefix = lane_prefix, keys_prefix = keys_prefix,
  workers = workers_key, idle = idle_key, held_prefix = held_prefix,
  inbox_prefix = inbox_prefix, queue = queue, now_ms = now_ms, wake = wake_key,
}
q.events = events_key
q.unique, q.unique_kept = unique_key, unique_kept_key
expect_types({workers_key, 'zset', ready_key, 'zset', delayed_key, 'zset', seq_key, 'string',
  wake_key, 'list', held_key, 'set', suspects_key, 'zset', dead_key, 'zset', outbox_key, 'zset',
  idle_key, 'zset'})

if not redis.call('ZSCORE', workers_key, holder) then
  return {1}
end
redis.call('ZADD', workers_key, int(now_ms + lease_ms), holder)

local flowing = redis.call('EXISTS', groups_key, throttled_key, expiring_key) > 0
if flowing then
  expect_types({rules_key, 'hash', groups_key, 'zset', parked_key, 'set', throttled_key, 'zset',
    active_key, 'hash', tat_key, 'hash', flow_key, 'hash', expiring_key, 'zset'})
  promote_flow(q, now_ms, batch)
end
local _, buried = promote_due(q, now_ms, batch)
flowing = flowing or q.made_laned == true

local out = {0, false, 0, 0}
local c = claim_context(q, holder, held_key, queue, now_ms, out)

count = math.min(count, batch) -- one call stays bounded; the worker claims again for more
local paused = redis.call('EXISTS', paused_key) == 1
if paused then
  count, idle = 0, '0'
end
local taken = 0
if count > 0 then
  taken = take_jobs(c, suspects_key, math.min(suspects_wanted, count), '1')
  if flowing then
    taken = taken + take_laned(c, count - taken)
  else
    taken = taken + take_jobs(c, ready_key, count - taken, '0')
  end
end
if taken > 0 then
  redis.call('ZREM', idle_key, holder)
elseif idle == '1' then
  if redis.call('EXISTS', inbox_prefix .. holder) == 0 then
    redis.call('ZADD', idle_key, 'NX', int(now_ms), holder)
  end
  out[4] = 1
end

buried = buried + c.buried
if buried > 0 then
  trim_dead(q, now_ms)
end
if flowing then
  if not paused then
    chain_wake(q, taken > 0, groups_key)
  end
  out[2] = earlier(delayed_head(delayed_key), throttled_head(q)) or false
else
  if not paused then
    chain_wake(q, taken > 0, ready_key)
  end
  out[2] = delayed_head(delayed_key) or false
end
out[3] = redis.call('ZCARD', suspects_key)
return out
