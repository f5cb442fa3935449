-- Every statement the SQLite broker runs. Each one sits under a `-- name: <name>` header
-- followed by a one-line purpose; corq.backends.sqlite.sql loads them by name.
-- Lanes (see schema.sql): ready = 'queued' AND suspect = 0, suspects = 'queued' AND
-- suspect = 1, delayed = 'scheduled' | 'failed', held = 'running', dead letters = 'dead'.
-- A suspect keeps its flag through every lane (delayed, held, released), so wherever it
-- goes back to the waiting jobs it lands among the suspects.

-- ---------------------------------------------------------------- migrations

-- Steps from schema version 1 to 2, run (in this order) before schema.sql, in the same
-- transaction, on a file whose user_version is 1. schema.sql then creates jobs_ready again
-- with its version 2 definition.

-- name: migrate_2_suspect
-- A suspect waits apart from the ready jobs, for an idle worker.
ALTER TABLE jobs ADD COLUMN suspect INTEGER NOT NULL DEFAULT 0;

-- name: migrate_2_isolated
-- Whether the current (or last) claim ran the job alone.
ALTER TABLE jobs ADD COLUMN isolated INTEGER NOT NULL DEFAULT 0;

-- name: migrate_2_progress
-- Last progress the task reported.
ALTER TABLE jobs ADD COLUMN progress REAL;

-- name: migrate_2_ready_index
-- The version 1 ready index does not know the suspect column.
DROP INDEX IF EXISTS jobs_ready;

-- ---------------------------------------------------------------- bookkeeping

-- name: counter_take
-- Reserve :n numbers from a meta counter; returns the last one reserved.
UPDATE meta SET value = value + :n WHERE key = :key RETURNING value;

-- name: counter_get
-- The current value of a meta counter.
SELECT value FROM meta WHERE key = :key;

-- name: clock_advance
-- Remember the latest time any call brought, for calls that carry no clock.
UPDATE meta SET value = :now WHERE key = 'clock_ms' AND value < :now;

-- name: expired_delete
-- Drop succeeded and cancelled records whose time to live has run out (the lazy PEXPIRE).
DELETE FROM jobs WHERE expires_at_ms <= :now;

-- name: queue_add
-- Remember a queue name for list_queues.
INSERT OR IGNORE INTO queues (name) VALUES (:queue);

-- name: queues_list
-- Every queue ever enqueued to or served, by name.
SELECT name FROM queues ORDER BY name;

-- ---------------------------------------------------------------- producer side

-- name: job_insert
-- Store a new job in the ready or delayed lane; ignored when the id exists in the queue.
INSERT OR IGNORE INTO jobs (
    queue, id, task, status, payload, priority, seq, enqueued_at_ms, run_at_ms
) VALUES (
    :queue, :id, :task, :status, :payload, :priority, :seq, :enqueued_at_ms, :run_at_ms
);

-- name: job_get
-- One job record of a queue, unless it has expired.
SELECT id, task, queue, status, payload, priority, attempt, failures, deaths, enqueued_at_ms,
       run_at_ms, started_at_ms, finished_at_ms, worker_id, result, error, traceback,
       progress, death_log
FROM jobs
WHERE queue = :queue AND id = :id AND (expires_at_ms IS NULL OR expires_at_ms > :clock);

-- name: job_get_any_queue
-- One job record by id in whichever queue holds it (first queue by name), unless expired.
SELECT id, task, queue, status, payload, priority, attempt, failures, deaths, enqueued_at_ms,
       run_at_ms, started_at_ms, finished_at_ms, worker_id, result, error, traceback,
       progress, death_log
FROM jobs
WHERE id = :id AND (expires_at_ms IS NULL OR expires_at_ms > :clock)
ORDER BY queue LIMIT 1;

-- name: job_cancel
-- Cancel a job that is not running or finished (scheduled, waiting, queued (suspects too),
-- awaiting retry).
UPDATE jobs SET status = 'cancelled', finished_at_ms = :now, expires_at_ms = :expires_at_ms
WHERE queue = :queue AND id = :id AND status IN ('scheduled', 'waiting', 'queued', 'failed');

-- ---------------------------------------------------------------- worker leases

