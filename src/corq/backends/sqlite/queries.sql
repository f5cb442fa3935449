-- Every statement the SQLite broker runs. Each one sits under a `-- name: <name>` header
-- followed by a one-line purpose; corq.backends.sqlite.sql loads them by name.
-- No statement lists the job record's columns: each names a list that the loader expands
-- from the record's field list (corq/backends/record.py, by way of columns.py):
--   {checked_columns}  rowid, every field checked before a claim, a promotion or a reclaim
--                      acts on a row, and what a claim hands out (records.Checked)
--   {shown_columns}    what a Job shows, with the checked fields (records.job_from_row)
--   {new_columns}      what a NewJob brings; {new_values} the same as :parameters
--   {renewed}          the SET list that makes an expired record a new job's (job_insert)
--   {readable}         the row's checked fields hold what they must (records.KIND_CHECKS
--                      says the same in Python: a test keeps the two in step)
-- A list takes a table alias as `{j.checked_columns}`.
-- Lanes (see schema.sql): ready = 'queued' AND suspect = 0, suspects = 'queued' AND
-- suspect = 1, delayed = 'scheduled' | 'failed', held = 'running', dead letters = 'dead'.
-- A suspect keeps its flag through every lane (delayed, held, released), so wherever it
-- goes back to the waiting jobs it lands among the suspects.
--
-- No statement trusts a stored value: the file may come from another writer, and SQLite
-- stores any type in any column (a NOT NULL column may even hold NULL after a schema
-- edit, and `x IS NULL` is then folded to false there). Statements that pick rows return
-- them for Python to check (records.py) and write by rowid with values computed from
-- checked ones; a fenced outcome that adds to a stored counter checks its type in its own
-- WHERE clause. So no write can fail, or store NULL, because of what a row held.
-- 4611686018427387903 (2**62 - 1) is the largest counter (seq, attempt, fence, ...) taken
-- as readable: it can still grow without leaving 64 bits (columns.COUNTER_MAX).

-- ---------------------------------------------------------------- migrations

-- Steps from schema version 1 to 2, run (in this order) before schema.sql, in the same
-- transaction, on a file whose user_version is 1. schema.sql then creates jobs_ready again
-- with its version 2 definition.

-- name: migrate_2_suspect
-- A suspect waits apart from the ready jobs.
ALTER TABLE jobs ADD COLUMN suspect INTEGER NOT NULL DEFAULT 0;

-- name: migrate_2_isolated
-- Whether the current (or last) claim took the job from the suspects.
ALTER TABLE jobs ADD COLUMN isolated INTEGER NOT NULL DEFAULT 0;

-- name: migrate_2_progress
-- Last progress the task reported.
ALTER TABLE jobs ADD COLUMN progress REAL;

-- name: migrate_2_ready_index
-- The version 1 ready index does not know the suspect column.
DROP INDEX IF EXISTS jobs_ready;

-- Steps from schema version 2 to 3 (schema.sql then creates the reclaiming table and the
-- queues_idle index).

-- name: migrate_3_departed
-- A holder that deregistered while still holding jobs.
ALTER TABLE workers ADD COLUMN departed INTEGER NOT NULL DEFAULT 0;

-- name: migrate_3_last_used
-- When a queue name was last used, for prune_queues.
ALTER TABLE queues ADD COLUMN last_used_ms INTEGER NOT NULL DEFAULT 0;

-- name: migrate_3_used_now
-- Every name known before the migration counts as used now (its history is unknown).
UPDATE queues SET last_used_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);

-- Steps from schema version 3 to 4 (schema.sql then creates the schedule tables and the
-- meta rows).

-- name: migrate_4_schedule
-- The column reserved for schedule ticks becomes the schedule that fired the job.
ALTER TABLE jobs RENAME COLUMN schedule_tick_id TO schedule;

-- name: migrate_4_tick_ms
-- The tick a schedule fired the job for.
ALTER TABLE jobs ADD COLUMN tick_ms INTEGER;

-- Steps from schema version 4 to 5 (schema.sql then creates the workflow tables).

-- name: migrate_5_workflow
-- The workflow a job belongs to.
ALTER TABLE jobs ADD COLUMN workflow TEXT;

-- name: migrate_5_inputs
-- How a workflow job's parents' results feed its arguments.
ALTER TABLE jobs ADD COLUMN inputs TEXT;

-- name: migrate_5_notify
-- Whether a workflow other than the job's own waits for its end.
ALTER TABLE jobs ADD COLUMN notify INTEGER NOT NULL DEFAULT 0;

-- Steps from schema version 5 to 6 (schema.sql then creates jobs_ready again with the
-- lane column, and the flow-control tables).

-- name: migrate_6_key
-- The job's fairness key.
ALTER TABLE jobs ADD COLUMN key TEXT;

-- name: migrate_6_unique_key
-- The job's unique key.
ALTER TABLE jobs ADD COLUMN unique_key TEXT;

-- name: migrate_6_start_by_ms
-- The deadline of the job's first start.
ALTER TABLE jobs ADD COLUMN start_by_ms INTEGER;

-- name: migrate_6_unique_for_ms
-- How long the unique key stays taken after the job's end.
ALTER TABLE jobs ADD COLUMN unique_for_ms INTEGER NOT NULL DEFAULT 0;

-- name: migrate_6_lane
-- The lane the job waits in ('' the plain ready set: every job of an older file).
ALTER TABLE jobs ADD COLUMN lane TEXT NOT NULL DEFAULT '';

-- name: migrate_6_limited
-- Whether the running attempt holds concurrency slots.
ALTER TABLE jobs ADD COLUMN limited INTEGER NOT NULL DEFAULT 0;

-- name: migrate_6_ready_index
-- The version 5 ready index does not know the lane column.
DROP INDEX IF EXISTS jobs_ready;

-- ---------------------------------------------------------------- bookkeeping

-- name: seq_take
-- Reserve :n FIFO numbers; returns the last one reserved (no row: the counter is missing
-- or unreadable, see seq_repair).
UPDATE meta SET value = value + :n
WHERE key = 'seq' AND typeof(value) = 'integer' AND value BETWEEN 0 AND 4611686018427387903
RETURNING value;

-- name: seq_repair
-- Re-create a missing or unreadable FIFO counter after the highest seq any job has.
INSERT OR REPLACE INTO meta (key, value)
SELECT 'seq', ifnull(max(seq), 0) FROM jobs
WHERE typeof(seq) = 'integer' AND seq BETWEEN 0 AND 4611686018427387903;

-- name: clock_advance
-- Remember the latest time any call brought, for calls that carry no clock; re-creates a
-- missing row and replaces an unreadable value. Returns the value when it changed.
INSERT INTO meta (key, value) VALUES ('clock_ms', :now)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
WHERE NOT (typeof(meta.value) = 'integer' AND meta.value >= excluded.value)
RETURNING value;

-- name: clock_get
-- The latest time any call brought.
SELECT value FROM meta WHERE key = 'clock_ms';

-- name: expired_delete
-- Drop at most :limit succeeded and cancelled records whose time to live has run out (the
-- lazy PEXPIRE), oldest first.
DELETE FROM jobs WHERE rowid IN (
    SELECT rowid FROM jobs WHERE expires_at_ms <= :now ORDER BY expires_at_ms LIMIT :limit
);

-- name: queue_touch
-- Remember a queue name (again, if pruned) and when it was used; an existing name is
-- written only when its time is an hour old, so a busy queue costs no write.
INSERT INTO queues (name, last_used_ms) VALUES (:queue, :now)
ON CONFLICT (name) DO UPDATE SET last_used_ms = excluded.last_used_ms
WHERE NOT (typeof(queues.last_used_ms) = 'integer'
           AND queues.last_used_ms > excluded.last_used_ms - 3600000);

-- name: queues_list
-- Every queue ever enqueued to or served and not pruned, by name.
SELECT name FROM queues ORDER BY name;

-- name: queues_idle
-- At most :limit queue names not used since :before, longest idle first, as stored (a
-- name that is not valid UTF-8 must be matched by its bytes).
SELECT CAST(name AS BLOB) FROM queues
WHERE last_used_ms < :before
ORDER BY last_used_ms
LIMIT :limit;

-- name: queue_holds_anything
-- Whether a queue (given by its stored bytes) has a job in a lane, a registered or a
-- departed worker, or a holder being reclaimed. Each test walks one index.
SELECT EXISTS (SELECT 1 FROM jobs WHERE queue = CAST(:raw AS TEXT) AND status = 'queued')
    OR EXISTS (SELECT 1 FROM jobs WHERE queue = CAST(:raw AS TEXT)
                                    AND status IN ('scheduled', 'failed'))
    OR EXISTS (SELECT 1 FROM jobs WHERE queue = CAST(:raw AS TEXT) AND status = 'running')
    OR EXISTS (SELECT 1 FROM jobs WHERE queue = CAST(:raw AS TEXT) AND status = 'dead')
    OR EXISTS (SELECT 1 FROM workers WHERE queue = CAST(:raw AS TEXT))
    OR EXISTS (SELECT 1 FROM reclaiming WHERE queue = CAST(:raw AS TEXT));

-- name: queue_forget
-- Remove a queue name (given by its stored bytes).
DELETE FROM queues WHERE name = CAST(:raw AS TEXT);

-- ---------------------------------------------------------------- producer side

