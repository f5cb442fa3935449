-- corq's SQLite schema, version 4 (PRAGMA user_version = 4).
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
--   {q}:wake, done:{id}   no table: in-process notification plus PRAGMA data_version
--   schedules (index,     schedules table (one row per schedule: definition, queue, version,
--   record, changes)      firing state); schedule_removed (tombstones: name, version)
--   schedule-fired        schedule_fired (name, tick_ms): the last fired ticks, one by one
--   schedule-runs/-skips  schedule_runs, schedule_skips (bounded logs, newest = highest id)
--   schedule-fence        meta row 'schedule_fence': highest scheduler fence that wrote
--   {schedules}:leader    scheduler_lease (one row); meta row 'scheduler_fence' counts fences
--   {schedules}:version   meta row 'schedules_version'
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
--
-- Later issues, not implemented yet (the columns are reserved, always NULL/0 for now):
--   * dependencies between jobs: jobs.pending_deps counts unfinished upstream jobs of a
--     'waiting' job; the edges will live in a job_deps table added by a later migration;
--   * fair claiming: jobs.fairness_key groups jobs (e.g. per tenant) for round-robin claims.

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
    -- Reserved for later issues (see the header).
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
    PRIMARY KEY (queue, id)
);

-- Both waiting lanes: ready jobs (suspect = 0) and suspects (suspect = 1), each in claim
-- order; a count of all queued jobs of a queue walks the (queue) prefix.
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (queue, suspect, priority DESC, seq)
    WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_delayed ON jobs (queue, run_at_ms, seq)
    WHERE status IN ('scheduled', 'failed');
CREATE INDEX IF NOT EXISTS jobs_held ON jobs (queue, worker_id)
    WHERE status = 'running';
CREATE INDEX IF NOT EXISTS jobs_dead ON jobs (queue, finished_at_ms DESC, id DESC)
    WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at_ms)
    WHERE expires_at_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_id ON jobs (id);

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
