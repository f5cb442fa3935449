"""The ControlChannel port on SQLite: a table of messages the listeners watch.

Sending inserts a row (and trims rows older than CONTROL_KEEP_MS); a listener starts at the
highest id when it subscribes and reads the rows after the last one it saw and keeps those
for its worker or for all. It looks again after every commit in this process (at once) and
after every commit of another process (``PRAGMA data_version``, polled while someone
waits): the same wake-ups as ``wait_for_job``, no table polling, coalesced to one look per
COALESCE_S. Replies are rows taken
(deleted) by the asker, kept until their time to live passes.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import TYPE_CHECKING

from corq.backends.base import BATCH, ControlMessage
from corq.backends.control_wire import CONTROL_KEEP_MS, decode_message, encode_message
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn
from corq.backends.sqlite.thread import ConnectionThread, Tx
from corq.control import ALL_WORKERS
from corq.types import WorkerId

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


#: Least time between two looks of a listener (also the extra delay of a message).
COALESCE_S = 0.005


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _put(conn: Conn, worker: WorkerId, message: bytes, now: int) -> None:
    conn.execute(Q["control_trim"], {"before": now - CONTROL_KEEP_MS, "limit": BATCH})
    conn.execute(Q["control_put"], {"worker": worker, "message": message, "now": now})


def _last(conn: Conn) -> int:
    (last,) = conn.execute(Q["control_last"]).fetchone()
    return last if type(last) is int else 0


def _after(conn: Conn, worker: WorkerId, after: int) -> list[tuple[int, bytes]]:
    """(id, message) of the rows after `after`; a row for another worker (or unreadable)
    comes with empty bytes, so the cursor still moves past it."""
    rows = conn.execute(Q["control_after"], {"after": after, "limit": BATCH}).fetchall()
    return [
        (i, m if w in (worker, ALL_WORKERS) and isinstance(m, bytes) else b"")
        for i, w, m in rows
        if type(i) is int
    ]


def _put_reply(conn: Conn, request: str, body: bytes, ttl_ms: int, now: int) -> None:
    conn.execute(Q["control_reply_trim"], {"now": now, "limit": BATCH})
    params = {"request": request, "body": body, "expires": now + max(0, ttl_ms)}
    conn.execute(Q["control_reply_put"], params)


def _reply(conn: Conn, request: str, now: int, query: str) -> bytes | None:
    row = conn.execute(Q[query], {"request": request, "now": now}).fetchone()
    return row[0] if row is not None and isinstance(row[0], bytes) else None


class SqliteControlListener:
    """One worker's reader of ``control_messages``."""

    def __init__(
        self,
        thread: ConnectionThread,
        wait_change: Callable[[int, float], Awaitable[bool]],
        worker_id: WorkerId,
    ) -> None:
        self._thread = thread
        self._wait_change = wait_change
        self._worker_id = worker_id
        self._after: int | None = None
        self._pending: list[ControlMessage] = []
        #: A file needs no reconnection: always 0 (see ControlListener.reconnects).
        self.reconnects = 0

    async def subscribe(self) -> None:
        if self._after is None:
            self._after = await self._thread.run(_last, Tx.READ)

    async def next_message(self, timeout_s: float) -> ControlMessage | None:
        await self.subscribe()
        deadline = asyncio.get_running_loop().time() + max(0.0, timeout_s)
        while not self._pending:
            assert self._after is not None
            look = partial(_after, worker=self._worker_id, after=self._after)
            seen, rows = await self._thread.look(look)
            for row_id, raw in rows:
                self._after = max(self._after, row_id)
                message = decode_message(raw) if raw else None
                if message is not None:
                    self._pending.append(message)
            if self._pending:
                break
            if not await self._wait_change(seen, deadline):
                return None
            # Every commit wakes the listener (a busy worker commits hundreds of times a
            # second, and data_version cannot say which table changed): looking at most
            # every COALESCE_S keeps that to one cheap read per COALESCE_S.
            await asyncio.sleep(COALESCE_S)
        return self._pending.pop(0)

    async def close(self) -> None:
        self._pending.clear()


class SqliteControl:
    """The ControlChannel methods of SqliteBackend (which provides the thread and waits)."""

    _thread: ConnectionThread

    async def _wait_change(self, seen_generation: int, deadline: float) -> bool:
        raise NotImplementedError  # SqliteBackend's (the change watch of its thread)

    async def send_control(self, message: ControlMessage) -> int:
        raw = encode_message(message)
        await self._thread.run(partial(_put, worker=message.worker_id, message=raw, now=_wall_ms()))
        return 0  # a table cannot say who will read it: 0 is not an error

    def control_listener(self, worker_id: WorkerId) -> SqliteControlListener:
        return SqliteControlListener(self._thread, self._wait_change, worker_id)

    async def put_reply(self, request_id: str, body: bytes, ttl_ms: int) -> None:
        put = partial(_put_reply, request=request_id, body=body, ttl_ms=ttl_ms, now=_wall_ms())
        await self._thread.run(put)

    async def take_reply(self, request_id: str, timeout_s: float) -> bytes | None:
        deadline = asyncio.get_running_loop().time() + max(0.0, timeout_s)
        while True:
            look = partial(_reply, request=request_id, now=_wall_ms(), query="control_reply_get")
            seen, found = await self._thread.look(look)
            if found is not None:
                take = partial(
                    _reply, request=request_id, now=_wall_ms(), query="control_reply_take"
                )
                taken = await self._thread.run(take)
                if taken is not None:
                    return taken
            elif not await self._wait_change(seen, deadline):
                return None