-- name: worker_register
-- Add the worker to a queue with a fresh lease, or renew it.
INSERT INTO workers (queue, worker_id, lease_deadline_ms) VALUES (:queue, :worker, :deadline)
ON CONFLICT (queue, worker_id) DO UPDATE SET lease_deadline_ms = excluded.lease_deadline_ms;

-- name: worker_renew
-- Renew the lease of a worker still registered in a queue (never re-adds it).
UPDATE workers SET lease_deadline_ms = :deadline
WHERE queue = :queue AND worker_id = :worker;

-- name: worker_delete
-- Remove a worker from a queue.
DELETE FROM workers WHERE queue = :queue AND worker_id = :worker;

-- name: workers_expired
-- Workers of a queue whose lease has passed, longest dead first.
SELECT worker_id FROM workers
WHERE queue = :queue AND lease_deadline_ms < :now
ORDER BY lease_deadline_ms, worker_id;

-- ---------------------------------------------------------------- claiming

-- name: delayed_promote
-- Move the due delayed jobs to the tail of the ready lane, in due order (ties by id, as the
-- Redis delayed ZSET orders them), numbered after :base; a suspect (retried after a
-- failure) lands at the tail of the suspects, since it keeps its flag.
UPDATE jobs SET status = 'queued', seq = :base + due.rn
FROM (
    SELECT rowid AS rid, row_number() OVER (ORDER BY run_at_ms, id) AS rn
    FROM jobs
    WHERE queue = :queue AND status IN ('scheduled', 'failed') AND run_at_ms <= :now
) AS due
WHERE jobs.rowid = due.rid;

-- name: delayed_next
-- Earliest run time left in the delayed lane, or NULL.
SELECT min(run_at_ms) FROM jobs WHERE queue = :queue AND status IN ('scheduled', 'failed');

-- name: waiting_probe
-- Whether the ready lane of a queue has a job, and how many suspects wait (the
-- wait_for_jobs probe).
SELECT EXISTS (SELECT 1 FROM jobs WHERE queue = :queue AND status = 'queued' AND suspect = 0),
       (SELECT count(*) FROM jobs WHERE queue = :queue AND status = 'queued' AND suspect = 1);

-- name: suspects_count
-- How many suspects wait in a queue.
SELECT count(*) FROM jobs WHERE queue = :queue AND status = 'queued' AND suspect = 1;

-- name: ready_claim
-- Take the first :count ready jobs (priority, then FIFO; never a suspect) as held by the
-- worker, each under its next fence number, as an ordinary (not isolated) claim.
UPDATE jobs
SET status = 'running', worker_id = :worker, fence = fence + 1, attempt = attempt + 1,
    started_at_ms = :now, isolated = 0
WHERE rowid IN (
    SELECT rowid FROM jobs
    WHERE queue = :queue AND status = 'queued' AND suspect = 0
    ORDER BY priority DESC, seq
    LIMIT :count
)
RETURNING id, task, queue, payload, attempt, failures, deaths, fence, enqueued_at_ms,
          run_at_ms, priority, seq;

-- name: suspect_claim
-- Take the first suspect (priority, then FIFO) as held by an idle worker, under its next
-- fence number, as an isolated claim: the worker runs it alone.
UPDATE jobs
SET status = 'running', worker_id = :worker, fence = fence + 1, attempt = attempt + 1,
    started_at_ms = :now, isolated = 1
WHERE rowid IN (
    SELECT rowid FROM jobs
    WHERE queue = :queue AND status = 'queued' AND suspect = 1
    ORDER BY priority DESC, seq
    LIMIT 1
)
RETURNING id, task, queue, payload, attempt, failures, deaths, fence, enqueued_at_ms,
          run_at_ms, priority, seq;

-- ---------------------------------------------------------------- outcomes (fenced)

-- name: job_complete
-- Record a success of the attempt the worker holds under this fence; the record expires
-- at :expires_at_ms (NULL: never).
UPDATE jobs
SET status = 'succeeded', result = :result, finished_at_ms = :finished_at_ms,
    expires_at_ms = :expires_at_ms
WHERE queue = :queue AND id = :id AND status = 'running' AND worker_id = :worker
  AND fence = :fence;

-- name: job_fail_retry
-- Record a failed attempt and park the job in the delayed lane until its retry time.
UPDATE jobs
SET status = 'failed', run_at_ms = :retry_at_ms, failures = failures + :counted,
    error = nullif(:error, ''), traceback = nullif(:traceback, '')