-- name: job_insert
-- Store a new job in the ready or delayed lane. An existing id is left alone (no row
-- changed) unless its record has expired by :clock: an expired record is gone, so the id
-- starts a new job (the fence keeps counting, so no outcome of the old one can match).
INSERT INTO jobs ({new_columns}, status, seq) VALUES ({new_values}, :status, :seq)
ON CONFLICT (queue, id) DO UPDATE SET
    {renewed}, status = excluded.status, seq = excluded.seq,
    fence = CASE WHEN typeof(jobs.fence) = 'integer'
                  AND jobs.fence BETWEEN 0 AND 4611686018427387903
                 THEN jobs.fence ELSE 0 END
WHERE typeof(jobs.expires_at_ms) = 'integer' AND jobs.expires_at_ms <= :clock;

-- name: job_get
-- One job record of a queue, unless it has expired.
SELECT {shown_columns}
FROM jobs
WHERE queue = :queue AND id = :id
  AND NOT (typeof(expires_at_ms) = 'integer' AND expires_at_ms <= :clock);

-- name: job_get_any_queue
-- One job record by id in whichever queue holds it (first queue by name), unless expired.
SELECT {shown_columns}
FROM jobs
WHERE id = :id AND NOT (typeof(expires_at_ms) = 'integer' AND expires_at_ms <= :clock)
ORDER BY queue LIMIT 1;

-- name: job_cancel
-- Cancel a job that is not running or finished (scheduled, waiting, queued (suspects too),
-- awaiting retry); refused when the record cannot be read (the next claim or promotion
-- sends it to the dead letters). Returns what the end's workflows need (see ends.py).
UPDATE jobs SET status = 'cancelled', finished_at_ms = :now, expires_at_ms = :expires_at_ms
WHERE queue = :queue AND id = :id AND status IN ('scheduled', 'waiting', 'queued', 'failed')
  AND
  {readable}
RETURNING workflow, notify, error;

-- ---------------------------------------------------------------- worker leases

-- name: worker_register
-- Add the holder to a queue with a fresh lease, or renew it (no longer departed).
INSERT INTO workers (queue, worker_id, lease_deadline_ms, departed)
VALUES (:queue, :worker, :deadline, 0)
ON CONFLICT (queue, worker_id) DO UPDATE SET
    lease_deadline_ms = excluded.lease_deadline_ms, departed = 0;

-- name: worker_renew
-- Renew the lease of a holder still registered (and not departed) in a queue; never
-- re-adds it.
UPDATE workers SET lease_deadline_ms = :deadline
WHERE queue = :queue AND worker_id = :worker AND departed = 0;

-- name: worker_depart
-- A holder that leaves while still holding jobs: its lease ends after the linger, and it
-- is flagged departed (registered again if its row was gone).
INSERT INTO workers (queue, worker_id, lease_deadline_ms, departed)
VALUES (:queue, :worker, :deadline, 1)
ON CONFLICT (queue, worker_id) DO UPDATE SET
    lease_deadline_ms = excluded.lease_deadline_ms, departed = 1;

-- name: worker_delete
-- Remove a holder from a queue.
DELETE FROM workers WHERE queue = :queue AND worker_id = :worker;

-- name: workers_end
-- End the leases of the other incarnations of a worker id (holder ids :prefix + anything)
-- in a queue.
UPDATE workers SET lease_deadline_ms = 0
WHERE queue = :queue AND substr(worker_id, 1, length(:prefix)) = :prefix
  AND worker_id != :holder;

-- name: held_count
-- How many jobs a holder holds in a queue.
SELECT count(*) FROM jobs WHERE queue = :queue AND status = 'running' AND worker_id = :worker;

-- name: held_list
-- At most :limit jobs a holder holds in a queue after rowid :after, in rowid order (the
-- order of the held index), with what a claim checks (see claim_pick).
SELECT {checked_columns}
FROM jobs
WHERE queue = :queue AND status = 'running' AND worker_id = :worker AND rowid > :after
ORDER BY rowid
LIMIT :limit;

-- name: held_by_rowid
-- One job if the holder still holds it, with what a claim checks (see claim_pick).
SELECT {checked_columns}
FROM jobs
WHERE rowid = :rowid AND queue = :queue AND status = 'running' AND worker_id = :worker;

-- ---------------------------------------------------------------- reclaim

-- name: workers_stalled
-- Take the holders of a queue whose lease passed out of workers (an unreadable deadline
-- counts as passed); returns them with whether they had departed.
DELETE FROM workers
WHERE queue = :queue AND NOT (typeof(lease_deadline_ms) = 'integer'
                              AND lease_deadline_ms >= :now)
RETURNING worker_id, departed;

-- name: workers_ended
-- Like workers_stalled, but only leases known to be over: ended (deadline 0 or less), or
-- departed with the linger passed.
DELETE FROM workers
WHERE queue = :queue AND typeof(lease_deadline_ms) = 'integer'
  AND (lease_deadline_ms <= 0 OR (departed = 1 AND lease_deadline_ms < :now))
RETURNING worker_id, departed;

-- name: reclaiming_add
-- Note a holder whose jobs are being taken back.
INSERT OR REPLACE INTO reclaiming (queue, worker_id, departed)
VALUES (:queue, :worker, :departed);

-- name: holders_orphaned
-- At most :limit holders (text ids) that hold running jobs of a queue but are neither
-- registered nor being reclaimed: nobody would ever give their jobs back (the
-- deregistration bug of schema version 2 left such jobs; another program may too). The
-- walk jumps from holder to holder in the held index, so it costs one seek per holder.
WITH RECURSIVE holder(id) AS (
    SELECT (SELECT min(worker_id) FROM jobs
            WHERE queue = :queue AND status = 'running'
              AND worker_id >= '' AND worker_id < x'')
    UNION ALL
    SELECT (SELECT min(worker_id) FROM jobs
            WHERE queue = :queue AND status = 'running'
              AND worker_id > holder.id AND worker_id < x'')
    FROM holder WHERE holder.id IS NOT NULL
    LIMIT :limit
)
SELECT id FROM holder
WHERE id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM workers WHERE queue = :queue AND worker_id = holder.id)
  AND NOT EXISTS (SELECT 1 FROM reclaiming WHERE queue = :queue AND worker_id = holder.id);

-- name: reclaiming_held
-- At most :limit jobs still held by holders being reclaimed in a queue, with what a claim
-- checks (see claim_pick), and the holder's departed flag. CROSS JOIN keeps reclaiming
-- the outer loop, so the live holders' jobs are never walked.
SELECT {j.checked_columns}, j.worker_id AS holder, r.departed
FROM reclaiming AS r
CROSS JOIN jobs AS j
    ON j.queue = r.queue AND j.status = 'running' AND j.worker_id = r.worker_id
WHERE r.queue = :queue
LIMIT :limit;

-- name: reclaiming_done
-- Forget the holders being reclaimed in a queue that hold nothing any more.
DELETE FROM reclaiming
WHERE queue = :queue AND NOT EXISTS (
    SELECT 1 FROM jobs
    WHERE jobs.queue = reclaiming.queue AND jobs.status = 'running'
      AND jobs.worker_id = reclaiming.worker_id
);

-- name: reclaiming_left
-- Whether holders of a queue still wait to be reclaimed.
SELECT EXISTS (SELECT 1 FROM reclaiming WHERE queue = :queue);

-- name: held_by_nobody
-- At most :limit running jobs of a queue whose holder is not text (NULL, a number, a
-- blob): no holder can ever give them back. Each range walks the held index.
SELECT rowid FROM jobs WHERE queue = :queue AND status = 'running' AND worker_id IS NULL
UNION ALL
SELECT rowid FROM jobs WHERE queue = :queue AND status = 'running' AND worker_id < ''
UNION ALL
SELECT rowid FROM jobs WHERE queue = :queue AND status = 'running' AND worker_id >= x''
LIMIT :limit;

-- name: job_requeue_dead_worker
-- Put a dead holder's job back at its old place (seq kept), counting the death: at the
-- head of the ready lane (:suspect = 0) or of the suspects (:suspect = 1).
UPDATE jobs
SET status = 'queued', worker_id = NULL, deaths = :deaths, death_log = :death_log,
    suspect = :suspect
WHERE rowid = :rowid;

-- name: job_requeue_departed
-- Give a departed holder's job back like a release: at its old place, no death counted,
-- attempt and suspect flag kept.
UPDATE jobs SET status = 'queued', worker_id = NULL WHERE rowid = :rowid;

-- name: job_poison
-- Send a job whose workers died too often to the dead letters.
UPDATE jobs
SET status = 'dead', deaths = :deaths, death_log = :death_log, error = :error,
    traceback = NULL, finished_at_ms = :now, expires_at_ms = NULL
WHERE rowid = :rowid;

-- ---------------------------------------------------------------- claiming

-- name: delayed_due
-- The delayed jobs of a queue in due order (run_at_ms, then seq: FIFO among jobs due at
-- the same time), walked lazily by the caller up to the first one not due yet, with what
-- a claim checks (see claim_pick). A NULL run time sorts first, so it is met on the way.
SELECT {checked_columns}
FROM jobs
WHERE queue = :queue AND status IN ('scheduled', 'failed')
ORDER BY run_at_ms, seq
LIMIT :limit;

-- name: delayed_unreadable
-- At most :limit delayed jobs of a queue whose run time is text or a blob (they sort after
-- every number, so a walk in due order stops before them), with what a claim checks.
SELECT {checked_columns}
FROM jobs
WHERE queue = :queue AND status IN ('scheduled', 'failed') AND run_at_ms >= ''
LIMIT :limit;

-- name: delayed_promote
-- Move checked due delayed jobs (:rowids, a JSON array in due order) to the tail of the
-- ready lane, numbered after :base; a suspect lands at the tail of the suspects.
UPDATE jobs SET status = 'queued', seq = :base + r.key + 1
FROM json_each(:rowids) AS r
WHERE jobs.rowid = r.value;

