--[[
enqueue: write new jobs of one queue, the one way every script does (enqueue_jobs, and
advance_schedules for a schedule's jobs). `q` is a table of the queue's names: ready,
delayed, seq, wake (keys), job_prefix, priority_max, wake_cap, and what the wake include's
hand-over to idle holders needs (without `idle`, only wake tokens).

NEW_WIDTH: how many values one job takes: its NEW_FIELDS values (see the fields include),
in that order.
enqueue_new(q, values, first, count, rules): the `count` jobs whose values sit in the table
`values` (ARGV, say) from index `first` on, NEW_WIDTH each. A job whose id has a key
already, or came earlier in the call, is left alone. Each other job's record gets its NEW
fields (an optional one, without a default, only when it is not ''), the counters the
producer does not set at their defaults, and its status: scheduled in the delayed set when
its run_at_ms is later than its enqueued_at_ms, else queued in ready with a score (priority,
then FIFO: one INCRBY reserves the call's numbers). Each ready job created wakes a worker
(wake_ready: handed to an idle holder, else a wake token), and a new delayed job due
before everything already delayed wakes one more (wake_one: it claims and learns the new
next_due_ms). The caller has checked ids,
priorities and key types. Returns one integer per job, in order: 1 created, 0 existed.
With the flow names in `q` (the lanes and limits includes; q.rules nil: none), a queue
that stores rules (one EXISTS per call) gives each new job of a ruled task its lane (the
record's `lane`, for every later step) and makes it ready there; a job with a start_by_ms
joins the expiry index. With `rules` (the dedupe include's read_rules, sent when any job of
the call has a unique key or a dedupe), the jobs go one by one through the dedupe include's
admit_new instead, which writes each with write_new and may reply {outcome, job id}.
enqueue_waiting(q, values, first, count): the same jobs written as waiting for their
parents (a workflow's): the record as above with status waiting, the id in the set q.waiting
(a key), in no lane and waking no one (a workflow's release queues them). Returns the same.
]]
--- @include "record"
--- @include "score"
--- @include "wake"
--- @include "delayed"
--- @include "limits"
--- @include "events"
local NEW_WIDTH = #NEW_FIELDS
-- Where each NEW value sits among a job's values: values[at + ENQ_AT.name].
local ENQ_AT = positions(NEW_FIELDS)
for name, i in pairs(ENQ_AT) do
  ENQ_AT[name] = i - 1
end

-- HSET arguments of one record, refilled for each job: the NEW fields that have a
-- default, the counters at their defaults, then the status (and score) and the optional
-- fields that were given. ENQ_REQUIRED[k]: where the k-th value pair's value comes from.
local enq_record, ENQ_REQUIRED, ENQ_OPTIONAL, ENQ_OPTIONAL_AT = {}, {}, {}, {}
for i, name in ipairs(NEW_FIELDS) do
  if FIELD_DEFAULT[name] == nil then
    local k = #ENQ_OPTIONAL + 1
    ENQ_OPTIONAL[k], ENQ_OPTIONAL_AT[k] = name, i - 1
  else
    local n = #enq_record
    enq_record[n + 1], enq_record[n + 2] = name, ''
    ENQ_REQUIRED[#ENQ_REQUIRED + 1] = i - 1
  end
end
for _, part in ipairs(NEW_COUNTERS) do
  enq_record[#enq_record + 1] = part
end
local ENQ_COUNTERS_AT = #enq_record

-- Pass 1: which jobs are new (also within this call), and how many of them go to ready.
local function new_ids(q, values, first, count)
  local created, seen, ready = {}, {}, 0
  local at_id, at_run, at_enqueued = ENQ_AT.id, ENQ_AT.run_at_ms, ENQ_AT.enqueued_at_ms
  for i = 1, count do
    local at = first + (i - 1) * NEW_WIDTH
    local id = values[at + at_id]
    if seen[id] or redis.call('EXISTS', q.job_prefix .. id) == 1 then
      created[i] = 0
    else
      seen[id] = true
      created[i] = 1
      if tonumber(values[at + at_run]) <= tonumber(values[at + at_enqueued]) then
        ready = ready + 1
      end
    end
  end
  return created, ready
end

-- The event of the new job at `at`.
local function emit_new(q, values, at)
  EVENT.emit(q, 'enqueued', values[at + ENQ_AT.id], values[at + ENQ_AT.task], '0', nil, nil,
    values[at + ENQ_AT.enqueued_at_ms])
end

-- The HSET arguments of the job at `at`, up to its status; returns how many are filled.
local function fill_record(values, at, status)
  local record = enq_record
  for k = 1, #ENQ_REQUIRED do
    record[2 * k] = values[at + ENQ_REQUIRED[k]]
  end
  local n = ENQ_COUNTERS_AT
  record[n + 1], record[n + 2] = 'status', status
  return n + 2
end

-- Append the optional fields the job was given (not '') to the HSET arguments.
local function add_optional(values, at, n)
  local record = enq_record
  for k = 1, #ENQ_OPTIONAL do
    local value = values[at + ENQ_OPTIONAL_AT[k]]
    if value ~= '' then
      record[n + 1], record[n + 2] = ENQ_OPTIONAL[k], value
      n = n + 2
    end
  end
  return n
end

-- The lane of the job at `at` ('' without rules), written into the HSET arguments.
local function new_lane(q, values, at, n)
  if not q.ruled then
    return '', n
  end
  local lane = lane_for(q, values[at + ENQ_AT.task], values[at + ENQ_AT.key])
  if lane ~= '' then
    enq_record[n + 1], enq_record[n + 2] = 'lane', lane
    n = n + 2
  end
  return lane, n
end

-- Write the new job at `at`: scheduled in the delayed set when it runs later, else ready
-- in its lane with the score of `seq` (a job of the plain ready set is added to `plain`,
-- score and id, for one ZADD per call, when the caller passes that table). Returns its
-- run_at when delayed, else nil.
local function write_new(q, values, at, seq, plain)
  local id, run_at = values[at + ENQ_AT.id], values[at + ENQ_AT.run_at_ms]
  local key = q.job_prefix .. id
  if tonumber(run_at) > tonumber(values[at + ENQ_AT.enqueued_at_ms]) then
    local n = add_optional(values, at, fill_record(values, at, 'scheduled'))
    n = select(2, new_lane(q, values, at, n))
    redis.call('HSET', key, unpack(enq_record, 1, n))
    emit_new(q, values, at)
    if q.expiring then
      index_expiry(q, id, values[at + ENQ_AT.start_by_ms])
    end
    redis.call('ZADD', q.delayed, run_at, id)
    return tonumber(run_at)
  end
  local score = ready_score(q.priority_max, tonumber(values[at + ENQ_AT.priority]), seq)
  local n = fill_record(values, at, 'queued')
  enq_record[n + 1], enq_record[n + 2] = 'score', score
  n = add_optional(values, at, n + 2)
  local lane
  lane, n = new_lane(q, values, at, n)
  redis.call('HSET', key, unpack(enq_record, 1, n))
  emit_new(q, values, at)
  if lane == '' and plain then
    plain[#plain + 1], plain[#plain + 2] = score, id
  else
    make_ready(q, id, score, lane)
  end
  if q.expiring then
    index_expiry(q, id, values[at + ENQ_AT.start_by_ms])
  end
  return nil
end

-- The jobs of a call without flow-control directives: pass 1 finds the new ones, one
-- INCRBY reserves their ready numbers, one ZADD adds the plain ready ones. Returns the
-- replies, how many went ready, and the earliest time one was delayed to.
local function write_plain(q, values, first, count)
  local created, new_ready = new_ids(q, values, first, count)
  local seq = 0
  if new_ready > 0 then
    seq = redis.call('INCRBY', q.seq, new_ready) - new_ready
  end
  local plain = {} -- score, id pairs for the plain ready set
  local earliest_delayed = nil
  for i = 1, count do
    if created[i] == 1 then
      local delayed_to = write_new(q, values, first + (i - 1) * NEW_WIDTH, seq + 1, plain)
      if delayed_to then
        earliest_delayed = earlier(earliest_delayed, delayed_to)
      else
        seq = seq + 1
      end
    end
  end
  call_chunked('ZADD', q.ready, plain)
  return created, new_ready, earliest_delayed
end

--- @include "dedupe"

local function enqueue_new(q, values, first, count, rules)
  if q.ruled == nil then -- once per script call
    q.ruled = q.rules ~= nil and redis.call('EXISTS', q.rules) == 1
  end
  local old_head = delayed_head(q.delayed)
  local out, new_ready, earliest_delayed
  if rules then
    out, new_ready, earliest_delayed = admit_new(q, values, first, count, rules, write_new)
  else
    out, new_ready, earliest_delayed = write_plain(q, values, first, count)
  end
  wake_ready(q, new_ready)
  if is_new_head(earliest_delayed, old_head) then
    wake_one(q)
  end
  return out
end

local function enqueue_waiting(q, values, first, count)
  local created = new_ids(q, values, first, count)
  local at_id = ENQ_AT.id
  for i = 1, count do
    if created[i] == 1 then
      local at = first + (i - 1) * NEW_WIDTH
      local id = values[at + at_id]
      local n = add_optional(values, at, fill_record(values, at, 'waiting'))
      redis.call('HSET', q.job_prefix .. id, unpack(enq_record, 1, n))
      redis.call('SADD', q.waiting, id)
      emit_new(q, values, at)
    end
  end
  return created
end
