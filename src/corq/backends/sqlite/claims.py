"""The Claims port's taking of jobs: promote, claim, progress, and what a holder holds.

Every row is checked before it is acted on (records.py): a damaged one goes to the dead
letters inside the same transaction and the claim goes on with the next, so one bad row
written by another program costs only itself, never every worker of the queue.

Suspects (jobs whose workers died, see corq/backends/base.py) are queued rows with the
``suspect`` flag: only a claim that asks for them (``suspects=n``) takes them, first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from corq.backends.base import BATCH, ClaimBatch, ClaimedJob, HeldJob, damaged_error
from corq.backends.sqlite import admit, flow
from corq.backends.sqlite.config import queue_paused
from corq.backends.sqlite.dead import DeadBounds, bury, trim
from corq.backends.sqlite.records import Checked, checked_rows, claimed_job_maker, damage
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import (
    Conn,
    advance_clock,
    machine_now_ms,
    read_clock,
    take_numbers,
)
from corq.types import JobId, QueueName, WorkerId


@dataclass(frozen=True, slots=True)
class Promoted:
    """What one promotion step did."""

    #: Jobs moved to the ready lane (or the suspects), sent to the dead letters, or ended
    #: expired past their start_by_ms.
    moved: int
    #: Earliest numeric run time left in the delayed lane (<= now: more are due).
    next_due_ms: int | None
    #: The step ended BATCH jobs expired: more may be past their start_by_ms.
    more_expired: bool = False


def promote(conn: Conn, queue: QueueName, now_ms: int, bounds: DeadBounds) -> Promoted:
    """Move at most BATCH due delayed jobs to the tail of the ready lane, in due order.

    The lane is walked in index order up to the first job not due yet, so the cost is the
    number of due jobs, however many wait. A damaged record met on the way (a run time that
    is not an integer sorts first or last) goes to the dead letters instead. Throttled
    lanes that are due go back to their rotations; the next due time counts them.
    """
    expired = flow.expire_due(conn, queue, now_ms)
    due, damaged, next_due, ended = _walk_due(conn, queue, now_ms)
    if next_due is not None:
        # The walk stopped before the text and blob run times, which sort last.
        params = {"queue": queue, "limit": BATCH}
        unreadable = checked_rows(conn.execute(Q["delayed_unreadable"], params).fetchall())
        damaged += [(row.rowid, damage(conn, row)) for row in unreadable]
    if due:
        base = take_numbers(conn, len(due))
        conn.execute(Q["delayed_promote"], {"rowids": _json_ints(due), "base": base})
    for rowid, error in damaged:
        bury(conn, rowid, error or damaged_error("run_at_ms"), now_ms)
    if damaged:
        trim(conn, [queue], now_ms, bounds)
    if next_due is None and not ended:
        next_due = _next_due(conn, queue)
    if flow.has_lanes(conn, queue):
        # Lanes whose rate lets them start again go back to their rotations now, so the
        # promoter's wake-up at a throttled lane's due time starts its next job on time.
        flow.wake_due(conn, queue, now_ms)
        next_due = _earliest(next_due, flow.next_throttled(conn, queue))
    admit.prune(conn, queue, now_ms)
    return Promoted(len(due) + len(damaged) + expired, next_due, expired >= BATCH)


def _walk_due(
    conn: Conn, queue: QueueName, now_ms: int
) -> tuple[list[int], list[tuple[int, str | None]], int | None, bool]:
    """(due rowids, damaged (rowid, error), first run time not due, whole lane walked)."""
    due: list[int] = []
    damaged: list[tuple[int, str | None]] = []
    cursor = conn.execute(Q["delayed_due"], {"queue": queue, "limit": BATCH})
    try:
        for row in map(Checked._make, cursor):
            if type(row.run_at_ms) is int and row.run_at_ms > now_ms:
                return due, damaged, row.run_at_ms, False
            error = damage(conn, row)
            if error is None:
                due.append(row.rowid)
            else:
                damaged.append((row.rowid, error))
    finally:
        cursor.close()
    return due, damaged, None, len(due) + len(damaged) < BATCH


def _next_due(conn: Conn, queue: QueueName) -> int | None:
    (value,) = conn.execute(Q["delayed_next"], {"queue": queue}).fetchone()
    return due_time(value)


def due_time(value: object) -> int | None:
    """A run time read back as a due time: a REAL (damaged) counts at its whole part."""
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value):
        return int(value)
    return None


def _json_ints(values: list[int]) -> str:
    """A JSON array of rowids for json_each (one statement for the whole batch)."""
    return "[" + ",".join(map(str, values)) + "]"


def promote_due_jobs(
    conn: Conn, queue: QueueName, now_ms: int | None, bounds: DeadBounds
) -> tuple[Promoted, int]:
    """One promotion step (one transaction); also returns the time it used."""
    now, _ = advance_clock(conn, now_ms)
    return promote(conn, queue, now, bounds), now


def expire_results(conn: Conn) -> int:
    """Delete at most BATCH records whose time to live ran out by the latest time any call
    brought (the lazy PEXPIRE; reads already treat them as gone); returns how many."""
    params = {"now": read_clock(conn), "limit": BATCH}
    return conn.execute(Q["expired_delete"], params).rowcount


# -- claiming --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """What a claim_jobs call asks for."""

    queue: QueueName
    worker_id: WorkerId
    count: int
    lease_ms: int
    now_ms: int | None
    suspects: int
    #: Asked to be listed idle when nothing is taken. SQLite keeps no list and hands
    #: nothing over: every commit wakes the local waiters (SqliteBackend.await_jobs returns
    #: [] and the holder claims), so the claim only reports the holder idle.
    idle: bool = False


def claim_jobs(conn: Conn, ask: ClaimRequest, bounds: DeadBounds) -> ClaimBatch:
    """Renew the holder's lease, promote one batch, then take up to `suspects` suspects
    and ready jobs up to `count` in all, each under its next fence number.

    A holder whose registration is gone (reclaimed, departed) gets ``lost`` and nothing.
    """
    now, _ = advance_clock(conn, ask.now_ms)
    lease = {"queue": ask.queue, "worker": ask.worker_id, "deadline": now + ask.lease_ms}
    if conn.execute(Q["worker_renew"], lease).rowcount == 0:
        return ClaimBatch(jobs=[], lost=True)
    next_due = promote(conn, ask.queue, now, bounds).next_due_ms
    _bury_strays(conn, ask.queue, now, bounds)
    jobs: list[ClaimedJob] = []
    if queue_paused(conn, ask.queue):  # runtime configuration: nothing is handed out
        return ClaimBatch(jobs=jobs, next_due_ms=next_due, suspects=0, idle=False)
    if ask.suspects > 0 and ask.count > 0:
        jobs += _take(conn, ask, min(ask.suspects, ask.count), now, bounds, suspect=True)
    if ask.count > len(jobs) and flow.has_lanes(conn, ask.queue):
        take = partial(_take_lane, conn, ask, now, bounds)
        jobs += flow.claim_laned(conn, ask.queue, ask.count - len(jobs), now, take)
        next_due = _earliest(next_due, flow.next_throttled(conn, ask.queue))
    elif ask.count > len(jobs):
        jobs += _take(conn, ask, ask.count - len(jobs), now, bounds, suspect=False)
    (waiting,) = conn.execute(Q["suspects_count"], {"queue": ask.queue}).fetchone()
    idle = ask.idle and not jobs
    return ClaimBatch(jobs=jobs, next_due_ms=next_due, suspects=waiting, idle=idle)


def _take_lane(
    conn: Conn, ask: ClaimRequest, now_ms: int, bounds: DeadBounds, lane: str, want: int,
    limited: bool,
) -> list[ClaimedJob]:  # fmt: skip
    """flow.Take: up to `want` ready jobs of one lane."""
    return _take(conn, ask, want, now_ms, bounds, suspect=False, lane=lane, limited=limited)


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _take(
    conn: Conn,
    ask: ClaimRequest,
    want: int,
    now_ms: int,
    bounds: DeadBounds,
    *,
    suspect: bool,
    lane: str = "",
    limited: bool = False,
) -> list[ClaimedJob]:
    """Take up to `want` jobs of one lane ('' the plain ready set) or of the suspects in
    claim order, `limited` when they hold concurrency slots; damaged rows go to the dead
    letters and the next ones are picked in their place."""
    taken: list[ClaimedJob] = []
    while len(taken) < want:
        asked = want - len(taken)
        pick = {"queue": ask.queue, "lane": lane, "count": asked, "now": now_ms}
        statement = Q["claim_pick_suspects" if suspect else "claim_pick"]
        rows = checked_rows(conn.execute(statement, pick))
        good: list[Checked] = []
        for row in rows:
            error = damage(conn, row)
            if error is None:
                good.append(row)
            else:
                bury(conn, row.rowid, error, now_ms)
        if good:
            take = {"rowids": _json_ints([row.rowid for row in good]), "worker": ask.worker_id,
                    "now": now_ms, "isolated": int(suspect), "limited": int(limited)}  # fmt: skip
            conn.execute(Q["claim_take"], take)
            taken += [_claimed(row) for row in good]
        if len(good) < len(rows):
            trim(conn, [ask.queue], now_ms, bounds)
        if len(rows) < asked:
            break  # the lane is empty
    return taken


def _bury_strays(conn: Conn, queue: QueueName, now_ms: int, bounds: DeadBounds) -> None:
    """Queued jobs in neither lane (a damaged suspect flag) would wait for ever: dead
    letters (a few index probes, nothing found in the common case)."""
    rows = conn.execute(Q["queued_stray"], {"queue": queue, "limit": BATCH}).fetchall()
    for (rowid,) in rows:
        bury(conn, rowid, damaged_error("suspect is neither 0 nor 1"), now_ms)
    if rows:
        trim(conn, [queue], now_ms, bounds)


_claimed_job = claimed_job_maker("attempt", "fence")


def _claimed(row: Checked) -> ClaimedJob:
    """The job as claim_take left it: this attempt and this claim counted."""
    return _claimed_job(row, attempt=row.attempt + 1, fence=row.fence + 1)


def ready_probe(conn: Conn, queue: QueueName) -> tuple[bool, int, int | None]:
    """For wait_for_jobs: whether a job is ready, how many suspects wait, and the earliest
    delayed run time."""
    ready, suspects, next_due = conn.execute(Q["waiting_probe"], {"queue": queue}).fetchone()
    return bool(ready), suspects, due_time(next_due)


# -- what a holder holds ---------------------------------------------------------------


def count_held_jobs(conn: Conn, queue: QueueName, worker_id: WorkerId) -> int:
    (n,) = conn.execute(Q["held_count"], {"queue": queue, "worker": worker_id}).fetchone()
    return int(n)


@dataclass(frozen=True, slots=True)
class HeldPage:
    """One bounded read of the jobs a holder holds."""

    held: list[HeldJob]
    #: Rows that failed their check, to send to the dead letters in a write transaction.
    damaged: list[int]
    #: Last rowid read when the page was full (read on after it), else None.
    last: int | None


def held_page(conn: Conn, queue: QueueName, worker_id: WorkerId, after: int) -> HeldPage:
    """At most BATCH held jobs after rowid `after` (a read: writers are not held up)."""
    params = {"queue": queue, "worker": worker_id, "after": after, "limit": BATCH}
    rows = checked_rows(conn.execute(Q["held_list"], params))
    held: list[HeldJob] = []
    damaged: list[int] = []
    for row in rows:
        if damage(conn, row) is None:
            held.append(HeldJob(job_id=row.id, fence=row.fence))
        else:
            damaged.append(row.rowid)
    return HeldPage(held, damaged, rows[-1].rowid if len(rows) == BATCH else None)


def bury_held(
    conn: Conn, queue: QueueName, worker_id: WorkerId, rowids: list[int], bounds: DeadBounds
) -> None:
    """Send damaged held rows to the dead letters, each checked again under the write lock
    (it may have been completed or repaired since it was read). They die at the latest
    time any call brought (this call brings none), so a fake clock's timeline holds."""
    now = read_clock(conn) or machine_now_ms()
    for rowid in rowids:
        params = {"queue": queue, "worker": worker_id, "rowid": rowid}
        row = conn.execute(Q["held_by_rowid"], params).fetchone()
        error = None if row is None else damage(conn, Checked._make(row))
        if error is not None:
            bury(conn, rowid, error, now)
    trim(conn, [queue], now, bounds)


def set_progress(
    conn: Conn, job_id: JobId, queue: QueueName, worker_id: WorkerId, fence: int, progress: float
) -> bool:
    """Store the progress of a held job (fenced); False and no change otherwise."""
    params = {"queue": queue, "id": job_id, "worker": worker_id, "fence": fence,
              "progress": float(progress)}  # fmt: skip
    return conn.execute(Q["job_set_progress"], params).rowcount == 1