-- name: delayed_next
-- Earliest numeric run time left in the delayed lane, or NULL.
SELECT min(run_at_ms) FROM jobs
WHERE queue = :queue AND status IN ('scheduled', 'failed') AND run_at_ms < '';

-- name: waiting_probe
-- Whether a queue has a job a claim could take (in the plain ready set, or a ruled task's
-- group in its rotation: parked and throttled lanes do not count), how many suspects
-- wait, and the earliest numeric delayed run time (the wait_for_jobs probe). A paused
-- queue has nothing a claim could take.
SELECT NOT EXISTS (SELECT 1 FROM config_entries
                   WHERE scope = 'queue' AND name = :queue AND field = 'paused'
                     AND value = 'true')
       AND (EXISTS (SELECT 1 FROM jobs
                    WHERE queue = :queue AND status = 'queued' AND suspect = 0 AND lane = '')
            OR EXISTS (SELECT 1 FROM flow_groups
                       WHERE queue = :queue AND state = 'ready' AND task > '')),
       (SELECT count(*) FROM jobs WHERE queue = :queue AND status = 'queued' AND suspect = 1),
       (SELECT min(run_at_ms) FROM jobs
        WHERE queue = :queue AND status IN ('scheduled', 'failed') AND run_at_ms < '');

-- name: suspects_count
-- How many suspects wait in a queue.
SELECT count(*) FROM jobs WHERE queue = :queue AND status = 'queued' AND suspect = 1;

-- name: claim_pick
-- The first :count ready jobs of a lane (:lane '' the plain ready set) in claim order
-- (priority, then FIFO), with every field a claim checks before it takes one; a job past
-- its start_by_ms is passed over (expiry ends it).
SELECT {checked_columns}
FROM jobs
WHERE queue = :queue AND status = 'queued' AND suspect = 0 AND lane = :lane
  AND (start_by_ms IS NULL OR start_by_ms >= :now OR attempt > 0)
ORDER BY priority DESC, seq
LIMIT :count;

-- name: claim_pick_suspects
-- The first :count suspects of a queue (whatever their lane) in claim order.
SELECT {checked_columns}
FROM jobs
WHERE queue = :queue AND status = 'queued' AND suspect = 1
ORDER BY priority DESC, seq
LIMIT :count;

-- name: queued_stray
-- At most :limit queued jobs of a queue in neither waiting lane (a suspect flag another
-- program set to something else than 0 or 1): no claim would ever see them. Each range
-- walks the ready index. (NULL is not looked for: `suspect IS NULL` would walk every
-- queued job of the queue where the column is declared NOT NULL.)
SELECT rowid FROM jobs WHERE queue = :queue AND status = 'queued' AND suspect < 0
UNION ALL
SELECT rowid FROM jobs WHERE queue = :queue AND status = 'queued' AND suspect > 1
UNION ALL
SELECT rowid FROM jobs
WHERE queue = :queue AND status = 'queued' AND suspect > 0 AND suspect < 1
LIMIT :limit;

-- name: claim_take
-- Take checked jobs (:rowids, a JSON array) as held by the holder, each under its next
-- fence number (isolated: taken from the suspects; limited: holding concurrency slots).
UPDATE jobs
SET status = 'running', worker_id = :worker, fence = fence + 1, attempt = attempt + 1,
    started_at_ms = :now, isolated = :isolated, limited = :limited
WHERE rowid IN (SELECT value FROM json_each(:rowids));

-- ---------------------------------------------------------------- outcomes (fenced)

-- name: job_complete
-- Record a success of the attempt the holder holds under this fence; the record expires
-- at :expires_at_ms (NULL: never), or at :kept_expires_at_ms when a workflow waits for it
-- (its children read its result later). Refused (no row) when the record cannot be read.
-- Returns what the end's workflows need (see ends.py).
UPDATE jobs
SET status = 'succeeded', result = :result, finished_at_ms = :finished_at_ms,
    expires_at_ms = CASE WHEN workflow IS NOT NULL OR notify IS NOT 0
                         THEN :kept_expires_at_ms ELSE :expires_at_ms END
WHERE queue = :queue AND id = :id AND status = 'running' AND worker_id = :worker
  AND fence = :fence AND
  {readable}
RETURNING workflow, notify;

-- name: job_fail_retry
-- Record a failed attempt (:failed 1: it counts; :died 1: its process died, a death
-- instead, the holder joins the death log) and park the job in the delayed lane until its
-- retry time. Fenced; refused when the record cannot be read.
UPDATE jobs
SET status = 'failed', run_at_ms = :retry_at_ms, failures = failures + :failed,
    deaths = deaths + :died,
    death_log = CASE WHEN :died THEN trim(death_log || ' ' || :worker) ELSE death_log END,
    error = nullif(:error, ''), traceback = nullif(:traceback, '')
WHERE queue = :queue AND id = :id AND status = 'running' AND worker_id = :worker
  AND fence = :fence AND
  {readable};

-- name: job_snooze
-- Record a snoozed attempt as if it never started: scheduled at :retry_at_ms (the delayed
-- index), attempt back by one, failures and deaths kept, the reason as its error. Fenced;
-- refused when the record cannot be read.
UPDATE jobs
SET status = 'scheduled', run_at_ms = :retry_at_ms, attempt = max(0, attempt - 1),
    error = nullif(:error, ''), traceback = NULL
WHERE queue = :queue AND id = :id AND status = 'running' AND worker_id = :worker
  AND fence = :fence AND
  {readable};

-- name: job_fail_dead
-- Record a failed attempt with no retry left (counted as job_fail_retry counts it): the
-- job goes to the dead letters. Fenced; refused when the record cannot be read.
UPDATE jobs
SET status = 'dead', finished_at_ms = :finished_at_ms, failures = failures + :failed,
    deaths = deaths + :died,
    death_log = CASE WHEN :died THEN trim(death_log || ' ' || :worker) ELSE death_log END,
    error = nullif(:error, ''), traceback = nullif(:traceback, ''), expires_at_ms = NULL
WHERE queue = :queue AND id = :id AND status = 'running' AND worker_id = :worker
  AND fence = :fence AND
  {readable}
RETURNING workflow, notify, error;

-- name: job_release
-- Give a held job back to the head of its lane (seq kept), held by nobody: an unstarted
-- attempt (:unstarted 1) is not counted, a death of its own process (:died 1) is, and it
-- lands among the suspects if it was one or :suspect says so. Fenced; refused when the
-- record cannot be read.
UPDATE jobs
SET status = 'queued', worker_id = NULL, attempt = max(0, attempt - :unstarted),
    deaths = deaths + :died,
    death_log = CASE WHEN :died THEN trim(death_log || ' ' || :worker) ELSE death_log END,
    suspect = max(suspect, :suspect)
WHERE queue = :queue AND id = :id AND status = 'running' AND worker_id = :worker
  AND fence = :fence AND
  {readable};

-- name: job_set_progress
-- Record the progress of the attempt the holder holds under this fence (refused when the
-- record cannot be read).
UPDATE jobs SET progress = :progress
WHERE queue = :queue AND id = :id AND status = 'running' AND worker_id = :worker
  AND fence = :fence AND
  {readable};

-- ---------------------------------------------------------------- damaged records

-- name: job_damaged
-- Send a record a claim, reclaim or outcome could not read to the dead letters (only
-- status, error and times are written, never the unreadable fields). Returns what the
-- end's workflows need (see ends.py), as stored.
UPDATE jobs
SET status = 'dead', error = :error, traceback = NULL, finished_at_ms = :now,
    expires_at_ms = NULL
WHERE rowid = :rowid
RETURNING queue, id, workflow, notify;

-- name: id_round_trips
-- Whether an id read back (decoded with replacement) still names its row: false when
-- the stored id is not valid UTF-8.
SELECT id = :id FROM jobs WHERE rowid = :rowid;

-- ---------------------------------------------------------------- operators

-- name: queue_counts
-- Lane sizes and live (not departed) holders of one queue (each count walks one partial
-- index); the first counts the ready jobs and the suspects together.
SELECT
    (SELECT count(*) FROM jobs WHERE queue = :queue AND status = 'queued'),
    (SELECT count(*) FROM jobs WHERE queue = :queue AND status IN ('scheduled', 'failed')),
    (SELECT count(*) FROM jobs WHERE queue = :queue AND status = 'running'),
    (SELECT count(*) FROM jobs WHERE queue = :queue AND status = 'dead'),
    (SELECT count(*) FROM workers WHERE queue = :queue AND departed = 0),
    EXISTS (SELECT 1 FROM config_entries
            WHERE scope = 'queue' AND name = :queue AND field = 'paused' AND value = 'true');

-- name: queue_backlog
-- The rest of a queue's counts (same transaction as queue_counts): jobs waiting for their
-- workflow parents, delayed jobs waiting for a retry (on the delayed index), and when the
-- oldest ready job became ready: the first job of each (suspect, lane, priority) group on
-- the ready index is that group's oldest (seq grows as jobs are made ready).
SELECT
    (SELECT count(*) FROM jobs WHERE queue = :queue AND status = 'waiting'),
    (SELECT count(*) FROM jobs
     WHERE queue = :queue AND status IN ('scheduled', 'failed') AND status = 'failed'),
    (SELECT min(ready_at) FROM (
        SELECT max(enqueued_at_ms, run_at_ms) AS ready_at, min(seq)
        FROM jobs WHERE queue = :queue AND status = 'queued'
        GROUP BY suspect, lane, priority
    ));

-- name: dead_list
-- A page of dead letters, newest first.
SELECT {shown_columns}
FROM jobs
WHERE queue = :queue AND status = 'dead'
ORDER BY finished_at_ms DESC, id DESC
LIMIT :limit OFFSET :offset;

