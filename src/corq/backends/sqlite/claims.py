"""Worker-side transactions on jobs: promote, claim, and the fenced outcomes.

Fencing lives in the WHERE clauses of queries.sql: an outcome (or a progress report) only
matches a row that is still running, held by this worker, under this fence. A stale outcome
matches nothing and reports False.

Suspects (jobs whose worker died, see corq/backends/base.py) are queued rows with the
``suspect`` flag: ordinary claims skip them, an idle worker takes one at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from corq.backends.base import ClaimBatch, ClaimedJob, Completion, Failure, Release
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock, counter, take_numbers
from corq.types import JobId, QueueName, WorkerId


def promote(conn: Conn, queue: QueueName, now_ms: int) -> int | None:
    """Move due delayed jobs to the tail of the ready lane; the earliest run time left."""
    base = counter(conn, "seq")
    moved = conn.execute(Q["delayed_promote"], {"queue": queue, "now": now_ms, "base": base})
    if moved.rowcount > 0:
        take_numbers(conn, "seq", moved.rowcount)
    (next_due,) = conn.execute(Q["delayed_next"], {"queue": queue}).fetchone()
    return None if next_due is None else int(next_due)


def promote_due_jobs(conn: Conn, queue: QueueName, now_ms: int) -> int | None:
    """promote, plus the lazy expiry of old results (a call that runs periodically)."""
    now = advance_clock(conn, now_ms)
    conn.execute(Q["expired_delete"], {"now": now})
    return promote(conn, queue, now_ms)


def claim_jobs(
    conn: Conn,
    queue: QueueName,
    worker_id: WorkerId,
    count: int,
    lease_ms: int,
    now_ms: int,
    idle: bool = False,
) -> ClaimBatch:
    """Promote, then take up to `count` ready jobs, each under its next fence number; or,
    when the worker is `idle` and suspects wait, the first suspect alone (isolated).

    Claiming also renews the worker's lease in this queue (it is plainly alive); a worker
    whose registration is gone (reclaimed) gets ``lost`` and nothing.
    """
    advance_clock(conn, now_ms)
    lease = {"queue": queue, "worker": worker_id, "deadline": now_ms + lease_ms}
    if conn.execute(Q["worker_renew"], lease).rowcount == 0:
        return ClaimBatch(jobs=[], lost=True)
    next_due = promote(conn, queue, now_ms)
    suspects = _suspects(conn, queue)
    if count <= 0:
        return ClaimBatch(jobs=[], next_due_ms=next_due, suspects=suspects)
    params = {"queue": queue, "worker": worker_id, "now": now_ms, "count": count}
    if idle and suspects > 0:
        row = conn.execute(Q["suspect_claim"], params).fetchone()
        return ClaimBatch(
            jobs=[_claimed(row)], next_due_ms=next_due, suspects=suspects - 1, isolated=True
        )
    rows = conn.execute(Q["ready_claim"], params).fetchall()
    # RETURNING gives rows in no promised order: restore priority, then FIFO.
    rows.sort(key=lambda row: (-row[10], row[11]))
    return ClaimBatch(jobs=[_claimed(row) for row in rows], next_due_ms=next_due, suspects=suspects)


def _suspects(conn: Conn, queue: QueueName) -> int:
    (n,) = conn.execute(Q["suspects_count"], {"queue": queue}).fetchone()
    return int(n)


def _claimed(row: tuple[Any, ...]) -> ClaimedJob:
    (id_, task, queue, payload, attempt, failures, deaths, fence, enqueued_at_ms, run_at_ms,
     priority, _seq) = row  # fmt: skip
    return ClaimedJob(
        id=id_,
        task=task,
        queue=queue,
        payload=bytes(payload),
        attempt=attempt,
        failures=failures,
        deaths=deaths,
        fence=fence,
        enqueued_at_ms=enqueued_at_ms,
        run_at_ms=run_at_ms,
        priority=priority,
    )


def ready_probe(conn: Conn, queue: QueueName) -> tuple[bool, int, int | None]:
    """For wait_for_jobs: whether a job is ready, how many suspects wait, and the earliest
    delayed run time."""
    ready, suspects = conn.execute(Q["waiting_probe"], {"queue": queue}).fetchone()
    (next_due,) = conn.execute(Q["delayed_next"], {"queue": queue}).fetchone()
    return bool(ready), int(suspects), next_due


def set_progress(
    conn: Conn, job_id: JobId, queue: QueueName, worker_id: WorkerId, fence: int, progress: float
) -> bool:
    """Store the progress of a held job (fenced); False and no change otherwise."""
    params = {**_fence(queue, job_id, worker_id, fence), "progress": float(progress)}
    return conn.execute(Q["job_set_progress"], params).rowcount == 1


def complete_jobs(
    conn: Conn, worker_id: WorkerId, completions: Sequence[Completion], result_ttl_ms: int
) -> list[bool]:
    """Record successes; each record expires `result_ttl_ms` after it finished (never when
    that is <= 0, like the Redis broker)."""
    if not completions:
        return []
    now = advance_clock(conn, max(c.finished_at_ms for c in completions))
    conn.execute(Q["expired_delete"], {"now": now})
    done = []
    for c in completions:
        params = {
            **_fence(c.queue, c.job_id, worker_id, c.fence),
            "result": c.result,
            "finished_at_ms": c.finished_at_ms,
            "expires_at_ms": c.finished_at_ms + result_ttl_ms if result_ttl_ms > 0 else None,
        }
        done.append(conn.execute(Q["job_complete"], params).rowcount == 1)
    return done


def fail_jobs(conn: Conn, worker_id: WorkerId, failures: Sequence[Failure]) -> list[bool]:
    """Record failed attempts: to the delayed lane for a retry, or to the dead letters."""
    if failures:
        advance_clock(conn, max(f.finished_at_ms for f in failures))
    done = []
    for f in failures:
        params = {
            **_fence(f.queue, f.job_id, worker_id, f.fence),
            "counted": int(f.counted),
            "error": f.error,
            "traceback": f.traceback,
            "retry_at_ms": f.retry_at_ms,
            "finished_at_ms": f.finished_at_ms,
        }
        sql = Q["job_fail_dead"] if f.retry_at_ms is None else Q["job_fail_retry"]
        done.append(conn.execute(sql, params).rowcount == 1)
    return done


def release_jobs(conn: Conn, worker_id: WorkerId, releases: Sequence[Release]) -> list[bool]:
    """Give held jobs back to the head of the ready lane; an unstarted attempt is uncounted."""
    done = []
    for r in releases:
        params = {**_fence(r.queue, r.job_id, worker_id, r.fence), "unstarted": int(r.unstarted)}
        done.append(conn.execute(Q["job_release"], params).rowcount == 1)
    return done


def _fence(queue: QueueName, job_id: str, worker_id: WorkerId, fence: int) -> dict[str, Any]:
    return {"queue": queue, "id": job_id, "worker": worker_id, "fence": fence}
