--[[
advance_schedules: apply schedule steps whose schedules are in one queue, each checked and
written on its own, in order (see TickStep in corq/backends/base.py).

Per step: GONE when the schedule has no usable record here (removed, moved away, or
damaged: its record or one of its other keys unreadable); FENCED when the call carries a fence below the highest one that wrote in this
slot; PAUSED when the step may not run while paused; STALE when its tick is not due by its
rule any more (FIRE, SKIP, BUFFER: the tick is above last_tick_ms; BUFFER: none buffered;
FIRE_BUFFERED: the tick is the buffered one; BACKFILL: floor_ms < tick <= last_tick_ms, not
fired, not the buffered one). Otherwise the step is DONE: the skip it carries is logged,
then FIRE, SKIP and BUFFER move last_tick_ms to the tick; BUFFER keeps it as the buffered
tick, FIRE_BUFFERED clears it; SKIP logs its own skip; and a step with a job enqueues it
as enqueue_jobs does (an id that exists is left alone), adds the tick to the fired ticks
(but MANUAL; the oldest beyond fired_keep go below floor_ms), counts it and logs the run.
A DONE step with a fence makes it the slot's highest. The caller has checked the jobs and
that they belong to this queue.

KEYS[1] slot_fence      STR   highest scheduler fence that wrote in this slot
KEYS[2] ready           ZSET  ready job ids by score
KEYS[3] delayed         ZSET  delayed job ids by run_at_ms
KEYS[4] seq             STR   counter behind the FIFO part of ready scores
KEYS[5] wake            LIST  wake tokens idle workers block on
KEYS[6]  rules           HASH  task -> its encoded rules
KEYS[7]  groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[8]  parked          SET   groups and keys at their concurrency
KEYS[9]  throttled       ZSET  groups and keys over a rate -> when due
KEYS[10] active          HASH  running counts per task and lane
KEYS[11] tat             HASH  GCRA theoretical arrival times
KEYS[12] flow            HASH  counters (expired, dropped, laned, turn)
KEYS[13] expiring        ZSET  job id -> start_by_ms
KEYS[14] workers         ZSET  holder id -> lease deadline (hand-overs go to live holders)
KEYS[15] idle            ZSET  idle holders waiting to be handed a job (the wake include)
KEYS[16] dead            ZSET  dead letters (a damaged record met by a hand-over goes there)
KEYS[17] outbox          ZSET  ended workflow jobs (such a buried one ends)
KEYS[18]       events          STREAM the queue's lifecycle events (the events include)
ARGV[1] record_prefix   a schedule's record is record_prefix .. name
ARGV[2] fired_prefix    its fired ticks: fired_prefix .. name
ARGV[3] runs_prefix     its runs: runs_prefix .. name
ARGV[4] skips_prefix    its skips: skips_prefix .. name
ARGV[5] job_prefix      a job's record is job_prefix .. id
ARGV[6] priority_max    highest priority (for the ready score)
ARGV[7] wake_cap        longest the wake list may grow
ARGV[8] fence           the caller's lease fence, or '' (no fence check)
ARGV[9] now_ms          the caller's clock, or '' for the broker's
ARGV[10] fired_keep     fired ticks kept one by one
ARGV[11] log_keep       entries each log keeps
ARGV[12] queue          this queue's name (written in each run)
ARGV[13] lane_prefix    a lane's jobs are lane_prefix .. lane
ARGV[14] keys_prefix    a task's rotation of keys is keys_prefix .. task
ARGV[15] done_prefix    a job's done channel is done_prefix .. id
ARGV[16] held_prefix    a holder's held set is held_prefix .. holder
ARGV[17] inbox_prefix   a holder's inbox is inbox_prefix .. holder
ARGV[18] batch          most dead letters to trim
ARGV[19] dead_max       most dead letters kept (0: no limit)
ARGV[20] dead_ttl_ms    longest a dead letter is kept (0: no limit)
ARGV[21..] per step, STEP_WIDTH values: name, step (a TickStep value), tick_ms, kind,
reason, has_skipped (1/0), the skipped ticks' first, last, count, reason and at_ms (''
without), has_job (1/0), then the job's NEW_FIELDS values ('' without; see the enqueue
include)

Returns: one TickOutcome value per step, in order.
]]
--- @include "now"
--- @include "keys"
--- @include "schedule"
--- @include "enqueue"
--- @include "events"
local fence_key = KEYS[1]
local ready_key = KEYS[2]
local delayed_key = KEYS[3]
local seq_key = KEYS[4]
local wake_key = KEYS[5]
local record_prefix = ARGV[1]
local fired_prefix = ARGV[2]
local runs_prefix = ARGV[3]
local skips_prefix = ARGV[4]
local job_prefix = ARGV[5]
local priority_max = tonumber(ARGV[6])
local wake_cap = tonumber(ARGV[7])
local fence = tonumber(ARGV[8])
local now_ms = resolve_now(ARGV[9])
local fired_keep = tonumber(ARGV[10])
local log_keep = tonumber(ARGV[11])
local queue = ARGV[12]
local rules_key = KEYS[6]
local groups_key = KEYS[7]
local parked_key = KEYS[8]
local throttled_key = KEYS[9]
local active_key = KEYS[10]
local tat_key = KEYS[11]
local flow_key = KEYS[12]
local expiring_key = KEYS[13]
local lane_prefix = ARGV[13]
local keys_prefix = ARGV[14]
local workers_key = KEYS[14]
local idle_key = KEYS[15]
local dead_key = KEYS[16]
local outbox_key = KEYS[17]
local events_key = KEYS[18]
local done_prefix = ARGV[15]
local held_prefix = ARGV[16]
local inbox_prefix = ARGV[17]
local batch = tonumber(ARGV[18])
local dead_max = tonumber(ARGV[19])
local dead_ttl_ms = tonumber(ARGV[20])
local FIRST = 21
local FIXED = 12 -- values of a step before its job's
local STEP_WIDTH = FIXED + NEW_WIDTH