-- name: dead_rowids
-- Every dead letter of a queue, oldest first (the order a retry re-queues them in), by
-- rowid (an id that is not valid UTF-8 could not be named).
SELECT rowid FROM jobs WHERE queue = :queue AND status = 'dead' ORDER BY finished_at_ms, id;

-- name: dead_rowid
-- The rowid of one dead letter.
SELECT rowid FROM jobs WHERE queue = :queue AND id = :id AND status = 'dead';

-- name: dead_retry
-- Queue a dead job again at the tail of the ready lane with a fresh retry budget (no
-- failures, no deaths, no longer a suspect; its last error is kept). Numbers that cannot
-- be read are reset (attempt 0, fence 0, priority 0, enqueued now); a payload that is not
-- bytes is left as it is, so the next claim sends the job back to the dead letters.
UPDATE jobs
SET status = 'queued', run_at_ms = :now, failures = 0, deaths = 0,
    death_log = '', suspect = 0, isolated = 0, finished_at_ms = NULL, worker_id = NULL,
    expires_at_ms = NULL,
    attempt = CASE WHEN typeof(attempt) = 'integer'
                    AND attempt BETWEEN 0 AND 4611686018427387903 THEN attempt ELSE 0 END,
    fence = CASE WHEN typeof(fence) = 'integer'
                  AND fence BETWEEN 0 AND 4611686018427387903 THEN fence ELSE 0 END,
    priority = CASE WHEN typeof(priority) = 'integer'
                     AND priority BETWEEN :priority_min AND :priority_max
                    THEN priority ELSE 0 END,
    enqueued_at_ms = CASE WHEN typeof(enqueued_at_ms) = 'integer'
                          THEN enqueued_at_ms ELSE :now END,
    seq = :seq
WHERE rowid = :rowid AND status = 'dead';

-- name: dead_find_timed
-- One window of a queue's dead letters whose death time is a number, newest first after
-- the keyset (:after_at, :after_id), not before :since (the jobs_dead index bounds both),
-- each with the filter's verdict (:task, :needle NULL for any condition).
SELECT rowid, finished_at_ms, id,
       (:task IS NULL OR task = :task)
       AND (:needle IS NULL OR coalesce(instr(lower(error), :needle), 0) > 0) AS hit
FROM jobs
WHERE queue = :queue AND status = 'dead'
  AND (finished_at_ms, id) < (:after_at, :after_id) AND finished_at_ms >= :since
ORDER BY finished_at_ms DESC, id DESC
LIMIT :window;

-- name: dead_find_untimed
-- One window of a queue's dead letters whose death time cannot be read (NULL, text,
-- bytes), by id descending after :after_id, each with the filter's verdict. They sit at
-- the two ends of jobs_dead: each half reads only its end (then they are sorted: few).
SELECT rowid, finished_at_ms, id,
       (:task IS NULL OR task = :task)
       AND (:needle IS NULL OR coalesce(instr(lower(error), :needle), 0) > 0) AS hit
FROM (
    SELECT rowid, finished_at_ms, id, task, error FROM jobs INDEXED BY jobs_dead
    WHERE queue = :queue AND status = 'dead' AND finished_at_ms IS NULL AND id < :after_id
    UNION ALL
    SELECT rowid, finished_at_ms, id, task, error FROM jobs INDEXED BY jobs_dead
    WHERE queue = :queue AND status = 'dead' AND finished_at_ms >= '' AND id < :after_id
)
ORDER BY id DESC
LIMIT :window;

-- name: dead_row
-- A dead letter found by dead_find_*, read for people.
SELECT {shown_columns} FROM jobs WHERE rowid = :rowid AND status = 'dead';

-- name: dead_set_payload
-- Replace a dead letter's payload (a re-drive with edited arguments).
UPDATE jobs SET payload = :payload WHERE rowid = :rowid AND status = 'dead';

-- name: dead_purge
-- Delete one dead letter.
DELETE FROM jobs WHERE queue = :queue AND id = :id AND status = 'dead';

-- name: dead_purge_all
-- Delete every dead letter of a queue.
DELETE FROM jobs WHERE queue = :queue AND status = 'dead';

-- name: dead_trim_old
-- Delete at most :limit dead letters of a queue that died before :before, oldest first.
DELETE FROM jobs WHERE rowid IN (
    SELECT rowid FROM jobs
    WHERE queue = :queue AND status = 'dead' AND finished_at_ms < :before
    ORDER BY finished_at_ms, id LIMIT :limit
);

-- name: dead_trim_over
-- Delete at most :limit dead letters of a queue beyond the newest :keep, oldest first.
DELETE FROM jobs WHERE rowid IN (
    SELECT rowid FROM jobs WHERE queue = :queue AND status = 'dead'
    ORDER BY finished_at_ms DESC, id DESC LIMIT :limit OFFSET :keep
);

-- ---------------------------------------------------------------- schedules
-- Rows of the schedule tables are read back and checked in Python (schedules.py) before
-- anything is decided from them; writes put values computed from checked ones.

-- name: counter_take
-- Raise a meta counter (:key) by one; returns the new value (no row: the counter is missing
-- or unreadable, see the *_repair statements).
UPDATE meta SET value = value + 1
WHERE key = :key AND typeof(value) = 'integer' AND value BETWEEN 0 AND 4611686018427387903
RETURNING value;

-- name: meta_get
-- One meta value (checked by the caller).
SELECT value FROM meta WHERE key = :key;

-- name: meta_put
-- Write one meta value.
INSERT OR REPLACE INTO meta (key, value) VALUES (:key, :value);

-- name: schedules_version_known
-- The highest version any schedule or tombstone carries: what a missing or unreadable
-- 'schedules_version' counter is re-created from.
SELECT max(
    ifnull((SELECT max(version) FROM schedules
            WHERE typeof(version) = 'integer' AND version >= 0), 0),
    ifnull((SELECT max(version) FROM schedule_removed
            WHERE typeof(version) = 'integer' AND version >= 0), 0)
);

-- name: scheduler_fence_known
-- The highest fence the lease row or a step carries: what a missing or unreadable
-- 'scheduler_fence' counter is re-created from, so a new fence is never below one seen.
SELECT max(
    ifnull((SELECT max(fence) FROM scheduler_lease
            WHERE typeof(fence) = 'integer' AND fence >= 0), 0),
    ifnull((SELECT value FROM meta
            WHERE key = 'schedule_fence' AND typeof(value) = 'integer' AND value >= 0), 0)
);

-- name: schedule_get
-- One schedule with its latest run (see the schedule_rows view).
SELECT * FROM schedule_rows WHERE name = :name;

-- name: schedules_all
-- Every schedule by name, with its latest run.
SELECT * FROM schedule_rows ORDER BY name;

-- name: schedules_changed
-- Every schedule changed after version :since, in version order, with its latest run. A
-- version that is not a number sorts after every number, so a damaged row is met (and
-- skipped by the reader) rather than hidden.
SELECT * FROM schedule_rows WHERE version > :since ORDER BY version;

-- name: schedules_removed_since
-- Names removed after version :since, in version order.
SELECT name FROM schedule_removed WHERE version > :since ORDER BY version;

-- name: schedule_exists
-- Whether a row of that name exists, readable or not.
SELECT EXISTS (SELECT 1 FROM schedules WHERE name = :name);

-- name: schedule_queue
-- The queue a schedule's jobs go to (checked by the caller).
SELECT queue FROM schedules WHERE name = :name;

-- name: schedule_put
-- Write a schedule's whole row (create, or replace every column).
INSERT INTO schedules (name, queue, definition, version, paused, paused_reason, last_tick_ms,
                       floor_ms, buffered_tick_ms, created_at_ms, updated_at_ms, fired, skipped)
VALUES (:name, :queue, :definition, :version, :paused, :paused_reason, :last_tick_ms,
        :floor_ms, :buffered_tick_ms, :created_at_ms, :updated_at_ms, :fired, :skipped)
ON CONFLICT (name) DO UPDATE SET
    queue = excluded.queue, definition = excluded.definition, version = excluded.version,
    paused = excluded.paused, paused_reason = excluded.paused_reason,
    last_tick_ms = excluded.last_tick_ms, floor_ms = excluded.floor_ms,
    buffered_tick_ms = excluded.buffered_tick_ms, created_at_ms = excluded.created_at_ms,
    updated_at_ms = excluded.updated_at_ms, fired = excluded.fired, skipped = excluded.skipped;

-- name: schedule_delete
-- Delete a schedule's row (its ticks and logs: the schedule_*_forget statements).
DELETE FROM schedules WHERE name = :name;

-- name: schedule_fired_forget
-- Delete a removed schedule's fired ticks (at most SCHEDULE_FIRED_KEEP rows).
DELETE FROM schedule_fired WHERE name = :name;

-- name: schedule_runs_forget
-- Delete a removed schedule's runs (at most SCHEDULE_LOG_KEEP rows).
DELETE FROM schedule_runs WHERE name = :name;

-- name: schedule_skips_forget
-- Delete a removed schedule's skips (at most SCHEDULE_LOG_KEEP rows).
DELETE FROM schedule_skips WHERE name = :name;

-- name: schedule_tombstone
-- Note a removal at version :version, for readers of changes.
INSERT OR REPLACE INTO schedule_removed (name, version, removed_at_ms)
VALUES (:name, :version, :now);

-- name: schedule_untombstone
-- A name added again is no longer removed.
DELETE FROM schedule_removed WHERE name = :name;

