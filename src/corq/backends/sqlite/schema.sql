-- corq's SQLite schema, version 7 (PRAGMA user_version = 7).
--
-- The same data model as the Redis broker (see corq/backends/redis/keys.py), with the
-- Redis sets turned into "lanes" of one jobs table, chosen by status and served by
-- partial indexes:
--
--   Redis key             here
--   ------------------    ---------------------------------------------------------------
--   queues  ZSET          queues table (name, last_used_ms)
--   {q}:ready  ZSET       jobs WHERE status = 'queued' AND suspect = 0, ordered by
--                         priority DESC, seq
--   {q}:suspects          jobs WHERE status = 'queued' AND suspect = 1, same order: jobs
--                         whose workers died (see corq/backends/base.py), handed out only
--                         to claims that ask for them (claim_jobs(suspects=n))
--   {q}:seq  STR          meta row 'seq' (one counter for every queue; order only matters
--                         inside a queue)
--   {q}:delayed  ZSET     jobs WHERE status IN ('scheduled', 'failed'), ordered by
--                         run_at_ms, seq
--   {q}:workers  ZSET     workers table (one row per holder and queue: lease deadline,
--                         departed flag)
--   {q}:reclaiming        reclaiming table: holders whose lease passed, taken out of
--                         workers by the first step of a reclaim, while their jobs are
--                         taken back in bounded steps
--   {q}:held:{w}  SET     jobs WHERE status = 'running' AND worker_id = w
--   {q}:dead  ZSET        jobs WHERE status = 'dead', newest finished_at_ms first
--   {q}:job:{id}  HASH    one jobs row; expires_at_ms replaces PEXPIRE (rows past it are
--                         treated as gone and deleted lazily, in bounded batches)
--   {q}:lane:<lane>       jobs WHERE status = 'queued' AND suspect = 0 AND lane = <lane>
--                         (lane '' is the plain ready set above), same order; the
--                         rotation, parking and throttling of lanes in flow_groups (one
--                         row per ruled task, and '' for the plain set) and flow_lanes (one
--                         row per key lane), see "Flow control" in docs/design.md
--   {q}:rules, counts,    flow_rules (per queue and task), flow_limits (running count and
--   tat, stats            GCRA tat per limit name), flow_queues (turn, counters)
--   {q}:unique, cooldown  unique_keys, cooldowns
--   {q}:wake, done:{id}   no table: in-process notification plus PRAGMA data_version
--   schedules (index,     schedules table (one row per schedule: definition, queue, version,
--   record, changes)      firing state); schedule_removed (tombstones: name, version)
--   schedule-fired        schedule_fired (name, tick_ms): the last fired ticks, one by one
--   schedule-runs/-skips  schedule_runs, schedule_skips (bounded logs, newest = highest id)
--   schedule-fence        meta row 'schedule_fence': highest scheduler fence that wrote
--   {schedules}:leader    scheduler_lease (one row); meta row 'scheduler_fence' counts fences
--   {schedules}:version   meta row 'schedules_version'
--   {wf:<id>}:meta        workflows (one row per workflow: kind, state, counts, times),
--                         workflow_outputs (its outputs, in order) and workflow_counts
--                         (ends taken in, by terminal state)
--   {wf:<id>}:graph,      workflow_nodes (one row per job: queue, task, callback event,
--   pending                order, pending edges, whether decided and its end taken in)
--                         and workflow_edges (one row per edge, in the child's parent
--                         order, with whether the parent's end was applied to it)
--   {wf:<id>}:failed      workflow_failed (the first BATCH members that failed)
--   {q}:notify:<id>,      no table: an ending job finds its dependents in every workflow
--   {q}:outbox            through workflow_dependents, inside its own transaction
--   {workers}:info,       worker_info (one row per worker: its WorkerInfo as JSON, its
--   {workers}:expiry      heartbeat and when the row is removed)
--
-- SQLite is dynamically typed and the file may have been written by another program (or
-- with an edited schema): the code never trusts a column's declared type or NOT NULL, it
-- checks every value it reads (see corq/backends/sqlite/records.py).
--
-- Every statement is idempotent (IF NOT EXISTS), so processes opening a new file at the
-- same time cannot trip over each other. Migrations bump PRAGMA user_version; the steps
-- from an older version are the `migrate_<to version>_*` statements of queries.sql, run
-- before this script in the same transaction (see corq/backends/sqlite/store.py):
--
--   1 -> 2  jobs.suspect, jobs.isolated, jobs.progress added (ALTER TABLE ... ADD COLUMN,
--           so they come last, as below); jobs_ready dropped and created again with the
--           suspect column.
--   2 -> 3  workers.departed and queues.last_used_ms added (every known name counts as
--           used at the migration); the reclaiming table and the queues_idle index
--           created. Jobs left running under a holder with no registration (by the
--           deregistration bug of version 2) are given back by the next reclaim, which
--           looks for such holders every time.
--   3 -> 4  schedules: the reserved jobs.schedule_tick_id renamed to jobs.schedule (the
--           schedule that fired a job; ALTER TABLE ... RENAME COLUMN), jobs.tick_ms added
--           (its tick); the schedules, schedule_removed, schedule_fired, schedule_runs,
--           schedule_skips and scheduler_lease tables and the meta rows created.
--   4 -> 5  workflows: jobs.workflow, jobs.inputs and jobs.notify added; the workflows,
--           workflow_outputs, workflow_counts, workflow_nodes, workflow_edges and
--           workflow_failed tables and their indexes created.
--   5 -> 6  flow control: jobs.key, unique_key, start_by_ms, unique_for_ms, lane and
--           limited added; jobs_ready dropped and created again with the lane column;
--           the flow_rules, flow_queues, flow_groups, flow_lanes, flow_limits,
--           unique_keys and cooldowns tables and the jobs_start_by index created.
--   6 -> 7: the operations tables (events, job_attempts, control_messages, control_replies,
--           config_entries, config_history, breakers, breaker_failures, worker_info)
--           created; any column they add to existing tables comes by a migrate_7_<part>
--           step in queries.sql.
--
-- Reserved columns, always NULL/0:
--   * jobs.pending_deps (reserved by version 1 for dependencies): unused, the pending
--     counts live with the workflow (workflow_nodes.pending);
--   * jobs.fairness_key (reserved by version 1 for fair claiming): unused, flow control
--     keeps a job's fairness key in jobs.key and its lane in jobs.lane (version 6).

CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- 'seq': last FIFO order key handed out.
-- 'clock_ms': the latest now_ms any call brought, the time against which calls that carry
-- no clock (get_job, wait_for_job) judge result expiry.
INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', 0), ('clock_ms', 0);

-- Version 4: 'schedules_version', the change counter of the schedules (each schedule row
-- and tombstone carries the value of its last change); 'schedule_fence', the highest
-- scheduler fence a step wrote with; 'scheduler_fence', the last fence the scheduler lease
-- handed out.
INSERT OR IGNORE INTO meta (key, value)
VALUES ('schedules_version', 0), ('schedule_fence', 0), ('scheduler_fence', 0);

CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    -- Version 3: when an enqueue or a registration last used the name (refreshed at most
    -- hourly); prune_queues forgets names idle long enough whose queue holds nothing.
    last_used_ms INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS queues_idle ON queues (last_used_ms);

CREATE TABLE IF NOT EXISTS workers (
    queue TEXT NOT NULL,
    -- The holder id (worker id ~ incarnation), opaque here.
    worker_id TEXT NOT NULL,
    -- 0 (or less): ended by end_leases, known dead.
    lease_deadline_ms INTEGER NOT NULL,
    -- Version 3: 1 once the holder deregistered while still holding jobs; when its lease
    -- (the linger) passes, reclaim gives the jobs back without counting a death.
    departed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, worker_id)
) WITHOUT ROWID;

