"""The Claims port's fenced outcomes of held jobs: complete, fail, release.

Fencing lives in the WHERE clauses of queries.sql: an outcome only matches a row that is
still running, held by this holder, under this fence; a stale or foreign outcome matches
nothing and reports False. Each outcome is one statement (the hot path stays one write per
job): a failure or release, which add to stored counters, also require those counters to
be readable, and are refused (False) otherwise; the holder's next ``list_held_jobs`` then
sends the damaged record to the dead letters.

A success, or a failure to the dead letters, of a job a workflow waits for is applied to
its workflows in the same transaction (ends.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from corq.backends.base import WORKFLOW_KEEP_MS, Completion, Failure, Release
from corq.backends.sqlite.dead import DeadBounds, trim
from corq.backends.sqlite.ends import End, apply_ends, end_of
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock
from corq.job import JobStatus
from corq.types import JobId, QueueName, WorkerId

_INT64_MAX = 2**63 - 1


def complete_jobs(
    conn: Conn, worker_id: WorkerId, completions: Sequence[Completion], result_ttl_ms: int
) -> list[bool]:
    """Record successes; each record expires `result_ttl_ms` after it was recorded, by the
    broker's time (the latest any call brought, as a Redis PEXPIRE counts from the write;
    never when the TTL is <= 0, like the Redis broker), or WORKFLOW_KEEP_MS after when that
    is later and a workflow waits for the job."""
    if not completions:
        return []
    now, latest = advance_clock(conn, max(c.finished_at_ms for c in completions))
    expires = min(latest + result_ttl_ms, _INT64_MAX) if result_ttl_ms > 0 else None
    kept = None if expires is None else max(expires, min(latest + WORKFLOW_KEEP_MS, _INT64_MAX))
    done = []
    ends: list[End] = []
    for c in completions:
        params = {
            **_fence(c.queue, c.job_id, worker_id, c.fence),
            "result": c.result,
            "finished_at_ms": c.finished_at_ms,
            "expires_at_ms": expires,
            "kept_expires_at_ms": kept,
        }
        row = conn.execute(Q["job_complete"], params).fetchone()
        done.append(row is not None)
        if row is not None:
            ends.append(end_of(c.job_id, c.queue, JobStatus.SUCCEEDED, row))
    apply_ends(conn, ends, now)
    return done


def fail_jobs(
    conn: Conn, worker_id: WorkerId, failures: Sequence[Failure], bounds: DeadBounds
) -> list[bool]:
    """Record failed attempts: to the delayed lane for a retry, or to the dead letters.

    A failure whose process died counts a death (the holder joins the death log) instead
    of a failure; an uncounted one (the body never ran) counts neither; a snoozed one is
    scheduled again as if it never started (attempt back by one).
    """
    if not failures:
        return []
    now, _ = advance_clock(conn, max(f.finished_at_ms for f in failures))
    done = []
    dead_in: list[QueueName] = []
    ends: list[End] = []
    for f in failures:
        params = {
            **_fence(f.queue, f.job_id, worker_id, f.fence),
            "failed": int(f.counted and not f.died),
            "died": int(f.died),
            "error": f.error,
            "traceback": f.traceback,
            "retry_at_ms": f.retry_at_ms,
            "finished_at_ms": f.finished_at_ms,
        }
        if f.snoozed and f.retry_at_ms is not None:
            failed = conn.execute(Q["job_snooze"], params).rowcount == 1
        elif f.retry_at_ms is None:
            row = conn.execute(Q["job_fail_dead"], params).fetchone()
            failed = row is not None
            if row is not None:
                dead_in.append(f.queue)
                ends.append(end_of(f.job_id, f.queue, JobStatus.DEAD, row))
        else:
            failed = conn.execute(Q["job_fail_retry"], params).rowcount == 1
        done.append(failed)
    apply_ends(conn, ends, now)
    trim(conn, dead_in, now, bounds)
    return done


def release_jobs(conn: Conn, worker_id: WorkerId, releases: Sequence[Release]) -> list[bool]:
    """Give held jobs back to the head of their lane: an unstarted attempt is uncounted, a
    death of the job's own process is counted, and a suspect stays (or becomes) one."""
    done = []
    for r in releases:
        params = {
            **_fence(r.queue, r.job_id, worker_id, r.fence),
            "unstarted": int(r.unstarted),
            "died": int(r.died),
            "suspect": int(r.suspect),
        }
        done.append(conn.execute(Q["job_release"], params).rowcount == 1)
    return done


def _fence(queue: QueueName, job_id: JobId, worker_id: WorkerId, fence: int) -> dict[str, Any]:
    return {"queue": queue, "id": job_id, "worker": worker_id, "fence": fence}
