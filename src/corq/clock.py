"""Clocks: the system clock and a fake one that tests move by hand."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field


class SystemClock:
    """Wall-clock time in milliseconds and real sleeps."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def broker_now_ms(self) -> None:
        """Leases are timed by the broker's clock, never by this machine's."""
        return None

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass(eq=False)
class _Sleeper:
    deadline_ms: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


@dataclass(eq=False)
class FakeClock:
    """A clock that stands still until `advance` moves it.

    Sleeps wake when the clock passes their deadline, on whichever event loop (or thread)
    they were started from, so delays, retries and lease expiry can be fast-forwarded.
    """

    #: Current time in milliseconds since the epoch.
    start_ms: int = 1_700_000_000_000
    _now_ms: int = field(init=False)
    _sleepers: list[_Sleeper] = field(init=False, default_factory=list)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._now_ms = self.start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def broker_now_ms(self) -> int:
        """The broker times leases by this clock too, so tests can fast-forward them."""
        return self._now_ms

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            sleeper = _Sleeper(self._now_ms + max(0, round(seconds * 1000)), loop, future)
            if sleeper.deadline_ms <= self._now_ms:
                future.set_result(None)
            else:
                self._sleepers.append(sleeper)
        try:
            await future
        finally:
            with self._lock:
                if sleeper in self._sleepers:
                    self._sleepers.remove(sleeper)

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleep whose deadline has passed."""
        with self._lock:
            self._now_ms += round(seconds * 1000)
            due = [s for s in self._sleepers if s.deadline_ms <= self._now_ms]
            self._sleepers = [s for s in self._sleepers if s.deadline_ms > self._now_ms]
        for sleeper in due:
            sleeper.loop.call_soon_threadsafe(_wake, sleeper.future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