-- Version 3: holders a reclaim took out of workers (so their heartbeat says lost at once)
-- whose jobs are still being taken back, with whether they had departed.
CREATE TABLE IF NOT EXISTS reclaiming (
    queue TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    departed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, worker_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS jobs (
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    payload BLOB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    -- FIFO order key inside a priority band; kept when a job goes back to the head.
    seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    deaths INTEGER NOT NULL DEFAULT 0,
    enqueued_at_ms INTEGER NOT NULL,
    run_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    finished_at_ms INTEGER,
    worker_id TEXT,
    -- Claim number of the current (or last) attempt, + 1 per claim; outcomes must quote it.
    fence INTEGER NOT NULL DEFAULT 0,
    result BLOB,
    error TEXT,
    traceback TEXT,
    -- The workers that died running it, space separated (poison-job evidence).
    death_log TEXT NOT NULL DEFAULT '',
    -- Succeeded and cancelled records are gone once the clock passes this (NULL: never).
    expires_at_ms INTEGER,
    -- Reserved (see the header).
    pending_deps INTEGER NOT NULL DEFAULT 0,
    -- Version 4 (the reserved schedule_tick_id renamed): the schedule that fired the job.
    schedule TEXT,
    fairness_key TEXT,
    -- Version 2 (appended by the migration from version 1, hence last):
    -- 1 for a suspect (queued, delayed again after a failure, or held): its workers died
    -- with it often enough that it runs only in a sandbox, when a claim asks for
    -- suspects. Cleared by retry_dead.
    suspect INTEGER NOT NULL DEFAULT 0,
    -- 1 when the current (or last) claim took it from the suspects (run in a sandbox).
    isolated INTEGER NOT NULL DEFAULT 0,
    -- Last progress the task reported (0.0 to 1.0), NULL until it reports one.
    progress REAL,
    -- Version 4 (appended by the migration): the tick (ms) a schedule fired the job for.
    tick_ms INTEGER,
    -- Version 5 (appended by the migration): the workflow the job belongs to; how its
    -- parents' results feed its arguments (first, list, summary); 1 when a workflow other
    -- than its own waits for its end (an external parent).
    workflow TEXT,
    inputs TEXT,
    notify INTEGER NOT NULL DEFAULT 0,
    -- Version 6 (appended by the migration): flow control (see corq/backends/record.py).
    -- The fairness key; the unique key; the deadline of the first start; how long the
    -- unique key stays taken after the end; the lane the job waits in when queued (''
    -- the plain ready set, else '<task>\x1f<key>'), written when the job is first made
    -- ready and kept by every step that makes it ready again; 1 while the running
    -- attempt holds concurrency slots (flow_limits.running).
    key TEXT,
    unique_key TEXT,
    start_by_ms INTEGER,
    unique_for_ms INTEGER NOT NULL DEFAULT 0,
    lane TEXT NOT NULL DEFAULT '',
    limited INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, id)
);