-- name: schedule_tombstones_trim
-- Forget at most :limit removals made before :before, oldest first.
DELETE FROM schedule_removed WHERE name IN (
    SELECT name FROM schedule_removed WHERE removed_at_ms < :before
    ORDER BY removed_at_ms LIMIT :limit
);

-- name: schedule_fired_has
-- Whether a schedule fired a tick (among the ticks kept).
SELECT EXISTS (SELECT 1 FROM schedule_fired WHERE name = :name AND tick_ms = :tick_ms);

-- name: schedule_fired_add
-- Note a fired tick.
INSERT OR IGNORE INTO schedule_fired (name, tick_ms) VALUES (:name, :tick_ms);

-- name: schedule_fired_trim
-- Drop the fired ticks of a schedule below its highest :keep; returns the ticks dropped
-- (the floor rises to the highest). One more than :keep, so usually one row.
DELETE FROM schedule_fired
WHERE name = :name AND tick_ms <= (
    SELECT tick_ms FROM schedule_fired WHERE name = :name
    ORDER BY tick_ms DESC LIMIT 1 OFFSET :keep
)
RETURNING tick_ms;

-- name: schedule_run_add
-- Log a run.
INSERT INTO schedule_runs (name, tick_ms, job_id, queue, kind, fired_at_ms)
VALUES (:name, :tick_ms, :job_id, :queue, :kind, :fired_at_ms);

-- name: schedule_runs_trim
-- Keep the newest :keep runs of a schedule.
DELETE FROM schedule_runs
WHERE name = :name AND id <= (
    SELECT id FROM schedule_runs WHERE name = :name ORDER BY id DESC LIMIT 1 OFFSET :keep
);

-- name: schedule_runs_list
-- The newest :limit runs of a schedule, newest first.
SELECT tick_ms, job_id, queue, kind, fired_at_ms
FROM schedule_runs WHERE name = :name ORDER BY id DESC LIMIT :limit;

-- name: schedule_skip_add
-- Log a run of skipped ticks.
INSERT INTO schedule_skips (name, first_tick_ms, last_tick_ms, count, reason, at_ms)
VALUES (:name, :first_tick_ms, :last_tick_ms, :count, :reason, :at_ms);

-- name: schedule_skips_trim
-- Keep the newest :keep skips of a schedule.
DELETE FROM schedule_skips
WHERE name = :name AND id <= (
    SELECT id FROM schedule_skips WHERE name = :name ORDER BY id DESC LIMIT 1 OFFSET :keep
);

-- name: schedule_skips_list
-- The newest :limit skips of a schedule, newest first.
SELECT first_tick_ms, last_tick_ms, count, reason, at_ms
FROM schedule_skips WHERE name = :name ORDER BY id DESC LIMIT :limit;

-- name: scheduler_lease_get
-- The scheduler lease (checked by the caller).
SELECT holder, fence, deadline_ms FROM scheduler_lease WHERE id = 1;

-- name: scheduler_lease_put
-- Take or renew the scheduler lease.
INSERT OR REPLACE INTO scheduler_lease (id, holder, fence, deadline_ms)
VALUES (1, :holder, :fence, :deadline_ms);

-- name: scheduler_lease_release
-- Give the lease up, if :holder has it.
DELETE FROM scheduler_lease WHERE id = 1 AND holder = :holder;

-- ---------------------------------------------------------------- workflows
-- Rows of the workflow tables are read back and checked in Python (workflow_rows.py,
-- ends.py) before anything is decided from them; a write that adds to a stored count
-- checks its type in its own WHERE clause, so no write fails on what a row holds.

-- name: wf_get
-- A workflow's row (checked by the caller, expiry included).
SELECT id, kind, state, shape, total, members, ended, members_ended,
       first_failure, first_failure_error, created_at_ms, finished_at_ms, expires_at_ms
FROM workflows WHERE id = :workflow;

-- name: wf_insert
-- Store a new workflow's row (its counts at 0).
INSERT INTO workflows (id, kind, state, shape, total, members, created_at_ms)
VALUES (:workflow, :kind, :state, :shape, :total, :members, :created_at_ms);

-- name: wf_output_insert
-- Store one output of a new workflow, at its place in the order.
INSERT INTO workflow_outputs (workflow, position, job, queue)
VALUES (:workflow, :position, :job, :queue);

-- name: wf_outputs_page
-- At most :limit outputs of a workflow from position :offset on (checked by the caller).
SELECT position, job, queue FROM workflow_outputs
WHERE workflow = :workflow AND position >= :offset
ORDER BY position
LIMIT :limit;

-- name: wf_output_outcomes
-- At most :limit outputs of a workflow from position :offset on, in order, each with its
-- record's status, result and error (NULL when gone or expired by :clock).
SELECT o.position, o.job, o.queue, j.status, j.result, j.error
FROM workflow_outputs AS o
LEFT JOIN jobs AS j
    ON j.queue = o.queue AND j.id = o.job
   AND NOT (typeof(j.expires_at_ms) = 'integer' AND j.expires_at_ms <= :clock)
WHERE o.workflow = :workflow AND o.position >= :offset
ORDER BY o.position
LIMIT :limit;

-- name: wf_grow
-- An open batch takes :total more jobs, :members of them members.
UPDATE workflows SET total = :total_now + :total, members = :members_now + :members
WHERE id = :workflow;

-- name: wf_close
-- An open batch takes no more jobs.
UPDATE workflows SET state = 'closed' WHERE id = :workflow AND state = 'open';

-- name: wf_node_insert
-- Store one job of a workflow.
INSERT INTO workflow_nodes (workflow, job, queue, task, callback, position, pending, decided)
VALUES (:workflow, :job, :queue, :task, :callback, :position, :pending, :decided);

-- name: wf_edge_insert
-- Store one edge (applied 1: its parent had ended already and was taken in at once).
INSERT INTO workflow_edges (workflow, child, position, parent, parent_queue, allow_failed,
                            applied)
VALUES (:workflow, :child, :position, :parent, :parent_queue, :allow_failed, :applied);

-- name: wf_node_get
-- One job of a workflow (checked by the caller).
SELECT job, queue, task, callback, position, pending, decided, ended
FROM workflow_nodes WHERE workflow = :workflow AND job = :job;

-- name: wf_parent_state
-- A parent's status and error, unless its record expired by :clock (no row: it does not
-- exist).
SELECT status, error FROM jobs
WHERE queue = :queue AND id = :id
  AND NOT (typeof(expires_at_ms) = 'integer' AND expires_at_ms <= :clock);

-- name: wf_watch
-- A workflow other than its own waits for this job's end (its worker is told so).
UPDATE jobs SET notify = 1 WHERE queue = :queue AND id = :id AND notify IS NOT 1;

-- name: wf_nodes_end
-- Take in ends in :state of jobs of one workflow in one queue (:jobs, a JSON array of
-- ids), each once; returns the jobs taken in, with their callback event (NULL: a member).
-- A job not of that workflow (in that queue), or whose end was taken in, is left out.
UPDATE workflow_nodes SET ended = :state
WHERE workflow = :workflow AND job IN (SELECT value FROM json_each(:jobs))
  AND queue = :queue AND ended IS NULL
RETURNING job, callback;

-- name: wf_count_end
-- Count :ended ends, :members_ended of them of members, and note the first failure among
-- them (:failed 1, its :job and :error) unless one is noted; returns what decides the
-- callbacks and the finish. No row: no such workflow, or its counts cannot be read.
UPDATE workflows
SET ended = ended + :ended, members_ended = members_ended + :members_ended,
    first_failure = CASE WHEN :failed AND first_failure IS NULL
                         THEN :job ELSE first_failure END,
    first_failure_error = CASE WHEN :failed AND first_failure IS NULL
                               THEN :error ELSE first_failure_error END
WHERE id = :workflow
  AND typeof(ended) = 'integer' AND ended BETWEEN 0 AND 4611686018427387903
  AND typeof(members_ended) = 'integer' AND members_ended BETWEEN 0 AND 4611686018427387903
RETURNING state, total, ended, members, members_ended, finished_at_ms;

-- name: wf_count_state
-- Count :n ends in a state (an unreadable count starts again from :n).
INSERT INTO workflow_counts (workflow, member, state, n) VALUES (:workflow, :member, :state, :n)
ON CONFLICT (workflow, member, state) DO UPDATE SET
    n = CASE WHEN typeof(n) = 'integer' AND n BETWEEN 0 AND 4611686018427387903
             THEN n + excluded.n ELSE excluded.n END;

-- name: wf_count_get
-- One count of a workflow (checked by the caller).
SELECT n FROM workflow_counts WHERE workflow = :workflow AND member = :member AND state = :state;

-- name: wf_counts
-- Every count of a workflow (checked by the caller).
SELECT member, state, n FROM workflow_counts WHERE workflow = :workflow;

-- name: wf_failed_add
-- Note a member that failed, at its place in the order members failed.
INSERT OR IGNORE INTO workflow_failed (workflow, position, job)
VALUES (:workflow, :position, :job);

-- name: wf_failed_list
-- The members that failed, in the order they did (at most :limit).
SELECT job FROM workflow_failed WHERE workflow = :workflow ORDER BY position LIMIT :limit;

-- name: wf_finish
-- Every job ended and the workflow is closed: note when, and when its rows go.
UPDATE workflows SET finished_at_ms = :now, expires_at_ms = :expires_at_ms
WHERE id = :workflow AND finished_at_ms IS NULL;

-- name: wf_edges_unapplied
-- At most :limit edges, in every workflow, whose parent is one of :parents (a JSON array
-- of [job, queue]) and that have not taken its end in, each with the parent's place in
-- :parents (the workflow_dependents index, one probe per parent).
SELECT p.key, e.workflow, e.child, e.position, e.allow_failed
FROM json_each(:parents) AS p
CROSS JOIN workflow_edges AS e
    ON e.parent_queue = json_extract(p.value, '$[1]')
   AND e.parent = json_extract(p.value, '$[0]')
