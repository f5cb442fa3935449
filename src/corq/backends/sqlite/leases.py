"""Worker registrations, heartbeats and taking jobs back from workers that died."""

from __future__ import annotations

from corq.backends.base import Reclaimed, WorkerLease
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock
from corq.types import QueueName, WorkerId


def register_worker(conn: Conn, lease: WorkerLease, now_ms: int) -> None:
    """(Re-)add the worker to each queue with a lease ending `lease_ms` from now."""
    advance_clock(conn, now_ms)
    for queue in lease.queues:
        conn.execute(Q["queue_add"], {"queue": queue})
        params = {"queue": queue, "worker": lease.worker_id, "deadline": now_ms + lease.lease_ms}
        conn.execute(Q["worker_register"], params)


def deregister_worker(conn: Conn, lease: WorkerLease) -> None:
    for queue in lease.queues:
        conn.execute(Q["worker_delete"], {"queue": queue, "worker": lease.worker_id})


def heartbeat(conn: Conn, lease: WorkerLease, now_ms: int) -> list[QueueName]:
    """Renew every registration still there; report (and do not re-add) the missing ones."""
    advance_clock(conn, now_ms)
    lost = []
    for queue in lease.queues:
        params = {"queue": queue, "worker": lease.worker_id, "deadline": now_ms + lease.lease_ms}
        if conn.execute(Q["worker_renew"], params).rowcount == 0:
            lost.append(queue)
    return lost


def reclaim_stalled_jobs(
    conn: Conn, queue: QueueName, now_ms: int, max_deaths: int
) -> list[Reclaimed]:
    """Drop every worker whose lease passed and take its jobs back.

    Each job counts a death and remembers the worker. Then, keeping its seq (its old place):
    a job that ran alone (isolated) and has now killed `max_deaths` workers goes to the dead
    letters, a poison job: one that crashes whatever runs it must not take the whole fleet
    down. A job one death short of that (or more, when it did not run alone) becomes a
    suspect, to be run alone by an idle worker; any other goes back to the head of the
    ready lane. So a job that merely shared a worker with a poison job is never blamed.
    """
    advance_clock(conn, now_ms)
    expired = conn.execute(Q["workers_expired"], {"queue": queue, "now": now_ms}).fetchall()
    reclaimed: list[Reclaimed] = []
    for (worker_id,) in expired:
        conn.execute(Q["worker_delete"], {"queue": queue, "worker": worker_id})
        reclaimed += _take_back(conn, queue, worker_id, now_ms, max_deaths)
    return reclaimed


def _take_back(
    conn: Conn, queue: QueueName, worker_id: WorkerId, now_ms: int, max_deaths: int
) -> list[Reclaimed]:
    held = conn.execute(Q["held_by_worker"], {"queue": queue, "worker": worker_id}).fetchall()
    out = []
    for rowid, job_id, deaths, death_log, isolated in held:
        deaths += 1
        death_log = f"{death_log} {worker_id}".strip()
        params = {"rowid": rowid, "deaths": deaths, "death_log": death_log, "now": now_ms}
        dead = bool(isolated) and deaths >= max_deaths
        if dead:
            params["error"] = poison_error(deaths, death_log)
            conn.execute(Q["job_poison"], params)
        else:
            params["suspect"] = int(deaths >= max_deaths - 1)
            conn.execute(Q["job_requeue_dead_worker"], params)
        out.append(Reclaimed(job_id=job_id, queue=queue, worker_id=worker_id, dead=dead))
    return out


def poison_error(deaths: int, death_log: str) -> str:
    """The error a poison job is dead with (same text as the Redis broker)."""
    return f"poison job: its worker died {deaths} times while running it (workers: {death_log})"
