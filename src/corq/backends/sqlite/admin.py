"""Operator transactions: queue listing, counts, and the dead letters."""

from __future__ import annotations

from collections.abc import Sequence

from corq.backends.base import QueueStats
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock, job_from_row, take_numbers
from corq.job import Job
from corq.types import JobId, QueueName


def list_queues(conn: Conn) -> list[QueueName]:
    return [name for (name,) in conn.execute(Q["queues_list"])]


def queue_stats(conn: Conn, queues: Sequence[QueueName] | None) -> list[QueueStats]:
    """Lane counts per queue, all read in one snapshot."""
    names = list_queues(conn) if queues is None else list(queues)
    stats = []
    for queue in names:
        ready, delayed, in_flight, dead, workers = conn.execute(
            Q["queue_counts"], {"queue": queue}
        ).fetchone()
        stats.append(
            QueueStats(
                queue=queue,
                ready=ready,
                delayed=delayed,
                in_flight=in_flight,
                dead=dead,
                workers=workers,
            )
        )
    return stats


def list_dead(conn: Conn, queue: QueueName, offset: int, limit: int) -> list[Job]:
    params = {"queue": queue, "offset": max(0, offset), "limit": max(0, limit)}
    return [job_from_row(row) for row in conn.execute(Q["dead_list"], params)]


def retry_dead(conn: Conn, queue: QueueName, job_ids: Sequence[JobId] | None, now_ms: int) -> int:
    """Queue dead jobs again at the tail with failures and deaths reset (a fresh budget)."""
    advance_clock(conn, now_ms)
    if job_ids is None:
        job_ids = [job_id for (job_id,) in conn.execute(Q["dead_ids"], {"queue": queue})]
    if not job_ids:
        return 0
    base = take_numbers(conn, "seq", len(job_ids))
    moved = 0
    for offset, job_id in enumerate(job_ids, start=1):
        params = {"queue": queue, "id": job_id, "seq": base + offset, "now": now_ms}
        moved += conn.execute(Q["dead_retry"], params).rowcount
    return moved


def purge_dead(conn: Conn, queue: QueueName, job_ids: Sequence[JobId] | None) -> int:
    if job_ids is None:
        return conn.execute(Q["dead_purge_all"], {"queue": queue}).rowcount
    return sum(
        conn.execute(Q["dead_purge"], {"queue": queue, "id": job_id}).rowcount for job_id in job_ids
    )