-- Every waiting lane: ready jobs (suspect = 0) by lane ('' the plain ready set) and
-- suspects (suspect = 1), each in claim order; a count of all queued jobs of a queue walks
-- the (queue) prefix. (Version 6 added lane.)
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (queue, suspect, lane, priority DESC, seq)
    WHERE status = 'queued';
-- Version 6: jobs that have not started yet and must start by a deadline (promotion and
-- claims end them expired past it).
CREATE INDEX IF NOT EXISTS jobs_start_by ON jobs (queue, start_by_ms)
    WHERE start_by_ms IS NOT NULL AND attempt = 0 AND status IN ('queued', 'scheduled');
CREATE INDEX IF NOT EXISTS jobs_delayed ON jobs (queue, run_at_ms, seq)
    WHERE status IN ('scheduled', 'failed');
CREATE INDEX IF NOT EXISTS jobs_held ON jobs (queue, worker_id)
    WHERE status = 'running';
CREATE INDEX IF NOT EXISTS jobs_dead ON jobs (queue, finished_at_ms DESC, id DESC)
    WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at_ms)
    WHERE expires_at_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_id ON jobs (id);
-- Workflow jobs waiting for their parents (QueueStats.waiting).
CREATE INDEX IF NOT EXISTS jobs_waiting ON jobs (queue) WHERE status = 'waiting';

-- Version 4: schedules (see corq/backends/base.py, ScheduleStore). The definition is
-- opaque to the broker; the rest is the firing state the steps check and move.
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    -- The queue its jobs go to.
    queue TEXT NOT NULL,
    definition BLOB NOT NULL,
    -- meta 'schedules_version' at its last change (definition, queue, paused state).
    version INTEGER NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    paused_reason TEXT,
    -- The watermark: every tick at or before it was fired, skipped or buffered.
    last_tick_ms INTEGER NOT NULL,
    -- The highest tick dropped from schedule_fired (BACKFILL refuses ticks at or below it).
    floor_ms INTEGER NOT NULL DEFAULT 0,
    -- A tick held back by buffer_one, fired when the previous run ends.
    buffered_tick_ms INTEGER,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    fired INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS schedules_by_version ON schedules (version);