WHERE queue = :queue AND id = :id AND status = 'running' AND worker_id = :worker
  AND fence = :fence;

-- name: job_fail_dead
-- Record a failed attempt with no retry left: the job goes to the dead letters.
UPDATE jobs
SET status = 'dead', finished_at_ms = :finished_at_ms, failures = failures + :counted,
    error = nullif(:error, ''), traceback = nullif(:traceback, '')
WHERE queue = :queue AND id = :id AND status = 'running' AND worker_id = :worker
  AND fence = :fence;

-- name: job_release
-- Give a held job back to the head of the ready lane (its seq is kept), held by nobody; a
-- suspect goes back to the head of the suspects (it keeps its flag).
UPDATE jobs
SET status = 'queued', worker_id = NULL, attempt = attempt - :unstarted
WHERE queue = :queue AND id = :id AND status = 'running' AND worker_id = :worker
  AND fence = :fence;

-- name: job_set_progress
-- Record the progress of the attempt the worker holds under this fence.
UPDATE jobs SET progress = :progress
WHERE queue = :queue AND id = :id AND status = 'running' AND worker_id = :worker
  AND fence = :fence;

-- ---------------------------------------------------------------- reclaim

-- name: held_by_worker
-- The jobs a worker holds in a queue, in claim order.
SELECT rowid, id, deaths, death_log, isolated FROM jobs
WHERE queue = :queue AND status = 'running' AND worker_id = :worker
ORDER BY priority DESC, seq;

-- name: job_requeue_dead_worker
-- Put a dead worker's job back at its old place (seq kept), counting the death: at the head
-- of the ready lane (:suspect = 0) or of the suspects (:suspect = 1).
UPDATE jobs
SET status = 'queued', worker_id = NULL, deaths = :deaths, death_log = :death_log,
    suspect = :suspect
WHERE rowid = :rowid;

-- name: job_poison
-- Send a job that killed too many workers to the dead letters.
UPDATE jobs
SET status = 'dead', deaths = :deaths, death_log = :death_log, error = :error,
    traceback = NULL, finished_at_ms = :now
WHERE rowid = :rowid;

-- ---------------------------------------------------------------- operators

-- name: queue_counts
-- Lane sizes and live workers of one queue (each count walks one partial index); the
-- first counts the ready jobs and the suspects together.
SELECT
    (SELECT count(*) FROM jobs WHERE queue = :queue AND status = 'queued'),
    (SELECT count(*) FROM jobs WHERE queue = :queue AND status IN ('scheduled', 'failed')),
    (SELECT count(*) FROM jobs WHERE queue = :queue AND status = 'running'),
    (SELECT count(*) FROM jobs WHERE queue = :queue AND status = 'dead'),
    (SELECT count(*) FROM workers WHERE queue = :queue);

-- name: dead_list
-- A page of dead letters, newest first.
SELECT id, task, queue, status, payload, priority, attempt, failures, deaths, enqueued_at_ms,
       run_at_ms, started_at_ms, finished_at_ms, worker_id, result, error, traceback,
       progress, death_log
FROM jobs
WHERE queue = :queue AND status = 'dead'
ORDER BY finished_at_ms DESC, id DESC
LIMIT :limit OFFSET :offset;

-- name: dead_ids
-- Every dead letter of a queue, oldest first (the order a retry re-queues them in).
SELECT id FROM jobs WHERE queue = :queue AND status = 'dead' ORDER BY finished_at_ms, id;

-- name: dead_retry
-- Queue a dead job again at the tail of the ready lane with a fresh retry budget: no
-- failures, no deaths, no longer a suspect (its last error is kept).
UPDATE jobs
SET status = 'queued', seq = :seq, run_at_ms = :now, failures = 0, deaths = 0,
    death_log = '', suspect = 0, isolated = 0, finished_at_ms = NULL, worker_id = NULL
WHERE queue = :queue AND id = :id AND status = 'dead';

-- name: dead_purge
-- Delete one dead letter.
DELETE FROM jobs WHERE queue = :queue AND id = :id AND status = 'dead';

-- name: dead_purge_all
-- Delete every dead letter of a queue.
DELETE FROM jobs WHERE queue = :queue AND status = 'dead';
