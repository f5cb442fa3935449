"""The EventLog port on SQLite: the events table, its triggers, and each job's attempts.

The events are written by TEMP triggers on ``jobs`` that each connection creates with its
backend's ``events_max`` (none at 0): the kind comes from the row's old and new status, so
no statement can forget one, and the bound is the backend's setting as on Redis. The
attempts are kept by permanent triggers in schema.sql. See docs/design.md, "Events and
attempt history".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from corq.backends.sqlite.store import Conn
from corq.backends.sqlite.thread import ConnectionThread, Tx
from corq.errors import ConfigError
from corq.events import Attempt, AttemptOutcome, Event, EventKind, EventPage
from corq.types import JobId, QueueName


def _queue_filter(queues: Sequence[QueueName] | None) -> tuple[str, list[object]]:
    if queues is None:
        return "", []
    return f" AND queue IN ({', '.join('?' * len(queues))})", list(queues)


def _parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    try:
        value = int(cursor)
    except ValueError:
        raise ConfigError(f"not an events cursor of this broker: {cursor!r}") from None
    if value < 0:
        raise ConfigError(f"not an events cursor of this broker: {cursor!r}")
    return value


def read_page(
    conn: Conn, *, after: int | None, queues: Sequence[QueueName] | None, limit: int
) -> EventPage:
    """The events after id `after` (None: the oldest kept), oldest first, and whether some
    were trimmed past it."""
    where, params = _queue_filter(queues)
    rows = conn.execute(
        "SELECT id, at_ms, kind, queue, job_id, task, attempt, worker_id, detail FROM events"
        f" WHERE id > ?{where} ORDER BY id LIMIT ?",
        [after or 0, *params, max(1, limit)],
    ).fetchall()
    gap = False
    if after is not None:
        (gap,) = conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM events_queues WHERE upto > ?{where})",
            [after, *params],
        ).fetchone()
    events = [e for e in map(_event, rows) if e is not None]
    cursor = str(rows[-1][0]) if rows else str(after or 0)
    return EventPage(events=events, cursor=cursor, gap=bool(gap))


def _event(row: tuple[object, ...]) -> Event | None:
    """An event row as an Event (None for a row another program damaged)."""
    id_, at_ms, kind, queue, job_id, task, attempt, worker_id, detail = row
    try:
        return Event(
            cursor=str(id_),
            at_ms=int(str(at_ms)),
            kind=EventKind(str(kind)),
            queue=str(queue),
            job_id=str(job_id),
            task=str(task),
            attempt=int(str(attempt)),
            worker_id=None if worker_id is None else str(worker_id),
            detail=None if detail is None else str(detail),
        )
    except ValueError:
        return None


def last_id(conn: Conn) -> int:
    (value,) = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
    return int(value)


def attempts_of(conn: Conn, *, job_id: JobId, queue: QueueName) -> list[Attempt]:
    rows = conn.execute(
        "SELECT attempt, worker_id, started_at_ms, ended_at_ms, outcome, error"
        " FROM job_attempts WHERE queue = ? AND job_id = ? ORDER BY rowid",
        [queue, job_id],
    ).fetchall()
    out: list[Attempt] = []
    for attempt, worker_id, started, ended, outcome, error in rows:
        try:
            out.append(
                Attempt(
                    attempt=int(attempt),
                    worker_id=None if worker_id is None else str(worker_id),
                    started_at_ms=int(started),
                    ended_at_ms=None if ended is None else int(ended),
                    outcome=AttemptOutcome(str(outcome)),
                    error=None if error is None else str(error),
                )
            )
        except (ValueError, TypeError):
            continue  # a row another program damaged
    return out


class SqliteEvents:
    """The EventLog methods of SqliteBackend."""

    _thread: ConnectionThread
    #: backend.py's: wait for a possible change until the deadline (False: it passed).
    _wait_change: Callable[[int, float], Awaitable[bool]]

    async def read_events(
        self,
        cursor: str | None,
        *,
        queues: Sequence[QueueName] | None = None,
        limit: int = 100,
        block_s: float = 0.0,
    ) -> EventPage:
        """With `block_s`, looks again after every commit (here or elsewhere) until then."""
        look = partial(read_page, after=_parse_cursor(cursor), queues=queues, limit=limit)
        deadline = asyncio.get_running_loop().time() + max(0.0, block_s)
        seen, page = await self._thread.look(look)
        while not page.events and block_s > 0 and await self._wait_change(seen, deadline):
            seen, page = await self._thread.look(look)
        return page

    async def events_cursor(self, queues: Sequence[QueueName] | None = None) -> str:
        return str(await self._thread.run(last_id, Tx.READ))

    async def job_attempts(self, job_id: JobId, queue: QueueName) -> list[Attempt]:
        return await self._thread.run(partial(attempts_of, job_id=job_id, queue=queue), Tx.READ)
