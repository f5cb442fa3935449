"""Waking waiters when the database may have changed, without sleep-polling the tables.

Two signals, both cheap:

* in this process, every backend on a database publishes after each commit that changed
  rows (``HUB``), so a worker sharing a process with its producer wakes at once;
* from other processes, the backend's SQLite thread notices ``PRAGMA data_version``
  change (see thread.py) and bumps a change generation.

A waiter hands in the generation its last look was at least as new as (from
``ConnectionThread.look``) and sleeps until a newer one or a local commit; then it runs its
own cheap query again. A commit landing between the look and the wait is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref

from corq.backends.sqlite.thread import ConnectionThread


class ChangeWatch:
    """The waiters of one backend, in the event loop that backend is used from."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: ConnectionThread) -> None:
        self.loop = loop
        self._thread = thread
        #: Each waiter and the change generation it has already seen.
        self._waiters: dict[asyncio.Future[None], int] = {}

    async def wait(self, seen_generation: int, timeout_s: float) -> None:
        """Return on a commit in this process, on a commit by another connection after
        generation `seen_generation`, or after `timeout_s`; the caller then looks again."""
        future: asyncio.Future[None] = self.loop.create_future()
        self._waiters[future] = seen_generation
        if len(self._waiters) == 1:
            self._thread.listen(self._changed_threadsafe)
        # Checked after listening: the thread bumps the generation before it reads the
        # listener, so a change is seen either here or by the listener.
        if self._thread.generation != seen_generation:
            _resolve(future)
        timer = self.loop.call_later(max(0.0, timeout_s), _resolve, future)
        try:
            await future
        finally:
            timer.cancel()
            self._waiters.pop(future, None)
            if not self._waiters:
                self._thread.listen(None)

    def poke_threadsafe(self) -> None:
        """Wake every waiter; callable from any thread (the committing one)."""
        self._call_threadsafe(None)

    def close(self) -> None:
        """Release the waiters (called from the watch's loop)."""
        self._thread.listen(None)
        self._wake(None)

    def _changed_threadsafe(self, generation: int) -> None:
        self._call_threadsafe(generation)

    def _call_threadsafe(self, generation: int | None) -> None:
        if not self._waiters:
            return
        # A closed loop raises RuntimeError: nobody is waiting there any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._wake, generation)

    def _wake(self, generation: int | None) -> None:
        for future, seen in list(self._waiters.items()):
            if generation is None or generation > seen:
                _resolve(future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ChangeHub:
    """Process-wide: the watches of every backend, by database, to poke after a commit.

    Watches are held weakly, so a backend dropped without close() does not linger here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[str, weakref.WeakSet[ChangeWatch]] = {}

    def subscribe(self, key: str, watch: ChangeWatch) -> None:
        with self._lock:
            self._watches.setdefault(key, weakref.WeakSet()).add(watch)

    def unsubscribe(self, key: str, watch: ChangeWatch) -> None:
        with self._lock:
            watches = self._watches.get(key)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[key]

    def publish(self, key: str) -> None:
        with self._lock:
            watches = tuple(self._watches.get(key, ()))
        for watch in watches:
            watch.poke_threadsafe()


HUB = ChangeHub()
