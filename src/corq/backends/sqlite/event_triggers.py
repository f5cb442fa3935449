"""The triggers that write the events log on SQLite (see events.py and docs/design.md,
"Events and attempt history"): TEMP triggers on ``jobs`` each connection creates with its
backend's ``events_max``, so the bound is the backend's setting and 0 costs nothing.
"""

from __future__ import annotations

import sqlite3

#: Most rows one trimming step deletes.
TRIM_BATCH = 1000
#: Longest detail an event keeps (the first line of an error, say).
DETAIL_CHARS = 200

# The first line of NEW.error, DETAIL_CHARS at most.
_ERROR_LINE = (
    "substr(NEW.error, 1, CASE WHEN instr(NEW.error, char(10)) > 0 "
    f"THEN min(instr(NEW.error, char(10)) - 1, {DETAIL_CHARS}) ELSE {DETAIL_CHARS} END)"
)
# When a move happened: the row's own time for a start or an end, else (a retry, a release)
# the latest time a call brought.
_AT = """CASE
    WHEN NEW.status = 'running' AND NEW.started_at_ms IS NOT NULL THEN NEW.started_at_ms
    WHEN NEW.finished_at_ms IS NOT OLD.finished_at_ms AND NEW.finished_at_ms IS NOT NULL
        THEN NEW.finished_at_ms
    ELSE coalesce((SELECT value FROM main.meta WHERE key = 'clock_ms'), NEW.enqueued_at_ms)
    END"""
_PROGRESS_AT = "coalesce((SELECT value FROM main.meta WHERE key = 'clock_ms'), 0)"
# The kind of a status move (NULL: a move that is no event, such as scheduled -> queued).
_KIND = """CASE
    WHEN NEW.status = 'running' THEN 'started'
    WHEN NEW.status IN ('succeeded', 'failed', 'dead', 'cancelled', 'expired', 'upstream_failed')
        THEN NEW.status
    WHEN NEW.status = 'scheduled' AND OLD.status = 'running' THEN 'snoozed'
    WHEN NEW.status = 'queued' AND OLD.status = 'running' THEN 'released'
    WHEN NEW.status = 'queued' AND OLD.status IN ('failed', 'dead') THEN 'retried'
    END"""

_TRIGGERS = (
    """CREATE TEMP TRIGGER IF NOT EXISTS corq_event_new AFTER INSERT ON main.jobs
BEGIN
    INSERT INTO events (queue, at_ms, kind, job_id, task, attempt)
    VALUES (NEW.queue, NEW.enqueued_at_ms, 'enqueued', NEW.id, NEW.task, NEW.attempt);
END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS corq_event_move AFTER UPDATE OF status ON main.jobs
WHEN NEW.status IS NOT OLD.status AND ({_KIND}) IS NOT NULL
BEGIN
    INSERT INTO events (queue, at_ms, kind, job_id, task, attempt, worker_id, detail)
    VALUES (NEW.queue, {_AT}, {_KIND}, NEW.id, NEW.task, NEW.attempt,
            CASE WHEN 'running' IN (NEW.status, OLD.status)
                 THEN coalesce(NEW.worker_id, OLD.worker_id) END,
            CASE WHEN NEW.status NOT IN ('running', 'succeeded', 'queued') THEN {_ERROR_LINE} END);
END""",
    f"""CREATE TEMP TRIGGER IF NOT EXISTS corq_event_progress AFTER UPDATE OF progress ON main.jobs
WHEN NEW.progress IS NOT NULL AND NEW.progress IS NOT OLD.progress AND NEW.status = 'running'
BEGIN
    INSERT INTO events (queue, at_ms, kind, job_id, task, attempt, worker_id, detail)
    VALUES (NEW.queue, {_PROGRESS_AT}, 'progress', NEW.id, NEW.task, NEW.attempt, NEW.worker_id,
            CAST(NEW.progress AS TEXT));
END""",
)

# Every `every`-th event (by id) counts its queue's events written since the last count (an
# index range of the new ones only: no write per event), then deletes the oldest beyond
# `keep` (`batch` at most, an index range from the oldest).
_TRIM = """CREATE TEMP TRIGGER IF NOT EXISTS corq_event_trim AFTER INSERT ON main.events
WHEN NEW.id % {every} = 0
BEGIN
    INSERT INTO events_queues (queue) VALUES (NEW.queue) ON CONFLICT (queue) DO NOTHING;
    UPDATE events_queues
    SET kept = kept + (SELECT count(*) FROM main.events
                       WHERE queue = NEW.queue AND id > events_queues.counted_to),
        counted_to = NEW.id
    WHERE queue = NEW.queue;
    UPDATE events_queues
    SET upto = coalesce((
        SELECT max(id) FROM (
            SELECT id FROM main.events WHERE queue = NEW.queue ORDER BY id
            LIMIT (SELECT min({batch}, max(0, kept - {keep})) FROM main.events_queues
                   WHERE queue = NEW.queue))), upto)
    WHERE queue = NEW.queue AND kept > {keep};
    DELETE FROM events WHERE queue = NEW.queue
      AND id <= (SELECT upto FROM main.events_queues WHERE queue = NEW.queue);
    UPDATE events_queues SET kept = kept - changes() WHERE queue = NEW.queue;
END"""


def install_triggers(conn: sqlite3.Connection, events_max: int) -> None:
    """Create this connection's event triggers (none when `events_max` is 0): trimming
    every `every` events keeps each queue near `events_max` (never more than a step over)."""
    if events_max <= 0:
        return
    every = max(1, min(64, events_max // 10))
    trim = _TRIM.format(every=every, keep=events_max, batch=TRIM_BATCH)
    for statement in (*_TRIGGERS, trim):
        conn.execute(statement)
