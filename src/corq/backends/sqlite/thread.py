"""The one thread that owns a backend's SQLite connection.

sqlite3 calls block (on disk I/O, fsync, and busy_timeout while another process writes), so
none of them may run in the event loop. Each backend gets one thread; the connection is
opened lazily on it and never leaves it. Calls queue up and run one at a time.

While someone waits for a change, the same thread also reads ``PRAGMA data_version`` every
``poll_s`` between calls (it changes when another connection commits). Only a real change
reaches the event loop, so an idle waiter costs a thread wake-up and one pragma per tick,
and the loop itself sleeps.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from corq.backends.sqlite.store import Conn, connect, data_version, transaction
from corq.backends.sqlite.url import Target
from corq.errors import BrokerDataError, BrokerError, CorqError

T = TypeVar("T")


class Tx(Enum):
    """How a call runs: a write or read transaction, or a bare statement (pragmas)."""

    WRITE = "write"
    READ = "read"
    NONE = "none"


@dataclass(slots=True)
class _Call:
    fn: Callable[[Conn], Any]
    tx: Tx
    future: Future[Any]


#: SQLite result codes (the primary code, low byte) of a store that fails for now: locked
#: or busy past busy_timeout, out of memory, I/O errors, a full disk, a file that cannot be
#: opened (yet), a WAL lock protocol race. Any other failure will fail again.
_TRANSIENT_CODES = frozenset({5, 6, 7, 10, 13, 14, 15})
#: What sqlite3 raises while binding a parameter it cannot store: an int over 2**63
#: (OverflowError), a str with a lone surrogate (UnicodeEncodeError), a value of a type it
#: does not know (TypeError, ValueError).
_REFUSED = (OverflowError, UnicodeError, TypeError, ValueError)


def broker_error(exc: BaseException, database: str) -> CorqError:
    """BrokerError when the store fails for now (callers retry), else BrokerDataError:
    a malformed file, a missing table or column (a half-migrated file), a constraint, or
    a value SQLite cannot store."""
    message = f"SQLite broker {database}: {exc}"
    if isinstance(exc, sqlite3.OperationalError) and _transient(exc):
        return BrokerError(message)
    return BrokerDataError(message)


def _transient(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _TRANSIENT_CODES
    text = str(exc).lower()  # raised by the sqlite3 module itself, without a code
    return any(word in text for word in ("locked", "busy", "disk", "unable to open"))


_STOP = object()
_TICK = object()  # wakes the thread so it notices that polling was switched on

#: Receives the new change generation (on the SQLite thread).
ChangeListener = Callable[[int], None]


class ConnectionThread:
    """Runs functions of the connection on the thread, one at a time, as transactions."""

    def __init__(
        self,
        target: Target,
        busy_timeout_ms: int,
        on_commit: Callable[[], None],
        poll_s: float,
    ) -> None:
        self._target = target
        self._busy_timeout_ms = busy_timeout_ms
        #: Called on the thread after a write transaction changed rows (in-process wakes).
        self._on_commit = on_commit
        self._poll_s = poll_s
        self._queue: queue.SimpleQueue[_Call | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._conn: Conn | None = None
        #: +1 each time a poll finds that another connection committed, and after each commit
        #: of this connection that changed rows (written only on the thread).
        self.generation = 0
        self._last_version: int | None = None
        self._listener: ChangeListener | None = None
        #: Resolved by the thread once it closed the connection and is about to end.
        self._stopped: Future[None] = Future()

    async def run(self, fn: Callable[[Conn], T], tx: Tx = Tx.WRITE) -> T:
        """Run `fn(connection)` on the thread; failures come back as BrokerError (for now:
        retry) or BrokerDataError (refused: retrying will not help), see broker_error."""
        return await asyncio.wrap_future(self._submit(_Call(fn, tx, Future())))

    async def look(self, fn: Callable[[Conn], T]) -> tuple[int, T]:
        """Run a read, with the change generation its snapshot is at least as new as: a
        waiter that then waits for a newer generation misses no commit in between."""
        return await self.run(lambda conn: (self.generation, fn(conn)), Tx.READ)

    def listen(self, listener: ChangeListener | None) -> None:
        """Poll for other connections' commits while a listener is set (None stops)."""
        self._listener = listener
        if listener is not None:
            self._queue.put(_TICK)

    async def close(self) -> None:
        """Close the connection on its thread, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is None:
                return
            self._queue.put(_STOP)  # after every call already queued
        await asyncio.wrap_future(self._stopped)
        thread.join()  # it has nothing left but to return

    def _submit(self, call: _Call) -> Future[Any]:
        with self._lock:
            if self._closed:
                raise BrokerError("SQLite broker is closed")
            if self._thread is None:
                # A daemon: a backend never closed must not keep the interpreter alive.
                self._thread = threading.Thread(target=self._main, name="corq-sqlite", daemon=True)
                self._thread.start()
            self._queue.put(call)
        return call.future

    # -- on the thread -------------------------------------------------------------------
    def _main(self) -> None:
        next_poll = 0.0
        while True:
            timeout = None if self._listener is None else max(0.0, next_poll - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = _TICK
            if item is _STOP:
                self._stop()
                return
            if isinstance(item, _Call):
                self._execute(item)
            if self._listener is not None and time.monotonic() >= next_poll:
                self._poll()
                next_poll = time.monotonic() + self._poll_s

    def _execute(self, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return  # the awaiting task was cancelled before the call started
        try:
            result = self._call(call.fn, call.tx)
        except BaseException as exc:  # the thread outlives any call, whatever it raised
            call.future.set_exception(exc)
        else:
            call.future.set_result(result)

    def _call(self, fn: Callable[[Conn], T], tx: Tx) -> T:
        try:
            conn = self._connection()
            if tx is Tx.NONE:
                return fn(conn)
            before = conn.total_changes
            result = transaction(conn, fn, write=tx is Tx.WRITE)
            if conn.total_changes != before:
                # A waiter of this backend whose look ran just before this commit may not be
                # listening yet, and data_version never moves for a connection's own commits:
                # the new generation tells it to look again (a workflow's release, made by
                # the worker's own completion, must wake that worker's fetcher).
                self.generation += 1
                self._on_commit()
            return result
        except (sqlite3.Error, *_REFUSED) as exc:
            raise broker_error(exc, self._target.database) from exc

    def _poll(self) -> None:
        """Bump the generation when another connection committed since the last poll."""
        try:
            version: int | None = data_version(self._connection())
        except (sqlite3.Error, CorqError):
            version = None  # waiters look again and meet the error themselves
        if version != self._last_version:
            self._last_version = version
            self.generation += 1
            listener = self._listener
            if listener is not None:
                listener(self.generation)

    def _connection(self) -> Conn:
        if self._conn is None:
            self._conn = connect(self._target, self._busy_timeout_ms)
        return self._conn

    def _stop(self) -> None:
        try:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()
        except sqlite3.Error as exc:
            self._stopped.set_exception(BrokerError(f"SQLite broker close failed: {exc}"))
        else:
            self._stopped.set_result(None)
