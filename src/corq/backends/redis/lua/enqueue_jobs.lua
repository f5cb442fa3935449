--[[
enqueue_jobs: store a batch of new jobs of one queue, atomically.

A job whose run_at_ms is later than its enqueued_at_ms waits in the delayed set
(status scheduled); any other job goes to the ready set (status queued) with a score
that orders it by priority, then FIFO. An id that already has a key is left untouched.
Idle workers are woken with one wake token per ready job created, plus one when a new
delayed job is due before everything already delayed (so a worker claims, learns the new
next_due_ms and sets its timer); the wake list is capped. The caller has checked ids and
priorities; queue keys of the wrong type refuse the whole call before anything is written.
The writing is the enqueue include's (advance_schedules enqueues the same way).

KEYS[1] ready          ZSET  ready job ids by score
KEYS[2] delayed        ZSET  delayed job ids by run_at_ms
KEYS[3] seq            STR   counter behind the FIFO part of ready scores
KEYS[4] wake           LIST  wake tokens idle workers block on
KEYS[5] unique         HASH  unique key -> job holding it
KEYS[6] unique_kept    ZSET  unique keys kept after their job's end
KEYS[7] cooldown       HASH  cooldown key -> '<until>:<job id>'
KEYS[8] cooldown_until ZSET  cooldown key -> until
KEYS[9] flow           HASH  flow-control counters (cooled)
KEYS[10] suspects      ZSET  suspects (a holder replaced, debounced or cancelled may be one)
KEYS[11] waiting       SET   jobs waiting for their parents (a cancelled holder may be one)
KEYS[12] outbox        ZSET  ended workflow jobs (a cancelled holder notes its end)
ARGV[1] job_prefix     a record's key is job_prefix .. id
ARGV[2] priority_max   highest priority (for the ready score)
ARGV[3] wake_cap       longest the wake list may grow
ARGV[4] held_prefix    a holder's held set is held_prefix .. holder (a cancelled running job)
ARGV[5] done_prefix    a job's done channel is done_prefix .. id
ARGV[6] cancel_ttl_ms  how long a cancelled holder's record is kept
ARGV[7] keep_ms        least a workflow job's record is kept (WORKFLOW_KEEP_MS)
ARGV[8] rules          how many flow-control directives follow (0: none, the plain path)
ARGV[9..] the directives, six values each (see the dedupe include's read_rules)
ARGV[..] then per job, the values of NEW_FIELDS (see the fields include), in that order

Each record gets the NEW fields (bar optional ones, without a default, sent as '': not
written), the counters (fields of kind count) the producer does not set at their defaults,
and its status (and score when ready). With directives (sent when any job of the call has a
unique key or a dedupe), the jobs are admitted one by one (the dedupe include): cooldown,
uniqueness, debounce; the keys they use are type-checked only then.

Returns: one reply per job, in order: 1 created, 0 the id already existed, or {outcome,
job id} (existing, replaced, debounced, dropped: the job the outcome names).
]]
--- @include "keys"
--- @include "enqueue"
local ready_key = KEYS[1]
local delayed_key = KEYS[2]
local seq_key = KEYS[3]
local wake_key = KEYS[4]
local unique_key = KEYS[5]
local unique_kept_key = KEYS[6]
local cooldown_key = KEYS[7]
local cooldown_until_key = KEYS[8]
local flow_key = KEYS[9]
local suspects_key = KEYS[10]
local waiting_key = KEYS[11]
local outbox_key = KEYS[12]
local job_prefix = ARGV[1]
local priority_max = tonumber(ARGV[2])
local wake_cap = tonumber(ARGV[3])
local held_prefix = ARGV[4]
local done_prefix = ARGV[5]
local cancel_ttl_ms = tonumber(ARGV[6])
local keep_ms = tonumber(ARGV[7])
local rule_count = tonumber(ARGV[8])
local RULES = 9
local FIRST = RULES + rule_count * RULE_WIDTH

expect_types({ready_key, 'zset', delayed_key, 'zset', seq_key, 'string', wake_key, 'list'})

local q = {
  ready = ready_key, delayed = delayed_key, seq = seq_key, wake = wake_key,
  job_prefix = job_prefix, priority_max = priority_max, wake_cap = wake_cap,
}
local rules = nil
if rule_count > 0 then
  expect_types({unique_key, 'hash', unique_kept_key, 'zset', cooldown_key, 'hash',
    cooldown_until_key, 'zset', flow_key, 'hash', suspects_key, 'zset', waiting_key, 'set',
    outbox_key, 'zset'})
  q.unique, q.unique_kept, q.cooldown, q.cooldown_until = unique_key, unique_kept_key,
    cooldown_key, cooldown_until_key
  q.flow, q.suspects, q.waiting, q.outbox = flow_key, suspects_key, waiting_key, outbox_key
  q.held_prefix, q.done_prefix, q.cancel_ttl_ms, q.keep_ms = held_prefix, done_prefix,
    cancel_ttl_ms, keep_ms
  rules = read_rules(ARGV, RULES, rule_count)
end
return enqueue_new(q, ARGV, FIRST, (#ARGV - FIRST + 1) / NEW_WIDTH, rules)
