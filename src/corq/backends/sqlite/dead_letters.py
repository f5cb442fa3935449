"""The DeadLetters port on SQLite: filtered pages of a queue's dead letters, and re-drive.

A page is one read transaction: one keyset query on the ``jobs_dead`` index that looks at
no more than BATCH rows (``dead_find_timed``, the time range as its bounds), then the rows
it kept. Rows whose death time is not a number cannot be placed in time: they follow the
others, by id, when no time range is asked for (``dead_find_untimed``). A re-drive is
``retry_dead`` for one job, its payload replaced first in the same transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import Any

from corq.backends.base import BATCH, DeadFilter, DeadPage
from corq.backends.sqlite import admin
from corq.backends.sqlite.records import job_from_row
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn
from corq.backends.sqlite.thread import ConnectionThread, Tx
from corq.errors import ArgumentError
from corq.types import JobId, QueueName

#: Bounds that hold every number: a REAL beyond any 64-bit integer, either way.
_ABOVE_ALL = float(2**63)
_BELOW_ALL = -float(2**63)
#: Sorts above every text id (SQLite orders bytes after text).
_ABOVE_ALL_IDS = b""
_CURSOR_TAG = "s1"


@dataclass(frozen=True, slots=True)
class Place:
    """Where a walk stands: after (death time, id) among the timed rows, or after an id
    among the untimed ones (`timed` False)."""

    timed: bool
    at: int | float | None
    job_id: str | bytes


def encode_cursor(place: Place | None) -> str | None:
    if place is None:
        return None
    raw = place.job_id.hex() if isinstance(place.job_id, bytes) else None
    value = [place.timed, place.at, place.job_id if raw is None else None, raw]
    return f"{_CURSOR_TAG}:{json.dumps(value)}"


def decode_cursor(cursor: str | None) -> Place | None:
    """The place a cursor names; ArgumentError for one this broker did not make."""
    if cursor is None:
        return None
    tag, _, rest = cursor.partition(":")
    try:
        timed, at, job_id, raw = json.loads(rest) if tag == _CURSOR_TAG else (None,) * 4
        if not isinstance(timed, bool) or not isinstance(at, int | float | None):
            raise ValueError(rest)
        if raw is not None:
            return Place(timed, at, bytes.fromhex(raw))
        if not isinstance(job_id, str):
            raise ValueError(rest)
        return Place(timed, at, job_id)
    except (ValueError, TypeError) as exc:
        raise ArgumentError(f"not a dead-letter cursor of this broker: {cursor[:80]!r}") from exc


def find_dead(
    conn: Conn, queue: QueueName, where: DeadFilter, place: Place | None, limit: int
) -> DeadPage:
    timed_range = where.since_ms is not None or where.until_ms is not None
    if place is None:
        top = _ABOVE_ALL if where.until_ms is None else where.until_ms
        place = Place(True, top, "")
    hits, after = _window(conn, queue, where, place, limit)
    if after is None and place.timed and not timed_range:
        # The timed rows ended inside this window: the untimed ones follow (one more
        # window at most, so a call still looks at a bounded number of rows).
        more, after = _window(conn, queue, where, Place(False, None, _ABOVE_ALL_IDS),
                              limit - len(hits))  # fmt: skip
        hits += more
    jobs = []
    for rowid in hits:
        row = conn.execute(Q["dead_row"], {"rowid": rowid}).fetchone()
        if row is not None:
            jobs.append(job_from_row(row))
    return DeadPage(jobs=jobs, cursor=encode_cursor(after))


def _window(
    conn: Conn, queue: QueueName, where: DeadFilter, place: Place, limit: int
) -> tuple[list[int], Place | None]:
    """The rowids that match in one window from `place`, and the place after it (None when
    this kind of row ran out)."""
    params: dict[str, Any] = {"queue": queue, "task": where.task, "needle": where.needle,
                              "after_id": place.job_id, "window": BATCH}  # fmt: skip
    if place.timed:
        since = _BELOW_ALL if where.since_ms is None else where.since_ms
        params |= {"after_at": place.at, "since": since}
    rows = conn.execute(Q["dead_find_timed" if place.timed else "dead_find_untimed"], params)
    hits: list[int] = []
    looked_at = 0
    last: Place | None = None
    for rowid, at, job_id, hit in rows:
        looked_at += 1
        last = Place(place.timed, at if place.timed else None, job_id)
        if hit:
            hits.append(rowid)
            if len(hits) >= limit:
                return hits, last
    return hits, last if looked_at >= BATCH else None


def redrive_dead(
    conn: Conn, queue: QueueName, job_id: JobId, payload: bytes | None, now_ms: int | None
) -> bool:
    row = conn.execute(Q["dead_rowid"], {"queue": queue, "id": job_id}).fetchone()
    if row is None:
        return False
    if payload is not None:
        conn.execute(Q["dead_set_payload"], {"rowid": row[0], "payload": payload})
    return admin.retry_dead(conn, queue, [job_id], now_ms) == 1


class SqliteDeadLetters:
    """The DeadLetters methods of SqliteBackend, on its connection thread."""

    _thread: ConnectionThread

    async def find_dead(
        self, queue: QueueName, where: DeadFilter, cursor: str | None, limit: int
    ) -> DeadPage:
        place = decode_cursor(cursor)
        if limit <= 0:
            return DeadPage(jobs=[], cursor=cursor)
        call = partial(find_dead, queue=queue, where=where, place=place, limit=min(limit, BATCH))
        return await self._thread.run(call, Tx.READ)

    async def redrive_dead(
        self, queue: QueueName, job_id: JobId, payload: bytes | None, now_ms: int | None
    ) -> bool:
        call = partial(redrive_dead, queue=queue, job_id=job_id, payload=payload, now_ms=now_ms)
        return await self._thread.run(call)
