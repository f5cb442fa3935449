"""The Admin port: the queue registry, counts, and the dead letters."""

from __future__ import annotations

from collections.abc import Sequence

from corq.backends.base import BATCH, PRIORITY_MAX, PRIORITY_MIN, QueueStats
from corq.backends.sqlite.records import job_from_row
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock, take_numbers
from corq.errors import ArgumentError
from corq.job import Job
from corq.names import check_queue_name
from corq.types import JobId, QueueName

_INT64_MIN = -(2**63)


def list_queues(conn: Conn) -> list[QueueName]:
    """Every known queue name that is a valid one (text written by another program may
    not even be UTF-8; it decodes with replacement and fails the check)."""
    return [name for (name,) in conn.execute(Q["queues_list"]) if _valid(name)]


def _valid(name: object) -> bool:
    try:
        check_queue_name(name)
    except ArgumentError:
        return False
    return True


def prune_queues(conn: Conn, now_ms: int | None, idle_ms: int) -> list[QueueName]:
    """Forget at most BATCH names not used for `idle_ms` whose queue holds nothing in any
    lane and has no holder (registered, departed or being reclaimed); returns the valid
    names removed (invalid ones are removed too, silently, as list_queues never shows them).

    Succeeded and cancelled records do not keep a name: they expire on their own, and
    get_job without a queue finds them by id.
    """
    now, _ = advance_clock(conn, now_ms)
    before = max(now - max(0, idle_ms), _INT64_MIN)
    removed: list[QueueName] = []
    for (raw,) in conn.execute(Q["queues_idle"], {"before": before, "limit": BATCH}).fetchall():
        (busy,) = conn.execute(Q["queue_holds_anything"], {"raw": raw}).fetchone()
        if busy:
            continue
        conn.execute(Q["queue_forget"], {"raw": raw})
        name = bytes(raw).decode("utf-8", "replace")
        if _valid(name):
            removed.append(name)
    return sorted(removed)


def queue_stats(conn: Conn, queues: Sequence[QueueName] | None) -> list[QueueStats]:
    """Lane counts per queue, all read in one snapshot."""
    names = list_queues(conn) if queues is None else list(queues)
    stats = []
    for queue in names:
        ready, delayed, in_flight, dead, workers, paused = conn.execute(
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
                paused=bool(paused),
            )
        )
    return stats


def list_dead(conn: Conn, queue: QueueName, offset: int, limit: int) -> list[Job]:
    """A page of dead letters, newest first; damaged records read with their defaults."""
    params = {"queue": queue, "offset": max(0, offset), "limit": max(0, limit)}
    return [job_from_row(row) for row in conn.execute(Q["dead_list"], params)]


def retry_dead(
    conn: Conn, queue: QueueName, job_ids: Sequence[JobId] | None, now_ms: int | None
) -> int:
    """Queue dead jobs again at the tail with a fresh budget (failures and deaths reset,
    what cannot be read reset too); returns how many moved.

    With `job_ids` None, every job dead when this transaction began (it reads them all at
    its start, and nothing else writes meanwhile), each once, by rowid, so even an id that
    is not valid UTF-8 is retried.
    """
    now, _ = advance_clock(conn, now_ms)
    if job_ids is None:
        rowids = [rowid for (rowid,) in conn.execute(Q["dead_rowids"], {"queue": queue})]
    else:
        rowids = []
        for job_id in dict.fromkeys(job_ids):
            row = conn.execute(Q["dead_rowid"], {"queue": queue, "id": job_id}).fetchone()
            if row is not None:
                rowids.append(row[0])
    if not rowids:
        return 0
    base = take_numbers(conn, len(rowids))
    moved = 0
    for offset, rowid in enumerate(rowids, start=1):
        params = {"rowid": rowid, "seq": base + offset, "now": now,
                  "priority_min": PRIORITY_MIN, "priority_max": PRIORITY_MAX}  # fmt: skip
        moved += conn.execute(Q["dead_retry"], params).rowcount
    return moved


def purge_dead(conn: Conn, queue: QueueName, job_ids: Sequence[JobId] | None) -> int:
    """Delete dead letters (damaged ones too); returns how many."""
    if job_ids is None:
        return conn.execute(Q["dead_purge_all"], {"queue": queue}).rowcount
    return sum(
        conn.execute(Q["dead_purge"], {"queue": queue, "id": job_id}).rowcount
        for job_id in dict.fromkeys(job_ids)
    )
