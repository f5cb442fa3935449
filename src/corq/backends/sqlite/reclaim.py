"""Taking jobs back from holders whose lease passed (the Claims port's reclaim).

A reclaim works in bounded steps (one transaction each, at most BATCH jobs): the first
step takes every stalled holder out of ``workers`` into ``reclaiming``, so its heartbeat
and its claims report the queue lost at once, however many steps its jobs take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from corq.backends.base import BATCH, Reclaimed, backstop_deaths, damaged_error
from corq.backends.sqlite.columns import CHECKED_COLUMNS
from corq.backends.sqlite.dead import DeadBounds, bury, trim
from corq.backends.sqlite.ends import End, apply_ends
from corq.backends.sqlite.records import damage, row_class
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock
from corq.job import JobStatus
from corq.types import QueueName


@dataclass(frozen=True, slots=True)
class ReclaimStep:
    """What one reclaim transaction did."""

    reclaimed: list[Reclaimed]
    #: Whether holders of the queue still wait to be reclaimed (run another step).
    more: bool
    #: The time the first step used (later steps use it too).
    now_ms: int


def reclaim_step(
    conn: Conn,
    queue: QueueName,
    now_ms: int | None,
    max_deaths: int,
    bounds: DeadBounds,
    *,
    first: bool,
    ended_only: bool = False,
) -> ReclaimStep:
    """One bounded step of reclaim_stalled_jobs.

    The first step moves the stalled holders (with `ended_only`, only ended or departed
    ones) into ``reclaiming``, with any holder of running jobs that is not registered at
    all, and sends running jobs held by no text holder to the dead letters; every step then
    takes back at most BATCH jobs of the holders being reclaimed, and forgets the holders
    that hold nothing any more.
    """
    now, _ = advance_clock(conn, now_ms)
    buried = 0
    if first:
        _unregister_stalled(conn, queue, now, ended_only=ended_only)
        _adopt_orphans(conn, queue)
        buried = _bury_unheld(conn, queue, now)
    found = conn.execute(Q["reclaiming_held"], {"queue": queue, "limit": BATCH}).fetchall()
    held = list(map(HeldRow._make, found))
    writes: dict[str, list[dict[str, Any]]] = {}
    reclaimed = [_take_back(conn, queue, row, now, max_deaths, writes) for row in held]
    for statement, rows in writes.items():
        conn.executemany(Q[statement], rows)  # one statement per kind of move
    apply_ends(conn, _dead_ends(queue, held, writes), now)
    if buried or any(r.dead for r in reclaimed):
        trim(conn, [queue], now, bounds)
    conn.execute(Q["reclaiming_done"], {"queue": queue})
    (more,) = conn.execute(Q["reclaiming_left"], {"queue": queue}).fetchone()
    return ReclaimStep(reclaimed, bool(more), now)


def _unregister_stalled(conn: Conn, queue: QueueName, now_ms: int, *, ended_only: bool) -> None:
    """Move the stalled holders from workers to reclaiming, keeping whether they departed."""
    sql = Q["workers_ended" if ended_only else "workers_stalled"]
    stalled = conn.execute(sql, {"queue": queue, "now": now_ms}).fetchall()
    for worker_id, departed in stalled:
        params = {"queue": queue, "worker": worker_id, "departed": int(departed == 1)}
        conn.execute(Q["reclaiming_add"], params)


def _adopt_orphans(conn: Conn, queue: QueueName) -> None:
    """Holders of running jobs that nobody registered (a bug of an older corq, or another
    program) are taken back too, as departed: their jobs come back without a death, since
    nothing says the job's worker died."""
    orphans = conn.execute(Q["holders_orphaned"], {"queue": queue, "limit": BATCH}).fetchall()
    for (worker_id,) in orphans:
        conn.execute(Q["reclaiming_add"], {"queue": queue, "worker": worker_id, "departed": 1})


def _bury_unheld(conn: Conn, queue: QueueName, now_ms: int) -> int:
    """Running jobs whose holder is not text (written by another program) could never be
    given back by anyone: dead letters. Returns how many."""
    rows = conn.execute(Q["held_by_nobody"], {"queue": queue, "limit": BATCH}).fetchall()
    for (rowid,) in rows:
        bury(conn, rowid, damaged_error("running with no holder"), now_ms)
    return len(rows)


def _dead_ends(
    queue: QueueName, held: list[HeldRow], writes: dict[str, list[dict[str, Any]]]
) -> list[End]:
    """The ends of the jobs this step sent to the dead letters, for their workflows."""
    rows = {row.rowid: row for row in held}
    return [
        End(
            rows[w["rowid"]].id,
            queue,
            JobStatus.DEAD,
            w["error"],
            workflow=rows[w["rowid"]].workflow,
            notify=rows[w["rowid"]].notify,
        )
        for statement in ("job_damaged", "job_poison")
        for w in writes.get(statement, ())
    ]


class HeldRow(row_class("HeldRow", (*CHECKED_COLUMNS, "holder", "departed"))):  # type: ignore[misc]
    """A job of a holder being reclaimed (reclaiming_held): its checked columns, its holder
    and whether the holder had departed."""

    __slots__ = ()


def _take_back(
    conn: Conn,
    queue: QueueName,
    row: HeldRow,
    now_ms: int,
    max_deaths: int,
    writes: dict[str, list[dict[str, Any]]],
) -> Reclaimed:
    """Decide what happens to one job of a holder being reclaimed (the write goes into
    `writes`): given back like a release if the holder had departed, else a death (see
    corq/backends/base.py), or the dead letters if the record is damaged."""
    worker_id, job_id = str(row.holder), str(row.id)
    error = damage(conn, row)
    if error is not None:
        writes.setdefault("job_damaged", []).append(
            {"rowid": row.rowid, "error": error, "now": now_ms}
        )
        return Reclaimed(job_id=job_id, queue=queue, worker_id=worker_id, dead=True)
    if row.departed:
        writes.setdefault("job_requeue_departed", []).append({"rowid": row.rowid})
        return Reclaimed(job_id=job_id, queue=queue, worker_id=worker_id, dead=False, released=True)
    deaths = row.deaths + 1
    death_log = f"{row.death_log} {worker_id}".strip()
    params = {"rowid": row.rowid, "deaths": deaths, "death_log": death_log, "now": now_ms}
    dead = deaths >= backstop_deaths(max_deaths)
    if dead:
        params["error"] = poison_error(deaths, death_log)
    else:
        params["suspect"] = int(deaths >= max_deaths - 1)
    writes.setdefault("job_poison" if dead else "job_requeue_dead_worker", []).append(params)
    return Reclaimed(job_id=job_id, queue=queue, worker_id=worker_id, dead=dead)


def poison_error(deaths: int, death_log: str) -> str:
    """The error a job is dead with once its workers died too often (same text as the
    Redis broker)."""
    return f"poison job: its worker died {deaths} times while running it (workers: {death_log})"