expect_types({fence_key, 'string', ready_key, 'zset', delayed_key, 'zset', seq_key, 'string',
  wake_key, 'list', idle_key, 'zset'})
local q = {
  ready = ready_key, delayed = delayed_key, seq = seq_key, wake = wake_key,
  job_prefix = job_prefix, priority_max = priority_max, wake_cap = wake_cap, dead = dead_key,
  outbox = outbox_key, done_prefix = done_prefix, batch = batch, dead_max = dead_max,
  dead_ttl_ms = dead_ttl_ms,
}
q.events = events_key
with_flow(q, rules_key, groups_key, parked_key, throttled_key, active_key, tat_key,
  flow_key, expiring_key, lane_prefix, keys_prefix)
with_handover(q, workers_key, idle_key, held_prefix, inbox_prefix, queue, now_ms, wake_key,
  wake_cap)
-- A slot fence that is not a number (another program's) is overwritten by the next write.
local slot_fence = tonumber(redis.call('GET', fence_key) or '0') or 0

-- The tick joins the fired ticks; those beyond fired_keep go below the floor.
local function add_fired(record_key, fired_key, s, tick)
  redis.call('ZADD', fired_key, tick, tick)
  local extra = redis.call('ZCARD', fired_key) - fired_keep
  if extra > 0 then
    local popped = redis.call('ZPOPMIN', fired_key, extra)
    local top = tonumber(popped[#popped])
    if top > s.floor_ms then
      redis.call('HSET', record_key, 'floor_ms', int(top))
    end
  end
end

-- Enqueue the step's job, count it and log the run.
local function fire(at, record_key, runs_key, tick)
  local job_at = at + FIXED
  enqueue_new(q, ARGV, job_at, 1)
  redis.call('HINCRBY', record_key, 'fired', 1)
  local job_id = ARGV[job_at + ENQ_AT.id]
  log_entry(runs_key, pack_run(tick, job_id, queue, ARGV[at + 3], now_ms), log_keep)
end

-- nil when the step may run, else its outcome; `s` is the record as read_schedule gives it.
local function refusal(step, tick, s, fired_key)
  local paused_matters = step == 'fire' or step == 'buffer' or step == 'fire_buffered'
  if paused_matters and s.paused then
    return 'paused'
  end
  if step == 'fire' or step == 'skip' then
    return tick <= s.last_tick_ms and 'stale' or nil
  elseif step == 'buffer' then
    return (tick <= s.last_tick_ms or s.buffered_tick_ms) and 'stale' or nil
  elseif step == 'fire_buffered' then
    return s.buffered_tick_ms ~= tick and 'stale' or nil
  elseif step == 'backfill' then
    local due = tick > s.floor_ms and tick <= s.last_tick_ms and tick ~= s.buffered_tick_ms
    return (not due or redis.call('ZSCORE', fired_key, tick)) and 'stale' or nil
  end
  return nil -- manual
end

local function apply(at)
  local name, step, tick = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
  local record_key, fired_key = record_prefix .. name, fired_prefix .. name
  local s = read_schedule(record_key)
  if not s or s.moved_to then
    return 'gone'
  end
  local runs_key, skips_key = runs_prefix .. name, skips_prefix .. name
  if not logs_usable(fired_key, runs_key, skips_key) then
    return 'gone' -- damaged: nothing can fire it
  end
  if fence and fence < slot_fence then
    return 'fenced'
  end
  local refused = refusal(step, tick, s, fired_key)
  if refused then
    return refused
  end
  if ARGV[at + 5] == '1' then
    local count = tonumber(ARGV[at + 8])
    local entry = pack_skip(tonumber(ARGV[at + 6]), tonumber(ARGV[at + 7]), count,
      ARGV[at + 9], tonumber(ARGV[at + 10]))
    log_entry(skips_key, entry, log_keep)
    redis.call('HINCRBY', record_key, 'skipped', count)
  end
  if step == 'fire' or step == 'skip' or step == 'buffer' then
    redis.call('HSET', record_key, 'last_tick_ms', int(tick))
  end
  if step == 'skip' then
    log_entry(skips_key, pack_skip(tick, tick, 1, ARGV[at + 4], now_ms), log_keep)
    redis.call('HINCRBY', record_key, 'skipped', 1)
  elseif step == 'buffer' then
    redis.call('HSET', record_key, 'buffered_tick_ms', int(tick))
  else
    if step == 'fire_buffered' then
      redis.call('HDEL', record_key, 'buffered_tick_ms')
    end
    if step ~= 'manual' then
      add_fired(record_key, fired_key, s, tick)
    end
    fire(at, record_key, runs_key, tick)
  end
  if fence and fence > slot_fence then
    slot_fence = fence
    redis.call('SET', fence_key, int(fence))
  end
  return 'done'
end

local outcomes = {}
for at = FIRST, #ARGV, STEP_WIDTH do
  outcomes[#outcomes + 1] = apply(at)
end
return outcomes
