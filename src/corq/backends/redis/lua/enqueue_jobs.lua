--[[
enqueue_jobs: store a batch of new jobs of one queue, atomically.

A job whose run_at_ms is later than its enqueued_at_ms waits in the delayed set
(status scheduled); any other job goes to the ready set (status queued) with a score
that orders it by priority, then FIFO. An id that already has a key is left untouched.
Each ready job created is handed to an idle holder (claimed for it, into its inbox) or
brings a wake token, plus one wake when a new delayed job is due before everything already
delayed (so a worker claims, learns the new next_due_ms and sets its timer); see the wake
include. The caller has checked ids and
priorities; queue keys of the wrong type refuse the whole call before anything is written.
The writing is the enqueue include's (advance_schedules enqueues the same way).

KEYS[1] ready         ZSET  ready job ids by score
KEYS[2] delayed       ZSET  delayed job ids by run_at_ms
KEYS[3] seq           STR   counter behind the FIFO part of ready scores
KEYS[4] wake          LIST  wake tokens idle workers block on
KEYS[5]  rules           HASH  task -> its encoded rules
KEYS[6]  groups          ZSET  the rotation of groups (ruled tasks, '' plain)
KEYS[7]  parked          SET   groups and keys at their concurrency
KEYS[8]  throttled       ZSET  groups and keys over a rate -> when due
KEYS[9]  active          HASH  running counts per task and lane
KEYS[10] tat             HASH  GCRA theoretical arrival times
KEYS[11] flow            HASH  counters (expired, dropped, laned, turn)
KEYS[12] expiring        ZSET  job id -> start_by_ms
KEYS[13] workers         ZSET  holder id -> lease deadline (hand-overs go to live holders)
KEYS[14] idle            ZSET  idle holders waiting to be handed a job (the wake include)
KEYS[15] dead            ZSET  dead letters (a damaged record met by a hand-over goes there)
KEYS[16] outbox          ZSET  ended workflow jobs (such a buried one ends)
KEYS[17] unique          HASH  unique key -> job holding it
KEYS[18] unique_kept     ZSET  unique keys kept after their job's end
KEYS[19] cooldown        HASH  cooldown key -> '<until>:<job id>'
KEYS[20] cooldown_until  ZSET  cooldown key -> until
KEYS[21] suspects        ZSET  suspects (a holder replaced, debounced or cancelled may be one)
KEYS[22] waiting         SET   jobs waiting for their parents (a cancelled holder may be one)
KEYS[23]       events          STREAM the queue's lifecycle events (the events include)
ARGV[1] job_prefix    a record's key is job_prefix .. id
ARGV[2] priority_max  highest priority (for the ready score)
ARGV[3] wake_cap      longest the wake list may grow
ARGV[4] lane_prefix   a lane's jobs are lane_prefix .. lane
ARGV[5] keys_prefix   a task's rotation of keys is keys_prefix .. task
ARGV[6] done_prefix     a job's done channel is done_prefix .. id
ARGV[7] held_prefix     a holder's held set is held_prefix .. holder
ARGV[8] inbox_prefix    a holder's inbox is inbox_prefix .. holder
ARGV[9] queue           the queue's name (handed out with each job)
ARGV[10] batch           most dead letters to trim
ARGV[11] dead_max        most dead letters kept (0: no limit)
ARGV[12] dead_ttl_ms     longest a dead letter is kept (0: no limit)
ARGV[13] cancel_ttl_ms   how long a cancelled holder's record is kept
ARGV[14] keep_ms         least a workflow job's record is kept (WORKFLOW_KEEP_MS)
ARGV[15] rules           how many flow-control directives follow (0: none, the plain path)
ARGV[16..] the directives, six values each (see the dedupe include's read_rules)
ARGV[..] then per job, the values of NEW_FIELDS (see the fields include), in that order

Each record gets the NEW fields (bar optional ones, without a default, sent as '': not
written), the counters (fields of kind count) the producer does not set at their defaults,
and its status (and score when ready). With directives (sent when any job of the call has a
unique key or a dedupe), the jobs are admitted one by one (the dedupe include): cooldown,
uniqueness, debounce; the keys only they use are type-checked only then.

Returns: one reply per job, in order: 1 created, 0 the id already existed, or {outcome,
job id} (existing, replaced, debounced, dropped: the job the outcome names).
]]
--- @include "keys"
--- @include "enqueue"
--- @include "events"
local ready_key = KEYS[1]
local delayed_key = KEYS[2]
local seq_key = KEYS[3]
local wake_key = KEYS[4]
local job_prefix = ARGV[1]
local priority_max = tonumber(ARGV[2])
local wake_cap = tonumber(ARGV[3])
local rules_key = KEYS[5]
local groups_key = KEYS[6]
local parked_key = KEYS[7]
local throttled_key = KEYS[8]
local active_key = KEYS[9]
local tat_key = KEYS[10]
local flow_key = KEYS[11]
local expiring_key = KEYS[12]
local lane_prefix = ARGV[4]
local keys_prefix = ARGV[5]
local workers_key = KEYS[13]
local idle_key = KEYS[14]
local dead_key = KEYS[15]
local outbox_key = KEYS[16]
local unique_key = KEYS[17]
local unique_kept_key = KEYS[18]
local cooldown_key = KEYS[19]
local cooldown_until_key = KEYS[20]
local suspects_key = KEYS[21]
local waiting_key = KEYS[22]
local events_key = KEYS[23]
local done_prefix = ARGV[6]
local held_prefix = ARGV[7]
local inbox_prefix = ARGV[8]
local queue = ARGV[9]
local batch = tonumber(ARGV[10])
local dead_max = tonumber(ARGV[11])
local dead_ttl_ms = tonumber(ARGV[12])
local cancel_ttl_ms = tonumber(ARGV[13])
local keep_ms = tonumber(ARGV[14])
local rule_count = tonumber(ARGV[15])
local RULES = 16
local FIRST = RULES + rule_count * RULE_WIDTH

expect_types({ready_key, 'zset', delayed_key, 'zset', seq_key, 'string', wake_key, 'list',
  idle_key, 'zset'})

local q = {
  ready = ready_key, delayed = delayed_key, seq = seq_key, wake = wake_key,
  job_prefix = job_prefix, priority_max = priority_max, wake_cap = wake_cap,
  rules = rules_key, groups = groups_key, parked = parked_key, throttled = throttled_key,
  active = active_key, tat = tat_key, flow = flow_key, expiring = expiring_key,
  lane_prefix = lane_prefix, keys_prefix = keys_prefix,
  workers = workers_key, idle = idle_key, dead = dead_key, outbox = outbox_key,
  done_prefix = done_prefix, held_prefix = held_prefix, inbox_prefix = inbox_prefix,
  queue = queue, batch = batch, dead_max = dead_max, dead_ttl_ms = dead_ttl_ms,
  unique = unique_key, unique_kept = unique_kept_key,
}
q.events = events_key
local rules = nil
if rule_count > 0 then
  expect_types({unique_key, 'hash', unique_kept_key, 'zset', cooldown_key, 'hash',
    cooldown_until_key, 'zset', flow_key, 'hash', suspects_key, 'zset', waiting_key, 'set',
    outbox_key, 'zset', rules_key, 'hash', groups_key, 'zset', parked_key, 'set',
    active_key, 'hash', expiring_key, 'zset'})
  q.cooldown, q.cooldown_until = cooldown_key, cooldown_until_key
  q.suspects, q.waiting, q.cancel_ttl_ms, q.keep_ms = suspects_key, waiting_key,
    cancel_ttl_ms, keep_ms
  rules = read_rules(ARGV, RULES, rule_count)
end
return enqueue_new(q, ARGV, FIRST, (#ARGV - FIRST + 1) / NEW_WIDTH, rules)