-- Removed schedules, so readers of changes since a version learn of removals; deleted
-- when the name is added again, and a day after the removal.
CREATE TABLE IF NOT EXISTS schedule_removed (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    removed_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS schedule_removed_by_version ON schedule_removed (version);
CREATE INDEX IF NOT EXISTS schedule_removed_by_age ON schedule_removed (removed_at_ms);

-- The highest SCHEDULE_FIRED_KEEP ticks each schedule fired (BACKFILL refuses them).
CREATE TABLE IF NOT EXISTS schedule_fired (
    name TEXT NOT NULL,
    tick_ms INTEGER NOT NULL,
    PRIMARY KEY (name, tick_ms)
) WITHOUT ROWID;

-- The last SCHEDULE_LOG_KEEP runs (jobs enqueued) of each schedule; a higher id is newer.
CREATE TABLE IF NOT EXISTS schedule_runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    tick_ms INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    fired_at_ms INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS schedule_runs_by_name ON schedule_runs (name, id);

-- The last SCHEDULE_LOG_KEEP runs of ticks each schedule passed over; a higher id is newer.
CREATE TABLE IF NOT EXISTS schedule_skips (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    first_tick_ms INTEGER NOT NULL,
    last_tick_ms INTEGER NOT NULL,
    count INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS schedule_skips_by_name ON schedule_skips (name, id);

-- A schedule as the reads return it: its row and its latest run (NULL run_* columns when
-- it has none). Every read of schedules goes through it, so they all list the same columns.
CREATE VIEW IF NOT EXISTS schedule_rows AS
SELECT s.name, s.queue, s.definition, s.version, s.paused, s.paused_reason, s.last_tick_ms,
       s.floor_ms, s.buffered_tick_ms, s.created_at_ms, s.updated_at_ms, s.fired, s.skipped,
       r.tick_ms AS run_tick_ms, r.job_id AS run_job_id, r.queue AS run_queue,
       r.kind AS run_kind, r.fired_at_ms AS run_fired_at_ms
FROM schedules AS s
LEFT JOIN schedule_runs AS r
    ON r.id = (SELECT max(id) FROM schedule_runs WHERE schedule_runs.name = s.name);

-- The scheduler leadership: at most one row (id 1). Its fence comes from meta
-- 'scheduler_fence', raised at every change of holder.
CREATE TABLE IF NOT EXISTS scheduler_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    fence INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL
);

-- Version 5: workflows (see corq/backends/base.py, Workflows). Each workflow step is one
-- transaction here: a whole workflow is written by one, and a job's end is applied to
-- every workflow that waits for it (its own and those watching it) inside the
-- transaction that ends it, so nothing here is ever half-written or waits to be settled.
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY,
    -- What built it (chain, group, chord, batch, depends, dag).
    kind TEXT NOT NULL,
    -- 'open' (a batch still taking jobs) or 'closed'; 'creating' is never committed by
    -- this broker (tend_workflows deletes such a row left by another writer).
    state TEXT NOT NULL,
    -- A ResultShape value (one, list).
    shape TEXT NOT NULL,
    -- Jobs (callbacks included), and members (jobs that are not callbacks).
    total INTEGER NOT NULL,
    members INTEGER NOT NULL,
    -- How many of them ended (their ends taken in; by state in workflow_counts).
    ended INTEGER NOT NULL DEFAULT 0,
    members_ended INTEGER NOT NULL DEFAULT 0,
    -- The first job that ended dead, cancelled or upstream_failed, and its error.
    first_failure TEXT,
    first_failure_error TEXT,
    created_at_ms INTEGER NOT NULL,
    -- When its last job ended (every job ended and closed), and when its rows go.
    finished_at_ms INTEGER,
    expires_at_ms INTEGER
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS workflows_expiry ON workflows (expires_at_ms)
    WHERE expires_at_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS workflows_creating ON workflows (created_at_ms)
    WHERE state = 'creating';

-- A workflow's output jobs, in order (position 0 on). Their own table, written once: the
-- workflows row every end updates stays small however many outputs a group has.
CREATE TABLE IF NOT EXISTS workflow_outputs (
    workflow TEXT NOT NULL,
    position INTEGER NOT NULL,
    job TEXT NOT NULL,
    queue TEXT NOT NULL,
    PRIMARY KEY (workflow, position)
) WITHOUT ROWID;

-- Ends a workflow took in, by terminal state, of its members (member 1) and of its
-- callbacks (member 0): a state the job record gains later needs no new column.
CREATE TABLE IF NOT EXISTS workflow_counts (
    workflow TEXT NOT NULL,
    member INTEGER NOT NULL,
    state TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (workflow, member, state)
) WITHOUT ROWID;

-- One row per job of a workflow (a job id is one job within a workflow).
CREATE TABLE IF NOT EXISTS workflow_nodes (
    workflow TEXT NOT NULL,
    job TEXT NOT NULL,
    queue TEXT NOT NULL,
    task TEXT NOT NULL,
    -- A batch callback's event (success, complete, failure); NULL for a member.
    callback TEXT,
    -- The order jobs were added in (workflow_nodes pages by it).
    position INTEGER NOT NULL,
    -- Edges not satisfied yet: a job still waiting is released when it reaches 0.
    pending INTEGER NOT NULL,
    -- 1 once the workflow released the job or failed it (upstream_failed, a callback
    -- not needed): later counts never move it again.
    decided INTEGER NOT NULL DEFAULT 0,
    -- The terminal state its end was taken in as; NULL until then (so once only).
    ended TEXT,
    PRIMARY KEY (workflow, job)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS workflow_nodes_order ON workflow_nodes (workflow, position);
CREATE INDEX IF NOT EXISTS workflow_callbacks ON workflow_nodes (workflow)
    WHERE callback IS NOT NULL;

-- One row per edge parent -> child, in the child's parent order (position); the parent is
-- a job of the workflow or any other job (an external parent, in parent_queue).
CREATE TABLE IF NOT EXISTS workflow_edges (
    workflow TEXT NOT NULL,
    child TEXT NOT NULL,
    position INTEGER NOT NULL,
    parent TEXT NOT NULL,
    parent_queue TEXT NOT NULL,
    -- 1: the child runs whatever terminal state the parent ends in.
    allow_failed INTEGER NOT NULL DEFAULT 0,
    -- 1 once the parent's end was applied to this edge (so once only, even when a dead
    -- parent is retried and ends again).
    applied INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workflow, child, position)
) WITHOUT ROWID;

