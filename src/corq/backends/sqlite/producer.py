"""Producer-side transactions: enqueue, read, cancel. Each function is one transaction body."""

from __future__ import annotations

from collections.abc import Sequence

from corq.backends.base import NewJob
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import (
    Conn,
    advance_clock,
    counter,
    job_from_row,
    take_numbers,
)
from corq.job import TERMINAL_STATES, Job, JobStatus
from corq.types import JobId, QueueName

#: How long a cancelled job's record is kept (as on Redis).
CANCELLED_TTL_MS = 7 * 24 * 3600 * 1000


def enqueue_jobs(conn: Conn, jobs: Sequence[NewJob]) -> list[bool]:
    """Insert each job in the ready or delayed lane; an existing (unexpired) id stays as is."""
    if not jobs:
        return []
    now = advance_clock(conn, max(job.enqueued_at_ms for job in jobs))
    # An expired record is gone for good: its id may be used again.
    conn.execute(Q["expired_delete"], {"now": now})
    for queue in dict.fromkeys(job.queue for job in jobs):
        conn.execute(Q["queue_add"], {"queue": queue})
    base = take_numbers(conn, "seq", len(jobs))
    created = []
    for offset, job in enumerate(jobs, start=1):
        delayed = job.run_at_ms > job.enqueued_at_ms
        cursor = conn.execute(
            Q["job_insert"],
            {
                "queue": job.queue,
                "id": job.id,
                "task": job.task,
                "status": JobStatus.SCHEDULED if delayed else JobStatus.QUEUED,
                "payload": job.payload,
                "priority": job.priority,
                "seq": base + offset,
                "enqueued_at_ms": job.enqueued_at_ms,
                "run_at_ms": job.run_at_ms,
            },
        )
        created.append(cursor.rowcount == 1)
    return created


def get_job(conn: Conn, job_id: JobId, queue: QueueName | None) -> Job | None:
    """The record, unless it expired by the latest time any call has brought."""
    params = {"id": job_id, "queue": queue, "clock": counter(conn, "clock_ms")}
    sql = Q["job_get_any_queue"] if queue is None else Q["job_get"]
    row = conn.execute(sql, params).fetchone()
    return None if row is None else job_from_row(row)


def job_outcome(conn: Conn, job_id: JobId, queue: QueueName) -> tuple[Job | None, bool]:
    """For wait_for_job: the record, and whether waiting is over."""
    job = get_job(conn, job_id, queue)
    return job, job is None or job.status in TERMINAL_STATES


def cancel_job(conn: Conn, job_id: JobId, queue: QueueName, now_ms: int) -> bool:
    """Cancel unless it is running or already finished."""
    advance_clock(conn, now_ms)
    expires_at_ms = now_ms + CANCELLED_TTL_MS
    params = {"queue": queue, "id": job_id, "now": now_ms, "expires_at_ms": expires_at_ms}
    cursor = conn.execute(Q["job_cancel"], params)
    return cursor.rowcount == 1