WHERE e.applied IS NOT 1
LIMIT :limit;

-- name: wf_edge_applied
-- An edge took its parent's end in (by its key, as wf_edges_unapplied read it).
UPDATE workflow_edges SET applied = 1
WHERE workflow = :workflow AND child = :child AND position = :position;

-- name: wf_node_satisfy
-- :n more edges of a job satisfied; returns what decides its release. No row: no such
-- job, or a pending count that cannot be read (or below :n).
UPDATE workflow_nodes SET pending = pending - :n
WHERE workflow = :workflow AND job = :job
  AND typeof(pending) = 'integer' AND pending BETWEEN :n AND 4611686018427387903
RETURNING pending, decided, ended, queue;

-- name: wf_node_decide
-- The workflow decides a job (releases it, fails it, finds a callback not needed), once;
-- returns its queue. No row: decided before, or ended already.
UPDATE workflow_nodes SET decided = 1
WHERE workflow = :workflow AND job = :job AND decided = 0 AND ended IS NULL
RETURNING queue;

-- name: wf_job_release
-- Release a waiting job to the tail of the ready lane, or to the delayed lane when its
-- time is still ahead (an unreadable run time sorts after numbers: the next promotion
-- sends it to the dead letters).
UPDATE jobs
SET status = CASE WHEN run_at_ms > :now THEN 'scheduled' ELSE 'queued' END, seq = :seq
WHERE queue = :queue AND id = :id AND status = 'waiting';

-- name: wf_job_end
-- End a waiting job without running it (:status upstream_failed, or cancelled for a
-- callback not needed); returns what the end's other workflows need.
UPDATE jobs
SET status = :status, error = :error, traceback = NULL, finished_at_ms = :now,
    expires_at_ms = :expires_at_ms
WHERE queue = :queue AND id = :id AND status = 'waiting'
RETURNING workflow, notify;

-- name: wf_job_seq
-- A job's seq as stored (what tells a job this call wrote from one that existed).
SELECT seq FROM jobs WHERE queue = :queue AND id = :id;

-- name: wf_job_status
-- A job's status as stored (no row: the record is gone).
SELECT status FROM jobs WHERE queue = :queue AND id = :id;

-- name: wf_callbacks
-- A workflow's batch callbacks not decided yet (the workflow_callbacks index).
SELECT job, callback FROM workflow_nodes INDEXED BY workflow_callbacks
WHERE workflow = :workflow AND callback IS NOT NULL AND decided = 0 AND ended IS NULL;

-- name: wf_nodes_page
-- At most :limit jobs of a workflow from position :offset on, in the order added, with
-- their records' status and error (NULL when gone or expired by :clock).
SELECT n.job, n.queue, n.task, n.callback, n.position, j.status, j.error
FROM workflow_nodes AS n
LEFT JOIN jobs AS j
    ON j.queue = n.queue AND j.id = n.job
   AND NOT (typeof(j.expires_at_ms) = 'integer' AND j.expires_at_ms <= :clock)
WHERE n.workflow = :workflow AND n.position >= :offset
ORDER BY n.position
LIMIT :limit;

-- name: wf_edges_of
-- A job's parents in edge order (at most :limit from position :offset on).
SELECT position, parent, parent_queue, allow_failed FROM workflow_edges
WHERE workflow = :workflow AND child = :job AND position >= :offset
ORDER BY position
LIMIT :limit;

-- name: wf_job_workflow
-- The workflow a job belongs to (checked by the caller).
SELECT workflow FROM jobs WHERE queue = :queue AND id = :id;

-- name: wf_parent_outcomes
-- A job's parents in edge order (at most :limit from position :offset on), each with its
-- record's status, result and error (NULL when gone or expired by :clock).
SELECT e.position, e.parent, e.parent_queue, p.status, p.result, p.error
FROM workflow_edges AS e
LEFT JOIN jobs AS p
    ON p.queue = e.parent_queue AND p.id = e.parent
   AND NOT (typeof(p.expires_at_ms) = 'integer' AND p.expires_at_ms <= :clock)
WHERE e.workflow = :workflow AND e.child = :job AND e.position >= :offset
ORDER BY e.position
LIMIT :limit;

-- name: wf_cancel_page
-- Cancel the jobs of a workflow from position :offset on (at most :limit of them) that
-- have not ended, as job_cancel and job_cancel_running do one (the records that cannot be
-- read are left); returns what their ends need. The positions are read by wf_positions.
UPDATE jobs SET status = 'cancelled', finished_at_ms = :now, expires_at_ms = :expires_at_ms,
    fence = CASE WHEN status = 'running' THEN fence + 1 ELSE fence END
WHERE rowid IN (
    SELECT j.rowid FROM workflow_nodes AS n
    CROSS JOIN jobs AS j ON j.queue = n.queue AND j.id = n.job
    WHERE n.workflow = :workflow AND n.position >= :offset AND n.position < :offset + :limit
  )
  AND status IN ('scheduled', 'waiting', 'queued', 'failed', 'running')
  AND
  {readable}
RETURNING id, queue, workflow, notify, error;

-- name: wf_last_position
-- The highest position of a workflow's jobs (NULL: none; the walk of cancel_workflow).
SELECT max(position) FROM workflow_nodes WHERE workflow = :workflow;

-- name: wf_expired
-- The workflow whose rows have waited longest past their time (NULL-free: no row).
SELECT id FROM workflows WHERE expires_at_ms <= :clock ORDER BY expires_at_ms LIMIT 1;

-- name: wf_stale_creating
-- At most :limit workflows left 'creating' since before :before (never by this broker).
SELECT id FROM workflows WHERE state = 'creating' AND created_at_ms < :before
ORDER BY created_at_ms LIMIT :limit;

-- name: wf_edges_drop
-- Delete at most :limit edges of a workflow.
DELETE FROM workflow_edges WHERE (workflow, child, position) IN (
    SELECT workflow, child, position FROM workflow_edges WHERE workflow = :workflow
    LIMIT :limit
);

-- name: wf_nodes_drop
-- Delete at most :limit jobs of a workflow from its graph.
DELETE FROM workflow_nodes WHERE (workflow, job) IN (
    SELECT workflow, job FROM workflow_nodes WHERE workflow = :workflow LIMIT :limit
);

-- name: wf_failed_drop
-- Delete at most :limit failed members of a workflow.
DELETE FROM workflow_failed WHERE (workflow, position) IN (
    SELECT workflow, position FROM workflow_failed WHERE workflow = :workflow LIMIT :limit
);

-- name: wf_outputs_drop
-- Delete at most :limit outputs of a workflow.
DELETE FROM workflow_outputs WHERE (workflow, position) IN (
    SELECT workflow, position FROM workflow_outputs WHERE workflow = :workflow LIMIT :limit
);

-- name: wf_counts_drop
-- Delete a workflow's counts (a few rows: one per state).
DELETE FROM workflow_counts WHERE workflow = :workflow;

-- name: wf_drop
-- Delete a workflow's own row.
DELETE FROM workflows WHERE id = :workflow;

-- name: wf_unwritten_jobs
-- The jobs of a workflow left 'creating' from position :offset on (at most :limit of them)
-- that are still waiting, by rowid.
SELECT j.rowid FROM workflow_nodes AS n
CROSS JOIN jobs AS j ON j.queue = n.queue AND j.id = n.job
WHERE n.workflow = :workflow AND n.position >= :offset AND n.position < :offset + :limit
  AND j.status = 'waiting' AND j.workflow = :workflow;

-- name: wf_job_drop
-- Delete one job record by rowid.
DELETE FROM jobs WHERE rowid = :rowid;

-- ---------------------------------------------------------------- flow control

-- name: flow_rule_put
-- Store a task's rules in a queue (replacing its earlier ones).
INSERT OR REPLACE INTO flow_rules (
    queue, task, concurrency, keyed, key_concurrency, rate_count, rate_period_ms,
    key_rate_count, key_rate_period_ms, over_limit, key_weights)
VALUES (:queue, :task, :concurrency, :keyed, :key_concurrency, :rate_count, :rate_period_ms,
        :key_rate_count, :key_rate_period_ms, :over_limit, :key_weights);

-- name: flow_rule_delete
-- Remove a task's rules from a queue (its lanes drain without limits).
DELETE FROM flow_rules WHERE queue = :queue AND task = :task;

-- name: flow_rules_of
-- A queue's rules, one row per task.
SELECT task, concurrency, keyed, key_concurrency, rate_count, rate_period_ms, key_rate_count,
       key_rate_period_ms, over_limit, key_weights
FROM flow_rules WHERE queue = :queue;

-- name: flow_unpark_task_groups
-- Put a task's parked (or waiting: its lanes were parked) group back at the back of the
-- rotation (its rules changed).
UPDATE flow_groups SET state = 'ready', turn = :turn
WHERE queue = :queue AND task = :task AND state IN ('parked', 'waiting');

-- name: flow_unpark_task_lanes
-- Put a task's parked lanes back at the back of their rotation (its rules changed).
UPDATE flow_lanes SET state = 'ready', turn = :turn
WHERE queue = :queue AND task = :task AND state = 'parked';

-- name: flow_counters
-- A queue's flow-control counters (no row: all 0).
SELECT expired, dropped, cooled FROM flow_queues WHERE queue = :queue;