-- What an ending job looks up: its dependents, in every workflow.
CREATE INDEX IF NOT EXISTS workflow_dependents ON workflow_edges (parent_queue, parent);

-- The first BATCH members of a workflow that ended dead, cancelled or upstream_failed, in
-- the order they ended (a batch summary's failed ids; the count is in workflow_counts).
CREATE TABLE IF NOT EXISTS workflow_failed (
    workflow TEXT NOT NULL,
    position INTEGER NOT NULL,
    job TEXT NOT NULL,
    PRIMARY KEY (workflow, position)
) WITHOUT ROWID;

-- Version 6: flow control (see corq/backends/base.py, FlowControl, and docs/design.md,
-- "Flow control"). A task's rules in a queue, as FlowControl.set_rules stored them (a
-- NULL limit: none); key_weights is a JSON object of key -> weight.
CREATE TABLE IF NOT EXISTS flow_rules (
    queue TEXT NOT NULL,
    task TEXT NOT NULL,
    concurrency INTEGER,
    keyed INTEGER NOT NULL DEFAULT 0,
    key_concurrency INTEGER,
    rate_count INTEGER,
    rate_period_ms INTEGER,
    key_rate_count INTEGER,
    key_rate_period_ms INTEGER,
    over_limit TEXT NOT NULL DEFAULT 'wait',
    key_weights TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (queue, task)
) WITHOUT ROWID;

