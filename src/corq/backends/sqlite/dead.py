"""The dead letters' two ways in that every transaction shares: damaged records, and the
bounds (``dead_max``, ``dead_ttl_ms``) trimmed whenever jobs join them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from corq.backends.base import BATCH
from corq.backends.sqlite.ends import End, apply_ends
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn
from corq.job import JobStatus
from corq.types import QueueName

_INT64_MIN = -(2**63)


@dataclass(frozen=True, slots=True)
class DeadBounds:
    """How many dead letters a queue keeps, and for how long (each 0: unbounded)."""

    max_jobs: int = 0
    ttl_ms: int = 0


def bury(conn: Conn, rowid: int, error: str, now_ms: int) -> None:
    """Send a record that could not be read to the dead letters; only its status, error and
    times are written, so the write cannot fail on what it holds. A workflow waiting for
    the job takes the end in at once (its dependents end upstream_failed)."""
    row = conn.execute(Q["job_damaged"], {"rowid": rowid, "error": error, "now": now_ms})
    ended = row.fetchone()
    if ended is not None:
        queue, job_id, workflow, notify = ended
        end = End(job_id, queue, JobStatus.DEAD, error, workflow=workflow, notify=notify)
        apply_ends(conn, [end], now_ms)


def trim(conn: Conn, queues: Iterable[QueueName], now_ms: int, bounds: DeadBounds) -> None:
    """Drop at most BATCH dead letters per queue and bound: those older than the TTL, then
    the oldest beyond the cap (their records go with them)."""
    for queue in dict.fromkeys(queues):
        if bounds.ttl_ms > 0:
            before = max(now_ms - bounds.ttl_ms, _INT64_MIN)
            params = {"queue": queue, "before": before, "limit": BATCH}
            conn.execute(Q["dead_trim_old"], params)
        if bounds.max_jobs > 0:
            params = {"queue": queue, "keep": bounds.max_jobs, "limit": BATCH}
            conn.execute(Q["dead_trim_over"], params)