-- name: flow_state_counts
-- Jobs waiting in ruled lanes, and the groups and lanes parked and throttled now.
SELECT
    (SELECT count(*) FROM jobs
     WHERE queue = :queue AND status = 'queued' AND suspect = 0 AND lane > ''),
    (SELECT count(*) FROM flow_groups WHERE queue = :queue AND state = 'parked')
    + (SELECT count(*) FROM flow_lanes WHERE queue = :queue AND state = 'parked'),
    (SELECT count(*) FROM flow_groups WHERE queue = :queue AND state = 'throttled')
    + (SELECT count(*) FROM flow_lanes WHERE queue = :queue AND state = 'throttled');

-- name: flow_active
-- The limits with jobs running under them now.
SELECT name, running FROM flow_limits WHERE queue = :queue AND running > 0;

-- name: flow_count
-- Add to a queue's expired and dropped counters.
INSERT INTO flow_queues (queue, expired, dropped) VALUES (:queue, :expired, :dropped)
ON CONFLICT (queue) DO UPDATE SET
    expired = expired + excluded.expired, dropped = dropped + excluded.dropped;

-- name: flow_turn_take
-- The queue's next turn number.
INSERT INTO flow_queues (queue, turn) VALUES (:queue, 1)
ON CONFLICT (queue) DO UPDATE SET turn = turn + 1
RETURNING turn;

-- name: flow_has_lanes
-- Whether a ruled task's group exists in the queue (the claim then visits lanes).
SELECT EXISTS (SELECT 1 FROM flow_groups WHERE queue = :queue AND task > '');

-- name: flow_wake_groups
-- Groups whose task rate allows a start again, back in the rotation (at most :limit).
UPDATE flow_groups SET state = 'ready', due_ms = NULL, turn = :turn
WHERE (queue, task) IN (
    SELECT queue, task FROM flow_groups
    WHERE queue = :queue AND state = 'throttled' AND due_ms <= :now LIMIT :limit);

-- name: flow_wake_lanes
-- Lanes whose key rate allows a start again, back in their rotation (at most :limit);
-- their groups are runnable again.
UPDATE flow_lanes SET state = 'ready', due_ms = NULL, turn = :turn
WHERE (queue, lane) IN (
    SELECT queue, lane FROM flow_lanes
    WHERE queue = :queue AND state = 'throttled' AND due_ms <= :now LIMIT :limit)
RETURNING task;

-- name: flow_next_throttled
-- When the earliest throttled group or lane of the queue is due again (NULL: none).
SELECT min(due) FROM (
    SELECT min(due_ms) AS due FROM flow_groups WHERE queue = :queue AND state = 'throttled'
    UNION ALL
    SELECT min(due_ms) FROM flow_lanes WHERE queue = :queue AND state = 'throttled');

-- name: flow_expire_due
-- End expired at most :limit jobs of a queue that have not started and whose start_by_ms
-- passed (walks jobs_start_by); returns what the ends' workflows need.
UPDATE jobs
SET status = 'expired', finished_at_ms = :now, expires_at_ms = :expires_at_ms,
    error = :error, worker_id = NULL
WHERE rowid IN (
    SELECT rowid FROM jobs
    WHERE queue = :queue AND start_by_ms IS NOT NULL AND attempt = 0
      AND status IN ('queued', 'scheduled') AND start_by_ms < :now
    LIMIT :limit)
RETURNING id, workflow, notify, error;

-- name: flow_drop
-- End one waiting job expired as dropped over a rate limit.
UPDATE jobs
SET status = 'expired', finished_at_ms = :now, expires_at_ms = :expires_at_ms, error = :error
WHERE rowid = :rowid AND status = 'queued'
RETURNING id, workflow, notify, error;

-- name: flow_lane_head
-- The head of a lane ('' the plain ready set) that a claim may take (not past its
-- start_by_ms, which expiry ends): its priority and rowid.
SELECT priority, rowid FROM jobs
WHERE queue = :queue AND status = 'queued' AND suspect = 0 AND lane = :lane
  AND (start_by_ms IS NULL OR start_by_ms >= :now OR attempt > 0)
ORDER BY priority DESC, seq
LIMIT 1;

-- name: flow_plain_put
-- The plain ready set's group with its head priority; :rotate 1 sends it to the back.
INSERT INTO flow_groups (queue, task, state, head, turn) VALUES (:queue, '', 'ready', :head, :turn)
ON CONFLICT (queue, task) DO UPDATE SET
    state = 'ready', head = excluded.head,
    turn = CASE WHEN :rotate THEN excluded.turn ELSE turn END;

-- name: flow_group_delete
-- Forget a group (no lane left).
DELETE FROM flow_groups WHERE queue = :queue AND task = :task;

-- name: flow_group_top
-- The runnable group to visit next: highest head priority, then the longest waiting.
SELECT task, head FROM flow_groups
WHERE queue = :queue AND state = 'ready'
ORDER BY head DESC, turn
LIMIT 1;

-- name: flow_lane_top
-- A group's runnable lane to visit next, with the jobs it gave in its current visit.
SELECT lane, taken, head FROM flow_lanes
WHERE queue = :queue AND task = :task AND state = 'ready'
ORDER BY head DESC, turn
LIMIT 1;

-- name: flow_group_state
-- Park, throttle (until :due) or set waiting a group.
UPDATE flow_groups SET state = :state, due_ms = :due WHERE queue = :queue AND task = :task;

-- name: flow_lane_state
-- Park or throttle (until :due) a lane.
UPDATE flow_lanes SET state = :state, due_ms = :due WHERE queue = :queue AND lane = :lane;

-- name: flow_group_has_lanes
-- Whether a task has any lane row (its lane names sort between :low and :high).
SELECT EXISTS (SELECT 1 FROM flow_lanes WHERE queue = :queue AND lane >= :low AND lane < :high);

-- name: flow_lane_delete
-- Forget an empty lane.
DELETE FROM flow_lanes WHERE queue = :queue AND lane = :lane;

-- name: flow_limit_forget
-- Forget a limit that holds nothing any more: no job running under it and a tat already
-- passed (GCRA then starts as from no state), so keys seen once do not pile up.
DELETE FROM flow_limits
WHERE queue = :queue AND name = :name AND running = 0 AND (tat_ms IS NULL OR tat_ms <= :now);

-- name: flow_lane_taken
-- A lane gave a job: its new head; :rotate 1 ends its visit (back of the rotation, none
-- taken), else one more taken in this visit.
UPDATE flow_lanes SET
    head = :head,
    taken = CASE WHEN :rotate THEN 0 ELSE taken + 1 END,
    turn = CASE WHEN :rotate THEN :turn ELSE turn END
WHERE queue = :queue AND lane = :lane;

-- name: flow_group_turn
-- A group gave a job: to the back of its band, with its new head.
UPDATE flow_groups SET head = :head, turn = :turn WHERE queue = :queue AND task = :task;

-- name: flow_groups_revive
-- Groups waiting for a runnable lane whose lane became runnable again.
UPDATE flow_groups SET state = 'ready'
WHERE queue = :queue AND task = :task AND state = 'waiting';

-- name: flow_limit_get
-- A limit's running count and GCRA tat.
SELECT running, tat_ms FROM flow_limits WHERE queue = :queue AND name = :name;

-- name: flow_limit_spend
-- A start under a limit: :add to its running count, its new tat.
INSERT INTO flow_limits (queue, name, running, tat_ms) VALUES (:queue, :name, :add, :tat)
ON CONFLICT (queue, name) DO UPDATE SET
    running = CASE WHEN typeof(running) = 'integer' AND running > 0 THEN running ELSE 0 END
              + excluded.running,
    tat_ms = excluded.tat_ms;

-- ---------------------------------------------------------------- flow control: enqueue

-- name: job_alive
-- Whether a job with this id exists (an expired record by :clock does not).
SELECT 1 FROM jobs
WHERE queue = :queue AND id = :id
  AND NOT (typeof(expires_at_ms) = 'integer' AND expires_at_ms <= :clock);

-- name: unique_holder
-- The job a unique key of a queue maps to, with what decides whether it still holds the
-- key (admit.py). No row: no mapping, or its record is gone, expired, or has another key.
SELECT j.id, j.rowid, j.status, j.enqueued_at_ms, j.finished_at_ms, j.unique_for_ms
FROM unique_keys AS u
JOIN jobs AS j ON j.queue = u.queue AND j.id = u.job_id
WHERE u.queue = :queue AND u.key = :key AND j.unique_key = u.key
  AND NOT (typeof(j.expires_at_ms) = 'integer' AND j.expires_at_ms <= :clock);

-- name: unique_take
-- The job now holds the key (live: no until_ms), whoever held it before.
INSERT INTO unique_keys (queue, key, job_id, until_ms) VALUES (:queue, :key, :job_id, NULL)
ON CONFLICT (queue, key) DO UPDATE SET job_id = excluded.job_id, until_ms = NULL;

-- name: job_unique_for
-- How long the job's unique key stays taken after its end (the triggers read it).
UPDATE jobs SET unique_for_ms = :ms WHERE queue = :queue AND id = :id;

-- name: job_replace
-- A job that has not started takes a duplicate's payload and priority (OnDuplicate.REPLACE).
UPDATE jobs SET payload = :payload, priority = :priority
WHERE rowid = :rowid AND status IN ('scheduled', 'queued');

-- name: job_debounce
-- A job that has not started runs at :run_at_ms with a later call's payload; a queued one
-- moved into the future waits scheduled (a scheduled one now due is promoted next).
UPDATE jobs
SET payload = :payload, run_at_ms = :run_at_ms,
    status = CASE WHEN status = 'queued' AND :run_at_ms > :now THEN 'scheduled'
                  ELSE status END
WHERE rowid = :rowid AND status IN ('scheduled', 'queued');