-- Per queue: the rotation counter (a visited group or lane takes the next turn, so it goes
-- to the back of its band), and what flow control did: jobs ended expired past their
-- start_by_ms, jobs dropped over a rate (over_limit='drop'), enqueues dropped by a
-- cooldown.
CREATE TABLE IF NOT EXISTS flow_queues (
    queue TEXT PRIMARY KEY,
    turn INTEGER NOT NULL DEFAULT 0,
    expired INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0,
    cooled INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- The first level of the round robin: one row per ruled task with jobs in lanes, and ''
-- for the plain ready set while the queue has lanes. state: 'ready' (in the rotation,
-- ordered by its head priority, then turn), 'parked' (task at its concurrency; the end
-- of an attempt that held a slot puts it back), 'throttled' (task rate: due again at
-- due_ms), 'waiting' (none of its lanes is runnable: a lane made runnable puts it back).
-- head: the best priority among its runnable lanes when last seen.
CREATE TABLE IF NOT EXISTS flow_groups (
    queue TEXT NOT NULL,
    task TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'ready',
    head INTEGER NOT NULL DEFAULT 0,
    turn INTEGER NOT NULL DEFAULT 0,
    due_ms INTEGER,
    PRIMARY KEY (queue, task)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS flow_groups_rotation ON flow_groups (queue, head DESC, turn)
    WHERE state = 'ready';
CREATE INDEX IF NOT EXISTS flow_groups_state ON flow_groups (queue, state, due_ms);

-- The second level: one row per key lane ('<task>\x1f<key>') with queued jobs, states as
-- for groups (parked: key at its key concurrency; throttled: key rate). taken: jobs the
-- lane gave in its current visit (a key of weight w gives up to w before its turn moves).
CREATE TABLE IF NOT EXISTS flow_lanes (
    queue TEXT NOT NULL,
    lane TEXT NOT NULL,
    task TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'ready',
    head INTEGER NOT NULL DEFAULT 0,
    turn INTEGER NOT NULL DEFAULT 0,
    due_ms INTEGER,
    taken INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, lane)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS flow_lanes_rotation ON flow_lanes (queue, task, head DESC, turn)
    WHERE state = 'ready';
CREATE INDEX IF NOT EXISTS flow_lanes_state ON flow_lanes (queue, state, due_ms);

-- One row per limit ('t:<task>', 'k:<lane>'): jobs running under it now (raised at a
-- claim that sets jobs.limited, lowered once by every end of that attempt) and its GCRA
-- theoretical arrival time (ms, fractional).
CREATE TABLE IF NOT EXISTS flow_limits (
    queue TEXT NOT NULL,
    name TEXT NOT NULL,
    running INTEGER NOT NULL DEFAULT 0,
    tat_ms REAL,
    PRIMARY KEY (queue, name)
) WITHOUT ROWID;

-- Unique keys: the job holding each key of a queue; until_ms NULL while it is live, else
-- when the key is free again (its end plus unique_for_ms), pruned past it.
CREATE TABLE IF NOT EXISTS unique_keys (
    queue TEXT NOT NULL,
    key TEXT NOT NULL,
    job_id TEXT NOT NULL,
    until_ms INTEGER,
    PRIMARY KEY (queue, key)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS unique_keys_expiry ON unique_keys (queue, until_ms)
    WHERE until_ms IS NOT NULL;

-- Cooldowns: enqueues of a key before until_ms are dropped (the handle names job_id, the
-- job the call that opened the window was answered with); pruned past it.
CREATE TABLE IF NOT EXISTS cooldowns (
    queue TEXT NOT NULL,
    key TEXT NOT NULL,
    until_ms INTEGER NOT NULL,
    job_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (queue, key)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS cooldowns_expiry ON cooldowns (queue, until_ms);

-- Version 6: the lanes follow the jobs through triggers, so every step that makes a job
-- ready, ends an attempt or routes a job does so in its own statement, whichever code (or
-- later feature) runs it, and a job without rules costs one probe of flow_rules.
--
-- A job made ready for the first time (enqueued ready, promoted from scheduled, released
-- by its workflow, a new job over an expired record) takes its task's lane when the task
-- has rules in the queue ('<task>\x1f<key>', the key only for a keyed task), else the
-- plain ready set (''). Jobs made ready again (a release, a reclaim, a retry, a dead
-- letter retried) keep their lane.
CREATE TRIGGER IF NOT EXISTS jobs_route_new AFTER INSERT ON jobs
WHEN NEW.status = 'queued'
BEGIN
    UPDATE jobs
    SET lane = (SELECT r.task || char(31) || CASE WHEN r.keyed = 1 THEN coalesce(NEW.key, '')
                                                  ELSE '' END
                FROM flow_rules AS r WHERE r.queue = NEW.queue AND r.task = NEW.task)
    WHERE rowid = NEW.rowid
      AND EXISTS (SELECT 1 FROM flow_rules WHERE queue = NEW.queue AND task = NEW.task);
END;

CREATE TRIGGER IF NOT EXISTS jobs_route_ready AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'queued' AND OLD.status NOT IN ('queued', 'running', 'failed', 'dead')
BEGIN
    UPDATE jobs
    SET lane = coalesce(
        (SELECT r.task || char(31) || CASE WHEN r.keyed = 1 THEN coalesce(NEW.key, '')
                                           ELSE '' END
         FROM flow_rules AS r WHERE r.queue = NEW.queue AND r.task = NEW.task), '')
    WHERE rowid = NEW.rowid
      AND (NEW.lane IS NOT ''
           OR EXISTS (SELECT 1 FROM flow_rules WHERE queue = NEW.queue AND task = NEW.task));
END;

-- A job that enters a lane (made ready in it, not a suspect) puts the lane and its task's
-- group in their rotations: a new one at the back (the next turn), an existing one keeps
-- its place and state (a parked or throttled lane stays so); a group that had no runnable
-- lane is runnable again.
CREATE TRIGGER IF NOT EXISTS jobs_enter_lane AFTER UPDATE OF status, lane, suspect ON jobs
WHEN NEW.status = 'queued' AND NEW.suspect = 0 AND NEW.lane != ''
  AND (OLD.status IS NOT 'queued' OR OLD.lane IS NOT NEW.lane OR OLD.suspect IS NOT 0)
BEGIN
    INSERT INTO flow_queues (queue, turn) VALUES (NEW.queue, 1)
    ON CONFLICT (queue) DO UPDATE SET turn = turn + 1;
    INSERT INTO flow_lanes (queue, lane, task, head, turn)
    VALUES (NEW.queue, NEW.lane, NEW.task,
            CASE WHEN typeof(NEW.priority) = 'integer' THEN NEW.priority ELSE 0 END,
            (SELECT turn FROM flow_queues WHERE queue = NEW.queue))
    ON CONFLICT (queue, lane) DO UPDATE SET head = max(head, excluded.head);
    INSERT INTO flow_groups (queue, task, head, turn)
    VALUES (NEW.queue, NEW.task,
            CASE WHEN typeof(NEW.priority) = 'integer' THEN NEW.priority ELSE 0 END,
            (SELECT turn FROM flow_queues WHERE queue = NEW.queue))
    ON CONFLICT (queue, task) DO UPDATE SET
        head = max(head, excluded.head),
        state = CASE WHEN state = 'waiting' THEN 'ready' ELSE state END;
END;

-- The end of an attempt that holds concurrency slots (jobs.limited, set by the claim):
-- whatever ends it (complete, fail, release, reclaim, cancel) lowers its counts once,
-- puts back its task's group and its lane if they were parked (at the back of the
-- rotation), and clears the flag, in the ending statement itself. A key's limit row that
-- holds nothing more (no job running, no rate) goes, so keys seen once do not pile up.
CREATE TRIGGER IF NOT EXISTS jobs_attempt_end AFTER UPDATE OF status ON jobs
WHEN OLD.status = 'running' AND NEW.status IS NOT 'running' AND OLD.limited = 1
BEGIN
    UPDATE flow_limits SET running = running - 1
    WHERE queue = OLD.queue AND name IN ('t:' || OLD.task, 'k:' || OLD.lane) AND running > 0;
    DELETE FROM flow_limits
    WHERE queue = OLD.queue AND name = 'k:' || OLD.lane AND running = 0 AND tat_ms IS NULL;
    INSERT INTO flow_queues (queue, turn) VALUES (OLD.queue, 1)
    ON CONFLICT (queue) DO UPDATE SET turn = turn + 1;
    UPDATE flow_lanes SET state = 'ready', turn = (SELECT turn FROM flow_queues
                                                  WHERE queue = OLD.queue)
    WHERE queue = OLD.queue AND lane = OLD.lane AND state = 'parked';
    UPDATE flow_groups SET state = 'ready', turn = (SELECT turn FROM flow_queues
                                                   WHERE queue = OLD.queue)
    WHERE queue = OLD.queue AND task = OLD.task
      AND (state = 'parked'
           OR (state = 'waiting'
               AND EXISTS (SELECT 1 FROM flow_lanes
                           WHERE queue = OLD.queue AND lane = OLD.lane AND state = 'ready')));
    UPDATE jobs SET limited = 0 WHERE rowid = NEW.rowid;
END;

-- The unique key of a job follows its status, whichever statement (or other program)
-- writes it: an end (succeeded, dead, cancelled, expired, upstream_failed) frees the key
-- when it maps to the job, at once (unique_for_ms 0) or at finished_at_ms + unique_for_ms
-- (the prune at promotion removes it then); a dead job retried takes its key again unless
-- another job holds it. A trigger, not a call in each ending statement's caller, so no
-- end can forget it; its WHEN clause is all a job without a unique key pays.
CREATE TRIGGER IF NOT EXISTS jobs_unique_end
AFTER UPDATE OF status ON jobs
WHEN NEW.unique_key IS NOT NULL AND NEW.status IS NOT OLD.status
 AND NEW.status IN ('succeeded', 'dead', 'cancelled', 'expired', 'upstream_failed')
BEGIN
    DELETE FROM unique_keys
    WHERE queue = NEW.queue AND key = NEW.unique_key AND job_id = NEW.id
      AND NOT (typeof(NEW.unique_for_ms) = 'integer' AND NEW.unique_for_ms > 0
               AND typeof(NEW.finished_at_ms) = 'integer');
    UPDATE unique_keys SET until_ms = NEW.finished_at_ms + NEW.unique_for_ms
    WHERE queue = NEW.queue AND key = NEW.unique_key AND job_id = NEW.id
      AND typeof(NEW.unique_for_ms) = 'integer' AND NEW.unique_for_ms > 0
      AND typeof(NEW.finished_at_ms) = 'integer';
END;

CREATE TRIGGER IF NOT EXISTS jobs_unique_retry
AFTER UPDATE OF status ON jobs
WHEN NEW.unique_key IS NOT NULL AND OLD.status = 'dead' AND NEW.status = 'queued'
BEGIN
    UPDATE unique_keys SET until_ms = NULL
    WHERE queue = NEW.queue AND key = NEW.unique_key AND job_id = NEW.id;
    INSERT OR IGNORE INTO unique_keys (queue, key, job_id, until_ms)
    VALUES (NEW.queue, NEW.unique_key, NEW.id, NULL);
END;

-- A job record deleted (expired, purged) frees the key it held: a mapping to a record
-- that is gone counts as free anyway, this keeps such rows from piling up.
CREATE TRIGGER IF NOT EXISTS jobs_unique_gone
AFTER DELETE ON jobs
WHEN OLD.unique_key IS NOT NULL
BEGIN
    DELETE FROM unique_keys
    WHERE queue = OLD.queue AND key = OLD.unique_key AND job_id = OLD.id;
END;

-- Version 7, the control channel (see ControlChannel in corq/backends/base.py and
-- "Cancellation and the control channel" in docs/design.md). A message for a worker (or
-- '*' for all), as msgpack; listeners read the rows after the last id they saw, woken by
-- commits in this process and by data_version for the others. The sender deletes rows
-- older than a minute (CONTROL_KEEP_MS), BATCH at a time.
CREATE TABLE IF NOT EXISTS control_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    worker_id TEXT NOT NULL,
    message BLOB NOT NULL,
    at_ms INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS control_messages_at ON control_messages (at_ms);

-- The answer to a request (INSPECT), kept until expires_at_ms for the asker to take
-- (taking deletes it); expired rows are deleted by the next put_reply.
CREATE TABLE IF NOT EXISTS control_replies (
    request_id TEXT PRIMARY KEY,
    body BLOB NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Each worker's facts (corq/worker_info.py), replaced at every heartbeat; list_worker_info
-- deletes the rows whose expires_at_ms has passed (docs/design.md, "Worker registry,
-- inspection and top").
CREATE TABLE IF NOT EXISTS worker_info (
    worker_id TEXT PRIMARY KEY,
    info BLOB NOT NULL,
    heartbeat_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS worker_info_expiry ON worker_info (expires_at_ms);

-- Circuit breakers (the Breakers port): one row per task that has a circuit, shared by
-- every worker and queue. status closed/open/half_open; failures: those that opened it;
-- until_ms: open, the cool-down's end, half_open, the probe permit's lapse; opened: times
-- it opened; window_ms: the window of its last failure (what breaker_states counts in);
-- seq numbers the failures. breaker_failures keeps a closed circuit's failures within its
-- window (at most its threshold of them).
CREATE TABLE IF NOT EXISTS breakers (
    task TEXT PRIMARY KEY,
    status TEXT NOT NULL DEFAULT 'closed',
    failures INTEGER NOT NULL DEFAULT 0,
    opened_at_ms INTEGER,
    until_ms INTEGER,
    opened INTEGER NOT NULL DEFAULT 0,
    window_ms INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS breaker_failures (
    task TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (task, seq)
) WITHOUT ROWID;

-- Version 7, runtime configuration (see docs/design.md, "Runtime configuration"): the
-- entries operators set (a field overrides the code's default; a queue's 'paused' is read
-- by every claim and wait probe of the queue), the history of their changes (one row per
-- field changed, trimmed to CONFIG_HISTORY_KEEP), and meta 'config_version' (one per
-- change that changed anything), all written by one transaction per change.
CREATE TABLE IF NOT EXISTS config_entries (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (scope, name, field)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS config_history (
    seq INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    who TEXT NOT NULL,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    field TEXT NOT NULL,
    old TEXT,
    new TEXT
);

CREATE INDEX IF NOT EXISTS config_history_version ON config_history (version);

INSERT OR IGNORE INTO meta (key, value) VALUES ('config_version', 0);

-- Version 7 (issue 11, events): the bounded log of lifecycle events (see docs/design.md,
-- "Events and attempt history"). Written by the TEMP triggers each connection creates with
-- its backend's events_max (events.py; none at 0), so the bound is the backend's setting;
-- `id` is the readers' cursor. Each queue is trimmed to events_max in bounded steps, the
-- highest id trimmed noted in events_queues (a reader behind it is told of the gap).
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    job_id TEXT NOT NULL,
    task TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS events_by_queue ON events (queue, id);

-- Per queue, as of the last trimming step: the events kept, the id they were counted up
-- to (the next step counts only the newer ones) and the highest id trimmed.
CREATE TABLE IF NOT EXISTS events_queues (
    queue TEXT PRIMARY KEY,
    kept INTEGER NOT NULL DEFAULT 0,
    counted_to INTEGER NOT NULL DEFAULT 0,
    upto INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Version 7 (issue 11, events): each job's attempts, first first, kept by the triggers
-- below whichever statement moves the job (a row when it starts running, its end when it
-- stops) and deleted with the job's row, so the history lives exactly as long as the record.
CREATE TABLE IF NOT EXISTS job_attempts (
    queue TEXT NOT NULL,
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker_id TEXT,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    outcome TEXT NOT NULL DEFAULT 'running',
    error TEXT
);
CREATE INDEX IF NOT EXISTS job_attempts_of ON job_attempts (queue, job_id);

CREATE TRIGGER IF NOT EXISTS jobs_history_start
AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'running' AND OLD.status IS NOT 'running'
BEGIN
    INSERT INTO job_attempts (queue, job_id, attempt, worker_id, started_at_ms)
    VALUES (NEW.queue, NEW.id, NEW.attempt, NEW.worker_id,
            coalesce(NEW.started_at_ms, (SELECT value FROM meta WHERE key = 'clock_ms'), 0));
END;

-- The end of the running attempt: its outcome from the new status (scheduled is a snooze;
-- queued again with a death counted is a lost worker's reclaim, without one a release).
CREATE TRIGGER IF NOT EXISTS jobs_history_end
AFTER UPDATE OF status ON jobs
WHEN OLD.status = 'running' AND NEW.status IS NOT 'running'
BEGIN
    UPDATE job_attempts
    SET ended_at_ms = max(coalesce(NEW.finished_at_ms, 0),
                          coalesce((SELECT value FROM meta WHERE key = 'clock_ms'), 0)),
        outcome = CASE NEW.status
            WHEN 'scheduled' THEN 'snoozed'
            WHEN 'queued' THEN CASE WHEN NEW.deaths > OLD.deaths THEN 'lost' ELSE 'released' END
            ELSE NEW.status END,
        error = CASE WHEN NEW.status IN ('failed', 'dead', 'scheduled', 'cancelled')
                     THEN substr(NEW.error, 1, 500) END
    WHERE rowid = (SELECT max(rowid) FROM job_attempts
                   WHERE queue = OLD.queue AND job_id = OLD.id)
      AND ended_at_ms IS NULL;
END;

CREATE TRIGGER IF NOT EXISTS jobs_history_gone
AFTER DELETE ON jobs
BEGIN
    DELETE FROM job_attempts WHERE queue = OLD.queue AND job_id = OLD.id;
END;
