"""The JobStore port: write, read, cancel. Each public function but write_job and cancel
is one transaction body (the enqueue step itself is admit.py's)."""

from __future__ import annotations

from corq.backends.base import (
    CANCELLED_TTL_MS,
    MAX_JOB_ID_CHARS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    WORKFLOW_KEEP_MS,
    NewJob,
)
from corq.backends.sqlite.columns import NEW_COLUMNS
from corq.backends.sqlite.ends import End, apply_ends, end_of
from corq.backends.sqlite.records import job_from_row
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock, read_clock
from corq.errors import EnqueueError
from corq.job import TERMINAL_STATES, Job, JobStatus
from corq.types import JobId, QueueName

_INT64_MAX = 2**63 - 1


def check_new_job(job: NewJob) -> None:
    """Refuse, before anything is written, what no broker stores: an empty id, an id over
    MAX_JOB_ID_CHARS, a priority that is not an integer in PRIORITY_MIN..PRIORITY_MAX."""
    if not job.id:
        raise EnqueueError("job id is empty")
    if len(job.id) > MAX_JOB_ID_CHARS:
        raise EnqueueError(
            f"job id {job.id[:40]!r}... is {len(job.id)} characters long; "
            f"at most {MAX_JOB_ID_CHARS} are allowed"
        )
    if type(job.priority) is not int or not PRIORITY_MIN <= job.priority <= PRIORITY_MAX:
        raise EnqueueError(
            f"job {job.id}: priority {job.priority!r} is outside {PRIORITY_MIN}..{PRIORITY_MAX}"
        )


def write_job(conn: Conn, job: NewJob, seq: int, clock: int) -> bool:
    """Insert one job in the ready or delayed lane; False when its id exists (unless that
    record has expired by `clock`: then the id starts a new job, an expired record is
    gone)."""
    delayed = job.run_at_ms > job.enqueued_at_ms
    params = {name: getattr(job, name) for name in NEW_COLUMNS}  # {new_values}
    params["status"] = JobStatus.SCHEDULED if delayed else JobStatus.QUEUED
    params["seq"] = seq
    params["clock"] = clock
    created: bool = conn.execute(Q["job_insert"], params).rowcount == 1
    return created


def get_job(conn: Conn, job_id: JobId, queue: QueueName | None) -> Job | None:
    """The record, unless it expired by the latest time any call has brought."""
    params = {"id": job_id, "queue": queue, "clock": read_clock(conn)}
    sql = Q["job_get_any_queue"] if queue is None else Q["job_get"]
    row = conn.execute(sql, params).fetchone()
    return None if row is None else job_from_row(row)


def job_outcome(conn: Conn, job_id: JobId, queue: QueueName) -> tuple[Job | None, bool]:
    """For wait_for_job: the record, and whether waiting is over."""
    job = get_job(conn, job_id, queue)
    return job, job is None or job.status in TERMINAL_STATES


def cancel_job(conn: Conn, job_id: JobId, queue: QueueName, now_ms: int | None) -> bool:
    """Cancel unless it has finished (a waiting workflow job too; a running one is fenced
    off, its slots freed by the jobs_attempt_end trigger); the record is kept for a week
    (a workflow's job at least WORKFLOW_KEEP_MS). Its workflows take the end in at once:
    its dependents end upstream_failed."""
    now, _ = advance_clock(conn, now_ms)
    end = cancel(conn, job_id, queue, now) or cancel_running(conn, job_id, queue, now)
    if end is None:
        return False
    apply_ends(conn, [end], now)
    return True


def cancelled_expiry(conn: Conn, now_ms: int) -> int:
    """When a record cancelled now goes: CANCELLED_TTL_MS (and at least WORKFLOW_KEEP_MS,
    for a workflow's children) after the broker's time, the latest any call brought."""
    latest = max(now_ms, read_clock(conn))
    return min(latest + max(CANCELLED_TTL_MS, WORKFLOW_KEEP_MS), _INT64_MAX)


def cancel(conn: Conn, job_id: JobId, queue: QueueName, now_ms: int) -> End | None:
    """Cancel one job that has not started; its end (for apply_ends), or None when it was
    not cancellable. The record's time to live counts from the broker's time (the latest
    any call brought, which reads judge expiry by), as a result's does."""
    params = {
        "queue": queue,
        "id": job_id,
        "now": now_ms,
        "expires_at_ms": cancelled_expiry(conn, now_ms),
    }
    row = conn.execute(Q["job_cancel"], params).fetchone()
    return None if row is None else end_of(job_id, queue, JobStatus.CANCELLED, row)


def cancel_running(conn: Conn, job_id: JobId, queue: QueueName, now_ms: int) -> End | None:
    """Cancel one running job: its fence moves on (its holder's outcome is refused), the
    holder stays in ``worker_id``. Its end, or None when it was not running (or cannot be
    read)."""
    params = {
        "queue": queue,
        "id": job_id,
        "now": now_ms,
        "expires_at_ms": cancelled_expiry(conn, now_ms),
    }
    row = conn.execute(Q["job_cancel_running"], params).fetchone()
    return None if row is None else end_of(job_id, queue, JobStatus.CANCELLED, row)