-- name: job_cancel_running
-- Cancel a running job (cancel_job, OnDuplicate.CANCEL): the fence moves on, so its holder's outcome
-- is refused, and it leaves the holder's set (its slots: the jobs_attempt_end trigger).
-- Refused when the record cannot be read. Returns what the end's workflows need.
UPDATE jobs
SET status = 'cancelled', fence = fence + 1, finished_at_ms = :now,
    expires_at_ms = :expires_at_ms
WHERE queue = :queue AND id = :id AND status = 'running'
  AND
  {readable}
RETURNING workflow, notify, error;

-- name: cooldown_open
-- The job named by a key's cooldown window when it is still open at :now.
SELECT job_id FROM cooldowns WHERE queue = :queue AND key = :key AND until_ms > :now;

-- name: cooldown_put
-- Open (or open again) a key's cooldown window until :until_ms.
INSERT INTO cooldowns (queue, key, until_ms, job_id) VALUES (:queue, :key, :until_ms, :job_id)
ON CONFLICT (queue, key) DO UPDATE SET until_ms = excluded.until_ms, job_id = excluded.job_id;

-- name: flow_cooled_count
-- One more enqueue of the queue dropped by a cooldown (FlowStats.cooled).
INSERT INTO flow_queues (queue, cooled) VALUES (:queue, 1)
ON CONFLICT (queue) DO UPDATE SET
    cooled = CASE WHEN typeof(cooled) = 'integer' AND cooled BETWEEN 0 AND 4611686018427387903
                  THEN cooled + 1 ELSE 1 END;

-- name: unique_keys_prune
-- Forget at most :limit unique keys of a queue whose window after their job's end passed.
DELETE FROM unique_keys
WHERE queue = :queue AND key IN (
    SELECT key FROM unique_keys WHERE queue = :queue AND until_ms <= :now LIMIT :limit
);

-- name: cooldowns_prune
-- Forget at most :limit cooldown windows of a queue that closed.
DELETE FROM cooldowns
WHERE queue = :queue AND key IN (
    SELECT key FROM cooldowns WHERE queue = :queue AND until_ms <= :now LIMIT :limit
);

-- ---------------------------------------------------------------- control channel

-- name: control_put
-- One control message for :worker (or '*').
INSERT INTO control_messages (worker_id, message, at_ms) VALUES (:worker, :message, :now);

-- name: control_trim
-- Delete at most :limit messages older than :before (listeners have read them long ago).
DELETE FROM control_messages WHERE id IN (
    SELECT id FROM control_messages WHERE at_ms < :before ORDER BY at_ms LIMIT :limit
);

-- name: control_last
-- The highest message id so far (NULL: none): where a new listener starts.
SELECT max(id) FROM control_messages;

-- name: control_after
-- The messages after id :after (for any worker: the listener skips those not for it, so
-- its cursor moves past them), oldest first.
SELECT id, worker_id, message FROM control_messages
WHERE id > :after
ORDER BY id LIMIT :limit;

-- name: control_reply_put
-- Answer a request (a second answer replaces the first).
INSERT INTO control_replies (request_id, body, expires_at_ms) VALUES (:request, :body, :expires)
ON CONFLICT (request_id) DO UPDATE SET body = excluded.body, expires_at_ms = excluded.expires_at_ms;

-- name: control_reply_trim
-- Delete at most :limit answers nobody took in time.
DELETE FROM control_replies WHERE request_id IN (
    SELECT request_id FROM control_replies WHERE expires_at_ms < :now LIMIT :limit
);

-- name: control_reply_take
-- Take the answer to a request, when it is there and has not expired.
DELETE FROM control_replies WHERE request_id = :request AND expires_at_ms >= :now
RETURNING body;

-- name: control_reply_get
-- The answer to a request, when it is there and has not expired (a look before taking).
SELECT body FROM control_replies WHERE request_id = :request AND expires_at_ms >= :now;

-- ---------------------------------------------------------------- workers' facts

-- name: worker_info_put
-- Store a worker's facts, replacing its last ones.
INSERT INTO worker_info (worker_id, info, heartbeat_at_ms, expires_at_ms)
VALUES (:worker, :info, :heartbeat, :expires)
ON CONFLICT (worker_id) DO UPDATE SET
    info = excluded.info, heartbeat_at_ms = excluded.heartbeat_at_ms,
    expires_at_ms = excluded.expires_at_ms;

-- name: worker_info_prune
-- Remove the facts past their deadline (bounded; an unreadable deadline counts as past).
DELETE FROM worker_info WHERE worker_id IN (
    SELECT worker_id FROM worker_info
    WHERE NOT (typeof(expires_at_ms) = 'integer' AND expires_at_ms > :now)
    LIMIT 1000
);

-- name: worker_info_list
-- Every worker's facts, by worker id.
SELECT info FROM worker_info ORDER BY worker_id;

-- name: worker_info_forget
-- Drop a worker's facts (it stopped cleanly).
DELETE FROM worker_info WHERE worker_id = :worker;

-- ---------------------------------------------------------------- circuit breakers

-- name: breaker_get
-- A task's circuit (no row: closed, nothing counted).
SELECT status, failures, opened_at_ms, until_ms, opened, window_ms FROM breakers
WHERE task = :task;

-- name: breaker_all
-- Every task with a circuit, by name.
SELECT task FROM breakers ORDER BY task;

-- name: breaker_probe
-- The caller takes the probe: half-open until its permit lapses.
UPDATE breakers SET status = 'half_open', until_ms = :until_ms WHERE task = :task;

-- name: breaker_close
-- A probe succeeded: the circuit closes, its failures forgotten.
UPDATE breakers SET status = 'closed', failures = 0, until_ms = NULL WHERE task = :task;

-- name: breaker_open
-- The circuit opens (a threshold reached, or a probe failed) until :until_ms.
UPDATE breakers
SET status = 'open', failures = :failures, opened_at_ms = :now, until_ms = :until_ms,
    opened = opened + 1
WHERE task = :task;

-- name: breaker_failure
-- Count a failure of a closed circuit (creating its row); returns its seq.
INSERT INTO breakers (task, status, window_ms, seq) VALUES (:task, 'closed', :window_ms, 1)
ON CONFLICT (task) DO UPDATE SET window_ms = :window_ms, seq = seq + 1
RETURNING seq;

-- name: breaker_failure_add
-- Note one failure of a closed circuit, stamped now.
INSERT INTO breaker_failures (task, seq, at_ms) VALUES (:task, :seq, :now);

-- name: breaker_failures_trim
-- Drop the failures out of the window, and all but the newest :keep.
DELETE FROM breaker_failures
WHERE task = :task
  AND (at_ms <= :now - :window_ms
       OR seq NOT IN (SELECT seq FROM breaker_failures WHERE task = :task
                      ORDER BY seq DESC LIMIT :keep));

-- name: breaker_failures_count
-- Failures within the window ending now.
SELECT count(*) FROM breaker_failures WHERE task = :task AND at_ms > :now - :window_ms;

-- name: breaker_failures_clear
-- Forget a circuit's failures (it opened, closed or was reset).
DELETE FROM breaker_failures WHERE task = :task;

-- name: breaker_delete
-- Reset a circuit by hand: its row goes (closed, nothing counted).
DELETE FROM breakers WHERE task = :task;

-- name: queue_paused
-- Whether a queue is paused (runtime configuration): its claims hand nothing out.
SELECT EXISTS (SELECT 1 FROM config_entries
               WHERE scope = 'queue' AND name = :queue AND field = 'paused' AND value = 'true');

-- name: config_version
-- The runtime configuration's version.
SELECT value FROM meta WHERE key = 'config_version';

-- name: config_version_set
-- Move the runtime configuration's version.
INSERT INTO meta (key, value) VALUES ('config_version', :version)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: config_entry_get
-- One field of one configuration entry.
SELECT value FROM config_entries WHERE scope = :scope AND name = :name AND field = :field;

-- name: config_entry_put
-- Set one field of one configuration entry.
INSERT INTO config_entries (scope, name, field, value) VALUES (:scope, :name, :field, :value)
ON CONFLICT (scope, name, field) DO UPDATE SET value = excluded.value;

-- name: config_entry_delete
-- Remove one field of one configuration entry (the code's default applies again).
DELETE FROM config_entries WHERE scope = :scope AND name = :name AND field = :field;

-- name: config_entries_all
-- Every configuration entry's fields.
SELECT scope, name, field, value FROM config_entries;

-- name: config_history_add
-- Record one field's change.
INSERT INTO config_history (version, at_ms, who, scope, name, field, old, new)
VALUES (:version, :at_ms, :who, :scope, :name, :field, :old, :new);

-- name: config_history_trim
-- Keep the newest :keep changes.
DELETE FROM config_history WHERE seq <= (SELECT max(seq) FROM config_history) - :keep;

-- name: config_history_page
-- Changes before :before (a version), newest first, of an optional scope and name.
SELECT version, at_ms, who, scope, name, field, old, new FROM config_history
WHERE version < :before AND (:scope IS NULL OR scope = :scope)
  AND (:name IS NULL OR name = :name)
ORDER BY seq DESC
LIMIT :limit;

-- name: flow_adopt_ready
-- Move at most :limit ready jobs of :task from the plain ready set into the lanes its new
-- rules give it (jobs_enter_lane puts the lanes in their rotations).
UPDATE jobs
SET lane = :task || char(31) || CASE WHEN :keyed = 1 THEN coalesce(key, '') ELSE '' END
WHERE rowid IN (SELECT rowid FROM jobs
                WHERE queue = :queue AND status = 'queued' AND suspect = 0 AND lane = ''
                  AND task = :task
                LIMIT :limit);
